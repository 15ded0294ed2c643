// Rules: each group and its rules with their state, health, last evaluation, evaluation time
// and last error; a refused reload says why at the top.

import { get } from './api.js';
import { h, link, replace, notice, table } from './dom.js';
import * as fmt from './format.js';
import { stateBadge } from './alerts.js';

export async function render(main, ctx) {
  const body = h('div', null, h('p', { class: 'muted' }, 'Loading rules…'));
  replace(
    main,
    h('h1', null, 'Rules', link('/alerts', h('span', { class: 'muted' }, 'Alerts'))),
    body,
  );
  const data = await get('rules');
  if (!ctx.current()) return;
  const parts = [];
  if (data.reload_error) {
    parts.push(
      notice(
        'error',
        `The last reload was refused; the rules below keep running.\n${data.reload_error}`,
      ),
    );
  }
  for (const g of data.groups) {
    parts.push(
      h(
        'h2',
        { class: 'group' },
        g.name,
        h(
          'span',
          { class: 'muted' },
          `${g.file || 'built in'} · every ${fmt.seconds(g.interval_seconds)} · ` +
            `last ${g.last_evaluation ? fmt.ago(g.last_evaluation) : 'never'} ` +
            `in ${fmt.seconds(g.evaluation_seconds)}`,
        ),
      ),
    );
    parts.push(
      table(
        [
          { title: 'Rule', cell: (r) => h('strong', null, r.name) },
          { title: 'State', cell: (r) => stateBadge(r.state) },
          {
            title: 'Health',
            cell: (r) => h('span', { class: r.health === 'err' ? 'bad' : undefined }, r.health),
          },
          {
            title: 'Query',
            cell: (r) => h('code', { class: 'query' }, `${r.language}: ${r.query}`),
          },
          { title: 'For', class: 'num', cell: (r) => fmt.seconds(r.for_seconds) },
          {
            title: 'Last evaluation',
            class: 'num',
            cell: (r) => (r.last_evaluation ? fmt.ago(r.last_evaluation) : 'never'),
          },
          { title: 'Took', class: 'num', cell: (r) => fmt.seconds(r.evaluation_seconds) },
          {
            title: 'Last error',
            cell: (r) => (r.last_error ? h('span', { class: 'bad' }, r.last_error) : ''),
          },
        ],
        g.rules,
        { class: 'rules', rowClass: (r) => (r.health === 'err' ? 'error' : undefined) },
      ),
    );
  }
  replace(body, parts);
}
