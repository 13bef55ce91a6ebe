"""Teacher hacking and on-policy distillation, the controlled setup of Tiapkin et al. (2025) at small scale.

  oracle  = SmolLM2-135M-Instruct (the "true" distribution)
  teacher = a ~16M model distilled from the oracle on oracle-written continuations of Python-docs prompts
  student = a ~6M model distilled from the teacher, two ways at equal steps:
      offline   : a fixed dataset of teacher generations on a small prompt set, many epochs (forward KL)
      on-policy : lambda = 1, the student samples its own continuations and the teacher scores them
  and TIP (on-policy, reverse KL) keeping 50% and 10% of the tokens vs all of them.
Every student run logs, every --eval-every steps on held-out oracle-written sequences,
golden = KL(oracle || student) and proxy = KL(teacher || student) per token, and the monitor's
verdict. Reported: final golden / proxy / held-out perplexity, the hacking verdicts, the
on-policy loop's tokens/s (generation included) and each run's peak RSS (its own process).
Writes benchmarks/results/on_policy_curves.png. Needs: python ../shared/tools/teachers.py smollm2-135m-instruct

    python benchmarks/on_policy.py [--steps 300] [--eval-every 25]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import common

ORACLE = str(Path("~/.cache/distill-assets/smollm2-135m-instruct").expanduser())
OUT = common.ROOT / "runs/bench-on-policy"
TEACHER_CFG = {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 4,
               "num_key_value_heads": 2, "head_dim": 64}
STUDENT_CFG = {"hidden_size": 128, "intermediate_size": 384, "num_hidden_layers": 2, "num_attention_heads": 2,
               "num_key_value_heads": 1, "head_dim": 64}
TRAIN = {"epochs": 1000, "batch_size": 8, "optimizer": "adamw", "lr": 0.002, "weight_decay": 0.01, "schedule": "cosine",
         "warmup_epochs": 0.0, "grad_clip": 1.0, "log_every": 5, "checkpoint_every": 100,
         "eval_every": 1000}  # evaluate by steps only (an epoch here is 8 steps)


def generate_jsonl(model_path: str, records: list[dict], path: Path, max_new: int) -> None:
    """Continuations of `records` by a model (temperature 1), written as prompt-record JSONL (token ids decoded)."""
    if path.is_file():
        return
    import torch

    from distill.models.hf import load_causal_lm, load_tokenizer
    from distill.train.generation import SamplingConfig, sample_completions
    torch.manual_seed(0)
    model, tok = load_causal_lm(model_path).eval(), load_tokenizer(ORACLE)
    out = []
    for i in range(0, len(records), 16):
        part = records[i:i + 16]
        comps = sample_completions(model, [r["prompt"] for r in part], SamplingConfig(temperature=1.0, max_new_tokens=max_new),
                                   eos_id=tok.eos_token_id, pad_id=tok.eos_token_id, vocab_size=len(tok))
        out += [{"prompt": tok.decode(r["prompt"]), "completion": tok.decode([t for t in c if t != tok.eos_token_id])}
                for r, c in zip(part, comps)]
    path.write_text("\n".join(json.dumps(r) for r in out) + "\n")


def prompts(n_train: int, n_student: int, n_eval: int) -> tuple[list, list, list]:
    from distill.data.prompts import text_prompts
    from distill.models.hf import load_tokenizer
    from distill.tasks.causal_lm.data import random_subset
    records = text_prompts(load_tokenizer(ORACLE), [str(common.SHARED / "data/text/python-docs-rst.tar.xz")],
                           prompt_tokens=32, completion_tokens=48)
    records = random_subset(records, n_train + n_student + n_eval)
    return records[:n_train], records[n_train:n_train + n_student], records[n_train + n_student:]


def run_training(name: str, recipe: dict) -> dict:
    """`distill train` in its own process (its peak RSS is the run's); returns the summary + peak."""
    return common.train_subprocess(OUT, name, recipe)


def data(path: Path, eval_path: Path, **extra) -> dict:
    return {"format": "prompts", "paths": [str(path)], "eval_paths": [str(eval_path)], "max_prompt_length": 64, **extra}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--eval-every", type=int, default=25)
    parser.add_argument("--teacher-steps", type=int, default=200)
    args = parser.parse_args()
    (OUT / "data").mkdir(parents=True, exist_ok=True)
    oracle_train, student_prompts, held = prompts(256, 64, 32)
    generate_jsonl(ORACLE, oracle_train, OUT / "data/oracle_train.jsonl", 48)
    generate_jsonl(ORACLE, held, OUT / "data/heldout.jsonl", 48)
    teacher = run_training("teacher", {
        "task": "causal_lm", "teacher": {"path": ORACLE}, "student": {"config": TEACHER_CFG},
        "data": data(OUT / "data/oracle_train.jsonl", OUT / "data/heldout.jsonl"), "method": {"name": "lm_kd"},
        "train": {**TRAIN, "max_steps": args.teacher_steps}})
    teacher_path = str(OUT / "teacher/student-lm_kd/model")
    generate_jsonl(teacher_path, student_prompts, OUT / "data/teacher_fixed.jsonl", 48)  # the offline dataset
    common_run = {"task": "causal_lm", "teacher": {"path": teacher_path}, "student": {"config": STUDENT_CFG},
                  "monitor": {"oracle": ORACLE, "max_sequences": 32, "window": 4},
                  "train": {**TRAIN, "max_steps": args.steps, "eval_every_steps": args.eval_every}}
    sampling = {"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 48}
    runs = {
        "offline": {**common_run, "data": data(OUT / "data/teacher_fixed.jsonl", OUT / "data/heldout.jsonl"),
                    "method": {"name": "lm_kd", "divergence": "kl"}},
        "on_policy": {**common_run, "data": data(OUT / "data/teacher_fixed.jsonl", OUT / "data/heldout.jsonl"),
                      "method": {"name": "lm_kd", "divergence": "kl"}, "on_policy": {"lmbda": 1.0, "sampling": sampling}},
        "tip_full": {**common_run, "data": data(OUT / "data/teacher_fixed.jsonl", OUT / "data/heldout.jsonl"),
                     "method": {"name": "tip", "keep": 1.0}, "on_policy": {"lmbda": 1.0, "sampling": sampling}},
        "tip_50": {**common_run, "data": data(OUT / "data/teacher_fixed.jsonl", OUT / "data/heldout.jsonl"),
                   "method": {"name": "tip", "keep": 0.5}, "on_policy": {"lmbda": 1.0, "sampling": sampling}},
        "tip_10": {**common_run, "data": data(OUT / "data/teacher_fixed.jsonl", OUT / "data/heldout.jsonl"),
                   "method": {"name": "tip", "keep": 0.1}, "on_policy": {"lmbda": 1.0, "sampling": sampling}},
    }
    results = {name: run_training(name, recipe) for name, recipe in runs.items()}
    report(teacher, results, args)


def curves(name: str) -> list[dict]:
    folder = next((OUT / name).glob("student-*"))
    lines = [json.loads(x) for x in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["kind"] == "eval" and "golden_divergence" in r]


def plot(names: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for name in names:
        c = curves(name)
        axes[0].plot([r["step"] for r in c], [r["proxy_divergence"] for r in c], marker="o", ms=3, label=name)
        axes[1].plot([r["step"] for r in c], [r["golden_divergence"] for r in c], marker="o", ms=3, label=name)
    axes[0].set(title="proxy: KL(teacher || student)", xlabel="step", ylabel="nats / token")
    axes[1].set(title="golden: KL(oracle || student)", xlabel="step", ylabel="nats / token")
    for ax in axes:
        ax.grid(alpha=.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)


def report(teacher: dict, results: dict, args: argparse.Namespace) -> None:
    rows, figures = [], {"teacher": teacher["stages"]["student-lm_kd"]["perplexity"], "runs": {}}
    for name, summary in results.items():
        s = common.student_stage(summary)
        c = curves(name)
        verdict = s.get("teacher_hacking", {})
        figures["runs"][name] = {"golden": [r["golden_divergence"] for r in c], "proxy": [r["proxy_divergence"] for r in c],
                                 "steps": [r["step"] for r in c], "perplexity": s["perplexity"], "verdict": verdict,
                                 "loop_tokens_per_s": s["loop_tokens_per_s"], "peak_rss_bytes": summary["peak_rss_bytes"]}
        rows.append([name, f"{c[-1]['golden_divergence']:.3f}", f"{min(r['golden_divergence'] for r in c):.3f}",
                     f"{c[-1]['proxy_divergence']:.3f}", f"{s['perplexity']:.1f}",
                     f"{'yes @' + str(verdict['step']) if verdict.get('flag') else 'no'}",
                     f"{s['loop_tokens_per_s']:.0f}", f"{summary['peak_rss_bytes'] / 2 ** 30:.2f}"])
    print(common.table(["student", "golden end", "golden min", "proxy end", "held-out ppl", "hacking flagged",
                        "loop tok/s", "peak RSS GiB"], rows))
    plot(list(results), common.RESULTS / "on_policy_curves.png")
    common.record("on_policy", {**figures, "steps": args.steps, "eval_every": args.eval_every,
                                "teacher_steps": args.teacher_steps},
                  f"python benchmarks/on_policy.py --steps {args.steps} --eval-every {args.eval_every} "
                  f"--teacher-steps {args.teacher_steps}")


if __name__ == "__main__":
    main()
