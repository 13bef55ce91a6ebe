"""TRL's GOLD side of benchmarks/cross_tokenizer.py. Runs in its own environment, with trl installed
(the project itself never imports trl):

    python -m venv .venv-trl && .venv-trl/bin/pip install -c constraints.txt torch==2.13.0 trl==1.16.0 datasets
    .venv-trl/bin/python benchmarks/trl_gold_side.py loss  --student S --teacher T --texts texts.json --out loss.json
    .venv-trl/bin/python benchmarks/trl_gold_side.py train --student S --teacher T --texts texts.json --out train.json

`loss`: TRL's ULDLoss (GOLD) on one batch built by TRL's own data preparation; writes the value and
the batch, so the project side computes its GOLD on exactly the same tensors. `train`: GOLDTrainer
for --steps optimizer steps (off-policy, lmbda 0): steps/s, tokens/s and the process's peak RSS.
Gemma-3's tokenizer is not byte-level BPE, and TRL 1.16.0 supports byte-offset spans
(use_extended_uld) only for byte-level tokenizers; on this pair TRL runs positional ULD
(use_extended_uld: false) with the hybrid loss, and both sides are configured that way.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from types import SimpleNamespace

os.environ["TRL_EXPERIMENTAL_SILENCE"] = "1"
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from datasets import Dataset  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402
from trl.experimental.gold import GOLDConfig  # noqa: E402
from trl.experimental.gold.gold_trainer import GOLDTrainer, ULDLoss, build_teacher_inputs_from_texts  # noqa: E402
from trl.experimental.utils import DataCollatorForChatML  # noqa: E402

ULD = dict(uld_crossentropy_weight=0.0, uld_distillation_weight=1.0, uld_student_temperature=1.0,
           uld_teacher_temperature=1.0, uld_skip_student_eos=False, uld_skip_teacher_eos=False, use_extended_uld=False,
           uld_token_merge_strategy="bayesian", uld_use_hybrid_loss=True, uld_hybrid_matched_weight=None,
           uld_hybrid_unmatched_weight=None, beta=0.5)


def peak_rss() -> int:
    return int(next(line for line in open("/proc/self/status") if line.startswith("VmHWM")).split()[1]) * 1024


def models(args):
    student_tok = AutoTokenizer.from_pretrained(args.student)
    teacher_tok = AutoTokenizer.from_pretrained(args.teacher)
    student = AutoModelForCausalLM.from_pretrained(args.student, dtype=torch.float32)
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher, dtype=getattr(torch, args.teacher_dtype)).eval()
    return student, teacher, student_tok, teacher_tok


def loss(args) -> dict:
    student, teacher, s_tok, t_tok = models(args)
    texts = json.loads(open(args.texts).read())[:args.batch]
    trainer = GOLDTrainer.__new__(GOLDTrainer)
    trainer.use_uld_loss, trainer.teacher_tokenizer = True, t_tok
    prep = SimpleNamespace(dataset_num_proc=None, dataset_text_field="text", max_length=args.max_length,
                           use_extended_uld=False)
    ds = trainer._prepare_dataset_with_original_text(Dataset.from_list(texts), s_tok, prep, False, None, "train")
    batch = DataCollatorForChatML(tokenizer=s_tok, max_length=args.max_length)([dict(r) for r in ds])
    t_ids, t_labels, t_mask, _ = build_teacher_inputs_from_texts(t_tok, batch["original_prompt_text"],
                                                                 batch["original_completion_text"], use_extended_uld=False)
    with torch.no_grad():
        s_logits = student(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        t_logits = teacher(t_ids, attention_mask=t_mask).logits
    fn = ULDLoss(SimpleNamespace(**ULD), student_tokenizer=s_tok, teacher_tokenizer=t_tok, device=s_logits.device)
    value = fn(student_logits=s_logits, teacher_logits=t_logits, student_labels=batch["labels"], teacher_labels=t_labels,
               student_input_ids=batch["input_ids"], teacher_input_ids=t_ids)
    return {"loss": float(value), "input_ids": batch["input_ids"].tolist(), "attention_mask": batch["attention_mask"].tolist(),
            "labels": batch["labels"].tolist(), "teacher_ids": t_ids.tolist(), "config": ULD}


def train(args) -> dict:
    student, teacher, s_tok, t_tok = models(args)
    texts = json.loads(open(args.texts).read())
    cfg = GOLDConfig(output_dir=args.workdir, use_uld_loss=True, teacher_tokenizer_name_or_path=args.teacher, lmbda=0.0,
                     per_device_train_batch_size=args.batch, max_length=args.max_length, max_steps=args.steps,
                     learning_rate=2e-3, logging_steps=1, save_strategy="no", report_to=[], bf16=False, use_cpu=True,
                     dataloader_num_workers=0, disable_tqdm=True,
                     **{k: v for k, v in ULD.items() if k not in ("beta",)}, beta=ULD["beta"])
    trainer = GOLDTrainer(model=student, teacher_model=teacher, args=cfg, processing_class=s_tok,
                          train_dataset=Dataset.from_list(texts))
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    tokens = sum(int(r.get("num_tokens", 0)) for r in trainer.state.log_history[-1:])
    return {"seconds": seconds, "steps": args.steps, "batch": args.batch, "max_length": args.max_length,
            "num_tokens": tokens, "peak_rss_bytes": peak_rss(), "log": trainer.state.log_history[-3:]}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["loss", "train"])
    p.add_argument("--student", required=True)
    p.add_argument("--teacher", required=True)
    p.add_argument("--texts", required=True, help="JSON list of {prompt, completion} records")
    p.add_argument("--out", required=True)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--workdir", default="/tmp/trl-gold")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--teacher-dtype", choices=["float32", "bfloat16"], default="float32",
                   help="the frozen teacher's dtype (the student trains in float32)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    result = loss(args) if args.mode == "loss" else train(args)
    open(args.out, "w").write(json.dumps(result))


if __name__ == "__main__":
    main()
