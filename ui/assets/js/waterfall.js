// The trace waterfall: one row per visible span, only the rows in view are in the DOM, so a
// trace of ten thousand spans scrolls like a small one. A minimap shows the whole trace.

import { h, replace } from './dom.js';
import * as fmt from './format.js';

const ROW = 24;
/** Span kinds as the row shows them (internal and unspecified spans show none). */
const KIND = { server: 'server', client: 'client', producer: 'producer', consumer: 'consumer' };
const OVERSCAN = 12;

function niceStep(total, count) {
  const raw = total / count;
  const mag = 10 ** Math.floor(Math.log10(Math.max(raw, 1)));
  return [1, 2, 2.5, 5, 10].map((m) => m * mag).find((v) => v >= raw) || raw;
}

/**
 * Times are nanoseconds from the trace's start; the bars show `start`..`end` (a zoom) of the
 * trace's `whole` duration, which the minimap shows; `t0` is its start (Unix ns, a BigInt), for
 * the events' marks. `rows()` gives the visible spans in order,
 * each `{span, offset, depth, hasChildren, collapsed}`; `state` has `selected`, `critical`
 * (Set), `matches` (Set or null). Callbacks: `onSelect(id)`, `onToggle(id)`,
 * `onZoom(from, to)` (`null` for the whole trace).
 *
 * Keys on the rows: ↓/↑ (or j/k) the next or previous span, → opens a span's children and ←
 * closes them or goes to the parent, Home/End the first or last span, Esc unselects.
 */
export function waterfall({
  start,
  end,
  whole = end,
  t0 = 0n,
  rows,
  state,
  onSelect,
  onToggle,
  onZoom = () => {},
}) {
  const total = Math.max(end - start, 1);
  const pct = (t) => ((t - start) / total) * 100;
  const spacer = h('div', { class: 'spacer' });
  const ticks = h('div', { class: 'ticks' });
  const step = niceStep(total, 6);
  for (let t = Math.ceil(start / step) * step; t <= end; t += step) {
    const at = pct(t);
    ticks.append(
      h('span', { class: at > 92 ? 'end' : null, style: { left: `${at}%` } }, fmt.duration(t)),
    );
  }
  // The ruler scrolls with the rows' box as its sticky first line: the same width (scrollbar
  // included) and the same columns, so its ticks stand over the bars' times.
  const ruler = h('div', { class: 'ruler' }, h('div', null, 'Service and operation'), ticks);
  const box = h(
    'div',
    {
      class: ['waterfall', start > 0 || end < whole ? 'zoomed' : null],
      tabindex: 0,
      'aria-label': 'spans (arrow keys move between them)',
    },
    ruler,
    spacer,
  );
  const canvas = h('canvas', { width: 1200, height: 40 });
  const viewport = h('div', { class: 'window' });
  const band = h('div', { class: 'zoom', hidden: true });
  const minimap = h(
    'div',
    { class: 'minimap', title: 'The whole trace: click to scroll there, drag across to zoom' },
    canvas,
    viewport,
    band,
  );

  let list = rows();
  let frame = 0;

  function row(item, index) {
    const { span } = item;
    const left = pct(item.offset);
    const width = Math.max((span.duration_nano / total) * 100, 0.15);
    const classes = ['wf-row'];
    if (span.status.code === 'error') classes.push('error', span.inherited ? 'inherited' : null);
    if (state.selected === span.span_id) classes.push('selected');
    if (state.critical && state.critical.has(span.span_id)) classes.push('critical');
    if (state.matches) classes.push(state.matches.has(span.span_id) ? 'match' : 'dim');
    const el = h(
      'div',
      {
        class: classes,
        style: { top: `${index * ROW}px` },
        dataset: { span: span.span_id },
        role: 'row',
      },
      h(
        'div',
        { class: 'wf-name', style: { paddingLeft: `${item.depth * 14}px` } },
        h(
          'span',
          { class: 'wf-toggle', dataset: { toggle: item.hasChildren ? span.span_id : '' } },
          item.hasChildren ? (item.collapsed ? '▸' : '▾') : '',
        ),
        h('span', { class: 'wf-svc', style: { background: fmt.color(span.service_name) } }),
        h('b', null, span.service_name),
        ' ',
        span.name,
        KIND[span.kind]
          ? h('span', { class: 'wf-kind', title: `span kind: ${span.kind}` }, KIND[span.kind])
          : null,
      ),
      h(
        'div',
        { class: 'wf-track' },
        h('div', {
          class: 'wf-bar',
          style: { left: `${left}%`, width: `${width}%`, background: fmt.color(span.service_name) },
        }),
        (span.events || []).map((e) => {
          const at = pct(Number(BigInt(e.time_unix_nano) - t0));
          if (at < 0 || at > 100) return null;
          return h('i', {
            class: ['wf-event', e.name === 'exception' ? 'exception' : null],
            style: { left: `${at}%` },
            title: `${e.name} at +${fmt.duration(Number(BigInt(e.time_unix_nano) - t0))}`,
          });
        }),
        h(
          'span',
          {
            // After the bar; before it when the bar ends near the right; inside it, at its
            // end, when it also starts near the left.
            class: ['wf-label', left + width > 80 && left < 15 ? 'inside' : null],
            style:
              left + width <= 80
                ? { left: `${left + width + 0.5}%` }
                : left >= 15
                  ? { right: `${100 - left + 0.5}%` }
                  : { right: `${Math.max(100 - left - width, 0) + 0.5}%` },
          },
          fmt.duration(span.duration_nano),
        ),
      ),
    );
    return el;
  }

  function draw() {
    frame = 0;
    const top = box.scrollTop;
    const height = box.clientHeight || 600;
    const first = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const last = Math.min(list.length, Math.ceil((top + height) / ROW) + OVERSCAN);
    const nodes = [];
    for (let i = first; i < last; i++) nodes.push(row(list[i], i));
    replace(spacer, nodes);
    const shown = list.length * ROW;
    viewport.style.top = `${(top / Math.max(shown, 1)) * 100}%`;
    viewport.style.height = `${Math.min(100, (height / Math.max(shown, 1)) * 100)}%`;
    viewport.style.left = `${(start / whole) * 100}%`;
    viewport.style.right = `${100 - (end / whole) * 100}%`;
  }

  function drawMinimap() {
    const ctx = canvas.getContext('2d');
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    const n = Math.max(list.length, 1);
    const rowH = Math.max(canvas.height / n, 0.5);
    list.forEach((item, i) => {
      const sp = item.span;
      const s = item.offset;
      ctx.fillStyle = sp.status.code === 'error' ? '#ef4444' : fmt.color(sp.service_name);
      ctx.fillRect(
        (s / whole) * canvas.width,
        (i / n) * canvas.height,
        Math.max((sp.duration_nano / whole) * canvas.width, 1),
        Math.max(rowH, 1),
      );
    });
  }

  const schedule = () => {
    if (!frame) frame = requestAnimationFrame(draw);
  };
  box.addEventListener('scroll', schedule);
  box.addEventListener('click', (e) => {
    const toggle = e.target.closest('[data-toggle]');
    if (toggle && toggle.dataset.toggle) {
      onToggle(toggle.dataset.toggle);
      return;
    }
    const r = e.target.closest('.wf-row');
    if (r) onSelect(r.dataset.span);
  });
  // A click scrolls to that height of the trace; a drag across zooms to the times it covers.
  let drag = null;
  const timeAt = (x) => {
    const rect = minimap.getBoundingClientRect();
    return Math.min(Math.max((x - rect.left) / rect.width, 0), 1) * whole;
  };
  minimap.addEventListener('pointerdown', (e) => {
    drag = { x: e.clientX, from: timeAt(e.clientX) };
    minimap.setPointerCapture(e.pointerId);
  });
  minimap.addEventListener('pointermove', (e) => {
    if (!drag || Math.abs(e.clientX - drag.x) < 4) return;
    const [a, b] = [drag.from, timeAt(e.clientX)].sort((x, y) => x - y);
    band.hidden = false;
    band.style.left = `${(a / whole) * 100}%`;
    band.style.width = `${((b - a) / whole) * 100}%`;
  });
  minimap.addEventListener('pointerup', (e) => {
    if (!drag) return;
    const moved = Math.abs(e.clientX - drag.x) >= 4;
    const [a, b] = [drag.from, timeAt(e.clientX)].sort((x, y) => x - y);
    drag = null;
    band.hidden = true;
    if (moved && b > a) {
      onZoom(a, b);
    } else {
      const rect = minimap.getBoundingClientRect();
      const at = (e.clientY - rect.top) / rect.height;
      box.scrollTop = at * list.length * ROW - box.clientHeight / 2;
    }
  });
  box.addEventListener('keydown', (e) => {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const i = list.findIndex((it) => it.span.span_id === state.selected);
    const item = list[i];
    const go = (j) => {
      const next = list[Math.min(Math.max(j, 0), list.length - 1)];
      if (next) onSelect(next.span.span_id);
    };
    switch (e.key) {
      case 'ArrowDown':
      case 'j':
        go(i + 1);
        break;
      case 'ArrowUp':
      case 'k':
        go(i < 0 ? list.length - 1 : i - 1);
        break;
      case 'Home':
        go(0);
        break;
      case 'End':
        go(list.length - 1);
        break;
      case 'ArrowRight':
        if (item && item.hasChildren && item.collapsed) onToggle(item.span.span_id);
        else if (item && item.hasChildren) go(i + 1);
        break;
      case 'ArrowLeft':
        if (item && item.hasChildren && !item.collapsed) onToggle(item.span.span_id);
        else if (item && item.span.parent_span_id) {
          const parent = list.findIndex((it) => it.span.span_id === item.span.parent_span_id);
          if (parent >= 0) go(parent);
        }
        break;
      case 'Escape':
        if (item) onSelect(null);
        break;
      default:
        return;
    }
    e.preventDefault();
  });
  new ResizeObserver(schedule).observe(box);

  function refresh() {
    list = rows();
    spacer.style.height = `${list.length * ROW}px`;
    draw();
    drawMinimap();
  }

  /** Scrolls so that the span's row is in view. */
  function reveal(spanId) {
    const i = list.findIndex((it) => it.span.span_id === spanId);
    if (i < 0) return;
    const top = i * ROW;
    if (top < box.scrollTop || top + ROW > box.scrollTop + box.clientHeight)
      box.scrollTop = top - box.clientHeight / 3;
    draw();
  }

  refresh();
  return {
    element: h('div', null, minimap, box),
    refresh,
    reveal,
    scrollTop: () => box.scrollTop,
    focus: () => box.focus({ preventScroll: true }),
    scrollTo: (top) => {
      box.scrollTop = top;
      draw();
    },
  };
}
