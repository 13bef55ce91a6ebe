"""One GKD training script run with TRL's GKDTrainer and with distill.hf's DistillationTrainer (the import switched).

Teacher: SmolLM2-135M-Instruct from ~/.cache/distill-assets (a random model of its config when absent);
student: the same architecture cut to --student-layers layers, randomly initialised; vocabulary 49,152.
Both sides get the same pre-tokenized batches (distill.hf.TokenCollator, random token ids, the first 32 of
each row unlabelled), off-policy (lmbda 0), beta 0.5, float32 (bf16 and gradient checkpointing off on both:
TRL's defaults turn both on), AdamW, --steps optimizer steps of --batch x --length tokens. Each side runs in a
fresh subprocess; the RSS high-water mark is reset after models and trainer are built, so "peak" is the
training's own memory (activations, logits, optimizer state). Time per step is the median over the steps
after the first. The first step's loss is printed for both (it should agree). The sides alternate per
repeat, so machine load affects both alike.

    python benchmarks/hf_trainer.py [--steps 4] [--batch 4] [--length 256] [--repeats 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

TEACHER = Path.home() / ".cache" / "distill-assets" / "smollm2-135m-instruct"


def rss_bytes(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def child(side: str, args: argparse.Namespace) -> None:
    """Runs in the subprocess: train one side and print a JSON line."""
    os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
    import warnings
    warnings.filterwarnings("ignore")
    import datasets
    import torch
    import transformers

    from distill.hf import TokenCollator
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if TEACHER.is_dir():
        teacher = transformers.AutoModelForCausalLM.from_pretrained(TEACHER, dtype=torch.float32)
        source = "smollm2-135m-instruct"
    else:
        teacher = transformers.AutoModelForCausalLM.from_config(transformers.LlamaConfig(
            vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
            num_key_value_heads=3, tie_word_embeddings=True))
        source = "random (smollm2-135m config)"
    config = teacher.config.__class__.from_dict({**teacher.config.to_dict(), "num_hidden_layers": args.student_layers})
    student = transformers.AutoModelForCausalLM.from_config(config)
    g = torch.Generator().manual_seed(1)
    rows = []
    for _ in range(args.steps * args.batch):
        ids = torch.randint(3, config.vocab_size, (args.length,), generator=g).tolist()
        rows.append({"input_ids": ids, "labels": [-100] * 32 + ids[32:]})
    if side == "trl":
        from trl.experimental.gkd import GKDConfig as Config, GKDTrainer as Trainer
    else:
        from distill.hf import DistillationConfig as Config, DistillationTrainer as Trainer
    cfg = Config(output_dir=f"/tmp/hf-trainer-bench-{side}", per_device_train_batch_size=args.batch, max_steps=args.steps,
                 lmbda=0.0, beta=0.5, learning_rate=1e-4, bf16=False, activation_checkpointing=False, use_cpu=True,
                 report_to="none", save_strategy="no", logging_steps=1, disable_tqdm=True, dataloader_num_workers=0)

    class Clock(transformers.TrainerCallback):
        stamps: list[float] = []

        def on_step_end(self, *_a, **_k):
            self.stamps.append(time.perf_counter())

    if TEACHER.is_dir():  # GKDTrainer needs a tokenizer (for its generation config's pad id)
        tokenizer = transformers.AutoTokenizer.from_pretrained(TEACHER)
    else:
        from tests.llm.conftest import make_tokenizer
        tokenizer = make_tokenizer(f"/tmp/hf-trainer-bench-{side}-tokenizer")
    trainer = Trainer(model=student, teacher_model=teacher, args=cfg, data_collator=TokenCollator(tokenizer.pad_token_id),
                      train_dataset=datasets.Dataset.from_list(rows), processing_class=tokenizer, callbacks=[Clock()])
    open("/proc/self/clear_refs", "w").write("5")  # reset the RSS high-water mark
    base = rss_bytes("VmRSS")
    start = time.perf_counter()
    trainer.train()
    stamps = [start] + Clock.stamps
    steps = [b - a for a, b in zip(stamps[:-1], stamps[1:])]
    losses = [x["loss"] for x in trainer.state.log_history if "loss" in x]
    print(json.dumps({"side": side, "peak_bytes": rss_bytes("VmHWM") - base, "seconds_per_step": statistics.median(steps[1:]),
                      "first_loss": losses[0], "teacher": source, "student_layers": args.student_layers}))


def measure(side: str, argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, "--child", side, *argv], capture_output=True, text=True,
                         cwd=common.ROOT, env={**os.environ, "PYTHONPATH": str(common.ROOT)})
    if out.returncode != 0:
        tail = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else ""
        return {"side": side, "note": f"failed (exit {out.returncode}): {tail}"}
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=256)
    p.add_argument("--student-layers", type=int, default=4)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    return p.parse_args(argv)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2], parse(sys.argv[3:]))
        return
    args = parse()
    argv = sys.argv[1:]
    results = []
    for _ in range(args.repeats):
        for side in ("trl", "distill"):
            results.append(measure(side, argv))
            print(results[-1], flush=True)
    rows = []
    for side in ("trl", "distill"):
        mine = [r for r in results if r["side"] == side and "peak_bytes" in r]
        if mine:
            rows.append([side, f"{statistics.median(r['peak_bytes'] for r in mine) / 2 ** 20:.0f}",
                         f"{statistics.median(r['seconds_per_step'] for r in mine):.2f}", f"{mine[0]['first_loss']:.6f}"])
    print(common.table(["trainer", "peak MiB", "s / step", "first loss"], rows))
    if len(rows) == 2:
        print(f"distill / trl: memory {float(rows[1][1]) / float(rows[0][1]):.3f}, time {float(rows[1][2]) / float(rows[0][2]):.2f}")
    command = "python benchmarks/hf_trainer.py " + " ".join(argv)
    common.record("hf_trainer", {"steps": args.steps, "batch": args.batch, "length": args.length, "results": results},
                  command.strip())


if __name__ == "__main__":
    main()
