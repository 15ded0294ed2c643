// The native API (`/api/v1`), with its error messages kept as they are. When the server
// needs a reading token (401), a form asks for it once; the server keeps it in an HttpOnly
// cookie, so scripts never hold it.

import { h } from './dom.js';

export class ApiError extends Error {
  /** `problems`: for a 400, each bad parameter as `{parameter, problem}`. */
  constructor(status, message, problems = []) {
    super(message);
    this.status = status;
    this.problems = problems;
  }
}

function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === '') continue;
    for (const v of Array.isArray(value) ? value : [value]) q.append(key, v);
  }
  const text = q.toString();
  return text ? `?${text}` : '';
}

async function answer(response) {
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = null;
  }
  if (response.status === 401) askForToken();
  if (!response.ok) {
    const message = (body && body.error) || text || response.statusText;
    throw new ApiError(response.status, message, (body && body.problems) || []);
  }
  return body;
}

/** GET `/api/v1/{path}` with query parameters (arrays repeat the key). */
export async function get(path, params) {
  const response = await fetch(`/api/v1/${path}${query(params)}`, {
    headers: { Accept: 'application/json' },
  });
  return answer(response);
}

/**
 * GET Prometheus's API (`/prometheus/api/v1/{path}`): the answer's `data`; an error throws
 * with Prometheus's message (`bad_data` ones name the line and column).
 */
export async function prometheus(path, params) {
  const response = await fetch(`/prometheus/api/v1/${path}${query(params)}`, {
    headers: { Accept: 'application/json' },
  });
  const body = await answer(response);
  return body.data;
}

/** POST a SQL statement; returns `{columns, rows, truncated}`. */
export async function sql(statement) {
  const response = await fetch('/api/v1/sql', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
    body: JSON.stringify({ query: statement }),
  });
  return answer(response);
}

/** Shows the token form over the page (once), and reloads once the server took the token. */
export function askForToken() {
  if (document.getElementById('token-gate')) return;
  const input = h('input', {
    name: 'token',
    type: 'password',
    autocomplete: 'current-password',
    'aria-label': 'Reading token',
    required: true,
  });
  const problem = h('p', { class: 'notice error', hidden: true });
  const form = h(
    'form',
    { class: 'token-form' },
    h('h2', null, 'A reading token is needed'),
    h(
      'p',
      { class: 'muted' },
      'This Spyglass asks for one of the tokens in its [ui] tokens setting. ' +
        'It is kept in a cookie for this site only.',
    ),
    input,
    problem,
    h('button', { class: 'primary', type: 'submit' }, 'Open'),
  );
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const response = await fetch('/api/v1/session', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
      body: JSON.stringify({ token: input.value }),
    });
    if (response.ok) {
      location.reload();
      return;
    }
    problem.textContent =
      response.status === 401
        ? 'That token is not valid.'
        : `The server answered ${response.status}.`;
    problem.hidden = false;
    input.select();
  });
  document.body.append(
    h(
      'div',
      {
        id: 'token-gate',
        class: 'token-gate',
        role: 'dialog',
        'aria-modal': 'true',
        'aria-label': 'Reading token',
      },
      form,
    ),
  );
  input.focus();
}
