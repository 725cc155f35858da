// Each widget's whole module: its view's code and the shared channel client travel once,
// as text on the kernel's action channel (why: ActionChannel in qnb/notebook/_widgets.py).
export function viewFromChannel(trait) {
  return {
    async render({ model, el }) {
      const channel = await model.widget_manager.get_model(model.get("channel_id"));
      const css = channel.get("card_style");
      const style = document.getElementById("qnb-style") ?? document.head.appendChild(document.createElement("style"));
      style.id = "qnb-style";
      if (style.textContent !== css) style.textContent = css;
      const [view, { channelClient }] = await Promise.all([load(channel.get(trait)), load(channel.get("client_module"))]);
      const client = channelClient(channel);
      const kernel = watchKernel({ channel, manager: model.widget_manager });
      const saved = savedViewNextTo(el);
      try {
        const cleanup = await view.default.render({ model, el, client, kernel });
        if (saved) saved.style.display = "none"; // the live view stands in for it
        return () => {
          cleanup?.();
          kernel.close();
          client.close();
          if (saved) saved.style.display = ""; // widgets cleared (a restart): the saved view again
        };
      } catch (error) {
        kernel.close();
        client.close();
        throw error;
      }
    },
  };
}

// One Blob URL per code text: every view shares one instance of each module.
const urls = (globalThis.__qnbModuleUrls ??= new Map());
function load(code) {
  if (!urls.has(code)) urls.set(code, URL.createObjectURL(new Blob([code], { type: "text/javascript" })));
  return import(/* webpackIgnore: true */ urls.get(code));
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
// output right before this view's output, when it holds one.
function savedViewNextTo(el) {
  const output = el.closest?.(".jp-OutputArea-child");
  const previous = output?.previousElementSibling;
  return previous?.querySelector?.(".qnb-saved-view") ? previous : null;
}
