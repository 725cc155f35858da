"""The model holds its own rules: layers point one way (no import cycle, nothing hidden
in a function), every module imports alone, the lifecycle is the only writer of status
and timestamps, and every public name is importable and documented."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import qnb
from qnb import JobStatus, _lifecycle, _manager
from qnb._records import ItemRecord, JobRecord
from conftest import BELL_QASM

PACKAGE = Path(qnb.__file__).parent
README = PACKAGE.parent / "README.md"

# The layers, lowest first (DESIGN.md, "Layers"). A module may import its own layer and
# the ones below, never one above.
LAYERS = [
    ("vocabulary", {"qnb._status", "qnb._errors", "qnb._records", "qnb._circuits",
                    "qnb._device", "qnb._config", "qnb._plot", "qnb._sweeps", "qnb._secrets",
                    "qnb._options", "qnb._views", "qnb._estimate", "qnb._features", "qnb._prices",
                    "qnb._target_catalog"}),
    ("store and lifecycle", {"qnb._store", "qnb._lifecycle"}),
    ("targets", {"qnb._targets"}),
    ("core", {"qnb._manager", "qnb._core"}),
    ("handles", {"qnb._job", "qnb._queue", "qnb._results"}),
    ("public API", {"qnb._api", "qnb._backend", "qnb._sampler", "qnb._notify"}),
    ("faces", {"qnb.notebook", "qnb.server", "qnb._cli", "qnb.__main__", "qnb.jobs_panel"}),
    ("package", {"qnb"}),
]


def modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def layer_of(module: str) -> int:
    best = None
    for rank, (_, members) in enumerate(LAYERS):
        for member in members:
            if (module == member or module.startswith(member + ".")) and (
                best is None or len(member) > len(best[1])
            ):
                best = (rank, member)
    assert best is not None, f"{module} is in no layer: add it to LAYERS"
    return best[0]


def qnb_imports(module: str, path: Path) -> list[tuple[str, bool, int]]:
    """(imported qnb module, inside a function?, line) for every import in ``path``."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.If) and isinstance(child.test, ast.Name) and child.test.id == "TYPE_CHECKING":
                continue  # for type checkers only: never runs
            if isinstance(child, ast.ImportFrom):
                if child.level:
                    base = package.split(".")
                    base = base[: len(base) - child.level + 1]
                    target = ".".join(base + ([child.module] if child.module else []))
                else:
                    target = child.module or ""
                if target == "qnb" or target.startswith("qnb."):
                    for alias in child.names:
                        sub = f"{target}.{alias.name}"
                        found.append((sub if sub in ALL else target, nested, child.lineno))
            elif isinstance(child, ast.Import):
                for alias in child.names:
                    if alias.name.startswith("qnb"):
                        found.append((alias.name, nested, child.lineno))
            visit(child, nested)

    visit(tree, False)
    return found


ALL = modules()


# Imports deferred on purpose because the module is heavy, each with its reason.
HEAVY = {
    "qnb._targets._worker": "imports qsimcirq: loaded in the pool's workers, not the kernel",
    "qnb.server._intake": "imports Cirq in the server's CPU worker process",
    "qnb.jobs_panel._actions": "imports Cirq (the qnb API): on the jobs panel's first action, not when Jupyter starts",
}


def test_layers_point_one_way_and_nothing_hides_in_a_function():
    problems = []
    for module, path in ALL.items():
        for target, in_function, line in qnb_imports(module, path):
            if target == module or target.startswith(module + "."):
                continue  # a package importing its own modules
            if target == "qnb" and LAYERS[layer_of(module)][0] == "faces":
                continue  # the faces use the public API (whose names load lazily)
            if in_function and target in HEAVY:
                continue
            if layer_of(target) > layer_of(module):
                where = "inside a function" if in_function else "at module level"
                problems.append(
                    f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} {where}: "
                    f"{LAYERS[layer_of(module)][0]} may not import {LAYERS[layer_of(target)][0]}"
                )
            elif in_function and module != "qnb":
                # Deferred imports are for heavy modules only (HEAVY); the CLI, which
                # must start in a blink, defers everything.
                if module != "qnb._cli":
                    problems.append(
                        f"{path.relative_to(PACKAGE.parent)}:{line} imports {target} inside a function"
                    )
    assert problems == []


def test_the_import_graph_has_no_cycle():
    graph = {m: {t for t, _, _ in qnb_imports(m, p) if t in ALL and t != m} for m, p in ALL.items()}
    # A package's __init__ importing its own submodules is not a cycle of layers.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in graph[node]:
            if node.startswith(nxt + ".") or nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for module in graph:
        if module not in state:
            cycle = visit(module)
            assert cycle is None, " -> ".join(cycle)


# One interpreter, one forked child per module. A child of a fork starts from its
# parent's memory, so the parent imports nothing on purpose: a child forked from it has
# exactly the modules `python -c "import qnb._x"` would have (what the interpreter loads
# at start-up), and imports its module alone, as a fresh interpreter would. That saves 50
# interpreter start-ups, not the imports: Cirq, numpy and the rest cost ~2.5 s of CPU per
# child. So in two rounds:
#   1. From the bare parent, each child imports its module with a finder that stops it
#      the moment anything asks for a third-party package qnb imports (THIRD_PARTY
#      below: cirq, numpy, ...). A module that finishes is proven in a fresh world; one
#      that stops has, up to that import, run as in a fresh world.
#   2. The parent then imports those packages (never a qnb module) and forks a child per
#      module that stopped. qnb's own modules still load from nothing, in the order a
#      fresh interpreter would: a cycle, or a module that needs another qnb module to
#      have been imported first, fails here just as it did with one interpreter each.
# What round 2 cannot see: code after a module's first third-party import that uses a
# submodule some *other* third-party package loaded (a stdlib one included) without
# importing it itself. That is a third-party hygiene slip, not a layer property.
IMPORT_EACH = r'''
import os, sys
# Each item is a module to import or a `from qnb import ...` statement to run.
items, third_party, out = sys.argv[1].split(";"), sys.argv[2].split(","), sys.argv[3]

class Stop(BaseException):  # not an ImportError: no `except ImportError` in qnb swallows it
    pass

class StopAtThirdParty:
    @staticmethod
    def find_spec(name, path=None, target=None):
        if name.partition(".")[0] in third_party:
            raise Stop(name)
        return None

def import_in_children(names, stop):
    codes, running, todo = {}, {}, list(names)
    while todo or running:
        while todo and len(running) < 2:
            name = todo.pop(0)
            pid = os.fork()
            if pid == 0:
                fd = os.open(os.path.join(out, str(items.index(name))),
                             os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
                os.dup2(fd, 1)
                os.dup2(fd, 2)
                if stop:
                    sys.meta_path.insert(0, StopAtThirdParty)
                try:
                    if name.startswith("from "):
                        exec(name, {})
                    else:
                        __import__(name)
                except Stop:
                    os._exit(3)
                except BaseException:
                    import traceback
                    traceback.print_exc()
                    sys.stderr.flush()
                    os._exit(1)
                os._exit(0)
            running[pid] = name
        pid, status = os.waitpid(-1, 0)
        codes[running.pop(pid)] = os.waitstatus_to_exitcode(status)
    return codes

first = import_in_children(items, True)
for package in third_party:
    try:
        __import__(package)
    except BaseException:  # missing or broken: the children that need it fail on their own
        pass
second = import_in_children([m for m, code in first.items() if code == 3], False)
for name in items:
    code = second.get(name, first[name])
    print("fresh" if name not in second else "after-third-party", code, name)
'''


def third_party_packages() -> set[str]:
    """Top-level packages other than qnb and the standard library that qnb's modules
    import at module level (the ones a bare interpreter has not loaded)."""
    found = set()
    for path in ALL.values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                names = [node.module]
            else:
                continue
            found.update(name.partition(".")[0] for name in names)
    return {name for name in found if name != "qnb" and name not in sys.stdlib_module_names
            and name != "__future__"}


@pytest.mark.slow  # an interpreter importing every module and vendor SDK
def test_every_module_imports_alone_in_a_fresh_interpreter(tmp_path):
    """And every public name imports in one (``from qnb import ...``: the lazy names)."""
    names = [m for m in ALL if m != "qnb.__main__"] + [f"from qnb import {', '.join(qnb.__all__)}"]
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EACH, ";".join(names),
         ",".join(sorted(third_party_packages())), str(tmp_path)],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    outcomes = {line.split(maxsplit=2)[2]: line.split()[:2] for line in done.stdout.splitlines()}
    assert set(outcomes) == set(names), done.stdout
    failed = {m: (how, (tmp_path / str(names.index(m))).read_text()[-600:])
              for m, (how, code) in outcomes.items() if code != "0"}
    assert failed == {}
    # Round 1 proved the light modules (no third-party package at all) in a fresh world.
    assert outcomes["qnb._status"][0] == "fresh" and outcomes["qnb._cli"][0] == "fresh"


# -- one writer of status -------------------------------------------------------------------

WRITTEN_BY_LIFECYCLE = ("status", "time_started", "time_finished")


def test_no_status_write_outside_the_lifecycle_in_the_source():
    problems = []
    for module, path in ALL.items():
        if module in ("qnb._lifecycle",):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for target in targets:
                for leaf in ast.walk(target):
                    if isinstance(leaf, ast.Attribute) and leaf.attr in WRITTEN_BY_LIFECYCLE:
                        # An error's HTTP status is not a job's.
                        if module == "qnb._errors" and ast.unparse(leaf) == "self.status":
                            continue
                        problems.append(f"{path.name}:{node.lineno} {ast.unparse(node)[:80]}")
        if module == "qnb._store":
            for literal in re.findall(r"status\s*=\s*'[a-z]+'", path.read_text()):
                problems.append(f"{path.name}: SQL writes a status literal: {literal}")
    assert problems == []


@pytest.fixture
def status_writers(monkeypatch):
    """Record which module writes each status or timestamp of a record while a test runs."""
    writers: list[tuple[str, str]] = []
    for cls in (JobRecord, ItemRecord):
        for field in WRITTEN_BY_LIFECYCLE:
            slot = cls.__dict__.get(field)
            if slot is None:
                continue

            def setter(obj, value, slot=slot, field=field):
                writer = sys._getframe(1).f_globals.get("__name__")
                writers.append((writer, field))
                slot.__set__(obj, value)

            monkeypatch.setattr(cls, field, property(slot.__get__, setter))
    return writers


def test_every_status_change_at_run_time_goes_through_the_lifecycle(manager, status_writers):
    # Submit and complete, a failing item, cancel a queued job, cancel a running job.
    done = qnb.submit(BELL_QASM, shots=10)
    assert done.result(timeout=60).counts()
    bad = qnb.submit({"ok": BELL_QASM}, shots=10, target="emulator", compile=True)
    queued = qnb.submit(BELL_QASM, shots=4000, target="emulator", compile=True)
    queued.cancel()
    bad.cancel()
    for job in (bad, queued):
        manager.when(job.id, _manager.is_done).result(60)
    # Recovery after a restart: a record left unfinished by a dead owner.
    rec = manager.store.load_job(done.id)
    rec.status = JobStatus.RUNNING  # (written here by the test itself, as a dead process would)
    _lifecycle.recover(rec, _lifecycle.Recovery.INTERRUPTED, "interrupted")
    assert rec.status is JobStatus.FAILED
    writers = {w for w, _ in status_writers if w != __name__}
    assert writers <= {"qnb._lifecycle", "qnb._records"}, writers
    assert ("qnb._lifecycle", "time_started") in status_writers
    assert ("qnb._lifecycle", "time_finished") in status_writers


# -- the public names -------------------------------------------------------------------------


def test_every_public_name_is_importable_and_documented():
    readme = README.read_text()
    missing_doc = []
    for name in qnb.__all__:
        value = getattr(qnb, name)
        assert value is not None, name
        if not re.search(rf"\b{re.escape(name)}\b", readme):
            missing_doc.append(name)
        if callable(value) and not (getattr(value, "__doc__", None) or "").strip():
            missing_doc.append(f"{name} (no docstring)")
    assert missing_doc == []
    # That they import in a fresh interpreter: test_every_module_imports_alone_... .
