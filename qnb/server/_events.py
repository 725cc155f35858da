"""The event feed: numbered job changes for long-polling clients.

An event holds what changed: the job's own fields (a few hundred bytes) and the items
whose status changed since the job's previous event (``changed_items``: index ->
``{"status", "error"}``), never a copy of all items. A 300-item job so costs about as
many item entries over its whole life as it has items times the states they pass, not
items squared. For clients that read whole item lists, an answer gives the current
``items`` of each job once, on that job's newest event in the answer, and answers
stop early rather than exceed :data:`ITEMS_PER_ANSWER` item entries.

What the feed keeps is capped by bytes (:data:`FEED_BYTES`), not by a count of events
(a count let 5,000 300-item jobs hold 2.6 GB): the oldest events go first, and a client
that asks after one of them is told to re-read its jobs (``reset``). Kept compactly: an
event's changed items as runs of indices per (status, error), a job's items as tuples
of labels and statuses; answers expand them.
"""

from __future__ import annotations

import array
import asyncio
import sys
import threading
import uuid
from collections.abc import Mapping

from .._api import JobManager
from .._records import JobRecord
from .._views import public_part, server_job
from ._auth import User

#: Bytes of events and item states the feed keeps (Python's own sizes, counted at
#: publishing); over it the oldest events are dropped down to three quarters of it.
FEED_BYTES = 32 * 1024 * 1024
EVENTS_PER_ANSWER = 1000
ITEMS_PER_ANSWER = 20_000


class EventFeed:
    """Job changes, numbered, for users to follow.

    The manager calls :meth:`note` on every change (on any thread, under its lock).
    Publishing writes pending changes to the store first, so a client never learns of a
    state the server could still lose. It runs on the server's own loop once that is
    known (:meth:`bind`); until then on the manager's.
    """

    def __init__(self, manager: JobManager, *, max_bytes: int = FEED_BYTES):
        self.manager = manager
        self.epoch = uuid.uuid4().hex  # a restarted server numbers its events afresh
        self.seq = 0
        self.max_bytes = max_bytes
        # Event seq numbers are contiguous, so a list slices by seq in O(answer).
        self._events: list[tuple[int, Fields, Changes]] = []  # (seq, job fields, changed items)
        self._costs: list[int] = []  # bytes of each kept event, in step with _events
        # The items each job's events have announced so far: the base of the next
        # event's changes, and the items an answer shows; and the seq of the job's
        # newest event, so its items go when that event does.
        self._items: dict[str, JobItems] = {}
        self._newest: dict[str, int] = {}
        self.retained_bytes = 0
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
            for fields, labels, statuses, errors in taken:
                self._append(fields, labels, statuses, errors)
            if self.retained_bytes > self.max_bytes:
                self._trim(self.max_bytes * 3 // 4)
            waiters, self._waiters = self._waiters, []
        _wake_all(waiters)

    def _append(self, fields: Fields, labels: tuple, statuses: tuple, errors: dict) -> None:
        job_id = fields["id"]
        before = self._items.get(job_id)
        after = JobItems.following(before, labels, statuses, errors)
        changed = Changes.between(before, after)
        if before is not None:
            self.retained_bytes -= before.cost
        self._items[job_id] = after
        self.retained_bytes += after.cost
        self.seq += 1
        self._newest[job_id] = self.seq
        cost = _EVENT_OVERHEAD + _fields_cost(fields) + changed.cost
        self._events.append((self.seq, fields, changed))
        self._costs.append(cost)
        self.retained_bytes += cost

    def _trim(self, target: int) -> None:
        """Drop the oldest events (and the items of jobs left without one) until the
        feed keeps at most ``target`` bytes; one slice, so trimming stays O(1) per event."""
        drop = 0
        while drop < len(self._events) and self.retained_bytes > target:
            seq, fields, _ = self._events[drop]
            self.retained_bytes -= self._costs[drop]
            job_id = fields["id"]
            if self._newest.get(job_id) == seq:
                del self._newest[job_id]
                self.retained_bytes -= self._items.pop(job_id).cost
            drop += 1
        del self._events[:drop]
        del self._costs[:drop]

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
                    budget -= len(self._items[fields["id"]]) + len(changed)
                    if budget < 0 and n > 0:
                        found, last = found[:n], found[n - 1][0]
                        break
                newest[fields["id"]] = seq
            events = []
            for seq, fields, changed in found:
                if only_mine and not user.may_act_on(fields["user"]):
                    continue
                if not user.may_act_on(fields["user"]):
                    events.append({"seq": seq, **public_part(fields)})
                    continue
                items = self._items[fields["id"]]
                event = {"seq": seq, **fields, "changed_items": changed.expand()}
                if newest[fields["id"]] == seq:
                    event["items"] = items.expand()
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


def _take(rec: JobRecord) -> tuple[Fields, tuple, tuple, dict]:
    fields = Fields(server_job(rec))  # its position is the queue's, not the feed's
    labels = tuple(it.label for it in rec.items)
    statuses = tuple(it.status.value for it in rec.items)
    errors = {i: it.error for i, it in enumerate(rec.items) if it.error is not None}
    return fields, labels, statuses, errors


# -- compact item states ----------------------------------------------------------------------

#: An event's tuple, its list slot, its seq and its cost's int.
_EVENT_OVERHEAD = sys.getsizeof((0, None, None)) + 8 + 2 * sys.getsizeof(2**40)


def _fields_cost(fields: Fields) -> int:
    # Strings and floats counted as if owned, though many are the record's own: an
    # over-estimate keeps the budget a true bound.
    return sys.getsizeof(fields) + sys.getsizeof(fields._values) + sum(
        sys.getsizeof(v) for v in fields._values if isinstance(v, (str, float))
    )


class Fields(Mapping):
    """A job's public fields at one event, read like the dict they came from: values in
    a tuple, keys shared by every event (a 16-key dict costs ~650 bytes, this ~220)."""

    __slots__ = ("_keys", "_values")
    _shared: dict[tuple, dict[str, int]] = {}

    def __init__(self, public: dict):
        keys = tuple(public)
        self._keys = self._shared.setdefault(keys, {k: i for i, k in enumerate(keys)})
        self._values = tuple(public.values())

    def __getitem__(self, key: str):
        return self._values[self._keys[key]]

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._values)


class JobItems:
    """A job's items as its events have announced them: labels (they never change, so
    kept once per job), statuses (the status enum's own strings) and the errors there
    are, by index."""

    __slots__ = ("labels", "statuses", "errors", "cost", "_labels_cost")

    def __init__(self, labels: tuple, statuses: tuple, errors: dict, labels_cost: int):
        self.labels, self.statuses, self.errors = labels, statuses, errors
        self._labels_cost = labels_cost
        self.cost = (labels_cost + sys.getsizeof(statuses) + sys.getsizeof(errors)
                     + sum(sys.getsizeof(e) for e in errors.values()) + 80)

    @classmethod
    def following(cls, before: JobItems | None, labels: tuple, statuses: tuple, errors: dict) -> JobItems:
        if before is not None and before.labels == labels:
            labels, labels_cost = before.labels, before._labels_cost
        else:
            labels_cost = sys.getsizeof(labels) + sum(sys.getsizeof(label) for label in labels)
        return cls(labels, statuses, errors, labels_cost)

    def __len__(self) -> int:
        return len(self.statuses)

    def item(self, i: int) -> dict:
        return {"label": self.labels[i], "status": self.statuses[i], "error": self.errors.get(i)}

    def expand(self) -> list[dict]:
        return [self.item(i) for i in range(len(self.statuses))]


class Changes:
    """The items one event changed, as (status, error, indices) runs: a job whose 300
    items all start or finish at once costs a few dozen bytes, not 300 entries."""

    __slots__ = ("runs", "labels", "count", "cost")

    def __init__(self, runs: tuple, labels: tuple):
        self.runs = runs
        self.labels = labels  # the job's own tuple, shared: not counted again
        self.count = sum(len(indices) for _, _, indices in runs)
        self.cost = 48 + sys.getsizeof(runs) + sum(
            sys.getsizeof(r) + sys.getsizeof(r[2]) + (sys.getsizeof(r[1]) if r[1] is not None else 0)
            for r in runs
        )

    @classmethod
    def between(cls, before: JobItems | None, after: JobItems) -> Changes:
        fresh = before is None or len(before) != len(after)
        groups: dict[tuple, list[int]] = {}
        for i, status in enumerate(after.statuses):
            error = after.errors.get(i)
            if fresh or status != before.statuses[i] or error != before.errors.get(i):
                groups.setdefault((status, error), []).append(i)
        return cls(tuple((s, e, _compact(ix)) for (s, e), ix in groups.items()), after.labels)

    def __len__(self) -> int:
        return self.count

    def expand(self) -> dict[str, dict]:
        """``{"index": {"label", "status", "error"}}`` in index order."""
        entries = sorted(((i, s, e) for s, e, ix in self.runs for i in ix), key=lambda t: t[0])
        return {str(i): {"label": self.labels[i], "status": s, "error": e} for i, s, e in entries}


def _compact(indices: list[int]):
    """A range when contiguous, else packed 4-byte ints."""
    if indices[-1] - indices[0] + 1 == len(indices):
        return range(indices[0], indices[-1] + 1)
    return array.array("I", indices)


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
