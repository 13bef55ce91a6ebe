"""Sentence-embedding distillation (issue 14): teacher all-mpnet-base-v2 (109M, 768-d); students on the same
evaluations (recipes/embedding/mpnet-to-small-leaf.yaml's: 500 examples per transfer split, 300 queries and
1,000 documents per retrieval suite, the texts the evaluation reads kept out of training), in one run.

Arms:
  teacher       all-mpnet-base-v2, its embeddings from the recipe's store (`distill cache`, once)
  minilm        all-MiniLM-L6-v2 as it is (384-d: what a user would pick instead; no shared space with the teacher)
  minilm+ls     MiniLM + the least-squares 384 -> 768 map fitted on training texts, not trained (LEAF's start)
  minilm-leaf   the recipe: MiniLM + projection, LEAF
  small-leaf    a random-init 4-layer, 384-wide MPNet (the teacher's architecture scaled down), LEAF, 1 epoch
  static-leaf   a 256-d token table averaged over tokens, started as model2vec's (the teacher's output for each
                token alone, PCA, SIF weights; the PCA's inverse as the projection), then LEAF
                (small-leaf and static-leaf train on the recipe's first, 24,000-pair WordNet draw: CPU time)
  model2vec     model2vec.distill(teacher, pca_dims=256), in its own venv (it pins transformers < 5.4)

Speed is sentences/s of every model on the same 64 SST-2 sentences, the models taking turns in one process
(model2vec's is measured in its own process against static-leaf, and scaled by static-leaf's ratio here).

    python benchmarks/embedding.py [--m2v-python /work/m2v-venv/bin/python] [--out runs/bench-embedding]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

import common

RECIPE = common.ROOT / "recipes" / "embedding" / "mpnet-to-small-leaf.yaml"
SMALL = {"num_hidden_layers": 4, "hidden_size": 384, "intermediate_size": 1536, "num_attention_heads": 12}
# The two trained-from-scratch arms keep the 24,000-pair WordNet draw and its store (the recipe's before it
# grew to 48,000): CPU time. The recipe's store copies every row of that one (store.reuse).
FIRST_DRAW = {"data": {"max_per_path": 24000}, "store": {"path": "store/mpnet-leaf"}}
ARMS = {  # name -> changes to the recipe
    "minilm-leaf": {},
    "small-leaf": {"student": {"config": SMALL, "dropout": 0.0}, "train": {"lr": 5.0e-4, "epochs": 1},  # 1 epoch: CPU
                   **FIRST_DRAW},
    # the table starts as model2vec.distill's (the teacher's output per token, PCA 256, SIF). In probes, lr 0.002
    # beat 0.01 at 3 epochs (wordnet nDCG@10 53.3 vs 50.9), and 6 epochs beat 3 on python-docs (52.6 vs 50.4)
    "static-leaf": {"student": {"static": {"dim": 256, "teacher_table": "outputs", "sif": 1.0e-4}},
                    "train": {"lr": 0.002, "epochs": 6, "batch_size": 64, "weight_decay": 0.0}, **FIRST_DRAW},
}


def arm_recipe(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    recipe = json.loads(json.dumps(base))
    for key, value in changes.items():
        recipe[key] = value if key == "student" else {**recipe[key], **value}
    return recipe


def ensure_store() -> None:
    """`distill cache` the first draw's store, then the recipe's copying its rows (each once: a store is kept
    while its manifest is there, and a cut caching resumes)."""
    first = [f"data.max_per_path={FIRST_DRAW['data']['max_per_path']}", f"store.path={FIRST_DRAW['store']['path']}"]
    stores = (FIRST_DRAW["store"]["path"], yaml.safe_load(RECIPE.read_text())["store"]["path"])
    for store, overrides in zip(stores, (first, [f"store.reuse=[{FIRST_DRAW['store']['path']}]"])):
        manifest = common.ROOT / store / "manifest.json"
        if manifest.is_file() and json.loads(manifest.read_text()).get("complete"):
            continue  # `distill cache` would load mpnet only to find it done (a changed eval: the run warns)
        subprocess.run([sys.executable, "-m", "distill", "cache", str(RECIPE), *overrides], cwd=common.ROOT, check=True)


def baselines(out: Path) -> tuple[dict[str, Any], Any]:
    """Evaluations of MiniLM as it is and with the least-squares map (the recipe's student before training),
    against the store's teacher rows; also returns the least-squares student."""
    from distill.tasks import load_recipe
    from distill.tasks.embedding.runner import EmbeddingRun, limits_of
    from distill.tasks.skeleton import Run
    from distill.models.encoders import load_sentence_encoder
    from distill.eval.embeddings import evaluate_embeddings
    _, cfg = load_recipe(RECIPE, [f"output_dir={out}", "name=baselines", "progress=false"])
    ctx = EmbeddingRun(cfg, Run(cfg, resume=False, overwrite=True))
    plain = load_sentence_encoder(cfg.student.path).eval()
    fitted = ctx.build_student(cfg.seed + 1).eval()  # the LEAF run's init, same seed
    figures = {}
    for name, model in (("minilm", plain), ("minilm+ls", fitted)):
        figures[name] = evaluate_embeddings(model.encode, ctx.teacher_encode, suites=cfg.eval.suites,
                                            limits=limits_of(cfg), data_dir=cfg.eval.data_dir, student_model=model,
                                            progress=False)
    return figures, fitted


def speeds(models: dict[str, Any], texts: list[str], rounds: int = 5) -> dict[str, float]:
    """Median sentences/s per model, the models taking turns each round (so machine load hits all alike)."""
    import torch
    with torch.no_grad():
        for m in models.values():
            m.encode(texts)
        runs: dict[str, list[float]] = {n: [] for n in models}
        for _ in range(rounds):
            for name, m in models.items():
                start = time.perf_counter()
                m.encode(texts)
                runs[name].append(len(texts) / (time.perf_counter() - start))
    return {n: statistics.median(v) for n, v in runs.items()}


def model2vec_arm(python: str, static_dir: Path, out: Path) -> dict[str, Any]:
    teacher = yaml.safe_load(RECIPE.read_text())["teacher"]["path"]
    done = subprocess.run([python, str(common.ROOT / "benchmarks" / "embedding_model2vec.py"), "--teacher", teacher,
                           "--out", str(out / "model2vec-256"), "--static", str(static_dir)],
                          cwd=common.ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"model2vec arm failed: {done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def row_of(name: str, ev: dict[str, Any], who: str = "student") -> dict[str, Any]:
    """One arm's figures from an evaluate_embeddings result."""
    enc = ev["encoders"][who]
    row = {"dim": enc["dim"], "params": enc.get("params"), "bytes": enc.get("bytes"),
           "transfer": ev["transfer"][who], "ndcg": {}, "asym_ndcg": {}, "recall@1": {}}
    for suite, r in ev["retrieval"].items():
        row["ndcg"][suite] = r["pairs"][f"{who}/{who}"]["ndcg@10"]
        row["recall@1"][suite] = r["pairs"][f"{who}/{who}"]["recall@1"]
        pair = r["pairs"].get(f"{who}/teacher", {})
        if "ndcg@10" in pair:
            row["asym_ndcg"][suite] = pair["ndcg@10"]
    return row


def collect(out: Path, m2v_python: str | None) -> dict[str, Any]:
    from distill.data import embedding_sets as sets
    from distill.eval.embeddings import THROUGHPUT_SENTENCES
    from distill.models.encoders import load_sentence_encoder
    ensure_store()
    base = yaml.safe_load(RECIPE.read_text())
    summaries = {name: common.train_subprocess(out, name, arm_recipe(base, ch)) for name, ch in ARMS.items()}
    evals = {name: common.student_stage(s)["eval"] for name, s in summaries.items()}
    base_evals, fitted = baselines(out)
    rows = {"teacher": row_of("teacher", evals["minilm-leaf"], "teacher")}
    rows.update({n: row_of(n, e) for n, e in base_evals.items()})
    rows.update({n: row_of(n, e) for n, e in evals.items()})
    for name, s in summaries.items():
        stage = common.student_stage(s)
        rows[name].update(train_seconds=stage["train_seconds"], steps=stage["steps"],
                          train_texts=s["data"]["train_texts"], peak_rss_bytes=s["peak_rss_bytes"])
    models = {"teacher": load_sentence_encoder(base["teacher"]["path"]).eval(),
              "minilm": load_sentence_encoder(base["student"]["path"]).eval(), "minilm+ls": fitted}
    models.update({n: load_sentence_encoder(common.student_stage(s)["model"]).eval() for n, s in summaries.items()})
    data_dir = base.get("eval", {}).get("data_dir", str(common.SHARED / "data"))
    speed = speeds(models, sets.throughput_sentences(data_dir, THROUGHPUT_SENTENCES))
    for name, value in speed.items():
        rows[name]["sentences_per_s"] = value
    if m2v_python:
        m2v = model2vec_arm(m2v_python, Path(common.student_stage(summaries["static-leaf"])["model"]), out)
        rows["model2vec"] = row_of("model2vec", m2v["eval"])
        rows["model2vec"].update(params=m2v["size"]["params"], bytes=m2v["size"]["bytes"],
                                 distill_seconds=m2v["distill_seconds"], version=m2v["model2vec_version"])
        # its own process timed it against static-leaf: carry that ratio over to this process's scale
        ratio = m2v["sentences_per_s"]["model2vec"] / m2v["sentences_per_s"]["static"]
        rows["model2vec"]["sentences_per_s"] = ratio * speed["static-leaf"]
        rows["model2vec"]["speed_vs_static_leaf"] = ratio
    return rows


def targets(rows: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, computed from the rows."""
    t, leaf = rows["teacher"], rows["minilm-leaf"]
    suites = list(t["ndcg"])
    out = {"transfer_kept": leaf["transfer"]["mean"] / t["transfer"]["mean"],
           "ndcg_kept": {s: leaf["ndcg"][s] / t["ndcg"][s] for s in suites},
           "asym_vs_teacher": {s: leaf["asym_ndcg"][s] / t["ndcg"][s] for s in suites},
           "speedup": leaf["sentences_per_s"] / t["sentences_per_s"],
           "leaf_over_ls_asym": {s: leaf["asym_ndcg"][s] - rows["minilm+ls"]["asym_ndcg"][s] for s in suites}}
    if "model2vec" in rows:
        st, mv = rows["static-leaf"], rows["model2vec"]
        out["static_minus_model2vec"] = {"transfer": st["transfer"]["mean"] - mv["transfer"]["mean"],
                                         **{s: st["ndcg"][s] - mv["ndcg"][s] for s in suites}}
    return out


def print_tables(rows: dict[str, Any], goals: dict[str, Any]) -> None:
    suites = list(rows["teacher"]["ndcg"])
    body = []
    for name, r in rows.items():
        size = f"{r['params'] / 1e6:.1f}M" if r.get("params") else "-"
        body.append([name, r["dim"], size, f"{r.get('sentences_per_s', float('nan')):.0f}",
                     f"{rows[name].get('sentences_per_s', 0) / rows['teacher']['sentences_per_s']:.1f}x",
                     f"{100 * r['transfer']['mean']:.1f}",
                     *[f"{100 * r['ndcg'][s]:.1f}" for s in suites],
                     *[f"{100 * r['asym_ndcg'][s]:.1f}" if s in r["asym_ndcg"] else "-" for s in suites],
                     f"{r['train_seconds']:.0f}" if "train_seconds" in r else "-"])
    print(common.table(["model", "dim", "params", "sent/s", "speed", "transfer %",
                        *[f"nDCG {s}" for s in suites], *[f"q->teacher {s}" for s in suites], "train s"], body))
    print(json.dumps(goals, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=common.ROOT / "runs" / "bench-embedding")
    parser.add_argument("--m2v-python", help="a Python with model2vec installed (its own venv); omit to skip that arm")
    args = parser.parse_args()
    rows = collect(args.out, args.m2v_python)
    goals = targets(rows)
    print_tables(rows, goals)
    command = "python benchmarks/embedding.py" + (f" --m2v-python {args.m2v_python}" if args.m2v_python else "")
    common.record("embedding", {"rows": rows, "targets": goals, "recipe": str(RECIPE.relative_to(common.ROOT))}, command)


if __name__ == "__main__":
    main()
