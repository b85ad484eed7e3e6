"""Prediction at scale: split -> predict shards -> gather equals one predict over the whole input (rows in the
original order, one .meta.json), for a table and for a folder of files; a rerun after a lost shard predicts only
that shard. Uses the tests' example domain."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from core.shards import gather, split

ROOT = Path(__file__).resolve().parents[1]


def test_split_keeps_rows_text_and_order(tmp_path):
    src = tmp_path / "in.csv"
    src.write_text("id,digits,note\n" + "".join(f"{i:03d},{i % 10}{i % 7},{'NA' if i % 5 == 0 else ''}\n"
                                                 for i in range(23)))
    paths = split(src, tmp_path / "shards", 4)
    parts = [pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths]
    assert [len(p) for p in parts] == [6, 6, 6, 5]
    whole = pd.concat(parts, ignore_index=True)
    assert whole.equals(pd.read_csv(src, dtype=str, keep_default_na=False))   # 007 stays 007, NA stays NA
    more = split(src, tmp_path / "many", 30)   # more shards than rows: the rest are header-only
    assert sum(len(pd.read_csv(p)) for p in more) == 23 and len(more) == 30


def test_split_a_folder_into_manifests(tmp_path):
    for i in range(5):
        np.save(tmp_path / f"s{i}.npy", np.arange(3.0))
    paths = split(tmp_path, tmp_path / "shards", 2)
    listed = [pd.read_csv(p)["path"].tolist() for p in paths]
    assert [len(x) for x in listed] == [3, 2] and all(Path(p).is_absolute() for x in listed for p in x)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from core.cli import main
    tmp = tmp_path_factory.mktemp("model")
    sets = ["--set", "task=mean", "--set", "train.ensemble=1"]
    assert main(["-q", "prepare", "-d", "tiny", "-o", str(tmp / "prep"), *sets]) == 0
    assert main(["-q", "train", "-d", "tiny", "-i", str(tmp / "prep"), "-o", str(tmp / "run"), *sets]) == 0
    return tmp / "run"


def test_gather_equals_one_prediction(model, tmp_path, run_cli):
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"id": [f"m{i:04d}" for i in range(250)],
                          "digits": ["".join(map(str, rng.integers(0, 10, rng.integers(1, 12)))) for _ in range(250)]})
    frame.loc[7, "digits"] = "x1"   # a row the model cannot read keeps its place and status
    frame.to_csv(tmp_path / "big.csv", index=False)
    assert run_cli("-q", "predict", "-d", "tiny", "-i", tmp_path / "big.csv", "-o", tmp_path / "one.csv",
                   "--model", model)[0] == 0
    shards = split(tmp_path / "big.csv", tmp_path / "shards", 3)
    parts = []
    for s in shards:
        part = tmp_path / "parts" / (s.stem + ".csv")
        assert run_cli("-q", "predict", "-d", "tiny", "-i", s, "-o", part, "--model", model)[0] == 0
        parts.append(part)
    meta = gather(parts, tmp_path / "all.csv")
    one, whole = (pd.read_csv(tmp_path / n, dtype={"id": str, "digits": str}) for n in ("one.csv", "all.csv"))
    assert whole[["id", "digits", "status"]].equals(one[["id", "digits", "status"]])   # same rows, same order
    # float32 inference: batch composition changes the last bits only
    np.testing.assert_allclose(whole[["y", "y_unc"]], one[["y", "y_unc"]], rtol=1e-5, atol=1e-6)
    assert meta["rows_in"] == 250 and meta["status"] == {"ok": 249, "not_digits": 1} and len(meta["shards"]) == 3
    assert json.loads((tmp_path / "all.csv.meta.json").read_text())["rows_out"] == 250


@pytest.mark.slow
def test_sharded_workflow_reruns_only_a_lost_shard(model, tmp_path):
    work = tmp_path / "w"
    work.mkdir()
    for name in ("Snakefile", "workflows", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    pd.DataFrame({"digits": [str(i) * (1 + i % 9) for i in range(90)]}).to_csv(work / "big.csv", index=False)
    config = work / "sharded.yaml"
    config.write_text(yaml.safe_dump({"sciformer": "sciformer", "domains": {"tiny": {}},
                                      "sharded": {"screen": {"domain": "tiny", "model": str(model),
                                                             "input": "big.csv", "shards": 3}}}))
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(work),
           "SCIFORMER_DOMAIN_PATH": str(ROOT / "tests" / "example_domains")}

    def snakemake(*args):
        done = subprocess.run([sys.executable, "-m", "snakemake", "-c2", f"--configfile={config}", *args],
                              cwd=work, capture_output=True, text=True, env=env)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return done.stdout + done.stderr

    snakemake("sharded")
    out = work / "results/sharded/screen/predictions.csv"
    first = out.read_text()
    assert len(pd.read_csv(out)) == 90
    # the state a failed shard job leaves (e.g. killed by scancel): its part and the gathered output missing
    shutil.rmtree(work / "results/sharded/screen/parts/shard-0001")
    (work / "results/sharded/screen/gathered.done").unlink()
    log = snakemake("sharded")
    assert log.count("rule shard_predict:") == 1 and "wildcards: job=screen, k=0001" in log
    assert "rule shard_split:" not in log and "rule shard_gather:" in log
    assert out.read_text() == first
