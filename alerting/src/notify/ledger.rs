//! The ledger: one row per delivery attempt, kept in `alerts/notifications.jsonl` and in memory
//! (the newest [`LEDGER_IN_MEMORY`]), and read as the `notifications` SQL table.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use arrow::array::{
    ArrayRef, Float64Builder, ListBuilder, RecordBatch, StringBuilder, UInt32Builder, UInt64Builder,
};
use arrow::datatypes::SchemaRef;
use serde::{Deserialize, Serialize};
use spyglass_query::BatchSource;

use crate::error::Result;
use crate::persist::{append_lines, read_lines};

/// Most attempts kept in memory; the file is cut to as many at start when it holds twice that.
pub const LEDGER_IN_MEMORY: usize = 20_000;

/// One delivery attempt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attempt {
    pub time_unix_nano: u64,
    /// The notification it tried to deliver (all its attempts share it).
    pub notification: String,
    pub receiver: String,
    /// `email`, `webhook`, `slack`, `pagerduty` or `log`, with its index: `email[0]`.
    pub integration: String,
    pub group_key: String,
    pub incident: Option<String>,
    /// `firing` or `resolved`.
    pub status: String,
    /// The alerts in it, `alertname{label="value", …}`.
    pub alerts: Vec<String>,
    pub attempt: u32,
    /// `sent`, `failed` or `dropped` (the queue was full).
    pub outcome: String,
    /// The SMTP server's last reply or the HTTP status line.
    pub reply: String,
    pub error: String,
    pub duration_ms: f64,
    pub subject: String,
    /// The message as rendered (on the first attempt only; the others send the same).
    pub text: String,
    pub html: String,
}

/// Cheap to clone; shared by the workers that deliver and the API that reads.
#[derive(Clone, Default)]
pub struct Ledger {
    rows: Arc<Mutex<VecDeque<Attempt>>>,
    path: Option<PathBuf>,
}

impl Ledger {
    /// The ledger in `dir`, its newest rows read back.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("notifications.jsonl");
        let rows = read_lines::<Attempt>(&path, LEDGER_IN_MEMORY)?;
        Ok(Self {
            rows: Arc::new(Mutex::new(rows.into())),
            path: Some(path),
        })
    }

    pub fn record(&self, attempt: Attempt) {
        tracing::info!(
            receiver = %attempt.receiver,
            integration = %attempt.integration,
            status = %attempt.status,
            attempt = attempt.attempt,
            outcome = %attempt.outcome,
            reply = %attempt.reply,
            error = %attempt.error,
            subject = %attempt.subject,
            "notification attempt"
        );
        if let Some(path) = &self.path
            && let Err(e) = append_lines(path, std::slice::from_ref(&attempt), false)
        {
            tracing::error!(error = %e, "the notification ledger could not be written");
        }
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        if rows.len() == LEDGER_IN_MEMORY {
            rows.pop_front();
        }
        rows.push_back(attempt);
    }

    /// The attempts in memory that `keep` chooses, oldest first; without their rendered
    /// message (`text`, `html`) unless `with_message`, so that a list costs no copies of it.
    pub fn select(&self, keep: impl Fn(&Attempt) -> bool, with_message: bool) -> Vec<Attempt> {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.iter()
            .filter(|a| keep(a))
            .map(|a| {
                if with_message {
                    a.clone()
                } else {
                    Attempt {
                        time_unix_nano: a.time_unix_nano,
                        notification: a.notification.clone(),
                        receiver: a.receiver.clone(),
                        integration: a.integration.clone(),
                        group_key: a.group_key.clone(),
                        incident: a.incident.clone(),
                        status: a.status.clone(),
                        alerts: a.alerts.clone(),
                        attempt: a.attempt,
                        outcome: a.outcome.clone(),
                        reply: a.reply.clone(),
                        error: a.error.clone(),
                        duration_ms: a.duration_ms,
                        subject: a.subject.clone(),
                        text: String::new(),
                        html: String::new(),
                    }
                }
            })
            .collect()
    }

    /// Every attempt in memory, oldest first.
    pub fn rows(&self) -> Vec<Attempt> {
        let rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        rows.iter().cloned().collect()
    }

    /// The `notifications` SQL table.
    pub fn table(&self) -> Arc<dyn BatchSource> {
        let schema = RecordBatch::try_from_iter(columns(&[]))
            .expect("the notifications table's columns agree")
            .schema();
        Arc::new(Table {
            ledger: self.clone(),
            schema,
        })
    }
}

struct Table {
    ledger: Ledger,
    schema: SchemaRef,
}

/// A string column: its name and how a row gives its value.
type TextColumn = (&'static str, fn(&Attempt) -> &str);

fn columns(rows: &[Attempt]) -> Vec<(&'static str, ArrayRef)> {
    let mut time = UInt64Builder::new();
    let mut attempt = UInt32Builder::new();
    let mut duration = Float64Builder::new();
    let mut alerts = ListBuilder::new(StringBuilder::new());
    let mut incident = StringBuilder::new();
    let text_columns: [TextColumn; 11] = [
        ("notification", |a| &a.notification),
        ("receiver", |a| &a.receiver),
        ("integration", |a| &a.integration),
        ("group_key", |a| &a.group_key),
        ("status", |a| &a.status),
        ("outcome", |a| &a.outcome),
        ("reply", |a| &a.reply),
        ("error", |a| &a.error),
        ("subject", |a| &a.subject),
        ("text", |a| &a.text),
        ("html", |a| &a.html),
    ];
    let mut texts: Vec<StringBuilder> = text_columns.iter().map(|_| StringBuilder::new()).collect();
    for row in rows {
        time.append_value(row.time_unix_nano);
        attempt.append_value(row.attempt);
        duration.append_value(row.duration_ms);
        incident.append_option(row.incident.as_deref());
        for a in &row.alerts {
            alerts.values().append_value(a);
        }
        alerts.append(true);
        for (builder, (_, get)) in texts.iter_mut().zip(&text_columns) {
            builder.append_value(get(row));
        }
    }
    let mut out: Vec<(&'static str, ArrayRef)> = vec![
        ("time_unix_nano", Arc::new(time.finish())),
        ("incident", Arc::new(incident.finish())),
        ("alerts", Arc::new(alerts.finish())),
        ("attempt", Arc::new(attempt.finish())),
        ("duration_ms", Arc::new(duration.finish())),
    ];
    for (mut builder, (name, _)) in texts.into_iter().zip(text_columns) {
        out.push((name, Arc::new(builder.finish())));
    }
    out
}

impl BatchSource for Table {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn batches(&self) -> Vec<RecordBatch> {
        let rows = self.ledger.rows();
        let columns: Vec<ArrayRef> = columns(&rows).into_iter().map(|(_, c)| c).collect();
        match RecordBatch::try_new(self.schema.clone(), columns) {
            Ok(batch) => vec![batch],
            Err(error) => {
                tracing::error!(%error, "the notifications table could not be built");
                Vec::new()
            }
        }
    }
}
