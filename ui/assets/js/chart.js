// Charts drawn as SVG: lines over time, sparklines, a scatter and bars.

import { s, h } from './dom.js';
import { clock } from './format.js';

const PALETTE = [
  '#3b82f6',
  '#ef4444',
  '#10b981',
  '#f59e0b',
  '#8b5cf6',
  '#06b6d4',
  '#ec4899',
  '#84cc16',
];

export function paletteColor(i) {
  return PALETTE[i % PALETTE.length];
}

function extent(values) {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of values) {
    if (typeof v !== 'number' || !Number.isFinite(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return lo === Infinity ? [0, 1] : [lo, hi];
}

function ticks(lo, hi, count) {
  if (hi <= lo) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const stepSize = [1, 2, 5, 10].map((m) => m * mag).find((v) => v >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / stepSize) * stepSize; v <= hi + stepSize * 1e-9; v += stepSize)
    out.push(v);
  return out;
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
const TIME_STEPS = [
  [1, 2, 5, 10, 15, 30].map((n) => n * SECOND),
  [1, 2, 5, 10, 15, 30].map((n) => n * MINUTE),
  [1, 2, 3, 6, 12].map((n) => n * HOUR),
  [1, 2, 7, 14].map((n) => n * DAY),
].flat();

/**
 * About `count` ticks between two times (ms) on whole seconds, minutes, hours or days, each
 * labelled as precisely as its step needs, so no two labels read the same: `14:05:30` for
 * steps under a minute, `14:05` under a day, `Dec 4` from a day.
 */
export function timeTicks(lo, hi, count) {
  if (hi <= lo) return [{ at: lo, label: clock(lo) }];
  const raw = (hi - lo) / count;
  const step = TIME_STEPS.find((v) => v >= raw) || Math.ceil(raw / DAY) * DAY;
  // Steps of hours and days fall on local midnight and its hours.
  const offset = new Date(lo).getTimezoneOffset() * MINUTE;
  const first = Math.ceil((lo - offset) / step) * step + offset;
  const label = (t) => {
    const d = new Date(t);
    if (step >= DAY) return d.toLocaleDateString('en', { month: 'short', day: 'numeric' });
    if (step < MINUTE) return `${clock(t)}:${String(d.getSeconds()).padStart(2, '0')}`;
    return clock(t);
  };
  const out = [];
  for (let t = first; t <= hi; t += step) out.push({ at: t, label: label(t) });
  return out;
}

/** A tiny line of values (no axes). */
export function sparkline(values, opts = {}) {
  const width = opts.width || 120;
  const height = opts.height || 28;
  const [, hi] = extent(values);
  const top = hi > 0 ? hi : 1;
  const n = Math.max(values.length - 1, 1);
  const pts = values.map((v, i) => {
    const x = (i / n) * width;
    const y = height - 2 - ((v || 0) / top) * (height - 4);
    return `${x.toFixed(1)},${y.toFixed(1)}`;
  });
  return s(
    'svg',
    {
      class: 'spark',
      width,
      height,
      viewBox: `0 0 ${width} ${height}`,
      role: 'img',
      'aria-label': opts.label || 'trend',
    },
    s('polyline', {
      points: pts.join(' '),
      fill: 'none',
      stroke: opts.color || 'currentColor',
      'stroke-width': 1.5,
    }),
  );
}

/**
 * Lines over time: `series` = [{name, points: [[ms, value]], color}]; `format(v)` labels the y
 * axis; `marks` = [{x: ms, y, title, href}] are points that link somewhere (exemplars);
 * `domain` = [ms, ms] is the time span shown (the data's by default).
 * Hovering shows the values at the nearest time.
 */
export function lineChart(series, opts = {}) {
  const width = opts.width || 640;
  const height = opts.height || 200;
  const pad = { l: 64, r: 12, t: 10, b: 24 };
  const format = opts.format || String;
  const marks = opts.marks || [];
  const xs = series.flatMap((sr) => sr.points.map((p) => p[0]));
  const ys = series.flatMap((sr) => sr.points.map((p) => p[1])).concat(marks.map((m) => m.y));
  const [x0, x1] = opts.domain || extent(xs.concat(marks.map((m) => m.x)));
  let [y0, y1] = extent(ys);
  y0 = Math.min(0, y0);
  if (y1 <= y0) y1 = y0 + 1;
  const X = (x) => pad.l + ((x - x0) / Math.max(x1 - x0, 1)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - ((y - y0) / (y1 - y0)) * (height - pad.t - pad.b);
  const svg = s('svg', {
    class: 'chart',
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': opts.label || 'chart',
  });
  for (const t of ticks(y0, y1, 4)) {
    svg.append(s('line', { class: 'grid', x1: pad.l, x2: width - pad.r, y1: Y(t), y2: Y(t) }));
    svg.append(
      s('text', { class: 'axis', x: pad.l - 6, y: Y(t) + 4, 'text-anchor': 'end' }, format(t)),
    );
  }
  for (const t of timeTicks(x0, x1, 5)) {
    svg.append(
      s('text', { class: 'axis', x: X(t.at), y: height - 6, 'text-anchor': 'middle' }, t.label),
    );
  }
  series.forEach((sr, i) => {
    const color = sr.color || paletteColor(i);
    // No value (null), NaN or an infinity is a gap in the line; a value alone between gaps
    // is a dot.
    let d = '';
    const segments = [[]];
    for (const p of sr.points) {
      if (typeof p[1] !== 'number' || !Number.isFinite(p[1])) {
        if (segments[segments.length - 1].length) segments.push([]);
        continue;
      }
      segments[segments.length - 1].push(p);
    }
    for (const seg of segments) {
      if (seg.length === 1) {
        svg.append(
          s(
            'circle',
            { class: 'point', cx: X(seg[0][0]), cy: Y(seg[0][1]), r: 2.5, fill: color },
            s('title', null, sr.name),
          ),
        );
      }
      seg.forEach((p, k) => {
        d += `${k ? 'L' : 'M'}${X(p[0]).toFixed(1)},${Y(p[1]).toFixed(1)}`;
      });
    }
    if (d)
      svg.append(
        s(
          'path',
          { d, fill: 'none', stroke: color, 'stroke-width': 1.8 },
          s('title', null, sr.name),
        ),
      );
  });
  // Marks (exemplars): a point each, a link to what it names.
  for (const m of marks) {
    svg.append(
      s(
        'a',
        { href: m.href, 'data-link': '', class: 'mark' },
        s(
          'circle',
          { class: 'exemplar', cx: X(m.x).toFixed(1), cy: Y(m.y).toFixed(1), r: 4 },
          s('title', null, m.title),
        ),
      ),
    );
  }
  const cursor = s('line', {
    class: 'cursor',
    y1: pad.t,
    y2: height - pad.b,
    visibility: 'hidden',
  });
  svg.append(cursor);
  const tip = h('div', { class: 'tip', hidden: true });
  svg.addEventListener('mousemove', (e) => {
    const box = svg.getBoundingClientRect();
    const x = ((e.clientX - box.left) / box.width) * width;
    const t = x0 + ((x - pad.l) / (width - pad.l - pad.r)) * (x1 - x0);
    let nearest = null;
    for (const p of series[0]?.points || [])
      if (!nearest || Math.abs(p[0] - t) < Math.abs(nearest - t)) nearest = p[0];
    if (nearest === null) return;
    cursor.setAttribute('x1', X(nearest));
    cursor.setAttribute('x2', X(nearest));
    cursor.setAttribute('visibility', 'visible');
    const lines = series.map((sr) => {
      const p = sr.points.find((q) => q[0] === nearest);
      return `${sr.name}: ${p ? format(p[1]) : '–'}`;
    });
    tip.textContent = `${clock(nearest)}  ${lines.join('  ·  ')}`;
    tip.hidden = false;
  });
  svg.addEventListener('mouseleave', () => {
    cursor.setAttribute('visibility', 'hidden');
    tip.hidden = true;
  });
  const legend =
    series.length > 1
      ? h(
          'div',
          { class: 'legend' },
          series.map((sr, i) =>
            h(
              'span',
              null,
              h('i', { style: { background: sr.color || paletteColor(i) } }),
              sr.name,
            ),
          ),
        )
      : null;
  return h(
    'figure',
    { class: 'chart-box' },
    opts.title ? h('figcaption', null, opts.title) : null,
    svg,
    tip,
    legend,
  );
}

/**
 * Points in time against a value: `points` = [{x: ms, y, color, title, onclick, className}].
 * `yFormat` labels the y axis.
 */
export function scatter(points, opts = {}) {
  const width = opts.width || 900;
  const height = opts.height || 180;
  const pad = { l: 64, r: 12, t: 10, b: 24 };
  const [x0, x1r] = extent(points.map((p) => p.x));
  const x1 = x1r > x0 ? x1r : x0 + 1;
  const [, y1r] = extent(points.map((p) => p.y));
  const y1 = y1r > 0 ? y1r : 1;
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * (width - pad.l - pad.r);
  const Y = (y) => height - pad.b - (y / y1) * (height - pad.t - pad.b);
  const svg = s('svg', {
    class: 'chart scatter',
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': opts.label || 'scatter',
  });
  for (const t of ticks(0, y1, 4)) {
    svg.append(s('line', { class: 'grid', x1: pad.l, x2: width - pad.r, y1: Y(t), y2: Y(t) }));
    svg.append(
      s(
        'text',
        { class: 'axis', x: pad.l - 6, y: Y(t) + 4, 'text-anchor': 'end' },
        (opts.yFormat || String)(t),
      ),
    );
  }
  for (const t of timeTicks(x0, x1, 6)) {
    svg.append(
      s('text', { class: 'axis', x: X(t.at), y: height - 6, 'text-anchor': 'middle' }, t.label),
    );
  }
  // Background points (`background: true`: small, not focusable) first, under the others.
  const ordered = [...points.filter((p) => p.background), ...points.filter((p) => !p.background)];
  for (const p of ordered) {
    if (p.background) {
      svg.append(
        s('circle', {
          cx: X(p.x).toFixed(1),
          cy: Y(p.y).toFixed(1),
          r: 2,
          fill: p.color || 'var(--muted)',
          class: ['sample', p.className],
        }),
      );
      continue;
    }
    const dot = s(
      'circle',
      {
        cx: X(p.x).toFixed(1),
        cy: Y(p.y).toFixed(1),
        r: 4.5,
        fill: p.color || paletteColor(0),
        class: ['dot', p.className],
        tabindex: 0,
      },
      s('title', null, p.title || ''),
    );
    if (p.onclick) {
      dot.addEventListener('click', p.onclick);
      dot.addEventListener('keydown', (e) => {
        if (e.key === 'Enter') p.onclick();
      });
    }
    svg.append(dot);
  }
  return h(
    'figure',
    { class: 'chart-box' },
    opts.title ? h('figcaption', null, opts.title) : null,
    svg,
  );
}

/** Horizontal bars for a column of numbers: `rows` = [{label, value}]. */
export function bars(rows, opts = {}) {
  const width = opts.width || 640;
  const rowHeight = 20;
  const labelWidth = 180;
  const height = rows.length * rowHeight + 8;
  const [, hi] = extent(rows.map((r) => r.value));
  const top = hi > 0 ? hi : 1;
  const svg = s('svg', {
    class: 'chart bars',
    viewBox: `0 0 ${width} ${height}`,
    role: 'img',
    'aria-label': opts.label || 'bars',
  });
  rows.forEach((r, i) => {
    const y = 4 + i * rowHeight;
    const w = Math.max(0, (r.value / top) * (width - labelWidth - 80));
    svg.append(
      s(
        'text',
        { class: 'axis', x: labelWidth - 6, y: y + 14, 'text-anchor': 'end' },
        String(r.label).slice(0, 28),
      ),
    );
    svg.append(
      s('rect', {
        x: labelWidth,
        y: y + 3,
        width: w.toFixed(1),
        height: rowHeight - 6,
        fill: paletteColor(0),
        rx: 2,
      }),
    );
    svg.append(
      s(
        'text',
        { class: 'axis', x: labelWidth + w + 6, y: y + 14 },
        (opts.format || String)(r.value),
      ),
    );
  });
  return h(
    'figure',
    { class: 'chart-box' },
    opts.title ? h('figcaption', null, opts.title) : null,
    svg,
  );
}
