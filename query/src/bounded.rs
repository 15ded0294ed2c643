//! SQL functions whose output can be far larger than their input, bounded before they run.
//!
//! DataFusion's memory pool counts what sorts, joins and aggregations hold, not the values a
//! scalar function makes: `repeat('x', 200000000)` would allocate 200 MB in one call, and
//! `range(1e10)` 80 GB. Each such function is registered in every SQL session under its own
//! name, wrapping the built-in one: before calling it, the wrapper works out how many bytes the
//! call would make, and refuses the query when one value would pass `max_value_bytes` or the
//! whole call `max_call_bytes`.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::{DataType, FieldRef, Int64Type};
use datafusion::common::{Result as DfResult, exec_err};
use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};
use datafusion::prelude::SessionContext;

/// How a function's output grows with its arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: the text's bytes, `n` times.
    Repeat,
    /// `lpad` / `rpad(text, n [, fill])`: `n` characters of up to 4 bytes.
    Pad,
    /// `array_repeat(element, n)`: `n` elements.
    ArrayRepeat,
    /// `range` / `generate_series` as scalar functions: one 8-byte element per step.
    Series,
}

const BOUNDED: [(&str, Growth); 6] = [
    ("repeat", Growth::Repeat),
    ("lpad", Growth::Pad),
    ("rpad", Growth::Pad),
    ("array_repeat", Growth::ArrayRepeat),
    ("range", Growth::Series),
    ("generate_series", Growth::Series),
];

/// The limits the wrappers enforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Limits {
    pub max_value_bytes: u64,
    pub max_call_bytes: u64,
}

/// Replaces each growing function the session knows by its bounded wrapper.
pub(crate) fn register(ctx: &SessionContext, limits: Limits) {
    for (name, growth) in BOUNDED {
        if let Ok(inner) = ctx.udf(name) {
            let bounded = Bounded {
                inner,
                growth,
                limits,
            };
            ctx.register_udf(ScalarUDF::new_from_impl(bounded));
        }
    }
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct Bounded {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    limits: Limits,
}

/// The `i`th argument as 64-bit integers, one per row (`None` where null or not a number).
fn integers(args: &ScalarFunctionArgs, i: usize) -> Option<Vec<Option<i64>>> {
    let array = args.args.get(i)?.to_array(args.number_rows).ok()?;
    let array = arrow::compute::cast(&array, &DataType::Int64).ok()?;
    let values = array.as_primitive::<Int64Type>();
    Some(values.iter().collect())
}

/// The byte length of the `i`th argument per row, when it is text (`None` otherwise).
fn text_lengths(args: &ScalarFunctionArgs, i: usize) -> Option<Vec<u64>> {
    let array: ArrayRef = args.args.get(i)?.to_array(args.number_rows).ok()?;
    let lengths: Vec<u64> = match array.data_type() {
        DataType::Utf8 => (array.as_string::<i32>().iter())
            .map(|s| s.map_or(0, str::len) as u64)
            .collect(),
        DataType::LargeUtf8 => (array.as_string::<i64>().iter())
            .map(|s| s.map_or(0, str::len) as u64)
            .collect(),
        DataType::Utf8View => (array.as_string_view().iter())
            .map(|s| s.map_or(0, str::len) as u64)
            .collect(),
        _ => return None,
    };
    Some(lengths)
}

impl Bounded {
    /// The bytes each row's value would take.
    fn value_bytes(&self, args: &ScalarFunctionArgs) -> Vec<u64> {
        let rows = args.number_rows;
        let count = |i| integers(args, i).unwrap_or_else(|| vec![None; rows]);
        let positive = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        match self.growth {
            Growth::Repeat | Growth::ArrayRepeat => {
                let element = text_lengths(args, 0).unwrap_or_else(|| vec![16; rows]);
                let times = count(1);
                (element.iter().zip(times))
                    .map(|(e, n)| e.max(&1).saturating_mul(positive(n)))
                    .collect()
            }
            Growth::Pad => (count(1).into_iter())
                .map(|n| positive(n).saturating_mul(4))
                .collect(),
            Growth::Series => {
                let ints: Vec<_> = (0..args.args.len()).map(|i| integers(args, i)).collect();
                // Integer arguments only: one (stop), two (start, stop) or three (with step).
                let Some(ints) = ints.into_iter().collect::<Option<Vec<_>>>() else {
                    return vec![0; rows];
                };
                (0..rows)
                    .map(|r| {
                        let at = |i: usize| ints.get(i).and_then(|v| v[r]);
                        let (start, stop, step) = match ints.len() {
                            1 => (Some(0), at(0), Some(1)),
                            2 => (at(0), at(1), Some(1)),
                            _ => (at(0), at(1), at(2)),
                        };
                        let (Some(start), Some(stop), Some(step)) = (start, stop, step) else {
                            return 0;
                        };
                        let span = (i128::from(stop) - i128::from(start)).unsigned_abs();
                        let steps = span / i128::from(step).unsigned_abs().max(1);
                        u64::try_from(steps.saturating_add(1).saturating_mul(8)).unwrap_or(u64::MAX)
                    })
                    .collect()
            }
        }
    }
}

impl ScalarUDFImpl for Bounded {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let values = self.value_bytes(&args);
        let largest = values.iter().copied().max().unwrap_or(0);
        let Limits {
            max_value_bytes,
            max_call_bytes,
        } = self.limits;
        if largest > max_value_bytes {
            return exec_err!(
                "{}() would make a value of {largest} bytes; one value may take at most \
                 {max_value_bytes} bytes ([query] sql_max_value_bytes)",
                self.name()
            );
        }
        let total = values.iter().fold(0u64, |t, v| t.saturating_add(*v));
        if total > max_call_bytes {
            return exec_err!(
                "{}() would make {total} bytes in one batch; the limit is {max_call_bytes} \
                 bytes ([query] sql_max_bytes)",
                self.name()
            );
        }
        self.inner.invoke_with_args(args)
    }
}
