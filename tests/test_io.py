"""core.io: atomic writes (nothing half-written survives a failure) and the shared figure saver."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from core.io import atomic_path, save_figure  # noqa: E402


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path):
    target = tmp_path / "sub" / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert not target.exists() and list(target.parent.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and [p.name for p in target.parent.iterdir()] == ["out.csv"]


def test_save_figure_writes_the_suffix_format_and_closes(tmp_path):
    for name, magic in (("a.png", b"\x89PNG"), ("b.svg", b"<?xml"), ("c.pdf", b"%PDF")):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        path = save_figure(fig, tmp_path / "figs" / name)
        assert Path(path).read_bytes()[:len(magic)] == magic
        assert not plt.fignum_exists(fig.number)
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == ["a.png", "b.svg", "c.pdf"]


def test_save_figure_failure_leaves_no_file_and_still_closes(tmp_path):
    fig, _ = plt.subplots()
    with pytest.raises(AttributeError):          # matplotlib fails mid-write on a bad bounding box
        save_figure(fig, tmp_path / "x.png", bbox_inches="nonsense")
    assert list(tmp_path.iterdir()) == [] and not plt.fignum_exists(fig.number)


def test_separator_hint_names_the_separator_of_a_one_column_header():
    from core.readers import separator_hint
    assert "';'-separated" in separator_hint(["smiles;logS"])
    assert "tab-separated" in separator_hint(["cloud\tcamera"])
    assert separator_hint(["smiles", "logS"]) == "" and separator_hint(["smiles"]) == ""


def test_a_byte_order_mark_is_not_part_of_the_first_column(tmp_path):
    """Excel's "CSV UTF-8" starts with a BOM; the header check must see `smiles`, not `\\ufeffsmiles`."""
    from core.readers import TableReader
    path = tmp_path / "excel.csv"
    path.write_bytes("smiles,name\nCCO,ethanol\n".encode("utf-8-sig"))
    reader = TableReader(required=["smiles"])
    reader.check(path)
    assert reader.header(path) == ["smiles", "name"]
    assert list(next(reader.chunks(path, 10)).columns) == ["smiles", "name"]


def test_camera_json_with_a_byte_order_mark(tmp_path):
    from domains.pointclouds.readers import read_camera
    path = tmp_path / "camera.json"
    path.write_bytes(b'{"fx": 100, "fy": 100, "cx": 32, "cy": 24, "width": 64, "height": 48}'.decode()
                     .encode("utf-8-sig"))
    assert read_camera(path).width == 64


def test_tables_with_a_repeated_column_or_numbers_for_text_are_refused(tmp_path):
    import pandas as pd

    from core.errors import UserError
    from core.readers import TableReader
    reader = TableReader(required=["smiles"], text=["smiles"])
    (twice := tmp_path / "twice.csv").write_text("smiles,smiles\nCCO,CCN\n")
    with pytest.raises(UserError, match=r"\['smiles'\] appear more than once"):
        reader.check(twice)
    pd.DataFrame({"smiles": [1, 2]}).to_parquet(numbers := tmp_path / "numbers.parquet")
    with pytest.raises(UserError, match="column 'smiles' holds int64 values, not text"):
        reader.check(numbers)
    pd.DataFrame({"smiles": ["CCO"]}).to_parquet(ok := tmp_path / "ok.parquet")
    reader.check(ok)


def test_table_row_count_for_progress_is_exact_after_the_check(tmp_path):
    """Blank lines at the end and a quoted line break are not rows; a last row without a line break is."""
    from core.readers import TableReader
    reader = TableReader(required=["smiles"])
    (path := tmp_path / "rows.csv").write_text('smiles,name\nCCO,"eth\nanol"\nCCN,x\n\n\n')
    reader.check(path)
    assert reader.count(path) == 2
    (other := tmp_path / "other.csv").write_text("smiles\nC\nCC")     # no final line break
    reader.check(other)
    assert reader.count(other) == 2


def test_input_hash_covers_the_files_a_manifest_names(tmp_path):
    from core.predict import input_hash
    (cloud := tmp_path / "a.ply").write_text("one")
    (manifest := tmp_path / "frames.csv").write_text("cloud\na.ply\n")
    before = input_hash(manifest, [cloud])
    assert before != input_hash(manifest) and input_hash(manifest, [manifest]) == input_hash(manifest)
    cloud.write_text("two")
    assert input_hash(manifest, [cloud]) != before
