// The trace view: header, waterfall with minimap, span details, critical path and find.

import { get } from './api.js';
import { h, link, replace, notice } from './dom.js';
import * as fmt from './format.js';
import { waterfall } from './waterfall.js';
import { opened, openButton } from './tracefile.js';

/**
 * Loads a trace's tree (what the waterfall draws) and adds to each span its offset from the
 * trace start (ns) and its children. `trace.full` is false until [`loadDetails`] adds the rest.
 */
export async function loadTrace(id) {
  const trace = await get(`traces/${id}`, { view: 'tree' });
  trace.full = false;
  const t0 = BigInt(trace.summary.start_time_unix_nano);
  const byId = new Map();
  for (const span of trace.spans) {
    span.offset = Number(BigInt(span.start_time_unix_nano) - t0);
    span.children = [];
    byId.set(span.span_id, span);
  }
  for (const span of trace.spans) {
    if (span.depth > 0 && span.parent_span_id && byId.has(span.parent_span_id))
      byId.get(span.parent_span_id).children.push(span);
  }
  trace.byId = byId;
  return trace;
}

/**
 * Where the trace's errors began: error spans none of whose children failed (an error passed
 * up from a child is not where it began), those with an exception event first, then the
 * deepest, then the earliest. Marks every other error span `inherited`.
 */
export function errorOrigins(trace) {
  const failed = (sp) => sp.status.code === 'error';
  const origins = [];
  for (const span of trace.spans) {
    if (!failed(span)) continue;
    span.inherited = span.children.some(failed);
    if (!span.inherited) origins.push(span);
  }
  const exception = (sp) => (sp.events || []).some((e) => e.name === 'exception');
  origins.sort((a, b) => exception(b) - exception(a) || b.depth - a.depth || a.offset - b.offset);
  return origins;
}

/** Adds every span's attributes, events, links, resource and scope to a loaded tree. */
export async function loadDetails(trace) {
  if (trace.full) return trace;
  const full = await get(`traces/${trace.trace_id}`);
  for (const span of full.spans) {
    const mine = trace.byId.get(span.span_id);
    if (!mine) continue;
    for (const key of [
      'attributes',
      'events',
      'links',
      'resource',
      'scope',
      'trace_state',
      'flags',
      'dropped_attributes_count',
      'dropped_events_count',
      'dropped_links_count',
    ])
      mine[key] = span[key];
  }
  trace.full = true;
  return trace;
}

/**
 * The critical path: from each root, the chain of children that the parent waited for last,
 * walking back from the parent's end (as Jaeger computes it).
 */
export function criticalPath(trace) {
  const out = new Set();
  const walk = (span, until) => {
    out.add(span.span_id);
    let cursor = Math.min(until, span.offset + span.duration_nano);
    const children = span.children
      .slice()
      .sort((a, b) => b.offset + b.duration_nano - (a.offset + a.duration_nano));
    for (const child of children) {
      const childEnd = child.offset + child.duration_nano;
      if (childEnd <= cursor && child.offset >= span.offset) {
        walk(child, cursor);
        cursor = child.offset;
      }
    }
  };
  for (const span of trace.spans) if (span.depth === 0) walk(span, Infinity);
  return out;
}

function matcher(text) {
  const q = text.trim().toLowerCase();
  if (!q) return null;
  const eq = q.indexOf('=');
  if (eq > 0) {
    const key = q.slice(0, eq).trim();
    const value = q.slice(eq + 1).trim();
    return (span) =>
      [...(span.attributes || []), ...(span.resource?.attributes || [])].some(
        (a) => a.key.toLowerCase() === key && fmt.attrValue(a).toLowerCase() === value,
      );
  }
  return (span) =>
    span.name.toLowerCase().includes(q) ||
    span.service_name.toLowerCase().includes(q) ||
    span.span_id.includes(q) ||
    span.status.message.toLowerCase().includes(q) ||
    (span.attributes || []).some((a) => fmt.attrValue(a).toLowerCase().includes(q)) ||
    (span.events || []).some(
      (e) =>
        e.name.toLowerCase().includes(q) ||
        e.attributes.some((a) => fmt.attrValue(a).toLowerCase().includes(q)),
    );
}

function attributeList(attrs) {
  if (!attrs.length) return h('p', { class: 'muted' }, 'none');
  return h(
    'dl',
    { class: 'kv' },
    attrs.map((a) => [
      h('dt', null, a.key),
      h(
        'dd',
        null,
        a.key === 'exception.stacktrace' ? h('pre', null, fmt.attrValue(a)) : fmt.attrValue(a),
        h('span', { class: 'type' }, a.type),
      ),
    ]),
  );
}

function scopeName(scope) {
  return `${scope.name} ${scope.version}`.trim() || '–';
}

function details(trace, span, ctx) {
  const t0 = trace.summary.start_time_unix_nano;
  const parent = span.parent_span_id && trace.byId.get(span.parent_span_id);
  const error = span.status.code === 'error';
  return h(
    'aside',
    { class: 'detail', 'aria-label': 'span details' },
    h(
      'div',
      { class: 'toolbar' },
      h(
        'button',
        { type: 'button', onclick: () => ctx.setParams({ span: null }, { replace: true }) },
        'Close',
      ),
    ),
    h(
      'h3',
      null,
      h('span', { class: 'swatch', style: { background: fmt.color(span.service_name) } }),
      ' ',
      span.service_name,
      ': ',
      span.name,
    ),
    h(
      'dl',
      { class: 'kv' },
      h('dt', null, 'Status'),
      h(
        'dd',
        { class: error ? 'status-error' : undefined },
        span.status.code,
        span.status.message ? ` — ${span.status.message}` : '',
      ),
      h('dt', null, 'Kind'),
      h('dd', null, span.kind),
      h('dt', null, 'Duration'),
      h('dd', null, fmt.duration(span.duration_nano)),
      h('dt', null, 'Starts at'),
      h('dd', null, `+${fmt.duration(span.offset)} (${fmt.time(span.start_time_unix_nano)})`),
      h('dt', null, 'Span id'),
      h('dd', { class: 'mono' }, span.span_id),
      h('dt', null, 'Parent'),
      h(
        'dd',
        { class: 'mono' },
        parent
          ? link(
              `/trace/${trace.trace_id}?span=${parent.span_id}`,
              `${parent.name} (${parent.span_id})`,
            )
          : span.parent_span_id
            ? `${span.parent_span_id} (not received)`
            : 'none (root)',
      ),
      h('dt', null, 'Scope'),
      h('dd', null, trace.full ? scopeName(span.scope) : '…'),
    ),
    trace.file
      ? null
      : h(
          'p',
          null,
          link(`/logs?trace_id=${trace.trace_id}&span_id=${span.span_id}`, 'Logs of this span'),
        ),
    trace.full
      ? fullDetails(span, t0)
      : h('p', { class: 'muted loading-details' }, 'Loading attributes and events…'),
  );
}

function fullDetails(span, t0) {
  return h(
    'div',
    null,
    h('h4', null, 'Attributes'),
    attributeList(span.attributes),
    h('h4', null, `Events (${span.events.length})`),
    span.events.length
      ? span.events.map((e) =>
          h(
            'div',
            { class: e.name === 'exception' ? 'event exception' : 'event' },
            h(
              'div',
              null,
              h('b', { class: e.name === 'exception' ? 'status-error' : undefined }, e.name),
              h(
                'span',
                { class: 'muted' },
                ` +${fmt.duration(Number(BigInt(e.time_unix_nano) - BigInt(t0)))}`,
              ),
            ),
            attributeList(e.attributes),
          ),
        )
      : h('p', { class: 'muted' }, 'none'),
    h('h4', null, `Links (${span.links.length})`),
    span.links.length
      ? h(
          'ul',
          null,
          span.links.map((l) =>
            h(
              'li',
              null,
              link(
                `/trace/${l.trace_id}?span=${l.span_id}`,
                `${l.trace_id.slice(0, 16)}… / ${l.span_id}`,
              ),
              attributeList(l.attributes),
            ),
          ),
        )
      : h('p', { class: 'muted' }, 'none'),
    h('h4', null, 'Resource'),
    attributeList(span.resource.attributes),
  );
}

/** The `zoom` parameter, `from-to` in nanoseconds from the trace's start, when it is valid. */
function zoomOf(text, total) {
  const m = /^(\d+)-(\d+)$/.exec(text || '');
  if (!m) return null;
  const [from, to] = [Number(m[1]), Math.min(Number(m[2]), total)];
  return to > from ? [from, to] : null;
}

// The trace last shown and where its waterfall was scrolled: selecting a span or collapsing
// one changes only the URL, and the page comes back without fetching the trace again.
const last = { id: null, trace: null, scroll: 0 };

export async function render(main, ctx) {
  const { params } = ctx;
  const id = ctx.args[0].toLowerCase();
  // Rows that had the keyboard's focus keep it when the page is drawn again.
  const hadFocus = document.activeElement?.classList.contains('waterfall');
  const problem = (message) => main.prepend(notice('error', message));
  if (id === 'file' && !opened.trace) {
    replace(
      main,
      h('h1', null, 'Open a trace file'),
      h(
        'p',
        { class: 'muted' },
        'A trace downloaded from Spyglass, OTLP JSON (as the Collector’s file exporter ' +
          'writes it) or Jaeger JSON is shown here, in your browser only: nothing is stored.',
      ),
      openButton(ctx.navigate, problem),
    );
    return;
  }
  let trace = id === 'file' ? opened.trace : last.id === id ? last.trace : null;
  try {
    if (!trace) {
      replace(main, h('p', { class: 'muted' }, `Loading trace ${id}…`));
      trace = await loadTrace(id);
      Object.assign(last, { id, trace, scroll: 0 });
    }
  } catch (err) {
    if (err.status === 404) {
      replace(
        main,
        h('h1', null, 'Trace not found'),
        notice('error', `No span of trace ${id} is stored.`),
      );
      return;
    }
    throw err;
  }
  if (!ctx.current()) return;
  const sum = trace.summary;
  const collapsed = new Set((params.get('collapsed') || '').split(',').filter(Boolean));
  const critical = params.get('critical') === '1' ? criticalPath(trace) : null;
  const find = params.get('find') || '';
  const test = matcher(find);
  const matches = test ? new Set(trace.spans.filter(test).map((sp) => sp.span_id)) : null;
  const selectedId = params.get('span');
  const selected = selectedId && trace.byId.get(selectedId);

  // Before the waterfall draws: it marks errors passed up from children.
  const errorSpans = errorOrigins(trace);
  const rows = () => {
    const out = [];
    let hideBelow = Infinity;
    for (const span of trace.spans) {
      if (span.depth > hideBelow) continue;
      hideBelow = Infinity;
      const isCollapsed = collapsed.has(span.span_id);
      out.push({
        span,
        offset: span.offset,
        depth: span.depth,
        hasChildren: span.child_count > 0,
        collapsed: isCollapsed,
      });
      if (isCollapsed) hideBelow = span.depth;
    }
    return out;
  };
  const state = { selected: selectedId, critical, matches };
  const zoom = zoomOf(params.get('zoom'), sum.duration_nano);
  const view = waterfall({
    start: zoom ? zoom[0] : 0,
    end: zoom ? zoom[1] : sum.duration_nano,
    whole: sum.duration_nano,
    t0: BigInt(sum.start_time_unix_nano),
    rows,
    state,
    onSelect: (spanId) => ctx.setParams({ span: spanId }, { replace: true }),
    onZoom: (from, to) =>
      ctx.setParams(
        { zoom: from === null ? null : `${Math.round(from)}-${Math.round(to)}` },
        { replace: true },
      ),
    onToggle: (spanId) => {
      if (collapsed.has(spanId)) collapsed.delete(spanId);
      else collapsed.add(spanId);
      ctx.setParams({ collapsed: [...collapsed].join(',') || null }, { replace: true });
    },
  });

  const findInput = h('input', {
    name: 'find',
    placeholder: 'find: text or key=value',
    value: find,
    style: { width: '240px' },
    spellcheck: 'false',
  });
  const findForm = h('form', { class: 'find' }, findInput);
  findForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const value = findInput.value.trim();
    if (value === find && matches && matches.size) {
      const ids = trace.spans.filter((sp) => matches.has(sp.span_id)).map((sp) => sp.span_id);
      const next = ids[(ids.indexOf(selectedId) + 1) % ids.length];
      ctx.setParams({ span: next }, { replace: true });
    } else {
      ctx.setParams({ find: value || null }, { replace: true });
    }
  });
  replace(
    main,
    h(
      'h1',
      null,
      h('span', null, h('b', null, sum.root_service), ': ', sum.root_name),
      h('span', { class: 'muted mono' }, trace.trace_id),
    ),
    h(
      'div',
      { class: 'trace-head' },
      h('span', null, 'Started ', h('b', null, fmt.time(sum.start_time_unix_nano))),
      h('span', null, 'Duration ', h('b', null, fmt.duration(sum.duration_nano))),
      h('span', null, 'Spans ', h('b', null, String(trace.total_spans))),
      h(
        'span',
        { class: sum.error_count ? 'bad' : undefined },
        'Errors ',
        h('b', null, String(sum.error_count)),
      ),
      h(
        'span',
        null,
        sum.services.map((sv) =>
          h(
            'span',
            { class: 'pill' },
            h('i', { style: { background: fmt.color(sv.name) } }),
            `${sv.name} ${sv.span_count}`,
          ),
        ),
      ),
    ),
    trace.truncated
      ? notice(
          'info',
          `This trace has ${trace.total_spans} spans; the first ${trace.spans.length} are shown.`,
        )
      : null,
    h(
      'div',
      { class: 'toolbar' },
      findForm,
      matches
        ? h(
            'span',
            { class: 'muted' },
            `${matches.size} match${matches.size === 1 ? '' : 'es'} (Enter: next)`,
          )
        : null,
      h(
        'label',
        null,
        h('input', {
          type: 'checkbox',
          checked: !!critical,
          onchange: (e) =>
            ctx.setParams({ critical: e.target.checked ? '1' : null }, { replace: true }),
        }),
        'Critical path',
      ),
      errorSpans.length
        ? h(
            'button',
            {
              type: 'button',
              class: 'first-error',
              title:
                'The span where an error began (not one passed up from a child), ' +
                'with an exception first',
              onclick: () => ctx.setParams({ span: errorSpans[0].span_id }, { replace: true }),
            },
            `First error (${errorSpans.length})`,
          )
        : null,
      h(
        'button',
        { type: 'button', onclick: () => ctx.setParams({ collapsed: null }, { replace: true }) },
        'Expand all',
      ),
      trace.file
        ? h('span', { class: 'muted' }, `From the file ${opened.name}, not stored`)
        : [
            link(`/logs?trace_id=${trace.trace_id}`, 'Its logs'),
            link(`/compare?a=${trace.trace_id}`, 'Compare with another trace'),
            h(
              'a',
              {
                class: 'button',
                href: `/api/v1/traces/${trace.trace_id}?download=1`,
                download: `trace-${trace.trace_id}.json`,
                title: 'The whole trace as JSON, as /api/v1/traces/{id} answers',
              },
              'Download JSON',
            ),
          ],
      openButton(ctx.navigate, problem),
    ),
    zoom
      ? h(
          'p',
          { class: 'zoom-note muted' },
          `Showing +${fmt.duration(zoom[0])} to +${fmt.duration(zoom[1])} of the trace. `,
          h(
            'button',
            { type: 'button', onclick: () => ctx.setParams({ zoom: null }, { replace: true }) },
            'Whole trace',
          ),
        )
      : h(
          'p',
          { class: 'zoom-note muted' },
          'Drag across the overview to zoom into a stretch of time.',
        ),
    h(
      'div',
      { class: ['trace-layout', selected ? null : 'no-detail'] },
      view.element,
      selected ? details(trace, selected, ctx) : null,
    ),
  );
  view.scrollTo(last.scroll);
  if (selected) view.reveal(selected.span_id);
  if (hadFocus) view.focus();
  ctx.onLeave(() => {
    last.scroll = view.scrollTop();
  });
  if (!trace.full) {
    // The waterfall is up; attributes and events follow, for the details and the find.
    loadDetails(trace).then(
      () => {
        if (!ctx.current()) return;
        // The bars get their event marks.
        view.refresh();
        if (!(selected || test)) return;
        last.scroll = view.scrollTop();
        render(main, ctx);
      },
      (err) => {
        if (ctx.current())
          main.prepend(notice('error', `Span details could not be loaded: ${err.message}`));
      },
    );
  }
  // For the UI benchmark: the frame after this one shows the rendered trace.
  requestAnimationFrame(() =>
    requestAnimationFrame(() => performance.mark('spyglass.trace.painted')),
  );
}
