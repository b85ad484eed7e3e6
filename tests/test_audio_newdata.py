"""Prediction on new recordings: input discovery, every bad-input status, outputs at the input's rate and layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch

from core.domain import LoadedModel, get_domain
from core.errors import UserError
from core.outputs import OutputSet
from domains.audio import newdata as ND

ENC = {"d_model": 16, "n_heads": 2, "d_ff": 32, "dropout": 0.0, "attention": "sdpa", "rotary": True, "max_len": 4096}


def tone(seconds: float, sr: int, channels: int = 1, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = level * np.sin(2 * np.pi * 220 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 2 * t))
    x = x + 0.01 * np.random.default_rng(0).standard_normal(len(t))
    return np.stack([x * (1 - 0.2 * c) for c in range(channels)], 1).astype(np.float32)


@pytest.fixture
def recordings(tmp_path):
    d = tmp_path / "in"
    (d / "sub").mkdir(parents=True)
    sf.write(d / "mono8k.wav", tone(1.5, 8000), 8000, subtype="PCM_16")
    sf.write(d / "sub" / "stereo44k.flac", tone(2.2, 44100, 2), 44100, subtype="PCM_24")
    sf.write(d / "long16k.ogg", tone(7.0, 16000), 16000)
    sf.write(d / "silence.wav", np.zeros((4000, 1), np.float32), 8000)
    clipped = np.clip(tone(1.0, 8000, level=3.0), -1, 1)
    sf.write(d / "clipped.wav", clipped, 8000, subtype="PCM_16")
    sf.write(d / "zero.wav", np.zeros((0, 1), np.float32), 8000)
    (d / "empty.wav").write_bytes(b"")
    (d / "corrupt.wav").write_bytes(b"RIFF\x10\x00\x00\x00garbage, not audio" * 4)
    good = (d / "mono8k.wav").read_bytes()
    (d / "truncated.wav").write_bytes(good[: len(good) // 2])
    (d / "voice.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")
    (d / "notes.txt").write_text("not audio")
    return d


def predict(task_name: str, members, source: Path, target: Path) -> pd.DataFrame:
    """The core's prediction path with in-memory members: reader check, batches, task.predict, output set."""
    task = get_domain("audio").task(task_name)
    reader = task.reader(members[0].metadata["task"])
    reader.check(source)
    tables = []
    with OutputSet(target, [source]) as out:
        for batch in reader.batches(source, 3):
            pred = task.predict(members, batch, out)
            out.append(pred.table)
            tables.append(pred.table)
        out.commit({"test": True})
    return pd.concat(tables, ignore_index=True)


EXPECTED = {"mono8k.wav": "ok", "sub/stereo44k.flac": "ok", "long16k.ogg": "ok", "silence.wav": "silent",
            "clipped.wav": "clipped", "zero.wav": "empty", "empty.wav": "empty_file", "corrupt.wav": "unreadable",
            "truncated.wav": "truncated", "voice.m4a": "unsupported_format"}


def enhancer_members() -> list[LoadedModel]:
    from domains.audio.enhance_model import build
    torch.manual_seed(0)
    meta = {"kind": "enhance", "sample_rate": 8000, "encoder": ENC, "n_blocks": 1, "block_tokens": 8,
            "patch": [2, 4], "hidden": 8, "chunk_seconds": 1.0}
    return [LoadedModel(build(meta).eval(), {"task": meta}, Path("."), torch.device("cpu"))]


def classifier_members() -> list[LoadedModel]:
    from domains.audio.classify_task import build_model
    torch.manual_seed(0)
    meta = {"kind": "classify", "sample_rate": 8000, "classes": ["a", "b", "c"], "n_mels": 16, "stack": 3,
            "mean": [0.0] * 16, "std": [1.0] * 16, "encoder": {**ENC, "n_layers": 1}, "hidden": 8}
    return [LoadedModel(build_model(meta).eval(), {"task": meta}, Path("."), torch.device("cpu"))]


def test_reader_finds_audio_recursively_and_keeps_unreadable_formats(recordings):
    reader = ND.AudioReader()
    reader.check(recordings)
    ids = [i for b in reader.batches(recordings, 4) for i in b.ids]
    assert set(ids) == set(EXPECTED)


def test_output_folder_may_not_be_the_input_folder(recordings):
    with pytest.raises(UserError, match="overwrite the input"):
        OutputSet(recordings, [recordings])
    with pytest.raises(UserError, match="overwrite the input"):
        OutputSet(recordings.parent, [recordings])


def test_whole_run_problems_are_errors(tmp_path):
    reader = ND.AudioReader()
    with pytest.raises(UserError, match="not found"):
        reader.check(tmp_path / "nope.wav")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(UserError, match="no audio files"):
        reader.check(tmp_path / "empty_dir")
    (tmp_path / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="not an audio file"):
        reader.check(tmp_path / "x.txt")
    (tmp_path / "m.csv").write_text("file\na.wav\n")
    with pytest.raises(UserError, match="'path' column"):
        reader.check(tmp_path / "m.csv")
    (tmp_path / "blank.csv").write_text("path\n")
    with pytest.raises(UserError, match="lists no files"):
        reader.check(tmp_path / "blank.csv")


def test_manifest_rows_resolve_relative_to_the_manifest_and_flag_missing_files(recordings, tmp_path):
    manifest = recordings / "list.csv"
    manifest.write_text(f"path,note\nmono8k.wav,a\nsub/stereo44k.flac,b\ngone.wav,c\n{recordings / 'mono8k.wav'},d\n")
    table = predict("enhance", enhancer_members(), manifest, tmp_path / "out")
    assert table.status.tolist() == ["ok", "ok", "missing_file", "ok"]
    assert table.note.tolist() == ["a", "b", "c", "d"]           # the manifest's columns are kept
    assert table.message[2].startswith("manifest row 3: ")        # which line to fix
    outputs = [o for o in table.output.tolist() if o]           # a file without an output has ""
    assert len(set(outputs)) == 3                                  # the same file twice gets two outputs
    assert all((tmp_path / "out" / o).exists() for o in outputs)


def test_truncated_wav_is_detected_from_its_header(recordings):
    assert ND.wav_truncated(recordings / "truncated.wav")
    assert not ND.wav_truncated(recordings / "mono8k.wav")


def test_enhance_writes_every_readable_file_at_its_own_rate_and_layout(recordings, tmp_path):
    out = tmp_path / "out"
    table = predict("enhance", enhancer_members(), recordings, out)
    status = dict(zip(table["id"], table["status"]))
    assert status == EXPECTED
    for rel in ("mono8k.wav", "sub/stereo44k.flac", "long16k.ogg", "silence.wav", "clipped.wav", "truncated.wav"):
        src, dst = sf.info(recordings / rel), sf.info(out / rel)
        assert (dst.samplerate, dst.channels, dst.frames, dst.format) == (src.samplerate, src.channels, src.frames,
                                                                        src.format), rel
    np.testing.assert_array_equal(sf.read(out / "silence.wav")[0], 0.0)
    assert not (out / "zero.wav").exists() and not (out / "corrupt.wav").exists()
    csv = pd.read_csv(out / "predictions.csv")
    assert {"id", "status", "duration_s", "sample_rate", "channels", "output"} <= set(csv.columns)
    assert csv.set_index("id").loc["long16k.ogg", "duration_s"] == pytest.approx(7.0, abs=1e-3)
    assert not list(out.rglob(".*")) and not list(tmp_path.glob(".*partial*"))   # no temporary files left


def test_classify_gives_probabilities_and_uncertainty(recordings, tmp_path):
    out = tmp_path / "out.csv"
    table = predict("classify", classifier_members(), recordings, out).set_index("id")
    ok = table[table.status.isin(["ok", "clipped", "truncated"])]
    assert len(ok) == 5
    probs = ok[["p_a", "p_b", "p_c"]].to_numpy()
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    assert ((ok.uncertainty >= 0) & (ok.uncertainty <= 1)).all()
    assert set(ok.label) <= {"a", "b", "c"}
    assert not table.loc["silence.wav", "label"] and pd.isna(table.loc["silence.wav", "p_a"])
    assert len(pd.read_csv(out)) == len(EXPECTED)


def test_classify_prediction_uses_the_runs_mfcc_pool(recordings, tmp_path):
    """With the run's MFCC pool at weight 0, a file's probabilities are the stored regression's on its MFCC
    statistics: `predict` goes through the same pooled path as `evaluate`."""
    import soundfile as sf

    from domains.audio.classify import mfcc_stats
    from domains.audio.classify_pool import mfcc_probabilities
    rng = np.random.default_rng(0)
    pool = {"weight": 0.0, "mean": [0.0] * 80, "scale": [10.0] * 80, "classes": [0, 1, 2],
            "coef": rng.normal(size=(3, 80)).tolist(), "intercept": [0.0, 0.1, -0.1]}
    members = classifier_members()
    members[0].metadata["calibration"] = {"mfcc_pool": pool}
    table = predict("classify", members, recordings, tmp_path / "out.csv").set_index("id")
    audio, sr = sf.read(recordings / "mono8k.wav", dtype="float32")
    expected = mfcc_probabilities(pool, mfcc_stats(audio, sr)[None], 3)[0]
    np.testing.assert_allclose(table.loc["mono8k.wav", ["p_a", "p_b", "p_c"]].to_numpy(float), expected, atol=1e-6)
    unpooled = predict("classify", classifier_members(), recordings, tmp_path / "plain.csv").set_index("id")
    assert not np.allclose(unpooled.loc["mono8k.wav", ["p_a", "p_b", "p_c"]].to_numpy(float), expected, atol=1e-3)


def test_float_files_short_clips_and_non_finite_samples(tmp_path):
    """A float WAV over full scale is not `clipped` and keeps its level; NaN samples and clips too short to
    label get their own status; whole-number columns stay whole in every chunk."""
    d = tmp_path / "in"
    d.mkdir()
    sf.write(d / "loud_float.wav", 4 * tone(1.0, 8000), 8000, subtype="FLOAT")
    nan = tone(1.0, 8000)
    nan[100] = np.nan
    sf.write(d / "nan.wav", nan, 8000, subtype="FLOAT")
    sf.write(d / "blip.wav", tone(0.05, 8000), 8000, subtype="PCM_16")
    table = predict("enhance", enhancer_members(), d, tmp_path / "enh").set_index("id")
    assert table.status.to_dict() == {"blip.wav": "ok", "loud_float.wav": "ok", "nan.wav": "non_finite"}
    assert "exceed full scale" in table.loc["loud_float.wav", "message"]
    assert "NaN or infinite" in table.loc["nan.wav", "message"]
    assert np.abs(sf.read(tmp_path / "enh" / "loud_float.wav")[0]).max() > 1.0    # not clipped on writing
    assert not (tmp_path / "enh" / "nan.wav").exists()
    out = tmp_path / "labels.csv"
    (tmp_path / "list.csv").write_text("path\nin/blip.wav\ngone.wav\nin/loud_float.wav\nin/nan.wav\n")
    table = predict("classify", classifier_members(), tmp_path / "list.csv", out).set_index("id")
    assert table.status.to_dict() == {"in/blip.wav": "too_short", "in/loud_float.wav": "ok",
                                      "in/nan.wav": "non_finite", "gone.wav": "missing_file"}
    assert "0.1 s" in table.loc["in/blip.wav", "message"]
    text = out.read_text()
    assert ",8000," in text and "8000.0" not in text


def test_manifest_blank_cells_folders_and_clashing_columns(recordings, tmp_path):
    manifest = recordings / "list.csv"
    manifest.write_text("path,status\nmono8k.wav,raw\n,raw\n")
    with pytest.raises(UserError, match=r"row\(s\) 2 have an empty 'path' cell"):
        ND.AudioReader().check(manifest)
    manifest.write_text("path,status,input_status\nmono8k.wav,raw,x\nsub,raw,y\n")
    table = predict("classify", classifier_members(), manifest, tmp_path / "out.csv")
    assert table.status.tolist() == ["ok", "unreadable"] and "is a folder" in table.message[1]
    assert table.input_input_status.tolist() == ["raw", "raw"]    # a clash with an output column is renamed
    assert table.input_status.tolist() == ["x", "y"]              # ... without losing a column of that name
