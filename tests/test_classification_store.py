"""Classification from stored teacher logits equals live-teacher KD; the store refuses what it cannot serve."""
import json

import pytest
import torch
from safetensors.torch import load_file

from distill.cli import main
from distill.errors import ConfigError, DataError
from distill.tasks import build_recipe
from tests.helpers import tiny_recipe, write_recipe


def run(recipe):
    task, cfg = build_recipe(recipe)
    return task.run(cfg, overwrite=True)


def student(out, method="kd"):
    return load_file(str(out / "tiny" / f"student-{method}" / "model.safetensors"))


@pytest.mark.parametrize("method", ["kd", "dkd", "dist"])
def test_kd_from_stored_logits_equals_the_live_teacher(tmp_path, capsys, method):
    base = tiny_recipe(tmp_path / "live", method={"name": method})
    base["data"]["augment"] = "none"
    base["store"] = {"path": str(tmp_path / "store")}
    run(base)  # trains the teacher and the student with the live teacher
    teacher_ckpt = tmp_path / "live" / "tiny" / "teacher"
    cache_recipe = json.loads(json.dumps(base))
    cache_recipe["output_dir"] = str(tmp_path / "cache-run")
    cache_recipe["teacher"] = {"name": "mlp", "kwargs": {"hidden": [32]}, "checkpoint": str(teacher_ckpt)}
    assert main(["cache", str(write_recipe(tmp_path / "c.yaml", cache_recipe))]) == 0
    assert main(["cache", "--verify", str(tmp_path / "store")]) == 0
    stored = json.loads(json.dumps(base))
    stored["output_dir"] = str(tmp_path / "stored")
    del stored["teacher"]
    summary = run(stored)
    a, b = student(tmp_path / "live", method), student(tmp_path / "stored", method)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
    live = json.loads((tmp_path / "live" / "tiny" / "summary.json").read_text())
    assert summary["stages"][f"student-{method}"]["agreement"] == pytest.approx(live["stages"][f"student-{method}"]["agreement"])


def test_store_needs_unaugmented_data_and_a_logit_method(tmp_path):
    recipe = tiny_recipe(tmp_path, store={"path": str(tmp_path / "store")})
    del recipe["teacher"]
    recipe["data"]["augment"] = "crop"
    with pytest.raises(ConfigError, match="augment: none"):
        build_recipe(recipe)
    recipe["data"]["augment"] = "none"
    recipe["method"] = {"name": "fitnet"}
    with pytest.raises(ConfigError, match="needs the live teacher"):
        build_recipe(recipe)


def test_store_of_other_data_is_refused(tmp_path):
    recipe = tiny_recipe(tmp_path / "a", store={"path": str(tmp_path / "store")})
    recipe["data"]["augment"] = "none"
    task, cfg = build_recipe(recipe)
    task.cache(cfg)
    other = json.loads(json.dumps(recipe))
    del other["teacher"]
    other["data"]["train_subset"] = 200
    with pytest.raises(DataError, match="dataset_fingerprint"):
        run(other)


def test_unaugmented_kd_reuses_the_teachers_logits_and_equals_cache_then_train(tmp_path):
    """teacher.logits: auto computes the teacher's logits once (no `distill cache`); the student is
    the one a store gives, bit for bit, and within float noise of running the teacher on every batch."""
    auto = tiny_recipe(tmp_path / "auto")
    auto["data"]["augment"] = "none"
    summary = run(auto)
    assert summary["stages"]["student-kd"]["teacher_logits"] == "reused"
    live = json.loads(json.dumps(auto))
    live["output_dir"], live["teacher"]["logits"] = str(tmp_path / "live"), "live"
    assert run(live)["stages"]["student-kd"]["teacher_logits"] == "live"
    cached = json.loads(json.dumps(auto))
    cached["output_dir"] = str(tmp_path / "cache-run")
    cached["teacher"] = {"name": "mlp", "kwargs": {"hidden": [32]}, "checkpoint": str(tmp_path / "auto" / "tiny" / "teacher")}
    cached["store"] = {"path": str(tmp_path / "store")}
    assert main(["cache", str(write_recipe(tmp_path / "c.yaml", cached))]) == 0
    del cached["teacher"]
    cached["output_dir"] = str(tmp_path / "stored")
    assert run(cached)["stages"]["student-kd"]["teacher_logits"] == "store"
    a, b, c = (student(tmp_path / d) for d in ("auto", "stored", "live"))
    for k in a:
        assert torch.equal(a[k], b[k]), k
        torch.testing.assert_close(a[k], c[k], rtol=1e-5, atol=1e-6)


def test_flip_augmentation_reuses_the_logits_of_both_views_and_equals_the_live_teacher(tmp_path):
    """flip has two views: the teacher's logits of each are computed once; the batch's view is found
    per sample, so the student is the live teacher's to float rounding."""
    auto = tiny_recipe(tmp_path / "auto")
    auto["data"]["augment"] = "flip"
    stage = run(auto)["stages"]["student-kd"]
    assert stage["teacher_logits"] == "reused" and stage["teacher_logits_views"] == 2
    live = json.loads(json.dumps(auto))
    live["output_dir"], live["teacher"]["logits"] = str(tmp_path / "live"), "live"
    assert run(live)["stages"]["student-kd"]["teacher_logits"] == "live"
    a, c = student(tmp_path / "auto"), student(tmp_path / "live")
    for k in a:
        torch.testing.assert_close(a[k], c[k], rtol=1e-5, atol=1e-6)


def test_view_lookup_picks_each_samples_view():
    from distill.models.teacher_sources import ViewLogits
    images = torch.randn(4, 1, 3, 3)
    tables = [torch.zeros(4, 2), torch.ones(4, 2)]
    source = ViewLogits(tables, [lambda x: x, lambda x: x.flip(-1)], lambda index: images[index])
    index = torch.tensor([2, 0, 3])
    x = torch.stack([images[2], images[0].flip(-1), images[3]])
    assert source.logits({"x": x, "index": index})[:, 0].tolist() == [0.0, 1.0, 0.0]


@pytest.mark.parametrize("change", [{"augment": "crop"}, {"method": "fitnet"}])
def test_logit_reuse_only_where_it_is_exact(tmp_path, change):
    recipe = tiny_recipe(tmp_path, method={"name": change.get("method", "kd")})
    recipe["data"]["augment"] = change.get("augment", "none")
    name = f"student-{change.get('method', 'kd')}"
    assert run(recipe)["stages"][name]["teacher_logits"] == "live"
