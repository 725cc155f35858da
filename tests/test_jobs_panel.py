"""The JupyterLab jobs panel (``qnb/jobs_panel`` + the ``qnb-jobs`` extension).

Quick: the shipped build matches its source (hash recorded at build time), the wheel
ships both halves, the feed's rows and merging. Browser (real JupyterLab + Chromium):
the panel lists jobs of two other processes and a queue server (one unreachable server
shown as such), follows them live, cancels another process's running job, opens a
result in a tab, notifies when a job ends while the panel is away, works in Notebook 7,
and lays out at 1,100 and 1,400 px in the light and dark themes (screenshots in
``test-artifacts/``).
"""

from __future__ import annotations

import json
import tomllib

import httpx
import pytest

from conftest import BELL_QASM, SHARED_SERVE_GROUP, wait_until
from test_jobs_panel_support import (
    ARTIFACTS, BUILD, REPO, Lab, Submitter, lab_env, launch_chromium, open_lab, show_jobs,
    source_hash,
)
from test_server_support import auth, free_port

# One worker runs this file (loadgroup): its module-scoped fixtures start once, and its
# queue server is the run's shared one, which that worker starts for its other tests too.
pytestmark = SHARED_SERVE_GROUP

# -- quick ----------------------------------------------------------------------------------


def test_the_shipped_build_matches_its_source():
    recorded = json.loads((BUILD / "source-hash.json").read_text())["sha256"]
    assert recorded == source_hash(), (
        "qnb/labextension was built from other sources than labextension/ holds now: "
        "run `cd labextension && jlpm install && jlpm build` and commit qnb/labextension"
    )
    package = json.loads((BUILD / "package.json").read_text())
    assert package["name"] == "qnb-jobs"
    assert (BUILD / "static" / package["jupyterlab"]["_build"]["load"].split("/")[-1]).exists()


def test_the_wheel_ships_both_halves():
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    shared = config["tool"]["hatch"]["build"]["targets"]["wheel"]["shared-data"]
    assert shared["qnb/labextension"] == "share/jupyter/labextensions/qnb-jobs"
    switch = "jupyter-config/jupyter_server_config.d/qnb.json"
    assert shared[switch] == "etc/jupyter/jupyter_server_config.d/qnb.json"
    assert json.loads((REPO / switch).read_text()) == {
        "ServerApp": {"jpserver_extensions": {"qnb.jobs_panel": True}}
    }


def test_rows_say_outcomes_and_origin():
    from qnb._records import ItemRecord, JobRecord
    from qnb._status import JobStatus
    from qnb.jobs_panel._feed import merged, panel_row, server_row

    items = [ItemRecord(str(i), JobStatus.COMPLETED) for i in range(12)]
    items += [ItemRecord(str(i), JobStatus.CANCELLED) for i in range(12, 150)]
    rec = JobRecord("a" * 32, "sweep", "emulator", "me", 100, items, 1.0,
                    status=JobStatus.CANCELLED, owner="4242-abcdef")
    row = panel_row(rec, servers=set())
    assert (row["completed"], row["failed"], row["cancelled"], row["total"]) == (12, 0, 138, 150)
    assert (row["pid"], row["origin"], row["source"]) == (4242, "process 4242", "store")
    rec.origin = "analysis.ipynb"  # stored by the submitting process
    assert panel_row(rec, servers=set())["origin"] == "analysis.ipynb (process 4242)"
    remote = JobRecord("b" * 32, "far", "lab", "me", 10, [ItemRecord("0")], 2.0, status=JobStatus.QUEUED)
    srow = server_row({"id": "b" * 32, "name": "far", "status": "completed", "done": 1, "total": 1,
                       "time_added": 2.0}, "lab")
    both = merged({remote.id: panel_row(remote, servers={"lab"})}, {srow["id"]: srow})
    assert both[remote.id]["status"] == "completed" and both[remote.id]["completed"] == 1
    assert both[remote.id]["origin"] == "sent to lab"


def test_rows_carry_a_servers_estimate_the_cost_and_retries():
    from qnb._records import ItemRecord, JobRecord
    from qnb._status import JobStatus
    from qnb.jobs_panel._feed import merged, panel_row, server_row

    eta = {"run_seconds": 5.0, "wait_seconds": 60.0, "finish": 2e9, "cost": None, "currency": None,
           "basis": "queue of 3 ahead"}
    view = {"id": "c" * 32, "name": "far", "status": "queued", "done": 0, "total": 1, "time_added": 2.0,
            "estimate": eta, "cost": 1.5, "currency": "USD", "tags": ["calib"]}
    srow = server_row(view, "lab")
    assert (srow["estimate"], srow["cost"], srow["currency"], srow["tags"]) == (eta, 1.5, "USD", ["calib"])
    # The store's copy of a server's job has no estimate (none is stored): the server's
    # reaches it while both say the job waits, and goes once the server's view has none.
    mine = JobRecord("c" * 32, "far", "lab", "me", 10, [ItemRecord("0")], 2.0, status=JobStatus.QUEUED)
    rows = {mine.id: panel_row(mine, servers={"lab"})}
    assert "estimate" not in rows[mine.id]
    assert merged(rows, {srow["id"]: srow})[mine.id]["estimate"] == eta
    running = server_row({**view, "status": "running", "estimate": None}, "lab")
    assert "estimate" not in merged(rows, {srow["id"]: running})[mine.id]
    # An item waiting to run again (attempts kept in the store): "retrying (1/2)".
    flaky = JobRecord("d" * 32, "flaky", "sim", "me", 10,
                      [ItemRecord("0", JobStatus.COMPLETED), ItemRecord("1", JobStatus.PENDING, attempts=1)],
                      3.0, status=JobStatus.RUNNING, retries=2)  # fmt: skip
    assert panel_row(flaky, servers=set())["retrying"] == {"count": 1, "attempt": 1, "retries": 2}
    flaky.status = JobStatus.FAILED
    assert "retrying" not in panel_row(flaky, servers=set())


# -- in a browser ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(tmp_path_factory, shared_serve):
    server, tokens = shared_serve
    base = tmp_path_factory.mktemp("panel-lab")
    targets = base / "targets.toml"
    targets.write_text(
        f'[targets.lab]\nurl = "{server.url}"\ntoken = "{tokens["alice"]}"\n\n'
        f'[targets.down]\nurl = "http://127.0.0.1:{free_port()}"\ntoken = "nobody"\n'
    )
    env = lab_env(base, base / "qnb-home", QNB_TARGETS=str(targets))
    started = Lab(base, env)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("the playwright package is not installed (the test extra brings it)")
    with sync_playwright() as p:
        chromium = launch_chromium(p)
        try:
            yield chromium
        finally:
            chromium.close()


PAGE_SIZE = {"width": 1400, "height": 1000}


@pytest.fixture(scope="module")
def page(browser, lab):
    ARTIFACTS.mkdir(exist_ok=True)
    page = open_lab(browser, lab, **PAGE_SIZE)
    show_jobs(page)
    yield page
    page.close()


@pytest.fixture(scope="module")
def processes(lab, shared_serve):
    """Two other processes with emulator jobs (a long one, a short one), one with a job
    on the queue server, and a job sent to the server over HTTP (not in the store)."""
    server, tokens = shared_serve
    started = {
        "long": Submitter(lab.env, "long-a", 40_000),
        "short": Submitter(lab.env, "short-b", 1_500),
        "served": Submitter(lab.env, "served-d", 200, target="lab"),
    }
    answer = httpx.post(f"{server.url}/v1/jobs", headers=auth(tokens["alice"]),
                        json={"circuits": {"bell": BELL_QASM}, "shots": 100, "name": "over-http", "compile": True})
    answer.raise_for_status()
    ids = {key: s.job_id for key, s in started.items()}
    ids["http"] = answer.json()["id"]
    try:
        yield ids, started
    finally:
        for submitter in started.values():
            submitter.stop()


def row_status(page, job_id: str) -> str | None:
    return page.evaluate(
        "id => document.querySelector(`#qnb-jobs-panel [data-job-id='${id}']`)?.dataset.status ?? null", job_id
    )


def wait_status(page, job_id: str, statuses: set[str], timeout: float) -> str:
    return wait_until(lambda: (s := row_status(page, job_id)) in statuses and s, timeout=timeout,
                      interval=0.05, what=f"job {job_id[:8]} to show {statuses}")


@pytest.mark.browser
def test_lists_every_process_and_server_live(page, lab, processes):
    ids, _ = processes
    for key, job_id in ids.items():
        wait_until(lambda: row_status(page, job_id), timeout=30, interval=0.05, what=f"the {key} job's row")
    # Names, and full ids on the rows.
    names = page.evaluate(
        "() => Object.fromEntries([...document.querySelectorAll('#qnb-jobs-panel [data-job-id]')]"
        ".map(r => [r.dataset.jobId, r.querySelector('.qnb-jp-name').textContent]))"
    )
    assert names[ids["long"]] == "long-a" and names[ids["short"]] == "short-b"
    assert names[ids["served"]] == "served-d" and names[ids["http"]] == "over-http"
    # The unreachable server says so; the reachable one too.
    wait_until(lambda: page.evaluate(
        "() => document.querySelector(\"[data-server='down']\")?.dataset.reachable === 'false' && "
        "document.querySelector(\"[data-server='lab']\")?.dataset.reachable === 'true'"),
        timeout=15, interval=0.1, what="the servers' states")
    # Live: the short job goes to completed with no reload, its progress says so.
    wait_status(page, ids["short"], {"completed"}, timeout=60)
    text = page.text_content(f"[data-job-id='{ids['short']}'] .qnb-jp-ptext")
    assert text == "1 done", text
    origin = page.text_content(f"[data-job-id='{ids['short']}'] .qnb-jp-origin")
    assert origin.startswith("python -c (process "), origin  # the script that submitted it
    wait_status(page, ids["http"], {"completed"}, timeout=60)
    page.screenshot(path=str(ARTIFACTS / "jobs-panel-live.png"))


@pytest.mark.browser
def test_cancels_another_process_running_job(page, processes):
    ids, started = processes
    job_id = ids["long"]
    wait_status(page, job_id, {"running"}, timeout=60)
    page.click(f"[data-job-id='{job_id}'] button[data-action='cancel']")
    # Carried out by the process that runs it, through the store.
    try:
        wait_status(page, job_id, {"cancelled"}, timeout=20)
    except AssertionError:
        toast = page.evaluate("() => document.querySelector('.Toastify')?.textContent ?? ''")
        pytest.fail(f"the job did not end cancelled; notifications: {toast!r}")
    assert started["long"].proc.stdout.readline().strip() == "ended cancelled"


@pytest.mark.browser
def test_opens_a_result_in_a_tab(page, processes):
    ids, _ = processes
    job_id = ids["short"]
    wait_status(page, job_id, {"completed"}, timeout=60)
    page.click(f"[data-job-id='{job_id}'] button[data-action='results']")
    page.wait_for_selector(f".qnb-jp-result-body[data-job-id='{job_id}'] svg rect", timeout=60_000)
    outcomes = page.evaluate(
        f"() => [...document.querySelectorAll(\".qnb-jp-result-body[data-job-id='{job_id}'] .qnb-jp-counts td:first-child\")].map(t => t.textContent).sort()"
    )
    # The emulator's noise may add a few 01 and 10; a Bell pair is mostly 00 and 11.
    assert {"00", "11"} <= set(outcomes) <= {"00", "01", "10", "11"}, outcomes
    page.screenshot(path=str(ARTIFACTS / "jobs-panel-result.png"))


@pytest.mark.browser
def test_notifies_when_a_job_ends_while_the_panel_is_away(page, lab):
    page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
    other = Submitter(lab.env, "notify-c", 300)
    try:
        job_id = other.job_id
        page.wait_for_function(
            "() => [...document.querySelectorAll('.Toastify__toast')].some(t => t.textContent.includes('notify-c'))",
            timeout=60_000,
        )
        page.screenshot(path=str(ARTIFACTS / "jobs-panel-notification.png"))
        assert other.proc.stdout.readline().strip() == "ended completed"
        assert any(r["id"] == job_id for r in lab.api("jobs")["jobs"])
    finally:
        other.stop()
        show_jobs(page)


@pytest.mark.browser
# Each width and each theme once (the theme changes colours, not widths), on the
# module's page: JupyterLab relays itself out when the window is resized (a page load is
# seconds of CPU), and a page that has long finished starting keeps the focus where the
# keyboard puts it.
@pytest.mark.parametrize("width, theme", [(1100, "JupyterLab Dark"), (1400, "JupyterLab Light")])
def test_layout(page, processes, width, theme):
    page.set_viewport_size({"width": width, "height": 800})
    try:
        page.evaluate("t => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", theme)
        page.wait_for_function(
            "t => document.body.dataset.jpThemeName === t", arg=theme, timeout=30_000)
        show_jobs(page)
        page.wait_for_selector("#qnb-jobs-panel [data-job-id]", timeout=30_000)
        found = page.evaluate("""() => {
            const panel = document.getElementById('qnb-jobs-panel');
            const mins = {status: 104, progress: 200, name: 160, target: 100, origin: 120,
                          added: 128, elapsed: 84};
            const narrow = [];
            for (const [key, min] of Object.entries(mins)) {
                const w = panel.querySelector(`[data-sort='${key}']`).getBoundingClientRect().width;
                if (w < min - 0.5) narrow.push(`${key}: ${w}`);
            }
            const overflowing = [];
            for (const node of [panel, ...panel.querySelectorAll('.qnb-jp-toolbar, .qnb-jp-status, .qnb-jp-actions')]) {
                const style = getComputedStyle(node);
                if (node.scrollWidth > node.clientWidth + 1 && !['auto', 'scroll'].includes(style.overflowX))
                    overflowing.push(node.className);
            }
            const scroller = panel.querySelector('.qnb-jp-scroll');
            const buttons = [...panel.querySelectorAll('button[data-action]')];
            return {narrow, overflowing, scrollX: getComputedStyle(scroller).overflowX,
                    untitled: buttons.filter(b => !b.title || !b.textContent).length,
                    background: getComputedStyle(panel).backgroundColor};
        }""")
        assert found["narrow"] == [] and found["overflowing"] == [], found
        assert found["scrollX"] == "auto" and found["untitled"] == 0, found
        # Keyboard: the search box, then the sort buttons, take the focus in turn.
        page.focus("#qnb-jobs-panel .qnb-jp-search")
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.dataset.sort") == "status"
        before = page.get_attribute("[data-sort='status']", "aria-sort")
        page.keyboard.press("Enter")  # sorts by status, or turns that order round
        expected = "descending" if before == "ascending" else "ascending"
        assert page.get_attribute("[data-sort='status']", "aria-sort") == expected
        slug = theme.split()[-1].lower()
        page.screenshot(path=str(ARTIFACTS / f"jobs-panel-{width}-{slug}.png"))
    finally:
        page.set_viewport_size(PAGE_SIZE)


@pytest.mark.browser
def test_notebook7_side_panel(browser, lab, processes):
    ids, _ = processes
    (lab.root / "empty.ipynb").write_text(json.dumps(
        {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    page = open_lab(browser, lab, path="notebooks/empty.ipynb")
    try:
        show_jobs(page)
        page.wait_for_selector(f"#qnb-jobs-panel [data-job-id='{ids['short']}']", timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "jobs-panel-notebook7.png"))
    finally:
        page.close()


@pytest.mark.browser
def test_the_panel_needs_no_kernel(lab):
    assert json.loads(urllib_get(f"{lab.url}/api/kernels?token={lab.token}")) == []


def urllib_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()
