// Time ranges: presets ("the last hour") or an explicit start and end, kept in the URL.

import { h } from './dom.js';

export const PRESETS = [
  ['15m', 'Last 15 minutes', 15 * 60],
  ['1h', 'Last hour', 3600],
  ['6h', 'Last 6 hours', 6 * 3600],
  ['24h', 'Last 24 hours', 24 * 3600],
  ['7d', 'Last 7 days', 7 * 24 * 3600],
];

/** The range of the URL: `{start, end, seconds, label}` with API-ready start and end. */
export function fromParams(params, fallback = '1h') {
  const start = params.get('start');
  const end = params.get('end');
  if (start) {
    return {
      start,
      end: end || 'now',
      custom: true,
      seconds: null,
      label: `${start} → ${end || 'now'}`,
    };
  }
  const key = params.get('range') || fallback;
  const preset = PRESETS.find((p) => p[0] === key) || PRESETS.find((p) => p[0] === fallback);
  return {
    start: `now-${preset[0]}`,
    end: 'now',
    custom: false,
    key: preset[0],
    seconds: preset[2],
    label: preset[1],
  };
}

/**
 * A link to `path` with `extra` parameters and the time range of `params`, so that following
 * it keeps the range in view.
 */
export function withRange(path, params, extra = {}) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(extra)) if (v) q.set(k, v);
  for (const k of ['range', 'start', 'end']) if (params.get(k)) q.set(k, params.get(k));
  const text = q.toString();
  return text ? `${path}?${text}` : path;
}

const UNIT_SECONDS = { s: 1, m: 60, h: 3600, d: 86400, w: 604800 };

/** Milliseconds since the epoch of a time as the API takes it (`now-2h`, RFC 3339, ns). */
function msOf(text, now) {
  const t = String(text).trim();
  if (t === 'now') return now;
  const rel = t.match(/^now-(\d+(?:\.\d+)?)([smhdw])$/);
  if (rel) return now - Number(rel[1]) * UNIT_SECONDS[rel[2]] * 1000;
  if (/^\d{13,}$/.test(t)) return Number(t.slice(0, -6));
  const parsed = Date.parse(t);
  return Number.isNaN(parsed) ? null : parsed;
}

/** The range's start and end in milliseconds since the epoch. */
export function millis(range) {
  const now = Date.now();
  const start = msOf(range.start, now);
  const end = msOf(range.end, now);
  return [start ?? now - 3600 * 1000, end ?? now];
}

/** A step giving about `points` points over the range, as the API takes it. */
export function step(range, points = 30) {
  let sec = range.seconds;
  if (!sec) {
    const now = Date.now();
    const [start, end] = [msOf(range.start, now), msOf(range.end, now)];
    sec = start !== null && end !== null && end > start ? (end - start) / 1000 : 7 * 86400;
  }
  return `${Math.max(10, Math.ceil(sec / points))}s`;
}

/** A picker of presets plus a custom start and end; calls `change(params)` with the new ones. */
export function picker(params, change) {
  const current = fromParams(params);
  const select = h(
    'select',
    { 'aria-label': 'Time range', name: 'range' },
    PRESETS.map(([key, label]) =>
      h('option', { value: key, selected: !current.custom && current.key === key }, label),
    ),
    h('option', { value: 'custom', selected: current.custom }, 'Custom…'),
  );
  const start = h('input', {
    name: 'start',
    placeholder: 'start (now-2h, RFC 3339)',
    value: params.get('start') || '',
    class: 'custom-time',
  });
  const end = h('input', {
    name: 'end',
    placeholder: 'end (now)',
    value: params.get('end') || '',
    class: 'custom-time',
  });
  const custom = h(
    'span',
    { class: 'custom', hidden: !current.custom },
    start,
    end,
    h(
      'button',
      {
        type: 'button',
        onclick: () =>
          change({ range: null, start: start.value.trim() || null, end: end.value.trim() || null }),
      },
      'Apply',
    ),
  );
  select.addEventListener('change', () => {
    if (select.value === 'custom') {
      custom.hidden = false;
      start.focus();
    } else {
      change({ range: select.value, start: null, end: null });
    }
  });
  return h('span', { class: 'range' }, select, custom);
}
