"""Every registered causal-LM method trains two steps on tiny models, from a live teacher and (where
it can) from stored top-k targets: the student's parameters change, the teacher's do not."""
import pytest
import torch

from distill.config import from_dict
from distill.losses.sparse import topk_with_tail
from distill.methods import METHODS, LMContext, build_method
from distill.models import FrozenTeacher
from distill.models.hf import LMBody
from distill.models.teacher_sources import LiveTokenTeacher, StoredTokenTeacher
from distill.data.token_stream import next_token_targets
from distill.train.config import TrainConfig
from distill.train.optim import build_optimizer
from tests.llm.conftest import tiny_llama

V = 64
# cross-tokenizer methods need two tokenizers: tests/llm/test_cross_tokenizer.py trains each of them two steps
LM_METHODS = [n for n in METHODS.names() if METHODS.get(n).obj.task == "causal_lm" and not METHODS.get(n).obj.cross_tokenizer]
OPTIONS = {"tip": {"keep": 0.5}}


def batch(seed):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, V, (2, 12), generator=g)
    labels = ids.clone()
    labels[0, :3] = -100  # a prompt that takes no loss
    mask = torch.ones_like(ids)
    mask[1, -2:] = 0  # right padding
    labels[1, -2:] = -100
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def stored_fields(teacher_body, b):
    labels, mask = next_token_targets(b)
    with torch.no_grad():
        hidden = teacher_body(b["input_ids"], b["attention_mask"])[:, :-1][mask]
        ids, logp, tail = topk_with_tail(hidden @ teacher_body.model.head_weight.t(), 8)
    return {**b, "teacher_topk_ids": ids, "teacher_topk_logp": logp, "teacher_tail_logp": tail}


def setup(name, source):
    student, teacher_lm = tiny_llama(V, hidden=16, seed=1), tiny_llama(V, hidden=32, seed=2)
    teacher_body = FrozenTeacher(LMBody(teacher_lm))
    cls = METHODS.get(name).obj
    teacher = None
    if cls.needs_teacher:
        teacher = StoredTokenTeacher(1.0, "uniform", 8) if source == "store" else LiveTokenTeacher(teacher_body)
    cfg = from_dict(METHODS.get(name).config, {"name": name, **OPTIONS.get(name, {})})
    context = LMContext(steps_per_epoch=2, epochs=1, num_train=4, student_body=LMBody(student), teacher=teacher, vocab_size=V)
    return student, teacher_body, build_method(cfg, student=student, teacher=teacher_body, context=context)


@pytest.mark.parametrize("source", ["live", "store"])
@pytest.mark.parametrize("name", LM_METHODS)
def test_lm_method_trains_two_steps(name, source):
    cls = METHODS.get(name).obj
    if source == "store" and (cls.needs_live_teacher or cls.requires_on_policy or not cls.needs_teacher):
        pytest.skip("this method does not train from a store")
    student, teacher_body, method = setup(name, source)
    params = [p for m in (student, method) for p in m.parameters() if p.requires_grad]
    assert not {id(p) for p in teacher_body.parameters()} & {id(p) for p in params}
    optimizer = build_optimizer(params, TrainConfig(optimizer="adamw", lr=0.01))
    before_s = {k: v.detach().clone() for k, v in student.named_parameters() if v.requires_grad}
    before_t = {k: v.detach().clone() for k, v in teacher_body.named_parameters()}
    for step in range(2):
        b = batch(step)
        if source == "store":
            b = stored_fields(teacher_body, b)
        method.count(b)
        parts = method(b)
        assert "loss" in parts and parts["loss"].dim() == 0 and all(torch.isfinite(v) for v in parts.values())
        parts["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
        method.on_step_end(step + 1, 2, {k: float(v) for k, v in parts.items()})
    changed = [k for k, v in student.named_parameters() if k in before_s and not torch.equal(before_s[k], v)]
    assert len(changed) == len(before_s), f"student parameters without an update: {set(before_s) - set(changed)}"
    assert all(torch.equal(before_t[k], v) for k, v in teacher_body.named_parameters()), "teacher changed"
    assert all(p.grad is None for p in teacher_body.parameters())


def test_a_new_teacher_source_needs_no_change_in_methods():
    """The README's example: a source wrapping the live teacher; scale 1 reproduces it, scale 2 does not."""
    from dataclasses import dataclass

    from distill.losses import HiddenSignal

    @dataclass
    class ScaledTeacher:
        inner: LiveTokenTeacher
        scale: float

        def signal(self, batch, mask):
            s = self.inner.signal(batch, mask)
            return HiddenSignal(s.hidden * self.scale, s.head)

    student, teacher_body, method = setup("lm_kd", "live")
    b = batch(0)
    live = method(b)["loss"].detach()
    for scale, same in ((1.0, True), (2.0, False)):
        method.ctx.teacher = ScaledTeacher(LiveTokenTeacher(teacher_body), scale)
        assert torch.equal(method(b)["loss"].detach(), live) == same
