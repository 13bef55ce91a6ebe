"""Teacher diagnostics before distillation: is this teacher's signal worth distilling, at this temperature?

A teacher whose logits are large (a standard deviation of ~35 is common for a well-trained CNN) gives soft
targets that are one-hot even at T = 4: KD then degenerates to CE on the teacher's labels, and users see
KD score below CE-only without knowing why. A teacher fed the wrong preprocessing scores near chance.
Both are cheap to see on the held-out logits before any student trains.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from distill.eval.classification import expected_calibration_error

ONE_HOT_MAX_PROB = 0.95  # mean max soft-target probability above this: the soft targets carry ~no dark knowledge
UNIFORM_ENTROPY = 0.97  # mean entropy / log(C) above this: the soft targets carry ~no class information
CHANCE_FACTOR = 1.5  # held-out accuracy below this multiple of the majority-class rate: near chance


def soft_target_diagnostics(logits: Tensor, labels: Tensor, temperature: float, bins: int = 15) -> dict[str, float]:
    """Figures of a teacher's (N, C) held-out logits: accuracy, chance level (majority-class rate), logit
    scale (std over classes, mean over examples), calibration (ECE at T = 1), and of its soft targets at
    `temperature`: mean max-probability and mean entropy normalised by log C (0 one-hot, 1 uniform)."""
    logits = logits.float()
    classes = logits.shape[1]
    soft = (logits / temperature).softmax(dim=1)
    entropy = -(soft * soft.clamp_min(1e-30).log()).sum(1)
    chance = float(torch.bincount(labels, minlength=classes).max()) / len(labels)
    return {"accuracy": float((logits.argmax(1) == labels).float().mean()), "chance_accuracy": chance,
            "logit_std": float(logits.std(dim=1).mean()), "ece": expected_calibration_error(logits.softmax(1), labels, bins),
            "temperature": temperature, "soft_max_prob": float(soft.max(1).values.mean()),
            "soft_entropy": float(entropy.mean() / math.log(classes))}


def diagnostic_warnings(d: dict[str, float], who: str = "teacher") -> list[str]:
    """One line per problem found in `soft_target_diagnostics` figures (empty when none)."""
    out = []
    t = d["temperature"]
    if d["accuracy"] < CHANCE_FACTOR * d["chance_accuracy"]:
        out.append(f"{who} scores {100 * d['accuracy']:.1f} % on the held-out data (chance {100 * d['chance_accuracy']:.1f} %): "
                   f"check the preprocessing it expects (teacher.normalize: none, or its own mean/std) and its checkpoint")
    if d["soft_max_prob"] > ONE_HOT_MAX_PROB:
        suggested = max(t, t * d["logit_std"] / 8)  # a logit std of ~8 per T keeps the runner-up classes visible
        out.append(f"{who} soft targets at T={t:g} have mean max-probability {d['soft_max_prob']:.3f} (logit std "
                   f"{d['logit_std']:.1f}): nearly one-hot, so KD adds little over CE; raise the temperature "
                   f"(about {suggested:.0f}) or use ls_kd (logit standardisation)")
    elif d["soft_entropy"] > UNIFORM_ENTROPY:
        out.append(f"{who} soft targets at T={t:g} are nearly uniform (entropy {d['soft_entropy']:.2f} of the maximum): "
                   f"lower the temperature")
    return out


def method_temperature(method_cfg: Any) -> float:
    """The temperature a method softens the teacher with (1 for methods without one)."""
    value = getattr(method_cfg, "temperature", None)
    return float(value) if isinstance(value, (int, float)) and value > 0 else 1.0
