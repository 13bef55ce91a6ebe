"""distill.hf: the transformers Trainer drop-in for TRL's GKD, on tiny in-process Llamas.

Checks: its loss (and gradient) equals TRL GKD's `generalized_jsd_loss` on the same batch, and a TRL
GKD script ends with TRL's weights when only its import changes; a step under `Trainer` with
accumulation (on-policy too) or 2 processes equals the full batch and an independent dense SGD step;
lmbda = 1 / seq_kd train on greedy continuations of the student / teacher; a store-backed teacher
(k = V) equals the live one; PEFT students; bad config values fail at construction with one line.
TRL comparisons skip without trl.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

transformers = pytest.importorskip("transformers")

from distill.hf import DistillationConfig, DistillationConfigError, DistillationTrainer, TokenCollator  # noqa: E402
from tests.llm.conftest import tiny_llama  # noqa: E402

VOCAB, PAD, EOS = 64, 2, 2


def models():
    """(teacher, student); the teacher's (tied) embedding is scaled up so its distributions are far from uniform."""
    teacher, student = tiny_llama(VOCAB, hidden=32, seed=0), tiny_llama(VOCAB, hidden=16, layers=1, seed=1)
    with torch.no_grad():
        teacher.get_input_embeddings().weight.mul_(10.0)
    return teacher, student


def examples(lengths=(6, 11, 8, 14), prompt=3, seed=0):
    """Pre-tokenized examples of unequal lengths: the first `prompt` tokens unlabelled (-100)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in lengths:
        ids = torch.randint(3, VOCAB, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * prompt + ids[prompt:]})
    return out


def config(tmp_path, **changes):
    """Float32, no checkpointing (TRL's defaults turn both on), off-policy, one step of 4 examples."""
    base = dict(output_dir=str(tmp_path / "out"), use_cpu=True, report_to="none", save_strategy="no", bf16=False,
                activation_checkpointing=False, per_device_train_batch_size=4, max_steps=1, lmbda=0.0,
                disable_tqdm=True, seed=0)
    return DistillationConfig(**{**base, **changes})


def dense_jsd(student_logits, teacher_logits, beta, temperature):
    """Generalized JSD per position, written out independently of distill and TRL (beta 0: KL(t||s), 1: KL(s||t)),
    in float64 (the small divergences of near-identical tiny models lose digits to cancellation in float32)."""
    s = F.log_softmax(student_logits.double() / temperature, -1)
    t = F.log_softmax(teacher_logits.double() / temperature, -1)
    if beta == 0:
        return (t.exp() * (t - s)).sum(-1)
    if beta == 1:
        return (s.exp() * (s - t)).sum(-1)
    m = torch.log(beta * t.exp() + (1 - beta) * s.exp())
    return beta * (t.exp() * (t - m)).sum(-1) + (1 - beta) * (s.exp() * (s - m)).sum(-1)


def shifted_logits(model, batch):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]


# ----------------------------------------------------------------------------- the loss equals TRL's


@pytest.fixture(scope="module")
def gkd_loss():
    pytest.importorskip("trl")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from trl.experimental.gkd import GKDTrainer  # trl 1.16 keeps GKD in experimental
    return GKDTrainer.generalized_jsd_loss


@pytest.mark.parametrize("beta,temperature", [(0.0, 1.0), (0.5, 1.0), (1.0, 1.0), (0.2, 2.0), (0.9, 0.7)])
def test_loss_and_gradient_equal_trl_generalized_jsd_loss(gkd_loss, tmp_path, beta, temperature):
    teacher, student = models()
    batch = TokenCollator(PAD)(examples())
    trainer = DistillationTrainer(student, teacher, config(tmp_path, beta=beta, loss_temperature=temperature, chunk_size=5))
    ours = trainer.compute_loss(trainer.model, batch)
    ours.backward()
    our_grads = [p.grad.clone() for p in student.parameters()]
    student.zero_grad()
    with torch.no_grad():
        teacher_logits = shifted_logits(teacher, batch)
    theirs = gkd_loss(shifted_logits(student, batch), teacher_logits, labels=batch["labels"][:, 1:], beta=beta,
                      temperature=temperature)
    theirs.backward()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-7)
    for mine, ref in zip(our_grads, (p.grad for p in student.parameters())):
        torch.testing.assert_close(mine, ref, rtol=1e-4, atol=1e-7)
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("name,beta", [("kl", 0.0), ("reverse_kl", 1.0)])
def test_registry_divergences_match_trl_at_the_beta_ends_and_sum_reduction(gkd_loss, tmp_path, name, beta):
    teacher, student = models()
    batch = TokenCollator(PAD)(examples())
    trainer = DistillationTrainer(student, teacher, config(tmp_path, divergence=name, reduction="sum"))
    with torch.no_grad():
        ours = trainer.compute_loss(trainer.model, batch)
        theirs = gkd_loss(shifted_logits(student, batch), shifted_logits(teacher, batch), labels=batch["labels"][:, 1:],
                          beta=beta, reduction="sum")
    # kl's closed form (cross-entropy - entropy) rounds differently in float32; in float64 they agree to 1e-15
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)


def test_an_all_masked_batch_gives_zero_loss_and_zero_gradient(tmp_path):
    teacher, student = models()
    batch = TokenCollator(PAD)([{"input_ids": e["input_ids"], "labels": [-100] * len(e["input_ids"])} for e in examples()])
    trainer = DistillationTrainer(student, teacher, config(tmp_path))
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    assert float(loss.detach()) == 0.0 and all(float(p.grad.abs().max()) == 0.0 for p in student.parameters() if p.grad is not None)


def test_sequence_mean_averages_each_sequence_token_mean(tmp_path):
    teacher, student = models()
    batch = TokenCollator(PAD)(examples())
    trainer = DistillationTrainer(student, teacher, config(tmp_path, reduction="sequence_mean", beta=0.3))
    with torch.no_grad():
        ours = trainer.compute_loss(trainer.model, batch)
        per = dense_jsd(shifted_logits(student, batch), shifted_logits(teacher, batch), 0.3, 1.0)
    mask = batch["labels"][:, 1:] != -100
    expected = torch.stack([per[i][mask[i]].mean() for i in range(len(per))]).mean()
    torch.testing.assert_close(ours.double(), expected, rtol=1e-4, atol=1e-8)
    assert abs(float(per[mask].mean() - expected)) > 1e-3 * float(expected)  # differs from the token mean


def gkd_script(config_class, trainer_class, tokenizer, out):
    """A TRL GKD training script body: chat messages, TRL's collator, 2 steps of 2 x 2 accumulation."""
    import datasets
    teacher, student = tiny_llama(len(tokenizer), hidden=32, seed=0), tiny_llama(len(tokenizer), hidden=16, layers=1, seed=1)
    with torch.no_grad():
        teacher.get_input_embeddings().weight.mul_(10.0)
    messages = [{"messages": [{"role": "user", "content": f"Say {w} please"}, {"role": "assistant", "content": f"{w}! " * i}]}
                for i, w in enumerate(("hello", "python", "teacher", "student"), start=1)]
    args = config_class(output_dir=str(out), per_device_train_batch_size=2, gradient_accumulation_steps=2, max_steps=2,
                        lmbda=0.0, beta=0.3, learning_rate=0.5, optim="sgd", lr_scheduler_type="constant",
                        weight_decay=0.0, max_grad_norm=0.0, report_to="none", use_cpu=True, save_strategy="no",
                        disable_tqdm=True, seed=0, bf16=False, activation_checkpointing=False)
    trainer = trainer_class(model=student, teacher_model=teacher, args=args,
                            train_dataset=datasets.Dataset.from_list(messages), processing_class=tokenizer)
    trainer.train()
    return student.requires_grad_(False)


def test_a_trl_gkd_script_switches_by_changing_the_import(gkd_loss, tmp_path):
    pytest.importorskip("datasets")
    from trl.experimental.gkd import GKDConfig, GKDTrainer
    from tests.llm.conftest import make_tokenizer
    tokenizer = make_tokenizer(tmp_path / "tok")
    theirs = gkd_script(GKDConfig, GKDTrainer, tokenizer, tmp_path / "trl")
    ours = gkd_script(DistillationConfig, DistillationTrainer, tokenizer, tmp_path / "ours")
    untrained = tiny_llama(len(tokenizer), hidden=16, layers=1, seed=1)
    moved = max(float((a - b).abs().max()) for a, b in zip(theirs.parameters(), untrained.parameters()))
    gap = max(float((a - b).abs().max()) for a, b in zip(ours.parameters(), theirs.parameters()))
    assert moved > 1e-3 and gap < 1e-6  # measured: moved 3.7e-3, gap 3.7e-9 (float32; TRL's bf16 default: 1.6e-5)


def test_every_training_argument_default_equals_gkdconfig(gkd_loss, tmp_path):
    """A script relying on GKDConfig's defaults trains with the same settings after the switch."""
    from trl.experimental.gkd import GKDConfig
    theirs = GKDConfig(output_dir=str(tmp_path), use_cpu=True).to_dict()
    ours = DistillationConfig(output_dir=str(tmp_path), use_cpu=True).to_dict()
    shared = sorted(set(theirs) & set(ours))
    assert {"temperature", "lmbda", "beta", "max_new_tokens", "seq_kd", "bf16", "learning_rate"} <= set(shared)
    assert [k for k in shared if ours[k] != theirs[k]] == []


def test_the_example_script_trains_on_policy_from_chat_messages(llm_assets, tmp_path, monkeypatch):
    """examples/trl_switch.py: a TRL-style script (HfArgumentParser, models and teacher by path, chat data)."""
    pytest.importorskip("trl")  # the chat collator is TRL's
    import importlib.util
    import json

    from tests.helpers import ROOT
    tokenizer = llm_assets["tokenizer"]
    student_dir = tmp_path / "student"
    tiny_llama(len(tokenizer), hidden=16, layers=1, seed=3).save_pretrained(student_dir)
    tokenizer.save_pretrained(student_dir)
    chats = [json.loads(x) for x in open(llm_assets["jsonl"]) if "messages" in x]
    (tmp_path / "chats.jsonl").write_text("\n".join(json.dumps(c) for c in chats))
    spec = importlib.util.spec_from_file_location("trl_switch", ROOT / "examples" / "trl_switch.py")
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "trl_switch", script)  # dataclasses look their module up there
    spec.loader.exec_module(script)
    out = tmp_path / "out"
    script.main(["--model_name_or_path", str(student_dir), "--teacher_model_name_or_path", llm_assets["teacher"],
                 "--dataset_path", str(tmp_path / "chats.jsonl"), "--output_dir", str(out), "--max_steps", "2",
                 "--per_device_train_batch_size", "2", "--lmbda", "0.5", "--max_new_tokens", "4", "--use_cpu",
                 "--bf16", "false", "--report_to", "none", "--save_strategy", "no", "--disable_tqdm", "true",
                 "--learning_rate", "0.01", "--divergence", "skew_kl", "--divergence_options", '{"alpha": 0.2}'])
    trained = transformers.AutoModelForCausalLM.from_pretrained(out)
    initial = transformers.AutoModelForCausalLM.from_pretrained(student_dir)
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), initial.parameters()))


# ----------------------------------------------------------------------------- a step under Trainer


def trained_student(tmp_path, batch_size, accumulation, lr, eos=None, **changes):
    teacher, student = models()
    if eos is not None:
        student.generation_config.eos_token_id = eos
    args = config(tmp_path, per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
                  optim="sgd", learning_rate=lr, lr_scheduler_type="constant", weight_decay=0.0, max_grad_norm=0.0,
                  **changes)
    trainer = DistillationTrainer(student, teacher, args, train_dataset=examples())
    before = [p.detach().clone() for p in teacher.parameters()]
    trainer.train()
    assert not teacher.training and all(torch.equal(a, b) for a, b in zip(before, teacher.parameters()))
    return student


def test_accumulated_step_equals_full_batch_and_a_dense_sgd_step(tmp_path):
    lr = 0.5
    accumulated = trained_student(tmp_path / "a", batch_size=2, accumulation=2, lr=lr)
    full = trained_student(tmp_path / "b", batch_size=4, accumulation=1, lr=lr)
    # the independent reference: dense logits over the 4 examples, mean over every valid token, p - lr * grad
    teacher, student = models()
    batch = TokenCollator(PAD)(examples())
    mask = batch["labels"][:, 1:] != -100
    with torch.no_grad():
        teacher_logits = shifted_logits(teacher, batch)
    per = dense_jsd(shifted_logits(student, batch), teacher_logits, 0.5, 1.0)
    per[mask].mean().backward(retain_graph=True)
    reference = [p.detach() - lr * p.grad for p in student.parameters()]
    # a loop averaging each micro-batch's own mean would be off (the lengths differ): the test can fail
    student.zero_grad()
    ((per[:2][mask[:2]].mean() + per[2:][mask[2:]].mean()) / 2).backward()
    naive = [p.detach() - lr * p.grad for p in student.parameters()]
    assert max(float((a - b).abs().max()) for a, b in zip(naive, reference)) > 1e-4
    for a, b, ref in zip(accumulated.parameters(), full.parameters(), reference):
        torch.testing.assert_close(a, ref, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(b, ref, rtol=1e-5, atol=1e-6)


def test_on_policy_accumulated_step_equals_full_batch(tmp_path):
    """Greedy student rollouts of unequal lengths (several EOS ids): every micro-batch is rolled out before the
    step, which divides by the tokens actually trained on (TRL counts the data's tokens instead)."""
    on_policy = dict(lmbda=1.0, temperature=0.0, max_new_tokens=6, eos=list(range(3, 20)))
    accumulated = trained_student(tmp_path / "a", batch_size=2, accumulation=2, lr=0.5, **on_policy)
    full = trained_student(tmp_path / "b", batch_size=4, accumulation=1, lr=0.5, **on_policy)
    for a, b in zip(accumulated.parameters(), full.parameters()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    # the rollouts have 1, 6, 6, 6 labelled tokens: any 2 + 2 split has unequal counts, so the test can fail
    teacher, student = models()
    student.generation_config.eos_token_id = on_policy.pop("eos")
    trainer = DistillationTrainer(student, teacher, config(tmp_path, **on_policy))
    batch = TokenCollator(PAD)(examples())
    trainer.roll_out([batch])
    assert sorted((batch["labels"] != -100).sum(1).tolist()) == [1, 6, 6, 6]


def test_two_processes_times_b_equal_one_process_times_2b(tmp_path):
    """torchrun, 2 CPU processes (gloo): the token count is gathered, so the step is the global-batch mean."""
    from tests.helpers import ROOT
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "two.pt"
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          str(ROOT / "tests" / "llm" / "hf_ddp_script.py"), str(out), "2"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    two = torch.load(out)
    one = trained_student(tmp_path / "one", batch_size=4, accumulation=1, lr=0.5)
    for name, value in one.state_dict().items():
        torch.testing.assert_close(two["student"][name], value, rtol=1e-5, atol=1e-6)


def test_bf16_mixed_precision_step_is_close_to_float32(tmp_path):
    mixed = trained_student(tmp_path / "a", batch_size=4, accumulation=1, lr=0.5, bf16=True)
    full = trained_student(tmp_path / "b", batch_size=4, accumulation=1, lr=0.5)
    untrained = models()[1]
    moved = max(float((a - b).abs().max()) for a, b in zip(full.parameters(), untrained.parameters()))
    gap = max(float((a - b).abs().max()) for a, b in zip(mixed.parameters(), full.parameters()))
    assert 0 < gap < 0.05 * moved  # bf16 bodies (so not identical), float32 logits


# ----------------------------------------------------------------------------- on-policy rollouts


def greedy(model, prompt, steps):
    """Greedy continuation re-running the whole sequence each step (no cache), stopping after EOS."""
    ids = list(prompt)
    with torch.no_grad():
        for _ in range(steps):
            token = int(model(input_ids=torch.tensor([ids])).logits[0, -1].argmax())
            ids.append(token)
            if token == EOS:
                break
    return ids[len(prompt):]


@pytest.mark.parametrize("source", ["student", "teacher"])
def test_rollouts_train_on_greedy_continuations_of_the_chosen_model(tmp_path, source):
    teacher, student = models()
    changes = {"lmbda": 1.0} if source == "student" else {"seq_kd": True}
    trainer = DistillationTrainer(student, teacher, config(tmp_path, temperature=0.0, max_new_tokens=4, **changes))
    data = examples()
    batch = TokenCollator(PAD)(data)
    normalizer = trainer.roll_out([batch])
    assert trainer.rollout_counts[source] == 1
    model = student if source == "student" else teacher
    for row, labels, attention, example in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], data):
        prompt = example["input_ids"][:3]
        completion = greedy(model, prompt, 4)
        n = len(prompt) + len(completion)
        assert row[:n].tolist() == prompt + completion and int(attention.sum()) == n
        assert labels[:n].tolist() == [-100] * 3 + completion
    assert int(normalizer) == int((batch["labels"][:, 1:] != -100).sum())
    assert student.training  # generation ran in eval mode and restored it


def test_lmbda_one_trains_on_policy_under_trainer(tmp_path):
    teacher, student = models()
    before = [p.detach().clone() for p in student.parameters()]
    args = config(tmp_path, lmbda=1.0, max_new_tokens=3, per_device_train_batch_size=2, gradient_accumulation_steps=2,
                  activation_checkpointing=True)  # TRL's default: rollouts without a KV cache, layers recomputed
    trainer = DistillationTrainer(student, teacher, args, train_dataset=examples())
    trainer.train()
    assert trainer.rollout_counts == {"student": 2, "teacher": 0, "data": 0}
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))


def test_a_resumed_on_policy_run_repeats_the_uninterrupted_one(tmp_path):
    """Rollout choices and samples come from torch's generator, which Trainer checkpoints restore before
    the resumed step's rollouts."""
    data = examples(lengths=(6, 11, 8, 14, 7, 9, 12, 5))

    def run(out, steps, resume=False):
        teacher, student = models()
        args = config(out, lmbda=0.5, max_new_tokens=4, per_device_train_batch_size=2, max_steps=steps,
                      save_strategy="steps", save_steps=1, learning_rate=0.01, lr_scheduler_type="constant")
        trainer = DistillationTrainer(student, teacher, args, train_dataset=data)
        trainer.train(resume_from_checkpoint=resume or None)
        return student, trainer.rollout_counts

    whole, counts = run(tmp_path / "whole", 3)
    assert counts["student"] and counts["data"]  # both sources drawn: the choices matter
    run(tmp_path / "cut", 1)
    resumed, _ = run(tmp_path / "cut", 3, resume=True)
    for a, b in zip(whole.parameters(), resumed.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


# ----------------------------------------------------------------------------- a store-backed teacher


def write_store(root, teacher, data, temperature=1.0):
    """A complete causal_lm store of `data` holding the teacher's full distribution (k = V, float32)."""
    from distill.data.store import StoreWriter
    from distill.models.hf import LMBody
    from distill.tasks.causal_lm.cache import merge, shard_arrays
    batch = TokenCollator(PAD)(data)
    arrays, _ = shard_arrays(LMBody(teacher.eval()), batch, VOCAB, temperature, VOCAB, np.float32)
    writer = StoreWriter(root, {"kind": "causal_lm", "k": VOCAB, "temperature": temperature, "dtype": "float32"},
                         {"vocab_size": VOCAB, "aligned": False})
    merged = merge([arrays])
    writer.write_shard("train", merged, examples=len(data), tokens=int(merged["position_offsets"][-1]))
    writer.set(complete=True)
    return root


def test_a_full_vocabulary_store_gives_the_live_teacher_loss_and_trains(tmp_path):
    teacher, student = models()
    data = examples()
    store = write_store(tmp_path / "store", teacher, data)
    stored = DistillationTrainer(student, None, config(tmp_path, store=str(store)))
    assert len(stored.train_dataset) == len(data)
    batch = stored.data_collator([stored.train_dataset[i] for i in range(len(data))])
    assert "teacher_topk_ids" in batch
    live = DistillationTrainer(student, teacher, config(tmp_path))
    with torch.no_grad():
        from_store = stored.compute_loss(stored.model, batch)
        from_teacher = live.compute_loss(live.model, TokenCollator(PAD)(data))
    torch.testing.assert_close(from_store, from_teacher, rtol=1e-5, atol=1e-6)
    before = [p.detach().clone() for p in student.parameters()]
    stored.train()
    assert any(not torch.equal(a, b) for a, b in zip(before, student.parameters()))


def test_store_refuses_on_policy_and_another_temperature(tmp_path):
    teacher, student = models()
    store = str(write_store(tmp_path / "store", teacher, examples()))
    with pytest.raises(ValueError, match="lmbda = 0.5"):
        config(tmp_path, store=store, lmbda=0.5)
    with pytest.raises(ValueError, match="captured at temperature 1.0"):
        DistillationTrainer(student, None, config(tmp_path, store=store, loss_temperature=2.0))
    with pytest.raises(ValueError, match="pass one teacher source"):
        DistillationTrainer(student, teacher, config(tmp_path, store=store))


def test_peft_student_trains_its_adapters_only(tmp_path):
    peft = pytest.importorskip("peft")
    teacher, student = models()
    batch = TokenCollator(PAD)(examples())
    with torch.no_grad():
        plain = DistillationTrainer(student, teacher, config(tmp_path)).compute_loss(student, batch)
    lora = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    trainer = DistillationTrainer(student, teacher, config(tmp_path, learning_rate=0.05), train_dataset=examples(),
                                  peft_config=lora)
    with torch.no_grad():  # LoRA starts at B = 0: the same function as the plain student
        torch.testing.assert_close(trainer.compute_loss(trainer.model, batch), plain)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)


def test_a_lora_head_gives_the_peft_forward_loss_and_trains_its_adapter(tmp_path):
    peft = pytest.importorskip("peft")
    teacher, student = models()
    lora = peft.LoraConfig(r=4, target_modules=["q_proj", "lm_head"], lora_dropout=0.0)
    trainer = DistillationTrainer(student, teacher, config(tmp_path, learning_rate=0.05), train_dataset=examples(),
                                  peft_config=lora)
    with torch.no_grad():  # a non-zero B, so the head's delta matters
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    batch = TokenCollator(PAD)(examples())
    with torch.no_grad():
        ours = trainer.compute_loss(trainer.model, batch)
        per = dense_jsd(shifted_logits(trainer.model, batch), shifted_logits(teacher, batch), 0.5, 1.0)
    torch.testing.assert_close(ours.double(), per[batch["labels"][:, 1:] != -100].mean(), rtol=1e-4, atol=1e-7)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lm_head" in n and "lora_" in n}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert before and all(not torch.equal(after[n], v) for n, v in before.items())


# ----------------------------------------------------------------------------- config and import


@pytest.mark.parametrize("changes,field", [
    ({"lmbda": 1.5}, "lmbda"), ({"beta": -0.1}, "beta"), ({"temperature": -1.0}, "temperature"),
    ({"loss_temperature": 0.0}, "loss_temperature"), ({"max_new_tokens": 0}, "max_new_tokens"),
    ({"chunk_size": 0}, "chunk_size"), ({"reduction": "mean"}, "reduction"), ({"store_tail": "flat"}, "store_tail"),
    ({"divergence": "klx"}, "divergence"), ({"divergence": "skew_kl", "divergence_options": {"alpha": 2.0}}, "alpha"),
    ({"divergence": "tvd", "divergence_options": {"beta": 0.3}}, "beta"),
    ({"divergence_options": {"beta": 0.3}}, "beta field"),
])
def test_bad_values_fail_at_construction_with_one_line(tmp_path, changes, field):
    with pytest.raises(DistillationConfigError, match=field) as info:
        config(tmp_path, **changes)
    assert isinstance(info.value, ValueError) and "\n" not in str(info.value)


def test_teacher_sources_are_checked(tmp_path):
    teacher, student = models()
    with pytest.raises(ValueError, match="needs a teacher"):
        DistillationTrainer(student, None, config(tmp_path))
    with pytest.raises(ValueError, match="the student itself"):
        DistillationTrainer(student, student, config(tmp_path))
    with pytest.raises(ValueError, match="teacher_model_init_kwargs"):
        DistillationTrainer(student, teacher, config(tmp_path, teacher_model_init_kwargs={"dtype": "float32"}))
    with pytest.raises(ValueError, match="64 output rows but the teacher 32"):
        DistillationTrainer(student, tiny_llama(32, hidden=16, layers=1), config(tmp_path))


def test_gkd_defaults_and_any_divergence_with_options(tmp_path):
    args = DistillationConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    assert (args.temperature, args.lmbda, args.beta, args.max_new_tokens, args.seq_kd, args.disable_dropout) == \
        (0.9, 0.5, 0.5, 128, False, True)
    assert args.divergence_config().name == "jsd" and args.divergence_config().beta == 0.5
    skew = config(tmp_path, divergence="skew_kl", divergence_options='{"alpha": 0.3}')  # JSON from the CLI
    assert skew.divergence_config().alpha == 0.3


def test_importing_distill_does_not_import_transformers():
    code = "import sys, distill, distill.losses, distill.train.core; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
