"""The targets file: named targets a user configures once (``$QNB_TARGETS``, default
``~/.config/qnb/targets.toml``), read by ``qnb.connect(name)`` and the CLI.

    [targets.lab]
    url = "http://lab-server:8765"
    token_env = "LAB_TOKEN"        # or: token = "..."

    [targets.cluster]              # a table with a kind: qnb.register_target(name, kind, **rest)
    kind = "dask"
    address = "tcp://scheduler:8786"
    engine = "qsim"

    [targets.qpu]                  # cost options are qnb's, not the kind's (docs/cost.md)
    kind = "ionq"
    backend = "qpu.aria-1"
    price = {minimum = 12.4166}    # terms over qnb's price table (here: error mitigation off)
    budget = 500.0                 # the most this target's stored jobs may add up to

    [notify]                       # a message when each job submitted from here ends
    urls = ["ntfy://my-topic"]     # Apprise URLs; $QNB_NOTIFY (comma- or space-separated) wins
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path

from ._errors import InvalidOptionError


def targets_file() -> Path:
    return Path(os.environ.get("QNB_TARGETS", "~/.config/qnb/targets.toml")).expanduser()


def _document(path: Path) -> dict:
    try:
        if not path.exists():
            return {}
        return tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError) as exc:
        raise InvalidOptionError(f"the targets file {path} cannot be read: {exc}") from None


def _tables() -> dict[str, dict]:
    tables = _document(targets_file()).get("targets", {})
    return {name: entry for name, entry in tables.items() if isinstance(entry, dict)}


# (path, mtime, size) -> its notify URLs: every submit asks, the file rarely changes.
_notify_cache: dict[tuple, tuple[str, ...]] = {}


def notify_defaults() -> tuple[tuple[str, ...], str]:
    """The Apprise URLs every job submitted without ``notify=`` is announced to, and
    where they come from: ``$QNB_NOTIFY`` (comma- or space-separated; set but empty:
    none) or else the targets file's ``[notify] urls``."""
    if "QNB_NOTIFY" in os.environ:
        return tuple(u for u in re.split(r"[\s,]+", os.environ["QNB_NOTIFY"]) if u), "$QNB_NOTIFY"
    path = targets_file()
    where = f"[notify] urls in {path}"
    try:
        stat = path.stat()
    except OSError:
        return (), where
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _notify_cache:
        table = _document(path).get("notify", {})
        urls = table.get("urls", []) if isinstance(table, dict) else None
        urls = [urls] if isinstance(urls, str) else urls
        if not isinstance(urls, list) or not all(isinstance(u, str) for u in urls):
            raise InvalidOptionError(f"{where} must be a list of Apprise URLs (text)")
        _notify_cache.clear()
        _notify_cache[key] = tuple(urls)
    return _notify_cache[key], where


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

