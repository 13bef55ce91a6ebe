"""Every CLI subcommand, in process, including the one-line errors for bad input."""
import json

import pytest

from distill.cli import main
from tests.helpers import tiny_recipe, write_recipe


def train(tmp_path, capsys, recipe, *extra):
    path = write_recipe(tmp_path / "recipe.yaml", recipe)
    code = main(["train", str(path), *extra])
    return code, capsys.readouterr()


def test_methods_lists_registered_methods(capsys):
    assert main(["methods", "--models", "--datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("ce ", "kd ", "resnet56", "digits", "fashion_mnist"):
        assert name in out


def test_train_writes_a_complete_run_folder(tmp_path, capsys):
    code, out = train(tmp_path, capsys, tiny_recipe(tmp_path / "runs", baseline=True), "train.epochs=1")
    assert code == 0, out.err
    run = tmp_path / "runs" / "tiny"
    assert "student-kd" in out.out and "student-ce" in out.out and "teacher" in out.out
    assert (run / "config.yaml").is_file() and "epochs: 1" in (run / "config.yaml").read_text()
    for stage in ("teacher", "student-ce", "student-kd"):
        assert (run / stage / "model.safetensors").is_file() and (run / stage / "done.json").is_file()
        records = [json.loads(line) for line in (run / stage / "metrics.jsonl").read_text().splitlines()]
        assert any(r["kind"] == "train" for r in records) and any(r["kind"] == "eval" for r in records)
        assert (run / stage / "checkpoints" / "latest.json").is_file()
        state = json.loads(next((run / stage / "checkpoints").glob("step-*/state.json")).read_text())
        assert {"rng", "optimizer", "epoch", "batch_in_epoch"} <= set(state)
    summary = json.loads((run / "summary.json").read_text())
    assert set(summary["stages"]) == {"teacher", "student-ce", "student-kd"}
    assert 0 <= summary["stages"]["student-kd"]["agreement"] <= 1
    html = (run / "report.html").read_text()
    assert html.count("data:image/png;base64") >= 4  # loss, accuracy, agreement, reliability
    assert "student-kd" in html


def test_report_rebuilds_from_the_run_folder(tmp_path, capsys):
    train(tmp_path, capsys, tiny_recipe(tmp_path / "runs"))
    report = tmp_path / "runs" / "tiny" / "report.html"
    report.unlink()
    assert main(["report", str(tmp_path / "runs" / "tiny")]) == 0
    assert report.is_file() and "<table>" in report.read_text()
    assert main(["report", str(tmp_path)]) == 2


def test_validate(tmp_path, capsys):
    good = write_recipe(tmp_path / "good.yaml", tiny_recipe(tmp_path))
    bad_recipe = tiny_recipe(tmp_path)
    bad_recipe["train"]["epochs"] = 0
    bad = write_recipe(tmp_path / "bad.yaml", bad_recipe)
    assert main(["validate", str(good)]) == 0
    assert main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"ok      {good}" in out and "train.epochs = 0: must be >= 1" in out
    assert not (tmp_path / "tiny").exists(), "validate does no work"


def assert_user_error(code, out, *fragments, exit_code=2):
    assert code == exit_code
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.err
    assert "Traceback" not in out.err
    for fragment in fragments:
        assert fragment in lines[0]


def test_missing_dataset_path(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path / "runs", data={"name": "fashion_mnist", "root": str(tmp_path / "nowhere")})
    assert_user_error(*train(tmp_path, capsys, recipe), "data.root", "nowhere", "does not exist")


def test_teacher_checkpoint_of_another_architecture(tmp_path, capsys):
    code, _ = train(tmp_path, capsys, tiny_recipe(tmp_path / "runs"))
    assert code == 0
    recipe = tiny_recipe(tmp_path / "runs2", teacher={"name": "mlp", "kwargs": {"hidden": [16, 16]},
                                                      "checkpoint": str(tmp_path / "runs" / "tiny" / "teacher")})
    assert_user_error(*train(tmp_path, capsys, recipe), "teacher checkpoint", "does not match")


def test_student_with_a_different_number_of_classes(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path / "runs", imports=["tests.plugins"], student={"name": "five_logits"})
    assert_user_error(*train(tmp_path, capsys, recipe), "student outputs (5,) logits", "10 classes")


def test_nan_loss_names_step_and_part_and_keeps_the_checkpoint(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path / "runs", imports=["tests.plugins"], method={"name": "nan_at", "step": 5})
    recipe["train"]["checkpoint_every"] = 2
    code, out = train(tmp_path, capsys, recipe)
    assert_user_error(code, out, "step 5", "'kd'", exit_code=3)
    latest = json.loads((tmp_path / "runs" / "tiny" / "student-nan_at" / "checkpoints" / "latest.json").read_text())
    assert latest["step"] == 4


def test_existing_run_needs_resume_or_overwrite(tmp_path, capsys):
    recipe = tiny_recipe(tmp_path / "runs")
    assert train(tmp_path, capsys, recipe)[0] == 0
    assert_user_error(*train(tmp_path, capsys, recipe), "--resume", "--overwrite")
    assert train(tmp_path, capsys, recipe, "--overwrite")[0] == 0
    code, out = train(tmp_path, capsys, recipe, "--resume")  # finished stages are skipped
    assert code == 0 and "student-kd" in out.out


def test_unknown_override_key_fails_before_work(tmp_path, capsys):
    code, out = train(tmp_path, capsys, tiny_recipe(tmp_path / "runs"), "train.epocs=3")
    assert_user_error(code, out, "train.epocs", "did you mean 'epochs'")
    assert not (tmp_path / "runs").exists()


def test_methods_lists_divergences_with_their_options(capsys):
    assert main(["methods", "--divergences"]) == 0
    out = capsys.readouterr().out
    assert "divergences (8)" in out and "beta=0.5" in out and "mu=0.5" in out


def cache(tmp_path, capsys, recipe):
    code = main(["cache", str(write_recipe(tmp_path / "cache.yaml", recipe))])
    return code, capsys.readouterr()


def test_cache_reuses_the_teacher_of_an_existing_run_and_names_a_real_conflict(tmp_path, capsys):
    """`distill cache` on a run folder used to fail with "--resume: the recipe differs" though no --resume was given."""
    recipe = tiny_recipe(tmp_path / "runs")
    recipe["data"]["augment"] = "none"
    assert train(tmp_path, capsys, recipe)[0] == 0
    teacher_done = tmp_path / "runs" / "tiny" / "teacher" / "done.json"
    stamp = teacher_done.stat().st_mtime_ns
    with_store = {**recipe, "store": {"path": str(tmp_path / "store")}, "method": {"name": "dkd"}}
    code, out = cache(tmp_path, capsys, with_store)  # another student side: the teacher is reused as it is
    assert code == 0, out.err
    assert teacher_done.stat().st_mtime_ns == stamp and (tmp_path / "store" / "manifest.json").is_file()
    other_teacher = json.loads(json.dumps(with_store))
    other_teacher["teacher"]["train"]["epochs"] = 3
    code, out = cache(tmp_path, capsys, other_teacher)
    assert code == 2 and out.err.count("\n") == 1 and "--resume" not in out.err
    assert "distill cache" in out.err and "teacher.train.epochs: 2 -> 3" in out.err and "another name" in out.err
