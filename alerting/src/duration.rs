//! Durations as Prometheus writes them: `1h30m`, `90s`, `500ms`, `1d`, `2w`, `1y`, `0`.

use std::time::Duration;

/// Units from largest to smallest, as they must appear.
const UNITS: [(&str, u64); 8] = [
    ("y", 365 * 86_400_000),
    ("w", 7 * 86_400_000),
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
    ("", 0),
];

/// Parses a Prometheus duration; the error says what is wrong.
pub fn parse(text: &str) -> Result<Duration, String> {
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let invalid = || format!("{text:?} is not a duration (e.g. 30s, 5m, 1h30m, 1d)");
    if text.is_empty() {
        return Err(invalid());
    }
    let mut rest = text;
    let mut millis: u64 = 0;
    // Index in UNITS of the last unit seen: each must be smaller than the one before.
    let mut last = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..letters];
        let Some(index) = UNITS[..7].iter().position(|(u, _)| *u == unit) else {
            return Err(invalid());
        };
        if last.is_some_and(|l| index <= l) {
            return Err(format!(
                "{text:?}: units must go from largest to smallest, once each"
            ));
        }
        last = Some(index);
        millis = number
            .checked_mul(UNITS[index].1)
            .and_then(|m| millis.checked_add(m))
            .ok_or_else(|| format!("{text:?} is too long"))?;
        rest = &rest[letters..];
    }
    Ok(Duration::from_millis(millis))
}

/// Formats as Prometheus prints durations: `1h30m`, `5m`, `0s`.
pub fn format(duration: Duration) -> String {
    let mut millis = duration.as_millis() as u64;
    if millis == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in &UNITS[..7] {
        if millis >= *size {
            out.push_str(&format!("{}{unit}", millis / size));
            millis %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_durations_parse() {
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1d"), Ok(Duration::from_secs(86_400)));
        assert_eq!(parse("1w2d"), Ok(Duration::from_secs(9 * 86_400)));
        assert_eq!(parse("1y"), Ok(Duration::from_secs(365 * 86_400)));
        for bad in ["", "5", "5 m", "m5", "1.5h", "30m1h", "1h1h", "10x", "-5m"] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn durations_print_as_prometheus_does() {
        assert_eq!(format(Duration::ZERO), "0s");
        assert_eq!(format(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format(Duration::from_secs(300)), "5m");
        assert_eq!(format(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(
            parse(&format(Duration::from_secs(93_784))),
            Ok(Duration::from_secs(93_784))
        );
    }
}
