"""Every registered classification method trains two steps on a tiny model: the student's trainable
parameters change, the teacher does not (causal-LM methods: tests/llm/test_every_lm_method.py; sentence-embedding
methods: tests/methods/test_every_embedding_method.py)."""
import pytest
import torch

from distill.config import from_dict
from distill.methods import METHODS, ClassificationContext, build_method
from distill.models import FrozenTeacher, create_model
from distill.models.teacher_sources import LiveLogits
from distill.train.config import TrainConfig
from distill.train.optim import build_optimizer

NUM_CLASSES = 5


def tiny_batch(seed=0, n=16):
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(n, 3, 32, 32, generator=g), "y": torch.randint(0, NUM_CLASSES, (n,), generator=g),
            "index": torch.arange(n)}


TRAIN = tiny_batch(seed=99, n=64)


def plain_batches():
    for i in range(0, 64, 16):
        yield {k: v[i:i + 16] for k, v in TRAIN.items()}


def held_out(epoch):
    for i in range(2):
        yield tiny_batch(seed=1000 + 10 * epoch + i)


def context(teacher):
    return ClassificationContext(num_classes=NUM_CLASSES, num_train=64, steps_per_epoch=4, epochs=2,
                                 teacher_logits=LiveLogits(teacher), example_input=TRAIN["x"][:2],
                                 train_labels=TRAIN["y"], plain_train_batches=plain_batches, held_out_batches=held_out,
                                 extra_teachers=[FrozenTeacher(create_model("resnet8", num_classes=NUM_CLASSES))])


def method_setup(name):
    torch.manual_seed(0)
    student = create_model("resnet8", num_classes=NUM_CLASSES)
    teacher = FrozenTeacher(create_model("resnet14", num_classes=NUM_CLASSES))
    overrides = {"peers": [{"name": "resnet8"}], "teacher_model": {"name": "resnet8"}}
    cfg_cls = METHODS.get(name).config
    fields = {f.name for f in __import__("dataclasses").fields(cfg_cls)}
    cfg = from_dict(cfg_cls, {"name": name, **{k: v for k, v in overrides.items() if k in fields}})
    method = build_method(cfg, student=student, teacher=teacher, context=context(teacher))
    return student, teacher, method


CLASSIFICATION = [n for n in METHODS.names() if METHODS.get(n).obj.task == "classification"]


@pytest.mark.parametrize("name", CLASSIFICATION)
def test_method_trains_two_steps(name):
    student, teacher, method = method_setup(name)
    teachers = [teacher, *method.ctx.extra_teachers]
    params = [p for m in (student, method) for p in m.parameters() if p.requires_grad]
    assert not {id(p) for t in teachers for p in t.parameters()} & {id(p) for p in params}
    optimizer = build_optimizer(params, TrainConfig(lr=0.05))
    # trainable parameters only: state_dict() holds batch-norm statistics, which move without any gradient
    before_s = {k: v.detach().clone() for k, v in student.named_parameters() if v.requires_grad}
    before_t = {k: v.clone() for k, v in teacher.state_dict().items()}
    student.train(), method.train(), teacher.train()
    for step in range(2):
        method.on_epoch_start(0)
        parts = method(tiny_batch(step))
        assert "loss" in parts and parts["loss"].dim() == 0
        assert all(torch.isfinite(v) for v in parts.values())
        parts["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = [k for k, v in student.named_parameters() if k in before_s and not torch.equal(before_s[k], v)]
    assert changed, "no trainable student parameter changed"
    assert all(torch.equal(before_t[k], v) for k, v in teacher.state_dict().items()), "teacher changed"
    assert all(p.grad is None for p in teacher.parameters())


@pytest.mark.parametrize("name", [n for n in METHODS.names()])
def test_method_is_documented(name):
    entry = METHODS.get(name)
    assert entry.summary, f"{name} needs a one-line docstring"
    assert entry.config is not None
