"""The targets file: named targets a user configures once (``$QNB_TARGETS``, default
``~/.config/qnb/targets.toml``), read by ``qnb.connect(name)`` and the CLI.

    [targets.lab]
    url = "http://lab-server:8765"
    token_env = "LAB_TOKEN"        # or: token = "..."
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from ._errors import InvalidOptionError


def targets_file() -> Path:
    return Path(os.environ.get("QNB_TARGETS", "~/.config/qnb/targets.toml")).expanduser()


def configured_targets() -> dict[str, dict]:
    """Every ``[targets.NAME]`` table of the targets file ({} when there is none)."""
    path = targets_file()
    if not path.exists():
        return {}
    try:
        tables = tomllib.loads(path.read_text()).get("targets", {})
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise InvalidOptionError(f"the targets file {path} cannot be read: {exc}") from None
    return {name: entry for name, entry in tables.items() if isinstance(entry, dict)}


def configured_server(name: str) -> tuple[str, str | None]:
    """``url`` and token of the queue server ``name`` from the targets file."""
    path = targets_file()
    if not path.exists():
        raise InvalidOptionError(
            f"qnb.connect({name!r}) without a url needs a targets file; {path} does not "
            "exist (set QNB_TARGETS, or pass the url)"
        )
    entry = configured_targets().get(name)
    if entry is None or "url" not in entry:
        raise InvalidOptionError(f"no [targets.{name}] table with a url in {path}")
    token = entry.get("token")
    if token is None and "token_env" in entry:
        token = os.environ.get(entry["token_env"])
        if token is None:
            raise InvalidOptionError(
                f"[targets.{name}] in {path} reads the token from ${entry['token_env']}, "
                "which is not set"
            )
    return entry["url"], token
