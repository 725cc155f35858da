"""Shared fixtures: every test session gets its own QNB_HOME, every test that asks for
``manager`` a fresh JobManager on its own SQLite file (the process pool is shared: its
workers are the expensive part)."""

from __future__ import annotations

import contextlib
import os
import sys
import time

import pytest

os.environ.setdefault("QNB_USER", "tester")
# Machines that set PYTHONDONTWRITEBYTECODE would make each of the suite's interpreters
# (xdist workers, scripts, kernels, servers) compile qnb and rewrite the test modules
# again: seconds of CPU each. Caches only; nothing a test checks depends on them.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)

# The circuit most tests run: a Bell pair, as OpenQASM 2.0 (measured into c[0], c[1]).
BELL_QASM = """OPENQASM 2.0;
include "qelib1.inc";
qreg q[2];
creg c[2];
h q[0];
cx q[0],q[1];
measure q -> c;
"""
# The emulator's device time, shortened so that tests stay quick but jobs still queue.
os.environ.setdefault("QNB_EMULATOR_SECONDS_PER_SHOT", "0.0005")


def pytest_collection_modifyitems(config, items):
    """``browser`` and ``load`` tests are ``slow`` too: ``-m "not slow"`` leaves them out."""
    for item in items:
        if item.get_closest_marker("browser") or item.get_closest_marker("load"):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session", autouse=True)
def qnb_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("qnb-home")
    os.environ["QNB_HOME"] = str(home)
    return home


@contextlib.contextmanager
def new_process_manager(home):
    """A fresh JobManager on the store at ``home``, as a new kernel starts: the process's
    manager while inside, closed after."""
    from qnb import _manager

    fresh = _manager.JobManager(home)
    previous = _manager.set_manager(fresh)
    try:
        yield fresh
    finally:
        _manager.set_manager(previous)
        fresh.close()


@pytest.fixture
def quick_vendor_backoff(monkeypatch):
    """Vendor calls retried after 0.05 s, not 0.5 s (doubling each time): the fault tests
    check what is created, read and kept, never how long qnb waits between tries, and
    with the product's pace a dozen refused calls took seconds each test."""
    from qnb._targets import _remote

    monkeypatch.setattr(_remote, "FIRST_BACKOFF_SECONDS", 0.05)


@pytest.fixture
def manager(tmp_path):
    """A fresh JobManager with its own store, installed as the process's manager."""
    from qnb._targets import registry

    known = set(registry.all())
    try:
        with new_process_manager(tmp_path / "home") as fresh:
            yield fresh
    finally:
        for name in set(registry.all()) - known:  # targets a test added (servers it connected)
            registry.unregister(name)


def wait_until(predicate, *, timeout: float = 30.0, interval: float = 0.01, what: str = "condition"):
    """Poll ``predicate`` until it is true; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def ipython_shell():
    """IPython's one test shell, with qnb's extension loaded."""
    from IPython import get_ipython
    from IPython.testing.globalipapp import start_ipython

    shell = start_ipython() or get_ipython()  # start_ipython answers only its first call
    shell.run_line_magic("load_ext", "qnb")
    return shell


#: On every test that uses ``shared_serve``: they run on one xdist worker, so the run
#: starts one server for them all (a server and its forkserver are ~5 CPU-s to start).
#: It must be the test's only group (xdist joins several into another group's name).
SHARED_SERVE_GROUP = pytest.mark.xdist_group("shared-serve")


@pytest.fixture(scope="session")
def shared_serve(tmp_path_factory):
    """One real ``qnb serve`` (emulator at 1 ms a shot, so a 60,000-shot job holds the
    device for a minute; users alice, bob, carol and root) for the tests that only talk
    to one: ``(server, tokens)``; mark them ``SHARED_SERVE_GROUP``. A test leaves its
    device free (cancels what it started). Tests that stop, kill or restart a server, or
    start one configured otherwise, start their own (``ServeProcess``)."""
    from qnb.server._auth import add_user
    from test_server_support import ServeProcess, make_users

    tmp = tmp_path_factory.mktemp("shared-serve")
    users_file = tmp / "users.toml"
    tokens = {**make_users(users_file), "carol": add_user(users_file, "carol")}
    server = ServeProcess(tmp, users_file=users_file,
                          env={"QNB_EMULATOR_SECONDS_PER_SHOT": "0.001"}).start()
    try:
        yield server, tokens
    finally:
        server.stop()


# JupyterLab for test_browser.py and test_widgets_layout.py: one a test run (the two
# files are one xdist group, so one worker starts it). Chromium, one a file: Playwright's
# sync API runs an event loop in this thread while it is open, which later tests on the
# same worker (asyncio.run, Starlette's TestClient) could not start beside.


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    from test_browser import jupyter_lab

    yield from jupyter_lab(tmp_path_factory)


@pytest.fixture(scope="module")
def browser():
    from test_browser import chromium_browser

    yield from chromium_browser()
