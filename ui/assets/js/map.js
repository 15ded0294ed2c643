// The service map: services and virtual nodes (databases, caches, external peers) in layers
// from the callers on the left to the called on the right; edges coloured by error ratio.

import { get } from './api.js';
import { h, s, replace, notice, link } from './dom.js';
import * as fmt from './format.js';
import * as range from './range.js';

const NODE_W = 150;
const NODE_H = 36;
const COL_GAP = 190;
const ROW_GAP = 26;

function edgeColor(ratio) {
  if (ratio >= 0.05) return '#ef4444';
  if (ratio >= 0.01) return '#f59e0b';
  return '#10b981';
}

/** Layers by longest path from the nodes nothing calls (cycles are cut where met). */
function layers(nodes, edges) {
  const out = new Map(nodes.map((n) => [n.name, 0]));
  for (let round = 0; round < nodes.length; round++) {
    let changed = false;
    for (const e of edges) {
      if (e.client === e.server) continue;
      const next = (out.get(e.client) ?? 0) + 1;
      if (next > (out.get(e.server) ?? 0) && next < nodes.length) {
        out.set(e.server, next);
        changed = true;
      }
    }
    if (!changed) break;
  }
  return out;
}

export async function render(main, ctx) {
  const { params } = ctx;
  const r = range.fromParams(params);
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading the dependency graph…'));
  const detail = h('div');
  replace(
    main,
    h('h1', null, 'Service map', h('span', { class: 'muted' }, r.label)),
    h(
      'div',
      { class: 'toolbar' },
      range.picker(params, (p) => ctx.setParams(p)),
      h(
        'span',
        { class: 'legend' },
        h('span', null, h('i', { style: { background: '#10b981' } }), 'errors < 1%'),
        h('span', null, h('i', { style: { background: '#f59e0b' } }), '1–5%'),
        h('span', null, h('i', { style: { background: '#ef4444' } }), '≥ 5%'),
        h('span', null, 'dashed: not instrumented (database, cache, external)'),
        h('span', null, h('i', { class: 'alerting-key' }), 'red outline: a firing alert'),
      ),
    ),
    body,
    detail,
  );
  const [graph, firing] = await Promise.all([
    get('dependencies', { start: r.start, end: r.end }),
    get('alerts', { state: 'firing' }).catch(() => ({ alerts: [] })),
  ]);
  if (!ctx.current()) return;
  // Nodes and edges with firing alerts: a service's own alerts, and an edge's.
  const alertedNodes = new Set(firing.alerts.map((a) => a.labels.service).filter(Boolean));
  const alertedEdges = new Set(
    firing.alerts
      .filter((a) => a.labels.client && a.labels.server)
      .map((a) => `${a.labels.client}->${a.labels.server}`),
  );
  if (!graph.nodes.length) {
    replace(body, notice('info', 'No calls between services in this range.'));
    return;
  }
  const layer = layers(graph.nodes, graph.edges);
  const columns = [];
  for (const n of graph.nodes.slice().sort((a, b) => a.name.localeCompare(b.name))) {
    const l = layer.get(n.name) ?? 0;
    (columns[l] ||= []).push(n);
  }
  const pos = new Map();
  const tallest = Math.max(...columns.map((c) => (c || []).length));
  const height = Math.max(tallest * (NODE_H + ROW_GAP) + ROW_GAP, 160);
  columns.forEach((col, i) => {
    const colHeight = col.length * (NODE_H + ROW_GAP) - ROW_GAP;
    col.forEach((n, j) =>
      pos.set(n.name, {
        x: 20 + i * (NODE_W + COL_GAP),
        y: (height - colHeight) / 2 + j * (NODE_H + ROW_GAP),
      }),
    );
  });
  const width = 40 + columns.length * (NODE_W + COL_GAP) - COL_GAP;
  const svg = s(
    'svg',
    {
      class: 'map',
      viewBox: `0 0 ${width} ${height}`,
      width,
      height,
      role: 'img',
      'aria-label': 'service map',
    },
    s(
      'defs',
      null,
      ['#10b981', '#f59e0b', '#ef4444'].map((c) =>
        s(
          'marker',
          {
            id: `arrow${c.slice(1)}`,
            viewBox: '0 0 10 10',
            refX: 9,
            refY: 5,
            markerWidth: 7,
            markerHeight: 7,
            orient: 'auto-start-reverse',
          },
          s('path', { d: 'M0,0 L10,5 L0,10 z', fill: c }),
        ),
      ),
    ),
  );
  // Edge labels sit on their curve, half-way if that spot is free, else nearer one end or
  // just off the curve: crossing edges would otherwise print their figures on top of each other.
  const placed = [];
  const labelSpot = (text, p0, p1, p2, p3) => {
    const w = text.length * 6.2;
    const at = (t) =>
      [0, 1].map(
        (k) =>
          (1 - t) ** 3 * p0[k] +
          3 * (1 - t) ** 2 * t * p1[k] +
          3 * (1 - t) * t ** 2 * p2[k] +
          t ** 3 * p3[k],
      );
    const free = ([x, y]) =>
      placed.every((r) => Math.abs(r.x - x) * 2 >= r.w + w || Math.abs(r.y - y) >= 13);
    const spots = [0, -13, 13].flatMap((dy) =>
      [0.5, 0.35, 0.65, 0.25, 0.75].map((t) => {
        const [x, y] = at(t);
        return [x, y + dy];
      }),
    );
    const spot = spots.find(free) ?? spots[0];
    placed.push({ x: spot[0], y: spot[1], w });
    return [spot[0], spot[1] - 6];
  };
  for (const e of graph.edges) {
    const a = pos.get(e.client);
    const b = pos.get(e.server);
    if (!a || !b) continue;
    const color = edgeColor(e.error_ratio);
    const x1 = a.x + NODE_W;
    const y1 = a.y + NODE_H / 2;
    const x2 = b.x;
    const y2 = b.y + NODE_H / 2;
    const back = x2 <= x1;
    const [ax, bx] = [a.x + NODE_W / 2, b.x + NODE_W / 2];
    const d = back
      ? `M${ax},${a.y + NODE_H} C${ax},${a.y + NODE_H + 60} ` +
        `${bx},${b.y + NODE_H + 60} ${bx},${b.y + NODE_H}`
      : `M${x1},${y1} C${x1 + COL_GAP / 2},${y1} ${x2 - COL_GAP / 2},${y2} ${x2},${y2}`;
    const errors = e.error_ratio ? ` · ${fmt.percent(e.error_ratio)} err` : '';
    const label = `${fmt.rate(e.rate_per_sec)} · p99 ${fmt.seconds(e.p99_seconds)}${errors}`;
    const [mx, my] = back
      ? [(a.x + b.x + NODE_W) / 2, Math.max(a.y, b.y) + NODE_H + 50]
      : labelSpot(label, [x1, y1], [x1 + COL_GAP / 2, y1], [x2 - COL_GAP / 2, y2], [x2, y2]);
    const alerted = alertedEdges.has(`${e.client}->${e.server}`);
    const g = s(
      'g',
      {
        class: ['edge', e.error_ratio >= 0.05 ? 'failing' : null, alerted ? 'alerting' : null],
        tabindex: 0,
        'data-edge': `${e.client}->${e.server}`,
      },
      s('path', { d, stroke: color, 'marker-end': `url(#arrow${color.slice(1)})` }),
      s('text', { x: mx, y: my, 'text-anchor': 'middle' }, label),
      s('title', null, `${e.client} → ${e.server}`),
    );
    g.addEventListener('click', () => showEdge(e));
    svg.append(g);
  }
  for (const n of graph.nodes) {
    const p = pos.get(n.name);
    const virtual = n.kind !== 'service';
    const g = s(
      'g',
      {
        class: ['node', virtual ? 'virtual' : null, alertedNodes.has(n.name) ? 'alerting' : null],
        transform: `translate(${p.x},${p.y})`,
        tabindex: 0,
        'data-node': n.name,
      },
      s('rect', { width: NODE_W, height: NODE_H, rx: 8 }),
      s('circle', { cx: 14, cy: NODE_H / 2, r: 5, fill: fmt.color(n.name) }),
      s(
        'text',
        { x: 26, y: NODE_H / 2 + 4 },
        n.name.length > 17 ? `${n.name.slice(0, 16)}…` : n.name,
      ),
      s('title', null, `${n.name} (${n.kind})`),
    );
    const page = range.withRange(`/services/${encodeURIComponent(n.name)}`, params);
    const open = () => (virtual ? showNode(n, page) : ctx.navigate(page));
    g.addEventListener('click', open);
    g.addEventListener('keydown', (ev) => {
      if (ev.key === 'Enter') open();
    });
    svg.append(g);
  }
  replace(body, svg);

  function showEdge(e) {
    replace(
      detail,
      h(
        'div',
        { class: 'card' },
        h(
          'h3',
          null,
          `${e.client} → ${e.server}`,
          h('span', { class: 'muted' }, ` (${e.connection_type || 'direct'})`),
        ),
        h(
          'dl',
          { class: 'kv' },
          h('dt', null, 'Calls'),
          h('dd', null, fmt.number(Math.round(e.calls))),
          h('dt', null, 'Rate'),
          h('dd', null, fmt.rate(e.rate_per_sec)),
          h('dt', null, 'Errors'),
          h(
            'dd',
            { class: e.error_ratio >= 0.05 ? 'bad' : undefined },
            `${fmt.number(Math.round(e.errors))} (${fmt.percent(e.error_ratio)})`,
          ),
          h('dt', null, 'p50 / p95 / p99'),
          h('dd', null, [e.p50_seconds, e.p95_seconds, e.p99_seconds].map(fmt.seconds).join(' / ')),
        ),
        link(
          range.withRange('/search', params, {
            service: e.client,
            status: e.error_ratio ? 'error' : null,
          }),
          `Traces of ${e.client}${e.error_ratio ? ' with errors' : ''}`,
        ),
      ),
    );
  }
  function showNode(n, page) {
    replace(
      detail,
      h(
        'div',
        { class: 'card' },
        h('h3', null, n.name, h('span', { class: 'muted' }, ` (${n.kind}, not instrumented)`)),
        h(
          'p',
          null,
          'Seen from its callers: ',
          graph.edges
            .filter((e) => e.server === n.name)
            .map((e, i) => [
              i ? ', ' : '',
              link(range.withRange(`/services/${encodeURIComponent(e.client)}`, params), e.client),
            ]),
        ),
        link(page, `What its callers see of ${n.name}`),
      ),
    );
  }
}
