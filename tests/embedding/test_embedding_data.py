"""Embedding data: records from text / TSV / JSONL in every format, the stable held-out split, texts the evaluation
reads left out, distinct texts, and deterministic batches in each method batch format."""
import json

import pytest
import torch

from distill.config import from_dict
from distill.errors import ConfigError, DataError
from distill.tasks.embedding.batches import TextBatches
from distill.tasks.embedding.data import for_batches, load_data
from distill.tasks.embedding.schema import EmbeddingDataSpec


def spec(**fields):
    return from_dict(EmbeddingDataSpec, {"eval_fraction": 0.0, **fields})


def write(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def fake_tokenize(texts):
    ids = torch.tensor([[len(t), 1] for t in texts])
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_every_format_reads_its_records(tmp_path):
    tsv = write(tmp_path / "t.tsv", ["q1\tp1\tn1", "q2\tp2\tn2", "q1\tp3\tn1"])
    triples = load_data(spec(format="triples", paths=[tsv])).train
    assert triples.texts == ["q1", "p1", "n1", "q2", "p2", "n2", "p3"] and triples.records[2] == (0, 6, 2)
    glosses = load_data(spec(format="sentences", paths=[tsv], column=2)).train
    assert glosses.texts == ["n1", "n2"]  # distinct texts: a sentence is one example however often it appears
    jsonl = write(tmp_path / "l.jsonl", [json.dumps({"query": "a", "candidates": ["b", "c"]}),
                                         json.dumps({"query": "d", "candidates": ["e"], "other": 1})])
    assert load_data(spec(format="lists", paths=[jsonl])).train.records == [(0, 1, 2), (3, 4)]
    lines = write(tmp_path / "x.all", ["1 a good film", "0 a bad film", "1 a good film", "0"])
    labelled = load_data(spec(format="labelled", paths=[lines]))
    assert labelled.train.texts == ["a good film", "a bad film"] and labelled.train.labels.tolist() == [1, 0]
    assert labelled.classes == ["0", "1"]
    assert load_data(spec(paths=[lines], leading_label=True)).train.texts == ["a good film", "a bad film"]
    records = write(tmp_path / "s.jsonl", [json.dumps({"body": "x y"}), json.dumps({"body": "z"})])
    assert load_data(spec(paths=[records], field="body")).train.texts == ["x y", "z"]


@pytest.mark.parametrize("fmt,lines,name,message", [
    ("pairs", ["only one column"], "p.tsv", "p.tsv:1: pairs need 2 tab-separated texts per line, found 1"),
    ("pairs", ["a\tb"], "p.txt", "p.txt:1: pairs are read from TSV or JSONL"),
    ("triples", ['{"query": "a", "positive": "b"}'], "t.jsonl", "t.jsonl:1: a triples record needs the key 'negative'"),
    ("lists", ['{"query": "a", "candidates": []}'], "l.jsonl", "'candidates' must be a non-empty list"),
    ("sentences", ["{not json"], "s.jsonl", "s.jsonl:1: not valid JSON"),
    ("labelled", ["1\ta"], "x.tsv", "labelled data is read from '<label> <text>' lines or JSONL"),
])
def test_malformed_data_fails_with_one_line(tmp_path, fmt, lines, name, message):
    path = write(tmp_path / name, lines)
    with pytest.raises(DataError) as info:
        load_data(spec(format=fmt, paths=[path]))
    assert "\n" not in str(info.value) and message in str(info.value)


def test_held_out_split_is_stable_and_evaluated_texts_are_left_out(tmp_path):
    texts = [f"sentence {i}" for i in range(200)]
    small = load_data(spec(paths=[write(tmp_path / "a.txt", texts[:100])], eval_fraction=0.2, max_eval_examples=None))
    large = load_data(spec(paths=[write(tmp_path / "b.txt", texts)], eval_fraction=0.2, max_eval_examples=None))
    assert 5 < len(small.held.texts) < 40 and set(small.held.texts) <= set(large.held.texts)
    assert not set(large.held.texts) & set(large.train.texts)
    dropped = load_data(spec(paths=[write(tmp_path / "c.txt", texts)]), exclude={"sentence 3", "sentence 7", "other"})
    assert dropped.excluded == 2 and "sentence 3" not in dropped.train.texts and len(dropped.train.texts) == 198
    capped = load_data(spec(paths=[str(tmp_path / "a.txt"), str(tmp_path / "b.txt")], max_per_path=10))
    assert len(capped.train.texts) <= 20 and len(capped.train.records) == len(capped.train.texts)


def test_batches_follow_the_method_format_and_resume_anywhere(tmp_path):
    tsv = write(tmp_path / "t.tsv", [f"q{i}\tp{i}\tn{i}" for i in range(10)])
    split = load_data(spec(format="triples", paths=[tsv])).train
    pairs = TextBatches(for_batches(split, "pairs", "triples"), "pairs", fake_tokenize, batch_size=4, seed=3)
    assert len(pairs) == 2  # 10 pairs: the short third batch is dropped
    batch = next(pairs.epoch(0))
    assert set(batch) == {"query", "positive"} and [t[0] for t in batch["positive"]["text"]] == ["p"] * 4
    assert [split.texts[i] for i in batch["query"]["index"].tolist()] == batch["query"]["text"]
    later = list(pairs.epoch(1, start=1))
    assert len(later) == 1 and later[0]["query"]["text"] == list(pairs.epoch(1))[1]["query"]["text"]
    sentences = TextBatches(for_batches(split, "sentences", "triples"), "sentences", fake_tokenize, batch_size=30)
    assert sorted(next(sentences.epoch(0))["text"]) == sorted(split.texts)  # every distinct text once
    jsonl = write(tmp_path / "l.jsonl", [json.dumps({"query": f"q{i}", "candidates": ["a", "b", "c"][: 1 + i % 3]})
                                         for i in range(4)])
    lists = TextBatches(load_data(spec(format="lists", paths=[jsonl])).train, "lists", fake_tokenize, batch_size=4,
                        shuffle=False)
    batch = next(lists.epoch(0))
    assert batch["candidate_mask"].tolist() == [[True, False, False], [True, True, False], [True, True, True],
                                                [True, False, False]]
    assert batch["candidates"]["text"][:3] == ["a", "a", "a"]  # a short list is padded with its own positive


def test_group_by_length_pads_less_and_keeps_every_record_and_resume(tmp_path):
    import random
    rng = random.Random(0)
    lines = [" ".join(["w"] * rng.randint(1, 60)) + f" {i}" for i in range(400)]
    split = load_data(spec(paths=[write(tmp_path / "s.txt", lines)])).train
    plain = TextBatches(split, "sentences", fake_tokenize, batch_size=8, seed=1)
    grouped = TextBatches(split, "sentences", fake_tokenize, batch_size=8, seed=1, group_by_length=True)

    def padded(batches, epoch):  # characters a batch pads to, summed: what grouping is for
        return sum(len(b["text"]) * max(map(len, b["text"])) for b in batches.epoch(epoch))
    assert len(grouped) == len(plain) == 50
    rows = grouped.batch_rows(0)
    assert sorted(r for b in rows for r in b) == sorted(r for b in plain.batch_rows(0) for r in b)  # same records
    assert padded(grouped, 0) < 0.7 * padded(plain, 0)
    window = [len(split.texts[r]) for r in grouped.grouped(plain.order(0).tolist())[:8 * 64]]
    assert window == sorted(window, reverse=True)  # a window is sorted longest first...
    firsts = [b[0] for b in rows[:10]]
    assert firsts != sorted(firsts, key=lambda r: -len(split.texts[r]))  # ...and its batches are shuffled
    assert grouped.batch_rows(1) != rows  # a new order each epoch
    resumed = [b["text"] for b in grouped.epoch(1, start=7)]
    assert resumed == [b["text"] for b in grouped.epoch(1)][7:]


# ----------------------------------------------------------------------------- data.corpora

def fake_wordnet(data_dir):
    import lzma
    rows = ["3\tdog domestic_dog\ta member of the genus Canis; \"the dog barked\"",
            "3\tcat\tfeline mammal usually having thick soft fur",
            "5\tcut\tthe act of reducing", "7\tcut\ta share of the profits"]
    (data_dir / "text").mkdir(parents=True)
    (data_dir / "text" / "wordnet-glosses.tsv.xz").write_bytes(lzma.compress(("\n".join(rows) + "\n").encode()))
    return str(data_dir)


def test_corpora_add_the_suites_texts_as_the_evaluation_formats_them_minus_the_evaluated_ones(tmp_path):
    data_dir = fake_wordnet(tmp_path / "shared")
    data = load_data(spec(corpora=["wordnet"]), data_dir=data_dir)
    assert data.train.texts == ["dog, domestic dog", "a member of the genus Canis", "cat",
                                "feline mammal usually having thick soft fur", "cut", "the act of reducing",
                                "a share of the profits"]  # usage examples dropped, a shared query once
    evaluated = {"cat", "the act of reducing"}  # one query, one document the evaluation reads
    data = load_data(spec(corpora=["wordnet"], corpus_max_chars=16), exclude=evaluated, data_dir=data_dir)
    assert data.train.texts == ["dog, domestic dog", "a member of the", "cut", "a share of the p"]  # cut, stripped
    assert data.excluded == 2  # the pairs (cat, feline...) and (cut, the act...), counted, not silently lost
    pairs = load_data(spec(format="pairs", corpora=["wordnet"], max_per_path=2), data_dir=data_dir).train
    assert len(pairs.records) == 2 and all(len(r) == 2 for r in pairs.records)


def test_corpora_join_file_paths_and_bad_corpora_fail_at_load(tmp_path):
    data_dir = fake_wordnet(tmp_path / "shared")
    lines = write(tmp_path / "s.txt", ["1 a good film", "0 a bad film"])
    both = load_data(spec(paths=[lines], leading_label=True, corpora=["wordnet"]), data_dir=data_dir)
    assert both.train.texts[:2] == ["a good film", "a bad film"] and "cat" in both.train.texts
    with pytest.raises(ConfigError, match="data.corpora: 'sts' is not a retrieval suite"):
        spec(corpora=["sts"])
    with pytest.raises(ConfigError, match="use format sentences or pairs"):
        spec(format="triples", corpora=["wordnet"])
    with pytest.raises(ConfigError, match="exactly one of paths"):
        spec()  # neither files, hf nor corpora
