//! Attribute sets as five typed maps, and the resource and scope columns every table shares.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, BooleanBuilder, Float64Builder, Int64Builder, MapArray, MapBuilder,
    StringArray, StringBuilder, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Fields, Float64Type, Int64Type};

use super::columns::{Columns, col, strings};
use super::typed_json;
use crate::error::{Error, Result};
use crate::gather::gather;
use crate::model::{AttrValue, Attributes, KeyValue, Resource, Scope};

/// Column-name suffixes of the five maps, in column order.
const SUFFIXES: [&str; 5] = ["", "_int", "_double", "_bool", "_other"];

fn map_type(value: DataType) -> DataType {
    let entries = Fields::from(vec![
        Field::new("keys", DataType::Utf8, false),
        Field::new("values", value, true),
    ]);
    DataType::Map(
        Arc::new(Field::new("entries", DataType::Struct(entries), false)),
        false,
    )
}

/// The five map fields of an attribute set stored under `prefix` (e.g. `attributes`).
pub(crate) fn attr_fields(prefix: &str) -> Vec<Field> {
    let types = [
        DataType::Utf8,
        DataType::Int64,
        DataType::Float64,
        DataType::Boolean,
        DataType::Utf8,
    ];
    SUFFIXES
        .iter()
        .zip(types)
        .map(|(suffix, ty)| Field::new(format!("{prefix}{suffix}"), map_type(ty), false))
        .collect()
}

/// The five map columns for `rows`, in the order of [`attr_fields`].
pub(crate) fn attr_arrays<'a>(rows: impl Iterator<Item = &'a Attributes> + Clone) -> Vec<ArrayRef> {
    let kvs =
        |attrs: &'a Attributes| (attrs.iter()).map(|kv| (kv.key.as_str(), AttrRef::of(&kv.value)));
    let mut maps = AttrMapsBuilder::for_rows(rows.clone().map(kvs));
    for attrs in rows {
        maps.append(kvs(attrs));
    }
    maps.finish()
}

/// An attribute value borrowed from where it is read: a model attribute set, or the bytes of an
/// OTLP request. Scalars are kept apart so they reach their typed map without a model value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum AttrRef<'a> {
    Str(&'a str),
    Int(i64),
    Double(f64),
    Bool(bool),
    /// Bytes, arrays, kvlists and empty values, stored as typed JSON.
    Other(&'a AttrValue),
}

impl<'a> AttrRef<'a> {
    pub fn of(value: &'a AttrValue) -> Self {
        match value {
            AttrValue::Str(s) => AttrRef::Str(s),
            AttrValue::Int(i) => AttrRef::Int(*i),
            AttrValue::Double(d) => AttrRef::Double(*d),
            AttrValue::Bool(b) => AttrRef::Bool(*b),
            other => AttrRef::Other(other),
        }
    }

    /// The value as [`AttrValue::display`] shows it.
    pub fn display(&self) -> std::borrow::Cow<'a, str> {
        use std::borrow::Cow;
        match *self {
            AttrRef::Str(s) => Cow::Borrowed(s),
            AttrRef::Int(i) => Cow::Owned(i.to_string()),
            AttrRef::Double(d) => Cow::Owned(d.to_string()),
            AttrRef::Bool(b) => Cow::Owned(b.to_string()),
            AttrRef::Other(v) => Cow::Owned(typed_json::encode(v)),
        }
    }
}

/// One borrowed attribute: key and value.
pub type KvRef<'a> = (&'a str, AttrRef<'a>);

/// Puts borrowed attributes in the order [`Attributes::new`] keeps: sorted by key, the last of
/// a repeated key winning.
pub fn sort_attributes(kvs: &mut Vec<KvRef<'_>>) {
    if kvs.is_sorted_by(|a, b| a.0 < b.0) {
        return;
    }
    // Stable, so that among equal keys the sender's last one ends up last.
    kvs.sort_by(|a, b| a.0.cmp(b.0));
    let mut write = 0;
    for read in 0..kvs.len() {
        if write > 0 && kvs[write - 1].0 == kvs[read].0 {
            kvs[write - 1] = kvs[read];
        } else {
            kvs[write] = kvs[read];
            write += 1;
        }
    }
    kvs.truncate(write);
}

/// The five typed maps of an attribute set, appended one row at a time into buffers sized
/// exactly for the rows announced.
pub(crate) struct AttrMapsBuilder {
    strs: MapBuilder<StringBuilder, StringBuilder>,
    ints: MapBuilder<StringBuilder, Int64Builder>,
    doubles: MapBuilder<StringBuilder, Float64Builder>,
    bools: MapBuilder<StringBuilder, BooleanBuilder>,
    others: MapBuilder<StringBuilder, StringBuilder>,
}

impl AttrMapsBuilder {
    /// Room for exactly these rows. Sizing every builder exactly matters: default capacities
    /// would hold kilobytes per column even for a one-row batch, and spare capacity is memory
    /// the memtable's budget does not count.
    pub(crate) fn for_rows<'k, R>(rows: impl Iterator<Item = R>) -> Self
    where
        R: IntoIterator<Item = KvRef<'k>>,
    {
        let (mut n_rows, mut counts, mut key_bytes) = (0, [0usize; 5], [0usize; 5]);
        let (mut str_bytes, mut other_bytes) = (0, 0);
        for kvs in rows {
            n_rows += 1;
            for (key, value) in kvs {
                let kind = match value {
                    AttrRef::Str(s) => {
                        str_bytes += s.len();
                        0
                    }
                    AttrRef::Int(_) => 1,
                    AttrRef::Double(_) => 2,
                    AttrRef::Bool(_) => 3,
                    AttrRef::Other(v) => {
                        other_bytes += typed_json::encode(v).len();
                        4
                    }
                };
                counts[kind] += 1;
                key_bytes[kind] += key.len();
            }
        }
        let keys = |i: usize| StringBuilder::with_capacity(counts[i], key_bytes[i]);
        Self {
            strs: MapBuilder::with_capacity(
                None,
                keys(0),
                StringBuilder::with_capacity(counts[0], str_bytes),
                n_rows,
            ),
            ints: MapBuilder::with_capacity(
                None,
                keys(1),
                Int64Builder::with_capacity(counts[1]),
                n_rows,
            ),
            doubles: MapBuilder::with_capacity(
                None,
                keys(2),
                Float64Builder::with_capacity(counts[2]),
                n_rows,
            ),
            bools: MapBuilder::with_capacity(
                None,
                keys(3),
                BooleanBuilder::with_capacity(counts[3]),
                n_rows,
            ),
            others: MapBuilder::with_capacity(
                None,
                keys(4),
                StringBuilder::with_capacity(counts[4], other_bytes),
                n_rows,
            ),
        }
    }

    /// Appends one row: `kvs` sorted by key with unique keys (see [`sort_attributes`]).
    pub(crate) fn append<'k>(&mut self, kvs: impl IntoIterator<Item = KvRef<'k>>) {
        for (key, value) in kvs {
            match value {
                AttrRef::Str(s) => {
                    self.strs.keys().append_value(key);
                    self.strs.values().append_value(s);
                }
                AttrRef::Int(i) => {
                    self.ints.keys().append_value(key);
                    self.ints.values().append_value(i);
                }
                AttrRef::Double(d) => {
                    self.doubles.keys().append_value(key);
                    self.doubles.values().append_value(d);
                }
                AttrRef::Bool(b) => {
                    self.bools.keys().append_value(key);
                    self.bools.values().append_value(b);
                }
                AttrRef::Other(v) => {
                    self.others.keys().append_value(key);
                    self.others.values().append_value(typed_json::encode(v));
                }
            }
        }
        const CONSISTENT: &str = "keys and values are appended in pairs";
        self.strs.append(true).expect(CONSISTENT);
        self.ints.append(true).expect(CONSISTENT);
        self.doubles.append(true).expect(CONSISTENT);
        self.bools.append(true).expect(CONSISTENT);
        self.others.append(true).expect(CONSISTENT);
    }

    /// The five map columns, in the order of [`attr_fields`].
    pub(crate) fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.strs.finish()),
            Arc::new(self.ints.finish()),
            Arc::new(self.doubles.finish()),
            Arc::new(self.bools.finish()),
            Arc::new(self.others.finish()),
        ]
    }
}

/// Reads the attribute set stored under `prefix`, row by row.
pub(crate) struct AttrReader<'a> {
    maps: [&'a MapArray; 5],
}

impl<'a> AttrReader<'a> {
    pub(crate) fn new(src: &'a dyn Columns, prefix: &str) -> Result<Self> {
        let get = |i: usize| col::<MapArray>(src, &format!("{prefix}{}", SUFFIXES[i]));
        Ok(Self {
            maps: [get(0)?, get(1)?, get(2)?, get(3)?, get(4)?],
        })
    }

    pub(crate) fn row(&self, row: usize) -> Result<Attributes> {
        let mut pairs = Vec::new();
        for (kind, map) in self.maps.iter().enumerate() {
            let offsets = map.value_offsets();
            let (start, end) = (offsets[row] as usize, offsets[row + 1] as usize);
            let keys = map.keys().as_string::<i32>();
            let values = map.values();
            for i in start..end {
                let value = match kind {
                    0 => AttrValue::Str(values.as_string::<i32>().value(i).to_owned()),
                    1 => AttrValue::Int(values.as_primitive::<Int64Type>().value(i)),
                    2 => AttrValue::Double(values.as_primitive::<Float64Type>().value(i)),
                    3 => AttrValue::Bool(values.as_boolean().value(i)),
                    _ => typed_json::decode(values.as_string::<i32>().value(i))?,
                };
                pairs.push(KeyValue {
                    key: keys.value(i).to_owned(),
                    value,
                });
            }
        }
        Ok(Attributes::new(pairs))
    }

    /// Number of rows, for callers that convert a whole nested array.
    pub(crate) fn len(&self) -> usize {
        self.maps[0].len()
    }
}

/// Columns of the resource and the instrumentation scope, shared by all tables.
pub(crate) fn resource_scope_fields() -> Vec<Field> {
    let mut fields = attr_fields("resource_attributes");
    fields.push(Field::new(
        "resource_dropped_attributes_count",
        DataType::UInt32,
        false,
    ));
    fields.push(Field::new("resource_schema_url", DataType::Utf8, false));
    fields.push(Field::new("scope_name", DataType::Utf8, false));
    fields.push(Field::new("scope_version", DataType::Utf8, false));
    fields.extend(attr_fields("scope_attributes"));
    fields.push(Field::new(
        "scope_dropped_attributes_count",
        DataType::UInt32,
        false,
    ));
    fields.push(Field::new("scope_schema_url", DataType::Utf8, false));
    fields
}

/// The resource and scope columns. Items of one OTLP resource share its `Arc`, so the columns
/// are built once per distinct (resource, scope) pair and gathered out to the rows.
pub(crate) fn resource_scope_arrays(
    rows: &[(&Arc<Resource>, &Arc<Scope>)],
) -> Result<Vec<ArrayRef>> {
    let mut distinct: Vec<(&Resource, &Scope)> = Vec::new();
    let mut seen: HashMap<(*const Resource, *const Scope), u32> = HashMap::new();
    let indices: Vec<u32> = rows
        .iter()
        .map(|(r, s)| {
            *seen
                .entry((Arc::as_ptr(r), Arc::as_ptr(s)))
                .or_insert_with(|| {
                    distinct.push((r.as_ref(), s.as_ref()));
                    distinct.len() as u32 - 1
                })
        })
        .collect();
    let owners = &distinct;
    let mut arrays = attr_arrays(owners.iter().map(|(r, _)| &r.attributes));
    arrays.push(Arc::new(UInt32Array::from_iter_values(
        owners.iter().map(|(r, _)| r.dropped_attributes_count),
    )));
    arrays.push(strings(owners.iter().map(|(r, _)| r.schema_url.as_str())));
    arrays.push(strings(owners.iter().map(|(_, s)| s.name.as_str())));
    arrays.push(strings(owners.iter().map(|(_, s)| s.version.as_str())));
    arrays.extend(attr_arrays(owners.iter().map(|(_, s)| &s.attributes)));
    arrays.push(Arc::new(UInt32Array::from_iter_values(
        owners.iter().map(|(_, s)| s.dropped_attributes_count),
    )));
    arrays.push(strings(owners.iter().map(|(_, s)| s.schema_url.as_str())));
    if distinct.len() == rows.len() {
        return Ok(arrays);
    }
    let indices: Vec<(usize, usize)> = indices.into_iter().map(|i| (0, i as usize)).collect();
    arrays
        .iter()
        .map(|a| gather(&[a.as_ref()], &indices))
        .collect()
}

/// Reads resource and scope per row.
pub(crate) fn read_resource_scope(
    src: &dyn Columns,
    rows: usize,
) -> Result<Vec<(Arc<Resource>, Arc<Scope>)>> {
    let resource_attrs = AttrReader::new(src, "resource_attributes")?;
    let resource_dropped: &UInt32Array = col(src, "resource_dropped_attributes_count")?;
    let resource_url: &StringArray = col(src, "resource_schema_url")?;
    let scope_name: &StringArray = col(src, "scope_name")?;
    let scope_version: &StringArray = col(src, "scope_version")?;
    let scope_attrs = AttrReader::new(src, "scope_attributes")?;
    let scope_dropped: &UInt32Array = col(src, "scope_dropped_attributes_count")?;
    let scope_url: &StringArray = col(src, "scope_schema_url")?;
    if resource_attrs.len() != rows {
        return Err(Error::Corrupt(
            "resource columns have the wrong length".into(),
        ));
    }
    let mut out: Vec<(Arc<Resource>, Arc<Scope>)> = Vec::with_capacity(rows);
    for row in 0..rows {
        let resource = Resource {
            attributes: resource_attrs.row(row)?,
            dropped_attributes_count: resource_dropped.value(row),
            schema_url: resource_url.value(row).to_owned(),
        };
        let scope = Scope {
            name: scope_name.value(row).to_owned(),
            version: scope_version.value(row).to_owned(),
            attributes: scope_attrs.row(row)?,
            dropped_attributes_count: scope_dropped.value(row),
            schema_url: scope_url.value(row).to_owned(),
        };
        // Rows of one resource are usually adjacent: share one allocation between them.
        let shared = out.last().map(|(r, s)| {
            let r = if **r == resource {
                r.clone()
            } else {
                Arc::new(resource.clone())
            };
            let s = if **s == scope {
                s.clone()
            } else {
                Arc::new(scope.clone())
            };
            (r, s)
        });
        out.push(shared.unwrap_or_else(|| (Arc::new(resource), Arc::new(scope))));
    }
    Ok(out)
}
