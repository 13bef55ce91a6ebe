"""SmolLM2-135M-Instruct -> a ~16M student on the Python docs prose: CE-only vs FKL vs RKL vs JSD vs TAID.

Every method runs its repository recipe (recipes/smollm2-to-tiny-fkl.yaml, recipes/llm/*.yaml)
with the same budget: the same number of optimizer steps on the same packed 256-token blocks
(same seed, so the same batches), i.e. the same training tokens. Reported: held-out perplexity
and KL(teacher || student) on the held-out documents, training tokens/s and wall time.
Needs the teacher: python ../shared/tools/teachers.py smollm2-135m-instruct

    python benchmarks/llm_distill.py [--steps 150] [--methods ce fkl rkl jsd taid] [--store runs/bench-store/store-k128]

With --store the distilling methods read the teacher's top-k log-probs from a store written by
benchmarks/store.py (same blocks, checked by fingerprint) instead of running the teacher each
step, and every student is then scored against the live teacher.
"""
from __future__ import annotations

import argparse
import json

from pathlib import Path

import common
from distill.tasks import load_recipe
from store import live_teacher_eval

RECIPES = {"ce": "recipes/llm/smollm2-to-tiny-ce.yaml", "fkl": "recipes/smollm2-to-tiny-fkl.yaml",
           "rkl": "recipes/llm/smollm2-to-tiny-rkl.yaml", "jsd": "recipes/llm/smollm2-to-tiny-jsd.yaml",
           "taid": "recipes/llm/smollm2-to-tiny-taid.yaml", "skew_kl": "recipes/llm/smollm2-to-tiny-skew-kl.yaml",
           "akl": "recipes/llm/smollm2-to-tiny-akl.yaml"}
OUT = "runs/bench-llm-distill"


def run_method(method: str, steps: int, train_blocks: int, store: str | None, eval_blocks: int) -> dict:
    # epochs high enough that max_steps, not the end of the data, ends every run (small --train-blocks)
    overrides = [f"train.max_steps={steps}", "train.epochs=1000", "train.eval_every=1000", f"output_dir={OUT}",
                 "progress=false", "train.checkpoint_every=50",
                 f"data.max_train_examples={train_blocks}"]
    if store:  # same blocks as the store was written from (its fingerprint is checked); CE needs no teacher
        overrides += [f"name={method}-from-{Path(store).name}", f"data.max_eval_examples={eval_blocks}"]
        overrides += [f"store.path={store}"] if method != "ce" else []
    task, cfg = load_recipe(common.ROOT / RECIPES[method], overrides)
    summary_path = common.ROOT / OUT / cfg.name / "summary.json"
    if summary_path.is_file():
        return json.loads(summary_path.read_text())
    return task.run(cfg, resume=(common.ROOT / OUT / cfg.name).exists())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--train-blocks", type=int, default=4000, help="cap on packed training blocks (tokenization time)")
    parser.add_argument("--methods", nargs="+", default=["ce", "fkl", "rkl", "jsd", "taid"], choices=list(RECIPES))
    parser.add_argument("--store", help="train from this teacher-signal store (top-k targets) instead of the live "
                        "teacher; quality is then measured against the live teacher on the held-out blocks")
    parser.add_argument("--eval-blocks", type=int, default=64, help="with --store: the store's held-out blocks")
    args = parser.parse_args()
    figures, rows, teacher = {}, [], None
    for method in args.methods:
        summary = run_method(method, args.steps, args.train_blocks, args.store, args.eval_blocks)
        stages = summary["stages"]
        student = common.student_stage(summary)
        if args.store:  # the run's own eval scores against stored top-k: re-score against the live teacher
            student = {**student, **live_teacher_eval(summary["name"], args.train_blocks, args.eval_blocks, OUT)}
        teacher = stages.get("teacher", teacher)
        figures[method] = {k: student[k] for k in ("perplexity", "nll", "kl_to_teacher", "train_tokens_per_s",
                                                   "train_seconds", "params", "steps") if k in student}
        rows.append([method, f"{student['perplexity']:.2f}", f"{student.get('kl_to_teacher', float('nan')):.4f}",
                     f"{student['train_tokens_per_s']:.0f}", f"{student['train_seconds'] / 60:.1f}"])
        print(rows[-1], flush=True)
    if teacher is not None:
        figures["teacher"] = {"perplexity": teacher["perplexity"], "params": teacher["params"]}
        rows.insert(0, ["teacher (SmolLM2-135M)", f"{teacher['perplexity']:.2f}", "0", "-", "-"])
    print(common.table(["student trained with", "held-out ppl", "KL(teacher||student)", "train tok/s", "minutes"], rows))
    common.record("llm_distill", {"steps": args.steps, "tokens_per_step": 8 * 256, "methods": figures,
                                  "teacher_source": args.store or "live"},
                  f"python benchmarks/llm_distill.py --steps {args.steps} --train-blocks {args.train_blocks} --methods "
                  + " ".join(args.methods) + (f" --store {args.store} --eval-blocks {args.eval_blocks}" if args.store else ""))


if __name__ == "__main__":
    main()
