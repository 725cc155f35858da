"""A submission's options, checked once: by ``qnb.submit`` and by a queue server alike.

Every refusal is an :class:`~qnb._errors.InvalidOptionError` (or, for circuit labels,
an :class:`~qnb._errors.InvalidCircuitError`) whose ``field`` names the option, so the
server's answer points at the field of the request (``["body", "shots"]``) and the
Python API shows the same words.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
import re
from collections.abc import Iterable

from . import _config
from ._errors import InvalidCircuitError, InvalidOptionError, QnbError

#: Longest job name, user name or circuit label kept.
MAX_NAME_LENGTH = 200
#: Priorities run from -100 to 100; higher runs first.
MIN_PRIORITY, MAX_PRIORITY = -100, 100
#: At most this many tags a job, each of 1 to MAX_TAG_LENGTH characters.
MAX_TAGS, MAX_TAG_LENGTH = 20, 64
#: Where a queue server puts a job: at the end of the queue, or at its head.
POSITIONS = ("end", "start")
#: At most this many runs again of a transiently failed item.
MAX_RETRIES = 10


def _about(exc: QnbError, *where: str) -> QnbError:
    """``exc``, naming the field it is about (a server sends it in its answer)."""
    exc.field = where  # type: ignore[attr-defined]
    return exc


@dataclasses.dataclass(frozen=True)
class SubmitOptions:
    """A submission's options once checked."""

    shots: int
    name: str | None = None
    front: bool = False
    compile: bool = False
    priority: int = 0
    tags: tuple[str, ...] = ()
    #: Apprise URLs told when the job ends (they may hold tokens: never shown).
    notify: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    #: The most the job may cost (in its target's currency), None for no ceiling.
    max_cost: float | None = None
    #: Runs again of an item whose failure is transient.
    retries: int = 0


def check(
    *,
    shots: object,
    max_shots: int,
    target: str,
    name: object = None,
    front: object = False,
    compile: object = False,
    priority: object = 0,
    tags: object = (),
    notify: object = (),
    max_cost: object = None,
    retries: object = 0,
) -> SubmitOptions:
    """The options of one submission to ``target`` (whose device takes at most
    ``max_shots``), checked strictly: ``front="no"`` is not a boolean, ``shots=2.0`` not
    a whole number."""
    return SubmitOptions(
        shots=check_shots(shots, max_shots=max_shots, target=target),
        name=check_name(name),
        front=check_flag("front", front),
        compile=check_flag("compile", compile),
        priority=check_priority(priority),
        tags=check_tags(tags),
        notify=check_notify(notify),
        max_cost=check_max_cost(max_cost),
        retries=check_retries(retries),
    )


def check_max_cost(max_cost: object) -> float | None:
    """A ceiling on a job's estimated cost: None, or a number from 0."""
    if max_cost is None:
        return None
    if (
        isinstance(max_cost, bool)
        or not isinstance(max_cost, (int, float))
        or not math.isfinite(max_cost)
        or max_cost < 0
    ):
        raise _about(
            InvalidOptionError(
                f"max_cost must be a number from 0 (in the target's currency, e.g. USD), "
                f"got {max_cost!r}; write max_cost=25.0, or leave it out for no ceiling"
            ),
            "max_cost",
        )
    return float(max_cost)


def check_retries(retries: object) -> int:
    """How many times an item whose failure is transient runs again: 0 to MAX_RETRIES."""
    if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= MAX_RETRIES:
        raise _about(
            InvalidOptionError(
                f"retries must be a whole number from 0 to {MAX_RETRIES}, got {retries!r}; "
                "write retries=3"
            ),
            "retries",
        )
    return retries


def check_shots(shots: object, *, max_shots: int, target: str) -> int:
    if isinstance(shots, bool) or not isinstance(shots, int) or shots <= 0:
        raise _about(InvalidOptionError(f"shots must be a positive whole number, got {shots!r}"), "shots")
    if shots > max_shots:
        raise _about(
            InvalidOptionError(
                f"shots={shots} is above the maximum of target {target!r} ({max_shots}); "
                "lower shots or split into several jobs"
            ),
            "shots",
        )
    return shots


def check_priority(priority: object) -> int:
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        raise _about(
            InvalidOptionError(
                f"priority must be a whole number from {MIN_PRIORITY} to {MAX_PRIORITY}, "
                f"got {priority!r}"
            ),
            "priority",
        )
    return priority


def check_tags(tags: object) -> tuple[str, ...]:
    """A job's tags: a list or tuple of text (or one text, one tag), each of 1 to
    :data:`MAX_TAG_LENGTH` characters without spaces at its ends or control characters,
    at most :data:`MAX_TAGS`; repeats are dropped, the order kept."""
    if tags is None:
        return ()
    if isinstance(tags, str):
        tags = [tags]
    if not isinstance(tags, (list, tuple)):
        raise _about(
            InvalidOptionError(
                f"tags must be a list of text, got {type(tags).__name__}; "
                "write tags=['calibration', 'run-3']"
            ),
            "tags",
        )
    for tag in tags:
        _check_tag(tag)
    kept = tuple(dict.fromkeys(tags))
    if len(kept) > MAX_TAGS:
        raise _about(
            InvalidOptionError(f"a job has at most {MAX_TAGS} tags, got {len(kept)}; keep fewer"),
            "tags",
        )
    return kept


def _check_tag(tag: object) -> None:
    if not isinstance(tag, str):
        raise _about(
            InvalidOptionError(f"each tag must be text, got {type(tag).__name__} {tag!r}"), "tags"
        )
    if (
        not 1 <= len(tag) <= MAX_TAG_LENGTH
        or tag.strip() != tag
        or any(not ch.isprintable() for ch in tag)
    ):
        raise _about(
            InvalidOptionError(
                f"tag {tag[:80]!r} is not valid: tags are 1 to {MAX_TAG_LENGTH} printable "
                "characters, without spaces at their ends"
            ),
            "tags",
        )


def check_notify(notify: object) -> tuple[str, ...]:
    """Where a job's end is announced: an Apprise URL or a list of them; None for the
    defaults (``$QNB_NOTIFY``, else the targets file's ``[notify] urls``); False or
    an empty list for none. Each must be a URL Apprise can use."""
    where = ""
    if notify is None:
        notify, source = _config.notify_defaults()
        where = f" (from {source})"
    elif notify is False:
        return ()
    if isinstance(notify, str):
        notify = [notify]
    if not isinstance(notify, (list, tuple)) or not all(isinstance(u, str) for u in notify):
        raise _about(
            InvalidOptionError(
                f"notify must be an Apprise URL or a list of them, got {type(notify).__name__}; "
                "write notify='ntfy://my-topic' or notify=['json://host:8000/hook', ...]"
            ),
            "notify",
        )
    for url in notify:
        if not _apprise_takes(url):
            raise _about(
                InvalidOptionError(
                    f"notify: Apprise cannot use {_described(url)}{where}; "
                    "write it as Apprise's documentation for that service says (e.g. "
                    "'ntfy://my-topic', 'json://host:8000/hook', 'mailto://user:password@"
                    "example.com'; https://github.com/caronc/apprise/wiki)"
                ),
                "notify",
            )
    return tuple(dict.fromkeys(notify))


def url_scheme(url: str) -> str | None:
    """A URL's scheme (``"ntfy"``), the only part of it ever shown: the rest may hold a
    token. None if it has none."""
    scheme, found, _ = url.partition("://")
    return scheme if found and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]{0,31}", scheme) else None


def _described(url: str) -> str:
    scheme = url_scheme(url)
    return "a URL without a scheme (service://...)" if scheme is None else f"the URL of scheme '{scheme}://'"


@functools.lru_cache(maxsize=256)
def _apprise_takes(url: str) -> bool:
    import apprise  # ~75 ms to import (and its plug-ins ~0.2 s): only once someone asks

    # Apprise logs the URL it refuses, token and all: those records are dropped.
    def drop(record: logging.LogRecord) -> bool:
        return False

    log = logging.getLogger("apprise")
    log.addFilter(drop)
    try:
        return bool(apprise.Apprise().add(url))
    finally:
        log.removeFilter(drop)


def check_flag(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise _about(InvalidOptionError(f"{name} must be True or False, got {value!r}"), name)
    return value


def check_name(name: object, *, what: str = "name") -> str | None:
    """A job's (or, with ``what="user"``, a user's) name: None or text of at most
    :data:`MAX_NAME_LENGTH` characters."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise _about(InvalidOptionError(f"{what} must be text, got {type(name).__name__}"), what)
    if len(name) > MAX_NAME_LENGTH:
        raise _about(
            InvalidOptionError(
                f"{what} is {len(name)} characters long; at most {MAX_NAME_LENGTH} are kept"
            ),
            what,
        )
    return name


def check_position(position: object) -> bool:
    """A queue server's ``position`` option; True for the head of the queue."""
    if position not in POSITIONS:
        raise _about(InvalidOptionError("position must be 'end' or 'start'"), "position")
    return position == "start"


def check_labels(labels: Iterable[object]) -> None:
    """Circuit labels as a queue server takes them: text of 1 to
    :data:`MAX_NAME_LENGTH` characters."""
    for label in labels:
        if not isinstance(label, str) or not 1 <= len(label) <= MAX_NAME_LENGTH:
            raise _about(
                InvalidCircuitError(f"labels are 1 to {MAX_NAME_LENGTH} characters"), "circuits"
            )


_POINT_LABEL = re.compile(r"^(?P<base>.*)\[(?P<index>\d+)\]$")


def point_label(label: str, index: int) -> str:
    """A sweep point's item label (``"ansatz"``, 3 -> ``"ansatz[3]"``)."""
    return f"{label}[{index}]"


def base_label(item_label: str) -> str:
    """The circuit an item's label belongs to (``"ansatz[3]"`` -> ``"ansatz"``)."""
    match = _POINT_LABEL.match(item_label)
    return match.group("base") if match else item_label


def default_name(labels: Iterable[str], *, swept: bool = False) -> str:
    """A job's name when none is given: its circuit's label, or what the batch is."""
    labels = list(labels)
    if swept:
        bases = list(dict.fromkeys(base_label(label) for label in labels))
        if len(bases) == 1:
            base = "circuit" if bases[0] == "0" else bases[0]
            return f"{base}, sweep of {len(labels)}"
        return f"{len(bases)} circuits, sweeps of {len(labels)}"
    if len(labels) == 1:
        return "circuit" if labels[0] == "0" else labels[0]
    return f"batch of {len(labels)}"
