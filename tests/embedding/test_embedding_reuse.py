"""`store.reuse`: a recipe whose data grew copies the rows an older store holds and sends only its new texts
through the teacher; a store of another teacher, or one without a text index, is refused with one line; the
text index is checked with the shards and can be added to an old store without encoding anything."""
import hashlib
import json

import numpy as np
import pytest
import torch

from distill.cli import main
from distill.data.embedding_sets import throughput_sentences
from distill.data.store import StoreReader, verify_store
from distill.errors import ConfigError, DataError
from distill.tasks import build_recipe
from distill.tasks.embedding import cache as cache_module
from distill.eval.embeddings import THROUGHPUT_SENTENCES
from distill.tasks.embedding import runner
from distill.tasks.embedding.data import texts_fingerprint
from distill.tasks.embedding.reuse import TEXT_INDEX, text_hashes
from distill.tasks.embedding.signal import load_teacher, stored_table
from tests.embedding.conftest import DATA, embedding_recipe
from tests.helpers import write_recipe

shared = pytest.mark.skipif(not (DATA / "text" / "wordnet-glosses.tsv.xz").is_file(), reason="../shared/data is absent")
WORDNET_EVAL = {"suites": ["wordnet"], "data_dir": str(DATA), "max_queries": 10, "max_documents": 30,
                "exclude_from_training": False}  # the same training texts whatever the suites: one dataset


def cached(assets, tmp_path, name, monkeypatch=None, data=None, reuse=(), dtype="float16", **changes):
    """Cache a recipe into tmp_path/name; returns (cfg, manifest, texts the teacher encoded)."""
    encoded: list[str] = []
    if monkeypatch is not None:
        def counting_teacher(cfg):
            teacher = load_teacher(cfg)
            real = teacher.encode
            teacher.encode = lambda texts, **kw: (encoded.extend(texts), real(texts, **kw))[1]
            return teacher
        monkeypatch.setattr(cache_module, "load_teacher", counting_teacher)
    store = {"path": str(tmp_path / name), "texts_per_shard": 16, "reuse": [str(tmp_path / r) for r in reuse],
             "dtype": dtype}
    data = {"format": "sentences", "paths": [assets["sentences"]], "eval_fraction": 0.2, **(data or {})}
    task, cfg = build_recipe(embedding_recipe(assets, tmp_path / "runs", store=store, data=data, **changes))
    return cfg, task.cache(cfg), encoded


def rows_by_text(cfg):
    """text -> stored row (float16 tensor) of every split of cfg's store."""
    reader = StoreReader(cfg.store.path)
    data = runner.recipe_data(cfg, runner.suite_texts(cfg))
    out = {}
    for split, texts in (("train", data.train.texts), ("eval", data.held.texts), ("suite", runner.suite_texts(cfg))):
        out.update(zip(texts, stored_table(reader, split)))
    return out


def test_text_hashes_are_the_first_8_bytes_of_sha256():
    texts = ["a dog", "", "déjà vu"]
    expect = [int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little", signed=True) for t in texts]
    assert text_hashes(texts).tolist() == expect and text_hashes([]).shape == (0,)


def test_a_grown_recipe_copies_the_old_rows_and_encodes_only_its_new_texts(assets, tmp_path, monkeypatch):
    fresh_cfg, _, _ = cached(assets, tmp_path, "fresh")  # the grown recipe cached from nothing (before the patch)
    old_cfg, _, first = cached(assets, tmp_path, "old", monkeypatch, data={"max_per_path": 20})
    new_cfg, manifest, encoded = cached(assets, tmp_path, "new", monkeypatch, reuse=["old"])
    old, new, fresh = rows_by_text(old_cfg), rows_by_text(new_cfg), rows_by_text(fresh_cfg)
    assert len(first) == len(old) and set(new) == set(fresh) and len(new) > len(old)
    assert sorted(encoded) == sorted(set(new) - set(old))  # each new text once, no old one again
    assert manifest["reused"] == {"stores": [str(tmp_path / "old")], "texts": len(set(new) & set(old))}
    assert all(torch.equal(new[t], old[t]) for t in old if t in new)  # the old store's bits
    assert all(torch.allclose(new[t].float(), fresh[t].float(), atol=2e-3) for t in new)
    assert verify_store(new_cfg.store.path) == []
    assert "copied from" in cache_module.describe(manifest, new_cfg.store.path)
    monkeypatch.setattr(cache_module, "write_text_index", lambda *a: pytest.fail("a finished store was rewritten"))
    _, again, encoded = cached(assets, tmp_path, "new", monkeypatch, reuse=["old"])
    assert encoded == [] and again == manifest  # a finished store is left as it is


def test_a_store_of_another_teacher_or_without_a_text_index_is_refused(assets, tmp_path, monkeypatch):
    old_cfg, _, _ = cached(assets, tmp_path, "old")
    other = embedding_recipe(assets, tmp_path, teacher={"path": assets["student"], "batch_size": 8, "dtype": "float32"},
                             store={"path": str(tmp_path / "other")})
    task, cfg = build_recipe(other)
    task.cache(cfg)
    with pytest.raises(DataError, match="another teacher .* its rows are not this teacher's"):
        cached(assets, tmp_path, "new", reuse=["other"])
    manifest_path = tmp_path / "old" / "manifest.json"  # a store written before the text index existed
    manifest = json.loads(manifest_path.read_text())
    manifest.pop("extra_files")
    manifest_path.write_text(json.dumps(manifest))
    (tmp_path / "old" / TEXT_INDEX).unlink()
    with pytest.raises(DataError) as info:
        cached(assets, tmp_path, "new2", reuse=["old"])
    assert "\n" not in str(info.value) and "has no text index" in str(info.value)
    _, _, encoded = cached(assets, tmp_path, "old", monkeypatch)  # caching its recipe again adds the index
    assert encoded == [] and verify_store(old_cfg.store.path) == []
    _, manifest, _ = cached(assets, tmp_path, "new3", reuse=["old"])
    assert manifest["reused"]["texts"] == len(rows_by_text(old_cfg))


def test_the_text_index_is_verified_and_a_store_cannot_reuse_itself(assets, tmp_path):
    cfg, _, _ = cached(assets, tmp_path, "store")
    index = tmp_path / "store" / TEXT_INDEX
    raw = bytearray(index.read_bytes())
    raw[-1] ^= 0xFF
    index.write_bytes(bytes(raw))
    assert verify_store(cfg.store.path) == [f"{TEXT_INDEX}: checksum mismatch (corrupt or modified)"]
    index.unlink()
    assert verify_store(cfg.store.path) == [f"{TEXT_INDEX}: missing"]
    with pytest.raises(ConfigError, match="store.reuse: .* is this recipe's own store"):
        build_recipe(embedding_recipe(assets, tmp_path, store={"path": "s", "reuse": ["./s"]}))


def test_cli_cache_with_reuse_reports_the_copies(assets, tmp_path, capsys):
    old = write_recipe(tmp_path / "old.yaml", embedding_recipe(assets, tmp_path / "runs", store={"path": str(tmp_path / "a")},
                                                              data={"format": "sentences", "paths": [assets["sentences"]],
                                                                    "max_per_path": 20}))
    new = write_recipe(tmp_path / "new.yaml", embedding_recipe(assets, tmp_path / "runs", store={
        "path": str(tmp_path / "b"), "reuse": [str(tmp_path / "a")]}))
    assert main(["cache", str(old)]) == 0 and main(["cache", str(new)]) == 0
    assert main(["cache", "--verify", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert f"copied from {tmp_path / 'a'}" in out and "checksums match" in out
    assert np.isfinite(stored_table(StoreReader(tmp_path / "b"), "train").float().numpy()).all()


def test_a_resumed_cache_with_reuse_equals_an_uninterrupted_one(assets, tmp_path, monkeypatch):
    cached(assets, tmp_path, "old", data={"max_per_path": 20})
    full_cfg, full, _ = cached(assets, tmp_path, "full", reuse=["old"])
    real, calls = cache_module.write_rows, []

    def crash_after_one_shard(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt("killed")
        calls.append(1)
        real(*args, **kwargs)
    monkeypatch.setattr(cache_module, "write_rows", crash_after_one_shard)
    with pytest.raises(KeyboardInterrupt):
        cached(assets, tmp_path, "cut", reuse=["old"])
    monkeypatch.setattr(cache_module, "write_rows", real)
    cut_cfg, resumed, _ = cached(assets, tmp_path, "cut", reuse=["old"])
    assert resumed["reused"] == full["reused"]  # the copies of the first pass are counted too
    a, b = rows_by_text(full_cfg), rows_by_text(cut_cfg)
    assert a.keys() == b.keys() and all(torch.equal(a[t], b[t]) for t in a)


def test_a_lost_index_is_written_again_and_a_float32_store_takes_no_float16_rows(assets, tmp_path, monkeypatch):
    cfg, manifest, _ = cached(assets, tmp_path, "old")
    (tmp_path / "old" / TEXT_INDEX).unlink()
    with pytest.raises(DataError, match="text-index.safetensors: missing"):
        StoreReader(cfg.store.path)
    _, again, encoded = cached(assets, tmp_path, "old", monkeypatch)
    assert encoded == [] and verify_store(cfg.store.path) == [] and again["teacher_figures"] == manifest["teacher_figures"]
    with pytest.raises(DataError, match="another dtype"):
        cached(assets, tmp_path, "wide", reuse=["old"], dtype="float32")
    with pytest.raises(DataError, match="store.reuse: .* is not a teacher-signal store"):
        cached(assets, tmp_path, "new", reuse=["nowhere"])


@shared
def test_a_store_resumed_for_another_evaluation_caches_its_suite_again(assets, tmp_path, monkeypatch):
    fresh_cfg, _, _ = cached(assets, tmp_path, "fresh", eval=WORDNET_EVAL)
    _, before, _ = cached(assets, tmp_path, "store", eval={**WORDNET_EVAL, "max_queries": 4, "max_documents": 12})
    cfg, after, encoded = cached(assets, tmp_path, "store", monkeypatch, eval=WORDNET_EVAL)
    suite, timed = runner.suite_texts(cfg), set(throughput_sentences(DATA, THROUGHPUT_SENTENCES))
    assert after["texts"]["suite"] == len(suite) > before["texts"]["suite"] > 0
    assert after["suite_fingerprint"] == texts_fingerprint(suite) != before["suite_fingerprint"]
    assert set(suite) <= set(encoded) <= set(suite) | timed  # the suite again (timed: the teacher's sentences/s)
    fresh = rows_by_text(fresh_cfg)
    assert all(torch.allclose(rows_by_text(cfg)[t].float(), fresh[t].float(), atol=2e-3) for t in suite)
    assert verify_store(cfg.store.path) == []
    new_cfg, reused, encoded = cached(assets, tmp_path, "copy", monkeypatch, eval=WORDNET_EVAL, reuse=["store"])
    assert [t for t in encoded if t not in timed] == [] and reused["reused"]["texts"] == len(rows_by_text(new_cfg))
    a, b = rows_by_text(cfg), rows_by_text(new_cfg)
    assert all(torch.equal(a[t], b[t]) for t in suite)  # each evaluation text gets its own row back
