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
  progress: (job) => (job.total ? job.done / job.total : 0),
  elapsed: (job, _pos, now) => (job.time_started ? (job.time_finished ?? now) - job.time_started : -1),
};

// The table's data: jobs by id, the snapshot/patch protocol, filters and sorting.
export class JobTable {
  constructor() {
    this.jobs = new Map();
    this.snapshotSeq = null; // null until the snapshot arrived
    this.buffered = [];
    this.filters = { status: "", target: "", user: "" };
    this.sort = { key: "added", descending: true };
    this._rows = null;
    this._positions = null;
    this._seen = { target: new Set(), user: new Set() }; // for the filter menus
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

  // Every target or user seen so far (menus keep an entry once seen; cheap per patch).
  values(field) {
    return [...this._seen[field]].sort();
  }

  // The filtered, sorted jobs (cached until the data, filters or sort change).
  rows(nowSeconds = Date.now() / 1000) {
    if (this._rows) return this._rows;
    const { status, target, user } = this.filters;
    const positions = this.positions;
    const keyOf = SORT_KEYS[this.sort.key] || SORT_KEYS.added;
    const shown = [];
    const keys = [];
    for (const job of this.jobs.values()) {
      if (status && job.status !== status) continue;
      if (target && job.target !== target) continue;
      if (user && job.user !== user) continue;
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

// Which rows the viewport shows (with a few spare rows above and below).
// A sweep counts its points ("3 of 50 points"); a batch its circuits ("3/50").
export function progressText(job) {
  return job.unit === "points" ? `${job.done} of ${job.total} points` : `${job.done}/${job.total}`;
}

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

const COLUMNS = [
  ["position", "#"],
  ["name", "name"],
  ["id", "id"],
  ["user", "user"],
  ["target", "target"],
  ["added", "added"],
  ["status", "status"],
  ["progress", "progress"],
  ["elapsed", "elapsed"],
  [null, "actions"],
];

const ACTION_LABELS = { cancel: "Cancel", remove: "Remove", move_to_front: "To front", resubmit: "Resubmit" };

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
  const requested = new Map(); // job id -> "cancel requested…" until the job changes
  let scrollTop = 0; // kept from scroll events: reading it while drawing forces a layout
  const root = element("div", "qnb-monitor");
  const toolbar = element("div", "qnb-toolbar");
  const statusSelect = element("select", "qnb-filter-status");
  const targetSelect = element("select", "qnb-filter-target");
  const userSelect = element("select", "qnb-filter-user");
  const count = element("span", "qnb-count");
  toolbar.append("status", statusSelect, "target", targetSelect, "user", userSelect, count);
  const header = element("div", "qnb-header");
  for (const [key, title] of COLUMNS) {
    const cell = element("span", null, title);
    if (key) {
      cell.dataset.sort = key;
      cell.addEventListener(
        "click",
        () => {
          table.setSort(key);
          draw();
        },
        { signal },
      );
    }
    header.append(cell);
  }
  const viewport = element("div", "qnb-viewport");
  const spacer = element("div", "qnb-spacer");
  viewport.append(spacer);
  root.append(toolbar, header, viewport);
  el.append(root);

  function fillSelect(select, values, current) {
    const wanted = ["", ...values];
    if (select.options.length !== wanted.length || [...select.options].some((o, i) => o.value !== wanted[i])) {
      select.replaceChildren(...wanted.map((v) => new Option(v || "all", v)));
    }
    select.value = current;
  }

  function drawToolbar() {
    fillSelect(statusSelect, STATUSES, table.filters.status);
    fillSelect(targetSelect, table.values("target"), table.filters.target);
    fillSelect(userSelect, table.values("user"), table.filters.user);
  }

  // Row elements are reused: a patch or a scroll only rewrites the texts that changed.
  const pool = [];
  const CELLS = ["position", "name", "id", "user", "target", "added", "status", "progress", "elapsed", "actions"];

  function newRow() {
    const row = element("div", "qnb-row");
    const cells = {};
    for (const name of CELLS) {
      cells[name] = element("span", `qnb-${name}`);
      row.append(cells[name]);
    }
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

  function fillRow(row, job, position, now) {
    row.dataset.jobId = job.id;
    row.dataset.status = job.status;
    const elapsed = job.time_started ? (job.time_finished ?? now) - job.time_started : null;
    setText(row, "position", position ? String(position) : "");
    setText(row, "name", job.name);
    setText(row, "id", job.id.slice(0, 8));
    setText(row, "user", job.user);
    setText(row, "target", job.target);
    setText(row, "added", formatTime(job.time_added));
    setText(row, "chip", requested.get(job.id) ?? job.status);
    setText(row, "progress", progressText(job));
    setText(row, "elapsed", formatElapsed(elapsed));
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
    if (row.shown.actions !== actions.join()) {
      row.cells.actions.replaceChildren(
        ...actions.map((action) => {
          const button = element("button", `qnb-${action}`, ACTION_LABELS[action]);
          button.dataset.action = action;
          return button;
        }),
      );
      row.shown.actions = actions.join();
    }
  }

  function drawRows() {
    const rows = table.rows();
    const positions = table.positions;
    const now = Date.now() / 1000;
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
      table.snapshotSeq === null ? "waiting for the kernel…" : `${rows.length} of ${table.jobs.size} jobs`;
  }

  // One listener for every row's buttons (rows are reused, so no per-button closures).
  viewport.addEventListener(
    "click",
    (event) => {
      const button = event.target.closest("button[data-action]");
      const job = button && table.jobs.get(button.closest(".qnb-row").dataset.jobId);
      if (job) act(button.dataset.action, job);
    },
    { signal },
  );

  function draw() {
    drawToolbar();
    drawRows();
  }

  async function act(action, job) {
    // Shown at once: the kernel may be busy with a cell and handle it later.
    requested.set(job.id, `${ACTION_LABELS[action].toLowerCase()} requested…`);
    drawRows();
    const reply = await send(action, job.id);
    requested.delete(job.id);
    if (!reply.ok) requested.set(job.id, reply.message);
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
      const menus = table.values("target").length + table.values("user").length;
      const applied = table.applyPatch(patch);
      if (applied) {
        for (const job of patch.jobs) requested.delete(job.id);
        if (table.values("target").length + table.values("user").length !== menus) drawToolbar();
        drawRows();
      }
      return applied;
    },
    setFilters(filters) {
      table.setFilters(filters);
      draw();
    },
    tick: drawRows,
    // Removes the view's DOM listeners and its pending frame.
    destroy() {
      listening.abort();
      if (frame !== null) cancelAnimationFrame(frame);
      frame = null;
    },
  };
}

function currentFilters(model) {
  return { status: model.get("status_filter"), target: model.get("target_filter"), user: model.get("user_filter") };
}

// `client`: the action channel's client (action_client.js, handed over by view_loader.js).
function render({ model, el, client }) {
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
  const FILTERS = ["status_filter", "target_filter", "user_filter"];
  for (const name of FILTERS) model.on(`change:${name}`, onFilters);
  client.send({ type: "snapshot", monitor: monitorId });
  const timer = setInterval(view.tick, 1000); // elapsed times tick in the page
  return () => {
    clearInterval(timer);
    stopListening();
    model.off("msg:custom", onPatch);
    for (const name of FILTERS) model.off(`change:${name}`, onFilters);
    view.destroy();
  };
}

export default { render };
