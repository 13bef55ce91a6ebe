"""What `data.group_by_length` buys: MiniLM training steps on the LEAF recipe's texts, shuffled batches vs
length-grouped batches, side by side in one process.

Both arms read the recipe's own training texts (recipes/embedding/mpnet-to-small-leaf.yaml) through
`TextBatches`, with the same seed, and take turns: one plain batch then one grouped batch, `--steps` times,
each a full AdamW step of all-MiniLM-L6-v2 on a LEAF-shaped loss (the first two of each are warm-up and not
timed). It reports the median step seconds, the padded tokens per batch, and their ratios.

    python benchmarks/embedding_batching.py [--steps 24]
"""
from __future__ import annotations

import argparse
import statistics
import time

import common
import torch

RECIPE = common.ROOT / "recipes" / "embedding" / "mpnet-to-small-leaf.yaml"


def arms(steps: int) -> dict[str, list[dict]]:
    from distill.models.encoders import load_sentence_encoder
    from distill.tasks import load_recipe
    from distill.tasks.embedding.batches import TextBatches
    from distill.tasks.embedding.runner import recipe_data, suite_texts
    _, cfg = load_recipe(RECIPE, ["progress=false"])
    split = recipe_data(cfg, suite_texts(cfg)).train
    student = load_sentence_encoder(cfg.student.path)
    cap = min(cfg.data.max_length, student.max_length)
    tokenize = lambda texts: student.tokenize(texts, max_length=cap)  # noqa: E731
    make = {name: TextBatches(split, "sentences", tokenize, batch_size=cfg.train.batch_size, seed=cfg.seed,
                              group_by_length=grouped) for name, grouped in (("shuffled", False), ("grouped", True))}
    return student, {name: [b for _, b in zip(range(steps), batches.epoch(0))] for name, batches in make.items()}


def time_steps(student, batches: dict[str, list[dict]]) -> dict[str, list[float]]:
    optimizer = torch.optim.AdamW(student.parameters(), lr=1e-5)
    target = torch.nn.functional.normalize(torch.randn(student.dim), dim=0)
    seconds: dict[str, list[float]] = {name: [] for name in batches}
    for step in range(len(next(iter(batches.values())))):
        for name, rows in batches.items():
            batch = rows[step]
            start = time.perf_counter()
            out = student(batch["input_ids"], batch["attention_mask"])
            (out - target).pow(2).sum(-1).mean().backward()
            optimizer.step()
            optimizer.zero_grad()
            if step >= 2:
                seconds[name].append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=24)
    args = parser.parse_args()
    student, batches = arms(args.steps)
    seconds = time_steps(student, batches)
    figures = {}
    for name, rows in batches.items():
        padded = statistics.mean(b["input_ids"].numel() for b in rows)
        real = statistics.mean(int(b["attention_mask"].sum()) for b in rows)
        figures[name] = {"step_seconds": statistics.median(seconds[name]), "padded_tokens": padded,
                         "real_tokens": real}
    figures["speedup"] = figures["shuffled"]["step_seconds"] / figures["grouped"]["step_seconds"]
    figures["steps"] = args.steps
    print(common.table(["batches", "median step s", "tokens per batch (padded)", "real tokens"],
                       [[n, f"{figures[n]['step_seconds']:.3f}", f"{figures[n]['padded_tokens']:.0f}",
                         f"{figures[n]['real_tokens']:.0f}"] for n in batches]))
    print(f"grouped steps are {figures['speedup']:.2f}x faster")
    common.record("embedding_batching", figures, f"python benchmarks/embedding_batching.py --steps {args.steps}")


if __name__ == "__main__":
    main()
