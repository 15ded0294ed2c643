// Services: every service with its rate, errors, latency and when it last sent spans over the
// range, sortable; a service that went silent is marked.

import { get } from './api.js';
import { h, link, replace, notice, table } from './dom.js';
import { sparkline } from './chart.js';
import * as fmt from './format.js';
import * as range from './range.js';

const SORTS = {
  name: (s) => s.name,
  rate: (s) => s.rate_per_sec,
  errors: (s) => s.error_ratio,
  p50: (s) => s.p50_seconds ?? -1,
  p95: (s) => s.p95_seconds ?? -1,
  p99: (s) => s.p99_seconds ?? -1,
  seen: (s) => (s.last_seen_unix_nano ? fmt.msOf(s.last_seen_unix_nano) : 0),
};

/**
 * Whether a service went silent: no span for the time it normally takes to send 20 (by its
 * rate over the range), and at least 10 s, measured back from the newest span any service
 * sent. A service sending 10 a second is silent after 10 s; one sending 1 a minute after
 * 20 minutes. Last-seen times move as span metrics are written (every 15 s by default), so
 * that interval is the finest step. A service with no call in the range is silent.
 */
export function isSilent(service, newestMs) {
  const seen = SORTS.seen(service);
  if (!(service.rate_per_sec > 0)) return seen < newestMs;
  return newestMs - seen >= Math.max(20_000 / service.rate_per_sec, 10_000);
}

export async function render(main, ctx) {
  const { params } = ctx;
  const r = range.fromParams(params);
  const sort = SORTS[params.get('sort')] ? params.get('sort') : 'name';
  const dir =
    params.get('dir') === 'desc'
      ? 'desc'
      : params.get('dir') === 'asc'
        ? 'asc'
        : sort === 'name'
          ? 'asc'
          : 'desc';
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading services…'));
  replace(
    main,
    h('h1', null, 'Services', h('span', { class: 'muted' }, r.label)),
    h(
      'div',
      { class: 'toolbar' },
      range.picker(params, (p) => ctx.setParams(p)),
    ),
    body,
  );
  const data = await get('services', { start: r.start, end: r.end, step: range.step(r) });
  if (!ctx.current()) return;
  const services = data.services.slice();
  const key = SORTS[sort];
  services.sort((a, b) => {
    const [x, y] = [key(a), key(b)];
    const c = typeof x === 'string' ? x.localeCompare(y) : x - y;
    return dir === 'asc' ? c : -c;
  });
  if (!services.length) {
    replace(
      body,
      notice(
        'info',
        'No service has reported spans in this range. ' +
          'Point an OpenTelemetry SDK at :4317 (gRPC) or :4318 (HTTP).',
      ),
    );
    return;
  }
  const onSort = (k) =>
    ctx.setParams(
      {
        sort: k,
        dir:
          k === sort && dir === 'desc'
            ? 'asc'
            : k === sort
              ? 'desc'
              : k === 'name'
                ? 'asc'
                : 'desc',
      },
      { replace: true },
    );
  const newest = Math.max(0, ...services.map(SORTS.seen));
  const silent = (s) => isSilent(s, newest);
  replace(
    body,
    table(
      [
        {
          title: 'Service',
          sortKey: 'name',
          cell: (s) =>
            link(range.withRange(`/services/${encodeURIComponent(s.name)}`, params), s.name),
        },
        { title: 'Rate', sortKey: 'rate', class: 'num', cell: (s) => fmt.rate(s.rate_per_sec) },
        {
          title: 'Errors',
          sortKey: 'errors',
          class: 'num',
          cell: (s) =>
            h(
              'span',
              { class: s.error_ratio >= 0.05 ? 'bad' : undefined },
              fmt.percent(s.error_ratio),
            ),
        },
        { title: 'p50', sortKey: 'p50', class: 'num', cell: (s) => fmt.seconds(s.p50_seconds) },
        { title: 'p95', sortKey: 'p95', class: 'num', cell: (s) => fmt.seconds(s.p95_seconds) },
        { title: 'p99', sortKey: 'p99', class: 'num', cell: (s) => fmt.seconds(s.p99_seconds) },
        {
          title: 'Last seen',
          sortKey: 'seen',
          class: 'num',
          cell: (s) =>
            h(
              'span',
              {
                class: silent(s) ? 'bad silent' : undefined,
                title:
                  (s.last_seen_unix_nano ? fmt.time(s.last_seen_unix_nano) : '') +
                  (silent(s) ? ' — silent for longer than its rate allows' : ''),
              },
              fmt.ago(s.last_seen_unix_nano),
            ),
        },
        {
          title: 'Rate over time',
          cell: (s) =>
            sparkline(
              s.points.map((p) => p.rate_per_sec),
              { label: `${s.name} rate` },
            ),
        },
        {
          title: 'Errors over time',
          cell: (s) =>
            sparkline(
              s.points.map((p) => p.error_ratio),
              { label: `${s.name} errors`, color: 'var(--error)' },
            ),
        },
      ],
      services,
      {
        sort,
        dir,
        onSort,
        class: 'services',
        rowClass: (s) => (s.error_ratio >= 0.05 ? 'error' : undefined),
      },
    ),
  );
}
