"""`distill sweep`: trials are run folders trained from a store built once, pruned trials are kept and
marked, the best recipe loads and lies in the space, and bad keys stop before any work."""
import json
import sys

import optuna
import pytest
import yaml

import distill.sweep
from distill.cli import main
from distill.errors import ConfigError
from distill.tasks import build_recipe, load_recipe
from distill.tasks.sweep import default_params, search_space
from distill.train.observe import watch_evaluations
from tests.helpers import tiny_recipe, write_recipe


def sweep_recipe(tmp_path, **sweep):
    recipe = tiny_recipe(tmp_path / "runs")
    recipe["data"] = {"name": "digits", "train_subset": 400, "test_subset": 64}
    recipe["sweep"] = {"trials": 3, "validation": 0.2, "pruner": "none", **sweep}
    return write_recipe(tmp_path / "r.yaml", recipe)


def folder(tmp_path):
    return tmp_path / "runs" / "tiny-sweep"


def test_trials_are_run_folders_trained_from_one_store_and_the_best_recipe_loads(tmp_path, capsys):
    evaluations = []
    with watch_evaluations(lambda stage, epoch, metrics, final: evaluations.append(stage)):
        assert main(["sweep", str(sweep_recipe(tmp_path))]) == 0
    out = capsys.readouterr().out
    sweep = folder(tmp_path)
    summary = json.loads((sweep / "summary.json").read_text())
    assert [t["state"] for t in summary["trials"]] == ["complete"] * 3
    # the teacher trained once (2 epochs = 2 evaluations), not once per trial; every trial read the store
    assert evaluations.count("teacher") == 2 and evaluations.count("student-kd") == 3 * 2
    assert (sweep / "teacher" / "teacher" / "done.json").is_file() and (sweep / "store" / "manifest.json").is_file()
    for i in range(3):
        trial = sweep / f"trial-{i:03d}"
        assert (trial / "student-kd" / "done.json").is_file() and not (trial / "teacher").exists()
        run = json.loads((trial / "summary.json").read_text())
        assert run["stages"]["student-kd"]["teacher_logits"] == "store"
        assert run["config"]["data"]["validation"] == 0.2 and run["config"]["teacher"] is None
        assert f"trial-{i:03d} ({i + 1}/3)" in out
    # trial 0 runs the recipe's own values; the others differ
    values = [t["values"] for t in summary["trials"]]
    assert values[0] == {"method.temperature": 4.0, "method.kd_weight": 0.9, "method.ce_weight": 0.1, "train.lr": 0.05}
    assert values[1] != values[0] and values[2] != values[1]
    # best.yaml: a plain recipe with the best trial's values, inside the space, equal to what that trial ran
    best = summary["best"]
    assert best["value"] == max(t["value"] for t in summary["trials"])
    _, cfg = load_recipe(sweep / "best.yaml")
    ran = yaml.safe_load((sweep / best["folder"] / "config.yaml").read_text())
    space = summary["space"]
    assert cfg.sweep is None and cfg.name == "tiny-best" and cfg.teacher is not None and cfg.data.validation is None
    for key, value in best["values"].items():
        section, field = key.split(".")
        assert getattr(getattr(cfg, section), field) == value == ran[section][field]
        assert space[key]["low"] <= value <= space[key]["high"]
    assert "best recipe" in out and "tiny-best" in out and (sweep / "report.html").is_file()


class PruneLaterTrials(optuna.pruners.BasePruner):
    """Prunes every trial but the first at its first report (what a median pruner does to weak trials)."""

    def prune(self, study, trial):
        return trial.number > 0


def test_pruned_trials_are_marked_and_their_folders_kept(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(distill.sweep, "build_pruner", lambda optuna, spec: PruneLaterTrials())
    assert main(["sweep", str(sweep_recipe(tmp_path)), "train.epochs=3"]) == 0
    summary = json.loads((folder(tmp_path) / "summary.json").read_text())
    assert [t["state"] for t in summary["trials"]] == ["complete", "pruned", "pruned"]
    assert summary["best"]["number"] == 0
    pruned = folder(tmp_path) / "trial-001"
    evals = [json.loads(x) for x in (pruned / "student-kd" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in evals if r["kind"] == "eval"] == [1]  # stopped after its first epoch
    assert not (pruned / "student-kd" / "done.json").exists()
    assert json.loads((pruned / "trial.json").read_text())["state"] == "pruned"
    assert "pruned@1" in capsys.readouterr().out


def test_resume_runs_the_remaining_trials_with_new_values(tmp_path, capsys):
    path = str(sweep_recipe(tmp_path))
    assert main(["sweep", path, "--trials", "2"]) == 0
    assert main(["sweep", path, "--trials", "2"]) == 2  # the folder exists
    assert "--resume" in capsys.readouterr().err
    assert main(["sweep", path, "--trials", "3", "--resume"]) == 0
    trials = json.loads((folder(tmp_path) / "summary.json").read_text())["trials"]
    assert len(trials) == 3 and trials[2]["values"] not in (trials[0]["values"], trials[1]["values"])


@pytest.mark.parametrize("override, message", [
    ("sweep.params.method.temprature={low: 1, high: 4}",
     "sweep.params: method.temprature: unknown key (did you mean 'temperature'?)"),
    ("sweep.params.train.lr={low: 0, high: 1}", "sweep.params.train.lr.low = 0.0: must be > 0.0"),
    ("sweep.params.train.schedule={choices: [cosine, linear]}", "sweep.params.train.schedule.choices[1] = 'linear'"),
    ("sweep.params.train.epochs={low: 1, high: 2.5}", "train.epochs is an integer"),
    ("sweep.params.teacher.kwargs.hidden={choices: [[8]]}", "sweep.params.teacher.kwargs.hidden: teacher cannot be swept"),
])
def test_a_bad_search_space_stops_before_any_work_with_one_line(tmp_path, capsys, override, message):
    assert main(["sweep", str(sweep_recipe(tmp_path)), override]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not folder(tmp_path).exists()


def test_the_space_is_checked_when_the_recipe_loads_and_defaults_follow_the_method(tmp_path):
    recipe = yaml.safe_load(sweep_recipe(tmp_path).read_text())
    recipe["sweep"]["params"] = {"method": {"kd_weigth": {"low": 0.1, "high": 1}}}  # nested form of method.kd_weigth
    with pytest.raises(ConfigError, match="method.kd_weigth: unknown key"):
        build_recipe(recipe)
    recipe["sweep"]["params"] = {}
    recipe["method"] = {"name": "pld"}  # temperature, ce_weight 0 (not searched), no kd_weight
    _, cfg = build_recipe(recipe)
    assert list(default_params(cfg)) == ["method.temperature", "train.lr"]
    recipe["method"] = {"name": "ce"}
    _, cfg = build_recipe(recipe)
    assert [p.key for p in search_space(cfg)] == ["train.lr"]


def test_without_optuna_the_sweep_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` raises ImportError
    assert main(["sweep", str(sweep_recipe(tmp_path))]) == 2
    assert capsys.readouterr().err == "error: distill sweep needs Optuna, an optional dependency: pip install distill[sweep]\n"
    assert not folder(tmp_path).exists()


def test_a_diverging_trial_fails_and_the_sweep_goes_on(tmp_path, capsys):
    path = sweep_recipe(tmp_path, trials=2, include_defaults=False, params={"train.lr": {"choices": [1.0e12]}})
    assert main(["sweep", str(path)]) == 2  # both diverged: nothing to call best
    out, err = capsys.readouterr()
    trials = json.loads((folder(tmp_path) / "summary.json").read_text())["trials"]
    assert [t["state"] for t in trials] == ["failed", "failed"] and "not finite" in trials[1]["error"]
    assert "trial-001 (2/2)  failed" in out and err.count("\n") == 1 and "no trial finished (2 failed)" in err
