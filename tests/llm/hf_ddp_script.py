"""Run by tests/llm/test_hf_trainer.py under torchrun (or alone): one DistillationTrainer step, the student saved.

    python tests/llm/hf_ddp_script.py OUT.pt PER_DEVICE_BATCH
"""
import sys

import torch

from distill.hf import DistillationConfig, DistillationTrainer
from tests.llm.test_hf_trainer import examples, models


def main(out: str, batch: int) -> None:
    torch.set_num_threads(1)
    teacher, student = models()
    args = DistillationConfig(output_dir=out + ".d", use_cpu=True, report_to="none", save_strategy="no", bf16=False,
                              activation_checkpointing=False, disable_tqdm=True, per_device_train_batch_size=batch,
                              max_steps=1, lmbda=0.0, optim="sgd", learning_rate=0.5, lr_scheduler_type="constant",
                              weight_decay=0.0, max_grad_norm=0.0, seed=0, logging_steps=1, ddp_backend="gloo" if batch < 4 else None)
    trainer = DistillationTrainer(student, teacher, args, train_dataset=examples())
    trainer.train()
    if trainer.is_world_process_zero():
        logged = next(x["loss"] for x in trainer.state.log_history if "loss" in x)
        torch.save({"student": {k: v.detach().clone() for k, v in student.state_dict().items()}, "loss": logged}, out)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
    from tests.llm.fsdp_driver import finish  # see there: no interpreter teardown after finished work
    finish()
