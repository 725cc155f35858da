// The jobs panel: a toolbar (search, filter, target), the queue servers' state, and a
// virtualised grid of jobs (only the rows in view are in the DOM, so 10,000 jobs render
// as quickly as 40). Rows are kept by job id while they stay in view, so a patch or the
// elapsed clock never takes the focus from a button.
import { Widget } from '@lumino/widgets';
import {
  COLUMNS, FILTERS, JobsModel, TERMINAL, actionsFor, addedText, costText, durationText, elapsed, etaText,
  etaTitle, progressText, retryingText
} from './model.js';

export const ROW_HEIGHT = 32;
const OVERSCAN = 8;
const ACTIONS = [
  { action: 'cancel', label: 'Cancel', title: 'Cancel this job' },
  { action: 'resubmit', label: 'Resubmit', title: 'Run this job again as a new job' },
  { action: 'remove', label: 'Remove', title: 'Remove this job from its queue' },
  { action: 'front', label: 'To front', title: 'Move this job to the front of its queue' },
  { action: 'results', label: 'Results', title: 'Open the counts and histogram in a tab' }
];
const FILTER_LABELS = {
  all: 'All jobs', active: 'Unfinished', waiting: 'Waiting', running: 'Running',
  completed: 'Completed', failed: 'Failed', cancelled: 'Cancelled'
};

function el(tag, attrs = {}, children = []) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'className') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v);
  }
  for (const c of children) node.appendChild(c);
  return node;
}

export class JobsPanel extends Widget {
  constructor({ onAction }) {
    super();
    this.id = 'qnb-jobs-panel';
    this.addClass('qnb-jp');
    this.model = new JobsModel();
    this.onAction = onAction;
    this.busy = new Set(); // "id:action" while a request is out
    this.live = new Map(); // id -> row element in the DOM
    this.columns = COLUMNS.map(c => `minmax(${c.min}px, ${c.grow ? '1fr' : c.min + 'px'})`).join(' ');
    this.minWidth = COLUMNS.reduce((s, c) => s + c.min, 0);
    this._build();
    this.node.qnbPanel = this; // tests and the benchmark read the model here
  }

  _build() {
    const n = this.node;
    n.setAttribute('role', 'region');
    n.setAttribute('aria-label', 'qnb jobs');
    this.searchBox = el('input', {
      type: 'search', className: 'qnb-jp-search jp-mod-styled', placeholder: 'Search name, id, target, origin, tags (tag:NAME)',
      'aria-label': 'Search jobs'
    });
    this.searchBox.addEventListener('input', () => {
      this.model.search = this.searchBox.value;
      this.model.refresh();
      this.render();
    });
    this.filterBox = el('select', { className: 'qnb-jp-filter jp-mod-styled', 'aria-label': 'Show' });
    for (const [key, label] of Object.entries(FILTER_LABELS)) {
      this.filterBox.appendChild(el('option', { value: key, text: label }));
    }
    this.filterBox.addEventListener('change', () => {
      this.model.filter = this.filterBox.value in FILTERS ? this.filterBox.value : 'all';
      this.model.refresh();
      this.render();
    });
    this.count = el('span', { className: 'qnb-jp-count', 'aria-live': 'polite' });
    this.toolbar = el('div', { className: 'qnb-jp-toolbar' }, [this.searchBox, this.filterBox, this.count]);
    this.status = el('div', { className: 'qnb-jp-status' });
    this.head = el('div', { className: 'qnb-jp-head', role: 'row' });
    this.headCells = {};
    for (const col of COLUMNS) {
      let cell;
      if (col.sort) {
        cell = el('button', { className: 'qnb-jp-th qnb-jp-sort', 'data-sort': col.key, role: 'columnheader',
          title: `Sort by ${col.label.toLowerCase()}` });
        cell.appendChild(el('span', { text: col.label }));
        cell.appendChild(el('span', { className: 'qnb-jp-arrow', 'aria-hidden': 'true' }));
        cell.addEventListener('click', () => {
          this.model.setSort(col.key);
          this.render();
        });
      } else {
        cell = el('div', { className: 'qnb-jp-th', role: 'columnheader', text: col.label });
      }
      this.headCells[col.key] = cell;
      this.head.appendChild(cell);
    }
    this.body = el('div', { className: 'qnb-jp-body', role: 'rowgroup' });
    this.table = el('div', { className: 'qnb-jp-table', role: 'grid', 'aria-label': 'Jobs' }, [this.head, this.body]);
    this.table.style.minWidth = `${this.minWidth}px`;
    this.head.style.gridTemplateColumns = this.columns;
    this.empty = el('div', { className: 'qnb-jp-empty', text: 'No jobs yet.' });
    this.scroller = el('div', { className: 'qnb-jp-scroll' }, [this.table, this.empty]);
    this.scroller.addEventListener('scroll', () => this._scheduleRender(), { passive: true });
    this.body.addEventListener('click', e => {
      const button = e.target.closest('button[data-action]');
      if (!button || button.disabled) return;
      const rowNode = button.closest('[data-job-id]');
      this._act(rowNode.dataset.jobId, button.dataset.action, button);
    });
    n.append(this.toolbar, this.status, this.scroller);
  }

  onResize() {
    this._scheduleRender();
  }

  onAfterShow() {
    this.render();
  }

  load(snapshot) {
    this.model.load(snapshot);
    this.render();
  }

  apply(patch) {
    const ended = this.model.apply(patch);
    this.render();
    return ended;
  }

  _scheduleRender() {
    if (this._frame) return;
    this._frame = requestAnimationFrame(() => {
      this._frame = 0;
      this.render();
    });
  }

  async _act(id, action, button) {
    const key = `${id}:${action}`;
    if (this.busy.has(key)) return;
    this.busy.add(key);
    button.setAttribute('aria-busy', 'true');
    button.disabled = true;
    try {
      await this.onAction(id, action);
    } finally {
      this.busy.delete(key);
      button.removeAttribute('aria-busy');
      const row = this.model.rows.get(id);
      const node = this.live.get(id);
      if (row && node) this._fill(node, row, true);
    }
  }

  renderStatus() {
    const parts = [];
    if (this.model.error) parts.push(el('div', { className: 'qnb-jp-error', role: 'alert', text: this.model.error }));
    if (this.connection) parts.push(el('div', { className: 'qnb-jp-error', role: 'alert', text: this.connection }));
    for (const s of this.model.servers) {
      const ok = s.reachable !== false;
      parts.push(el('div', {
        className: `qnb-jp-server ${ok ? '' : 'qnb-jp-unreachable'}`, 'data-server': s.name,
        'data-reachable': String(s.reachable), title: s.url || ''
      }, [el('span', { className: 'qnb-jp-dot', 'aria-hidden': 'true' }),
        el('span', { text: `${s.name}: ${s.reachable === null ? 'connecting…' : ok ? 'reachable' : 'unreachable'}${ok || !s.error ? '' : ` (${s.error})`}` })]));
    }
    this.status.replaceChildren(...parts);
    this._statusShown = this._statusSignature();
  }

  // The status lines again only when what they say may have changed.
  _renderStatusIfChanged() {
    if (this._statusShown !== this._statusSignature()) this.renderStatus();
  }

  _statusSignature() {
    const m = this.model;
    return m.servers.length || m.error || this.connection
      ? JSON.stringify([m.error, this.connection, m.servers])
      : '';
  }

  // What is shown: the count, the sort arrows, the status lines, and only the rows in
  // view (nodes kept by job id; a node is filled again only when its row changed).
  render() {
    const m = this.model;
    const shown = m.shown;
    const count = shown.length === m.rows.size ? `${m.rows.size} jobs` : `${shown.length} of ${m.rows.size} jobs`;
    if (this.count.textContent !== count) this.count.textContent = count;
    const sorted = `${m.sortKey}:${m.sortDir}`;
    if (this._sorted !== sorted) {
      this._sorted = sorted;
      for (const col of COLUMNS) {
        if (!col.sort) continue;
        const cell = this.headCells[col.key];
        const on = m.sortKey === col.key;
        cell.setAttribute('aria-sort', on ? (m.sortDir > 0 ? 'ascending' : 'descending') : 'none');
        cell.lastChild.textContent = on ? (m.sortDir > 0 ? ' ▲' : ' ▼') : '';
      }
    }
    this._renderStatusIfChanged();
    const empty = m.rows.size ? 'none' : '';
    if (this.empty.style.display !== empty) this.empty.style.display = empty;
    if (this._rowCount !== shown.length) {
      this._rowCount = shown.length;
      this.table.setAttribute('aria-rowcount', String(shown.length + 1));
      this.body.style.height = `${shown.length * ROW_HEIGHT}px`;
    }
    const top = Math.max(0, this.scroller.scrollTop - this.head.offsetHeight);
    const height = this.scroller.clientHeight || 800;
    const first = Math.max(0, Math.floor(top / ROW_HEIGHT) - OVERSCAN);
    const last = Math.min(shown.length, Math.ceil((top + height) / ROW_HEIGHT) + OVERSCAN);
    // Two maps used in turn (no new map per render).
    const keep = this._spare || new Map();
    this._spare = null;
    const now = Date.now() / 1000;
    for (let i = first; i < last; i++) {
      const row = shown[i];
      let node = this.live.get(row.id);
      if (!node) {
        node = this._rowNode();
        node.dataset.jobId = row.id;
        this.body.appendChild(node);
      }
      this.live.delete(row.id);
      keep.set(row.id, node);
      if (node._index !== i) {
        node._index = i;
        node.style.transform = `translateY(${i * ROW_HEIGHT}px)`;
        node.setAttribute('aria-rowindex', String(i + 2));
      }
      this._fill(node, row, false, now);
    }
    for (const node of this.live.values()) node.remove();
    this.live.clear();
    this._spare = this.live;
    this.live = keep;
  }

  // Elapsed times and ETAs of the rows in view (once a second while any runs or
  // waits): the ETA counts down from the estimate's finish with the page's clock.
  tick() {
    const now = Date.now() / 1000;
    for (const [id, node] of this.live) {
      const row = this.model.rows.get(id);
      if (row && row.time_started != null && row.time_finished == null) {
        const took = durationText(elapsed(row, now));
        if (node._elapsed !== took) {
          node._elapsed = took;
          node.children[6].textContent = took;
        }
      }
      if (row && row.estimate) this._fillEta(node, row, now);
    }
  }

  // "in 3 min · $4.20": the ETA (short; its finish, figures and basis in the tooltip)
  // and the cost estimated at submit.
  _fillEta(node, row, now) {
    const due = etaText(row, now, { short: true });
    const cost = costText(row);
    const text = due && cost ? `${due} · ${cost}` : due || cost;
    if (node._eta === text) return;
    node._eta = text;
    const cell = node.children[7];
    cell.textContent = text;
    cell.title = [etaTitle(row, now), cost ? `${cost}, estimated at submit` : ''].filter(Boolean).join('\n');
  }

  _rowNode() {
    const node = el('div', { className: 'qnb-jp-row', role: 'row' });
    node.style.gridTemplateColumns = this.columns;
    const status = el('div', { className: 'qnb-jp-td qnb-jp-status-cell', role: 'gridcell' }, [el('span', { className: 'qnb-jp-badge' })]);
    const bar = el('div', { className: 'qnb-jp-bar', 'aria-hidden': 'true' }, [
      el('span', { className: 'qnb-jp-seg-completed' }), el('span', { className: 'qnb-jp-seg-failed' }),
      el('span', { className: 'qnb-jp-seg-cancelled' })]);
    const progress = el('div', { className: 'qnb-jp-td qnb-jp-progress', role: 'gridcell' }, [bar, el('span', { className: 'qnb-jp-ptext' })]);
    const cells = [status, progress];
    for (const cls of ['name', 'target', 'origin', 'added', 'elapsed', 'eta']) {
      cells.push(el('div', { className: `qnb-jp-td qnb-jp-${cls}`, role: 'gridcell' }));
    }
    const actions = el('div', { className: 'qnb-jp-td qnb-jp-actions', role: 'gridcell' });
    for (const a of ACTIONS) {
      actions.appendChild(el('button', {
        className: `jp-mod-styled qnb-jp-btn ${a.action === 'cancel' || a.action === 'remove' ? 'jp-mod-warn' : ''}`,
        'data-action': a.action, title: a.title, type: 'button', text: a.label
      }));
    }
    cells.push(actions);
    node.append(...cells);
    return node;
  }

  _fill(node, row, force, now = Date.now() / 1000) {
    const c = node.children;
    if (node._row !== row || force) {
      node._row = row;
      node.dataset.status = row.status;
      const badge = c[0].firstChild;
      badge.textContent = row.status;
      badge.className = `qnb-jp-badge qnb-jp-${row.status}`;
      c[0].title = row.error ? `${row.status}: ${row.error}` : row.status;
      const total = row.total || 1;
      const segs = c[1].firstChild.children;
      segs[0].style.width = `${(100 * row.completed) / total}%`;
      segs[1].style.width = `${(100 * row.failed) / total}%`;
      segs[2].style.width = `${(100 * row.cancelled) / total}%`;
      const again = retryingText(row);
      const text = again ? `${progressText(row)} · ${again}` : progressText(row);
      c[1].lastChild.textContent = text;
      c[1].title = `${text} (${row.total} ${row.unit || 'circuits'})`;
      c[2].textContent = row.name;
      c[2].title = `${row.name}\n${row.id}`;
      c[3].textContent = row.target;
      c[3].title = row.target;
      c[4].textContent = row.origin || '—';
      c[4].title = row.owner ? `owner ${row.owner}` : row.origin || 'not known';
      c[5].textContent = addedText(row.time_added);
      c[5].title = new Date(row.time_added * 1000).toString();
      const offered = actionsFor(row);
      for (const button of c[8].children) {
        const action = button.dataset.action;
        button.disabled = !offered[action] || this.busy.has(`${row.id}:${action}`);
      }
    }
    const took = durationText(elapsed(row, now));
    if (node._elapsed !== took) {
      node._elapsed = took;
      c[6].textContent = took;
    }
    this._fillEta(node, row, now);
  }
}

export { TERMINAL };
