"""The sentence-embedding recipe schema (task: embedding)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional

from distill.config import option
from distill.data.embedding_sets import RETRIEVAL_LOADERS as CORPORA
from distill.data.hf_source import HFDataSpec, check_file_or_hf, describe
from distill.errors import ConfigError
from distill.methods.base import METHODS, MethodConfig
from distill.train.config import TrainConfig

DataFormat = Literal["sentences", "pairs", "triples", "lists", "labelled"]
# data.hf: the column roles each format reads (a record's texts in this order; "text" is data.field in JSONL)
HF_ROLES = {"sentences": ("text",), "labelled": ("text", "label"), "pairs": ("query", "positive"),
            "triples": ("query", "positive", "negative"), "lists": ("query", "candidates")}
TEXTS_PER_SHARD = 4096  # also the unit the teacher embeds in when no store section is given (see signal.py)


@dataclass(kw_only=True)
class EncoderTeacherSpec:
    """A frozen sentence encoder: a sentence-transformers folder or a plain Hugging Face encoder folder."""

    path: str = option(help="the teacher's folder, e.g. ~/.cache/distill-assets/all-mpnet-base-v2")
    dtype: Literal["auto", "float32", "bfloat16"] = option(
        "auto", help="the dtype the teacher runs in; auto: bfloat16 where the CPU runs it natively (AVX512-BF16 or "
        "AMX), float32 elsewhere (emulated bfloat16 is several times slower)")
    embeddings: Literal["once", "live"] = option(
        "once", help="once: embed every distinct training text before training and look the embeddings up (float16, "
        "exactly what `distill cache` stores); live: run the teacher on every batch (cheaper for a few steps over many "
        "texts)")
    batch_size: int = option(32, min=1, help="texts per teacher forward while embedding once or caching")


@dataclass(kw_only=True)
class StaticStudentSpec:
    """A static student: a token-embedding table averaged over the tokens (model2vec's shape)."""

    dim: int = option(min=1, help="width of the token vectors (projected to the teacher's width)")
    init_from_teacher: bool = option(True, help="start from a table of the teacher's reduced by PCA (needs "
                                     "teacher.path: its tokenizer is used); false: N(0, 1) over student.base's "
                                     "tokenizer")
    teacher_table: Literal["outputs", "inputs"] = option(
        "outputs", help="outputs: the teacher's embedding of every vocabulary token alone (one forward per token, "
        "model2vec.distill's table: ~3 minutes for a 30k vocabulary and a 110M teacher on 2 CPU cores); inputs: "
        "its input-embedding matrix (no forward)")
    sif: Optional[float] = option(1e-4, min=1e-12, max=0.999, help="scale each token's row by the SIF weight "
                                  "a / (a + p), p from Zipf's law over the ids (model2vec's default a = 1e-4); "
                                  "null: no weighting")
    normalize: bool = option(True, help="L2-normalise the output embeddings")


@dataclass(kw_only=True)
class EncoderStudentSpec:
    """One of: a pretrained encoder (`path`), a scaled-down random-init copy of `base` (`config`), or `static`."""

    path: Optional[str] = option(None, help="a pretrained encoder folder, e.g. "
                                 "~/.cache/distill-assets/all-minilm-l6-v2")
    config: dict[str, Any] = option(default_factory=dict, help="config fields replaced in base's architecture for a "
                                    "random-init student, e.g. {num_hidden_layers: 2, hidden_size: 256}")
    base: Optional[str] = option(None, help="the encoder folder whose architecture, tokenizer and pooling a config or "
                                 "static student takes (default: teacher.path)")
    static: Optional[StaticStudentSpec] = option(None, help="a static token-table student: {dim: 256}")
    projection_init: Literal["orthogonal", "least_squares"] = option(
        "orthogonal", help="when the student's width differs from the teacher's, a learned projection is added: "
        "orthogonal (an isometry into the teacher's space) or least_squares (the best linear map on "
        "projection_texts training texts)")
    projection_texts: int = option(512, min=2, help="training texts the least-squares projection is fitted on")
    dropout: Optional[float] = option(None, min=0.0, max=0.9, help="the probability of every dropout in the student "
                                      "while training (0: off, like TRL's disable_dropout); null keeps the model's")


@dataclass(kw_only=True)
class EmbeddingDataSpec:
    """Training texts: lines, a TSV column or a JSONL field (sentences); TSV / JSONL rows (pairs, triples, lists)."""

    format: DataFormat = option(
        "sentences", help="sentences: one text per line / TSV column / JSONL field; pairs: query<TAB>positive or "
        "{query, positive}; triples: + negative; lists: query<TAB>candidate... or {query, candidates} (positive "
        "first); labelled: '<label> <text>' lines or {text, label}")
    paths: list[str] = option(default_factory=list, help="files or folders (.xz files are decompressed)")
    hf: Optional[HFDataSpec] = option(None, help="a Hugging Face dataset instead of paths: {path, split, columns: "
                                      "{text | query, positive, negative | query, candidates | text, label}}")
    eval_paths: list[str] = option(default_factory=list, help="held-out files (default: eval_fraction of the records)")
    eval_fraction: float = option(0.05, min=0.0, max=0.5, help="share of records held out (by a hash of the first "
                                  "text, so the split is stable)")
    column: int = option(0, min=0, help="sentences: the TSV column holding the text")
    field: str = option("text", help="sentences / labelled: the JSONL field holding the text")
    leading_label: bool = option(False, help="plain-text lines start with a label word ('1 a stirring film'): "
                                 "sentences drop it; labelled always reads it")
    max_length: Optional[int] = option(None, min=2, help="tokens per text the student reads while training (default: "
                                       "its own max length); the teacher reads its own and the export keeps the "
                                       "student's own")
    max_per_path: Optional[int] = option(None, min=1, help="keep at most this many records of each path (a fixed "
                                         "random subset), so one large source does not crowd out the others")
    max_train_examples: Optional[int] = option(None, min=1, help="keep at most this many training records (a fixed "
                                               "subset)")
    max_eval_examples: Optional[int] = option(500, min=1, help="keep at most this many held-out records")
    corpora: list[str] = option(default_factory=list, help="retrieval suites (wordnet, python-docs) whose whole "
                                "corpus also gives training records: (query, document) pairs as the evaluation "
                                "formats them, minus every pair holding a text the evaluation reads; max_per_path "
                                "caps each corpus's pairs; sentences or pairs format")
    group_by_length: bool = option(False, help="batch records of like length together (length-sorted windows of "
                                   "64 batches, batches shuffled): less padding (3.2x faster steps on the "
                                   "LEAF recipe's texts, benchmarks/embedding_batching.py); in-batch negatives "
                                   "become texts of like length")
    corpus_max_chars: Optional[int] = option(None, min=16, help="cut corpus documents to this many characters (the "
                                             "teacher's cost grows with length; the evaluation reads them whole)")

    def __post_init__(self) -> None:
        for name in self.corpora:
            if name not in CORPORA:
                raise ConfigError(f"data.corpora: {name!r} is not a retrieval suite (one of: {', '.join(CORPORA)})")
        if self.corpora and self.format not in ("sentences", "pairs"):
            raise ConfigError(f"data.corpora give (query, document) pairs: use format sentences or pairs, not "
                              f"{self.format!r}")
        if self.paths or self.hf is not None or not self.corpora:  # corpora alone are a whole source
            check_file_or_hf(self.paths, self.eval_paths, self.hf, HF_ROLES[self.format])

    def label(self) -> str:
        """The data's name in summaries."""
        return ", ".join(self.paths + [f"corpus {c}" for c in self.corpora]) if self.hf is None else describe(self.hf)


@dataclass(kw_only=True)
class EmbeddingStoreSpec:
    """Teacher embeddings of every distinct text (train, held-out, and the end-of-run evaluation's texts)."""

    path: str = option(help="the store folder (`distill cache` writes it; `distill train` then loads no teacher)")
    dtype: Literal["float16", "float32"] = option("float16", help="storage dtype of the embeddings")
    texts_per_shard: int = option(TEXTS_PER_SHARD, min=1, help="texts per shard (the unit caching resumes at)")
    reuse: list[str] = option(default_factory=list, help="stores of the same teacher (files, dtype) and storage "
                              "dtype whose rows `distill cache` copies for the texts they hold, encoding only "
                              "the others: a recipe whose data grew re-encodes nothing it had")

    def __post_init__(self) -> None:
        own = Path(self.path).expanduser().resolve()
        if any(Path(p).expanduser().resolve() == own for p in self.reuse):
            raise ConfigError(f"store.reuse: {self.path!r} is this recipe's own store (a changed recipe rewrites it): "
                              "cache the new recipe into another folder and reuse this one")


@dataclass(kw_only=True)
class EmbeddingEvalSpec:
    """`distill eval-embeddings` run on the exported student at the end of training, with small limits."""

    suites: list[str] = option(default_factory=lambda: ["transfer", "wordnet", "python-docs"],
                               help="transfer, wordnet, python-docs; [] skips the end-of-run evaluation")
    data_dir: str = option("../shared/data", help="the shared data folder holding the evaluation sets")
    max_examples: Optional[int] = option(200, min=20, help="per transfer split (null: all)")
    max_queries: Optional[int] = option(100, min=1, help="per retrieval suite (null: all)")
    max_documents: Optional[int] = option(300, min=1, help="per retrieval suite, relevant ones included (null: all)")
    seed: int = option(0, min=0, help="seed of the subsampling and of the classifiers' folds")
    batch_size: int = option(32, min=1, help="texts per encoder forward")
    exclude_from_training: bool = option(True, help="drop training and held-out records holding a text the "
                                         "evaluation reads (same draw), so the figures are not of trained-on texts")


@dataclass(kw_only=True)
class EmbeddingRecipe:
    """A sentence-embedding distillation run: frozen teacher encoder (or a store of its embeddings), student encoder."""

    task: Literal["embedding"] = "embedding"
    name: str = option(help="run name; outputs go to <output_dir>/<name>/")
    seed: int = option(0, min=0, help="seed of the student's init and the data order")
    output_dir: str = option("runs", help="parent folder of run folders")
    teacher: Optional[EncoderTeacherSpec] = option(None, help="the teacher encoder (needed unless a store replaces it)")
    store: Optional[EmbeddingStoreSpec] = option(None, help="teacher-embedding store: `distill cache` writes it, "
                                                 "`distill train` reads it instead of loading the teacher")
    student: EncoderStudentSpec = option(help="the student encoder")
    data: EmbeddingDataSpec = option(help="training and held-out texts")
    method: MethodConfig = option(registry=METHODS, help="the distillation method and its options (`distill methods`)")
    train: TrainConfig = option(default_factory=lambda: TrainConfig(optimizer="adamw", lr=1e-4, weight_decay=0.01,
                                                                     batch_size=32, epochs=1, warmup_epochs=0.1))
    eval: EmbeddingEvalSpec = option(default_factory=EmbeddingEvalSpec)
    baseline: bool = option(False, help="also train the student with the task's teacher-free baseline (same init, "
                            "schedule and data; needs pairs or triples data)")
    threads: Optional[int] = option(None, min=1, help="torch CPU threads (default: torch's choice)")
    progress: bool = option(True, help="show progress bars")
    imports: list[str] = option(default_factory=list, help="python modules to import first (register plugins)")
