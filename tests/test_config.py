"""Config: schema validation, one-line errors with suggestions, dotted overrides, every recipe loads."""
from pathlib import Path

import pytest

from distill.config import apply_overrides, parse_override
from distill.errors import ConfigError
from distill.tasks import build_recipe, load_recipe
from tests.helpers import ROOT, tiny_recipe

RECIPES = sorted((ROOT / "recipes").rglob("*.yaml"))


def build(tmp_path, **changes):
    return build_recipe(tiny_recipe(tmp_path, **changes))


def error_of(fn, *args, **kw) -> str:
    with pytest.raises(ConfigError) as info:
        fn(*args, **kw)
    message = str(info.value)
    assert "\n" not in message, "errors are one line"
    return message


def test_tiny_recipe_builds_typed_config(tmp_path):
    _, cfg = build(tmp_path)
    assert cfg.train.epochs == 2 and isinstance(cfg.train.lr, float)
    assert type(cfg.method).__name__ == "KDConfig" and cfg.method.temperature == 4.0
    assert cfg.teacher.train.optimizer == "adamw"


def test_unknown_key_names_it_and_suggests(tmp_path):
    recipe = tiny_recipe(tmp_path)
    recipe["train"]["epocs"] = 3
    msg = error_of(build_recipe, recipe)
    assert "train.epocs" in msg and "did you mean 'epochs'" in msg


def test_unknown_method_option_is_checked_against_that_methods_schema(tmp_path):
    msg = error_of(build, tmp_path, method={"name": "kd", "temprature": 2})
    assert "method.temprature" in msg and "temperature" in msg


def test_unknown_method_name_suggests(tmp_path):
    msg = error_of(build, tmp_path, method={"name": "kdd"})
    assert "method.name" in msg and "'kd'" in msg and "unknown method" in msg


def test_wrong_type_names_key_and_value(tmp_path):
    recipe = tiny_recipe(tmp_path)
    recipe["train"]["epochs"] = "many"
    msg = error_of(build_recipe, recipe)
    assert msg.startswith("train.epochs = 'many'") and "integer" in msg


def test_out_of_range_value(tmp_path):
    recipe = tiny_recipe(tmp_path)
    recipe["train"]["lr"] = -1
    assert "train.lr = -1.0: must be > 0" in error_of(build_recipe, recipe)
    recipe["train"]["lr"] = 0.1
    recipe["method"]["temperature"] = 0
    assert "method.temperature" in error_of(build_recipe, recipe)


def test_literal_choice_suggests(tmp_path):
    recipe = tiny_recipe(tmp_path)
    recipe["train"]["optimizer"] = "adam"
    msg = error_of(build_recipe, recipe)
    assert "train.optimizer = 'adam'" in msg and "'adamw'" in msg


def test_missing_required_key(tmp_path):
    recipe = tiny_recipe(tmp_path)
    del recipe["student"]
    assert "student: required key is missing" in error_of(build_recipe, recipe)


def test_model_kwargs_checked_at_load_time(tmp_path):
    msg = error_of(build, tmp_path, student={"name": "mlp", "kwargs": {"hiden": [4]}})
    assert "student.kwargs.hiden" in msg and "hidden" in msg
    msg = error_of(build, tmp_path, student={"name": "resnet21"})
    assert "student.name" in msg and "resnet" in msg


def test_teacher_required_by_kd(tmp_path):
    recipe = tiny_recipe(tmp_path)
    del recipe["teacher"]
    assert "needs a teacher" in error_of(build_recipe, recipe)
    recipe["method"] = {"name": "ce"}
    build_recipe(recipe)


def test_overrides_are_parsed_as_yaml():
    assert parse_override("train.epochs=3") == ("train.epochs", 3)
    assert parse_override("student.kwargs.channels=[4, 8]") == ("student.kwargs.channels", [4, 8])
    assert parse_override("teacher=null") == ("teacher", None)
    data = apply_overrides({"train": {"epochs": 1}}, ["train.epochs=5", "method.temperature=2"])
    assert data == {"train": {"epochs": 5}, "method": {"temperature": 2}}
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("train.epochs")


def test_float_accepts_yaml_exponent_strings(tmp_path):
    recipe = tiny_recipe(tmp_path)
    recipe["train"]["lr"] = "1e-3"  # YAML 1.1 reads this as a string
    _, cfg = build_recipe(recipe)
    assert cfg.train.lr == 1e-3


def test_override_through_a_value_is_an_error():
    with pytest.raises(ConfigError, match="is a value"):
        apply_overrides({"train": 3}, ["train.epochs=5"])


@pytest.mark.parametrize("path", RECIPES, ids=[str(p.relative_to(ROOT / "recipes")) for p in RECIPES])
def test_every_recipe_in_the_repo_loads(path):
    # Loading checks the schema only: data paths are resolved at run time, so this needs no ../shared.
    task, cfg = load_recipe(path)
    assert cfg.name
    assert task.run_dir(cfg).name == cfg.name
