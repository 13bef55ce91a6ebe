"""Does DisWOT's training-free ranking of candidate students agree with their accuracy after KD?

On scikit-learn's digits: the quickstart teacher (small CNN, 261K) is trained once; five small-CNN
candidates are scored by `distill students` (DisWOT at initialisation, one batch of each `--batch-sizes`, in two settings:
the trained teacher with each candidate's own init, and the official code's random teacher with N(0, 1)
re-initialisation), then each is distilled with Hinton KD (T=4) for `--epochs` epochs over `--seeds`.
Reported: Spearman correlation of each score with the mean KD accuracy, and that of the parameter count
(the trivial "bigger is better" ranking) for comparison. Five candidates make a coarse test: a rank
correlation of 1.0 / 0.9 / 0.7 has p ~ 0.02 / 0.08 / 0.23 (two-sided, exact).

    python benchmarks/students.py [--epochs 20] [--teacher-epochs 30] [--seeds 0 1] [--score-seeds 0 1 2] [--batch-sizes 64]
"""
from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from pathlib import Path

import common
from distill.config import to_dict
from distill.tasks import build_recipe, load_recipe

CANDIDATES = [
    {"name": "small_cnn", "kwargs": {"channels": [4, 8]}, "label": "cnn-4-8"},
    {"name": "small_cnn", "kwargs": {"channels": [8, 16]}, "label": "cnn-8-16"},
    {"name": "small_cnn", "kwargs": {"channels": [16, 32]}, "label": "cnn-16-32"},
    {"name": "small_cnn", "kwargs": {"channels": [32, 64]}, "label": "cnn-32-64"},
    {"name": "small_cnn", "kwargs": {"channels": [16, 32], "convs_per_stage": 2}, "label": "cnn-16-32x2"},
]
SETTINGS = {"trained teacher, default init": {"teacher": "trained", "init": "default"},
            "random teacher, gaussian init (official)": {"teacher": "random", "init": "gaussian"}}


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return out


def spearman(a: list[float], b: list[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    var = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return cov / var if var else float("nan")


def base_recipe(out: str, epochs: int, teacher_epochs: int) -> dict:
    """recipes/students-digits.yaml with the teacher trained here (the quickstart's teacher section)."""
    _, quick = load_recipe(common.ROOT / "recipes" / "quickstart-digits.yaml")
    _, cfg = load_recipe(common.ROOT / "recipes" / "students-digits.yaml")
    recipe = to_dict(cfg)
    recipe.update(output_dir=out, progress=False, threads=1, baseline=False, teacher=to_dict(quick.teacher))
    recipe["train"]["epochs"] = epochs
    recipe["teacher"]["train"]["epochs"] = teacher_epochs
    recipe["students"]["candidates"] = CANDIDATES
    return recipe


def train_candidate(recipe: dict, candidate: dict, seed: int, teacher_dir: Path | None) -> dict:
    r = copy.deepcopy(recipe)
    r["name"] = f"{candidate['label']}-s{seed}"
    r["seed"] = seed
    r["student"] = {"name": candidate["name"], "kwargs": candidate["kwargs"]}
    r.pop("students")
    if teacher_dir is not None:  # the teacher trained once, loaded by every other run
        r["teacher"] = {**{k: r["teacher"][k] for k in ("name", "kwargs")}, "checkpoint": str(teacher_dir)}
    task, cfg = build_recipe(r)
    start = time.perf_counter()
    summary = task.run(cfg, overwrite=True)
    return {"summary": summary, "seconds": time.perf_counter() - start, "run": Path(cfg.output_dir) / cfg.name}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20, help="KD epochs per candidate")
    parser.add_argument("--teacher-epochs", type=int, default=30, help="teacher epochs (the quickstart's 30)")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="KD training seeds per candidate")
    parser.add_argument("--score-seeds", nargs="+", type=int, default=[0, 1, 2], help="DisWOT scoring seeds (batch + init)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64], help="DisWOT scoring batch sizes")
    args = parser.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        recipe = base_recipe(tmp, args.epochs, args.teacher_epochs)
        accuracy = {c["label"]: [] for c in CANDIDATES}
        teacher_dir, teacher_acc, train_seconds = None, None, 0.0
        for seed in args.seeds:
            for c in CANDIDATES:
                result = train_candidate(recipe, c, seed, teacher_dir)
                if teacher_dir is None:
                    teacher_dir, teacher_acc = result["run"] / "teacher", result["summary"]["stages"]["teacher"]["accuracy"]
                accuracy[c["label"]].append(common.student_stage(result["summary"])["accuracy"])
                train_seconds += result["seconds"]
                print(f"KD seed {seed} {c['label']}: {100 * accuracy[c['label']][-1]:.2f}% ({result['seconds']:.0f} s)", flush=True)
        mean_acc = [statistics.fmean(accuracy[c["label"]]) for c in CANDIDATES]
        scored = copy.deepcopy(recipe)
        scored["teacher"] = {**{k: recipe["teacher"][k] for k in ("name", "kwargs")}, "checkpoint": str(teacher_dir)}
        figures = {"teacher_accuracy": teacher_acc, "kd_epochs": args.epochs, "kd_seeds": args.seeds,
                   "candidates": CANDIDATES,
                   "kd_accuracy": accuracy, "train_seconds": train_seconds, "settings": {}}
        params = None
        rows = []
        for (name, setting), size in [(item, size) for item in SETTINGS.items() for size in args.batch_sizes]:
            per_seed, terms = [], {"semantic": [], "relation": []}
            for s in args.score_seeds:
                scored["students"].update(setting, batch_size=size)
                task, cfg = build_recipe(scored)
                report = task.rank_students(cfg, seed=s)
                by_label = {r["label"]: r for r in report["candidates"]}
                per_seed.append([by_label[c["label"]]["score"] for c in CANDIDATES])
                for term in terms:
                    terms[term].append([by_label[c["label"]][f"{term}_distance"] for c in CANDIDATES])
                params = [by_label[c["label"]]["params"] for c in CANDIDATES]
            rhos = [spearman(scores, mean_acc) for scores in per_seed]
            mean_scores = [statistics.fmean(col) for col in zip(*per_seed)]
            term_rho = {t: spearman([-statistics.fmean(col) for col in zip(*v)], mean_acc) for t, v in terms.items()}
            figures["settings"][f"{name}, batch {size}"] = {
                "scores_per_seed": per_seed, "distances_per_seed": terms, "spearman_per_seed": rhos,
                "spearman_of_mean_score": spearman(mean_scores, mean_acc),
                **{f"spearman_of_mean_{t}_term": r for t, r in term_rho.items()}}
            rows.append([f"DisWOT, {name}, batch {size}", " / ".join(f"{r:+.2f}" for r in rhos),
                         f"{spearman(mean_scores, mean_acc):+.2f}", f"{term_rho['semantic']:+.2f}",
                         f"{term_rho['relation']:+.2f}"])
        figures["params"] = params
        figures["spearman_params"] = spearman(params, mean_acc)
        rows.append(["parameter count (bigger is better)", "-", f"{figures['spearman_params']:+.2f}", "-", "-"])
    figures["total_seconds"] = time.perf_counter() - started
    print()
    print(common.table(["candidate", "params", "KD acc % (mean)"],
                       [[c["label"], str(p), f"{100 * a:.2f}"] for c, p, a in zip(CANDIDATES, params, mean_acc)]))
    print()
    print(common.table(["ranking by", "Spearman vs KD acc, per scoring seed", "of the mean score",
                        "semantic term only", "relation term only"], rows))
    command = (f"python benchmarks/students.py --epochs {args.epochs} --teacher-epochs {args.teacher_epochs} "
               f"--seeds {' '.join(map(str, args.seeds))} "
               f"--score-seeds {' '.join(map(str, args.score_seeds))} --batch-sizes {' '.join(map(str, args.batch_sizes))}")
    common.record("students", figures, command)


if __name__ == "__main__":
    main()
