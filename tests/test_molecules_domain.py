"""Molecules through the CLI: preparation outputs, batch prediction status handling, errors before loading."""
from pathlib import Path

import pandas as pd
import pytest

from core.domain import get_domain

TINY = [a for o in get_domain("molecules").task("properties").smoke_overrides for a in ("--set", o)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from core.cli import main
    root = tmp_path_factory.mktemp("mol")
    assert main(["-q", "prepare", "-d", "molecules", "-o", str(root / "prep"), *TINY]) == 0
    assert main(["-q", "train", "-d", "molecules", "-i", str(root / "prep"), "-o", str(root / "run"), *TINY]) == 0
    return root


def test_prepare_writes_splits_rejects_and_resolved_config(trained):
    frame = pd.read_csv(trained / "prep" / "molecules.csv")
    assert set(frame.split) == {"train", "val", "test"} and len(frame) == 60
    resolved = pd.read_json(trained / "prep" / "resolved_config.json", typ="series")
    assert "freesolv.csv" in resolved["data_hashes"] and "train.csv.gz" in resolved["data_hashes"]


@pytest.mark.parametrize("mode, rows", [("mark", 5), ("skip", 2)])
def test_invalid_smiles_never_stop_the_run(trained, tmp_path, run_cli, mode, rows):
    src = tmp_path / "in.csv"
    pd.DataFrame({"smiles": ["CCO", "", "C1CC", "c1ccccc1", "xyz"]}).to_csv(src, index=False)
    out = tmp_path / "out.parquet"
    code, _, err = run_cli("-q", "predict", "-d", "molecules", "-i", src, "-o", out, "--model", trained / "run",
                           "--on-invalid", mode, "--chunk-size", "2")
    assert code == 0, err
    frame = pd.read_parquet(out)
    assert len(frame) == rows
    if mode == "mark":
        assert frame.status.tolist() == ["ok", "empty", "invalid_smiles", "ok", "invalid_smiles"]
        assert frame.expt.isna().tolist() == [False, True, True, False, True]
        assert (frame.expt_unc.dropna() >= 0).all()  # 2-member ensemble spread



@pytest.mark.parametrize(("on_invalid", "precision"), [("mark", "fp32"), ("skip", "fp32"), ("mark", "bf16")])
def test_worker_processes_keep_input_order(trained, tmp_path, run_cli, on_invalid, precision):
    """`predict -j 2`: chunks predicted in worker processes come back in input order, identical to one process
    (also under bf16: the workers get the precision)."""
    src = tmp_path / "in.csv"
    smiles = ["CCO", "c1ccccc1O", "", "CC(=O)O", "xyz", "CCN", "CCCl", "C1CC", "OCCO", "CC(C)O", "c1ccncc1",
              "CCOC", "CCCCO", "ClC(Cl)Cl", "CC#N", "OC1CCCCC1", "CSC"]
    pd.DataFrame({"id": range(len(smiles)), "smiles": smiles}).to_csv(src, index=False)
    frames = []
    for jobs in ("1", "2"):
        out = tmp_path / f"out{jobs}.csv"
        code, _, err = run_cli("-q", "predict", "-d", "molecules", "-i", src, "-o", out, "--model", trained / "run",
                               "--chunk-size", "3", "-j", jobs, "--on-invalid", on_invalid, "--precision", precision)
        assert code == 0, err
        frames.append(pd.read_csv(out))
    serial, parallel = frames
    assert parallel.id.tolist() == serial.id.tolist() and parallel.status.tolist() == serial.status.tolist()
    assert len(serial) == (len(smiles) if on_invalid == "mark" else len(smiles) - 3)
    pd.testing.assert_frame_equal(parallel, serial, atol=1e-6)   # float32 models, same single-thread kernels
    meta = pd.read_json(tmp_path / "out2.csv.meta.json", typ="series")
    assert meta["jobs"] == 2 and meta["precision"] == precision


def test_worker_error_stops_the_run_and_leaves_no_output(trained, tmp_path, run_cli):
    src = tmp_path / "in.csv"
    pd.DataFrame({"smiles": ["CCO"] * 20 + ["C1CC"] + ["CCN"] * 20}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    code, _, err = run_cli("-q", "predict", "-d", "molecules", "-i", src, "-o", out, "--model", trained / "run",
                           "--on-invalid", "error", "--chunk-size", "4", "-j", "2")
    assert code == 2 and "row 21" in err and "C1CC" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))

def test_on_invalid_error_names_the_row_and_leaves_no_output(trained, tmp_path, run_cli):
    src = tmp_path / "in.csv"
    pd.DataFrame({"smiles": ["CCO", "CCC", "C1CC"]}).to_csv(src, index=False)
    out = tmp_path / "out.csv"
    code, _, err = run_cli("-q", "predict", "-d", "molecules", "-i", src, "-o", out, "--model", trained / "run",
                           "--on-invalid", "error", "--chunk-size", "2")
    assert code == 2 and "row 3" in err and "C1CC" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("content, message", [
    ("", "empty"),
    ("id,structure\n1,CCO\n", "missing column(s) ['smiles']"),
    ("smiles,smiles\nCCO,CCO\n", "appear more than once"),
])
def test_bad_files_fail_before_the_model_loads(trained, tmp_path, run_cli, content, message):
    src = tmp_path / "in.csv"
    src.write_text(content)
    code, _, err = run_cli("-q", "predict", "-d", "molecules", "-i", src, "-o", tmp_path / "o.csv",
                           "--model", trained / "run")
    assert code == 2 and message in err, err


def test_wrong_model_dir_and_extension(trained, tmp_path, run_cli):
    code, _, err = run_cli("predict", "-d", "molecules", "-i", tmp_path / "x.csv", "-o", tmp_path / "o.csv",
                           "--model", tmp_path)
    assert code == 2 and "not a trained model" in err
    code, _, err = run_cli("predict", "-d", "molecules", "-i", tmp_path / "x.csv", "-o", tmp_path / "o.xlsx",
                           "--model", trained / "run")
    assert code == 2 and ".csv or .parquet" in err


def test_validate_checks_an_input_against_a_model(trained, tmp_path, run_cli):
    src = tmp_path / "in.csv"
    pd.DataFrame({"smiles": ["CCO"]}).to_csv(src, index=False)
    code, out, err = run_cli("validate", "-d", "molecules", "-i", src, "--model", trained / "run")
    assert code == 0 and "input OK" in out, err


def test_same_seed_same_metrics(trained, tmp_path, run_cli):
    """Determinism end to end: retraining with the same config and seed gives identical test metrics."""
    import json
    metrics = []
    for k in range(2):
        run = tmp_path / f"run{k}"
        assert run_cli("-q", "train", "-d", "molecules", "-i", trained / "prep", "-o", run, *TINY)[0] == 0
        assert run_cli("-q", "evaluate", "-d", "molecules", "-i", trained / "prep", "--model", run,
                       "-o", tmp_path / f"m{k}.json", *TINY)[0] == 0
        rows = json.loads((tmp_path / f"m{k}.json").read_text())["rows"]
        metrics.append({(r["method"], r["metric"]): r["value"] for r in rows})
    assert metrics[0] == metrics[1]


def test_parallel_members_match_serial(trained, tmp_path, run_cli):
    """`train -j 2` (members in worker processes) gives exactly the weights of a serial run."""
    from safetensors.torch import load_file
    assert run_cli("-q", "train", "-d", "molecules", "-i", trained / "prep", "-o", tmp_path / "par", "-j", "2",
                   *TINY)[0] == 0
    for k in range(2):
        serial = load_file(str(trained / "run" / f"member_{k}" / "model.safetensors"))
        parallel = load_file(str(tmp_path / "par" / f"member_{k}" / "model.safetensors"))
        assert all((serial[n] == parallel[n]).all() for n in serial)


def test_graph_view_trains_and_predicts(trained, tmp_path, run_cli, caplog):
    """features.graph_dim adds a torch-geometric GINE view of the molecule beside the SMILES encoder."""
    sets = [*TINY, "--set", "features.graph_dim=16", "--set", "train.ensemble=1"]
    assert run_cli("-q", "train", "-d", "molecules", "-i", trained / "prep", "-o", tmp_path / "g", *sets)[0] == 0
    src = tmp_path / "in.csv"
    pd.DataFrame({"smiles": ["CCO", "bad(", "c1ccccc1O"]}).to_csv(src, index=False)
    out = tmp_path / "o.csv"
    code, _, err = run_cli("-q", "predict", "-d", "molecules", "-i", src, "-o", out, "--model", tmp_path / "g")
    assert code == 0, err
    assert pd.read_csv(tmp_path / "o.csv").status.tolist() == ["ok", "invalid_smiles", "ok"]
    code, printed, err = run_cli("predict", "-d", "molecules", "-i", src, "-o", tmp_path / "s.csv", "--model",
                                 tmp_path / "g", "--on-invalid", "skip")
    assert code == 0, err
    assert len(pd.read_csv(tmp_path / "s.csv")) == 2 and "(2 output rows; 1 skipped as invalid)" in printed
    src.write_text("smiles\nbad(\n")                      # every row invalid: the counts still say so
    code, printed, err = run_cli("predict", "-d", "molecules", "-i", src, "-o", tmp_path / "none.csv", "--model",
                                 tmp_path / "g", "--on-invalid", "skip")
    assert code == 0 and "(0 output rows; 1 skipped as invalid)" in printed and "invalid_smiles" in printed
    assert "every row was skipped as invalid" in caplog.text


def test_changed_config_never_reuses_stale_members(trained, tmp_path, run_cli):
    """Re-running train into the same directory keeps members only if config, data and init are unchanged."""
    import json
    run = tmp_path / "run"
    assert run_cli("-q", "train", "-d", "molecules", "-i", trained / "prep", "-o", run, *TINY)[0] == 0
    first = json.loads((run / "member_0" / "meta.json").read_text())["train_seconds"]
    assert run_cli("-q", "train", "-d", "molecules", "-i", trained / "prep", "-o", run, *TINY)[0] == 0
    assert json.loads((run / "member_0" / "meta.json").read_text())["train_seconds"] == first  # reused
    assert run_cli("-q", "train", "-d", "molecules", "-i", trained / "prep", "-o", run, *TINY,
                   "--set", "head.dropout=0.3")[0] == 0
    meta = json.loads((run / "member_0" / "meta.json").read_text())
    assert meta["task"]["dropout"] == 0.3  # retrained, not the stale member


def test_finetuning_takes_the_attention_implementation_from_the_config(tmp_path, run_cli):
    """An encoder pretrained with `linear` fine-tunes with another linear backend; a softmax one is refused."""
    import json
    prep = tmp_path / "prep"
    assert run_cli("-q", "prepare", "-d", "molecules", "-o", prep, *TINY)[0] == 0
    assert run_cli("-q", "train", "-d", "molecules", "--stage", "pretrain", "-i", prep, "-o", tmp_path / "pre",
                   *TINY)[0] == 0
    code, _, err = run_cli("-q", "train", "-d", "molecules", "-i", prep, "-o", tmp_path / "ft", "--init",
                           tmp_path / "pre", *TINY, "--set", "train.ensemble=1", "--set", "encoder.attention=linear_op")
    assert code == 0, err
    meta = json.loads((tmp_path / "ft" / "member_0" / "meta.json").read_text())
    assert meta["task"]["encoder"]["attention"] == "linear_op"
    code, _, err = run_cli("-q", "train", "-d", "molecules", "-i", prep, "-o", tmp_path / "bad", "--init",
                           tmp_path / "pre", *TINY, "--set", "encoder.attention=sdpa")
    assert code == 2 and "trained with linear attention" in err


def test_parquet_output_survives_chunks_of_different_types(trained, tmp_path, run_cli):
    """First chunk all-empty SMILES, then text: types must not be fixed by what pandas guessed first."""
    src = tmp_path / "in.csv"
    src.write_text("id,smiles\n1,\n2,\n3,CCO\n4,CCC\n5,\n")
    for mode, rows in (("mark", 5), ("skip", 2)):
        out = tmp_path / f"{mode}.parquet"
        code, _, err = run_cli("-q", "predict", "-d", "molecules", "-i", src, "-o", out, "--model", trained / "run",
                               "--chunk-size", "2", "--on-invalid", mode)
        assert code == 0, err
        assert len(pd.read_parquet(out)) == rows


def test_header_only_and_pretrain_runs_are_refused(trained, tmp_path, run_cli):
    src = tmp_path / "in.csv"
    src.write_text("smiles\n")
    out = tmp_path / "o.csv"
    code, _, err = run_cli("-q", "predict", "-d", "molecules", "-i", src, "-o", out, "--model", trained / "run")
    assert code == 2 and "no data rows" in err and not (tmp_path / "o.csv").exists()
    src.write_text("smiles\nCCO\n")
    pretrained = Path(__file__).resolve().parents[1] / "data" / "molecules" / "pretrained"
    code, _, err = run_cli("-q", "predict", "-d", "molecules", "-i", src, "-o", out, "--model", pretrained)
    assert code == 2 and "'pretrain' run" in err
