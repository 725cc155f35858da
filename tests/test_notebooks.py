"""The notebooks in notebooks/, executed top to bottom in real kernels with nbclient."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.fixture
def execute(tmp_path, monkeypatch):
    monkeypatch.setenv("QNB_HOME", str(tmp_path / "qnb-home"))  # the kernel inherits it
    import nbformat  # imported where used: its jsonschema takes ~4 s to import, in every xdist worker otherwise
    from nbclient import NotebookClient

    def run(name: str) -> nbformat.NotebookNode:
        nb = nbformat.read(NOTEBOOKS / name, as_version=4)
        client = NotebookClient(
            nb, timeout=240, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        )
        client.execute()
        return nb

    return run


def outputs(nb):
    for cell in nb.cells:
        if cell.cell_type == "code":
            yield from cell.outputs


def text_of(nb) -> str:
    parts = []
    for out in outputs(nb):
        if out.output_type == "stream":
            parts.append(out.text)
        elif "data" in out:
            parts.append(str(out.data.get("text/plain", "")))
    return "\n".join(parts)


def test_quickstart(execute):
    nb = execute("quickstart.ipynb")
    text = text_of(nb)
    views = [o for o in outputs(nb) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 4  # three job cards and the queue monitor
    assert all("text/plain" in o.data for o in views)
    # Each widget's saved view (HTML) is the output just before it: what a notebook opened
    # again without its kernel shows instead of "Error displaying widget: model not found".
    for cell in nb.cells:
        for before, view in zip(cell.get("outputs", []), cell.get("outputs", [])[1:]):
            if "application/vnd.jupyter.widget-view+json" in view.get("data", {}):
                assert "qnb-saved-view" in before.data["text/html"]
    saved = [o.data["text/html"] for o in outputs(nb) if "qnb-saved-view" in o.get("data", {}).get("text/html", "")]
    assert len(saved) == 4
    assert any("<b>bell</b>" in h for h in saved) and any("Queue monitor" in h for h in saved)
    assert all("qnb.get_job(" in h or "qnb.monitor()" in h for h in saved)
    assert "cancelled" in text
    bell_counts = next(o for o in outputs(nb) if o.get("data", {}).get("text/plain", "").startswith("{'00'"))
    assert set(eval(bell_counts.data["text/plain"])) <= {"00", "11"}
    assert sum("image/png" in o.get("data", {}) for o in outputs(nb)) == 2  # Bell and batch plots

    # The saved widget state holds the front-end code once per kind, not once per card.
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    code = [v for m in state.values() for k, v in m["state"].items() if k in ("_esm", "card_module")]
    assert len(code) == 6  # three card loaders, the monitor, the channel and the card code
    assert sum("function histogramSvg" in c for c in code) == 1  # the card code, once
    card_states = [m["state"] for m in state.values() if "job" in m["state"]]
    assert len(card_states) == 3
    assert all(len(s["_esm"]) < 1500 for s in card_states)
    assert sum("card_module" in m["state"] for m in state.values()) == 1
    finals = {s["job"]["name"]: s["job"]["status"] for s in card_states}
    assert finals["long run"] == "cancelled"


def test_async_jobs(execute):
    text = text_of(execute("async_jobs.ipynb"))
    assert "still going" in text and "completed" in text


def test_queue(execute):
    text = text_of(execute("queue.ipynb"))
    assert "refused:" in text and "removed b cancelled" in text and "urgent running" in text


def test_sweeps_notebook(execute):
    nb = execute("sweeps.ipynb")
    text = text_of(nb)
    assert "41 cirq.ParamResolver({'theta': 3.14159" in text  # the middle point of 41
    images = [o for o in outputs(nb) if "image/png" in o.get("data", {})]
    assert len(images) == 1  # the Rabi curve
    assert "true_count" in text and "completed" in text  # t1_decay's table, its job done


def test_a_saved_notebook_holds_each_widgets_state_as_of_its_cells_end(tmp_path, monkeypatch):
    import nbformat  # imported where used: its jsonschema takes ~4 s to import, in every xdist worker otherwise
    from nbclient import NotebookClient

    # The widgets' stream sends at most every `interval`; here an interval far longer than
    # the run, so only the flush at each cell's end can bring the card's last state into
    # the widget state nbclient saves.
    monkeypatch.setenv("QNB_HOME", str(tmp_path / "qnb-home"))
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(s) for s in [
        "import cirq, qnb\nfrom qnb.notebook._stream import stream_for\nfrom qnb._api import get_manager\n"
        "stream_for(get_manager()).interval = 600\n"
        "q = cirq.LineQubit.range(2)\nbell = cirq.Circuit(cirq.H(q[0]), cirq.CNOT(*q), cirq.measure(*q, key='m'))",
        "job = qnb.submit(bell, shots=50, name='ends in its cell')\ndisplay(job)\njob.result(timeout=60)\n"
        "print(job.status.value)",
    ]], metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert "completed" in text_of(nb)
    state = nb.metadata.widgets["application/vnd.jupyter.widget-state+json"]["state"]
    cards = [m["state"]["job"] for m in state.values() if "job" in m["state"]]
    assert [(c["name"], c["status"]) for c in cards] == [("ends in its cell", "completed")]
