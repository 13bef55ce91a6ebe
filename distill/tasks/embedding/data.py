"""Sentence-embedding data: records read from text / TSV / JSONL, the held-out split, distinct texts, fingerprint.

A record is a tuple of texts in the roles of its format (sentences and labelled: (text,); pairs:
(query, positive); triples: + negative; lists: (query, candidate, ...), positive first) and, for
labelled data, a label. A split keeps each distinct text once (`TextSplit.texts`) and the records as
indices into it, so the teacher embeds a text once however many records hold it, and a stored
embedding is looked up by that index (batch["index"]).

Both the runner and `distill cache` import this module (neither imports the other), so the import
graph runs one way.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from distill.data.embedding_sets import corpus_pairs
from distill.data.hf_source import read_rows
from distill.data.subset import subset_indices
from distill.data.text import is_eval_document, read_documents
from distill.errors import ConfigError, DataError
from distill.tasks.embedding.schema import HF_ROLES, EmbeddingDataSpec

Record = tuple[tuple[str, ...], Any]  # (texts in their roles, label string or None)
ROLE_KEYS = {"pairs": ("query", "positive"), "triples": ("query", "positive", "negative")}
# the data formats a method's batch format can be built from (a sentences method reads every distinct text)
FORMATS_FOR = {"sentences": ("sentences", "labelled", "pairs", "triples", "lists"), "pairs": ("pairs", "triples"),
               "triples": ("triples",), "lists": ("lists",)}


@dataclass
class TextSplit:
    """Distinct texts, records as index tuples into them, and per-record label ids (labelled data) or None."""

    texts: list[str]
    records: list[tuple[int, ...]]
    labels: np.ndarray | None = None


@dataclass
class EmbeddingData:
    train: TextSplit
    held: TextSplit
    classes: list[str]
    excluded: int = 0  # records dropped because the end-of-run evaluation reads one of their texts


def check_format(batch_format: str, data_format: str, who: str) -> None:
    """A ConfigError line when a method's batches cannot be built from the recipe's data format."""
    if data_format not in FORMATS_FOR[batch_format]:
        raise ConfigError(f"{who} trains on {batch_format} batches, which data.format = {data_format!r} cannot give "
                          f"(use one of: {', '.join(FORMATS_FOR[batch_format])})")


# ----------------------------------------------------------------------------- reading records

def file_kind(name: str) -> str:
    stem = name[:-3] if name.endswith(".xz") else name
    return "jsonl" if stem.endswith(".jsonl") else "tsv" if stem.endswith(".tsv") else "text"


def parse_line(line: str, kind: str, spec: EmbeddingDataSpec, where: str) -> Record | None:
    """One record of `spec.format` from one line (None for a line without one)."""
    if kind == "jsonl":
        return parse_json(line, spec, where)
    fmt = spec.format
    if kind == "tsv":
        cells = [c.strip() for c in line.split("\t")]
        if fmt == "labelled":
            raise DataError(f"{where}: labelled data is read from '<label> <text>' lines or JSONL, not TSV")
        if fmt == "sentences":
            return ((cells[spec.column],), None) if len(cells) > spec.column else None
        need = 2 if fmt == "lists" else len(ROLE_KEYS[fmt])
        if len(cells) < need:
            raise DataError(f"{where}: {fmt} need {need} tab-separated texts per line, found {len(cells)}")
        return (tuple(cells if fmt == "lists" else cells[:need]), None)
    if fmt not in ("sentences", "labelled"):
        raise DataError(f"{where}: {fmt} are read from TSV or JSONL files (a plain-text line holds one text)")
    if fmt == "labelled" or spec.leading_label:
        label, _, text = line.strip().partition(" ")
        return ((text,), label if fmt == "labelled" else None)
    return ((line,), None)


def parse_json(line: str, spec: EmbeddingDataSpec, where: str) -> Record:
    try:
        row = json.loads(line)
    except ValueError:
        raise DataError(f"{where}: not valid JSON") from None
    return parse_row(row, spec, where)


def parse_row(row: dict, spec: EmbeddingDataSpec, where: str) -> Record:
    """One record of `spec.format` from a JSONL object or a dataset row keyed like one."""
    fmt = spec.format
    keys = {"sentences": (spec.field,), "labelled": (spec.field, "label"), "lists": ("query", "candidates")}
    missing = [k for k in keys.get(fmt, ROLE_KEYS.get(fmt, ())) if k not in row]
    if missing:
        raise DataError(f"{where}: a {fmt} record needs the key {missing[0]!r}")
    if fmt == "lists":
        if not isinstance(row["candidates"], list) or not row["candidates"]:
            raise DataError(f"{where}: 'candidates' must be a non-empty list of texts (the positive first)")
        return ((str(row["query"]), *map(str, row["candidates"])), None)
    if fmt in ("sentences", "labelled"):
        return ((str(row[spec.field]),), str(row["label"]) if fmt == "labelled" else None)
    return (tuple(str(row[k]) for k in ROLE_KEYS[fmt]), None)


def read_records(path: str, spec: EmbeddingDataSpec) -> list[Record]:
    """Every record under one path (a file or a folder), in order; records with an empty text are skipped."""
    out = []
    for name, text in read_documents([path]):
        kind = file_kind(name)
        # "\n" only: str.splitlines would also break at U+0085 and other separators inside a sentence
        for n, line in enumerate(text.split("\n"), start=1):
            if not line.strip():
                continue
            record = clean(parse_line(line.strip("\r"), kind, spec, f"{name}:{n}"))
            if record is not None:
                out.append(record)
    if not out:
        raise DataError(f"data: {path!r} holds no {spec.format} record")
    return out


def clean(record: Record | None) -> Record | None:
    """The record with its texts stripped; None when it has none or an empty one (such records are skipped)."""
    if record is None or not all(t.strip() for t in record[0]):
        return None
    return (tuple(t.strip() for t in record[0]), record[1])


def read_hf(spec: EmbeddingDataSpec, split: str) -> list[Record]:
    """The records of one split of data.hf (at most data.hf.max_examples rows), as from a JSONL file;
    a ClassLabel label is read as its class name."""
    rows = read_rows(spec.hf, split, [HF_ROLES[spec.format]])
    names = getattr(rows.features.get("label"), "names", None)
    out = []
    for i, row in enumerate(rows.rows):
        keyed = {spec.field if role == "text" else role: value for role, value in row.items()}
        if names and isinstance(keyed.get("label"), int):
            keyed["label"] = names[keyed["label"]]
        record = clean(parse_row(keyed, spec, f"data.hf split {split!r} row {i}"))
        if record is not None:
            out.append(record)
    if not out:
        raise DataError(f"data.hf: split {split!r} of {spec.label()} holds no {spec.format} record")
    return out


def subset(records: list, size: int | None) -> list:
    """A fixed random subset (distill.data.subset), in the original order; all of them when size is None."""
    if not size or size >= len(records):
        return records
    return [records[int(i)] for i in subset_indices(len(records), size)]


def read_paths(paths: list[str], spec: EmbeddingDataSpec) -> list[Record]:
    return [r for p in paths for r in subset(read_records(p, spec), spec.max_per_path)]


# ----------------------------------------------------------------------------- splits

def distinct(records: list[Record]) -> list[Record]:
    """Sentences and labelled records once per text (the first label wins): a text is one example."""
    seen: dict[tuple[str, ...], Record] = {}
    for r in records:
        seen.setdefault(r[0], r)
    return list(seen.values())


def text_split(records: list[Record], classes: list[str]) -> TextSplit:
    index: dict[str, int] = {}
    rows = [tuple(index.setdefault(t, len(index)) for t in texts) for texts, _ in records]
    labels = None
    if classes:
        ids = {c: i for i, c in enumerate(classes)}
        labels = np.array([ids[label] for _, label in records], dtype=np.int64)
    return TextSplit(list(index), rows, labels)


def read_corpora(spec: EmbeddingDataSpec, data_dir: str, exclude: set[str]) -> tuple[list[Record], int]:
    """data.corpora's records ((query, document) pairs, or each text alone for sentences) and how many pairs
    were dropped for holding a text the evaluation reads (compared before documents are cut)."""
    out: list[Record] = []
    dropped = 0
    for name in spec.corpora:
        pairs = corpus_pairs(name, data_dir)
        kept = [(q, d) for q, d in pairs if q not in exclude and d not in exclude]
        dropped += len(pairs) - len(kept)
        cut = [(q, d[:spec.corpus_max_chars].rstrip() if spec.corpus_max_chars else d) for q, d in kept]
        chosen = subset(cut, spec.max_per_path)
        out += [(p, None) for p in chosen] if spec.format == "pairs" else [((t,), None) for p in chosen for t in p]
    return out, dropped


def load_data(spec: EmbeddingDataSpec, exclude: set[str] = frozenset(),
              data_dir: str = "../shared/data") -> EmbeddingData:
    """Train and held-out splits of the recipe's records, minus those holding a text in `exclude`
    (data.corpora are read from `data_dir`, the evaluation's folder)."""
    train = read_hf(spec, spec.hf.split) if spec.hf is not None else read_paths(spec.paths, spec)
    corpus, corpus_dropped = read_corpora(spec, data_dir, exclude)
    train += corpus
    if spec.hf is not None and spec.hf.eval_split:
        held = read_hf(spec, spec.hf.eval_split)
    elif spec.eval_paths:
        held = read_paths(spec.eval_paths, spec)
    else:  # by a hash of the first text: the same record is held out whatever else the files hold
        held = [r for r in train if is_eval_document(r[0][0], spec.eval_fraction)]
        train = [r for r in train if not is_eval_document(r[0][0], spec.eval_fraction)]
    if spec.format in ("sentences", "labelled"):
        train, held = distinct(train), distinct(held)
    before = len(train) + len(held)
    train, held = ([r for r in part if not exclude.intersection(r[0])] for part in (train, held))
    excluded = before - len(train) - len(held) + corpus_dropped
    train, held = subset(train, spec.max_train_examples), subset(held, spec.max_eval_examples)
    if not train:
        raise DataError(f"data {spec.label()}: no training record is left (held out or read by the evaluation)")
    classes = sorted({r[1] for r in train + held}) if spec.format == "labelled" else []
    return EmbeddingData(text_split(train, classes), text_split(held, classes), classes, excluded)


def for_batches(split: TextSplit, batch_format: str, data_format: str) -> TextSplit:
    """The split's records in a method's batch format (checked by `check_format`): a sentences method on
    pair-like data reads every distinct text once; a pairs method on triples drops the negatives."""
    if batch_format == "sentences" and data_format not in ("sentences", "labelled"):
        return TextSplit(split.texts, [(i,) for i in range(len(split.texts))])
    if batch_format == "pairs" and data_format == "triples":
        return TextSplit(split.texts, [r[:2] for r in split.records])
    return split


def dataset_fingerprint(data: EmbeddingData) -> str:
    """What decides the stored embeddings: the distinct texts of each split, in order."""
    payload = json.dumps([data.train.texts, data.held.texts])
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def texts_fingerprint(texts: list[str]) -> str:
    return hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:16]

