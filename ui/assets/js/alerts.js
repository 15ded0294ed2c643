// Alerts: incidents first (root cause, affected services, their alerts), then every pending
// and firing alert with its value against its threshold, a chart of what it watches, and its
// example traces; recently resolved ones below.

import { get } from './api.js';
import { h, link, replace, notice } from './dom.js';
import { lineChart } from './chart.js';
import * as fmt from './format.js';
import { silenceLink } from './silences.js';
import { forIncident } from './notifications.js';

/** How each built-in rule's value reads, and what of the service health API it charts. */
const KINDS = {
  ServiceErrors: { format: fmt.percent, health: 'error_ratio', title: 'Error ratio' },
  ServiceLatency: { format: fmt.seconds, health: 'p99_seconds', title: 'p99 latency' },
  DependencyFailing: { format: fmt.percent },
  ServiceSilent: { format: (v) => fmt.seconds(v) },
};

const CHART_MS = 3 * 3600 * 1000;

function formatValue(alert, v) {
  const kind = KINDS[alert.rule];
  if (v === null || v === undefined) return '–';
  return kind ? kind.format(v) : String(Math.round(v * 1000) / 1000);
}

/** `service` or `client → server`: what an alert is about. */
export function subject(alert) {
  const l = alert.labels;
  if (l.client && l.server) return `${l.client} → ${l.server}`;
  return l.service || l.service_name || l.job || alert.rule;
}

export function stateBadge(state) {
  return h('span', { class: ['state', state] }, state);
}

function otherLabels(alert) {
  const hidden = new Set(['alertname', 'service', 'client', 'server']);
  return Object.entries(alert.labels)
    .filter(([k]) => !hidden.has(k))
    .map(([k, v]) => h('span', { class: 'pill' }, `${k}=${v}`));
}

function evidence(alert) {
  if (!alert.evidence.length) return h('span', { class: 'muted' }, 'no example traces');
  return h(
    'span',
    { class: 'evidence' },
    'Example traces: ',
    alert.evidence.map((e) =>
      link(`/trace/${e.trace_id}`, h('code', null, e.trace_id.slice(0, 12))),
    ),
  );
}

/** The chart of what a built-in service alert watches, with its threshold. */
async function chart(alert) {
  const kind = KINDS[alert.rule];
  const service = alert.labels.service;
  if (!kind || !kind.health || !service) return null;
  const end = Date.now();
  const start = end - CHART_MS;
  const data = await get('services', { start: `${start}000000`, end: `${end}000000`, step: '2m' });
  const me = data.services.find((s) => s.name === service);
  if (!me) return null;
  const points = me.points.map((p) => [fmt.msOf(p.t), p[kind.health] ?? 0]);
  const series = [{ name: `${service} ${kind.title.toLowerCase()}`, points }];
  if (alert.threshold !== null && alert.threshold !== undefined) {
    series.push({
      name: 'threshold',
      color: 'var(--warn)',
      points: points.map(([t]) => [t, alert.threshold]),
    });
  }
  return lineChart(series, {
    title: `${kind.title} of ${service}, last 3 hours`,
    format: kind.format,
    label: `${alert.rule} ${service}`,
    height: 150,
  });
}

export function alertCard(alert) {
  const chartBox = h('div', { class: 'alert-chart' });
  chart(alert)
    .then((c) => {
      if (c) replace(chartBox, c);
    })
    .catch(() => {});
  const since =
    alert.state === 'resolved'
      ? `resolved ${fmt.ago(alert.resolved_at)}`
      : `since ${fmt.ago(alert.since)}`;
  return h(
    'div',
    {
      class: ['card', 'alert', alert.state],
      dataset: { rule: alert.rule, subject: subject(alert) },
    },
    h(
      'div',
      { class: 'alert-head' },
      stateBadge(alert.state),
      h('strong', null, alert.rule),
      h('span', null, subject(alert)),
      otherLabels(alert),
      h('span', { class: 'muted', title: fmt.time(alert.since) }, since),
    ),
    alert.annotations.summary ? h('p', { class: 'summary' }, alert.annotations.summary) : null,
    h(
      'p',
      null,
      h('span', { class: 'value' }, formatValue(alert, alert.value)),
      alert.threshold !== null && alert.threshold !== undefined
        ? h(
            'span',
            { class: 'muted' },
            ` against a threshold of ${formatValue(alert, alert.threshold)}`,
          )
        : null,
    ),
    h(
      'p',
      { class: 'alert-actions' },
      evidence(alert),
      ' ',
      alert.state !== 'resolved'
        ? link(silenceLink(alert.labels), h('span', { class: 'silence-link' }, 'Silence…'))
        : null,
    ),
    chartBox,
  );
}

function incidentCard(incident) {
  const root = incident.root;
  const notified = h('div', { class: 'notified' });
  forIncident(incident.id)
    .then((n) => replace(notified, n))
    .catch(() => {});
  return h(
    'section',
    { class: ['incident', incident.state], dataset: { root } },
    h(
      'h2',
      null,
      stateBadge(incident.state),
      'Root cause: ',
      link(`/services/${encodeURIComponent(root)}`, root),
      h('span', { class: 'muted' }, `started ${fmt.ago(incident.started_at)}`),
    ),
    incident.affected.length
      ? h(
          'p',
          { class: 'affected' },
          'Affected: ',
          incident.affected.map((s, i) => [
            i ? ', ' : '',
            link(`/services/${encodeURIComponent(s)}`, s),
          ]),
        )
      : null,
    notified,
    h('div', { class: 'cards' }, rootFirst(incident).map(alertCard)),
  );
}

/** The root's own alerts first, then the ones it explains. */
function rootFirst(incident) {
  const own = (a) => (subject(a) === incident.root || a.labels.server === incident.root ? 0 : 1);
  return incident.alerts.slice().sort((a, b) => own(a) - own(b) || a.rule.localeCompare(b.rule));
}

export async function render(main, ctx) {
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading alerts…'));
  const only = { incident: ctx.params.get('incident'), rule: ctx.params.get('rule') };
  replace(
    main,
    h(
      'h1',
      null,
      'Alerts',
      link('/alerts/rules', h('span', { class: 'muted' }, 'Rules')),
      link('/silences', h('span', { class: 'muted' }, 'Silences')),
      link('/notifications', h('span', { class: 'muted' }, 'Notifications')),
    ),
    only.incident || only.rule
      ? h(
          'p',
          { class: 'selection' },
          only.incident ? `Incident ${only.incident}` : `Rule ${only.rule}`,
          ' · ',
          link('/alerts', 'all alerts'),
        )
      : null,
    body,
  );
  const [incidents, alerts] = await Promise.all([
    get('incidents'),
    get('alerts', { state: ['pending', 'firing', 'resolved'] }),
  ]);
  if (!ctx.current()) return;
  if (only.incident) {
    // A link from a notification: that incident, open or resolved.
    const incident = incidents.incidents.find((i) => i.id === only.incident);
    replace(
      body,
      incident
        ? incidentCard(incident)
        : notice(
            'info',
            `Incident ${only.incident} is no longer shown: it resolved more than 15 minutes ago. ` +
              'The alerts SQL table keeps its history.',
          ),
    );
    return;
  }
  const ofRule = (a) => !only.rule || a.rule === only.rule;
  const open = incidents.incidents.filter((i) => i.state !== 'resolved' && i.alerts.some(ofRule));
  const resolved = alerts.alerts.filter((a) => a.state === 'resolved' && ofRule(a));
  const parts = [];
  if (!open.length)
    parts.push(
      notice(
        'info',
        only.rule
          ? `No alert of ${only.rule} is firing or pending.`
          : 'Nothing is firing or pending.',
      ),
    );
  parts.push(open.map(incidentCard));
  if (resolved.length) {
    parts.push(
      h('h2', null, 'Recently resolved'),
      h('div', { class: 'cards' }, resolved.map(alertCard)),
    );
  }
  replace(body, parts);
  const timer = setInterval(() => {
    if (ctx.current()) ctx.navigate(location.pathname + location.search, { replace: true });
  }, 15000);
  ctx.onLeave(() => clearInterval(timer));
}
