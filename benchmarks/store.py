"""Teacher-signal store: size, caching speed, training speed and the quality cost of top-k targets.

With SmolLM2-135M-Instruct on the Python docs prose (the first --blocks packed 256-token blocks,
plus --eval-blocks held-out blocks):
  1. `distill cache` for k = 8, 32, 128 (recipes/smollm2-cache.yaml): bytes per token and caching
     throughput (teacher-forward positions per second);
  2. the same student (recipes/tiny-from-store.yaml, forward KL) trained from each store, and with
     the live dense teacher, for the same number of steps on the same blocks: training tokens/s
     side by side (target: store >= 3x the live teacher);
  3. every final student evaluated against the *live* teacher on the held-out blocks (perplexity
     and KL(teacher || student)), so the quality cost of top-k is measured on one scale.
  4. timing rounds: short runs (--timing-steps) of the k = 32 student and the live-teacher student
     alternated --timing-rounds times, so the speed ratio is also measured side by side in time
     (geometric mean of the per-round ratios) and not only from two long runs far apart.
Speeds count the training step and the batch fetch (a store read is part of training from a store).
Finished runs are reused: delete runs/bench-store after changing the code being measured.
Targets: <= 200 bytes/token at k = 32; training from the store >= 3x faster.

    python benchmarks/store.py [--ks 8 32 128] [--blocks 400] [--steps 150] [--timing-rounds 2]
"""
from __future__ import annotations

import argparse
import json
import math
import time

import common
import torch

from distill.tasks import load_recipe

OUT = "runs/bench-store"


def data_overrides(blocks: int, eval_blocks: int) -> list[str]:
    # both counts are part of the data fingerprint: a store and its students must use the same ones
    return [f"data.max_train_examples={blocks}", f"data.max_eval_examples={eval_blocks}", "progress=false",
            f"output_dir={OUT}"]


def cache_store(k: int, blocks: int, eval_blocks: int) -> dict:
    path = f"{OUT}/store-k{k}"
    task, cfg = load_recipe(common.ROOT / "recipes/smollm2-cache.yaml", [f"store.k={k}", f"store.path={path}",
                                                                         *data_overrides(blocks, eval_blocks)])
    manifest_path = common.ROOT / path / "manifest.json"
    if manifest_path.is_file() and json.loads(manifest_path.read_text()).get("complete"):
        manifest = json.loads(manifest_path.read_text())
        return {**manifest, "cache_seconds": manifest.get("bench_cache_seconds")}
    started = time.perf_counter()
    manifest = task.cache(cfg)
    seconds = time.perf_counter() - started
    manifest_path.write_text(json.dumps({**manifest, "bench_cache_seconds": seconds}, indent=2))
    return {**manifest, "cache_seconds": seconds}


def train(name: str, overrides: list[str], steps: int, recipe: str = "recipes/tiny-from-store.yaml") -> dict:
    # epochs high enough that --steps, not the end of a small --blocks set, ends the run
    task, cfg = load_recipe(common.ROOT / recipe, [f"name={name}", f"train.max_steps={steps}", "train.epochs=1000",
                                                   "train.eval_every=1000", "train.checkpoint_every=50",
                                                   *overrides])
    done = common.ROOT / OUT / name / "summary.json"
    if done.is_file():
        return json.loads(done.read_text())
    return task.run(cfg, resume=(common.ROOT / OUT / name).exists())


def store_run(name: str, k: int, steps: int, blocks: int, eval_blocks: int) -> dict:
    """The student trained from the k store (no teacher loaded)."""
    return train(name, [f"store.path={OUT}/store-k{k}", *data_overrides(blocks, eval_blocks)], steps)


def live_run(name: str, steps: int, blocks: int, eval_blocks: int) -> dict:
    """The same student trained with the live dense teacher."""
    return train(name, ["store=null", *data_overrides(blocks, eval_blocks)], steps, recipe="recipes/smollm2-to-tiny-fkl.yaml")


def timing_rounds(k: int, rounds: int, steps: int, blocks: int, eval_blocks: int) -> dict:
    """Alternate short runs from the k store and with the live teacher; per-round speed ratios (loop tokens/s)."""
    ratios, speeds = [], []
    for r in range(rounds):
        store = common.student_stage(store_run(f"timing-r{r}-k{k}", k, steps, blocks, eval_blocks))["loop_tokens_per_s"]
        live = common.student_stage(live_run(f"timing-r{r}-live", steps, blocks, eval_blocks))["loop_tokens_per_s"]
        ratios.append(store / live)
        speeds.append({"store": store, "live": live})
        print(f"timing round {r}: store k={k} {store:.0f} tok/s, live {live:.0f} tok/s, ratio {store / live:.2f}", flush=True)
    return {"k": k, "steps": steps, "rounds": speeds, "ratios": ratios,
            "geomean_ratio": math.exp(sum(map(math.log, ratios)) / len(ratios))}


@torch.no_grad()
def live_teacher_eval(run_name: str, blocks: int, eval_blocks: int, out: str = OUT) -> dict:
    """The exported student of a run against the live teacher on the held-out blocks."""
    from transformers import AutoModelForCausalLM

    from distill.data.token_stream import TokenBatches
    from distill.eval.lm import evaluate_lm
    from distill.models import FrozenTeacher
    from distill.models.hf import LMBody, load_causal_lm, load_tokenizer
    from distill.models.teacher_sources import LiveTokenTeacher
    from distill.tasks.causal_lm.data import load_lm_data
    _, cfg = load_recipe(common.ROOT / "recipes/smollm2-cache.yaml", data_overrides(blocks, eval_blocks))
    teacher = LiveTokenTeacher(FrozenTeacher(LMBody(load_causal_lm(cfg.teacher.path))))
    tokenizer = load_tokenizer(cfg.teacher.path)
    _, held = load_lm_data(cfg, tokenizer)
    folder = next((common.ROOT / out / run_name).glob("student-*/model"))
    student = LMBody(AutoModelForCausalLM.from_pretrained(folder))
    stream = TokenBatches(held, batch_size=8, shuffle=False, pad_id=tokenizer.eos_token_id)
    return evaluate_lm(student, teacher, stream.all_batches(), vocab_size=len(tokenizer))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ks", nargs="+", type=int, default=[8, 32, 128])
    parser.add_argument("--blocks", type=int, default=400)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--eval-blocks", type=int, default=64, help="held-out blocks for the live-teacher evaluation")
    parser.add_argument("--timing-rounds", type=int, default=2, help="alternated short store / live runs (0: none)")
    parser.add_argument("--timing-steps", type=int, default=5)
    args = parser.parse_args()
    figures, rows = {"stores": {}, "students": {}}, []
    for k in args.ks:
        m = cache_store(k, args.blocks, args.eval_blocks)
        positions = sum(s["tokens"] for v in m["splits"].values() for s in v)
        figures["stores"][k] = {"bytes_per_token": m["bytes_per_token"], "positions": positions,
                                "cache_seconds": m["cache_seconds"], "cache_positions_per_s": positions / m["cache_seconds"]}
        print(f"k={k}: {m['bytes_per_token']:.1f} bytes/token, {positions / m['cache_seconds']:.0f} positions/s", flush=True)
    runs = {f"k{k}": store_run(f"from-store-k{k}", k, args.steps, args.blocks, args.eval_blocks) for k in args.ks}
    runs["live"] = live_run("live-teacher", args.steps, args.blocks, args.eval_blocks)
    for name, summary in runs.items():
        student = common.student_stage(summary)
        quality = live_teacher_eval(summary["name"], args.blocks, args.eval_blocks)
        figures["students"][name] = {"train_tokens_per_s": student["loop_tokens_per_s"],
                                     "step_tokens_per_s": student["train_tokens_per_s"], "perplexity": quality["perplexity"],
                                     "kl_to_teacher": quality["kl_to_teacher"], "steps": student["steps"]}
    live_speed = figures["students"]["live"]["train_tokens_per_s"]
    if args.timing_rounds:
        k = 32 if 32 in args.ks else args.ks[0]
        figures["timing"] = timing_rounds(k, args.timing_rounds, args.timing_steps, args.blocks, args.eval_blocks)
    for name, f in figures["students"].items():
        k = name[1:] if name.startswith("k") else "-"
        store = figures["stores"].get(int(k)) if k != "-" else None
        rows.append([name, k, f"{store['bytes_per_token']:.1f}" if store else "-",
                     f"{store['cache_positions_per_s']:.0f}" if store else "-", f"{f['train_tokens_per_s']:.0f}",
                     f"{f['train_tokens_per_s'] / live_speed:.2f}x", f"{f['perplexity']:.2f}", f"{f['kl_to_teacher']:.4f}"])
    print(common.table(["student from", "k", "bytes/token", "cache pos/s", "train tok/s", "vs live", "held-out ppl",
                        "KL(teacher||student)"], rows))
    if "timing" in figures:
        print(f"alternated timing rounds, k={figures['timing']['k']}: store/live ratios "
              f"{', '.join(f'{r:.2f}' for r in figures['timing']['ratios'])} (geometric mean {figures['timing']['geomean_ratio']:.2f})")
    common.record("store", {**figures, "blocks": args.blocks, "steps": args.steps},
                  f"python benchmarks/store.py --ks {' '.join(map(str, args.ks))} --blocks {args.blocks} --steps {args.steps} "
                  f"--eval-blocks {args.eval_blocks} --timing-rounds {args.timing_rounds} --timing-steps {args.timing_steps}")


if __name__ == "__main__":
    main()
