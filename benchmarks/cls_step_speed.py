"""Images/s of a KD training step: distill's training core versus a hand-written PyTorch loop.

Same work on both sides: CIFAR ResNet-56 teacher (frozen, eval, no_grad), ResNet-20 student,
batch 128 of 32x32, CE + Hinton KD (T=4), SGD with momentum. The two loops are measured
interleaved (plain, distill, distill, plain, ...) in one process so machine noise hits both.
Target: distill within 5% of the plain loop.

    python benchmarks/cls_step_speed.py [--steps 5] [--rounds 12]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import common  # noqa: F401  (puts the repo on sys.path)
import torch
import torch.nn.functional as F

from distill.losses import hinton_kd
from distill.data.source import BatchSourceHooks
from distill.methods import ClassificationContext, build_method
from distill.methods.kd import KDConfig
from distill.models import FrozenTeacher, create_model
from distill.models.teacher_sources import LiveLogits
from distill.train.config import TrainConfig
from distill.train.core import Trainer

BATCH = 128


class FixedBatches(BatchSourceHooks):
    """The same pre-generated batches for both loops (no data-loading cost on either side)."""

    def __init__(self, batches):
        self.batches = batches

    def __len__(self):
        return len(self.batches)

    def epoch(self, epoch, start=0):
        yield from self.batches[start:]


def plain_loop(student, teacher, batches, lr):
    optimizer = torch.optim.SGD(student.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    student.train()
    teacher.eval()
    for batch in batches:
        with torch.no_grad():
            t = teacher(batch["x"])
        s = student(batch["x"])
        loss = 0.1 * F.cross_entropy(s, batch["y"]) + 0.9 * hinton_kd(s, t, temperature=4.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss.item()  # read the loss each step, as any real loop does for logging


def distill_loop(student, teacher, batches, lr, folder):
    cfg = TrainConfig(epochs=1, batch_size=BATCH, lr=lr, schedule="constant", log_every=10 ** 6)
    method = build_method(KDConfig(name="kd", temperature=4.0, kd_weight=0.9, ce_weight=0.1), student=student,
                          teacher=teacher, context=ClassificationContext(num_classes=10, teacher_logits=LiveLogits(teacher)))
    trainer = Trainer(stage_dir=folder, modules={"student": student, "method": method}, objective=method,
                      batches=FixedBatches(batches), cfg=cfg, frozen=(teacher,), progress=False)
    trainer.fit()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=12, help="even, so each order runs equally often")
    args = parser.parse_args()
    torch.manual_seed(0)
    teacher_model = create_model("resnet56", num_classes=10)
    teacher = FrozenTeacher(teacher_model)
    batches = [{"x": torch.randn(BATCH, 3, 32, 32), "y": torch.randint(0, 10, (BATCH,))} for _ in range(args.steps)]
    student = create_model("resnet20", num_classes=10)
    plain_loop(student, teacher_model, batches[:2], 0.05)  # warm-up of allocator and kernels
    rates = {"plain": [], "distill": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ("plain", "distill") if r % 2 == 0 else ("distill", "plain")
            for name in order:
                student = create_model("resnet20", num_classes=10)
                start = time.perf_counter()
                if name == "plain":
                    plain_loop(student, teacher_model, batches, 0.05)
                else:
                    distill_loop(student, teacher, batches, 0.05, Path(tmp) / f"run{r}")
                rates[name].append(BATCH * args.steps / (time.perf_counter() - start))
    # the machine is shared: compare each round's adjacent pair, then take the median over rounds
    # and since whichever loop runs second in a round is faster (measured: ~10%), the order alternates
    # and the headline is the geometric mean over the balanced rounds, which cancels that effect
    pair_ratios = [d / p for d, p in zip(rates["distill"], rates["plain"])]
    ratio = statistics.geometric_mean(pair_ratios)
    plain, ours = statistics.median(rates["plain"]), statistics.median(rates["distill"])
    print(common.table(["loop", "images/s (median)", "min", "max"],
                       [["plain PyTorch", f"{plain:.1f}", f"{min(rates['plain']):.1f}", f"{max(rates['plain']):.1f}"],
                        ["distill Trainer", f"{ours:.1f}", f"{min(rates['distill']):.1f}", f"{max(rates['distill']):.1f}"]]))
    print(f"\ndistill / plain, geometric mean over {args.rounds} interleaved rounds = {ratio:.3f}  (target >= 0.95)")
    print(f"median of round ratios = {statistics.median(pair_ratios):.3f}; ratio of medians = {ours / plain:.3f}")
    print("per-round ratios: " + " ".join(f"{v:.3f}" for v in pair_ratios))
    common.record("cls_step_speed", {"plain_images_per_s": plain, "distill_images_per_s": ours, "ratio": ratio,
                                     "median_pair_ratio": statistics.median(pair_ratios),
                                     "pair_ratios": pair_ratios, "rounds": args.rounds, "steps_per_round": args.steps,
                                     "batch": BATCH, "teacher": "resnet56", "student": "resnet20"},
                  f"python benchmarks/cls_step_speed.py --steps {args.steps} --rounds {args.rounds}")


if __name__ == "__main__":
    main()
