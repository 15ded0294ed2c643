// Metrics explorer: pick a metric, filter and group by labels, aggregate per step, chart it.

import { get } from './api.js';
import { h, replace, notice } from './dom.js';
import { lineChart } from './chart.js';
import * as fmt from './format.js';
import * as range from './range.js';

export async function render(main, ctx) {
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
