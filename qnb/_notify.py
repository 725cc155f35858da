"""One message when a job ends, sent through Apprise (email, Slack, Teams, ntfy, ...).

Who sends it: only the process that submitted the job, which holds its ``notify`` URLs
in memory. The URLs are never stored (they carry tokens, and the store is a plain SQLite
file other processes and the jobs panel read), so another process following the same
job (a second kernel, the CLI, a kernel restarted before the job ended) knows of none
and sends nothing: each job is announced at most once. A job whose submitting process
ended first is announced by nobody; ``qnb wait JOB --notify URL`` covers that case.

Messages are built and sent off the kernel's threads and the manager's loop: a waiter
on the job's end (resolved once the end is on disk) hands the job to one daemon worker
thread. Each send has a deadline; a failed or late send is logged (logger ``"qnb"``),
never raised. At exit, messages of jobs that have already ended get a bounded moment
to leave (a script's ``qnb.run(..., notify=...)`` then exit still announces).
"""

from __future__ import annotations

import atexit
import concurrent.futures
import logging
import queue
import threading
import time
from collections.abc import Sequence

from ._errors import JobCancelledError, JobFailedError
from ._job import Job, when
from ._options import url_scheme

logger = logging.getLogger("qnb")

#: The longest one message may take to leave (Apprise's own socket timeouts are 4 s).
SEND_TIMEOUT = 15.0
#: At exit, how long messages already due may still take, in all.
EXIT_WAIT = 5.0
#: A message's counts: this many circuits, each with its most frequent outcomes.
SUMMARY_CIRCUITS, SUMMARY_OUTCOMES = 3, 4


def send(urls: Sequence[str], title: str, body: str, *, timeout: float = SEND_TIMEOUT) -> bool:
    """Send one message to every URL, waiting at most ``timeout`` seconds (the send
    goes on in a daemon thread after that). False, and a warning logged, if any URL
    failed or the deadline passed; never raises."""
    outcome: list[bool] = []
    sender = threading.Thread(
        target=_send_now, args=(urls, title, body, outcome), name="qnb-notify-send", daemon=True
    )
    sender.start()
    sender.join(timeout)
    schemes = ", ".join(sorted({f"{url_scheme(url) or '?'}://" for url in urls}))
    if sender.is_alive():
        logger.warning("qnb: a job notification (%s) took over %s s; not waiting for it", schemes, timeout)
        return False
    if not outcome or not outcome[0]:
        logger.warning("qnb: a job notification (%s) could not be sent: %r", schemes, title)
        return False
    return True


def _send_now(urls: Sequence[str], title: str, body: str, outcome: list[bool]) -> None:
    import apprise  # ~75 ms: loaded only by processes that notify

    try:
        # One URL after another on this very thread, without Apprise's own deadline
        # (ours is the join in send): Apprise's thread pools refuse work once the
        # interpreter is exiting, when a script's last job is announced.
        asset = apprise.AppriseAsset(async_mode=False, service_timeout=0)
        sender = apprise.Apprise(asset=asset)
        for url in urls:
            sender.add(url)
        outcome.append(bool(sender.notify(title=title, body=body)))
    except Exception:  # a plug-in's bug must not end the worker
        logger.exception("qnb: Apprise raised while sending a job notification")
        outcome.append(False)


def message(job: Job) -> tuple[str, str]:
    """The title and body announcing ``job``'s end: id, name, status, a counts summary
    (or the error), how long it took."""
    status = job.status.value
    title = f"qnb: {job.name!r} {status}"
    lines = [f"job {job.id} ({job.name!r}) on {job.target}: {status}"]
    if job.time_finished is not None:
        taken = f"elapsed {job.time_finished - job.time_added:.1f} s"
        if job.time_started is not None:
            taken += f" (ran {job.time_finished - job.time_started:.1f} s)"
        lines.append(taken)
    if job.error:
        lines.append(f"error: {job.error}")
    lines += _counts_summary(job)
    return title, "\n".join(lines)


def _counts_summary(job: Job) -> list[str]:
    try:
        result = job.result(timeout=0)
    except (JobFailedError, JobCancelledError, TimeoutError):
        return []  # nothing completed: the status and error say it all
    lines = []
    labels = list(result)
    for label in labels[:SUMMARY_CIRCUITS]:
        counts = sorted(result.counts(label).items(), key=lambda kv: -kv[1])
        shown = ", ".join(f"{bits}: {n}" for bits, n in counts[:SUMMARY_OUTCOMES])
        more = f", ... ({len(counts) - SUMMARY_OUTCOMES} more outcomes)" if len(counts) > SUMMARY_OUTCOMES else ""
        lines.append(f"counts of {label!r}: {shown}{more}")
    if len(labels) > SUMMARY_CIRCUITS:
        lines.append(f"... and {len(labels) - SUMMARY_CIRCUITS} more circuits")
    if result.missing:
        lines.append(f"no result for {len(result.missing)} of {len(result.labels)} circuits")
    return lines


class Notifier:
    """Announces the end of the jobs it watches: once each, from one daemon thread."""

    def __init__(self) -> None:
        self._due: queue.Queue[tuple[Job, tuple[str, ...]]] = queue.Queue()
        self._lock = threading.Lock()
        self._sent = threading.Condition(self._lock)
        self._watched: set[str] = set()
        self._unsent: dict[str, Job] = {}  # watched jobs whose message has not left yet
        self._worker: threading.Thread | None = None

    def watch(self, job: Job, urls: Sequence[str]) -> None:
        """Send one message to ``urls`` when ``job`` ends (at once if it has)."""
        if not urls:
            return
        with self._lock:
            if job.id in self._watched:
                return  # already announced, or about to be: once per job
            self._watched.add(job.id)
            self._unsent[job.id] = job
            if self._worker is None:
                self._worker = threading.Thread(target=self._work, name="qnb-notify", daemon=True)
                self._worker.start()
                atexit.register(self.drain, EXIT_WAIT)
        urls = tuple(urls)
        # Runs on whichever thread stores the end: it only queues the job.
        when(job).add_done_callback(lambda ended: self._ended(job, urls, ended))

    def _ended(self, job: Job, urls: tuple[str, ...], ended: concurrent.futures.Future) -> None:
        if ended.cancelled() or ended.exception() is not None:
            logger.warning("qnb: job %s's end was not stored; no notification is sent", job.id[:8])
            self._done_with(job)
            return
        self._due.put((job, urls))

    def _done_with(self, job: Job) -> None:
        with self._lock:
            self._unsent.pop(job.id, None)
            self._sent.notify_all()

    def _work(self) -> None:
        while True:
            job, urls = self._due.get()
            try:
                title, body = message(job)
                send(urls, title, body)
            except Exception:  # a store closed at exit, ...: logged, the worker goes on
                logger.exception("qnb: the notification of job %s could not be made", job.id[:8])
            finally:
                self._done_with(job)

    def drain(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for the messages of the watched jobs that
        have ended to leave (not for jobs still running); True if none is left."""
        deadline = time.monotonic() + timeout
        with self._lock:
            watched = list(self._unsent.values())
        ended = {job.id for job in watched if _has_ended(job)}
        with self._lock:
            while ended & self._unsent.keys():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._sent.wait(left)
        return True


def _has_ended(job: Job) -> bool:
    try:
        return job.done()
    except Exception:  # noqa: BLE001 - a store gone at exit: nothing to wait for
        return False


#: The process's notifier (jobs submitted here with ``notify`` URLs).
notifier = Notifier()
