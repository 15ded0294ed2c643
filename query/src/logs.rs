//! Log search: by service, minimum severity, text in the body, trace, and time; newest first.

use spyglass_store::model::{LogRecord, TraceId};
use spyglass_store::schema::logs_from_batch;

use crate::QueryEngine;
use crate::error::{Error, Result};
use crate::health::sql_string;

#[derive(Clone, Debug, Default, PartialEq)]
pub struct LogSearch {
    pub service: Option<String>,
    /// Records at this severity number or above (OTLP: 1 TRACE, 5 DEBUG, 9 INFO, 13 WARN,
    /// 17 ERROR, 21 FATAL).
    pub min_severity: Option<i32>,
    /// Text the body contains, compared without case.
    pub text: Option<String>,
    pub trace_id: Option<TraceId>,
    pub start_unix_nano: Option<u64>,
    pub end_unix_nano: Option<u64>,
    pub limit: usize,
}

impl QueryEngine {
    pub async fn logs(&self, search: LogSearch) -> Result<Vec<LogRecord>> {
        let _timer = self.stats.time(crate::QueryKind::Logs);
        if search.limit == 0 || search.limit > self.config.sql_max_rows {
            return Err(Error::invalid(format!(
                "limit must be between 1 and {}",
                self.config.sql_max_rows
            )));
        }
        let mut conditions = vec!["true".to_string()];
        if let Some(s) = &search.service {
            conditions.push(format!("service_name = {}", sql_string(s)));
        }
        if let Some(n) = search.min_severity {
            conditions.push(format!("severity_number >= {n}"));
        }
        if let Some(text) = &search.text {
            conditions.push(format!(
                "strpos(lower(body), lower({})) > 0",
                sql_string(text)
            ));
        }
        if let Some(id) = search.trace_id {
            conditions.push(format!("encode(trace_id, 'hex') = '{}'", id.to_hex()));
        }
        if let Some(t) = search.start_unix_nano {
            conditions.push(format!("time_unix_nano >= {t}"));
        }
        if let Some(t) = search.end_unix_nano {
            conditions.push(format!("time_unix_nano <= {t}"));
        }
        let sql = format!(
            "SELECT * FROM logs WHERE {} ORDER BY time_unix_nano DESC LIMIT {}",
            conditions.join(" AND "),
            search.limit
        );
        let mut out = Vec::new();
        for batch in self.internal_sql(&sql).await? {
            out.extend(logs_from_batch(&batch)?);
        }
        Ok(out)
    }
}
