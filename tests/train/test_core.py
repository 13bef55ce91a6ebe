"""The training core: accumulation invariance, exact in-process resume, NaN stops, schedules."""
import json
import math

import pytest
import torch
from torch import nn

from distill.data.source import BatchSourceHooks
from distill.errors import NonFiniteLossError
from distill.train.checkpoint import latest_checkpoint, read_checkpoint
from distill.train.config import TrainConfig
from distill.train.core import Trainer, split_batch
from distill.train.optim import lr_factor
from distill.train.protocols import ObjectiveHooks


class ToyBatches(BatchSourceHooks):
    """40 fixed examples in batches of 8 (the last epoch batch smaller when n % 8)."""

    def __init__(self, n=40, batch=8, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.randn(n, 6, generator=g), torch.randint(0, 3, (n,), generator=g)
        self.batch = batch

    def __len__(self):
        return -(-len(self.y) // self.batch)

    def epoch(self, epoch, start=0):
        order = torch.randperm(len(self.y), generator=torch.Generator().manual_seed(epoch))
        for i in range(start, len(self)):
            idx = order[i * self.batch:(i + 1) * self.batch]
            yield {"x": self.x[idx], "y": self.y[idx]}


class Objective(ObjectiveHooks):
    def __init__(self, model, fail_at=None, nan_at=None):
        self.model, self.calls, self.fail_at, self.nan_at = model, 0, fail_at, nan_at

    def __call__(self, batch):
        self.calls += 1
        if self.fail_at is not None and self.calls == self.fail_at:
            raise KeyboardInterrupt("simulated crash")
        logits = self.model(batch["x"])
        ce = nn.functional.cross_entropy(logits, batch["y"])
        extra = torch.tensor(float("nan")) if self.nan_at is not None and self.calls >= self.nan_at else ce * 0
        return {"loss": ce + extra, "ce": ce, "bad": extra}


def model(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, 3))


def fit(tmp, net, cfg, batches=None, resume=False, objective=None):
    trainer = Trainer(stage_dir=tmp, modules={"student": net}, objective=objective or Objective(net),
                      batches=batches or ToyBatches(), cfg=cfg, progress=False)
    trainer.fit(resume=resume)
    return trainer


def test_split_batch_uneven():
    parts = split_batch({"x": torch.arange(10), "k": 3}, 3)
    assert [len(p["x"]) for p in parts] == [3, 4, 3] and all(p["k"] == 3 for p in parts)
    assert torch.equal(torch.cat([p["x"] for p in parts]), torch.arange(10))


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_micro_batch_times_accumulation_equals_full_batch(tmp_path, optimizer):
    cfg = dict(epochs=2, optimizer=optimizer, lr=0.1, weight_decay=0.0)
    full, accum = model(), model()
    batches = ToyBatches(n=44)  # last batch of 4 splits unevenly into micro-batches
    fit(tmp_path / "a", full, TrainConfig(**cfg, grad_accum=1), batches)
    fit(tmp_path / "b", accum, TrainConfig(**cfg, grad_accum=3), batches)
    for a, b in zip(full.parameters(), accum.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_resume_after_a_crash_is_bit_identical(tmp_path):
    cfg = TrainConfig(epochs=3, lr=0.1, checkpoint_every=2, log_every=1)
    reference = model(dropout=0.3)
    fit(tmp_path / "ref", reference, cfg)
    net = model(dropout=0.3)
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "run", net, cfg, objective=Objective(net, fail_at=8))  # mid-epoch 2
    assert json.loads((tmp_path / "run" / "checkpoints" / "latest.json").read_text())["step"] == 6
    resumed = model(seed=123, dropout=0.3)  # different init: everything must come from the checkpoint
    trainer = fit(tmp_path / "run", resumed, cfg, resume=True)
    for a, b in zip(reference.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    steps = [r["step"] for r in trainer.history if r["kind"] == "train"]
    assert steps == sorted(set(steps)) and steps[-1] == 15, "metrics lines after the checkpoint are rewritten once"


def test_nan_loss_stops_with_step_and_part_and_keeps_last_checkpoint(tmp_path):
    cfg = TrainConfig(epochs=3, lr=0.1, checkpoint_every=2)
    net = model()
    with pytest.raises(NonFiniteLossError) as info:
        fit(tmp_path, net, cfg, objective=Objective(net, nan_at=6))
    message = str(info.value)
    assert "step 6" in message and "'bad'" in message and "\n" not in message
    latest = latest_checkpoint(tmp_path / "checkpoints")
    weights, _, state = read_checkpoint(latest)
    assert state["step"] == 5 and all(torch.isfinite(v).all() for v in weights.values())


def test_checkpoints_are_pruned_and_pointer_is_valid(tmp_path):
    fit(tmp_path, model(), TrainConfig(epochs=2, checkpoint_every=1, keep_checkpoints=2))
    kept = sorted(p.name for p in (tmp_path / "checkpoints").glob("step-*"))
    assert kept == ["step-00000009", "step-00000010"]
    assert latest_checkpoint(tmp_path / "checkpoints").name == "step-00000010"


def test_max_steps_stops_early(tmp_path):
    trainer = fit(tmp_path, model(), TrainConfig(epochs=5, max_steps=7))
    assert trainer.step == 7


def test_lr_schedules():
    cos = TrainConfig(lr=1.0, schedule="cosine", warmup_epochs=1)
    assert lr_factor(0, 100, 10, cos) == pytest.approx(0.1)
    assert lr_factor(9, 100, 10, cos) == pytest.approx(1.0)
    assert lr_factor(10, 100, 10, cos) == pytest.approx(1.0)
    assert lr_factor(55, 100, 10, cos) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))
    step = TrainConfig(schedule="step", milestones=[2, 4], gamma=0.1)
    assert [lr_factor(s, 60, 10, step) for s in (0, 19, 20, 45)] == pytest.approx([1, 1, 0.1, 0.01])
    assert lr_factor(99, 100, 10, TrainConfig(schedule="constant")) == 1.0


def test_bf16_autocast_trains_and_stays_close_to_float32(tmp_path):
    fp32, bf16 = model(), model()
    fit(tmp_path / "a", fp32, TrainConfig(epochs=1, lr=0.1))
    fit(tmp_path / "b", bf16, TrainConfig(epochs=1, lr=0.1, bf16=True))
    assert all(p.dtype == torch.float32 for p in bf16.parameters()), "weights stay float32 under autocast"
    diffs = [float((a - b).detach().abs().max()) for a, b in zip(fp32.parameters(), bf16.parameters())]
    assert 0 < max(diffs) < 0.05, diffs  # bf16 changes the numbers, but only a little


def test_swa_is_the_mean_of_the_epoch_end_weights(tmp_path):
    cfg = dict(epochs=4, lr=0.1, keep_checkpoints=10)
    plain = model()
    fit(tmp_path / "plain", plain, TrainConfig(**cfg))
    ends = [read_checkpoint(tmp_path / "plain" / "checkpoints" / f"step-{5 * e:08d}")[0] for e in (2, 3, 4)]
    swa_model = model()
    fit(tmp_path / "swa", swa_model, TrainConfig(**cfg, swa_start_epoch=1))  # average the ends of epochs 1, 2, 3
    for name, value in swa_model.state_dict().items():
        expected = sum(e[f"student/{name}"] for e in ends) / 3
        torch.testing.assert_close(value, expected, rtol=1e-5, atol=1e-6)


def test_swa_resume_is_exact(tmp_path):
    cfg = TrainConfig(epochs=4, lr=0.1, swa_start_epoch=1, checkpoint_every=3)
    reference = model()
    fit(tmp_path / "ref", reference, cfg)
    net = model()
    with pytest.raises(KeyboardInterrupt):
        fit(tmp_path / "run", net, cfg, objective=Objective(net, fail_at=14))
    resumed = model(seed=5)
    fit(tmp_path / "run", resumed, cfg, resume=True)
    for a, b in zip(reference.parameters(), resumed.parameters()):
        assert torch.equal(a, b)


@pytest.mark.parametrize("every, expected", [(5, [5, 10, 15]), (3, [3, 6, 9, 12, 15])])
def test_step_evaluations_fire_also_on_the_last_step_of_an_epoch(tmp_path, every, expected):
    # 5 steps per epoch: with every=5 each step evaluation falls on an epoch end, a path that once skipped it
    net, seen = model(), []
    trainer = Trainer(stage_dir=tmp_path, modules={"student": net}, objective=Objective(net), batches=ToyBatches(),
                      cfg=TrainConfig(epochs=3, eval_every=100, eval_every_steps=every), progress=False,
                      evaluate=lambda: seen.append(trainer.step) or {"accuracy": 0.0})
    trainer.fit()
    assert seen == expected
