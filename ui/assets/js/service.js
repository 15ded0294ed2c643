// One service: its operations, charts of rate, errors and latency, its dependencies, and
// recent error and slow traces.

import { get } from './api.js';
import { h, link, replace, notice, table } from './dom.js';
import { lineChart } from './chart.js';
import * as fmt from './format.js';
import * as range from './range.js';
import { traceList } from './search.js';
import { alertCard, stateBadge, subject } from './alerts.js';

export async function render(main, ctx) {
  const { params } = ctx;
  const name = ctx.args[0];
  const r = range.fromParams(params);
  const charts = h('div', { class: 'cards' }, h('p', { class: 'muted' }, 'Loading…'));
  const ops = h('div');
  const deps = h('div', { class: 'cards' });
  const errors = h('div');
  const slow = h('div', { class: 'slowest' });
  const alerts = h('div');
  replace(
    main,
    h('h1', null, name, h('span', { class: 'muted' }, r.label)),
    h(
      'div',
      { class: 'toolbar' },
      range.picker(params, (p) => ctx.setParams(p)),
      link(range.withRange('/search', params, { service: name }), 'Search its traces'),
      link(range.withRange('/logs', params, { service: name }), 'Its logs'),
    ),
    charts,
    h('h2', null, 'Alerts'),
    alerts,
    h('h2', null, 'Operations'),
    ops,
    h('h2', null, 'Dependencies'),
    deps,
    h('h2', null, 'Recent errors'),
    errors,
    h('h2', null, 'Slowest recent traces'),
    slow,
  );

  showAlerts(alerts, name, r, ctx).catch((e) => replace(alerts, notice('error', e.message)));
  const step = range.step(r);
  const [services, operations, graph] = await Promise.all([
    get('services', { start: r.start, end: r.end, step }),
    get(`services/${encodeURIComponent(name)}/operations`, { start: r.start, end: r.end }),
    get('dependencies', { start: r.start, end: r.end }),
  ]);
  if (!ctx.current()) return;
  const me = services.services.find((s) => s.name === name);
  const node = graph.nodes.find((n) => n.name === name);
  const callers = graph.edges.filter((e) => e.server === name);
  // A database or other peer that sends no telemetry itself: what its callers see of it.
  const peer = !me && node && node.kind !== 'service';
  if (peer) {
    const into = await get(`services/${encodeURIComponent(name)}/callers`, {
      start: r.start,
      end: r.end,
      step,
    });
    if (!ctx.current()) return;
    replace(charts, peerCharts(node, into.callers));
  } else if (!me) {
    replace(charts, notice('info', `No span metrics for ${name} in this range.`));
  } else {
    const t = (p) => fmt.msOf(p.t);
    replace(
      charts,
      h(
        'div',
        { class: 'card' },
        lineChart([{ name: 'rate', points: me.points.map((p) => [t(p), p.rate_per_sec]) }], {
          title: 'Requests per second',
          format: (v) => fmt.rate(v),
          label: 'rate',
        }),
      ),
      h(
        'div',
        { class: 'card' },
        lineChart(
          [
            {
              name: 'error ratio',
              color: '#ef4444',
              points: me.points.map((p) => [t(p), p.error_ratio]),
            },
          ],
          { title: 'Error ratio', format: fmt.percent, label: 'errors' },
        ),
      ),
      h(
        'div',
        { class: 'card' },
        lineChart(
          ['p50', 'p95', 'p99'].map((q) => ({
            name: q,
            points: me.points.map((p) => [t(p), p[`${q}_seconds`] ?? 0]),
          })),
          { title: 'Latency', format: fmt.seconds, label: 'latency' },
        ),
      ),
    );
  }
  const rows = operations.operations.slice().sort((a, b) => b.calls - a.calls);
  replace(
    ops,
    rows.length
      ? table(
          [
            {
              title: 'Operation',
              cell: (o) =>
                link(
                  range.withRange('/search', params, { service: name, operation: o.name }),
                  o.name,
                ),
            },
            { title: 'Kind', cell: (o) => o.kind },
            { title: 'Rate', class: 'num', cell: (o) => fmt.rate(o.rate_per_sec) },
            {
              title: 'Errors',
              class: 'num',
              cell: (o) =>
                h(
                  'span',
                  { class: o.error_ratio >= 0.05 ? 'bad' : undefined },
                  fmt.percent(o.error_ratio),
                ),
            },
            { title: 'p50', class: 'num', cell: (o) => fmt.seconds(o.p50_seconds) },
            { title: 'p95', class: 'num', cell: (o) => fmt.seconds(o.p95_seconds) },
            { title: 'p99', class: 'num', cell: (o) => fmt.seconds(o.p99_seconds) },
          ],
          rows,
        )
      : notice('info', 'No operations in this range.'),
  );

  const edge = (e, other) =>
    h(
      'tr',
      { class: e.error_ratio >= 0.05 ? 'error' : undefined },
      h('td', null, link(range.withRange(`/services/${encodeURIComponent(other)}`, params), other)),
      h('td', { class: 'num' }, fmt.rate(e.rate_per_sec)),
      h(
        'td',
        { class: 'num' },
        h('span', { class: e.error_ratio >= 0.05 ? 'bad' : undefined }, fmt.percent(e.error_ratio)),
      ),
      h('td', { class: 'num' }, fmt.seconds(e.p99_seconds)),
    );
  const head = h(
    'thead',
    null,
    h(
      'tr',
      null,
      h('th', null, 'Service'),
      h('th', { class: 'num' }, 'Rate'),
      h('th', { class: 'num' }, 'Errors'),
      h('th', { class: 'num' }, 'p99'),
    ),
  );
  const up = graph.edges.filter((e) => e.server === name);
  const down = graph.edges.filter((e) => e.client === name);
  const edgeCard = (title, edges, other) =>
    h(
      'div',
      { class: 'card' },
      h('h3', null, title),
      edges.length
        ? h(
            'table',
            { class: 'grid' },
            head.cloneNode(true),
            h(
              'tbody',
              null,
              edges.map((e) => edge(e, other(e))),
            ),
          )
        : h('p', { class: 'muted' }, 'None seen.'),
    );
  replace(
    deps,
    edgeCard('Upstream (calls it)', up, (e) => e.client),
    edgeCard('Downstream (it calls)', down, (e) => e.server),
  );

  if (peer) {
    replace(ops, h('p', { class: 'muted' }, `${name} has no operations of its own.`));
    const callerLinks = (extra) =>
      h(
        'p',
        null,
        'Traces of its callers: ',
        callers.map((e, i) => [
          i ? ', ' : '',
          link(range.withRange('/search', params, { service: e.client, ...extra }), e.client),
        ]),
      );
    replace(errors, callerLinks({ status: 'error' }));
    replace(slow, callerLinks({}));
    return;
  }
  const [errorTraces, slowTraces] = await Promise.all([
    get('traces', { service: name, status: 'error', start: r.start, end: r.end, limit: 10 }),
    me && me.p95_seconds
      ? get('traces', {
          service: name,
          min_duration: `${Math.round(me.p95_seconds * 1e6)}us`,
          start: r.start,
          end: r.end,
          limit: 50,
        })
      : { traces: [] },
  ]);
  if (!ctx.current()) return;
  replace(
    errors,
    errorTraces.traces.length
      ? traceList(errorTraces.traces)
      : notice('info', 'No error traces in this range.'),
  );
  // The newest 50 above the p95, slowest first: the ten a person looks at.
  const slowest = slowTraces.traces
    .slice()
    .sort((a, b) => b.duration_nano - a.duration_nano)
    .slice(0, 10);
  replace(
    slow,
    slowest.length ? traceList(slowest) : notice('info', 'No traces above the p95 in this range.'),
  );
}

/** A peer's calls as its callers saw them, a line per caller: rate, errors and p99. */
function peerCharts(node, callers) {
  const t = (p) => fmt.msOf(p.t);
  const chart = (title, value, format, label) =>
    h(
      'div',
      { class: 'card' },
      lineChart(
        callers.map((c) => ({
          name: c.client,
          color: fmt.color(c.client),
          points: c.points.map((p) => [t(p), value(p)]),
        })),
        { title, format, label },
      ),
    );
  return [
    h(
      'div',
      { class: 'card peer' },
      h('h3', null, `${node.name} sends no telemetry of its own`),
      h(
        'p',
        { class: 'muted' },
        `It is a ${node.kind} seen from the client spans of its callers, a line each. `,
        'These figures are theirs: the time a call took includes the network.',
      ),
    ),
    callers.length
      ? [
          chart('Calls per second, by caller', (p) => p.rate_per_sec, fmt.rate, 'calls'),
          chart('Error ratio, by caller', (p) => p.error_ratio, fmt.percent, 'errors'),
          chart('p99 latency, by caller', (p) => p.p99_seconds ?? 0, fmt.seconds, 'latency'),
        ]
      : notice('info', 'No caller reached it in this range.'),
  ];
}

/** The service's pending and firing alerts, then their history over the range. */
async function showAlerts(box, name, r, ctx) {
  const [active, history] = await Promise.all([
    get('alerts', { service: name }),
    get('alerts/history', { service: name, start: r.start, end: r.end }),
  ]);
  if (!ctx.current()) return;
  const rows = history.transitions.slice().reverse();
  replace(
    box,
    active.alerts.length
      ? h('div', { class: 'cards' }, active.alerts.map(alertCard))
      : h('p', { class: 'muted' }, 'No alert is pending or firing.'),
    rows.length
      ? table(
          [
            { title: 'Time', cell: (t) => fmt.time(t.time) },
            { title: 'Alert', cell: (t) => t.rule },
            { title: 'About', cell: (t) => subject({ rule: t.rule, labels: t.labels }) },
            { title: 'State', cell: (t) => stateBadge(t.state) },
          ],
          rows,
          { class: 'history' },
        )
      : h('p', { class: 'muted' }, 'No alert changed state in this range.'),
  );
}
