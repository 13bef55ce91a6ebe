"""The shape of the code, checked: no import cycle, no teacher-kind dispatch in methods or evaluation,
no method name in task or training code."""
import ast
from pathlib import Path

from distill.methods import METHODS

PACKAGE = Path(__file__).resolve().parents[1] / "distill"
TEACHER_KINDS = {"TeacherSignal", "HiddenSignal", "DenseSignal", "TopKSignal", "TeacherChunk", "DenseChunk",
                 "UniformTailChunk", "BucketChunk", "LiveLogits", "StoredLogits", "LiveTokenTeacher", "StoredTokenTeacher",
                 "LiveEmbeddings", "StoredEmbeddings"}
STORE_BATCH_KEYS = {"teacher_logits", "teacher_topk_ids", "teacher_topk_logp", "teacher_tail_logp"}


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imported(path: Path, known: dict[str, Path]) -> set[str]:
    """distill modules a file imports, at any level (function bodies included), with the packages they run."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("distill")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("distill"):
            names |= {f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names}
    out = set()
    for name in names:  # importing a.b.c runs a/__init__ and a/b/__init__ as well
        parts = name.split(".")
        out |= {".".join(parts[:i]) for i in range(2, len(parts) + 1) if ".".join(parts[:i]) in known}
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))
    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle_in_distill():
    known = modules()
    graph = {m: {d for d in imported(p, known) if d != m and not m.startswith(d + ".")} for m, p in known.items()}
    assert cycles(graph) == []


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_function_level_import_of_distill_modules():
    """Function-level imports are how cycles hide; the package imports at module level only."""
    found = []
    for path in PACKAGE.rglob("*.py"):
        for fn in ast.walk(ast.parse(path.read_text())):
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(fn):
                    module = node.module if isinstance(node, ast.ImportFrom) else None
                    if isinstance(node, ast.Import):
                        module = next((a.name for a in node.names if a.name.startswith("distill")), None)
                    if module and module.startswith("distill"):
                        found.append(f"{path.relative_to(PACKAGE)}:{node.lineno} {module}")
    assert found == []


def files(*folders: str):
    for folder in folders:
        yield from (PACKAGE / folder).rglob("*.py")


def test_methods_and_evaluation_never_dispatch_on_the_teacher_kind():
    found = []
    for path in files("methods", "eval"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "isinstance" and len(node.args) == 2:
                kinds = {n.id for n in ast.walk(node.args[1]) if isinstance(n, ast.Name)} & TEACHER_KINDS
                if kinds:
                    found.append(f"{path.name}:{node.lineno} isinstance(..., {kinds})")
            if isinstance(node, ast.Constant) and node.value in STORE_BATCH_KEYS:
                found.append(f"{path.name}:{node.lineno} reads the store batch key {node.value!r}")
    assert found == []


def test_no_method_name_in_task_or_training_code():
    names = set(METHODS.names())
    found = [f"{p.relative_to(PACKAGE)}:{n.lineno} {n.value!r}" for p in files("tasks", "train")
             for n in ast.walk(ast.parse(p.read_text())) if isinstance(n, ast.Constant) and n.value in names]
    assert found == []
