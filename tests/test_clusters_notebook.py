"""notebooks/clusters_and_plugins.ipynb, executed top to bottom in a real kernel: a Dask
LocalCluster batch, a sampler target, and a plug-in (the demo distribution of
test_plugins.py, on the kernel's path) listed without import and loaded on first use."""

from __future__ import annotations

import os

from test_notebooks import execute, text_of  # noqa: F401  (execute is a fixture)
from test_plugins import plugin_dir  # noqa: F401  (a fixture)


def test_clusters_and_plugins_notebook(execute, plugin_dir, monkeypatch):  # noqa: F811
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(plugin_dir), path) if p))
    monkeypatch.delenv("QNB_DISABLE_PLUGINS", raising=False)
    text = text_of(execute("clusters_and_plugins.ipynb"))
    assert "on the Dask cluster at tcp://127.0.0.1:" in text
    assert "completed 60 circuits; ghz13-0:" in text
    assert "no job id: its jobs cannot be followed after a restart" in text
    assert "theta=3.14  P(1)=0.9" in text or "theta=3.14  P(1)=1.0" in text
    assert "demo-flip  not loaded (plug-in qnb_demo_plugin.targets:flipper (qnb-demo-plugin 0.3.1))" in text
    assert "plug-in imported yet: False" in text
    assert "demo-flip: {'01': 100}" in text and "plug-in imported now: True" in text
