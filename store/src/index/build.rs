//! Building a part's trace index: one document per trace from the part's sorted rows.

use std::collections::HashSet;
use std::fmt::Write;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::path::Path;

use arrow::array::{
    Array, AsArray, FixedSizeBinaryArray, ListArray, MapArray, RecordBatch, StringArray,
    StructArray, UInt64Array,
};
use arrow::datatypes::{Float64Type, Int64Type};
use tantivy::schema::Field;
use tantivy::{Index, TantivyDocument};

use super::tokens::{self, SpanText};
use super::{
    COUNT_SEP, Fields, LAYOUT, SEP, index_err, register_tokenizer, schema, write_attribute_term,
};
use crate::error::{Error, Result};

/// The index writer's memory: enough for a part's postings in one segment (a smaller budget
/// writes several segments and merges them, which cost a quarter of the build's time).
const INDEX_WRITER_BYTES: usize = crate::memory::INDEX_WRITER_BYTES as usize;

/// Scalar entries of the typed attribute maps stored under one prefix.
struct ScalarMaps<'a> {
    maps: Vec<(usize, &'a MapArray)>,
}

impl<'a> ScalarMaps<'a> {
    fn new(get: impl Fn(&str) -> Option<&'a MapArray>, prefix: &str) -> Result<Self> {
        let mut maps = Vec::new();
        for (kind, suffix) in ["", "_int", "_double", "_bool"].iter().enumerate() {
            let name = format!("{prefix}{suffix}");
            maps.push((
                kind,
                get(&name).ok_or_else(|| Error::Corrupt(format!("spans lack {name}")))?,
            ));
        }
        Ok(Self { maps })
    }

    /// Calls `f` with the key and the value as text of each entry of `row`; `value` is a
    /// scratch buffer for non-string values.
    fn for_each(&self, row: usize, value: &mut String, mut f: impl FnMut(&str, &str)) {
        for (kind, map) in &self.maps {
            let offsets = map.value_offsets();
            let keys = map.keys().as_string::<i32>();
            let values = map.values();
            for i in offsets[row] as usize..offsets[row + 1] as usize {
                let text = match kind {
                    0 => values.as_string::<i32>().value(i),
                    1 => {
                        value.clear();
                        value.push_str(
                            itoa::Buffer::new().format(values.as_primitive::<Int64Type>().value(i)),
                        );
                        value.as_str()
                    }
                    2 => {
                        value.clear();
                        let _ = write!(value, "{}", values.as_primitive::<Float64Type>().value(i));
                        value.as_str()
                    }
                    _ if values.as_boolean().value(i) => "true",
                    _ => "false",
                };
                f(keys.value(i), text);
            }
        }
    }

    /// A hash of every entry of `row`, to index a resource's attributes once per trace. It
    /// reads each map's keys and values of the row as the contiguous slices they are.
    fn row_hash(&self, row: usize) -> u64 {
        let mut hash = foldhash::quality::FixedState::with_seed(0).build_hasher();
        for (kind, map) in &self.maps {
            let offsets = map.value_offsets();
            let (from, to) = (offsets[row] as usize, offsets[row + 1] as usize);
            hash.write_usize(to - from);
            if from == to {
                continue;
            }
            hash_strings(&mut hash, map.keys().as_string::<i32>(), from, to);
            let values = map.values();
            match kind {
                0 => hash_strings(&mut hash, values.as_string::<i32>(), from, to),
                1 => (values.as_primitive::<Int64Type>().values()[from..to].iter())
                    .for_each(|v| hash.write_i64(*v)),
                2 => (values.as_primitive::<Float64Type>().values()[from..to].iter())
                    .for_each(|v| hash.write_u64(v.to_bits())),
                _ => (from..to).for_each(|i| hash.write_u8(u8::from(values.as_boolean().value(i)))),
            }
        }
        hash.finish()
    }
}

/// Feeds strings `from..to` of `strings` to `hash`: their lengths, then their bytes at once.
fn hash_strings(hash: &mut impl Hasher, strings: &StringArray, from: usize, to: usize) {
    let offsets = &strings.value_offsets()[from..=to];
    for pair in offsets.windows(2) {
        hash.write_i32(pair[1] - pair[0]);
    }
    hash.write(&strings.value_data()[offsets[0] as usize..offsets[to - from] as usize]);
}

/// A `u64` that is already a hash.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in bytes {
        hash = (hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The root of a trace so far: parentless first, then earliest, then lowest span id (the query
/// engine's rule for summaries).
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
struct RootKey {
    has_parent: bool,
    start: u64,
    span_id: [u8; 8],
}

/// The document of the trace being indexed. Resource terms are deduplicated by a 64-bit hash
/// of their text, so a repeated term costs no allocation (a collision would drop one term of
/// one trace from the index: about 2^-64 per pair).
#[derive(Default)]
struct DocBuilder {
    trace_id: Option<[u8; 16]>,
    doc: TantivyDocument,
    seen: HashSet<u64, BuildHasherDefault<Prehashed>>,
    /// Span ids of the trace so far (a retried export stores a span twice).
    span_ids: HashSet<u64, BuildHasherDefault<Prehashed>>,
    /// Hashes of the resources whose attributes are already in the document.
    resources: Vec<u64>,
    spans: SpanText,
    text: String,
    start: u64,
    end: u64,
    span_count: u64,
    error_count: u64,
    root: Option<(RootKey, String, String)>,
    /// Span counts per service; the first `service_count` entries are this trace's (the
    /// strings of the others are kept for reuse).
    services: Vec<(String, u64)>,
    service_count: usize,
    summary: String,
}

impl DocBuilder {
    fn start_trace(&mut self, f: Fields, trace_id: [u8; 16]) {
        self.trace_id = Some(trace_id);
        self.doc = TantivyDocument::default();
        self.doc.add_bytes(f.trace_id, &trace_id);
        self.seen.clear();
        self.span_ids.clear();
        self.resources.clear();
        self.spans.clear();
        self.text.clear();
        (self.start, self.end) = (u64::MAX, 0);
        (self.span_count, self.error_count) = (0, 0);
        self.root = None;
        self.service_count = 0;
    }

    fn resource_term(&mut self, field: Field, term: &mut String, key: &str, value: &str) {
        write_attribute_term(term, key, value);
        if self.seen.insert(fnv(0, term.as_bytes())) {
            self.doc.add_text(field, &*term);
        }
    }

    fn count_service(&mut self, service: &str) {
        let live = &mut self.services[..self.service_count];
        if let Some((_, n)) = live.iter_mut().find(|(s, _)| s == service) {
            *n += 1;
            return;
        }
        if self.service_count == self.services.len() {
            self.services.push((String::new(), 0));
        }
        let slot = &mut self.services[self.service_count];
        slot.0.clear();
        slot.0.push_str(service);
        slot.1 = 1;
        self.service_count += 1;
    }

    fn consider_root(&mut self, key: RootKey, service: &str, name: &str) {
        match &mut self.root {
            Some((best, s, n)) if key < *best => {
                *best = key;
                s.clear();
                s.push_str(service);
                n.clear();
                n.push_str(name);
            }
            Some(_) => {}
            None => self.root = Some((key, service.to_owned(), name.to_owned())),
        }
    }

    /// The finished document, if a trace was started.
    fn finish(&mut self, f: Fields) -> Option<TantivyDocument> {
        self.trace_id.take()?;
        let mut doc = std::mem::take(&mut self.doc);
        if !self.spans.is_empty() {
            doc.add_text(f.span, self.spans.as_str());
        }
        if !self.text.is_empty() {
            doc.add_text(f.text, &self.text);
        }
        doc.add_u64(f.start, self.start);
        doc.add_u64(f.end, self.end);
        doc.add_u64(f.span_count, self.span_count);
        doc.add_u64(f.error_count, self.error_count);
        self.summary.clear();
        if let Some((_, service, name)) = &self.root {
            self.summary.push_str(service);
            self.summary.push(SEP);
            self.summary.push_str(name);
        } else {
            self.summary.push(SEP);
        }
        let services = &mut self.services[..self.service_count];
        services.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        for (service, n) in services.iter() {
            let _ = write!(self.summary, "{SEP}{service}{COUNT_SEP}{n}");
        }
        doc.add_text(f.summary, &self.summary);
        Some(doc)
    }
}

/// Builds the index of a part from its rows, which are sorted by trace id (a trace may continue
/// from one batch into the next), from batches as they come (a part is never held whole in
/// memory). Returns its size.
pub(crate) fn build_from(
    dir: &Path,
    batches: impl Iterator<Item = Result<RecordBatch>>,
) -> Result<u64> {
    // A flush that failed before its manifest commit may have left an index under this name.
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(Error::io("remove stale index", dir))?;
    }
    std::fs::create_dir_all(dir).map_err(Error::io("create index directory", dir))?;
    let (schema, f) = schema();
    // Newest traces first: a search reads a part's matches in time order and stops early.
    let settings = tantivy::IndexSettings {
        sort_by_field: Some(tantivy::IndexSortByField {
            field: "start".into(),
            order: tantivy::Order::Desc,
        }),
        ..Default::default()
    };
    let index = Index::builder()
        .schema(schema)
        .settings(settings)
        .create_in_dir(dir)
        .map_err(index_err("create", dir))?;
    register_tokenizer(&index);
    let mut writer = index
        .writer_with_num_threads::<TantivyDocument>(1, INDEX_WRITER_BYTES)
        .map_err(index_err("open writer for", dir))?;

    let mut state = (DocBuilder::default(), String::new(), String::new());
    for batch in batches {
        index_batch(dir, &mut writer, f, &batch?, &mut state)?;
    }
    if let Some(doc) = state.0.finish(f) {
        writer
            .add_document(doc)
            .map_err(index_err("add a document to", dir))?;
    }
    let mut commit = writer.prepare_commit().map_err(index_err("commit", dir))?;
    commit.set_payload(LAYOUT);
    commit.commit().map_err(index_err("commit", dir))?;
    writer
        .wait_merging_threads()
        .map_err(index_err("finish", dir))?;
    dir_size(dir)
}

/// Adds the spans of one batch, finishing a document whenever the trace changes.
fn index_batch(
    dir: &Path,
    writer: &mut tantivy::IndexWriter<TantivyDocument>,
    f: Fields,
    batch: &RecordBatch,
    (doc, term, scratch): &mut (DocBuilder, String, String),
) -> Result<()> {
    let ids: &FixedSizeBinaryArray = batch
        .column_by_name("trace_id")
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt("spans lack trace_id".into()))?;
    let span_ids: &FixedSizeBinaryArray = batch
        .column_by_name("span_id")
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt("spans lack span_id".into()))?;
    let parents: &FixedSizeBinaryArray = batch
        .column_by_name("parent_span_id")
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt("spans lack parent_span_id".into()))?;
    let service = string_col(batch, "service_name")?;
    let name = string_col(batch, "name")?;
    let status = string_col(batch, "status_code")?;
    let status_message = string_col(batch, "status_message")?;
    let start = u64_col(batch, "start_time_unix_nano")?;
    let end = u64_col(batch, "end_time_unix_nano")?;
    let duration = u64_col(batch, "duration_nano")?;
    let map = |n: &str| {
        batch
            .column_by_name(n)
            .and_then(|c| c.as_any().downcast_ref::<MapArray>())
    };
    let span_attrs = ScalarMaps::new(map, "attributes")?;
    let resource_attrs = ScalarMaps::new(map, "resource_attributes")?;
    let events: &ListArray = batch
        .column_by_name("events")
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt("spans lack events".into()))?;
    let event_items: &StructArray = events.values().as_struct();
    let event_name: &StringArray = event_items
        .column_by_name("name")
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt("events lack name".into()))?;
    let event_map = |n: &str| {
        event_items
            .column_by_name(n)
            .and_then(|c| c.as_any().downcast_ref::<MapArray>())
    };
    let event_attrs = ScalarMaps::new(event_map, "attributes")?;

    for row in 0..batch.num_rows() {
        let trace: [u8; 16] = ids
            .value(row)
            .try_into()
            .map_err(|_| Error::Corrupt("trace ids are 16 bytes".into()))?;
        if doc.trace_id != Some(trace) {
            if let Some(finished) = doc.finish(f) {
                writer
                    .add_document(finished)
                    .map_err(index_err("add a document to", dir))?;
            }
            doc.start_trace(f, trace);
        }
        let span_id: [u8; 8] = span_ids.value(row).try_into().unwrap_or_default();
        if !doc.span_ids.insert(u64::from_le_bytes(span_id)) {
            continue; // the same span from a retried export
        }
        let svc = service.value(row);
        let is_error = status.value(row) == "error";
        doc.spans.next_span();
        tokens::term(term, tokens::SERVICE, svc);
        doc.spans.push(term);
        tokens::term(term, tokens::NAME, name.value(row));
        doc.spans.push(term);
        tokens::duration_term(term, duration.value(row));
        doc.spans.push(term);
        if is_error {
            doc.spans.push(tokens::ERROR);
            doc.error_count += 1;
        }
        span_attrs.for_each(row, scratch, |k, v| doc.spans.push_attr(k, v));
        if !status_message.value(row).is_empty() {
            doc.text.push_str(status_message.value(row));
            doc.text.push('\n');
        }
        let resource = resource_attrs.row_hash(row);
        if !doc.resources.contains(&resource) {
            doc.resources.push(resource);
            resource_attrs.for_each(row, scratch, |k, v| {
                doc.resource_term(f.resource, term, k, v)
            });
        }
        let offsets = events.value_offsets();
        for e in offsets[row] as usize..offsets[row + 1] as usize {
            if event_name.value(e) == "exception" {
                event_attrs.for_each(e, scratch, |k, v| {
                    if k == "exception.message" || k == "exception.type" {
                        doc.text.push_str(v);
                        doc.text.push('\n');
                    }
                });
            }
        }
        doc.start = doc.start.min(start.value(row));
        doc.end = doc.end.max(end.value(row));
        doc.span_count += 1;
        doc.count_service(svc);
        let key = RootKey {
            has_parent: !parents.is_null(row),
            start: start.value(row),
            span_id,
        };
        doc.consider_root(key, svc, name.value(row));
    }
    Ok(())
}

fn string_col<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a StringArray> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt(format!("spans lack {name}")))
}

fn u64_col<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a UInt64Array> {
    batch
        .column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref())
        .ok_or_else(|| Error::Corrupt(format!("spans lack {name}")))
}

pub(crate) fn dir_size(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(Error::io("list", dir))? {
        let entry = entry.map_err(Error::io("list", dir))?;
        total += entry
            .metadata()
            .map_err(Error::io("stat", entry.path()))?
            .len();
    }
    Ok(total)
}

/// Rebuilds the index of a part in `dir` from the part's rows, read batch by batch, in a sibling
/// directory renamed over the old one. Returns its size.
pub(crate) fn rebuild(
    dir: &Path,
    batches: impl Iterator<Item = Result<RecordBatch>>,
) -> Result<u64> {
    let fresh = dir.with_extension("rebuild");
    let bytes = build_from(&fresh, batches)?;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(Error::io("remove outdated index", dir))?;
    }
    std::fs::rename(&fresh, dir).map_err(Error::io("move rebuilt index", dir))?;
    if let Some(parent) = dir.parent() {
        crate::manifest::sync_dir(parent)?;
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{AttrValue, Attributes, KeyValue, Resource, Span};
    use crate::schema::spans_to_batch;

    fn spans(resources: &[Vec<(&str, AttrValue)>]) -> RecordBatch {
        let spans: Vec<Span> = (resources.iter())
            .map(|attrs| Span {
                resource: Arc::new(Resource {
                    attributes: Attributes::new(
                        (attrs.iter())
                            .map(|(key, value)| KeyValue {
                                key: (*key).into(),
                                value: value.clone(),
                            })
                            .collect(),
                    ),
                    ..Resource::default()
                }),
                ..Span::default()
            })
            .collect();
        spans_to_batch(&spans).unwrap()
    }

    /// Rows with equal resources hash alike wherever they sit; a change to any key or value of
    /// any map, or where the strings are cut, gives another hash.
    #[test]
    fn resource_hashes_follow_every_entry() {
        use AttrValue::{Bool, Double, Int, Str};
        let base = || {
            vec![
                ("service.name", Str("web".into())),
                ("k8s.pod", Str("web-1".into())),
                ("port", Int(8080)),
                ("ratio", Double(0.5)),
                ("canary", Bool(true)),
            ]
        };
        let changed = |i: usize, value: AttrValue| {
            let mut attrs = base();
            attrs[i].1 = value;
            attrs
        };
        let mut renamed = base();
        renamed[1].0 = "k8s.node";
        let mut fewer = base();
        fewer.remove(3);
        let variants = vec![
            base(),
            changed(0, Str("api".into())),
            changed(2, Int(8081)),
            changed(3, Double(0.25)),
            changed(4, Bool(false)),
            renamed,
            fewer,
            vec![("a", Str("bc".into())), ("d", Str("e".into()))],
            vec![("a", Str("b".into())), ("d", Str("ce".into()))],
            vec![],
        ];
        let hashes = |batch: &RecordBatch| -> Vec<u64> {
            let map = |n: &str| {
                batch
                    .column_by_name(n)
                    .and_then(|c| c.as_any().downcast_ref::<MapArray>())
            };
            let maps = ScalarMaps::new(map, "resource_attributes").unwrap();
            (0..batch.num_rows())
                .map(|row| maps.row_hash(row))
                .collect()
        };
        let forward = hashes(&spans(&variants));
        let mut reversed = variants.clone();
        reversed.reverse();
        let mut backward = hashes(&spans(&reversed));
        backward.reverse();
        assert_eq!(
            forward, backward,
            "a row's hash does not depend on its place"
        );
        let distinct: HashSet<u64> = forward.iter().copied().collect();
        assert_eq!(distinct.len(), variants.len(), "{forward:x?}");
    }
}
