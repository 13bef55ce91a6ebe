"""Students cut out of the teacher (distill.models.prune): importances against slow references, pruning of
dead parts changes nothing, shapes stay consistent, the result saves and loads, and the run records it."""
import json

import pytest
import torch
import transformers

from distill.errors import ConfigError
from distill.models.prune import PrunePlan, apply_plan, block_influence, prune_from_teacher, width_importance
from distill.tasks.causal_lm.schema import FromTeacherSpec
from tests.llm.conftest import lm_recipe, tiny_llama
from distill.tasks import build_recipe


def teacher_and_batches(layers=4, seed=0):
    model = tiny_llama(61, hidden=32, layers=layers, seed=seed).eval()
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(3, 10, dtype=torch.long)
    mask[2, 7:] = 0  # a padded row: its pad positions must not count
    return model, [{"input_ids": torch.randint(0, 61, (3, 10), generator=g), "attention_mask": mask}]


def hidden_states(model, batch):
    out = model(**batch, output_hidden_states=True)
    return out.hidden_states


def test_block_influence_equals_one_minus_cosine_of_consecutive_hidden_states(tmp_path):
    model, batches = teacher_and_batches()
    states = hidden_states(model, batches[0])
    keep = batches[0]["attention_mask"].bool()
    expected = []
    for i in range(len(model.model.layers)):
        # the last layer's output is normalised in hidden_states[-1]; take the raw residual stream from a hook
        x = states[i][keep]
        y = states[i + 1][keep] if i + 1 < len(model.model.layers) else None
        expected.append(None if y is None else float((1 - torch.nn.functional.cosine_similarity(x, y, dim=-1)).mean()))
    got = block_influence(model, batches)
    for i, e in enumerate(expected[:-1]):
        assert float(got[i]) == pytest.approx(e, rel=1e-5)
    assert 0 < float(got[-1]) < 2


def test_an_identity_layer_has_zero_influence_and_is_the_one_dropped():
    model, batches = teacher_and_batches()
    with torch.no_grad():  # layer 2 adds nothing to the residual stream: an identity
        model.model.layers[2].self_attn.o_proj.weight.zero_()
        model.model.layers[2].mlp.down_proj.weight.zero_()
    assert float(block_influence(model, batches)[2]) == pytest.approx(0.0, abs=1e-6)
    student, report = prune_from_teacher(model, FromTeacherSpec(num_layers=3), batches)
    assert report["layers"] == [0, 1, 3]
    x = batches[0]
    torch.testing.assert_close(student(**x).logits, model(**x).logits, rtol=1e-5, atol=1e-5)


def test_dead_mlp_channels_and_kv_groups_are_the_ones_pruned_and_the_outputs_stay_the_same():
    model, batches = teacher_and_batches(layers=2)
    dead_channels, dead_group = [3, 10, 40, 63], 1
    head_dim = model.config.head_dim
    with torch.no_grad():
        for layer in model.model.layers:
            layer.mlp.up_proj.weight[dead_channels] = 0  # silu(gate) * 0: the channel's activation is zero
            layer.self_attn.v_proj.weight[dead_group * head_dim:(dead_group + 1) * head_dim] = 0  # the group's heads output 0
    importance = width_importance(model, batches)
    for layer_scores in importance["mlp"]:
        assert torch.all(layer_scores[dead_channels] == 0) and (layer_scores > 0).sum() == 64 - len(dead_channels)
    assert all(float(g[dead_group]) == 0 for g in importance["kv_groups"])
    spec = FromTeacherSpec(intermediate_size=64 - len(dead_channels), num_key_value_heads=1)
    student, report = prune_from_teacher(model, spec, batches)
    assert report["config"]["num_attention_heads"] == 2 and report["config"]["intermediate_size"] == 60
    x = batches[0]
    torch.testing.assert_close(student(**x).logits, model(**x).logits, rtol=1e-5, atol=1e-5)


def test_width_importance_equals_a_slow_reference():
    model, batches = teacher_and_batches(layers=2)
    captured = {}
    handles = [layer.mlp.down_proj.register_forward_hook(lambda m, a, o, i=i: captured.__setitem__(("down", i), a[0]))
               for i, layer in enumerate(model.model.layers)]
    handles += [layer.self_attn.o_proj.register_forward_hook(lambda m, a, o, i=i: captured.__setitem__(("o", i), a[0]))
                for i, layer in enumerate(model.model.layers)]
    with torch.no_grad():
        model(**batches[0])
    for h in handles:
        h.remove()
    keep = batches[0]["attention_mask"].bool()
    got = width_importance(model, batches)
    for i in range(2):
        channels = captured[("down", i)][keep]
        ref_mlp = torch.stack([channels[:, j].abs().mean() for j in range(channels.shape[1])])
        torch.testing.assert_close(got["mlp"][i], ref_mlp, rtol=1e-5, atol=1e-7)
        heads = captured[("o", i)][keep].view(-1, 4, 8)
        per_head = torch.stack([heads[:, h].norm(dim=-1).mean() for h in range(4)])
        torch.testing.assert_close(got["kv_groups"][i], torch.stack([per_head[0] + per_head[1], per_head[2] + per_head[3]]),
                                   rtol=1e-5, atol=1e-7)


def test_every_axis_pruned_at_once_runs_saves_and_loads(tmp_path):
    model, batches = teacher_and_batches()
    spec = FromTeacherSpec(num_layers=2, select="uniform", hidden_size=20, intermediate_size=24, num_key_value_heads=1)
    student, report = prune_from_teacher(model, spec, batches)
    assert report["layers"] == [0, 3]
    assert (student.config.num_hidden_layers, student.config.hidden_size, student.config.intermediate_size,
            student.config.num_key_value_heads, student.config.num_attention_heads) == (2, 20, 24, 1, 2)
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()  # still tied
    assert all(p.data_ptr() != q.data_ptr() for p in student.parameters() for q in model.parameters())
    student.save_pretrained(tmp_path / "s")
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "s")
    x = batches[0]
    torch.testing.assert_close(loaded(**x).logits, student(**x).logits)
    assert sum(p.numel() for p in loaded.parameters()) == report["params"]


def test_keeping_everything_is_an_exact_copy():
    model, batches = teacher_and_batches()
    student, _ = prune_from_teacher(model, FromTeacherSpec(), batches)
    torch.testing.assert_close(student(**batches[0]).logits, model(**batches[0]).logits, rtol=0, atol=0)
    assert apply_plan(model, PrunePlan([1])).config.num_hidden_layers == 1


@pytest.mark.parametrize("spec, message", [
    (FromTeacherSpec(num_layers=9), "has 4 layers"),
    (FromTeacherSpec(layers=[0, 0]), "distinct indexes"),
    (FromTeacherSpec(layers=[1], num_layers=1), "not both"),
    (FromTeacherSpec(hidden_size=64), "the teacher has 32"),
    (FromTeacherSpec(hidden_size=30), "not a multiple of the 4 attention heads"),
])
def test_impossible_requests_fail_with_one_line(spec, message):
    model, batches = teacher_and_batches()
    with pytest.raises(ConfigError, match=message):
        prune_from_teacher(model, spec, batches)


def test_a_run_records_the_student_right_after_init_and_trains_it(llm_assets, tmp_path):
    recipe = lm_recipe(llm_assets, tmp_path, student={"init": {"from_teacher": {"num_layers": 1}}})
    task, cfg = build_recipe(recipe)
    summary = task.run(cfg, overwrite=True)
    init, trained, teacher = summary["stages"]["student-init"], summary["stages"]["student-lm_kd"], summary["stages"]["teacher"]
    assert init["layers"] in ([0], [1]) and len(init["block_influence"]) == 2
    assert init["params"] == trained["params"] < teacher["params"]
    assert init["perplexity"] > 1 and trained["perplexity"] > 1 and "kl_to_teacher" in init
    saved = transformers.AutoConfig.from_pretrained(tmp_path / "tiny-lm" / "student-lm_kd" / "model")
    assert saved.num_hidden_layers == 1
    rows = [r[0] for r in json.loads((tmp_path / "tiny-lm" / "summary.json").read_text())["table"]["rows"]]
    assert rows == ["teacher", "student-init", "student-lm_kd"]


@pytest.mark.parametrize("student, message", [
    ({"init": {"from_teacher": {}}, "config": {"hidden_size": 8}}, "drop student.config"),
    ({"init": {"from_teacher": {"num_layers": 0}}}, "num_layers"),
])
def test_bad_init_recipes_fail_at_load(llm_assets, tmp_path, student, message):
    task, cfg = None, None
    with pytest.raises(ConfigError, match=message):
        task, cfg = build_recipe(lm_recipe(llm_assets, tmp_path, student=student))
        task.run(cfg, overwrite=True)


@pytest.mark.parametrize("native", [False, True])
def test_teacher_dtype_auto_is_bfloat16_only_where_the_cpu_runs_it_natively(llm_assets, tmp_path, monkeypatch, native):
    """teacher.dtype: auto follows the CPU's bfloat16 support; the student is still cut from float32 weights."""
    import distill.models.hf as hf
    import distill.tasks.causal_lm.runner as runner
    monkeypatch.setattr(hf, "fast_bfloat16", lambda: native)
    loaded, original = [], runner.load_causal_lm

    def recording(source, dtype="float32"):
        model = original(source, dtype)
        loaded.append(next(model.parameters()).dtype)
        return model
    monkeypatch.setattr(runner, "load_causal_lm", recording)
    cut = {}
    monkeypatch.setattr(runner, "prune_from_teacher",
                        lambda teacher, *a: cut.setdefault("dtype", next(teacher.parameters()).dtype) and prune_from_teacher(teacher, *a))
    recipe = lm_recipe(llm_assets, tmp_path, student={"init": {"from_teacher": {"num_layers": 1}}})
    recipe["train"]["max_steps"] = 1
    task, cfg = build_recipe(recipe)
    assert cfg.teacher.dtype == "auto"
    summary = task.run(cfg, overwrite=True)
    assert summary["stages"]["teacher"]["dtype"] == ("bfloat16" if native else "float32")
    assert loaded[0] == (torch.bfloat16 if native else torch.float32) and cut["dtype"] == torch.float32
