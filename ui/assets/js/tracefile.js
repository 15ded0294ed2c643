// A trace read from a file, to view without storing it: the JSON this UI downloads (the native
// API's), OTLP JSON (as the OpenTelemetry Collector's file exporter writes it), or Jaeger's
// JSON (as Jaeger's UI and API give it). Each becomes the native shape the trace view draws.

import { h } from './dom.js';

/** The trace last opened from a file, which `/trace/file` shows. */
export const opened = { trace: null, name: '' };

/**
 * A button that opens a trace file and shows it at `/trace/file`; `problem(message)` is told
 * when the file is not a trace.
 */
export function openButton(navigate, problem) {
  const input = h('input', {
    type: 'file',
    accept: '.json,application/json',
    hidden: true,
    'aria-label': 'trace file',
    class: 'trace-file',
  });
  input.addEventListener('change', async () => {
    const file = input.files[0];
    if (!file) return;
    try {
      opened.trace = traceFromFile(JSON.parse(await file.text()));
      opened.name = file.name;
      navigate('/trace/file');
    } catch (err) {
      problem(`${file.name}: ${err.message}`);
    } finally {
      input.value = '';
    }
  });
  return h(
    'span',
    null,
    input,
    h(
      'button',
      {
        type: 'button',
        title: 'View a trace from a JSON file (Spyglass, OTLP or Jaeger), without storing it',
        onclick: () => input.click(),
      },
      'Open a trace file…',
    ),
  );
}

const KINDS = ['unspecified', 'internal', 'server', 'client', 'producer', 'consumer'];
const STATUS = ['unset', 'ok', 'error'];

/** The trace of a parsed file, or an Error saying what the file is not. */
export function traceFromFile(json) {
  let spans;
  if (Array.isArray(json?.spans) && json.spans.every((s) => s && s.span_id)) spans = json.spans;
  else if (Array.isArray(json?.resourceSpans)) spans = fromOtlp(json.resourceSpans);
  else if (Array.isArray(json?.data) && json.data[0]?.spans) spans = fromJaeger(json.data[0]);
  else
    throw new Error(
      'This file is not a trace: expected Spyglass trace JSON, OTLP JSON (resourceSpans) ' +
        'or Jaeger JSON (data[].spans)',
    );
  if (!spans.length) throw new Error('The file holds no span');
  const ids = new Set(spans.map((s) => s.trace_id));
  if (ids.size > 1) throw new Error(`The file holds ${ids.size} traces; open a file of one`);
  return assemble(spans);
}

/** Spans of any source, put in tree order with depths and the summary the view needs. */
function assemble(raw) {
  const spans = raw.map((s) => ({
    attributes: [],
    events: [],
    links: [],
    resource: { attributes: [] },
    scope: { name: '', version: '' },
    status: { code: 'unset', message: '' },
    ...s,
    parent_span_id: s.parent_span_id || null,
  }));
  const t0 = spans.reduce((m, s) => {
    const t = BigInt(s.start_time_unix_nano);
    return t < m ? t : m;
  }, BigInt(spans[0].start_time_unix_nano));
  const byId = new Map(spans.map((s) => [s.span_id, s]));
  const children = new Map();
  const roots = [];
  for (const s of spans) {
    s.offset = Number(BigInt(s.start_time_unix_nano) - t0);
    s.children = [];
    s.parent_missing = Boolean(s.parent_span_id && !byId.has(s.parent_span_id));
    if (s.parent_span_id && byId.has(s.parent_span_id)) {
      if (!children.has(s.parent_span_id)) children.set(s.parent_span_id, []);
      children.get(s.parent_span_id).push(s);
    } else roots.push(s);
  }
  const ordered = [];
  const byStart = (a, b) => a.offset - b.offset;
  const visit = (s, depth) => {
    const mine = (children.get(s.span_id) || []).sort(byStart);
    Object.assign(s, { depth, child_count: mine.length, children: mine });
    ordered.push(s);
    for (const c of mine) visit(c, depth + 1);
  };
  for (const r of roots.sort(byStart)) visit(r, 0);
  const end = Math.max(...spans.map((s) => s.offset + s.duration_nano));
  const root = roots.find((s) => !s.parent_span_id) || roots[0];
  const services = new Map();
  for (const s of spans) services.set(s.service_name, (services.get(s.service_name) || 0) + 1);
  return {
    trace_id: spans[0].trace_id,
    spans: ordered,
    byId,
    total_spans: spans.length,
    truncated: false,
    full: true,
    file: true,
    summary: {
      trace_id: spans[0].trace_id,
      root_service: root.service_name,
      root_name: root.name,
      start_time_unix_nano: t0.toString(),
      duration_nano: end,
      span_count: spans.length,
      error_count: spans.filter((s) => s.status.code === 'error').length,
      services: [...services]
        .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
        .map(([name, span_count]) => ({ name, span_count })),
    },
  };
}

/** An OTLP JSON AnyValue as the native `{type, value}`. */
function otlpValue(v) {
  if (!v) return { type: 'empty', value: null };
  if ('stringValue' in v) return { type: 'string', value: v.stringValue };
  if ('boolValue' in v) return { type: 'bool', value: v.boolValue };
  if ('intValue' in v) return { type: 'int', value: Number(v.intValue) };
  if ('doubleValue' in v) return { type: 'double', value: v.doubleValue };
  if ('bytesValue' in v) return { type: 'bytes', value: v.bytesValue };
  if ('arrayValue' in v)
    return { type: 'array', value: (v.arrayValue.values || []).map((x) => otlpValue(x).value) };
  if ('kvlistValue' in v) return { type: 'kvlist', value: otlpAttributes(v.kvlistValue.values) };
  return { type: 'empty', value: null };
}

function otlpAttributes(list) {
  return (list || []).map((kv) => ({ key: kv.key, ...otlpValue(kv.value) }));
}

/** OTLP JSON ids are hex; enums come as numbers or as their names. */
function otlpEnum(value, names, prefix) {
  if (typeof value === 'number') return names[value] || names[0];
  const name = String(value || '')
    .replace(prefix, '')
    .toLowerCase();
  return names.includes(name) ? name : names[0];
}

function fromOtlp(resourceSpans) {
  const out = [];
  for (const rs of resourceSpans) {
    const resource = { attributes: otlpAttributes(rs.resource?.attributes) };
    const service = resource.attributes.find((a) => a.key === 'service.name')?.value;
    for (const ss of rs.scopeSpans || rs.instrumentationLibrarySpans || []) {
      const scope = { name: ss.scope?.name || '', version: ss.scope?.version || '' };
      for (const s of ss.spans || []) {
        const start = BigInt(s.startTimeUnixNano || 0);
        const end = BigInt(s.endTimeUnixNano || s.startTimeUnixNano || 0);
        out.push({
          trace_id: String(s.traceId).toLowerCase(),
          span_id: String(s.spanId).toLowerCase(),
          parent_span_id: s.parentSpanId ? String(s.parentSpanId).toLowerCase() : null,
          service_name: service || 'unknown_service',
          name: s.name || '',
          kind: otlpEnum(s.kind, KINDS, 'SPAN_KIND_'),
          start_time_unix_nano: start.toString(),
          end_time_unix_nano: end.toString(),
          duration_nano: Number(end > start ? end - start : 0n),
          status: {
            code: otlpEnum(s.status?.code, STATUS, 'STATUS_CODE_'),
            message: s.status?.message || '',
          },
          attributes: otlpAttributes(s.attributes),
          events: (s.events || []).map((e) => ({
            time_unix_nano: String(e.timeUnixNano || 0),
            name: e.name || '',
            attributes: otlpAttributes(e.attributes),
          })),
          links: (s.links || []).map((l) => ({
            trace_id: String(l.traceId).toLowerCase(),
            span_id: String(l.spanId).toLowerCase(),
            attributes: otlpAttributes(l.attributes),
          })),
          resource,
          scope,
        });
      }
    }
  }
  return out;
}

/** Jaeger's tags `{key, type, value}` as the native attributes. */
function jaegerAttributes(tags) {
  const types = {
    string: 'string',
    bool: 'bool',
    int64: 'int',
    float64: 'double',
    binary: 'bytes',
  };
  return (tags || []).map((t) => ({
    key: t.key,
    type: types[String(t.type).toLowerCase()] || 'string',
    value: t.value,
  }));
}

function fromJaeger(trace) {
  const processes = trace.processes || {};
  const micros = (us) => BigInt(Math.round(Number(us || 0))) * 1000n;
  return trace.spans.map((s) => {
    const attributes = jaegerAttributes(s.tags);
    const tag = (key) => attributes.find((a) => a.key === key)?.value;
    const parent = (s.references || []).find((r) => r.refType === 'CHILD_OF') || s.references?.[0];
    const process = processes[s.processID] || s.process || {};
    const start = micros(s.startTime);
    const error =
      tag('error') === true || tag('error') === 'true' || tag('otel.status_code') === 'ERROR';
    return {
      trace_id: String(s.traceID).padStart(32, '0').toLowerCase(),
      span_id: String(s.spanID).toLowerCase(),
      parent_span_id: parent ? String(parent.spanID).toLowerCase() : null,
      service_name: process.serviceName || 'unknown_service',
      name: s.operationName || '',
      kind: KINDS.includes(tag('span.kind')) ? tag('span.kind') : 'unspecified',
      start_time_unix_nano: start.toString(),
      end_time_unix_nano: (start + micros(s.duration)).toString(),
      duration_nano: Number(micros(s.duration)),
      status: { code: error ? 'error' : 'unset', message: tag('otel.status_description') || '' },
      attributes,
      events: (s.logs || []).map((l) => {
        const fields = jaegerAttributes(l.fields);
        return {
          time_unix_nano: micros(l.timestamp).toString(),
          name: fields.find((f) => f.key === 'event')?.value || 'log',
          attributes: fields.filter((f) => f.key !== 'event'),
        };
      }),
      links: [],
      resource: { attributes: jaegerAttributes(process.tags) },
      scope: { name: '', version: '' },
    };
  });
}
