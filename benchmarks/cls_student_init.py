"""A classification student cut out of its teacher (student.init.from_teacher) against a random init.

Fashion-MNIST (a fixed training subset), CIFAR ResNet teacher (trained once, first run), and a
shallower ResNet student of the same widths distilled with KD for the same epochs from: the blocks
of highest block influence, evenly spaced blocks, and a random init. Test accuracy right after the
init and after training, per seed.

    python benchmarks/cls_student_init.py [--teacher resnet32] [--student resnet14] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import common
from distill.tasks import build_recipe


def recipe(args, out: str, seed: int, student: dict, teacher: dict) -> dict:
    train = {"epochs": args.epochs, "batch_size": 128, "optimizer": "sgd", "lr": 0.05, "momentum": 0.9,
             "nesterov": True, "weight_decay": 5e-4, "warmup_epochs": 0.2}
    return {"name": "cls-init", "seed": seed, "output_dir": out, "progress": False, "threads": 2,
            "data": {"name": "fashion_mnist", "root": str(common.SHARED / "data/fashion-mnist"),
                     "train_subset": args.train_images},
            "teacher": teacher, "student": student, "method": {"name": "kd", "temperature": 2.0, "kd_weight": 0.9,
                                                               "ce_weight": 0.1},
            "train": train, "eval": {"latency_runs": 5}}


def run(r: dict) -> dict:
    task, cfg = build_recipe(r)
    return task.run(cfg, overwrite=True)["stages"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--teacher", default="resnet32")
    parser.add_argument("--student", default="resnet14")
    parser.add_argument("--train-images", type=int, default=10000)
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    inits = {"block_influence": {"from_teacher": {"select": "block_influence"}},
             "uniform": {"from_teacher": {"select": "uniform"}}, "random": None}
    rows = {k: [] for k in inits}
    with tempfile.TemporaryDirectory() as tmp:
        teacher_train = {"epochs": args.teacher_epochs, "batch_size": 128, "optimizer": "sgd", "lr": 0.05,
                         "momentum": 0.9, "nesterov": True, "weight_decay": 5e-4, "warmup_epochs": 0.2}
        first = run(recipe(args, str(Path(tmp) / "t"), 0, {"name": args.student}, {"name": args.teacher, "train": teacher_train}))
        teacher = {"name": args.teacher, "checkpoint": str(Path(tmp) / "t" / "cls-init" / "teacher")}
        for seed in args.seeds:
            for name, init in inits.items():
                student = {"name": args.student, **({"init": init} if init else {})}
                st = run(recipe(args, str(Path(tmp) / f"{name}-{seed}"), seed, student, teacher))["student-kd"]
                rows[name].append({"seed": seed, "accuracy": st["accuracy"],
                                   "init_accuracy": st.get("init", {}).get("init_accuracy"), "params": st["params"],
                                   "blocks": st.get("init", {}).get("blocks")})
                print(f"{name} seed {seed}: {100 * st['accuracy']:.2f} %", flush=True)
    figures = {"teacher": args.teacher, "student": args.student, "teacher_accuracy": first["teacher"]["accuracy"],
               "teacher_params": first["teacher"]["params"], "epochs": args.epochs,
               "train_images": args.train_images, "runs": rows}
    table = []
    for name, runs in rows.items():
        mean, std = common.mean_std([100 * r["accuracy"] for r in runs])
        init = [r["init_accuracy"] for r in runs if r["init_accuracy"] is not None]
        table.append([name, f"{100 * sum(init) / len(init):.2f}" if init else "-", f"{mean:.2f} +- {std:.2f}", str(len(runs))])
        figures[f"{name}_mean"] = mean
    print(f"teacher {args.teacher}: {100 * figures['teacher_accuracy']:.2f} %")
    print(common.table(["student init", "acc at init %", "acc after KD %", "seeds"], table))
    common.record("cls_student_init", figures, "python benchmarks/cls_student_init.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
