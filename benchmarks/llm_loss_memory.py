"""Peak memory and time of the token-level KD loss, dense vs chunked, forward + backward.

Random weights, H = 1024, N tokens in {1024, 4096, 8192}, V in {49,152, 128,000}; forward KL at
T = 1 with gradients for the student hidden states and head weight. Each measurement runs in a
fresh subprocess: the inputs (hidden states, two V x H heads) are allocated first, the RSS
high-water mark is reset (/proc/self/clear_refs), then one forward + backward runs; "loss memory"
is the peak RSS above that baseline. The V x H gradient of the head weight is allocated by both
paths and counts on both sides. Time is the median of the timed repetitions. Dense runs whose
logit buffers cannot fit in this machine's RAM are reported as not run.

    python benchmarks/llm_loss_memory.py [--tokens 1024 4096 8192] [--vocab 49152 128000] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import common

H = 1024


def rss_bytes(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(mode: str, n: int, v: int, repeats: int) -> None:
    """Runs in the subprocess: measure one (mode, N, V) and print a JSON line."""
    import torch

    from distill.losses import HiddenSignal, fused_linear_divergence, kl
    from distill.losses.fused import default_chunk_size
    torch.manual_seed(0)
    hs = torch.randn(n, H, requires_grad=True)
    ws = (torch.randn(v, H) * 0.02).requires_grad_(True)
    ht, wt = torch.randn(n, H), torch.randn(v, H) * 0.02
    times, peak = [], None
    for i in range(repeats + 1):
        hs.grad = ws.grad = None
        open("/proc/self/clear_refs", "w").write("5")  # reset the RSS high-water mark
        base = rss_bytes("VmRSS")
        start = time.perf_counter()
        if mode == "dense":
            loss = kl(hs @ ws.t(), (ht @ wt.t()).detach())
        else:
            loss = fused_linear_divergence(hs, ws, HiddenSignal(ht, wt)).loss
        loss.backward()
        elapsed = time.perf_counter() - start
        if i == 0:
            peak = rss_bytes("VmHWM") - base
        else:
            times.append(elapsed)
    print(json.dumps({"mode": mode, "tokens": n, "vocab": v, "peak_bytes": peak, "seconds": statistics.median(times),
                      "chunk_size": default_chunk_size(v) if mode == "chunked" else None, "loss": float(loss)}))


def dense_fits(n: int, v: int) -> bool:
    """Dense keeps ~5 float32 N x V buffers at its peak (measured at N=4096); leave half the RAM spare."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return 5 * n * v * 4 < 0.5 * total


def measure(mode: str, n: int, v: int, repeats: int) -> dict:
    if mode == "dense" and not dense_fits(n, v):
        return {"mode": mode, "tokens": n, "vocab": v, "peak_bytes": None, "seconds": None,
                "note": f"not run: ~{5 * n * v * 4 / 2 ** 30:.0f} GiB of logit buffers exceeds half this machine's RAM"}
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(n), str(v), str(repeats)], capture_output=True,
                         text=True, cwd=common.ROOT, env={**os.environ, "PYTHONPATH": str(common.ROOT)})
    if out.returncode != 0:
        return {"mode": mode, "tokens": n, "vocab": v, "peak_bytes": None, "seconds": None,
                "note": f"failed (exit {out.returncode}): {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ''}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", nargs="+", type=int, default=[1024, 4096, 8192])
    parser.add_argument("--vocab", nargs="+", type=int, default=[49152, 128000])
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    results, rows = [], []
    for v in args.vocab:
        for n in args.tokens:
            pair = {m: measure(m, n, v, args.repeats) for m in ("dense", "chunked")}  # side by side
            results += pair.values()
            d, c = pair["dense"], pair["chunked"]
            gib = lambda r: f"{r['peak_bytes'] / 2 ** 30:.2f}" if r.get("peak_bytes") is not None else "-"
            secs = lambda r: f"{r['seconds']:.2f}" if r.get("seconds") is not None else "-"
            mem_ratio = f"{c['peak_bytes'] / d['peak_bytes']:.3f}" if d.get("peak_bytes") and c.get("peak_bytes") else "-"
            time_ratio = f"{c['seconds'] / d['seconds']:.2f}" if d.get("seconds") and c.get("seconds") else "-"
            rows.append([f"{v:,}", f"{n:,}", gib(d), gib(c), mem_ratio, secs(d), secs(c), time_ratio, str(c.get("chunk_size"))])
            print(rows[-1], flush=True)
    print(common.table(["V", "N", "dense GiB", "chunked GiB", "mem ratio", "dense s", "chunked s", "time ratio", "chunk"], rows))
    for r in results:
        if r.get("note"):
            print(f"{r['mode']} N={r['tokens']} V={r['vocab']}: {r['note']}")
    common.record("llm_loss_memory", {"hidden": H, "divergence": "kl", "results": results},
                  "python benchmarks/llm_loss_memory.py --tokens " + " ".join(map(str, args.tokens)) + " --vocab "
                  + " ".join(map(str, args.vocab)) + f" --repeats {args.repeats}")


if __name__ == "__main__":
    main()
