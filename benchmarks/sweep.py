"""`distill sweep` on Fashion-MNIST KD: the best of 20 trials against the recipe's own values, 3 seeds.

recipes/fashion-mnist-kd.yaml, scaled like cls_methods.py to fit 2 CPU cores:

  students  small CNN (4-8-16) on a fixed random --train-images (10,000) of the training split, --epochs (6)
            epochs of the recipe's SGD schedule, unaugmented (data.augment: none), so every trial reads
            the teacher's logits from the store the sweep builds once;
  teacher   small CNN (16-32-64), the recipe's schedule and crop2_flip augmentation (--teacher-epochs), trained
            once by the sweep on the same images minus the validation split;
  sweep     --trials (20) TPE trials over the default space (method.temperature, kd_weight, ce_weight,
            train.lr), median pruner, trial 0 = the recipe's values, scored on a validation split
            (--validation 0.1 of the training images; the test split is never looked at);
  then      the best trial's values and the recipe's values, each retrained on all --train-images with
            --seeds (0 1 2) and the sweep's teacher, scored on the full 10k test split: mean +- std.

The sweep and the runs are resumable (rerun the same command); results go to
benchmarks/results/sweep.jsonl.

    python benchmarks/sweep.py [--trials 20] [--epochs 6] [--train-images 10000] [--seeds 0 1 2]
        [--validation 0.1] [--teacher-epochs 10] [--test-images N]         # smaller: a shorter run
"""
from __future__ import annotations

import argparse
import json
import time

import common
from distill.report.sweep import show
from distill.sweep import sweep, sweep_dir
from distill.tasks import load_recipe

RECIPE = common.ROOT / "recipes" / "fashion-mnist-kd.yaml"
OUT = "runs/bench-sweep"


def scale(args: argparse.Namespace) -> list[str]:
    """The overrides every run shares: the student's images and schedule, no baseline, no progress bars."""
    out = [f"output_dir={OUT}", "progress=false", "baseline=false", f"data.train_subset={args.train_images}",
           "data.augment=none", "teacher.augment=crop2_flip", f"train.epochs={args.epochs}", "train.eval_every=1"]
    if args.test_images:
        out.append(f"data.test_subset={args.test_images}")
    if args.teacher_epochs:
        out.append(f"teacher.train.epochs={args.teacher_epochs}")
    return out


def tag(args: argparse.Namespace) -> str:
    """Run names carry the settings, so runs at different scales (or of another sweep's teacher) never mix."""
    return (f"fmnist-n{args.train_images}-e{args.epochs}-v{args.validation:g}-t{args.trials}"
            + (f"-te{args.teacher_epochs}" if args.teacher_epochs else "")
            + (f"-test{args.test_images}" if args.test_images else ""))


def run(overrides: list[str]) -> dict:
    task, cfg = load_recipe(RECIPE, overrides)
    folder = common.ROOT / cfg.output_dir / cfg.name
    if (folder / "summary.json").is_file():
        return json.loads((folder / "summary.json").read_text())
    return task.run(cfg, resume=folder.exists())


def retrain(args: argparse.Namespace, name: str, values: list[str], teacher: str) -> list[dict]:
    """The recipe with `values`, retrained on all training images once per seed, with the sweep's teacher."""
    runs = []
    for seed in args.seeds:
        summary = run([*scale(args), f"name={tag(args)}-{name}-s{seed}", f"seed={seed}", "teacher.train=null",
                       f"teacher.checkpoint={teacher}", *values])
        student = common.student_stage(summary)
        runs.append({"seed": seed, "accuracy": student["accuracy"], "nll": student["nll"], "ece": student["ece"],
                     "train_seconds": student["train_seconds"], "teacher_accuracy": summary["stages"]["teacher"]["accuracy"]})
        print(f"{name} seed {seed}: test accuracy {100 * student['accuracy']:.2f}% ({student['train_seconds']:.0f} s)", flush=True)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--epochs", type=int, default=6, help="student epochs (trials and retrained runs)")
    parser.add_argument("--train-images", type=int, default=10000, help="fixed random subset of the training split")
    parser.add_argument("--validation", type=float, default=0.1, help="fraction of those the trials are scored on")
    parser.add_argument("--teacher-epochs", type=int, default=None, help="default: the recipe's (10)")
    parser.add_argument("--test-images", type=int, default=None, help="a test subset (default: all 10,000)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    overrides = [*scale(args), f"name={tag(args)}", f"sweep.trials={args.trials}",
                 f"sweep.validation={args.validation}"]
    _, cfg = load_recipe(RECIPE, overrides)
    folder = common.ROOT / sweep_dir(cfg)
    started = time.perf_counter()
    summary = sweep(RECIPE, overrides, resume=(folder / "recipe.yaml").is_file())
    sweep_seconds = time.perf_counter() - started
    teacher = str(folder / "teacher" / "teacher")
    figures = {"settings": {k: v for k, v in vars(args).items()}, "sweep": sweep_figures(summary, sweep_seconds),
               "defaults": retrain(args, "defaults", [], teacher),
               "best": retrain(args, f"best-of-{args.trials}", summary["best_overrides"], teacher)}
    print_table(figures)
    common.record("sweep", figures, "python benchmarks/sweep.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if v is not None))


def sweep_figures(summary: dict, seconds: float) -> dict:
    states: dict[str, int] = {}
    for t in summary["trials"]:
        states[t["state"]] = states.get(t["state"], 0) + 1
    defaults = summary["defaults"]
    return {"trials": len(summary["trials"]), "states": states, "seconds": seconds, "space": summary["space"],
            "best": {k: summary["best"][k] for k in ("number", "values", "value")},
            "defaults_validation_accuracy": defaults["value"] if defaults else None,
            "trial_seconds": [t["seconds"] for t in summary["trials"]], "folder": summary["folder"]}


def print_table(figures: dict) -> None:
    s = figures["sweep"]
    print(f"\nsweep: {s['trials']} trials ({', '.join(f'{v} {k}' for k, v in s['states'].items())}) in "
          f"{s['seconds'] / 60:.1f} min; best trial {s['best']['number']}: validation accuracy "
          f"{100 * s['best']['value']:.2f}% (the recipe's values: {100 * (s['defaults_validation_accuracy'] or 0):.2f}%)")
    defaults = {k: v["default"] for k, v in s["space"].items()}
    rows = []
    for arm, values in (("defaults", defaults), ("best", s["best"]["values"])):
        accs = [100 * r["accuracy"] for r in figures[arm]]
        mean, std = common.mean_std(accs)
        rows.append([arm, " ".join(f"{k.split('.')[-1]}={show(v)}" for k, v in values.items()),
                     f"{mean:.2f} +- {std:.2f}", " ".join(f"{a:.2f}" for a in accs),
                     f"{common.mean_std([r['train_seconds'] for r in figures[arm]])[0]:.0f}"])
    seeds = " ".join(str(r["seed"]) for r in figures["defaults"])
    print(f"teacher test accuracy {100 * figures['defaults'][0]['teacher_accuracy']:.2f}%; test split, seeds {seeds}")
    print(common.table(["values", "searched keys", "test acc %", "per seed", "s/run"], rows))


if __name__ == "__main__":
    main()
