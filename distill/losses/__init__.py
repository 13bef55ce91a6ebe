"""Pure loss functions over tensors: no state. See each function's docstring.

Token divergences (`kl`, `reverse_kl`, `jsd`, `skew_kl`, `skew_reverse_kl`, `tvd`, `akl`, `taid`)
are registered by name in `DIVERGENCES` with their option schemas; `fused_linear_divergence`
computes any of them (and CE) from hidden states without building the N x V logits, reading the
teacher through one `TeacherSignal` (`HiddenSignal`, `DenseSignal`, `TopKSignal`).

Sentence embeddings and ranking: `embedding_mse` / `embedding_cosine` (LEAF), `similarity_kd`
(CompRess, in-batch), `in_batch_ce` / `in_batch_kd` (TCT-ColBERT), `margin_mse`, `ranknet` /
`listwise_kl` / `dear_loss` (DeAR), and LELP's pseudo-subclass projection (`distill.losses.lelp`).
"""
from distill.losses.contrastive_kd import in_batch_ce, in_batch_kd, in_batch_scores
from distill.losses.crd import nce_loss, nce_scores
from distill.losses.dear import dear_loss
from distill.losses.dhkd import binary_kl_norm
from distill.losses.dist import dist
from distill.losses.divergences import kl, reverse_kl
from distill.losses.dkd import dkd
from distill.losses.features import attention_transfer, hint_loss, nd_loss, rkd_angle, rkd_distance
from distill.losses.focal import focal_loss
from distill.losses.fused import FusedLoss, fused_linear_divergence
from distill.losses.kd import hinton_kd
from distill.losses.leaf import embedding_cosine, embedding_mse
from distill.losses.lelp import lelp_loss
from distill.losses.ls_kd import ls_kd, standardize_logits
from distill.losses.margin_mse import margin_mse
from distill.losses.multi_teacher import multi_teacher_kd, teacher_weights
from distill.losses.ofa import ofa_loss
from distill.losses.online import balanced_divergence, entropy, mutual_learning
from distill.losses.pld import pld
from distill.losses.ranking import listwise_kl, ranknet, similarity_matrix
from distill.losses.reduction import reduce_positions
from distill.losses.registry import DIVERGENCES, DivergenceConfig, divergence_config, register_divergence
from distill.losses.signal import DenseSignal, HiddenSignal, TeacherSignal, TopKSignal
from distill.losses.sim_kd import similarity_kd
from distill.losses.sinkhorn import sinkhorn_distance
from distill.losses.tgeo import fused_kd_ce, geometry_features
from distill.losses.token import akl, jsd, skew_kl, skew_reverse_kl, taid, tvd

__all__ = [
    "DIVERGENCES", "DenseSignal", "DivergenceConfig", "FusedLoss", "HiddenSignal", "TeacherSignal", "TopKSignal",
    "akl", "attention_transfer", "balanced_divergence", "binary_kl_norm", "dear_loss", "dist", "divergence_config", "dkd",
    "embedding_cosine", "embedding_mse", "entropy", "in_batch_ce", "in_batch_kd", "in_batch_scores", "lelp_loss",
    "listwise_kl", "margin_mse", "ranknet", "similarity_kd", "similarity_matrix",
    "focal_loss", "fused_kd_ce", "fused_linear_divergence", "geometry_features", "hint_loss", "hinton_kd", "jsd", "kl",
    "ls_kd", "multi_teacher_kd", "mutual_learning", "nce_loss", "nce_scores", "nd_loss", "ofa_loss", "pld",
    "reduce_positions", "register_divergence", "reverse_kl", "rkd_angle", "rkd_distance", "sinkhorn_distance",
    "skew_kl", "skew_reverse_kl", "standardize_logits", "taid", "teacher_weights", "tvd",
]
