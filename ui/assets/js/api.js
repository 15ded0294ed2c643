// The native API (`/api/v1`), with its error messages kept as they are.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
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
  try { body = text ? JSON.parse(text) : null; } catch { body = null; }
  if (!response.ok) {
    const message = (body && body.error) || text || response.statusText;
    throw new ApiError(response.status, message);
  }
  return body;
}

/** GET `/api/v1/{path}` with query parameters (arrays repeat the key). */
export async function get(path, params) {
  const response = await fetch(`/api/v1/${path}${query(params)}`, { headers: { Accept: 'application/json' } });
  return answer(response);
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
