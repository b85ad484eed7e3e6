"""The never-overwrite-an-input rule covers every file an input names (core.readers.Reader.input_files), not
only the -i path: a manifest's rows, here through core.readers.FilesReader."""
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
