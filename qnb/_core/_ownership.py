"""Which process runs which job, and what becomes of a dead process's jobs.

Local jobs carry the id of the process that runs them (``owner``). The process holds a
lock on a file of that name for its whole life, so any other process can tell a dead
owner from a live one, even across pid reuse. Recovery follows the lifecycle's named
tables: a kernel's jobs become ``failed`` (interrupted), a queue server's go back to its
queue. Nothing here imports Cirq: the command line reads jobs through it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path

from .. import _lifecycle
from .._errors import QnbWarning, StoreError
from .._lifecycle import Recovery
from .._records import JobRecord
from .._store import Store

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock; see owner_alive
    fcntl = None

logger = logging.getLogger("qnb")

INTERRUPTED = "interrupted: the process running this job ended before it finished"
STORE_NAME = "qnb.sqlite3"


def default_home() -> Path:
    """``$QNB_HOME``, else the user's data directory for qnb."""
    home = os.environ.get("QNB_HOME")
    if home:
        return Path(home).expanduser()
    import platformdirs  # only when no home is set (a few ms)

    return Path(platformdirs.user_data_dir("qnb"))


def origin() -> str:
    """Where this process's jobs come from, for a person looking at all their jobs: a
    notebook's path (Jupyter tells its kernels, ``JPY_SESSION_NAME``), else the script
    or command that runs."""
    notebook = os.environ.get("JPY_SESSION_NAME")
    if notebook:
        return notebook
    program = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if program in ("", "-c"):
        return "python -c" if program else "python"
    path = Path(program)
    if path.name == "ipykernel_launcher.py":
        return "a Jupyter kernel"
    return f"python -m {path.parent.name}" if path.name == "__main__.py" else path.name


def claim_owner(directory: Path, owner: str):
    """Hold ``owner``'s lock file for this process's life (the returned handle)."""
    directory.mkdir(parents=True, exist_ok=True)
    if fcntl is None:
        return None
    handle = open(directory / f"{owner}.lock", "w")
    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return handle


def owner_alive(directory: Path, owner: str) -> bool:
    if fcntl is None:  # pragma: no cover - no way to tell; never fail a live job
        return True
    try:
        handle = open(directory / f"{owner}.lock", "a")
    except FileNotFoundError:
        return False
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


def release_owner(directory: Path, owner: str, handle) -> None:
    if handle is not None:
        handle.close()
    (directory / f"{owner}.lock").unlink(missing_ok=True)


def dead_owners(store: Store, home: Path, alive: str | None) -> list[str]:
    """Owners of unfinished jobs whose process has ended (``alive``: this process)."""
    owners_dir = home / "owners"
    return [
        owner for owner in store.unfinished_owners()
        if owner != alive and not owner_alive(owners_dir, owner)
    ]  # fmt: skip


def mark_interrupted(store: Store, home: Path, alive: str | None, *, warn: bool = False) -> list[str]:
    """A kernel's way: dead owners' unfinished jobs end ``failed`` (interrupted), their
    circuits and finished results kept. Returns their ids; ``warn``: say so once."""
    ids: list[str] = []
    for owner in dead_owners(store, home, alive):
        ids += interrupt(store, owner)
        (home / "owners" / f"{owner}.lock").unlink(missing_ok=True)
    if ids and warn:
        warnings.warn(
            f"qnb: {len(ids)} job(s) were left unfinished by a process that ended and "
            "are now marked failed (interrupted). Their circuits and any completed "
            "results are kept: qnb.jobs(status='failed') lists them and "
            "job.resubmit() runs them again.",
            QnbWarning,
            stacklevel=5,
        )
    return ids


def interrupt(store: Store, owner: str) -> list[str]:
    """``owner``'s unfinished jobs end ``failed`` (interrupted); their ids."""
    records = store.unfinished_jobs([owner])
    for rec in records:
        _lifecycle.recover(rec, Recovery.INTERRUPTED, INTERRUPTED)
    store.save_whole(records)
    return [rec.id for rec in records]


def take_over(store: Store, home: Path, owner: str) -> list[JobRecord]:
    """A queue server's way: dead owners' unfinished jobs go back to the queue, owned by
    ``owner`` (those that were running at its very head). Returns those still waiting."""
    dead = dead_owners(store, home, owner)
    if not dead:
        return []
    found = store.unfinished_jobs(dead)  # head first
    # Jobs that were running go back to the very head, ahead of any priority: their
    # run was cut short. The others keep their place.
    head = min((rec.queue_seq for rec in found), default=0.0)
    top = max((rec.priority for rec in found), default=0)
    running = [rec for rec in found if rec.status.value == "running"]
    for offset, rec in enumerate(running):
        rec.queue_seq = head - len(running) + offset
        rec.priority = top
    for rec in found:
        _lifecycle.recover(rec, Recovery.REQUEUE, INTERRUPTED)
        if not rec.done:
            rec.owner = owner
    store.save_whole(found)
    for name in dead:
        (home / "owners" / f"{name}.lock").unlink(missing_ok=True)
    return [rec for rec in found if not rec.done]


def interrupt_at_exit(store_path: Path, owner: str, left: list[JobRecord]) -> None:
    """At exit: this process's unfinished jobs (``left``) are marked interrupted in the
    store, and the user is told which (a job that completed in the last moment is not
    one left). A store that cannot be written is said, never raised: the next process
    marks them."""
    try:
        store = Store(store_path)
    except StoreError as exc:
        logger.error("qnb: cannot mark the jobs left at exit as interrupted (%s); the next process will", exc)
        return
    try:
        # Some may have failed already, as the pool's shutdown ended their items: the
        # others are marked here. Either way they are the jobs left.
        interrupt(store, owner)
        left = [rec for rec in left if store.load_job(rec.id).status.value != "completed"]
    except StoreError as exc:
        logger.error("qnb: cannot mark the jobs left at exit as interrupted (%s); the next process will", exc)
        return
    finally:
        store.close()
    if not left:
        return
    names = ", ".join(f"{rec.id[:8]} {rec.name!r}" for rec in left[:10])
    more = f" and {len(left) - 10} more" if len(left) > 10 else ""
    logger.warning(
        "qnb: %d job(s) had not finished when this process exited and are marked "
        "failed (interrupted): %s%s. job.resubmit() runs them again; to let jobs "
        "finish, call qnb.wait_all() (or job.result()) before the script ends.",
        len(left), names, more,
    )  # fmt: skip


def apply_kept_changes(store: Store) -> None:
    """What earlier processes could not write at exit (disk full) goes in first, so a
    job that finished then is not taken for interrupted."""
    if store.read_only:
        return
    try:
        applied = store.apply_kept()
    except StoreError as exc:
        logger.error("qnb: %s", exc)
        return
    if applied:
        logger.warning("qnb: wrote the job changes that an earlier process kept in %s",
                       ", ".join(str(p) for p in applied))  # fmt: skip


def open_for_reading(home: Path | None = None) -> Store:
    """The user's store, with dead processes' jobs recovered (as any process does when
    it starts): for a reader such as the command line, which runs no job."""
    home = home or default_home()
    store = Store(home / STORE_NAME)
    apply_kept_changes(store)
    if not store.read_only:
        mark_interrupted(store, home, None)
    return store
