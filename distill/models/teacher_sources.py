"""Teacher sources: a frozen teacher, or a store's batch fields, turned into what methods read.

Classification: `LiveLogits` runs the teacher on batch["x"]; `StoredLogits` looks logits up by
batch["index"]; `ViewLogits` also by which view (of a finite augmentation such as flip) the batch holds. Causal LM: `LiveTokenTeacher` runs the frozen teacher body and returns a
`HiddenSignal` at the valid positions; `StoredTokenTeacher` reads the top-k fields a store batch
carries and returns a `TopKSignal`; `AlignedTokenTeacher` re-tokenizes each row's text for a
teacher with another tokenizer and returns an `AlignedSignal`. Sentence embeddings: `LiveEmbeddings`
runs a frozen teacher encoder on the texts of a batch (with its own tokenizer); `StoredEmbeddings` looks
cached (float16) embeddings up by the texts' indices. Methods see `logits(batch)` / `signal(batch, mask)`
/ `embeddings(batch)` only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from distill.data.align import Aligner, Alignment
from distill.losses.aligned import AlignedSignal, HiddenTeacherRows, StoredTeacherRows, VocabularyMap
from distill.losses.signal import HiddenSignal, TeacherSignal, TopKSignal


@dataclass
class LiveLogits:
    """A live classification teacher (a `FrozenTeacher`)."""

    teacher: nn.Module

    def logits(self, batch: dict[str, Any]) -> Tensor:
        return self.teacher(batch["x"])


@dataclass
class StoredLogits:
    """Stored teacher logits (num_train, C), looked up by the batch's sample indices."""

    table: Tensor

    def logits(self, batch: dict[str, Any]) -> Tensor:
        return self.table[batch["index"]]


@dataclass
class LiveEmbeddings:
    """A live sentence-embedding teacher: `encoder` is a FrozenTeacher around a `TextEncoder`.

    It reads the batch's texts (batch["text"]), not the student's token ids, so teacher and student
    may use different tokenizers; the teacher tokenizes with its own tokenizer and max length.
    """

    encoder: nn.Module

    def embeddings(self, batch: dict[str, Any]) -> Tensor:
        """(B, D_t) float32 teacher embeddings of the batch's texts."""
        model = self.encoder.model
        tokens = model.tokenize(batch["text"])
        device = next(model.parameters()).device
        return self.encoder(tokens["input_ids"].to(device), tokens["attention_mask"].to(device)).float()


@dataclass
class StoredEmbeddings:
    """Teacher embeddings (num_texts, D_t) computed once (stored float16 to halve memory), looked up
    by the batch's text indices (batch["index"]) and returned as float32."""

    table: Tensor

    def embeddings(self, batch: dict[str, Any]) -> Tensor:
        return self.table[batch["index"].to(self.table.device)].float()


@dataclass
class ViewLogits:
    """Teacher logits of every view of each training image under a finite augmentation (flip: the image
    and its mirror), looked up by sample index and by the view the batch holds: the view whose image is
    nearest to batch["x"] (an image equal to its mirror has equal logits for both).

    tables: per view (num_train, C); views: per view a function of normalised (B, C, H, W) images;
    plain: sample indices -> their unaugmented normalised images.
    """

    tables: list[Tensor]
    views: list[Any]
    plain: Any

    def logits(self, batch: dict[str, Any]) -> Tensor:
        x, index = batch["x"], batch["index"]
        plain = self.plain(index)
        gaps = torch.stack([(x - view(plain)).flatten(1).abs().amax(1) for view in self.views])  # (views, B)
        which = gaps.argmin(0)
        return torch.stack([t[index] for t in self.tables])[which, torch.arange(len(index))]


@dataclass
class LiveTokenTeacher:
    """A live causal-LM teacher: `body` is a FrozenTeacher around an `LMBody`."""

    body: nn.Module

    @property
    def model(self) -> nn.Module:
        return self.body.model

    def signal(self, batch: dict[str, Tensor], mask: Tensor) -> TeacherSignal:
        hidden = self.body(batch["input_ids"], batch.get("attention_mask"))[:, :-1][mask]
        return HiddenSignal(hidden, self.body.model.head_weight, meta={"source": "live"})


@dataclass
class StoredTokenTeacher:
    """Top-k targets a teacher-signal store batch carries (one row per valid position, in order)."""

    temperature: float
    tail: str = "uniform"
    k: int = 0

    def signal(self, batch: dict[str, Tensor], mask: Tensor) -> TeacherSignal:
        ids = batch["teacher_topk_ids"]
        if ids.shape[0] != int(mask.sum()):
            raise ValueError(f"the store batch carries {ids.shape[0]} teacher rows for {int(mask.sum())} valid positions")
        return TopKSignal(ids, batch["teacher_topk_logp"], batch["teacher_tail_logp"], self.temperature, self.tail,
                          meta={"source": "store", "k": self.k, "tail": self.tail})


@dataclass
class AlignedTokenTeacher:
    """A live causal-LM teacher with another tokenizer: each student row's text is re-tokenized for the
    teacher, aligned into spans (`distill.data.align.Aligner`, cached per row), and the teacher runs
    on its own tokens. Returns an `AlignedSignal`; only cross-tokenizer methods read it."""

    body: nn.Module
    aligner: Aligner
    teacher_vocab: int
    pad_id: int
    vocab_map: VocabularyMap | None = None

    @property
    def model(self) -> nn.Module:
        return self.body.model

    def alignments(self, batch: dict[str, Tensor]) -> tuple[list[Alignment], list[list[int]]]:
        """Per row: its alignment and the batch positions of the row's tokens (attention mask 1)."""
        ids = batch["input_ids"]
        attention = batch.get("attention_mask")
        out, positions = [], []
        for b in range(ids.shape[0]):
            pos = attention[b].nonzero().squeeze(1).tolist() if attention is not None else list(range(ids.shape[1]))
            out.append(self.aligner([int(ids[b, p]) for p in pos]))
            positions.append(pos)
        return out, positions

    def teacher_batch(self, alignments: list[Alignment]) -> tuple[Tensor, Tensor]:
        """(teacher ids, attention mask), right-padded."""
        length = max(len(a.teacher_ids) for a in alignments)
        ids = torch.full((len(alignments), length), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(alignments), length), dtype=torch.long)
        for b, a in enumerate(alignments):
            ids[b, :len(a.teacher_ids)] = torch.tensor(a.teacher_ids, dtype=torch.long)
            mask[b, :len(a.teacher_ids)] = 1
        return ids, mask

    def structure(self, batch: dict[str, Tensor], mask: Tensor) -> AlignedSignal:
        """The alignment of a batch without running the teacher (its hidden states left empty)."""
        return self._signal(batch, mask, run_teacher=False)

    def signal(self, batch: dict[str, Tensor], mask: Tensor) -> AlignedSignal:
        return self._signal(batch, mask, run_teacher=True)

    def _signal(self, batch: dict[str, Tensor], mask: Tensor, run_teacher: bool) -> AlignedSignal:
        alignments, positions = self.alignments(batch)
        teacher_ids, teacher_mask = self.teacher_batch(alignments)
        hidden = self.body(teacher_ids, teacher_mask) if run_teacher else torch.empty(0)
        rows = HiddenTeacherRows(hidden, self.body.model.head_weight, self.teacher_vocab)
        return AlignedSignal(int(mask.sum()), batch["input_ids"], student_rows(mask, batch["input_ids"].shape[1]),
                             rows, teacher_ids, teacher_mask.bool(), span_table(alignments, positions),
                             self.teacher_vocab, self.vocab_map)


def student_rows(mask: Tensor, length: int) -> Tensor:
    """(B, T): the index among the valid rows (mask (B, T-1), row-major) of the position at each token, or -1."""
    rows = torch.full((mask.shape[0], length), -1, dtype=torch.long)
    flat = mask.reshape(-1)
    index = torch.cumsum(flat.long(), 0) - 1
    rows[:, :-1] = torch.where(flat, index, torch.full_like(index, -1)).reshape(mask.shape)
    return rows


def span_table(alignments: list[Alignment], positions: list[list[int]]) -> Tensor:
    """(S, 7) long: example, student first/last batch position, teacher first/last position, bytes, characters."""
    table = [(b, pos[a], pos[s], c, d, n, m) for b, (al, pos) in enumerate(zip(alignments, positions))
             for (a, s, c, d), n, m in zip(al.spans, al.span_bytes, al.span_chars)]
    return torch.tensor(table, dtype=torch.long).reshape(-1, 7)


@dataclass
class StoredAlignedTeacher:
    """An aligned teacher read from a teacher-signal store: the batch carries each example's teacher ids,
    spans and stored teacher rows (`batch["aligned"]`); no teacher model is loaded."""

    teacher_vocab: int
    pad_id: int
    vocab_map: VocabularyMap | None = None

    def structure(self, batch: dict[str, Any], mask: Tensor) -> AlignedSignal:
        return self.signal(batch, mask)

    def signal(self, batch: dict[str, Any], mask: Tensor) -> AlignedSignal:
        stored = batch["aligned"]
        ids, attention = batch["input_ids"], batch.get("attention_mask")
        lt = max(len(e["teacher_ids"]) for e in stored)
        teacher_ids = torch.full((len(stored), lt), self.pad_id, dtype=torch.long)
        valid = torch.zeros((len(stored), lt), dtype=torch.bool)
        row_of = torch.full((len(stored) * lt,), -1, dtype=torch.long)
        spans, offset = [], 0
        for b, e in enumerate(stored):
            n = len(e["teacher_ids"])
            teacher_ids[b, :n], valid[b, :n] = e["teacher_ids"], True
            row_of[b * lt: b * lt + n - 1] = torch.arange(offset, offset + n - 1)
            offset += n - 1
            pos = attention[b].nonzero().squeeze(1).tolist() if attention is not None else list(range(ids.shape[1]))
            spans += [(b, pos[a], pos[s], c, d, nb, nc) for a, s, c, d, nb, nc in e["spans"].tolist()]
        rows = StoredTeacherRows(torch.cat([e["topk_ids"] for e in stored]).long(), torch.cat([e["topk_logp"] for e in stored]),
                                 torch.cat([e["tail_logp"] for e in stored]), torch.cat([e["token_logp"] for e in stored]),
                                 row_of, self.teacher_vocab)
        table = torch.tensor(spans, dtype=torch.long).reshape(-1, 7)
        return AlignedSignal(int(mask.sum()), ids, student_rows(mask, ids.shape[1]), rows, teacher_ids, valid, table,
                             self.teacher_vocab, self.vocab_map)
