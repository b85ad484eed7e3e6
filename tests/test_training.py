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
        if interrupt_at_epoch is not None and state["calls"] == interrupt_at_epoch * 7 + 2:
            raise KeyboardInterrupt  # 1 val batch for the starting weights, then 6 train + 1 val per epoch
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
    assert [h["epoch"] for h in progress["history"]] == [-1, *range(TRAIN_CFG["epochs"])]
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.allclose(a[k], b[k]) for k in a)
    assert not (tmp_path / "resumed" / "resume.json").exists()


def _val_loss(model, task):
    model.eval()
    with torch.no_grad():
        batch = task.collate(task.val_data)
        return float(torch.nn.functional.mse_loss(model(batch), batch["y"]))


def test_early_stopping_restores_the_best_epochs_weights(tmp_path):
    # a high learning rate makes validation loss go up and down: the best epoch is not the last one
    cfg = {**TRAIN_CFG, "epochs": 30, "patience": 3, "lr": 0.3, "grad_clip": 0.0}
    task = make_task()
    progress = fit(task, cfg, tmp_path / "r", seed=0)
    history = progress["history"]
    assert len(history) < 31, "patience 3 must stop before the last epoch"
    best = min(history, key=lambda h: h["val_loss"])
    assert progress["best_epoch"] == best["epoch"] and best["epoch"] != history[-1]["epoch"]
    meta = json.loads((tmp_path / "r" / "meta.json").read_text())
    assert meta["task"] == {"kind": "toy"} and "train_seconds" in meta and meta["best_epoch"] == best["epoch"]
    restored = Net()
    load_weights(restored, tmp_path / "r")
    # the saved weights score exactly the best epoch's validation loss, not the last epoch's
    assert _val_loss(restored, task) == pytest.approx(best["val_loss"], rel=1e-6)
    assert _val_loss(restored, task) < history[-1]["val_loss"]


def test_starting_weights_are_kept_when_no_epoch_beats_them(tmp_path):
    task = make_task()
    # training labels are shifted by +3: every epoch moves the model away from the validation optimum
    task.train_data = [{"x": d["x"], "y": d["y"] + 3.0} for d in task.train_data]
    with torch.no_grad():  # start at the (noise-free) validation optimum
        task.model.net[0].weight.zero_()
        task.model.net[0].weight[:3].copy_(torch.eye(3))
        task.model.net[0].weight[3:6].copy_(-torch.eye(3))
        task.model.net[0].bias.zero_()
        task.model.net[3].weight.zero_()   # relu(x) - relu(-x) = x, so the net computes y = x . [1, -2, .5]
        task.model.net[3].weight[0, :6].copy_(torch.tensor([1.0, -2.0, 0.5, -1.0, 2.0, -0.5]))
        task.model.net[3].bias.zero_()
    start = {k: v.clone() for k, v in task.model.state_dict().items()}
    progress = fit(task, {**TRAIN_CFG, "epochs": 3}, tmp_path / "r", seed=0)
    assert progress["best_epoch"] == -1 and progress["history"][0]["epoch"] == -1
    assert all(h["val_loss"] > progress["history"][0]["val_loss"] for h in progress["history"][1:])
    saved = weights(tmp_path / "r")
    assert all(torch.equal(saved[k], start[k]) for k in start)


def test_no_weight_decay_on_biases_and_norms():
    from core.train import param_groups
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Embedding(5, 4))
    decay, no_decay = param_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(model[0].weight), id(model[2].weight)}
    assert {id(p) for p in no_decay["params"]} == {id(model[0].bias), id(model[1].weight), id(model[1].bias)}


def test_loss_components_are_logged_per_epoch(tmp_path):
    task = make_task()
    mse = task.loss
    task.loss = lambda out, batch: (mse(out, batch), {"abs": (out - batch["y"]).abs().mean()})
    progress = fit(task, {**TRAIN_CFG, "epochs": 2}, tmp_path / "r", seed=0)
    assert all(h["train_abs"] > 0 for h in progress["history"][1:])


def test_validation_score_replaces_the_mean_loss(tmp_path):
    task = make_task()
    calls = []
    task.val_score = lambda model: calls.append(1) or 42.0 - len(calls)   # improves every call
    progress = fit(task, {**TRAIN_CFG, "epochs": 3}, tmp_path / "r", seed=0)
    assert [h["val_loss"] for h in progress["history"]] == [41.0, 40.0, 39.0, 38.0]
    assert progress["best_epoch"] == 2


def test_loader_workers_give_the_same_batches(tmp_path):
    from core.train import _batches, index_batches
    task = make_task()
    chunks = index_batches(len(task.train_data), 8, True, torch.Generator().manual_seed(5))
    plain = list(_batches(task.train_data, chunks, task.collate))
    pooled = list(_batches(task.train_data, chunks, _stack, workers=1))
    assert len(plain) == len(pooled) and all(torch.equal(a["x"], b["x"]) for a, b in zip(plain, pooled))


def _stack(items):  # module level: worker processes (spawn) pickle the collate function
    return {"x": torch.stack([i["x"] for i in items]), "y": torch.stack([i["y"] for i in items])}


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


def test_fingerprint_ignores_display_and_evaluation_only_keys():
    """A trained member is reused when only progress display or a task's evaluation-only keys (its baselines'
    settings) changed, and retrained when anything the model depends on changed."""
    from core.commands import run_fingerprints
    from core.config import Config

    def fp(values, evaluation_only=("lift.peer", "lift.peer_jobs")):
        return run_fingerprints(Config("d", values), "train", None, {"train.npz": "abc"}, evaluation_only)[0]

    base = {"train": {"epochs": 3, "progress": "auto"}, "lift": {"peer": {"epochs": 3}, "peer_jobs": 1, "hot": False}}
    same = {"train": {"epochs": 3, "progress": "never"}, "lift": {"peer": {"epochs": 30}, "peer_jobs": 2, "hot": False}}
    assert fp(base) == fp(same)
    assert fp(base) != fp({**base, "lift": {**base["lift"], "hot": True}})              # a model setting
    assert fp(base) != fp({**base, "train": {"epochs": 4, "progress": "auto"}})
    assert fp(base, evaluation_only=()) != fp(same, evaluation_only=())                # nothing declared: all count
    assert fp({"train": {"epochs": 3}}) == fp({"train": {"epochs": 3}})                # keys absent: no error


def test_resume_is_exact_when_augmentation_draws_from_numpy(tmp_path):
    """A collate that draws from numpy's global generator (poses' flips) continues after a resume exactly as
    without the interruption: numpy's and Python's generator states are saved with the checkpoint."""
    import random

    import numpy as np

    def noisy(task):
        plain = task.collate
        task.collate = lambda items: {**plain(items), "x": plain(items)["x"] + float(np.random.normal())
                                      + float(random.random())}
        return task
    fit(noisy(make_task()), TRAIN_CFG, tmp_path / "straight", seed=1)
    with pytest.raises(KeyboardInterrupt):
        fit(noisy(make_task(interrupt_at_epoch=2)), TRAIN_CFG, tmp_path / "resumed", seed=1)
    np.random.seed(12345), random.seed(12345)       # whatever ran in between in this process
    fit(noisy(make_task()), TRAIN_CFG, tmp_path / "resumed", seed=1)
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_an_interrupted_member_resumes_across_a_code_fix_but_not_across_other_inputs(tmp_path):
    import json

    from core.commands import _reusable
    member = tmp_path / "member_0"
    member.mkdir()
    (member / "meta.json").write_text(json.dumps({"fingerprint": "code1", "inputs_fingerprint": "inputs"}))
    (member / "resume.json").write_text("{}")
    assert not _reusable(member, ("code2", "inputs")) and (member / "resume.json").exists()   # resumed
    assert not _reusable(member, ("code2", "other")) and not member.exists()                  # retrained
    member.mkdir()
    (member / "meta.json").write_text(json.dumps({"fingerprint": "code1", "inputs_fingerprint": "inputs",
                                                  "train_seconds": 1.0}))
    assert _reusable(member, ("code1", "inputs"))                     # finished, same code: kept as is
    assert not _reusable(member, ("code2", "inputs")) and not member.exists()   # finished under other code
