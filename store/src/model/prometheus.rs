//! Prometheus-compatible metric names, after the OpenTelemetry → Prometheus compatibility rules
//! (<https://opentelemetry.io/docs/specs/otel/compatibility/prometheus_and_openmetrics/>):
//! characters outside `[a-zA-Z0-9_:]` become `_` (runs of `_` collapse), a leading digit gets a
//! `_` prefix, the unit becomes a suffix in words (`s` → `seconds`, `By` → `bytes`, `m/s` →
//! `meters_per_second`, `1` on a gauge → `ratio`; `{annotations}` are dropped), and monotonic
//! sums end in `_total`. Histograms keep their base name (`_bucket`, `_sum`, `_count` are the
//! query's business).

use super::MetricType;

fn unit_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        _ => return None,
    })
}

fn per_word(unit: &str) -> Option<&'static str> {
    Some(match unit {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        _ => return None,
    })
}

fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let c = if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        };
        if !(c == '_' && out.ends_with('_')) {
            out.push(c);
        }
    }
    out
}

/// The unit as name words: `None` when it adds nothing (empty, or only annotations).
fn unit_suffix(unit: &str, metric_type: MetricType) -> Option<String> {
    // `{requests}` and the like are annotations, not units.
    let mut unit = unit.to_owned();
    while let (Some(open), Some(close)) = (unit.find('{'), unit.find('}')) {
        if close < open {
            break;
        }
        unit.replace_range(open..=close, "");
    }
    let unit = unit.trim();
    if unit.is_empty() {
        return None;
    }
    if unit == "1" {
        return (metric_type == MetricType::Gauge).then(|| "ratio".to_owned());
    }
    let words = match unit.split_once('/') {
        Some((num, den)) => {
            let num = unit_word(num)
                .map(str::to_owned)
                .unwrap_or_else(|| sanitize(num));
            let den = per_word(den)
                .map(str::to_owned)
                .unwrap_or_else(|| sanitize(den));
            if num.is_empty() {
                format!("per_{den}")
            } else {
                format!("{num}_per_{den}")
            }
        }
        None => unit_word(unit)
            .map(str::to_owned)
            .unwrap_or_else(|| sanitize(unit)),
    };
    let words = words.trim_matches('_').to_owned();
    (!words.is_empty()).then_some(words)
}

/// The Prometheus name of a metric.
pub fn prometheus_name(
    name: &str,
    unit: &str,
    metric_type: MetricType,
    is_monotonic: bool,
) -> String {
    let mut out = sanitize(name);
    if out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if let Some(suffix) = unit_suffix(unit, metric_type)
        && !out.ends_with(&format!("_{suffix}"))
        && out != suffix
    {
        out.push('_');
        out.push_str(&suffix);
    }
    if metric_type == MetricType::Sum && is_monotonic && !out.ends_with("_total") {
        out.push_str("_total");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use MetricType::*;

    #[test]
    fn names_follow_the_compatibility_rules() {
        assert_eq!(
            prometheus_name("http.server.request.duration", "s", Histogram, false),
            "http_server_request_duration_seconds"
        );
        assert_eq!(
            prometheus_name("orders", "{order}", Sum, true),
            "orders_total"
        );
        assert_eq!(
            prometheus_name("process.memory.usage", "By", Sum, false),
            "process_memory_usage_bytes"
        );
        assert_eq!(
            prometheus_name("cpu.utilization", "1", Gauge, false),
            "cpu_utilization_ratio"
        );
        assert_eq!(
            prometheus_name("throughput", "m/s", Gauge, false),
            "throughput_meters_per_second"
        );
        assert_eq!(
            prometheus_name("requests_total", "1", Sum, true),
            "requests_total"
        );
        assert_eq!(
            prometheus_name("2xx..count", "", Sum, true),
            "_2xx_count_total"
        );
        assert_eq!(
            prometheus_name("latency_seconds", "s", Histogram, false),
            "latency_seconds"
        );
        assert_eq!(prometheus_name("temp", "Cel", Gauge, false), "temp_celsius");
    }
}
