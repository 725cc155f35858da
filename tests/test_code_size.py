"""No class over 400 lines and no function over 80 lines in qnb/ (a long one is a room
waiting to be split: DESIGN.md). Lines as the parser counts them: ``end_lineno - lineno
+ 1``, from the ``def``/``class`` line (decorators not counted) to the last line of the
body, docstrings and comments inside it included."""

from __future__ import annotations

import ast
from pathlib import Path

import qnb

PACKAGE = Path(qnb.__file__).parent
MAX_CLASS_LINES = 400
MAX_FUNCTION_LINES = 80

def too_long(root: Path = PACKAGE) -> dict[str, str]:
    """"path name" -> what is too long, for every class and function under ``root``."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                limit, kind = MAX_CLASS_LINES, "class"
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                limit, kind = MAX_FUNCTION_LINES, "function"
            else:
                continue
            lines = node.end_lineno - node.lineno + 1
            if lines > limit:
                where = path.relative_to(root.parent).as_posix()
                found[f"{where} {node.name}"] = f"{where}:{node.lineno} {kind} {node.name}: {lines} lines"
    return found

def test_no_class_over_400_lines_and_no_function_over_80_lines():
    assert sorted(too_long().values()) == []

def test_the_check_finds_a_long_class_and_a_long_function(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES - 1))
    (package / "f.py").write_text(f"def fits():\n{body}\n\n\ndef over():\n{body}\n    y = 0\n")
    methods = "\n".join(f"    def m{i}(self):\n        return {i}\n" for i in range(133))
    (package / "c.py").write_text(f"class Fits:\n{methods}\n\nclass Over:\n{methods}\n    z = 0\n")
    assert sorted(too_long(package)) == ["pkg/c.py Over", "pkg/f.py over"]
