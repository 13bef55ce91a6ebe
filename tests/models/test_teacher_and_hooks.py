"""The frozen teacher wrapper, feature taps and the built-in model zoo."""
import pytest
import torch
from torch import nn

from distill.data.source import BatchSourceHooks
from distill.errors import ConfigError
from distill.models import MODELS, FeatureTaps, FrozenTeacher, create_model
from distill.train.config import TrainConfig
from distill.train.core import Trainer
from distill.train.protocols import ObjectiveHooks


class Parent(nn.Module):
    def __init__(self, student, teacher):
        super().__init__()
        self.student, self.teacher = student, teacher


def small_net():
    return nn.Sequential(nn.Linear(4, 8), nn.Dropout(0.5), nn.BatchNorm1d(8), nn.Linear(8, 3))


def test_teacher_stays_in_eval_mode_under_parent_train():
    teacher = FrozenTeacher(small_net())
    parent = Parent(small_net(), teacher)
    parent.train()
    assert parent.student.training
    assert not teacher.training and not any(m.training for m in teacher.modules())
    x = torch.randn(5, 4)
    torch.testing.assert_close(teacher(x), teacher(x))  # dropout off: deterministic
    stats = teacher.model[2].running_mean.clone()
    teacher(torch.randn(5, 4) * 10)
    assert torch.equal(stats, teacher.model[2].running_mean)  # batch-norm statistics frozen


def test_teacher_has_no_gradients():
    teacher = FrozenTeacher(small_net())
    assert all(not p.requires_grad for p in teacher.parameters())
    out = teacher(torch.randn(2, 4, requires_grad=True))
    assert not out.requires_grad


def test_trainer_refuses_teacher_parameters_in_the_optimizer():
    net = small_net()
    teacher = FrozenTeacher(net)
    for p in net.parameters():
        p.requires_grad_(True)  # someone unfroze it by hand
    batches = type("B", (BatchSourceHooks,), {"__len__": lambda self: 1, "epoch": lambda self, e, s=0: iter([])})()
    objective = type("O", (ObjectiveHooks,), {"__call__": lambda self, b: {}})()
    with pytest.raises(RuntimeError, match="frozen"):
        Trainer(stage_dir="unused", modules={"student": net}, objective=objective, batches=batches,
                cfg=TrainConfig(), frozen=(teacher,), progress=False)


def test_trainer_names_the_missing_hooks_of_a_plain_objective():
    batches = type("B", (BatchSourceHooks,), {"__len__": lambda self: 1, "epoch": lambda self, e, s=0: iter([])})()
    with pytest.raises(TypeError, match=r"lacks count, extra_state, .*\(subclass distill.train.protocols.ObjectiveHooks"):
        Trainer(stage_dir="unused", modules={"student": small_net()}, objective=lambda b: {}, batches=batches,
                cfg=TrainConfig(), progress=False)


def test_feature_taps_capture_output_and_input():
    model = create_model("resnet8", num_classes=10)
    with FeatureTaps(model, ["layer3", "fc:input", "layer2.0.conv1"]) as taps:
        logits = model(torch.randn(2, 3, 32, 32))
        assert taps["layer3"].shape == (2, 64, 8, 8)
        assert taps["fc:input"].shape == (2, 64)
        assert taps["layer2.0.conv1"].shape == (2, 32, 16, 16)
        torch.testing.assert_close(model.fc(taps["fc:input"]), logits)
    assert not model.fc._forward_hooks  # removed on exit


def test_feature_taps_fire_through_the_frozen_teacher():
    model = create_model("resnet8", num_classes=10)
    teacher = FrozenTeacher(model)
    taps = FeatureTaps(teacher.model, ["layer1"])
    teacher(torch.randn(1, 3, 32, 32))
    assert taps["layer1"].shape == (1, 16, 32, 32)


def test_unknown_feature_path_suggests():
    model = create_model("resnet8", num_classes=10)
    with pytest.raises(ConfigError, match="did you mean 'layer3'"):
        FeatureTaps(model, ["layer_3"])


@pytest.mark.parametrize("name", ["mlp", "small_cnn", "resnet8", "resnet20", "resnet8x4", "wrn_16_2", "mobilenetv2"])
def test_builtin_models_forward_and_backward(name):
    model = create_model(name, num_classes=7, in_channels=3, image_size=32)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 7)
    out.sum().backward()


def test_published_parameter_counts():
    """CIFAR-100 counts as in the CRD / mdistiller tables (0.28M, 0.86M, 1.23M, 7.43M, 2.25M)."""
    counts = {n: sum(p.numel() for p in create_model(n, num_classes=100).parameters())
              for n in ("resnet20", "resnet56", "resnet8x4", "resnet32x4", "wrn_40_2")}
    assert abs(counts["resnet20"] - 278_324) < 2000
    assert abs(counts["resnet56"] - 861_620) < 2000
    assert abs(counts["resnet32x4"] - 7_433_860) < 5000
    assert 2.2e6 < counts["wrn_40_2"] < 2.3e6
    assert 1.2e6 < counts["resnet8x4"] < 1.25e6


def test_external_models_need_their_package():
    try:
        import timm  # noqa: F401
        pytest.skip("timm installed")
    except ImportError:
        with pytest.raises(ConfigError, match="timm"):
            create_model("timm:resnet18", num_classes=10)


def test_model_registry_lists_the_cifar_family():
    for name in ("resnet8", "resnet20", "resnet32", "resnet56", "resnet110", "resnet8x4", "resnet32x4", "wrn_16_2", "wrn_40_2"):
        assert name in MODELS
