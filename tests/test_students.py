"""`distill students` in process: the ranked table and JSON, the teacher it needs, bad candidates refused."""
import json

import pytest

from distill.cli import main
from distill.tasks import build_recipe
from tests.helpers import tiny_recipe, write_recipe
from tests.test_cli import assert_user_error

TEACHER = {"name": "small_cnn", "kwargs": {"channels": [8, 16]}}
CANDIDATES = [
    {"name": "mlp", "kwargs": {"hidden": [16]}},
    {**TEACHER, "label": "teacher-copy", "init_from_teacher": 0.0},  # the teacher's own weights: distance 0
    {"name": "small_cnn", "kwargs": {"channels": [4, 8]}},
    {**TEACHER, "label": "near-teacher", "init_from_teacher": 0.05},
]


def recipe(tmp_path, **students):
    return tiny_recipe(tmp_path / "runs", teacher={**TEACHER, "random_init": True},
                       students={"batch_size": 32, "latency_runs": 2, "candidates": CANDIDATES, **students})


def students(tmp_path, capsys, data, *extra):
    code = main(["students", str(write_recipe(tmp_path / "recipe.yaml", data)), *extra])
    return code, capsys.readouterr()


def table_labels(out):
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("----"))
    return [line.split()[1] for line in lines[start + 1:] if line.strip() and not line.startswith("written")]


def test_students_prints_the_ranked_table_and_writes_the_json(tmp_path, capsys):
    code, out = students(tmp_path, capsys, recipe(tmp_path), "--batch-size", "24", "--seed", "3")
    assert code == 0, out.err
    report = json.loads((tmp_path / "runs" / "tiny-students.json").read_text())
    assert not (tmp_path / "runs" / "tiny").exists(), "the report sits beside the run folder, not in it"
    assert report["batch_size"] == 24 and report["seed"] == 3 and report["teacher"]["source"] == "random_init"
    rows = report["candidates"]
    assert [r["rank"] for r in rows] == [1, 2, 3, 4]
    assert rows[0]["label"] == "teacher-copy" and rows[0]["score"] == 0 and rows[0]["semantic_distance"] == 0
    assert rows[1]["label"] == "near-teacher"
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    for r in rows:
        assert r["score"] == pytest.approx(-(r["semantic_distance"] + r["relation_distance"]))
        assert r["params"] > 0 and r["latency_ms"] > 0 and r["spec"]["name"] in ("mlp", "small_cnn")
    assert {r["label"] for r in rows} == {"mlp(hidden=[16])", "teacher-copy", "small_cnn(channels=[4, 8])", "near-teacher"}
    assert "DisWOT score" in out.out and "latency ms/batch" in out.out and "small_cnn" in out.out.splitlines()[0]
    assert table_labels(out.out) == [r["label"].split()[0] for r in rows]


def test_the_same_seed_gives_the_same_ranking_and_scores(tmp_path, capsys):
    first = students(tmp_path, capsys, recipe(tmp_path))
    scores = [r["score"] for r in json.loads((tmp_path / "runs" / "tiny-students.json").read_text())["candidates"]]
    assert first[0] == 0 and students(tmp_path, capsys, recipe(tmp_path))[0] == 0
    again = [r["score"] for r in json.loads((tmp_path / "runs" / "tiny-students.json").read_text())["candidates"]]
    assert scores == again


def test_a_teacher_the_recipe_trains_is_needed_first_then_used(tmp_path, capsys):
    data = tiny_recipe(tmp_path / "runs", students={"batch_size": 16, "latency_runs": 1,
                                                    "candidates": [{"name": "mlp", "kwargs": {"hidden": [4]}},
                                                                   {"name": "mlp", "kwargs": {"hidden": [32]}}]})
    assert_user_error(*students(tmp_path, capsys, data), "no finished teacher stage", "distill train")
    assert main(["train", str(write_recipe(tmp_path / "train.yaml", data))]) == 0
    capsys.readouterr()
    code, out = students(tmp_path, capsys, data)
    assert code == 0, out.err
    report = json.loads((tmp_path / "runs" / "tiny-students.json").read_text())
    assert report["teacher"]["source"].startswith("trained")
    other_teacher = json.loads(json.dumps(data))
    other_teacher["teacher"]["kwargs"]["hidden"] = [16]
    assert_user_error(*students(tmp_path, capsys, other_teacher), "other teacher settings", "teacher.kwargs.hidden")


def test_the_official_setting_random_teacher_and_gaussian_init_runs(tmp_path, capsys):
    code, out = students(tmp_path, capsys, recipe(tmp_path, teacher="random", init="gaussian"))
    assert code == 0, out.err
    report = json.loads((tmp_path / "runs" / "tiny-students.json").read_text())
    assert report["teacher"]["source"] == "random init" and report["init"] == "gaussian"
    assert all(r["score"] <= 0 for r in report["candidates"])


@pytest.mark.parametrize("candidate, fragments", [
    ({"name": "small_cnn", "kwargs": {"chanels": [4]}}, ["students.candidates[0].kwargs.chanels", "did you mean 'channels'"]),
    ({"nme": "mlp"}, ["students.candidates[0].nme: unknown key"]),
    ({"name": "resnet9000"}, ["students.candidates[0].name", "resnet9000"]),
    ({"name": "mlp", "init_from_teacher": 0.1}, ["students.candidates[0].init_from_teacher", "architecture"]),
])
def test_a_bad_candidate_is_refused_at_load_with_one_line(tmp_path, capsys, candidate, fragments):
    data = recipe(tmp_path)
    data["students"]["candidates"] = [candidate]
    assert_user_error(*students(tmp_path, capsys, data), *fragments)
    assert not (tmp_path / "runs").exists()


def test_other_bad_input_is_one_line(tmp_path, capsys):
    assert_user_error(*students(tmp_path, capsys, tiny_recipe(tmp_path / "runs")), "no students.candidates")
    twice = recipe(tmp_path)
    twice["students"]["candidates"] = [CANDIDATES[0], dict(CANDIDATES[0])]
    assert_user_error(*students(tmp_path, capsys, twice), "students.candidates[1]", "distinct label")
    assert_user_error(*students(tmp_path, capsys, recipe(tmp_path), "--batch-size", "1"), "students.batch_size = 1")
    assert_user_error(*students(tmp_path, capsys, recipe(tmp_path), "students.init=xavier"), "students.init", "gaussian")
    assert_user_error(*students(tmp_path, capsys, recipe(tmp_path), "--seed", "-1"), "--seed")


def test_a_students_section_does_not_block_resuming_a_run(tmp_path, capsys):
    data = tiny_recipe(tmp_path / "runs")
    path = write_recipe(tmp_path / "r.yaml", data)
    assert main(["train", str(path)]) == 0
    data["students"] = {"candidates": [{"name": "mlp"}]}
    assert main(["train", str(write_recipe(tmp_path / "r.yaml", data)), "--resume"]) == 0
    capsys.readouterr()


def test_a_students_section_loads_into_typed_candidates(tmp_path):
    _, cfg = build_recipe(recipe(tmp_path))
    assert cfg.students.batch_size == 32 and cfg.students.teacher == "trained"
    assert cfg.students.candidates[1].init_from_teacher == 0.0 and cfg.students.candidates[0].kwargs == {"hidden": [16]}
