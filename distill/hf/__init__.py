"""A `transformers.Trainer` drop-in for TRL's GKD trainer, on distill's fused chunked loss.

An existing TRL script switches by changing its import:

    from trl.experimental.gkd import GKDConfig, GKDTrainer                        # before
    from distill.hf import DistillationConfig as GKDConfig, DistillationTrainer as GKDTrainer  # after

`DistillationConfig` takes GKDConfig's distillation fields with their names, defaults and meanings
(`temperature` samples completions, `lmbda` is the on-policy share, `beta` the generalized-JSD
interpolation, `max_new_tokens`, `seq_kd`, `disable_dropout`, `teacher_model_name_or_path`,
`teacher_model_init_kwargs`) plus distill's: any registered `divergence`, a separate
`loss_temperature`, `chunk_size`, a teacher-signal `store` instead of a live teacher, and the
`reduction`. With the defaults the loss is TRL's `generalized_jsd_loss` (the tests check it).

How a step differs from TRL's, on purpose:
  - the loss never builds B x T x V logits: a forward hook on the student's decoder takes the final
    hidden states (the model itself is not edited; its own head runs on the last position only
    where the model takes `logits_to_keep`),
    the teacher's come from its decoder, and `fused_linear_divergence` walks the tokens in chunks;
  - rollouts (student samples with probability lmbda, else teacher samples when seq_kd) are drawn
    for every micro-batch of an optimizer step *before* any of them is trained on (at the step's
    first `training_step`, on the micro-batches `get_batch_samples` fetched), so the loss is
    normalised by the valid tokens of the sequences actually trained on, over all micro-batches
    (and processes): micro-batch x accumulation == full batch even on-policy. TRL counts the tokens
    before its rollouts replace the batch. The choices use torch's generator, which checkpoints
    restore: a resumed run repeats the uninterrupted one.
  - under bf16 mixed precision both bodies run in it, but the logits stay float32 (the head
    product runs outside autocast), so a bf16 run's loss is closer to float32 than TRL's is.
Not supported: LM heads with a bias, FSDP / DeepSpeed-sharded heads
(the loss reads the full head weight), vLLM generation, TRL's SFT dataset preparation fields.
This package imports transformers; `import distill` alone does not.
"""
from distill.hf.config import REDUCTIONS, DistillationConfig, DistillationConfigError
from distill.hf.data import TokenCollator, prompt_rows
from distill.hf.trainer import DistillationTrainer

__all__ = ["REDUCTIONS", "DistillationConfig", "DistillationConfigError", "DistillationTrainer", "TokenCollator",
           "prompt_rows"]
