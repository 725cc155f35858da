import { test } from "node:test";
import assert from "node:assert/strict";
import { elapsedSeconds, formatElapsed, histogramBars, histogramSvg, progressText, STATUS_COLOURS, TERMINAL } from "../job_card.js";
import { progressText as monitorProgressText } from "../queue_monitor.js";

test("elapsed time ticks while running and stops at the end", () => {
  assert.equal(elapsedSeconds({ time_started: null }, 100), null);
  assert.equal(elapsedSeconds({ time_started: 90, time_finished: null }, 100), 10);
  assert.equal(elapsedSeconds({ time_started: 90, time_finished: 95 }, 100), 5);
  assert.equal(formatElapsed(3.21), "3.2 s");
  assert.equal(formatElapsed(63), "1 min 03 s");
  assert.equal(formatElapsed(3725), "1 h 02 min");
  assert.equal(formatElapsed(null), "");
});

test("histogram bars are in bitstring order, counts or probabilities", () => {
  const bars = histogramBars({ 11: 30, "00": 50, 10: 20 });
  assert.deepEqual(bars.map((b) => b.bitstring), ["00", "10", "11"]);
  assert.deepEqual(bars.map((b) => b.value), [50, 20, 30]);
  assert.ok(bars[0].height <= 1 && bars[0].height > 0.5, "the tallest bar fits under the axis' top");
  const probabilities = histogramBars({ 0: 1, 1: 3 }, { probabilities: true });
  assert.deepEqual(probabilities.map((b) => b.value), [0.25, 0.75]);
});

test("histogram svg: one bar per outcome, labels rotate with many outcomes", () => {
  const few = histogramSvg({ "00": 5, 11: 5 });
  assert.equal((few.match(/<rect /g) || []).length, 2);
  assert.ok(!few.includes("rotate(90"));
  const many = {};
  for (let i = 0; i < 32; i++) many[i.toString(2).padStart(5, "0")] = i + 1;
  const svg = histogramSvg(many);
  assert.equal((svg.match(/<rect /g) || []).length, 32);
  assert.ok(svg.includes("rotate(90"));
  assert.ok(histogramSvg({ "<x>": 1 }).includes("&#60;x&#62;"), "labels are escaped");
});

test("every status has a colour and the terminal set matches the lifecycle", () => {
  assert.deepEqual(Object.keys(STATUS_COLOURS), ["pending", "queued", "running", "cancelling", "completed", "failed", "cancelled"]);
  assert.deepEqual([...TERMINAL].sort(), ["cancelled", "completed", "failed"]);
});

test("a sweep shows k of n points, a batch k/n circuits, in the card and the monitor", () => {
  for (const text of [progressText, monitorProgressText]) {
    assert.equal(text({ done: 3, total: 50, unit: "points" }), "3 of 50 points");
    assert.equal(text({ done: 2, total: 4, unit: "circuits" }), "2/4");
  }
});
