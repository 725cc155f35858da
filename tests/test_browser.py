"""End to end in a real browser: JupyterLab on 127.0.0.1 with a temporary root and token,
Debian's Chromium driven by Playwright.

1. ``quickstart.ipynb``, run all cells: job cards go to completed with histograms, the
   long job ends cancelled, the queue monitor lists the jobs.
2. Page actions during a busy cell: a long emulator job runs, two short ones wait behind
   it, a cell sleeps; during the sleep we click Cancel on the long job's card and Remove
   on a row of the queue monitor. The page shows both as requested at once; the kernel
   handles them on a subshell thread while the main shell sleeps, so the long job ends
   cancelled, the short one runs and completes, all before the sleeping cell ends. Then
   ``%%qsubmit --wait`` blocks on a long job, and its card's Cancel ends the wait.
3. Without subshells (JupyterLab's ``commsOverSubshells`` turned off) the page still
   shows a click as requested at once, and it takes effect once the kernel is free.

Screenshots go to ``test-artifacts/``. In CI (``CI`` set) a browser that cannot start
fails the test instead of skipping it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("jupyterlab")]

REPO = Path(__file__).resolve().parent.parent
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
SLEEP_SECONDS = 20


def unavailable(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"browser test cannot run in CI: {reason}")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Its jobs carry a tag and its monitor shows only those: the lab's store is shared by
# the browser tests, and the monitor draws only the rows in view, so other tests' jobs
# could push "extra" out of it.
BUSY_NOTEBOOK = [
    "%load_ext qnb\nimport time, cirq\nq = cirq.LineQubit.range(2)\n"
    "bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key='m'))",
    "%%qsubmit --target emulator --compile --shots 40000 --name long --tag busy --out long_job\nbell",
    "%%qsubmit --target emulator --compile --shots 1000 --name short --tag busy --out short_job\nbell",
    "%%qsubmit --target emulator --compile --shots 1000 --name extra --tag busy --out extra_job\nbell",
    "%qqueue --target emulator --tag busy",
    f"print('sleeping', flush=True)\ntime.sleep({SLEEP_SECONDS})\nprint('woke', flush=True)",
    "%%qsubmit --target emulator --compile --shots 40000 --name waited --tag busy --wait --out waited_job\nbell",
    "print('final:', long_job.status.value, short_job.status.value, extra_job.status.value,\n"
    "      waited_job.status.value)",
]


FALLBACK_SLEEP_SECONDS = 8
FALLBACK_NOTEBOOK = [
    BUSY_NOTEBOOK[0],
    "%%qsubmit --target emulator --compile --shots 40000 --name slow --out slow_job\nbell",
    f"print('sleeping', flush=True)\ntime.sleep({FALLBACK_SLEEP_SECONDS})\nprint('woke', flush=True)",
]


def write_notebook(path: Path, sources: list[str]) -> None:
    import nbformat  # imported where used: its jsonschema takes ~4 s to import, in every xdist worker otherwise
    nb = nbformat.v4.new_notebook(
        cells=[nbformat.v4.new_code_cell(s) for s in sources],
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )
    nbformat.write(nb, path)


def write_page_config(config_dir: Path) -> None:
    """How JupyterLab's pages start, set in the test's own Jupyter config dir (``jupyter
    labextension disable`` would change the Python environment's): no news announcement
    over the page, and no build check (each page load ran ``yarn config`` for it; the
    extensions here are prebuilt)."""
    labconfig = config_dir / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    (labconfig / "page_config.json").write_text(json.dumps({
        "disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True},
        "buildCheck": False,
    }))


def jupyter_lab(tmp_path_factory):
    """A fresh JupyterLab server with its own HOME, Jupyter dirs, root and token (the
    ``lab`` fixture of conftest.py: one a test run, shared by this file and
    test_widgets_layout.py)."""
    if shutil.which("jupyter") is None:
        unavailable("jupyter is not installed")
    base = tmp_path_factory.mktemp("lab")
    root = base / "root"
    root.mkdir()
    shutil.copy(REPO / "notebooks" / "quickstart.ipynb", root)
    write_notebook(root / "busy.ipynb", BUSY_NOTEBOOK)
    write_notebook(root / "fallback.ipynb", FALLBACK_NOTEBOOK)
    env = {
        **os.environ,
        "HOME": str(base / "home"),
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_DATA_DIR": str(base / "data"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "IPYTHONDIR": str(base / "ipython"),
        "QNB_HOME": str(base / "qnb-home"),
        "QNB_EMULATOR_SECONDS_PER_SHOT": "0.001",  # the long job: 40 s unless cancelled
        "MPLBACKEND": "module://matplotlib_inline.backend_inline",
    }
    write_page_config(base / "config")
    port, token = free_port(), secrets.token_hex(16)
    log = open(base / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip", "127.0.0.1",
         "--port", str(port), "--ServerApp.port_retries=0", "--allow-root",
         f"--ServerApp.token={token}", f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=None", "--LabApp.expose_app_in_browser=True",
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def ready() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"jupyter lab exited: {(base / 'lab.log').read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    try:
        wait_until(ready, timeout=90, interval=0.2, what="jupyter lab to answer")
        yield {"url": url, "token": token, "root": root}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def chromium_browser():
    """Chromium driven by Playwright (the ``browser`` fixture of conftest.py)."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("the playwright package is not installed")
    if not Path(CHROMIUM).exists():
        unavailable(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_playwright() as p:
        try:
            chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        except Exception as exc:  # noqa: BLE001 - any launch failure means "no browser"
            unavailable(f"chromium did not start: {exc}")
        try:
            yield chromium
        finally:
            chromium.close()


def open_notebook(browser, lab, name: str):
    ARTIFACTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("console", lambda msg: msg.type == "error" and print("console:", msg.text))
    page.goto(f"{lab['url']}/lab/tree/{name}?token={lab['token']}&reset")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=90_000)
    page.wait_for_function(
        """() => {
            const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
            const kernel = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;
            return kernel && kernel.status === 'idle';
        }""",
        timeout=90_000,
    )
    # Every status each job card shows, in order, as the DOM changes.
    page.evaluate(
        """() => {
            window.qnbStatuses = {};
            const note = (card) => {
                const name = card.querySelector('.qnb-name')?.textContent;
                if (!name) return;
                const seen = (window.qnbStatuses[name] ??= []);
                if (seen[seen.length - 1] !== card.dataset.status) seen.push(card.dataset.status);
            };
            new MutationObserver(() => document.querySelectorAll('.qnb-card').forEach(note))
                .observe(document.body, {subtree: true, childList: true, attributes: true,
                                         attributeFilter: ['data-status']});
        }"""
    )
    return page


def run_all(page) -> None:
    # Not awaited: the command resolves only when every cell has run.
    page.evaluate("() => { window.jupyterapp.commands.execute('notebook:run-all-cells'); }")


def card(page, name: str):
    return page.locator(".qnb-card", has=page.locator(".qnb-name", has_text=re.compile(f"^{name}$")))


def test_quickstart_in_jupyterlab(browser, lab):
    page = open_notebook(browser, lab, "quickstart.ipynb")
    try:
        run_all(page)
        page.get_by_text("job(s), newest first").wait_for(timeout=180_000)  # the last cell
        bell = card(page, "bell")
        bell.and_(page.locator("[data-status=completed]")).wait_for(timeout=60_000)
        bars = bell.locator(".qnb-hist svg .qnb-bar-group")
        assert set(bars.evaluate_all("gs => gs.map(g => g.dataset.bitstring)")) <= {"00", "11"}
        assert bars.count() >= 1
        batch = card(page, "batch")
        batch.and_(page.locator("[data-status=completed]")).wait_for(timeout=60_000)
        labels = batch.locator("select.qnb-label-picker option").all_text_contents()
        assert labels == ["ghz", "plus", "tilted"]
        batch.locator("select.qnb-label-picker").select_option("plus")
        assert batch.locator(".qnb-hist svg .qnb-bar-group").count() == 8
        card(page, "long run").and_(page.locator("[data-status=cancelled]")).wait_for(timeout=60_000)
        monitor = page.locator(".qnb-monitor").first
        monitor.locator(".qnb-row").first.wait_for(timeout=30_000)
        assert monitor.locator(".qnb-row:visible").count() == 3
        monitor.locator(".qnb-row[data-status=cancelled] .qnb-name").get_by_text("long run").wait_for()
        # Filter and sort in the page.
        monitor.locator("select.qnb-filter-status").select_option("completed")
        assert monitor.locator(".qnb-row:visible .qnb-name").all_text_contents() == ["batch", "bell"]
        monitor.locator(".qnb-header [data-sort=name]").click()
        assert monitor.locator(".qnb-row:visible .qnb-name").all_text_contents() == ["batch", "bell"]
        monitor.locator(".qnb-header [data-sort=name]").click()
        assert monitor.locator(".qnb-row:visible .qnb-name").all_text_contents() == ["bell", "batch"]
        monitor.locator("select.qnb-filter-status").select_option("")
        assert monitor.locator(".qnb-row:visible").count() == 3
        # (Run all may render a card after its job ended; the queued -> running ->
        # completed transition is asserted in the next test, where the job waits.)
        assert page.evaluate("() => window.qnbStatuses")["long run"][-1] == "cancelled"
        # Both kinds of view came through view_loader.js, which adds the style once.
        assert page.locator("style#qnb-style").count() == 1
        page.locator(".qnb-card").first.scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "quickstart.png"), full_page=False)
        monitor.scroll_into_view_if_needed()
        monitor.screenshot(path=str(ARTIFACTS / "queue-monitor.png"))
    finally:
        page.screenshot(path=str(ARTIFACTS / "quickstart-end.png"))
        page.close()


def test_page_actions_during_a_sleeping_cell(browser, lab):
    page = open_notebook(browser, lab, "busy.ipynb")
    try:
        run_all(page)
        long, short = card(page, "long"), card(page, "short")
        long.and_(page.locator("[data-status=running]")).wait_for(timeout=90_000)
        monitor = page.locator(".qnb-monitor").first
        extra_row = monitor.locator(".qnb-row", has=page.locator(".qnb-name", has_text="extra"))
        extra_row.wait_for(timeout=30_000)
        page.get_by_text("sleeping", exact=True).wait_for(timeout=60_000)
        slept_at = time.monotonic()

        long.locator("button.qnb-cancel").click()
        clicked = time.monotonic()
        long.and_(page.locator("[data-action^=cancel]")).wait_for(timeout=2_000)
        requested_after = time.monotonic() - clicked
        assert "cancel requested" in long.locator(".qnb-note").text_content() or long.get_attribute(
            "data-action"
        ) == "cancel:done"
        extra_row.locator("button.qnb-remove").click()
        assert "requested" in extra_row.locator(".qnb-chip").text_content() or (
            extra_row.get_attribute("data-status") == "cancelled"
        )
        page.screenshot(path=str(ARTIFACTS / "busy-requested.png"))

        long.and_(page.locator("[data-status=cancelled]")).wait_for(timeout=SLEEP_SECONDS * 1000)
        cancelled_after = time.monotonic() - clicked
        woke_early = page.get_by_text("woke", exact=True).count()
        short.and_(page.locator("[data-status=completed]")).wait_for(timeout=SLEEP_SECONDS * 1000)
        short.locator(".qnb-hist svg .qnb-bar-group").first.wait_for()
        monitor.locator(".qnb-row[data-status=cancelled]", has=page.locator(".qnb-name", has_text="extra")).wait_for(
            timeout=SLEEP_SECONDS * 1000
        )
        still_sleeping = page.get_by_text("woke", exact=True).count() == 0
        page.screenshot(path=str(ARTIFACTS / "busy-during-sleep.png"))
        page.locator(".jp-NotebookPanel").screenshot(path=str(ARTIFACTS / "notebook-tour.png"))
        thread = long.get_attribute("data-action-thread")
        ack = json.loads(monitor.get_attribute("data-last-ack") or "{}")
        figures = {
            "requested_shown_s": round(requested_after, 3),
            "cancelled_shown_s": round(cancelled_after, 3),
            "sleep_elapsed_when_done_s": round(time.monotonic() - slept_at, 3),
            "handled_on": thread,
            "monitor_ack": ack,
            "still_sleeping": still_sleeping,
            "statuses": page.evaluate("() => window.qnbStatuses"),
        }
        (ARTIFACTS / "busy-figures.json").write_text(json.dumps(figures, indent=2))
        print(figures)

        assert requested_after < 1.0
        assert woke_early == 0 and still_sleeping, "the actions should take effect during the sleep"
        assert thread and thread != "MainThread", thread  # handled on a subshell thread
        assert ack.get("ok") and ack.get("thread") != "MainThread"
        short_seen = figures["statuses"]["short"]
        assert short_seen[0] == "queued" and short_seen[-1] == "completed", short_seen

        # --wait shows the card first; its Cancel ends the wait (the job runs 40 s otherwise).
        waited = card(page, "waited")
        waited.and_(page.locator("[data-status=running]")).wait_for(timeout=(SLEEP_SECONDS + 30) * 1000)
        waited.locator("button.qnb-cancel").click()
        clicked = time.monotonic()
        page.get_by_text(re.compile("^final: cancelled completed cancelled cancelled")).wait_for(timeout=30_000)
        wait_ended_after = time.monotonic() - clicked
        figures["wait_ended_after_cancel_s"] = round(wait_ended_after, 3)
        (ARTIFACTS / "busy-figures.json").write_text(json.dumps(figures, indent=2))
        print(figures)
        assert wait_ended_after < 10
    finally:
        page.screenshot(path=str(ARTIFACTS / "busy-end.png"))
        page.close()


def test_without_subshells_a_click_is_requested_at_once_and_done_when_the_kernel_is_free(browser, lab):
    page = open_notebook(browser, lab, "fallback.ipynb")
    try:
        # As in front ends without kernel subshells: every comm message goes to the main shell.
        page.evaluate("() => { window.jupyterapp.serviceManager.kernels.commsOverSubshells = 'disabled'; }")
        page.evaluate(
            """() => {
                window.qnbEvents = {};
                const stamp = (name) => { window.qnbEvents[name] ??= performance.now(); };
                new MutationObserver(() => {
                    const action = document.querySelector('.qnb-card')?.dataset.action;
                    if (action) stamp(action);
                    for (const out of document.querySelectorAll('.jp-OutputArea-output')) {
                        if (out.textContent.includes('woke')) stamp('woke');
                    }
                }).observe(document.body, {subtree: true, childList: true, characterData: true,
                                           attributes: true, attributeFilter: ['data-action']});
            }"""
        )
        run_all(page)
        slow = card(page, "slow")
        slow.and_(page.locator("[data-status=running]")).wait_for(timeout=90_000)
        page.get_by_text("sleeping", exact=True).wait_for(timeout=60_000)
        slow.locator("button.qnb-cancel").click()
        slow.and_(page.locator("[data-action='cancel:requested']")).wait_for(timeout=2_000)
        assert "cancel requested" in slow.locator(".qnb-note").text_content()
        page.screenshot(path=str(ARTIFACTS / "fallback-requested.png"))
        slow.and_(page.locator("[data-status=cancelled]")).wait_for(timeout=(FALLBACK_SLEEP_SECONDS + 30) * 1000)
        events = page.evaluate("() => window.qnbEvents")
        (ARTIFACTS / "fallback-figures.json").write_text(json.dumps(events, indent=2))
        print(events)
        assert events["cancel:requested"] < events["woke"] <= events["cancel:done"], events
        assert slow.get_attribute("data-action-thread") == "MainThread"
    finally:
        page.screenshot(path=str(ARTIFACTS / "fallback-end.png"))
        page.close()


ETA_NOTEBOOK = [
    "%load_ext qnb\nimport cirq, qnb\nq = cirq.LineQubit.range(2)\n"
    "bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key='m'))",
    # ~20 s of emulated device time. Where the kernel has no estimate of it yet, one is set
    # as the estimator sets it (under the core lock, the stream told).
    "long = qnb.submit(bell, target='emulator', compile=True, shots=20_000, name='eta long')\n"
    "from qnb.notebook._stream import stream_for\n"
    "manager = qnb._api.get_manager()\n"
    "with manager._core.lock:\n"
    "    rec = manager.record(long.id)\n"
    "    rec.live.estimate = rec.live.estimate or qnb.Estimate.starting_now(40, 0, basis='set by the test')\n"
    "stream_for(manager).nudge(long.id)\n"
    "long",
    "qnb.monitor()",
]


def test_card_and_monitor_show_the_eta_until_the_job_ends(browser, lab):
    write_notebook(lab["root"] / "eta.ipynb", ETA_NOTEBOOK)
    page = open_notebook(browser, lab, "eta.ipynb")
    try:
        run_all(page)
        long = card(page, "eta long")
        eta = long.locator(".qnb-eta")
        eta.wait_for(state="visible", timeout=90_000)
        assert re.fullmatch(r"done ~\d\d:\d\d \((in \d+ (s|min)|in \d+ h \d\d min|due now)\)", eta.text_content())
        assert "basis: " in eta.get_attribute("title")
        monitor = page.locator(".qnb-monitor").first
        row = monitor.locator(".qnb-row[data-status=running]", has=page.locator(".qnb-name", has_text="eta long"))
        row.wait_for(timeout=60_000)
        assert re.match(r"^(in \d|due now)", row.locator(".qnb-eta").text_content())
        long.scroll_into_view_if_needed()
        long.screenshot(path=str(ARTIFACTS / "card-eta.png"))
        long.locator("button.qnb-cancel").click()
        long.and_(page.locator("[data-status=cancelled]")).wait_for(timeout=60_000)
        assert not eta.is_visible()  # an ended job has no ETA
        cancelled = monitor.locator(".qnb-row[data-status=cancelled]", has=page.locator(".qnb-name", has_text="eta long"))
        cancelled.wait_for(timeout=30_000)
        assert cancelled.locator(".qnb-eta").text_content() == ""
    finally:
        page.screenshot(path=str(ARTIFACTS / "eta-end.png"))
        page.close()
