// Metrics explorer. PromQL (the default): an editor that marks where a query is wrong, a range
// chart with its legend and the exemplars that lead to traces, or the instant values as a
// table. Or, without writing a query: pick a metric, filter and group by labels, aggregate per
// step, chart it. PromQL only reads, so a link with `?query=` runs at once, as Prometheus's own
// graph page does.

import { get, prometheus } from './api.js';
import { h, replace, notice, table } from './dom.js';
import { bars, lineChart } from './chart.js';
import * as fmt from './format.js';
import * as range from './range.js';

/** Series drawn at most; the rest are counted in the title. */
const MAX_SERIES = 20;

/** Buckets of a native histogram drawn at most. */
const MAX_BUCKETS = 40;

const EXAMPLES = [
  [
    'error ratio per service',
    'sum by (job) (rate(spyglass_span_errors_total{span_kind="server"}[5m]))' +
      ' / sum by (job) (rate(spyglass_span_calls_total{span_kind="server"}[5m]))',
  ],
  [
    'p99 latency per service',
    'histogram_quantile(0.99, sum by (job, le)' +
      ' (rate(spyglass_span_duration_seconds_bucket{span_kind="server"}[5m])))',
  ],
  [
    'failing calls between services',
    'sum by (client, server) (rate(spyglass_service_graph_failures_total[5m]))' +
      ' / sum by (client, server) (rate(spyglass_service_graph_calls_total[5m])) > 0.05',
  ],
];

export async function render(main, ctx) {
  const { params } = ctx;
  if (params.get('name') || params.get('mode') === 'pick') return pick(main, ctx);
  return promql(main, ctx);
}

/** The two ways to explore, as tabs. */
function modes(ctx, current) {
  const tab = (mode, label) =>
    h(
      'button',
      {
        type: 'button',
        class: ['tab', mode === current ? 'active' : null],
        'aria-pressed': String(mode === current),
        onclick: () =>
          ctx.setParams(
            mode === 'pick'
              ? { mode: 'pick', query: null, type: null }
              : { mode: null, name: null, match: null, group_by: null, agg: null },
          ),
      },
      label,
    );
  return h(
    'div',
    { class: 'tabs', role: 'group' },
    tab('promql', 'PromQL'),
    tab('pick', 'Pick a metric'),
  );
}

/** `{__name__="x", a="b"}` as `x{a="b"}`. */
function seriesName(metric) {
  const name = metric.__name__ || '';
  const labels = Object.entries(metric)
    .filter(([k]) => k !== '__name__')
    .map(([k, v]) => `${k}="${v}"`)
    .join(', ');
  if (!labels) return name;
  return `${name}{${labels}}`;
}

/** The query's line with a caret under the column a `L:C:` error names. */
function caret(query, message) {
  const at = message.match(/: (\d+):(\d+): /);
  if (!at) return null;
  const line = query.split('\n')[Number(at[1]) - 1];
  if (line === undefined) return null;
  const column = Number(at[2]);
  return h('pre', { class: 'query-caret' }, `${line}\n${' '.repeat(column - 1)}^`);
}

async function promql(main, ctx) {
  const { params } = ctx;
  const r = range.fromParams(params);
  const text = params.get('query') || '';
  const type = params.get('type') === 'instant' ? 'instant' : 'range';
  const editor = h(
    'textarea',
    {
      class: 'promql',
      name: 'query',
      rows: 3,
      spellcheck: 'false',
      'aria-label': 'PromQL query',
      placeholder: 'rate(http_server_request_duration_seconds_count[5m])',
    },
    text,
  );
  const kind = h(
    'select',
    { name: 'type', 'aria-label': 'query type' },
    h('option', { value: 'range', selected: type === 'range' }, 'Range (chart)'),
    h('option', { value: 'instant', selected: type === 'instant' }, 'Instant (table)'),
  );
  const form = h(
    'form',
    { class: 'promql-form' },
    editor,
    h(
      'div',
      { class: 'toolbar' },
      kind,
      h('button', { class: 'primary', type: 'submit' }, 'Run'),
      h('span', { class: 'muted' }, 'Ctrl+Enter runs'),
    ),
  );
  const result = h('div', { class: 'promql-result' });
  replace(
    main,
    h('h1', null, 'Metrics', h('span', { class: 'muted' }, r.label)),
    h(
      'div',
      { class: 'toolbar' },
      modes(ctx, 'promql'),
      range.picker(params, (p) => ctx.setParams(p)),
    ),
    form,
    result,
  );
  const run = () => ctx.setParams({ query: editor.value.trim() || null, type: kind.value });
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    run();
  });
  editor.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
    }
  });
  if (!text) {
    replace(
      result,
      h(
        'div',
        { class: 'card examples' },
        h('p', null, 'Examples over the span metrics Spyglass computes:'),
        h(
          'ul',
          null,
          EXAMPLES.map(([label, q]) =>
            h(
              'li',
              null,
              h(
                'a',
                { href: range.withRange('/explore', params, { query: q }), 'data-link': true },
                label,
              ),
              h('code', null, q),
            ),
          ),
        ),
      ),
    );
    return;
  }
  replace(result, h('p', { class: 'muted' }, 'Running…'));
  const [startMs, endMs] = range.millis(r);
  try {
    if (type === 'instant') {
      const data = await prometheus('query', { query: text, time: endMs / 1000 });
      if (!ctx.current()) return;
      replace(result, instantResult(data));
    } else {
      const step = range.step(r, 240);
      const [data, exemplars] = await Promise.all([
        prometheus('query_range', {
          query: text,
          start: startMs / 1000,
          end: endMs / 1000,
          step,
        }),
        prometheus('query_exemplars', {
          query: text,
          start: startMs / 1000,
          end: endMs / 1000,
        }).catch(() => []),
      ]);
      if (!ctx.current()) return;
      replace(result, rangeResult(text, data, exemplars, [startMs, endMs]));
    }
  } catch (e) {
    if (!ctx.current()) return;
    replace(result, notice('error', e.message), caret(text, e.message));
    const at = e.message.match(/: (\d+):(\d+): /);
    if (at) {
      // Put the cursor where the error is.
      const lines = text.split('\n');
      const offset =
        lines.slice(0, Number(at[1]) - 1).reduce((n, l) => n + l.length + 1, 0) + Number(at[2]) - 1;
      editor.focus();
      editor.setSelectionRange(offset, offset);
    }
  }
}

/** A bound as short as it reads well. */
function bound(text) {
  const n = Number(text);
  return Number.isFinite(n) ? String(Number(n.toPrecision(4))) : text;
}

/**
 * A native histogram sample (`{count, sum, buckets}`, each bucket `[boundaries, lower, upper,
 * count]`) as its count and sum, and a bar per bucket that holds observations.
 */
function histogramBars(hist) {
  const open = (rule) => (rule === 1 || rule === 3 ? '[' : '(');
  const close = (rule) => (rule === 0 || rule === 3 ? ']' : ')');
  const buckets = hist.buckets || [];
  // Too many buckets to draw are merged, neighbours by neighbours, into at most MAX_BUCKETS.
  const per = Math.ceil(buckets.length / MAX_BUCKETS) || 1;
  const rows = [];
  for (let i = 0; i < buckets.length; i += per) {
    const group = buckets.slice(i, i + per);
    const [rule, lo] = group[0];
    const [last, , hi] = group[group.length - 1];
    rows.push({
      label: `${open(rule)}${bound(lo)}, ${bound(hi)}${close(last)}`,
      value: group.reduce((n, b) => n + Number(b[3]), 0),
    });
  }
  const merged = per > 1 ? `, ${buckets.length} buckets drawn ${per} to a bar` : '';
  return h(
    'div',
    { class: 'histogram' },
    bars(rows, {
      label: 'observations per bucket',
      title: `${hist.count} observations, sum ${hist.sum}${merged}`,
      format: (v) => bound(String(v)),
    }),
  );
}

function instantResult(data) {
  if (data.resultType === 'scalar' || data.resultType === 'string') {
    return h('div', { class: 'card' }, h('p', { class: 'big-value' }, String(data.result[1])));
  }
  const rows = data.result;
  if (!rows.length) return notice('info', 'The query gives no series at this time.');
  return h(
    'div',
    { class: 'results' },
    table(
      [
        { title: 'series', cell: (row) => h('code', null, seriesName(row.metric)) },
        {
          title: 'value',
          class: 'num',
          cell: (row) => {
            if (data.resultType === 'matrix') {
              const values = (row.values || []).map((v) => v[1]);
              const hists = (row.histograms || []).map(([, hist]) => `${hist.count} observations`);
              return values.concat(hists).join(' ');
            }
            return row.histogram ? histogramBars(row.histogram[1]) : row.value[1];
          },
        },
      ],
      rows,
      { class: 'instant' },
    ),
  );
}

function rangeResult(text, data, exemplars, domain) {
  const rows = data.result;
  if (!rows.length) return notice('info', 'The query gives no series in this range.');
  // A native histogram series is drawn as its count of observations.
  const series = rows.slice(0, MAX_SERIES).map((row) => ({
    name: (seriesName(row.metric) || text) + (row.values ? '' : ' (count)'),
    points: row.values
      ? row.values.map(([t, v]) => [t * 1000, Number(v)])
      : (row.histograms || []).map(([t, hist]) => [t * 1000, Number(hist.count)]),
  }));
  let marks = exemplars.flatMap((group) =>
    group.exemplars
      .filter((e) => e.labels.trace_id)
      .map((e) => ({
        x: e.timestamp * 1000,
        y: Number(e.value),
        title: `trace ${e.labels.trace_id}: ${e.value} in ${seriesName(group.seriesLabels)}`,
        href: `/trace/${e.labels.trace_id}`,
      })),
  );
  // Exemplars are asked for over the same span; keep any the clock moved past.
  marks = marks.filter((m) => m.x >= domain[0] && m.x <= domain[1]);
  const title =
    (rows.length > MAX_SERIES
      ? `${MAX_SERIES} of ${rows.length} series`
      : `${rows.length} series`) +
    (marks.length ? ` · ${marks.length} exemplars (dots; click one to open its trace)` : '');
  const chart = lineChart(series, {
    title,
    format: fmt.number,
    width: 960,
    height: 300,
    label: text,
    marks,
    domain,
  });
  // One series has no legend in the chart: name it all the same.
  const legend =
    series.length === 1
      ? h('p', { class: 'legend single' }, h('code', null, series[0].name))
      : null;
  return h('div', { class: 'card' }, chart, legend);
}

/** The metric picker: one metric, label filters, a grouping and an aggregation. */
async function pick(main, ctx) {
  const { params } = ctx;
  const r = range.fromParams(params);
  const name = params.get('name') || '';
  const chart = h('div', null, h('p', { class: 'muted' }, 'Loading metric names…'));
  const form = h('form', { class: 'toolbar' });
  replace(
    main,
    h('h1', null, 'Metrics', h('span', { class: 'muted' }, r.label)),
    h(
      'div',
      { class: 'toolbar' },
      modes(ctx, 'pick'),
      range.picker(params, (p) => ctx.setParams(p)),
    ),
    form,
    chart,
  );
  const { metrics } = await get('metrics', { start: r.start, end: r.end });
  if (!ctx.current()) return;
  if (!metrics.length) {
    replace(chart, notice('info', 'No metrics in this range.'));
    return;
  }
  const chosen = metrics.find((m) => m.name === name);
  const picker = h(
    'select',
    { name: 'name', 'aria-label': 'metric' },
    h('option', { value: '' }, 'choose a metric…'),
    metrics.map((m) =>
      h(
        'option',
        { value: m.name, selected: m.name === name },
        `${m.name} (${m.type}${m.unit ? `, ${m.unit}` : ''})`,
      ),
    ),
  );
  const match = h('input', {
    name: 'match',
    placeholder: 'label=value label2=value2',
    value: params.getAll('match').join(' '),
    style: { width: '260px' },
    spellcheck: 'false',
  });
  const groupBy = h(
    'select',
    {
      name: 'group_by',
      multiple: true,
      size: 1,
      'aria-label': 'group by',
      title: 'group by labels',
    },
    (chosen?.label_keys || []).map((k) =>
      h('option', { value: k, selected: params.getAll('group_by').includes(k) }, k),
    ),
  );
  const agg = h(
    'select',
    { name: 'agg', 'aria-label': 'aggregation' },
    ['sum', 'avg', 'min', 'max', 'rate'].map((a) =>
      h(
        'option',
        {
          value: a,
          selected: (params.get('agg') || (chosen?.type === 'sum' ? 'rate' : 'sum')) === a,
        },
        a,
      ),
    ),
  );
  replace(
    form,
    picker,
    match,
    h('label', null, 'group by', groupBy),
    agg,
    h('button', { class: 'primary', type: 'submit' }, 'Show'),
  );
  picker.addEventListener('change', () =>
    ctx.setParams({ name: picker.value || null, group_by: null, match: null, agg: null }),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    ctx.setParams({
      name: picker.value || null,
      match: match.value
        .trim()
        .split(/\s+/)
        .filter((m) => m.includes('=')),
      group_by: [...groupBy.selectedOptions].map((o) => o.value),
      agg: agg.value,
    });
  });
  if (!chosen) {
    replace(chart, notice('info', `${metrics.length} metrics. Choose one to chart it.`));
    return;
  }
  replace(chart, h('p', { class: 'muted' }, 'Loading series…'));
  const data = await get('metrics/series', {
    name: chosen.name,
    match: params.getAll('match'),
    group_by: params.getAll('group_by'),
    agg: agg.value,
    start: r.start,
    end: r.end,
    step: range.step(r, 60),
  });
  if (!ctx.current()) return;
  if (!data.series.length) {
    replace(chart, notice('info', 'No series match.'));
    return;
  }
  const series = data.series.slice(0, 12).map((sr) => ({
    name:
      Object.entries(sr.labels)
        .map(([k, v]) => `${k}=${v}`)
        .join(', ') || chosen.name,
    points: sr.points.map(([t, v]) => [fmt.msOf(t), v]),
  }));
  replace(
    chart,
    h(
      'div',
      { class: 'card' },
      lineChart(series, {
        title:
          `${agg.value}(${chosen.name})${chosen.unit ? ` in ${chosen.unit}` : ''}` +
          (data.series.length > 12 ? ` — 12 of ${data.series.length} series` : ''),
        format: fmt.number,
        width: 960,
        height: 280,
        label: chosen.name,
      }),
    ),
    chosen.description ? h('p', { class: 'muted' }, chosen.description) : null,
  );
}
