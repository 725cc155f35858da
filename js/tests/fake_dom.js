// Just enough of a DOM for rendering the widgets in node (no jsdom here): elements
// with classes, text, children, style, dataset and listeners.

export class FakeElement {
  constructor(tag) {
    this.tagName = tag.toUpperCase();
    this.children = [];
    this.className = "";
    this.style = {};
    this.dataset = {};
    this.listeners = {};
    this.value = "";
    this._text = "";
  }
  get textContent() {
    return this._text + this.children.map((c) => (typeof c === "string" ? c : c.textContent)).join("");
  }
  set textContent(text) {
    this._text = String(text);
    this.children = [];
  }
  get options() {
    return this.children.filter((c) => c instanceof FakeOption);
  }
  append(...nodes) {
    this.children.push(...nodes);
  }
  replaceChildren(...nodes) {
    this._text = "";
    this.children = [...nodes];
  }
  addEventListener(type, listener) {
    (this.listeners[type] ??= []).push(listener);
  }
  // Every descendant element with class `name`, in document order.
  byClass(name) {
    const found = [];
    for (const child of this.children) {
      if (typeof child === "string") continue;
      if (child.className.split(" ").includes(name)) found.push(child);
      found.push(...child.byClass(name));
    }
    return found;
  }
  // Shown unless it or an ancestor up to `root` has display: none.
  visibleIn(root) {
    const path = [];
    const search = (node) => {
      if (node === this) return true;
      for (const child of node.children) {
        if (typeof child !== "string" && search(child)) {
          path.push(child);
          return true;
        }
      }
      return false;
    };
    return search(root) && [this, ...path].every((node) => node.style.display !== "none");
  }
}

export class FakeOption extends FakeElement {
  constructor(text, value) {
    super("option");
    this.textContent = text;
    this.value = value;
  }
}

export function installFakeDom() {
  globalThis.document = {
    createElement: (tag) => new FakeElement(tag),
    getElementById: () => null,
    head: new FakeElement("head"),
  };
  globalThis.Option = FakeOption;
  globalThis.requestAnimationFrame = (callback) => setTimeout(callback, 0);
}

// An anywidget model: traits in a Map, change listeners, and an action channel that
// never answers.
export function fakeModel(traits) {
  const values = new Map(Object.entries(traits));
  const listeners = new Map();
  const channel = { on() {}, send() {} };
  return {
    get: (name) => values.get(name),
    set(name, value) {
      values.set(name, value);
      for (const listener of listeners.get(`change:${name}`) ?? []) listener();
    },
    on(event, listener) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event).add(listener);
    },
    off(event, listener) {
      listeners.get(event)?.delete(listener);
    },
    widget_manager: { get_model: async () => channel },
  };
}
