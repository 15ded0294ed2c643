//! PromQL conformance: the scripts in `tests/promql/*.test` load series and state what
//! expressions evaluate to, worked out from the PromQL documentation and Prometheus's semantics.
//!
//! The script language follows Prometheus's own test scripts:
//!
//! ```text
//! load 1m                                   # the step between a series' values
//!   metric{label="value"} 0+10x5 _ stale 3  # a, a+b … (x n more), missing, staleness marker
//! eval instant at 10m expr                  # then the expected elements, any order
//!   {label="value"} 50
//! eval_ordered instant at 10m sort(expr)    # in this order
//! eval range from 0 to 10m step 5m expr     # series then a value per step (`_` none)
//!   {label="value"} 0 1 _
//! eval_fail instant at 0 expr               # an error whose message holds the text given
//!   expected_fail_message text
//! clear                                     # forget what was loaded
//! ```
//!
//! Native histograms are written as in Prometheus's scripts, `{{schema:0 count:4 sum:5
//! z_bucket:1 z_bucket_w:0.001 offset:0 buckets:[1 2 1] n_offset:0 n_buckets:[1]}}` (every key
//! optional), loaded as `{{…}}+{{…}}xN` (a, a+b … N more), `{{…}}xN` or one by one.

use std::path::Path;

use spyglass_query::promql::histogram::Buckets;
use spyglass_query::promql::{
    self, Evaluator, Histogram, Labels, Limits, MemorySource, Sample, Series, Value, stale_marker,
};

/// Values closer than this (relative) are equal, as in Prometheus's tests.
const EPSILON: f64 = 1e-6;

#[test]
fn scripts() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/promql");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "test"))
        .collect();
    files.sort();
    assert!(!files.is_empty());
    let mut failures = Vec::new();
    let mut evaluated = 0;
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        let name = file.file_name().unwrap().to_string_lossy().to_string();
        evaluated += run_script(&name, &text, &mut failures);
    }
    eprintln!("{evaluated} expressions in {} scripts", files.len());
    assert!(
        failures.is_empty(),
        "{} of {evaluated} failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    assert!(evaluated >= 200, "only {evaluated} expressions");
}

/// Runs one script; returns how many expressions it evaluated.
fn run_script(name: &str, text: &str, failures: &mut Vec<String>) -> usize {
    let mut source = MemorySource::default();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    let mut evaluated = 0;
    while i < lines.len() {
        let line = strip_comment(lines[i]).trim();
        let at = format!("{name}:{}", i + 1);
        i += 1;
        if line.is_empty() {
            continue;
        }
        // The indented lines that belong to this command.
        let mut body = Vec::new();
        while i < lines.len()
            && (lines[i].starts_with(' ') || lines[i].starts_with('\t'))
            && !strip_comment(lines[i]).trim().is_empty()
        {
            body.push(strip_comment(lines[i]).trim());
            i += 1;
        }
        if line == "clear" {
            source = MemorySource::default();
        } else if let Some(step) = line.strip_prefix("load ") {
            let step = duration_ms(step.trim()).unwrap_or_else(|| panic!("{at}: step"));
            for series in body {
                load(&mut source, series, step, &at);
            }
        } else if line.starts_with("eval") {
            evaluated += 1;
            if let Err(e) = check(&source, line, &body) {
                failures.push(format!("{at}: {line}\n{e}"));
            }
        } else {
            panic!("{at}: unknown command {line}");
        }
    }
    evaluated
}

fn strip_comment(line: &str) -> &str {
    match line.find(" #") {
        Some(i) => &line[..i],
        None if line.trim_start().starts_with('#') => "",
        None => line,
    }
}

/// `metric{a="b"} values…` into the source.
fn load(source: &mut MemorySource, line: &str, step: i64, at: &str) {
    let (labels, rest) = split_series(line).unwrap_or_else(|| panic!("{at}: series {line}"));
    let mut t = 0;
    if rest.contains("{{") {
        for word in words(rest) {
            if word == "stale" {
                source.push(&labels, t, stale_marker());
                t += step;
                continue;
            }
            if !word.starts_with("{{") {
                // Numbers between histograms.
                for f in expand(&word).unwrap_or_else(|e| panic!("{at}: {e}")) {
                    if let Some(f) = f {
                        source.push(&labels, t, f);
                    }
                    t += step;
                }
                continue;
            }
            for h in expand_histograms(&word).unwrap_or_else(|e| panic!("{at}: {e}")) {
                if let Some(h) = h {
                    source.push_histogram(&labels, t, h);
                }
                t += step;
            }
        }
        return;
    }
    for value in expand(rest).unwrap_or_else(|e| panic!("{at}: {e}")) {
        if let Some(f) = value {
            source.push(&labels, t, f);
        }
        t += step;
    }
}

/// Parses `name{a="b", c="d"}` (either part optional) and returns the labels and the rest.
fn split_series(line: &str) -> Option<(Labels, &str)> {
    let mut labels = Labels::new();
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    if name_end > 0 {
        labels.insert("__name__".into(), line[..name_end].to_string());
    }
    let mut rest = &line[name_end..];
    if let Some(inner) = rest.strip_prefix('{') {
        let close = find_close(inner)?;
        for pair in split_pairs(&inner[..close]) {
            let (k, v) = pair.split_once('=')?;
            let v = v.trim();
            let v = v.strip_prefix('"')?.strip_suffix('"')?;
            labels.insert(k.trim().to_string(), v.replace("\\\"", "\""));
        }
        rest = &inner[close + 1..];
    }
    Some((labels, rest.trim()))
}

fn find_close(s: &str) -> Option<usize> {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            '}' if !quoted => return Some(i),
            _ => {}
        }
    }
    None
}

fn split_pairs(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// Value notation: `1 2 _ stale`, `a+bxn` (n+1 values from a by b), `a-bxn`, `axn` (a, n+1
/// times), `_xn` (n missing).
fn expand(text: &str) -> Result<Vec<Option<f64>>, String> {
    let mut out = Vec::new();
    for word in text.split_whitespace() {
        if word == "_" {
            out.push(None);
            continue;
        }
        if word == "stale" {
            out.push(Some(stale_marker()));
            continue;
        }
        if let Some((head, times)) = word.rsplit_once('x')
            && let Ok(times) = times.parse::<usize>()
        {
            if head == "_" {
                out.extend(std::iter::repeat_n(None, times));
                continue;
            }
            // `a+b`, `a-b` or `a`; a itself may be negative.
            let split = head
                .char_indices()
                .skip(1)
                .find(|(_, c)| *c == '+' || *c == '-')
                .map(|(i, _)| i);
            let (start, by) = match split {
                Some(i) => (number(&head[..i])?, number(&head[i..])?),
                None => (number(head)?, 0.0),
            };
            for k in 0..=times {
                out.push(Some(start + by * k as f64));
            }
            continue;
        }
        out.push(Some(number(word)?));
    }
    Ok(out)
}

/// The words of a line, a `{{…}}` histogram with what follows it (`+{{…}}x3`) as one.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut depth = 0i32;
    for c in text.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            _ => {}
        }
        if c.is_whitespace() && depth == 0 {
            if !word.is_empty() {
                out.push(std::mem::take(&mut word));
            }
        } else {
            word.push(c);
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// `{{…}}` as a histogram.
fn histogram(text: &str) -> Result<Histogram, String> {
    let inner = text
        .trim()
        .strip_prefix("{{")
        .and_then(|t| t.strip_suffix("}}"))
        .ok_or_else(|| format!("not a histogram: {text}"))?;
    let mut h = Histogram {
        schema: 0,
        zero_threshold: 0.0,
        zero_count: 0.0,
        count: 0.0,
        sum: 0.0,
        positive: Buckets::default(),
        negative: Buckets::default(),
    };
    let mut rest = inner.trim();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once(':')
            .ok_or_else(|| format!("bad histogram field in {text}"))?;
        let after = after.trim_start();
        let (value, next) = if let Some(list) = after.strip_prefix('[') {
            let end = list.find(']').ok_or("unclosed [")?;
            (&list[..end], &list[end + 1..])
        } else {
            after.split_once(' ').unwrap_or((after, ""))
        };
        rest = next.trim_start();
        let counts =
            || -> Result<Vec<f64>, String> { value.split_whitespace().map(number).collect() };
        let int = || {
            value
                .parse::<i32>()
                .map_err(|_| format!("not an integer: {value}"))
        };
        match key.trim() {
            "schema" => h.schema = int()?,
            "count" => h.count = number(value)?,
            "sum" => h.sum = number(value)?,
            "z_bucket" => h.zero_count = number(value)?,
            "z_bucket_w" => h.zero_threshold = number(value)?,
            "offset" => h.positive.offset = int()?,
            "buckets" => h.positive.counts = counts()?,
            "n_offset" => h.negative.offset = int()?,
            "n_buckets" => h.negative.counts = counts()?,
            other => return Err(format!("unknown histogram field {other}")),
        }
    }
    Ok(h)
}

/// Histogram values: `{{a}}+{{b}}xN`, `{{a}}xN`, `{{a}}`, `_`.
fn expand_histograms(text: &str) -> Result<Vec<Option<Histogram>>, String> {
    let mut out = Vec::new();
    for word in words(text) {
        if word == "_" {
            out.push(None);
            continue;
        }
        let (series, times) = match word.rsplit_once("}}x") {
            Some((head, n)) => (
                format!("{head}}}}}"),
                n.parse::<usize>()
                    .map_err(|_| format!("bad count in {word}"))?,
            ),
            None => (word.clone(), 0),
        };
        let (start, by) = match series.split_once("}}+{{") {
            Some((a, b)) => (
                histogram(&format!("{a}}}}}"))?,
                Some(histogram(&format!("{{{{{b}"))?),
            ),
            None => (histogram(&series)?, None),
        };
        let mut h = start;
        for _ in 0..=times {
            out.push(Some(h.clone()));
            if let Some(by) = &by {
                h = h.add_scaled(by, 1.0);
            }
        }
    }
    Ok(out)
}

/// Two histograms alike: the same schema, and every count, bucket and the sum equal.
fn same_histogram(a: &Histogram, b: &Histogram) -> bool {
    let buckets_alike = |x: &Buckets, y: &Buckets| {
        let lo = x.offset.min(y.offset);
        let hi = (x.offset + x.counts.len() as i32).max(y.offset + y.counts.len() as i32);
        (lo..hi).all(|i| equal(x.get(i), y.get(i)))
    };
    a.schema == b.schema
        && equal(a.count, b.count)
        && equal(a.sum, b.sum)
        && equal(a.zero_count, b.zero_count)
        && equal(a.zero_threshold, b.zero_threshold)
        && buckets_alike(&a.positive, &b.positive)
        && buckets_alike(&a.negative, &b.negative)
}

fn show_histogram(h: &Histogram) -> String {
    let list = |c: &[f64]| c.iter().map(f64::to_string).collect::<Vec<_>>().join(" ");
    format!(
        "{{{{schema:{} count:{} sum:{} z_bucket:{} z_bucket_w:{} offset:{} buckets:[{}] n_offset:{} n_buckets:[{}]}}}}",
        h.schema,
        h.count,
        h.sum,
        h.zero_count,
        h.zero_threshold,
        h.positive.offset,
        list(&h.positive.counts),
        h.negative.offset,
        list(&h.negative.counts)
    )
}

fn number(text: &str) -> Result<f64, String> {
    match text {
        "Inf" | "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => text.parse().map_err(|_| format!("not a number: {text}")),
    }
}

/// `30s`, `5m`, `1h`, `2d`, `1h30m`, `0`, or a number of seconds.
fn duration_ms(text: &str) -> Option<i64> {
    if let Ok(seconds) = text.parse::<f64>() {
        return Some((seconds * 1000.0) as i64);
    }
    let mut total = 0i64;
    let mut digits = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let n: i64 = digits.parse().ok()?;
        digits.clear();
        let unit = if c == 'm' && chars.peek() == Some(&'s') {
            chars.next();
            1
        } else {
            match c {
                's' => 1000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                'w' => 604_800_000,
                _ => return None,
            }
        };
        total += n * unit;
    }
    digits.is_empty().then_some(total)
}

fn check(source: &MemorySource, line: &str, body: &[&str]) -> Result<(), String> {
    let (command, rest) = line.split_once(' ').ok_or("no expression")?;
    let ordered = command == "eval_ordered";
    let fail = command == "eval_fail";
    let mut evaluator = Evaluator::new(source, Limits::default());
    if let Some(rest) = rest.strip_prefix("instant at ") {
        let (time, query) = rest.split_once(' ').ok_or("no expression")?;
        let t = duration_ms(time).ok_or("time")?;
        let result = promql::parse(query).and_then(|e| evaluator.instant(&e, t));
        if fail {
            return expect_failure(result.map(|_| ()), body);
        }
        let value = result.map_err(|e| format!("failed: {e}"))?;
        compare_instant(&value, body, ordered)
    } else if let Some(rest) = rest.strip_prefix("range from ") {
        let words: Vec<&str> = rest.splitn(6, ' ').collect();
        if words.len() < 6 || words[1] != "to" || words[3] != "step" {
            return Err("expected: range from T to T step D expr".into());
        }
        let start = duration_ms(words[0]).ok_or("start")?;
        let end = duration_ms(words[2]).ok_or("end")?;
        let step = duration_ms(words[4]).ok_or("step")?;
        let result = promql::parse(words[5]).and_then(|e| evaluator.range(&e, start, end, step));
        if fail {
            return expect_failure(result.map(|_| ()), body);
        }
        let matrix = result.map_err(|e| format!("failed: {e}"))?;
        compare_range(&matrix, body, start, step)
    } else {
        Err(format!("unknown eval form: {rest}"))
    }
}

fn expect_failure(result: Result<(), promql::PromError>, body: &[&str]) -> Result<(), String> {
    let error = match result {
        Ok(()) => return Err("succeeded, but should have failed".into()),
        Err(e) => e.message,
    };
    for line in body {
        if let Some(text) = line.strip_prefix("expected_fail_message ")
            && !error.contains(text)
        {
            return Err(format!("error {error:?} lacks {text:?}"));
        }
    }
    Ok(())
}

fn equal(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= EPSILON * a.abs().max(b.abs())
}

fn show(labels: &Labels) -> String {
    let name = labels.get("__name__").cloned().unwrap_or_default();
    let inner: Vec<String> = labels
        .iter()
        .filter(|(k, _)| *k != "__name__")
        .map(|(k, v)| format!("{k}=\"{v}\""))
        .collect();
    format!("{name}{{{}}}", inner.join(", "))
}

fn show_vector(v: &[Sample]) -> String {
    v.iter()
        .map(|s| match &s.h {
            Some(h) => format!("  {} {}", show(&s.labels), show_histogram(h)),
            None => format!("  {} {}", show(&s.labels), s.f),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn compare_instant(value: &Value, body: &[&str], ordered: bool) -> Result<(), String> {
    let v = match value {
        Value::Scalar(f) => {
            let want = body.first().ok_or("a scalar came, nothing expected")?;
            let want = number(want.trim())?;
            return if body.len() == 1 && equal(*f, want) {
                Ok(())
            } else {
                Err(format!("got scalar {f}, want {want}"))
            };
        }
        Value::String(s) => {
            let want = body.first().ok_or("a string came, nothing expected")?;
            return if want.trim().trim_matches('"') == s {
                Ok(())
            } else {
                Err(format!("got string {s:?}"))
            };
        }
        Value::Vector(v) => v.clone(),
        Value::Matrix(_) => Vec::new(),
    };
    if let Value::Matrix(m) = value {
        // A range vector is stated as series and all their values.
        return compare_series(m, body, None);
    }
    let mut want = Vec::new();
    for line in body {
        let (labels, rest) = split_series(line).ok_or_else(|| format!("bad line {line}"))?;
        let value = if rest.trim().starts_with("{{") {
            Err(histogram(rest)?)
        } else {
            Ok(number(rest.trim())?)
        };
        want.push((labels, value));
    }
    let mismatch = || {
        format!(
            "got:\n{}\nwant:\n{}",
            show_vector(&v),
            want.iter()
                .map(|(l, value)| match value {
                    Ok(f) => format!("  {} {f}", show(l)),
                    Err(h) => format!("  {} {}", show(l), show_histogram(h)),
                })
                .collect::<Vec<_>>()
                .join("\n")
        )
    };
    if v.len() != want.len() {
        return Err(mismatch());
    }
    for (i, (labels, value)) in want.iter().enumerate() {
        let found = if ordered {
            (v[i].labels == *labels).then_some(&v[i])
        } else {
            v.iter().find(|s| s.labels == *labels)
        };
        match (found, value) {
            (Some(s), Ok(f)) if s.h.is_none() && equal(s.f, *f) => {}
            (Some(Sample { h: Some(got), .. }), Err(h)) if same_histogram(got, h) => {}
            _ => return Err(mismatch()),
        }
    }
    Ok(())
}

/// A range result: each expected series with one value (or `_`) per step from `start`.
fn compare_range(m: &[Series], body: &[&str], start: i64, step: i64) -> Result<(), String> {
    compare_series(m, body, Some((start, step)))
}

/// Series against lines `labels values…`: per step when `steps` is given, else the values of
/// the points in order.
fn compare_series(m: &[Series], body: &[&str], steps: Option<(i64, i64)>) -> Result<(), String> {
    let got = m
        .iter()
        .map(|s| {
            format!(
                "  {} {}",
                show(&s.labels),
                s.points
                    .iter()
                    .map(|(t, f)| format!("{f}@{}s", t / 1000))
                    .chain(s.histograms.iter().map(|(t, h)| format!(
                        "{}@{}s",
                        show_histogram(h),
                        t / 1000
                    )))
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    if m.len() != body.len() {
        return Err(format!(
            "got {} series, want {}:\n{got}",
            m.len(),
            body.len()
        ));
    }
    for line in body {
        let (labels, rest) = split_series(line).ok_or_else(|| format!("bad line {line}"))?;
        let series = m
            .iter()
            .find(|s| s.labels == labels)
            .ok_or_else(|| format!("no series {}:\n{got}", show(&labels)))?;
        if rest.contains("{{") {
            let want: Vec<(i64, Histogram)> = expand_histograms(rest)?
                .into_iter()
                .enumerate()
                .filter_map(|(k, h)| {
                    let t = steps.map_or(k as i64, |(start, step)| start + k as i64 * step);
                    h.map(|h| (t, h))
                })
                .collect();
            let same = series.points.is_empty()
                && want.len() == series.histograms.len()
                && want
                    .iter()
                    .zip(&series.histograms)
                    .all(|(a, b)| (steps.is_none() || a.0 == b.0) && same_histogram(&a.1, &b.1));
            if !same {
                return Err(format!("{}: want {rest}, got:\n{got}", show(&labels)));
            }
            continue;
        }
        let values = expand(rest)?;
        let points: Vec<(i64, f64)> = match steps {
            Some((start, step)) => values
                .iter()
                .enumerate()
                .filter_map(|(k, v)| v.map(|f| (start + k as i64 * step, f)))
                .collect(),
            None => {
                if values.len() != series.points.len() {
                    return Err(format!("{}: got:\n{got}", show(&labels)));
                }
                values
                    .iter()
                    .zip(&series.points)
                    .map(|(v, p)| (p.0, v.unwrap_or(f64::NAN)))
                    .collect()
            }
        };
        let same = points.len() == series.points.len()
            && series.histograms.is_empty()
            && points
                .iter()
                .zip(&series.points)
                .all(|(a, b)| a.0 == b.0 && equal(a.1, b.1));
        if !same {
            return Err(format!("{}: want {rest}, got:\n{got}", show(&labels)));
        }
    }
    Ok(())
}
