"""The widgets in a real JupyterLab + Chromium (test_browser.py's server and browser):

- the queue monitor's layout at 1,100 and 1,400 px with the file browser open, in the
  light and the dark theme: no column narrower than its minimum, nothing overflowing
  without a scroll bar, full action labels with titles, a sort indicator, keyboard
  sorting, theme colours (screenshots in test-artifacts/);
- a view whose kernel has gone says so, stops and disables its actions;
- a notebook executed with nbclient, opened again: the saved HTML views show, never
  "Error displaying widget: model not found" (trusted and untrusted).
"""

from __future__ import annotations

import re
import time

import pytest

from test_browser import ARTIFACTS, card, open_notebook, run_all, write_notebook

pytestmark = [pytest.mark.browser, pytest.mark.xdist_group("jupyterlab")]

MINIMUMS = {"position": 36, "name": 140, "id": 64, "user": 60, "target": 70, "added": 72,
            "status": 100, "progress": 140, "elapsed": 80, "eta": 100, "actions": 96}  # queue_monitor.js COLUMNS

SETUP = ("%load_ext qnb\nimport cirq, qnb\nq = cirq.LineQubit.range(2)\n"
         "bell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key='m'))")
MONITOR_NOTEBOOK = [
    SETUP,
    "done = [qnb.submit(bell, shots=100, name=f'a rather long job name, number {i}') for i in range(3)]\n"
    "[j.result(timeout=60) for j in done]\n"
    "long = qnb.submit(bell, target='emulator', compile=True, shots=40000, name='long emulator job')\n"
    "waiting = [qnb.submit(bell, target='emulator', compile=True, shots=100, name=f'waiting {i}') for i in range(2)]",
    "qnb.monitor()",
]


def measure_monitor(page) -> dict:
    return page.evaluate("""(mins) => {
        const monitor = document.querySelector('.qnb-monitor');
        const narrow = [];
        for (const [key, min] of Object.entries(mins)) {
            const cell = monitor.querySelector(`.qnb-header .qnb-col-${key}`);
            const w = cell.getBoundingClientRect().width;
            if (w < min - 0.5) narrow.push(`${key}: ${w}`);
        }
        const overflowing = [];
        const nodes = [monitor, ...monitor.querySelectorAll('.qnb-toolbar, .qnb-scroll, .qnb-actions')];
        for (const node of nodes) {
            if (node.closest('.qnb-row') && node.closest('.qnb-row').style.display === 'none') continue;
            const scrolls = ['auto', 'scroll'].includes(getComputedStyle(node).overflowX);
            if (node.scrollWidth > node.clientWidth + 1 && !scrolls)
                overflowing.push(`${node.className}: ${node.scrollWidth} > ${node.clientWidth}`);
        }
        // Cut texts (an ellipsis) in the action buttons and the header.
        const cut = [...monitor.querySelectorAll('.qnb-row:not([style*="none"]) button, .qnb-sort')]
            .filter(b => b.scrollWidth > b.clientWidth + 1).map(b => b.textContent);
        const output = monitor.closest('.jp-OutputArea-output');
        const scroller = monitor.querySelector('.qnb-scroll');
        const buttons = [...monitor.querySelectorAll('.qnb-row button[data-action]')];
        const rowStyle = getComputedStyle(monitor.querySelector('.qnb-row'));
        return {
            narrow, overflowing, cut,
            beyondOutput: monitor.getBoundingClientRect().right - output.getBoundingClientRect().right,
            scrollX: getComputedStyle(scroller).overflowX,
            needsScroll: scroller.scrollWidth > scroller.clientWidth + 1,
            untitled: buttons.filter(b => !b.title || !b.textContent.trim()).length,
            styled: buttons.filter(b => b.classList.contains('jp-Button')).length,
            buttons: buttons.length,
            color: rowStyle.color,
            background: getComputedStyle(monitor).backgroundColor,
            sortedArrow: monitor.querySelector('[data-sorted=descending]')?.textContent,
        };
    }""", MINIMUMS)


def settled_measure(page, timeout: float = 30.0) -> dict:
    """The monitor measured once the page has laid it out at its new size and theme
    (JupyterLab resizes its panels on the next frames): two measures a frame apart agree."""
    deadline = time.monotonic() + timeout
    found = measure_monitor(page)
    while True:
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        again = measure_monitor(page)
        if again == found:
            return found
        assert time.monotonic() < deadline, f"the monitor's layout did not settle: {again}"
        found = again


def luminance(css: str) -> float:
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
    lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
    return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]


LAYOUTS = [(1100, "JupyterLab Light"), (1400, "JupyterLab Light"), (1100, "JupyterLab Dark"),
           (1400, "JupyterLab Dark")]


def test_monitor_layout(browser, lab, subtests):
    """One notebook run (one kernel, its jobs queued), then each width and theme in turn."""
    write_notebook(lab["root"] / "monitor.ipynb", MONITOR_NOTEBOOK)
    page = open_notebook(browser, lab, "monitor.ipynb")
    try:
        page.evaluate("() => window.jupyterapp.commands.execute('filebrowser:activate')")
        page.wait_for_selector(".jp-FileBrowser", state="visible", timeout=30_000)
        run_all(page)
        monitor = page.locator(".qnb-monitor").first
        monitor.locator(".qnb-row[data-status=queued]").first.wait_for(timeout=120_000)
        for width, theme in LAYOUTS:
            with subtests.test(width=width, theme=theme):
                check_monitor_layout(page, monitor, width, theme)
    finally:
        page.close()


def check_monitor_layout(page, monitor, width: int, theme: str) -> None:
    page.set_viewport_size({"width": width, "height": 900})
    page.evaluate("t => window.jupyterapp.commands.execute('apputils:change-theme', {theme: t})", theme)
    page.wait_for_function("t => document.body.dataset.jpThemeName === t", arg=theme, timeout=30_000)
    page.wait_for_selector(".jp-FileBrowser", state="visible", timeout=30_000)
    monitor.scroll_into_view_if_needed()
    found = settled_measure(page)
    print(width, theme, found)
    assert found["narrow"] == [], found
    assert found["overflowing"] == [] and found["cut"] == [], found
    assert found["beyondOutput"] <= 1, found
    assert found["scrollX"] == "auto", found
    if width == 1100:
        assert found["needsScroll"], "at 1,100 px with the file browser open the columns scroll"
    else:
        assert not found["needsScroll"], "at 1,400 px every column fits"
    assert found["buttons"] >= 4 and found["untitled"] == 0 and found["styled"] == found["buttons"], found
    assert found["sortedArrow"] and "▼" in found["sortedArrow"], found
    contrast = (max(luminance(found["color"]), luminance(found["background"])) + 0.05) / (
        min(luminance(found["color"]), luminance(found["background"])) + 0.05)
    assert contrast > 4.5, found
    if "Dark" in theme:
        assert luminance(found["background"]) < 0.2, found
    # Keyboard: a sort button takes the focus and Enter sorts by it (and back: the next
    # layout starts from the default order).
    header = monitor.locator(".qnb-header .qnb-col-name")
    monitor.locator(".qnb-sort[data-sort=name]").focus()
    page.keyboard.press("Enter")
    assert header.get_attribute("aria-sort") == "ascending"
    page.keyboard.press("Enter")
    assert header.get_attribute("aria-sort") == "descending"
    monitor.locator(".qnb-sort[data-sort=added]").click()  # back to the default order
    assert monitor.locator(".qnb-header .qnb-col-added").get_attribute("aria-sort") == "descending"
    shade = theme.split()[-1].lower()
    monitor.screenshot(path=str(ARTIFACTS / f"queue-monitor-{width}-{shade}.png"))
    page.screenshot(path=str(ARTIFACTS / f"queue-monitor-page-{width}-{shade}.png"))


def test_views_of_a_dead_kernel_say_so(browser, lab):
    write_notebook(lab["root"] / "dies.ipynb", [
        SETUP,
        "%%qsubmit --target emulator --compile --shots 40000 --name doomed --out doomed\nbell",
        "qnb.monitor()",
    ])
    page = open_notebook(browser, lab, "dies.ipynb")
    try:
        run_all(page)
        doomed = card(page, "doomed")
        doomed.and_(page.locator("[data-status=running]")).wait_for(timeout=90_000)
        assert doomed.get_attribute("data-kernel") == "live"
        monitor = page.locator(".qnb-monitor").first
        monitor.locator(".qnb-row", has=page.locator(".qnb-name", has_text="doomed")).wait_for(timeout=30_000)
        # The kernel process dies (the server restarts a new one: not this view's).
        page.evaluate("""() => {
            const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
            kernel.requestExecute({code: 'import os; os._exit(1)'});
        }""")
        doomed.and_(page.locator("[data-kernel=gone]")).wait_for(timeout=60_000)
        assert doomed.locator("button.qnb-cancel").is_disabled()
        assert 'qnb.get_job("' in doomed.locator(".qnb-gone").text_content()
        elapsed = doomed.locator(".qnb-elapsed").text_content()
        page.wait_for_function(  # the old timer would have ticked within a second
            "() => new Promise(r => setTimeout(() => r(true), 1500))")
        assert doomed.locator(".qnb-elapsed").text_content() == elapsed
        monitor.and_(page.locator("[data-kernel=gone]")).wait_for(timeout=30_000)
        assert monitor.locator(".qnb-row button[data-action]").first.is_disabled()
    finally:
        page.screenshot(path=str(ARTIFACTS / "dead-kernel.png"))
        page.close()


def test_a_reopened_notebook_shows_its_saved_views(browser, lab, tmp_path, monkeypatch):
    import nbformat  # imported where used: its jsonschema takes ~4 s to import, in every xdist worker otherwise
    from nbclient import NotebookClient
    from nbformat.sign import NotebookNotary

    monkeypatch.setenv("QNB_HOME", str(tmp_path / "qnb-home"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in [
        SETUP,
        "%%qsubmit --shots 200 --name saved-bell --out job\nbell",
        "job.result(timeout=60); print('done')",
        "qnb.monitor()",
    ]], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    NotebookClient(nb, timeout=120, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    html = [o.data["text/html"] for c in nb.cells for o in c.outputs if "text/html" in o.get("data", {})]
    assert sum("qnb-saved-view" in h for h in html) == 2
    for trusted in (False, True):
        name = f"reopened-{'trusted' if trusted else 'untrusted'}.ipynb"
        nbformat.write(nb, lab["root"] / name)
        if trusted:  # as a notebook the user saved in JupyterLab: the widget renderer is used
            # What `jupyter trust` does, in this process: the lab's data dir holds the
            # signatures.
            notary = NotebookNotary(data_dir=str(lab["root"].parent / "data"))
            notary.sign(nbformat.read(lab["root"] / name, nbformat.NO_CONVERT))
        page = open_notebook(browser, lab, name)
        try:
            saved = page.locator(".qnb-saved-view")
            saved.first.wait_for(state="attached", timeout=30_000)
            assert saved.count() == 2
            # Each output shows the job: its saved view, or, when JupyterLab's widget manager
            # restored the model from the notebook's saved widget state (it may, in a trusted
            # notebook, depending on timing), the view drawn from that state, marked as having
            # no kernel behind it. Never both, never neither.
            views = ".qnb-saved-view, .qnb-card, .qnb-monitor"
            page.wait_for_function(f"""() => {{
                const shown = [...document.querySelectorAll('{views}')].filter(v => v.checkVisibility());
                return shown.length === 2 && shown.some(v => v.textContent.includes('saved-bell'))
                    && shown.every(v => v.classList.contains('qnb-saved-view') || v.dataset.kernel === 'gone');
            }}""", timeout=30_000)
            # The widget outputs have no model in this new kernel: nothing says so in the page.
            page.wait_for_function("""() => [...document.querySelectorAll(
                '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.widget-view+json"]')]
                .every(o => o.textContent !== 'Loading widget...')""", timeout=30_000)
            errors = page.get_by_text("Error displaying widget")
            assert all(not e.is_visible() for e in errors.all())
            page.screenshot(path=str(ARTIFACTS / f"saved-view-{'trusted' if trusted else 'untrusted'}.png"))
        finally:
            page.close()
