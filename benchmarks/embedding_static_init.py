"""Where a static student's token table starts, on a teacher the benchmark arms were not tuned on:
recipes/embedding/minilm-to-static-leaf.yaml (teacher all-MiniLM-L6-v2, a 256-d table, LEAF, 3 epochs), run
twice with only `student.static` changed:

  outputs   the teacher's output for every vocabulary token alone, PCA to 256, SIF weights (model2vec's table),
            projected back by the PCA's inverse (the default)
  inputs    the teacher's input-embedding matrix by PCA, no SIF, an orthogonal projection (the earlier default)

Both are evaluated by the recipe's end-of-run evaluation (200 examples per transfer split, 100 queries and 300
documents per retrieval suite), student/student and student-query / teacher-index.

    python benchmarks/embedding_static_init.py [--out runs/bench-static-init]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import yaml

import common
from embedding import row_of

RECIPE = common.ROOT / "recipes" / "embedding" / "minilm-to-static-leaf.yaml"
ARMS = {"outputs": {"teacher_table": "outputs", "sif": 1.0e-4}, "inputs": {"teacher_table": "inputs", "sif": None}}


def arm(out: Path, name: str, static: dict) -> dict:
    recipe = yaml.safe_load(RECIPE.read_text())
    recipe["student"]["static"].update(static)
    recipe.update(name=name, progress=False)
    summary = common.train_subprocess(out, name, recipe)
    stage = common.student_stage(summary)
    row = row_of(name, stage["eval"])  # the student's figures, as benchmarks/embedding.py reads them
    row.update(transfer=row["transfer"]["mean"], held_out_cosine=stage["held_out"]["teacher_cosine"],
               train_seconds=stage["train_seconds"], teacher_ndcg=row_of("teacher", stage["eval"], "teacher")["ndcg"])
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=common.ROOT / "runs" / "bench-static-init")
    args = parser.parse_args()
    rows = {name: arm(args.out, name, static) for name, static in ARMS.items()}
    suites = list(rows["outputs"]["ndcg"])
    print(common.table(["table", "transfer %", *[f"nDCG {s}" for s in suites], *[f"q->teacher {s}" for s in suites],
                        "held-out cos"],
                       [[n, f"{100 * r['transfer']:.1f}", *[f"{100 * r['ndcg'][s]:.1f}" for s in suites],
                         *[f"{100 * r['asym_ndcg'][s]:.1f}" for s in suites], f"{r['held_out_cosine']:.3f}"]
                        for n, r in rows.items()]))
    common.record("embedding_static_init", {"rows": rows, "recipe": str(RECIPE.relative_to(common.ROOT))},
                  "python benchmarks/embedding_static_init.py")


if __name__ == "__main__":
    main()
