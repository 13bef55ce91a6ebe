"""Cross-tokenizer alignment: one text under two tokenizers, grouped into spans that cover the same bytes.

The student's token ids are the source of truth (packed text blocks, JSONL examples and on-policy
samples all arrive as ids). Each id is turned back into the bytes it stands for (`TokenBytes`:
byte-level BPE pieces through the GPT-2 byte alphabet, SentencePiece pieces with "▁" as a space
and `<0xNN>` byte-fallback tokens, WordPiece pieces with "##"), the bytes are joined into the
text, and the teacher tokenizes that text. Both sides then have cumulative byte *end* offsets, and
a span closes wherever they coincide: the smallest groups of tokens that cover the same bytes on
both sides (ULD/GOLD's byte-offset grouping and ALM's chunks are this rule).

Special tokens: the roles bos / eos / unk / pad are mapped between the tokenizers (the student's
end-of-text becomes the teacher's) and count as one unit of "text" on both sides, so a mapped pair
forms its own span. Other special tokens (chat markers) are written out as their text, which the
teacher tokenizes like any text (TRL's GOLD does the same). A block cut inside a multi-byte
character is trimmed to whole characters; the tokens outside are left unaligned.

`Alignment` holds, per example, the teacher's input ids (its BOS first, when it has one) and the
spans as index ranges into the two token lists. `Aligner` caches alignments by the student row.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

MARKER = 1  # width of a mapped special token, in the byte coordinate both sides share
ROLES = ("bos_token", "eos_token", "unk_token", "pad_token")


@lru_cache(maxsize=1)
def byte_decoder() -> dict[str, int]:
    """The inverse of GPT-2's bytes -> printable-unicode table used by byte-level BPE vocabularies."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, chars)}


def tokenizer_kind(tokenizer: Any) -> str:
    """'byte_level', 'sentencepiece' (▁ for spaces, <0xNN> byte fallback) or 'wordpiece', from the backend."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    description = f"{getattr(backend, 'decoder', '')} {getattr(backend, 'pre_tokenizer', '')}"
    if "ByteLevel" in description:
        return "byte_level"
    if "WordPiece" in description or "BertPreTokenizer" in description:
        return "wordpiece"
    return "sentencepiece"


def piece_bytes(piece: str, kind: str) -> bytes:
    """The bytes a vocabulary piece stands for."""
    if kind == "byte_level":
        table = byte_decoder()
        if all(c in table for c in piece):
            return bytes(table[c] for c in piece)
        return piece.encode("utf-8")  # an added token written in plain text
    if kind == "wordpiece":
        return piece[2:].encode("utf-8") if piece.startswith("##") else (" " + piece).encode("utf-8")
    if len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
        try:
            return bytes([int(piece[3:5], 16)])
        except ValueError:
            pass
    return piece.replace("▁", " ").encode("utf-8")


class TokenBytes:
    """Per-id bytes of a tokenizer, special-token roles, and the teacher-side encoding of text."""

    def __init__(self, tokenizer: Any):
        self.tokenizer, self.kind = tokenizer, tokenizer_kind(tokenizer)
        pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        special = set(tokenizer.all_special_ids)
        self.bytes = [b"" if i in special else piece_bytes(p or "", self.kind) for i, p in enumerate(pieces)]
        for i in special:  # specials without a role are written out as their text (chat markers)
            self.bytes[i] = (pieces[i] or "").encode("utf-8")
        self.role_of = {getattr(tokenizer, f"{r}_id"): r for r in reversed(ROLES) if getattr(tokenizer, f"{r}_id", None) is not None}
        self.id_of = {r: i for i, r in self.role_of.items()}

    def encode(self, text: str) -> tuple[list[int], list[int]]:
        """(ids, byte end offsets) of `text` under this tokenizer, no special tokens added."""
        data = text.encode("utf-8")
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        widths = [len(self.bytes[i]) for i in ids]
        joined = b"".join(self.bytes[i] for i in ids)
        shift = 0
        if joined != data:  # a SentencePiece dummy prefix adds one leading space; anything else: offsets
            if joined == b" " + data:
                shift = 1
            else:
                return ids, self._ends_from_offsets(text, data)
        ends, total = [], -shift
        for w in widths:
            total += w
            ends.append(max(total, 0))
        return ids, ends

    def _ends_from_offsets(self, text: str, data: bytes) -> list[int]:
        encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        prefix = [0]
        for ch in text:
            prefix.append(prefix[-1] + len(ch.encode("utf-8")))
        ends = [prefix[e] for _, e in encoding["offset_mapping"]]
        for k in range(len(ends) - 1):  # pieces of one split character share its end: only the last keeps it
            if ends[k] == ends[k + 1]:
                ends[k] = -1 - k  # never equal to a real boundary
        return ends


@dataclass
class Alignment:
    """One example aligned. Token indices are into the student row and into `teacher_ids`.

    Attributes:
        teacher_ids: the teacher's input ids (its BOS first when it has one).
        spans: [(s_first, s_last, t_first, t_last)], inclusive index ranges covering the same bytes.
        text: the text both sides tokenized.
        span_bytes, span_chars: UTF-8 bytes and characters of text in each span (special tokens: 0),
            the denominators of bits per byte and per-character perplexity.
    """

    teacher_ids: list[int]
    spans: list[tuple[int, int, int, int]]
    text: str
    span_bytes: list[int]
    span_chars: list[int]


def spans_from_ends(student_ends: Sequence[int], teacher_ends: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """Close a span wherever both sides' cumulative byte ends coincide (minimal aligned groups).

    Zero-width tokens join the span after them; a tail left open on either side is unaligned.
    """
    spans, i, j, si, tj, last = [], 0, 0, 0, 0, 0
    while i < len(student_ends) and j < len(teacher_ends):
        a, b = student_ends[i], teacher_ends[j]
        if a <= last:  # zero-width or unaligned (negative end) token: it belongs to the next span
            i += 1
        elif b <= last:
            j += 1
        elif a < b:
            i += 1
        elif b < a:
            j += 1
        else:
            spans.append((si, i, tj, j))
            last, i, j = a, i + 1, j + 1
            si, tj = i, j
    return spans


def _utf8_window(data: bytes) -> tuple[int, int]:
    """[lo, hi): the largest run of whole UTF-8 characters (a packed block may cut one at either end)."""
    lo = 0
    while lo < len(data) and lo < 4 and (data[lo] & 0xC0) == 0x80:
        lo += 1
    hi = len(data)
    for cut in range(4):
        try:
            data[lo:hi - cut].decode("utf-8")
            return lo, hi - cut
        except UnicodeDecodeError:
            continue
    return lo, lo


class Aligner:
    """Aligns student rows to a teacher tokenizer; caches the result per student row."""

    def __init__(self, student_tokenizer: Any, teacher_tokenizer: Any, cache_size: int = 200_000):
        self.student, self.teacher = TokenBytes(student_tokenizer), TokenBytes(teacher_tokenizer)
        self.teacher_bos = self.teacher.id_of.get("bos_token")
        self.cache: OrderedDict[tuple[int, ...], Alignment] = OrderedDict()
        self.cache_size = cache_size

    def __call__(self, student_ids: Sequence[int]) -> Alignment:
        key = tuple(int(i) for i in student_ids)
        hit = self.cache.get(key)
        if hit is not None:
            self.cache.move_to_end(key)
            return hit
        result = self._align(key)
        self.cache[key] = result
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
        return result

    def _segments(self, ids: tuple[int, ...]) -> list[tuple[str | None, list[int]]]:
        """The row as runs of (mapped special role, [index]) and (None, [text token indices]), in order."""
        out: list[tuple[str | None, list[int]]] = []
        for k, i in enumerate(ids):
            role = self.student.role_of.get(i)
            if role is not None and role in self.teacher.id_of:
                out.append((role, [k]))
            elif out and out[-1][0] is None:
                out[-1][1].append(k)
            else:
                out.append((None, [k]))
        return out

    def _align(self, ids: tuple[int, ...]) -> Alignment:
        student_ends: list[int] = [0] * len(ids)
        teacher_ids: list[int] = []
        teacher_ends: list[int] = []
        texts, offset = [], 0
        for role, members in self._segments(ids):
            if role is not None:  # a mapped special token: one unit on both sides, its own span
                offset += MARKER
                student_ends[members[0]] = offset
                teacher_ids.append(self.teacher.id_of[role])
                teacher_ends.append(offset)
                continue
            data = b"".join(self.student.bytes[ids[k]] for k in members)
            lo, hi = _utf8_window(data)
            total = offset
            for k in members:
                total += len(self.student.bytes[ids[k]])
                # a token ending outside the whole-character window is unaligned (a negative, unique end)
                student_ends[k] = total if offset + lo < total <= offset + hi else -1 - k
            text = data[lo:hi].decode("utf-8")
            seg_ids, seg_ends = self.teacher.encode(text)
            teacher_ids += seg_ids
            teacher_ends += [offset + lo + e if e >= 0 else -1 - len(teacher_ends) - n for n, e in enumerate(seg_ends)]
            texts.append(text)
            offset += len(data)
        return self._assemble(ids, student_ends, teacher_ids, teacher_ends, "".join(texts))

    def _assemble(self, ids: tuple[int, ...], student_ends: list[int], teacher_ids: list[int], teacher_ends: list[int],
                  text: str) -> Alignment:
        spans = spans_from_ends(student_ends, teacher_ends)
        bos = [self.teacher_bos] if self.teacher_bos is not None else []
        span_bytes, span_chars = [], []
        for a, b, _, _ in spans:
            data = b"".join(b"" if ids[k] in self.student.role_of else self.student.bytes[ids[k]] for k in range(a, b + 1))
            span_bytes.append(len(data))
            span_chars.append(sum(1 for x in data if (x & 0xC0) != 0x80))  # characters starting in the span
        shifted = [(a, b, c + len(bos), d + len(bos)) for a, b, c, d in spans]
        return Alignment(bos + teacher_ids, shifted, text, span_bytes, span_chars)
