"""The embedding task end to end on tiny in-process encoders: a run trains, exports a sentence-transformers folder
that loads back with the trained student's outputs, and stores the evaluation in its summary; a store replaces the
teacher exactly; resume equals an uninterrupted run; bad recipes fail at load with one line; the CLI trains and
caches."""
import pytest
import torch

from distill.cli import main
from distill.errors import ConfigError, DataError
from distill.eval.teacher_alignment import alignment_metrics
from distill.models.encoders import load_sentence_encoder
from distill.tasks import build_recipe
from distill.tasks.embedding import runner
from tests.embedding.conftest import DATA, embedding_recipe
from tests.helpers import write_recipe
from tests.llm.conftest import crash_then_resume

shared = pytest.mark.skipif(not (DATA / "sentence-classification").is_dir(), reason="../shared/data is absent")
TINY_EVAL = {"suites": ["transfer", "wordnet"], "data_dir": str(DATA), "max_examples": 20, "max_queries": 10,
             "max_documents": 30, "batch_size": 64}
WORDNET_EVAL = {**TINY_EVAL, "suites": ["wordnet"]}


def exported(summary, stage="student-leaf"):
    return load_sentence_encoder(summary["stages"][stage]["model"])


def same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@shared
def test_run_trains_exports_and_evaluates(assets, tmp_path):
    task, cfg = build_recipe(embedding_recipe(assets, tmp_path, eval=TINY_EVAL))
    summary = task.run(cfg)
    stage, model = summary["stages"]["student-leaf"], exported(summary)
    assert model.dim == 32 and model.projection is not None and model.normalize  # 16-d student in the 32-d space
    assert not same_weights(model, runner.attach_projection(load_sentence_encoder(assets["student"]), 32))
    # the exported folder gives back the trained student: its held-out figure is the one measured at the end of training
    held = runner.recipe_data(cfg, runner.suite_texts(cfg)).held.texts
    teacher = load_sentence_encoder(assets["teacher"]).encode(held).half().float()
    assert alignment_metrics(model.encode(held), teacher) == pytest.approx(stage["held_out"], abs=1e-5)
    result = stage["eval"]
    assert set(result["retrieval"]["wordnet"]["pairs"]) == {"student/student", "teacher/teacher", "student/teacher"}
    assert 0 < result["transfer"]["student"]["mean"] <= 1 and result["encoders"]["teacher"]["params"] > 0
    assert result["limits"] == {"max_examples": 20, "max_queries": 10, "max_documents": 30, "seed": 0}
    names = [row[0] for row in summary["table"]["rows"]]
    assert names == ["teacher", "student-leaf", "student-leaf q / teacher d"]
    assert "wordnet nDCG@10" in summary["table"]["columns"] and summary["stages"]["teacher"]["source"] == "once"


@shared
def test_training_from_a_store_equals_training_with_the_teacher_and_loads_none(assets, tmp_path, monkeypatch):
    live_task, live_cfg = build_recipe(embedding_recipe(assets, tmp_path / "live", eval=WORDNET_EVAL))
    live = live_task.run(live_cfg)
    store = {"path": str(tmp_path / "store")}
    task, cache_cfg = build_recipe(embedding_recipe(assets, tmp_path / "s", eval=WORDNET_EVAL, store=store))
    manifest = task.cache(cache_cfg)
    assert set(manifest["texts"]) == {"train", "eval", "suite"} and manifest["dtype"] == "float16"

    def no_teacher(*args, **kwargs):
        raise AssertionError("a teacher was loaded")
    monkeypatch.setattr(runner, "load_teacher", no_teacher)
    _, cfg = build_recipe(embedding_recipe(assets, tmp_path / "stored", eval=WORDNET_EVAL, store=store, teacher=None))
    stored = task.run(cfg)
    assert same_weights(exported(stored), exported(live))  # the run embeds its texts once, as the store did
    pairs = [s["stages"]["student-leaf"]["eval"]["retrieval"]["wordnet"]["pairs"] for s in (live, stored)]
    assert pairs[1]["teacher/teacher"] == pytest.approx(pairs[0]["teacher/teacher"], abs=0.05)  # float16 lookups
    assert stored["stages"]["teacher"]["source"] == "store" and stored["stages"]["teacher"]["params"] > 0


@pytest.mark.parametrize("native, expect", [(True, torch.bfloat16), (False, torch.float32)])
def test_teacher_dtype_auto_is_bfloat16_only_where_the_cpu_runs_it_natively(assets, tmp_path, monkeypatch, native,
                                                                            expect):
    import distill.models.hf as hf
    from distill.tasks.embedding.signal import load_teacher
    monkeypatch.setattr(hf, "fast_bfloat16", lambda: native)
    teacher = embedding_recipe(assets, tmp_path)["teacher"]
    _, cfg = build_recipe(embedding_recipe(assets, tmp_path, teacher={**teacher, "dtype": "auto"}))
    assert {p.dtype for p in load_teacher(cfg).parameters()} == {expect}


def test_a_store_of_other_data_or_another_teacher_is_refused(assets, tmp_path):
    store = {"path": str(tmp_path / "store")}
    task, cfg = build_recipe(embedding_recipe(assets, tmp_path, store=store))
    task.cache(cfg)
    other_data = embedding_recipe(assets, tmp_path, store=store, data={"paths": [assets["labelled"]]})
    other_teacher = embedding_recipe(assets, tmp_path, store=store, teacher={"path": assets["student"]})
    for recipe, field in ((other_data, "dataset_fingerprint"), (other_teacher, "teacher")):
        task, cfg = build_recipe(recipe)
        with pytest.raises(DataError) as info:
            task.run(cfg, overwrite=True)
        assert "\n" not in str(info.value) and f"does not match this recipe: {field}" in str(info.value)
    task, cfg = build_recipe(embedding_recipe(assets, tmp_path, store={"path": str(tmp_path / "none")}, teacher=None))
    with pytest.raises(DataError, match="run `distill cache` on this recipe first"):
        task.run(cfg, overwrite=True)


@shared
def test_a_store_cached_for_another_evaluation_trains_without_the_teacher_rows(assets, tmp_path):
    store = {"path": str(tmp_path / "store")}
    task, cfg = build_recipe(embedding_recipe(assets, tmp_path, store=store))  # cached without evaluation suites
    task.cache(cfg)
    evaluation = {**WORDNET_EVAL, "exclude_from_training": False}  # the same training texts, so the store fits
    task, cfg = build_recipe(embedding_recipe(assets, tmp_path, store=store, teacher=None, eval=evaluation))
    summary = task.run(cfg, overwrite=True)
    assert "another evaluation draw" in summary["warnings"][0]
    assert set(summary["stages"]["student-leaf"]["eval"]["retrieval"]["wordnet"]["pairs"]) == {"student/student"}


def test_resume_equals_an_uninterrupted_run(assets, tmp_path, monkeypatch):
    task, cfg = build_recipe(embedding_recipe(assets, tmp_path / "full"))
    full = task.run(cfg)
    assert full["stages"]["student-leaf"]["steps"] == 6  # 2 epochs of 3 batches: the crash below is in epoch 2
    _, cut = build_recipe(embedding_recipe(assets, tmp_path / "cut"))
    crash_then_resume(task, cut, monkeypatch, crash_at_step=5)
    resumed = task.run(cut, resume=True)  # a finished run resumes to the same summary
    assert same_weights(exported(resumed), exported(full))


@pytest.mark.parametrize("method,data,student", [
    ("contrastive_kd", "triples", None), ("margin_mse", "triples", None), ("listwise_kd", "lists", None),
    ("lelp", "labelled", None), ("sim_kd", "triples", {"config": {"num_hidden_layers": 1, "hidden_size": 16,
                                                                  "intermediate_size": 32}}),
    ("leaf", "sentences", {"static": {"dim": 8}}),
])
def test_every_batch_format_and_student_kind_trains(assets, tmp_path, method, data, student):
    changes = {"method": {"name": method}, "data": {"format": data, "paths": [assets[data]], "eval_fraction": 0.2},
               "train": {"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.01}}
    if student is not None:
        changes["student"] = student
    task, cfg = build_recipe(embedding_recipe(assets, tmp_path, **changes))
    summary = task.run(cfg)
    stage = summary["stages"][f"student-{method}"]
    assert stage["steps"] >= 2 and exported(summary, f"student-{method}").dim == 32
    assert "teacher_cosine" in stage["held_out"]


@pytest.mark.parametrize("dropout", [None, 0.0, 0.3])
def test_student_dropout_is_set_in_every_module_or_left_as_the_model_has_it(assets, tmp_path, dropout):
    from distill.tasks.skeleton import Run
    _, cfg = build_recipe(embedding_recipe(assets, tmp_path, student={"path": assets["student"], "dropout": dropout}))
    student = runner.EmbeddingRun(cfg, Run(cfg, resume=False, overwrite=True)).build_student(cfg.seed).train()
    probabilities = {m.p for m in student.modules() if isinstance(m, torch.nn.Dropout)}
    assert probabilities == ({0.1} if dropout is None else {dropout})  # 0.1: the tiny BERT's own config
    batch = student.tokenize(["a dog runs in the park", "python code"])
    with torch.no_grad():  # training-mode forwards: equal only without dropout
        runs = [student(batch["input_ids"], batch["attention_mask"]) for _ in range(2)]
    assert torch.equal(*runs) == (dropout == 0.0)


def test_baseline_trains_the_same_init_without_the_teacher(assets, tmp_path):
    changes = {"method": {"name": "contrastive_kd"}, "baseline": True,
               "data": {"format": "triples", "paths": [assets["triples"]], "eval_fraction": 0.2}}
    task, cfg = build_recipe(embedding_recipe(assets, tmp_path, **changes))
    summary = task.run(cfg)
    base, kd = (summary["stages"][f"student-{m}"] for m in ("info_nce", "contrastive_kd"))
    assert base["teacher_embeddings"] == "none" and kd["teacher_embeddings"] == "once"
    assert [r[0] for r in summary["table"]["rows"]] == ["teacher", "student-info_nce", "student-contrastive_kd"]


def test_a_teacher_free_method_trains_without_teacher_or_store(assets, tmp_path):
    changes = {"method": {"name": "info_nce"}, "teacher": None,
               "data": {"format": "triples", "paths": [assets["triples"]], "eval_fraction": 0.2}}
    task, cfg = build_recipe(embedding_recipe(assets, tmp_path, **changes))
    summary = task.run(cfg)
    assert "teacher" not in summary["stages"] and [r[0] for r in summary["table"]["rows"]] == ["student-info_nce"]
    assert exported(summary, "student-info_nce").dim == 16  # no teacher space to project into


def test_a_live_teacher_trains_like_embeddings_computed_once(assets, tmp_path):
    states = []
    for mode in ("once", "live"):
        teacher = {"path": assets["teacher"], "batch_size": 8, "embeddings": mode}
        # SGD: Adam's g / sqrt(v) turns the float16 rounding of near-zero gradients into whole steps
        train = {"epochs": 2, "batch_size": 8, "optimizer": "sgd", "lr": 0.5}
        task, cfg = build_recipe(embedding_recipe(assets, tmp_path / mode, teacher=teacher, train=train))
        summary = task.run(cfg)
        assert summary["stages"]["student-leaf"]["teacher_embeddings"] == mode
        states.append(exported(summary).state_dict())
    for key, value in states[0].items():  # the once-computed targets are float16-rounded: close, not equal
        torch.testing.assert_close(states[1][key], value, atol=1e-3, rtol=1e-2)


BAD = [
    ({"data": {"formt": "sentences", "paths": ["x"]}}, "data.formt: unknown key"),
    ({"data": {"format": "csv", "paths": ["x"]}}, "data.format = 'csv'"),
    ({"student": {"path": "a", "static": {"dim": 8}}}, "student: give exactly one of path"),
    ({"method": {"name": "kd"}}, "is a classification method"),
    ({"method": {"name": "margin_mse"}}, "trains on triples batches, which data.format = 'sentences' cannot give"),
    ({"baseline": True}, "baseline: true (info_nce) trains on pairs batches"),
    ({"eval": {"suites": ["sts"]}}, "eval.suites: unknown suite 'sts'"),
    ({"student": {"static": {"dim": 8}}, "teacher": None, "store": {"path": "s"}}, "init_from_teacher reads"),
    ({"student": {"config": {"num_hidden_layers": 1}, "projection_init": "least_squares"}}, "config and static"),
    ({"method": {"name": "contrastive_kd"}, "data": {"format": "pairs", "paths": ["x"]},
      "train": {"grad_accum": 2}}, "train.grad_accum = 2: pairs batches nest"),
    ({"teacher": None}, "needs a teacher"),
    ({"eval": {"max_examples": 5}}, "eval.max_examples = 5: must be >= 20"),
    ({"student": {"path": "a", "dropout": 1.5}}, "student.dropout = 1.5: must be <= 0.9"),
    ({"student": {"static": {"dim": 8}, "dropout": 0.0}}, "a static student has no dropout to set"),
]


@pytest.mark.parametrize("changes,message", BAD, ids=[m for _, m in BAD])
def test_bad_recipes_fail_at_load_with_one_line(assets, tmp_path, changes, message):
    with pytest.raises(ConfigError) as info:
        build_recipe(embedding_recipe(assets, tmp_path, **changes))
    assert "\n" not in str(info.value) and message in str(info.value)


def test_cli_train_and_cache(assets, tmp_path, capsys):
    store = str(tmp_path / "store")
    recipe = write_recipe(tmp_path / "r.yaml", embedding_recipe(assets, tmp_path / "runs", store={"path": store}))
    assert main(["cache", str(recipe)]) == 0
    assert main(["cache", "--verify", store]) == 0
    assert main(["train", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert f"store {store}: teacher embeddings of" in out and "checksums match" in out
    assert "student-leaf" in out and "held-out cos" in out and "report:" in out
    assert main(["train", str(recipe), "data.format=pairs"]) == 2  # leaf reads sentences; pairs need a TSV: one line
    assert capsys.readouterr().err.count("\n") == 1
