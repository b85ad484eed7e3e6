"""The never-overwrite-an-input rule covers every file an input names (core.readers.Reader.input_files), not
only the -i path: a manifest's rows, here through core.readers.FilesReader."""
import numpy as np
import pytest

from core.errors import UserError
from core.outputs import FOLDER_META, check_not_input
from core.readers import FilesReader


def test_files_a_manifest_names_are_inputs(tmp_path):
    old_output = tmp_path / "prev"
    old_output.mkdir()
    (old_output / FOLDER_META).write_text("{}")            # an earlier prediction folder ...
    (old_output / "take1.wav").write_bytes(b"RIFF")        # ... into which a recording was copied
    manifest = tmp_path / "m.csv"
    manifest.write_text("path\nprev/take1.wav\n")
    files = FilesReader([".wav"], "audio").input_files(manifest)
    assert manifest in files and (old_output / "take1.wav").resolve() in [f.resolve() for f in files]
    check_not_input(old_output, [manifest])                  # the manifest alone would not catch it
    with pytest.raises(UserError, match="would overwrite the input .*take1.wav"):
        check_not_input(old_output, files)
    check_not_input(tmp_path / "new", files)                 # a fresh folder is fine


def test_table_chunks_keep_the_first_chunks_columns(tmp_path):
    """A later chunk without an optional column, or in another order, must not shift the CSV's fields; a chunk
    with a column the first lacked is the task's bug, caught here rather than written misaligned."""
    import pandas as pd

    from core.outputs import OutputSet
    target = tmp_path / "out.csv"
    with OutputSet(target) as out:
        out.append(pd.DataFrame({"id": ["a"], "status": ["ok"], "output": ["a.wav"]}))
        out.append(pd.DataFrame({"status": ["missing_file"], "id": ["b"]}))
        with pytest.raises(RuntimeError, match=r"\['extra'\] not in the first chunk's"):
            out.append(pd.DataFrame({"id": ["c"], "status": ["ok"], "output": ["c.wav"], "extra": [1]}))
        out.commit({})
    table = pd.read_csv(target, keep_default_na=False)
    assert table.to_dict("records") == [{"id": "a", "status": "ok", "output": "a.wav"},
                                        {"id": "b", "status": "missing_file", "output": ""}]


def _predict_into(folder, files):
    from core.outputs import OutputSet
    with OutputSet(folder) as out:
        for name, text in files.items():
            out.write(name, text)
        out.commit({"domain": "d", "rows_out": len(files)})


def test_a_folder_output_replaces_only_an_earlier_prediction(tmp_path):
    """-o FOLDER replaces the whole folder, so it must not be a model member, a project folder with its own
    meta.json, or an earlier output to which the user added files: each is refused, nothing deleted."""
    from core.outputs import OutputSet
    out = tmp_path / "out"
    _predict_into(out, {"a.txt": "1", "sub/b.txt": "2"})
    _predict_into(out, {"a.txt": "3"})                      # an earlier output of ours: replaced whole
    assert (out / "a.txt").read_text() == "3" and not (out / "sub").exists()

    (out / "notes.md").write_text("mine")                   # added by hand
    with pytest.raises(UserError, match=r"holds files that run did not write \(notes.md\)"):
        OutputSet(out)
    assert (out / "notes.md").exists()

    member = tmp_path / "run" / "member_0"                  # a trained model's member folder
    member.mkdir(parents=True)
    (member / FOLDER_META).write_text('{"task": {}, "seed": 0, "resolved": {}}')
    (member / "model.safetensors").write_bytes(b"weights")
    with pytest.raises(UserError, match="meta.json is not a prediction's"):
        OutputSet(member)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / FOLDER_META).write_text("{not json")
    with pytest.raises(UserError, match="not an earlier prediction output"):
        OutputSet(broken)


def test_an_output_under_a_file_is_a_clear_error(tmp_path):
    from core.outputs import OutputSet
    (tmp_path / "results.csv").write_text("x\n1\n")
    with pytest.raises(UserError, match=r"results.csv is a file, not a folder"):
        OutputSet(tmp_path / "results.csv" / "preds.csv")


def test_file_browser_droppings_do_not_block_a_rerun(tmp_path):
    out = tmp_path / "out"
    _predict_into(out, {"a.txt": "1"})
    (out / ".DS_Store").write_bytes(b"\0")
    (out / ".ipynb_checkpoints").mkdir()
    (out / ".ipynb_checkpoints" / "a-checkpoint.txt").write_text("1")
    _predict_into(out, {"a.txt": "2"})
    assert (out / "a.txt").read_text() == "2"


def test_a_file_output_never_overwrites_a_file_no_prediction_wrote(tmp_path):
    """-o results.csv where results.csv is the user's own table (or raw.npy a raw stack) is refused before any
    work; an earlier prediction's table is replaced; a sibling some other program wrote stops the commit."""
    import pandas as pd

    from core.outputs import OutputSet
    mine = tmp_path / "results.csv"
    mine.write_text("name,smiles\nethanol,CCO\n")
    with pytest.raises(UserError, match="not an earlier prediction output \\(no results.csv.meta.json"):
        OutputSet(mine)
    assert mine.read_text().startswith("name,smiles")
    pred = tmp_path / "pred.csv"
    for _ in range(2):                                        # the second run replaces the first
        with OutputSet(pred) as out:
            out.append(pd.DataFrame({"id": ["a"], "status": ["ok"]}))
            out.commit({"domain": "d", "rows_out": 1})
    (tmp_path / "map.png").write_bytes(b"someone else's figure")
    with pytest.raises(UserError, match="map.png, which no earlier prediction wrote"):
        with OutputSet(tmp_path / "map.npy") as out:
            out.write("", np.zeros(2))
            out.write(".png", b"png")
            out.commit({"domain": "d", "rows_out": 0})
    assert (tmp_path / "map.png").read_bytes() == b"someone else's figure" and not (tmp_path / "map.npy").exists()
