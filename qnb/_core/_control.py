"""Acting on a job that another live process runs.

Every process of a user shares one store, but only the process that runs a job may
change it (it holds the job's state in memory and drives its target). Another process
(a second kernel, a script, the command line, the Jupyter server's jobs panel) asks
through the store: it writes a request, and the owner, which watches the store, carries
it out with its own API calls and writes the outcome back. Watching costs one
``PRAGMA data_version`` (a read of a counter SQLite keeps) every :data:`WATCH_SECONDS`;
the requests table is read only when another process has written something.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .. import _config
from .._errors import JobStateError, QnbError, StoreError, error_for_code
from .._status import JobStatus
from . import _ownership
from ._context import Core

logger = logging.getLogger("qnb")

ACTIONS = ("cancel", "remove", "front")
#: How often the owner looks for requests (the cost of a SQLite pragma each time).
WATCH_SECONDS = 0.1
#: How long a requester waits for the owner's answer before it gives up.
ANSWER_SECONDS = 10.0
_POLL_SECONDS = 0.02


class Control:
    def __init__(self, core: Core, *, carry_out: Callable[[str, str], JobStatus]):
        """``carry_out(job_id, action)``: the owner's own call (cancel, remove, move to
        front), returning the job's status after it."""
        self.core = core
        self._carry_out = carry_out

    # -- the owner's side (a task on the core's loop) -------------------------------------------

    async def watch(self) -> None:
        seen = None
        while not self.core.closed:
            try:
                version = self.core.store.data_version()
                if version != seen:
                    seen = version
                    self._answer_requests()
            except StoreError as exc:  # a store that cannot be read now: try again later
                logger.debug("qnb: reading requests: %s", exc)
            await asyncio.sleep(WATCH_SECONDS)

    def _answer_requests(self) -> None:
        store = self.core.store
        for request_id, job_id, action in store.open_requests():
            if not self._runs(job_id):
                continue
            try:
                if action not in ACTIONS:
                    raise QnbError(f"unknown action {action!r}")
                outcome = self._carry_out(job_id, action).value
            except QnbError as exc:
                outcome = f"error:{exc.code}:{exc}"
            store.answer_request(request_id, outcome)

    def _runs(self, job_id: str) -> bool:
        """This process runs the job (or follows it on a target that owns its queue)."""
        with self.core.lock:
            rec = self.core.records.get(job_id)
            return rec is not None and not rec.done and rec.owner in (self.core.owner, None)

    # -- the requester's side (any thread but the loop) -----------------------------------------

    def ask(self, job_id: str, action: str, *, timeout: float = ANSWER_SECONDS) -> JobStatus | None:
        """Ask the process that runs ``job_id`` to carry out ``action``; its status after
        it, or None when nobody answered within ``timeout`` (the request is withdrawn).
        The owner's refusal is raised here as the error it was."""
        store = self.core.store
        request_id = store.add_request(job_id, action)
        deadline = time.monotonic() + timeout
        while True:
            outcome = store.request_outcome(request_id)
            if outcome is not None:
                return _outcome(outcome)
            if time.monotonic() > deadline:
                if store.answer_request(request_id, "expired"):
                    return None
                continue  # answered in the last moment: read it
            time.sleep(_POLL_SECONDS)


def _outcome(outcome: str) -> JobStatus | None:
    if outcome == "expired":
        return None
    if outcome.startswith("error:"):
        _, code, message = outcome.split(":", 2)
        raise error_for_code(code, message)
    return JobStatus(outcome)


class Elsewhere:
    """The requester's rules: who can act on a job this process does not run."""

    def __init__(
        self,
        core: Core,
        control: Control,
        *,
        recover: Callable[[], object],
        follow_here: Callable[[str], bool],
    ):
        """``recover``: mark dead owners' jobs interrupted; ``follow_here(target)``:
        follow the target's jobs in this process if it can reach the target (True)."""
        self.core = core
        self.control = control
        self._recover = recover
        self._follow_here = follow_here

    def act(self, stored, action: str) -> JobStatus | None:
        """Carry out ``action`` on a job run elsewhere: by asking its owner through the
        store, or, for a job a queue server or vendor runs, by following it here (the
        caller then acts on it itself: None is returned). Its status after, else."""
        job_id = stored.id
        if stored.owner is not None:
            if not _ownership.owner_alive(self.core.home / "owners", stored.owner):
                self._recover()  # its process has gone: it ends interrupted, here and now
                return self.core.store.load_job(job_id).status
            status = self.control.ask(job_id, action)
            if status is None:
                raise JobStateError(
                    f"job {job_id[:8]} is run by process {stored.owner.split('-')[0]}, which did "
                    f"not answer the request to {action} it within {ANSWER_SECONDS:g} s "
                    "(a process busy in a long call answers when it is free); try again"
                )
            return status
        if self._follow_here(stored.target):
            return None
        status = self.control.ask(job_id, action, timeout=2.0)  # a process that follows it
        if status is None:
            raise JobStateError(
                f"job {job_id[:8]} runs on target {stored.target!r} (a queue server or a "
                "vendor), which this process cannot reach: add a [targets."
                f"{stored.target}] table to the targets file {_config.targets_file()} "
                "(url = ..., token_env = ...) or register the target "
                "(qnb.connect / qnb.register_target), then try again"
            )
        return status
