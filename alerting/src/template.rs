//! Annotation and label templates in the forms people copy from Prometheus rules:
//! `{{ $labels.service }}`, `{{ $value | humanizePercentage }}`, `{{ printf "%.2f" $value }}`.
//!
//! A small subset of Go's `text/template` as Prometheus uses it: variables (`$labels.x`,
//! `.Labels.x`, `$value`, `.Value`, `$externalURL`), string and number literals, pipelines
//! and the functions below. Anything else is refused when the rule is loaded, so a typo shows
//! in `spyglass rules check` instead of as a blank in a page. A missing label is empty, as
//! Prometheus's `missingkey=zero` makes it.

use std::collections::BTreeMap;

/// What a template can refer to when it is expanded.
pub struct Context<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub value: f64,
    pub external_url: &'a str,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
enum Part {
    Text(String),
    /// Commands joined by `|`: each one's result is the last argument of the next.
    Pipeline(Vec<Command>),
}

#[derive(Clone, Debug, PartialEq)]
enum Command {
    Term(Term),
    Call(Func, Vec<Term>),
}

#[derive(Clone, Debug, PartialEq)]
enum Term {
    Label(String),
    Value,
    ExternalUrl,
    Str(String),
    Num(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Func {
    Humanize,
    Humanize1024,
    HumanizePercentage,
    HumanizeDuration,
    Printf,
    ToUpper,
    ToLower,
    Title,
}

const FUNCS: [(&str, Func); 8] = [
    ("humanize", Func::Humanize),
    ("humanize1024", Func::Humanize1024),
    ("humanizePercentage", Func::HumanizePercentage),
    ("humanizeDuration", Func::HumanizeDuration),
    ("printf", Func::Printf),
    ("toUpper", Func::ToUpper),
    ("toLower", Func::ToLower),
    ("title", Func::Title),
];

#[derive(Clone, Debug)]
enum Val {
    Str(String),
    Num(f64),
}

impl Val {
    fn text(&self) -> String {
        match self {
            Val::Str(s) => s.clone(),
            Val::Num(n) => format_value(*n),
        }
    }

    fn number(&self) -> Result<f64, String> {
        match self {
            Val::Num(n) => Ok(*n),
            Val::Str(s) => s
                .trim()
                .parse()
                .map_err(|_| format!("{s:?} is not a number")),
        }
    }
}

impl Template {
    /// Parses a template; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut trim_next_text = false;
        while let Some(open) = rest.find("{{") {
            let mut before = &rest[..open];
            if trim_next_text {
                before = before.trim_start();
            }
            let inner_start = open + 2;
            let close = rest[inner_start..]
                .find("}}")
                .ok_or_else(|| format!("unclosed action at {:?}", &rest[open..]))?;
            let mut inner = &rest[inner_start..inner_start + close];
            if let Some(stripped) = inner.strip_prefix('-') {
                before = before.trim_end();
                inner = stripped;
            }
            trim_next_text = false;
            if let Some(stripped) = inner.strip_suffix('-') {
                trim_next_text = true;
                inner = stripped;
            }
            if !before.is_empty() {
                parts.push(Part::Text(before.to_owned()));
            }
            parts.push(Part::Pipeline(parse_pipeline(inner.trim())?));
            rest = &rest[inner_start + close + 2..];
        }
        let tail = if trim_next_text {
            rest.trim_start()
        } else {
            rest
        };
        if !tail.is_empty() {
            parts.push(Part::Text(tail.to_owned()));
        }
        Ok(Self { parts })
    }

    pub fn render(&self, context: &Context<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Pipeline(commands) => match run(commands, context) {
                    Ok(value) => out.push_str(&value.text()),
                    Err(error) => out.push_str(&format!("<error: {error}>")),
                },
            }
        }
        out
    }
}

fn parse_pipeline(text: &str) -> Result<Vec<Command>, String> {
    if text.is_empty() {
        return Err("empty action {{ }}".into());
    }
    let tokens = tokenize(text)?;
    let mut commands = Vec::new();
    for words in tokens.split(|t| t == "|") {
        let Some((first, args)) = words.split_first() else {
            return Err(format!("missing command in {text:?}"));
        };
        if let Some((_, func)) = FUNCS.iter().find(|(name, _)| name == first) {
            let args = args.iter().map(|a| term(a)).collect::<Result<_, _>>()?;
            commands.push(Command::Call(*func, args));
        } else if args.is_empty() {
            commands.push(Command::Term(term(first)?));
        } else if first.starts_with(|c: char| c.is_ascii_alphabetic()) {
            return Err(format!("function {first:?} is not supported"));
        } else {
            return Err(format!("{first:?} cannot take arguments"));
        }
    }
    if let Some(Command::Term(_)) = commands.get(1..).and_then(|c| c.first()) {
        return Err(format!("a value cannot follow `|` in {text:?}"));
    }
    Ok(commands)
}

/// Words, string literals (with their quotes) and `|`.
fn tokenize(text: &str) -> Result<Vec<String>, String> {
    let mut tokens = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '|' {
            chars.next();
            tokens.push("|".into());
        } else if c == '"' || c == '`' {
            chars.next();
            let mut literal = String::from(c);
            let mut closed = false;
            while let Some((_, d)) = chars.next() {
                literal.push(d);
                if d == '\\' && c == '"' {
                    if let Some((_, e)) = chars.next() {
                        literal.push(e);
                    }
                } else if d == c {
                    closed = true;
                    break;
                }
            }
            if !closed {
                return Err(format!("unterminated string in {text:?}"));
            }
            tokens.push(literal);
        } else {
            let mut end = start;
            while let Some(&(i, d)) = chars.peek() {
                if d.is_whitespace() || d == '|' {
                    break;
                }
                end = i + d.len_utf8();
                chars.next();
            }
            tokens.push(text[start..end].to_owned());
        }
    }
    Ok(tokens)
}

fn term(word: &str) -> Result<Term, String> {
    if let Some(name) = word
        .strip_prefix("$labels.")
        .or_else(|| word.strip_prefix(".Labels."))
    {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("{word:?} is not a label reference"));
        }
        return Ok(Term::Label(name.to_owned()));
    }
    match word {
        "$value" | ".Value" => return Ok(Term::Value),
        "$externalURL" | ".ExternalURL" => return Ok(Term::ExternalUrl),
        _ => {}
    }
    if let Some(body) = word.strip_prefix('`').and_then(|w| w.strip_suffix('`')) {
        return Ok(Term::Str(body.to_owned()));
    }
    if word.starts_with('"') {
        return serde_json::from_str::<String>(word)
            .map(Term::Str)
            .map_err(|_| format!("{word} is not a valid string"));
    }
    if let Ok(number) = word.parse::<f64>() {
        return Ok(Term::Num(number));
    }
    Err(format!("{word:?} is not supported in a template"))
}

fn run(commands: &[Command], context: &Context<'_>) -> Result<Val, String> {
    let mut piped: Option<Val> = None;
    for command in commands {
        piped = Some(match command {
            Command::Term(t) => value(t, context),
            Command::Call(func, args) => {
                let mut args: Vec<Val> = args.iter().map(|a| value(a, context)).collect();
                args.extend(piped.take());
                call(*func, &args)?
            }
        });
    }
    piped.ok_or_else(|| "empty pipeline".into())
}

fn value(term: &Term, context: &Context<'_>) -> Val {
    match term {
        Term::Label(name) => Val::Str(context.labels.get(name).cloned().unwrap_or_default()),
        Term::Value => Val::Num(context.value),
        Term::ExternalUrl => Val::Str(context.external_url.to_owned()),
        Term::Str(s) => Val::Str(s.clone()),
        Term::Num(n) => Val::Num(*n),
    }
}

fn call(func: Func, args: &[Val]) -> Result<Val, String> {
    let one = || match args {
        [a] => Ok(a),
        _ => Err(format!("{func:?} takes one argument, got {}", args.len())),
    };
    Ok(Val::Str(match func {
        Func::Humanize => humanize(one()?.number()?),
        Func::Humanize1024 => humanize_1024(one()?.number()?),
        Func::HumanizePercentage => format!("{}%", format_g(one()?.number()? * 100.0, 4)),
        Func::HumanizeDuration => humanize_duration(one()?.number()?),
        Func::ToUpper => one()?.text().to_uppercase(),
        Func::ToLower => one()?.text().to_lowercase(),
        Func::Title => title(&one()?.text()),
        Func::Printf => {
            let (format, rest) = args
                .split_first()
                .ok_or_else(|| "printf needs a format".to_string())?;
            printf(&format.text(), rest)?
        }
    }))
}

/// Go's `%v` of a float64: the shortest text that reads back the same.
pub fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        }
    } else {
        let exponent = if v == 0.0 {
            0
        } else {
            v.abs().log10().floor() as i32
        };
        if (-4..21).contains(&exponent) {
            format!("{v}")
        } else {
            go_exponent(&format!("{v:e}"))
        }
    }
}

/// Go's `FormatFloat(v, 'e', -1, 64)`, which Prometheus's API uses for values: `5e-01`.
pub fn format_e(v: f64) -> String {
    if v.is_finite() {
        go_exponent(&format!("{v:e}"))
    } else {
        format_value(v)
    }
}

/// `1.5e3` → `1.5e+03`, as Go writes exponents.
fn go_exponent(rust: &str) -> String {
    match rust.split_once('e') {
        Some((mantissa, exponent)) => {
            let (sign, digits) = match exponent.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exponent),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => rust.to_owned(),
    }
}

/// C's and Go's `%.{precision}g`.
pub fn format_g(v: f64, precision: usize) -> String {
    if !v.is_finite() {
        return format_value(v);
    }
    let precision = precision.max(1);
    let scientific = format!("{:.*e}", precision - 1, v);
    let (mantissa, exponent) = scientific.split_once('e').expect("`{:e}` has an exponent");
    let exponent: i32 = exponent.parse().expect("an integer exponent");
    if exponent < -4 || exponent >= precision as i32 {
        go_exponent(&format!("{}e{exponent}", trim_zeros(mantissa)))
    } else {
        let decimals = (precision as i32 - 1 - exponent).max(0) as usize;
        trim_zeros(&format!("{v:.decimals$}")).to_owned()
    }
}

fn trim_zeros(number: &str) -> &str {
    if number.contains('.') {
        number.trim_end_matches('0').trim_end_matches('.')
    } else {
        number
    }
}

fn humanize(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        format_g(v, 4)
    } else if v.abs() >= 1.0 {
        scaled(v, 1000.0, ["k", "M", "G", "T", "P", "E", "Z", "Y"])
    } else {
        scaled(v, 1e-3, ["m", "u", "n", "p", "f", "a", "z", "y"])
    }
}

fn humanize_1024(v: f64) -> String {
    if v.abs() <= 1.0 || !v.is_finite() {
        return format_g(v, 4);
    }
    scaled(v, 1024.0, ["ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi", "Yi"])
}

/// `v` divided by `step` while that keeps it at or above 1 in size (below 1 for a `step`
/// under 1), with the prefix of the last division.
fn scaled(mut v: f64, step: f64, prefixes: [&str; 8]) -> String {
    let mut prefix = "";
    for p in prefixes {
        let more = if step > 1.0 {
            v.abs() >= step
        } else {
            v.abs() < 1.0
        };
        if !more {
            break;
        }
        prefix = p;
        v /= step;
    }
    format!("{}{prefix}", format_g(v, 4))
}

fn humanize_duration(v: f64) -> String {
    if !v.is_finite() {
        return format_g(v, 4);
    }
    if v == 0.0 {
        return "0s".into();
    }
    if v.abs() >= 1.0 {
        let sign = if v < 0.0 { "-" } else { "" };
        let whole = v.abs() as u64;
        let (days, hours, minutes) = (whole / 86_400, whole / 3_600 % 24, whole / 60 % 60);
        let seconds = whole % 60;
        return if days > 0 {
            format!("{sign}{days}d {hours}h {minutes}m {seconds}s")
        } else if hours > 0 {
            format!("{sign}{hours}h {minutes}m {seconds}s")
        } else if minutes > 0 {
            format!("{sign}{minutes}m {seconds}s")
        } else {
            format!("{}s", format_g(v, 4))
        };
    }
    let mut v = v;
    let mut unit = "s";
    for u in ["ms", "us", "ns"] {
        if v.abs() >= 1.0 {
            break;
        }
        unit = u;
        v *= 1000.0;
    }
    format!("{}{unit}", format_g(v, 4))
}

fn title(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut start = true;
    for c in text.chars() {
        if start {
            out.extend(c.to_uppercase());
        } else {
            out.push(c);
        }
        start = !c.is_alphanumeric();
    }
    out
}

/// The widest field and the most digits `printf` writes.
const MAX_WIDTH: usize = 256;

/// Go's `printf` for the verbs rules use: `%s %v %d %f %g %e %%`, with width and precision.
fn printf(format: &str, args: &[Val]) -> Result<String, String> {
    let mut out = String::new();
    let mut args = args.iter();
    let mut chars = format.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut spec = String::new();
        let verb = loop {
            match chars.next() {
                Some(d) if d.is_ascii_digit() || matches!(d, '.' | '-' | '+' | ' ' | '0') => {
                    spec.push(d)
                }
                Some(d) => break d,
                None => return Err(format!("printf format {format:?} ends inside a verb")),
            }
        };
        if verb == '%' {
            out.push('%');
            continue;
        }
        let arg = args
            .next()
            .ok_or_else(|| format!("printf format {format:?} has more verbs than arguments"))?;
        let left = spec.starts_with('-');
        let spec = spec.trim_start_matches(['-', '+', ' ']);
        let (width, precision): (usize, Option<usize>) = match spec.split_once('.') {
            Some((w, p)) => (w.parse().unwrap_or(0), Some(p.parse().unwrap_or(0))),
            None => (spec.parse().unwrap_or(0), None),
        };
        // A template must not be able to ask for gigabytes of padding or digits.
        let (width, precision) = (width.min(MAX_WIDTH), precision.map(|p| p.min(MAX_WIDTH)));
        let text = match verb {
            's' | 'v' | 'q' => {
                let t = arg.text();
                if verb == 'q' { format!("{t:?}") } else { t }
            }
            'd' => format!("{}", arg.number()?.trunc() as i64),
            'f' | 'F' => format!("{:.*}", precision.unwrap_or(6), arg.number()?),
            'g' | 'G' => match precision {
                Some(p) => format_g(arg.number()?, p),
                None => format_value(arg.number()?),
            },
            'e' => go_exponent(&format!("{:.*e}", precision.unwrap_or(6), arg.number()?)),
            other => return Err(format!("printf verb %{other} is not supported")),
        };
        if left {
            out.push_str(&format!("{text:<width$}"));
        } else {
            out.push_str(&format!("{text:>width$}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(template: &str, value: f64) -> String {
        let labels = BTreeMap::from([("service".to_string(), "checkout".to_string())]);
        Template::parse(template).unwrap().render(&Context {
            labels: &labels,
            value,
            external_url: "http://spyglass:8080",
        })
    }

    #[test]
    fn prometheus_forms_render() {
        assert_eq!(
            render("{{ $labels.service }} errs at {{ $value }}", 0.25),
            "checkout errs at 0.25"
        );
        assert_eq!(
            render("{{ .Labels.service }}/{{ .Value }}", 3.0),
            "checkout/3"
        );
        assert_eq!(render("{{ $labels.missing }}", 1.0), "");
        assert_eq!(
            render("{{ $value | humanizePercentage }}", 0.1234),
            "12.34%"
        );
        assert_eq!(render("{{ humanize $value }}", 1234567.0), "1.235M");
        assert_eq!(render("{{ $value | humanize }}", 0.0012), "1.2m");
        assert_eq!(render("{{ $value | humanize1024 }}", 2048.0), "2ki");
        assert_eq!(
            render("{{ $value | humanizeDuration }}", 3725.0),
            "1h 2m 5s"
        );
        assert_eq!(render("{{ $value | humanizeDuration }}", 0.25), "250ms");
        assert_eq!(render("{{ $value | humanizeDuration }}", 1.5), "1.5s");
        assert_eq!(render("{{ printf \"%.2f\" $value }}", 0.12345), "0.12");
        assert_eq!(render("{{ $value | printf \"%.1f%%\" }}", 12.34), "12.3%");
        assert_eq!(
            render("{{ $externalURL }}/alerts", 0.0),
            "http://spyglass:8080/alerts"
        );
        assert_eq!(render("a  {{- $value -}}  b", 1.0), "a1b");
        assert_eq!(render("{{ $labels.service | toUpper }}", 1.0), "CHECKOUT");
        assert_eq!(render("{{ printf \"%999999999s\" \"x\" }}", 1.0).len(), 256);
    }

    #[test]
    fn values_print_as_go_prints_them() {
        assert_eq!(format_value(100.0), "100");
        assert_eq!(format_value(1e21), "1e+21");
        assert_eq!(format_value(0.00001), "1e-05");
        assert_eq!(format_g(123456.0, 4), "1.235e+05");
        assert_eq!(format_g(9.99999, 4), "10");
        assert_eq!(format_e(0.5), "5e-01");
        assert_eq!(format_e(1.0), "1e+00");
        assert_eq!(format_e(1234.5), "1.2345e+03");
    }

    #[test]
    fn mistakes_are_refused_at_parse_time() {
        for bad in [
            "{{ $labels.service ",
            "{{ }}",
            "{{ $lables.service }}",
            "{{ humanise $value }}",
            "{{ $value | }}",
            "{{ \"unterminated }}",
            "{{ $value | $value }}",
        ] {
            assert!(Template::parse(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
