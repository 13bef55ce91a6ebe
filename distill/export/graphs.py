"""What `distill export` turns into a graph: a run's student stages rebuilt from their exported files, each as an
`Exportable` (the module to export, the PyTorch model it must match, inputs like the held-out data, dynamic axes).

    classification  <stage>/model.json + model.safetensors -> images (B, C, H, W), normalised with the card's
                    mean / std as in training -> logits (B, K)
    embedding       <stage>/model/ (sentence-transformers folder) -> input_ids, attention_mask (B, T) int64 ->
                    embeddings (B, D): encoder, pooling, projection and L2 normalisation in one graph
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from distill.errors import DistillError
from distill.models.encoders import StaticEncoder, load_sentence_encoder
from distill.models.io import CARD, load_weights
from distill.models.registry import create_model

# 32 sentences of 5 to 30 WordPiece tokens: batch-32 inputs with real padding, like an embedding run's held-out texts
_SUBJECTS = ["A man", "The small student", "Two dogs", "A teacher in a long grey coat", "The model", "She",
             "An old fisherman from the northern coast", "The committee"]
_ENDINGS = ["sleeps.", "is playing a guitar on the street corner.",
            "reads the paper that explains how knowledge distillation trains a small network to imitate a large one.",
            "runs through a field of tall grass while the sun sets behind the hills and the wind picks up."]
SAMPLE_TEXTS = [f"{s} {e}" for e in _ENDINGS for s in _SUBJECTS]


@dataclass
class Exportable:
    """One student ready to export and check.

    Attributes:
        graph: the module exported (eval mode); takes the inputs named in `axes`, positionally, in that order.
        reference: the PyTorch model as training and evaluation run it (same positional inputs); the ONNX
            output is checked against it.
        inputs: batch size -> the inputs (name -> tensor, in `axes` order) for that many examples.
        axes: input name -> {axis: name} of its dynamic axes.
        output: the graph's output name.
        metadata: strings stored in the ONNX file's metadata_props (how to feed it).
    """

    graph: nn.Module
    reference: nn.Module
    inputs: Callable[[int], dict[str, Tensor]]
    axes: dict[str, dict[int, str]]
    output: str
    metadata: dict[str, str] = field(default_factory=dict)


def classification_student(folder: Path) -> Exportable:
    """A classification stage rebuilt from its card (model.json) and weights (model.safetensors)."""
    card_file = folder / CARD
    if not card_file.is_file():
        raise DistillError(f"{folder}: no {CARD} (the stage did not finish exporting its model)")
    card = json.loads(card_file.read_text())
    model = create_model(card["name"], card["kwargs"], num_classes=card["num_classes"],
                         in_channels=card["in_channels"], image_size=card["image_size"])
    load_weights(model, folder, what=folder.name, arch=card["name"])
    model.eval()
    shape = (card["in_channels"], card["image_size"], card["image_size"])

    def images(batch: int) -> dict[str, Tensor]:
        # the student sees images normalised by the dataset's mean / std: standard-normal pixels are in range
        return {"images": torch.randn((batch, *shape), generator=torch.Generator().manual_seed(batch))}
    meta = {"distill.task": "classification", "distill.input": "images (B, C, H, W) float32: (pixel / 255 - mean) / std",
            "distill.card": json.dumps(card)}
    return Exportable(graph=model, reference=model, inputs=images, axes={"images": {0: "batch"}}, output="logits",
                      metadata=meta)


class EncoderGraph(nn.Module):
    """A sentence encoder as one exportable graph: (input_ids, attention_mask) (B, T) -> (B, D).

    A transformer encoder is exported as it runs. A static encoder's `nn.EmbeddingBag` over the unpadded tokens
    (boolean indexing, data-dependent offsets) is written as the masked mean of the table rows it averages, the
    same numbers (an empty text gives 0 in both) in ops with static rank.
    """

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        if not isinstance(self.encoder, StaticEncoder):
            return self.encoder(input_ids, attention_mask)
        mask = attention_mask.to(self.encoder.embedding.weight.dtype).unsqueeze(-1)  # (B, T, 1)
        rows = self.encoder.embedding.weight[input_ids]  # (B, T, E)
        pooled = (rows * mask).sum(1) / mask.sum(1).clamp_min(1.0)
        return self.encoder.finish(pooled)


def embedding_student(folder: Path) -> Exportable:
    """An embedding stage's sentence-transformers folder (`<stage>/model/`) as encoder + pooling + tail."""
    if not (folder / "model").is_dir():
        raise DistillError(f"{folder}: no model/ folder (the stage did not finish exporting its encoder)")
    return encoder_exportable(folder / "model")


def encoder_exportable(model_dir: Path) -> Exportable:
    """Any sentence encoder folder `load_sentence_encoder` reads, as one graph (see `EncoderGraph`)."""
    encoder = load_sentence_encoder(model_dir).eval()

    def texts(batch: int) -> dict[str, Tensor]:
        tokens = encoder.tokenize(SAMPLE_TEXTS[:batch] if batch > 1 else SAMPLE_TEXTS[-1:])
        return {"input_ids": tokens["input_ids"], "attention_mask": tokens["attention_mask"]}
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"}}
    meta = {"distill.task": "embedding", "distill.input": "input_ids, attention_mask (B, T) int64 from the tokenizer "
            f"in {model_dir} ({'no special tokens' if isinstance(encoder, StaticEncoder) else 'special tokens added'})",
            "distill.dim": str(encoder.dim), "distill.normalize": str(encoder.normalize),
            "distill.max_length": str(encoder.max_length)}
    return Exportable(graph=EncoderGraph(encoder).eval(), reference=encoder, inputs=texts, axes=axes,
                      output="embeddings", metadata=meta)


LOADERS: dict[str, Callable[[Path], Exportable]] = {"classification": classification_student,
                                                    "embedding": embedding_student}


def check_task(task: str) -> None:
    """Refuse a task whose students are not exported (causal-LM export was not asked for)."""
    if task not in LOADERS:
        raise DistillError(f"distill export: {task} runs are not exported (ONNX export covers classification and "
                           "embedding students)")


def load_exportable(run_dir: Path, stage: str, task: str) -> Exportable:
    check_task(task)
    return LOADERS[task](run_dir / stage)


def describe_inputs(task: str) -> str:
    return {"classification": "standard-normal images (the students' normalised input range)",
            "embedding": "32 English sentences (5-30 tokens with BERT's WordPiece) through the student's tokenizer"}.get(task, "-")


def student_stages(summary: dict[str, Any], only: str | None) -> list[str]:
    """The run's student stages (student-<method>, not the student-init row), or the one named by `only`
    (`kd` or `student-kd`)."""
    names = [s for s in summary.get("stages", {}) if s.startswith("student-") and s != "student-init"]
    if only is None:
        return names
    wanted = only if only.startswith("student-") else f"student-{only}"
    if wanted not in names:
        raise DistillError(f"--student {only}: the run has no such student; it has {', '.join(names) or 'none'}")
    return [wanted]
