// Progress by outcome (a cancelled job is never a full "done" bar), the histogram's
// y-axis, and views whose kernel has gone.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeElement, fakeChannel, fakeModel, installFakeDom, timerCount } from "./fake_dom.js";
import jobCard, { histogramSvg, progressSegments, progressText, yTicks } from "../job_card.js";
import queueMonitor, {
  progressSegments as monitorSegments,
  progressText as monitorText,
} from "../queue_monitor.js";
import { watchKernel } from "../action_client.js";

installFakeDom();

const CANCELLED = { done: 150, total: 150, completed: 12, failed: 0, cancelled: 138, unit: "circuits" };

test("a cancelled job says what was done and what was cancelled, in the card and the monitor", () => {
  for (const [text, segments] of [
    [progressText, progressSegments],
    [monitorText, monitorSegments],
  ]) {
    assert.equal(text(CANCELLED), "12 done · 138 cancelled");
    const widths = Object.fromEntries(segments(CANCELLED).map((s) => [s.outcome, s.percent]));
    assert.equal(widths.completed, 8);
    assert.equal(widths.cancelled, 92);
    assert.equal(widths.failed, 0);
    // Still running, with failures: the rest is counted as waiting.
    const running = { done: 5, total: 50, completed: 3, failed: 2, cancelled: 0, unit: "points" };
    assert.equal(text(running), "3 done · 2 failed of 50 points");
    assert.deepEqual(segments(running).map((s) => s.percent), [6, 4, 0]);
    // Everything completed reads as before.
    assert.equal(text({ done: 4, total: 4, completed: 4, failed: 0, cancelled: 0 }), "4/4");
    // An older kernel's row (no outcome counts): ended items count as completed.
    assert.equal(text({ done: 2, total: 4 }), "2/4");
  }
});

function cardView(job, kernel) {
  const model = fakeModel({ job, position: null, counts: {}, channel_id: "c" });
  const el = new FakeElement("div");
  const cleanup = jobCard.render({ model, el, client: { request: () => new Promise(() => {}) }, kernel });
  return { model, el, cleanup, card: el.byClass("qnb-card")[0] };
}

test("the card's bar has one segment per outcome: cancelled is not drawn as done", () => {
  const { el, cleanup } = cardView({ id: "j1", name: "sweep", status: "cancelled", ...CANCELLED });
  const bar = el.byClass("qnb-bar")[0];
  const width = (cls) => bar.byClass(cls)[0].style.width;
  assert.equal(width("qnb-seg-completed"), "8%");
  assert.equal(width("qnb-seg-cancelled"), "92%");
  assert.equal(el.byClass("qnb-progress")[0].textContent, "12 done · 138 cancelled");
  cleanup();
});

test("the histogram has a labelled y-axis whose top is at or above the tallest bar", () => {
  const svg = histogramSvg({ "00": 1000, 11: 1000 });
  assert.match(svg, /class="qnb-axis-title"[^>]*>count</);
  const top = Number(svg.match(/data-y-top="([\d.]+)"/)[1]);
  assert.ok(top >= 1000, top);
  const heights = [...svg.matchAll(/<rect [^>]*y="([\d.]+)"[^>]*height="([\d.]+)"/g)].map((m) => [Number(m[1]), Number(m[2])]);
  assert.equal(heights.length, 2);
  for (const [y] of heights) assert.ok(y >= 14, `bar top ${y} inside the plot`);
  assert.match(histogramSvg({ 0: 1, 1: 3 }, { probabilities: true }), />probability</);
  assert.deepEqual(yTicks(1021).ticks.at(-1) >= 1021, true);
  assert.deepEqual(yTicks(0.75, { probabilities: true }).ticks, [0, 0.2, 0.4, 0.6, 0.8]);
});

// A kernel the test controls: a status, a statusChanged signal, and a manager that knows it.
function fakeKernel() {
  const slots = new Set();
  const kernel = {
    status: "idle",
    isDisposed: false,
    statusChanged: { connect: (fn) => slots.add(fn), disconnect: (fn) => slots.delete(fn) },
    set(status) {
      this.status = status;
      for (const fn of [...slots]) fn();
    },
    slots,
  };
  return { kernel, manager: { kernel, get_model: async () => null } };
}

test("watchKernel: gone when the kernel dies or restarts, the comm closes, or the kernel is replaced", () => {
  for (const kill of [
    ({ kernel }) => kernel.set("dead"),
    ({ kernel }) => kernel.set("autorestarting"),
    ({ channel }) => {
      channel.comm_live = false;
      channel.emit("comm_live_update");
    },
    ({ manager, watch }) => {
      manager.kernel = { status: "idle" };
      watch.check();
    },
  ]) {
    const { kernel, manager } = fakeKernel();
    const channel = fakeChannel();
    const handlers = [];
    channel.on("comm_live_update", (...a) => handlers.forEach((h) => h(...a)));
    channel.emit = (name) => handlers.forEach((h) => h(name));
    const watch = watchKernel({ channel, manager }, { intervalMs: 60_000 });
    let calls = 0;
    watch.onGone(() => calls++);
    kernel.set("busy");
    assert.equal(watch.gone, false);
    assert.equal(calls, 0);
    kill({ kernel, manager, channel, watch });
    assert.equal(watch.gone, true);
    assert.equal(calls, 1);
    watch.close();
    assert.equal(kernel.slots.size, 0, "its listener goes with it");
  }
});

// A liveness the test flips by hand.
function handKernel() {
  const listeners = new Set();
  return {
    gone: false,
    onGone: (fn) => (listeners.add(fn), () => listeners.delete(fn)),
    die() {
      this.gone = true;
      for (const fn of [...listeners]) fn();
    },
    listeners,
  };
}

test("a card whose kernel has gone says so, stops its timer and disables its actions", () => {
  const timersBefore = timerCount();
  const kernel = handKernel();
  const job = { id: "abcdef0123456789", name: "long", status: "running", target: "emulator", done: 0, total: 1, time_started: 1 };
  const { el, card, cleanup, model } = cardView(job, kernel);
  assert.equal(card.dataset.kernel, "live");
  assert.equal(timerCount(), timersBefore + 1);
  const cancel = el.byClass("qnb-cancel")[0];
  assert.equal(cancel.disabled, false);
  kernel.die();
  assert.equal(card.dataset.kernel, "gone");
  assert.equal(timerCount(), timersBefore, "the elapsed timer stopped");
  assert.equal(cancel.disabled, true);
  assert.equal(el.byClass("qnb-chip")[0].textContent, "running (last seen)");
  const note = el.byClass("qnb-gone")[0];
  assert.notEqual(note.style.display, "none");
  assert.match(note.textContent, /qnb\.get_job\("abcdef0123456789"\)/);
  assert.match(note.textContent, /jobs panel/);
  // A click does nothing now; a late trait change keeps the state.
  cancel.dispatch("click");
  assert.equal(card.dataset.action, undefined);
  model.set("job", { ...job, done: 1 });
  assert.equal(cancel.disabled, true);
  cleanup();
  assert.equal(kernel.listeners.size, 0);
});

test("a card rendered after its kernel went is gone from the start", () => {
  const kernel = handKernel();
  kernel.gone = true;
  const { card, el, cleanup } = cardView({ id: "j2", name: "x", status: "queued", done: 0, total: 1 }, kernel);
  assert.equal(card.dataset.kernel, "gone");
  assert.equal(el.byClass("qnb-cancel")[0].disabled, true);
  cleanup();
});

test("a monitor whose kernel has gone says so, stops ticking and disables every action", () => {
  const timersBefore = timerCount();
  const kernel = handKernel();
  const channel = fakeChannel();
  const model = fakeModel(
    { channel_id: "c", monitor_id: "m", status_filter: "", target_filter: "", user_filter: "" },
    { channel },
  );
  const listeners = new Set();
  const client = {
    request: () => new Promise(() => {}),
    send: () => {},
    onMessage: (fn) => (listeners.add(fn), () => listeners.delete(fn)),
  };
  const el = new FakeElement("div");
  const cleanup = queueMonitor.render({ model, el, client, kernel });
  const row = (id, fields) => ({
    id, name: id, user: "ada", target: "sim", status: "running", time_added: 0, time_started: 1,
    time_finished: null, done: 0, total: 2, queue_seq: null, position: null, connection: null, ...fields,
  });
  for (const fn of listeners) {
    fn({ type: "snapshot", monitor: "m", seq: 0, jobs: [row("a"), row("b", { status: "queued", queue_seq: 1, position: 1 })] });
  }
  const root = el.byClass("qnb-monitor")[0];
  assert.equal(root.dataset.kernel, "live");
  const buttons = () => el.byClass("qnb-button");
  assert.ok(buttons().length >= 4 && buttons().every((b) => !b.disabled));
  assert.ok(buttons().every((b) => b.title), "every action has a title");
  assert.equal(timerCount(), timersBefore + 1);
  kernel.die();
  assert.equal(root.dataset.kernel, "gone");
  assert.equal(timerCount(), timersBefore);
  assert.ok(buttons().length >= 4 && buttons().every((b) => b.disabled));
  assert.match(el.byClass("qnb-gone")[0].textContent, /jobs panel/);
  cleanup();
});

test("the monitor's header shows which column sorts, and which way", () => {
  const model = fakeModel({ channel_id: "c", monitor_id: "m", status_filter: "", target_filter: "", user_filter: "" });
  const el = new FakeElement("div");
  const client = { request: () => new Promise(() => {}), send: () => {}, onMessage: () => () => {} };
  const cleanup = queueMonitor.render({ model, el, client });
  const sortButton = (key) => el.byClass("qnb-sort").find((b) => b.dataset.sort === key);
  assert.equal(sortButton("added").dataset.sorted, "descending");
  assert.equal(sortButton("added").parentNode.ariaSort, "descending");
  assert.match(sortButton("added").textContent, /▼/);
  sortButton("name").dispatch("click");
  assert.equal(sortButton("name").dataset.sorted, "ascending");
  assert.match(sortButton("name").textContent, /▲/);
  assert.equal(sortButton("added").dataset.sorted, "");
  assert.equal(sortButton("added").parentNode.ariaSort, "none");
  cleanup();
});
