"""`distill export --format onnx` on tiny runs: the ONNX graph of each student, run by onnxruntime on inputs the
exporter never saw and at other batch (and sequence) sizes, matches the PyTorch model rebuilt here from the
stage's files; the figures land in summary.json; the CLI's one-line errors (no run, causal-LM run, unknown
student, missing onnxruntime, an output that does not match)."""
import json
import sys

import pytest
import torch
from safetensors.torch import load_file

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")
pytest.importorskip("onnxscript")

from distill.cli import main  # noqa: E402
from distill.errors import DistillError  # noqa: E402
from distill.export import onnx as onnx_export  # noqa: E402
from distill.models.registry import create_model  # noqa: E402
from distill.tasks import build_recipe  # noqa: E402
from tests.embedding.conftest import assets, embedding_recipe  # noqa: E402,F401  (the assets fixture)
from tests.helpers import tiny_recipe  # noqa: E402
from tests.models.tiny_encoders import TEXTS  # noqa: E402

STUDENT = {"name": "small_cnn", "kwargs": {"channels": [4, 8], "convs_per_stage": 1}}  # conv, BN, pool, linear


@pytest.fixture(scope="module")
def cls_run(tmp_path_factory):
    """A tiny digits run: an MLP teacher, a CE baseline and a KD student (small CNNs)."""
    out = tmp_path_factory.mktemp("cls")
    task, cfg = build_recipe(tiny_recipe(out, student=STUDENT, baseline=True))
    task.run(cfg)
    return out / "tiny"


@pytest.fixture(scope="module")
def cls_exported(cls_run):
    return onnx_export.export_run(cls_run, runs=2)


def onnx_out(path, **inputs):
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(sess.run(None, {k: v.numpy() for k, v in inputs.items()})[0])


def rebuilt_student(stage_dir):
    """The stage's model rebuilt from model.json and model.safetensors by hand."""
    card = json.loads((stage_dir / "model.json").read_text())
    model = create_model(card["name"], card["kwargs"], num_classes=card["num_classes"],
                         in_channels=card["in_channels"], image_size=card["image_size"])
    model.load_state_dict(load_file(str(stage_dir / "model.safetensors")))
    return model.eval(), card


def test_classification_students_match_pytorch_at_any_batch(cls_run, cls_exported):
    assert set(cls_exported["students"]) == {"student-ce", "student-kd"}
    for stage, r in cls_exported["students"].items():
        assert r["ok"] and r["max_abs_diff"] < 1e-4 and r["path"] == str(cls_run / stage / "model.onnx")
        model, card = rebuilt_student(cls_run / stage)
        from sklearn.datasets import load_digits
        pixels = torch.tensor(load_digits().images[:7], dtype=torch.float32).unsqueeze(1) * (255 / 16)
        real = ((pixels / 255 - card["mean"][0]) / card["std"][0])  # real digits, normalised as in training
        for images in (real, real[:1], torch.randn(64, 1, 8, 8)):  # batch sizes the export never saw
            with torch.no_grad():
                expected = model(images)
            got = onnx_out(r["path"], images=images)
            assert got.shape == expected.shape and (got - expected).abs().max().item() < 1e-4


def test_figures_go_into_the_summary_and_the_report(cls_run, cls_exported):
    summary = json.loads((cls_run / "summary.json").read_text())
    assert summary["export"]["format"] == "onnx" and summary["export"]["opset"] == onnx_export.DEFAULT_OPSET
    for r in summary["export"]["students"].values():
        for runtime in ("torch", "onnx"):
            assert set(r["latency_ms"][runtime]) == {"1", "32"} and min(r["latency_ms"][runtime].values()) > 0
    import onnx
    meta = {p.key: p.value for p in onnx.load(str(cls_run / "student-kd" / "model.onnx")).metadata_props}
    assert json.loads(meta["distill.card"]) == json.loads((cls_run / "student-kd" / "model.json").read_text())


def test_one_student_is_re_exported_and_the_others_kept(cls_run, cls_exported, tmp_path, capsys):
    assert main(["export", str(cls_run), "--student", "kd", "--out", str(tmp_path), "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "student-kd" in out and "speed-up b32" in out and (tmp_path / "student-kd.onnx").is_file()
    students = json.loads((cls_run / "summary.json").read_text())["export"]["students"]
    assert students["student-kd"]["path"] == str(tmp_path / "student-kd.onnx") and "student-ce" in students
    assert "Exported (onnx)" in (cls_run / "report.html").read_text()


def test_embedding_students_transformer_and_static(assets, tmp_path):  # noqa: F811
    from distill.models.encoders import load_sentence_encoder
    recipe = embedding_recipe(assets, tmp_path, baseline=False,
                              train={"epochs": 1, "batch_size": 8, "optimizer": "adamw", "lr": 0.01})
    for name, student in (("bert", {"path": assets["student"]}), ("static", {"static": {"dim": 8}})):
        task, cfg = build_recipe({**recipe, "name": name, "student": student})
        task.run(cfg)
        export = onnx_export.export_run(tmp_path / name, runs=1)
        r = export["students"]["student-leaf"]
        assert r["ok"] and r["max_abs_diff"] < 1e-4
        encoder = load_sentence_encoder(tmp_path / name / "student-leaf" / "model")
        for texts in (TEXTS, TEXTS[:1], TEXTS * 3 + ["", "a much longer text than the others, about teachers"]):
            tokens = encoder.tokenize(texts)  # new texts: other batch sizes and lengths, padding, an empty text
            expected = encoder.encode(texts, batch_size=64)
            got = onnx_out(r["path"], input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"])
            assert got.shape == (len(texts), 32) and (got - expected).abs().max().item() < 1e-4
            assert torch.allclose(got.norm(dim=1), torch.ones(len(texts)), atol=1e-5)  # the normalisation is in it


def fake_run(folder, task, stages):
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps({"name": folder.name, "task": task, "stages": stages}))
    return str(folder)


def test_bad_runs_fail_with_one_line(cls_run, tmp_path, capsys):
    assert main(["export", str(tmp_path)]) == 2
    assert "no summary.json" in capsys.readouterr().err
    lm = fake_run(tmp_path / "lm", "causal_lm", {"teacher": {}, "student-kd": {}})
    assert main(["export", lm]) == 2
    err = capsys.readouterr().err
    assert "causal_lm runs are not exported" in err and len(err.strip().splitlines()) == 1
    assert main(["export", str(cls_run), "--student", "dkd"]) == 2
    assert "has no such student; it has student-ce, student-kd" in capsys.readouterr().err


def test_missing_onnxruntime_is_one_line(cls_run, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now raises ImportError
    with pytest.raises(DistillError, match=r"needs onnx, onnxruntime and onnxscript: pip install 'distill\[onnx\]'"):
        onnx_export.export_run(cls_run)


def test_an_output_that_differs_fails_the_command(cls_run, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(onnx_export, "max_abs_diff", lambda ex, run: 0.25)
    assert main(["export", str(cls_run), "--student", "ce", "--out", str(tmp_path), "--runs", "1"]) == 1
    assert "FAILED  student-ce: ONNX output differs from PyTorch by 2.50e-01 (> --atol 0.0001)" in capsys.readouterr().err
