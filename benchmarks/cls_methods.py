"""Classification methods side by side: CE-only, KD and the paper methods, 3 seeds, same schedule.

Each method runs its repository recipe (recipes/cifar10/<method>.yaml, defaults from the paper's
official code) with the same small-scale overrides for every method, so it fits 2 CPU cores:

  CIFAR-10 (../shared/data/cifar10, JPEG):  teacher ResNet-20 trained once on a fixed random 20k images;
      students ResNet-8 on a fixed random 5,000 training images, 6 epochs, SGD 0.05 cosine, batch 64.
  Fashion-MNIST:  teacher small CNN (16-32-64) trained once on all 60k images;
      students small CNN (4-8-16) on a fixed random 10,000 training images, same schedule.
  Test: the full 10k test split of each. Seeds change the student init, data order and augmentation
  (the teacher is shared, as in the KD literature).

Schedule-dependent method settings are scaled to the 6-epoch budget (DKD / KD++ warm-ups 20 of
240 epochs -> 1 epoch; CRD negatives 16384 -> 1024: the official 16384 is a third of a 50k-image
memory bank, ours hold 2.5k-10k images, and 4096 made CRD ~15x slower per step than any other
method on one core); the rest are
the recipes' values. Runs are resumable: finished (dataset, method, seed) runs are reused.

    python benchmarks/cls_methods.py [--datasets cifar10 fashion_mnist] [--methods ...] [--seeds 0 1 2]
        [--cifar-teacher-images 20000] [--cifar-student-images 5000] [--cifar-epochs 6]   # smaller: shorter run
"""
from __future__ import annotations

import argparse
import json
import time

import common
from distill.tasks import load_recipe

METHODS = ["ce", "kd", "ls_kd", "dkd", "pld", "dist", "dhkd", "nd", "ofa", "fitnet", "at", "crd", "bd_kd"]
OUT = "runs/bench-cls-methods"
SCHEDULE = ["train.epochs=6", "train.batch_size=64", "train.lr=0.05", "train.schedule=cosine", "train.milestones=[]",
            "train.warmup_epochs=0", "train.eval_every=6", "progress=false", f"output_dir={OUT}"]
DATASETS = {
    "cifar10": {
        "teacher": ["student.name=resnet20", "data.train_subset=20000", "train.epochs=6", "train.lr=0.1",
                    "train.batch_size=128"],
        "data": ["data.train_subset=5000"],
        "models": ["teacher.name=resnet20", "student.name=resnet8"],
        "online_teacher": "{name: resnet20}",
    },
    "fashion_mnist": {
        "teacher": ["student.name=small_cnn", "student.kwargs={channels: [16, 32, 64]}", "train.epochs=8",
                    "train.lr=0.05", "train.batch_size=128"],
        "data": ["data.train_subset=10000"],
        "models": ["teacher.name=small_cnn", "teacher.kwargs={channels: [16, 32, 64]}", "student.name=small_cnn",
                   "student.kwargs={channels: [4, 8, 16]}"],
        "online_teacher": "{name: small_cnn, kwargs: {channels: [16, 32, 64]}}",
    },
}
DATA_ROOT = {"cifar10": ["data.name=cifar10", "data.root=../shared/data/cifar10/cifar10-jpg.tar.xz"],
             "fashion_mnist": ["data.name=fashion_mnist", "data.root=../shared/data/fashion-mnist", "data.augment=default"]}
METHOD_SCALING = {"dkd": ["method.warmup_epochs=1"], "nd": ["method.kd_warmup_epochs=1"], "crd": ["method.negatives=1024"]}


def scale_cifar(teacher_images: int, student_images: int, epochs: int = 6) -> None:
    """Smaller CIFAR-10 subsets for a shorter run; the sizes go into run names so runs at different scales never mix."""
    spec = DATASETS["cifar10"]
    spec["teacher"] = [o for o in spec["teacher"] if not o.startswith("data.train_subset")] + [f"data.train_subset={teacher_images}"]
    spec["data"] = [f"data.train_subset={student_images}"] + ([f"train.epochs={epochs}", f"train.eval_every={epochs}"]
                                                               if epochs != 6 else [])
    spec["tag"] = "" if (teacher_images, student_images) == (20000, 5000) else f"-t{teacher_images}-s{student_images}"
    spec["teacher_tag"] = spec["tag"]  # the teacher's own schedule does not change with the student epochs
    spec["tag"] += "" if epochs == 6 else f"-e{epochs}"


def run(recipe: str, overrides: list[str]) -> dict:
    task, cfg = load_recipe(common.ROOT / recipe, overrides)
    summary_path = common.ROOT / cfg.output_dir / cfg.name / "summary.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    return task.run(cfg, resume=(common.ROOT / cfg.output_dir / cfg.name).exists())


def teacher_run(dataset: str) -> str:
    name = f"{dataset}{DATASETS[dataset].get('teacher_tag', '')}-teacher"
    # later overrides win: the dataset's teacher settings replace the shared student schedule
    summary = run("recipes/cifar10/teacher-resnet56.yaml",
                  [f"name={name}", "seed=0", *DATA_ROOT[dataset], *SCHEDULE, *DATASETS[dataset]["teacher"]])
    print(f"{dataset} teacher: {100 * list(summary['stages'].values())[-1]['accuracy']:.2f}%", flush=True)
    return f"{OUT}/{name}"


def method_overrides(dataset: str, method: str, teacher: str, seed: int) -> list[str]:
    spec = DATASETS[dataset]
    out = [f"name={dataset}{spec.get('tag', '')}-{method}-s{seed}", f"seed={seed}", *DATA_ROOT[dataset], *SCHEDULE, *spec["data"]]
    if method in ("ce", "bd_kd"):  # no pre-trained teacher: student only (bd_kd trains its own online)
        out += [m for m in spec["models"] if m.startswith("student")]
    else:
        out += [*spec["models"], f"teacher.checkpoint={teacher}"]
    if method == "bd_kd":
        out.append(f"method.teacher_model={spec['online_teacher']}")
    return out + METHOD_SCALING.get(method, [])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--cifar-teacher-images", type=int, default=20000)
    parser.add_argument("--cifar-student-images", type=int, default=5000)
    parser.add_argument("--cifar-epochs", type=int, default=6, help="student epochs on CIFAR-10 (same for every method)")
    args = parser.parse_args()
    scale_cifar(args.cifar_teacher_images, args.cifar_student_images, args.cifar_epochs)
    figures = {}
    for dataset in args.datasets:
        teacher = teacher_run(dataset)
        teacher_acc = list(json.loads((common.ROOT / teacher / "summary.json").read_text())["stages"].values())[-1]["accuracy"]
        figures[dataset] = {"teacher_accuracy": teacher_acc, "methods": {}}
        for method in args.methods:
            runs = []
            for seed in args.seeds:
                recipe = f"recipes/cifar10/{method.replace('_', '-')}.yaml"
                started = time.perf_counter()
                summary = run(recipe, method_overrides(dataset, method, teacher, seed))
                result = summary["stages"][f"student-{method}"]
                runs.append({"accuracy": result["accuracy"], "nll": result["nll"], "ece": result["ece"],
                             "train_seconds": result.get("train_seconds", time.perf_counter() - started)})
                print(f"{dataset} {method} seed {seed}: {100 * result['accuracy']:.2f}% ({runs[-1]['train_seconds']:.0f} s)", flush=True)
            figures[dataset]["methods"][method] = runs
    print_table(figures)
    common.record("cls_methods", figures, "python benchmarks/cls_methods.py --datasets " + " ".join(args.datasets)
                  + " --methods " + " ".join(args.methods) + " --seeds " + " ".join(map(str, args.seeds))
                  + f" --cifar-teacher-images {args.cifar_teacher_images} --cifar-student-images {args.cifar_student_images}"
                  + f" --cifar-epochs {args.cifar_epochs}")


def print_table(figures: dict) -> None:
    datasets = list(figures)
    rows = [[method] + [c for mean, std, vs_kd in cells for c in (f"{mean:.2f} +- {std:.2f}", f"{vs_kd:+.2f}")] + [f"{secs:.0f}"]
            for method, cells, secs in common.method_summary(figures)]
    columns = ["method"] + [c for d in datasets for c in (f"{d} acc %", "vs KD")] + ["s/run"]
    print("\nteachers: " + ", ".join(f"{d} {100 * figures[d]['teacher_accuracy']:.2f}%" for d in datasets))
    print(common.table(columns, rows))


if __name__ == "__main__":
    main()
