"""Students initialised from the teacher (student.init.from_teacher) against a random init of the same size.

Teacher SmolLM2-135M-Instruct; students at ~50 % and ~30 % of its non-embedding parameters, cut out by
depth pruning (ShortGPT block influence), width pruning (Minitron activation importance) or drawn at
random in the depth-pruned shape. Section `init` scores every candidate right after initialisation on
the held-out blocks (perplexity, parameters, latency of one forward of a 256-token block); section
`train` distils (forward KL + CE, live teacher, `distill train` in its own process) the students named by
--train for the same number of steps, and reports held-out perplexity at init and at the end, tokens/s
and train time.

    python benchmarks/student_init.py [--data python-docs|wordnet] [--steps 40] [--train depth50 random50]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import common
import torch

OUT = common.ROOT / "runs" / "bench-student-init"
TEACHER = str(Path("~/.cache/distill-assets/smollm2-135m-instruct").expanduser())
DATA = {"python-docs": str(common.SHARED / "data/text/python-docs-rst.tar.xz"),
        "wordnet": str(common.SHARED / "data/text/wordnet-glosses.tsv.xz")}
CANDIDATES = {  # name -> student section
    "depth50": {"init": {"from_teacher": {"num_layers": 15}}},
    "depth50-uniform": {"init": {"from_teacher": {"num_layers": 15, "select": "uniform"}}},
    "width50": {"init": {"from_teacher": {"intermediate_size": 640, "num_key_value_heads": 2}}},
    "random50": {"config": {"num_hidden_layers": 15}},
    "depth30": {"init": {"from_teacher": {"num_layers": 9}}},
    "width30": {"init": {"from_teacher": {"hidden_size": 384, "intermediate_size": 512, "num_key_value_heads": 2}}},
    "random30": {"config": {"num_hidden_layers": 9}},
}


def recipe(name: str, args, steps: int) -> dict:
    data = {"format": "text", "paths": [DATA[args.data]], "block_size": 256, "eval_fraction": 0.05,
            "max_train_examples": max(steps, 1) * 4, "max_eval_examples": 24}
    if args.data == "wordnet":
        data["column"] = 2  # lemma id, lemma names, gloss: the glosses are the text
    return {"task": "causal_lm", "seed": 0, "threads": 2, "teacher": {"path": TEACHER}, "student": CANDIDATES[name],
            "data": data, "method": {"name": "lm_kd", "divergence": "kl", "kd_weight": 1.0, "ce_weight": 0.5},
            "train": {"epochs": 1, "max_steps": steps, "batch_size": 4, "optimizer": "adamw", "lr": args.lr,
                      "weight_decay": 0.01, "betas": [0.9, 0.95], "schedule": "cosine", "warmup_epochs": 0.05,
                      "grad_clip": 1.0, "eval_every": 1000, "checkpoint_every": 1000, "log_every": 5},
            "eval": {"batch_size": 4}}


def non_embedding(model: torch.nn.Module) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if "embed_tokens" not in n and "lm_head" not in n)


def latency_ms(model: torch.nn.Module, repeats: int = 5) -> float:
    x = torch.randint(0, 1000, (1, 256))
    with torch.no_grad():
        model(x)
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return (time.perf_counter() - start) / repeats * 1e3


def section_init(args) -> dict:
    """Every candidate right after initialisation, built the way `distill train` builds it."""
    from distill.eval.lm import evaluate_lm
    from distill.models.hf import LMBody
    from distill.tasks import load_recipe
    from distill.tasks.causal_lm.runner import LMRun
    from distill.tasks.skeleton import Run
    rows = {}
    for name in CANDIDATES:
        path = common.write_recipe(OUT, f"init-{name}", recipe(name, args, args.steps))
        _, cfg = load_recipe(path)
        ctx = LMRun(cfg, Run(cfg, resume=False, overwrite=True), 0, 1)
        metrics = evaluate_lm(LMBody(ctx.student), None, ctx.eval_batches(), vocab_size=ctx.vocab)
        rows[name] = {"params": sum(p.numel() for p in ctx.student.parameters()), "non_embedding": non_embedding(ctx.student),
                      "perplexity": metrics["perplexity"], "tokens": metrics["tokens"],
                      "latency_ms": latency_ms(ctx.student.eval()), "kept": ctx.init_report}
        if "teacher" not in rows:
            teacher = ctx.teacher_body.model.lm
            t = evaluate_lm(LMBody(teacher), None, ctx.eval_batches(), vocab_size=ctx.vocab)
            rows["teacher"] = {"params": sum(p.numel() for p in teacher.parameters()), "non_embedding": non_embedding(teacher),
                               "perplexity": t["perplexity"], "tokens": t["tokens"], "latency_ms": latency_ms(teacher.eval())}
        print(f"{name}: perplexity at init {metrics['perplexity']:.2f}", flush=True)
    return rows


def section_train(args) -> dict:
    out = {}
    for name in args.train:
        run_name = f"{args.data}-{name}-{args.steps}"
        summary = common.train_subprocess(OUT, run_name, recipe(name, args, args.steps))
        st = common.student_stage(summary)
        init = summary["stages"].get("student-init", {})
        out[name] = {"perplexity": st["perplexity"], "kl_to_teacher": st.get("kl_to_teacher"),
                     "init_perplexity": init.get("perplexity"), "params": st["params"], "steps": st["steps"],
                     "train_tokens_per_s": st["train_tokens_per_s"], "train_seconds": st["train_seconds"],
                     "teacher_perplexity": summary["stages"]["teacher"]["perplexity"],
                     "peak_rss_bytes": summary["peak_rss_bytes"]}
        print(f"{name}: perplexity {st['perplexity']:.2f} after {st['steps']} steps", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sections", nargs="+", default=["init", "train"])
    parser.add_argument("--data", choices=list(DATA), default="python-docs")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--train", nargs="+", default=["depth50", "random50"])
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    figures = {"data": args.data, "steps": args.steps, "lr": args.lr}
    if "init" in args.sections:
        figures["init"] = section_init(args)
        t = figures["init"]["teacher"]
        print(common.table(["student", "params", "non-emb share", "ppl at init", "ppl / teacher", "latency ms"],
                           [[n, f"{r['params'] / 1e6:.1f}M", f"{r['non_embedding'] / t['non_embedding']:.2f}",
                             f"{r['perplexity']:.2f}", f"{r['perplexity'] / t['perplexity']:.1f}", f"{r['latency_ms']:.0f}"]
                            for n, r in figures["init"].items()]))
    if "train" in args.sections:
        figures["train"] = section_train(args)
        print(common.table(["student", "ppl at init", "ppl after", "teacher ppl", "steps", "tok/s", "train s"],
                           [[n, f"{r['init_perplexity']:.2f}" if r["init_perplexity"] else "-", f"{r['perplexity']:.2f}",
                             f"{r['teacher_perplexity']:.2f}", str(r["steps"]), f"{r['train_tokens_per_s']:.0f}",
                             f"{r['train_seconds']:.0f}"] for n, r in figures["train"].items()]))
    common.record("student_init", figures, "python benchmarks/student_init.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
