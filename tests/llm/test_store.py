"""The teacher-signal store for causal LMs: cache, verify, resume, refuse mismatches, train from it."""
import json

import pytest
import torch
from safetensors.torch import load_file

from distill.cli import main
from distill.data.store import StoreReader, StoreWriter, read_manifest, verify_store
from distill.errors import DataError
from distill.tasks import build_recipe
from tests.helpers import write_recipe
from tests.llm.conftest import lm_recipe


def cache_recipe(assets, tmp_path, **store):
    recipe = lm_recipe(assets, tmp_path / "runs")
    recipe["store"] = {"path": str(tmp_path / "store"), "k": 8, "examples_per_shard": 3, "batch_size": 2, **store}
    return recipe


def cache(recipe, *extra):
    task, cfg = build_recipe(recipe)
    return task.cache(cfg, **dict(extra))


def test_cache_cli_writes_a_complete_verifiable_store(llm_assets, tmp_path, capsys):
    path = write_recipe(tmp_path / "cache.yaml", cache_recipe(llm_assets, tmp_path))
    assert main(["cache", str(path)]) == 0
    manifest = read_manifest(tmp_path / "store")
    assert manifest["complete"] and manifest["k"] == 8 and len(manifest["splits"]["train"]) > 1
    assert manifest["teacher_eval_perplexity"] > 1 and manifest["bytes_per_token"] > 0
    assert main(["cache", "--verify", str(tmp_path / "store")]) == 0
    assert "checksums match" in capsys.readouterr().out
    shard = load_file(str(tmp_path / "store" / manifest["splits"]["train"][0]["file"]))
    assert shard["topk_ids"].dtype == torch.int32 and shard["topk_logp"].dtype == torch.float16
    assert shard["topk_ids"].shape[1] == 8 and shard["tail_logp"].shape[0] == shard["topk_ids"].shape[0]
    mass = shard["topk_logp"].float().exp().sum(1) + shard["tail_logp"].float().exp()
    torch.testing.assert_close(mass, torch.ones_like(mass), rtol=0, atol=5e-3)  # fp16 log-probs


def test_corrupt_shard_is_named_by_verify_and_refused_by_the_reader(llm_assets, tmp_path, capsys):
    cache(cache_recipe(llm_assets, tmp_path))
    name = read_manifest(tmp_path / "store")["splits"]["train"][1]["file"]
    path = tmp_path / "store" / name
    data = bytearray(path.read_bytes())
    data[-3] ^= 0xFF
    path.write_bytes(bytes(data))
    assert main(["cache", "--verify", str(tmp_path / "store")]) == 1
    assert f"{name}: checksum mismatch" in capsys.readouterr().out
    with pytest.raises(DataError, match=name):
        StoreReader(tmp_path / "store")


def test_caching_resumes_after_a_crash_and_matches_an_uninterrupted_run(llm_assets, tmp_path, monkeypatch):
    reference = tmp_path / "ref"
    reference.mkdir()
    cache(cache_recipe(llm_assets, reference))
    original = StoreWriter.write_shard
    calls = {"n": 0}

    def crashing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            (self.root / ".tmp-partial.safetensors").write_bytes(b"half a shard")  # what a kill leaves behind
            raise KeyboardInterrupt("killed")
        return original(self, *args, **kwargs)
    monkeypatch.setattr(StoreWriter, "write_shard", crashing)
    with pytest.raises(KeyboardInterrupt):
        cache(cache_recipe(llm_assets, tmp_path))
    assert not read_manifest(tmp_path / "store")["complete"]
    with pytest.raises(DataError, match="incomplete"):
        StoreReader(tmp_path / "store")
    monkeypatch.setattr(StoreWriter, "write_shard", original)
    cache(cache_recipe(llm_assets, tmp_path))
    a, b = read_manifest(reference / "store"), read_manifest(tmp_path / "store")
    assert [s["sha256"] for v in a["splits"].values() for s in v] == [s["sha256"] for v in b["splits"].values() for s in v]
    assert not list((tmp_path / "store").glob(".tmp-*")) and verify_store(tmp_path / "store") == []


def student_weights(run_dir):
    folder = next(run_dir.glob("student-*/checkpoints"))
    latest = json.loads((folder / "latest.json").read_text())["dir"]
    return {k: v for k, v in load_file(str(folder / latest / "weights.safetensors")).items() if k.startswith("student/")}


@pytest.mark.parametrize("tail", ["uniform", "bucket"])
def test_a_full_vocabulary_float32_store_trains_like_the_live_teacher(llm_assets, tmp_path, tail):
    vocab = len(llm_assets["tokenizer"])
    recipe = cache_recipe(llm_assets, tmp_path, k=vocab, dtype="float32", tail=tail)
    cache(recipe)
    live = json.loads(json.dumps(recipe))
    del live["store"]
    live["output_dir"] = str(tmp_path / "live")
    stored = json.loads(json.dumps(recipe))
    del stored["teacher"]
    stored["output_dir"] = str(tmp_path / "stored")
    for r in (live, stored):
        r["train"].update(max_steps=3, optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0)
    summaries = []
    for r in (live, stored):
        task, cfg = build_recipe(r)
        summaries.append(task.run(cfg, overwrite=True))
    a, b = student_weights(tmp_path / "live" / "tiny-lm"), student_weights(tmp_path / "stored" / "tiny-lm")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    kl_live = summaries[0]["stages"]["student-lm_kd"]["kl_to_teacher"]
    kl_store = summaries[1]["stages"]["student-lm_kd"]["kl_to_teacher"]
    assert kl_store == pytest.approx(kl_live, rel=1e-4)
    assert summaries[1]["stages"]["teacher"]["perplexity"] == pytest.approx(summaries[0]["stages"]["teacher"]["perplexity"], rel=1e-4)


def test_training_refuses_a_store_of_other_data_or_tokenizer(llm_assets, tmp_path):
    recipe = cache_recipe(llm_assets, tmp_path)
    cache(recipe)
    del recipe["teacher"]
    other_blocks = json.loads(json.dumps(recipe))
    other_blocks["data"]["block_size"] = 24
    task, cfg = build_recipe(other_blocks)
    with pytest.raises(DataError, match="dataset_fingerprint"):
        task.run(cfg, overwrite=True)
    from tests.llm.conftest import make_tokenizer
    make_tokenizer(tmp_path / "other-tok", vocab_size=280)
    other_tok = json.loads(json.dumps(recipe))
    other_tok["student"]["tokenizer"] = str(tmp_path / "other-tok")
    task, cfg = build_recipe(other_tok)
    with pytest.raises(DataError, match="tokenizer_hash"):
        task.run(cfg, overwrite=True)


def test_store_with_taid_and_a_sparse_k(llm_assets, tmp_path):
    recipe = cache_recipe(llm_assets, tmp_path, k=4)
    cache(recipe)
    del recipe["teacher"]
    recipe["method"] = {"name": "taid", "alpha": 0.05}
    recipe["train"]["max_steps"] = 2
    task, cfg = build_recipe(recipe)
    summary = task.run(cfg, overwrite=True)
    assert summary["stages"]["student-taid"]["kl_to_teacher"] > 0
    assert summary["stages"]["teacher"]["source"] == "store"


def test_prompt_masked_labels_round_trip_through_the_store(llm_assets, tmp_path):
    # labels are stored as a 1-byte loss mask: prompt tokens (-100) and chat turns must come back exactly
    from distill.models.hf import load_tokenizer
    from distill.tasks.causal_lm.runner import load_lm_data
    recipe = cache_recipe(llm_assets, tmp_path)
    recipe["data"] = {"format": "jsonl", "paths": [llm_assets["jsonl"]], "eval_fraction": 0.2}
    cache(recipe)
    _, cfg = build_recipe(recipe)
    train, _ = load_lm_data(cfg, load_tokenizer(llm_assets["teacher"]))
    stored = StoreReader(tmp_path / "store").examples("train")
    assert len(stored) == len(train)
    for i in range(len(train)):
        assert stored[i]["input_ids"] == list(train[i]["input_ids"])
        assert stored[i]["labels"] == list(train[i]["labels"])
    assert any(-100 in stored[i]["labels"] for i in range(len(stored)))
