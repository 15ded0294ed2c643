//! Rule files in Prometheus's format, with `sql:` beside `expr:`, loaded with every mistake
//! reported as `file:line: what is wrong` (as `promtool check rules` reports them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::error::RuleError;
use crate::template::Template;
use crate::yaml::{self, Checker, Node};

/// A group of rules evaluated together, every `interval`.
#[derive(Clone, Debug)]
pub struct Group {
    pub name: String,
    pub file: String,
    /// `None`: the configured `evaluation_interval_secs`.
    pub interval: Option<Duration>,
    /// Most alert instances (or recorded series) a rule may produce; 0 is no limit.
    pub limit: usize,
    /// Evaluate as of this long ago (Prometheus's `query_offset`).
    pub query_offset: Duration,
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
pub struct Rule {
    /// `alert:` or `record:`.
    pub name: String,
    pub kind: RuleKind,
    pub expr: Expr,
    pub for_duration: Duration,
    pub keep_firing_for: Duration,
    /// As written (templates unexpanded), in name order.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub line: usize,
    pub(crate) label_templates: Vec<(String, Template)>,
    pub(crate) annotation_templates: Vec<(String, Template)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuleKind {
    Alerting,
    Recording,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Expr {
    /// PromQL, evaluated by the query engine at the evaluation time.
    PromQl(String),
    /// Read-only SQL over the Spyglass tables; each row is one instance.
    Sql(String),
    /// A built-in rule, described in words.
    Builtin(String),
}

impl Expr {
    pub fn text(&self) -> &str {
        match self {
            Expr::PromQl(t) | Expr::Sql(t) | Expr::Builtin(t) => t,
        }
    }
}

/// Loads every file that `patterns` (paths or globs) name; any mistake in any file is returned,
/// all of them, and nothing is loaded.
pub fn load(patterns: &[String]) -> Result<Vec<Group>, Vec<RuleError>> {
    let mut groups = Vec::new();
    let mut errors = Vec::new();
    for path in expand(patterns, &mut errors) {
        let file = path.display().to_string();
        match std::fs::read_to_string(&path) {
            Ok(text) => match parse(&file, &text) {
                Ok(g) => groups.extend(g),
                Err(e) => errors.extend(e),
            },
            Err(e) => errors.push(RuleError {
                file,
                line: 0,
                message: format!("cannot read the file: {e}"),
            }),
        }
    }
    if errors.is_empty() {
        Ok(groups)
    } else {
        Err(errors)
    }
}

/// The files `patterns` name: a path as it is, a glob by what it matches (sorted); a glob
/// that matches nothing is an error, as a missing path is when it is read.
pub fn expand(patterns: &[String], errors: &mut Vec<RuleError>) -> Vec<std::path::PathBuf> {
    let mut paths = Vec::new();
    for pattern in patterns {
        if !pattern.contains(['*', '?', '[']) {
            paths.push(Path::new(pattern).to_owned());
            continue;
        }
        match glob::glob(pattern) {
            Ok(found) => {
                let mut found: Vec<_> = found.filter_map(|p| p.ok()).collect();
                if found.is_empty() {
                    errors.push(RuleError {
                        file: pattern.clone(),
                        line: 0,
                        message: "no file matches this pattern".into(),
                    });
                }
                found.sort();
                paths.extend(found);
            }
            Err(e) => errors.push(RuleError {
                file: pattern.clone(),
                line: 0,
                message: format!("not a valid glob: {e}"),
            }),
        }
    }
    paths
}

/// Parses one rule file's text; `file` names it in errors.
pub fn parse(file: &str, text: &str) -> Result<Vec<Group>, Vec<RuleError>> {
    let mut checker = Checker::new(file);
    let groups = match yaml::parse(text) {
        Err(e) => {
            checker.error(e.line, format!("invalid YAML: {}", e.message));
            Vec::new()
        }
        Ok(None) => Vec::new(),
        Ok(Some(root)) => checker.file(&root),
    };
    if checker.errors.is_empty() {
        Ok(groups)
    } else {
        Err(checker.errors)
    }
}

impl Checker<'_> {
    fn file(&mut self, root: &Node) -> Vec<Group> {
        let Some(fields) = self.fields(root, "the rule file", &["groups"]) else {
            return Vec::new();
        };
        let Some(groups) = fields.get("groups") else {
            self.error(root.line(), "the rule file has no `groups`");
            return Vec::new();
        };
        let items = match groups {
            Node::Seq { items, .. } => items.as_slice(),
            n if n.is_null() => &[],
            n => {
                self.error(
                    n.line(),
                    format!("`groups` must be a list, not {}", n.kind()),
                );
                return Vec::new();
            }
        };
        let mut names = BTreeSet::new();
        let mut out = Vec::new();
        for node in items {
            if let Some(group) = self.group(node) {
                if !names.insert(group.name.clone()) {
                    self.error(
                        node.line(),
                        format!("group name {:?} is repeated in this file", group.name),
                    );
                }
                out.push(group);
            }
        }
        out
    }

    fn group(&mut self, node: &Node) -> Option<Group> {
        let fields = self.fields(
            node,
            "a group",
            &[
                "name",
                "interval",
                "limit",
                "query_offset",
                "labels",
                "rules",
            ],
        )?;
        let name = match fields.get("name") {
            Some(n) => self.string(n, "the group name"),
            None => {
                self.error(node.line(), "a group needs a `name`");
                None
            }
        };
        match &name {
            Some(n) if n.is_empty() => self.error(node.line(), "the group name is empty"),
            Some(n) if n == crate::builtin::GROUP => self.error(
                node.line(),
                format!("the group name {n:?} is the built-in rules'"),
            ),
            _ => {}
        }
        let interval = fields
            .get("interval")
            .and_then(|n| self.duration(n, "group interval"));
        if interval == Some(Duration::ZERO) {
            self.error(node.line(), "the group interval must be more than 0");
        }
        let query_offset = fields
            .get("query_offset")
            .and_then(|n| self.duration(n, "query_offset"))
            .unwrap_or_default();
        let limit = match fields.get("limit") {
            Some(n) => {
                let text = self.string(n, "limit")?;
                match text.parse::<usize>() {
                    Ok(l) => l,
                    Err(_) => {
                        self.error(n.line(), format!("limit {text:?} is not a whole number"));
                        0
                    }
                }
            }
            None => 0,
        };
        let group_labels = match fields.get("labels") {
            Some(n) => self.labels(n, "group labels"),
            None => BTreeMap::new(),
        };
        let mut rules = Vec::new();
        match fields.get("rules") {
            Some(Node::Seq { items, .. }) => {
                let mut seen: BTreeMap<(String, BTreeMap<String, String>), usize> = BTreeMap::new();
                for item in items {
                    let Some(mut rule) = self.rule(item) else {
                        continue;
                    };
                    for (k, v) in &group_labels {
                        rule.labels.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    let key = (rule.name.clone(), rule.labels.clone());
                    if let Some(first) = seen.insert(key, rule.line) {
                        self.error(
                            rule.line,
                            format!(
                                "rule {:?} is repeated in the group (first at line {first}) with the same labels: their alerts would be one",
                                rule.name
                            ),
                        );
                    }
                    rules.push(rule);
                }
            }
            Some(n) if n.is_null() => {}
            Some(n) => self.error(
                n.line(),
                format!("`rules` must be a list, not {}", n.kind()),
            ),
            None => {}
        }
        Some(Group {
            name: name?,
            file: self.file.to_owned(),
            interval,
            limit,
            query_offset,
            rules,
        })
    }

    fn rule(&mut self, node: &Node) -> Option<Rule> {
        let fields = self.fields(
            node,
            "a rule",
            &[
                "alert",
                "record",
                "expr",
                "sql",
                "for",
                "keep_firing_for",
                "labels",
                "annotations",
            ],
        )?;
        let line = node.line();
        let (name, kind) = match (fields.get("alert"), fields.get("record")) {
            (Some(n), None) => (self.string(n, "the alert name"), RuleKind::Alerting),
            (None, Some(n)) => (self.string(n, "the record name"), RuleKind::Recording),
            (Some(_), Some(_)) => {
                self.error(line, "a rule has `alert` or `record`, not both");
                return None;
            }
            (None, None) => {
                self.error(line, "a rule needs `alert` or `record`");
                return None;
            }
        };
        let name = name?;
        match kind {
            RuleKind::Alerting if name.is_empty() => self.error(line, "the alert name is empty"),
            RuleKind::Recording if !is_metric_name(&name) => {
                self.error(line, format!("{name:?} is not a valid metric name"))
            }
            _ => {}
        }
        let expr = match (fields.get("expr"), fields.get("sql")) {
            (Some(n), None) => self.promql(n),
            (None, Some(n)) => self.sql(n),
            (Some(_), Some(_)) => {
                self.error(line, "a rule has `expr` (PromQL) or `sql`, not both");
                None
            }
            (None, None) => {
                self.error(line, "a rule needs `expr` (PromQL) or `sql`");
                None
            }
        };
        if kind == RuleKind::Recording {
            for field in ["for", "keep_firing_for", "annotations"] {
                if let Some(n) = fields.get(field) {
                    self.error(
                        n.line(),
                        format!("`{field}` is for alerting rules, not recording rules"),
                    );
                }
            }
        }
        let for_duration = fields
            .get("for")
            .and_then(|n| self.duration(n, "`for`"))
            .unwrap_or_default();
        let keep_firing_for = fields
            .get("keep_firing_for")
            .and_then(|n| self.duration(n, "`keep_firing_for`"))
            .unwrap_or_default();
        let labels = match fields.get("labels") {
            Some(n) => self.labels(n, "labels"),
            None => BTreeMap::new(),
        };
        let annotations = match fields.get("annotations") {
            Some(n) => self.labels(n, "annotations"),
            None => BTreeMap::new(),
        };
        let label_templates = self.templates(&labels, fields.get("labels"), "label");
        let annotation_templates =
            self.templates(&annotations, fields.get("annotations"), "annotation");
        Some(Rule {
            name,
            kind,
            expr: expr?,
            for_duration,
            keep_firing_for,
            labels,
            annotations,
            line,
            label_templates,
            annotation_templates,
        })
    }

    fn templates(
        &mut self,
        texts: &BTreeMap<String, String>,
        node: Option<&&Node>,
        what: &str,
    ) -> Vec<(String, Template)> {
        let mut out = Vec::new();
        for (key, text) in texts {
            match Template::parse(text) {
                Ok(t) => out.push((key.clone(), t)),
                Err(e) => {
                    let line = match node {
                        Some(Node::Map { entries, .. }) => entries
                            .iter()
                            .find(|(k, _, _)| k == key)
                            .map_or(0, |(_, l, _)| *l),
                        _ => 0,
                    };
                    self.error(line, format!("bad template in {what} {key:?}: {e}"));
                }
            }
        }
        out
    }

    fn promql(&mut self, node: &Node) -> Option<Expr> {
        let text = self.string(node, "`expr`")?;
        match promql_parser::parser::parse(&text) {
            Ok(_) => Some(Expr::PromQl(text)),
            Err(e) => {
                self.error(node.line(), format!("bad PromQL in `expr`: {}", e.trim()));
                None
            }
        }
    }

    fn sql(&mut self, node: &Node) -> Option<Expr> {
        let text = self.string(node, "`sql`")?;
        match spyglass_query::check_read_only_sql(&text) {
            Ok(()) => Some(Expr::Sql(text)),
            Err(e) => {
                self.error(node.line(), format!("bad `sql`: {}", e.client_message()));
                None
            }
        }
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Loads `config.rule_files` for evaluation: any mistake is an error with its file and line.
pub fn load_rules(config: &crate::config::AlertingConfig) -> Result<Vec<Group>, Vec<RuleError>> {
    load(&config.rule_files)
}

#[cfg(test)]
mod tests;
