"""Plug-ins that misbehave: one that hangs while it loads, one whose device raises, one
that calls ``sys.exit()``. A real distribution (built and installed by pip into a
folder of its own, as in test_plugins.py) declares them under ``qnb.targets``; none of
them may hold up, hide or end anything but itself.

The hanging factory waits on an Event of the plug-in's ``control`` module, which the
test holds: the test decides when (if ever) it returns, nothing here sleeps to wait."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
import pickle
import threading
import time
import traceback

import cirq
import pytest
from conftest import wait_until

import qnb
from qnb._device import DeviceSpec
from qnb._records import ItemRecord, JobRecord
from qnb._status import JobStatus
from qnb._store import Store
from qnb._targets import registry
from qnb._secrets import MASK, Secret
from qnb._targets import register_kind
from qnb._targets._registry import _KINDS, UnloadedTarget

DIST, VERSION = "qnb-fault-plugin", "0.1.0"
HANG, DEVICE, EXITS, ODD = "fault-hang", "fault-device", "fault-exit", "fault-odd"

PYPROJECT = f"""
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "{DIST}"
version = "{VERSION}"
dependencies = []

[project.entry-points."qnb.targets"]
{HANG} = "qnb_fault_plugin.hang:make"
{DEVICE} = "qnb_fault_plugin.device:make"
{EXITS} = "qnb_fault_plugin.exits:make"
{ODD} = "qnb_fault_plugin.exits:make_odd"

[tool.hatch.build.targets.wheel]
packages = ["qnb_fault_plugin"]
"""

SOURCES = {
    "control.py": '''
        """What the test holds: when the hanging factory started, and when it may return."""
        import threading

        started = threading.Event()
        release = threading.Event()
        returned = threading.Event()
        calls = []
    ''',
    "hang.py": '''
        """A factory that hangs (a licence server that never answers) until released."""
        import cirq

        from . import control


        def make():
            control.calls.append(1)
            control.started.set()
            control.release.wait(120)  # the test's own deadline, should it never release
            control.returned.set()
            return cirq.Simulator()
    ''',
    "device.py": '''
        """A target whose device cannot be read."""
        from qnb._targets import Target


        class Unreadable(Target):
            name = "fault-device"

            @property
            def device(self):
                raise RuntimeError("the calibration service is down")

            async def submit(self, job): ...
            async def poll(self, handle): ...
            async def results(self, handle, indices): ...
            async def cancel(self, handle): ...


        def make():
            return Unreadable()
    ''',
    "exits.py": '''
        import sys


        class Odd(BaseException):
            pass


        def make():
            sys.exit("no licence: goodbye")


        def make_odd():
            raise Odd("raised past Exception")
    ''',
    "kinds.py": '''
        """Kinds of target a package adds with qnb.register_kind (a vendor's adapter)."""
        import cirq

        from qnb._targets._registry import as_target

        seen = {}


        def unreachable(name, *, api_key, region="eu"):
            raise ConnectionError(f"cannot reach the {region} region")


        def recording(name, **options):
            seen.update(options)
            return as_target(name, cirq.Simulator())
    ''',
}
MODULES = ("qnb_fault_plugin", *(f"qnb_fault_plugin.{name[:-3]}" for name in SOURCES))


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory):
    source = tmp_path_factory.mktemp("fault-src")
    (source / "pyproject.toml").write_text(PYPROJECT)
    package = source / "qnb_fault_plugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, text in SOURCES.items():
        (package / name).write_text(textwrap.dedent(text))
    installed = tmp_path_factory.mktemp("fault-site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-index", "--target", str(installed), str(source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    return installed


@pytest.fixture
def faults(plugin_dir, monkeypatch):
    """The plug-in on ``sys.path``, scanned; its control module (the hang's Events).
    After: the hang released (its thread ends) and everything undone."""
    monkeypatch.delenv("QNB_DISABLE_PLUGINS", raising=False)
    sys.path.insert(0, str(plugin_dir))
    importlib.invalidate_caches()
    registry.rescan()
    control = importlib.import_module("qnb_fault_plugin.control")
    try:
        yield control
    finally:
        control.release.set()
        assert not control.started.is_set() or control.returned.wait(30)
        sys.path.remove(str(plugin_dir))
        for name in (HANG, DEVICE, EXITS, ODD):
            registry.unregister(name)
        for module in MODULES:
            sys.modules.pop(module, None)
        importlib.invalidate_caches()
        registry.rescan()


def bell() -> cirq.Circuit:
    a, b = cirq.LineQubit.range(2)
    return cirq.Circuit(cirq.H(a), cirq.CNOT(a, b), cirq.measure(a, b, key="m"))


class Waiter:
    """``registry.get(name)`` on a thread of its own: what it got, and when."""

    def __init__(self, name: str) -> None:
        self.done = threading.Event()
        self.target = self.error = None
        self.seconds: float | None = None
        threading.Thread(target=self._get, args=(name,), daemon=True).start()

    def _get(self, name: str) -> None:
        start = time.monotonic()
        try:
            self.target = registry.get(name)
        except qnb.UnknownTargetError as exc:
            self.error = exc
        finally:
            self.seconds = time.monotonic() - start
            self.done.set()


def test_a_hanging_plug_in_holds_up_nobody_else(manager, faults, monkeypatch):
    monkeypatch.setenv("QNB_TARGET_LOAD_TIMEOUT", "120")
    first, second = Waiter(HANG), Waiter(HANG)
    assert faults.started.wait(30), "the plug-in's factory never ran"
    # While its factory hangs: listings, other plug-ins and other targets answer.
    listed = qnb.targets()
    assert listed[HANG].description == f"loading (plug-in qnb_fault_plugin.hang:make ({DIST} {VERSION}))"
    assert listed["sim"].max_qubits == 30
    with pytest.raises(qnb.UnknownTargetError, match="no licence: goodbye"):
        registry.get(EXITS)
    counts = qnb.run(bell(), target="sim", shots=40, timeout=60).counts()
    assert sum(counts.values()) == 40 and set(counts) <= {"00", "11"}
    assert not first.done.is_set() and not second.done.is_set()  # all that, during the hang
    faults.release.set()
    assert first.done.wait(30) and second.done.wait(30)
    assert first.error is None and first.target is second.target is registry.get(HANG)
    assert faults.calls == [1]  # one load, however many waited for it
    assert isinstance(qnb.targets()[HANG], DeviceSpec)


def test_a_hanging_plug_in_fails_at_its_deadline_with_a_clear_error(manager, faults, monkeypatch):
    monkeypatch.setenv("QNB_TARGET_LOAD_TIMEOUT", "1.5")
    waiter = Waiter(HANG)
    assert waiter.done.wait(30), "the caller was not let go at the deadline"
    assert faults.started.is_set() and not faults.returned.is_set()  # still hanging
    message = str(waiter.error)
    assert f"target {HANG!r} (plug-in qnb_fault_plugin.hang:make ({DIST} {VERSION}))" in message
    assert "did not finish loading within 1.5 s" in message and "QNB_TARGET_LOAD_TIMEOUT" in message
    assert 1.4 <= waiter.seconds < 15
    # From now on it is broken for everyone at once (no second wait, no second load).
    start = time.monotonic()
    with pytest.raises(qnb.UnknownTargetError, match="within 1.5 s"):
        qnb.submit(bell(), target=HANG, shots=10)
    assert time.monotonic() - start < 1.0 and faults.calls == [1]
    assert qnb.targets()[HANG].description.startswith("broken: plug-in qnb_fault_plugin.hang:make")
    assert qnb.jobs() == []  # nothing stored for it
    # Should it ever finish, it is used.
    faults.release.set()
    assert faults.returned.wait(30)
    # The loading thread installs it right after the factory returns.
    wait_until(lambda: HANG in registry.all(), what="the late target to be installed")
    assert sum(qnb.run(bell(), target=HANG, shots=10, timeout=60).counts().values()) == 10


def test_following_a_hanging_plug_in_s_jobs_does_not_hold_up_a_new_process(faults, tmp_path, monkeypatch):
    """The attack's 40 s: a store with an unfinished job of the plug-in, whose jobs a new
    process follows again (loading it on a thread of its own), and its first run on sim."""
    from qnb import _manager

    monkeypatch.setenv("QNB_TARGET_LOAD_TIMEOUT", "120")
    home = tmp_path / "home"
    job = JobRecord(id="j-followed", name="followed", target=HANG, user="tester", shots=10,
                    items=[ItemRecord("0")], time_added=time.time(), status=JobStatus.QUEUED,
                    remote_id="vendor-1")  # fmt: skip
    store = Store(home / "qnb.sqlite3")
    store.insert_job(job, ["{}"], {})
    store.close()
    fresh = _manager.JobManager(home)
    previous = _manager.set_manager(fresh)
    try:
        assert faults.started.wait(30), "the new process did not start following the plug-in"
        counts = qnb.run(bell(), target="sim", shots=30, timeout=60).counts()
        assert sum(counts.values()) == 30
        assert not faults.returned.is_set()  # answered while the plug-in still hangs
    finally:
        _manager.set_manager(previous)
        faults.release.set()
        fresh.close()


def test_a_plug_in_whose_device_raises_is_listed_as_broken_alone(manager, faults, qnb_log_records):
    target = registry.get(DEVICE)  # it loads: only its device is broken
    assert target.name == DEVICE
    listed = qnb.targets()
    broken = listed[DEVICE]
    assert isinstance(broken, UnloadedTarget)
    assert broken.error == "RuntimeError: the calibration service is down"
    assert broken.description == (
        f"broken: plug-in qnb_fault_plugin.device:make ({DIST} {VERSION}) is loaded but its "
        "device cannot be read: RuntimeError: the calibration service is down"
    )
    assert isinstance(listed["sim"], DeviceSpec) and isinstance(listed[HANG], UnloadedTarget)
    qnb.targets()
    said = [r.getMessage() for r in qnb_log_records if DEVICE in r.getMessage()]
    assert len(said) == 1 and "calibration service is down" in said[0]


@pytest.mark.parametrize(
    ("name", "error"),
    [(EXITS, "SystemExit: no licence: goodbye"), (ODD, "Odd: raised past Exception")],
)
def test_a_factory_that_exits_is_that_plug_in_s_error(manager, faults, name, error):
    for _ in range(2):  # the second time from what was recorded: not loaded again
        with pytest.raises(qnb.UnknownTargetError) as caught:
            qnb.submit(bell(), target=name, shots=10)
        assert error in str(caught.value) and f"({DIST} {VERSION})" in str(caught.value)
    assert qnb.targets()[name].error == error
    assert qnb.jobs() == []
    assert sum(qnb.run(bell(), target="sim", shots=10, timeout=60).counts().values()) == 10


@pytest.fixture
def qnb_log_records():
    import logging

    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(logging.WARNING)
    logging.getLogger("qnb").addHandler(handler)
    yield records
    logging.getLogger("qnb").removeHandler(handler)


# -- secrets on the way to a kind's factory ----------------------------------------------

#: Never written as a literal in a call: a traceback prints the source line it fails on.
KEY = "sk-" + "do-not-print-4242"


def _with_locals(exc: BaseException) -> str:
    return "".join(traceback.TracebackException.from_exception(exc, capture_locals=True).format())


def test_a_failing_ionq_registration_s_traceback_hides_the_key(manager):
    pytest.importorskip("cirq_ionq")
    with pytest.raises(qnb.QnbError) as caught:  # (no retries: the traceback is the point)
        qnb.register_target("q", "ionq", api_key=KEY, remote_host="http://127.0.0.1:1",
                            call_timeout=10, max_retry_seconds=0)  # fmt: skip
    text = _with_locals(caught.value)
    assert "register_target" in text and MASK in text  # the locals are there, masked
    assert KEY not in text


def test_a_plug_in_kind_that_raises_shows_no_key_in_its_traceback(manager, faults):
    register_kind("fault-unreachable", "qnb_fault_plugin.kinds:unreachable")
    try:
        with pytest.raises(ConnectionError, match="cannot reach the us region") as caught:
            qnb.register_target("vault", "fault-unreachable", api_key=KEY, region="us")
        text = _with_locals(caught.value)
        assert "in unreachable" in text and MASK in text
        assert KEY not in text
    finally:
        _KINDS.pop("fault-unreachable", None)


def test_a_kind_gets_the_key_as_text_with_a_masked_repr(manager, faults):
    register_kind("fault-recording", "qnb_fault_plugin.kinds:recording")
    try:
        qnb.register_target("vault", "fault-recording", api_key=KEY, client_token=KEY, region="us")
    finally:
        _KINDS.pop("fault-recording", None)
    seen = importlib.import_module("qnb_fault_plugin.kinds").seen
    for name in ("api_key", "client_token"):
        key = seen[name]
        assert isinstance(key, Secret) and isinstance(key, str) and key == KEY
        assert repr(key) == MASK and KEY not in repr(seen) and f"apiKey {key}" == f"apiKey {KEY}"
        assert type(key.reveal()) is str and key.reveal() == KEY
        copied = pickle.loads(pickle.dumps(key))
        assert isinstance(copied, Secret) and copied.reveal() == KEY
    assert type(seen["region"]) is str  # what is not a secret arrives as it was given


def test_a_targets_file_key_is_masked_before_it_loads(manager, faults, tmp_path, monkeypatch):
    path = tmp_path / "targets.toml"
    path.write_text(f'[targets.vault]\nkind = "fault-recording"\napi_key = "{KEY}"\n')
    monkeypatch.setenv("QNB_TARGETS", str(path))
    register_kind("fault-recording", "qnb_fault_plugin.kinds:recording")
    try:
        registry.rescan()
        assert KEY not in repr(registry.lazy()["vault"]) and KEY not in repr(qnb.targets())
        registry.get("vault")
    finally:
        _KINDS.pop("fault-recording", None)
        registry.unregister("vault")
        monkeypatch.delenv("QNB_TARGETS")
        registry.rescan()
    key = importlib.import_module("qnb_fault_plugin.kinds").seen["api_key"]
    assert isinstance(key, Secret) and key.reveal() == KEY
