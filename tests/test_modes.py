"""distill.modes: modules in a mode for a block, every submodule's own mode given back."""
import pytest
import torch
from torch import nn

from distill.modes import eval_mode, module_mode, set_dropout


def wrapper_with_frozen_part() -> nn.Module:
    model = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5), nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5)))
    model.train()
    model[2].eval()  # a frozen part kept in eval mode inside a training model
    return model


def modes(model: nn.Module) -> list[bool]:
    return [m.training for m in model.modules()]


def test_eval_mode_sets_every_submodule_and_restores_each_own_mode():
    model = wrapper_with_frozen_part()
    before = modes(model)
    with eval_mode(model):
        assert not any(modes(model))
    assert modes(model) == before
    assert model.training and not model[2].training  # model.train(True) would have flipped the frozen part


def test_module_mode_train_and_restore_on_error_and_none_skipped():
    model, other = wrapper_with_frozen_part(), nn.Linear(2, 2).eval()
    before = modes(model)
    with pytest.raises(RuntimeError), module_mode(True, model, None, other):
        assert all(modes(model)) and other.training
        raise RuntimeError("inside the block")
    assert modes(model) == before and not other.training


def test_set_dropout_reaches_every_dropout_and_zero_makes_training_forwards_deterministic():
    model = wrapper_with_frozen_part().train()
    x = torch.randn(64, 2)
    assert not torch.equal(model(x), model(x))  # p = 0.5: two training forwards differ
    assert set_dropout(model, 0.0) == 2
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.0, 0.0]
    assert torch.equal(model(x), model(x)) and model.training  # the mode is left alone
