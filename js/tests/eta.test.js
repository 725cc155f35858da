// What is left of a job in the views: the ETA counted down in the page from the kernel's
// `estimate.finish`, the cost estimated at submit, and "retrying (k/N)"; the card, the
// monitor and the jobs panel say them alike.
import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeElement, fakeModel, installFakeDom } from "./fake_dom.js";
import jobCard, * as card from "../job_card.js";
import * as monitor from "../queue_monitor.js";
import * as panel from "../../labextension/src/model.js";

installFakeDom();

const NOW = 1_800_000_000; // a fixed clock: the texts below depend only on it
const job = (fields = {}) => ({
  id: "j1", name: "j1", user: "ada", target: "sim", status: "queued", time_added: NOW - 5,
  time_started: null, time_finished: null, done: 0, total: 4, unit: "circuits", queue_seq: 1,
  position: 1, connection: null, error: null, ...fields,
});
const estimated = (finish, fields = {}) =>
  job({
    estimate: { run_seconds: 70, wait_seconds: 120, finish, cost: 0, currency: null, basis: "pool of 4; 12 runs seen" },
    ...fields,
  });
const local = (seconds) => {
  const t = new Date(seconds * 1000);
  return `${String(t.getHours()).padStart(2, "0")}:${String(t.getMinutes()).padStart(2, "0")}`;
};

const MODULES = [["card", card], ["monitor", monitor], ["panel", panel]];

test("the ETA: the finish's clock time and how long until it, from the page's clock", () => {
  for (const [name, m] of MODULES) {
    const row = estimated(NOW + 190);
    assert.equal(m.etaText(row, NOW), `done ~${local(NOW + 190)} (in 3 min)`, name);
    assert.equal(m.etaText(row, NOW, { short: true }), "in 3 min", name);
    assert.equal(m.etaText(row, NOW + 150, { short: true }), "in 40 s", name); // counting down
    assert.equal(m.etaText(row, NOW + 190.5, { short: true }), "due now", name);
    assert.equal(m.etaText(row, NOW + 190 + 300, { short: true }), "5 min late", name);
    assert.equal(m.etaText(estimated(NOW + 3900), NOW, { short: true }), "in 1 h 05 min", name);
    // Another day: the date too.
    assert.match(m.etaText(estimated(NOW + 3 * 86400), NOW), /^done ~[A-Z][a-z]{2} \d{1,2} \d\d:\d\d \(in 3 d\)$/, name);
    // Unknown, not estimated, or ended: nothing.
    assert.equal(m.etaText(job(), NOW), "", name);
    assert.equal(m.etaText(estimated(null), NOW), "", name);
    assert.equal(m.etaText(estimated(NOW + 60, { status: "completed" }), NOW), "", name);
    const title = m.etaTitle(row, NOW);
    assert.ok(title.includes("wait ~2 min, run ~1 min") && title.includes("basis: pool of 4; 12 runs seen"), title);
  }
});

test("the cost: the amount estimated at submit; a local job's 0.0 and an unknown price show nothing", () => {
  for (const [name, m] of MODULES) {
    assert.equal(m.costText(job({ cost: 4.2, currency: "USD" })), "$4.20", name);
    assert.equal(m.costText(job({ cost: 1234.5, currency: "EUR" })), "EUR 1,234.50", name);
    assert.equal(m.costText(job({ cost: 0.001, currency: "USD" })), "< $0.01", name);
    assert.equal(m.costText(job({ cost: 0, currency: null })), "", name);
    assert.equal(m.costText(job()), "", name);
    // A job's own cost comes first; else the estimate's.
    const fromEstimate = estimated(NOW + 10);
    fromEstimate.estimate = { ...fromEstimate.estimate, cost: 0.35, currency: "USD" };
    assert.equal(m.costText(fromEstimate), "$0.35", name);
  }
});

test("retrying (k/N) while items run again, nothing once the job ended", () => {
  for (const [name, m] of MODULES) {
    assert.equal(m.retryingText(job({ status: "running", retrying: { count: 1, attempt: 1, retries: 3 } })), "retrying (1/3)", name);
    assert.equal(
      m.retryingText(job({ status: "running", unit: "points", retrying: { count: 4, attempt: 2, retries: 3 } })),
      "retrying (2/3, 4 points)",
      name,
    );
    assert.equal(m.retryingText(job({ status: "running" })), "", name);
    assert.equal(m.retryingText(job({ status: "failed", retrying: { count: 1, attempt: 3, retries: 3 } })), "", name);
  }
});

async function until(predicate, what, timeoutMs = 5000) {
  const deadline = Date.now() + timeoutMs;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

test("the card counts the ETA down without new messages from the kernel, and shows cost and retries", async () => {
  const realNow = Date.now;
  let clock = NOW;
  const model = fakeModel({
    job: estimated(NOW + 190, { status: "running", time_started: NOW - 1, cost: 4.2, currency: "USD",
      retrying: { count: 1, attempt: 1, retries: 2 } }),
    position: null, counts: {}, channel_id: "c",
  });
  const el = new FakeElement("div");
  Date.now = () => clock * 1000;
  const cleanup = jobCard.render({ model, el });
  try {
    const [eta] = el.byClass("qnb-eta");
    assert.equal(eta.textContent, `done ~${local(NOW + 190)} (in 3 min)`);
    assert.ok(eta.title.includes("basis: pool of 4"), eta.title);
    assert.equal(el.byClass("qnb-cost")[0].textContent, "$4.20");
    assert.equal(el.byClass("qnb-retrying")[0].textContent, "retrying (1/2)");
    clock = NOW + 150; // the page's clock moves on; the kernel says nothing
    await until(() => eta.textContent.endsWith("(in 40 s)"), "the card's own tick");
    model.set("job", { ...model.get("job"), status: "completed", done: 4, estimate: undefined, retrying: undefined });
    assert.equal(eta.visibleIn(el), false);
    assert.equal(el.byClass("qnb-retrying")[0].visibleIn(el), false);
    assert.equal(el.byClass("qnb-cost")[0].textContent, "$4.20"); // the cost stays
  } finally {
    Date.now = realNow;
    cleanup();
  }
});

test("the monitor's ETA · cost column counts down on its tick and sorts by finish", () => {
  const realNow = Date.now;
  let clock = NOW;
  Date.now = () => clock * 1000;
  try {
    const el = new FakeElement("div");
    const view = monitor.createMonitorView(el);
    view.applySnapshot({
      seq: 0,
      jobs: [
        estimated(NOW + 600, { id: "late", cost: 2, currency: "USD" }),
        estimated(NOW + 60, { id: "soon", status: "running", retrying: { count: 1, attempt: 1, retries: 3 } }),
        job({ id: "done", status: "completed", done: 4, cost: 0.5, currency: "USD" }),
      ],
    });
    const rowOf = (id) => el.byClass("qnb-row").find((row) => row.dataset.jobId === id && row.style.display !== "none");
    const etaOf = (id) => rowOf(id).byClass("qnb-eta")[0];
    assert.equal(etaOf("late").textContent, "in 10 min · $2.00");
    assert.equal(etaOf("soon").textContent, "in 1 min");
    assert.equal(etaOf("done").textContent, "$0.50");
    assert.ok(rowOf("soon").byClass("qnb-progress-text")[0].textContent.endsWith(" · retrying (1/3)"));
    clock = NOW + 30;
    view.tick();
    assert.equal(etaOf("soon").textContent, "in 30 s");
    view.table.setSort("eta");
    assert.deepEqual(view.table.rows().map((j) => j.id), ["soon", "late", "done"]);
    view.kernelGone(); // a countdown the kernel no longer backs is not shown
    assert.equal(etaOf("late").textContent, "$2.00");
    view.destroy();
  } finally {
    Date.now = realNow;
  }
});
