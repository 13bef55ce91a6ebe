"""Teacher diagnostics (distill.eval.teacher_check) and a teacher's own preprocessing (distill.models.preprocess)."""
import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from distill.errors import ConfigError
from distill.eval.teacher_check import diagnostic_warnings, soft_target_diagnostics
from distill.models.preprocess import attach_preprocessing, input_transform
from distill.tasks import build_recipe
from tests.helpers import tiny_recipe


def synthetic_teacher(scale: float, n: int = 400, classes: int = 10, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    logits = torch.randn(n, classes, generator=g)
    logits[torch.arange(n), labels] += 3.0  # a mostly right teacher
    return logits * scale, labels


def test_diagnostics_equal_a_slow_reference():
    logits, labels = synthetic_teacher(2.0, n=50)
    d = soft_target_diagnostics(logits, labels, temperature=3.0)
    probs = [torch.softmax(row / 3.0, 0) for row in logits]
    assert d["soft_max_prob"] == pytest.approx(sum(float(p.max()) for p in probs) / 50, rel=1e-5)
    ent = sum(float(-(p * p.log()).sum()) for p in probs) / 50
    assert d["soft_entropy"] == pytest.approx(ent / torch.log(torch.tensor(10.0)).item(), rel=1e-5)
    assert d["accuracy"] == pytest.approx(sum(int(r.argmax() == y) for r, y in zip(logits, labels)) / 50)
    assert d["logit_std"] == pytest.approx(sum(float(r.std()) for r in logits) / 50, rel=1e-5)


def test_an_over_confident_teacher_is_flagged_and_a_moderate_one_is_not():
    logits, labels = synthetic_teacher(35.0)  # logit std ~ 47, as real CNN teachers: one-hot at T = 4
    lines = diagnostic_warnings(soft_target_diagnostics(logits, labels, temperature=4.0))
    assert len(lines) == 1 and "nearly one-hot" in lines[0] and "T=4" in lines[0] and "ls_kd" in lines[0]
    logits, labels = synthetic_teacher(4.0)  # logit std ~ 5: max-probability ~ 0.6 at T = 4
    assert diagnostic_warnings(soft_target_diagnostics(logits, labels, temperature=4.0)) == []


def test_a_near_chance_teacher_and_uniform_targets_are_flagged():
    logits, labels = synthetic_teacher(1.0)
    shuffled = labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(1))]
    lines = diagnostic_warnings(soft_target_diagnostics(logits, shuffled, temperature=1.0))
    assert any("chance" in line and "normalize" in line for line in lines)
    lines = diagnostic_warnings(soft_target_diagnostics(logits * 0.05, labels, temperature=4.0))
    assert any("nearly uniform" in line for line in lines)


def test_the_hook_hands_the_model_its_own_preprocessing():
    seen = {}

    class Probe(torch.nn.Module):
        def forward(self, x):
            seen["x"] = x
            return x.flatten(1)[:, :3]
    raw = torch.rand(2, 3, 4, 4)
    d_mean, d_std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.3]
    normalised = (raw - torch.tensor(d_mean).view(1, 3, 1, 1)) / torch.tensor(d_std).view(1, 3, 1, 1)
    model = Probe()
    handle = attach_preprocessing(model, input_transform(d_mean, d_std, "none"))
    model(normalised)
    torch.testing.assert_close(seen["x"], raw)
    handle.remove()
    attach_preprocessing(model, input_transform(d_mean, d_std, "given", [0.1] * 3, [2.0] * 3, input_size=8))
    model(normalised)
    expected = torch.nn.functional.interpolate((raw - 0.1) / 2.0, size=(8, 8), mode="bilinear", align_corners=False)
    torch.testing.assert_close(seen["x"], expected)
    assert input_transform(d_mean, d_std, "dataset") is None


def raw_pixel_copy(weights: dict, mean: float, std: float) -> dict:
    """The same MLP for raw [0, 1] pixels: fold (x - mean) / std into the first linear layer."""
    out = dict(weights)
    w, b = weights["body.1.weight"], weights["body.1.bias"]
    out["body.1.weight"] = w / std
    out["body.1.bias"] = b - w.sum(1) * mean / std
    return out


def test_a_teacher_declared_unnormalised_gets_raw_inputs_and_scores_as_trained(tmp_path):
    task, cfg = build_recipe(tiny_recipe(tmp_path / "a"))
    first = task.run(cfg, overwrite=True)
    trained = first["stages"]["teacher"]
    weights = load_file(str(tmp_path / "a" / "tiny" / "teacher" / "model.safetensors"))
    m, s = dataset_stats(cfg)  # digits: one channel
    save_file(raw_pixel_copy(weights, m, s), str(tmp_path / "raw.safetensors"))
    teacher = {"name": "mlp", "kwargs": {"hidden": [32]}, "checkpoint": str(tmp_path / "raw.safetensors")}
    results = {}
    for normalize in ("dataset", "none"):
        task, cfg = build_recipe(tiny_recipe(tmp_path / normalize, teacher={**teacher, "normalize": normalize}))
        results[normalize] = task.run(cfg, overwrite=True)
    assert results["none"]["stages"]["teacher"]["accuracy"] == pytest.approx(trained["accuracy"])
    assert results["none"]["stages"]["teacher"]["nll"] == pytest.approx(trained["nll"], rel=1e-4)
    wrong = results["dataset"]["stages"]["teacher"]["nll"]  # what every loaded teacher got before
    assert abs(wrong - trained["nll"]) > 0.1 * trained["nll"]
    assert "diagnostics" in results["none"]["stages"]["teacher"]


def dataset_stats(cfg):
    from distill.tasks.classification.runner import load_data
    data, _ = load_data(cfg)
    return data.mean[0], data.std[0]


@pytest.mark.parametrize("teacher, message", [
    ({"normalize": "given"}, "needs teacher.mean and teacher.std"),
    ({"mean": [0.5]}, "only with teacher.normalize: given"),
    ({"normalize": "none"}, "describe a loaded teacher"),
])
def test_bad_preprocessing_fails_at_load(tmp_path, teacher, message):
    recipe = tiny_recipe(tmp_path)
    recipe["teacher"].update(teacher)
    with pytest.raises(ConfigError, match=message):
        build_recipe(recipe)
