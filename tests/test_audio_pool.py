"""The MFCC pool of the clip classifier (domains/audio/classify_pool.py): the stored regression reproduces
sklearn's probabilities, and the pooling weight is the validation choice (on synthetic features: no data)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from domains.audio import classify_pool as P
from domains.audio.classify import logreg


def features(rng, n: int, k: int = 3, dims: int = 6):
    y = rng.integers(0, k, n)
    centres = np.eye(k, dims) * 2.0
    return centres[y] + rng.normal(size=(n, dims)), y


def test_stored_regression_matches_sklearn():
    rng = np.random.default_rng(0)
    (xt, yt), (xv, yv), (xs, _) = features(rng, 120), features(rng, 40), features(rng, 30)
    p_val = np.full((len(yv), 3), 1 / 3)
    pool = json.loads(json.dumps(P.fit_pool({"train": xt, "val": xv}, {"train": yt, "val": yv}, p_val, 0)))
    ref = logreg(pool["C"], 0).fit(np.concatenate([xt, xv]), np.concatenate([yt, yv]))
    np.testing.assert_allclose(P.mfcc_probabilities(pool, xs, 3), ref.predict_proba(xs), atol=1e-9)


def test_weight_is_the_validation_choice():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    truth = np.eye(3)[y]
    informative = 0.8 * truth + 0.2 / 3
    uniform = np.full_like(truth, 1 / 3)
    assert P.choose_weight(y, informative, uniform)[0] == 1.0   # an uninformative second view is not used
    assert P.choose_weight(y, uniform, informative)[0] == 0.0   # ... nor an uninformative network
    # each view wrong on a different half: pooling both beats either alone
    a, b = informative.copy(), informative.copy()
    a[:100] = np.roll(a[:100], 1, axis=1) * 0.5 + truth[:100] * 0.5
    b[100:] = np.roll(b[100:], 1, axis=1) * 0.5 + truth[100:] * 0.5
    w, losses = P.choose_weight(y, a, b)
    assert 0.0 < w < 1.0 and losses[list(P.WEIGHTS).index(w)] < min(losses[0], losses[-1])


def test_pooling_edges():
    rng = np.random.default_rng(2)
    p = rng.dirichlet(np.ones(4), 10)
    q = rng.dirichlet(np.ones(4), 10)
    np.testing.assert_allclose(P.pool(p, q, 1.0), p, atol=1e-12)
    np.testing.assert_allclose(P.pool(p, q, 0.0), q, atol=1e-12)
    np.testing.assert_allclose(P.pool(p, q, 0.5).sum(1), 1.0, atol=1e-12)
    # no pool, or weight 1: the networks' probabilities untouched, and no MFCC work (clips are not read)
    assert P.pooled(None, p, [], 8000) is p
    assert P.pooled({"weight": 1.0}, p, [], 8000) is p


@pytest.mark.parametrize("missing", [(1,), (0, 2)])     # one class absent; two absent (a binary regression)
def test_classes_absent_from_training_get_zero(missing):
    rng = np.random.default_rng(3)
    x, y = features(rng, 200, k=4)
    keep = ~np.isin(y, missing)
    xt, yt = x[keep][:70], y[keep][:70]
    xv, yv = x[keep][70:], y[keep][70:]
    pool = P.fit_pool({"train": xt, "val": xv}, {"train": yt, "val": yv}, np.full((len(yv), 4), 1 / 4), 0)
    got = P.mfcc_probabilities(pool, x[:10], 4)
    ref = logreg(pool["C"], 0).fit(np.concatenate([xt, xv]), np.concatenate([yt, yv]))
    expected = np.zeros((10, 4))
    expected[:, ref.classes_] = ref.predict_proba(x[:10])
    np.testing.assert_allclose(got, expected, atol=1e-9)
    assert np.all(got[:, list(missing)] == 0)
