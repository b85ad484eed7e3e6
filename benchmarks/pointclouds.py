"""Pointclouds benchmark: dense depth from sparse points + an image, sciformer vs nearest, linear, IP-Basic
and joint bilateral upsampling, on the same frames in one run.

Scenes rendered from meshes never seen in training (split by object: test = airplane, bone) under five
sensor patterns (16/32/64-beam LiDAR, ToF, SfM points), and the real Middlebury Aloe scene (Debian
opencv-doc) under the same patterns. Baseline settings are chosen on the validation frames (mesh: ant);
the model trains on the training meshes only. Each step is a whole `sciformer` command; the rows go to
results/pointclouds/benchmark.json and the report figures to results/pointclouds/bench/report/.

    python -m benchmarks.pointclouds                # the benchmark size (trains longer than the default run)
    python -m benchmarks.pointclouds --quick        # the default config's size: a few minutes
    python -m benchmarks.pointclouds --commit       # also write benchmarks/results/pointclouds-<machine>.json
"""
from __future__ import annotations

import argparse
import json
import time

from benchmarks.common import ROOT, print_table, run_cli, sets, write_rows

OUT = ROOT / "results" / "pointclouds" / "bench"
# the benchmark's size: more rendered views and epochs than the default (6-minute) pipeline. Epochs: at most 20,
# stopped after 4 without a better validation AbsRel (under the earlier cap of 12 the last epoch was the best on
# validation, so the cap, not the model, ended training)
FULL = ["scenes.views.train=1200", "scenes.views.val=60", "scenes.views.test=60", "train.epochs=20",
        "train.patience=4", "aloe.draws=4", "evaluate.tune_frames=24"]
KEEP = ("absrel", "rmse", "mae", "irmse", "delta1", "megapixels_per_s", "error_uncertainty_spearman",
        "disp_mae", "disp_rmse", "bad2", "frames")


def goals(rows: list[dict]) -> list[str]:
    """The issue's targets, checked on these rows: AbsRel >= 30 % below the best baseline on every
    unseen-mesh pattern, and below the best baseline on every Aloe pattern."""
    lines = []
    absrel = {(r["dataset"], r["method"]): r["value"] for r in rows if r["metric"] == "absrel"}
    for dataset in sorted({d for d, _ in absrel}):
        ours = absrel.get((dataset, "sciformer"))
        base = {m: v for (d, m), v in absrel.items() if d == dataset and m != "sciformer"}
        if ours is None or not base:
            continue
        best = min(base, key=base.get)
        gain = 1 - ours / base[best]
        need = 0.3 if dataset.startswith("unseen-meshes") else 0.0
        lines.append(f"{dataset:<24} sciformer {ours:.4f} vs {best} {base[best]:.4f}: {100 * gain:+.1f} % "
                     f"({'met' if gain >= need else 'NOT met'}: needs >= {100 * need:.0f} % lower)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="the default config's size")
    parser.add_argument("--set", action="append", default=[], help="extra config overrides (key=value)")
    parser.add_argument("--reuse-prepared", action="store_true", help="keep the rendered scenes of a previous run")
    parser.add_argument("--train-threads", type=int, default=2,
                        help="torch threads of the training command (default 2: this benchmark runs alone); "
                             "evaluation always runs on one thread, so megapixels/s is per thread")
    parser.add_argument("--commit", action="store_true",
                        help="also write benchmarks/results/pointclouds-<machine>.json")
    args = parser.parse_args()
    common = ["-d", "pointclouds", *sets([*([] if args.quick else FULL), "train.progress=false", *args.set])]
    prepared, model, metrics = OUT / "prepared", OUT / "model", OUT / "metrics.json"
    seconds = {}
    if not (args.reuse_prepared and (prepared / "resolved_config.json").exists()):
        seconds["prepare"] = run_cli("prepare", *common, "-o", str(prepared))
    seconds["train"] = run_cli("train", *common, *sets([f"train.threads={args.train_threads}"]), "-i", str(prepared),
                               "-o", str(model), threads=args.train_threads)
    seconds["evaluate"] = run_cli("evaluate", *common, "-i", str(prepared), "--model", str(model), "-o", str(metrics))
    seconds["report"] = run_cli("report", *common, "-i", str(metrics), "-o", str(OUT / "report"))
    rows = [r for r in json.loads(metrics.read_text())["rows"] if r["metric"] in KEEP]
    print_table(rows, ("absrel", "delta1", "megapixels_per_s"))
    print("\nGoals:\n  " + "\n  ".join(goals(rows)))
    print("\nseconds per command: " + ", ".join(f"{k} {v:.0f}" for k, v in seconds.items())
          + f" (settings: {'default config' if args.quick else ' '.join(FULL)} {' '.join(args.set)})")
    print(f"rows: {write_rows('pointclouds', rows, args.commit)}")


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"benchmark wall time: {time.perf_counter() - start:.0f} s")
