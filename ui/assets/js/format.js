// How numbers, times and durations read in the UI.

/** `1.23 s`, `45.6 ms`, `789 µs` from nanoseconds. */
export function duration(ns) {
  if (ns === null || ns === undefined || Number.isNaN(ns)) return '–';
  const n = Number(ns);
  if (n >= 60e9) {
    const m = Math.floor(n / 60e9);
    return `${m}m ${((n - m * 60e9) / 1e9).toFixed(0)}s`;
  }
  if (n >= 1e9) return `${(n / 1e9).toFixed(n >= 10e9 ? 1 : 2)} s`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(n >= 100e6 ? 0 : 1)} ms`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(n >= 100e3 ? 0 : 1)} µs`;
  return `${n} ns`;
}

/** Seconds (as the health API gives percentiles) to a duration. */
export function seconds(sec) {
  return sec === null || sec === undefined ? '–' : duration(sec * 1e9);
}

/** Milliseconds since the epoch from Unix nanoseconds given as a decimal string. */
export function msOf(nanos) {
  const text = String(nanos);
  return text.length > 6 ? Number(text.slice(0, -6)) : 0;
}

/** Unix nanoseconds (a decimal string) from an RFC 3339 time, as the Alertmanager API has them. */
export function nanosOfIso(iso) {
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : `${ms}000000`;
}

/** A local date and time with milliseconds. */
export function time(nanos) {
  const d = new Date(msOf(nanos));
  const pad = (v, n = 2) => String(v).padStart(n, '0');
  const date = `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
  const clock = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return `${date} ${clock}.${pad(d.getMilliseconds(), 3)}`;
}

/** How long before `nowMs` a Unix-nanosecond time was: `4s ago`, `12m ago`, `3h ago`. */
export function ago(nanos, nowMs = Date.now()) {
  if (nanos === null || nanos === undefined) return '–';
  const s = Math.max(0, (nowMs - msOf(nanos)) / 1000);
  if (s < 90) return `${s.toFixed(0)}s ago`;
  if (s < 90 * 60) return `${(s / 60).toFixed(0)}m ago`;
  if (s < 48 * 3600) return `${(s / 3600).toFixed(0)}h ago`;
  return `${(s / 86400).toFixed(0)}d ago`;
}

/** A short clock time for chart axes. */
export function clock(ms) {
  const d = new Date(ms);
  const pad = (v) => String(v).padStart(2, '0');
  return `${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

export function rate(perSec) {
  if (!perSec) return '0/s';
  if (perSec >= 1000) return `${(perSec / 1000).toFixed(1)}k/s`;
  if (perSec >= 10) return `${perSec.toFixed(0)}/s`;
  if (perSec >= 0.1) return `${perSec.toFixed(2)}/s`;
  return `${(perSec * 60).toFixed(2)}/min`;
}

export function percent(ratio) {
  if (!ratio) return '0%';
  const p = ratio * 100;
  return `${p >= 10 ? p.toFixed(0) : p >= 1 ? p.toFixed(1) : p.toFixed(2)}%`;
}

export function number(v) {
  if (v === null || v === undefined) return '–';
  if (typeof v !== 'number') return String(v);
  if (Number.isInteger(v)) return v.toLocaleString('en-US');
  return Math.abs(v) >= 100 ? v.toFixed(1) : v.toPrecision(4);
}

/** A stable colour per service name. */
export function color(name) {
  let hash = 2166136261;
  for (let i = 0; i < name.length; i++) hash = Math.imul(hash ^ name.charCodeAt(i), 16777619);
  // Hues 25–330 only: red (330–25) means an error, so no service is drawn in it.
  const hue = 25 + ((hash >>> 0) % 305);
  return `hsl(${hue} 62% 52%)`;
}

/** An attribute value as text, keeping its type visible for non-strings. */
export function attrValue(attr) {
  if (attr.type === 'string') return attr.value;
  if (attr.type === 'empty') return '(empty)';
  if (attr.type === 'array' || attr.type === 'kvlist') return JSON.stringify(attr.value);
  return String(attr.value);
}
