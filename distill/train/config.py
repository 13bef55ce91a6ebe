"""The training schedule schema shared by every loop (teacher stage, distillation, LLM)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from distill.config import option
from distill.errors import ConfigError


@dataclass(kw_only=True)
class FSDPConfig:
    """Fully sharded data parallelism (FSDP2, `train.distributed: fsdp`): how the models are sharded."""

    shard_teacher: bool = option(False, help="also shard the frozen teacher's decoder layers (a teacher too large "
                                 "for one process); its head and embeddings are gathered while it runs")
    reshard_after_forward: bool = option(True, help="free each decoder layer's gathered weights after its forward "
                                         "(less memory, one more all-gather in backward)")
    mixed_precision: bool = option(False, help="gather the student's weights in bfloat16 for compute; the "
                                   "shards, the optimizer and the gradient reduction stay float32")


@dataclass(kw_only=True)
class TrainConfig:
    """Optimizer, schedule, batching, precision and checkpointing of one training stage."""

    epochs: int = option(10, min=1, help="passes over the training data")
    max_steps: Optional[int] = option(None, min=1, help="stop after this many optimizer steps (overrides epochs)")
    batch_size: int = option(128, min=1, help="examples per optimizer step (before accumulation splits it)")
    grad_accum: int = option(1, min=1, help="micro-batches per optimizer step; the step's loss is unchanged")
    optimizer: Literal["sgd", "adamw"] = option("sgd", help="sgd (momentum, nesterov) or adamw")
    lr: float = option(0.05, min=0.0, min_exclusive=True, help="peak learning rate")
    momentum: float = option(0.9, min=0.0, max=1.0, help="SGD momentum")
    nesterov: bool = option(False, help="SGD Nesterov momentum")
    betas: list[float] = option(default_factory=lambda: [0.9, 0.999], help="AdamW betas")
    weight_decay: float = option(5e-4, min=0.0, help="decoupled for adamw, L2 for sgd")
    schedule: Literal["constant", "step", "cosine"] = option("cosine", help="learning-rate schedule after warmup")
    warmup_epochs: float = option(0.0, min=0.0, help="linear warmup length in epochs (fractions allowed)")
    milestones: list[float] = option(default_factory=list, help="epochs at which 'step' multiplies the lr by gamma")
    gamma: float = option(0.1, min=0.0, max=1.0, help="'step' decay factor")
    min_lr_ratio: float = option(0.0, min=0.0, max=1.0, help="cosine floor as a fraction of lr")
    label_smoothing: float = option(0.0, min=0.0, max=0.99, help="label smoothing of the cross-entropy parts")
    grad_clip: Optional[float] = option(None, min=0.0, min_exclusive=True, help="max global gradient norm")
    bf16: bool = option(False, help="bfloat16 autocast (CPU or CUDA)")
    swa_start_epoch: Optional[int] = option(None, min=0, help="stochastic weight averaging: average the weights at "
                                            "the end of every epoch from this one, then recompute batch-norm stats")
    swa_lr: Optional[float] = option(None, min=0.0, min_exclusive=True, help="constant learning rate during SWA "
                                     "(default: keep the schedule)")
    checkpoint_every: int = option(0, min=0, help="optimizer steps between checkpoints; 0 = end of each epoch only")
    keep_checkpoints: int = option(2, min=1, help="how many recent checkpoints to keep")
    eval_every: int = option(1, min=1, help="evaluate every this many epochs (and at the end)")
    eval_every_steps: Optional[int] = option(None, min=1, help="also evaluate every this many optimizer steps")
    log_every: int = option(20, min=1, help="optimizer steps between training-metric lines")
    distributed: Literal["ddp", "fsdp"] = option("ddp", help="under torchrun: ddp replicates the student on every "
                                                 "rank; fsdp shards it (causal_lm) and checkpoints with "
                                                 "torch.distributed.checkpoint, resumable at another world size")
    fsdp: FSDPConfig = option(default_factory=FSDPConfig, help="sharding options of distributed: fsdp")

    def __post_init__(self) -> None:
        if self.distributed == "fsdp" and self.swa_start_epoch is not None:
            raise ConfigError("train.swa_start_epoch: weight averaging is not supported with train.distributed: fsdp "
                              "(use distributed: ddp)")
