"""On-policy distillation: generation masking (stub model), lambda = 0 == offline, TIP keep 1 == full,
ExOPD lambda = 1 == plain on-policy objective, PACED weights, adaptive schedule, replay, resume, monitor."""
import json
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from distill.data.text import IGNORE
from distill.data.token_stream import collate
from distill.tasks import build_recipe
from distill.train.generation import SamplingConfig, completion_example, sample_completions
from distill.train.on_policy import OnPolicyBatches, OnPolicySpec, PacedSpec, paced_weight
from tests.llm.conftest import reference_then_crashed_copy, lm_recipe

EOS, PAD = 2, 0


class ScriptedLM(nn.Module):
    """A stub causal LM: row i emits scripts[i] token by token (then EOS), whatever the input."""

    def __init__(self, scripts, vocab=10):
        super().__init__()
        self.scripts, self.vocab, self.calls = scripts, vocab, []

    def forward(self, input_ids, attention_mask, position_ids, past_key_values=None, use_cache=True):
        self.calls.append((input_ids.shape, attention_mask.clone(), position_ids.clone()))
        step = 0 if past_key_values is None else past_key_values + 1
        logits = torch.full((input_ids.shape[0], input_ids.shape[1], self.vocab), -1e9)
        for i, script in enumerate(self.scripts):
            token = script[step] if step < len(script) else EOS
            logits[i, -1, token] = 0.0
        return SimpleNamespace(logits=logits, past_key_values=step)


def test_generation_stops_at_eos_and_masks_prompt_and_padding():
    model = ScriptedLM([[5, 6, EOS, 7], [8, EOS], [9, 9, 9, 9]])
    prompts = [[3, 4], [3], [4, 4, 4]]
    out = sample_completions(model, prompts, SamplingConfig(temperature=0, max_new_tokens=4), eos_id=EOS, pad_id=PAD)
    assert out == [[5, 6, EOS], [8, EOS], [9, 9, 9, 9]]
    # position ids follow the left padding: every row's first prompt token is at position 0
    _, mask, positions = model.calls[0]
    assert mask.tolist() == [[0, 1, 1], [0, 0, 1], [1, 1, 1]] and positions[:, -1].tolist() == [1, 0, 2]
    examples = [completion_example(p, c, EOS) for p, c in zip(prompts, out)]
    assert examples[0]["labels"] == [IGNORE, IGNORE, 5, 6, EOS]        # the EOS is learned, the prompt is not
    assert examples[2]["labels"] == [IGNORE] * 3 + [9, 9, 9, 9]          # no EOS within the budget: nothing dropped
    batch = collate(examples, PAD)
    assert (batch["labels"][1, 3:] == IGNORE).all() and batch["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0, 0]
    assert completion_example([1], [5, EOS, 6, 6], EOS)["input_ids"] == [1, 5, EOS]  # nothing after the first EOS


def test_top_p_keeps_the_smallest_nucleus():
    from distill.train.generation import pick_tokens
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    seen = {int(pick_tokens(logits, SamplingConfig(temperature=1.0, top_p=0.7), torch.Generator().manual_seed(s))) for s in range(200)}
    assert seen == {0, 1}


def run(recipe):
    task, cfg = build_recipe(recipe)
    return task.run(cfg, overwrite=True)


def prompt_recipe(assets, out, **changes):
    recipe = lm_recipe(assets, out, data={"format": "text_prompts", "paths": [assets["text"]], "prompt_tokens": 6,
                                          "completion_tokens": 8, "eval_fraction": 0.2})
    recipe["train"].update(max_steps=4, batch_size=4, optimizer="sgd", lr=0.3, momentum=0.0, weight_decay=0.0)
    recipe.update(changes)
    return recipe


def weights(out, name="tiny-lm"):
    from safetensors.torch import load_file
    folder = next((out / name).glob("student-*/checkpoints"))
    latest = json.loads((folder / "latest.json").read_text())["dir"]
    return {k: v for k, v in load_file(str(folder / latest / "weights.safetensors")).items() if k.startswith("student/")}


def test_lambda_zero_equals_offline_distillation_exactly(llm_assets, tmp_path):
    run(prompt_recipe(llm_assets, tmp_path / "offline"))
    run(prompt_recipe(llm_assets, tmp_path / "lam0", on_policy={"lmbda": 0.0}))
    a, b = weights(tmp_path / "offline"), weights(tmp_path / "lam0")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_tip_keep_one_equals_full_token_training(llm_assets, tmp_path):
    run(prompt_recipe(llm_assets, tmp_path / "full", method={"name": "lm_kd", "divergence": "reverse_kl"}))
    run(prompt_recipe(llm_assets, tmp_path / "tip", method={"name": "tip", "keep": 1.0, "divergence": "reverse_kl"}))
    a, b = weights(tmp_path / "full"), weights(tmp_path / "tip")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("rule", ["entropy", "q3", "soft_or"])
def test_tip_keeps_the_requested_fraction_per_rollout(llm_assets, tmp_path, rule):
    summary = run(prompt_recipe(llm_assets, tmp_path, on_policy={"lmbda": 1.0, "sampling": {"max_new_tokens": 6}},
                                method={"name": "tip", "keep": 0.5, "rule": rule}))
    lines = [json.loads(x) for x in (tmp_path / "tiny-lm" / "student-tip" / "metrics.jsonl").read_text().splitlines()]
    kept = [r["tip_kept"] for r in lines if r["kind"] == "train"]
    assert kept and all(0.2 <= k <= 0.5 for k in kept), kept  # floor(0.5 L) per rollout
    assert all(r["tip_dense_mib_saved"] > 0 for r in lines if r["kind"] == "train")
    assert all(r["student_batches"] == 1.0 for r in lines if r["kind"] == "train")
    assert summary["stages"]["student-tip"]["steps"] == 4


def test_selection_rules_pick_the_right_tokens():
    from distill.losses.selection import importance, select_tokens
    h = torch.tensor([0.9, 0.1, 0.1, 0.5, 0.0, 0.0])
    d = torch.tensor([0.0, 0.9, 0.1, 0.5, 0.0, 1.0])
    seq = torch.tensor([0, 0, 0, 0, 1, 1])
    assert select_tokens(importance(h, d, "entropy", 1.0), seq, 0.5).tolist() == [True, False, False, True, True, False]
    assert select_tokens(importance(h, d, "q3", 1.0), seq, 0.5).tolist() == [False, True, False, True, False, True]
    assert select_tokens(importance(h, d, "soft_or", 1.0), seq, 0.25).tolist() == [True, False, False, False, False, False]


def test_exopd_lambda_one_is_the_plain_on_policy_objective(llm_assets):
    """lambda = 1: the reference cancels, and the update equals grad of mean_t -(log p_T - log p_old) r_t."""
    from distill.config import from_dict
    from distill.methods import METHODS, LMContext, build_method
    from distill.models import FrozenTeacher
    from distill.models.hf import LMBody
    from distill.models.teacher_sources import LiveTokenTeacher
    from tests.llm.conftest import tiny_llama
    torch.manual_seed(0)
    teacher = FrozenTeacher(LMBody(tiny_llama(300, seed=1)))
    student = tiny_llama(300, hidden=16, layers=1, seed=2)
    body = LMBody(student)
    batch = {"input_ids": torch.randint(3, 300, (2, 7)), "attention_mask": torch.ones(2, 7, dtype=torch.long)}
    batch["labels"] = batch["input_ids"].clone()
    batch["labels"][:, :3] = IGNORE
    grads = []
    for reward_scale, reference in ((1.0, None), (1.0, "other")):
        context = LMContext(student_body=body, teacher=LiveTokenTeacher(teacher), vocab_size=300)
        method = build_method(from_dict(METHODS.get("g_opd").config, {"name": "g_opd", "reward_scale": reward_scale}),
                              student=student, teacher=teacher, context=context)
        if reference == "other":
            method._models["reference"] = FrozenTeacher(LMBody(tiny_llama(300, hidden=16, layers=1, seed=9)))
        student.zero_grad()
        method(batch)["loss"].backward()
        grads.append([p.grad.clone() for p in student.parameters()])
    # the plain objective, densely: A = log p_T - log p_old, surrogate = mean(-A * exp(lp - lp.detach()))
    student.zero_grad()
    labels, mask = batch["labels"][:, 1:], batch["labels"][:, 1:] != IGNORE
    lp = torch.log_softmax(student(batch["input_ids"]).logits[:, :-1], -1).gather(-1, labels.clamp_min(0)[..., None])[..., 0][mask]
    with torch.no_grad():
        t_hidden = teacher(batch["input_ids"], batch["attention_mask"])[:, :-1]
        lp_t = torch.log_softmax(t_hidden @ teacher.model.head_weight.t(), -1).gather(-1, labels.clamp_min(0)[..., None])[..., 0][mask]
    (-(lp_t - lp.detach()) * torch.exp(lp - lp.detach())).mean().backward()
    plain = [p.grad.clone() for p in student.parameters()]
    for g_a, g_b, g_p in zip(*grads, plain):
        torch.testing.assert_close(g_a, g_b, rtol=1e-5, atol=1e-7)   # the reference cancels at lambda = 1
        torch.testing.assert_close(g_a, g_p, rtol=1e-4, atol=1e-6)   # == the plain on-policy objective


def test_paced_weights_from_a_verifier():
    assert paced_weight(0.0, 1, 1) == 0 and paced_weight(1.0, 1, 1) == 0 and paced_weight(0.5, 1, 1) == 0.25
    records = [{"prompt": [3, 4], "completion": [5], "answer": str(i)} for i in range(4)]
    tok = SimpleNamespace(pad_token_id=PAD, eos_token_id=EOS, decode=lambda ids, skip_special_tokens=True: " ".join(map(str, ids)))
    spec = OnPolicySpec(lmbda=1.0, paced=PacedSpec(rollouts=4), verifier="tests.llm.test_on_policy:even_length",
                        sampling=SamplingConfig(temperature=0, max_new_tokens=4))
    student = ScriptedLM([[5, EOS], [5, 6, 7, EOS], [5, 6, EOS], [5, 6, 7, 8]] * 4)
    stream = OnPolicyBatches(records, spec=spec, student=student, teacher=None, tokenizer=tok, vocab_size=10,
                             total_steps=1, batch_size=4, shuffle=False)
    batch = next(stream.epoch(0))
    assert "sample_weight" in batch and batch["sample_weight"].shape == (4,)


def even_length(text, answer):
    return len(text.split()) % 2 == 0


def test_adaptive_schedule_and_replay_state_round_trip():
    spec = OnPolicySpec(adaptive=True, adaptive_init=0.0, adaptive_step=0.1, adaptive_loss_eps=0.1, replay_buffer=3)
    tok = SimpleNamespace(pad_token_id=PAD, eos_token_id=EOS)
    stream = OnPolicyBatches([{"prompt": [3], "completion": [4]}] * 8, spec=spec, student=None, teacher=None, tokenizer=tok,
                             vocab_size=10, total_steps=10, batch_size=2)
    assert stream.choose() == "data"
    for loss in (2.0, 1.9, 2.05, 2.2):
        stream.observe_validation({"nll": loss})
    assert stream.lmbda == pytest.approx(0.1)  # only the rise to 2.2 (>= 2.0 + 0.1) counts
    stream.buffer.extend([{"input_ids": [1, 2], "labels": [IGNORE, 2]}] * 2)
    state = json.loads(json.dumps(stream.state()))
    other = OnPolicyBatches([], spec=spec, student=None, teacher=None, tokenizer=tok, vocab_size=10, total_steps=10, batch_size=2)
    other.load_state(state)
    assert other.lmbda == stream.lmbda and list(other.buffer) == list(stream.buffer)


def test_on_policy_resume_is_bit_identical(llm_assets, tmp_path, monkeypatch):
    recipe = prompt_recipe(llm_assets, tmp_path / "ref", on_policy={"lmbda": 0.5, "replay_buffer": 4,
                                                                    "sampling": {"max_new_tokens": 5, "top_p": 0.9}})
    reference_then_crashed_copy(recipe, tmp_path / "run", monkeypatch, crash_at_step=4)
    a, b = weights(tmp_path / "ref"), weights(tmp_path / "run")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_seq_kd_and_monitor(llm_assets, tmp_path):
    recipe = prompt_recipe(llm_assets, tmp_path, on_policy={"lmbda": 0.0, "seq_kd": True, "sampling": {"max_new_tokens": 5}},
                           monitor={"oracle": llm_assets["teacher"], "window": 2, "max_sequences": 4})
    recipe["train"]["eval_every_steps"] = 1
    summary = run(recipe)
    student = summary["stages"]["student-lm_kd"]
    assert "golden_divergence" in student and "proxy_divergence" in student
    assert student["golden_divergence"] == pytest.approx(student["proxy_divergence"])  # the oracle is the teacher here
    assert student["teacher_hacking"]["rule"] == "golden"
    evals = [json.loads(x) for x in (tmp_path / "tiny-lm" / "student-lm_kd" / "metrics.jsonl").read_text().splitlines()
             if json.loads(x)["kind"] == "eval"]
    assert len(evals) >= 4


def test_on_policy_needs_prompt_data_and_g_opd_needs_lambda_one(llm_assets, tmp_path):
    from distill.errors import ConfigError
    with pytest.raises(ConfigError, match="data.format"):
        build_recipe(lm_recipe(llm_assets, tmp_path, on_policy={"lmbda": 1.0}))
    with pytest.raises(ConfigError, match="lmbda: 1"):
        build_recipe(prompt_recipe(llm_assets, tmp_path, method={"name": "g_opd"}))
