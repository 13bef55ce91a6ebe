"""LoRA students (student.lora, distill.models.lora) on tiny in-process Llamas: the base stays frozen, the
chunked loss through a LoRA head equals the dense loss on peft's own logits, resume is bit-exact, the
exports round-trip, bad configs stop at load with one line."""
import json
import sys

import pytest
import torch
import torch.nn.functional as F

peft = pytest.importorskip("peft")

from distill.errors import ConfigError  # noqa: E402
from distill.losses.fused import fused_linear_divergence  # noqa: E402
from distill.losses.signal import DenseSignal  # noqa: E402
from distill.models.hf import LMBody  # noqa: E402
from distill.models.lora import LoRASpec, apply_lora, export_lora  # noqa: E402
from distill.tasks import build_recipe  # noqa: E402
from tests.llm.conftest import reference_then_crashed_copy, lm_recipe, tiny_llama, transformers  # noqa: E402

LORA = {"r": 4, "alpha": 8, "target_modules": ["q_proj", "v_proj", "down_proj"]}


@pytest.fixture(scope="module")
def student_folder(llm_assets, tmp_path_factory):
    """A pretrained-looking student (hidden 16, its own seed) saved with the shared tokenizer."""
    folder = tmp_path_factory.mktemp("lora-student")
    tiny_llama(len(llm_assets["tokenizer"]), hidden=16, layers=1, seed=3).save_pretrained(folder)
    llm_assets["tokenizer"].save_pretrained(folder)
    return str(folder)


def run(recipe):
    task, cfg = build_recipe(recipe)
    return task.run(cfg, overwrite=True)


def stage_dir(out):
    return out / "tiny-lm" / "student-lm_kd"


def checkpoint(out, step=None):
    """(weights, optimizer tensors, state) of the latest (or the given) checkpoint of the run under `out`."""
    from safetensors.torch import load_file
    folder = stage_dir(out) / "checkpoints"
    name = f"step-{step:08d}" if step else json.loads((folder / "latest.json").read_text())["dir"]
    return (load_file(str(folder / name / "weights.safetensors")), load_file(str(folder / name / "optimizer.safetensors")),
            json.loads((folder / name / "state.json").read_text()))


def with_random_adapters(model, seed=1):
    """LoRA B starts at zero (the update is then invisible); give every adapter matrix random values."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    return model


def lora_recipe(assets, out, student, **lora):
    recipe = lm_recipe(assets, out)
    recipe["student"] = {**student, "lora": {**LORA, **lora}}
    return recipe


@pytest.mark.parametrize("build", ["path", "from_teacher", "config_bf16"])
def test_only_the_adapters_train_however_the_student_is_built(llm_assets, student_folder, tmp_path, build):
    student = {"path": {"path": student_folder}, "from_teacher": {"init": {"from_teacher": {"num_layers": 1}}},
               "config_bf16": {"config": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                          "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8},
                               "dtype": "bfloat16"}}[build]
    recipe = lora_recipe(llm_assets, tmp_path, student)
    recipe["train"].update(checkpoint_every=1, keep_checkpoints=10)
    stage = run(recipe)["stages"]["student-lm_kd"]
    first, _, _ = checkpoint(tmp_path, step=1)
    after, opt, _ = checkpoint(tmp_path)
    lora_keys = [k for k in after if "lora_" in k]
    # 1 layer x (q, v, down) x (A, B) adapters; the optimizer holds exactly those (AdamW: step, exp_avg, exp_avg_sq)
    assert len(lora_keys) == 6 and len({k.split("/")[0] for k in opt}) == 6
    assert stage["trainable_params"] == sum(after[k].numel() for k in lora_keys) < stage["params"]
    assert all(after[k].dtype == torch.float32 for k in lora_keys)  # adapters in float32 even on a bfloat16 base
    if build == "config_bf16":
        assert all(after[k].dtype == torch.bfloat16 for k in after if "base_layer" in k)
    assert all(after[k].abs().sum() > 0 for k in lora_keys if "lora_B" in k)  # B left zero: the adapters trained
    assert all(not torch.equal(first[k], after[k]) for k in lora_keys)  # and kept training after step 1
    assert all(torch.equal(first[k], after[k]) for k in after if k not in lora_keys)  # the base did not move
    if build == "path":  # ... and is the student it was loaded from
        base = transformers.AutoModelForCausalLM.from_pretrained(student_folder).state_dict()
        frozen = {k.split("base_model.model.", 1)[1].replace(".base_layer", ""): v for k, v in after.items()
                  if k not in lora_keys}
        assert frozen.keys() == base.keys() and all(torch.equal(v, base[k]) for k, v in frozen.items())


def test_fused_loss_through_a_lora_head_equals_the_dense_loss_on_peft_logits(llm_assets):
    vocab = len(llm_assets["tokenizer"])
    teacher = tiny_llama(vocab, hidden=32, seed=7)
    for head in (True, False):
        targets = ["q_proj", "v_proj"] + (["lm_head"] if head else [])
        torch.manual_seed(0)
        model = with_random_adapters(apply_lora(tiny_llama(vocab, hidden=16, layers=1, seed=3, tie=False),
                                                LoRASpec(r=4, alpha=8, target_modules=targets)))
        ids = torch.randint(0, vocab, (2, 12), generator=torch.Generator().manual_seed(2))
        labels = torch.randint(0, vocab, (24,), generator=torch.Generator().manual_seed(3))
        with torch.no_grad():
            t_logits = teacher(ids).logits.reshape(24, vocab)
        names, params = zip(*[(n, p) for n, p in model.named_parameters() if p.requires_grad])

        body = LMBody(model)  # the fused path: final hidden states x the (effective) head weight, in chunks of 5
        fused = fused_linear_divergence(body(ids).reshape(24, -1), body.head_weight, DenseSignal(t_logits),
                                        ce_labels=labels, ce_weight=0.5, chunk_size=5)
        fused_grads = torch.autograd.grad(fused.loss, params)

        logits = model(input_ids=ids).logits.reshape(24, vocab)  # peft's own forward through the LoRA head
        s_logp, t_logp = F.log_softmax(logits, -1), F.log_softmax(t_logits, -1)
        dense = (t_logp.exp() * (t_logp - s_logp)).sum(-1).mean() + 0.5 * F.cross_entropy(logits, labels)
        dense_grads = torch.autograd.grad(dense, params)

        torch.testing.assert_close(fused.loss, dense, rtol=1e-5, atol=1e-6)
        for name, a, b in zip(names, fused_grads, dense_grads):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6, msg=name)
        head_grads = [g for n, g in zip(names, fused_grads) if "lm_head" in n]
        assert len(head_grads) == (2 if head else 0) and all(g.abs().sum() > 0 for g in head_grads)
        assert body.head_weight.requires_grad == head  # a frozen head: no V x H gradient buffer in the loss


def test_resume_after_a_crash_equals_the_uninterrupted_run(llm_assets, student_folder, tmp_path, monkeypatch):
    recipe = lora_recipe(llm_assets, tmp_path / "ref", {"path": student_folder}, dropout=0.1)  # dropout draws from the RNG
    reference_then_crashed_copy(recipe, tmp_path / "run", monkeypatch, crash_at_step=5)
    (wa, oa, sa), (wb, ob, sb) = checkpoint(tmp_path / "ref"), checkpoint(tmp_path / "run")
    assert sa["step"] == sb["step"] == 6
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert oa.keys() == ob.keys() and len(oa) and all(torch.equal(oa[k], ob[k]) for k in oa)
    from safetensors.torch import load_file
    adapter = [load_file(str(stage_dir(out) / "adapter" / "adapter_model.safetensors")) for out in (tmp_path / "ref", tmp_path / "run")]
    assert adapter[0].keys() == adapter[1].keys() and all(torch.equal(adapter[0][k], adapter[1][k]) for k in adapter[0])


def test_the_exports_round_trip(llm_assets, student_folder, tmp_path):
    """model/ (merged) loads with transformers alone; peft's base + adapter/ gives the same logits; both equal
    the in-process LoRA model's."""
    torch.manual_seed(0)
    base = transformers.AutoModelForCausalLM.from_pretrained(student_folder)
    model = with_random_adapters(apply_lora(base, LoRASpec(r=4, alpha=8, target_modules="all-linear"))).eval()
    ids = torch.randint(0, len(llm_assets["tokenizer"]), (2, 10), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model(input_ids=ids).logits
    assert export_lora(model, tmp_path, LoRASpec(r=4)) == ["adapter", "model"]
    with torch.no_grad():
        merged = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "model")
        assert not any("lora" in k for k in merged.state_dict())
        reloaded = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(student_folder),
                                                  tmp_path / "adapter")
        untouched = transformers.AutoModelForCausalLM.from_pretrained(student_folder)(input_ids=ids).logits
        assert (expected - untouched).abs().max() > 1e-2  # the adapters do change the model
        torch.testing.assert_close(merged(input_ids=ids).logits, expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(reloaded(input_ids=ids).logits, expected, rtol=1e-4, atol=1e-5)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()


def test_a_run_exports_an_adapter_that_reproduces_its_merged_model(llm_assets, student_folder, tmp_path):
    run(lora_recipe(llm_assets, tmp_path, {"path": student_folder}, target_modules="all-linear"))
    folder = stage_dir(tmp_path)
    merged = transformers.AutoModelForCausalLM.from_pretrained(folder / "model")
    reloaded = peft.PeftModel.from_pretrained(transformers.AutoModelForCausalLM.from_pretrained(student_folder),
                                              folder / "adapter")
    transformers.AutoTokenizer.from_pretrained(folder / "model")
    ids = torch.randint(0, len(llm_assets["tokenizer"]), (1, 12), generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, reloaded.eval()(input_ids=ids).logits,
                                   rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("lora, message", [
    ({"r": 0}, r"student.lora.r = 0"),
    ({"dropout": 1.0}, r"student.lora: dropout = 1.0: must be below 1"),
    ({"rank": 4}, r"student.lora.rank: unknown key"),
    ({"target_modules": []}, r"target_modules = \[\]"),
    ({"alpha": 0}, r"student.lora.alpha = 0"),
])
def test_bad_lora_values_fail_at_load(llm_assets, tmp_path, lora, message):
    recipe = lm_recipe(llm_assets, tmp_path)
    recipe["student"]["lora"] = lora
    with pytest.raises(ConfigError, match=message):
        build_recipe(recipe)


def test_quantize_without_bitsandbytes_and_a_missing_peft_fail_at_load(llm_assets, student_folder, tmp_path, monkeypatch):
    recipe = lora_recipe(llm_assets, tmp_path, {"path": student_folder}, quantize="4bit")
    if "bitsandbytes" not in sys.modules:
        with pytest.raises(ConfigError, match="quantize = 4bit: needs the `bitsandbytes` package"):
            build_recipe(recipe)
    monkeypatch.setitem(sys.modules, "peft", None)  # import peft now raises ImportError
    with pytest.raises(ConfigError, match=r"needs the `peft` package: pip install 'distill\[lora\]'"):
        build_recipe(lora_recipe(llm_assets, tmp_path, {"path": student_folder}))


@pytest.mark.parametrize("lora, message", [
    ({"target_modules": ["no_such_proj"]}, r"student.lora.target_modules = \['no_such_proj'\]"),
    ({"target_modules": ["q_proj", "lm_head"], "dropout": 0.1}, r"the LM head is adapted and dropout = 0.1"),
    ({"target_modules": ["lm_head"]}, r"ties its LM head to the input embeddings"),
])
def test_a_lora_the_student_cannot_take_fails_before_training(llm_assets, student_folder, tmp_path, lora, message):
    with pytest.raises(ConfigError, match=message):
        run(lora_recipe(llm_assets, tmp_path, {"path": student_folder}, **lora))
    assert not (stage_dir(tmp_path) / "checkpoints").exists()


def test_a_lora_on_a_distill_students_candidate_is_refused(llm_assets, tmp_path):
    recipe = lm_recipe(llm_assets, tmp_path)
    recipe["students"] = {"candidates": [{"config": {"num_hidden_layers": 1}, "lora": {"r": 4}}]}
    with pytest.raises(ConfigError, match=r"students.candidates\[0\].lora: a LoRA starts as the identity"):
        build_recipe(recipe)


def test_default_targets_are_peft_defaults_for_the_architecture(llm_assets):
    model = apply_lora(tiny_llama(len(llm_assets["tokenizer"]), hidden=16, layers=2), LoRASpec())
    adapted = {n.split(".")[-2] for n, _ in model.named_modules() if n.endswith(".lora_A")}
    assert adapted == {"q_proj", "v_proj"}  # peft's Llama default
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)


def test_an_on_policy_run_samples_from_the_lora_student(llm_assets, student_folder, tmp_path):
    recipe = lora_recipe(llm_assets, tmp_path, {"path": student_folder}, dropout=0.1)
    recipe["data"] = {"format": "text_prompts", "paths": [llm_assets["text"]], "prompt_tokens": 6,
                      "completion_tokens": 8, "eval_fraction": 0.2}
    recipe["on_policy"] = {"lmbda": 1.0, "sampling": {"max_new_tokens": 6}}
    assert run(recipe)["stages"]["student-lm_kd"]["steps"] == 4
    weights, _, _ = checkpoint(tmp_path)
    assert all(v.abs().sum() > 0 for k, v in weights.items() if "lora_B" in k)
