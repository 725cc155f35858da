"""The part of the remote-job shape every vendor shares: creating a job exactly once.

A vendor job costs money, so once a vendor *may* have a job it is never created again
without first looking for it. The creating request (the POST) is kept apart from
everything after it: it answers the vendor's id and nothing else, its client does not
retry it by itself, and any failure other than a clear refusal leaves the creation "in
doubt". A job in doubt shows "reconnecting" (``TargetJob.report_waiting``) and is looked
for (``find``: by idempotency key, or by the qnb id the job's name carries) before any
new POST; while an earlier POST may still be on its way (its call passed its deadline
but has not ended), nothing is sent again at all.

A hand-over after a restart (the process that sent it died before the vendor's id was
stored) starts in doubt: ``TargetJob.maybe_created``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Awaitable, Callable

from .._errors import QnbError, RemoteError, ServerUnreachableError
from ._base import TargetJob

logger = logging.getLogger("qnb")

#: A job whose creation is in doubt and cannot be settled (the vendor neither lists it
#: nor lets a POST end) waits this long before it fails, naming how to find it.
DOUBT_LIMIT_SECONDS = 600.0
FIRST_BACKOFF_SECONDS = 0.5
MAX_BACKOFF_SECONDS = 30.0


class Creation:
    """One job's creation at a vendor. ``post()`` sends the creating request and returns
    the vendor's id, raising :class:`QnbError` (``retryable`` False for a refusal: then
    nothing was created). It may hand back the call's future as ``self.in_flight`` while
    the request is still running past its deadline. ``find()`` returns the id of the
    job if the vendor has it, else None."""

    def __init__(
        self,
        job: TargetJob,
        *,
        vendor: str,
        post: Callable[[Creation], Awaitable[str]],
        find: Callable[[], Awaitable[str | None]],
        doubt_limit: float = DOUBT_LIMIT_SECONDS,
    ):
        self.job = job
        self.vendor = vendor
        self._post = post
        self._find = find
        self.doubt_limit = doubt_limit
        #: The future of a POST that passed its deadline and may still reach the vendor.
        self.in_flight: concurrent.futures.Future | None = None
        self.posts = 0

    async def run(self) -> str:
        """The vendor's id of the job, created at most once."""
        in_doubt = self.job.maybe_created
        deadline = time.monotonic() + self.doubt_limit
        backoff = FIRST_BACKOFF_SECONDS
        last_error: QnbError | None = None
        while True:
            if in_doubt:
                found, absent = await self._settle_doubt()
                if found is not None:
                    return found
                in_doubt = not absent
            if not in_doubt:
                try:
                    self.posts += 1
                    return await self._post(self)
                except QnbError as exc:
                    if not exc.retryable:
                        raise  # a refusal: the vendor created nothing
                    last_error, in_doubt = exc, True
            self.job.report_waiting()
            if time.monotonic() + backoff > deadline:
                raise self._gave_up(last_error)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)

    async def _settle_doubt(self) -> tuple[str | None, bool]:
        """``(id, False)`` if an earlier POST ended with one or the vendor lists the job;
        ``(None, True)`` only when the vendor, asked after every POST had ended, does
        not have it (a POST may be sent); else ``(None, False)``: still in doubt."""
        all_ended = True
        if self.in_flight is not None:
            if self.in_flight.done():
                future, self.in_flight = self.in_flight, None
                if not future.cancelled() and future.exception() is None:
                    return future.result(), False
            else:
                all_ended = False  # it may land after the vendor is asked: no POST yet
        try:
            found = await self._find()
        except RemoteError as exc:  # the vendor cannot answer now: still in doubt
            logger.info("qnb: looking for job %s at %s: %s", self.job.job_id, self.vendor, exc)
            return None, False
        return found, found is None and all_ended

    def _gave_up(self, error: QnbError | None) -> QnbError:
        return ServerUnreachableError(
            f"{self.vendor} did not settle the creation of job {self.job.job_id} within "
            f"{self.doubt_limit:g} s ({error}); it was never created twice, and may exist "
            f"there all the same: its name ends in '(qnb {self.job.job_id})'"
        )


def qnb_name(job: TargetJob) -> str:
    """The vendor-side name of a job: the user's name and the qnb id, by which the job
    is found again when its creation is in doubt."""
    return (f"{job.name} " if job.name else "") + qnb_marker(job.job_id)


def qnb_marker(job_id: str) -> str:
    return f"(qnb {job_id})"
