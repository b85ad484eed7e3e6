"""benchmarks/tables.py renders committed rows as the Markdown tables of docs/benchmarks.md."""
from __future__ import annotations

import json

from benchmarks.tables import render


def _row(method, value, threads=None, split="test"):
    row = {"task": "predict-throughput", "dataset": "moses", "split": split, "method": method,
           "metric": "molecules_per_s", "value": value, "machine": "m"}
    return row if threads is None else {**row, "threads": threads}


def test_rows_at_several_thread_counts_keep_a_column_each(tmp_path):
    path = tmp_path / "rows.json"
    path.write_text(json.dumps([_row("a", 1.0, 1), _row("a", 2.0, 2), _row("b", 3.0, 1), _row("b", 4.0, 2)]))
    text = render(path)
    assert "| method | moses test, 1 thread | moses test, 2 threads |" in text
    assert "| a | 1.000 | 2.000 |" in text and "| b | 3.000 | 4.000 |" in text


def test_one_thread_count_or_none_adds_nothing_to_the_header(tmp_path):
    for rows in ([_row("a", 1.0, 1), _row("b", 2.0, 1)], [_row("a", 1.0), _row("b", 2.0)]):
        path = tmp_path / "rows.json"
        path.write_text(json.dumps(rows))
        text = render(path)
        assert "| method | moses test |" in text and "| b | 2.000 |" in text


def test_committing_rows_replaces_only_the_rerun_task_and_dataset_pairs(tmp_path, monkeypatch):
    from benchmarks import common
    monkeypatch.setattr(common, "ROOT", tmp_path)
    monkeypatch.setattr(common, "machine_label", lambda: "m")
    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    old = [{**_row("a", 1.0), "task": task, "dataset": ds} for task in ("enhance", "classify") for ds in ("x", "y")]
    (tmp_path / "benchmarks" / "results" / "d-m.json").write_text(json.dumps(old))
    path = common.write_rows("d", [{**_row("a", 9.0), "task": "enhance", "dataset": "x"}], commit=True)
    got = {(r["task"], r["dataset"]): r["value"] for r in json.loads(path.read_text())}
    assert got == {("enhance", "x"): 9.0, ("enhance", "y"): 1.0, ("classify", "x"): 1.0, ("classify", "y"): 1.0}
