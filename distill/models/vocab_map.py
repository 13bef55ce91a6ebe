"""What two tokenizers' vocabularies share: exact string matches (GOLD) and a projection (X-Token).

`matched_ids`: ids whose raw vocabulary strings are identical on both sides (TRL GOLD's rule: no
canonicalisation, so byte-level "Ġword" and SentencePiece "▁word" do not match).
`build_projection`: X-Token's sparse row-stochastic W (Vs x Vt). A student token whose bytes are a
teacher token's gets that token (one-hot, the exact map after canonicalisation: both sides compared
as bytes); one with a special-token role (bos, eos, ...) gets the teacher's token of that role;
any other gets the teacher's tokenization of its text, the first 4 pieces weighted 0.9 * 0.1^k and
normalised (the official rule: [10/11, 1/11] for two pieces); a byte sequence that is not whole
characters goes through the teacher's byte-fallback tokens when it has them. Rows left without a
mapping are zero (the student's probability there is not compared).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from distill.data.align import TokenBytes

MAX_PIECES, DECAY = 4, 0.1


def matched_ids(student_tokenizer: Any, teacher_tokenizer: Any) -> tuple[Tensor, Tensor]:
    """(student ids, teacher ids) of identical vocabulary strings, ordered by teacher id."""
    student_vocab = student_tokenizer.get_vocab()
    pairs = sorted((t, student_vocab[s]) for s, t in teacher_tokenizer.get_vocab().items() if s in student_vocab)
    return (torch.tensor([p[1] for p in pairs], dtype=torch.long), torch.tensor([p[0] for p in pairs], dtype=torch.long))


def piece_weights(n: int) -> list[float]:
    raw = [(1 - DECAY) * DECAY ** k for k in range(n)]
    return [w / sum(raw) for w in raw]


def _teacher_index(teacher: TokenBytes) -> dict[bytes, int]:
    """bytes -> teacher id, preferring ordinary tokens over byte-fallback ones with the same bytes."""
    index: dict[bytes, int] = {}
    pieces = teacher.tokenizer.convert_ids_to_tokens(list(range(len(teacher.bytes))))
    for i, b in enumerate(teacher.bytes):
        if b and (b not in index or (pieces[index[b]] or "").startswith("<0x")):
            index[b] = i
    return index


def build_projection(student_tokenizer: Any, teacher_tokenizer: Any) -> Tensor:
    """(Vs, Vt) sparse float32 projection, rows summing to 1 (or 0 where nothing maps)."""
    student, teacher = TokenBytes(student_tokenizer), TokenBytes(teacher_tokenizer)
    by_bytes = _teacher_index(teacher)
    rows, cols, vals = [], [], []
    texts, text_rows = [], []
    for i, b in enumerate(student.bytes):
        role = student.role_of.get(i)
        target = teacher.id_of.get(role) if role is not None else by_bytes.get(b)
        if target is not None:
            rows.append(i), cols.append(target), vals.append(1.0)
            continue
        try:
            texts.append(b.decode("utf-8"))
            text_rows.append(i)
        except UnicodeDecodeError:  # part of a character: the teacher's byte tokens, when it has them
            pieces = [by_bytes.get(bytes([x])) for x in b[:MAX_PIECES]]
            if pieces and all(p is not None for p in pieces):
                _add(rows, cols, vals, i, pieces)
    encoded = teacher_tokenizer([t for t in texts], add_special_tokens=False)["input_ids"] if texts else []
    for i, ids in zip(text_rows, encoded):
        if ids:
            _add(rows, cols, vals, i, ids[:MAX_PIECES])
    index = torch.tensor([rows, cols], dtype=torch.long)
    return torch.sparse_coo_tensor(index, torch.tensor(vals), (len(student.bytes), len(teacher.bytes))).coalesce()


def _add(rows: list, cols: list, vals: list, row: int, pieces: list[int]) -> None:
    for piece, w in zip(pieces, piece_weights(len(pieces))):
        rows.append(row), cols.append(piece), vals.append(w)
