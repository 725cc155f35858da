// Just enough of a DOM for rendering the widgets in node (no jsdom here): elements
// with classes, text, children, style, dataset and listeners; and anywidget models and an
// action channel that count their listeners, and timers that count themselves, so a test
// can check that a removed view left nothing behind.

// What an AbortSignal removes (one abort hook per signal, as a browser has none at all).
const removals = new WeakMap();
function removedOnAbort(signal) {
  if (!removals.has(signal)) {
    removals.set(signal, []);
    signal.addEventListener("abort", () => removals.get(signal).forEach((remove) => remove()), { once: true });
  }
  return removals.get(signal);
}

export class FakeElement {
  constructor(tag) {
    this.tagName = tag.toUpperCase();
    this.children = [];
    this.parentNode = null;
    this.className = "";
    this.id = "";
    this.style = {};
    this.dataset = {};
    this.listeners = {};
    this.value = "";
    this.scrollTop = 0;
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
    for (const node of nodes) if (typeof node !== "string") node.parentNode = this;
    this.children.push(...nodes);
  }
  appendChild(node) {
    this.append(node);
    return node;
  }
  replaceChildren(...nodes) {
    this._text = "";
    this.children = [];
    this.append(...nodes);
  }
  addEventListener(type, listener, { signal } = {}) {
    if (signal?.aborted) return;
    (this.listeners[type] ??= []).push(listener);
    if (signal) removedOnAbort(signal).push(() => this.removeEventListener(type, listener));
  }
  removeEventListener(type, listener) {
    this.listeners[type] = (this.listeners[type] ?? []).filter((l) => l !== listener);
  }
  // Calls the listeners of `type` here and on every ancestor (events bubble).
  dispatch(type, event = {}) {
    event.target ??= this;
    for (let node = this; node; node = node.parentNode) {
      for (const listener of node.listeners[type] ?? []) listener(event);
    }
  }
  // Listeners on this element and every descendant.
  listenerCount() {
    const own = Object.values(this.listeners).reduce((sum, list) => sum + list.length, 0);
    return own + this.elements().reduce((sum, child) => sum + child.listenerCount(), 0);
  }
  elements() {
    return this.children.filter((c) => typeof c !== "string");
  }
  // `.class`, `tag` or `tag[data-name]`: all the widgets' code asks for.
  matches(selector) {
    if (selector.startsWith(".")) return this.className.split(" ").includes(selector.slice(1));
    const [, tag, data] = selector.match(/^(\w+)(?:\[data-([\w-]+)\])?$/);
    const key = data?.replace(/-(\w)/g, (_, c) => c.toUpperCase());
    return this.tagName === tag.toUpperCase() && (!key || key in this.dataset);
  }
  closest(selector) {
    for (let node = this; node; node = node.parentNode) if (node.matches?.(selector)) return node;
    return null;
  }
  // Every descendant element with class `name`, in document order.
  byClass(name) {
    const found = [];
    for (const child of this.elements()) {
      if (child.className.split(" ").includes(name)) found.push(child);
      found.push(...child.byClass(name));
    }
    return found;
  }
  byId(id) {
    for (const child of this.elements()) {
      if (child.id === id) return child;
      const found = child.byId(id);
      if (found) return found;
    }
    return null;
  }
  // Shown unless it or an ancestor up to `root` has display: none.
  visibleIn(root) {
    const path = [];
    const search = (node) => {
      if (node === this) return true;
      for (const child of node.elements()) {
        if (search(child)) {
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

const liveTimers = new Set();

// Timers (and animation frames) still pending or repeating.
export function timerCount() {
  return liveTimers.size;
}

function countTimers() {
  if (globalThis.setTimeout.counted) return;
  const { setTimeout, clearTimeout, setInterval, clearInterval } = globalThis;
  globalThis.setTimeout = Object.assign(
    (fn, ms, ...args) => {
      const handle = setTimeout(() => {
        liveTimers.delete(handle);
        fn(...args);
      }, ms);
      liveTimers.add(handle);
      return handle;
    },
    { counted: true },
  );
  globalThis.setInterval = (fn, ms, ...args) => {
    const handle = setInterval(fn, ms, ...args);
    liveTimers.add(handle);
    return handle;
  };
  globalThis.clearTimeout = (handle) => {
    liveTimers.delete(handle);
    clearTimeout(handle);
  };
  globalThis.clearInterval = (handle) => {
    liveTimers.delete(handle);
    clearInterval(handle);
  };
}

export function installFakeDom() {
  countTimers();
  const document = new FakeElement("#document");
  document.head = document.appendChild(new FakeElement("head"));
  document.body = document.appendChild(new FakeElement("body"));
  document.createElement = (tag) => new FakeElement(tag);
  document.getElementById = (id) => document.byId(id);
  globalThis.document = document;
  globalThis.Option = FakeOption;
  globalThis.requestAnimationFrame = (callback) => setTimeout(callback, 16);
  globalThis.cancelAnimationFrame = (handle) => clearTimeout(handle);
}

// Listeners by event name, counted.
function listenerTable() {
  const listeners = new Map();
  return {
    on(event, listener) {
      if (!listeners.has(event)) listeners.set(event, new Set());
      listeners.get(event).add(listener);
    },
    off(event, listener) {
      listeners.get(event)?.delete(listener);
    },
    emit(event, ...args) {
      for (const listener of [...(listeners.get(event) ?? [])]) listener(...args);
    },
    count: () => [...listeners.values()].reduce((sum, set) => sum + set.size, 0),
  };
}

// The kernel's action channel: traits (the front end's code), the messages the page sent,
// and `answer(msg)`, the kernel's reply to each message (none when it returns undefined).
export function fakeChannel({ traits = {}, answer = () => undefined } = {}) {
  const listeners = listenerTable();
  const sent = [];
  return {
    sent,
    get: (name) => traits[name],
    on: listeners.on,
    off: listeners.off,
    send(msg) {
      sent.push(msg);
      const reply = answer(msg);
      if (reply !== undefined) queueMicrotask(() => listeners.emit("msg:custom", reply));
    },
    // A message from the kernel.
    receive: (msg) => listeners.emit("msg:custom", msg),
    listenerCount: listeners.count,
  };
}

// An anywidget model: traits in a Map, change listeners, and an action channel (by
// default one that never answers).
export function fakeModel(traits, { channel = fakeChannel() } = {}) {
  const values = new Map(Object.entries(traits));
  const listeners = listenerTable();
  return {
    channel,
    get: (name) => values.get(name),
    set(name, value) {
      values.set(name, value);
      listeners.emit(`change:${name}`);
    },
    on: listeners.on,
    off: listeners.off,
    // A custom message from the kernel on this widget's own comm.
    receive: (msg) => listeners.emit("msg:custom", msg),
    listenerCount: listeners.count,
    widget_manager: { get_model: async () => channel },
  };
}
