"""Plug-ins: a real distribution, built and installed by pip into a folder of its own
(``--target``, added to ``sys.path``: nothing is installed into the environment), that
declares ``[project.entry-points."qnb.targets"]`` with a good factory and a broken one."""

from __future__ import annotations

import importlib
import json
import logging
import os
import subprocess
import sys
import textwrap

import cirq
import pytest

import qnb
from qnb._device import DeviceSpec
from qnb._targets import registry
from qnb._targets._registry import UnloadedTarget

pytestmark = pytest.mark.slow

DIST, VERSION = "qnb-demo-plugin", "0.3.1"

PYPROJECT = f"""
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{DIST}"
version = "{VERSION}"
dependencies = []

[project.entry-points."qnb.targets"]
demo-flip = "qnb_demo_plugin.targets:flipper"
demo-broken = "qnb_demo_plugin.broken:make"

[tool.hatch.build.targets.wheel]
packages = ["qnb_demo_plugin"]
"""

TARGETS = '''
"""A plug-in's target: a cirq.Sampler that flips every measured bit of a simulation."""
import cirq


class FlipSampler(cirq.Sampler):
    def run_sweep(self, program, params, repetitions=1):
        results = cirq.Simulator().run_sweep(program, params, repetitions=repetitions)
        return [cirq.ResultDict(params=r.params, records={k: 1 - v for k, v in r.records.items()})
                for r in results]


def flipper():
    return FlipSampler()
'''

BROKEN = '''
def make():
    raise RuntimeError("the licence server is down")
'''

MODULES = ("qnb_demo_plugin", "qnb_demo_plugin.targets", "qnb_demo_plugin.broken")


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    """The plug-in built (hatchling, no build isolation: nothing is downloaded) and
    installed by pip into its own folder."""
    source = tmp_path_factory.mktemp("plugin-src")
    (source / "pyproject.toml").write_text(PYPROJECT)
    package = source / "qnb_demo_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "targets.py").write_text(textwrap.dedent(TARGETS))
    (package / "broken.py").write_text(textwrap.dedent(BROKEN))
    installed = tmp_path_factory.mktemp("plugin-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(installed), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    assert (installed / f"qnb_demo_plugin-{VERSION}.dist-info" / "entry_points.txt").exists()
    return installed


@pytest.fixture
def plugin(plugin_dir, monkeypatch):
    """The plug-in on ``sys.path`` and the registry scanned again; all undone after."""
    monkeypatch.delenv("QNB_DISABLE_PLUGINS", raising=False)
    sys.path.insert(0, str(plugin_dir))
    importlib.invalidate_caches()
    registry.rescan()
    try:
        yield plugin_dir
    finally:
        sys.path.remove(str(plugin_dir))
        for name in ("demo-flip", "demo-broken"):
            registry._targets.pop(name, None)
        for module in MODULES:
            sys.modules.pop(module, None)
        importlib.invalidate_caches()
        registry.rescan()


@pytest.fixture
def qnb_log():
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(logging.WARNING)
    logging.getLogger("qnb").addHandler(handler)
    yield records
    logging.getLogger("qnb").removeHandler(handler)


def bell() -> cirq.Circuit:
    """|10>, which the plug-in's sampler reads as 01."""
    a, b = cirq.LineQubit.range(2)
    return cirq.Circuit(cirq.X(a), cirq.measure(a, b, key="m"))


def test_plug_ins_are_listed_without_importing_them(plugin):
    listed = qnb.targets()
    flip, broken = listed["demo-flip"], listed["demo-broken"]
    assert isinstance(flip, UnloadedTarget) and isinstance(broken, UnloadedTarget)
    assert flip.description == (
        f"not loaded (plug-in qnb_demo_plugin.targets:flipper ({DIST} {VERSION})); loads on first use"
    )
    assert flip.max_qubits is None and flip.summary()["loaded"] is False
    assert listed["sim"].max_qubits == 30  # loaded targets keep their DeviceSpec
    assert not any(module in sys.modules for module in MODULES)


def test_a_plug_in_loads_on_first_submit(manager, plugin):
    assert "qnb_demo_plugin.targets" not in sys.modules
    counts = qnb.run(bell(), target="demo-flip", shots=50, timeout=60).counts()
    assert counts == {"01": 50}  # the plug-in's sampler flips every bit
    assert "qnb_demo_plugin.targets" in sys.modules
    spec = qnb.targets()["demo-flip"]
    assert isinstance(spec, DeviceSpec) and "FlipSampler" in spec.description
    assert "qnb_demo_plugin.broken" not in sys.modules  # the other one is still not loaded


def test_a_broken_plug_in_is_reported_once_and_never_fatal(manager, plugin, qnb_log):
    for _ in range(3):
        with pytest.raises(qnb.UnknownTargetError, match="the licence server is down"):
            qnb.submit(bell(), target="demo-broken", shots=10)
    warnings = [r.getMessage() for r in qnb_log if "demo-broken" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert f"({DIST} {VERSION})" in warnings[0] and "RuntimeError: the licence server is down" in warnings[0]
    broken = qnb.targets()["demo-broken"]
    assert broken.description.startswith("broken: plug-in qnb_demo_plugin.broken:make")
    assert "RuntimeError: the licence server is down" in broken.error
    assert qnb.jobs() == []  # nothing stored for it
    # Everything else still works, the other plug-in included.
    assert sum(qnb.run(bell(), target="demo-flip", shots=20, timeout=60).counts().values()) == 20


def test_qnb_disable_plugins_turns_them_off(manager, plugin, monkeypatch):
    monkeypatch.setenv("QNB_DISABLE_PLUGINS", "1")
    registry.rescan()
    assert "demo-flip" not in qnb.targets() and "demo-broken" not in qnb.targets()
    with pytest.raises(qnb.UnknownTargetError, match="unknown target 'demo-flip'"):
        qnb.submit(bell(), target="demo-flip")


def test_a_fresh_interpreter_lists_them_and_imports_nothing(plugin_dir, tmp_path):
    script = (
        "import sys, qnb; t = qnb.targets(); "
        "print(sorted(n for n in t if n.startswith('demo-')), 'qnb_demo_plugin' in sys.modules)"
    )

    def run(**env) -> str:
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
            env={**os.environ, "PYTHONPATH": str(plugin_dir), "QNB_HOME": str(tmp_path), **env},
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    assert run() == "['demo-broken', 'demo-flip'] False"
    assert run(QNB_DISABLE_PLUGINS="1") == "[] False"


LISTING_SCRIPT = textwrap.dedent(
    """
    import contextlib, io, json, sys
    from qnb._cli import main
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(["targets", "--json"])
    heavy = [name for name in ("cirq", "numpy", "qsimcirq", "matplotlib") if name in sys.modules]
    import qnb
    listed = {name: [spec.max_qubits, spec.max_shots, spec.max_batch, spec.description]
              for name, spec in qnb.targets().items()}
    print(json.dumps({"code": code, "heavy": heavy, "cli": json.loads(printed.getvalue()), "api": listed}))
    """
)


def test_the_target_list_command_imports_no_cirq_and_agrees_with_qnb_targets(plugin_dir, tmp_path):
    """``qnb targets`` lists the built-ins, the plug-ins and the targets file's tables
    from their facts alone: no Cirq, and what ``qnb.targets()`` says in the same process."""
    targets_file = tmp_path / "targets.toml"
    targets_file.write_text(textwrap.dedent("""
        [targets.noisy]
        kind = "density"
        noise = 0.01
        [targets.pricey]
        kind = "sim"
        budget = "lots"
        [targets.lab]
        url = "http://127.0.0.1:9"
        """))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(plugin_dir), "QNB_HOME": str(tmp_path),
           "QNB_TARGETS": str(targets_file)}  # fmt: skip
    env.pop("QNB_DISABLE_PLUGINS", None)
    done = subprocess.run([sys.executable, "-c", LISTING_SCRIPT], capture_output=True, text=True,
                          timeout=120, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["code"] == 0 and seen["heavy"] == [], seen
    cli = {view["name"]: view for view in seen["cli"]}
    local = {name: [v["max_qubits"], v["max_shots"], v["max_batch"], v["description"]]
             for name, v in cli.items() if v["kind"] == "local"}  # fmt: skip
    assert local == seen["api"] and list(local) == list(seen["api"])  # the same, in the same order
    assert {"sim", "cirq", "density", "emulator", "demo-flip", "demo-broken", "noisy", "pricey"} <= set(local)
    assert local["emulator"][:3] == [6, 100_000, 300] and local["sim"][0] == 30
    assert local["demo-flip"][3].startswith(f"not loaded (plug-in qnb_demo_plugin.targets:flipper ({DIST} {VERSION})")
    assert "not loaded (kind 'density'" in local["noisy"][3]
    assert local["pricey"][3].startswith("broken: ") and "budget" in local["pricey"][3]
    assert cli["lab"]["kind"] == "remote" and cli["lab"]["url"] == "http://127.0.0.1:9"
