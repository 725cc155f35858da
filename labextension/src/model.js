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
  progress: r => (r.total ? (r.completed + r.failed + r.cancelled) / r.total : 0),
  name: r => (r.name || '').toLowerCase(),
  target: r => (r.target || '').toLowerCase(),
  origin: r => (r.origin || '').toLowerCase(),
  added: r => r.time_added || 0,
  elapsed: (r, now) => elapsed(r, now) ?? -1
};

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
    this.shown = [];
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
    for (const row of patch.changed || []) {
      const before = this.rows.get(row.id);
      if (before && !TERMINAL.has(before.status) && TERMINAL.has(row.status)) ended.push(row);
      this.rows.set(row.id, row);
    }
    for (const id of patch.removed || []) this.rows.delete(id);
    this.version = patch.version;
    if (patch.servers) this.servers = patch.servers;
    this.error = patch.error || null;
    this.refresh();
    return ended;
  }

  refresh(now = Date.now() / 1000) {
    const keep = FILTERS[this.filter] || FILTERS.all;
    const needle = this.search.trim().toLowerCase();
    const out = [];
    for (const row of this.rows.values()) {
      if (!keep(row)) continue;
      if (needle && !haystack(row).includes(needle)) continue;
      out.push(row);
    }
    const key = KEYS[this.sortKey] || KEYS.added;
    const dir = this.sortDir;
    const keyed = out.map(r => [key(r, now), r]);
    keyed.sort((a, b) => (a[0] < b[0] ? -dir : a[0] > b[0] ? dir : (b[1].time_added - a[1].time_added)));
    this.shown = keyed.map(k => k[1]);
    return this.shown;
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

function haystack(row) {
  if (row._hay === undefined) {
    Object.defineProperty(row, '_hay', {
      value: [row.name, row.id, row.target, row.origin, row.status, row.user].join(' ').toLowerCase(),
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
