"""notebooks/hardware_and_clusters.ipynb, executed top to bottom in a real kernel with
nbclient: an IonQ job (against the stand-in the notebook starts) that outlives the
process that submitted it, a Dask LocalCluster batch, a sampler target, and a plug-in
(the demo distribution of test_plugins.py, on the kernel's path) listed without import
and loaded on first use."""

from __future__ import annotations

import os

import pytest

from test_notebooks import execute, text_of  # noqa: F401  (execute is a fixture)
from test_plugins import plugin_dir  # noqa: F401  (a fixture)

pytestmark = pytest.mark.slow


def test_hardware_and_clusters_notebook(execute, plugin_dir, monkeypatch, tmp_path):  # noqa: F811
    for variable in ("IONQ_API_KEY", "CIRQ_IONQ_API_KEY", "IONQ_REMOTE_HOST", "CIRQ_IONQ_REMOTE_HOST"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "none.toml"))
    path = os.environ.get("PYTHONPATH", "")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(plugin_dir), path) if p))
    monkeypatch.delenv("QNB_DISABLE_PLUGINS", raising=False)
    text = text_of(execute("hardware_and_clusters.ipynb"))
    # IonQ: submitted, the kernel killed, followed again by this one, not run again.
    assert "the first kernel exited with -9" in text
    assert "bell: {'00': 500, '11': 500}" in text
    assert "flip: {'01': 1000}" in text
    assert "jobs created at IonQ: 1" in text
    assert "refused:" in text and "TOFFOLI" in text
    assert "compiled: {'111': 100}" in text
    # IBM Quantum on a fake backend (Aer with FakeBrisbane's noise): mostly 00 and 11.
    assert "| flag: {" in text and "fake_brisbane in qiskit-ibm-runtime's local testing mode" in text
    share = int(text.split("00 or 11: ")[1].split("%")[0])
    assert 80 <= share < 100, share
    assert "refused:" in text and "depolarize" in text
    # Amazon Braket's local simulator: keys, Cirq's bit order, a sweep, a refused gate.
    assert "flip: {'01': 200}" in text and "theta=3.14  {1: 200}" in text
    assert "AmplitudeDampingChannel" in text
    # A Dask cluster, a sampler target, a plug-in.
    assert "on the Dask cluster at tcp://127.0.0.1:" in text
    assert "completed 60 circuits; ghz13-0:" in text
    assert "no job id: its jobs cannot be followed after a restart" in text
    assert "theta=3.14  P(1)=0.9" in text or "theta=3.14  P(1)=1.0" in text
    assert "demo-flip  not loaded (plug-in qnb_demo_plugin.targets:flipper (qnb-demo-plugin 0.3.1))" in text
    assert "plug-in imported yet: False" in text
    assert "demo-flip: {'01': 100}" in text and "plug-in imported now: True" in text
