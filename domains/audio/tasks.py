"""The audio domain's two tasks on the core contract (core.task): `enhance` (noisy recordings -> a folder of
enhanced recordings) and `classify` (recordings -> voice/language labels with probabilities)."""
from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping

from core.task import BadInput, Prediction, Task
from domains.audio import newdata as ND

EXAMPLES = Path(__file__).resolve().parents[2] / "data" / "audio" / "noisy"
SMOKE = ("data.max_per_voice=30", "enhance.n_test=2", "enhance.n_val=2", "enhance.steps_per_epoch=2",
         "enhance.baselines=[wiener]", "enhance.dnsmos=false", "enhance.rtf_seconds=1", "enhance.block_tokens=8",
         "enhance.hidden=8", "train.epochs=1", "train.batch_size=2", "train.progress=false",
         "classify.train.epochs=1", "classify.train.batch_size=16", "classify.cnn_epochs=1", "classify.hidden=8",
         "encoder.d_model=16", "encoder.n_heads=2", "encoder.d_ff=32", "encoder.n_layers=1")


class _AudioTask(Task):
    data_settings = ("data",)
    smoke_overrides = SMOKE

    def prepare(self, cfg, out_dir: Path) -> dict[str, str]:
        from domains.audio.prepare import prepare
        return prepare(cfg, Path(out_dir))

    def check_data(self, cfg) -> list[str]:
        """data.root must be a folder (the prompts, or your label folders): `validate` says so before prepare."""
        root = Path(str(cfg["data.root"]))
        if root.is_dir():
            return []
        if cfg["data.source"] == "folders":
            return [f"data.root: {root} is not a folder; with data.source=folders it holds one subfolder per label, "
                    f"each with that label's recordings (a relative path is read from {Path.cwd()})"]
        from domains.audio.corpus import INSTALL_HINT
        return [f"data.root: {root} is not a folder; {INSTALL_HINT}"]

    def reader(self, metadata: Mapping[str, Any]) -> ND.AudioReader:
        return ND.AudioReader()

    def example_inputs(self, folder: Path) -> tuple[Path, Path, str]:
        good = Path(folder) / "recordings"
        good.mkdir(parents=True, exist_ok=True)
        for f in sorted(EXAMPLES.glob("*"))[:2]:
            shutil.copy(f, good / f.name)
        (good / "broken.wav").write_bytes(b"RIFF not really audio")      # a per-file status, not a failure
        bad = Path(folder) / "no_audio"
        bad.mkdir(exist_ok=True)
        (bad / "notes.txt").write_text("no recordings here")
        return good, bad, "no audio files"

    def bad_inputs(self, folder: Path) -> list[BadInput]:
        """Recordings the model must not judge silently: each gets a status; unusable inputs an error."""
        import numpy as np
        import soundfile as sf
        folder = Path(folder) / "bad_audio"
        folder.mkdir(parents=True, exist_ok=True)
        t = np.arange(8000) / 8000
        sf.write(folder / "silence.wav", np.zeros(8000), 8000)
        sf.write(folder / "clipped.wav", np.clip(3 * np.sin(2 * np.pi * 220 * t), -1, 1), 8000)
        sf.write(folder / "zero_length.wav", np.zeros(0), 8000)
        (folder / "manifest_missing.csv").write_text("path\nsilence.wav\nnot_recorded.wav\n")
        (folder / "manifest_no_path.csv").write_text("file\nsilence.wav\n")
        return [BadInput(n, folder / f"manifest_{n}.csv", status=s) for n, s in
                (("silence", "silent"), ("clipped", "clipped"), ("zero_length", "empty"))
                if (folder / f"manifest_{n}.csv").write_text(f"path\n{n}.wav\n") or True] + [
            BadInput("manifest_missing_file", folder / "manifest_missing.csv", status="missing_file"),
            BadInput("manifest_without_path", folder / "manifest_no_path.csv", "needs a 'path' column")]


class EnhanceTask(_AudioTask):
    name = "enhance"
    description = "noisy speech -> enhanced speech (magnitude and phase; MP-SENet-style TF transformer)"
    default_output = "enhanced"
    parallel_predict = False      # writes each enhanced file into the output set as it streams

    def __init__(self, domain):
        super().__init__(domain)
        self.used: set[str] = set()

    def build_training(self, cfg, prepared, stage, init, seed):
        from domains.audio.enhance_task import build_enhance_task
        return build_enhance_task(cfg, Path(prepared), seed)

    def build_model(self, metadata):
        from domains.audio.enhance_model import build
        return build(metadata)

    def calibrate(self, cfg, prepared, members):
        """The attenuation limit (enhance.atten_limits_db), chosen on the validation mixtures."""
        from domains.audio.atten_limit import calibrate_enhance
        return calibrate_enhance(cfg, Path(prepared), members)

    def evaluate(self, cfg, prepared, members):
        from domains.audio.evaluate import evaluate_enhance
        return evaluate_enhance(cfg, Path(prepared), members)

    def output_formats(self, metadata):
        return ("/",)

    def predict(self, members, batch, out):
        from domains.audio.predict import PROCESSED, enhance_items
        table = enhance_items(members, list(zip(batch.data, batch.ids)), out, self.used)
        return Prediction(table=table, predicted=table.status.isin(PROCESSED).to_numpy())

    def report_figures(self, predictions, metrics, out_dir):
        from domains.audio.report import enhance_figures
        return enhance_figures(predictions, metrics, Path(out_dir))


class ClassifyTask(_AudioTask):
    name = "classify"
    description = "speech clip -> voice/language (5 classes) with probabilities, on packed log-mel frames"
    # read after the networks train (the pool is refitted by every `train`; the CNN baseline lives in evaluate):
    # changing them must not retrain the members
    evaluation_only = ("classify.pool_mfcc", "classify.cnn_epochs")

    def build_training(self, cfg, prepared, stage, init, seed):
        from domains.audio.classify_task import build_classify_task
        return build_classify_task(cfg, Path(prepared), seed)

    def build_model(self, metadata):
        from domains.audio.classify_task import build_model
        return build_model(metadata)

    def calibrate(self, cfg, prepared, members):
        """The MFCC-statistics pool (classify.pool_mfcc), chosen on the validation clips."""
        from domains.audio.classify_pool import calibrate_classify
        return calibrate_classify(cfg, Path(prepared), members)

    def evaluate(self, cfg, prepared, members):
        """The model, MFCC statistics + logistic regression, and the log-mel CNN (trained here, by the core
        trainer on the same crops and augmentation, for classify.cnn_epochs)."""
        from core.checkpoint import load_weights
        from core.domain import LoadedModel
        from core.train import fit, seed_everything
        from domains.audio.classify import MelCNN
        from domains.audio.classify_task import build_classify_task
        from domains.audio.evaluate import evaluate_classify
        seed = int(cfg["seed"])
        seed_everything(seed)
        cnn = build_classify_task(cfg, Path(prepared), seed, cnn=True)
        settings = {**self.train_settings(cfg, "train"), "epochs": int(cfg["classify.cnn_epochs"]), "progress": False}
        with tempfile.TemporaryDirectory() as tmp:
            fit(cnn, settings, Path(tmp), seed)
            model = MelCNN(cnn.metadata["n_mels"], len(cnn.metadata["classes"]))
            load_weights(model, Path(tmp))
        baseline = [LoadedModel(model.eval(), {"task": cnn.metadata}, Path("."), members[0].device)]
        return evaluate_classify(cfg, Path(prepared), members, baseline)

    def predict(self, members, batch, out):
        from domains.audio.predict import PROCESSED, classify_items
        table = classify_items(members, list(zip(batch.data, batch.ids)))
        return Prediction(table=table, predicted=table.status.isin(PROCESSED - {"silent"}).to_numpy())

    def report_figures(self, predictions, metrics, out_dir):
        from domains.audio.report import classify_figures
        return classify_figures(predictions, metrics, Path(out_dir))
