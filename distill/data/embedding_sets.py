"""Evaluation sets for sentence embeddings, read from the shared data folder (`../shared/data`).

Transfer (SentEval-style classification), one example a line `<label> <tokenized sentence>`:
  MR, CR, SUBJ, MPQA (no split: 10-fold cross-validation), SST-2 and TREC (given train / test).
Retrieval (binary relevance, several relevant documents allowed):
  wordnet      query = a synset's lemma words ("abstraction, abstract entity"), document = its
               gloss; the collection is every distinct gloss, and a query string shared by several
               synsets ("cut": 36) has all their glosses relevant. The quoted usage examples are
               dropped by default: they quote the lemma itself, which turns the task into string
               matching.
  python-docs  query = a section heading of the Python 3.11 docs, document = the section's text
               (light reST clean-up, first 1,000 characters: the encoders read 256-384 tokens).
               Headings shared by several sections ("Examples": 40) are not queries (they name no
               one section) but their sections stay in the collection.
Subsampling is seeded (`subsample_*`): encoding, not scoring, is what costs.
"""
from __future__ import annotations

import lzma
import re
import tarfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distill.errors import DataError

# name -> (files, split?): a set with one file is cross-validated, one with two has a train / test split
TRANSFER_SETS = {
    "MR": ("sentence-classification/rt-polarity.all",),
    "CR": ("sentence-classification/custrev.all",),
    "SUBJ": ("sentence-classification/subj.all",),
    "MPQA": ("sentence-classification/mpqa.all",),
    "SST-2": ("sentence-classification/stsa.binary.train", "sentence-classification/stsa.binary.test"),
    "TREC": ("sentence-classification/TREC.train.all", "sentence-classification/TREC.test.all"),
}
THROUGHPUT_FILE = TRANSFER_SETS["SST-2"][1]
WORDNET = "text/wordnet-glosses.tsv.xz"
PYTHON_DOCS = "text/python-docs-rst.tar.xz"
SECTION_CHARS = 1000
MIN_SECTION_CHARS = 40  # a heading directly followed by a sub-heading has no text of its own


@dataclass
class Labelled:
    """Sentences and their integer labels (0..C-1)."""

    texts: list[str]
    labels: np.ndarray


@dataclass
class TransferSet:
    """A classification set: `test` is None when it is evaluated by cross-validation."""

    name: str
    train: Labelled
    test: Labelled | None


@dataclass
class RetrievalSet:
    """Queries, a document collection, and per query the indices of its relevant documents."""

    name: str
    queries: list[str]
    documents: list[str]
    relevant: list[list[int]]


def _path(data_dir: str | Path, relative: str) -> Path:
    path = Path(data_dir).expanduser() / relative
    if not path.is_file():
        raise DataError(f"embedding data: {str(path)!r} does not exist (pass the shared data folder, e.g. ../shared/data)")
    return path


def check_files(data_dir: str | Path, suites: list[str]) -> None:
    """DataError naming the first file that `suites` need and `data_dir` lacks (throughput needs SST-2)."""
    needed = {"transfer": [f for files in TRANSFER_SETS.values() for f in files], "wordnet": [WORDNET],
              "python-docs": [PYTHON_DOCS]}
    for relative in [THROUGHPUT_FILE] + [f for s in suites for f in needed[s]]:
        _path(data_dir, relative)


def throughput_sentences(data_dir: str | Path, n: int) -> list[str]:
    """The first `n` SST-2 test sentences: a fixed batch of real sentences for timing an encoder."""
    return read_labelled(_path(data_dir, THROUGHPUT_FILE))[0][:n]


def _decode(raw: bytes) -> str:
    # MR, SUBJ and TREC-train are Windows-1252 (0x85 is an ellipsis there); the others UTF-8
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


def read_labelled(path: Path) -> tuple[list[str], list[str]]:
    """(sentences, label strings) of a `<label> <sentence>` file; a TREC fine label keeps its coarse class.

    A label with no sentence (CR has 7) is skipped: there is nothing to embed.
    """
    texts, labels = [], []
    # split on "\n" only: str.splitlines would also break at U+0085 and other separators
    for line in _decode(path.read_bytes()).split("\n"):
        if not line.strip():
            continue
        label, _, text = line.strip().partition(" ")
        if not text.strip():
            continue
        labels.append(label.split(":")[0])  # TREC "DESC:manner" -> "DESC"
        texts.append(text.strip())
    return texts, labels


def load_transfer_set(data_dir: str | Path, name: str) -> TransferSet:
    """One of TRANSFER_SETS, labels mapped to 0..C-1 in sorted order of the label strings."""
    parts = [read_labelled(_path(data_dir, f)) for f in TRANSFER_SETS[name]]
    classes = sorted({label for _, labels in parts for label in labels})
    index = {c: i for i, c in enumerate(classes)}
    sets = [Labelled(texts, np.array([index[x] for x in labels], dtype=np.int64)) for texts, labels in parts]
    return TransferSet(name, sets[0], sets[1] if len(sets) > 1 else None)


def subsample_labelled(data: Labelled, max_examples: int | None, seed: int) -> Labelled:
    """At most `max_examples` examples, drawn without replacement (seeded), in their original order."""
    if max_examples is None or len(data.texts) <= max_examples:
        return data
    keep = np.sort(np.random.default_rng(seed).choice(len(data.texts), max_examples, replace=False))
    return Labelled([data.texts[i] for i in keep], data.labels[keep])


def _grouped(name: str, pairs: list[tuple[str, str]], unique_queries: bool) -> RetrievalSet:
    """A RetrievalSet from (query, document) pairs: equal texts merge, relevance follows the pairs."""
    documents = list(dict.fromkeys(d for _, d in pairs))
    doc_index = {d: i for i, d in enumerate(documents)}
    relevant: dict[str, list[int]] = defaultdict(list)
    for q, d in pairs:
        if doc_index[d] not in relevant[q]:
            relevant[q].append(doc_index[d])
    counts = Counter(q for q, _ in pairs)
    queries = [q for q in relevant if not unique_queries or counts[q] == 1]
    return RetrievalSet(name, queries, documents, [relevant[q] for q in queries])


def load_wordnet(data_dir: str | Path, examples: bool = False) -> RetrievalSet:
    """WordNet lemma words -> gloss (see the module docstring)."""
    path = _path(data_dir, WORDNET)
    pairs = []
    for n, line in enumerate(lzma.decompress(path.read_bytes()).decode("utf-8").split("\n"), 1):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise DataError(f"{path}:{n}: expected lexfile_id<TAB>words<TAB>gloss")
        words = ", ".join(w.replace("_", " ") for w in fields[1].split())
        gloss = fields[2] if examples else fields[2].split('; "')[0]
        pairs.append((words, gloss.strip()))
    return _grouped("wordnet", pairs, unique_queries=False)


# a reST section underline (or overline): one punctuation character repeated
_ADORNMENT = re.compile(r"^([!-/:-@\[-`{-~])\1+\s*$")
_ROLE = re.compile(r":[\w:.-]+:`~?!?([^`<]*?)(?:\s*<[^>]*>)?`")  # :func:`~os.path.join` -> os.path.join
_LINK = re.compile(r"`([^`<]+?)\s*<[^>]*>`__?")  # `JSON <https://json.org>`_ -> JSON


def clean_rst(text: str) -> str:
    """Roles and links reduced to their text, ``literals`` unquoted, whitespace collapsed."""
    text = _LINK.sub(r"\1", _ROLE.sub(r"\1", text))
    return " ".join(text.replace("``", "").split())


def _is_heading(lines: list[str], i: int) -> bool:
    title, under = lines[i], lines[i + 1]
    before = lines[i - 1] if i > 0 else ""
    return (bool(title.strip()) and not title[0].isspace() and re.search(r"\w", title) is not None
            and _ADORNMENT.match(under) is not None and len(under.rstrip()) >= len(title.rstrip())
            and (not before.strip() or _ADORNMENT.match(before) is not None))


def rst_sections(source: str) -> list[tuple[str, str]]:
    """(heading, section text) of a reST file; the text runs to the next heading (sub-headings included)."""
    lines = source.split("\n")
    heads = [i for i in range(len(lines) - 1) if _is_heading(lines, i)]
    out = []
    for j, h in enumerate(heads):
        end = heads[j + 1] if j + 1 < len(heads) else len(lines)
        body = lines[h + 2:end]
        if body and j + 1 < len(heads) and _ADORNMENT.match(body[-1] or " "):
            body = body[:-1]  # the next heading's overline
        out.append((clean_rst(lines[h]), clean_rst("\n".join(body))))
    return out


def load_python_docs(data_dir: str | Path, max_chars: int = SECTION_CHARS) -> RetrievalSet:
    """Python docs section heading -> section text (see the module docstring)."""
    path = _path(data_dir, PYTHON_DOCS)
    pairs = []
    with tarfile.open(path) as archive:
        for member in sorted((m for m in archive if m.isfile() and m.name.endswith(".rst.txt")), key=lambda m: m.name):
            source = archive.extractfile(member).read().decode("utf-8", errors="replace")
            pairs += [(h, t[:max_chars]) for h, t in rst_sections(source) if len(t) >= MIN_SECTION_CHARS]
    if not pairs:
        raise DataError(f"{path}: no reST section found")
    return _grouped("python-docs", pairs, unique_queries=True)


RETRIEVAL_LOADERS = {"wordnet": load_wordnet, "python-docs": load_python_docs}


def corpus_pairs(suite: str, data_dir: str | Path) -> list[tuple[str, str]]:
    """(query, relevant document) pairs of a retrieval suite's whole corpus, as the evaluation formats them."""
    data = RETRIEVAL_LOADERS[suite](data_dir)
    return [(q, data.documents[d]) for q, docs in zip(data.queries, data.relevant) for d in docs]


def subsample_retrieval(data: RetrievalSet, max_queries: int | None, max_documents: int | None,
                        seed: int) -> RetrievalSet:
    """At most `max_queries` queries (seeded) against their relevant documents plus seeded distractors
    up to `max_documents` (more when the sampled queries alone have more relevant documents)."""
    rng = np.random.default_rng(seed)
    q_keep = np.arange(len(data.queries))
    if max_queries is not None and len(q_keep) > max_queries:
        q_keep = np.sort(rng.choice(len(q_keep), max_queries, replace=False))
    needed = sorted({d for q in q_keep for d in data.relevant[q]})
    others = np.setdiff1d(np.arange(len(data.documents)), needed)
    room = len(others) if max_documents is None else max(0, max_documents - len(needed))
    extra = rng.choice(others, min(room, len(others)), replace=False) if len(others) else others
    d_keep = np.sort(np.concatenate([np.asarray(needed, dtype=np.int64), extra.astype(np.int64)]))
    new_index = {int(d): i for i, d in enumerate(d_keep)}
    return RetrievalSet(data.name, [data.queries[q] for q in q_keep], [data.documents[d] for d in d_keep],
                        [[new_index[d] for d in data.relevant[q]] for q in q_keep])
