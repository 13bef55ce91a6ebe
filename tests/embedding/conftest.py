"""Tiny in-process assets for the embedding task: a WordPiece tokenizer, a 32-d teacher and a 16-d student
exported as sentence-transformers folders, and small data files in every format."""
import json

import pytest

from tests.helpers import SHARED
from tests.models.tiny_encoders import CORPUS, TEXTS, tiny_encoder, wordpiece_tokenizer

DATA = SHARED / "data"
SENTENCES = CORPUS + TEXTS + [f"sentence number {i} is about {w}" for i, w in
                              enumerate(["dogs", "code", "food", "music", "teachers", "students"] * 4)]


@pytest.fixture(scope="session")
def assets(tmp_path_factory):
    from distill.models.encoders import export_sentence_transformers
    root = tmp_path_factory.mktemp("embedding")
    tok = wordpiece_tokenizer()
    for name, hidden, seed in (("teacher", 32, 1), ("student", 16, 2)):
        export_sentence_transformers(tiny_encoder(tok, hidden=hidden, normalize=True, seed=seed), tok, root / name)
    (root / "sentences.txt").write_text("\n".join(SENTENCES) + "\n")
    pairs = [f"{a}\t{b}\t{c}" for a, b, c in zip(SENTENCES, SENTENCES[1:], SENTENCES[2:])]
    (root / "triples.tsv").write_text("\n".join(pairs) + "\n")
    (root / "labelled.txt").write_text("\n".join(f"{i % 2} {s}" for i, s in enumerate(SENTENCES)) + "\n")
    rows = [{"query": a, "candidates": [b, c][: 1 + i % 2]} for i, (a, b, c) in enumerate(zip(SENTENCES, SENTENCES[1:],
                                                                                              SENTENCES[2:]))]
    (root / "lists.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return {"root": root, "teacher": str(root / "teacher"), "student": str(root / "student"), "tokenizer": tok,
            "sentences": str(root / "sentences.txt"), "triples": str(root / "triples.tsv"),
            "labelled": str(root / "labelled.txt"), "lists": str(root / "lists.jsonl")}


def embedding_recipe(assets, out, **changes):
    """A recipe that trains 4 steps of LEAF from the tiny teacher, without the end-of-run evaluation."""
    recipe = {
        "task": "embedding", "name": "tiny-emb", "seed": 0, "output_dir": str(out), "progress": False, "threads": 1,
        "teacher": {"path": assets["teacher"], "batch_size": 8, "dtype": "float32"},  # auto: bf16 on some CPUs
        "student": {"path": assets["student"]},
        "data": {"format": "sentences", "paths": [assets["sentences"]], "eval_fraction": 0.2},
        "method": {"name": "leaf"},
        "train": {"epochs": 2, "batch_size": 8, "optimizer": "adamw", "lr": 0.01, "log_every": 1},
        "eval": {"suites": []},
    }
    recipe.update(changes)
    return recipe
