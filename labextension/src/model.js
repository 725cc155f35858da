// The panel's rows: every job of this user, kept by id; what is shown is filtered,
// searched and sorted from them. No DOM here.

export const TERMINAL = new Set(['completed', 'failed', 'cancelled']);
const STATUS_ORDER = ['running', 'cancelling', 'queued', 'pending', 'failed', 'cancelled', 'completed'];

export const COLUMNS = [
  // key, label, minimum width (px), sortable
  { key: 'status', label: 'Status', min: 104, sort: true },
  { key: 'progress', label: 'Progress', min: 200, sort: true },
  { key: 'name', label: 'Name', min: 160, sort: true, grow: true },
  { key: 'target', label: 'Target', min: 100, sort: true },
  { key: 'origin', label: 'From', min: 120, sort: true },
  { key: 'added', label: 'Added', min: 128, sort: true },
  { key: 'elapsed', label: 'Elapsed', min: 84, sort: true },
  { key: 'eta', label: 'ETA · cost', min: 120, sort: true },
  { key: 'actions', label: 'Actions', min: 392, sort: false }
];

export const FILTERS = {
  all: () => true,
  active: r => !TERMINAL.has(r.status),
  waiting: r => r.status === 'queued' || r.status === 'pending',
  running: r => r.status === 'running' || r.status === 'cancelling',
  completed: r => r.status === 'completed',
  failed: r => r.status === 'failed',
  cancelled: r => r.status === 'cancelled'
};

export function elapsed(row, now) {
  if (row.time_started == null) return null;
  const end = row.time_finished != null ? row.time_finished : now;
  return Math.max(0, end - row.time_started);
}

const KEYS = {
  status: r => STATUS_ORDER.indexOf(r.status),
  progress: r => (r.total ? ((r.completed || 0) + (r.failed || 0) + (r.cancelled || 0)) / r.total : 0),
  name: r => (r.name || '').toLowerCase(),
  target: r => (r.target || '').toLowerCase(),
  origin: r => (r.origin || '').toLowerCase(),
  added: r => r.time_added || 0,
  elapsed: (r, now) => elapsed(r, now) ?? -1,
  eta: r => (etaText(r, 0) ? r.estimate.finish : Infinity) // (the clock does not change the order)
};

// Sort keys that depend on the clock cannot be kept in an incremental order.
const TIME_DEPENDENT = new Set(['elapsed']);
// A patch larger than this share of the shown rows re-sorts everything instead.
const FULL_REFRESH_SHARE = 0.25;

export class JobsModel {
  constructor() {
    this.rows = new Map();
    this.version = 0;
    this.servers = [];
    this.error = null;
    this.filter = 'all';
    this.search = '';
    this.sortKey = 'added';
    this.sortDir = -1; // newest first
    // What is shown, filtered and sorted, and each shown row's sort key (same index).
    // A patch moves only the rows it changes (binary search on the sort key), so its
    // cost follows the patch, not the 10,000 rows.
    this.shown = [];
    this.keys = [];
    this.changedShown = false; // did the last apply change what is shown (for render)
  }

  // A full snapshot; returns nothing (the first one ends nothing).
  load(snapshot) {
    this.rows = new Map();
    for (const row of snapshot.jobs) this.rows.set(row.id, row);
    this.version = snapshot.version;
    this.servers = snapshot.servers || [];
    this.error = snapshot.error || null;
    this.refresh();
  }

  // A patch; returns the rows that ended with it (were unfinished before).
  apply(patch) {
    const ended = [];
    const changed = patch.changed || [];
    const removed = patch.removed || [];
    const incremental = !TIME_DEPENDENT.has(this.sortKey) &&
      changed.length + removed.length <= Math.max(64, this.shown.length * FULL_REFRESH_SHARE);
    const keep = FILTERS[this.filter] || FILTERS.all;
    const needle = this.search.trim().toLowerCase();
    const key = KEYS[this.sortKey] || KEYS.added;
    let moved = false;
    for (let i = 0; i < changed.length; i++) {
      const row = changed[i];
      const before = this.rows.get(row.id);
      if (before && !TERMINAL.has(before.status) && TERMINAL.has(row.status)) ended.push(row);
      this.rows.set(row.id, row);
      if (!incremental) continue;
      const at = before ? this._position(before, keep, needle, key) : -1;
      const show = matches(row, keep, needle);
      if (at >= 0 && show) this._move(at, row, key(row));
      else if (at >= 0) this._removeAt(at);
      else if (show) this._insert(row, key(row));
      if (at >= 0 || show) moved = true;
    }
    for (let i = 0; i < removed.length; i++) {
      const before = this.rows.get(removed[i]);
      if (!before) continue;
      this.rows.delete(removed[i]);
      if (!incremental) continue;
      const at = this._position(before, keep, needle, key);
      if (at >= 0) {
        this._removeAt(at);
        moved = true;
      }
    }
    this.version = patch.version;
    if (patch.servers) this.servers = patch.servers;
    this.error = patch.error || null;
    if (incremental) this.changedShown = moved;
    else this.refresh();
    return ended;
  }

  // Filters, searches and sorts every row (a snapshot, a new filter, search or sort).
  refresh(now = Date.now() / 1000) {
    const keep = FILTERS[this.filter] || FILTERS.all;
    const needle = this.search.trim().toLowerCase();
    const key = KEYS[this.sortKey] || KEYS.added;
    const rows = [];
    const keys = [];
    for (const row of this.rows.values()) {
      if (!matches(row, keep, needle)) continue;
      rows.push(row);
      keys.push(key(row, now));
    }
    const order = new Uint32Array(rows.length);
    for (let i = 0; i < order.length; i++) order[i] = i;
    const dir = this.sortDir;
    order.sort((a, b) => compare(dir, keys[a], rows[a], keys[b], rows[b]));
    const shown = [];
    const sortedKeys = [];
    for (let i = 0; i < order.length; i++) {
      shown.push(rows[order[i]]);
      sortedKeys.push(keys[order[i]]);
    }
    this.shown = shown;
    this.keys = sortedKeys;
    this.changedShown = true;
    return this.shown;
  }

  // Where a row (as it was stored) stands in what is shown; -1 if not shown.
  _position(row, keep, needle, key) {
    if (!matches(row, keep, needle)) return -1;
    const at = this._lowerBound(key(row), row);
    if (this.shown[at] === row) return at;
    return this.shown.indexOf(row); // not expected: the order is kept by the same keys
  }

  // The first index whose row sorts at or after (k, row).
  _lowerBound(k, row) {
    const shown = this.shown;
    const keys = this.keys;
    const dir = this.sortDir;
    let lo = 0;
    let hi = shown.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (compare(dir, keys[mid], shown[mid], k, row) < 0) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  _insert(row, k) {
    const shown = this.shown;
    const keys = this.keys;
    const at = this._lowerBound(k, row);
    for (let i = shown.length; i > at; i--) {
      shown[i] = shown[i - 1];
      keys[i] = keys[i - 1];
    }
    shown[at] = row;
    keys[at] = k;
  }

  _removeAt(at) {
    const shown = this.shown;
    const keys = this.keys;
    const last = shown.length - 1;
    for (let i = at; i < last; i++) {
      shown[i] = shown[i + 1];
      keys[i] = keys[i + 1];
    }
    shown.length = last;
    keys.length = last;
  }

  // Replaces the row at `from` by `row` (sort key k) at its new place; only the rows
  // between the old and the new place shift by one.
  _move(from, row, k) {
    const shown = this.shown;
    const keys = this.keys;
    const p = this._lowerBound(k, row); // in the array that still holds the old row
    const to = from < p ? p - 1 : p;
    if (to > from) {
      for (let i = from; i < to; i++) {
        shown[i] = shown[i + 1];
        keys[i] = keys[i + 1];
      }
    } else {
      for (let i = from; i > to; i--) {
        shown[i] = shown[i - 1];
        keys[i] = keys[i - 1];
      }
    }
    shown[to] = row;
    keys[to] = k;
  }

  setSort(key) {
    if (this.sortKey === key) this.sortDir = -this.sortDir;
    else {
      this.sortKey = key;
      this.sortDir = key === 'added' || key === 'elapsed' || key === 'progress' ? -1 : 1;
    }
    this.refresh();
  }

  targets() {
    return [...new Set([...this.rows.values()].map(r => r.target))].sort();
  }
}

// `needle` (lowercase) is found in the row's text; "tag:NAME" finds the rows with that tag.
function matches(row, keep, needle) {
  if (!keep(row)) return false;
  if (!needle) return true;
  if (needle.startsWith('tag:')) return (row.tags || []).some(tag => tag.toLowerCase() === needle.slice(4).trim());
  return haystack(row).includes(needle);
}

// The shown order: the sort key in the chosen direction, then newest first, then by id
// (a total order, so a row's place can be found by binary search).
function compare(dir, ka, a, kb, b) {
  if (ka < kb) return -dir;
  if (ka > kb) return dir;
  const ta = a.time_added || 0;
  const tb = b.time_added || 0;
  if (ta !== tb) return tb - ta;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

function haystack(row) {
  if (row._hay === undefined) {
    Object.defineProperty(row, '_hay', {
      value: [row.name, row.id, row.target, row.origin, row.status, row.user, ...(row.tags || [])].join(' ').toLowerCase(),
      enumerable: false
    });
  }
  return row._hay;
}

export function progressText(row) {
  const parts = [];
  if (row.completed) parts.push(`${row.completed} done`);
  if (row.failed) parts.push(`${row.failed} failed`);
  if (row.cancelled) parts.push(`${row.cancelled} cancelled`);
  const finished = row.completed + row.failed + row.cancelled;
  if (!parts.length) return `0 of ${row.total}`;
  if (finished < row.total) parts.push(`${row.total - finished} left`);
  return parts.join(' · ');
}

export function durationText(seconds) {
  if (seconds == null) return '';
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.floor(seconds % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

export function addedText(ts) {
  const d = new Date(ts * 1000);
  const today = new Date();
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
  if (d.toDateString() === today.toDateString()) return time;
  return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
}

// Which actions a row offers now.
export function actionsFor(row) {
  const waiting = row.status === 'queued' || row.status === 'pending';
  return {
    cancel: !TERMINAL.has(row.status) && row.status !== 'cancelling',
    resubmit: TERMINAL.has(row.status) && row.source === 'store',
    remove: waiting,
    front: waiting,
    results: row.completed > 0 && row.source === 'store'
  };
}

// -- what is left: the ETA, the cost, retries (the same in the widgets' js/job_card.js
// and js/queue_monitor.js: each is loaded on its own; js/tests/eta.test.js checks they agree) --

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
