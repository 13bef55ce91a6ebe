"""DisWOT: how alike a teacher and an untrained student are on one mini-batch (pure functions).

Paper: "DisWOT: Student Architecture Search for Distillation WithOut Training", Dong, Li and Wei,
CVPR 2023. The paper finds that the similarity of a teacher's and a candidate student's semantic maps
and sample relations, measured at the student's initialisation on one mini-batch, ranks candidates by
how well they distil; `distill students` uses it to rank a recipe's candidate students.

Notation: one batch of N samples, labels y, K classes; for each network

    h  (N, D)   the input of its final linear layer (the pooled features)
    z  (N, V)   its logits (V = K for classification; the vocabulary for an LM)
    F  (N, ...) the feature map fed to the pooling (flattened per sample)

Semantic maps: the gradient of the batch-mean cross-entropy with respect to the final linear layer's
weight, the "Grad-CAM of the fc layer" of the official code,

    M = dCE/dW = (softmax(z) - onehot(y))^T h / N          (K, D), closed form (no backward pass)

restricted to the rows of `classes` when given (an LM's vocabulary is too large: its rows are the
target tokens present in the batch).

    G(X)      = row_normalize(X X^T),  each row divided by its L2 norm (F.normalize, as the official code)
    semantic  = mean_ij (G(M_t) - G(M_s))_ij^2               (K x K, inter-class correlation)
    relation  = mean_ij (G(F_t) - G(F_s))_ij^2               (N x N, sample relations; SP-KD's form)
    score     = -(semantic + relation)                        higher is better, 0 at best

Both distances are 0 for identical inputs, lie in [0, 4 / rows], and are unchanged by scaling the
features by any non-zero factor or by an orthogonal change of basis of the feature space (only Gram
matrices enter), so teacher and student may have different widths and spatial sizes.

Where this departs from the official code (github.com/lilujunai/DisWOT-CVPR2023,
`exps/parse_nb201_distill.py: compute_diswot_procedure`): the relation term is its SP loss on the
features before pooling, as here. Its semantic term feeds the fc-weight gradients (K, D) to its ICKD loss,
which builds, per class, the D x D outer product of that class's gradient row; that needs teacher and
student of the same width D (true of its NAS-Bench-201 and ResNet-20/110 pairs) and compares channels
index by index. We compute the inter-class K x K correlation the paper describes, which is defined for
any pair of widths. The official code also re-initialises both networks with N(0, 1) weights; that is
`students.teacher: random` with `students.init: gaussian` in a recipe (default: the trained teacher and
each candidate's own initialisation).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass(frozen=True)
class DisWOTScore:
    """The two distances and the score (= -(semantic + relation))."""

    semantic: float
    relation: float
    score: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def class_activation_maps(features: Tensor, logits: Tensor, labels: Tensor, classes: Tensor | None = None) -> Tensor:
    """(softmax(logits) - onehot(labels))^T features / N: the final linear layer's weight gradient of the mean CE.

    Args:
        features: (N, D) the final linear layer's input.
        logits: (N, V) that layer's output.
        labels: (N,) int64 targets in [0, V).
        classes: optional (K,) int64 class ids: keep only these rows (default: all V).
    Returns:
        (K, D) float64. The residual p - y is formed in float64 from log-softmax, so a confident teacher's
        tiny residuals do not underflow to zero.
    """
    log_p = torch.log_softmax(logits.float(), dim=-1)
    if classes is None:
        classes = torch.arange(logits.shape[-1], device=logits.device)
    residual = log_p[:, classes].double().exp() - (labels[:, None] == classes[None, :]).double()
    return residual.T @ features.double() / features.shape[0]


def normalized_gram(x: Tensor) -> Tensor:
    """(R, ...) -> (R, R): X X^T of the rows of x (flattened), each row of it scaled to unit L2 norm."""
    x = x.reshape(x.shape[0], -1).double()
    return F.normalize(x @ x.T, dim=1)


def gram_distance(teacher: Tensor, student: Tensor) -> Tensor:
    """mean_ij (G(teacher) - G(student))_ij^2 for two (R, ...) tensors with the same R (widths may differ)."""
    if teacher.shape[0] != student.shape[0]:
        raise ValueError(f"teacher has {teacher.shape[0]} rows, student {student.shape[0]}: the Gram matrices "
                         "must be over the same samples / classes")
    return (normalized_gram(teacher) - normalized_gram(student)).pow(2).mean()


def diswot(teacher_relation: Tensor, student_relation: Tensor, teacher_maps: Tensor, student_maps: Tensor) -> DisWOTScore:
    """The DisWOT distances and score of one teacher-student pair on one batch.

    Args:
        teacher_relation, student_relation: (N, ...) features per sample (e.g. (N, C, H, W) before pooling,
            or (N, D)); the two may differ in everything but N.
        teacher_maps, student_maps: (K, Dt) and (K, Ds) semantic maps (`class_activation_maps`) of the
            same K classes.
    """
    semantic = float(gram_distance(teacher_maps, student_maps))
    relation = float(gram_distance(teacher_relation, student_relation))
    return DisWOTScore(semantic, relation, 0.0 - (semantic + relation))  # 0.0 - x: never -0.0
