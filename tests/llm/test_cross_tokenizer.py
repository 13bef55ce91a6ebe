"""Cross-tokenizer methods on tiny in-process models with two different tokenizers: each loss against a
slow reference on full logits, chunked == dense, the identity case, end-to-end runs, resume, on-policy."""
import json
import math

import pytest
import torch

from distill.config import from_dict
from distill.data.align import Aligner
from distill.data.token_stream import TokenBatches, next_token_targets
from distill.errors import ConfigError
from distill.methods import METHODS, LMContext, build_method
from distill.models import FrozenTeacher
from distill.models.hf import LMBody
from distill.models.teacher_sources import AlignedTokenTeacher, LiveTokenTeacher
from distill.tasks import build_recipe
from distill.tasks.causal_lm.runner import vocabulary_map
from tests.helpers import write_recipe
from tests.llm.conftest import crash_then_resume, lm_recipe, tiny_llama, transformers, xtok_recipe
from tests.llm.xtok import ADVERSARIAL

PURE = {"kd_weight": 1.0, "ce_weight": 0.0}  # the distillation term alone, so the reference compares it
CASES = {  # name -> method config
    "uld": {"name": "uld", **PURE},
    "uld_spans": {"name": "uld", "alignment": "spans", "normalize": "span", **PURE},
    "gold": {"name": "gold", **PURE},
    "gold_observed": {"name": "gold", "merge": "observed", "hybrid": False, **PURE},
    "alm": {"name": "alm", **PURE},
    "xtoken": {"name": "xtoken", "temperature": 1.5, **PURE},
}


def student_blocks(tokenizer, length=20):
    ids = []
    for text in ADVERSARIAL + ["The teacher is frozen while the student learns from its soft targets."] * 2:
        ids += tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return [ids[i:i + length] for i in range(0, len(ids) - length, length)]


def batch_of(tokenizer, rows):
    examples = [{"input_ids": r, "labels": r} for r in rows]
    batch = TokenBatches(examples, batch_size=len(rows), pad_id=tokenizer.pad_token_id, shuffle=False).make_batch(
        torch.arange(len(rows)))
    batch["labels"][1, :3] = -100  # a prompt
    return batch


def setup(assets, case, same_tokenizer=False, chunk_size=None):
    s_tok = assets["tokenizer"]
    t_tok = s_tok if same_tokenizer else assets["teacher_tokenizer"]
    torch.manual_seed(0)
    student = tiny_llama(len(s_tok), hidden=16, layers=1, seed=6)
    teacher_lm = tiny_llama(len(t_tok), hidden=32, seed=5)
    body = FrozenTeacher(LMBody(teacher_lm))
    cfg = from_dict(METHODS.get(CASES[case]["name"]).config, {**CASES[case], "chunk_size": chunk_size})
    needs = METHODS.get(cfg.name).obj.vocabulary_needs(cfg)
    source = AlignedTokenTeacher(body, Aligner(s_tok, t_tok), len(t_tok), t_tok.pad_token_id or 0,
                                 vocabulary_map(s_tok, t_tok, needs))
    context = LMContext(student_body=LMBody(student), teacher=source, vocab_size=len(s_tok), tokenizer=s_tok)
    method = build_method(cfg, student=student, teacher=body, context=context)
    return student, teacher_lm, method, source


# ---------------------------------------------------------------------------------------- slow references

def full_logits(student, teacher_lm, batch, source):
    s = student(batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    alignments, positions = source.alignments(batch)
    t_ids, t_mask = source.teacher_batch(alignments)
    with torch.no_grad():
        t = teacher_lm(t_ids, attention_mask=t_mask).logits
    return s, t, t_ids, alignments, positions


def usable_spans(batch, alignments, positions, t_ids, mode):
    """(b, student rows, student tokens, teacher rows, teacher tokens, base index) per usable span, by loops."""
    labels = batch["labels"]
    out = []
    for b, (al, pos) in enumerate(zip(alignments, positions)):
        for a, s1, c, d in al.spans:
            tokens = [pos[k] for k in range(a, s1 + 1)]
            if mode == "bayesian":
                s_rows, t_rows, base = [p - 1 for p in tokens], [j - 1 for j in range(c, d + 1)], -1
            else:
                s_rows, t_rows, base = tokens, list(range(c, d + 1)), 0
            if min(s_rows) < 0 or min(t_rows) < 0 or max(s_rows) >= batch["input_ids"].shape[1] - 1:
                continue
            if any(labels[b, r + 1] == -100 for r in s_rows) or max(t_rows) >= len(al.teacher_ids):
                continue
            out.append((b, s_rows, [int(batch["input_ids"][b, p]) for p in tokens], t_rows,
                        [int(t_ids[b, j]) for j in range(c, d + 1)], base))
    return out


def merged(probs, rows, tokens, base):
    factor = 1.0
    for i, (r, tok) in enumerate(zip(rows, tokens)):
        if i != (base % len(rows)):
            factor = factor * probs[r, tok].clamp_min(1e-8)
    return probs[rows[base]] * factor


def sorted_l1(a, b):
    width = max(len(a), len(b))
    a = torch.nn.functional.pad(a.sort(descending=True).values, (0, width - len(a)))
    b = torch.nn.functional.pad(b.sort(descending=True).values, (0, width - len(b)))
    return (a - b).abs().sum()


def reference_loss(case, method, student, teacher_lm, batch, source):
    s_logits, t_logits, t_ids, alignments, positions = full_logits(student, teacher_lm, batch, source)
    cfg = method.cfg
    s_logp, t_logp = torch.log_softmax(s_logits.double(), -1), torch.log_softmax(t_logits.double(), -1)
    if case == "uld":  # positional: the i-th loss token of the student with the i-th teacher token from the same start
        per_example = []
        _, mask = next_token_targets(batch)
        for b, (al, pos) in enumerate(zip(alignments, positions)):
            s_rows = [p for p in range(mask.shape[1]) if mask[b, p]]
            first = pos.index(s_rows[0] + 1)  # token index of the first loss token
            start = next(c for a, s1, c, d in al.spans if a <= first <= s1)
            t_rows = [j - 1 for j in range(max(start, 1), len(al.teacher_ids))]
            pairs = [sorted_l1(s_logp[b, r].exp(), t_logp[b, q].exp()) for r, q in zip(s_rows, t_rows)]
            per_example.append(torch.stack(pairs).mean())
        return torch.stack(per_example).mean()
    mode = "observed" if case == "gold_observed" else "bayesian"
    spans = usable_spans(batch, alignments, positions, t_ids, mode)
    values = []
    for b, s_rows, s_tok, t_rows, t_tok, base in spans:
        ps, pt = s_logp[b].exp(), t_logp[b].exp()
        if case in ("uld_spans", "gold_observed"):
            values.append(sorted_l1(merged(ps, s_rows, s_tok, base), merged(pt, t_rows, t_tok, base)))
        elif case == "gold":
            vm = source.vocab_map
            ms, mt = merged(ps, s_rows, s_tok, base), merged(pt, t_rows, t_tok, base)
            w = len(vm.matched_teacher) / t_logits.shape[-1]
            ls, lt = ms[vm.matched_student].clamp_min(1e-8).log(), mt[vm.matched_teacher].clamp_min(1e-8).log()
            m = torch.log(0.5 * ls.exp() + 0.5 * lt.exp())
            jsd = (0.5 * lt.exp() * (lt - m) + 0.5 * ls.exp() * (ls - m)).sum()
            keep_s = [i for i in range(len(ms)) if i not in set(vm.matched_student.tolist())]
            keep_t = [i for i in range(len(mt)) if i not in set(vm.matched_teacher.tolist())]
            values.append(w * jsd + (1 - w) * sorted_l1(ms[keep_s], mt[keep_t]))
        elif case == "alm":
            ls = sum(s_logp[b, r, tok] for r, tok in zip(s_rows, s_tok))
            lt = sum(t_logp[b, r, tok] for r, tok in zip(t_rows, t_tok))
            x, y = float(lt) / 100 - 1e-6, ls.clamp(max=0) / 100 - 1e-6
            values.append(-(math.exp(x) * y + (1 - math.exp(x)) * torch.log(1 - y.exp())))
        elif case == "xtoken":
            proj = source.vocab_map.projection.to_dense().double()
            T = cfg.temperature
            p = torch.stack([torch.softmax(s_logits[b, r].double() / T, -1) @ proj for r in s_rows]).mean(0)
            p = p / (p.sum() + 1e-10)
            q = torch.stack([torch.log_softmax(t_logits[b, r].double() / T, -1) for r in t_rows]).mean(0)
            values.append(T * T * (q.exp() * (q - (p + 1e-10).log())).sum())
    if cfg.normalize == "span":
        return torch.stack(values).mean()
    examples = [sp[0] for sp in spans]
    per = [torch.stack([v for v, e in zip(values, examples) if e == b]).mean() for b in sorted(set(examples))]
    return torch.stack(per).sum() / batch["input_ids"].shape[0]


# ---------------------------------------------------------------------------------------- tests

@pytest.mark.parametrize("case", list(CASES))
def test_each_loss_equals_a_slow_reference_and_chunking_changes_nothing(xtok_assets, case):
    batch = batch_of(xtok_assets["tokenizer"], student_blocks(xtok_assets["tokenizer"])[:3])
    grads = []
    for chunk_size in (2, 10_000):
        student, teacher_lm, method, source = setup(xtok_assets, case, chunk_size=chunk_size)
        parts = method(batch)
        student.zero_grad()
        parts["loss"].backward()
        grads.append([p.grad.clone() for p in student.parameters()])
        value = float(parts[method.cfg.name])
        student.zero_grad()
        expected = reference_loss(case, method, student, teacher_lm, batch, source)
        assert value == pytest.approx(float(expected), rel=1e-4, abs=1e-6)
        expected.backward()
        for got, ref in zip(grads[-1], (p.grad for p in student.parameters())):
            torch.testing.assert_close(got, ref.float(), rtol=1e-3, atol=1e-6)
        assert parts["spans"] > 0
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def lm_kd_value(assets, divergence):
    s_tok = assets["tokenizer"]
    torch.manual_seed(0)
    student = tiny_llama(len(s_tok), hidden=16, layers=1, seed=6)
    teacher = FrozenTeacher(LMBody(tiny_llama(len(s_tok), hidden=32, seed=5)))
    cfg = from_dict(METHODS.get("lm_kd").config, {"name": "lm_kd", "divergence": divergence})
    context = LMContext(student_body=LMBody(student), teacher=LiveTokenTeacher(teacher), vocab_size=len(s_tok))
    return build_method(cfg, student=student, teacher=teacher, context=context)


@pytest.mark.parametrize("case,divergence", [("xtoken", {"name": "kl"}), ("gold", {"name": "jsd", "beta": 0.5})])
def test_the_identity_case_is_the_same_tokenizer_loss(xtok_assets, case, divergence):
    """One tokenizer (without a BOS, so both models see the same context) on both sides: X-Token with
    W = I is forward KL, GOLD's hybrid with every token matched is the generalized JSD."""
    s_tok = transformers.PreTrainedTokenizerFast(tokenizer_object=xtok_assets["tokenizer"].backend_tokenizer,
                                                 eos_token="</s>", pad_token="</s>")
    assets = {**xtok_assets, "tokenizer": s_tok}
    CASES["identity"] = {**CASES[case], "normalize": "span", "ce_weight": 0.0, "temperature": 1.0} if case == "xtoken" \
        else {**CASES[case], "normalize": "span", "ce_weight": 0.0}
    try:
        _, _, method, _ = setup(assets, "identity", same_tokenizer=True)
    finally:
        del CASES["identity"]
    batch = batch_of(s_tok, student_blocks(s_tok)[:2])
    batch["labels"][1, :3] = batch["input_ids"][1, :3]  # no prompt: lm_kd and the spans cover the same positions
    got = method(batch)[method.cfg.name]
    expected = lm_kd_value(assets, divergence)(batch)[divergence["name"]]
    assert float(got) == pytest.approx(float(expected), rel=2e-5)


def test_cross_tokenizer_run_end_to_end_reports_bits_per_byte(xtok_assets, tmp_path, capsys):
    from distill.cli import main
    recipe = xtok_recipe(xtok_assets, tmp_path / "runs", {"name": "gold", "ce_weight": 0.5})
    assert main(["train", str(write_recipe(tmp_path / "r.yaml", recipe))]) == 0
    out = capsys.readouterr().out
    assert "bits/byte" in out and "KL(teacher" not in out
    summary = json.loads((tmp_path / "runs" / "tiny-lm" / "summary.json").read_text())
    teacher, student = summary["stages"]["teacher"], summary["stages"]["student-gold"]
    assert 0 < teacher["bits_per_byte"] and 0 < student["bits_per_byte"] and "kl_to_teacher" not in student
    assert student["bytes"] == teacher["bytes"] > 0  # both scored on the same text
    assert (tmp_path / "runs" / "tiny-lm" / "report.html").is_file()


def test_a_token_level_method_with_another_tokenizer_is_refused(xtok_assets, tmp_path):
    recipe = xtok_recipe(xtok_assets, tmp_path, {"name": "lm_kd"})
    task, cfg = build_recipe(recipe)
    with pytest.raises(ConfigError, match="cross-tokenizer distillation is needed.*alm, gold, uld or xtoken"):
        task.run(cfg, overwrite=True)


def test_resume_after_a_crash_equals_an_uninterrupted_cross_tokenizer_run(xtok_assets, tmp_path, monkeypatch):
    from safetensors.torch import load_file

    def weights(out):
        folder = out / "tiny-lm" / "student-alm" / "checkpoints"
        latest = json.loads((folder / "latest.json").read_text())["dir"]
        return load_file(str(folder / latest / "weights.safetensors"))
    recipe = xtok_recipe(xtok_assets, tmp_path / "a", {"name": "alm"})
    recipe["train"].update(max_steps=4, checkpoint_every=1)
    task, cfg = build_recipe(recipe)
    task.run(cfg, overwrite=True)
    recipe["output_dir"] = str(tmp_path / "b")
    task, cfg = build_recipe(recipe)
    crash_then_resume(task, cfg, monkeypatch, crash_at_step=3)
    a, b = weights(tmp_path / "a"), weights(tmp_path / "b")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("name", ["gold", "uld", "alm", "xtoken"])
def test_on_policy_retokenizes_student_samples_for_every_method(xtok_assets, tmp_path, name):
    recipe = xtok_recipe(xtok_assets, tmp_path, {"name": name},
                         data={"format": "prompts", "paths": [xtok_assets["jsonl"]], "eval_fraction": 0.2},
                         on_policy={"lmbda": 1.0, "sampling": {"max_new_tokens": 6}})
    recipe["train"]["max_steps"] = 2
    task, cfg = build_recipe(recipe)
    summary = task.run(cfg, overwrite=True)
    log = [json.loads(line) for line in (tmp_path / "tiny-lm" / f"student-{name}" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in log if r["kind"] == "train"]
    assert train and all(r["spans"] > 0 and math.isfinite(r[name]) for r in train)
    assert train[-1]["student_batches"] == 1.0 and summary["stages"][f"student-{name}"]["bits_per_byte"] > 0


CROSS_METHODS = [n for n in METHODS.names() if METHODS.get(n).obj.cross_tokenizer]


@pytest.mark.parametrize("name", CROSS_METHODS)
def test_every_cross_tokenizer_method_trains_two_steps(xtok_assets, name):
    from distill.train.config import TrainConfig
    from distill.train.optim import build_optimizer
    CASES["two_steps"] = {"name": name, "ce_weight": 0.5}
    try:
        student, teacher_lm, method, _ = setup(xtok_assets, "two_steps")
    finally:
        del CASES["two_steps"]
    params = [p for p in student.parameters() if p.requires_grad]
    optimizer = build_optimizer(params, TrainConfig(optimizer="adamw", lr=0.01))
    before_s = {k: v.detach().clone() for k, v in student.named_parameters()}
    before_t = {k: v.detach().clone() for k, v in teacher_lm.named_parameters()}
    blocks = student_blocks(xtok_assets["tokenizer"])
    for step in range(2):
        batch = batch_of(xtok_assets["tokenizer"], blocks[2 * step:2 * step + 2])
        assert method.count(batch) > 0
        parts = method(batch)
        assert all(torch.isfinite(v) for v in parts.values())
        parts["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    assert all(not torch.equal(before_s[k], v) for k, v in student.named_parameters()), "a student tensor did not move"
    assert all(torch.equal(before_t[k], v) for k, v in teacher_lm.named_parameters()) and all(
        p.grad is None for p in teacher_lm.parameters())


def test_training_from_an_aligned_store_equals_the_live_teacher(xtok_assets, tmp_path):
    """A store of the other-tokenizer teacher with k = its vocabulary: every method's loss equals the live one;
    a store of another teacher tokenizer is refused with one line."""
    from distill.cli import main
    k = len(xtok_assets["teacher_tokenizer"])
    for name in ("gold", "alm", "xtoken", "uld"):
        live = xtok_recipe(xtok_assets, tmp_path / "live", {"name": name, "ce_weight": 0.5})
        live["train"]["max_steps"] = 2
        cached = json.loads(json.dumps(live))
        cached["store"] = {"path": str(tmp_path / f"store-{name}"), "k": k, "dtype": "float32", "batch_size": 3}
        assert main(["cache", str(write_recipe(tmp_path / "c.yaml", cached))]) == 0
        from_store = json.loads(json.dumps(cached))
        from_store["output_dir"] = str(tmp_path / "stored")
        del from_store["teacher"]
        task, cfg = build_recipe(live)
        a = task.run(cfg, overwrite=True)
        task, cfg = build_recipe(from_store)
        b = task.run(cfg, overwrite=True)
        logs = [[json.loads(x) for x in (tmp_path / out / "tiny-lm" / f"student-{name}" / "metrics.jsonl").read_text().splitlines()]
                for out in ("live", "stored")]
        for x, y in zip(*logs):
            if x["kind"] == "train":
                assert x[name] == pytest.approx(y[name], rel=1e-4), (name, x, y)
        assert b["stages"]["teacher"]["bits_per_byte"] == pytest.approx(a["stages"]["teacher"]["bits_per_byte"], rel=1e-4)
        assert b["stages"][f"student-{name}"]["bits_per_byte"] == pytest.approx(a["stages"][f"student-{name}"]["bits_per_byte"], rel=1e-4)
    other = json.loads(json.dumps(from_store))
    other["teacher"] = {"path": xtok_assets["teacher"]}  # another teacher tokenizer than the store's
    task, cfg = build_recipe(other)
    with pytest.raises(Exception, match="teacher_tokenizer_hash"):
        task.run(cfg, overwrite=True)
