import { test } from "node:test";
import assert from "node:assert/strict";
import { JobTable, positionsOf, visibleRange } from "../queue_monitor.js";

const job = (id, fields = {}) => ({
  id, name: id, user: "ada", target: "sim", status: "completed", time_added: 0,
  time_started: null, time_finished: null, done: 1, total: 1, queue_seq: null, ...fields,
});

test("positions are the kernel's: a job of higher priority is ahead of an older one", () => {
  // "hi" came later (larger queue_seq) with a priority: the kernel runs it first.
  const positions = positionsOf([
    job("old", { status: "queued", queue_seq: 1, position: 2 }),
    job("hi", { status: "queued", queue_seq: 2, position: 1 }),
    job("c", { status: "queued", queue_seq: 1, target: "emulator", position: 1 }),
    job("d", { status: "running" }),
  ]);
  assert.deepEqual([...positions].sort(), [["c", 1], ["hi", 1], ["old", 2]]);
});

test("a patch's positions move jobs it has no rows for, also when buffered", () => {
  const table = new JobTable();
  const waiting = [job("a", { status: "queued", queue_seq: 1, position: 1 }), job("b", { status: "queued", queue_seq: 2, position: 2 })];
  // Buffered before the snapshot: a leaves the queue, b moves up.
  table.applyPatch({ seq: 2, jobs: [job("a", { status: "running" })], positions: { b: 1 } });
  table.applySnapshot({ seq: 1, jobs: waiting });
  assert.deepEqual([...table.positions].sort(), [["b", 1]]);
  // A job of higher priority comes in ahead of b.
  assert.equal(table.applyPatch({ seq: 3, jobs: [job("p", { status: "queued", queue_seq: 3, position: 1 })], positions: { b: 2 } }), true);
  assert.deepEqual([...table.positions].sort(), [["b", 2], ["p", 1]]);
  // Positions of jobs the page does not know are ignored; a patch without positions is fine.
  assert.equal(table.applyPatch({ seq: 4, jobs: [], positions: { nobody: 1 } }), true);
  assert.equal(table.applyPatch({ seq: 5, jobs: [job("c")] }), true);
  assert.equal(table.jobs.has("nobody"), false);
});

test("patches before the snapshot are buffered; older ones are dropped", () => {
  const table = new JobTable();
  assert.equal(table.applyPatch({ seq: 1, jobs: [job("a", { status: "running" })] }), false);
  assert.equal(table.applyPatch({ seq: 3, jobs: [job("a", { status: "completed" })] }), false);
  table.applySnapshot({ seq: 2, jobs: [job("a", { status: "queued" }), job("b")] });
  assert.equal(table.jobs.get("a").status, "completed", "seq 3 applied after the snapshot");
  assert.equal(table.applyPatch({ seq: 2, jobs: [job("a", { status: "running" })] }), false);
  assert.equal(table.jobs.get("a").status, "completed");
  assert.equal(table.applyPatch({ seq: 4, jobs: [job("c")] }), true);
  assert.equal(table.jobs.size, 3);
});

test("filters by status, target and user; sorts by any column both ways", () => {
  const table = new JobTable();
  table.applySnapshot({
    seq: 0,
    jobs: [
      job("a", { time_added: 1, user: "ada" }),
      job("b", { time_added: 3, user: "bob", status: "failed" }),
      job("c", { time_added: 2, user: "ada", target: "emulator" }),
    ],
  });
  assert.deepEqual(table.rows().map((j) => j.id), ["b", "c", "a"], "newest first by default");
  table.setFilters({ user: "ada" });
  assert.deepEqual(table.rows().map((j) => j.id), ["c", "a"]);
  table.setFilters({ user: "", target: "sim" });
  assert.deepEqual(table.rows().map((j) => j.id), ["b", "a"]);
  table.setFilters({ target: "", status: "failed" });
  assert.deepEqual(table.rows().map((j) => j.id), ["b"]);
  table.setFilters({ status: "" });
  table.setSort("user");
  assert.deepEqual(table.rows().map((j) => j.user), ["ada", "ada", "bob"]);
  table.setSort("user");
  assert.deepEqual(table.rows().map((j) => j.user), ["bob", "ada", "ada"]);
  assert.deepEqual(table.values("target"), ["emulator", "sim"]);
});

test("sorting by position puts jobs that left the queue last", () => {
  const table = new JobTable();
  table.applySnapshot({
    seq: 0,
    jobs: [job("run", { status: "running" }), job("q2", { status: "queued", queue_seq: 4, position: 2 }), job("q1", { status: "queued", queue_seq: 5, position: 1 })],
  });
  table.setSort("position");
  assert.deepEqual(table.rows().map((j) => j.id), ["q1", "q2", "run"]);
});

test("only the visible rows (plus a few spare) are rendered", () => {
  assert.deepEqual(visibleRange(0, 240, 10000), [0, 15]);
  assert.deepEqual(visibleRange(24000, 240, 10000), [995, 1015]);
  assert.deepEqual(visibleRange(0, 240, 3), [0, 3]);
});

test("a 100-job patch on 10,000 jobs re-sorts quickly", () => {
  const table = new JobTable();
  const jobs = Array.from({ length: 10000 }, (_, i) => job(`j${i}`, { time_added: i, status: i % 3 ? "completed" : "queued", queue_seq: i % 3 ? null : i, position: i % 3 ? null : i / 3 + 1 }));
  table.applySnapshot({ seq: 0, jobs });
  table.rows();
  const start = performance.now();
  table.applyPatch({ seq: 1, jobs: jobs.slice(0, 100).map((j) => ({ ...j, status: "running", queue_seq: null, position: null })) });
  assert.equal(table.rows().length, 10000);
  assert.equal(table.positions.size, 3334 - 34);
  assert.ok(performance.now() - start < 200, "generous bound: the browser benchmark measures the real figure");
});
