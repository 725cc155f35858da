// A job's results tab: per circuit, its counts as a table and a bar histogram (SVG, in
// the theme's colours).

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== undefined) node.textContent = text;
  return node;
}

function histogram(counts) {
  const entries = Object.entries(counts);
  const most = Math.max(1, ...entries.map(e => e[1]));
  const barW = 28;
  const gap = 8;
  const height = 160;
  const width = entries.length * (barW + gap) + gap;
  const NS = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(NS, 'svg');
  svg.setAttribute('class', 'qnb-jp-hist');
  svg.setAttribute('width', String(width));
  svg.setAttribute('height', String(height + 40));
  svg.setAttribute('role', 'img');
  svg.setAttribute('aria-label', 'Histogram of counts');
  entries.forEach(([outcome, n], i) => {
    const h = Math.max(1, (n / most) * height);
    const x = gap + i * (barW + gap);
    const bar = document.createElementNS(NS, 'rect');
    bar.setAttribute('x', String(x));
    bar.setAttribute('y', String(height - h + 14));
    bar.setAttribute('width', String(barW));
    bar.setAttribute('height', String(h));
    bar.setAttribute('class', 'qnb-jp-hist-bar');
    const title = document.createElementNS(NS, 'title');
    title.textContent = `${outcome}: ${n}`;
    bar.appendChild(title);
    const count = document.createElementNS(NS, 'text');
    count.setAttribute('x', String(x + barW / 2));
    count.setAttribute('y', String(height - h + 10));
    count.setAttribute('class', 'qnb-jp-hist-count');
    count.textContent = String(n);
    const label = document.createElementNS(NS, 'text');
    label.setAttribute('x', String(x + barW / 2));
    label.setAttribute('y', String(height + 30));
    label.setAttribute('class', 'qnb-jp-hist-label');
    label.textContent = outcome;
    svg.append(bar, count, label);
  });
  return svg;
}

export function resultNode(found) {
  const root = el('div', { class: 'qnb-jp-result-body', 'data-job-id': found.id });
  root.appendChild(el('h2', {}, `${found.name} — ${found.status}`));
  root.appendChild(el('p', { class: 'qnb-jp-result-meta' }, `${found.target} · job ${found.id}`));
  for (const c of found.circuits) {
    const section = el('section', { class: 'qnb-jp-result-circuit', 'data-label': c.label });
    section.appendChild(el('h3', {}, c.label));
    if (c.missing) {
      section.appendChild(el('p', { class: 'qnb-jp-result-missing' }, `No result: ${c.missing}`));
      root.appendChild(section);
      continue;
    }
    const more = c.outcomes > c.shown ? ` (the ${c.shown} most frequent of ${c.outcomes} outcomes)` : '';
    section.appendChild(el('p', {}, `${c.shots} shots${more}`));
    section.appendChild(histogram(c.counts));
    const table = el('table', { class: 'qnb-jp-counts' });
    const head = el('tr');
    head.append(el('th', { scope: 'col' }, 'outcome'), el('th', { scope: 'col' }, 'count'));
    table.appendChild(head);
    for (const [outcome, n] of Object.entries(c.counts)) {
      const tr = el('tr');
      tr.append(el('td', {}, outcome), el('td', {}, String(n)));
      table.appendChild(tr);
    }
    section.appendChild(table);
    root.appendChild(section);
  }
  return root;
}
