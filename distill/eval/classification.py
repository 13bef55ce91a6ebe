"""Classification metrics: accuracy, NLL, calibration, agreement with the teacher."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.data.stream import normalize
from distill.losses import kl
from distill.modes import eval_mode


@torch.no_grad()
def predict_logits(model: nn.Module, images: Tensor, mean: list[float], std: list[float],
                   batch_size: int = 512) -> Tensor:
    """float32 logits (N, C) of `model` in eval mode over uint8 images (N, C, H, W)."""
    with eval_mode(model):
        out = [model(normalize(images[i:i + batch_size], mean, std)).float()
               for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def reliability(probs: Tensor, labels: Tensor, bins: int = 15) -> dict[str, list[float]]:
    """Per confidence bin: mean confidence, accuracy and count (equal-width bins on [0, 1])."""
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    index = torch.bucketize(confidence, edges[1:-1], right=True)
    counts = torch.bincount(index, minlength=bins).float()
    conf_sum = torch.zeros(bins).index_add_(0, index, confidence)
    acc_sum = torch.zeros(bins).index_add_(0, index, correct)
    safe = counts.clamp_min(1)
    return {"confidence": (conf_sum / safe).tolist(), "accuracy": (acc_sum / safe).tolist(), "count": counts.tolist(),
            "edges": edges.tolist()}


def expected_calibration_error(probs: Tensor, labels: Tensor, bins: int = 15) -> float:
    """ECE = sum_b (n_b / N) |accuracy_b - confidence_b| over equal-width confidence bins."""
    table = reliability(probs, labels, bins)
    n = max(len(labels), 1)
    return float(sum(c / n * abs(a - f) for c, a, f in zip(table["count"], table["accuracy"], table["confidence"])))


def classification_metrics(logits: Tensor, labels: Tensor, teacher_logits: Tensor | None = None,
                           bins: int = 15) -> dict:
    """accuracy, nll, ece, a reliability table, and (with a teacher) top-1 agreement and KL(t || s)."""
    logits = logits.float()
    probs = logits.softmax(dim=1)
    out = {"accuracy": float((logits.argmax(1) == labels).float().mean()),
           "nll": float(F.cross_entropy(logits, labels)),
           "ece": expected_calibration_error(probs, labels, bins),
           "reliability": reliability(probs, labels, bins)}
    if teacher_logits is not None:
        out["agreement"] = float((logits.argmax(1) == teacher_logits.argmax(1)).float().mean())
        out["kl_to_teacher"] = float(kl(logits, teacher_logits.float()))
    return out
