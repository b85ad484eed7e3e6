"""Render committed benchmark rows (benchmarks/results/*.json) as Markdown tables for docs/benchmarks.md.

    python benchmarks/tables.py benchmarks/results/molecules-x86_64-2core.json
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd


def render(path: Path) -> str:
    rows = pd.DataFrame(json.loads(Path(path).read_text()))
    out = [f"### {path.name} (machine: {', '.join(sorted(rows.machine.unique()))})", ""]
    for (task, metric), group in rows.groupby(["task", "metric"], sort=False):
        # rows measured at several thread counts keep one column each (not the first one only)
        if "threads" in group and group["threads"].nunique() > 1:
            group = group.assign(split=group["split"] + group["threads"].map(
                lambda t: f", {int(t)} thread{'s' if t > 1 else ''}" if t == t else ""))
        pivot = group.pivot_table(index="method", columns=["dataset", "split"], values="value", aggfunc="first")
        out.append(f"**{task}: {metric}**")
        out.append("")
        header = ["method"] + [f"{d} {s}" for d, s in pivot.columns]
        out.append("| " + " | ".join(header) + " |")
        out.append("|" + "---|" * len(header))
        for method, values in pivot.iterrows():
            out.append("| " + " | ".join([method] + [f"{v:.3f}" if v == v else "" for v in values]) + " |")
        out.append("")
    return "\n".join(out)


if __name__ == "__main__":
    print("\n".join(render(Path(p)) for p in sys.argv[1:]))
