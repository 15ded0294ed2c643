//! YAML read into a small tree that remembers each node's line, so that every mistake in a
//! rule file can be reported as `file:line` (serde's YAML readers lose lines past parsing).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

use crate::duration;
use crate::error::RuleError;

#[derive(Clone, Debug)]
pub(crate) enum Node {
    /// A scalar as written; `plain` when unquoted (so `null`, `~` and empty mean nothing).
    Scalar {
        value: String,
        plain: bool,
        line: usize,
    },
    Seq {
        items: Vec<Node>,
        line: usize,
    },
    /// Entries in file order: key, its line, value.
    Map {
        entries: Vec<(String, usize, Node)>,
        line: usize,
    },
}

impl Node {
    pub(crate) fn line(&self) -> usize {
        match self {
            Node::Scalar { line, .. } | Node::Seq { line, .. } | Node::Map { line, .. } => *line,
        }
    }

    /// A plain `null`, `~` or nothing at all.
    pub(crate) fn is_null(&self) -> bool {
        matches!(self, Node::Scalar { value, plain: true, .. } if matches!(value.as_str(), "" | "~" | "null" | "Null" | "NULL"))
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            _ if self.is_null() => "nothing",
            Node::Scalar { .. } => "a scalar",
            Node::Seq { .. } => "a list",
            Node::Map { .. } => "a mapping",
        }
    }
}

/// Nodes in a tree, itself included.
fn size(node: &Node) -> usize {
    match node {
        Node::Scalar { .. } => 1,
        Node::Seq { items, .. } => 1 + items.iter().map(size).sum::<usize>(),
        Node::Map { entries, .. } => 1 + entries.iter().map(|(_, _, v)| 1 + size(v)).sum::<usize>(),
    }
}

/// A YAML syntax error: its line and what the parser said.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// Parses one YAML document; an empty file is `None`.
pub(crate) fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut builder = Builder::default();
    let mut parser = Parser::new_from_str(text);
    parser.load(&mut builder, false).map_err(|e| SyntaxError {
        line: e.marker().line(),
        message: e.info().to_owned(),
    })?;
    if let Some(message) = builder.error {
        return Err(SyntaxError {
            line: builder.error_line,
            message,
        });
    }
    Ok(builder.root)
}

/// Reads a YAML tree into typed values, collecting every mistake with its line. The rule files
/// and the notification config each add their own readers (`impl Checker`) beside these.
pub(crate) struct Checker<'a> {
    pub(crate) file: &'a str,
    pub(crate) errors: Vec<RuleError>,
}

impl<'a> Checker<'a> {
    pub(crate) fn new(file: &'a str) -> Self {
        Self {
            file,
            errors: Vec::new(),
        }
    }

    pub(crate) fn error(&mut self, line: usize, message: impl Into<String>) {
        self.errors.push(RuleError {
            file: self.file.to_owned(),
            line,
            message: message.into(),
        });
    }

    /// The entries of a mapping, each key checked against `allowed`.
    pub(crate) fn fields<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
    ) -> Option<BTreeMap<&'n str, &'n Node>> {
        self.fields_refusing(node, what, allowed, &|_, _| None)
    }

    /// As [`Checker::fields`], and a key for which `refused` gives a reason is an error that
    /// names it and says why.
    pub(crate) fn fields_refusing<'n>(
        &mut self,
        node: &'n Node,
        what: &str,
        allowed: &[&str],
        refused: &dyn Fn(&str, &Node) -> Option<String>,
    ) -> Option<BTreeMap<&'n str, &'n Node>> {
        let Node::Map { entries, .. } = node else {
            self.error(
                node.line(),
                format!("{what} must be a mapping, not {}", node.kind()),
            );
            return None;
        };
        let mut fields = BTreeMap::new();
        for (key, line, value) in entries {
            if let Some(why) = refused(key, value) {
                self.error(*line, format!("{key} in {what} is not supported: {why}"));
            } else if !allowed.contains(&key.as_str()) {
                self.error(
                    *line,
                    format!(
                        "unknown field {key:?} in {what} (allowed: {})",
                        allowed.join(", ")
                    ),
                );
            } else if fields.insert(key.as_str(), value).is_some() {
                self.error(*line, format!("field {key:?} is given twice in {what}"));
            }
        }
        Some(fields)
    }

    pub(crate) fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match node {
            Node::Scalar { value, .. } if !node.is_null() => Some(value.clone()),
            _ => {
                self.error(
                    node.line(),
                    format!("{what} must be a string, not {}", node.kind()),
                );
                None
            }
        }
    }

    pub(crate) fn duration(&mut self, node: &Node, what: &str) -> Option<Duration> {
        let text = self.string(node, what)?;
        match duration::parse(&text) {
            Ok(d) => Some(d),
            Err(e) => {
                self.error(node.line(), format!("bad {what}: {e}"));
                None
            }
        }
    }

    /// A mapping of label names to strings (`labels:`, `match:`, `headers:` take this form).
    pub(crate) fn labels(&mut self, node: &Node, what: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if node.is_null() {
            return out;
        }
        let Node::Map { entries, .. } = node else {
            self.error(
                node.line(),
                format!("{what} must be a mapping, not {}", node.kind()),
            );
            return out;
        };
        for (key, line, value) in entries {
            if !is_label_name(key) {
                self.error(*line, format!("{key:?} is not a valid label name"));
            }
            if let Some(v) = self.string(value, &format!("{what} {key:?}")) {
                out.insert(key.clone(), v);
            }
        }
        out
    }
}

/// A Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// An open collection: a list, or a mapping with the key waiting for its value.
enum Open {
    Seq {
        items: Vec<Node>,
        line: usize,
        anchor: usize,
    },
    Map {
        entries: Vec<(String, usize, Node)>,
        key: Option<(String, usize)>,
        line: usize,
        anchor: usize,
    },
}

/// Most nodes a rule file may hold, aliases expanded: a few anchors referring to each other
/// must not expand into gigabytes ("billion laughs").
const MAX_NODES: usize = 200_000;
/// Deepest nesting a rule file may have (rule files need five levels).
const MAX_DEPTH: usize = 64;

#[derive(Default)]
struct Builder {
    nodes: usize,
    stack: Vec<Open>,
    anchors: HashMap<usize, Node>,
    root: Option<Node>,
    error: Option<String>,
    error_line: usize,
}

impl Builder {
    fn fail(&mut self, line: usize, message: String) {
        if self.error.is_none() {
            self.error = Some(message);
            self.error_line = line;
        }
    }

    fn complete(&mut self, node: Node, anchor: usize) {
        self.nodes += size(&node);
        if self.nodes > MAX_NODES {
            self.fail(
                node.line(),
                format!("more than {MAX_NODES} nodes (aliases expanded)"),
            );
            return;
        }
        if anchor > 0 {
            self.anchors.insert(anchor, node.clone());
        }
        let line = node.line();
        match self.stack.last_mut() {
            None => self.root = Some(node),
            Some(Open::Seq { items, .. }) => items.push(node),
            Some(Open::Map { entries, key, .. }) => match key.take() {
                Some((k, key_line)) => entries.push((k, key_line, node)),
                None => match node {
                    Node::Scalar { value, .. } => *key = Some((value, line)),
                    _ => self.fail(line, "a mapping key must be a plain string".into()),
                },
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let line = mark.line();
        if self.error.is_some() {
            return;
        }
        if self.stack.len() > MAX_DEPTH {
            self.fail(line, format!("nested deeper than {MAX_DEPTH} levels"));
            return;
        }
        match event {
            Event::Scalar(value, style, anchor, ..) => {
                let plain = style == TScalarStyle::Plain;
                self.complete(Node::Scalar { value, plain, line }, anchor);
            }
            Event::SequenceStart(anchor, ..) => self.stack.push(Open::Seq {
                items: Vec::new(),
                line,
                anchor,
            }),
            Event::MappingStart(anchor, ..) => self.stack.push(Open::Map {
                entries: Vec::new(),
                key: None,
                line,
                anchor,
            }),
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq {
                    items,
                    line,
                    anchor,
                }) => self.complete(Node::Seq { items, line }, anchor),
                Some(Open::Map {
                    entries,
                    line,
                    anchor,
                    ..
                }) => self.complete(Node::Map { entries, line }, anchor),
                None => self.fail(line, "unbalanced collection".into()),
            },
            Event::Alias(id) => match self.anchors.get(&id).cloned() {
                Some(node) => self.complete(node, 0),
                None => self.fail(line, "alias to an unknown anchor".into()),
            },
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_keep_their_lines() {
        let text = "groups:\n  - name: a\n    rules:\n      - alert: X\n        expr: up == 0\n";
        let Some(Node::Map { entries, .. }) = parse(text).unwrap() else {
            panic!("a mapping")
        };
        assert_eq!(entries[0].0, "groups");
        let Node::Seq { items, .. } = &entries[0].2 else {
            panic!("a list")
        };
        let Node::Map { entries, .. } = &items[0] else {
            panic!("a mapping")
        };
        assert_eq!((entries[0].0.as_str(), entries[0].1), ("name", 2));
        assert_eq!((entries[1].0.as_str(), entries[1].1), ("rules", 3));
        let Node::Seq { items, .. } = &entries[1].2 else {
            panic!("a list")
        };
        assert_eq!(items[0].line(), 4);
    }

    #[test]
    fn aliases_cannot_expand_without_bound() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        let error = parse(&text).unwrap_err();
        assert!(error.message.contains("nodes"), "{}", error.message);
        let deep = format!("{}x{}", "[".repeat(200), "]".repeat(200));
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let err = parse("groups:\n  - name: a\n  rules: [\n").unwrap_err();
        assert!(err.line >= 3, "line {}", err.line);
        assert!(parse("").unwrap().is_none());
    }
}
