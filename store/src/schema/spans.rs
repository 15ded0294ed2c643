//! The `spans` table.

use std::cmp::Ordering;
use std::sync::{Arc, OnceLock};

use arrow::array::{
    Array, FixedSizeBinaryArray, RecordBatch, StringArray, StructArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef};

mod builder;

pub use builder::{EventRow, LinkRow, SpanRow, span_rows_to_batch};

use super::attrs::{AttrReader, KvRef, attr_fields, read_resource_scope, resource_scope_fields};
use super::columns::{col, list_of, parse_enum, read_list, read_span_id, read_trace_id};
use crate::error::Result;
use crate::model::{Resource, Scope, Span, SpanEvent, SpanKind, SpanLink, StatusCode};

/// Attributes copied into their own columns because search, RED metrics and the service graph
/// read them most: `(column, attribute names, old semantic-convention names first-come)`.
/// The attribute itself also stays in the attribute maps, so nothing depends on the copy.
pub const PROMOTED_SPAN_ATTRIBUTES: [(&str, &[&str]); 10] = [
    (
        "http_request_method",
        &["http.request.method", "http.method"],
    ),
    (
        "http_response_status_code",
        &["http.response.status_code", "http.status_code"],
    ),
    ("http_route", &["http.route"]),
    ("rpc_service", &["rpc.service"]),
    ("rpc_method", &["rpc.method"]),
    ("db_system", &["db.system.name", "db.system"]),
    ("server_address", &["server.address", "net.peer.name"]),
    ("peer_service", &["peer.service"]),
    ("messaging_system", &["messaging.system"]),
    ("error_type", &["error.type"]),
];

/// The one promoted column that is an integer.
const INT_PROMOTED: &str = "http_response_status_code";

pub fn spans_schema() -> SchemaRef {
    static SCHEMA: OnceLock<SchemaRef> = OnceLock::new();
    SCHEMA
        .get_or_init(|| {
            let mut fields = vec![
                Field::new("trace_id", DataType::FixedSizeBinary(16), false),
                Field::new("span_id", DataType::FixedSizeBinary(8), false),
                Field::new("parent_span_id", DataType::FixedSizeBinary(8), true),
                Field::new("trace_state", DataType::Utf8, false),
                Field::new("flags", DataType::UInt32, false),
                Field::new("service_name", DataType::Utf8, false),
                Field::new("name", DataType::Utf8, false),
                Field::new("kind", DataType::Utf8, false),
                Field::new("start_time_unix_nano", DataType::UInt64, false),
                Field::new("end_time_unix_nano", DataType::UInt64, false),
                Field::new("duration_nano", DataType::UInt64, false),
                Field::new("status_code", DataType::Utf8, false),
                Field::new("status_message", DataType::Utf8, false),
            ];
            for (column, _) in PROMOTED_SPAN_ATTRIBUTES {
                let ty = if column == INT_PROMOTED {
                    DataType::Int64
                } else {
                    DataType::Utf8
                };
                fields.push(Field::new(column, ty, true));
            }
            fields.extend(attr_fields("attributes"));
            fields.push(Field::new(
                "dropped_attributes_count",
                DataType::UInt32,
                false,
            ));
            fields.push(Field::new("events", list_of(event_fields()), false));
            fields.push(Field::new("dropped_events_count", DataType::UInt32, false));
            fields.push(Field::new("links", list_of(link_fields()), false));
            fields.push(Field::new("dropped_links_count", DataType::UInt32, false));
            fields.extend(resource_scope_fields());
            Arc::new(Schema::new(fields))
        })
        .clone()
}

fn event_fields() -> Fields {
    let mut fields = vec![
        Field::new("time_unix_nano", DataType::UInt64, false),
        Field::new("name", DataType::Utf8, false),
    ];
    fields.extend(attr_fields("attributes"));
    fields.push(Field::new(
        "dropped_attributes_count",
        DataType::UInt32,
        false,
    ));
    Fields::from(fields)
}

fn link_fields() -> Fields {
    let mut fields = vec![
        Field::new("trace_id", DataType::FixedSizeBinary(16), false),
        Field::new("span_id", DataType::FixedSizeBinary(8), false),
        Field::new("trace_state", DataType::Utf8, false),
        Field::new("flags", DataType::UInt32, false),
    ];
    fields.extend(attr_fields("attributes"));
    fields.push(Field::new(
        "dropped_attributes_count",
        DataType::UInt32,
        false,
    ));
    Fields::from(fields)
}

const PROMOTED: usize = PROMOTED_SPAN_ATTRIBUTES.len();

/// Every promoted attribute name with its column and rank (0 for the current name), by name.
fn promoted_names() -> &'static [(&'static str, usize, usize)] {
    static NAMES: OnceLock<Vec<(&'static str, usize, usize)>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let mut names: Vec<_> = PROMOTED_SPAN_ATTRIBUTES
            .iter()
            .enumerate()
            .flat_map(|(column, (_, names))| {
                names
                    .iter()
                    .enumerate()
                    .map(move |(rank, name)| (*name, column, rank))
            })
            .collect();
        names.sort_unstable();
        names
    })
}

/// Where in a span's attributes each promoted column's value is: the attribute of its most
/// current name present, or [`NOT_PROMOTED`]. One merge of the span's attributes (sorted by key,
/// keys distinct) with the sorted names, instead of a search per name.
fn promoted_positions(attributes: &[KvRef<'_>]) -> [u32; PROMOTED] {
    let mut found = [NOT_PROMOTED; PROMOTED];
    let mut rank = [usize::MAX; PROMOTED];
    let mut names = promoted_names().iter().peekable();
    for (at, &(key, _)) in attributes.iter().enumerate() {
        while let Some(&&(name, column, r)) = names.peek() {
            // Most keys differ from the name at the first byte.
            let order = match (name.as_bytes().first(), key.as_bytes().first()) {
                (Some(a), Some(b)) if a != b => a.cmp(b),
                _ => name.cmp(key),
            };
            match order {
                Ordering::Less => {
                    names.next();
                }
                Ordering::Equal => {
                    if r < rank[column] {
                        found[column] = at as u32;
                        rank[column] = r;
                    }
                    names.next();
                    break;
                }
                Ordering::Greater => break,
            }
        }
        if names.peek().is_none() {
            break;
        }
    }
    found
}

/// A promoted column without a value.
const NOT_PROMOTED: u32 = u32::MAX;

/// A span's value of each promoted column (see [`promoted_positions`]).
#[cfg(test)]
fn promoted_values<'a>(attributes: &[KvRef<'a>]) -> [Option<super::attrs::AttrRef<'a>>; PROMOTED] {
    promoted_positions(attributes).map(|at| attributes.get(at as usize).map(|kv| kv.1))
}

pub fn spans_to_batch(spans: &[Span]) -> Result<RecordBatch> {
    let mut owners: Vec<(Arc<Resource>, Arc<Scope>)> = Vec::new();
    let rows: Vec<_> = spans
        .iter()
        .map(|s| {
            let same = (owners.last())
                .is_some_and(|(r, c)| Arc::ptr_eq(r, &s.resource) && Arc::ptr_eq(c, &s.scope));
            if !same {
                owners.push((s.resource.clone(), s.scope.clone()));
            }
            (owners.len() - 1, SpanRow::of(s))
        })
        .collect();
    span_rows_to_batch(&owners, &rows)
}

fn read_events(items: &StructArray) -> Result<Vec<SpanEvent>> {
    let time: &UInt64Array = col(items, "time_unix_nano")?;
    let name: &StringArray = col(items, "name")?;
    let attrs = AttrReader::new(items, "attributes")?;
    let dropped: &UInt32Array = col(items, "dropped_attributes_count")?;
    (0..items.len())
        .map(|i| {
            Ok(SpanEvent {
                time_unix_nano: time.value(i),
                name: name.value(i).to_owned(),
                attributes: attrs.row(i)?,
                dropped_attributes_count: dropped.value(i),
            })
        })
        .collect()
}

fn read_links(items: &StructArray) -> Result<Vec<SpanLink>> {
    let trace_id: &FixedSizeBinaryArray = col(items, "trace_id")?;
    let span_id: &FixedSizeBinaryArray = col(items, "span_id")?;
    let trace_state: &StringArray = col(items, "trace_state")?;
    let flags: &UInt32Array = col(items, "flags")?;
    let attrs = AttrReader::new(items, "attributes")?;
    let dropped: &UInt32Array = col(items, "dropped_attributes_count")?;
    (0..items.len())
        .map(|i| {
            Ok(SpanLink {
                trace_id: read_trace_id(trace_id, i).unwrap_or_default(),
                span_id: read_span_id(span_id, i).unwrap_or_default(),
                trace_state: trace_state.value(i).to_owned(),
                flags: flags.value(i),
                attributes: attrs.row(i)?,
                dropped_attributes_count: dropped.value(i),
            })
        })
        .collect()
}

pub fn spans_from_batch(batch: &RecordBatch) -> Result<Vec<Span>> {
    let trace_id: &FixedSizeBinaryArray = col(batch, "trace_id")?;
    let span_id: &FixedSizeBinaryArray = col(batch, "span_id")?;
    let parent: &FixedSizeBinaryArray = col(batch, "parent_span_id")?;
    let trace_state: &StringArray = col(batch, "trace_state")?;
    let flags: &UInt32Array = col(batch, "flags")?;
    let name: &StringArray = col(batch, "name")?;
    let kind: &StringArray = col(batch, "kind")?;
    let start: &UInt64Array = col(batch, "start_time_unix_nano")?;
    let end: &UInt64Array = col(batch, "end_time_unix_nano")?;
    let status_code: &StringArray = col(batch, "status_code")?;
    let status_message: &StringArray = col(batch, "status_message")?;
    let attrs = AttrReader::new(batch, "attributes")?;
    let dropped_attrs: &UInt32Array = col(batch, "dropped_attributes_count")?;
    let dropped_events: &UInt32Array = col(batch, "dropped_events_count")?;
    let dropped_links: &UInt32Array = col(batch, "dropped_links_count")?;
    let mut events = read_list(batch, "events", read_events)?.into_iter();
    let mut links = read_list(batch, "links", read_links)?.into_iter();
    let owners = read_resource_scope(batch, batch.num_rows())?;
    owners
        .into_iter()
        .enumerate()
        .map(|(i, (resource, scope))| {
            Ok(Span {
                trace_id: read_trace_id(trace_id, i).unwrap_or_default(),
                span_id: read_span_id(span_id, i).unwrap_or_default(),
                parent_span_id: read_span_id(parent, i),
                trace_state: trace_state.value(i).to_owned(),
                flags: flags.value(i),
                name: name.value(i).to_owned(),
                kind: parse_enum(SpanKind::parse, "span kind", kind.value(i))?,
                start_time_unix_nano: start.value(i),
                end_time_unix_nano: end.value(i),
                status_code: parse_enum(StatusCode::parse, "status code", status_code.value(i))?,
                status_message: status_message.value(i).to_owned(),
                attributes: attrs.row(i)?,
                dropped_attributes_count: dropped_attrs.value(i),
                events: events.next().unwrap_or_default(),
                dropped_events_count: dropped_events.value(i),
                links: links.next().unwrap_or_default(),
                dropped_links_count: dropped_links.value(i),
                resource,
                scope,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::{PROMOTED_SPAN_ATTRIBUTES, promoted_values};
    use crate::model::AttrValue;
    use crate::schema::attrs::{AttrRef, KvRef, sort_attributes};

    /// Sorted as attribute sets are; values borrowed from `pairs`.
    fn attributes<'a>(pairs: &'a [(&'a str, AttrValue)]) -> Vec<KvRef<'a>> {
        let mut kvs = pairs.iter().map(|(k, v)| (*k, AttrRef::of(v))).collect();
        sort_attributes(&mut kvs);
        kvs
    }

    fn column(name: &str) -> usize {
        PROMOTED_SPAN_ATTRIBUTES
            .iter()
            .position(|(c, _)| *c == name)
            .unwrap()
    }

    #[test]
    fn promoted_columns_take_the_current_name_before_the_old_one() {
        let s = |v: &str| AttrValue::Str(v.into());
        let pairs = [
            ("http.method", s("get")),
            ("http.request.method", s("POST")),
            ("aaa", s("before every name")),
            ("net.peer.name", s("old-host")),
            ("zzz", s("after every name")),
            ("http.status_code", AttrValue::Int(503)),
            ("peer.service", s("payments")),
        ];
        let found = promoted_values(&attributes(&pairs));
        assert_eq!(
            found[column("http_request_method")],
            Some(AttrRef::Str("POST"))
        );
        // Only the old name present: it is used.
        assert_eq!(
            found[column("server_address")],
            Some(AttrRef::Str("old-host"))
        );
        assert_eq!(
            found[column("http_response_status_code")],
            Some(AttrRef::Int(503))
        );
        assert_eq!(
            found[column("peer_service")],
            Some(AttrRef::Str("payments"))
        );
        assert_eq!(found[column("http_route")], None);
        assert_eq!(found[column("db_system")], None);

        // Every name of every column is found alone, whatever else surrounds it.
        for (c, (_, names)) in PROMOTED_SPAN_ATTRIBUTES.iter().enumerate() {
            for name in names.iter() {
                let alone = [("a", s("x")), (*name, s("v")), ("zz", s("y"))];
                let found = promoted_values(&attributes(&alone));
                for (other, value) in found.iter().enumerate() {
                    let expected = (other == c).then_some(AttrRef::Str("v"));
                    assert_eq!(*value, expected, "{name} in column {other}");
                }
            }
        }
    }
}
