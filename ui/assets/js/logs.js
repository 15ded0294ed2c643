// Log search: service, severity and text, or the logs of one trace or span; each record links
// to its trace. Pages of 200 records, with more on demand.

import { get } from './api.js';
import { h, link, replace, notice, table } from './dom.js';
import * as fmt from './format.js';
import * as range from './range.js';

function body(log) {
  if (!log.body) return '';
  return log.body.type === 'string' ? log.body.value : JSON.stringify(log.body.value);
}

export async function render(main, ctx) {
  const { params } = ctx;
  const r = range.fromParams(params);
  const input = (name, placeholder) =>
    h('input', { name, placeholder, value: params.get(name) || '', spellcheck: 'false' });
  const form = h(
    'form',
    { class: 'toolbar' },
    input('service', 'service'),
    h(
      'select',
      { name: 'severity', 'aria-label': 'minimum severity' },
      h('option', { value: '' }, 'any severity'),
      ['debug', 'info', 'warn', 'error', 'fatal'].map((s) =>
        h('option', { value: s, selected: params.get('severity') === s }, `${s} and above`),
      ),
    ),
    h('input', {
      name: 'q',
      placeholder: 'text',
      value: params.get('q') || '',
      style: { width: '260px' },
      spellcheck: 'false',
    }),
    input('trace_id', 'trace id'),
    h('button', { class: 'primary', type: 'submit' }, 'Search'),
  );
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const changes = {};
    for (const k of ['service', 'severity', 'q', 'trace_id'])
      changes[k] = (data.get(k) || '').trim() || null;
    // One span's logs are of its trace: another trace drops the span.
    if (changes.trace_id !== params.get('trace_id')) changes.span_id = null;
    ctx.setParams(changes);
  });
  const out = h('div', null, h('p', { class: 'muted' }, 'Searching…'));
  replace(
    main,
    h(
      'h1',
      null,
      'Logs',
      h(
        'span',
        { class: 'muted' },
        params.get('trace_id') && !params.get('start')
          ? `of one ${params.get('span_id') ? 'span' : 'trace'}, any time`
          : r.label,
      ),
    ),
    h(
      'div',
      { class: 'toolbar' },
      range.picker(params, (p) => ctx.setParams(p)),
    ),
    form,
    out,
  );
  const byTrace = params.get('trace_id') && !params.get('start') && !params.get('range');
  const query = {
    service: params.get('service'),
    severity: params.get('severity'),
    q: params.get('q'),
    trace_id: params.get('trace_id'),
    span_id: params.get('span_id'),
    start: byTrace ? undefined : r.start,
    end: byTrace ? undefined : r.end,
    limit: 200,
  };
  const found = [];
  const count = h('p', { class: 'muted result-count' });
  const rows = h('div');
  const more = h('div');
  const show = async (cursor) => {
    const data = await get('logs', { ...query, cursor });
    if (!ctx.current()) return;
    found.push(...data.logs);
    if (!found.length) {
      replace(out, notice('info', 'No log record matches.'));
      return;
    }
    const n = `${found.length} record${found.length === 1 ? '' : 's'}`;
    replace(count, data.next_cursor ? `The newest ${n}` : `${n}, newest first`);
    replace(rows, logTable(found));
    replace(
      more,
      data.next_cursor
        ? h(
            'button',
            { type: 'button', class: 'more', onclick: () => show(data.next_cursor) },
            'Older records',
          )
        : null,
    );
    if (out.firstChild !== count) replace(out, count, rows, more);
  };
  await show(undefined);
}

function logTable(logs) {
  return table(
    [
      {
        title: 'Time',
        cell: (l) =>
          h(
            'span',
            { class: 'mono' },
            fmt.time(l.time_unix_nano !== '0' ? l.time_unix_nano : l.observed_time_unix_nano),
          ),
      },
      {
        title: 'Severity',
        cell: (l) =>
          h(
            'span',
            { class: ['sev', (l.severity_text || '').toUpperCase()] },
            l.severity_text || String(l.severity_number),
          ),
      },
      { title: 'Service', cell: (l) => l.service_name },
      { title: 'Message', cell: (l) => h('span', { class: 'mono' }, body(l)) },
      {
        title: 'Trace',
        cell: (l) =>
          l.trace_id
            ? link(
                `/trace/${l.trace_id}${l.span_id ? `?span=${l.span_id}` : ''}`,
                `${l.trace_id.slice(0, 12)}…`,
              )
            : '',
      },
    ],
    logs,
    { class: 'logs', rowClass: (l) => (l.severity_number >= 17 ? 'error logline' : 'logline') },
  );
}
