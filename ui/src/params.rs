//! Parsing of query-string parameters shared by the native and Jaeger APIs; every failure names
//! the parameter and what it accepts.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{ApiError, ApiResult};

/// The parameters of a query string, in order, repeated keys kept.
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    pub(crate) fn parse(raw: Option<&str>) -> Self {
        Params(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The value of `name`, if given and not empty (the last one when repeated).
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn all(&self, name: &str) -> impl Iterator<Item = &str> {
        self.0
            .iter()
            .filter(move |(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Refuses parameters this endpoint does not know, so that a typo is not silently ignored.
    pub(crate) fn only(&self, known: &[&str]) -> ApiResult<()> {
        match self.0.iter().find(|(k, _)| !known.contains(&k.as_str())) {
            Some((k, _)) => Err(ApiError::bad(
                k,
                format!(
                    "unknown parameter; this endpoint takes {}",
                    known.join(", ")
                ),
            )),
            None => Ok(()),
        }
    }
}

/// A duration such as `250ms`, `1.5s`, `2m`, `100us`, `1h30m` or `7d`.
pub(crate) fn duration(name: &str, text: &str) -> ApiResult<Duration> {
    let allowed = "a number with a unit (ns, us, ms, s, m, h, d, w), e.g. 250ms or 1.5s";
    let mut total = 0f64;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(ApiError::bad(name, format!("empty; use {allowed}")));
    }
    while !rest.is_empty() {
        let split = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| ApiError::bad(name, format!("{text:?} has no unit; use {allowed}")))?;
        let (number, tail) = rest.split_at(split);
        let number: f64 = number
            .parse()
            .map_err(|_| ApiError::bad(name, format!("{text:?} is not {allowed}")))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let nanos_per = match unit {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            "d" => 86_400e9,
            "w" => 604_800e9,
            _ => {
                return Err(ApiError::bad(
                    name,
                    format!("unknown unit {unit:?}; use {allowed}"),
                ));
            }
        };
        total += number * nanos_per;
        rest = tail;
    }
    if !total.is_finite() || total > u64::MAX as f64 {
        return Err(ApiError::bad(name, "too large"));
    }
    Ok(Duration::from_nanos(total as u64))
}

/// A point in time: Unix nanoseconds, an RFC 3339 timestamp, or `now` / `now-15m`.
pub(crate) fn time(name: &str, text: &str) -> ApiResult<u64> {
    let allowed = "Unix nanoseconds, an RFC 3339 time (2026-11-27T10:00:00Z) or now-<duration>";
    if let Ok(n) = text.parse::<u64>() {
        return Ok(n);
    }
    if text == "now" {
        return Ok(now_nanos());
    }
    if let Some(ago) = text.strip_prefix("now-") {
        return Ok(now_nanos().saturating_sub(duration(name, ago)?.as_nanos() as u64));
    }
    rfc3339(text).ok_or_else(|| ApiError::bad(name, format!("{text:?} is not {allowed}")))
}

/// An RFC 3339 time, `Z` or with an offset (`+01:00`, as Go clients send local times), as
/// Unix nanoseconds; `None` when it is not one or is before 1970.
pub(crate) fn rfc3339(text: &str) -> Option<u64> {
    let (local, offset_secs) = match text.strip_suffix('Z').or_else(|| text.strip_suffix('z')) {
        Some(local) => (local, 0i64),
        None => {
            let split = text.len().checked_sub(6)?;
            let (local, offset) = (text.get(..split)?, text.get(split..)?);
            let sign = match offset.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = offset[1..].split_once(':')?;
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            (local, sign * (h * 3600 + m * 60))
        }
    };
    let at = humantime::parse_rfc3339_weak(local).ok()?;
    let nanos = at.duration_since(UNIX_EPOCH).ok()?.as_nanos() as i128;
    u64::try_from(nanos - i128::from(offset_secs) * 1_000_000_000).ok()
}

/// `start` and `end` (each optional; the last hour by default), checked to be in order.
pub(crate) fn time_window(params: &Params) -> ApiResult<(u64, u64)> {
    const HOUR_NANOS: u64 = 3600 * 1_000_000_000;
    let end = params
        .get("end")
        .map(|v| time("end", v))
        .transpose()?
        .unwrap_or_else(now_nanos);
    let start = params
        .get("start")
        .map(|v| time("start", v))
        .transpose()?
        .unwrap_or(end.saturating_sub(HOUR_NANOS));
    if start >= end {
        return Err(ApiError::bad("start", "must be before end"));
    }
    Ok((start, end))
}

pub(crate) fn now_nanos() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

pub(crate) fn number<T: std::str::FromStr>(name: &str, text: &str, allowed: &str) -> ApiResult<T> {
    text.parse()
        .map_err(|_| ApiError::bad(name, format!("{text:?} is not {allowed}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_in_go_style() {
        assert_eq!(duration("d", "250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(duration("d", "1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(duration("d", "1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(duration("d", "100us").unwrap(), Duration::from_micros(100));
        assert_eq!(
            duration("d", "7d").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        assert_eq!(
            duration("d", "1w").unwrap(),
            Duration::from_secs(7 * 86_400)
        );
        for bad in ["", "10", "5 parsecs", "ms", "1.2.3s"] {
            let e = duration("min_duration", bad).unwrap_err();
            let (_, message) = e.status_and_message();
            assert!(message.contains("min_duration"), "{bad}: {message}");
        }
    }

    #[test]
    fn rfc3339_with_offsets() {
        let utc = rfc3339("2026-12-04T10:00:00Z").unwrap();
        assert_eq!(rfc3339("2026-12-04T11:00:00+01:00"), Some(utc));
        assert_eq!(rfc3339("2026-12-04T05:30:00.000-04:30"), Some(utc));
        assert_eq!(rfc3339("2026-12-04T10:00:00.250Z"), Some(utc + 250_000_000));
        assert_eq!(rfc3339("2026-12-04T10:00:00+0100"), None);
        assert_eq!(rfc3339("yesterday"), None);
    }

    #[test]
    fn times_as_nanos_rfc3339_or_relative() {
        assert_eq!(
            time("t", "1795000000000000000").unwrap(),
            1_795_000_000_000_000_000
        );
        assert_eq!(
            time("t", "2026-11-18T11:06:40Z").unwrap(),
            1_795_000_000_000_000_000
        );
        let ago = time("t", "now-1h").unwrap();
        assert!(now_nanos() - ago >= 3_600_000_000_000);
        assert!(time("start", "yesterday").is_err());
    }
}
