"""Sentence-embedding evaluation: SentEval-style transfer, retrieval (symmetric and asymmetric),
encode throughput and model size.

An encoder is any callable `encode(texts: list[str]) -> Tensor (N, E)`; nothing here depends on
how it is built. Encoding dominates the cost (a 110M teacher embeds ~10 sentences/s on 2 cores), so
each encoder is wrapped in a `CachedEncoder` that embeds every distinct text once, whichever suites
ask for it, and the sets are subsampled by default (`Limits`; the limits used are in the result).

Rows: each encoder alone for transfer; for retrieval "student/student", "teacher/teacher" and
"student/teacher" (student-encoded queries against teacher-encoded documents, LEAF's claim that a
student trained into the teacher's space can serve queries over an index built by the teacher).
Retrieval scores are cosine similarities.
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from distill.data import embedding_sets as sets
from distill.errors import ConfigError, DataError
from distill.eval.retrieval import retrieval_metrics
from distill.fileio import atomic_write_text
from distill.modes import eval_mode
from distill.progress import progress_bar
from distill.report.text import format_text_table, human_count

Encode = Callable[[list[str]], Tensor]
SUITES = ("transfer", "wordnet", "python-docs")
CV_FOLDS = 10
MIN_EXAMPLES = 20  # per transfer split: fewer leaves folds of one or two sentences
# inverse L2 strengths tried on a hold-out of each training split; on standardised MiniLM features of MR
# the best was 0.001-0.003 at 300 to 2,000 examples (measured), so the grid leans strong
LOGREG_CS = (0.001, 0.003, 0.01, 0.03, 0.1, 1.0)
THROUGHPUT_SENTENCES = 64  # the first 64 SST-2 test sentences: real, fixed across runs


@dataclass(frozen=True)
class Limits:
    """Subsampling (seeded); None = the whole set. Per transfer split, per retrieval suite.

    The defaults keep a student's run to minutes on 2 CPU cores; a 110M teacher still takes about
    20 minutes (Python-docs sections are long: MiniLM-L6 embeds ~10 a second on one busy core).
    """

    max_examples: int | None = 500
    max_queries: int | None = 300
    max_documents: int | None = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("max_examples", "max_queries", "max_documents"):
            value = getattr(self, name)
            least = MIN_EXAMPLES if name == "max_examples" else 1
            if value is not None and value < least:
                raise ConfigError(f"{name}: must be at least {least} (0 on the command line: the whole set), got {value}")

    @classmethod
    def from_counts(cls, max_examples: int, max_queries: int, max_documents: int, seed: int = 0) -> "Limits":
        """Command-line counts, where 0 means the whole set."""
        whole = [None if n == 0 else n for n in (max_examples, max_queries, max_documents)]
        return cls(*whole, seed=seed)


class CachedEncoder:
    """`encode` with a cache keyed by text: every distinct text is embedded once, in length-sorted
    batches (so a padding encoder pads little), with a progress bar."""

    def __init__(self, encode: Encode, name: str, batch_size: int = 32, progress: bool = True):
        self.encode, self.name, self.batch_size, self.progress = encode, name, batch_size, progress
        self.cache: dict[str, Tensor] = {}
        self.seconds = 0.0  # spent inside `encode`

    @torch.no_grad()
    def __call__(self, texts: Sequence[str]) -> Tensor:
        """(N, E) float32 embeddings of `texts`."""
        if not texts:
            raise DataError(f"encoder {self.name!r}: nothing to encode")
        # dict, not set: equal lengths keep their given order, so batches (and padding) are the same every run
        todo = sorted(dict.fromkeys(t for t in texts if t not in self.cache), key=len)
        bar = progress_bar(total=len(todo), desc=f"encode ({self.name})", unit="text",
                           disable=not self.progress or len(todo) < 2 * self.batch_size)
        for i in range(0, len(todo), self.batch_size):
            batch = todo[i:i + self.batch_size]
            start = time.perf_counter()
            out = torch.as_tensor(self.encode(batch)).detach().float().cpu()
            self.seconds += time.perf_counter() - start
            if out.ndim != 2 or out.shape[0] != len(batch):
                raise DataError(f"encoder {self.name!r} returned shape {tuple(out.shape)} for {len(batch)} texts; "
                                "expected (N, D)")
            self.cache.update(zip(batch, out))
            bar.update(len(batch))
        bar.close()
        return torch.stack([self.cache[t] for t in texts])


def _fit_classifier(x: np.ndarray, y: np.ndarray, seed: int) -> Any:
    """Standardised features (so an encoder's output scale does not change the regularisation), then a
    logistic regression whose L2 strength (LOGREG_CS) is the best on a stratified 20 % of the training
    split, refitted on all of it. One hold-out split rather than SentEval's inner k-fold: k times fewer fits."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    def model(c: float) -> Any:
        return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))

    counts = np.unique(y, return_counts=True)[1]
    stratify = y if counts.min() >= 2 and len(y) // 5 >= len(counts) else None  # a rare class may have 1 example
    fit_i, val_i = train_test_split(np.arange(len(y)), test_size=0.2, stratify=stratify, random_state=seed)
    # one BLAS thread: these fits are small, and threads that spin cost 10x on a busy machine (measured)
    with threadpool_limits(1):
        scores = [model(c).fit(x[fit_i], y[fit_i]).score(x[val_i], y[val_i]) for c in LOGREG_CS]
        return model(LOGREG_CS[int(np.argmax(scores))]).fit(x, y)  # argmax: ties go to the stronger regularisation


def _cross_validated(x: np.ndarray, y: np.ndarray, seed: int) -> float:
    """Accuracy over the held-out folds of a stratified CV_FOLDS-fold split of (x, y)."""
    from sklearn.model_selection import StratifiedKFold

    folds = min(CV_FOLDS, int(np.unique(y, return_counts=True)[1].min()))  # a small slice may hold fewer of a class
    if folds < 2:
        raise DataError("transfer: too few examples per class to cross-validate (raise max_examples)")
    correct = 0
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(x, y):
        correct += int((_fit_classifier(x[train], y[train], seed).predict(x[test]) == y[test]).sum())
    return correct / len(y)


def transfer_draw(data: sets.TransferSet, limits: Limits) -> tuple[sets.Labelled, sets.Labelled | None]:
    """The (train, test or None) examples `transfer_accuracy` reads at these limits."""
    train = sets.subsample_labelled(data.train, limits.max_examples, limits.seed)
    test = sets.subsample_labelled(data.test, limits.max_examples, limits.seed) if data.test is not None else None
    return train, test


def transfer_accuracy(encode: Encode, data: sets.TransferSet, limits: Limits = Limits()) -> dict[str, Any]:
    """SentEval-style accuracy of a logistic regression on frozen embeddings: stratified 10-fold CV,
    or fit on the train split and score the test split when the set has one."""
    train, test = transfer_draw(data, limits)
    x = encode(train.texts).numpy()
    if test is None:
        return {"accuracy": _cross_validated(x, train.labels, limits.seed), "protocol": f"{CV_FOLDS}-fold CV",
                "examples": len(train.texts)}
    predicted = _fit_classifier(x, train.labels, limits.seed).predict(encode(test.texts).numpy())
    return {"accuracy": float((predicted == test.labels).mean()), "protocol": "train/test",
            "examples": len(train.texts), "test_examples": len(test.texts)}


def evaluate_retrieval(encode_query: Encode, encode_doc: Encode, data: sets.RetrievalSet,
                       ks: Sequence[int] = (1, 10)) -> dict[str, float]:
    """Recall@k, MRR@k, nDCG@k of cosine retrieval: queries by `encode_query`, documents by `encode_doc`."""
    queries = F.normalize(encode_query(data.queries), dim=1)
    documents = F.normalize(encode_doc(data.documents), dim=1)
    return retrieval_metrics(queries, documents, data.relevant, ks)


@torch.no_grad()
def encode_throughput(encode: Encode, texts: list[str], repeats: int = 3) -> float:
    """Sentences per second of `encode` on one fixed batch, after one warm-up call (lazy init, allocator)."""
    encode(texts)
    start = time.perf_counter()
    for _ in range(repeats):
        encode(texts)
    return repeats * len(texts) / (time.perf_counter() - start)


def model_size(model: nn.Module) -> dict[str, int]:
    """{"params", "bytes"}: parameter count and bytes of parameters and buffers (tied tensors once)."""
    tensors = list(model.parameters()) + list(model.buffers())
    return {"params": sum(p.numel() for p in model.parameters()),
            "bytes": sum(t.numel() * t.element_size() for t in tensors)}


def _transfer_suite(encoders: dict[str, CachedEncoder], data_dir: str | Path, limits: Limits) -> dict[str, Any]:
    """{"sets": {name: protocol and sizes}, "<encoder>": {name: accuracy, ..., "mean": ...}}."""
    out: dict[str, Any] = {"sets": {}}
    for name in sets.TRANSFER_SETS:
        data = sets.load_transfer_set(data_dir, name)
        for who, encode in encoders.items():
            figures = transfer_accuracy(encode, data, limits)
            out.setdefault(who, {})[name] = figures.pop("accuracy")
            out["sets"][name] = figures
    for who in encoders:
        out[who]["mean"] = float(np.mean(list(out[who].values())))
    return out


def _pairs(encoders: dict[str, CachedEncoder]) -> list[tuple[str, str]]:
    """(query encoder, document encoder): each alone, then student queries over teacher documents."""
    return [(w, w) for w in encoders] + ([("student", "teacher")] if "teacher" in encoders else [])


def retrieval_draw(suite: str, data_dir: str | Path, limits: Limits) -> sets.RetrievalSet:
    """The queries and documents a retrieval suite reads at these limits."""
    return sets.subsample_retrieval(sets.RETRIEVAL_LOADERS[suite](data_dir), limits.max_queries, limits.max_documents,
                                    limits.seed)


def evaluated_texts(suites: Sequence[str], limits: Limits, data_dir: str | Path) -> list[str]:
    """Every distinct text `evaluate_embeddings` encodes for `suites` at `limits` (the same draws), sorted:
    what a teacher-embedding store caches for the evaluation, and what training should not see."""
    suites = check_suites(suites)
    texts = set(sets.throughput_sentences(data_dir, THROUGHPUT_SENTENCES))
    if "transfer" in suites:
        for name in sets.TRANSFER_SETS:
            for part in transfer_draw(sets.load_transfer_set(data_dir, name), limits):
                texts.update(part.texts if part is not None else [])
    for suite in (s for s in suites if s in sets.RETRIEVAL_LOADERS):
        data = retrieval_draw(suite, data_dir, limits)
        texts.update(data.queries + data.documents)
    return sorted(texts)


def _retrieval_suite(suite: str, encoders: dict[str, CachedEncoder], data_dir: str | Path,
                     limits: Limits) -> dict[str, Any]:
    data = retrieval_draw(suite, data_dir, limits)
    out: dict[str, Any] = {"queries": len(data.queries), "documents": len(data.documents), "pairs": {}}
    for q, d in _pairs(encoders):
        dims = (encoders[q](data.queries[:1]).shape[1], encoders[d](data.documents[:1]).shape[1])
        if dims[0] != dims[1]:
            # a student of another width has no shared space with the teacher unless trained with a projection
            out["pairs"][f"{q}/{d}"] = {"skipped": f"query embeddings are {dims[0]}-d, documents {dims[1]}-d"}
            continue
        out["pairs"][f"{q}/{d}"] = evaluate_retrieval(encoders[q], encoders[d], data)
    return out


def _encoder_figures(encoder: CachedEncoder, model: nn.Module | None, texts: list[str]) -> dict[str, Any]:
    figures: dict[str, Any] = {"dim": int(next(iter(encoder.cache.values())).shape[0]),
                               "sentences_per_s": encode_throughput(encoder.encode, texts),
                               "texts_encoded": len(encoder.cache), "encode_seconds": encoder.seconds}
    return {**figures, **(model_size(model) if model is not None else {})}


def check_suites(suites: Sequence[str]) -> list[str]:
    """`suites` without repeats, or a ConfigError naming the first unknown one."""
    unknown = [s for s in suites if s not in SUITES]
    if unknown or not suites:
        given = f"unknown suite {unknown[0]!r}" if unknown else "none given"
        raise ConfigError(f"suites: {given}; valid suites: {', '.join(SUITES)}")
    return list(dict.fromkeys(suites))


def check_request(paths: Sequence[str], suites: Sequence[str], data_dir: str | Path) -> list[str]:
    """The suites without repeats, once every model path and data file is known to exist (one-line errors)."""
    suites = check_suites(suites)
    for path in paths:
        if not Path(path).expanduser().exists():
            raise DataError(f"eval-embeddings: model {path!r} does not exist")
    sets.check_files(data_dir, suites)
    return suites


def _cached(encode: Encode | CachedEncoder, name: str, batch_size: int, progress: bool) -> CachedEncoder:
    # a CachedEncoder passed in keeps its cache: one teacher's embeddings serve several students
    return encode if isinstance(encode, CachedEncoder) else CachedEncoder(encode, name, batch_size, progress)


def evaluate_embeddings(student_encode: Encode | CachedEncoder, teacher_encode: Encode | CachedEncoder | None = None, *,
                        suites: Sequence[str] = SUITES, limits: Limits = Limits(), data_dir: str | Path = "../shared/data",
                        student_model: nn.Module | None = None, teacher_model: nn.Module | None = None,
                        batch_size: int = 32, progress: bool = True) -> dict[str, Any]:
    """Every suite in `suites` for the student (and the teacher, and student queries over teacher
    documents), plus per encoder its width, throughput and, given its module, its size.

    Returns {"suites", "limits", "data_dir", "encoders": {who: figures}, "transfer": {...},
    "retrieval": {suite: {"queries", "documents", "pairs": {"q/d": metrics}}}, "seconds"}.
    """
    start = time.perf_counter()
    suites = check_suites(suites)
    sets.check_files(data_dir, suites)  # before any encoding: a missing file found late wastes the encodes before it
    encoders = {"student": _cached(student_encode, "student", batch_size, progress)}
    if teacher_encode is not None:
        encoders["teacher"] = _cached(teacher_encode, "teacher", batch_size, progress)
    models = {"student": student_model, "teacher": teacher_model}
    with eval_mode(*models.values()):
        result: dict[str, Any] = {"suites": suites, "limits": asdict(limits), "data_dir": str(data_dir)}
        if "transfer" in suites:
            result["transfer"] = _transfer_suite(encoders, data_dir, limits)
        result["retrieval"] = {s: _retrieval_suite(s, encoders, data_dir, limits) for s in suites
                               if s in sets.RETRIEVAL_LOADERS}
        texts = sets.throughput_sentences(data_dir, THROUGHPUT_SENTENCES)
        result["encoders"] = {w: _encoder_figures(e, models[w], texts) for w, e in encoders.items()}
    result["seconds"] = time.perf_counter() - start
    return result


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def format_embedding_report(result: dict[str, Any]) -> str:
    """Two plain-text tables: per encoder (size, speed, transfer accuracies), per retrieval pair."""
    transfer = result.get("transfer", {})
    names = [n for n in sets.TRANSFER_SETS if n in transfer.get("sets", {})] + (["mean"] if transfer else [])
    body = []
    for who, f in result["encoders"].items():
        size = [human_count(f["params"]), f"{f['bytes'] / 2**20:.1f} MB"] if "params" in f else ["-", "-"]
        body.append([who, str(f["dim"]), *size, f"{f['sentences_per_s']:.1f}"]
                    + [_pct(transfer.get(who, {}).get(n)) for n in names])
    lines = [format_text_table(["encoder", "dim", "params", "size", "sent/s"] + names, body, left=1)]
    rows = []
    for suite, r in result.get("retrieval", {}).items():
        for pair, m in r["pairs"].items():
            metrics = ("recall@1", "recall@10", "mrr@10", "ndcg@10")
            cells = [m["skipped"], "", "", ""] if "skipped" in m else [_pct(m[k]) for k in metrics]
            rows.append([suite, pair, str(r["queries"]), str(r["documents"]), *cells])
    if rows:
        lines.append(format_text_table(["retrieval", "query/doc", "queries", "docs", "R@1", "R@10", "MRR@10", "nDCG@10"],
                                       rows, left=2))
    limits = result["limits"]
    lines.append(f"limits: max_examples={limits['max_examples']} max_queries={limits['max_queries']} "
                 f"max_documents={limits['max_documents']} seed={limits['seed']}  ({result['seconds']:.0f} s)")
    return "\n\n".join(lines)


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    """`result` as indented JSON at `path` (written atomically: a killed run leaves no half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(result, indent=2) + "\n")
