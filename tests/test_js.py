"""The front-end modules' unit tests (``node --test js/tests/``), run by pytest so the
README's one test command runs them too."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

JS = Path(__file__).resolve().parent.parent / "js"


def test_front_end_unit_tests_pass():
    node = shutil.which("node")
    if node is None:
        if os.environ.get("CI"):
            pytest.fail("node is needed for the front-end unit tests (CI must have it)")
        pytest.skip("node is not installed")
    run = subprocess.run(
        [node, "--test", str(JS / "tests")], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout and "# pass 0" not in run.stdout
