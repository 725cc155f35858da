"""What a job looks like from outside: its JSON views and its HTML, written once.

Every face shows a job through these functions: the widgets (a row of the queue monitor,
the job card), the queue server (a job, a queue entry, an event of its feed) and the
command line. The fields each face sends are an API (clients read them): a face picks
its view here and never builds one of its own. ``tests/test_views.py`` pins each one.
"""

from __future__ import annotations

import collections
import html
import time

from ._estimate import Estimate, cost_text, duration_text
from ._records import ItemRecord, JobRecord

#: What every user of a shared queue sees of another user's job.
PUBLIC_FIELDS = ("id", "user", "name", "status", "time_added")


def job_fields(rec: JobRecord) -> dict:
    """A job's own fields, JSON-ready: the base of every view below. ``tags`` only
    when the job has some (as an item's ``params`` only when it is swept); ``cost`` and
    ``currency`` only where a price was known at submit; ``estimate`` (what is left:
    :meth:`qnb.Estimate.as_json`: the running process's own, else the one it last stored)
    only while the job is unfinished and estimated."""
    done, total = rec.progress
    fields = {
        "id": rec.id,
        "name": rec.name,
        "target": rec.target,
        "user": rec.user,
        "shots": rec.shots,
        "status": rec.status.value,
        "time_added": rec.time_added,
        "time_started": rec.time_started,
        "time_finished": rec.time_finished,
        "error": rec.error,
        "parent_id": rec.parent_id,
        "priority": rec.priority,
        "done": done,
        "total": total,
        "unit": "points" if rec.swept else "circuits",
    }
    if rec.tags:
        fields["tags"] = list(rec.tags)
    if rec.cost is not None:
        fields["cost"], fields["currency"] = rec.cost, rec.currency
    fields.update(_estimate_of(rec))
    return fields


def item_view(
    item: ItemRecord, *, params: bool = False, retries: int = 0, history: bool = False
) -> dict:
    """One item: label, status, error (and, with ``params``, its sweep point when it
    has one). Once it has run again after a transient failure, ``attempts`` (how many
    times) and ``retries`` (its job's ``retries=``, passed in: an item does not know its
    job): unfinished, faces show it "retrying (attempts/retries)". With ``history`` (a
    full view), what its failed runs said, oldest first."""
    view = {"label": item.label, "status": item.status.value, "error": item.error}
    if params and item.params is not None:
        view["params"] = item.params
    if item.attempts > 0:
        view["attempts"], view["retries"] = item.attempts, retries
        if history:
            view["history"] = list(item.history)
    return view


def server_job(rec: JobRecord, *, items: bool = False, position: int | None = None) -> dict:
    """A job as a queue server answers it (``GET /v1/jobs/ID``; without ``items`` in
    lists and removals); also the fields of its events (position None)."""
    view = job_fields(rec)
    view["position"] = position
    if items:
        view["items"] = [item_view(it, params=True, retries=rec.retries, history=True) for it in rec.items]
    return view


def queue_entry(rec: JobRecord, position: int | None, *, own: bool = False) -> dict:
    """A job's queue entry as every user of the queue may see it; with ``own`` (the
    caller's job, or an admin asking), its estimate too."""
    return {
        "position": position,
        "id": rec.id,
        "user": rec.user,
        "name": rec.name,
        "time_added": rec.time_added,
        "status": rec.status.value,
        **(_estimate_of(rec) if own else {}),
    }


def _estimate_of(rec: JobRecord) -> dict:
    """``{"estimate": ...}`` while the job is unfinished and estimated (the running
    process's own estimate, else the one it last stored), else nothing."""
    if rec.done:
        return {}
    estimate = rec.live.estimate
    found = rec.saved_estimate if estimate is None else estimate.as_json()
    return {} if found is None else {"estimate": found}


def public_part(view: dict) -> dict:
    """Of a job's view, only what every user may see (:data:`PUBLIC_FIELDS`)."""
    return {key: view[key] for key in PUBLIC_FIELDS}


def widget_row(
    rec: JobRecord,
    *,
    position: int | None,
    queue_seq: float | None,
    connection: str | None,
) -> dict:
    """A job as the widgets get it (a queue monitor's row, a card's ``job``): its
    fields, its 1-based queue position as the kernel knows it (None out of the queue or
    unknown), ``queue_seq`` while it waits in this kernel's own queue (None for a queue
    server's job), ``connection`` ``"reconnecting"`` while its server is away."""
    row = job_fields(rec)
    row["queue_seq"] = queue_seq
    row["position"] = position
    row["connection"] = connection
    row.update(outcome_counts(rec))
    again = retrying(rec)
    if again is not None:
        row["retrying"] = again
    return row


def retrying(rec: JobRecord) -> dict | None:
    """The job's unfinished items being run again after a transient failure, for the
    faces' "retrying (k/N)": how many (``count``), the highest attempt (``attempt``) and
    the retries allowed (``retries``); None when there are none."""
    if rec.done:
        return None
    attempts = [item.attempts for item in rec.items if item.attempts and not item.status.is_terminal]
    if not attempts:
        return None
    return {"count": len(attempts), "attempt": max(attempts), "retries": rec.retries}


#: The outcomes an item ends with, in the order views show them.
OUTCOMES = ("completed", "failed", "cancelled")


def outcome_counts(rec: JobRecord) -> dict:
    """How many of the job's items ended in each outcome (``done`` counts them all): a
    cancelled job of 150 items with 12 done is 12 completed and 138 cancelled, not a
    full bar."""
    ended = collections.Counter(item.status.value for item in rec.items)
    return {outcome: ended[outcome] for outcome in OUTCOMES}


def progress_text(row: dict) -> str:
    """A job's progress by outcome, as the widgets show it: ``"3/50"`` (``"3 of 50
    points"`` for a sweep) while nothing failed or was cancelled, else ``"12 done · 138
    cancelled"`` (with ``" of 150"`` while items still wait)."""
    done, total = row.get("done", 0), row.get("total", 0)
    failed, cancelled = row.get("failed", 0), row.get("cancelled", 0)
    completed = row.get("completed", done - failed - cancelled)
    points = row.get("unit") == "points"
    if not failed and not cancelled:
        return f"{completed} of {total} points" if points else f"{completed}/{total}"
    parts = [f"{completed} done"]
    if failed:
        parts.append(f"{failed} failed")
    if cancelled:
        parts.append(f"{cancelled} cancelled")
    rest = "" if done >= total else f" of {total}{' points' if points else ''}"
    return " · ".join(parts) + rest


def cli_job(rec: JobRecord) -> dict:
    """A job as ``qnb jobs --json`` and ``qnb show --json`` print it (older names:
    ``items`` is the count, ``items_done`` the finished ones)."""
    fields = job_fields(rec)
    return {
        "id": fields["id"],
        "name": fields["name"],
        "target": fields["target"],
        "user": fields["user"],
        "status": fields["status"],
        "shots": fields["shots"],
        "items": fields["total"],
        "items_done": fields["done"],
        "time_added": fields["time_added"],
        "time_started": fields["time_started"],
        "time_finished": fields["time_finished"],
        "error": fields["error"],
        "parent_id": fields["parent_id"],
        **({"tags": fields["tags"]} if "tags" in fields else {}),
        **{key: fields[key] for key in ("cost", "currency", "estimate") if key in fields},
    }


def status_text(row: dict) -> str:
    """A job's status as shown, with "(reconnecting)" while its server is away."""
    reconnecting = " (reconnecting)" if row.get("connection") == "reconnecting" else ""
    return f"{row['status']}{reconnecting}"


def job_html(row: dict, *, position: int | None = None) -> str:
    """A job as HTML, from its fields (:func:`job_fields` or a widget row): the job's
    display without a kernel and the card's fallback in a saved notebook."""
    error = (
        f"<br><span style='color:#b00020'>{html.escape(row['error'])}</span>"
        if row.get("error")
        else ""
    )
    where = f", position {position}" if position else ""
    if row.get("failed") or row.get("cancelled"):
        progress = html.escape(progress_text(row))
    else:
        progress = f"{row['done']}/{row['total']} {row.get('unit', 'circuits')}"
    return (
        f"<div class='qnb-job'><b>{html.escape(row['name'])}</b> "
        f"<code>{html.escape(row['id'][:8])}</code> on {html.escape(row['target'])}: "
        f"<b>{html.escape(status_text(row))}</b> ({progress}{where}){html.escape(outlook_text(row))}{error}</div>"
    )


def outlook_text(row: dict) -> str:
    """What a job's view adds to its status, as of now: ``" · retrying (1/3) · done by
    ~14:32 · $4.20"`` (each part only where known; a local job's 0.0 cost is not shown)."""
    parts = []
    again = row.get("retrying")
    if again:
        parts.append(f"retrying ({again['attempt']}/{again['retries']})")
    finish = (row.get("estimate") or {}).get("finish")
    if finish is not None:
        parts.append(f"done by ~{time.strftime('%H:%M', time.localtime(finish))}")
    if row.get("cost"):
        parts.append(cost_text(row["cost"], row.get("currency")))
    return "".join(f" · {part}" for part in parts)


def estimate_text(found: Estimate, *, heading: str, max_cost: float | None = None, over: str = "max_cost",
                  now: float | None = None) -> str:  # fmt: skip
    """An estimate as ``%%qsubmit --estimate`` and ``qnb estimate`` print it: one figure
    a line under ``heading``, then how it was made; over ``max_cost`` (the option named
    ``over``) it says a submit would be refused."""
    now = time.time() if now is None else now
    lines = [heading]
    unknown = "not known"
    lines.append(f"  run     {unknown if found.run_seconds is None else duration_text(found.run_seconds)}")
    if found.wait_seconds is None:
        lines.append(f"  wait    {unknown}")
    else:
        lines.append(f"  wait    {'starts now' if found.wait_seconds < 1 else duration_text(found.wait_seconds)}")
    if found.finish is None:
        lines.append(f"  finish  {unknown}")
    else:
        left = found.finish.timestamp() - now
        clock = found.finish.astimezone().strftime("%H:%M:%S")
        lines.append(f"  finish  {clock} ({'in under a second' if left < 1 else f'in {duration_text(left)}'})")
    lines.append(f"  cost    {cost_text(found.cost, found.currency)}")
    if max_cost is not None and found.cost is not None and found.cost > max_cost:
        lines.append(f"          over {over} {max_cost:g}: submitting would be refused")
    if found.basis:
        lines.append(f"  basis   {found.basis}")
    return "\n".join(lines)
