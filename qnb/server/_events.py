"""The event feed: numbered job changes for long-polling clients.

An event holds what changed: the job's own fields (a few hundred bytes) and the items
whose status changed since the job's previous event (``changed_items``: index ->
``{"status", "error"}``), never a copy of all items. A 300-item job so costs about as
many item entries over its whole life as it has items times the states they pass, not
items squared. For clients that read whole item lists, an answer gives the current
``items`` of each job once, on that job's newest event in the answer, and answers
stop early rather than exceed :data:`ITEMS_PER_ANSWER` item entries.
"""

from __future__ import annotations

import asyncio
import threading
import uuid

from .._manager import JobManager
from .._records import JobRecord
from ._auth import User
from ._service import PUBLIC_FIELDS

EVENTS_KEPT = 20_000
EVENTS_PER_ANSWER = 1000
ITEMS_PER_ANSWER = 20_000


class EventFeed:
    """Job changes, numbered, for users to follow.

    The manager calls :meth:`note` on every change (on any thread, under its lock).
    Publishing writes pending changes to the store first, so a client never learns of a
    state the server could still lose. It runs on the server's own loop once that is
    known (:meth:`bind`); until then on the manager's.
    """

    def __init__(self, manager: JobManager):
        self.manager = manager
        self.epoch = uuid.uuid4().hex  # a restarted server numbers its events afresh
        self.seq = 0
        # Event seq numbers are contiguous, so a list slices by seq in O(answer);
        # trimmed to the newest EVENTS_KEPT whenever it holds twice as many.
        self._events: list[tuple[int, dict, dict]] = []  # (seq, job fields, changed items)
        # The item statuses each job's events have announced so far: the base of the
        # next event's changes, and the items an answer shows.
        self._items: dict[str, list[dict]] = {}
        self._lock = threading.Lock()
        self._noted: dict[str, JobRecord] = {}
        self._publish_scheduled = False
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]] = []
        self._loop: asyncio.AbstractEventLoop = manager.loop
        self._closed = False
        self._remove_listener = manager.add_listener(self.note)

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Publish on ``loop`` (the server's) from now on."""
        self._loop = loop

    def close(self) -> None:
        """Stop listening and end every long-poll now (the server is shutting down)."""
        self._remove_listener()
        with self._lock:
            self._closed = True
            waiters, self._waiters = self._waiters, []
        _wake_all(waiters)

    def note(self, rec: JobRecord) -> None:
        with self._lock:
            self._noted[rec.id] = rec
            if self._publish_scheduled:
                return
            self._publish_scheduled = True
        loop = self._loop
        if _running_loop() is loop:
            loop.call_soon(self._publish)
            return
        try:
            loop.call_soon_threadsafe(self._publish)
        except RuntimeError:  # the server's loop has ended (tests): the manager's goes on
            self._loop = self.manager.loop
            self._loop.call_soon_threadsafe(self._publish)

    def _publish(self) -> None:
        self.manager.flush()
        with self._lock:
            noted, self._noted = self._noted, {}
            self._publish_scheduled = False
        taken = self.manager.snapshot(noted.values(), _take)
        with self._lock:
            for fields, items in taken:
                before = self._items.get(fields["id"])
                if before is None or len(before) != len(items):
                    changed = dict(enumerate(items))
                else:
                    changed = {i: it for i, (it, old) in enumerate(zip(items, before)) if it != old}
                self._items[fields["id"]] = items
                self.seq += 1
                self._events.append((self.seq, fields, changed))
            if len(self._events) > 2 * EVENTS_KEPT:
                del self._events[:-EVENTS_KEPT]
                kept = {fields["id"] for _, fields, _ in self._events}
                self._items = {job_id: v for job_id, v in self._items.items() if job_id in kept}
            waiters, self._waiters = self._waiters, []
        _wake_all(waiters)

    def since(
        self, after: int, user: User, *, only_mine: bool = False
    ) -> tuple[list[dict], int, bool]:
        """Events after ``after`` as ``user`` may see them, the seq to ask after next,
        and whether some events after ``after`` are lost."""
        with self._lock:
            oldest = self._events[0][0] if self._events else self.seq + 1
            lost = after > self.seq or after < oldest - 1
            start = max(0, after - oldest + 1)
            found = self._events[start : start + EVENTS_PER_ANSWER]
            last = found[-1][0] if found else self.seq
            # Each job's whole item list once, on its newest event here; stop before an
            # answer grows past ITEMS_PER_ANSWER item entries.
            newest: dict[str, int] = {}
            budget = ITEMS_PER_ANSWER
            for n, (seq, fields, changed) in enumerate(found):
                if fields["id"] not in newest:
                    budget -= len(self._items.get(fields["id"], ())) + len(changed)
                    if budget < 0 and n > 0:
                        found, last = found[:n], found[n - 1][0]
                        break
                newest[fields["id"]] = seq
            events = []
            for seq, fields, changed in found:
                if only_mine and not user.may_act_on(fields["user"]):
                    continue
                if not user.may_act_on(fields["user"]):
                    events.append({"seq": seq, **{k: fields[k] for k in PUBLIC_FIELDS}})
                    continue
                event = {"seq": seq, **fields, "changed_items": {str(i): it for i, it in changed.items()}}
                if newest[fields["id"]] == seq:
                    event["items"] = self._items.get(fields["id"], [])
                events.append(event)
        return events, last, lost

    async def wait(self, after: int, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        with self._lock:
            if self.seq > after or self._closed:
                return
            self._waiters.append((loop, future))
        try:
            await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            pass
        finally:
            with self._lock:
                if (loop, future) in self._waiters:
                    self._waiters.remove((loop, future))


def _take(rec: JobRecord) -> tuple[dict, list[dict]]:
    fields = rec.public_dict()
    fields["position"] = None
    items = [{"label": it.label, "status": it.status.value, "error": it.error} for it in rec.items]
    return fields, items


def _wake_all(waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future]]) -> None:
    here = _running_loop()
    for loop, future in waiters:
        if loop is here:
            _wake(future)
        elif not loop.is_closed():
            try:
                loop.call_soon_threadsafe(_wake, future)
            except RuntimeError:  # closed meanwhile
                pass


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _wake(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)
