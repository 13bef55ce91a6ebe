"""A TRL GKD training script, switched to distill by its import line (everything else is TRL's usage).

    python examples/trl_switch.py --model_name_or_path STUDENT --teacher_model_name_or_path TEACHER \
        --dataset_path chats.jsonl --output_dir gkd-out --per_device_train_batch_size 4 --lmbda 0.5 \
        --max_new_tokens 64 [--divergence skew_kl --divergence_options '{"alpha": 0.1}'] [--use_cpu]

chats.jsonl holds one {"messages": [{"role": "user", ...}, {"role": "assistant", ...}]} per line (TRL's
chat format; the last message is the completion). Every GKDConfig / TrainingArguments flag works, plus
distill's (--divergence, --loss_temperature, --chunk_size, --store, --reduction).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import datasets
from transformers import AutoModelForCausalLM, AutoTokenizer, HfArgumentParser

# from trl.experimental.gkd import GKDConfig, GKDTrainer                                     # before
from distill.hf import DistillationConfig as GKDConfig, DistillationTrainer as GKDTrainer  # after


@dataclass
class ScriptArguments:
    model_name_or_path: str = field(metadata={"help": "the student to train (a local folder or hub id)"})
    dataset_path: str = field(metadata={"help": "JSON-lines file of chat messages"})


def main(argv: list[str] | None = None) -> None:
    script, args = HfArgumentParser((ScriptArguments, GKDConfig)).parse_args_into_dataclasses(argv)
    tokenizer = AutoTokenizer.from_pretrained(script.model_name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    student = AutoModelForCausalLM.from_pretrained(script.model_name_or_path)
    with open(script.dataset_path) as f:
        dataset = datasets.Dataset.from_list([json.loads(line) for line in f if line.strip()])
    trainer = GKDTrainer(model=student, teacher_model=args.teacher_model_name_or_path, args=args,
                         train_dataset=dataset, processing_class=tokenizer)
    trainer.train()
    trainer.save_model(args.output_dir)


if __name__ == "__main__":
    main()
