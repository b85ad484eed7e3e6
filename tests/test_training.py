"""The shared trainer: warm-up + cosine, early stopping, safetensors checkpoints, exact resume, determinism."""
import json

import pytest
import torch

from core.checkpoint import load_weights
from core.domain import TrainingTask
from core.train import fit, warmup_cosine

TRAIN_CFG = {"epochs": 4, "batch_size": 8, "lr": 1e-2, "weight_decay": 0.0, "warmup_frac": 0.1,
             "grad_clip": 1.0, "patience": 10, "device": "cpu", "threads": 1, "progress": False}


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 16), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                       torch.nn.Linear(16, 1))

    def forward(self, batch):
        return self.net(batch["x"])


def make_task(interrupt_at_epoch=None):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]]) + 0.1 * torch.randn(64, 1, generator=g)
    data = [{"x": x[i], "y": y[i]} for i in range(64)]
    state = {"calls": 0}

    def loss(out, batch):
        state["calls"] += 1
        if interrupt_at_epoch is not None and state["calls"] == interrupt_at_epoch * 7 + 1:
            raise KeyboardInterrupt  # 6 train batches + 1 val batch per epoch
        return torch.nn.functional.mse_loss(out, batch["y"])

    collate = lambda items: {"x": torch.stack([i["x"] for i in items]), "y": torch.stack([i["y"] for i in items])}
    torch.manual_seed(0)
    return TrainingTask(Net(), data[:48], data[48:], collate, loss, metadata={"kind": "toy"})


def weights(path):
    model = Net()
    load_weights(model, path)
    return model.state_dict()


def test_warmup_then_cosine():
    f = warmup_cosine(100, 0.1)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5, abs=0.02) and f(99) < 0.01


def test_same_seed_same_weights(tmp_path):
    fit(make_task(), TRAIN_CFG, tmp_path / "a", seed=3)
    fit(make_task(), TRAIN_CFG, tmp_path / "b", seed=3)
    fit(make_task(), TRAIN_CFG, tmp_path / "c", seed=4)
    a, b, c = weights(tmp_path / "a"), weights(tmp_path / "b"), weights(tmp_path / "c")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    fit(make_task(), TRAIN_CFG, tmp_path / "straight", seed=1)
    with pytest.raises(KeyboardInterrupt):
        fit(make_task(interrupt_at_epoch=2), TRAIN_CFG, tmp_path / "resumed", seed=1)
    assert (tmp_path / "resumed" / "resume.json").exists()
    progress = fit(make_task(), TRAIN_CFG, tmp_path / "resumed", seed=1)
    assert len(progress["history"]) == TRAIN_CFG["epochs"]
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.allclose(a[k], b[k]) for k in a)
    assert not (tmp_path / "resumed" / "resume.json").exists()


def test_early_stopping_and_metadata(tmp_path):
    cfg = {**TRAIN_CFG, "epochs": 50, "patience": 2, "lr": 1e-9}  # no progress -> stops after patience
    progress = fit(make_task(), cfg, tmp_path / "r", seed=0)
    assert len(progress["history"]) < 50
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["task"] == {"kind": "toy"} and "train_seconds" in meta and meta["best_epoch"] >= 0


def test_checkpoint_is_safetensors_not_pickle(tmp_path):
    fit(make_task(), {**TRAIN_CFG, "epochs": 1}, tmp_path / "r", seed=0)
    header = (tmp_path / "r" / "model.safetensors").read_bytes()[:64]
    assert header[8:9] == b"{"  # 8-byte length, then a JSON header: data only, nothing to execute


def test_diverged_training_stops_with_a_clear_error(tmp_path):
    from core.errors import UserError
    task = make_task()
    task.loss = lambda out, batch: (out * float("nan")).mean()
    with pytest.raises(UserError, match="training diverged"):
        fit(task, TRAIN_CFG, tmp_path / "r", seed=0)
