"""Molecules benchmark: sciformer vs baselines and chemprop on identical splits, plus batch-prediction speed.

- FreeSolv: 5 balanced-scaffold splits (0.8/0.1/0.1, seeds 0-4); per-split differences sciformer - chemprop
  (mean and std over the splits) for every chemprop variant (benchmarks/peers.py).
- Solubility, RDKit's 1025/257 demo split (the molecules are Huuskonen's, the split is RDKit's, not Huuskonen's
  published one); validation carved from the 1025.
- Bioactivity: MoleculeACE's ChEMBL sets (Ki/EC50, fixed train/test column, activity-cliff flags) from the
  MoleculeACE wheel, read through `data.split=column`; baselines RF (500 trees) and SVM (Tanimoto kernel, C by
  5-fold CV on the training rows) on 1024-bit Morgan fingerprints; RMSE also on the test molecules flagged as
  activity cliffs.
- predict-throughput: `sciformer predict` and `chemprop predict`, whole commands, on the same 5,000 unseen MOSES
  test molecules, same run, 1 and 2 threads. `--million`: a 1,000,000-row run (and a 100,000-row one): molecules/s,
  peak RSS and time to the first output row.

    python -m benchmarks.molecules --chemprop             # the full run (hours on 2 shared CPU cores)
    python -m benchmarks.molecules --replicates 0 --skip-solubility --moleculeace   # a quick look
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from benchmarks.common import ONE_THREAD, ROOT, normalized, print_table, run_cli, sets, write_rows
from core.io import atomic_path, write_json
from core.metrics import REGRESSION_METRICS, rmse

OUT = ROOT / "results" / "molecules" / "bench"
TARGETS = {"freesolv": "expt", "solubility": "solubility"}
# the three smallest Ki sets of MoleculeACE (a size rule: cheap to run; no result was looked at to pick them)
MOLECULEACE_SETS = ("CHEMBL2835_Ki", "CHEMBL4203_Ki", "CHEMBL2034_Ki")
TINY = ("data.max_molecules=60", "train.max_steps=3", "train.epochs=1", "train.ensemble=2",
        "encoder.d_model=32", "encoder.n_layers=1", "encoder.d_ff=64", "head.hidden=16")


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None:
        raise SystemExit(f"package {name} is not installed (pip install --no-deps, see env/install.sh)")
    return Path(list(spec.submodule_search_locations)[0])


def moleculeace_file(name: str) -> Path:
    return package_dir("MoleculeACE") / "Data" / "benchmark_data" / f"{name}.csv"


def job_sets(dataset: str, split: str, replicate: int) -> list[str]:
    if dataset in TARGETS:
        return [f"data.dataset={dataset}", f"data.split={split}", f"data.replicate={replicate}"]
    return ["data.dataset=csv", f"data.path={moleculeace_file(dataset)}", "data.targets=[y]", "data.split=column",
            "data.split_column=split", f"data.replicate={replicate}"]


def run_split(dataset: str, split: str, replicate: int, init: Path | None, extra: list[str],
              out: Path) -> list[dict]:
    """prepare -> train (ensemble) -> evaluate for one split; returns the evaluate rows (model + baselines)."""
    work = out / f"{dataset}-{split}-{replicate}"
    common = ["-d", "molecules", *sets(job_sets(dataset, split, replicate) + extra)]
    t0 = time.perf_counter()
    run_cli("prepare", *common, "-o", str(work / "prepared"))
    run_cli("train", *common, "-i", str(work / "prepared"), "-o", str(work / "model"),
            *(["--init", str(init)] if init else []))
    run_cli("evaluate", *common, "-i", str(work / "prepared"), "--model", str(work / "model"),
            "-o", str(work / "metrics.json"))
    rows = json.loads((work / "metrics.json").read_text())["rows"]
    if dataset not in TARGETS:
        rows += bioactivity_rows(dataset, work, f"{split}-{replicate}")
    print(f"  {work.name}: {time.perf_counter() - t0:.0f} s", flush=True)
    return rows


def tanimoto(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = a.astype(np.float64) @ b.T.astype(np.float64)
    return inter / (a.sum(1)[:, None] + b.sum(1)[None, :] - inter + 1e-12)


def bioactivity_rows(dataset: str, work: Path, split: str) -> list[dict]:
    """RF and SVM on 1024-bit Morgan fingerprints (train+val -> test), and every method's RMSE on the test
    molecules MoleculeACE flags as activity cliffs."""
    from sklearn.ensemble import RandomForestRegressor
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVR

    from domains.molecules.chem import canonicalize
    from domains.molecules.features import morgan_fingerprints
    frame = pd.read_csv(work / "prepared" / "molecules.csv")
    fit, test = frame[frame.split != "test"], frame[frame.split == "test"]
    x_fit, x_test = (morgan_fingerprints(p.smiles.tolist(), n_bits=1024) for p in (fit, test))
    rf = RandomForestRegressor(n_estimators=500, n_jobs=1, random_state=0).fit(x_fit, fit.y)
    svm = GridSearchCV(SVR(kernel="precomputed"), {"C": [0.1, 1.0, 10.0]}, cv=5,
                       scoring="neg_root_mean_squared_error").fit(tanimoto(x_fit, x_fit), fit.y)
    preds = {"rf-morgan1024": rf.predict(x_test), "svm-morgan1024": svm.predict(tanimoto(x_test, x_fit))}
    evaluated = pd.read_csv(work / "metrics_predictions.csv")
    preds["sciformer"] = evaluated.set_index("smiles").loc[test.smiles, "y_pred_sciformer"].to_numpy()
    raw = pd.read_csv(moleculeace_file(dataset))
    cliff = dict(zip((canonicalize(s)[0] for s in raw.smiles), raw.cliff_mol))
    is_cliff = test.smiles.map(cliff).fillna(0).to_numpy(bool)
    rows = [{"task": "regression-y", "dataset": dataset, "split": split, "method": m, "metric": metric,
             "value": fn(test.y.to_numpy(), p)} for m, p in preds.items() if m != "sciformer"
            for metric, fn in REGRESSION_METRICS.items()]
    rows += [{"task": "regression-y", "dataset": dataset, "split": split, "method": m, "metric": "rmse_cliffs",
              "value": rmse(test.y.to_numpy()[is_cliff], p[is_cliff])} for m, p in preds.items() if is_cliff.any()]
    return rows


def chemprop_rows(job, label: str, out: Path, epochs: int | None) -> list[dict]:
    """Every chemprop variant on the split sciformer prepared for `job` (rows labelled like sciformer's)."""
    from benchmarks.peers import VARIANTS, run_chemprop
    dataset, split, replicate = job
    work = out / f"{dataset}-{split}-{replicate}"
    return [row for v in VARIANTS for row in run_chemprop(work, dataset, TARGETS.get(dataset, "y"), label, v, epochs)]


def paired_differences(rows: list[dict], ours: str = "sciformer") -> list[dict]:
    """Per split RMSE(ours) - RMSE(peer) for every peer method, summarized as mean and std over the splits of
    a dataset that has more than one split (FreeSolv)."""
    frame = pd.DataFrame([r for r in rows if r["metric"] == "rmse" and r["split"] not in ("mean", "std")])
    out = []
    for (task, dataset), group in frame.groupby(["task", "dataset"]):
        table = group.pivot_table(index="split", columns="method", values="value", aggfunc="first")
        if ours not in table or len(table) < 2:
            continue
        for peer in [c for c in table.columns if c != ours]:
            diff = (table[ours] - table[peer]).dropna()
            for split, value in (("paired-mean", diff.mean()), ("paired-std", diff.std(ddof=1))):
                out.append({"task": task, "dataset": dataset, "split": split, "method": f"{ours}-minus-{peer}",
                            "metric": "rmse_diff", "value": float(value)})
    return out


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and std over the splits of each dataset/method/metric with more than one split, and over the
    MoleculeACE sets (dataset `moleculeace`)."""
    frame = pd.DataFrame([r for r in rows if r["metric"] in ("rmse", "mae", "r2", "rmse_cliffs")
                          and "-" in r["split"]])
    if frame.empty:
        return []
    frame.loc[frame.dataset.str.startswith("CHEMBL"), "dataset"] = "moleculeace"
    out = []
    for (task, dataset, method, metric), group in frame.groupby(["task", "dataset", "method", "metric"]):
        if len(group) > 1:
            for split, value in (("mean", group.value.mean()), ("std", group.value.std(ddof=0))):
                out.append({"task": task, "dataset": dataset, "split": split, "method": method, "metric": metric,
                            "value": float(value)})
    return out


def moses_input(n: int, path: Path, source: str = "test", replace: bool = False) -> Path:
    smiles = pd.read_csv(package_dir("moses") / f"dataset/data/{source}.csv.gz")["SMILES"]
    smiles = smiles.sample(n, random_state=0, replace=replace or n > len(smiles))
    with atomic_path(path) as tmp:
        pd.DataFrame({"smiles": smiles.to_numpy()}).to_csv(tmp, index=False)
    return path


def _first_rows_written(dst: Path) -> bool:
    """Whether `predict` has written its first rows to dst's staging folder (`.<name>.partial-*/<name>`, renamed
    into place at the end): the header alone is under 200 bytes."""
    try:
        return any(f.is_file() and f.stat().st_size > 200
                   for staging in dst.parent.glob(f".{dst.name}.partial-*") for f in staging.iterdir())
    except FileNotFoundError:    # the staging folder was just renamed into place: the command is finishing
        return False


def watched_predict(model: Path, src: Path, dst: Path, threads: int, jobs: int = 1) -> dict:
    """`sciformer predict` as a user runs it: seconds, peak RSS (MiB) and seconds until the first output row
    reaches the (temporary, renamed at the end) output file."""
    env = {**os.environ, **ONE_THREAD, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "core.cli", "-q", "predict", "-d", "molecules", "-i", str(src), "-o", str(dst),
           "--model", str(model), "--set", f"train.threads={threads}", "-j", str(jobs)]
    first, t0 = None, time.perf_counter()
    with open(dst.with_suffix(".log"), "w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)
        while True:  # wait4 (not poll): it also returns the finished child's peak RSS
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if first is None and _first_rows_written(dst):
                first = time.perf_counter() - t0
            time.sleep(0.05)
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"failed: {' '.join(cmd)} (see {dst.with_suffix('.log')})")
    return {"seconds": seconds, "first_row_s": first if first is not None else seconds,
            "peak_rss_mib": usage.ru_maxrss / 1024}  # Linux: KiB


def throughput_rows(model: Path, chemprop_work: Path | None, n: int, threads: list[int], out: Path) -> list[dict]:
    src = moses_input(n, out / f"throughput_{n}.csv")
    dataset, split, rows = "moses-test", f"{n}-molecules", []
    for t in threads:
        for method, precision in (("sciformer", "fp32"), ("sciformer-bf16", "bf16")):
            dst = out / f"throughput_{precision}.csv"
            seconds = run_cli("predict", "-d", "molecules", "-i", str(src), "-o", str(dst), "--model", str(model),
                              "--set", f"train.threads={t}", "--precision", precision, threads=t)
            rows.append({"task": "predict-throughput", "dataset": dataset, "split": split, "method": method,
                         "metric": "molecules_per_s", "value": n / seconds, "threads": t})
        rows += precision_rows(out / "throughput_fp32.csv", out / "throughput_bf16.csv", dataset, split, t)
        if chemprop_work is not None:
            from benchmarks.peers import VARIANTS, chemprop_predict_seconds
            for variant in VARIANTS:
                seconds = chemprop_predict_seconds(chemprop_work, variant, src, out / "throughput_cp.csv", t)
                rows.append({"task": "predict-throughput", "dataset": dataset, "split": split, "method": variant,
                             "metric": "molecules_per_s", "value": n / seconds, "threads": t})
    return rows


def precision_rows(fp32: Path, bf16: Path, dataset: str, split: str, threads: int) -> list[dict]:
    """How far `--precision bf16` moves the predictions from fp32's, in target units (kcal/mol for FreeSolv)."""
    a, b = pd.read_csv(fp32), pd.read_csv(bf16)
    targets = [c for c in a.columns if f"{c}_unc" in a.columns]
    diff = np.abs(a[targets].to_numpy(float) - b[targets].to_numpy(float))
    return [{"task": "predict-throughput", "dataset": dataset, "split": split, "method": "sciformer-bf16",
             "metric": metric, "value": float(value), "threads": threads}
            for metric, value in (("max_abs_diff_vs_fp32", np.nanmax(diff)),
                                  ("mean_abs_diff_vs_fp32", np.nanmean(diff)))]


def bf16_accuracy_rows(work: Path, task: str, target: str) -> list[dict]:
    """The split's test RMSE of the same model predicted under `--precision bf16` (`predict`, as a user runs it):
    accuracy next to the sciformer row that `evaluate` gave in fp32."""
    frame = pd.read_csv(work / "prepared" / "molecules.csv")
    test = frame[frame.split == "test"]
    src, dst = work / "test_smiles.csv", work / "test_bf16.csv"
    test[["smiles"]].to_csv(src, index=False)
    run_cli("predict", "-d", "molecules", "-i", str(src), "-o", str(dst), "--model", str(work / "model"),
            "--precision", "bf16")
    pred = pd.read_csv(dst)[target].to_numpy(float)
    dataset, split = work.name.split("-", 1)
    return [{"task": task, "dataset": dataset, "split": split, "method": "sciformer-bf16", "metric": "rmse",
             "value": rmse(test[target].to_numpy(float), pred)}]


def million_rows(model: Path, out: Path, sizes=(100_000, 1_000_000), jobs: int = 1) -> list[dict]:
    """Streaming at scale: molecules/s, peak RSS of the largest process (flat with input size if prediction
    streams) and time to the first output row, for 100k and 1M MOSES training SMILES (sampled with replacement
    beyond 1.58M); `jobs` worker processes (`predict -j`), one thread each."""
    rows = []
    for n in sizes:
        src = moses_input(n, out / f"million_{n}.csv", source="train")
        got = watched_predict(model, src, out / f"million_{n}_out.csv", threads=1, jobs=jobs)
        split = f"{n}-molecules"
        rows += [{"task": "predict-scale", "dataset": "moses-train", "split": split, "method": "sciformer",
                  "metric": metric, "value": value, "threads": 1, "jobs": jobs}
                 for metric, value in (("molecules_per_s", n / got["seconds"]), ("peak_rss_mib", got["peak_rss_mib"]),
                                       ("first_row_s", got["first_row_s"]))]
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--replicates", type=int, nargs="*", default=[0, 1, 2, 3, 4],
                        help="FreeSolv scaffold-split seeds (none: skip FreeSolv)")
    parser.add_argument("--skip-solubility", action="store_true")
    parser.add_argument("--moleculeace", nargs="*", default=None, metavar="SET",
                        help=f"MoleculeACE bioactivity sets (flag alone: {', '.join(MOLECULEACE_SETS)})")
    parser.add_argument("--init", type=Path, default=ROOT / "data/molecules/pretrained",
                        help="pretrained encoder to fine-tune from ('' for none)")
    parser.add_argument("--set", action="append", default=[], help="extra sciformer overrides")
    parser.add_argument("--jobs", type=int, default=2, help="splits run in parallel (one thread each)")
    parser.add_argument("--chemprop", action="store_true", help="also chemprop 2.3.1 variants (own venv)")
    parser.add_argument("--chemprop-epochs", type=int, default=None, help="chemprop --epochs (default: its own)")
    parser.add_argument("--throughput", type=int, default=5000, help="molecules for the speed rows (0: skip)")
    parser.add_argument("--threads", type=int, nargs="*", default=[1, 2], help="thread counts for the speed rows")
    parser.add_argument("--million", action="store_true", help="also the 100k and 1M-row streaming runs")
    parser.add_argument("--million-jobs", type=int, default=1, help="predict -j for the streaming runs")
    parser.add_argument("--tiny", action="store_true", help="seconds-scale settings (smoke test)")
    parser.add_argument("--out", type=Path, default=OUT, help="work folder")
    parser.add_argument("--rows", type=Path, default=None, help="write rows here instead of results/molecules")
    parser.add_argument("--commit", action="store_true", help="also write benchmarks/results/molecules-<machine>.json")
    args = parser.parse_args(argv)
    init = args.init if str(args.init) and (args.init / "run.json").exists() else None
    extra = [*TINY, *args.set] if args.tiny else list(args.set)
    jobs = [("freesolv", "scaffold_balanced", r) for r in args.replicates]
    jobs += [] if args.skip_solubility else [("solubility", "predefined", 0)]
    ace = MOLECULEACE_SETS if args.moleculeace == [] else (args.moleculeace or ())
    jobs += [(name, "column", 0) for name in ace]
    print(f"running {len(jobs)} splits, {args.jobs} at a time (init: {init})", flush=True)
    if args.chemprop:
        from benchmarks.peers import ensure_chemprop
        ensure_chemprop()
    partial, rows = args.out / "rows.partial.json", []

    def job_rows(job) -> list[dict]:  # sciformer, then chemprop on the same prepared split
        got = run_split(*job, init, extra, args.out)
        got += chemprop_rows(job, got[0]["split"], args.out, args.chemprop_epochs) if args.chemprop else []
        rows.extend(got)
        write_json(partial, normalized(rows))  # an interrupted run keeps what finished
        return got

    with ThreadPoolExecutor(args.jobs) as pool:
        list(pool.map(job_rows, jobs))
    first = args.out / f"{jobs[0][0]}-{jobs[0][1]}-{jobs[0][2]}"
    if args.throughput:
        rows += throughput_rows(first / "model", first if args.chemprop else None, args.throughput, args.threads,
                                args.out)
        task = next(r["task"] for r in rows if r["method"] == "sciformer" and r["metric"] == "rmse"
                    and r["dataset"] == jobs[0][0] and r["split"] == first.name.split("-", 1)[1])
        rows += bf16_accuracy_rows(first, task, TARGETS.get(jobs[0][0], "y"))
    if args.million:
        rows += million_rows(first / "model", args.out, jobs=args.million_jobs)
    rows += summarize(rows) + paired_differences(rows)
    print_table([r for r in rows if r["metric"] in ("rmse", "rmse_cliffs", "rmse_diff")])
    print_table([r for r in rows if r["task"].startswith("predict-")])
    if args.rows:
        write_json(args.rows, normalized(rows))
    else:
        print(f"rows: {write_rows('molecules', rows, args.commit)}")
    return rows


if __name__ == "__main__":
    main()
