"""benchmarks/molecules.py's time-to-first-row watcher: `predict` writes into a staging folder that is renamed
into place at the end, so the watcher must look at the file inside it (the folder's own size says nothing)."""
from __future__ import annotations

from benchmarks.molecules import _first_rows_written


def test_first_rows_are_seen_inside_the_staging_folder(tmp_path):
    dst = tmp_path / "out.csv"
    assert not _first_rows_written(dst)                       # nothing yet
    staging = tmp_path / ".out.csv.partial-abc123"
    staging.mkdir()
    assert not _first_rows_written(dst)                       # an empty staging folder is not a row
    (staging / "out.csv").write_text("smiles,expt,expt_unc,status\n")
    assert not _first_rows_written(dst)                       # the header alone is not a row
    (staging / "out.csv").write_text("smiles,expt,expt_unc,status\n" + "CCO,1.0,0.1,ok\n" * 20)
    assert _first_rows_written(dst)
