"""notebooks/shared_queue.ipynb runs from top to bottom (nbclient, a real kernel and a
real ``qnb serve``)."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "shared_queue.ipynb"


def test_shared_queue_notebook_runs(tmp_path, monkeypatch):
    import nbformat  # imported where used: its jsonschema takes ~4 s to import, in every xdist worker otherwise
    from nbclient import NotebookClient

    monkeypatch.setenv("QNB_HOME", str(tmp_path / "kernel-home"))
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "\n".join(
        str(out.get("text", "")) + str(out.get("data", {}).get("text/plain", ""))
        for cell in notebook.cells if cell.cell_type == "code" for out in cell.outputs
    )
    assert "refused: server answered 403" in outputs
    assert "refused: server answered 409" in outputs
    assert "removed bob: second cancelled" in outputs
    assert "('alice: ghz', 'completed')" in outputs and "('bob: ghz', 'completed')" in outputs
    assert any(out.get("data", {}).get("image/png") for cell in notebook.cells
               if cell.cell_type == "code" for out in cell.outputs)
