"""The wheel ships the front end (js/ as qnb/_static) and the console script."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_ships_the_front_end_modules(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(ROOT)],
        check=True, timeout=300,
    )
    (wheel,) = tmp_path.glob("qnb-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    front_end = sorted(p.name for p in (ROOT / "js").iterdir() if p.suffix in (".js", ".css"))
    assert front_end, "js/ has no modules"
    for name in front_end:
        assert f"qnb/_static/{name}" in names
    assert "qnb/_targets/_worker.py" in names and "qnb/__init__.py" in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "qnb = qnb._cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()
