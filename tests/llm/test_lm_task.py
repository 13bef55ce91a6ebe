"""Causal-LM distillation end to end on tiny in-process Llamas (no downloads)."""
import json

import pytest
import torch

from distill.cli import main
from distill.errors import ConfigError
from distill.tasks import build_recipe
from tests.helpers import write_recipe
from tests.llm.conftest import reference_then_crashed_copy, lm_recipe, tiny_llama, transformers


def run(recipe):
    task, cfg = build_recipe(recipe)
    return task.run(cfg, overwrite=True)


def test_cli_trains_and_exports_a_loadable_student(llm_assets, tmp_path, capsys):
    path = write_recipe(tmp_path / "r.yaml", lm_recipe(llm_assets, tmp_path / "runs"))
    assert main(["train", str(path)]) == 0
    out = capsys.readouterr().out
    assert "teacher" in out and "student-lm_kd" in out and "perplexity" in out
    run_dir = tmp_path / "runs" / "tiny-lm"
    summary = json.loads((run_dir / "summary.json").read_text())
    student = summary["stages"]["student-lm_kd"]
    assert student["perplexity"] > 1 and student["kl_to_teacher"] >= 0 and student["train_tokens_per_s"] > 0
    model = transformers.AutoModelForCausalLM.from_pretrained(run_dir / "student-lm_kd" / "model")
    assert model.config.hidden_size == 16
    assert (run_dir / "report.html").is_file()


@pytest.mark.parametrize("divergence", ["kl", "reverse_kl", "jsd", "skew_kl", "skew_reverse_kl", "tvd", "akl"])
def test_every_divergence_trains(llm_assets, tmp_path, divergence):
    recipe = lm_recipe(llm_assets, tmp_path, method={"name": "lm_kd", "divergence": divergence, "ce_weight": 0.5})
    recipe["train"]["max_steps"] = 2
    summary = run(recipe)
    assert summary["stages"]["student-lm_kd"]["steps"] == 2


def test_ce_only_needs_no_teacher_but_a_student_path(llm_assets, tmp_path):
    recipe = lm_recipe(llm_assets, tmp_path, method={"name": "lm_ce"})
    del recipe["teacher"]
    with pytest.raises(ConfigError, match="student.path"):
        build_recipe(recipe)
    recipe["student"] = {"path": llm_assets["teacher"]}
    summary = run(recipe)
    assert set(summary["stages"]) == {"student-lm_ce"}


def final_weights(tmp_path):
    from safetensors.torch import load_file
    folder = next((tmp_path / "tiny-lm").glob("student-*/checkpoints"))
    latest = json.loads((folder / "latest.json").read_text())["dir"]
    return {k: v for k, v in load_file(str(folder / latest / "weights.safetensors")).items() if k.startswith("student/")}


def test_gradient_accumulation_invariance_with_uneven_token_counts(llm_assets, tmp_path):
    """jsonl examples have different lengths, so micro-batches hold different numbers of tokens."""
    base = dict(data={"format": "jsonl", "paths": [llm_assets["jsonl"]], "max_length": 32, "eval_fraction": 0.1})
    full = lm_recipe(llm_assets, tmp_path / "a", **base)
    full["train"].update(max_steps=3, batch_size=8, grad_accum=1, optimizer="sgd", lr=0.5, momentum=0.0, weight_decay=0.0)
    accum = json.loads(json.dumps(full))
    accum["output_dir"] = str(tmp_path / "b")
    accum["train"]["grad_accum"] = 4
    run(full)
    run(accum)
    a, b = final_weights(tmp_path / "a"), final_weights(tmp_path / "b")
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-6)


def test_resume_after_crash_is_bit_identical(llm_assets, tmp_path, monkeypatch):
    recipe = lm_recipe(llm_assets, tmp_path / "ref", method={"name": "taid", "alpha": 0.05})
    reference_then_crashed_copy(recipe, tmp_path / "run", monkeypatch, crash_at_step=5)
    a, b = final_weights(tmp_path / "ref"), final_weights(tmp_path / "run")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ref_state = json.loads(next((tmp_path / "ref" / "tiny-lm" / "student-taid" / "checkpoints").glob("step-00000006/state.json")).read_text())
    run_state = json.loads(next((tmp_path / "run" / "tiny-lm" / "student-taid" / "checkpoints").glob("step-00000006/state.json")).read_text())
    assert ref_state["objective"] == run_state["objective"] and ref_state["objective"]["t"] > 0.4


def test_taid_t_rises_monotonically_and_is_logged(llm_assets, tmp_path):
    recipe = lm_recipe(llm_assets, tmp_path, method={"name": "taid", "alpha": 0.05})
    recipe["train"]["max_steps"] = 5
    run(recipe)
    lines = [json.loads(x) for x in (tmp_path / "tiny-lm" / "student-taid" / "metrics.jsonl").read_text().splitlines()]
    ts = [r["t"] for r in lines if r["kind"] == "train"]
    assert ts == sorted(ts) and ts[0] == pytest.approx(0.4) and ts[-1] > 0.4


def test_padded_vocabulary_is_sliced_with_a_notice(llm_assets, tmp_path, capsys):
    padded = tiny_llama(len(llm_assets["tokenizer"]) + 12, hidden=16, layers=1, seed=3)
    padded.save_pretrained(tmp_path / "padded")
    llm_assets["tokenizer"].save_pretrained(tmp_path / "padded")
    recipe = lm_recipe(llm_assets, tmp_path / "runs", student={"path": str(tmp_path / "padded")})
    recipe["train"]["max_steps"] = 1
    run(recipe)
    assert "padded beyond the tokenizer" in capsys.readouterr().out


def test_a_different_tokenizer_is_refused(llm_assets, tmp_path):
    from tests.llm.conftest import make_tokenizer
    other = make_tokenizer(tmp_path / "other", vocab_size=280)
    assert other.get_vocab() != llm_assets["tokenizer"].get_vocab()
    recipe = lm_recipe(llm_assets, tmp_path / "runs")
    recipe["student"]["tokenizer"] = str(tmp_path / "other")
    with pytest.raises(ConfigError, match="cross-tokenizer distillation is needed"):
        run(recipe)


def test_classification_methods_are_refused_in_lm_recipes(llm_assets, tmp_path):
    with pytest.raises(ConfigError, match="classification method"):
        build_recipe(lm_recipe(llm_assets, tmp_path, method={"name": "dkd"}))


def test_a_degenerate_held_out_split_is_refused_before_training(llm_assets, tmp_path, capsys):
    """A small file used to give a 1-token held-out split, reported as perplexity 1.00 and KL 0.0000."""
    small = tmp_path / "small.txt"
    small.write_text("The teacher is frozen while the student learns.")
    recipe = lm_recipe(llm_assets, tmp_path / "runs", data={"format": "text", "paths": [llm_assets["text"]],
                                                            "eval_paths": [str(small)], "block_size": 8})
    del recipe["eval"]["min_tokens"]  # the default
    code = main(["train", str(write_recipe(tmp_path / "r.yaml", recipe))])
    err = capsys.readouterr().err
    assert code == 2 and "held-out split has" in err and "eval.min_tokens = 256" in err
    assert not (tmp_path / "runs" / "tiny-lm" / "student-lm_kd").exists()  # no training started


def test_flat_divergence_options_fail_with_the_new_form(llm_assets, tmp_path):
    recipe = lm_recipe(llm_assets, tmp_path, method={"name": "lm_kd", "divergence": "jsd", "beta": 0.3})
    with pytest.raises(ConfigError, match=r"method.beta: .*divergence: \{name: jsd, beta: 0.3\}"):
        build_recipe(recipe)
    recipe["method"] = {"name": "lm_kd", "divergence": {"name": "jsd", "beta": 0.3}}
    assert build_recipe(recipe)[1].method.divergence.options() == {"beta": 0.3}


def test_g_opd_without_on_policy_is_refused_by_its_class_attribute(llm_assets, tmp_path):
    with pytest.raises(ConfigError, match="g_opd.*own samples: add an on_policy section with lmbda: 1"):
        build_recipe(lm_recipe(llm_assets, tmp_path, method={"name": "g_opd"}))
