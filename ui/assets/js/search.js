// Trace search: filters in the URL, results as a duration-over-time scatter and a list.

import { get } from './api.js';
import { h, link, replace, notice, table } from './dom.js';
import { scatter } from './chart.js';
import * as fmt from './format.js';
import * as range from './range.js';

const FIELDS = ['service', 'operation', 'min', 'max', 'status', 'q', 'limit'];

function servicePills(services) {
  return services.map((s) => h('span', { class: 'pill', title: `${s.span_count} spans` }, h('i', { style: { background: fmt.color(s.name) } }), `${s.name} ${s.span_count}`));
}

/** The result list of trace summaries (also used by the service page). */
export function traceList(traces) {
  const longest = Math.max(1, ...traces.map((t) => t.duration_nano));
  return table([
    { title: 'Trace', cell: (t) => h('div', null,
      link(`/trace/${t.trace_id}`, h('b', null, t.root_service || '?'), ': ', t.root_name || '(no root)'),
      h('div', { class: 'muted mono' }, t.trace_id.slice(0, 16))) },
    { title: 'Started', cell: (t) => h('span', { class: 'mono' }, fmt.time(t.start_time_unix_nano)) },
    { title: 'Duration', cell: (t) => h('div', null, fmt.duration(t.duration_nano),
      h('div', { class: 'durbar' }, h('span', { style: { width: `${Math.max(1, (t.duration_nano / longest) * 100)}%` } }))) },
    { title: 'Spans', class: 'num', cell: (t) => String(t.span_count) },
    { title: 'Errors', class: 'num', cell: (t) => (t.error_count ? h('span', { class: 'bad' }, String(t.error_count)) : '0') },
    { title: 'Services', cell: (t) => servicePills(t.services) },
  ], traces, { class: 'traces', rowClass: (t) => (t.error_count ? 'error' : undefined) });
}

function apiParams(params, r) {
  return {
    service: params.get('service'),
    operation: params.get('operation'),
    attr: params.getAll('attr'),
    min_duration: params.get('min'),
    max_duration: params.get('max'),
    status: params.get('status'),
    q: params.get('q'),
    start: r.start,
    end: r.end,
    limit: params.get('limit') || 20,
  };
}

export async function render(main, ctx) {
  const { params } = ctx;
  const r = range.fromParams(params);
  const input = (name, placeholder, width) => h('input', { name, placeholder, value: params.get(name) || '', style: width ? { width } : undefined, spellcheck: 'false' });
  const services = h('datalist', { id: 'service-names' });
  const form = h('form', { class: 'toolbar search-form' },
    h('input', { name: 'service', placeholder: 'service', list: 'service-names', value: params.get('service') || '', spellcheck: 'false' }),
    input('operation', 'operation'),
    h('input', { name: 'attr', placeholder: 'attributes: key=value key2=value2', value: params.getAll('attr').join(' '), style: { width: '260px' }, spellcheck: 'false' }),
    input('min', 'min duration (250ms)', '140px'),
    input('max', 'max duration', '120px'),
    h('select', { name: 'status', 'aria-label': 'status' },
      h('option', { value: '' }, 'any status'),
      h('option', { value: 'error', selected: params.get('status') === 'error' }, 'errors only')),
    input('q', 'text in error messages', '200px'),
    h('select', { name: 'limit', 'aria-label': 'results' }, [20, 50, 100].map((n) => h('option', { value: n, selected: String(n) === (params.get('limit') || '20') }, `${n} results`))),
    h('button', { class: 'primary', type: 'submit' }, 'Search'),
    services);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const changes = {};
    for (const f of FIELDS) changes[f] = (data.get(f) || '').trim() || null;
    changes.attr = (data.get('attr') || '').trim().split(/\s+/).filter((a) => a.includes('='));
    if (changes.limit === '20') changes.limit = null;
    ctx.setParams(changes);
  });
  const chart = h('div');
  const list = h('div', null, h('p', { class: 'muted' }, 'Searching…'));
  const more = h('div');
  replace(main,
    h('h1', null, 'Traces', h('span', { class: 'muted' }, r.label)),
    h('div', { class: 'toolbar' }, range.picker(params, (p) => ctx.setParams(p))),
    form, chart, list, more);

  get('services', { start: r.start, end: r.end }).then((d) => {
    replace(services, d.services.map((s) => h('option', { value: s.name })));
  }, () => {});

  const found = [];
  const show = async (cursor) => {
    const page = await get('traces', { ...apiParams(params, r), cursor });
    if (!ctx.current()) return;
    found.push(...page.traces);
    if (!found.length) {
      replace(chart);
      replace(list, notice('info', 'No trace matches. Widen the time range or remove a filter.'));
      replace(more);
      return;
    }
    replace(chart, scatter(found.map((t) => ({
      x: fmt.msOf(t.start_time_unix_nano),
      y: t.duration_nano,
      color: t.error_count ? '#ef4444' : fmt.color(t.root_service),
      className: t.error_count ? 'error' : undefined,
      title: `${t.root_service}: ${t.root_name} — ${fmt.duration(t.duration_nano)}`,
      onclick: () => ctx.navigate(`/trace/${t.trace_id}`),
    })), { title: `Duration of ${found.length} traces over time (click a dot to open it)`, yFormat: fmt.duration, label: 'trace durations' }));
    replace(list, h('p', { class: 'muted' }, `${found.length} trace${found.length === 1 ? '' : 's'}, newest first`), traceList(found));
    replace(more, page.next_cursor ? h('button', { type: 'button', onclick: () => show(page.next_cursor) }, 'Load more') : null);
  };
  await show(undefined);
}
