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
      const [view, shared] = await Promise.all([load(channel.get(trait)), load(channel.get("client_module"))]);
      return shared.renderView(view.default, { model, el, channel });
    },
  };
}

// One Blob URL per code text: every view shares one instance of each module.
const urls = (globalThis.__qnbModuleUrls ??= new Map());
function load(code) {
  if (!urls.has(code)) urls.set(code, URL.createObjectURL(new Blob([code], { type: "text/javascript" })));
  return import(/* webpackIgnore: true */ urls.get(code));
}
