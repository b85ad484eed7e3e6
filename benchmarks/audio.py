"""Audio benchmark: speech enhancement (sciformer vs Wiener, spectral subtraction, noisereduce and the noisy
input) per SNR bucket on unseen voices and prompts, and voice/language identification (sciformer vs MFCC
statistics + logistic regression and a log-mel CNN) on unseen prompts. Same clips for every method, one run.

Data: Debian's Asterisk prompts (asterisk-core-sounds-{en,es,fr,it,ru}-wav at 8 kHz, -g722 at 16 kHz) and
asterisk-moh-opsound-wav. The benchmark trains longer and tests on more clips than the default pipeline
(BENCH below). Training and timing on one torch thread; the real-time factor is wall-clock on a possibly
shared machine (pessimistic there).

    python -m benchmarks.audio                       # 8 kHz (narrowband PESQ)
    python -m benchmarks.audio --sample-rates 8000 16000 --commit
    python -m benchmarks.audio --quick               # minutes: small data and training, for checking the script
    python -m benchmarks.audio --tasks classify      # rerun one task; the other's rows of an earlier run are kept
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

from benchmarks.common import ROOT, print_table, run_cli, sets, write_rows  # noqa: E402

OUT = ROOT / "results" / "audio" / "bench"
# benchmark scale (the default config is sized for a few minutes of `snakemake -c2 audio`). Classification: the
# transformer and the CNN baseline under one rule, at most 40 epochs, stopped after classify.train.patience (5)
# epochs without a better validation cross-entropy, best epoch kept (at a 15-epoch cap the transformer's
# validation loss was still falling at the last epoch, at both rates)
BENCH = ["enhance.n_test=40", "enhance.n_val=12", "enhance.steps_per_epoch=75", "train.epochs=8",
         "classify.train.epochs=40", "classify.cnn_epochs=40", "train.progress=false"]
QUICK = ["data.max_per_voice=80", "enhance.n_test=4", "enhance.n_val=3", "enhance.steps_per_epoch=4",
         "train.epochs=1", "classify.train.epochs=1", "classify.cnn_epochs=1", "enhance.rtf_seconds=4",
         "train.progress=false"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def train_seconds(run: Path) -> float:
    return sum(json.loads(m.read_text())["train_seconds"] for m in run.glob("member_*/meta.json"))


def save(work: Path, task: str, rows: list[dict]) -> None:
    from core.io import write_json
    write_json(work / f"rows_{task}.json", rows)


def collected(sample_rates: list[int]) -> list[dict]:
    """Every task's rows of these sample rates, from this run or an earlier one (--tasks runs a subset)."""
    rows = []
    for sr in sample_rates:
        for path in sorted((OUT / f"{sr // 1000}k").glob("rows_*.json")):
            rows += json.loads(path.read_text())
    return rows


def run_rate(sample_rate: int, overrides: list[str], tasks: list[str]) -> None:
    """prepare once, then per task: train -> evaluate (whole CLI commands, one thread each)."""
    work = OUT / f"{sample_rate // 1000}k"
    common = sets([f"data.sample_rate={sample_rate}", *overrides])
    seconds = run_cli("prepare", "-d", "audio", "-o", str(work / "prepared"), *common)
    log(f"{sample_rate} Hz: prepared in {seconds:.0f} s")
    for task in tasks:
        args = ["-d", "audio", *common, *sets([f"task={task}"])]
        run_cli("train", *args, "-i", str(work / "prepared"), "-o", str(work / task))
        log(f"{task}: trained in {train_seconds(work / task):.0f} s")
        seconds = run_cli("evaluate", *args, "-i", str(work / "prepared"), "--model", str(work / task),
                          "-o", str(work / f"{task}_metrics.json"))
        rows = json.loads((work / f"{task}_metrics.json").read_text())["rows"]
        ours = next(r for r in rows if r["method"] == "sciformer")
        rows.append({**ours, "split": "all", "metric": "train_seconds", "value": train_seconds(work / task)})
        rows.append({**ours, "split": "all", "metric": "evaluate_seconds", "value": seconds})
        save(work, task, rows)
        log(f"{task}: evaluated in {seconds:.0f} s")
        print_table(rows, ("pesq", "stoi", "si_sdr", "dnsmos", "realtime_factor", "realtime_factor_cpu",
                           "accuracy", "log_loss"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sample-rates", nargs="+", type=int, default=[8000], choices=[8000, 16000])
    parser.add_argument("--tasks", nargs="+", default=["enhance", "classify"], choices=["enhance", "classify"])
    parser.add_argument("--quick", action="store_true", help="tiny data and training (checks the script)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra config overrides")
    parser.add_argument("--commit", action="store_true", help="also write benchmarks/results/audio-<machine>.json")
    args = parser.parse_args()
    overrides = (QUICK if args.quick else BENCH) + args.set
    for sr in args.sample_rates:
        run_rate(sr, overrides, args.tasks)
    rows = collected(args.sample_rates)
    path = write_rows("audio", rows, args.commit and not args.quick)
    print_table(rows)
    log(f"rows written to {path}")


if __name__ == "__main__":
    main()
