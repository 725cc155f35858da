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
// `height` is relative to the y-axis' top (`axisTop`), so no bar ever leaves the plot.
export function histogramBars(counts, { probabilities = false } = {}) {
  const entries = Object.entries(counts || {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  const total = entries.reduce((sum, [, n]) => sum + n, 0) || 1;
  const values = entries.map(([, n]) => (probabilities ? n / total : n));
  const { top } = yTicks(Math.max(0, ...values), { probabilities });
  return entries.map(([bitstring], i) => ({ bitstring, value: values[i], height: values[i] / top }));
}

// The y-axis: ticks at 1, 2 or 5 times a power of ten, the top one at or above `max`.
export function yTicks(max, { probabilities = false, count = 5 } = {}) {
  if (!(max > 0)) return { top: 1, ticks: [0, 1] };
  const raw = max / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * power).find((s) => s >= raw - 1e-12) ?? 10 * power;
  const usable = probabilities || step >= 1 ? step : 1;
  const top = Number((Math.ceil(max / usable - 1e-9) * usable).toPrecision(12));
  const ticks = [];
  for (let t = 0; t <= top + usable / 2; t += usable) ticks.push(Number(t.toPrecision(12)));
  return { top, ticks };
}

const escapeXml = (text) =>
  String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function tickText(value, probabilities) {
  if (probabilities) return String(Number(value.toFixed(3)));
  return value >= 10000 ? `${Number((value / 1000).toPrecision(3))}k` : String(value);
}

// An SVG histogram as markup, with a labelled y-axis (counts or probability); outcome
// labels rotate when there are many. Colours follow the JupyterLab theme.
export function histogramSvg(counts, { width = 440, height = 180, probabilities = false } = {}) {
  const bars = histogramBars(counts, { probabilities });
  const values = bars.map((b) => b.value);
  const { top, ticks } = yTicks(Math.max(0, ...values), { probabilities });
  const rotate = bars.length > 8;
  const labelSpace = rotate ? 12 + 6 * Math.max(...bars.map((b) => b.bitstring.length), 1) : 16;
  const left = 52; // the y-axis' title and tick labels
  const plotTop = 14;
  const plotHeight = height - labelSpace - plotTop - 4;
  const plotBottom = plotTop + plotHeight;
  const slot = (width - left - 6) / Math.max(bars.length, 1);
  const yOf = (v) => plotBottom - (v / top) * plotHeight;
  const axis = [
    `<g class="qnb-y-axis">`,
    `<line x1="${left}" y1="${plotTop}" x2="${left}" y2="${plotBottom}" class="qnb-axis-line"/>`,
    `<line x1="${left}" y1="${plotBottom}" x2="${width - 4}" y2="${plotBottom}" class="qnb-axis-line"/>`,
    ...ticks.map(
      (t) =>
        `<line x1="${left - 3}" y1="${yOf(t)}" x2="${left}" y2="${yOf(t)}" class="qnb-axis-line"/>` +
        `<text x="${left - 5}" y="${yOf(t) + 3}" text-anchor="end" class="qnb-tick">${tickText(t, probabilities)}</text>`,
    ),
    `<text class="qnb-axis-title" x="10" y="${plotTop + plotHeight / 2}" text-anchor="middle" transform="rotate(-90 10 ${plotTop + plotHeight / 2})">${probabilities ? "probability" : "count"}</text>`,
    `</g>`,
  ].join("");
  const parts = bars.map((bar, i) => {
    const x = left + 3 + i * slot;
    const h = Math.max(1, bar.height * plotHeight);
    const y = plotBottom - h;
    const cx = x + slot / 2;
    const value = probabilities ? bar.value.toFixed(3) : String(bar.value);
    const label = rotate
      ? `<text x="${cx}" y="${plotBottom + 4}" transform="rotate(90 ${cx} ${plotBottom + 4})">${escapeXml(bar.bitstring)}</text>`
      : `<text x="${cx}" y="${plotBottom + 12}" text-anchor="middle">${escapeXml(bar.bitstring)}</text>`;
    return (
      `<g class="qnb-bar-group" data-bitstring="${escapeXml(bar.bitstring)}" data-value="${bar.value}">` +
      `<rect x="${x + slot * 0.1}" y="${y}" width="${slot * 0.8}" height="${h}" class="qnb-bar-rect"><title>${escapeXml(bar.bitstring)}: ${value}</title></rect>` +
      (bars.length <= 16 ? `<text x="${cx}" y="${Math.max(y - 2, 9)}" text-anchor="middle">${value}</text>` : "") +
      label +
      `</g>`
    );
  });
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" data-y-top="${top}" role="img" aria-label="histogram of ${probabilities ? "probabilities" : "counts"}">${axis}${parts.join("")}</svg>`;
}

// How many items ended in each outcome. Rows without per-outcome counts (older kernels)
// count every ended item as completed, as they always did.
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

// The bar's segments, in percent of the job's items: a cancelled job is never a full
// "completed" bar.
export function progressSegments(job) {
  const parts = progressParts(job);
  const share = (n) => (parts.total ? (100 * n) / parts.total : 0);
  return ["completed", "failed", "cancelled"].map((outcome) => ({ outcome, percent: share(parts[outcome]) }));
}

// Fills `bar` (a .qnb-bar element) with one segment per outcome.
export function drawProgressBar(bar, job) {
  const segments = progressSegments(job);
  if (bar.children.length !== segments.length) {
    bar.replaceChildren(
      ...segments.map(({ outcome }) => {
        const segment = document.createElement("div");
        segment.className = `qnb-seg qnb-seg-${outcome}`;
        return segment;
      }),
    );
  }
  segments.forEach(({ percent }, i) => {
    bar.children[i].style.width = `${percent}%`;
  });
  bar.title = progressText(job);
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

// What a view says once its kernel has gone, and how to see the job again.
export function goneText(jobId) {
  const how = jobId ? `qnb.get_job("${jobId}") in a new kernel` : "qnb.monitor() in a new kernel";
  return `The kernel behind this view has gone: this is the last state it sent. To see it live again, run ${how} or open the jobs panel.`;
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

const BUTTON = "jp-Button jp-mod-styled jp-mod-small qnb-button";

function render({ model, el, client, kernel }) {
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
  bar.role = "img";
  const progress = element("span", "qnb-progress");
  const elapsed = element("span", "qnb-elapsed");
  const retrying = element("span", "qnb-retrying");
  retrying.title = "circuits that failed transiently run again (attempt/retries allowed at submit)";
  const eta = element("span", "qnb-eta");
  const cost = element("span", "qnb-cost");
  cost.title = "the cost estimated at submit";
  const cancel = element("button", `qnb-cancel ${BUTTON} jp-mod-warn`, "Cancel");
  cancel.title = "Cancel this job";
  const resubmit = element("button", `qnb-resubmit ${BUTTON} jp-mod-accept`, "Resubmit");
  resubmit.title = "Submit this job's circuits again as a new job";
  const note = element("span", "qnb-note");
  line.append(position, bar, progress, retrying, elapsed, eta, cost, cancel, resubmit, note);
  const gone = element("div", "qnb-gone");
  gone.style.display = "none";
  const error = element("div", "qnb-error");
  const hist = element("div", "qnb-hist");
  const picker = element("select", "qnb-label-picker jp-mod-styled");
  picker.title = "the circuit whose counts are shown";
  const plot = element("div", "qnb-plot");
  hist.append(picker, plot);
  card.append(head, line, gone, error, hist);
  el.append(card);

  let shownLabel = null;
  let timer = null;
  let kernelGone = false;

  // The clock's texts: the elapsed time and the ETA count in the page between messages.
  function tick() {
    const job = model.get("job") || {};
    const now = Date.now() / 1000;
    elapsed.textContent = formatElapsed(elapsedSeconds(job, now));
    const due = etaText(job, now);
    if (eta.textContent !== due) eta.textContent = due;
    eta.style.display = due ? "" : "none";
    eta.title = etaTitle(job, now);
  }

  function drawHistogram() {
    const counts = model.get("counts") || {};
    const labels = Object.keys(counts);
    hist.style.display = labels.length ? "" : "none";
    if (!labels.length) return;
    if (!labels.includes(shownLabel)) shownLabel = labels[0];
    picker.style.display = labels.length > 1 ? "" : "none";
    if ([...picker.options].map((o) => o.value).join("\n") !== labels.join("\n")) {
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
    id.title = job.id || "";
    target.textContent = `on ${job.target || "?"}`;
    chip.textContent = kernelGone && !TERMINAL.has(status) ? `${status} (last seen)` : status;
    chip.style.background = STATUS_COLOURS[status] || "#757575";
    card.dataset.status = status;
    const reconnecting = isReconnecting(job) && !kernelGone;
    connection.style.display = reconnecting ? "" : "none";
    card.dataset.connection = reconnecting ? "reconnecting" : "connected";
    card.dataset.jobId = job.id || "";
    const pos = model.get("position");
    position.textContent = pos && !kernelGone ? `position ${pos}` : "";
    drawProgressBar(bar, job);
    progress.textContent = progressText(job);
    retrying.textContent = kernelGone ? "" : retryingText(job);
    retrying.style.display = retrying.textContent ? "" : "none";
    cost.textContent = costText(job);
    cost.style.display = cost.textContent ? "" : "none";
    if (kernelGone) eta.style.display = "none"; // a countdown the kernel no longer backs
    const finished = TERMINAL.has(status);
    cancel.style.display = finished ? "none" : "";
    resubmit.style.display = finished ? "" : "none";
    cancel.disabled = resubmit.disabled = kernelGone;
    error.textContent = job.error || "";
    error.style.display = job.error ? "" : "none";
    if (!kernelGone) tick();
    drawHistogram();
  }

  // The kernel that fed this view has gone (died, restarted, shut down): the view stops
  // ticking, its actions go, and it says how to see the job again.
  function onKernelGone() {
    if (kernelGone) return;
    kernelGone = true;
    clearInterval(timer);
    card.dataset.kernel = "gone";
    gone.textContent = goneText((model.get("job") || {}).id);
    gone.style.display = "";
    note.textContent = "";
    update();
  }

  async function act(action) {
    if (kernelGone) return;
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
  card.dataset.kernel = "live";
  update();
  timer = setInterval(tick, 250);
  const stopWatching = kernel?.onGone(onKernelGone);
  if (kernel?.gone) onKernelGone();
  return () => {
    clearInterval(timer);
    stopWatching?.();
    listening.abort();
    for (const name of ["job", "position", "counts"]) model.off(`change:${name}`, update);
  };
}

export default { render };
