"""Classification KD with the teacher's logits computed once (teacher.logits: auto) against running the
teacher on every batch (teacher.logits: live), side by side on the same recipe, teacher and seed.

recipes/fashion-mnist-kd.yaml with unaugmented student inputs (`data.augment=none`, so `auto` reuses; the
teacher keeps the dataset's default augmentation), the teacher trained once in the first run and loaded
from its checkpoint in the others. Reports
the KD stage's train seconds and test accuracy for each, and the CE-only stage's seconds as the floor.

    python benchmarks/logit_reuse.py [--epochs 3] [--teacher-epochs 10]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import common
from distill.tasks import load_recipe

RECIPE = common.ROOT / "recipes" / "fashion-mnist-kd.yaml"


def run(out: str, overrides: list[str]) -> dict:
    task, cfg = load_recipe(RECIPE, ["progress=false", f"output_dir={out}", *overrides])
    return task.run(cfg, overwrite=True)["stages"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--teacher-epochs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        first = run(str(Path(tmp) / "auto"), [f"train.epochs={args.epochs}", f"teacher.train.epochs={args.teacher_epochs}",
                                              "data.augment=none", "teacher.augment=default"])
        teacher = Path(tmp) / "auto" / "fashion-mnist-kd" / "teacher"
        loaded = [f"train.epochs={args.epochs}", "data.augment=none", "teacher.train=null", f"teacher.checkpoint={teacher}"]
        live = run(str(Path(tmp) / "live"), [*loaded, "teacher.logits=live"])
        auto = run(str(Path(tmp) / "auto2"), loaded)
    kd = {"live": live["student-kd"], "auto": auto["student-kd"]}
    assert kd["auto"]["teacher_logits"] == "reused" and kd["live"]["teacher_logits"] == "live"
    figures = {"epochs": args.epochs, "teacher_accuracy": first["teacher"]["accuracy"],
               "ce_seconds": auto["student-ce"]["train_seconds"], "ce_accuracy": auto["student-ce"]["accuracy"],
               **{f"{k}_seconds": v["train_seconds"] for k, v in kd.items()},
               **{f"{k}_accuracy": v["accuracy"] for k, v in kd.items()},
               "live_over_auto": kd["live"]["train_seconds"] / kd["auto"]["train_seconds"]}
    print(common.table(["student stage", "teacher logits", "train s", "test acc %"], [
        ["ce", "-", f"{figures['ce_seconds']:.1f}", f"{100 * figures['ce_accuracy']:.2f}"],
        ["kd", "live (every batch)", f"{figures['live_seconds']:.1f}", f"{100 * figures['live_accuracy']:.2f}"],
        ["kd", "auto (computed once)", f"{figures['auto_seconds']:.1f}", f"{100 * figures['auto_accuracy']:.2f}"]]))
    print(f"live / auto train time: {figures['live_over_auto']:.2f}x")
    common.record("logit_reuse", figures, "python benchmarks/logit_reuse.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
