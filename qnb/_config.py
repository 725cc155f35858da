"""The targets file: named targets a user configures once (``$QNB_TARGETS``, default
``~/.config/qnb/targets.toml``), read by ``qnb.connect(name)`` and the CLI.

    [targets.lab]
    url = "http://lab-server:8765"
    token_env = "LAB_TOKEN"        # or: token = "..."

    [targets.cluster]              # a table with a kind: qnb.register_target(name, kind, **rest)
    kind = "dask"
    address = "tcp://scheduler:8786"
    engine = "qsim"
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path

from ._errors import InvalidOptionError


def targets_file() -> Path:
    return Path(os.environ.get("QNB_TARGETS", "~/.config/qnb/targets.toml")).expanduser()


def _tables() -> dict[str, dict]:
    path = targets_file()
    try:
        if not path.exists():
            return {}
        tables = tomllib.loads(path.read_text()).get("targets", {})
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise InvalidOptionError(f"the targets file {path} cannot be read: {exc}") from None
    return {name: entry for name, entry in tables.items() if isinstance(entry, dict)}


def configured_targets() -> dict[str, dict]:
    """The queue servers of the targets file: its ``[targets.NAME]`` tables without a
    ``kind`` ({} when there is none)."""
    return {name: entry for name, entry in _tables().items() if "kind" not in entry}


def configured_kinds() -> dict[str, tuple[str, dict]]:
    """The targets file's tables with a ``kind``: name -> (kind, its other options),
    made into targets by the registry on first use."""
    found = {}
    for name, entry in _tables().items():
        if "kind" in entry:
            options = {key: value for key, value in entry.items() if key != "kind"}
            found[name] = (str(entry["kind"]), options)
    return found


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

