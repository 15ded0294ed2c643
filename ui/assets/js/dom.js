// Building the DOM without markup: text always goes in as text, never as HTML.

const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class')
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    else if (key === 'style') Object.assign(el.style, value);
    else if (key === 'dataset') Object.assign(el.dataset, value);
    else if (key.startsWith('on') && typeof value === 'function')
      el.addEventListener(key.slice(2), value);
    else if (key === 'value' && 'value' in el) el.value = value;
    else if (key === 'checked' && 'checked' in el) el.checked = value;
    else el.setAttribute(key, value === true ? '' : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: `h('a', {href}, 'text', child, [more])`. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  apply(el, attrs);
  append(el, children);
  return el;
}

/** An SVG element, as `h` makes HTML ones. */
export function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === 'class')
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    else if (key.startsWith('on') && typeof value === 'function')
      el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Replaces the children of `el`. */
export function replace(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

/** A link inside the app (the router handles the click). */
export function link(href, ...children) {
  return h('a', { href, 'data-link': true }, ...children);
}

/** A message box for errors and empty results. */
export function notice(kind, text) {
  return h('div', { class: ['notice', kind], role: kind === 'error' ? 'alert' : 'status' }, text);
}

/**
 * Marks a form field as wrong, with the problem written beside it. Changing the field clears
 * the mark.
 */
export function markProblem(field, problem) {
  field.classList.add('invalid');
  field.setAttribute('aria-invalid', 'true');
  const note = h('span', { class: 'field-problem' }, problem);
  field.after(note);
  const clear = () => {
    field.classList.remove('invalid');
    field.removeAttribute('aria-invalid');
    note.remove();
  };
  field.addEventListener('input', clear, { once: true });
  field.addEventListener('change', clear, { once: true });
}

/** A table from column specs `{title, cell(row) -> node|string, class, sort}`. */
export function table(columns, rows, opts = {}) {
  const head = h(
    'tr',
    null,
    columns.map((c) => {
      const th = h('th', { class: c.class, scope: 'col' }, c.title);
      if (c.sortKey && opts.onSort) {
        th.classList.add('sortable');
        if (opts.sort === c.sortKey) th.classList.add(opts.dir === 'asc' ? 'asc' : 'desc');
        th.tabIndex = 0;
        th.addEventListener('click', () => opts.onSort(c.sortKey));
        th.addEventListener('keydown', (e) => {
          if (e.key === 'Enter') opts.onSort(c.sortKey);
        });
      }
      return th;
    }),
  );
  const body = h(
    'tbody',
    null,
    rows.map((row) => {
      const tr = h(
        'tr',
        { class: opts.rowClass ? opts.rowClass(row) : undefined },
        columns.map((c) => h('td', { class: c.class }, c.cell(row))),
      );
      return tr;
    }),
  );
  return h('table', { class: ['grid', opts.class] }, h('thead', null, head), body);
}
