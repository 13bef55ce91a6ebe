"""Tiny in-process LLM fixtures: a BPE tokenizer with a chat template, a random Llama teacher, text files."""
import json

import pytest

transformers = pytest.importorskip("transformers")

CORPUS = [
    "The quick brown fox jumps over the lazy dog. " * 3,
    "Python is a programming language that lets you work quickly and integrate systems effectively. " * 2,
    "Knowledge distillation trains a small student model to imitate a large teacher model. " * 2,
    "A dictionary maps keys to values; a list holds items in order; a set holds unique items. " * 2,
    "Functions are defined with def and return values with return. Classes bundle data and behaviour. " * 2,
    "The teacher is frozen while the student learns from its soft targets and from the labels. " * 2,
]
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


def make_tokenizer(folder, vocab_size=300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<unk>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|system|>", "<|end|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(CORPUS * 4, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                                pad_token="</s>")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(folder)
    return fast


def tiny_llama(vocab, hidden=32, layers=2, seed=0, tie=True):
    import torch
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=2 * hidden,
                                      num_hidden_layers=layers, num_attention_heads=4, num_key_value_heads=2,
                                      head_dim=hidden // 4, max_position_embeddings=256, tie_word_embeddings=tie,
                                      bos_token_id=1, eos_token_id=2, pad_token_id=2)
    return transformers.LlamaForCausalLM(config)


@pytest.fixture(scope="session")
def llm_assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("llm")
    tok = make_tokenizer(root / "teacher")
    teacher = tiny_llama(len(tok))
    teacher.save_pretrained(root / "teacher")
    text = root / "text"
    text.mkdir()
    for i, doc in enumerate(CORPUS * 3):
        (text / f"doc{i:02d}.txt").write_text(doc)
    records = [{"prompt": f"Question {i}: what is {i} plus {i}?", "completion": f" It is {2 * i}."} for i in range(24)]
    records += [{"messages": [{"role": "user", "content": f"Say {w}"}, {"role": "assistant", "content": f"{w}!"}]}
                for w in ("hello", "python", "teacher", "student")]
    (root / "data.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    return {"root": root, "teacher": str(root / "teacher"), "text": str(text), "jsonl": str(root / "data.jsonl"), "tokenizer": tok}


STUDENT = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
           "num_key_value_heads": 1, "head_dim": 8}


def lm_recipe(assets, out, **changes):
    recipe = {
        "task": "causal_lm", "name": "tiny-lm", "seed": 0, "output_dir": str(out), "progress": False, "threads": 1,
        "teacher": {"path": assets["teacher"]},
        "student": {"config": dict(STUDENT)},
        "data": {"format": "text", "paths": [assets["text"]], "block_size": 16, "eval_fraction": 0.2},
        "method": {"name": "lm_kd", "divergence": "kl"},
        "train": {"epochs": 1, "max_steps": 4, "batch_size": 4, "optimizer": "adamw", "lr": 0.01, "log_every": 1},
        "eval": {"batch_size": 4, "min_tokens": 8},  # the tiny corpus holds out ~20 tokens
    }
    recipe.update(changes)
    return recipe


def reference_then_crashed_copy(recipe: dict, run_dir, monkeypatch, crash_at_step: int) -> None:
    """Train `recipe` (6 steps, a checkpoint every 2) uninterrupted into its output_dir, then a copy of it
    into `run_dir` crashed on step `crash_at_step` and resumed: the two folders must then agree exactly."""
    from distill.tasks import build_recipe
    recipe["train"].update(max_steps=6, checkpoint_every=2)
    task, cfg = build_recipe(recipe)
    task.run(cfg, overwrite=True)
    crashed = json.loads(json.dumps(recipe))
    crashed["output_dir"] = str(run_dir)
    task, cfg = build_recipe(crashed)
    crash_then_resume(task, cfg, monkeypatch, crash_at_step)


def crash_then_resume(task, cfg, monkeypatch, crash_at_step: int) -> None:
    """Run `cfg`, crash it on its `crash_at_step`-th optimizer step (1-based), then resume it to the end."""
    import distill.train.core as core
    original, calls = core.Trainer._step, {"n": 0}

    def failing(self, batch):
        calls["n"] += 1
        if calls["n"] == crash_at_step:
            raise KeyboardInterrupt("simulated crash")
        return original(self, batch)
    monkeypatch.setattr(core.Trainer, "_step", failing)
    with pytest.raises(KeyboardInterrupt):
        task.run(cfg, overwrite=True)
    monkeypatch.setattr(core.Trainer, "_step", original)
    task.run(cfg, resume=True)


@pytest.fixture(scope="session")
def xtok_assets(llm_assets, tmp_path_factory):
    """A teacher with a SentencePiece-style tokenizer (byte fallback, like Gemma's) and a student
    architecture folder with the byte-level BPE of `llm_assets` (like SmolLM2's)."""
    from tests.llm.xtok import sentencepiece_like
    root = tmp_path_factory.mktemp("xtok")
    teacher_tok = sentencepiece_like(root / "teacher")
    teacher = tiny_llama(len(teacher_tok), hidden=32, seed=5)
    teacher.config.bos_token_id, teacher.config.eos_token_id = teacher_tok.bos_token_id, teacher_tok.eos_token_id
    teacher.save_pretrained(root / "teacher")
    student = tiny_llama(len(llm_assets["tokenizer"]), hidden=16, layers=1, seed=6)
    student.save_pretrained(root / "student")
    llm_assets["tokenizer"].save_pretrained(root / "student")
    return {**llm_assets, "xteacher": str(root / "teacher"), "xstudent": str(root / "student"), "teacher_tokenizer": teacher_tok}


def xtok_recipe(assets, out, method, **changes):
    recipe = lm_recipe(assets, out, method=method, **changes)
    recipe["teacher"] = {"path": assets["xteacher"]}
    recipe["student"] = {"architecture": assets["xstudent"], "config": dict(STUDENT)}
    return recipe
