"""Classification on your own labelled recordings (`data.source: folders`): one subfolder per label, mixed formats,
rates and channel counts, folds stratified by label, rows named after the folder; and the errors a user gets
for a folder that cannot be used (each names the file or label and the fix, before anything is written)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from core.domain import get_domain
from core.errors import UserError
from domains.audio import corpus as C


def _hum(rng, sr, seconds=1.0):
    t = np.arange(int(sr * seconds)) / sr
    f0 = rng.uniform(100, 200)
    return 0.3 * sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6)) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))


def _hiss(rng, sr, seconds=1.0):
    from scipy.signal import butter, sosfilt
    sos = butter(4, [2000, 3500], btype="band", fs=sr, output="sos")
    x = sosfilt(sos, rng.standard_normal(int(sr * seconds)))
    return 0.5 * x / np.abs(x).max()


def make_labelled(root: Path, per_label: int = 8) -> Path:
    """hum/ as FLAC at 22,050 Hz (every other one stereo), hiss/ as OGG at 16 kHz, and a note that is not audio."""
    rng = np.random.default_rng(0)
    for label, make, ext, sr in (("hum", _hum, "flac", 22050), ("hiss", _hiss, "ogg", 16000)):
        (root / label / "take2").mkdir(parents=True, exist_ok=True)
        for i in range(per_label):
            x = make(rng, sr)
            x = np.stack([x, 0.8 * x], 1) if label == "hum" and i % 2 else x
            sf.write(root / label / ("take2" if i % 3 == 0 else "") / f"{label}_{i}.{ext}", x, sr)
    (root / "hum" / "notes.txt").write_text("recorded in the lab")
    return root


def config(root: Path, *extra: str):
    dom = get_domain("audio")
    smoke = [s for s in dom.task("classify").smoke_overrides if not s.startswith("data.max_per_voice")]
    return dom, dom.config(None, [*smoke, "task=classify", "data.source=folders", f"data.root={root}",
                                  "data.sample_rate=16000", "classify.crop_seconds=0.5", *extra])


def test_own_labels_prepare_train_and_evaluate(tmp_path):
    from core.runs import load_members_from
    from core.train import fit, seed_everything
    from domains.audio.prepare import load_prepared
    dom, cfg = config(make_labelled(tmp_path / "sounds"))
    task = dom.task_of(cfg)
    hashes = task.prepare(cfg, tmp_path / "prepared")
    assert set(hashes) == {"labelled-clips"}
    manifest, clips, sr = load_prepared(tmp_path / "prepared")
    assert sr == 16000 and len(manifest) == 16 and all(c.ndim == 1 for c in clips)
    assert not (tmp_path / "prepared" / "enhance_test.npz").exists()        # no mixtures for own labels
    for label in ("hum", "hiss"):                                            # stratified: every fold has each label
        assert set(manifest.prompt_fold[manifest.voice == label]) == {"train", "val", "test"}
    seed_everything(0)
    torch.set_num_threads(1)
    fit(task.build_training(cfg, tmp_path / "prepared", "train", None, 0), task.train_settings(cfg, "train"),
        tmp_path / "model", 0)
    members = load_members_from(task, [tmp_path / "model"], torch.device("cpu"))
    rows, per_clip = task.evaluate(cfg, tmp_path / "prepared", members)
    assert {(r["dataset"], r["split"]) for r in rows} == {("sounds", "held-out-recordings")}
    assert set(per_clip.label) <= {"hum", "hiss"} and len(per_clip) == rows[0]["clips"]
    mfcc = next(r["value"] for r in rows if r["method"] == "mfcc-logreg" and r["metric"] == "accuracy")
    assert mfcc == 1.0                                   # a tone against band noise: any honest baseline separates them
    assert task.report_figures(per_clip, rows, tmp_path / "report")


def test_folds_follow_the_files_not_the_listing(tmp_path):
    clips = C.list_labelled(make_labelled(tmp_path / "sounds", per_label=10))
    folds = dict(zip([c.name for c in clips], C.label_folds(clips, 0, 0.1, 0.2)))
    again = dict(zip([c.name for c in clips[::-1]], C.label_folds(clips[::-1], 0, 0.1, 0.2)))
    assert folds == again
    assert sorted(folds.values()).count("test") == 4 and sorted(folds.values()).count("val") == 2
    assert C.label_folds(clips, 1, 0.1, 0.2) != C.label_folds(clips, 0, 0.1, 0.2)   # the seed moves them
    three = [c for c in clips if c.voice == "hum"][:3]       # large fractions still leave train and validation
    assert sorted(C.label_folds(three, 0, 0.1, 0.85)) == ["test", "train", "val"]


@pytest.mark.parametrize("case, message", [
    ("one_label", "needs at least 2 subfolders"),
    ("few_clips", "hiss (2)"),
    ("corrupt", "broken.wav: cannot be read as audio"),
    ("m4a", "convert them (e.g. ffmpeg"),
    ("missing", "is not a folder"),
])
def test_unusable_folders_are_refused_naming_the_fix(tmp_path, case, message):
    root = make_labelled(tmp_path / "sounds", per_label=4)
    if case == "one_label":
        for f in (root / "hiss").rglob("*.ogg"):
            f.unlink()
    elif case == "few_clips":
        for f in sorted((root / "hiss").rglob("*.ogg"))[:2]:
            f.unlink()
    elif case == "corrupt":
        (root / "hiss" / "broken.wav").write_bytes(b"RIFF0000WAVEfmt nothing useful")
    elif case == "m4a":
        (root / "hum" / "phone.m4a").write_bytes(b"\x00" * 64)
    elif case == "missing":
        root = tmp_path / "nowhere"
    dom, cfg = config(root)
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        dom.task_of(cfg).prepare(cfg, tmp_path / "prepared")
    assert not (tmp_path / "prepared").exists() or not any((tmp_path / "prepared").iterdir())


def test_config_rules_for_own_recordings(tmp_path):
    dom = get_domain("audio")
    with pytest.raises(UserError, match="train classification only"):
        dom.config(None, ["task=enhance", "data.source=folders", f"data.root={tmp_path}"])
    with pytest.raises(UserError, match="come at 8000 .* or 16000"):
        dom.config(None, ["task=classify", "data.sample_rate=22050"])
    own = dom.config(None, ["task=classify", "data.source=folders", "data.sample_rate=22050"])
    assert own["data.sample_rate"] == 22050


def test_validate_names_a_missing_root_before_prepare(tmp_path, run_cli):
    code, _, err = run_cli("validate", "-d", "audio", "--set", "task=classify", "--set", "data.source=folders",
                           "--set", f"data.root={tmp_path / 'nowhere'}")
    assert code != 0 and "nowhere is not a folder; with data.source=folders it holds one subfolder per label" in err
    code, out, _ = run_cli("validate", "-d", "audio", "--set", "task=classify", "--set", "data.source=folders",
                           "--set", f"data.root={make_labelled(tmp_path / 'sounds', per_label=3)}")
    assert code == 0 and "config OK for audio/classify" in out


def make_speakers(root: Path, speakers: int) -> Path:
    """Speech Commands' naming: <speaker>_nohash_<n>.wav, the same speakers in every label folder."""
    rng = np.random.default_rng(1)
    for label, make in (("hum", _hum), ("hiss", _hiss)):
        (root / label).mkdir(parents=True)
        for spk in range(speakers):
            for n in range(2):
                sf.write(root / label / f"{spk * 7919:08x}_nohash_{n}.wav", make(rng, 8000, 0.5), 8000)
    return root


def test_a_group_pattern_keeps_each_speaker_on_one_side(tmp_path):
    clips = C.list_labelled(make_speakers(tmp_path / "words", speakers=30))
    folds = C.group_folds(clips, r"^([0-9a-f]+)_nohash_", 0, 0.2, 0.2)
    side: dict[str, set] = {}
    for c, f in zip(clips, folds):
        side.setdefault(c.name.split("/")[1].split("_")[0], set()).add(f)
    assert all(len(s) == 1 for s in side.values()) and len(side) == 30         # a speaker never spans folds
    assert {f for s in side.values() for f in s} == {"train", "val", "test"}
    from domains.audio.prepare import load_prepared
    dom, cfg = config(tmp_path / "words", r"data.group_pattern=^([0-9a-f]+)_nohash_", "data.val_fraction=0.2")
    dom.task_of(cfg).prepare(cfg, tmp_path / "prepared")                      # prepare follows the groups
    manifest = load_prepared(tmp_path / "prepared")[0]
    assert dict(zip(manifest.prompt, manifest.prompt_fold)) == {c.name: f for c, f in zip(clips, folds)}
    with pytest.raises(UserError, match=r"do not match it.*hiss/"):
        C.group_folds(clips, r"^(speaker\d+)_", 0, 0.2, 0.2)
    few = C.list_labelled(make_speakers(tmp_path / "few", speakers=2))
    with pytest.raises(UserError, match="some labels get no recordings in a fold"):
        C.group_folds(few, r"^([0-9a-f]+)_nohash_", 0, 0.2, 0.2)


def test_group_pattern_config_rules():
    dom = get_domain("audio")
    with pytest.raises(UserError, match="has no \\(group\\)"):
        dom.config(None, ["task=classify", "data.source=folders", "data.group_pattern=^spk_"])
    with pytest.raises(UserError, match="is not a regular expression"):
        dom.config(None, ["task=classify", "data.source=folders", "data.group_pattern=^(spk"])
