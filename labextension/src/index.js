// qnb's jobs panel for JupyterLab and Notebook 7: every job of this user (every kernel,
// script and command line on this machine, and the queue servers of the targets file),
// live, from the qnb server extension (/qnb-jobs/). No kernel needed.
import { ICommandPalette, MainAreaWidget, Notification } from '@jupyterlab/apputils';
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { LabIcon } from '@jupyterlab/ui-components';
import { Widget } from '@lumino/widgets';
import { JobsPanel } from './panel.js';
import { resultNode } from './results.js';

const COMMAND = 'qnb:show-jobs';
const ICON_SVG = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16" height="16">
<g class="jp-icon3" fill="#616161"><rect x="3" y="4" width="18" height="3" rx="1"/><rect x="3" y="10.5" width="13" height="3" rx="1"/>
<rect x="3" y="17" width="8" height="3" rx="1"/><circle cx="19.5" cy="17" r="2.5"/></g></svg>`;
const ASKED_KEY = 'qnb-jobs:asked-notification-permission';
const WAIT_SECONDS = 20;

const jobsIcon = new LabIcon({ name: 'qnb-jobs:icon', svgstr: ICON_SVG });

class Client {
  constructor() {
    this.settings = ServerConnection.makeSettings();
  }

  async call(path, init = {}) {
    const url = URLExt.join(this.settings.baseUrl, 'qnb-jobs', path);
    const response = await ServerConnection.makeRequest(url, init, this.settings);
    let body = null;
    try {
      body = await response.json();
    } catch (e) {
      body = null;
    }
    if (!response.ok) {
      const error = new Error((body && body.message) || `${response.status} ${response.statusText}`);
      error.code = body && body.code;
      throw error;
    }
    return body;
  }
}

function notifyBrowser(title, body) {
  if (!('Notification' in window)) return;
  if (!document.hidden || window.Notification.permission !== 'granted') return;
  try {
    new window.Notification(title, { body, tag: 'qnb-jobs' });
  } catch (e) {
    /* some browsers allow notifications from service workers only */
  }
}

function askPermissionOnce() {
  if (!('Notification' in window) || window.Notification.permission !== 'default') return;
  if (localStorage.getItem(ASKED_KEY)) return;
  localStorage.setItem(ASKED_KEY, '1');
  window.Notification.requestPermission().catch(() => undefined);
}

const plugin = {
  id: 'qnb-jobs:plugin',
  description: "qnb's jobs panel: every job of this user, live",
  autoStart: true,
  optional: [ICommandPalette],
  activate: (app, palette) => {
    const client = new Client();
    const results = new Map();

    const openResults = async id => {
      const open = results.get(id);
      if (open && !open.isDisposed) {
        app.shell.activateById(open.id);
        return;
      }
      const content = new Widget();
      content.addClass('qnb-jp-result');
      content.node.textContent = 'Reading the results…';
      const tab = new MainAreaWidget({ content });
      tab.id = `qnb-job-result-${id}`;
      const row = panel.model.rows.get(id);
      tab.title.label = `Results: ${row ? row.name : id.slice(0, 8)}`;
      tab.title.caption = id;
      tab.title.icon = jobsIcon;
      tab.title.closable = true;
      results.set(id, tab);
      app.shell.add(tab, 'main');
      app.shell.activateById(tab.id);
      try {
        content.node.replaceChildren(resultNode(await client.call(`jobs/${id}/results`)));
      } catch (e) {
        content.node.textContent = `Could not read the results: ${e.message}`;
      }
    };

    const act = async (id, action) => {
      if (action === 'results') return openResults(id);
      const row = panel.model.rows.get(id);
      const name = row ? `"${row.name}" (${id.slice(0, 8)})` : id.slice(0, 8);
      try {
        const outcome = await client.call(`jobs/${id}/${action}`, { method: 'POST', body: '{}' });
        if (action === 'resubmit' && outcome.new_id) {
          Notification.info(`Resubmitted ${name} as ${outcome.new_id.slice(0, 8)}`, { autoClose: 4000 });
        }
      } catch (e) {
        Notification.error(`Could not ${action === 'front' ? 'move to front' : action} ${name}: ${e.message}`, {
          autoClose: 8000
        });
      }
    };

    const panel = new JobsPanel({ onAction: act });
    panel.title.icon = jobsIcon;
    panel.title.caption = 'qnb jobs';
    panel.node.addEventListener('pointerdown', askPermissionOnce, { once: true });
    panel.node.addEventListener('keydown', askPermissionOnce, { once: true });
    app.shell.add(panel, 'left', { rank: 950 });

    const announce = ended => {
      if (!ended.length) return;
      const away = document.hidden || !panel.isVisible;
      if (!away) return;
      const words = ended.map(r => `"${r.name}" ${r.status}`);
      const text = ended.length === 1
        ? `qnb job ${words[0]} (${ended[0].target})`
        : `${ended.length} qnb jobs ended: ${words.slice(0, 5).join(', ')}${ended.length > 5 ? ', …' : ''}`;
      const failed = ended.some(r => r.status === 'failed');
      const show = failed ? Notification.error : ended.every(r => r.status === 'completed') ? Notification.success : Notification.warning;
      const actions = [{ label: 'Show jobs', callback: () => app.commands.execute(COMMAND) }];
      if (ended.length === 1 && ended[0].completed > 0) {
        actions.push({ label: 'Open results', callback: () => openResults(ended[0].id) });
      }
      show(text, { autoClose: 10000, actions });
      notifyBrowser(ended.length === 1 ? 'qnb job ended' : 'qnb jobs ended', text);
    };

    // The feed: a snapshot, then long polls for patches; after a failure, a new
    // snapshot (the server may have restarted).
    let stopped = false;
    const follow = async () => {
      let delay = 500;
      while (!stopped) {
        try {
          panel.load(await client.call('jobs'));
          panel.connection = null;
          panel.renderStatus();
          delay = 500;
          for (;;) {
            const patch = await client.call(`updates?after=${panel.model.version}&timeout=${WAIT_SECONDS}`);
            if (patch.reset) {
              panel.load(patch);
              continue;
            }
            announce(panel.apply(patch));
          }
        } catch (e) {
          panel.connection = `Not connected to the Jupyter server's qnb extension (${e.message}); trying again…`;
          panel.renderStatus();
          await new Promise(r => setTimeout(r, delay));
          delay = Math.min(delay * 2, 10000);
        }
      }
    };
    follow();
    const clock = setInterval(() => panel.isVisible && panel.tick(), 1000);
    panel.disposed.connect(() => {
      stopped = true;
      clearInterval(clock);
    });

    app.commands.addCommand(COMMAND, {
      label: 'Show qnb Jobs',
      caption: 'Every job of this user: kernels, scripts and queue servers',
      execute: async () => {
        await app.restored; // else the restored layout may hide the panel again
        if (!panel.isAttached) app.shell.add(panel, 'left', { rank: 950 });
        app.shell.activateById(panel.id);
        if (app.shell.expandLeft) app.shell.expandLeft(panel.id); // Notebook 7 expands by id
        panel.searchBox.focus();
      }
    });
    if (palette) palette.addItem({ command: COMMAND, category: 'qnb' });
  }
};

export default plugin;
