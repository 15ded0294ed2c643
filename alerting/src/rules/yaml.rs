//! YAML read into a small tree that remembers each node's line, so that every mistake in a
//! rule file can be reported as `file:line` (serde's YAML readers lose lines past parsing).

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

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
