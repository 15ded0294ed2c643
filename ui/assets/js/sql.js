// SQL console: Ctrl+Enter runs; the result as a table and a chart of its numeric columns; the
// engine's error shown as it is. A link with `?q=` fills the editor but runs nothing until
// the reader presses Run: a link must not make someone run a query they have not read.

import { sql } from './api.js';
import { h, replace, notice } from './dom.js';
import { bars } from './chart.js';
import * as fmt from './format.js';

const EXAMPLE = [
  'SELECT service_name, count(*) AS spans, avg(duration_nano) / 1e6 AS avg_ms',
  'FROM spans',
  'WHERE start_time_unix_nano > 0',
  'GROUP BY service_name',
  'ORDER BY spans DESC',
].join('\n');

const NUMERIC = /^(Int|UInt|Float|Decimal)/;

// The statement the reader asked to run on this page, not yet run.
let requested = null;

export async function render(main, ctx) {
  const { params } = ctx;
  const statement = params.get('q') || '';
  const editor = h(
    'textarea',
    { class: 'sql', name: 'q', spellcheck: 'false', 'aria-label': 'SQL', placeholder: EXAMPLE },
    statement,
  );
  const out = h('div', { class: 'results' });
  const run = () => {
    requested = editor.value.trim() || null;
    ctx.setParams({ q: requested });
  };
  editor.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) {
      e.preventDefault();
      run();
    }
  });
  replace(
    main,
    h('h1', null, 'SQL'),
    h(
      'p',
      { class: 'muted' },
      'Read-only SQL over the tables spans, metrics and logs (DataFusion). Ctrl+Enter runs.',
    ),
    editor,
    h(
      'div',
      { class: 'toolbar' },
      h('button', { class: 'primary', type: 'button', onclick: run }, 'Run'),
      h(
        'button',
        {
          type: 'button',
          onclick: () => {
            editor.value = EXAMPLE;
            run();
          },
        },
        'Example',
      ),
      h(
        'button',
        {
          type: 'button',
          onclick: () => {
            editor.value = 'SHOW COLUMNS FROM spans';
            run();
          },
        },
        'Columns of spans',
      ),
    ),
    out,
  );
  editor.focus();
  if (!statement) return;
  if (requested !== statement) {
    replace(
      out,
      h('p', { class: 'muted' }, 'This query came with the link. Read it, then press Run.'),
    );
    return;
  }
  requested = null;
  replace(out, h('p', { class: 'muted' }, 'Running…'));
  const started = performance.now();
  let result;
  try {
    result = await sql(statement);
  } catch (err) {
    if (ctx.current()) replace(out, notice('error', err.message));
    return;
  }
  if (!ctx.current()) return;
  const took = performance.now() - started;
  const columns = result.columns;
  const numeric = columns.filter((c) => NUMERIC.test(c.type));
  const labelColumn = columns.find((c) => !NUMERIC.test(c.type));
  const cell = (v) =>
    v === null
      ? h('span', { class: 'muted' }, 'null')
      : typeof v === 'object'
        ? JSON.stringify(v)
        : typeof v === 'number'
          ? fmt.number(v)
          : String(v);
  const grid = h(
    'table',
    { class: 'grid sql-result' },
    h(
      'thead',
      null,
      h(
        'tr',
        null,
        columns.map((c) =>
          h('th', { class: NUMERIC.test(c.type) ? 'num' : undefined, title: c.type }, c.name),
        ),
      ),
    ),
    h(
      'tbody',
      null,
      result.rows.map((row) =>
        h(
          'tr',
          null,
          columns.map((c) =>
            h('td', { class: NUMERIC.test(c.type) ? 'num' : undefined }, cell(row[c.name])),
          ),
        ),
      ),
    ),
  );
  const chart =
    numeric.length && result.rows.length > 0 && result.rows.length <= 50
      ? bars(
          result.rows.map((row, i) => ({
            label: labelColumn ? String(row[labelColumn.name]) : String(i + 1),
            value: Number(row[numeric[0].name]) || 0,
          })),
          {
            title: `${numeric[0].name}${labelColumn ? ` by ${labelColumn.name}` : ''}`,
            format: fmt.number,
            label: 'result chart',
          },
        )
      : null;
  replace(
    out,
    h(
      'p',
      { class: 'muted result-count' },
      `${result.row_count} row${result.row_count === 1 ? '' : 's'} in ${took.toFixed(0)} ms` +
        (result.truncated ? ' (cut at the row limit)' : ''),
    ),
    chart,
    grid,
  );
}
