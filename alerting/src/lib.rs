//! `spyglass-alerting`: alert rules, their state, and the incidents they make.
//!
//! It owns rule files (Prometheus's format, with `sql:` beside `expr:`), the built-in
//! service-health rules, the evaluator, the alert state machine (persisted, so a restart does
//! not re-page) and incidents: alerts grouped under the failing dependency or service that
//! causes them. It reads data only through `spyglass-query` and must not know the store's
//! files, OTLP or the UI.
//!
//! ```text
//!  rule files ─▶ rules::load ─┐
//!  [alerting.builtin] ────────┤
//!                             ▼  every interval
//!                        Evaluator ─▶ Reader (QueryEngine: SQL, span metrics, graph, search)
//!                             │ samples
//!                             ▼
//!                 state: inactive → pending → firing → resolved ─▶ alerts/state.json
//!                             │                                   alerts/transitions.jsonl
//!                             ▼
//!                 incidents (root cause) ─▶ Alerting handle ─▶ the API (ui)
//!                             │ firing and resolved alerts
//!                             ▼
//!                 notify: routes, groups, silences, inhibition ─▶ e-mail, webhook, Slack,
//!                         PagerDuty, log ─▶ ledger (`notifications` table)
//! ```

mod backtest;
mod builtin;
mod clock;
mod config;
mod duration;
mod error;
mod evaluator;
mod incident;
pub mod notify;
mod persist;
mod reader;
mod record;
pub mod rules;
mod state;
mod status;
mod table;
pub mod template;
mod yaml;

pub use backtest::{Episode, MAX_STEPS, Report, backtest};
pub use builtin::{GROUP as BUILTIN_GROUP, Kind as BuiltinKind};
pub use clock::{Clock, ManualClock, SystemClock, TokioClock};
pub use config::{AlertingConfig, BuiltinConfig};
pub use error::{Error, Result, RuleError};
pub use evaluator::{Counter, Evaluator};
pub use incident::{AlertRef, Incident};
pub use reader::{ReadResult, Reader};
pub use record::{RECORDED_SERVICE, Recorder};
pub use rules::load_rules;
pub use state::{Alert, AlertState, Labels, Sample};
pub use status::{Alerting, GroupStatus, RuleStatus, Status, Transition};
pub use yaml::is_label_name;
