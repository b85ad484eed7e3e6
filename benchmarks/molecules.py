"""Molecules benchmark: sciformer vs baselines (and chemprop, when installed) on identical splits.

FreeSolv: 5 balanced-scaffold splits (0.8/0.1/0.1, seeds 0-4). Solubility (Huuskonen): the original
257-molecule test set. Every method is trained and scored in this run on the same molecules; the script
also measures batch-prediction throughput (molecules/s). Prints a table and writes the rows to
results/molecules/benchmark.json (and, with --commit, benchmarks/results/molecules-<machine>.json).

    python benchmarks/molecules.py                      # full run (about an hour on 2 CPU cores)
    python benchmarks/molecules.py --replicates 0 --skip-solubility   # quick look
    python benchmarks/molecules.py --chemprop           # also chemprop 2.3.1 in its own venv (peers.py)
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("OMP_NUM_THREADS", "1")

from core.io import atomic_path, write_json  # noqa: E402
from core.metrics import machine_label  # noqa: E402

OUT = ROOT / "results" / "molecules" / "bench"


def sciformer(*args: str) -> None:
    cmd = [sys.executable, "-m", "core.cli", "-q", *args]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")


def run_split(dataset: str, split: str, replicate: int, init: Path | None, sets: list[str],
              member_jobs: int = 1) -> list[dict]:
    """prepare -> train (ensemble) -> evaluate for one split; returns the evaluate rows (model + baselines)."""
    name = f"{dataset}-{split}-{replicate}"
    work = OUT / name
    common = ["-d", "molecules", "--set", f"data.dataset={dataset}", "--set", f"data.split={split}",
              "--set", f"data.replicate={replicate}", *[a for s in sets for a in ("--set", s)]]
    t0 = time.perf_counter()
    sciformer("prepare", *common, "-o", str(work / "prepared"))
    sciformer("train", *common, "-i", str(work / "prepared"), "-o", str(work / "model"), "-j", str(member_jobs),
              *(["--init", str(init)] if init else []))
    sciformer("evaluate", *common, "-i", str(work / "prepared"), "--model", str(work / "model"),
              "-o", str(work / "metrics.json"))
    rows = json.loads((work / "metrics.json").read_text())["rows"]
    print(f"  {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def throughput(model: Path, n: int = 5000) -> list[dict]:
    """Batch prediction speed of `sciformer predict` on n unseen MOSES test molecules (one CPU thread)."""
    import importlib.util
    root = Path(list(importlib.util.find_spec("moses").submodule_search_locations)[0])
    smiles = pd.read_csv(root / "dataset/data/test.csv.gz")["SMILES"].sample(n, random_state=0)
    src = OUT / "throughput_input.csv"
    with atomic_path(src) as tmp:
        pd.DataFrame({"smiles": smiles}).to_csv(tmp, index=False)
    t0 = time.perf_counter()
    sciformer("predict", "-d", "molecules", "-i", str(src), "-o", str(OUT / "throughput_output.csv"),
              "--model", str(model))
    seconds = time.perf_counter() - t0
    return [{"task": "predict-throughput", "dataset": "moses-test", "split": f"{n}-molecules",
             "method": "sciformer", "metric": "molecules_per_s", "value": n / seconds}]


def summarize(rows: list[dict]) -> list[dict]:
    """Per-split rows plus the mean and std over replicates, per dataset/method/metric."""
    frame = pd.DataFrame([r for r in rows if r["metric"] in ("rmse", "mae", "r2")])
    out = []
    for (task, dataset, method, metric), group in frame.groupby(["task", "dataset", "method", "metric"]):
        if len(group) > 1:
            out.append({"task": task, "dataset": dataset, "split": "mean", "method": method, "metric": metric,
                        "value": float(group.value.mean())})
            out.append({"task": task, "dataset": dataset, "split": "std", "method": method, "metric": metric,
                        "value": float(group.value.std(ddof=0))})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, nargs="*", default=[0, 1, 2, 3, 4],
                        help="FreeSolv scaffold-split seeds (none: skip FreeSolv)")
    parser.add_argument("--skip-solubility", action="store_true")
    parser.add_argument("--init", type=Path, default=ROOT / "data/molecules/pretrained",
                        help="pretrained encoder to fine-tune from ('' for none)")
    parser.add_argument("--set", action="append", default=[], help="extra sciformer overrides")
    parser.add_argument("--jobs", type=int, default=2, help="splits run in parallel (one thread each)")
    parser.add_argument("--member-jobs", type=int, default=1, help="ensemble members trained in parallel per split")
    parser.add_argument("--chemprop", action="store_true", help="also run chemprop 2.3.1 (own venv)")
    parser.add_argument("--commit", action="store_true", help="also write benchmarks/results/molecules-<machine>.json")
    args = parser.parse_args()
    init = args.init if str(args.init) and (args.init / "run.json").exists() else None
    if init is None:
        print("note: no pretrained encoder found; fine-tuning from scratch")
    jobs = [("freesolv", "scaffold_balanced", r) for r in args.replicates]
    if not args.skip_solubility:
        jobs.append(("solubility", "predefined", 0))
    print(f"running {len(jobs)} splits, {args.jobs} at a time", flush=True)
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda j: run_split(*j, init, args.set, args.member_jobs), jobs))
    rows = [r for part in results for r in part]
    first = OUT / f"{jobs[0][0]}-{jobs[0][1]}-{jobs[0][2]}"
    if args.chemprop:  # same prepared splits (chemprop reads our `split` column), same run
        from benchmarks.peers import ensure_chemprop, run_chemprop
        ensure_chemprop()
        with ThreadPoolExecutor(args.jobs) as pool:
            peer = pool.map(lambda j: run_chemprop(OUT / f"{j[0]}-{j[1]}-{j[2]}", j[0], f"{j[1]}-{j[2]}"), jobs)
            rows += [r for part in peer for r in part]
    rows += throughput(first / "model")
    if args.chemprop:
        from benchmarks.peers import chemprop_throughput
        rows.append(chemprop_throughput(first, OUT / "throughput_input.csv"))
    rows += summarize(rows)
    machine = machine_label()
    rows = [{**{k: r[k] for k in ("task", "dataset", "split", "method", "metric", "value")}, "machine": machine}
            for r in rows]
    table = pd.DataFrame([r for r in rows if r["metric"] == "rmse"])
    print(table.pivot_table(index="method", columns=["dataset", "split"], values="value").round(3).to_string())
    for r in rows:
        if r["metric"] == "molecules_per_s":
            print(f"{r['method']} batch prediction: {r['value']:.0f} molecules/s on {machine}")
    write_json(ROOT / "results/molecules/benchmark.json", rows)
    if args.commit:  # replace the rows of what was re-run; keep the other datasets' rows of earlier runs
        committed = ROOT / f"benchmarks/results/molecules-{machine}.json"
        rerun = {r["dataset"] for r in rows}
        kept = [r for r in json.loads(committed.read_text()) if r["dataset"] not in rerun] if committed.exists() else []
        write_json(committed, kept + rows)


if __name__ == "__main__":
    main()
