"""Molecules prediction: the fast path (parse once, de-duplicated, length-grouped dense batches) equals the
previous packed path; bounded work and explicit statuses for odd input (too long, `*`, salts, metals)."""
import time

import numpy as np
import pandas as pd
import pytest
import torch

from core.domain import get_domain

TINY = [a for o in get_domain("molecules").task("properties").smoke_overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    from core.cli import main
    from core.runs import load_members
    root = tmp_path_factory.mktemp("molpred")
    assert main(["-q", "prepare", "-d", "molecules", "-o", str(root / "prep"), *TINY]) == 0
    # head.forest off: these tests compare the ensemble path itself (the blend is tested below)
    assert main(["-q", "train", "-d", "molecules", "-i", str(root / "prep"), "-o", str(root / "run"), *TINY,
                 "--set", "head.forest=false"]) == 0
    return load_members(get_domain("molecules").task("properties"), root / "run", torch.device("cpu"))


SMILES = ["CCO", "c1ccccc1O", "OCC", "CC(=O)Nc1ccc(O)cc1", "CCCCCCCCCCCC", "C1CC1", "c1ccccc1O", "CCN(CC)CC",
          "O=C(O)c1ccccc1", "FC(F)(F)Cl"]


def test_fast_path_equals_previous_path(members):
    """Previous path: canonical SMILES re-parsed for descriptors, packed batches in input order, every
    member through `forward`. The fast path must give the same numbers (float32 tolerance)."""
    from core.runs import member_outputs
    from domains.molecules import chem
    from domains.molecules.inference import featurize, predict_frame
    from domains.molecules.model import collate_regression, dense_path_applies
    meta = members[0].metadata["task"]
    assert all(dense_path_applies(m.model) for m in members)
    canon = [chem.canonicalize(s)[0] for s in SMILES]
    raw = member_outputs(members, featurize(canon, meta), collate_regression, 4)
    values = np.stack([r * np.asarray(m.metadata["task"]["y_std"]) + np.asarray(m.metadata["task"]["y_mean"])
                       for r, m in zip(raw, members)])
    out = predict_frame(members, pd.DataFrame({"smiles": SMILES}), 0, "mark")
    np.testing.assert_allclose(out["expt"], values.mean(0)[:, 0], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(out["expt_unc"], values.std(0)[:, 0], rtol=1e-4, atol=1e-4)
    # repeated molecules (same canonical SMILES) get identical values
    assert out.expt[0] == out.expt[2] and out.expt[1] == out.expt[6]


def test_length_batches_group_equal_lengths_in_order():
    from domains.molecules.inference import length_batches
    batches = length_batches([5, 3, 5, 3, 5, 9], batch_size=2)
    assert [b.tolist() for b in batches] == [[1, 3], [0, 2], [4], [5]]


@pytest.mark.parametrize("smiles, status, predicted", [
    ("C" * 200, "too_long", False),
    ("*CCO", "dummy_atom", False),
    ("CC(=O)[O-].[Na+]", "largest_fragment", True),
    ("CC[Pt](Cl)Cl", "unsupported_element", False),
    ("[Na+].[Cl-]", "no_organic_fragment", False),
    ("c1ccccc1", "ok", True),
])
def test_odd_molecules_get_a_status(members, smiles, status, predicted):
    from domains.molecules.inference import predict_frame
    out = predict_frame(members, pd.DataFrame({"smiles": [smiles]}), 0, "mark")
    assert out.status.tolist() == [status]
    assert np.isfinite(out.expt[0]) == predicted


def test_one_huge_smiles_never_stalls_a_batch(members):
    """A 10,000-character SMILES is refused by its token count before RDKit sees it (bounded work)."""
    from domains.molecules.inference import predict_frame
    start = time.process_time()
    out = predict_frame(members, pd.DataFrame({"smiles": ["C" * 10_000, "CCO"]}), 0, "mark")
    assert time.process_time() - start < 5.0
    assert out.status.tolist() == ["too_long", "ok"]


def test_on_invalid_error_names_the_status(members):
    from core.errors import UserError
    from domains.molecules.inference import predict_frame
    with pytest.raises(UserError, match="row 12 .*too_long"):
        predict_frame(members, pd.DataFrame({"smiles": ["CCO", "C" * 300]}), 10, "error")


def test_descriptor_set_is_chosen_on_training_molecules(members):
    """The trained model records the descriptor subset (never Ipc/AvgIpc) and the elements it saw."""
    from domains.molecules.features import EXCLUDED_DESCRIPTORS
    meta = members[0].metadata["task"]
    names = meta["descriptor_names"]
    assert 0 < len(names) == meta["n_extra"] and not set(names) & EXCLUDED_DESCRIPTORS
    assert all(m.metadata["task"]["descriptor_names"] == names for m in members)  # one featurization for all
    assert {"C", "O"} <= set(meta["elements"])


def test_select_by_importance_keeps_informative_descriptors():
    from domains.molecules.features import select_by_importance
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = (3 * x[:, 2] + 0.01 * rng.normal(size=200))[:, None]
    names = [f"d{i}" for i in range(6)]
    assert select_by_importance(x, y, names, 0.5, seed=0) == ["d2"]
    assert select_by_importance(x, y, names, 1.0, seed=0) == names


def test_forest_arrays_predict_like_sklearn():
    from sklearn.ensemble import RandomForestRegressor

    from domains.molecules import stacking
    rng = np.random.default_rng(1)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    x[3, 1] = np.nan
    y = np.stack([x[:, 0] * 2 + np.nan_to_num(x[:, 1]), x[:, 2]], axis=1)
    forest = stacking.fit_forest(x, y, seed=0)
    filled = np.where(np.isnan(x), np.asarray(forest["median"], np.float32), x)
    rf = RandomForestRegressor(n_estimators=stacking.N_TREES, min_samples_leaf=stacking.MIN_LEAF,
                               max_features=0.33, n_jobs=1, random_state=0).fit(filled, y)
    np.testing.assert_allclose(stacking.forest_predict(forest, x), rf.predict(filled), rtol=1e-5, atol=1e-5)


def test_blend_weight_is_chosen_on_validation():
    from domains.molecules.stacking import blend, choose_weights
    y = np.array([[0.0], [1.0], [2.0], [3.0]])
    assert choose_weights(y, y + 1.0, y - 1.0) == [0.5]      # errors cancel half-way
    assert choose_weights(y, y.copy(), y + 5.0) == [1.0]     # the forest does not help: ensemble alone
    assert blend(None, y, np.zeros((4, 0))) is y


def test_trained_run_blends_as_recorded(tmp_path, run_cli):
    """With head.forest (the default) training stores the forest and the validation-chosen weights, and
    predictions are that blend."""
    import json

    from rdkit import Chem

    from core.runs import load_members
    from domains.molecules import stacking
    from domains.molecules.inference import predict_frame, predict_smiles, raw_descriptors
    sets = [*TINY, "--set", "train.ensemble=1"]
    assert run_cli("-q", "prepare", "-d", "molecules", "-o", tmp_path / "prep", *sets)[0] == 0
    assert run_cli("-q", "train", "-d", "molecules", "-i", tmp_path / "prep", "-o", tmp_path / "run", *sets)[0] == 0
    stack = json.loads((tmp_path / "run" / "calibration.json").read_text())["stack"]
    assert len(stack["weights"]) == 1 and 0.0 <= stack["weights"][0] <= 1.0
    assert (stack["forest"] is None) == (stack["weights"][0] == 1.0)  # no forest kept that is never used
    members = load_members(get_domain("molecules").task("properties"), tmp_path / "run", torch.device("cpu"))
    smiles = ["OCC", "c1ccccc1O", "ClCCCC"]  # written non-canonically: features come from the canonical form
    canon = [Chem.MolToSmiles(Chem.MolFromSmiles(s)) for s in smiles]
    ensemble, _ = predict_smiles(members, canon, stacked=False)
    expected = ensemble[:, 0]
    if stack["forest"] is not None:
        inputs = stacking.forest_inputs(raw_descriptors(canon, members[0].metadata["task"]),
                                        [Chem.MolFromSmiles(s) for s in canon])
        w = stack["weights"][0]
        expected = w * ensemble[:, 0] + (1 - w) * stacking.forest_predict(stack["forest"], inputs)[:, 0]
    out = predict_frame(members, pd.DataFrame({"smiles": smiles}), 0, "mark")
    np.testing.assert_allclose(out.expt, expected, rtol=1e-6, atol=1e-6)


def test_a_labelled_file_with_its_own_smiles_column_name_is_predicted(members, tmp_path):
    """Checking a model on an external labelled set: the measured values stay beside the predictions
    (`input_<target>`), and the SMILES column may be named at predict time."""
    from core.cli import main
    run = members[0].path.parent
    target = members[0].metadata["task"]["targets"][0]
    frame = pd.DataFrame({"Structure": ["CCO", "c1ccccc1"], target: [1.5, -2.0], "status": ["new", "old"]})
    frame.to_csv(src := tmp_path / "labelled.csv", index=False)
    code = main(["-q", "predict", "-d", "molecules", "-i", str(src), "-o", str(tmp_path / "p.csv"), "--model", str(run),
                 "--set", "data.smiles_column=Structure"])
    assert code == 0
    out = pd.read_csv(tmp_path / "p.csv")
    assert list(out.columns[:3]) == ["Structure", f"input_{target}", "input_status"]
    assert list(out[f"input_{target}"]) == [1.5, -2.0] and list(out.status) == ["ok", "ok"]
    assert out[target].notna().all()
    import json
    meta = json.loads((tmp_path / "p.csv.meta.json").read_text())      # what shaped this output is recorded
    assert meta["prediction_settings"] == {"data.smiles_column": "Structure"}
    assert meta["command_config"] == {"data": {"smiles_column": "Structure"}}
