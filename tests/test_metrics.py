"""The core's metrics agree with the field's reference implementations (scikit-learn)."""
import numpy as np
import pytest
from sklearn import metrics as sk

from core.metrics import accuracy, log_loss, mae, r2, rmse


def test_classification_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(4), size=50)
    y = rng.integers(0, 4, 50)
    assert accuracy(y, proba) == pytest.approx(sk.accuracy_score(y, proba.argmax(1)))
    assert log_loss(y, proba) == pytest.approx(sk.log_loss(y, proba, labels=range(4)), rel=1e-9)
    proba[0], y[0] = [1.0, 0.0, 0.0, 0.0], 2            # a confident miss costs -log(1e-15), not infinity
    assert log_loss(y[:1], proba[:1]) == pytest.approx(-np.log(1e-15))


def test_regression_metrics_match_sklearn():
    rng = np.random.default_rng(1)
    y, p = rng.normal(size=30), rng.normal(size=30)
    assert rmse(y, p) == pytest.approx(np.sqrt(sk.mean_squared_error(y, p)), rel=1e-12)
    assert mae(y, p) == pytest.approx(sk.mean_absolute_error(y, p), rel=1e-12)
    assert r2(y, p) == pytest.approx(sk.r2_score(y, p), rel=1e-12)
    assert np.isnan(r2(np.ones(3), np.zeros(3)))      # constant targets: undefined, not a division error
