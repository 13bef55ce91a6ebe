"""Peak memory of the cross-tokenizer losses: chunked (whole spans, one chunk at a time) vs dense (every
span in one chunk: the full N x 49k student and Q x 262k teacher logits at once).

Real alignment (SmolLM2 blocks of the Python docs, re-tokenized for Gemma-3), random hidden states and
heads of the real shapes (student H 256, V 49,152; teacher H 640, V 262,144), one forward + backward
of each method's loss per process; peak = the process's RSS high-water mark minus its level just
before the loss (the heads and hidden states are on both sides). Dense runs that would not fit in
half this machine's RAM (estimated from the smaller dense runs) are not run and say so.

    python benchmarks/cross_tokenizer_memory.py [--tokens 1024 2048 4096] [--methods uld gold alm xtoken]
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import common

ASSETS = os.path.expanduser("~/.cache/distill-assets")
CONFIGS = {"uld": {"name": "uld", "alignment": "spans", "normalize": "span"}, "gold": {"name": "gold"},
           "alm": {"name": "alm"}, "xtoken": {"name": "xtoken"}}


def rss(field: str) -> int:
    return int(next(line for line in open("/proc/self/status") if line.startswith(field)).split()[1]) * 1024


def child(method: str, mode: str, n_tokens: int) -> None:
    import tarfile

    import torch
    from torch import nn

    from distill.config import from_dict
    from distill.data.align import Aligner
    from distill.data.token_stream import TokenBatches, next_token_targets
    from distill.losses.aligned import HiddenTeacherRows
    from distill.methods import METHODS, LMContext, build_method
    from distill.models.hf import load_tokenizer
    from distill.models.teacher_sources import AlignedTokenTeacher
    from distill.tasks.causal_lm.runner import vocabulary_map
    torch.manual_seed(0)
    s_tok, t_tok = load_tokenizer(f"{ASSETS}/smollm2-135m-instruct"), load_tokenizer(f"{ASSETS}/gemma-3-270m")
    tf = tarfile.open(str(common.SHARED / "data/text/python-docs-rst.tar.xz"))
    ids = []
    for member in (m for m in tf.getmembers() if m.isfile()):
        ids += s_tok(tf.extractfile(member).read().decode("utf-8", "replace"), add_special_tokens=False)["input_ids"]
        if len(ids) > n_tokens + 1024:
            break
    rows = [ids[i:i + 256] for i in range(0, n_tokens, 256)]
    batch = TokenBatches([{"input_ids": r, "labels": r} for r in rows], batch_size=len(rows), shuffle=False,
                         pad_id=s_tok.pad_token_id).make_batch(torch.arange(len(rows)))
    mask = next_token_targets(batch)[1]
    cfg = from_dict(METHODS.get(method).config, {**CONFIGS[method], "chunk_size": 10 ** 9 if mode == "dense" else None})
    needs = METHODS.get(method).obj.vocabulary_needs(cfg)
    holder = nn.Module()
    holder.head_weight = nn.Parameter(torch.randn(len(s_tok), 256) * 0.02)

    class Body(nn.Module):  # the teacher body is not run: its hidden states are random below
        model = holder
    source = AlignedTokenTeacher(Body(), Aligner(s_tok, t_tok), len(t_tok), t_tok.pad_token_id,
                                 vocabulary_map(s_tok, t_tok, needs))
    signal = source.structure(batch, mask)
    signal.teacher = HiddenTeacherRows(torch.randn(*signal.teacher_ids.shape, 640), torch.randn(len(t_tok), 640) * 0.05,
                                       len(t_tok))
    student_hidden = torch.randn(int(mask.sum()), 256, requires_grad=True)
    context = LMContext(student_body=holder, teacher=source, vocab_size=len(s_tok))
    m = build_method(cfg, student=holder, teacher=None, context=context)
    span_rows = m.rows(signal)
    weights = m.span_weights(span_rows, len(rows))
    open("/proc/self/clear_refs", "w").write("5")
    base = rss("VmRSS")
    started = time.perf_counter()
    loss = m.distill(student_hidden, signal, span_rows, weights)
    loss.backward()
    seconds = time.perf_counter() - started
    print(json.dumps({"method": method, "mode": mode, "tokens": int(mask.sum()), "spans": span_rows.n_spans,
                      "peak_bytes": rss("VmHWM") - base, "seconds": seconds, "loss": float(loss)}))


def measure(method: str, mode: str, n: int) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", method, mode, str(n)], capture_output=True, text=True,
                         cwd=common.ROOT, env={**os.environ, "PYTHONPATH": str(common.ROOT)})
    if out.returncode != 0:
        return {"method": method, "mode": mode, "tokens": n, "note": f"failed: {out.stderr.strip().splitlines()[-1]}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", nargs="+", type=int, default=[1024, 2048, 4096])
    parser.add_argument("--methods", nargs="+", default=list(CONFIGS))
    args = parser.parse_args()
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    results, rows = [], []
    for method in args.methods:
        dense_per_token = None
        for n in args.tokens:
            chunked = measure(method, "chunked", n)
            if dense_per_token is not None and dense_per_token * n > 0.5 * total:
                dense = {"method": method, "mode": "dense", "tokens": n, "estimated_peak_bytes": dense_per_token * n,
                         "note": f"not run: ~{dense_per_token * n / 2 ** 30:.0f} GiB (from the smaller dense runs) "
                                 "exceeds half this machine's RAM"}
            else:
                dense = measure(method, "dense", n)
                if dense.get("peak_bytes"):
                    dense_per_token = dense["peak_bytes"] / n
            results += [chunked, dense]
            d_gib = dense.get("peak_bytes", dense.get("estimated_peak_bytes"))
            rows.append([method, str(n), f"{chunked['peak_bytes'] / 2 ** 30:.2f}",
                         (f"{d_gib / 2 ** 30:.2f}" + ("" if "peak_bytes" in dense else " (est.)")) if d_gib else "-",
                         f"{chunked['peak_bytes'] / d_gib:.3f}" if d_gib else "-", f"{chunked['seconds']:.1f}",
                         f"{dense['seconds']:.1f}" if "seconds" in dense else "-"])
            print(rows[-1], flush=True)
    print(common.table(["method", "N", "chunked GiB", "dense GiB", "ratio", "chunked s", "dense s"], rows))
    common.record("cross_tokenizer_memory", {"results": results},
                  "python benchmarks/cross_tokenizer_memory.py --tokens " + " ".join(map(str, args.tokens))
                  + " --methods " + " ".join(args.methods))


if __name__ == "__main__":
    main()
