// The queue monitor's tag filter: a menu of the tags seen, rows of the tag chosen.
import { test } from "node:test";
import assert from "node:assert/strict";
import { installFakeDom } from "./fake_dom.js";
import { JobTable, createMonitorView } from "../queue_monitor.js";

installFakeDom();

const job = (id, fields = {}) => ({
  id, name: id, user: "ada", target: "sim", status: "completed", time_added: 0,
  time_started: null, time_finished: null, done: 1, total: 1, queue_seq: null, ...fields,
});

test("the table filters by tag; a job without tags (no field) is not shown under one", () => {
  const table = new JobTable();
  table.applySnapshot({
    seq: 1,
    jobs: [job("a", { tags: ["calib", "run-3"] }), job("b", { tags: ["run-3"] }), job("c")],
  });
  assert.deepEqual(table.values("tag"), ["calib", "run-3"]);
  table.setFilters({ tag: "run-3" });
  assert.deepEqual(table.rows().map((j) => j.id).sort(), ["a", "b"]);
  table.setFilters({ tag: "calib", user: "ada" });
  assert.deepEqual(table.rows().map((j) => j.id), ["a"]);
  table.setFilters({ tag: "" });
  assert.equal(table.rows().length, 3);
});

test("the view's tag menu lists tags as patches bring them, and choosing one filters", () => {
  const el = document.createElement("div");
  const view = createMonitorView(el);
  view.applySnapshot({ seq: 1, jobs: [job("a", { tags: ["calib"] }), job("b")] });
  const [menu] = el.byClass("qnb-filter-tag");
  assert.deepEqual(menu.options.map((o) => o.value), ["", "calib"]);
  // A new tag arrives with a patch: the menu gains it.
  view.applyPatch({ seq: 2, jobs: [job("c", { tags: ["sweep"] })] });
  assert.deepEqual(menu.options.map((o) => o.value), ["", "calib", "sweep"]);
  menu.value = "sweep";
  menu.dispatch("change");
  assert.deepEqual(view.table.rows().map((j) => j.id), ["c"]);
  const shown = el.byClass("qnb-row").filter((row) => row.style.display !== "none").map((row) => row.dataset.jobId);
  assert.deepEqual(shown, ["c"]);
  view.destroy();
});
