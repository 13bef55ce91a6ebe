"""`distill students` on a causal-LM recipe: a copy of the teacher ranks first, other vocabularies are refused."""
import json

import torch

from distill.cli import main
from distill.tasks import build_recipe
from distill.tasks.causal_lm.students import measure, scoring_batch
from tests.helpers import write_recipe
from tests.llm.conftest import STUDENT, lm_recipe, tiny_llama
from tests.test_cli import assert_user_error

CANDIDATES = [
    {"config": dict(STUDENT), "label": "small"},
    {"init": {"from_teacher": {"num_layers": 1}}},
    {"init": {"from_teacher": {"num_layers": 2}}, "label": "all-layers"},  # the teacher's 2 layers: a copy
]


def recipe(assets, tmp_path, candidates=CANDIDATES, **students):
    return lm_recipe(assets, tmp_path / "runs", students={"batch_size": 4, "max_tokens": 40, "latency_runs": 1,
                                                          "candidates": candidates, **students})


def students(tmp_path, capsys, data, *extra):
    code = main(["students", str(write_recipe(tmp_path / "recipe.yaml", data)), *extra])
    return code, capsys.readouterr()


def test_lm_candidates_are_ranked_and_a_copy_of_the_teacher_is_first(llm_assets, tmp_path, capsys):
    code, out = students(tmp_path, capsys, recipe(llm_assets, tmp_path))
    assert code == 0, out.err
    report = json.loads((tmp_path / "runs" / "tiny-lm-students.json").read_text())
    rows = report["candidates"]
    assert [r["label"] for r in rows][0] == "all-layers" and rows[0]["score"] == 0
    assert {r["label"] for r in rows} == {"small", "all-layers", "from_teacher(num_layers=1, select=block_influence)"}
    assert report["tokens"] == 40 and 1 < report["classes"] <= 40 and report["batch_size"] == 4
    assert all(r["score"] < 0 for r in rows[1:]) and "all-layers" in out.out


def test_lm_semantic_maps_use_the_head_gradient_of_the_batch_targets(llm_assets, tmp_path):
    """Against autograd: the LM head's weight gradient of the mean CE over the drawn positions, rows of their targets."""
    _, cfg = build_recipe(recipe(llm_assets, tmp_path))
    model = tiny_llama(len(llm_assets["tokenizer"]), tie=False).eval()
    data = torch.randint(0, len(llm_assets["tokenizer"]), (6, 12)).numpy()
    batch, positions, labels = scoring_batch(data, cfg.students, 0, 2)
    classes = labels.unique()
    hidden, maps = measure(model, batch, positions, labels, classes, llm_assets["tokenizer"])
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    loss = torch.nn.functional.cross_entropy(logits[positions[:, 0], positions[:, 1]], labels)
    loss.backward()
    torch.testing.assert_close(maps.float(), model.lm_head.weight.grad[classes], rtol=1e-4, atol=1e-6)
    assert hidden.shape == (40, model.config.hidden_size)


def test_lm_candidates_of_another_vocabulary_or_with_contradictory_specs_are_refused(xtok_assets, tmp_path, capsys):
    other = recipe(xtok_assets, tmp_path, candidates=[{"path": xtok_assets["xteacher"], "label": "other-vocab"}])
    assert_user_error(*students(tmp_path, capsys, other), "students.candidates[0]", "not the teacher's")
    both = recipe(xtok_assets, tmp_path, candidates=[{"init": {"from_teacher": {"num_layers": 1}}, "config": {"hidden_size": 8}}])
    assert_user_error(*students(tmp_path, capsys, both), "students.candidates[0].init.from_teacher", "drop")
    no_teacher = recipe(xtok_assets, tmp_path)
    no_teacher.pop("teacher")
    no_teacher["method"] = {"name": "lm_ce"}
    no_teacher["student"] = {"path": xtok_assets["teacher"]}
    assert_user_error(*students(tmp_path, capsys, no_teacher), "teacher.path")
