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
