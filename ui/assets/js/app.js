// The router: the path picks a page, the query string holds its state, links and forms move
// through history without reloading.

import { replace, notice } from './dom.js';
import { get } from './api.js';

const PAGES = [
  [/^\/(services)?$/, 'services', () => import('./services.js')],
  [/^\/services\/([^/]+)$/, 'services', () => import('./service.js')],
  [/^\/search$/, 'search', () => import('./search.js')],
  [/^\/trace\/([0-9a-fA-F]{32}|file)$/, 'search', () => import('./trace.js')],
  [/^\/compare$/, 'compare', () => import('./compare.js')],
  [/^\/map$/, 'map', () => import('./map.js')],
  [/^\/explore$/, 'metrics', () => import('./metrics.js')],
  [/^\/logs$/, 'logs', () => import('./logs.js')],
  [/^\/sql$/, 'sql', () => import('./sql.js')],
  [/^\/alerts$/, 'alerts', () => import('./alerts.js')],
  [/^\/alerts\/rules$/, 'alerts', () => import('./rules.js')],
  [/^\/silences(?:\/new)?$/, 'alerts', () => import('./silences.js')],
  [/^\/notifications(?:\/([0-9a-f]+))?$/, 'alerts', () => import('./notifications.js')],
];

const main = document.getElementById('main');
let rendering = 0;
let cleanup = null;

/** Goes to `url` (a path with query), adding a history entry unless `replace` is set. */
export function navigate(url, opts = {}) {
  if (opts.replace) history.replaceState(null, '', url);
  else history.pushState(null, '', url);
  render();
}

/** Changes the current page's query parameters (null removes one); `replace` keeps history. */
export function setParams(changes, opts = {}) {
  const params = new URLSearchParams(location.search);
  for (const [key, value] of Object.entries(changes)) {
    params.delete(key);
    if (value === null || value === undefined || value === '') continue;
    for (const v of Array.isArray(value) ? value : [value]) params.append(key, v);
  }
  const text = params.toString();
  navigate(`${location.pathname}${text ? `?${text}` : ''}`, opts);
}

async function render() {
  const ticket = ++rendering;
  const path = location.pathname.replace(/\/+$/, '') || '/';
  const params = new URLSearchParams(location.search);
  if (cleanup) {
    cleanup();
    cleanup = null;
  }
  for (const a of document.querySelectorAll('#nav a')) a.classList.remove('active');
  for (const [pattern, nav, load] of PAGES) {
    const match = path.match(pattern);
    if (!match) continue;
    document.querySelector(`#nav a[data-page="${nav}"]`)?.classList.add('active');
    const page = await load();
    if (ticket !== rendering) return;
    const ctx = {
      params,
      args: match.slice(1).map((a) => (a === undefined ? a : decodeURIComponent(a))),
      navigate,
      setParams,
      current: () => ticket === rendering,
      onLeave: (f) => {
        cleanup = f;
      },
    };
    try {
      await page.render(main, ctx);
    } catch (err) {
      if (ticket === rendering) replace(main, notice('error', err.message || String(err)));
    }
    return;
  }
  const trace = path.match(/^\/trace\/(.*)$/);
  replace(
    main,
    trace
      ? notice(
          'error',
          `“${decodeURIComponent(trace[1])}” is not a trace id: ` +
            'a trace id is 32 hexadecimal digits.',
        )
      : notice('error', `No page at ${path}.`),
  );
}

document.addEventListener('click', (e) => {
  if (e.defaultPrevented || e.button !== 0 || e.metaKey || e.ctrlKey || e.shiftKey || e.altKey)
    return;
  const a = e.target.closest('a[data-link]');
  if (!a || a.origin !== location.origin) return;
  e.preventDefault();
  navigate(a.pathname + a.search);
});

window.addEventListener('popstate', render);

document.getElementById('goto').addEventListener('submit', (e) => {
  e.preventDefault();
  const input = e.target.elements.trace;
  const id = input.value.trim().toLowerCase();
  if (/^[0-9a-f]{32}$/.test(id)) {
    input.value = '';
    navigate(`/trace/${id}`);
  } else {
    input.setCustomValidity('A trace id is 32 hexadecimal digits');
    input.reportValidity();
  }
});
document
  .getElementById('goto')
  .elements.trace.addEventListener('input', (e) => e.target.setCustomValidity(''));

// Dark mode: the system's choice unless the toggle stored one.
const stored = localStorage.getItem('spyglass.theme');
if (stored === 'light' || stored === 'dark') document.documentElement.dataset.theme = stored;
document.getElementById('theme').addEventListener('click', () => {
  const dark = document.documentElement.dataset.theme
    ? document.documentElement.dataset.theme === 'dark'
    : matchMedia('(prefers-color-scheme: dark)').matches;
  const next = dark ? 'light' : 'dark';
  document.documentElement.dataset.theme = next;
  localStorage.setItem('spyglass.theme', next);
});

render();

// The nav's count of firing alerts, kept fresh.
async function firingCount() {
  const badge = document.getElementById('firing');
  try {
    const data = await get('alerts', { state: 'firing' });
    const n = data.alerts.length;
    badge.textContent = n ? String(n) : '';
    badge.hidden = !n;
    badge.title = `${n} firing`;
  } catch {
    badge.hidden = true;
  }
}
firingCount();
setInterval(firingCount, 15000);
