// Notifications: the ledger of what was sent to on-call, newest first, each with every attempt
// at delivering it and its outcome (`?incident=` narrows it to one incident). A notification's
// own page shows the message as it was rendered: subject, the HTML part framed, the plain text.

import { get } from './api.js';
import { h, link, replace, notice, table } from './dom.js';
import * as fmt from './format.js';

function outcome(n) {
  const kind = n.outcome === 'sent' ? 'resolved' : n.outcome === 'failed' ? 'firing' : 'pending';
  return h('span', { class: ['state', kind] }, n.outcome);
}

function attempts(n) {
  return h(
    'ol',
    { class: 'attempts' },
    n.attempts.map((a) =>
      h(
        'li',
        { class: a.outcome },
        h('span', { title: fmt.time(a.time) }, fmt.ago(a.time)),
        ' ',
        h('strong', null, a.outcome),
        a.reply ? [' — ', h('code', null, a.reply)] : null,
        a.error ? [' — ', h('span', { class: 'error-text' }, a.error)] : null,
        h('span', { class: 'muted' }, ` (${Math.round(a.duration_ms)} ms)`),
      ),
    ),
  );
}

/** The notifications that went out for an incident, as a short list for the alerts page. */
export async function forIncident(incidentId) {
  const data = await get('notifications', { incident: incidentId, limit: 20 });
  if (!data.notifications.length) {
    return h('p', { class: 'notified muted' }, 'No notification has gone out for it yet.');
  }
  return h(
    'div',
    { class: 'notified' },
    h('span', null, 'Notified: '),
    data.notifications.map((n, i) => [
      i ? ', ' : '',
      link(`/notifications/${n.id}`, `${n.status} to ${n.receiver} by ${n.integration}`),
      ' ',
      h('span', { class: 'muted' }, `${fmt.ago(n.time)}, ${n.outcome}`),
    ]),
    ' ',
    link(`/notifications?incident=${encodeURIComponent(incidentId)}`, 'all'),
  );
}

async function list(main, ctx) {
  const incident = ctx.params.get('incident');
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading notifications…'));
  replace(
    main,
    h('h1', null, 'Notifications', link('/silences', h('span', { class: 'muted' }, 'Silences'))),
    incident
      ? h('p', null, `For incident ${incident} · `, link('/notifications', 'all notifications'))
      : null,
    body,
  );
  const timer = setInterval(() => {
    if (ctx.current()) ctx.navigate(location.pathname + location.search, { replace: true });
  }, 15000);
  ctx.onLeave(() => clearInterval(timer));
  const data = await get('notifications', { incident, limit: 200 });
  if (!ctx.current()) return;
  if (!data.notifications.length) {
    replace(
      body,
      notice(
        'info',
        incident
          ? 'No notification has gone out for this incident.'
          : 'No notification has gone out yet. ' +
              'When an alert fires, what on-call receives shows here.',
      ),
    );
    return;
  }
  replace(
    body,
    table(
      [
        { title: 'Sent', cell: (n) => h('span', { title: fmt.time(n.time) }, fmt.ago(n.time)) },
        {
          title: 'Status',
          cell: (n) =>
            h(
              'span',
              { class: ['state', n.status === 'firing' ? 'firing' : 'resolved'] },
              n.status,
            ),
        },
        {
          title: 'Subject',
          cell: (n) => link(`/notifications/${n.id}`, n.subject || n.alerts.join(', ')),
        },
        { title: 'To', cell: (n) => `${n.receiver} · ${n.integration}` },
        {
          title: 'Incident',
          cell: (n) =>
            n.incident
              ? link(`/alerts?incident=${encodeURIComponent(n.incident)}`, n.incident)
              : '–',
        },
        { title: 'Outcome', cell: outcome },
        { title: 'Attempts', cell: attempts },
      ],
      data.notifications,
      { class: 'notifications', rowClass: (n) => `notification ${n.outcome}` },
    ),
    data.truncated
      ? h('p', { class: 'muted' }, 'Older notifications are in the notifications SQL table.')
      : null,
  );
}

async function one(main, ctx) {
  const id = ctx.args[0];
  const n = await get(`notifications/${encodeURIComponent(id)}`);
  if (!ctx.current()) return;
  replace(
    main,
    h(
      'h1',
      null,
      n.subject || 'Notification',
      link('/notifications', h('span', { class: 'muted' }, 'All notifications')),
    ),
    h(
      'p',
      null,
      h('span', { class: ['state', n.status === 'firing' ? 'firing' : 'resolved'] }, n.status),
      ' ',
      `to ${n.receiver} by ${n.integration}, ${fmt.time(n.time)} · `,
      n.incident
        ? link(`/alerts?incident=${encodeURIComponent(n.incident)}`, `incident ${n.incident}`)
        : 'no incident',
    ),
    h('h2', null, 'Attempts'),
    attempts(n),
    h('h2', null, 'The message'),
    h('iframe', {
      class: 'message-html',
      title: 'The message as rendered',
      src: `/api/v1/notifications/${encodeURIComponent(id)}/html`,
      sandbox: '',
    }),
    h(
      'details',
      null,
      h('summary', null, 'Plain-text part'),
      h('pre', { class: 'message-text' }, n.text),
    ),
  );
}

export async function render(main, ctx) {
  return ctx.args[0] ? one(main, ctx) : list(main, ctx);
}
