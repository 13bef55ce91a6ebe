"""The `distill` command line: parse, build, run. Each subcommand is a function tests call.

    distill train RECIPE [key=value ...] [--resume] [--overwrite]
    distill cache RECIPE [key=value ...] [--overwrite]  |  distill cache --verify STORE
    distill validate RECIPE [RECIPE ...]
    distill methods [--models] [--datasets] [--divergences]
    distill report RUN_DIR  |  distill report RUN_DIR RUN_DIR ... (or 'runs/*') [--out report.html]
    distill export RUN_DIR [--student NAME] [--format onnx] [--out DIR] [--opset N] [--runs N] [--atol X]
    distill eval-embeddings MODEL [--teacher PATH] [--suites ...] [--max-examples N] [--out FILE.json]
    distill students RECIPE [key=value ...] [--batch-size N] [--seed S]
    distill sweep RECIPE [key=value ...] [--trials N] [--resume] [--overwrite]
"""
from __future__ import annotations

import argparse
import glob
import sys
from typing import Callable

from distill.data.images import DATASETS
from distill.data.store import read_manifest, verify_store
from distill.errors import DistillError
from distill.eval import embeddings as emb
from distill.export.onnx import DEFAULT_OPSET, FORMATS, export_run, format_export
from distill.losses import DIVERGENCES
from distill.methods import METHODS
from distill.models import MODELS
from distill.report.compare_page import build_comparison, format_comparison
from distill.report.html import build_report
from distill.report.sweep import format_sweep
from distill.sweep import sweep
from distill.tasks import load_recipe
from distill.tasks.ranking import format_ranking

try:  # distill.models.encoders is being written (issue 14); until it lands, eval-embeddings says so in one line
    from distill.models.encoders import load_sentence_encoder
except ModuleNotFoundError as exc:
    if exc.name != "distill.models.encoders":
        raise
    load_sentence_encoder = None

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def command(name: str) -> Callable:
    def add(fn: Callable[[argparse.Namespace], int]) -> Callable:
        COMMANDS[name] = fn
        return fn
    return add


@command("train")
def cmd_train(args: argparse.Namespace) -> int:
    """Run a recipe (with dotted key=value overrides)."""
    task, cfg = load_recipe(args.recipe, args.overrides)
    summary = task.run(cfg, resume=args.resume, overwrite=args.overwrite)
    if summary is None:  # non-zero ranks of a distributed run
        return 0
    print(task.format_summary(summary))
    report = build_report(task.run_dir(cfg))
    print(f"\nrun folder: {task.run_dir(cfg)}\nreport:     {report}")
    return 0


@command("cache")
def cmd_cache(args: argparse.Namespace) -> int:
    """Run the teacher once over a recipe's data into a teacher-signal store (or --verify a store)."""
    if args.verify:
        problems = verify_store(args.target)
        for line in problems:
            print(f"FAILED  {line}")
        if not problems:
            m = read_manifest(args.target)
            shards = sum(len(v) for v in m["splits"].values())
            tokens = sum(s["tokens"] for v in m["splits"].values() for s in v)
            print(f"ok      {args.target}: {shards} shards, {tokens:,} positions, checksums match")
        return 1 if problems else 0
    task, cfg = load_recipe(args.target, args.overrides)
    manifest = task.cache(cfg, overwrite=args.overwrite)
    print(task.describe_store(cfg, manifest))
    return 0


@command("validate")
def cmd_validate(args: argparse.Namespace) -> int:
    """Check recipes against the schema without doing any work."""
    failed = 0
    for path in args.recipes:
        try:
            load_recipe(path, args.set or [])
            print(f"ok      {path}")
        except DistillError as exc:
            failed += 1
            print(f"FAILED  {path}: {exc}")
    return 1 if failed else 0


@command("methods")
def cmd_methods(args: argparse.Namespace) -> int:
    """List registered methods (and models / datasets / divergences) with one-line docs."""
    sections = [("methods", METHODS)]
    if args.divergences:
        sections.append(("divergences", DIVERGENCES))
    if args.models:
        sections.append(("models", MODELS))
    if args.datasets:
        sections.append(("datasets", DATASETS))
    for title, registry in sections:
        entries = list(registry.entries())
        print(f"{title} ({len(entries)}):")
        width = max(len(e.name) for e in entries)
        for e in entries:
            tag = f"[{e.obj.task}] " if title == "methods" else ""
            options = ", ".join(f"{k}={v}" for k, v in e.config().options().items()) if title == "divergences" else ""
            print(f"  {e.name.ljust(width)}  {tag}{e.summary}" + (f"  [{options}]" if options else ""))
    return 0


@command("report")
def cmd_report(args: argparse.Namespace) -> int:
    """(Re)build a run folder's report.html, or compare several runs (paths or globs) in one page (--out)."""
    if len(args.run_dirs) == 1 and args.out is None and not glob.has_magic(args.run_dirs[0]):
        print(build_report(args.run_dirs[0]))
        return 0
    path, comparison = build_comparison(args.run_dirs, args.out or "report.html")
    print(format_comparison(comparison))
    print(f"\nreport: {path}")
    return 0


@command("export")
def cmd_export(args: argparse.Namespace) -> int:
    """Export a run's students (ONNX), check them with onnxruntime against PyTorch and time both."""
    export = export_run(args.run_dir, student=args.student, fmt=args.format, out=args.out, opset=args.opset,
                        runs=args.runs, atol=args.atol)
    print(format_export(export))
    bad = [s for s, r in export["students"].items() if not r["ok"]]
    for stage in bad:
        print(f"FAILED  {stage}: ONNX output differs from PyTorch by {export['students'][stage]['max_abs_diff']:.2e} "
              f"(> --atol {args.atol:g})", file=sys.stderr)
    print(f"\nsummary: {args.run_dir}/summary.json (export)\nreport:  {build_report(args.run_dir)}")
    return 1 if bad else 0


@command("students")
def cmd_students(args: argparse.Namespace) -> int:
    """Rank the recipe's candidate students without training (DisWOT): params, latency, score."""
    size = [f"students.batch_size={args.batch_size}"] if args.batch_size is not None else []  # checked by the schema
    task, cfg = load_recipe(args.recipe, list(args.overrides) + size)
    report = task.rank_students(cfg, seed=args.seed)
    print(format_ranking(report))
    print(f"\nwritten: {report['path']}")
    return 0


@command("eval-embeddings")
def cmd_eval_embeddings(args: argparse.Namespace) -> int:
    """Evaluate a sentence encoder (and its teacher): transfer, retrieval, throughput, size."""
    limits = emb.Limits.from_counts(args.max_examples, args.max_queries, args.max_documents, args.seed)
    suites = emb.check_request([args.model] + ([args.teacher] if args.teacher else []), args.suites, args.data)
    if load_sentence_encoder is None:
        raise DistillError("eval-embeddings: distill.models.encoders (the sentence-encoder loader) is not built yet")
    student = load_sentence_encoder(args.model)
    teacher = load_sentence_encoder(args.teacher) if args.teacher else None
    result = emb.evaluate_embeddings(student.encode, teacher.encode if teacher else None, suites=suites, limits=limits,
                                     data_dir=args.data, student_model=student, teacher_model=teacher)
    result.update(model=args.model, teacher=args.teacher)
    print(emb.format_embedding_report(result))
    if args.out:
        emb.write_result(args.out, result)
        print(f"\nwritten: {args.out}")
    return 0


@command("sweep")
def cmd_sweep(args: argparse.Namespace) -> int:
    """Search recipe keys with Optuna (trials are run folders, pruned early); print and write the best recipe."""
    trials = [f"sweep.trials={args.trials}"] if args.trials is not None else []  # checked by the schema
    summary = sweep(args.recipe, list(args.overrides) + trials, resume=args.resume, overwrite=args.overwrite)
    print("\n" + format_sweep(summary))
    with open(summary["best_recipe"]) as f:
        print(f"\nbest recipe ({summary['best_recipe']}):\n{f.read()}")
    print(f"sweep folder: {summary['folder']}\nreport:       {summary['report']}")
    return 0


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="distill", description="Knowledge distillation toolkit for PyTorch.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help=cmd_train.__doc__)
    t.add_argument("recipe", help="YAML recipe")
    t.add_argument("overrides", nargs="*", help="dotted overrides, e.g. train.epochs=3 method.temperature=2")
    t.add_argument("--resume", action="store_true", help="continue the run from its last checkpoint")
    t.add_argument("--overwrite", action="store_true", help="delete an existing run folder of the same name first")
    c = sub.add_parser("cache", help=cmd_cache.__doc__)
    c.add_argument("target", help="a recipe with teacher and store sections, or a store folder with --verify")
    c.add_argument("overrides", nargs="*", help="dotted overrides")
    c.add_argument("--verify", action="store_true", help="check every shard against the manifest")
    c.add_argument("--overwrite", action="store_true", help="start the store again instead of resuming it")
    v = sub.add_parser("validate", help=cmd_validate.__doc__)
    v.add_argument("recipes", nargs="+")
    v.add_argument("--set", action="append", help="an override to apply while validating (repeatable)")
    m = sub.add_parser("methods", help=cmd_methods.__doc__)
    m.add_argument("--models", action="store_true", help="also list models")
    m.add_argument("--divergences", action="store_true", help="also list token divergences and their options")
    m.add_argument("--datasets", action="store_true", help="also list datasets")
    r = sub.add_parser("report", help=cmd_report.__doc__)
    r.add_argument("run_dirs", nargs="+", metavar="run_dir", help="a run folder; several (or a quoted glob) to compare")
    r.add_argument("--out", default=None, help="the comparison page (default: ./report.html); one run folder "
                   "without --out rebuilds its own report.html")
    x = sub.add_parser("export", help=cmd_export.__doc__)
    x.add_argument("run_dir", help="a finished classification or embedding run folder")
    x.add_argument("--student", default=None, help="one student (kd or student-kd; default: every student)")
    x.add_argument("--format", default="onnx", choices=FORMATS)
    x.add_argument("--out", default=None, help="write <out>/<student>.onnx (default: <run>/<student>/model.onnx)")
    x.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset (default: %(default)s)")
    x.add_argument("--runs", type=int, default=30, help="timed forwards per batch size (default: %(default)s)")
    x.add_argument("--atol", type=float, default=1e-4, help="largest |ONNX - PyTorch| accepted (default: %(default)s)")
    e = sub.add_parser("eval-embeddings", help=cmd_eval_embeddings.__doc__)
    e.add_argument("model", help="a sentence-transformers folder (the student)")
    e.add_argument("--teacher", default=None, help="a second encoder: adds teacher/teacher and student/teacher rows")
    e.add_argument("--suites", nargs="+", default=list(emb.SUITES), help=" ".join(emb.SUITES))
    e.add_argument("--max-examples", type=int, default=emb.Limits.max_examples, help="per transfer split; 0: all (default: %(default)s)")
    e.add_argument("--max-queries", type=int, default=emb.Limits.max_queries, help="per retrieval suite; 0: all (default: %(default)s)")
    e.add_argument("--max-documents", type=int, default=emb.Limits.max_documents,
                   help="per retrieval suite, relevant ones included; 0: all (default: %(default)s)")
    e.add_argument("--seed", type=int, default=0, help="seed of the subsampling and the classifiers' folds")
    e.add_argument("--data", default="../shared/data", help="the shared data folder")
    e.add_argument("--out", default=None, help="write the figures as JSON here")
    s = sub.add_parser("students", help=cmd_students.__doc__)
    s.add_argument("recipe", help="a recipe with a students section (candidate students)")
    s.add_argument("overrides", nargs="*", help="dotted overrides, e.g. students.init=gaussian")
    s.add_argument("--batch-size", type=int, default=None, help="samples in the scoring batch (default: students.batch_size)")
    s.add_argument("--seed", type=int, default=None, help="seed of the batch and the candidates' init (default: the recipe's)")
    w = sub.add_parser("sweep", help=cmd_sweep.__doc__)
    w.add_argument("recipe", help="YAML recipe; its sweep section (optional) names the keys to search")
    w.add_argument("overrides", nargs="*", help="dotted overrides of the recipe and its sweep section, e.g. "
                   "train.epochs=4 sweep.pruner=none")
    w.add_argument("--trials", type=int, default=None, help="trials in all (default: sweep.trials, 20)")
    w.add_argument("--resume", action="store_true", help="continue the sweep in its folder up to the trial count")
    w.add_argument("--overwrite", action="store_true", help="delete an existing sweep folder of the same name first")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    # overrides may come after flags (`train r.yaml --overwrite a=1`): collect key=value leftovers
    args, rest = p.parse_known_args(argv)
    overrides = [r for r in rest if "=" in r and not r.startswith("-")]
    unknown = [r for r in rest if r not in overrides]
    if unknown or (overrides and not hasattr(args, "overrides")):
        p.error(f"unrecognized arguments: {' '.join(unknown or overrides)}")
    if overrides:
        args.overrides = list(args.overrides) + overrides
    try:
        return COMMANDS[args.command](args)
    except DistillError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted: pass --resume to continue from the last checkpoint", file=sys.stderr)
        return 130


def entry() -> None:
    sys.exit(main())
