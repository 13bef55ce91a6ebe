"""Classification students cut out of a deeper teacher of the same family (distill.models.prune_blocks)."""
import pytest
import torch
import torch.nn.functional as F

from distill.errors import ConfigError
from distill.models import create_model
from distill.models.prune_blocks import choose_blocks, init_from_teacher, stage_influence
from distill.tasks import build_recipe
from tests.helpers import tiny_recipe


def resnet(depth, seed=0, name=None):
    torch.manual_seed(seed)
    return create_model(name or f"resnet{depth}", num_classes=10, in_channels=1, image_size=8).eval()


def images(n=6, seed=0):
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_block_influence_equals_a_slow_reference():
    teacher, x = resnet(20), images()
    with torch.no_grad():
        h = F.relu(teacher.bn1(teacher.conv1(x)))
        h = teacher.layer1(h)
        expected = []
        for block in teacher.layer2:
            out = block(h)
            cos = [float(F.cosine_similarity(a.flatten(), b.flatten(), dim=0)) for a, b in zip(h, out)] if out.shape == h.shape else None
            expected.append(None if cos is None else 1 - sum(cos) / len(cos))
            h = out
    got = stage_influence(teacher, "layer2", 3, x)
    assert torch.isinf(got[0]) and expected[0] is None  # the first block changes the shape: always kept
    for g, e in zip(got[1:], expected[1:]):
        assert float(g) == pytest.approx(e, rel=1e-6)


def test_identity_blocks_are_the_ones_dropped_and_the_cut_student_equals_the_teacher():
    teacher = resnet(20)
    with torch.no_grad():  # block 1 of every stage adds nothing: relu(0 + x) = x for post-ReLU x
        for stage in (teacher.layer1, teacher.layer2, teacher.layer3):
            stage[1].bn2.weight.zero_()
            stage[1].bn2.bias.zero_()
    student = resnet(14, seed=1)
    report = init_from_teacher(student, teacher, images())
    assert report["blocks"] == {"layer1": [0, 2], "layer2": [0, 2], "layer3": [0, 2]}
    assert report["block_influence"]["layer1"][1] == pytest.approx(0.0, abs=1e-9)
    x = images(4, seed=3)
    with torch.no_grad():
        torch.testing.assert_close(student(x), teacher(x), rtol=1e-5, atol=1e-5)


def test_uniform_keeps_evenly_spaced_blocks_with_the_first():
    assert choose_blocks(torch.zeros(9), 3, "uniform") == [0, 4, 8]
    assert choose_blocks(torch.tensor([float("inf"), 0.1, 0.5, 0.2]), 2, "block_influence") == [0, 2]


def test_a_student_of_another_width_is_refused_with_one_line():
    with pytest.raises(ConfigError, match="no teacher counterpart"):
        init_from_teacher(resnet(8, name="resnet8x4"), resnet(20), images())


def test_a_run_cuts_the_student_from_the_trained_teacher_and_records_it(tmp_path):
    recipe = tiny_recipe(tmp_path, teacher={**tiny_recipe(tmp_path)["teacher"], "name": "resnet20", "kwargs": {}},
                         student={"name": "resnet8", "init": {"from_teacher": {"calibration_images": 32}}})
    recipe["train"]["epochs"] = 1
    task, cfg = build_recipe(recipe)
    summary = task.run(cfg, overwrite=True)
    stage = summary["stages"]["student-kd"]
    assert stage["init"]["blocks"] == {"layer1": [0], "layer2": [0], "layer3": [0]}
    assert 0 <= stage["init"]["init_accuracy"] <= 1


def test_init_from_teacher_needs_a_teacher(tmp_path):
    recipe = tiny_recipe(tmp_path, student={"name": "resnet8", "init": {"from_teacher": {}}}, method={"name": "ce"})
    del recipe["teacher"]
    with pytest.raises(ConfigError, match="needs a teacher"):
        build_recipe(recipe)
