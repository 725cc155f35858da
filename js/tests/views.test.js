// Both views as the page gets them: through view_loader.js, with the code and the one
// channel client from the action channel. A removed view leaves nothing behind, and both
// views get the same reply from an action.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { FakeElement, fakeChannel, fakeModel, installFakeDom, timerCount } from "./fake_dom.js";
import { channelClient } from "../action_client.js";
import { viewFromChannel } from "../view_loader.js";
import jobCard from "../job_card.js";
import queueMonitor from "../queue_monitor.js";

installFakeDom();
// Node imports data: URLs, not Blob URLs: the loader gets the one, as if it were the other.
globalThis.Blob = class {
  constructor(parts) {
    this.code = parts.join("");
  }
};
URL.createObjectURL = (blob) => `data:text/javascript,${encodeURIComponent(blob.code)}`;

const code = (name) => readFileSync(new URL(`../${name}`, import.meta.url), "utf-8");
// As ActionChannel.CODE in qnb/notebook/_widgets.py.
const CHANNEL_TRAITS = {
  card_module: code("job_card.js"),
  monitor_module: code("queue_monitor.js"),
  client_module: code("action_client.js"),
  card_style: code("qnb.css"),
};

const job = (id, fields = {}) => ({
  id, name: id, user: "ada", target: "sim", status: "queued", time_added: 0,
  time_started: null, time_finished: null, done: 0, total: 1, queue_seq: 1,
  position: null, connection: null, error: null, ...fields,
});

const VIEWS = {
  card: { trait: "card_module", module: jobCard, traits: { job: job("j1"), position: 1, counts: {}, channel_id: "c" } },
  monitor: {
    trait: "monitor_module",
    module: queueMonitor,
    traits: { channel_id: "c", monitor_id: "m", status_filter: "", target_filter: "", user_filter: "" },
  },
};

// Everything a view could leave behind: listeners on its model, on the channel and in the
// DOM (its element and the document), and timers.
function leftovers(model, el) {
  return {
    model: model.listenerCount(),
    channel: model.channel.listenerCount(),
    dom: el.listenerCount() + document.listenerCount(),
    timers: timerCount(),
  };
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

// Resolves once `condition()` holds; fails the test after `ms`.
async function waitFor(condition, what, ms = 5_000) {
  const deadline = Date.now() + ms;
  while (!condition()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

for (const [name, { trait, traits }] of Object.entries(VIEWS)) {
  test(`the ${name} removes every listener and timer it added`, async () => {
    const channel = fakeChannel({ traits: CHANNEL_TRAITS }); // never answers
    const model = fakeModel(traits, { channel });
    const el = new FakeElement("div");
    const before = leftovers(model, el);
    const cleanup = await viewFromChannel(trait).render({ model, el });
    assert.equal(typeof cleanup, "function");
    assert.equal(document.getElementById("qnb-style").textContent, CHANNEL_TRAITS.card_style);
    if (name === "monitor") {
      channel.receive({ type: "snapshot", monitor: "m", seq: 0, jobs: [job("j1")] });
      model.receive({ type: "patch", seq: 1, jobs: [job("j2")] });
      el.byClass("qnb-viewport")[0].dispatch("scroll"); // schedules a frame
      el.byClass("qnb-remove")[0].dispatch("click");
    } else {
      el.byClass("qnb-cancel")[0].dispatch("click");
    }
    await tick();
    assert.equal(channel.sent.filter((msg) => msg.type === "action").length, 1);
    const during = leftovers(model, el);
    for (const kind of Object.keys(before)) {
      assert.ok(during[kind] > before[kind], `the ${name} added no ${kind} listener: the count proves nothing`);
    }
    cleanup();
    assert.deepEqual(leftovers(model, el), before);
  });
}

// A client whose replies the test sees, over a channel whose kernel answers every action.
function spiedClient(answer) {
  const channel = fakeChannel({ answer: (msg) => msg.type === "action" && { type: "ack", request_id: msg.request_id, ...answer } });
  const client = channelClient(channel);
  const replies = [];
  const request = client.request;
  client.request = async (...args) => {
    const reply = await request(...args);
    replies.push(reply);
    return reply;
  };
  return { client, channel, replies };
}

async function actOnBothViews(answer) {
  const results = {};
  for (const [name, { module, traits }] of Object.entries(VIEWS)) {
    const { client, channel, replies } = spiedClient(answer);
    const model = fakeModel(traits, { channel });
    const el = new FakeElement("div");
    const cleanup = module.render({ model, el, client });
    channel.receive({ type: "snapshot", monitor: "m", seq: 0, jobs: [job("j1")] }); // the monitor's rows
    el.byClass("qnb-cancel")[0].dispatch("click");
    await tick();
    cleanup();
    client.close();
    assert.equal(replies.length, 1, name);
    results[name] = { reply: replies[0], el };
  }
  return results;
}

test("both views get the same reply from an action, and show it", async () => {
  const done = await actOnBothViews({ ok: true, status: "cancelled", thread: "subshell-1" });
  assert.deepEqual(done.card.reply, done.monitor.reply);
  assert.deepEqual(done.card.reply, {
    ok: true, outcome: "done", message: "", thread: "subshell-1", status: "cancelled", new_job_id: null,
  });
  assert.equal(done.card.el.byClass("qnb-card")[0].dataset.action, "cancel:done");
  assert.equal(done.card.el.byClass("qnb-card")[0].dataset.actionThread, "subshell-1");
  assert.deepEqual(JSON.parse(done.monitor.el.byClass("qnb-monitor")[0].dataset.lastAck), {
    action: "cancel", outcome: "done", ok: true, thread: "subshell-1",
  });

  const refused = await actOnBothViews({ ok: false, message: "job j1 is not yours", thread: "subshell-1" });
  assert.deepEqual(refused.card.reply, refused.monitor.reply);
  assert.equal(refused.card.reply.outcome, "refused");
  assert.equal(refused.card.el.byClass("qnb-note")[0].textContent, "job j1 is not yours");
  assert.equal(refused.monitor.el.byClass("qnb-chip")[0].textContent, "job j1 is not yours");
});

test("a request times out, or fails to send, with the same reply shape and no timer left", async () => {
  const keys = Object.keys(
    await channelClient(fakeChannel({ answer: (msg) => msg.type === "action" && { type: "ack", request_id: msg.request_id, ok: true } })).request("cancel", "j1"),
  ).sort();

  const timers = timerCount();
  const silent = channelClient(fakeChannel(), { timeoutMs: 5 });
  const late = await silent.request("cancel", "j1");
  assert.equal(late.ok, false);
  assert.equal(late.outcome, "timeout");
  assert.match(late.message, /no answer from the kernel/);
  assert.deepEqual(Object.keys(late).sort(), keys);
  assert.equal(timerCount(), timers);

  const broken = fakeChannel();
  broken.send = () => {
    throw new Error("Kernel is dead");
  };
  const warn = console.warn;
  console.warn = () => {};
  try {
    const unreachable = await channelClient(broken).request("remove", "j1");
    assert.equal(unreachable.outcome, "unreachable");
    assert.match(unreachable.message, /Kernel is dead/);
    assert.deepEqual(Object.keys(unreachable).sort(), keys);
  } finally {
    console.warn = warn;
  }
  assert.equal(timerCount(), timers);

  const closing = channelClient(fakeChannel());
  const waiting = closing.request("cancel", "j1");
  closing.close();
  assert.equal((await waiting).outcome, "closed");
  assert.equal(timerCount(), timers);
});

test("a late or unknown ack is ignored; other messages reach every subscriber until it unsubscribes", async () => {
  const channel = fakeChannel();
  const client = channelClient(channel);
  const seen = [];
  const stop = client.onMessage((msg) => seen.push(msg.type));
  channel.receive({ type: "ack", request_id: "nobody", ok: true });
  channel.receive({ type: "snapshot", monitor: "m", seq: 0, jobs: [] });
  stop();
  channel.receive({ type: "snapshot", monitor: "m", seq: 0, jobs: [] });
  assert.deepEqual(seen, ["ack", "snapshot"]);
  assert.deepEqual(channel.sent, [{ type: "hello" }]);
  client.close();
  assert.equal(channel.listenerCount(), 0);
});

test("a monitor whose snapshot request went unanswered asks again until one arrives", async () => {
  let asked = 0;
  // Running: its elapsed time changes at every tick, which tells the test a tick passed.
  const running = job("j1", { status: "running", time_started: Date.now() / 1000 - 5 });
  const channel = fakeChannel({
    traits: CHANNEL_TRAITS,
    // The first request is lost; the second is answered.
    answer: (msg) => msg.type === "snapshot" && ++asked === 2
      ? { type: "snapshot", monitor: "m", seq: 0, jobs: [running] } : undefined,
  });
  const model = fakeModel(VIEWS.monitor.traits, { channel });
  const el = new FakeElement("div");
  const cleanup = await viewFromChannel("monitor_module").render({ model, el });
  const monitor = el.byClass("qnb-monitor")[0];
  await waitFor(() => monitor.dataset.snapshot === "received", "the snapshot");
  assert.equal(asked, 2);
  const elapsed = () => el.byClass("qnb-elapsed")[0]?.textContent;
  const first = elapsed();
  await waitFor(() => elapsed() !== first, "a tick after the snapshot"); // no third request then
  assert.equal(asked, 2);
  cleanup();
});
