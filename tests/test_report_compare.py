"""`distill report RUN RUN ...`: the comparison page of several runs. Fabricated summaries check the ranking
and every number of the winner sentence against hand computation (classification, causal LM, embedding); a
real tiny run checks the figures are read from what a run writes; the page's structure is checked by parsing
it, and (when Chromium is installed) rendered to a PNG."""
import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from distill.cli import main
from distill.errors import DistillError
from distill.report.compare import comparison
from distill.report.compare_page import build_comparison
from distill.tasks import build_recipe
from tests.helpers import tiny_recipe


def fake_run(root, name, stages, task="classification", dataset="digits", method="kd"):
    folder = root / name
    folder.mkdir(parents=True)
    summary = {"name": name, "task": task, "dataset": dataset, "method": method, "stages": stages}
    (folder / "summary.json").write_text(json.dumps(summary))
    return str(folder)


def cls(acc, params, latency):
    return {"accuracy": acc, "params": params, "latency_ms": latency}


TEACHER = cls(0.90, 1_000_000, 1.0)


@pytest.fixture
def cls_runs(tmp_path):
    """a: teacher, CE baseline 80 %, KD 85 %; b: the same teacher, DKD 87.4 % at 0.08 ms; c: no teacher."""
    return [fake_run(tmp_path / "runs", "a", {"teacher": TEACHER, "student-ce": cls(0.80, 10_000, 0.1),
                                              "student-kd": cls(0.85, 10_000, 0.1)}),
            fake_run(tmp_path / "runs", "b", {"teacher": TEACHER, "student-dkd": cls(0.874, 12_000, 0.08)}, method="dkd"),
            fake_run(tmp_path / "runs", "c", {"student-fitnet": cls(0.70, 20_000, 0.2)}, method="fitnet")]


def test_ranking_and_winner_sentence_classification(cls_runs):
    c = comparison(cls_runs)
    assert [r.label for r in c["students"]] == ["student-dkd", "student-kd", "student-ce", "student-fitnet"]
    # 87.4 / 90 = 97.11 %; 1.0 / 0.08 = 12.5x; 87.4 - 80 = +7.4 points (a's CE: b has no baseline); 87.4 - 85 = +2.4
    assert c["sentence"] == ("student-dkd keeps 97.1 % of the teacher's accuracy (87.40 % vs 90.00 %) at 12.5x speed-up, "
                             "+7.4 points over the baseline student-ce, +2.4 points over the runner-up student-kd.")
    columns, rows = c["table"]
    by_model = {r[1]: dict(zip(columns, r)) for r in rows}
    assert by_model["student-kd"]["of teacher"] == "94.4 %" and by_model["student-kd"]["vs baseline"] == "+5.0 pt"
    assert by_model["student-kd"]["speed-up"] == "10.0x" and by_model["student-ce (baseline)"]["vs baseline"] == "-"
    assert by_model["student-dkd"]["vs baseline"] == "+7.4 pt"  # b has no baseline: a's, as in the sentence
    # c has no teacher: its student is measured against the first teacher (70 / 90 = 77.8 %); 70 - 80 = -10 points
    assert by_model["student-fitnet"]["of teacher"] == "77.8 %" and by_model["student-fitnet"]["vs baseline"] == "-10.0 pt"
    assert [r[0] for r in rows] == ["ref", "1", "2", "3", "4"] and rows[0][2] == "a, b"  # a's and b's teacher: one row


def test_same_stage_names_are_told_apart_by_run_and_each_student_has_its_own_teacher(tmp_path):
    runs = [fake_run(tmp_path, n, {"teacher": cls(t, 1_000_000, 1.0), "student-kd": cls(acc, 10_000, 0.1)})
            for n, t, acc in (("t4", 0.90, 0.83), ("t8", 0.92, 0.86))]
    c = comparison(runs)
    assert [r.label for r in c["students"]] == ["student-kd (t8)", "student-kd (t4)"]
    # against its own run's teacher: 86 / 92 = 93.5 % (not 86 / 90)
    assert c["sentence"] == ("student-kd (t8) keeps 93.5 % of the teacher's accuracy (86.00 % vs 92.00 %) at 10.0x "
                             "speed-up, +3.0 points over the runner-up student-kd (t4).")
    columns, rows = c["table"]
    assert [r[1:3] for r in rows] == [["teacher", "t4"], ["teacher", "t8"], ["student-kd", "t8"], ["student-kd", "t4"]]
    assert [r[4] for r in rows[2:]] == ["93.5 %", "92.2 %"]  # 83 / 90


def test_one_teacher_in_several_runs_is_one_row_with_the_median_latency(tmp_path):
    """The same teacher timed 1.0, 1.2 and (on a busy machine) 190 ms: 1.2 ms, so 1.2 / 0.1 = 12.0x for every run."""
    runs = [fake_run(tmp_path, n, {"teacher": cls(0.9, 1_000_000, lat), f"student-{m}": cls(acc, 10_000, 0.1)})
            for n, m, lat, acc in (("r1", "kd", 1.0, 0.85), ("r2", "dkd", 190.0, 0.86), ("r3", "dist", 1.2, 0.84))]
    c = comparison(runs)
    columns, rows = c["table"]
    assert rows[0][:3] == ["ref", "teacher", "all 3 runs"] and rows[0][7] == "1.200 ms"
    assert [r[8] for r in rows[1:]] == ["12.0x"] * 3 and " at 12.0x speed-up" in c["sentence"]


def test_perplexity_is_ranked_lower_first(tmp_path):
    lm = lambda ppl, params: {"perplexity": ppl, "params": params}  # noqa: E731
    runs = [fake_run(tmp_path, "lm", {"teacher": lm(10.0, 8e6), "student-lm_ce": lm(16.0, 1e6), "student-kd": lm(12.5, 1e6),
                                      "student-jsd": lm(13.0, 1e6)}, task="causal_lm")]
    c = comparison(runs)
    assert [r.label for r in c["students"]] == ["student-kd", "student-jsd", "student-lm_ce"]
    # 12.5 / 10 = 1.25x; 8e6 / 1e6 = 8.0x fewer parameters (no latency measured); 16 - 12.5 = 3.5; 13 - 12.5 = 0.5
    assert c["sentence"] == ("student-kd is at 1.25x the teacher's perplexity (12.50 vs 10.00) at 8.0x fewer parameters, "
                             "3.5 lower than the baseline student-lm_ce, 0.5 lower than the runner-up student-jsd.")


def emb(suites, student, teacher, speed=(100.0, 10.0)):
    """An embedding stage's figures: nDCG@10 per suite for student/student and teacher/teacher."""
    retrieval = {s: {"pairs": {"student/student": {"ndcg@10": a}, "teacher/teacher": {"ndcg@10": b}}}
                 for s, a, b in zip(suites, student, teacher)}
    return {"params": 1000, "eval": {"retrieval": retrieval, "encoders": {"student": {"sentences_per_s": speed[0]},
                                                                         "teacher": {"sentences_per_s": speed[1]}}}}


def test_embedding_ranks_on_the_suites_every_student_has(tmp_path):
    runs = [fake_run(tmp_path, "e1", {"teacher": {"params": 20000}, "student-leaf": emb(["a", "b"], [0.5, 0.7], [0.6, 0.8])},
                     task="embedding"),
            fake_run(tmp_path, "e2", {"teacher": {"params": 20000},
                                      "student-info_nce": emb(["a"], [0.55], [0.6], speed=(50.0, 10.0))}, task="embedding")]
    c = comparison(runs)
    assert c["headline"].name == "nDCG@10 (a)"  # suite b is e1's only: means over suite a
    # leaf 0.5 vs info_nce 0.55 on a: the baseline wins; 0.55 / 0.6 = 91.7 %; (1000/10) / (1000/50) = 5.0x
    assert [r.label for r in c["students"]] == ["student-info_nce", "student-leaf"]
    assert c["sentence"] == ("student-info_nce keeps 91.7 % of the teacher's nDCG@10 (a) (55.00 % vs 60.00 %) at 5.0x "
                             "speed-up, +5.0 points over the runner-up student-leaf.")


def test_mixed_tasks_and_bad_folders_are_refused(cls_runs, tmp_path, capsys):
    lm = fake_run(tmp_path, "lm", {"teacher": {"perplexity": 3.0, "params": 1}}, task="causal_lm")
    assert main(["report", cls_runs[0], lm]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: distill report: runs of different tasks cannot be compared (classification: ")
    assert len(err.splitlines()) == 1
    with pytest.raises(DistillError, match="matches no run folder"):
        comparison([str(tmp_path / "nothing-*")])
    with pytest.raises(DistillError, match="no summary.json"):
        comparison([cls_runs[0], str(tmp_path)])


class Page(HTMLParser):
    """The ranking table's rows, the winner paragraph and the embedded images of a page."""

    def __init__(self):
        super().__init__()
        self.rows, self.images, self.winner, self._in = [], [], "", None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "table" and attrs.get("id") == "ranking":
            self._in = "table"
        elif tag == "tr" and self._in == "table":
            self.rows.append([])
        elif tag == "p" and attrs.get("id") == "winner":
            self._in = "winner"
        elif tag == "img":
            self.images.append(attrs["src"])

    def handle_endtag(self, tag):
        if (tag, self._in) in (("table", "table"), ("p", "winner")):
            self._in = None

    def handle_data(self, data):
        if self._in == "table" and self.rows:
            self.rows[-1].append(data)
        elif self._in == "winner":
            self.winner += data


def test_glob_writes_one_page_with_table_sentence_and_plots(cls_runs, tmp_path, capsys):
    out = tmp_path / "cmp" / "report.html"
    assert main(["report", str(tmp_path / "runs" / "*"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    page = Page()
    page.feed(out.read_text())
    assert page.winner in printed and page.winner.startswith("student-dkd keeps 97.1 %")
    assert [r[1] for r in page.rows[1:]] == ["teacher", "student-dkd", "student-kd", "student-ce (baseline)",
                                             "student-fitnet"]
    assert len(page.images) == 2  # accuracy vs params, vs latency
    for src in page.images:
        assert base64.b64decode(src.removeprefix("data:image/png;base64,"))[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def real_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("real")
    task, cfg = build_recipe(tiny_recipe(out, baseline=True))
    task.run(cfg)
    return out / "tiny"


def test_a_real_run_is_read_as_its_summary_says(real_run, tmp_path, capsys):
    stages = json.loads((real_run / "summary.json").read_text())["stages"]
    other = fake_run(tmp_path, "other", {"student-dkd": cls(0.05, 100, 1.0)})  # ranks last
    c = comparison([str(real_run), other])
    ce, kd, t = stages["student-ce"], stages["student-kd"], stages["teacher"]
    # ranked best first; a tie keeps the stages' order (student-ce was trained first)
    win, second = (("student-kd", kd), ("student-ce", ce)) if kd["accuracy"] > ce["accuracy"] else \
        (("student-ce", ce), ("student-kd", kd))
    assert [r.label for r in c["students"]] == [win[0], second[0], "student-dkd"]
    keep = 100 * win[1]["accuracy"] / t["accuracy"]
    speed = t["latency_ms"] / win[1]["latency_ms"]
    assert c["sentence"].startswith(f"{win[0]} keeps {keep:.1f} % of the teacher's accuracy "
                                    f"({100 * win[1]['accuracy']:.2f} % vs {100 * t['accuracy']:.2f} %) at {speed:.1f}x")
    assert main(["report", str(real_run)]) == 0  # one run folder: its own report, as before
    assert capsys.readouterr().out.strip() == str(real_run / "report.html")


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_the_page_renders_in_headless_chromium(cls_runs, tmp_path):
    page, _ = build_comparison(cls_runs, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={shot}", "--window-size=1100,900", page.resolve().as_uri()],
                   check=True, capture_output=True, timeout=120)
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1100, 900) and len(data) > 20_000  # a page with text and two plots, not a blank one
