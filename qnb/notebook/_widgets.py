"""Live widgets: the job card, the queue monitor, and the channel for page actions.

Each widget is a small anywidget class plus one ES module in ``js/``. Job state reaches
the page from :class:`qnb.notebook._stream.JobStream`'s thread (trait changes for a card, custom
``patch`` messages for the monitor), so it keeps flowing while a cell is busy.

Page actions (cancel, remove, move to front, resubmit) travel on a comm of their own,
:class:`ActionChannel`, on which Python only ever answers from the message handler.
JupyterLab (>= 4.4) sends widget comm messages to a kernel subshell; the channel makes
the kernel keep them there (see :func:`_route_page_messages_where_the_page_sends_them`),
so actions are handled on a subshell thread even while the main shell runs a blocking
cell. Elsewhere (no subshells) they run once the kernel is free; the page shows them as
requested at once either way. Handlers only call the JobManager's thread-safe, quick
methods.
"""

from __future__ import annotations

import html
import json
import threading
import time
import weakref
from pathlib import Path

import anywidget
import traitlets

from .. import _api as qnb_api
from .._api import JobManager, get_manager
from .._errors import QnbError
from .._job import manager_of, results_so_far
from .._options import check_tags
from .._plot import select_top
from .._status import TERMINAL
from .._views import job_html, outlook_text, progress_text, status_text
from ._stream import JobSource, JobStream, row_view, stream_for


def _static_dir() -> Path:
    # The wheel ships js/ as qnb/_static; an editable install reads the repo's js/.
    package = Path(__file__).resolve().parent.parent
    packaged = package / "_static"
    return packaged if packaged.is_dir() else package.parent / "js"


STATIC = _static_dir()


def _view_loader(trait: str) -> str:
    """A widget's ``_esm``: view_loader.js, rendering the view whose code the action
    channel holds in ``trait``."""
    loader = (STATIC / "view_loader.js").read_text(encoding="utf-8")
    return f"{loader}\nexport default viewFromChannel({json.dumps(trait)});\n"

#: Outcomes per circuit sent to a card's histogram (the most frequent ones).
CARD_TOP_OUTCOMES = 32
#: Circuits of a batch whose counts a card carries.
CARD_MAX_LABELS = 64
#: Jobs from the store (besides the live ones) in a monitor snapshot.
SNAPSHOT_STORED_JOBS = 2000
#: Rows of the HTML fallback of the monitor.
FALLBACK_ROWS = 20


# -- page actions ---------------------------------------------------------------------------


def perform_action(manager: JobManager, action: str, job_id: str) -> dict:
    """Hand one page action to the JobManager; return what the page should show."""
    if action == "cancel":
        return {"status": manager.cancel(job_id).value}
    if action in ("remove", "move_to_front"):
        # One Queue for qnb's own queues and a server's: the target's queue decides.
        queue = qnb_api.queue_of(manager, manager.load(job_id).target)
        entry = queue.remove_by_id(job_id) if action == "remove" else queue.move_to_front(job_id)
        return {"status": entry.status.value}
    if action in ("resubmit", "resubmit_failed"):
        new = manager.resubmit(job_id, only_failed=action == "resubmit_failed")
        return {"status": new.status.value, "new_job_id": new.id}
    raise QnbError(f"unknown action {action!r}")


def _route_page_messages_where_the_page_sends_them(comm) -> None:
    """Let page messages on ``comm`` reach the subshell the page addressed.

    ipykernel (7.x) re-routes each incoming comm message to the subshell from which
    Python last sent on that comm (``_reply_subshell_for``), so that a cell waiting for
    a reply gets it. Our comm_open is sent from a cell, i.e. the main shell: without
    this, every click would wait for the running cell (and, after "Run all", for every
    queued cell). The action channel has no cell waiting on it, so the page's choice
    (JupyterLab: a subshell per comm target) is the right one. Kernels without the hook
    (older ipykernel, other front ends) keep their own routing: actions then run once
    the kernel is free.
    """
    if comm is not None and hasattr(comm, "_reply_subshell_for"):
        comm._reply_subshell_for = lambda _data, page_choice: page_choice


class ActionChannel(anywidget.AnyWidget):
    """Carries page actions to the kernel; one per JobManager, never displayed.

    It also carries, once for every view on the page, the front end's code: the job
    card's and the queue monitor's modules and the one action-channel client they share
    (``js/action_client.js``). anywidget loads each widget's ``_esm`` on its own, so ES
    ``import`` between our modules does not work; each widget's ``_esm`` is only
    ``js/view_loader.js``, which imports the view and the client from these traits (Blob
    URLs, one per code text) and gives the view its client. So the shared code exists
    once, with no build step (a bundler would be one), on every anywidget version we
    support, and a notebook with many cards saves the code once, not once per card.
    """

    _esm = STATIC / "action_channel.js"
    #: Trait -> the file in js/ it carries (the views' ``_esm`` names the trait).
    CODE = {
        "card_module": "job_card.js",
        "monitor_module": "queue_monitor.js",
        "client_module": "action_client.js",
        "card_style": "qnb.css",  # every view's style (the name is older than the monitor's)
    }
    card_module = traitlets.Unicode().tag(sync=True)
    monitor_module = traitlets.Unicode().tag(sync=True)
    client_module = traitlets.Unicode().tag(sync=True)
    card_style = traitlets.Unicode().tag(sync=True)

    def __init__(self, manager: JobManager, **kwargs):
        code = {trait: (STATIC / name).read_text(encoding="utf-8") for trait, name in self.CODE.items()}
        super().__init__(**code, **kwargs)
        self.manager = manager
        _route_page_messages_where_the_page_sends_them(self.comm)
        #: (action, job id, thread name, monotonic time) of every action handled: the
        #: tests read it to tell where and when a click was handled.
        self.handled: list[tuple[str, str, str, float]] = []
        self.on_msg(self._on_page_message)

    def _on_page_message(self, _widget, content, _buffers) -> None:
        # May run on the main shell thread or a subshell thread: touch only the manager's
        # thread-safe methods, and answer only from here (see the module docstring).
        kind = content.get("type")
        thread = threading.current_thread().name
        if kind == "hello":
            self.send({"type": "hello", "thread": thread})
        elif kind == "snapshot":
            monitor = _monitors_by_model.get(content.get("monitor", ""))
            if monitor is not None:
                self.send({"type": "snapshot", "monitor": monitor.model_id, **monitor.snapshot()})
        elif kind == "action":
            action, job_id = content.get("action", ""), content.get("job_id", "")
            reply = {"type": "ack", "request_id": content.get("request_id"), "thread": thread}
            try:
                reply.update(ok=True, **perform_action(self.manager, action, job_id))
            except QnbError as exc:
                reply.update(ok=False, message=str(exc))
            except Exception as exc:  # the page waits for an answer: always give one
                reply.update(ok=False, message=f"{type(exc).__name__}: {exc}")
            self.handled.append((action, job_id, thread, time.monotonic()))
            self.send(reply)


_channels: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_channels_lock = threading.Lock()


def channel_for(manager: JobManager) -> ActionChannel:
    with _channels_lock:
        channel = _channels.get(manager)
        if channel is None or channel.comm is None:  # closed channels are replaced
            channel = _channels[manager] = ActionChannel(manager)
        return channel


def _with_fallbacks(bundle, text: str, html_text: str):
    """Add text/plain and text/html to a widget's mime bundle (anywidget returns
    ``(data, metadata)``) for terminals, nbviewer and notebooks opened without a kernel."""
    data, metadata = bundle if isinstance(bundle, tuple) else (bundle, {})
    data = {**data, "text/plain": text, "text/html": html_text}
    return data, metadata


WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"

#: Hides the widget output right after a saved view while it cannot show its widget (the
#: page has no model for it: "Error displaying widget: model not found", or still
#: "Loading widget..."): a live view has child elements, those states only text.
SAVED_VIEW_STYLE = (
    "<style>.jp-OutputArea-child:has(.qnb-saved-view) + .jp-OutputArea-child"
    ":has(> .jp-OutputArea-output[data-mime-type='" + WIDGET_VIEW + "']:not(:has(*)))"
    "{display:none}</style>"
)


def saved_view_html(html_text: str, job_id: str | None) -> str:
    """The saved view: the widget's HTML as of its display, for a notebook opened
    again without the widget's kernel, saying so and how to see the job live."""
    how = (
        f"<code>qnb.get_job(\"{html.escape(job_id)}\")</code>" if job_id else "<code>qnb.monitor()</code>"
    )
    when = time.strftime("%Y-%m-%d %H:%M:%S")
    return (
        f"{SAVED_VIEW_STYLE}<div class='qnb-saved-view'>{html_text}"
        f"<div style='font-size:smaller;opacity:0.75'>Saved view, as shown at {when}; the live view "
        f"needs the kernel that made it. To see it live, run {how} in a kernel or open the jobs "
        "panel.</div></div>"
    )


def display_with_saved_view(widget, html_text: str, job_id: str | None) -> None:
    """Display ``widget`` as two outputs: its saved view (HTML), then the live widget.

    JupyterLab renders a widget output with the widget renderer whenever the notebook is
    trusted, and that renderer says "Error displaying widget: model not found" once the
    kernel that made the model is gone (a reopened notebook): it never falls back to
    the bundle's text/html. So the HTML travels as an output of its own, just before the
    widget; the live view hides it (js/view_loader.js) and shows it again when the
    widgets are cleared, and its style hides the widget output while that cannot render.
    The widget's own output keeps only text/plain next to the view (an untrusted
    notebook renders that output as text, under the saved view).
    """
    from IPython.display import display

    display({"text/html": saved_view_html(html_text, job_id)}, raw=True)
    data, metadata = widget._repr_mimebundle_()
    data = {key: value for key, value in data.items() if key != "text/html"}
    display(data, metadata=metadata, raw=True)


# -- the job card ---------------------------------------------------------------------------


def _rows(source: JobSource, records) -> list[dict]:
    return source.snapshot(records, row_view(source, records))


def _card_counts(job) -> dict[str, dict[str, int]]:
    """label -> the most frequent outcomes (bitstring -> count), bitstrings in order."""
    try:
        result = results_so_far(job)
    except QnbError:  # failed or cancelled before any circuit completed
        return {}
    labels = [label for label in result.labels if label in set(result)][:CARD_MAX_LABELS]
    return {label: select_top(result.counts(label), CARD_TOP_OUTCOMES) for label in labels}


class JobCard(anywidget.AnyWidget):
    """One job, live: status, queue position, progress, elapsed time, actions, histogram."""

    _esm = _view_loader("card_module")
    job = traitlets.Dict().tag(sync=True)
    position = traitlets.Int(None, allow_none=True).tag(sync=True)
    counts = traitlets.Dict().tag(sync=True)
    channel_id = traitlets.Unicode().tag(sync=True)

    def __init__(self, job, *, stream: JobStream | None = None, **kwargs):
        manager = manager_of(job)
        super().__init__(channel_id=channel_for(manager).model_id, **kwargs)
        self._job = job
        self.manager = manager
        self._update_lock = threading.Lock()
        stream = stream or stream_for(manager)
        stream.subscribe(self)
        self._refresh()
        # A job can end before its submission is stored (fast jobs overlap the write):
        # its results are readable only once "done" is durable, which is when this fires.
        job.add_done_callback(lambda done: stream.nudge(done.id))

    def on_patch(self, rows: list[dict], positions: dict[str, int | None]) -> None:
        """Called from the stream's thread with the rows of the jobs that changed and
        the queue positions that moved."""
        mine = next((row for row in rows if row["id"] == self._job.id), None)
        if mine is not None:
            self._refresh(mine)
        elif self._job.id in positions:  # a job ahead of it left, or one came in ahead
            with self._update_lock:
                self.position = positions[self._job.id]

    def _refresh(self, row: dict | None = None) -> None:
        with self._update_lock:
            if row is None:
                row = _rows(self.manager, [self.manager.load(self._job.id)])[0]
            counts = self.counts
            if not counts and row["status"] in {s.value for s in TERMINAL}:
                counts = _card_counts(self._job)
            with self.hold_sync():
                self.job = row
                self.position = row["position"]
                self.counts = counts

    def _text(self) -> str:
        row = self.job
        where = f", position {self.position}" if self.position else ""
        return (
            f"Job {row['name']!r} {row['id'][:8]} on {row['target']}: {status_text(row)} "
            f"{progress_text(row)}{where}{outlook_text(row)}"
        )

    def _html(self) -> str:
        return job_html(self.job, position=self.position)

    def __repr__(self) -> str:
        return f"<JobCard {self._text()}>"

    def _ipython_display_(self) -> None:
        display_with_saved_view(self, self._html(), self._job.id)

    def _repr_mimebundle_(self, **kwargs):
        return _with_fallbacks(super()._repr_mimebundle_(**kwargs), self._text(), self._html())


_cards: dict[tuple[int, str], JobCard] = {}
_cards_lock = threading.Lock()


def card_for(job) -> JobCard:
    """The card of ``job``: one per job, so showing a job twice shows one live widget."""
    key = (id(manager_of(job)), job.id)
    with _cards_lock:
        card = _cards.get(key)
        if card is None or card.comm is None:  # closed cards are replaced
            card = _cards[key] = JobCard(job)
        return card


def in_kernel() -> bool:
    """True when widgets can reach a front end (an IPython kernel is running)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def job_mimebundle(job) -> dict:
    """A Job's display: its live card in a kernel, text and HTML everywhere."""
    if in_kernel():
        # The saved view goes first, as an output of its own (display_with_saved_view).
        from IPython.display import display

        card = card_for(job)
        display({"text/html": saved_view_html(card._html(), job.id)}, raw=True)
        data, metadata = card._repr_mimebundle_()
        return {key: value for key, value in data.items() if key != "text/html"}, metadata
    return {"text/plain": repr(job), "text/html": job._repr_html_()}, {}


# -- the queue monitor ----------------------------------------------------------------------

_monitors_by_model: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


class QueueMonitor(anywidget.AnyWidget):
    """Every job this kernel knows, live, in one sortable, filterable table.

    A view asks for a snapshot (through the action channel, so it arrives even while a
    cell is busy) and then applies patches, numbered by ``seq``, that hold only the jobs
    that changed. Patches that arrive before the snapshot are buffered by the page.
    """

    _esm = _view_loader("monitor_module")
    target_filter = traitlets.Unicode("").tag(sync=True)
    user_filter = traitlets.Unicode("").tag(sync=True)
    status_filter = traitlets.Unicode("").tag(sync=True)
    tag_filter = traitlets.Unicode("").tag(sync=True)
    channel_id = traitlets.Unicode().tag(sync=True)
    monitor_id = traitlets.Unicode().tag(sync=True)  # how the page names it to the channel
    job_count = traitlets.Int(0).tag(sync=True)

    def __init__(self, *, manager=None, stream: JobStream | None = None, channel=None, **kwargs):
        manager = manager or get_manager()
        channel = channel or channel_for(manager)
        super().__init__(channel_id=channel.model_id, **kwargs)
        self.manager: JobSource = manager
        self._stream = stream or stream_for(manager)
        self._seq = 0
        self._send_lock = threading.Lock()  # one patch at a time, in seq order
        self._known: set[str] = set()
        self.patches_sent = 0
        self.monitor_id = self.model_id
        _monitors_by_model[self.model_id] = self
        self._stream.subscribe(self)

    def snapshot(self) -> dict:
        """Every job to show, and the number of the last patch it includes."""
        records = self.manager.find(limit=SNAPSHOT_STORED_JOBS)
        with self._send_lock:
            # Rows read after the seq is fixed: a patch being sent meanwhile may be older
            # than this snapshot for a few jobs, but those jobs are then in the next
            # patch (within one interval), so the page converges. Queue positions are
            # the ones the stream sent last: its next patches send what changed since.
            seq = self._seq
            sent = self._stream.sent_positions()
        rows = {}
        for row in _rows(self.manager, records):  # from the store: maybe another process's
            rows[row["id"]] = {**row, "queue_seq": None}
        for row in _rows(self.manager, self.manager.live_records()):  # this process's jobs
            if row["queue_seq"] is not None and row["id"] in sent:
                row["position"] = sent[row["id"]]
            rows[row["id"]] = row
        self._known.update(rows)
        self.job_count = len(self._known)
        return {"seq": seq, "jobs": list(rows.values())}

    def on_patch(self, rows: list[dict], positions: dict[str, int | None]) -> None:
        with self._send_lock:
            self._seq += 1
            self.patches_sent += 1
            self.send({"type": "patch", "seq": self._seq, "jobs": rows, "positions": positions})
        new = [row["id"] for row in rows if row["id"] not in self._known]
        if new:
            self._known.update(new)
            self.job_count = len(self._known)

    def filter(
        self, *, target: str | None = None, user: str | None = None, status: str | None = None,
        tag: str | None = None,
    ):  # fmt: skip
        with self.hold_sync():
            self.target_filter = target or ""
            self.user_filter = user or ""
            self.status_filter = status or ""
            self.tag_filter = tag or ""
        return self

    def _rows_for_text(self) -> list[dict]:
        records = self.manager.find(
            status=[self.status_filter] if self.status_filter else None,
            target=self.target_filter or None,
            user=self.user_filter or None,
            limit=FALLBACK_ROWS,
            **({"tags": [self.tag_filter]} if self.tag_filter else {}),
        )
        return _rows(self.manager, records)

    def _text(self) -> str:
        rows = self._rows_for_text()
        lines = [f"Queue monitor: the {len(rows)} newest jobs"]
        for r in rows[:FALLBACK_ROWS]:
            lines.append(
                f"  {r['id'][:8]}  {r['target']:<9} {status_text(r):<10} "
                f"{progress_text(r)}  {r['user']:<10} {r['name']}{outlook_text(r)}"
            )
        return "\n".join(lines)

    def _html(self) -> str:
        rows = self._rows_for_text()
        cells = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(v))}</td>" for v in (
                r["id"][:8], r["name"], r["target"], r["user"], status_text(r),
                progress_text(r) + outlook_text(r),
            )) + "</tr>"
            for r in rows[:FALLBACK_ROWS]
        )
        return (
            f"<div class='qnb-monitor-saved'><b>Queue monitor</b>: the {len(rows)} newest jobs"
            "<table><tr><th>id</th><th>name</th><th>target</th><th>user</th><th>status</th>"
            f"<th>progress</th></tr>{cells}</table></div>"
        )

    def __repr__(self) -> str:
        return f"<QueueMonitor {self.job_count} jobs>"

    def _ipython_display_(self) -> None:
        display_with_saved_view(self, self._html(), None)

    def _repr_mimebundle_(self, **kwargs):
        return _with_fallbacks(super()._repr_mimebundle_(**kwargs), self._text(), self._html())


_monitors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_monitors_lock = threading.Lock()


def monitor(
    *, target: str | None = None, user: str | None = None, status: str | None = None,
    tag: str | None = None,
) -> QueueMonitor:  # fmt: skip
    """The kernel's queue monitor (one instance, updated in place), filtered as asked
    (``tag``: only the jobs with this tag)."""
    manager = get_manager()
    if tag is not None:
        (tag,) = check_tags([tag])  # the refusal of a bad tag at submit
    if target is not None:
        manager.targets.get(target)  # unknown targets fail here
    if status is not None:
        status = qnb_api.status_values(status)[0]
    with _monitors_lock:
        found = _monitors.get(manager)
        if found is None or found.comm is None:
            found = _monitors[manager] = QueueMonitor(manager=manager)
    return found.filter(target=target, user=user, status=status, tag=tag)
