"""Sentence-embedding evaluation on small slices of the real shared data, with in-process stand-in
encoders (no download): a hashed bag of words, seeded noise, and an oracle that knows the answers."""
import json
import zlib

import pytest
import torch
from torch import nn

from distill import cli
from distill.cli import main
from distill.data import embedding_sets as sets
from distill.errors import ConfigError
from distill.eval.embeddings import (CachedEncoder, Limits, evaluate_embeddings, evaluate_retrieval, format_embedding_report,
                                     transfer_accuracy)
from tests.helpers import SHARED

DATA = SHARED / "data"
pytestmark = pytest.mark.skipif(not (DATA / "sentence-classification").is_dir(), reason="../shared/data is absent")


def hashed_bow(texts, dim=256):
    """log(1 + counts) of words hashed into `dim` buckets: a weak but real sentence encoder."""
    out = torch.zeros(len(texts), dim)
    for i, text in enumerate(texts):
        for word in text.lower().split():
            out[i, zlib.crc32(word.encode()) % dim] += 1
    return torch.log1p(out)


def noise(texts, dim=64):
    """A fixed random vector per text: carries no information about it."""
    return torch.stack([torch.randn(dim, generator=torch.Generator().manual_seed(zlib.crc32(t.encode()))) for t in texts])


class Oracle:
    """One-hot document codes; a query is the sum of its relevant documents' codes (times `rotation`)."""

    def __init__(self, data, rotation=None):
        eye = torch.eye(len(data.documents))
        self.table = {d: eye[i] for i, d in enumerate(data.documents)}
        self.table.update({q: eye[r].sum(0) for q, r in zip(data.queries, data.relevant)})
        self.rotation = rotation

    def __call__(self, texts):
        out = torch.stack([self.table[t] for t in texts])
        return out if self.rotation is None else out @ self.rotation


@pytest.fixture(scope="module")
def wordnet_slice():
    data = sets.subsample_retrieval(sets.load_wordnet(DATA), max_queries=150, max_documents=400, seed=1)
    assert not set(data.queries) & set(data.documents)  # so one Oracle can serve both sides
    return data


def rotation(n, seed=0):
    return torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed)))[0]


def test_transfer_is_above_chance_for_words_and_at_chance_for_noise():
    trec = sets.load_transfer_set(DATA, "TREC")  # given split; majority class of the test set: 27.6 %
    limits = Limits(max_examples=300)
    assert transfer_accuracy(hashed_bow, trec, limits)["accuracy"] > 0.45
    assert transfer_accuracy(noise, trec, limits)["accuracy"] < 0.35
    subj = sets.load_transfer_set(DATA, "SUBJ")  # 10-fold CV, balanced
    words = transfer_accuracy(hashed_bow, subj, limits)
    assert words["protocol"] == "10-fold CV" and words["examples"] == 300 and words["accuracy"] > 0.64
    assert transfer_accuracy(noise, subj, limits)["accuracy"] < 0.6


def test_loaders_read_every_set_with_its_labels():
    sizes = {"MR": 10662, "CR": 3771, "SUBJ": 10000, "MPQA": 10603, "SST-2": 6920, "TREC": 5452}
    for name, n in sizes.items():
        data = sets.load_transfer_set(DATA, name)
        assert len(data.train.texts) == n and set(data.train.labels.tolist()) == set(range(6 if name == "TREC" else 2))
        assert (data.test is None) == (name not in ("SST-2", "TREC"))
    assert sets.read_labelled(DATA / sets.TRANSFER_SETS["MR"][0])[0][0] == "simplistic , silly and tedious ."
    docs = sets.load_python_docs(DATA)
    heading = docs.queries.index("json --- JSON encoder and decoder")
    assert docs.documents[docs.relevant[heading][0]].startswith(".. module:: json :synopsis: Encode")
    assert "Examples" not in docs.queries and len(docs.queries) > 3000


def test_rst_sections_follow_underlines_and_overlines():
    source = "=====\nTitle\n=====\n\nIntro :func:`os.walk`.\n\n----\n\nSub\n---\nBody ``x``.\n\nAnother\n~~~~~~~\nEnd."
    assert sets.rst_sections(source) == [("Title", "Intro os.walk. ----"), ("Sub", "Body x."), ("Another", "End.")]


def test_oracle_retrieval_gets_the_hand_computed_metrics(wordnet_slice):
    oracle = Oracle(wordnet_slice)
    m = evaluate_retrieval(oracle, oracle, wordnet_slice)
    sizes = torch.tensor([len(r) for r in wordnet_slice.relevant], dtype=torch.float64)
    assert sizes.max() > 1  # the slice has queries with several relevant glosses
    # every relevant gloss ranks above every other one: R@k = min(|R|, k) / |R|, MRR = nDCG = 1
    assert m["recall@1"] == pytest.approx(float((1 / sizes).mean()))
    assert m["recall@10"] == pytest.approx(float((sizes.clamp(max=10) / sizes).mean()))
    assert m["mrr@10"] == pytest.approx(1.0) and m["ndcg@10"] == pytest.approx(1.0)


def test_asymmetric_retrieval_mixes_the_two_encoders(wordnet_slice):
    plain, turned = Oracle(wordnet_slice), Oracle(wordnet_slice, rotation(len(wordnet_slice.documents)))
    same = evaluate_retrieval(turned, turned, wordnet_slice)  # a rotation keeps every cosine
    assert same == pytest.approx(evaluate_retrieval(plain, plain, wordnet_slice))
    mixed = evaluate_retrieval(plain, turned, wordnet_slice)  # queries and documents in different spaces
    assert mixed["recall@10"] < 0.2 and mixed["mrr@10"] < 0.2


def test_evaluate_embeddings_rows_cache_and_figures(wordnet_slice):
    limits = Limits(max_queries=150, max_documents=400, seed=1)  # evaluate_embeddings draws wordnet_slice again
    calls = {"student": 0, "teacher": 0}

    def counted(who, encode):
        def run(texts):
            calls[who] += len(texts)
            return encode(texts)
        return run

    n = len(wordnet_slice.documents)
    table = Oracle(wordnet_slice).table
    spare = {t: torch.zeros(n) for t in sets.throughput_sentences(DATA, 64)}  # the throughput batch
    oracle = lambda texts: torch.stack([table.get(t, spare.get(t)) for t in texts])  # noqa: E731
    turn = rotation(n)
    student, teacher = counted("student", oracle), counted("teacher", lambda texts: oracle(texts) @ turn)
    module = nn.Linear(3, 2)
    result = evaluate_embeddings(student, teacher, suites=["wordnet"], limits=limits, data_dir=DATA,
                                 student_model=module, progress=False)
    pairs = result["retrieval"]["wordnet"]["pairs"]
    assert list(pairs) == ["student/student", "teacher/teacher", "student/teacher"]
    assert pairs["student/student"]["mrr@10"] == pytest.approx(1.0) == pairs["teacher/teacher"]["mrr@10"]
    assert pairs["student/teacher"]["mrr@10"] < 0.2
    texts = len(wordnet_slice.queries) + n
    assert calls["student"] == calls["teacher"] == texts + 4 * 64  # each text once, then warm-up + 3 timed batches
    s = result["encoders"]["student"]
    assert s["dim"] == n and s["texts_encoded"] == texts and s["sentences_per_s"] > 0
    assert (s["params"], s["bytes"]) == (8, 32) and "params" not in result["encoders"]["teacher"]
    assert result["limits"] == {"max_examples": 500, "max_queries": 150, "max_documents": 400, "seed": 1}
    assert "student/teacher" in format_embedding_report(result)


def test_cached_encoder_embeds_each_text_once():
    seen = []
    encoder = CachedEncoder(lambda texts: seen.extend(texts) or hashed_bow(texts), "bow", batch_size=2, progress=False)
    first = encoder(["b a", "a", "b a", "c c c"])
    assert sorted(seen) == ["a", "b a", "c c c"]
    assert torch.equal(encoder(["c c c", "a"]), first[[3, 1]]) and len(seen) == 3


def test_limits_and_suites_are_checked():
    with pytest.raises(ConfigError, match="max_examples: must be at least 20"):
        Limits(max_examples=5)
    with pytest.raises(ConfigError, match="unknown suite 'sts'; valid suites: transfer, wordnet, python-docs"):
        evaluate_embeddings(hashed_bow, suites=["sts"], data_dir=DATA)


class StandIn(nn.Module):
    """What `load_sentence_encoder` returns, in miniature: a module with `.encode(texts)`."""

    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Linear(256, dim)

    @torch.no_grad()
    def encode(self, texts):
        return self.proj(hashed_bow(texts))


def test_cli_eval_embeddings(tmp_path, capsys, monkeypatch):
    torch.manual_seed(0)
    monkeypatch.setattr(cli, "load_sentence_encoder", lambda path: StandIn(16 if "teacher" in str(path) else 8))
    student, teacher, out = tmp_path / "student", tmp_path / "teacher", tmp_path / "out" / "eval.json"
    student.mkdir(), teacher.mkdir()
    code = main(["eval-embeddings", str(student), "--teacher", str(teacher), "--suites", "transfer", "python-docs",
                 "--max-examples", "40", "--max-queries", "20", "--max-documents", "60", "--data", str(DATA),
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0
    result = json.loads(out.read_text())
    assert set(result["transfer"]["student"]) == set(sets.TRANSFER_SETS) | {"mean"}
    assert result["encoders"]["student"]["params"] == 256 * 8 + 8 and result["encoders"]["teacher"]["dim"] == 16
    pairs = result["retrieval"]["python-docs"]["pairs"]
    assert "skipped" in pairs["student/teacher"] and "8-d" in pairs["student/teacher"]["skipped"]  # no shared space
    assert 0 <= pairs["teacher/teacher"]["ndcg@10"] <= 1 and result["model"] == str(student)
    assert "SST-2" in printed and "python-docs" in printed and "max_examples=40" in printed


def test_cli_one_line_errors(tmp_path, capsys):
    assert main(["eval-embeddings", str(tmp_path / "missing")]) == 2
    assert main(["eval-embeddings", str(tmp_path), "--suites", "transfer", "sts"]) == 2
    assert main(["eval-embeddings", str(tmp_path), "--data", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("error: ") for line in err)
    assert "missing' does not exist" in err[0] and "unknown suite 'sts'" in err[1] and "stsa.binary.test" in err[2]
