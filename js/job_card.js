// The job card: one job, live. State comes from the model's traits (`job`, `position`,
// `counts`), which the kernel updates from its stream thread. Actions go to the kernel's
// action channel through `client` (action_client.js, handed over by view_loader.js); the
// card shows them as requested at once and never waits for a reply.

export const STATUS_COLOURS = {
  pending: "#757575",
  queued: "#8d6e00",
  running: "#1565c0",
  cancelling: "#ad1457",
  completed: "#2e7d32",
  failed: "#b00020",
  cancelled: "#616161",
};
export const TERMINAL = new Set(["completed", "failed", "cancelled"]);

// True while the job's queue server is away (the kernel reconnects by itself).
export function isReconnecting(job) {
  return Boolean(job) && job.connection === "reconnecting";
}

export function formatElapsed(seconds) {
  if (seconds === null || seconds === undefined || !Number.isFinite(seconds)) return "";
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.floor(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
}

// Seconds from start to finish, or to `nowSeconds` while the job runs (ticks in the page).
export function elapsedSeconds(job, nowSeconds) {
  if (!job || !job.time_started) return null;
  return Math.max(0, (job.time_finished ?? nowSeconds) - job.time_started);
}

// Bars of a histogram, bitstrings in order; `probabilities` scales to frequencies.
export function histogramBars(counts, { probabilities = false } = {}) {
  const entries = Object.entries(counts || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const total = entries.reduce((sum, [, n]) => sum + n, 0) || 1;
  const top = Math.max(1, ...entries.map(([, n]) => n));
  return entries.map(([bitstring, n]) => ({
    bitstring,
    value: probabilities ? n / total : n,
    height: n / top,
  }));
}

const escapeXml = (text) =>
  String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

// An SVG histogram as markup; labels rotate when there are many outcomes.
export function histogramSvg(counts, { width = 420, height = 160, probabilities = false } = {}) {
  const bars = histogramBars(counts, { probabilities });
  const rotate = bars.length > 8;
  const labelSpace = rotate ? 12 + 6 * Math.max(...bars.map((b) => b.bitstring.length), 1) : 16;
  const plotHeight = height - labelSpace - 14;
  const slot = (width - 10) / Math.max(bars.length, 1);
  const parts = bars.map((bar, i) => {
    const x = 5 + i * slot;
    const h = Math.max(1, bar.height * plotHeight);
    const y = 14 + plotHeight - h;
    const cx = x + slot / 2;
    const value = probabilities ? bar.value.toFixed(3) : String(bar.value);
    const label = rotate
      ? `<text x="${cx}" y="${14 + plotHeight + 4}" transform="rotate(90 ${cx} ${14 + plotHeight + 4})">${escapeXml(bar.bitstring)}</text>`
      : `<text x="${cx}" y="${14 + plotHeight + 12}" text-anchor="middle">${escapeXml(bar.bitstring)}</text>`;
    return (
      `<g class="qnb-bar-group" data-bitstring="${escapeXml(bar.bitstring)}">` +
      `<rect x="${x + slot * 0.1}" y="${y}" width="${slot * 0.8}" height="${h}" fill="#1565c0"><title>${escapeXml(bar.bitstring)}: ${value}</title></rect>` +
      (bars.length <= 16 ? `<text x="${cx}" y="${y - 2}" text-anchor="middle">${value}</text>` : "") +
      label +
      `</g>`
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" role="img" aria-label="histogram of counts">${parts.join("")}</svg>`;
}

const ACTION_WORDS = {
  cancel: "cancel",
  remove: "remove",
  move_to_front: "move to front",
  resubmit: "resubmit",
};

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function render({ model, el, client }) {
  const card = element("div", "qnb-card");
  const head = element("div", "qnb-head");
  const name = element("span", "qnb-name");
  const id = element("span", "qnb-id");
  const target = element("span", "qnb-target");
  const chip = element("span", "qnb-chip");
  const connection = element("span", "qnb-reconnecting", "reconnecting");
  connection.title = "the queue server is away; updates resume when it is back";
  head.append(name, id, target, chip, connection);
  const line = element("div", "qnb-line");
  const position = element("span", "qnb-position");
  const bar = element("div", "qnb-bar");
  const fill = element("div");
  bar.append(fill);
  const progress = element("span", "qnb-progress");
  const elapsed = element("span", "qnb-elapsed");
  const cancel = element("button", "qnb-cancel", "Cancel");
  const resubmit = element("button", "qnb-resubmit", "Resubmit");
  const note = element("span", "qnb-note");
  line.append(position, bar, progress, elapsed, cancel, resubmit, note);
  const error = element("div", "qnb-error");
  const hist = element("div", "qnb-hist");
  const picker = element("select", "qnb-label-picker");
  const plot = element("div", "qnb-plot");
  hist.append(picker, plot);
  card.append(head, line, error, hist);
  el.append(card);

  let shownLabel = null;

  function tick() {
    const job = model.get("job") || {};
    elapsed.textContent = formatElapsed(elapsedSeconds(job, Date.now() / 1000));
  }

  function drawHistogram() {
    const counts = model.get("counts") || {};
    const labels = Object.keys(counts);
    hist.style.display = labels.length ? "" : "none";
    if (!labels.length) return;
    if (!labels.includes(shownLabel)) shownLabel = labels[0];
    picker.style.display = labels.length > 1 ? "" : "none";
    if (picker.options.length !== labels.length) {
      picker.replaceChildren(...labels.map((label) => new Option(label, label)));
    }
    picker.value = shownLabel;
    plot.innerHTML = histogramSvg(counts[shownLabel]);
    card.dataset.histogram = shownLabel;
  }

  function update() {
    const job = model.get("job") || {};
    const status = job.status || "pending";
    name.textContent = job.name || "";
    id.textContent = (job.id || "").slice(0, 8);
    target.textContent = `on ${job.target || "?"}`;
    chip.textContent = status;
    chip.style.background = STATUS_COLOURS[status] || "#757575";
    card.dataset.status = status;
    const reconnecting = isReconnecting(job);
    connection.style.display = reconnecting ? "" : "none";
    card.dataset.connection = reconnecting ? "reconnecting" : "connected";
    card.dataset.jobId = job.id || "";
    const pos = model.get("position");
    position.textContent = pos ? `position ${pos}` : "";
    const total = job.total || 0;
    fill.style.width = `${total ? (100 * (job.done || 0)) / total : 0}%`;
    progress.textContent = progressText(job);
    const finished = TERMINAL.has(status);
    cancel.style.display = finished ? "none" : "";
    resubmit.style.display = finished ? "" : "none";
    error.textContent = job.error || "";
    error.style.display = job.error ? "" : "none";
    tick();
    drawHistogram();
  }

  async function act(action) {
    const job = model.get("job") || {};
    // Shown at once: the kernel may be busy with a cell and answer later.
    note.textContent = `${ACTION_WORDS[action]} requested…`;
    card.dataset.action = `${action}:requested`;
    const reply = await client.request(action, job.id);
    card.dataset.action = `${action}:${reply.outcome}`;
    card.dataset.actionThread = reply.thread || "";
    // After an accepted cancel the status chip tells the rest of the story.
    note.textContent = reply.ok
      ? reply.new_job_id
        ? `resubmitted as ${reply.new_job_id.slice(0, 8)}`
        : ""
      : reply.message;
  }

  // Every listener this view adds goes when the view does (the cleanup below).
  const listening = new AbortController();
  const { signal } = listening;
  cancel.addEventListener("click", () => act("cancel"), { signal });
  resubmit.addEventListener("click", () => act("resubmit"), { signal });
  picker.addEventListener(
    "change",
    () => {
      shownLabel = picker.value;
      drawHistogram();
    },
    { signal },
  );
  for (const name of ["job", "position", "counts"]) model.on(`change:${name}`, update);
  update();
  const timer = setInterval(tick, 250);
  return () => {
    clearInterval(timer);
    listening.abort();
    for (const name of ["job", "position", "counts"]) model.off(`change:${name}`, update);
  };
}

// A sweep counts its points ("3 of 50 points"); a batch its circuits ("3/50").
export function progressText(job) {
  const done = job.done || 0;
  const total = job.total || 0;
  return job.unit === "points" ? `${done} of ${total} points` : `${done}/${total}`;
}

export default { render };
