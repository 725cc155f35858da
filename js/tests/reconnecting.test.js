import { test } from "node:test";
import assert from "node:assert/strict";
import { FakeElement, fakeModel, installFakeDom } from "./fake_dom.js";
import jobCard from "../job_card.js";
import { createMonitorView, positionsOf } from "../queue_monitor.js";

installFakeDom();

const job = (id, fields = {}) => ({
  id, name: id, user: "ada", target: "lab", status: "queued", time_added: 0,
  time_started: null, time_finished: null, done: 0, total: 1, queue_seq: null,
  position: null, connection: null, error: null, ...fields,
});

test("the card shows 'reconnecting' while its server is away, and not once it is back", () => {
  const model = fakeModel({ job: job("j1", { position: 2 }), position: 2, counts: {}, channel_id: "c" });
  const el = new FakeElement("div");
  const cleanup = jobCard.render({ model, el });
  try {
    const [card] = el.byClass("qnb-card");
    const [badge] = el.byClass("qnb-reconnecting");
    assert.equal(card.dataset.connection, "connected");
    assert.equal(badge.visibleIn(el), false);
    assert.equal(el.byClass("qnb-position")[0].textContent, "position 2");

    model.set("position", null); // the kernel shows no position while the server is away
    model.set("job", job("j1", { connection: "reconnecting" }));
    assert.equal(card.dataset.connection, "reconnecting");
    assert.equal(badge.visibleIn(el), true);
    assert.equal(badge.textContent, "reconnecting");
    assert.equal(el.byClass("qnb-chip")[0].textContent, "queued");
    assert.equal(el.byClass("qnb-position")[0].textContent, "");

    model.set("job", job("j1", { status: "completed", done: 1 }));
    assert.equal(card.dataset.connection, "connected");
    assert.equal(badge.visibleIn(el), false);
    assert.equal(el.byClass("qnb-chip")[0].textContent, "completed");
  } finally {
    cleanup();
  }
});

test("the monitor shows 'reconnecting' on the rows of a server that is away", () => {
  const el = new FakeElement("div");
  const view = createMonitorView(el);
  view.applySnapshot({
    seq: 0,
    jobs: [job("r1", { position: 1 }), job("r2", { position: 2 }), job("local", { target: "sim", queue_seq: 3 })],
  });
  const rowOf = (id) => el.byClass("qnb-row").find((row) => row.dataset.jobId === id && row.style.display !== "none");
  const badgeOf = (id) => rowOf(id).byClass("qnb-reconnecting")[0];
  assert.equal(rowOf("r1").byClass("qnb-position")[0].textContent, "1");
  assert.equal(rowOf("r2").byClass("qnb-position")[0].textContent, "2");
  assert.equal(badgeOf("r1").visibleIn(el), false);

  view.applyPatch({ seq: 1, jobs: [job("r1", { connection: "reconnecting" }), job("r2", { connection: "reconnecting" })] });
  for (const id of ["r1", "r2"]) {
    assert.equal(rowOf(id).dataset.connection, "reconnecting");
    assert.equal(badgeOf(id).visibleIn(el), true);
    assert.equal(badgeOf(id).textContent, "reconnecting");
    assert.equal(rowOf(id).byClass("qnb-position")[0].textContent, "");
  }
  assert.equal(rowOf("local").dataset.connection, "connected");
  assert.equal(badgeOf("local").visibleIn(el), false);

  view.applyPatch({ seq: 2, jobs: [job("r1", { position: 1 }), job("r2", { status: "running" })] });
  assert.equal(badgeOf("r1").visibleIn(el), false);
  assert.equal(badgeOf("r2").visibleIn(el), false);
  assert.equal(rowOf("r1").dataset.connection, "connected");
  assert.equal(rowOf("r1").byClass("qnb-position")[0].textContent, "1");
});

test("positions are the ones the kernel sent, never derived", () => {
  const positions = positionsOf([
    job("a", { position: 3 }),
    job("b", { position: 1 }),
    job("c", { position: null }), // unknown: no position rather than a wrong one
    job("d", { target: "sim", queue_seq: 7, position: 1 }), // the kernel's order, not queue_seq's
    job("e", { target: "sim", queue_seq: 2, position: 2 }),
  ]);
  assert.deepEqual([...positions].sort(), [["a", 3], ["b", 1], ["d", 1], ["e", 2]]);
});

test("a remove stays 'requested' until the job's status changes, whatever comes first", async () => {
  let answer;
  const el = new FakeElement("div");
  const view = createMonitorView(el, { send: () => new Promise((resolve) => (answer = resolve)) });
  view.applySnapshot({ seq: 0, jobs: [job("head", { status: "running" }), job("extra", { position: 1, queue_seq: 1 })] });
  const chipOf = (id) =>
    el.byClass("qnb-row").find((row) => row.dataset.jobId === id && row.style.display !== "none").byClass("qnb-chip")[0];
  el.byClass("qnb-row").find((row) => row.dataset.jobId === "extra").byClass("qnb-remove")[0].dispatch("click");
  assert.equal(chipOf("extra").textContent, "remove requested…");
  // Another job ends and the queue moves: the patch carries "extra" unchanged in status.
  view.applyPatch({ seq: 1, jobs: [job("head", { status: "cancelled" }), job("extra", { position: 1, queue_seq: 1 })] });
  assert.equal(chipOf("extra").textContent, "remove requested…");
  // The kernel's answer comes before the patch that shows the job ended.
  answer({ ok: true, outcome: "removed" });
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(chipOf("extra").textContent, "remove requested…");
  view.applyPatch({ seq: 2, jobs: [job("extra", { status: "cancelled" })] });
  assert.equal(chipOf("extra").textContent, "cancelled");
  view.destroy();
});
