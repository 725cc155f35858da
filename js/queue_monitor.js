// The queue monitor: every job of the kernel in one table, live. The view asks for a
// snapshot once, then applies numbered patches that hold only the jobs that changed.
// Only the visible rows exist in the DOM, so 10,000 jobs scroll smoothly.

const STATUS_COLOURS = {
  pending: "#757575",
  queued: "#8d6e00",
  running: "#1565c0",
  cancelling: "#ad1457",
  completed: "#2e7d32",
  failed: "#b00020",
  cancelled: "#616161",
};
const TERMINAL = new Set(["completed", "failed", "cancelled"]);
export const STATUSES = Object.keys(STATUS_COLOURS);
export const ROW_HEIGHT = 24;
const VIEWPORT_HEIGHT = 320;

// Queue positions (1-based, per target) as the kernel sent them: in each job's row, and
// in a patch's `positions` for jobs whose place moved (one ahead left, one of higher
// priority came in). The kernel's queue order is the one order; the page never derives
// one (a copy here once ordered by queue_seq alone and put prioritised jobs wrongly).
export function positionsOf(jobs) {
  const positions = new Map();
  for (const job of jobs) if (Number.isInteger(job.position)) positions.set(job.id, job.position);
  return positions;
}

const SORT_KEYS = {
  position: (job, pos) => pos.get(job.id) ?? Infinity,
  name: (job) => job.name,
  id: (job) => job.id,
  user: (job) => job.user,
  target: (job) => job.target,
  added: (job) => job.time_added,
  status: (job) => STATUSES.indexOf(job.status),
  progress: (job) => (job.total ? (job.completed ?? job.done) / job.total : 0),
  elapsed: (job, _pos, now) => (job.time_started ? (job.time_finished ?? now) - job.time_started : -1),
  eta: (job) => (etaText(job, 0) ? job.estimate.finish : Infinity), // (the clock does not change the order)
};

// The table's data: jobs by id, the snapshot/patch protocol, filters and sorting.
export class JobTable {
  constructor() {
    this.jobs = new Map();
    this.snapshotSeq = null; // null until the snapshot arrived
    this.buffered = [];
    this.filters = { status: "", target: "", user: "", tag: "" };
    this.sort = { key: "added", descending: true };
    this._rows = null;
    this._positions = null;
    this._seen = { target: new Set(), user: new Set(), tag: new Set() }; // for the filter menus
  }

  applySnapshot({ seq, jobs }) {
    this.jobs = new Map();
    this._apply(jobs);
    this.snapshotSeq = seq;
    const later = this.buffered.filter((patch) => patch.seq > seq);
    this.buffered = [];
    for (const patch of later) this._apply(patch.jobs, patch.positions);
    this._invalidate();
  }

  // Returns false when the patch was buffered (no snapshot yet) or is already included.
  applyPatch({ seq, jobs, positions = {} }) {
    if (this.snapshotSeq === null) {
      this.buffered.push({ seq, jobs, positions });
      return false;
    }
    if (seq <= this.snapshotSeq) return false;
    this._apply(jobs, positions);
    this._invalidate();
    return true;
  }

  _apply(jobs, positions = {}) {
    for (const job of jobs) {
      this.jobs.set(job.id, job);
      this._seen.target.add(job.target);
      this._seen.user.add(job.user);
      for (const tag of job.tags || []) this._seen.tag.add(tag); // (a job without tags has no field)
    }
    for (const [id, position] of Object.entries(positions)) {
      const job = this.jobs.get(id);
      if (job) this.jobs.set(id, { ...job, position });
    }
  }

  _invalidate() {
    this._rows = null;
    this._positions = null;
  }

  setFilters(filters) {
    this.filters = { ...this.filters, ...filters };
    this._rows = null;
  }

  setSort(key) {
    this.sort =
      this.sort.key === key ? { key, descending: !this.sort.descending } : { key, descending: key === "added" };
    this._rows = null;
  }

  get positions() {
    this._positions ??= positionsOf(this.jobs.values());
    return this._positions;
  }

  // How many entries the filter menus have (a new one redraws the toolbar).
  menuSize() {
    return this._seen.target.size + this._seen.user.size + this._seen.tag.size;
  }

  // Every target, user or tag seen so far (menus keep an entry once seen; cheap per patch).
  values(field) {
    return [...this._seen[field]].sort();
  }

  // The filtered, sorted jobs (cached until the data, filters or sort change).
  rows(nowSeconds = Date.now() / 1000) {
    if (this._rows) return this._rows;
    const { status, target, user, tag } = this.filters;
    const positions = this.positions;
    const keyOf = SORT_KEYS[this.sort.key] || SORT_KEYS.added;
    const shown = [];
    const keys = [];
    for (const job of this.jobs.values()) {
      if (status && job.status !== status) continue;
      if (target && job.target !== target) continue;
      if (user && job.user !== user) continue;
      if (tag && !(job.tags || []).includes(tag)) continue;
      shown.push(job);
      keys.push(keyOf(job, positions, nowSeconds));
    }
    // Sort indices by the key array: nothing to allocate per job, and a numeric key (the
    // common case) compares without type checks.
    const sign = this.sort.descending ? -1 : 1;
    const numeric = keys.every((key) => typeof key === "number");
    const order = Array.from(shown, (_, i) => i);
    order.sort(
      numeric
        ? (i, j) => sign * (keys[i] - keys[j]) || 0
        : (i, j) => (keys[i] < keys[j] ? -sign : keys[i] > keys[j] ? sign : 0),
    );
    this._rows = order.map((i) => shown[i]);
    return this._rows;
  }
}

// How many items ended in each outcome (as job_card.js: the two modules are loaded on
// their own, so each has its copy; js/tests checks that they agree). Rows without
// per-outcome counts count every ended item as completed, as they always did.
export function progressParts(job) {
  const done = job?.done || 0;
  const total = job?.total || 0;
  const failed = job?.failed || 0;
  const cancelled = job?.cancelled || 0;
  const completed = job?.completed ?? Math.max(0, done - failed - cancelled);
  return { completed, failed, cancelled, done, total, waiting: Math.max(0, total - done) };
}

// Progress by outcome: "3/50" ("3 of 50 points" for a sweep) while nothing failed or was
// cancelled, else "12 done · 138 cancelled" (" of 150" while items still wait).
export function progressText(job) {
  const { completed, failed, cancelled, done, total } = progressParts(job);
  const points = job?.unit === "points";
  if (!failed && !cancelled) return points ? `${completed} of ${total} points` : `${completed}/${total}`;
  const parts = [`${completed} done`];
  if (failed) parts.push(`${failed} failed`);
  if (cancelled) parts.push(`${cancelled} cancelled`);
  return parts.join(" · ") + (done >= total ? "" : ` of ${total}${points ? " points" : ""}`);
}

// The bar's segments, in percent of the job's items.
export function progressSegments(job) {
  const parts = progressParts(job);
  const share = (n) => (parts.total ? (100 * n) / parts.total : 0);
  return ["completed", "failed", "cancelled"].map((outcome) => ({ outcome, percent: share(parts[outcome]) }));
}

// -- what is left: the ETA, the cost, retries (the same in job_card.js, queue_monitor.js
// and the jobs panel's model.js: each is loaded on its own; js/tests checks they agree) --

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const pad2 = (n) => String(n).padStart(2, "0");

// "40 s", "3 min", "1 h 05 min", "2 d": how long until (or since) the finish.
export function leftText(seconds) {
  const s = Math.abs(seconds);
  if (s < 60) return `${Math.max(1, Math.ceil(s))} s`;
  if (s < 3600) return `${Math.round(s / 60)} min`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${pad2(Math.floor((s % 3600) / 60))} min`;
  return `${Math.round(s / 86400)} d`;
}

// "14:32" in the page's time zone, with the day when it is not today ("Dec 6 14:32").
// By hand: Intl costs tens of ms the first time (ICU data).
export function clockText(seconds, nowSeconds) {
  const t = new Date(seconds * 1000);
  const now = new Date(nowSeconds * 1000);
  const time = `${pad2(t.getHours())}:${pad2(t.getMinutes())}`;
  const sameDay = t.getFullYear() === now.getFullYear() && t.getMonth() === now.getMonth() && t.getDate() === now.getDate();
  return sameDay ? time : `${MONTHS[t.getMonth()]} ${t.getDate()} ${time}`;
}

// When the job should be done, counted down in the page from the kernel's estimate
// (`estimate.finish`, Unix seconds) and the page's clock: "done ~14:32 (in 3 min)"
// (`short`: "in 3 min"); "" when not known or the job has ended. Past its time it says
// so ("due now", "5 min late") rather than count up silently.
export function etaText(job, nowSeconds, { short = false } = {}) {
  const finish = job?.estimate?.finish;
  if (typeof finish !== "number" || !Number.isFinite(finish) || OUTLOOK_ENDED.has(job.status)) return "";
  const left = finish - nowSeconds;
  const when = left > 0 ? `in ${leftText(left)}` : left > -60 ? "due now" : `${leftText(left)} late`;
  return short ? when : `done ~${clockText(finish, nowSeconds)} (${when})`;
}

// The estimate's details, for a tooltip: its finish, wait and run, and how it was made.
export function etaTitle(job, nowSeconds) {
  const estimate = job?.estimate;
  if (!estimate || OUTLOOK_ENDED.has(job.status)) return "";
  const lines = [];
  if (typeof estimate.finish === "number") lines.push(`estimated finish: ${clockText(estimate.finish, nowSeconds)}`);
  const figures = [];
  if (typeof estimate.wait_seconds === "number")
    figures.push(estimate.wait_seconds < 1 ? "no wait" : `wait ~${leftText(estimate.wait_seconds)}`);
  if (typeof estimate.run_seconds === "number") figures.push(`run ~${leftText(estimate.run_seconds)}`);
  if (figures.length) lines.push(`${figures.join(", ")} (as last estimated)`);
  if (estimate.basis) lines.push(`basis: ${estimate.basis}`);
  return lines.join("\n");
}

// The job's cost as estimated at submit ("$4.20", "EUR 1,200.00", "< $0.01"); "" when
// unknown or nothing (a local target's 0.0 is not shown).
export function costText(job) {
  const own = typeof job?.cost === "number";
  const amount = own ? job.cost : job?.estimate?.cost;
  const currency = own ? job.currency : job?.estimate?.currency;
  if (typeof amount !== "number" || !Number.isFinite(amount) || amount <= 0) return "";
  const symbol = currency === "USD" || !currency ? "$" : `${currency} `;
  if (amount < 0.005) return `< ${symbol}0.01`;
  const [whole, cents] = amount.toFixed(2).split(".");
  return `${symbol}${whole.replace(/\B(?=(\d{3})+(?!\d))/g, ",")}.${cents}`;
}

// "retrying (1/3)" while items run again after a transient failure (", 4 circuits" when
// several do); "" otherwise.
export function retryingText(job) {
  const again = job?.retrying;
  if (!again || OUTLOOK_ENDED.has(job.status)) return "";
  const several = again.count > 1 ? `, ${again.count} ${job.unit === "points" ? "points" : "circuits"}` : "";
  return `retrying (${again.attempt}/${again.retries}${several})`;
}

const OUTLOOK_ENDED = new Set(["completed", "failed", "cancelled"]);

// What the monitor says once its kernel has gone.
export const GONE_TEXT =
  "The kernel behind this monitor has gone: these are the last states it sent. To see the jobs live again, run qnb.monitor() or qnb.get_job(\"<id>\") in a new kernel, or open the jobs panel.";

// Which rows the viewport shows (with a few spare rows above and below).

export function visibleRange(scrollTop, viewportHeight, total, rowHeight = ROW_HEIGHT, spare = 5) {
  const first = Math.max(0, Math.floor(scrollTop / rowHeight) - spare);
  const last = Math.min(total, Math.ceil((scrollTop + viewportHeight) / rowHeight) + spare);
  return [first, last];
}

function formatElapsed(seconds) {
  if (seconds === null || !Number.isFinite(seconds)) return "";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.floor(seconds);
  return s < 3600
    ? `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`
    : `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// hh:mm:ss by hand: Intl/toLocaleTimeString cost tens of ms the first time (ICU data).
const two = (n) => String(n).padStart(2, "0");
function formatTime(seconds) {
  const t = new Date(seconds * 1000);
  return `${two(t.getHours())}:${two(t.getMinutes())}:${two(t.getSeconds())}`;
}

// Columns: sort key, title, and the narrowest it may get (px; qnb.css's grid holds the
// same numbers, and the layout test in tests/test_widgets_layout.py checks them).
export const COLUMNS = [
  ["position", "#", 36],
  ["name", "name", 140],
  ["id", "id", 64],
  ["user", "user", 60],
  ["target", "target", 70],
  ["added", "added", 72],
  ["status", "status", 100],
  ["progress", "progress", 140],
  ["elapsed", "elapsed", 80],
  ["eta", "ETA · cost", 100],
  [null, "actions", 96],
];

const ACTION_LABELS = { cancel: "Cancel", remove: "Remove", move_to_front: "To front", resubmit: "Resubmit" };
// Rows show each action as an icon; its title (and aria-label) says it in full.
const ACTION_ICONS = { cancel: "✕", remove: "🗑", move_to_front: "⤒", resubmit: "↻" };
const ACTION_TITLES = {
  cancel: "Cancel this job",
  remove: "Remove this job from the queue (it ends cancelled)",
  move_to_front: "Move this job to the front of its queue",
  resubmit: "Submit this job's circuits again as a new job",
};
const ACTION_STYLES = { cancel: "jp-mod-warn", remove: "jp-mod-warn", move_to_front: "", resubmit: "jp-mod-accept" };
const BUTTON = "jp-Button jp-mod-styled jp-mod-small qnb-button";

// True while the job's queue server is away (the kernel reconnects by itself).
export function isReconnecting(job) {
  return job.connection === "reconnecting";
}

function actionsFor(job) {
  if (TERMINAL.has(job.status)) return ["resubmit"];
  // Waiting in a queue: this kernel's (it has a queue_seq) or a server's (the position
  // the server gave; remove and to-front then go to the server).
  const inLocalQueue = job.queue_seq !== null && job.queue_seq !== undefined;
  const inServerQueue =
    (job.status === "queued" || job.status === "pending") && job.position !== null && job.position !== undefined;
  return inLocalQueue || inServerQueue ? ["cancel", "remove", "move_to_front"] : ["cancel"];
}

// The view, independent of anywidget: `send(action, jobId)` returns a Promise of the
// reply (see action_client.js).
// Used by render() below and directly by the rendering benchmark.
export function createMonitorView(el, { send = () => new Promise(() => {}), filters = {} } = {}) {
  // Every DOM listener of the view goes with destroy().
  const listening = new AbortController();
  const { signal } = listening;
  const table = new JobTable();
  table.setFilters(filters);
  // job id -> { text: "cancel requested…", status: the status shown when asked }. A cancel
  // or remove note stays until the job's status changes: a patch that only moves the
  // job's queue position (another job ended) must not wipe it.
  const requested = new Map();
  let scrollTop = 0; // kept from scroll events: reading it while drawing forces a layout
  const root = element("div", "qnb-monitor");
  root.dataset.kernel = "live";
  const toolbar = element("div", "qnb-toolbar");
  const statusSelect = element("select", "qnb-filter-status jp-mod-styled");
  const targetSelect = element("select", "qnb-filter-target jp-mod-styled");
  const userSelect = element("select", "qnb-filter-user jp-mod-styled");
  const tagSelect = element("select", "qnb-filter-tag jp-mod-styled");
  const count = element("span", "qnb-count");
  const labelled = (text, select) => {
    const label = element("label", "qnb-filter", text);
    label.append(select);
    return label;
  };
  toolbar.append(
    labelled("status ", statusSelect),
    labelled("target ", targetSelect),
    labelled("user ", userSelect),
    labelled("tag ", tagSelect),
    count,
  );
  const gone = element("div", "qnb-gone");
  gone.style.display = "none";
  let kernelGone = false;
  let frozenAt = null;
  // Header and rows scroll sideways together when the columns' minimums do not fit.
  const scroller = element("div", "qnb-scroll");
  const tableEl = element("div", "qnb-table");
  const header = element("div", "qnb-header");
  header.role = "row";
  const sortButtons = new Map();
  for (const [key, title] of COLUMNS) {
    const cell = element("span", `qnb-col-${key ?? "actions"}`);
    cell.role = "columnheader";
    if (key) {
      // A button: focusable and operated with Enter or Space, like every other control.
      const button = element("button", "qnb-sort", title);
      button.dataset.sort = key;
      button.title = `sort by ${title === "#" ? "queue position" : title}`;
      const arrow = element("span", "qnb-sort-arrow");
      button.append(arrow);
      button.arrow = arrow;
      cell.append(button);
      sortButtons.set(key, { cell, button });
      button.addEventListener(
        "click",
        () => {
          table.setSort(key);
          draw();
        },
        { signal },
      );
    } else {
      cell.textContent = title;
    }
    header.append(cell);
  }
  const viewport = element("div", "qnb-viewport");
  const spacer = element("div", "qnb-spacer");
  viewport.append(spacer);
  tableEl.append(header, viewport);
  scroller.append(tableEl);
  root.append(toolbar, gone, scroller);
  el.append(root);

  // The sort indicator: an arrow on the sorted column, and aria-sort for screen readers.
  function drawSort() {
    for (const [key, { cell, button }] of sortButtons) {
      const sorted = table.sort.key === key;
      const direction = table.sort.descending ? "descending" : "ascending";
      cell.ariaSort = sorted ? direction : "none";
      button.dataset.sorted = sorted ? direction : "";
      button.arrow.textContent = sorted ? (table.sort.descending ? " ▼" : " ▲") : "";
    }
  }

  function fillSelect(select, values, current) {
    const wanted = ["", ...values];
    if (select.options.length !== wanted.length || [...select.options].some((o, i) => o.value !== wanted[i])) {
      select.replaceChildren(...wanted.map((v) => new Option(v || "all", v)));
    }
    select.value = current;
  }

  function drawToolbar() {
    drawSort();
    fillSelect(statusSelect, STATUSES, table.filters.status);
    fillSelect(targetSelect, table.values("target"), table.filters.target);
    fillSelect(userSelect, table.values("user"), table.filters.user);
    fillSelect(tagSelect, table.values("tag"), table.filters.tag);
  }

  // Row elements are reused: a patch or a scroll only rewrites the texts that changed.
  const pool = [];
  const CELLS = ["position", "name", "id", "user", "target", "added", "status", "progress", "elapsed", "eta", "actions"];

  function newRow() {
    const row = element("div", "qnb-row");
    const cells = {};
    for (const name of CELLS) {
      cells[name] = element("span", `qnb-${name}`);
      row.append(cells[name]);
    }
    cells.bar = element("span", "qnb-bar");
    cells.progressText = element("span", "qnb-progress-text");
    cells.progress.append(cells.bar, cells.progressText);
    cells.chip = element("span", "qnb-chip");
    cells.connection = element("span", "qnb-reconnecting", "reconnecting");
    cells.connection.style.display = "none";
    cells.status.append(cells.chip, cells.connection);
    row.cells = cells;
    row.shown = {};
    viewport.append(row);
    return row;
  }

  function setText(row, name, text) {
    if (row.shown[name] !== text) {
      row.cells[name].textContent = text;
      row.shown[name] = text;
    }
  }

  function drawBar(bar, job) {
    const segments = progressSegments(job);
    if (bar.children.length !== segments.length) {
      bar.replaceChildren(...segments.map(({ outcome }) => element("span", `qnb-seg qnb-seg-${outcome}`)));
    }
    segments.forEach(({ percent }, i) => {
      bar.children[i].style.width = `${percent}%`;
    });
  }

  function fillRow(row, job, position, now) {
    row.dataset.jobId = job.id;
    row.dataset.status = job.status;
    const elapsed = job.time_started ? (job.time_finished ?? now) - job.time_started : null;
    setText(row, "position", position ? String(position) : "");
    setText(row, "name", job.name);
    if (row.cells.name.title !== job.name) row.cells.name.title = job.name;
    setText(row, "id", job.id.slice(0, 8));
    setText(row, "user", job.user);
    setText(row, "target", job.target);
    setText(row, "added", formatTime(job.time_added));
    setText(row, "chip", requested.get(job.id)?.text ?? job.status);
    const again = retryingText(job);
    const progress = again ? `${progressText(job)} · ${again}` : progressText(job);
    setText(row, "progressText", progress);
    if (row.cells.progress.title !== progress) row.cells.progress.title = progress;
    if (row.shown.bar !== progress) {
      drawBar(row.cells.bar, job);
      row.shown.bar = progress;
    }
    setText(row, "elapsed", formatElapsed(elapsed));
    // The ETA counts down with the page's clock (kernelGone: frozen with the elapsed time).
    const due = kernelGone ? "" : etaText(job, now, { short: true });
    const cost = costText(job);
    setText(row, "eta", due && cost ? `${due} · ${cost}` : due || cost);
    const about = [kernelGone ? "" : etaTitle(job, now), cost ? `${cost}, estimated at submit` : ""]
      .filter(Boolean)
      .join("\n");
    if (row.cells.eta.title !== about) row.cells.eta.title = about;
    const reconnecting = isReconnecting(job);
    if (row.shown.reconnecting !== reconnecting) {
      row.cells.connection.style.display = reconnecting ? "" : "none";
      row.dataset.connection = reconnecting ? "reconnecting" : "connected";
      row.shown.reconnecting = reconnecting;
    }
    if (row.shown.colour !== job.status) {
      row.cells.chip.style.background = STATUS_COLOURS[job.status] || "#757575";
      row.shown.colour = job.status;
    }
    const actions = actionsFor(job);
    const shownActions = `${actions.join()}:${kernelGone}`;
    if (row.shown.actions !== shownActions) {
      row.cells.actions.replaceChildren(
        ...actions.map((action) => {
          const button = element("button", `qnb-${action} ${BUTTON} ${ACTION_STYLES[action]}`, ACTION_ICONS[action]);
          button.dataset.action = action;
          button.ariaLabel = ACTION_LABELS[action];
          button.title = kernelGone ? "the kernel behind this view has gone" : ACTION_TITLES[action];
          button.disabled = kernelGone;
          return button;
        }),
      );
      row.shown.actions = shownActions;
    }
  }

  function drawRows() {
    const rows = table.rows();
    const positions = table.positions;
    const now = frozenAt ?? Date.now() / 1000; // elapsed times stop with the kernel
    spacer.style.height = `${rows.length * ROW_HEIGHT}px`;
    // The viewport's height is set here, not read back: reading it would force a layout.
    const height = Math.min(VIEWPORT_HEIGHT, Math.max(3, rows.length) * ROW_HEIGHT + 2);
    viewport.style.height = `${height}px`;
    const [first, last] = visibleRange(scrollTop, height, rows.length);
    while (pool.length < last - first) pool.push(newRow());
    pool.forEach((row, k) => {
      const i = first + k;
      if (i >= last) {
        row.style.display = "none";
        return;
      }
      row.style.display = "";
      row.style.top = `${i * ROW_HEIGHT}px`;
      fillRow(row, rows[i], positions.get(rows[i].id), now);
    });
    // Without a snapshot (no kernel yet, or a saved notebook opened without one) say so
    // rather than show an empty queue.
    count.textContent =
      table.snapshotSeq === null
        ? kernelGone
          ? "no jobs: the kernel went before it sent them"
          : "waiting for the kernel…"
        : `${rows.length} of ${table.jobs.size} jobs`;
  }

  // One listener for every row's buttons (rows are reused, so no per-button closures).
  viewport.addEventListener(
    "click",
    (event) => {
      const button = event.target.closest("button[data-action]");
      const job = button && table.jobs.get(button.closest(".qnb-row").dataset.jobId);
      if (job && !kernelGone) act(button.dataset.action, job);
    },
    { signal },
  );

  function draw() {
    drawToolbar();
    drawRows();
  }

  async function act(action, job) {
    // Shown at once: the kernel may be busy with a cell and handle it later.
    const note = { text: `${ACTION_LABELS[action].toLowerCase()} requested…`, status: job.status };
    requested.set(job.id, note);
    drawRows();
    const reply = await send(action, job.id);
    const ends = action === "cancel" || action === "remove";
    const current = table.jobs.get(job.id);
    // A refusal shows until the next patch for the job, as before.
    if (!reply.ok) requested.set(job.id, { text: reply.message, status: undefined });
    else if (!ends || !current || current.status !== note.status) requested.delete(job.id);
    root.dataset.lastAck = JSON.stringify({ action, outcome: reply.outcome, ok: reply.ok, thread: reply.thread });
    drawRows();
  }

  let frame = null;
  viewport.addEventListener(
    "scroll",
    () => {
      scrollTop = viewport.scrollTop;
      frame ??= requestAnimationFrame(() => {
        frame = null;
        drawRows();
      });
    },
    { signal },
  );
  for (const [select, field] of [
    [statusSelect, "status"],
    [targetSelect, "target"],
    [userSelect, "user"],
    [tagSelect, "tag"],
  ]) {
    select.addEventListener(
      "change",
      () => {
        table.setFilters({ [field]: select.value });
        drawRows();
      },
      { signal },
    );
  }
  draw();

  return {
    root,
    table,
    applySnapshot(snapshot) {
      table.applySnapshot(snapshot);
      root.dataset.snapshot = "received";
      draw();
    },
    applyPatch(patch) {
      const menus = table.menuSize();
      const applied = table.applyPatch(patch);
      if (applied) {
        for (const job of patch.jobs) {
          if (requested.get(job.id)?.status !== job.status) requested.delete(job.id);
        }
        if (table.menuSize() !== menus) drawToolbar();
        drawRows();
      }
      return applied;
    },
    setFilters(filters) {
      table.setFilters(filters);
      draw();
    },
    tick: drawRows,
    // The kernel behind the view has gone: no more ticking (the caller stops its timer),
    // actions disabled, and a note on how to see the jobs again.
    kernelGone() {
      if (kernelGone) return;
      kernelGone = true;
      frozenAt = Date.now() / 1000;
      root.dataset.kernel = "gone";
      gone.textContent = GONE_TEXT;
      gone.style.display = "";
      drawRows();
    },
    // Removes the view's DOM listeners and its pending frame.
    destroy() {
      listening.abort();
      if (frame !== null) cancelAnimationFrame(frame);
      frame = null;
    },
  };
}

function currentFilters(model) {
  return {
    status: model.get("status_filter"),
    target: model.get("target_filter"),
    user: model.get("user_filter"),
    tag: model.get("tag_filter") ?? "", // (kernels before the tag filter have no trait)
  };
}

// How often a view without its snapshot asks again (and the elapsed times tick).
export const SNAPSHOT_RETRY_MS = 1000;

// `client`: the action channel's client (action_client.js, handed over by view_loader.js).
function render({ model, el, client, kernel }) {
  const view = createMonitorView(el, {
    send: (action, jobId) => client.request(action, jobId),
    filters: currentFilters(model),
  });
  const monitorId = model.get("monitor_id");
  const stopListening = client.onMessage((msg) => {
    if (msg.type === "snapshot" && msg.monitor === monitorId && view.table.snapshotSeq === null) {
      view.applySnapshot(msg);
    }
  });
  const onPatch = (msg) => {
    if (msg.type === "patch") view.applyPatch(msg);
  };
  model.on("msg:custom", onPatch);
  const onFilters = () => view.setFilters(currentFilters(model));
  const FILTERS = ["status_filter", "target_filter", "user_filter", "tag_filter"];
  for (const name of FILTERS) model.on(`change:${name}`, onFilters);
  // The request, or its answer, can be lost (sent before the kernel's end of the channel
  // listened, say): a monitor left "waiting for the kernel…" for good was seen in one run
  // in ten. So it asks again each second until a snapshot has arrived.
  const askForSnapshot = () => client.send({ type: "snapshot", monitor: monitorId });
  askForSnapshot();
  const timer = setInterval(() => {
    view.tick(); // elapsed times tick in the page
    if (view.table.snapshotSeq === null) askForSnapshot();
  }, SNAPSHOT_RETRY_MS);
  const onGone = () => {
    clearInterval(timer);
    view.kernelGone();
  };
  const stopWatching = kernel?.onGone(onGone);
  if (kernel?.gone) onGone();
  return () => {
    clearInterval(timer);
    stopWatching?.();
    stopListening();
    model.off("msg:custom", onPatch);
    for (const name of FILTERS) model.off(`change:${name}`, onFilters);
    view.destroy();
  };
}

export default { render };
