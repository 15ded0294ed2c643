// Silences: the list (active, pending, expired) with an Expire button on each live one, and
// the form that creates one. `/silences/new?matcher=alertname%3D%22X%22&matcher=…` opens the
// form filled in, as the links on alerts and in notifications do. Both talk to the
// Alertmanager API under /alertmanager/api/v2, as amtool does.

import { askForToken } from './api.js';
import { h, link, replace, notice, table } from './dom.js';
import * as fmt from './format.js';

const AM = '/alertmanager/api/v2';

/** A request to the Alertmanager API; its errors are JSON strings. */
async function am(method, path, body) {
  const response = await fetch(`${AM}/${path}`, {
    method,
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let parsed = null;
  try {
    parsed = text ? JSON.parse(text) : null;
  } catch {
    parsed = null;
  }
  if (response.status === 401) askForToken();
  if (!response.ok) {
    const message =
      typeof parsed === 'string' ? parsed : (parsed && parsed.error) || text || response.statusText;
    throw new Error(message);
  }
  return parsed;
}

/** `name="value"` as the matcher syntax writes it. */
export function matcherText(m) {
  const op = m.isRegex ? (m.isEqual ? '=~' : '!~') : m.isEqual ? '=' : '!=';
  return `${m.name}${op}${JSON.stringify(m.value)}`;
}

/** Parses `name="value"` (=, !=, =~, !~; the value quoted or not). */
export function parseMatcher(text) {
  const m = text.trim().match(/^([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*)$/);
  if (!m) return null;
  let value = m[3].trim();
  if (value.startsWith('"')) {
    try {
      value = JSON.parse(value);
    } catch {
      return null;
    }
  }
  return { name: m[1], value, isRegex: m[2].includes('~'), isEqual: !m[2].startsWith('!') };
}

/** The link that opens the silence form for `labels`. */
export function silenceLink(labels) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(labels)) q.append('matcher', `${k}=${JSON.stringify(v)}`);
  return `/silences/new?${q}`;
}

function stateOf(s) {
  return h(
    'span',
    {
      class: [
        'state',
        s.status.state === 'active'
          ? 'firing'
          : s.status.state === 'pending'
            ? 'pending'
            : 'resolved',
      ],
    },
    s.status.state,
  );
}

async function list(main, ctx) {
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading silences…'));
  replace(
    main,
    h(
      'h1',
      null,
      'Silences',
      link('/silences/new', h('span', { class: 'button primary' }, 'New silence')),
    ),
    body,
  );
  const silences = await am('GET', 'silences');
  if (!ctx.current()) return;
  if (!silences.length) {
    replace(
      body,
      notice(
        'info',
        'No silences. A silence mutes the notifications of the alerts its matchers match.',
      ),
    );
    return;
  }
  const expire = async (s, button) => {
    button.disabled = true;
    try {
      await am('DELETE', `silence/${encodeURIComponent(s.id)}`);
      ctx.navigate(location.pathname + location.search, { replace: true });
    } catch (err) {
      button.disabled = false;
      button.after(notice('error', err.message));
    }
  };
  replace(
    body,
    table(
      [
        { title: 'State', cell: stateOf },
        {
          title: 'Matchers',
          cell: (s) => s.matchers.map((m) => h('code', { class: 'pill' }, matcherText(m))),
        },
        {
          title: 'Starts',
          cell: (s) => h('span', { title: s.startsAt }, fmt.time(fmt.nanosOfIso(s.startsAt))),
        },
        {
          title: 'Ends',
          cell: (s) => h('span', { title: s.endsAt }, fmt.time(fmt.nanosOfIso(s.endsAt))),
        },
        { title: 'Created by', cell: (s) => s.createdBy },
        { title: 'Comment', cell: (s) => s.comment },
        {
          title: '',
          cell: (s) =>
            s.status.state === 'expired'
              ? null
              : h(
                  'button',
                  { type: 'button', class: 'expire', onclick: (e) => expire(s, e.currentTarget) },
                  'Expire',
                ),
        },
      ],
      silences,
      { class: 'silences', rowClass: (s) => `silence ${s.status.state}` },
    ),
  );
}

const DURATIONS = [
  ['1h', 3600],
  ['2h', 7200],
  ['4h', 14400],
  ['12h', 43200],
  ['1d', 86400],
  ['7d', 604800],
];

async function form(main, ctx) {
  const given = ctx.params.getAll('matcher').map(parseMatcher).filter(Boolean);
  const rows = h('div', { class: 'matchers' });
  const addRow = (m) => {
    const input = h('input', {
      name: 'matcher',
      value: m ? matcherText(m) : '',
      placeholder: 'service="payments"',
      spellcheck: 'false',
      'aria-label': 'Matcher',
    });
    const row = h(
      'div',
      { class: 'matcher' },
      input,
      h(
        'button',
        {
          type: 'button',
          class: 'remove',
          title: 'Remove this matcher',
          onclick: () => row.remove(),
        },
        '×',
      ),
    );
    rows.append(row);
  };
  (given.length ? given : [null]).forEach(addRow);
  const duration = h(
    'select',
    { name: 'duration', 'aria-label': 'Duration' },
    DURATIONS.map(([label, secs]) => h('option', { value: secs, selected: secs === 7200 }, label)),
  );
  const author = h('input', {
    name: 'createdBy',
    required: true,
    value: localStorage.getItem('spyglass.author') || '',
    placeholder: 'your name',
    'aria-label': 'Created by',
  });
  const comment = h('textarea', {
    name: 'comment',
    required: true,
    rows: 2,
    placeholder: 'why, and where to follow up',
    'aria-label': 'Comment',
  });
  const problem = h('div');
  const affected = h('div', { class: 'affected-alerts muted' });
  // The answer to the latest edit wins, whatever order the answers come in.
  let asked = 0;
  const preview = async () => {
    const ticket = ++asked;
    const matchers = [...rows.querySelectorAll('input')].map((i) => i.value.trim()).filter(Boolean);
    if (!matchers.length || matchers.some((t) => !parseMatcher(t))) {
      replace(affected, '');
      return;
    }
    try {
      const q = new URLSearchParams(matchers.map((t) => ['filter', t]));
      const alerts = await am('GET', `alerts?${q}`);
      if (ticket !== asked) return;
      replace(
        affected,
        alerts.length
          ? [
              `It mutes ${alerts.length} alert${alerts.length === 1 ? '' : 's'} firing now: `,
              alerts.map((a, i) => [
                i ? ', ' : '',
                h(
                  'code',
                  null,
                  a.labels.alertname || '',
                  a.labels.service ? ` ${a.labels.service}` : '',
                ),
              ]),
            ]
          : 'It mutes no alert firing now.',
      );
    } catch (err) {
      if (ticket === asked) replace(affected, err.message);
    }
  };
  let typing = null;
  rows.addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(preview, 300);
  });
  const submit = async (e) => {
    e.preventDefault();
    const texts = [...rows.querySelectorAll('input')].map((i) => i.value.trim()).filter(Boolean);
    const matchers = texts.map(parseMatcher);
    const bad = texts.filter((t, i) => !matchers[i]);
    if (bad.length) {
      replace(
        problem,
        notice('error', `Not a matcher: ${bad.join(', ')}. Write name="value" (or !=, =~, !~).`),
      );
      return;
    }
    if (!matchers.length) {
      replace(problem, notice('error', 'A silence needs at least one matcher.'));
      return;
    }
    const now = Date.now();
    localStorage.setItem('spyglass.author', author.value.trim());
    try {
      await am('POST', 'silences', {
        matchers,
        startsAt: new Date(now).toISOString(),
        endsAt: new Date(now + Number(duration.value) * 1000).toISOString(),
        createdBy: author.value.trim(),
        comment: comment.value.trim(),
      });
      ctx.navigate('/silences');
    } catch (err) {
      replace(problem, notice('error', err.message));
    }
  };
  replace(
    main,
    h('h1', null, 'New silence', link('/silences', h('span', { class: 'muted' }, 'All silences'))),
    h(
      'form',
      { class: 'silence-form card', onsubmit: submit },
      h('label', null, 'Matchers (all must match)'),
      rows,
      h('button', { type: 'button', class: 'add', onclick: () => addRow(null) }, 'Add a matcher'),
      affected,
      h('label', null, 'For ', duration),
      h('label', null, 'Created by ', author),
      h('label', null, 'Comment ', comment),
      problem,
      h('button', { type: 'submit', class: 'primary' }, 'Create silence'),
    ),
  );
  preview();
}

export async function render(main, ctx) {
  if (location.pathname.replace(/\/+$/, '') === '/silences/new') return form(main, ctx);
  return list(main, ctx);
}
