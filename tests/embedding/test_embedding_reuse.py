"""`store.reuse`: a recipe whose data grew copies the rows an older store holds and sends only its new texts
through the teacher; a store of another teacher, or one without a text index, is refused with one line; the
text index is checked with the shards and can be added to an old store without encoding anything."""
import hashlib
import json

import numpy as np
import pytest
import torch

from distill.cli import main
from distill.data.store import StoreReader, verify_store
from distill.errors import ConfigError, DataError
from distill.tasks import build_recipe
from distill.tasks.embedding import cache as cache_module
from distill.tasks.embedding import runner
from distill.tasks.embedding.reuse import TEXT_INDEX, text_hashes
from distill.tasks.embedding.signal import load_teacher, stored_table
from tests.embedding.conftest import embedding_recipe
from tests.helpers import write_recipe


def cached(assets, tmp_path, name, monkeypatch=None, data=None, reuse=()):
    """Cache a recipe into tmp_path/name; returns (cfg, manifest, texts the teacher encoded)."""
    encoded: list[str] = []
    if monkeypatch is not None:
        def counting_teacher(cfg):
            teacher = load_teacher(cfg)
            real = teacher.encode
            teacher.encode = lambda texts, **kw: (encoded.extend(texts), real(texts, **kw))[1]
            return teacher
        monkeypatch.setattr(cache_module, "load_teacher", counting_teacher)
    store = {"path": str(tmp_path / name), "texts_per_shard": 16, "reuse": [str(tmp_path / r) for r in reuse]}
    data = {"format": "sentences", "paths": [assets["sentences"]], "eval_fraction": 0.2, **(data or {})}
    task, cfg = build_recipe(embedding_recipe(assets, tmp_path / "runs", store=store, data=data))
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
