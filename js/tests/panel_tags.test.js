// The JupyterLab jobs panel's search finds jobs by tag: any text of a tag, or "tag:NAME"
// for the jobs with exactly that tag.
import { test } from "node:test";
import assert from "node:assert/strict";
import { JobsModel } from "../../labextension/src/model.js";

const row = (id, fields = {}) => ({
  id, name: id, target: "sim", user: "ada", status: "completed", time_added: 1, done: 1, total: 1, ...fields,
});

test("the panel's search matches tags, and tag:NAME only the jobs with that tag", () => {
  const model = new JobsModel();
  model.load({
    version: 1,
    jobs: [row("a", { tags: ["Calib", "run-3"] }), row("b", { tags: ["run-30"] }), row("c")],
  });
  const shown = () => model.shown.map((r) => r.id).sort();
  model.search = "run-3";
  model.refresh();
  assert.deepEqual(shown(), ["a", "b"]);
  model.search = "tag:run-3";
  model.refresh();
  assert.deepEqual(shown(), ["a"]);
  model.search = "tag:calib"; // any case
  model.refresh();
  assert.deepEqual(shown(), ["a"]);
  model.search = "";
  model.refresh();
  assert.deepEqual(shown(), ["a", "b", "c"]);
});
