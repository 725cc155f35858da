"""Helpers for the jobs panel's tests and benchmark: a JupyterLab (with Notebook 7's
pages) whose Jupyter dirs are temporary and that finds this checkout's server extension
and prebuilt JupyterLab extension with no manual step:

- the server extension: ``jupyter-config/jupyter_server_config.d/qnb.json`` copied into
  the temporary ``JUPYTER_CONFIG_DIR`` (an installed qnb ships the same file to
  ``etc/jupyter``);
- the JupyterLab extension: ``<JUPYTER_DATA_DIR>/labextensions/qnb-jobs`` is a symlink to
  this checkout's ``qnb/labextension`` (what ``jupyter labextension develop`` does), so
  the build in the checkout is the one served, not a copy an earlier install left.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

from conftest import wait_until
from test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, unavailable, write_page_config

REPO = Path(__file__).resolve().parent.parent
BUILD = REPO / "qnb" / "labextension"
SOURCE = REPO / "labextension"
ARTIFACTS = REPO / "test-artifacts"

# A process of this user that submits one job to the local emulator, prints its id, and
# waits for it to end (it runs the job: it owns it).
SUBMITTER = """
import sys, cirq, qnb
name, shots, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if target != "emulator":
    qnb.connect(target)
q = cirq.LineQubit.range(2)
bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key="m"))
job = qnb.submit(bell, target=target, shots=shots, name=name, compile=True)
print(job.id, flush=True)
try:
    job.result(timeout=600)
except Exception:
    pass
print("ended", job.status.value, flush=True)
sys.stdin.read()  # stay alive (and the job's owner) until the test closes stdin
"""


def source_hash() -> str:
    """The hash ``labextension/scripts/source-hash.js`` records beside the build."""
    import hashlib

    files = ["package.json"]
    for folder in ("src", "style"):
        files += [f"{folder}/{name}" for name in sorted(os.listdir(SOURCE / folder))]
    digest = hashlib.sha256()
    for name in files:
        digest.update(name.encode())
        digest.update(b"\0")
        digest.update((SOURCE / name).read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def lab_env(base: Path, qnb_home: Path, **extra: str) -> dict:
    config, data = base / "config", base / "data"
    (config / "jupyter_server_config.d").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "jupyter-config" / "jupyter_server_config.d" / "qnb.json",
                config / "jupyter_server_config.d" / "qnb.json")
    (data / "labextensions").mkdir(parents=True, exist_ok=True)
    link = data / "labextensions" / "qnb-jobs"
    if not link.exists():
        link.symlink_to(BUILD, target_is_directory=True)
    return {
        **os.environ,
        "HOME": str(base / "home"),
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(data),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "IPYTHONDIR": str(base / "ipython"),
        "QNB_HOME": str(qnb_home),
        "QNB_EMULATOR_SECONDS_PER_SHOT": "0.001",
        **extra,
    }


class Lab:
    """``jupyter lab`` on 127.0.0.1 with a token, stopped by :meth:`stop`."""

    def __init__(self, base: Path, env: dict):
        if shutil.which("jupyter") is None:
            unavailable("jupyter is not installed")
        self.base, self.env = base, env
        self.root = base / "root"
        self.root.mkdir(exist_ok=True)
        write_page_config(Path(env["JUPYTER_CONFIG_DIR"]))
        self.port, self.token = free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "lab.log"
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1",
             "--port", str(self.port), "--ServerApp.port_retries=0", "--allow-root",
             f"--ServerApp.token={self.token}", f"--ServerApp.root_dir={self.root}",
             "--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True",
             "--JupyterNotebookApp.expose_app_in_browser=True",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:
            wait_until(self._ready, timeout=90, interval=0.2, what="jupyter lab to answer")
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"jupyter lab exited: {self.log_path.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def api(self, path: str, method: str = "GET") -> dict:
        request = urllib.request.Request(
            f"{self.url}/qnb-jobs/{path}", method=method, data=b"{}" if method == "POST" else None,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=30) as r:
            return json.loads(r.read())

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.log.close()


class Submitter:
    """A process that submits one job and owns it until :meth:`stop`."""

    def __init__(self, env: dict, name: str, shots: int, target: str = "emulator"):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SUBMITTER, name, str(shots), target], env=env,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        self.name = name
        self._id: str | None = None

    @property
    def job_id(self) -> str:
        if self._id is None:
            self._id = self.proc.stdout.readline().strip()
            assert len(self._id) == 32, f"{self.name}: no job id ({self._id!r})"
        return self._id

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def launch_chromium(playwright):
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    try:
        return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    except Exception as exc:  # noqa: BLE001 - any launch failure means "no browser"
        unavailable(f"chromium did not start: {exc}")


def open_lab(browser, lab: Lab, *, width: int = 1400, height: int = 1000, path: str = "lab"):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.on("console", lambda msg: msg.type == "error" and print("console:", msg.text))
    page.goto(f"{lab.url}/{path}?token={lab.token}&reset")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.commands.hasCommand('qnb:show-jobs')",
                           timeout=90_000)
    return page


def show_jobs(page) -> None:
    page.evaluate("() => window.jupyterapp.commands.execute('qnb:show-jobs')")
    page.wait_for_selector("#qnb-jobs-panel", state="visible", timeout=30_000)
