"""MiniRocket (Dempster et al., KDD 2021; aeon's implementation) as the classification peer, on the same files.

Features: MiniRocket's 10,000 default kernels (max 32 dilations per kernel), fitted on the training file. Two
classifiers on them, as the authors recommend:
- `minirocket-ridgecv`: StandardScaler(with_mean=False) + RidgeClassifierCV(alphas=logspace(-3, 3, 10)), aeon's
  MiniRocketClassifier pipeline. Its accuracy is the ridge's own prediction. A ridge classifier has no
  probabilities, so its log-loss uses Platt-calibrated ones: sklearn's CalibratedClassifierCV(method="sigmoid",
  cv=5, ensemble=False) on the same pipeline (decision values from 5-fold cross-fitting on the training file).
- `minirocket-logreg`: StandardScaler + multinomial logistic regression (the authors' choice for larger sets),
  whose probabilities are its own.
Series of different lengths (JapaneseVowels) are zero-padded at the end to the longest series of both files (and
to MiniRocket's minimum of 9 steps); missing values ('?') become 0.
"""
from __future__ import annotations

import numpy as np

from core.errors import UserError

MIN_LENGTH = 9   # MiniRocket's kernels are 9 long


def padded(series: list[np.ndarray], length: int) -> np.ndarray:
    """[length_i, dims] arrays -> [N, dims, length] (aeon's layout), zero-padded at the end."""
    out = np.zeros((len(series), series[0].shape[1], length))
    for i, s in enumerate(series):
        out[i, :, : len(s)] = np.nan_to_num(s).T
    return out


def minirocket_peers(train: list[np.ndarray], y_train: np.ndarray, test: list[np.ndarray], n_classes: int,
                     seed: int, n_kernels: int = 10_000) -> dict[str, dict]:
    """{method: {"proba": [N_test, n_classes], "predicted": class indices or None}} for both classifiers."""
    try:
        from aeon.transformations.collection.convolution_based import MiniRocket
    except ImportError as exc:
        raise UserError(f"the MiniRocket baseline needs aeon's dependencies ({exc}); run `make setup`, or skip it "
                        "with --set classify.minirocket=false") from None
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.linear_model import LogisticRegression, RidgeClassifierCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    length = max(MIN_LENGTH, max(len(s) for s in [*train, *test]))
    rocket = MiniRocket(n_kernels=n_kernels, max_dilations_per_kernel=32, n_jobs=1, random_state=seed)
    f_train = rocket.fit_transform(padded(train, length))
    f_test = rocket.transform(padded(test, length))

    def full(model, features) -> np.ndarray:   # probabilities of the classes seen in training, in index order
        proba = np.zeros((len(features), n_classes))
        proba[:, model.classes_] = model.predict_proba(features)
        return proba

    def ridge():
        return make_pipeline(StandardScaler(with_mean=False), RidgeClassifierCV(alphas=np.logspace(-3, 3, 10)))

    plain = ridge().fit(f_train, y_train)
    counts = np.bincount(y_train)
    folds = max(2, min(5, int(counts[counts > 0].min())))   # stratified folds need every class in each
    calibrated = CalibratedClassifierCV(ridge(), method="sigmoid", cv=folds, ensemble=False)
    calibrated.fit(f_train, y_train)
    logreg = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000, random_state=seed))
    logreg.fit(f_train, y_train)
    return {"minirocket-ridgecv": {"proba": full(calibrated, f_test), "predicted": plain.predict(f_test)},
            "minirocket-logreg": {"proba": full(logreg, f_test), "predicted": None}}
