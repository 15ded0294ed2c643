// Trace search: filters in the URL, results as a duration-over-time scatter and a list.

import { get } from './api.js';
import { h, link, replace, notice, table, markProblem } from './dom.js';
import { scatter } from './chart.js';
import * as fmt from './format.js';
import * as range from './range.js';
import { openButton } from './tracefile.js';

const FIELDS = ['service', 'operation', 'min', 'max', 'status', 'q', 'limit'];

/** Matching traces drawn small behind the loaded ones, sampled over the whole range. */
const SAMPLE = 1000;

function servicePills(services) {
  return services.map((s) =>
    h(
      'span',
      { class: 'pill', title: `${s.span_count} spans` },
      h('i', { style: { background: fmt.color(s.name) } }),
      `${s.name} ${s.span_count}`,
    ),
  );
}

/** The result list of trace summaries (also used by the service page). */
export function traceList(traces) {
  const longest = Math.max(1, ...traces.map((t) => t.duration_nano));
  return table(
    [
      {
        title: 'Trace',
        cell: (t) =>
          h(
            'div',
            null,
            link(
              `/trace/${t.trace_id}`,
              h('b', null, t.root_service || '?'),
              ': ',
              t.root_name || '(no root)',
            ),
            h('div', { class: 'muted mono' }, t.trace_id.slice(0, 16)),
          ),
      },
      {
        title: 'Started',
        cell: (t) => h('span', { class: 'mono' }, fmt.time(t.start_time_unix_nano)),
      },
      {
        title: 'Duration',
        cell: (t) =>
          h(
            'div',
            null,
            fmt.duration(t.duration_nano),
            h(
              'div',
              { class: 'durbar' },
              h('span', { style: { width: `${Math.max(1, (t.duration_nano / longest) * 100)}%` } }),
            ),
          ),
      },
      { title: 'Spans', class: 'num', cell: (t) => String(t.span_count) },
      {
        title: 'Errors',
        class: 'num',
        cell: (t) => (t.error_count ? h('span', { class: 'bad' }, String(t.error_count)) : '0'),
      },
      { title: 'Services', cell: (t) => servicePills(t.services) },
    ],
    traces,
    { class: 'traces', rowClass: (t) => (t.error_count ? 'error' : undefined) },
  );
}

const SORTS = [
  ['', 'Newest first', null],
  ['longest', 'Longest first', (a, b) => b.duration_nano - a.duration_nano],
  ['shortest', 'Shortest first', (a, b) => a.duration_nano - b.duration_nano],
  ['spans', 'Most spans', (a, b) => b.span_count - a.span_count],
  ['errors', 'Most errors', (a, b) => b.error_count - a.error_count],
];

/** The search parameters of the API, from the page's. */
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

/** The page's field for each API parameter, and what to call it. */
const FIELD_OF = {
  service: ['service', 'Service'],
  operation: ['operation', 'Operation'],
  attr: ['attr', 'Attributes'],
  min_duration: ['min', 'Min duration'],
  max_duration: ['max', 'Max duration'],
  status: ['status', 'Status'],
  q: ['q', 'Text'],
  limit: ['limit', 'Results'],
  start: ['start', 'Start'],
  end: ['end', 'End'],
};

/**
 * Attributes as logfmt, as Jaeger's tags field takes them: `key=value key2="a value"`, into
 * `key=value` strings. A piece without `=` is kept, for the server to name.
 */
export function parseAttributes(text) {
  const out = [];
  let i = 0;
  const space = (c) => /\s/.test(c);
  while (i < text.length) {
    if (space(text[i])) {
      i += 1;
      continue;
    }
    let key = '';
    while (i < text.length && text[i] !== '=' && !space(text[i])) key += text[i++];
    if (text[i] !== '=') {
      out.push(key);
      continue;
    }
    i += 1;
    let value = '';
    if (text[i] === '"') {
      i += 1;
      while (i < text.length && text[i] !== '"') {
        if (text[i] === '\\' && i + 1 < text.length) i += 1;
        value += text[i++];
      }
      i += 1;
    } else {
      while (i < text.length && !space(text[i])) value += text[i++];
    }
    out.push(`${key}=${value}`);
  }
  return out;
}

/** `key=value` strings as logfmt, quoting values with spaces or quotes. */
export function formatAttributes(pairs) {
  return pairs
    .map((pair) => {
      const at = pair.indexOf('=');
      if (at < 0) return pair;
      const value = pair.slice(at + 1);
      if (value !== '' && !/[\s"\\]/.test(value)) return pair;
      return `${pair.slice(0, at)}="${value.replace(/["\\]/g, '\\$&')}"`;
    })
    .join(' ');
}

/** A list of the service's operations, the chosen one selected (kept when not listed). */
async function fillOperations(select, service, chosen, r) {
  const names = new Set();
  if (service) {
    try {
      const d = await get(`services/${encodeURIComponent(service)}/operations`, {
        start: r.start,
        end: r.end,
      });
      for (const o of d.operations) names.add(o.name);
    } catch {
      // The list is a help; a search names the operation's problem, if it has one.
    }
  }
  if (chosen) names.add(chosen);
  replace(
    select,
    h('option', { value: '' }, service ? 'any operation' : 'any operation (pick a service)'),
    [...names].sort().map((n) => h('option', { value: n, selected: n === chosen }, n)),
  );
}

export async function render(main, ctx) {
  const { params } = ctx;
  const r = range.fromParams(params);
  const input = (name, placeholder, width) =>
    h('input', {
      name,
      placeholder,
      value: params.get(name) || '',
      style: width ? { width } : undefined,
      spellcheck: 'false',
      'aria-label': placeholder,
    });
  const services = h('datalist', { id: 'service-names' });
  const service = h('input', {
    name: 'service',
    placeholder: 'service',
    'aria-label': 'service',
    list: 'service-names',
    value: params.get('service') || '',
    spellcheck: 'false',
  });
  const operation = h('select', { name: 'operation', 'aria-label': 'operation' });
  const sort = h(
    'select',
    { name: 'sort', 'aria-label': 'sort' },
    SORTS.map(([key, label]) =>
      h('option', { value: key, selected: key === (params.get('sort') || '') }, label),
    ),
  );
  const form = h(
    'form',
    { class: 'toolbar search-form', novalidate: true },
    service,
    operation,
    h('input', {
      name: 'attr',
      placeholder: 'attributes: key=value key2="a value"',
      'aria-label': 'attributes',
      value: formatAttributes(params.getAll('attr')),
      style: { width: '300px' },
      spellcheck: 'false',
    }),
    input('min', 'min duration (250ms)', '140px'),
    input('max', 'max duration', '120px'),
    h(
      'select',
      { name: 'status', 'aria-label': 'status' },
      h('option', { value: '' }, 'any status'),
      h('option', { value: 'error', selected: params.get('status') === 'error' }, 'errors only'),
      // A status the form does not offer stays, for the search to name its problem.
      params.get('status') && params.get('status') !== 'error'
        ? h('option', { value: params.get('status'), selected: true }, params.get('status'))
        : null,
    ),
    input('q', 'text in error messages', '200px'),
    h(
      'select',
      { name: 'limit', 'aria-label': 'results' },
      [20, 50, 100].map((n) =>
        h(
          'option',
          { value: n, selected: String(n) === (params.get('limit') || '20') },
          `${n} results`,
        ),
      ),
    ),
    h('button', { class: 'primary', type: 'submit' }, 'Search'),
    services,
  );
  fillOperations(operation, params.get('service'), params.get('operation'), r);
  service.addEventListener('change', () =>
    fillOperations(operation, service.value.trim(), operation.value, r),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const changes = {};
    for (const f of FIELDS) changes[f] = (data.get(f) || '').trim() || null;
    changes.attr = parseAttributes(data.get('attr') || '');
    if (changes.limit === '20') changes.limit = null;
    ctx.setParams(changes);
  });
  const picker = range.picker(params, (p) => ctx.setParams(p));
  const chart = h('div');
  const list = h('div', null, h('p', { class: 'muted' }, 'Searching…'));
  const more = h('div');
  replace(
    main,
    h('h1', null, 'Traces', h('span', { class: 'muted' }, r.label)),
    h(
      'div',
      { class: 'toolbar' },
      picker,
      openButton(ctx.navigate, (message) => replace(list, notice('error', message))),
    ),
    form,
    chart,
    list,
    more,
  );

  get('services', { start: r.start, end: r.end }).then(
    (d) => {
      replace(
        services,
        d.services.map((s) => h('option', { value: s.name })),
      );
    },
    () => {},
  );

  // Each bad parameter is marked at its field; the search waits for them to be mended.
  const showProblems = (err) => {
    const lines = err.problems.map(({ parameter, problem }) => {
      const [name, label] = Object.hasOwn(FIELD_OF, parameter)
        ? FIELD_OF[parameter]
        : [null, parameter];
      const field = form.elements[name] || picker.querySelector(`[name="${name}"]`);
      if (field) markProblem(field, problem);
      return `${label}: ${problem}`;
    });
    replace(chart);
    replace(
      list,
      notice(
        'error',
        `Fix the marked field${lines.length === 1 ? '' : 's'} to search.\n${lines.join('\n')}`,
      ),
    );
  };

  // The loaded traces in the chosen order; changing it re-sorts them, with no new search.
  const found = [];
  const draw = () => {
    const order = SORTS.find(([key]) => key === sort.value) || SORTS[0];
    const shown = order[2] ? [...found].sort(order[2]) : found;
    const n = `${found.length} trace${found.length === 1 ? '' : 's'}`;
    replace(
      list,
      h(
        'div',
        { class: 'toolbar' },
        h(
          'span',
          { class: 'muted result-count' },
          order[2] ? `The newest ${n}, ${order[1].toLowerCase()}` : `${n}, newest first`,
        ),
        sort,
      ),
      traceList(shown),
    );
  };
  sort.addEventListener('change', () => {
    const url = new URL(location.href);
    if (sort.value) url.searchParams.set('sort', sort.value);
    else url.searchParams.delete('sort');
    history.replaceState(history.state, '', url);
    draw();
  });
  // A sample of every match in the range, drawn small behind the loaded traces: asked for
  // apart, after the first page, so that the list does not wait for it.
  let sample = null;
  const plot = () => {
    if (!found.length) return;
    const background = (sample?.points || []).map(([start, duration, error]) => ({
      x: fmt.msOf(start),
      y: duration,
      color: error ? '#ef4444' : undefined,
      className: error ? 'error' : undefined,
      background: true,
    }));
    const loaded = found.map((t) => ({
      x: fmt.msOf(t.start_time_unix_nano),
      y: t.duration_nano,
      color: t.error_count ? '#ef4444' : fmt.color(t.root_service),
      className: t.error_count ? 'error' : undefined,
      title: `${t.root_service}: ${t.root_name} — ${fmt.duration(t.duration_nano)}`,
      onclick: () => ctx.navigate(`/trace/${t.trace_id}`),
    }));
    const title = sample
      ? `Duration over time: about ${sample.matched.toLocaleString('en')} matching traces` +
        ` (${background.length} drawn small), the ${found.length} loaded large` +
        ' (click one to open it)'
      : `Duration of ${found.length} traces over time (click a dot to open it)`;
    replace(
      chart,
      scatter([...background, ...loaded], {
        title,
        yFormat: fmt.duration,
        label: 'trace durations',
      }),
    );
  };
  const show = async (cursor) => {
    let page;
    try {
      page = await get('traces', { ...apiParams(params, r), cursor });
    } catch (err) {
      if (!ctx.current()) return;
      if (err.problems?.length) showProblems(err);
      else replace(cursor ? more : list, notice('error', err.message));
      return;
    }
    if (!ctx.current()) return;
    found.push(...page.traces);
    if (!found.length) {
      replace(chart);
      replace(list, notice('info', 'No trace matches. Widen the time range or remove a filter.'));
      replace(more);
      return;
    }
    plot();
    draw();
    replace(
      more,
      page.next_cursor
        ? h('button', { type: 'button', onclick: () => show(page.next_cursor) }, 'Load more')
        : null,
    );
    if (!cursor) {
      get('traces', { ...apiParams(params, r), limit: 1, sample: SAMPLE }).then(
        (answer) => {
          if (!ctx.current() || !answer.sample) return;
          sample = answer.sample;
          plot();
        },
        () => {},
      );
    }
  };
  await show(undefined);
}
