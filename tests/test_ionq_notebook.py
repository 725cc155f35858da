"""notebooks/hardware_ionq.ipynb, executed in a real kernel with nbclient: an IonQ job
(against the stand-in the notebook starts) outlives the process that submitted it."""

from __future__ import annotations

from test_notebooks import execute, text_of  # noqa: F401  (the fixture)


def test_hardware_ionq_notebook(execute, monkeypatch, tmp_path):  # noqa: F811
    for variable in ("IONQ_API_KEY", "CIRQ_IONQ_API_KEY", "IONQ_REMOTE_HOST", "CIRQ_IONQ_REMOTE_HOST"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("QNB_TARGETS", str(tmp_path / "none.toml"))
    text = text_of(execute("hardware_ionq.ipynb"))
    assert "the first kernel exited with -9" in text
    assert "bell: {'00': 500, '11': 500}" in text
    assert "flip: {'01': 1000}" in text
    assert "jobs created at IonQ: 1" in text  # followed again, not run again
    assert "refused:" in text and "TOFFOLI" in text
    assert "compiled: {'111': 100}" in text
