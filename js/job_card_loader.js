// Each job card carries only this loader: the card's code (job_card.js) and style are
// held once by the kernel's action channel model, so a notebook with many cards saves
// one copy of the front-end code, not one per card.
const modules = (globalThis.__qnbCardModules ??= new Map());

async function cardModule(channel) {
  const code = channel.get("card_module");
  if (!modules.has(code)) {
    const url = URL.createObjectURL(new Blob([code], { type: "text/javascript" }));
    modules.set(code, import(/* webpackIgnore: true */ url));
    if (!document.getElementById("qnb-card-style")) {
      const style = document.createElement("style");
      style.id = "qnb-card-style";
      style.textContent = channel.get("card_style");
      document.head.append(style);
    }
  }
  return modules.get(code);
}

export default {
  async render({ model, el }) {
    const channel = await model.widget_manager.get_model(model.get("channel_id"));
    const card = await cardModule(channel);
    return card.default.render({ model, el });
  },
};
