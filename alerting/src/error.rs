//! The crate's errors.

use std::fmt;
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One mistake in a rule file, where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuleError {
    pub file: String,
    /// 1-based; 0 when the mistake has no line (the file as a whole).
    pub line: usize,
    pub message: String,
}

impl fmt::Display for RuleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}:{}: {}", self.file, self.line, self.message)
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid rule files:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Rules(Vec<RuleError>),
    #[error("failed to write alert state {path}")]
    WriteState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to read alert state {path}")]
    ReadState {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("alert state {path} is not valid: {message}")]
    DamagedState { path: PathBuf, message: String },
    #[error("query of rule {rule} failed")]
    Query {
        rule: String,
        #[source]
        source: spyglass_query::Error,
    },
    #[error("invalid backtest: {0}")]
    BadBacktest(String),
    #[error("rule {rule}: {message}")]
    BadResult { rule: String, message: String },
    #[error("invalid notify config:\n{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    NotifyConfig(Vec<RuleError>),
    #[error("notifications: {0}")]
    Notify(String),
}
