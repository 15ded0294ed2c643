// Two traces side by side: the spans only one of them has, and the operations whose
// durations differ most.

import { h, link, replace, notice, table, markProblem } from './dom.js';
import * as fmt from './format.js';
import { loadTrace } from './trace.js';

const key = (span) => `${span.service_name}\u0000${span.name}`;
const label = (k) => k.replace('\u0000', ': ');

function counts(trace) {
  const out = new Map();
  for (const span of trace.spans) {
    const k = key(span);
    const entry = out.get(k) || { count: 0, total: 0 };
    entry.count += 1;
    entry.total += span.duration_nano;
    out.set(k, entry);
  }
  return out;
}

/** Marks, per trace, the spans beyond the other trace's count of the same operation. */
function onlyIn(trace, mine, theirs) {
  const seen = new Map();
  const only = new Set();
  for (const span of trace.spans) {
    const k = key(span);
    const n = (seen.get(k) || 0) + 1;
    seen.set(k, n);
    if (n > (theirs.get(k)?.count || 0)) only.add(span.span_id);
  }
  return only;
}

function column(trace, only, title) {
  const id = trace.trace_id;
  return h(
    'div',
    { class: 'card' },
    h('h3', null, title, ' ', link(`/trace/${id}`, `${id.slice(0, 16)}…`)),
    h(
      'p',
      { class: 'muted' },
      `${trace.summary.root_service}: ${trace.summary.root_name} — ` +
        `${fmt.duration(trace.summary.duration_nano)}, ${trace.total_spans} spans`,
    ),
    h(
      'table',
      { class: 'grid compare-spans' },
      h(
        'tbody',
        null,
        trace.spans.map((span) =>
          h(
            'tr',
            {
              class: only.has(span.span_id) ? 'only' : undefined,
              dataset: { only: only.has(span.span_id) ? '1' : '' },
            },
            h(
              'td',
              { style: { paddingLeft: `${8 + span.depth * 12}px` } },
              h('span', { class: 'swatch', style: { background: fmt.color(span.service_name) } }),
              ' ',
              span.service_name,
              ': ',
              span.name,
              only.has(span.span_id) ? h('span', { class: 'pill' }, 'only here') : null,
            ),
            h('td', { class: 'num' }, fmt.duration(span.duration_nano)),
          ),
        ),
      ),
    ),
  );
}

export async function render(main, ctx) {
  const { params } = ctx;
  const a = (params.get('a') || '').trim().toLowerCase();
  const b = (params.get('b') || '').trim().toLowerCase();
  const idInput = (name, label, value) =>
    h('input', {
      name,
      placeholder: label,
      'aria-label': label,
      value,
      style: { width: '300px' },
      spellcheck: 'false',
    });
  const first = idInput('a', 'first trace id', a);
  const second = idInput('b', 'second trace id', b);
  const form = h(
    'form',
    { class: 'toolbar' },
    first,
    second,
    h('button', { class: 'primary', type: 'submit' }, 'Compare'),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.setParams({ a: first.value.trim() || null, b: second.value.trim() || null });
  });
  const out = h('div');
  replace(main, h('h1', null, 'Compare traces'), form, out);
  if (!a || !b) {
    replace(out, notice('info', 'Give two trace ids (from the trace search or a trace view).'));
    return;
  }
  replace(out, h('p', { class: 'muted' }, 'Loading both traces…'));
  // Each side is loaded and judged on its own, and a problem is named at the side it is on,
  // with the id as it was typed.
  const load = async (id) => {
    if (!/^[0-9a-f]{1,32}$/.test(id)) {
      throw new Error(`“${id}” is not a trace id: a trace id is up to 32 hexadecimal digits`);
    }
    try {
      return await loadTrace(id);
    } catch (err) {
      throw err.status === 404 ? new Error(`no span of trace ${id} is stored`) : err;
    }
  };
  const [ra, rb] = await Promise.allSettled([load(a), load(b)]);
  if (!ctx.current()) return;
  const problems = [
    ['First trace', first, ra],
    ['Second trace', second, rb],
  ].filter(([, , r]) => r.status === 'rejected');
  if (problems.length) {
    for (const [, field, r] of problems) markProblem(field, r.reason.message);
    replace(
      out,
      notice('error', problems.map(([side, , r]) => `${side}: ${r.reason.message}.`).join('\n')),
    );
    return;
  }
  const [ta, tb] = [ra.value, rb.value];
  const ca = counts(ta);
  const cb = counts(tb);
  const keys = new Set([...ca.keys(), ...cb.keys()]);
  const diffs = [...keys]
    .map((k) => ({
      key: k,
      a: ca.get(k) || { count: 0, total: 0 },
      b: cb.get(k) || { count: 0, total: 0 },
    }))
    .map((d) => ({ ...d, diff: d.b.total - d.a.total }))
    .sort((x, y) => Math.abs(y.diff) - Math.abs(x.diff));
  const onlyA = onlyIn(ta, ca, cb);
  const onlyB = onlyIn(tb, cb, ca);
  replace(
    out,
    h(
      'p',
      null,
      `${onlyA.size} span${onlyA.size === 1 ? '' : 's'} only in the first, ` +
        `${onlyB.size} only in the second; total ${fmt.duration(ta.summary.duration_nano)} ` +
        `vs ${fmt.duration(tb.summary.duration_nano)}.`,
    ),
    h('h2', null, 'Operations whose durations differ most'),
    table(
      [
        { title: 'Operation', cell: (d) => label(d.key) },
        {
          title: 'First (spans, total)',
          class: 'num',
          cell: (d) => `${d.a.count} · ${fmt.duration(d.a.total)}`,
        },
        {
          title: 'Second (spans, total)',
          class: 'num',
          cell: (d) => `${d.b.count} · ${fmt.duration(d.b.total)}`,
        },
        {
          title: 'Difference',
          class: 'num',
          cell: (d) =>
            h(
              'span',
              { class: d.diff > 0 ? 'bad' : undefined },
              `${d.diff > 0 ? '+' : d.diff < 0 ? '−' : ''}${fmt.duration(Math.abs(d.diff))}`,
            ),
        },
      ],
      diffs.slice(0, 15),
      { class: 'diffs' },
    ),
    h('h2', null, 'Side by side'),
    h('div', { class: 'compare' }, column(ta, onlyA, 'First'), column(tb, onlyB, 'Second')),
  );
}
