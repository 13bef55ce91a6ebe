"""Cross-tokenizer distillation: a Gemma-3-270M teacher (262k SentencePiece vocabulary) into SmolLM2 students
(49k byte-level BPE), every method on the same data and steps, and TRL's GOLD side by side.

Sections (`--sections`, default all; finished runs under runs/bench-xtok are reused: delete the folder
after changing the code being measured):
  trl      (a) our GOLD and TRL's ULDLoss (trl.experimental.gold) on the same batch, built by TRL's own
           data preparation, with the same student weights: relative difference of the loss values.
           Gemma-3's tokenizer is not byte-level, and TRL 1.16.0 runs byte-offset spans only for
           byte-level tokenizers, so on this pair both sides run TRL's positional ULD with the hybrid
           loss (use_extended_uld false, uld_use_hybrid_loss true, bayesian merge, no EOS skipping).
           (b) training: TRL's GOLDTrainer vs `distill train` gold on the same records, student init,
           batch and steps, each in its own process: tokens/s and peak RSS.
  quality  CE-only, ULD, GOLD, ALM and X-Token from Gemma, and same-tokenizer KD (forward KL) from
           SmolLM2-135M-Instruct as the reference line: the same ~16M SmolLM2-architecture student,
           same blocks, steps and init per seed. Every final student is scored by one evaluator on
           the same held-out blocks: bits per byte over the spans aligned with Gemma's tokenization
           (`distill.eval.lm.evaluate_aligned`), so the teacher, Gemma-distilled and SmolLM2-distilled
           students are on one scale. Also tokens/s and peak RSS.
  pretrained  the pretrained SmolLM2-135M-Instruct (the only SmolLM2-135M checkpoint here; no base model) as the
           student, lr 5e-5: CE-only vs the methods, 1 seed, and the untrained checkpoint as the start point.
  Teachers are read from top-k stores (--store-k, default 128, float16) cached once over the same blocks,
  so every method, seed and section reuses one teacher pass; --store-k 0 runs live teachers.

    python benchmarks/cross_tokenizer.py --trl-python .venv-trl/bin/python [--steps 20] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import common
import torch

OUT = common.ROOT / "runs" / "bench-xtok"
ASSETS = Path("~/.cache/distill-assets").expanduser()
GEMMA, SMOL = str(ASSETS / "gemma-3-270m"), str(ASSETS / "smollm2-135m-instruct")
STUDENT = {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4, "num_attention_heads": 4,
           "num_key_value_heads": 2, "head_dim": 64}
DOCS = str(common.SHARED / "data/text/python-docs-rst.tar.xz")
METHODS = {  # name -> (teacher, method section)
    "ce": (None, {"name": "lm_ce"}),
    "uld": (GEMMA, {"name": "uld", "alignment": "positional", "kd_weight": 1.5, "ce_weight": 1.0}),
    "gold": (GEMMA, {"name": "gold", "merge": "bayesian", "hybrid": True, "kd_weight": 1.0, "ce_weight": 0.5}),
    "alm": (GEMMA, {"name": "alm", "kd_weight": 1.0, "ce_weight": 0.5}),
    "xtoken": (GEMMA, {"name": "xtoken", "kd_weight": 1.0, "ce_weight": 0.5}),
    "kd_smollm2": (SMOL, {"name": "lm_kd", "divergence": {"name": "kl"}, "kd_weight": 1.0, "ce_weight": 0.5}),
}


# ----------------------------------------------------------------------------------------------- data

def docs_texts(n: int, tokens: int = 200) -> list[dict]:
    """{prompt, completion} records cut from the Python docs: ~`tokens` SmolLM2 tokens each, split before a space."""
    from distill.models.hf import load_tokenizer
    tok = load_tokenizer(SMOL)
    tf = tarfile.open(DOCS)
    out = []
    for member in (m for m in tf.getmembers() if m.isfile()):
        ids = tok(tf.extractfile(member).read().decode("utf-8", "replace"), add_special_tokens=False)["input_ids"]
        for i in range(0, len(ids) - tokens, tokens):
            text = tok.decode(ids[i:i + tokens])
            spaces = [m.start() for m in re.finditer(" ", text)]
            if len(spaces) > 8:
                out.append({"prompt": text[:spaces[8]], "completion": text[spaces[8]:]})
            if len(out) >= n:
                return out
    return out


def student_init(seed: int) -> str:
    """The scaled-down SmolLM2-architecture student at the seed's init, saved once (shared by both sides)."""
    folder = OUT / f"student-init-{seed}"
    if not (folder / "config.json").is_file():
        from distill.models.hf import load_config, load_tokenizer, student_from_config
        torch.manual_seed(seed)
        model = student_from_config(load_config(SMOL), STUDENT)
        model.save_pretrained(folder)
        load_tokenizer(SMOL).save_pretrained(folder)
    return str(folder)


# ----------------------------------------------------------------------------------------------- TRL

def trl_side(trl_python: str, mode: str, records: Path, extra: list[str], tag: str = "") -> dict:
    out = OUT / f"trl-{mode}{tag}.json"
    if not out.is_file():
        cmd = [trl_python, str(common.ROOT / "benchmarks/trl_gold_side.py"), mode, "--student", student_init(0),
               "--teacher", GEMMA, "--texts", str(records), "--out", str(out), *extra]
        run = subprocess.run(cmd, capture_output=True, text=True, cwd="/tmp")
        if run.returncode != 0:
            raise RuntimeError(f"TRL {mode} failed: {run.stderr[-2000:]}")
    return json.loads(out.read_text())


def our_loss_on(batch_file: dict) -> float:
    from distill.config import from_dict
    from distill.data.align import Aligner
    from distill.methods import METHODS as REGISTRY, LMContext, build_method
    from distill.models import FrozenTeacher
    from distill.models.hf import LMBody, load_causal_lm, load_tokenizer
    from distill.models.teacher_sources import AlignedTokenTeacher
    from distill.tasks.causal_lm.runner import vocabulary_map
    s_tok, t_tok = load_tokenizer(student_init(0)), load_tokenizer(GEMMA)
    student, teacher = load_causal_lm(student_init(0)), FrozenTeacher(LMBody(load_causal_lm(GEMMA)))
    cfg = from_dict(REGISTRY.get("gold").config, {"name": "gold", "alignment": "positional", "merge": "bayesian",
                                                  "hybrid": True, "beta": 0.5, "kd_weight": 1.0, "ce_weight": 0.0,
                                                  "normalize": "sequence"})
    source = AlignedTokenTeacher(teacher, Aligner(s_tok, t_tok), len(t_tok), t_tok.pad_token_id,
                                 vocabulary_map(s_tok, t_tok, {"matched"}))
    method = build_method(cfg, student=student, teacher=teacher,
                          context=LMContext(student_body=LMBody(student), teacher=source, vocab_size=len(s_tok)))
    batch = {k: torch.tensor(batch_file[k]) for k in ("input_ids", "attention_mask", "labels")}
    with torch.no_grad():
        return float(method(batch)["gold"])


def section_trl(args) -> dict:
    records = OUT / "data" / "records.json"
    jsonl = OUT / "data" / "records.jsonl"
    if not records.is_file():
        records.parent.mkdir(parents=True, exist_ok=True)
        data = docs_texts(4 * args.trl_steps + 8)
        records.write_text(json.dumps(data))
        jsonl.write_text("".join(json.dumps(r) + "\n" for r in data))
    trl_loss = trl_side(args.trl_python, "loss", records, ["--batch", "4"])
    ours = our_loss_on(trl_loss)
    figures = {"loss": {"trl": trl_loss["loss"], "ours": ours, "relative_difference": abs(ours - trl_loss["loss"]) / abs(trl_loss["loss"])}}
    figures["train"] = {}
    for dtype in args.trl_dtypes:  # like for like: both sides' teachers in this dtype, the students in float32
        suffix = "" if dtype == "float32" else f"_{dtype}"
        trl_train = trl_side(args.trl_python, "train", records, ["--batch", "4", "--steps", str(args.trl_steps),
                                                                 "--teacher-dtype", dtype], tag=suffix)
        figures["train"][f"trl{suffix}"] = {"seconds_per_step": trl_train["seconds"] / trl_train["steps"],
                                            "peak_rss_bytes": trl_train["peak_rss_bytes"], "teacher_dtype": dtype}
        for alignment in ("positional", "spans"):
            recipe = {"task": "causal_lm", "teacher": {"path": GEMMA, "dtype": dtype}, "student": {"path": student_init(0)},
                      "data": {"format": "jsonl", "paths": [str(jsonl)], "eval_fraction": 0.1, "max_length": 256},
                      "method": {"name": "gold", "alignment": alignment, "merge": "bayesian", "hybrid": True,
                                 "kd_weight": 1.0, "ce_weight": 0.0, "normalize": "sequence"},
                      "train": {"epochs": 1, "max_steps": args.trl_steps, "batch_size": 4, "optimizer": "adamw",
                                "lr": 2e-3, "eval_every": 1000, "checkpoint_every": 1000, "log_every": 1},
                      "eval": {"batch_size": 4, "min_tokens": 64}, "threads": 2}
            st_summary = common.train_subprocess(OUT, f"ours-gold-{alignment}{suffix}", recipe)
            st = common.student_stage(st_summary)
            figures["train"][f"ours_{alignment}{suffix}"] = {
                "seconds_per_step": st["step_seconds"] / st["steps"], "train_tokens_per_s": st["train_tokens_per_s"],
                "peak_rss_bytes": st_summary["peak_rss_bytes"], "teacher_dtype": dtype}
    return figures


# ----------------------------------------------------------------------------------------------- quality

def quality_recipe(method: str, seed: int, args, student: dict, steps: int | None = None, lr: float = 2e-3) -> dict:
    """The recipe of one quality run. The data (args.steps * 4 blocks) is the same for every section, so one
    store of each teacher serves every method, seed and section; `steps` (default args.steps) is the run's length."""
    teacher, section = METHODS[method]
    steps = steps or args.steps
    recipe = {"task": "causal_lm", "seed": seed, "student": student, "method": section, "threads": 2,
              "data": {"format": "text", "paths": [DOCS], "block_size": 256, "eval_fraction": 0.05,
                       "max_train_examples": args.steps * 4, "max_eval_examples": 16},
              "train": {"epochs": 1, "max_steps": steps, "batch_size": 4, "optimizer": "adamw", "lr": lr,
                        "weight_decay": 0.01, "betas": [0.9, 0.95], "schedule": "cosine", "warmup_epochs": 0.05,
                        "grad_clip": 1.0, "eval_every": 1000, "checkpoint_every": 1000, "log_every": 5},
              "eval": {"batch_size": 4}}
    if teacher is not None and args.store_k:
        recipe["store"] = teacher_store(teacher, method, args)
    elif teacher is not None:
        recipe["teacher"] = {"path": teacher}
    return recipe


def teacher_store(teacher: str, method: str, args) -> dict:
    """Cache `teacher`'s top-k over the quality data once (`distill cache`, in its own process); returns the
    store section. A cross-tokenizer store (Gemma) is cached through a cross-tokenizer method's recipe."""
    kind = "gemma" if teacher == GEMMA else "smollm2"
    store = {"path": str(OUT / f"store-{kind}-{args.steps}x4-k{args.store_k}"), "k": args.store_k, "dtype": "float16",
             "batch_size": 4}
    manifest = Path(store["path"]) / "manifest.json"
    if not (manifest.is_file() and json.loads(manifest.read_text()).get("complete")):
        recipe = {**quality_recipe("ce", 0, argparse.Namespace(**{**vars(args), "store_k": 0}),
                                   {"path": student_init(0)}),
                  "teacher": {"path": teacher}, "store": store, "method": METHODS[method][1]}
        path = common.write_recipe(OUT, f"cache-{kind}", recipe)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", "import sys; from distill.cli import main; sys.exit(main(sys.argv[1:]))",
                              "cache", str(path)], cwd=common.ROOT,
                             env={**os.environ, "PYTHONPATH": str(common.ROOT)}, capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"distill cache {kind} failed: {out.stderr[-2000:]}")
        (Path(store["path"]) / "cache_seconds.json").write_text(json.dumps({"seconds": time.perf_counter() - start}))
        print(f"store {kind}: {time.perf_counter() - start:.0f} s", flush=True)
    return store


def aligned_scores(model_dirs: dict[str, str], steps: int) -> dict[str, dict]:
    """Bits per byte of every student (and Gemma) on the same held-out blocks, aligned with Gemma's tokens."""
    from distill.data.align import Aligner
    from distill.data.token_stream import TokenBatches
    from distill.eval.lm import evaluate_aligned
    from distill.models import FrozenTeacher
    from distill.models.hf import LMBody, load_causal_lm, load_tokenizer
    from distill.models.teacher_sources import AlignedTokenTeacher
    from distill.tasks import load_recipe
    from distill.tasks.causal_lm.data import load_lm_data
    scoring = argparse.Namespace(steps=steps, store_k=0)
    _, cfg = load_recipe(common.write_recipe(OUT, "score", quality_recipe("gold", 0, scoring, {"architecture": SMOL, "config": STUDENT})))
    s_tok, t_tok = load_tokenizer(SMOL), load_tokenizer(GEMMA)
    _, held = load_lm_data(cfg, s_tok)
    source = AlignedTokenTeacher(FrozenTeacher(LMBody(load_causal_lm(GEMMA))), Aligner(s_tok, t_tok), len(t_tok),
                                 t_tok.pad_token_id)
    source = MemoTeacher(source)  # the teacher runs once per held-out batch, not once per student
    out = {}
    for name, folder in model_dirs.items():
        batches = TokenBatches(held, batch_size=4, shuffle=False, pad_id=s_tok.pad_token_id).all_batches()
        out[name] = evaluate_aligned(LMBody(load_causal_lm(folder)), source, batches, vocab_size=len(s_tok))
    return out


class MemoTeacher:
    """A teacher source that computes each batch's signal once (scoring many students on the same blocks)."""

    def __init__(self, source):
        self.source, self.memo = source, {}

    def signal(self, batch, mask):
        key = batch["input_ids"].numpy().tobytes()
        if key not in self.memo:
            self.memo[key] = self.source.signal(batch, mask)
        return self.memo[key]


def section_quality(args, prefix: str, student_of, methods: list[str], seeds: list[int], steps: int,
                    lr: float = 2e-3, untrained: str | None = None) -> dict:
    """Train every (method, seed), then score every student (and `untrained`, the start point) on one scale."""
    runs = {}
    for seed in seeds:
        for method in methods:
            if args.other_seeds is not None and method not in args.all_seed_methods and seed not in args.other_seeds:
                continue  # a shorter session: only the methods compared over every seed get all seeds
            name = f"{prefix}{steps}-{method}-s{seed}" + (f"-k{args.store_k}" if args.store_k and METHODS[method][0] else "")
            runs[(method, seed)] = (name, common.train_subprocess(OUT, name, quality_recipe(method, seed, args,
                                                                                              student_of(seed), steps, lr)))
            print(f"{name}: done", flush=True)
    folders = {name: str(next((OUT / name).glob("student-*/model"))) for name, _ in runs.values()}
    scores = aligned_scores({**folders, **({"untrained": untrained} if untrained else {})}, args.steps)
    figures = {}
    if untrained:
        figures["untrained"] = [{"seed": 0, "steps": 0, "teacher_from": "none", "train_tokens_per_s": 0.0,
                                 "peak_rss_bytes": 0, **{k: scores["untrained"][k] for k in
                                 ("bits_per_byte", "char_perplexity", "teacher_bits_per_byte")}}]
    for (method, seed), (name, summary) in runs.items():
        st = common.student_stage(summary)
        figures.setdefault(method, []).append({
            "seed": seed, "steps": steps, "bits_per_byte": scores[name]["bits_per_byte"],
            "char_perplexity": scores[name]["char_perplexity"], "teacher_bits_per_byte": scores[name]["teacher_bits_per_byte"],
            "train_tokens_per_s": st["train_tokens_per_s"], "peak_rss_bytes": summary["peak_rss_bytes"],
            "params": st["params"], "teacher_from": "store" if args.store_k and METHODS[method][0] else
            ("live" if METHODS[method][0] else "none")})
    return figures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sections", nargs="+", default=["trl", "quality", "pretrained"])
    parser.add_argument("--trl-python", default=str(common.ROOT / ".venv-trl/bin/python"))
    parser.add_argument("--trl-steps", type=int, default=4)
    parser.add_argument("--trl-dtypes", nargs="+", default=["float32", "bfloat16"],
                        help="teacher dtypes of the TRL speed comparison, each run on both sides")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--pretrained-steps", type=int, default=10)
    parser.add_argument("--all-seed-methods", nargs="+", default=["ce", "xtoken"],
                        help="with --other-seeds: the methods run on every --seeds seed")
    parser.add_argument("--other-seeds", nargs="+", type=int, default=None,
                        help="the seeds the other methods run on (default: every seed)")
    parser.add_argument("--pretrained-methods", nargs="+", default=None,
                        help="methods of the pretrained section (default: --methods but kd_smollm2)")
    parser.add_argument("--store-k", type=int, default=128,
                        help="quality runs read each teacher from a top-k store cached once (0: live teachers)")
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    figures = {}
    command = "python benchmarks/cross_tokenizer.py " + " ".join(sys.argv[1:])
    if "trl" in args.sections:
        trl = section_trl(args)
        print(json.dumps(trl, indent=1), flush=True)
        common.record("cross_tokenizer_trl", trl, command)
    if "quality" in args.sections:
        figures["quality"] = section_quality(args, "q", lambda s: {"path": student_init(s)}, args.methods, args.seeds,
                                             args.steps)
    if "pretrained" in args.sections:
        figures["pretrained"] = section_quality(args, "p", lambda s: {"path": SMOL}, args.pretrained_methods or
                                                [m for m in args.methods if m != "kd_smollm2"], [0], args.pretrained_steps, lr=5e-5,
                                                untrained=SMOL)
    if figures:
        report(figures, command)


def report(figures: dict, command: str) -> None:
    rows = []
    for section in ("quality", "pretrained"):
        for method, runs in figures.get(section, {}).items():
            mean, std = common.mean_std([r["bits_per_byte"] for r in runs])
            rows.append([section, method, str(runs[0]["steps"]), runs[0]["teacher_from"], f"{mean:.4f} ± {std:.4f}", str(len(runs)), f"{runs[0]['teacher_bits_per_byte']:.4f}",
                         f"{common.mean_std([r['train_tokens_per_s'] for r in runs])[0]:.0f}",
                         f"{max(r['peak_rss_bytes'] for r in runs) / 2 ** 30:.2f}"])
    if rows:
        print(common.table(["section", "method", "steps", "teacher", "held-out bits/byte", "seeds", "teacher bits/byte", "train tok/s",
                            "peak RSS GiB"], rows))
    common.record("cross_tokenizer", figures, command)


if __name__ == "__main__":
    main()
