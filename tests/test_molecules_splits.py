"""Your own split: data.split=column (a train/val/test column) and data.split=file (chemprop-style JSON),
validation carved from train when absent, clear errors; `prepare` with too few molecules."""
import json

import pandas as pd
import pytest

from domains.molecules import chem

SMILES = chem.load_freesolv().smiles[:40].tolist()


def _file(tmp_path, split_values):
    frame = pd.DataFrame({"smiles": SMILES[:len(split_values)], "y": range(len(split_values)), "part": split_values})
    path = tmp_path / "mine.csv"
    frame.to_csv(path, index=False)
    return path


def _prepare(run_cli, tmp_path, path, *sets):
    args = ["-q", "prepare", "-d", "molecules", "-o", tmp_path / "prep", "--set", "data.dataset=csv",
            "--set", f"data.path={path}", "--set", "data.targets=[y]", "--set", "pretrain.corpus_size=10"]
    for s in sets:
        args += ["--set", s]
    return run_cli(*args)


def test_split_column_is_used_as_given(tmp_path, run_cli):
    values = ["train"] * 24 + [" Val"] * 6 + ["TEST"] * 10
    code, _, err = _prepare(run_cli, tmp_path, _file(tmp_path, values), "data.split=column", "data.split_column=part")
    assert code == 0, err
    prep = pd.read_csv(tmp_path / "prep" / "molecules.csv")
    expected = [v.strip().lower() for v in values]
    assert [expected[r] for r in prep.source_row] == prep.split.tolist()
    assert prep.split.value_counts().to_dict() == {"train": 24, "test": 10, "val": 6}


def test_split_column_without_val_carves_it_from_train(tmp_path, run_cli, caplog):
    values = ["train"] * 30 + ["test"] * 10
    code, _, err = _prepare(run_cli, tmp_path, _file(tmp_path, values), "data.split=column", "data.split_column=part")
    assert code == 0, err
    prep = pd.read_csv(tmp_path / "prep" / "molecules.csv")
    counts = prep.split.value_counts().to_dict()
    assert counts == {"test": 10, "val": 4, "train": 26}  # val share 0.1/(0.8+0.1): train cut at int(0.889 * 30)
    assert set(prep[prep.split == "test"].source_row) == set(range(30, 40))


@pytest.mark.parametrize("values, fragments", [
    (["train"] * 30 + ["valid"] * 4 + ["holdout"] * 6, ["'valid' (4 rows)", "'holdout' (6 rows)", "data row 31"]),
    (["train"] * 39 + [None], ["'<empty>' (1 rows)"]),
])
def test_split_column_with_unknown_values_is_refused(tmp_path, run_cli, values, fragments):
    code, _, err = _prepare(run_cli, tmp_path, _file(tmp_path, values), "data.split=column", "data.split_column=part")
    assert code == 2 and "train, val or test" in err and "Traceback" not in err, err
    assert all(f in err for f in fragments), err


def test_missing_split_column_and_wrong_dataset(tmp_path, run_cli):
    path = _file(tmp_path, ["train"] * 40)
    code, _, err = _prepare(run_cli, tmp_path, path, "data.split=column", "data.split_column=fold")
    assert code == 2 and "no split column 'fold'" in err
    code, _, err = run_cli("-q", "prepare", "-d", "molecules", "-o", tmp_path / "p2", "--set", "data.split=column")
    assert code == 2 and "data.dataset=csv" in err


def test_splits_file_like_chemprop(tmp_path, run_cli):
    path = _file(tmp_path, ["x"] * 40)
    splits = tmp_path / "splits.json"
    splits.write_text(json.dumps([{"train": "0-27", "val": [28, 29, 30], "test": "31-39"},
                                  {"train": list(range(10, 40)), "test": list(range(10))}]))
    code, _, err = _prepare(run_cli, tmp_path, path, "data.split=file", f"data.splits_file={splits}")
    assert code == 0, err
    prep = pd.read_csv(tmp_path / "prep" / "molecules.csv").set_index("source_row").split
    assert prep.value_counts().to_dict() == {"train": 28, "test": 9, "val": 3}
    assert prep[28] == "val" and prep[31] == "test" and prep[0] == "train"
    code, _, err = _prepare(run_cli, tmp_path, path, "data.split=file", f"data.splits_file={splits}",
                            "data.replicate=1")
    assert code == 0, err
    prep = pd.read_csv(tmp_path / "prep" / "molecules.csv").set_index("source_row").split
    assert set(prep[prep == "test"].index) == set(range(10)) and (prep == "val").sum() == 4


@pytest.mark.parametrize("content, fragment", [
    ("not json", "not valid JSON"),
    ('[{"train": [0, 1], "test": [1]}]', "row 1 is in both train and test"),
    ('[{"train": [0, 99]}]', "index 99 is outside the 40 data rows"),
    ('[{"training": [0]}]', "keys must be train, val, test"),
    ('[{"train": "0-a"}]', "'0-a'"),
])
def test_bad_splits_files_are_refused(tmp_path, run_cli, content, fragment):
    splits = tmp_path / "splits.json"
    splits.write_text(content)
    code, _, err = _prepare(run_cli, tmp_path, _file(tmp_path, ["x"] * 40), "data.split=file",
                            f"data.splits_file={splits}")
    assert code == 2 and fragment in err and "Traceback" not in err, err


def test_too_few_molecules_writes_the_rejected_file_it_points_to(tmp_path, run_cli):
    path = tmp_path / "few.csv"
    pd.DataFrame({"smiles": ["CCO", "C1CC", "", "CCC", "*C"], "y": [1, 2, 3, 4, 5]}).to_csv(path, index=False)
    code, _, err = _prepare(run_cli, tmp_path, path)
    assert code == 2 and "only 2 valid molecules" in err
    rejected = pd.read_csv(tmp_path / "prep" / "rejected.csv")
    assert str(tmp_path / "prep" / "rejected.csv") in err
    assert rejected.reason.tolist() == ["invalid_smiles", "empty", "dummy_atom"]
    assert not (tmp_path / "prep" / "molecules.csv").exists()


def test_sparse_multi_target_data_train_and_score_on_the_targets_they_have(tmp_path, run_cli, caplog):
    """Rows lacking one of two targets are kept (as chemprop masks them); the loss skips the missing ones and
    each target is scored on the test molecules that have it."""
    import numpy as np
    import torch

    from domains.molecules.model import regression_loss
    n = 40
    y, z = np.arange(n, dtype=float), np.arange(n, dtype=float) * 2
    y[::3], z[1::4] = np.nan, np.nan
    frame = pd.DataFrame({"smiles": SMILES[:n], "y": y, "z": z, "part": ["train"] * 26 + ["val"] * 4 + ["test"] * 10})
    frame.to_csv(path := tmp_path / "multi.csv", index=False)
    code, _, err = run_cli("-q", "prepare", "-d", "molecules", "-o", tmp_path / "prep", "--set", "data.dataset=csv",
                           "--set", f"data.path={path}", "--set", "data.targets=[y, z]", "--set", "data.split=column",
                           "--set", "data.split_column=part", "--set", "pretrain.corpus_size=10")
    assert code == 0, err
    prep = pd.read_csv(tmp_path / "prep" / "molecules.csv")
    assert len(prep) == n - 3 and prep.y.isna().sum() == 11 and prep.z.isna().sum() == 7   # 9, 21, 33: neither
    from core.domain import get_domain
    smoke = [s for s in get_domain("molecules").task("properties").smoke_overrides if not s.startswith("data.")]
    sets = [a for s in ["train.ensemble=1", *smoke] for a in ("--set", s)]
    assert run_cli("-q", "train", "-d", "molecules", "-i", tmp_path / "prep", "-o", tmp_path / "m", *sets)[0] == 0
    code, _, err = run_cli("-q", "evaluate", "-d", "molecules", "-i", tmp_path / "prep", "--model", tmp_path / "m",
                           "-o", tmp_path / "metrics.json", *sets)
    assert code == 0, err
    rows = json.loads((tmp_path / "metrics.json").read_text())["rows"]
    rmse = {(r["task"], r["method"]): r["value"] for r in rows if r["metric"] == "rmse"}
    assert {"regression-y", "regression-z"} == {t for t, _ in rmse} and all(np.isfinite(v) for v in rmse.values())
    assert rows[0]["dataset"] == "multi"
    # the masked loss equals the MSE over the known entries
    out, target = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[1.5, float("nan")], [2.0, 5.0]])
    assert float(regression_loss(out, {"y": target})) == pytest.approx((0.25 + 1 + 1) / 3)


def test_a_molecule_in_two_parts_of_your_split_is_refused(tmp_path, run_cli):
    """Duplicates merge by averaging their targets: a test copy of a training molecule would be trained on."""
    values = ["train"] * 24 + ["val"] * 6 + ["test"] * 10
    frame = pd.DataFrame({"smiles": SMILES[:40] + [SMILES[3]], "y": [*range(40), 99], "part": [*values, "test"]})
    frame.to_csv(tmp_path / "dup.csv", index=False)
    code, _, err = _prepare(run_cli, tmp_path, tmp_path / "dup.csv", "data.split=column", "data.split_column=part")
    assert code != 0 and "1 molecule(s) appear in more than one part of your split" in err
    assert "data row 4 train, data row 41 test" in err
    frame.loc[40, "part"] = "train"                      # the same part: merged, as before, and counted
    frame.to_csv(tmp_path / "dup.csv", index=False)
    code, _, err = _prepare(run_cli, tmp_path, tmp_path / "dup.csv", "data.split=column", "data.split_column=part")
    assert code == 0, err
    prep = pd.read_csv(tmp_path / "prep" / "molecules.csv")
    assert len(prep) == 40 and prep.y[prep.source_row == 3].item() == pytest.approx((3 + 99) / 2)
    rejected = pd.read_csv(tmp_path / "prep" / "rejected.csv")
    assert rejected.duplicate_of.tolist() == [3]


@pytest.mark.parametrize("content, fragment", [
    (b"smiles,y\nCCO,1\nCCN,2,3\n", "malformed table"),
    ("smiles,y\nCCO,\u00e91\n".encode("utf-16"), "not UTF-8 text"),
    (b"", "the file is empty; it needs a header and data rows"),
])
def test_unreadable_own_files_get_a_message_not_a_traceback(tmp_path, run_cli, content, fragment):
    (tmp_path / "bad.csv").write_bytes(content)
    code, _, err = _prepare(run_cli, tmp_path, tmp_path / "bad.csv")
    assert code != 0 and fragment in err and "Traceback" not in err


def test_a_target_too_large_for_its_spread_is_refused_naming_the_row(tmp_path, run_cli):
    frame = pd.DataFrame({"smiles": SMILES[:20], "y": [*range(19), 1e300]})
    frame.to_csv(tmp_path / "huge.csv", index=False)
    code, _, err = _prepare(run_cli, tmp_path, tmp_path / "huge.csv")
    assert code != 0 and "column 'y' reaches 1e+300 (data row 20)" in err and "Traceback" not in err


def test_init_names_the_encoder_settings_it_overrides(tmp_path, run_cli, caplog):
    """The checkpoint fixes the encoder's shape; an encoder.* setting given with --init used to be dropped
    silently (and still recorded in the run's resolved config)."""
    from pathlib import Path
    values = ["train"] * 24 + ["val"] * 6 + ["test"] * 10
    code, _, err = _prepare(run_cli, tmp_path, _file(tmp_path, values), "data.split=column", "data.split_column=part")
    assert code == 0, err
    init = Path(__file__).resolve().parents[1] / "data" / "molecules" / "pretrained"
    with caplog.at_level("WARNING", logger="sciformer"):
        code, _, err = run_cli("-q", "train", "-i", tmp_path / "prep", "-o", tmp_path / "model", "--init", init,
                               "--set", "encoder.d_model=32", "--set", "train.max_steps=1", "--set", "train.ensemble=1",
                               "--set", "train.epochs=1", "--set", "head.forest=false")
    assert code == 0, err
    assert "fixes the encoder's shape: encoder.d_model=32 ignored (the checkpoint has d_model=128)" in caplog.text
