"""What a bfloat16 teacher costs and gains: KL to the float32 teacher on held-out text, and forward speed.

`teacher.dtype: auto` (the default) runs the causal-LM teacher in bfloat16 only where the CPU runs it
natively (distill.models.hf.fast_bfloat16). This benchmark measures, on held-out Python-docs blocks,
the per-token KL(p_fp32 || p_bf16) of SmolLM2-135M-Instruct, top-1 agreement, both perplexities and
both forward speeds side by side, so the choice `auto` makes on a machine is written down with its cost.

    python benchmarks/teacher_dtype.py [--blocks 16] [--block-size 256]
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import common
import torch
import torch.nn.functional as F

TEACHER = str(Path("~/.cache/distill-assets/smollm2-135m-instruct").expanduser())
DATA = str(common.SHARED / "data/text/python-docs-rst.tar.xz")


def held_out_blocks(args) -> torch.Tensor:
    from distill.models.hf import load_tokenizer
    from distill.tasks import build_recipe
    from distill.tasks.causal_lm.data import load_lm_data
    recipe = {"task": "causal_lm", "name": "teacher-dtype", "teacher": {"path": TEACHER}, "student": {"config": {}},
              "data": {"format": "text", "paths": [DATA], "block_size": args.block_size, "eval_fraction": 0.05,
                       "max_eval_examples": args.blocks, "max_train_examples": 1},
              "method": {"name": "lm_kd"}}
    _, cfg = build_recipe(recipe)
    _, held = load_lm_data(cfg, load_tokenizer(TEACHER))
    return torch.as_tensor(held[:args.blocks], dtype=torch.long)


@torch.no_grad()
def forward(model, blocks: torch.Tensor) -> tuple[list[torch.Tensor], float]:
    """float32 log-probs of next tokens per block, and forward seconds."""
    out, seconds = [], 0.0
    for block in blocks:
        start = time.perf_counter()
        logits = model(block[None]).logits[0, :-1]
        seconds += time.perf_counter() - start
        out.append(F.log_softmax(logits.float(), dim=-1))
    return out, seconds


def compare(fp32: list[torch.Tensor], bf16: list[torch.Tensor], blocks: torch.Tensor) -> dict[str, float]:
    kl = torch.cat([(p.exp() * (p - q)).sum(-1) for p, q in zip(fp32, bf16)])
    agree = torch.cat([p.argmax(-1) == q.argmax(-1) for p, q in zip(fp32, bf16)]).float()
    targets = blocks[:, 1:]
    nll = {name: float(torch.cat([-lp.gather(1, t[:, None])[:, 0] for lp, t in zip(lps, targets)]).mean())
           for name, lps in (("fp32", fp32), ("bf16", bf16))}
    return {"kl_mean": float(kl.mean()), "kl_p99": float(kl.quantile(0.99)), "kl_max": float(kl.max()),
            "top1_agreement": float(agree.mean()), "perplexity_fp32": math.exp(nll["fp32"]),
            "perplexity_bf16": math.exp(nll["bf16"]), "tokens": int(kl.numel())}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--blocks", type=int, default=16)
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from distill.models.hf import fast_bfloat16, load_causal_lm, resolve_dtype
    blocks = held_out_blocks(args)
    fp32, t32 = forward(load_causal_lm(TEACHER, "float32").eval(), blocks)
    bf16, t16 = forward(load_causal_lm(TEACHER, "bfloat16").eval(), blocks)
    tokens = blocks.numel()
    figures = {**compare(fp32, bf16, blocks), "fp32_tokens_per_s": tokens / t32, "bf16_tokens_per_s": tokens / t16,
               "bf16_speedup": t32 / t16, "native_bfloat16": fast_bfloat16(), "auto_picks": resolve_dtype("auto"),
               "blocks": len(blocks), "block_size": args.block_size}
    print(common.table(["teacher dtype", "forward tok/s", "held-out ppl", "KL to fp32 (mean / p99 / max)", "top-1 agree"], [
        ["float32", f"{figures['fp32_tokens_per_s']:.0f}", f"{figures['perplexity_fp32']:.3f}", "0", "1"],
        ["bfloat16", f"{figures['bf16_tokens_per_s']:.0f}", f"{figures['perplexity_bf16']:.3f}",
         f"{figures['kl_mean']:.2e} / {figures['kl_p99']:.2e} / {figures['kl_max']:.2e}", f"{figures['top1_agreement']:.4f}"]]))
    print(f"native bfloat16 on this CPU: {figures['native_bfloat16']}; teacher.dtype: auto picks {figures['auto_picks']}")
    common.record("teacher_dtype", figures, "python benchmarks/teacher_dtype.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
