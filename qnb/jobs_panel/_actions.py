"""The panel's actions, carried out with qnb's Python API in the Jupyter server.

Loaded on the first action (it imports Cirq, through the API), never when Jupyter
starts. The process's JobManager is started here without warming the simulation pool,
and the Jupyter server never runs a simulation: resubmitting a job of a local target
starts ``qnb resubmit`` in a process of its own (detached: it runs the new job to its
end, as a script would), while a queue server's job is resubmitted here (the server
runs it). A job another live process runs is acted on through the store; the owner
carries the action out.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading

import qnb

from .. import _config
from .._core import _ownership
from .._job import results_so_far
from .. import _manager as _manager_module
from .._manager import JobManager, get_manager, set_manager

ACTIONS = ("cancel", "resubmit", "remove", "front")
#: Bars of a histogram, at most (the most frequent outcomes).
TOP_OUTCOMES = 64
#: How long a resubmitting process may take to print the new job's id.
RESUBMIT_SECONDS = 60.0

_lock = threading.Lock()
_connected: set[str] = set()


def manager() -> JobManager:
    """The Jupyter server's JobManager: no warm pool (it never simulates)."""
    with _lock:
        current = _manager_module._manager  # not get_manager(): that one warms the pool
        if current is None or current.closed:
            fresh = JobManager(_ownership.default_home(), warm_pool=False)
            set_manager(fresh)
            atexit.register(fresh.shutdown_at_exit)
        return get_manager()


def _servers() -> dict[str, dict]:
    try:
        return _config.configured_targets()
    except Exception:  # noqa: BLE001 - a bad targets file: no servers
        return {}


def _connect(target: str) -> None:
    """Use a queue server of the targets file in this process (once)."""
    if target in _connected or target not in _servers():
        return
    with _lock:
        if target not in _connected:
            qnb.connect(target)
            _connected.add(target)


def act(job_id: str, action: str, *, target: str | None = None) -> dict:
    """Carry out ``action`` on a job; its outcome as the panel shows it."""
    if action not in ACTIONS:
        raise ValueError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
    manager()
    known = _stored(job_id)
    target = known.target if known is not None else target
    if target is not None:
        _connect(target)
    if action == "resubmit":
        return _resubmit(job_id, target)
    if action == "cancel":
        if known is None and target is not None:  # a queue server's job sent from elsewhere
            entry = qnb.queue(target).remove_by_id(job_id)
            return {"id": job_id, "status": entry.status.value}
        return {"id": job_id, "status": qnb.get_job(job_id).cancel().value}
    if target is None:
        raise qnb.UnknownJobError(f"no job {job_id} in the store or on a queue server")
    queue = qnb.queue(target)
    if action == "remove":
        entry = queue.remove_by_id(job_id)
    else:
        entry = queue.move_to_front(job_id)
    return {"id": job_id, "status": entry.status.value, "position": entry.position_in_queue()}


def _stored(job_id: str):
    return get_manager().store.load_job(job_id)


def _resubmit(job_id: str, target: str | None) -> dict:
    if target in _servers():
        new = qnb.get_job(job_id).resubmit()
        return {"id": job_id, "new_id": new.id, "status": new.status.value}
    # A local target: the new job runs in a process of its own, never in Jupyter's.
    child = subprocess.Popen(
        [sys.executable, "-m", "qnb", "resubmit", job_id],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        start_new_session=True, env={**os.environ},
    )
    line = _first_line(child)
    if not line:
        code = child.poll()
        raise qnb.JobStateError(
            f"could not resubmit job {job_id[:8]}"
            + (f" (qnb resubmit ended with {code})" if code is not None else " in time")
        )
    return {"id": job_id, "new_id": line, "status": "queued", "pid": child.pid}


def _first_line(child: subprocess.Popen) -> str:
    found: list[str] = []

    def read():
        found.append(child.stdout.readline().decode().strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(RESUBMIT_SECONDS)
    return found[0] if found else ""


def results(job_id: str) -> dict:
    """A job's counts per circuit (the top :data:`TOP_OUTCOMES` outcomes), for the
    panel's result tab."""
    manager()
    known = _stored(job_id)
    if known is not None:
        _connect(known.target)
    job = qnb.get_job(job_id)
    found = results_so_far(job)
    circuits = []
    for label in found.labels:
        if label in found.missing:
            circuits.append({"label": label, "missing": found.missing[label]})
            continue
        counts = found.counts(label)
        top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP_OUTCOMES]
        circuits.append({
            "label": label,
            "counts": dict(top),
            "shown": len(top),
            "outcomes": len(counts),
            "shots": sum(counts.values()),
        })  # fmt: skip
    return {"id": job.id, "name": job.name, "status": job.status.value, "target": job.target,
            "circuits": circuits}
