"""The docs: the MkDocs site builds with ``--strict`` (broken links, missing pages and
docstrings that do not render fail it), the API reference covers ``qnb.__all__``, and
every relative link of the README reaches a file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import qnb

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"

# [text](target) and ![alt](target), with an optional "title"; and [ref]: target lines.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$", re.MULTILINE)


@pytest.mark.slow
def test_docs_site_builds_strict(tmp_path):
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # Material's banner, not a problem
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "index.html").is_file()


def test_api_reference_covers_every_public_name():
    documented = re.findall(r"^::: qnb\.(\w+)\s*$", (DOCS / "api.md").read_text(), re.MULTILINE)
    assert sorted(documented) == sorted(qnb.__all__)
    assert len(documented) == len(set(documented))


def _relative_links(markdown: str) -> list[str]:
    markdown = re.sub(r"```.*?```", "", markdown, flags=re.DOTALL)  # code blocks hold no links
    links = INLINE_LINK.findall(markdown) + REFERENCE_LINK.findall(markdown)
    return [
        link for link in links
        if not re.match(r"^[a-z][a-z0-9+.-]*:", link, re.IGNORECASE)  # http:, mailto:, ...
        and not link.startswith("#")
    ]


def test_readme_relative_links_point_at_files():
    links = _relative_links(README.read_text())
    assert links, "the README links to the docs pages"
    missing = [
        link for link in links
        if not (ROOT / link.split("#", 1)[0].split("?", 1)[0]).exists()
    ]
    assert missing == []
