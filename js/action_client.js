// The one client of the kernel's action channel, shared by every view (the job card and
// the queue monitor). It travels to the page as text on the channel and view_loader.js
// hands one client to each view it renders (see there for why).

// How long a request waits for the kernel's answer. Without subshells a click waits for
// the running cell (after "Run all", for every queued cell), so this is generous; the
// kernel may still act later, and the job's status then shows it.
export const ANSWER_TIMEOUT_MS = 120_000;

// Every reply has this shape, whatever happened (views never branch on where it came from).
function reply({ ok = false, outcome, message = "", thread = null, status = null, new_job_id = null }) {
  return { ok, outcome, message, thread, status, new_job_id };
}

// A client of `channel` (the ActionChannel's model). `request` always resolves, with a
// reply: "done" or "refused" (the kernel's answer), "timeout" (no answer in time),
// "unreachable" (the message could not be sent) or "closed" (the view went away).
export function channelClient(channel, { timeoutMs = ANSWER_TIMEOUT_MS } = {}) {
  const prefix = Math.random().toString(36).slice(2, 8);
  const waiting = new Map(); // request id -> { resolve, timer }
  const listeners = new Set();
  let nextId = 0;
  let closed = false;

  function settle(requestId, answer) {
    const entry = waiting.get(requestId);
    if (!entry) return;
    waiting.delete(requestId);
    clearTimeout(entry.timer);
    entry.resolve(reply(answer));
  }

  function onMessage(msg) {
    if (msg.type === "ack") settle(msg.request_id, { ...msg, outcome: msg.ok ? "done" : "refused" });
    for (const listener of listeners) listener(msg);
  }

  // Returns an error message, or null once the message is on its way.
  function trySend(msg) {
    if (closed) return "the view was closed";
    try {
      channel.send(msg);
      return null;
    } catch (error) {
      console.warn("[qnb] could not send to the kernel:", error);
      return `could not reach the kernel: ${error?.message ?? error}`;
    }
  }

  channel.on("msg:custom", onMessage);
  // The kernel answers from its handler and names the thread that handled it: a subshell
  // thread in JupyterLab, where clicks work while a cell is busy.
  trySend({ type: "hello" });

  return {
    // `listener(msg)` for every message on the channel; returns its unsubscribe function.
    onMessage(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    // True when the message was sent (no answer is awaited).
    send: (msg) => trySend(msg) === null,
    // One page action on one job; resolves with a reply (see above), never rejects.
    request(action, jobId) {
      const requestId = `${prefix}-${++nextId}`;
      return new Promise((resolve) => {
        const timer = setTimeout(
          () => settle(requestId, { outcome: "timeout", message: `no answer from the kernel in ${Math.round(timeoutMs / 1000)} s; it may still act when it is free` }),
          timeoutMs,
        );
        waiting.set(requestId, { resolve, timer });
        const error = trySend({ type: "action", action, job_id: jobId, request_id: requestId });
        if (error) settle(requestId, { outcome: closed ? "closed" : "unreachable", message: error });
      });
    },
    // Stops listening; requests still waiting resolve as "closed".
    close() {
      if (closed) return;
      closed = true;
      channel.off("msg:custom", onMessage);
      listeners.clear();
      for (const requestId of [...waiting.keys()]) {
        settle(requestId, { outcome: "closed", message: "the view was closed" });
      }
    },
  };
}

// The kernel states after which the process that fed a view is gone for good (a restarted
// kernel is another process: its widgets are not these).
export const GONE_STATES = new Set(["dead", "restarting", "autorestarting"]);

// Whether the kernel behind a view has gone: its comm closed (ipywidgets sets comm_live
// false), or the kernel connection (JupyterLab's manager knows it) reports dead or
// restarting, is disposed or was replaced. Checked on every change of either and once a
// second (a status can change while no event reaches us).
export function watchKernel({ channel, manager }, { intervalMs = 1000 } = {}) {
  const kernel = manager?.kernel ?? null;
  const listeners = new Set();
  let gone = false;
  const isGone = () =>
    channel.comm_live === false ||
    (kernel !== null &&
      (GONE_STATES.has(kernel.status) || kernel.isDisposed === true || (manager.kernel ?? null) !== kernel));
  const check = () => {
    if (!gone && isGone()) {
      gone = true;
      for (const listener of [...listeners]) listener();
    }
    return gone;
  };
  channel.on?.("comm_live_update", check);
  kernel?.statusChanged?.connect?.(check);
  const timer = setInterval(check, intervalMs);
  return {
    get gone() {
      return check();
    },
    onGone(listener) {
      listeners.add(listener);
      return () => listeners.delete(listener);
    },
    check,
    close() {
      clearInterval(timer);
      listeners.clear();
      channel.off?.("comm_live_update", check);
      kernel?.statusChanged?.disconnect?.(check);
    },
  };
}

// The saved view (qnb/notebook/_widgets.py displays one just before each widget): the
// output right before this view's output, when it holds one (view_loader.js hides it
// while the live view shows).
export function savedViewNextTo(el) {
  const output = el.closest?.(".jp-OutputArea-child");
  const previous = output?.previousElementSibling;
  return previous?.querySelector?.(".qnb-saved-view") ? previous : null;
}

// Renders `view` (a module's default export) for view_loader.js: with its own client of
// the channel, a watch on the kernel, and the saved view before it hidden while it shows.
export async function renderView(view, { model, el, channel }) {
  const client = channelClient(channel);
  const kernel = watchKernel({ channel, manager: model.widget_manager });
  const saved = savedViewNextTo(el);
  const close = () => {
    kernel.close();
    client.close();
  };
  try {
    const cleanup = await view.render({ model, el, client, kernel });
    if (saved) saved.style.display = "none";
    return () => {
      cleanup?.();
      close();
      if (saved) saved.style.display = ""; // widgets cleared (a restart): the saved view again
    };
  } catch (error) {
    close();
    throw error;
  }
}
