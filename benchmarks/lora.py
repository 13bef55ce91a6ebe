"""LoRA against full fine-tuning with SmolLM2-135M-Instruct as the student: peak memory, tokens/s, perplexity.

Both arms distil SmolLM2-135M-Instruct from itself (the frozen teacher is the same model, so its
forward costs the same in both arms and the KL term anchors the student to where it started) with
forward KL + 0.5 CE on the Python-docs prose: the same blocks, steps, batch and seed. Arm `full`
trains every weight (AdamW); arm `lora` trains `student.lora: {r: 16, alpha: 32, target_modules:
all-linear}` (every linear layer of the decoder; the tied LM head stays frozen). Each arm is one
`distill train` in its own process, so its peak resident memory (VmHWM: weights of both models,
activations, gradients, optimizer state, the loss's buffers) is its own; the two run one after the
other in one invocation, and the machine is shared, so read the ratios. Alongside: the analytic bytes
of trainable weights + their gradients + AdamW's two moments (float32), and the held-out perplexity
after the steps (before: the teacher's, which is the untrained student's) so that speed is not
bought with a broken model.

Speed: the two `distill train` processes run one after the other, so a change in the machine's
other load between them moves their ratio (measured: 1.68x in one invocation, 0.60x in the next).
Section `speed` therefore builds both arms' Trainers in one process (the same LMRun / method /
Trainer code `distill train` runs) and alternates their optimizer steps on the same batches
(full, lora, then lora, full, ...): each pair of steps sees the same load. Reported: the median
over pairs of full-step time / LoRA-step time, and each arm's median tokens/s (the first pair,
which allocates the optimizer state, is not counted).

    flock /tmp/heavy.lock .venv/bin/python benchmarks/lora.py [--steps 8] [--rank 16]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

import common

OUT = common.ROOT / "runs" / "bench-lora"
MODEL = str(Path("~/.cache/distill-assets/smollm2-135m-instruct").expanduser())
DATA = str(common.SHARED / "data/text/python-docs-rst.tar.xz")
ADAMW_BYTES = 4 + 4 + 8  # float32 weight, its gradient, exp_avg and exp_avg_sq


def recipe(arm: str, args) -> dict:
    student = {"path": MODEL}
    if arm == "lora":
        student["lora"] = {"r": args.rank, "alpha": 2 * args.rank, "target_modules": "all-linear"}
    return {"task": "causal_lm", "seed": 0, "threads": args.threads, "teacher": {"path": MODEL, "dtype": "float32"},
            "student": student,
            "data": {"format": "text", "paths": [DATA], "block_size": args.block_size, "eval_fraction": 0.05,
                     "max_train_examples": args.steps * args.batch_size, "max_eval_examples": args.eval_blocks},
            "method": {"name": "lm_kd", "divergence": "kl", "kd_weight": 1.0, "ce_weight": 0.5},
            "train": {"epochs": 1, "max_steps": args.steps, "batch_size": args.batch_size, "optimizer": "adamw",
                      "lr": args.lora_lr if arm == "lora" else args.full_lr, "weight_decay": 0.0,
                      "betas": [0.9, 0.95], "schedule": "cosine", "warmup_epochs": 0.0, "grad_clip": 1.0,
                      "eval_every": 1000, "log_every": 1},
            "eval": {"batch_size": 4}}


def measure(arm: str, args) -> dict:
    shutil.rmtree(OUT / arm, ignore_errors=True)  # timings are only comparable measured in the same invocation
    summary = common.train_subprocess(OUT, arm, recipe(arm, args))
    stage, teacher = common.student_stage(summary), summary["stages"]["teacher"]
    return {"peak_rss_bytes": summary["peak_rss_bytes"], "tokens_per_s": stage["train_tokens_per_s"],
            "step_seconds": stage["step_seconds"], "steps": stage["steps"], "params": stage["params"],
            "trainable_params": stage["trainable_params"], "train_state_bytes": stage["trainable_params"] * ADAMW_BYTES,
            "perplexity_before": teacher["perplexity"], "perplexity_after": stage["perplexity"],
            "kl_to_teacher": stage["kl_to_teacher"], "lr": recipe(arm, args)["train"]["lr"]}


def speed_trainer(arm: str, args):
    """(Trainer, its batches) of one arm, built as LMRun.train builds them (nothing is written but the run folder)."""
    from distill.methods.base import build_method
    from distill.methods.context import LMContext
    from distill.tasks import build_recipe
    from distill.tasks.causal_lm.runner import LMRun
    from distill.tasks.skeleton import Run
    from distill.train.core import Trainer
    _, cfg = build_recipe({**recipe(arm, args), "name": f"speed-{arm}", "output_dir": str(OUT), "progress": False})
    run = LMRun(cfg, Run(cfg, resume=False, overwrite=True), 0, 1)
    batches = run.batches()
    context = LMContext(steps_per_epoch=len(batches), epochs=1, num_train=len(run.train_data), student_body=run.body,
                        teacher=run.teacher, vocab_size=run.vocab, tokenizer=run.tokenizer)
    method = build_method(cfg.method, student=run.student, teacher=run.teacher_body, context=context)
    trainer = Trainer(stage_dir=OUT / f"speed-{arm}", modules={"student": run.student, "method": method},
                      objective=method, batches=batches, cfg=cfg.train, progress=False, frozen=(run.teacher_body,))
    for module in trainer.modules.values():
        module.train()
    return trainer, batches


def interleaved_speed(args) -> dict:
    """Alternate the two arms' optimizer steps on the same batches; per-pair time ratios and median tokens/s."""
    import torch
    torch.set_num_threads(args.threads)
    arms = {arm: speed_trainer(arm, args) for arm in ("full", "lora")}
    streams = {arm: iter(b.epoch(0)) for arm, (_, b) in arms.items()}
    seconds: dict[str, list[float]] = {"full": [], "lora": []}
    for pair in range(args.speed_pairs + 1):
        order = ("full", "lora") if pair % 2 == 0 else ("lora", "full")
        for arm in order:
            batch = next(streams[arm])
            start = time.perf_counter()
            arms[arm][0]._step(batch)  # the Trainer's own step: forward, fused loss, backward, clip, AdamW
            if pair:  # pair 0 allocates AdamW's state: warm-up
                seconds[arm].append(time.perf_counter() - start)
    tokens = args.batch_size * (args.block_size - 1)  # packed blocks: every next-token position is valid
    ratios = [f / l for f, l in zip(seconds["full"], seconds["lora"])]
    return {"pairs": args.speed_pairs, "full_step_seconds": seconds["full"], "lora_step_seconds": seconds["lora"],
            "speedup_median": statistics.median(ratios), "speedup_min": min(ratios), "speedup_max": max(ratios),
            "full_tokens_per_s": tokens / statistics.median(seconds["full"]),
            "lora_tokens_per_s": tokens / statistics.median(seconds["lora"])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--block-size", type=int, default=128)
    parser.add_argument("--eval-blocks", type=int, default=8)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--full-lr", type=float, default=1e-4)
    parser.add_argument("--lora-lr", type=float, default=1e-3, help="LoRA's usual ~10x the full fine-tuning lr")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speed-pairs", type=int, default=5, help="timed (full, lora) step pairs in section speed")
    args = parser.parse_args()
    if args.speed_pairs + 1 > args.steps:
        parser.error(f"--speed-pairs {args.speed_pairs} needs --steps of at least {args.speed_pairs + 1} (its batches)")
    arms = {arm: measure(arm, args) for arm in ("full", "lora")}
    speed = interleaved_speed(args)
    full, lora = arms["full"], arms["lora"]
    gib = 2 ** 30
    rows = [[arm, f"{a['trainable_params'] / 1e6:.2f}M of {a['params'] / 1e6:.1f}M", f"{a['lr']:g}",
             f"{a['train_state_bytes'] / gib:.3f}", f"{a['peak_rss_bytes'] / gib:.2f}",
             f"{speed[arm + '_tokens_per_s']:.0f}", f"{a['tokens_per_s']:.0f}",
             f"{a['perplexity_before']:.2f} -> {a['perplexity_after']:.2f}", f"{a['kl_to_teacher']:.4f}"]
            for arm, a in arms.items()]
    print(common.table(["student", "trainable", "lr", "weights+grads+AdamW GiB", "peak RSS GiB", "tok/s interleaved (median)",
                        "tok/s own process",
                        "held-out ppl", "KL(teacher||student)"], rows))
    figures = {**arms, "peak_rss_ratio": lora["peak_rss_bytes"] / full["peak_rss_bytes"],
               "peak_rss_saved_bytes": full["peak_rss_bytes"] - lora["peak_rss_bytes"],
               "analytic_saved_bytes": full["train_state_bytes"] - lora["train_state_bytes"],
               "speed": speed, "sequential_speedup": lora["tokens_per_s"] / full["tokens_per_s"],
               "setup": {"steps": args.steps, "batch_size": args.batch_size, "block_size": args.block_size,
                         "eval_blocks": args.eval_blocks, "rank": args.rank, "threads": args.threads}}
    print(f"LoRA / full: peak RSS x{figures['peak_rss_ratio']:.2f} ({figures['peak_rss_saved_bytes'] / gib:.2f} GiB "
          f"less; analytic weights+grads+AdamW: {figures['analytic_saved_bytes'] / gib:.2f} GiB), "
          f"step time full / LoRA, interleaved: x{speed['speedup_median']:.2f} median over {speed['pairs']} pairs "
          f"(x{speed['speedup_min']:.2f} to x{speed['speedup_max']:.2f}); the two own processes, one after the "
          f"other: x{figures['sequential_speedup']:.2f}")
    common.record("lora", figures, "python benchmarks/lora.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
