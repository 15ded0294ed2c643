//! Alertmanager's label matchers: `name="value"`, `name!="value"`, `name=~"regex"`,
//! `name!~"regex"`, several in one string separated by commas and optionally in braces. Values
//! may be quoted (with `\"`, `\\` and `\n` escapes) or bare. A regex matches the whole value,
//! and a label an alert lacks has the value "" (so `team=""` matches alerts without `team`).

use std::fmt;

use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::state::Labels;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    #[serde(rename = "=")]
    Equal,
    #[serde(rename = "!=")]
    NotEqual,
    #[serde(rename = "=~")]
    Regex,
    #[serde(rename = "!~")]
    NotRegex,
}

impl Op {
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Equal => "=",
            Op::NotEqual => "!=",
            Op::Regex => "=~",
            Op::NotRegex => "!~",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Matcher {
    pub name: String,
    pub op: Op,
    pub value: String,
    /// The anchored regex of `=~` and `!~`.
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        (&self.name, self.op, &self.value) == (&other.name, other.op, &other.value)
    }
}

impl Matcher {
    pub fn new(name: &str, op: Op, value: &str) -> Result<Self, String> {
        if name.is_empty() {
            return Err("a matcher needs a label name".into());
        }
        let regex = match op {
            Op::Regex | Op::NotRegex => Some(
                Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("bad regex {value:?} for {name}: {e}"))?,
            ),
            Op::Equal | Op::NotEqual => None,
        };
        Ok(Self {
            name: name.to_owned(),
            op,
            value: value.to_owned(),
            regex,
        })
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.name).map_or("", String::as_str);
        match (self.op, &self.regex) {
            (Op::Equal, _) => value == self.value,
            (Op::NotEqual, _) => value != self.value,
            (Op::Regex, Some(re)) => re.is_match(value),
            (Op::NotRegex, Some(re)) => !re.is_match(value),
            (_, None) => false,
        }
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.op.as_str(), self.value)
    }
}

/// Whether every matcher matches (no matcher: all alerts).
pub fn all_match(matchers: &[Matcher], labels: &Labels) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Parses one `matchers:` entry: one matcher or several separated by commas, in braces or not.
pub fn parse(text: &str) -> Result<Vec<Matcher>, String> {
    let mut rest = text.trim();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = inner
            .strip_suffix('}')
            .ok_or_else(|| format!("{text:?} opens a brace it does not close"))?
            .trim();
    }
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (matcher, after) = one(rest).map_err(|e| format!("bad matcher {text:?}: {e}"))?;
        out.push(matcher);
        rest = after.trim_start();
        if let Some(after) = rest.strip_prefix(',') {
            rest = after.trim_start();
        } else if !rest.is_empty() {
            return Err(format!(
                "bad matcher {text:?}: expected a comma before {rest:?}"
            ));
        }
    }
    if out.is_empty() {
        return Err(format!("{text:?} holds no matcher"));
    }
    Ok(out)
}

/// One matcher at the start of `text`, and what follows it.
fn one(text: &str) -> Result<(Matcher, &str), String> {
    let name_end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    let name = text[..name_end].trim_matches('"');
    let rest = text[name_end..].trim_start();
    let (op, rest) = [
        ("=~", Op::Regex),
        ("!~", Op::NotRegex),
        ("!=", Op::NotEqual),
        ("=", Op::Equal),
    ]
    .into_iter()
    .find_map(|(s, op)| rest.strip_prefix(s).map(|r| (op, r)))
    .ok_or_else(|| "expected =, !=, =~ or !~ after the label name".to_string())?;
    let rest = rest.trim_start();
    let (value, rest) = match rest.strip_prefix('"') {
        Some(quoted) => unquote(quoted)?,
        None => {
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            (rest[..end].trim().to_owned(), &rest[end..])
        }
    };
    Ok((Matcher::new(name, op, &value)?, rest))
}

/// A quoted value (the opening quote already taken) and what follows its closing quote.
fn unquote(text: &str) -> Result<(String, &str), String> {
    let mut value = String::new();
    let mut chars = text.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Ok((value, &text[i + 1..])),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, c)) => value.push(c),
                None => break,
            },
            c => value.push(c),
        }
    }
    Err("a quoted value is not closed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_forms_alertmanager_documents_parse() {
        for (text, expected) in [
            (
                "alertname = Watchdog",
                vec![("alertname", Op::Equal, "Watchdog")],
            ),
            (
                r#"severity =~ "warning|critical""#,
                vec![("severity", Op::Regex, "warning|critical")],
            ),
            (
                r#"{foo="bar", baz!~"qu\"x"}"#,
                vec![("foo", Op::Equal, "bar"), ("baz", Op::NotRegex, "qu\"x")],
            ),
            ("team!=", vec![("team", Op::NotEqual, "")]),
        ] {
            let parsed = parse(text).unwrap();
            let got: Vec<_> = parsed
                .iter()
                .map(|m| (m.name.as_str(), m.op, m.value.as_str()))
                .collect();
            assert_eq!(got, expected, "{text}");
        }
        for bad in ["", "{foo=bar", "foo", "foo=~\"(\"", "a=\"b\" c=d"] {
            assert!(parse(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn regexes_match_whole_values_and_missing_labels_are_empty() {
        let alert = labels(&[("service", "payments"), ("severity", "critical")]);
        let m = |t: &str| parse(t).unwrap()[0].matches(&alert);
        assert!(m("service=~pay.*"));
        assert!(!m("service=~pay"), "a regex matches the whole value");
        assert!(m("team=\"\""), "an absent label is empty");
        assert!(!m("team=~.+"));
        assert!(m("severity!~warn.*"));
        assert!(!m("service!=payments"));
    }
}
