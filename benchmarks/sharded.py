"""Sharded batch prediction: distinct MOSES molecules through the workflow's `sharded` target (split -> one
`sciformer predict` job per shard -> gather), on 1 and on 2 local cores (and, with --slurm, as sbatch jobs on the
local cluster of env/slurm-local.sh), against one plain `sciformer predict` of the whole input on one core.

The same input, model and shard count in every run: only the cores (Snakemake's -c) change. Each run is the whole
`snakemake` command, timed, in a fresh work folder. Rows (task `predict-sharded`, dataset `moses-test`, split
`<n>-molecules`): method `sciformer-predict` (one process) and `sciformer-sharded-<c>core` / `-slurm`, metrics
`molecules_per_s`, `peak_rss_mb` (the largest shard job's max_rss from Snakemake's benchmark files; the whole
command's for the plain predict), `speedup_vs_predict` (molecules/s over the plain predict's) and, for 2 cores,
`scaling_efficiency` (molecules/s at 2 cores over twice that at 1). Every run uses one `--precision` (recorded in
the rows); `--no-reference` skips the plain predict (and so `speedup_vs_predict`) where its hours are not affordable.

    python -m benchmarks.sharded --model results/molecules/properties/model            # 20,000 molecules
    python -m benchmarks.sharded --model RUN --n 1000000 --shards 16 --slurm --commit   # the issue's full size
    python -m benchmarks.sharded --model RUN --n 1000000 --shards 16 --slurm --precision bf16 --no-reference --commit
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import yaml

from benchmarks.common import ONE_THREAD, ROOT, print_table, write_rows
from benchmarks.memory import peak_rss_mb
from benchmarks.molecules import moses_input

OUT = ROOT / "results" / "sharded" / "bench"


def sharded_run(work: Path, model: Path, source: Path, shards: int, cores: int, slurm: bool,
                precision: str = "fp32") -> tuple[float, float]:
    """(seconds of the whole snakemake command, the largest shard job's max_rss in MB) in a fresh work folder."""
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    for name in ("Snakefile", "workflows", "profiles"):
        src = ROOT / name
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / name)
    config = work / "sharded.yaml"
    config.write_text(yaml.safe_dump({"sciformer": "sciformer", "domains": {"molecules": {}},
                                      "sharded": {"bench": {"domain": "molecules", "model": str(model.resolve()),
                                                            "input": str(source.resolve()), "shards": shards,
                                                            "precision": precision}}}))
    cmd = [sys.executable, "-m", "snakemake", f"--configfile={config}", "sharded"]
    cmd += ["--workflow-profile", str(work / "profiles" / "slurm-local")] if slurm else [f"-c{cores}"]
    env = {**os.environ, **ONE_THREAD, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    jobs = work.glob("results/sharded/bench/benchmarks/predict-*.tsv")      # Snakemake's per-job benchmark files
    rss = [pd.read_csv(p, sep="\t")["max_rss"].max() for p in jobs]
    return seconds, float(max(rss))


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, required=True, help="a trained molecules run (e.g. the workflow's)")
    parser.add_argument("--n", type=int, default=20_000, help="distinct MOSES test molecules (beyond 176k: "
                                                               "sampled with replacement from the training set)")
    parser.add_argument("--shards", type=int, default=4, help="shards in every sharded run")
    parser.add_argument("--cores", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--slurm", action="store_true", help="also run through profiles/slurm-local (cluster up)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32", help="predict --precision, every run")
    parser.add_argument("--no-reference", action="store_true", help="skip the one-process predict of the whole input")
    parser.add_argument("--commit", action="store_true", help="also write benchmarks/results/sharded-<machine>.json")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    moses_set = "test" if args.n <= 176_074 else "train"      # the test set's distinct SMILES, while they last
    source = moses_input(args.n, OUT / f"moses_{args.n}.csv", source=moses_set)
    base = {"task": "predict-sharded", "dataset": f"moses-{moses_set}",
            "split": f"{args.n}-molecules", "shards": args.shards, "precision": args.precision}
    rows, reference = [], None
    if not args.no_reference:
        mb, seconds = peak_rss_mb([sys.executable, "-m", "core.cli", "-q", "predict", "-d", "molecules", "-i",
                                   str(source), "-o", str(OUT / "one" / "predictions.csv"), "--model", str(args.model),
                                   "--precision", args.precision])
        reference = args.n / seconds
        print(f"one predict process: {seconds:.0f} s, {reference:.1f} molecules/s, peak {mb:.0f} MB", flush=True)
        rows += [{**base, "method": "sciformer-predict", "metric": "molecules_per_s", "value": reference},
                 {**base, "method": "sciformer-predict", "metric": "peak_rss_mb", "value": mb}]
    rates = {}
    runs = [(f"sciformer-sharded-{c}core", c, False) for c in args.cores] + (
        [("sciformer-sharded-slurm", 2, True)] if args.slurm else [])
    for method, cores, slurm in runs:
        seconds, rss = sharded_run(OUT / method, args.model, source, args.shards, cores, slurm, args.precision)
        rates[method] = rate = args.n / seconds
        print(f"{method}: {seconds:.0f} s, {rate:.1f} molecules/s, largest job {rss:.0f} MB", flush=True)
        rows += [{**base, "method": method, "metric": "molecules_per_s", "value": rate},
                 {**base, "method": method, "metric": "peak_rss_mb", "value": rss}]
        if reference:
            rows.append({**base, "method": method, "metric": "speedup_vs_predict", "value": rate / reference})
        write_rows("sharded", rows, args.commit)     # after every run: an hours-long benchmark keeps what it measured
    one, two = rates.get("sciformer-sharded-1core"), rates.get("sciformer-sharded-2core")
    if one and two:
        rows.append({**base, "method": "sciformer-sharded-2core", "metric": "scaling_efficiency",
                     "value": two / (2 * one)})
    print_table(rows)
    print(f"rows: {write_rows('sharded', rows, args.commit)}")
    return rows


if __name__ == "__main__":
    main()
