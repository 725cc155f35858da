"""Front-end cost of the queue monitor in Debian's Chromium (headless, via Playwright).

Loads js/queue_monitor.js as a module into a blank page and measures, with the page's
own clock: rendering a 10,000-job snapshot (data, sort, positions, DOM of the visible
rows, layout) and applying 100-job patches.

    python benchmarks/bench_render.py [--jobs 10000] [--patch 100] [--repeats 30]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from playwright.sync_api import sync_playwright

JS = Path(__file__).resolve().parent.parent / "js"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

MEASURE = r"""
async ([source, nJobs, patchSize, repeats]) => {
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  const monitor = await import(url);
  const statuses = ["queued", "running", "completed", "failed", "cancelled"];
  const now = Date.now() / 1000;
  const job = (i, status) => ({
    id: i.toString(16).padStart(32, "0"), name: `sweep point ${i}`, target: i % 4 ? "emulator" : "sim",
    user: `user${i % 7}`, shots: 1000, status, time_added: now - nJobs + i,
    time_started: status === "queued" ? null : now - 5, time_finished: null, error: null,
    parent_id: null, done: status === "completed" ? 1 : 0, total: 1,
    queue_seq: status === "queued" ? i : null,
  });
  const jobs = Array.from({ length: nJobs }, (_, i) => job(i, statuses[i % statuses.length]));
  const frame = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));

  const renders = [];
  for (let r = 0; r < 5; r++) {
    const el = document.createElement("div");
    document.body.replaceChildren(el);
    await frame();
    const t0 = performance.now();
    const view = monitor.createMonitorView(el);
    view.applySnapshot({ seq: 0, jobs });
    el.getBoundingClientRect(); document.body.offsetHeight;  // force style and layout
    const t1 = performance.now();
    await frame();
    renders.push({ script_layout: t1 - t0, to_next_frame: performance.now() - t0,
                   rows_in_dom: el.querySelectorAll(".qnb-row").length });
  }

  const el = document.createElement("div");
  document.body.replaceChildren(el);
  const view = monitor.createMonitorView(el);
  view.applySnapshot({ seq: 0, jobs });
  await frame();
  const patches = [];
  for (let r = 1; r <= repeats; r++) {
    const changed = [];
    for (let k = 0; k < patchSize; k++) {
      const i = (r * 7919 + k * 104729) % nJobs;
      changed.push(job(i, statuses[(i + r) % statuses.length]));
    }
    const t0 = performance.now();
    view.applyPatch({ seq: r, jobs: changed });
    el.getBoundingClientRect(); document.body.offsetHeight;
    patches.push(performance.now() - t0);
    await frame();
  }
  return { renders, patches };
}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--patch", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=100)
    args = parser.parse_args()
    source = (JS / "queue_monitor.js").read_text(encoding="utf-8")
    style = (JS / "qnb.css").read_text(encoding="utf-8")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 900})
            page.set_content(f"<!doctype html><html><head><style>{style}</style></head><body></body></html>")
            result = page.evaluate(MEASURE, [source, args.jobs, args.patch, args.repeats])
            version = browser.version
        finally:
            browser.close()
    renders, patches = result["renders"], result["patches"]
    first, rest = renders[0], renders[1:]
    print(f"Chromium {version}; {args.jobs} jobs; DOM rows rendered: {first['rows_in_dom']}")
    print(f"render snapshot: first {first['script_layout']:.1f} ms (to next frame {first['to_next_frame']:.1f} ms); "
          f"warm median {statistics.median(r['script_layout'] for r in rest):.1f} ms "
          f"(to next frame {statistics.median(r['to_next_frame'] for r in rest):.1f} ms)  goal <= 300 ms")
    print(f"apply {args.patch}-job patch: median {statistics.median(patches):.2f} ms, "
          f"p90 {sorted(patches)[int(0.9 * len(patches))]:.2f} ms, max {max(patches):.2f} ms "
          f"over {len(patches)} patches  goal <= 16 ms")


if __name__ == "__main__":
    main()
