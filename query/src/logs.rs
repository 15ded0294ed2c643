//! Log search: by service, minimum severity, text in the body, trace or span, and time; newest
//! first, a page at a time.

use spyglass_store::model::{LogRecord, SpanId, TraceId};
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
    /// Records of this span (with `trace_id`, one span's logs).
    pub span_id: Option<SpanId>,
    pub start_unix_nano: Option<u64>,
    pub end_unix_nano: Option<u64>,
    pub limit: usize,
    /// Continue after the last record of the previous page.
    pub cursor: Option<LogCursor>,
}

/// Where a page of logs ended. Records are ordered newest first, and records of one time by
/// their other columns, so a page goes on from `time_unix_nano` skipping the `skip` records
/// of that time already shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogCursor {
    pub time_unix_nano: u64,
    pub skip: usize,
}

impl LogCursor {
    pub fn encode(&self) -> String {
        format!("{}-{}", self.time_unix_nano, self.skip)
    }

    pub fn decode(text: &str) -> Option<Self> {
        let (time, skip) = text.split_once('-')?;
        Some(Self {
            time_unix_nano: time.parse().ok()?,
            skip: skip.parse().ok()?,
        })
    }
}

/// One page of logs, newest first.
#[derive(Clone, Debug)]
pub struct LogPage {
    pub records: Vec<LogRecord>,
    pub next_cursor: Option<LogCursor>,
}

impl QueryEngine {
    /// The first page of records matching `search`.
    pub async fn logs(&self, search: LogSearch) -> Result<Vec<LogRecord>> {
        Ok(self.logs_page(search).await?.records)
    }

    pub async fn logs_page(&self, search: LogSearch) -> Result<LogPage> {
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
        if let Some(id) = search.span_id {
            conditions.push(format!("encode(span_id, 'hex') = '{}'", id.to_hex()));
        }
        if let Some(t) = search.end_unix_nano {
            conditions.push(format!("time_unix_nano <= {t}"));
        }
        let skip = match search.cursor {
            Some(c) => {
                conditions.push(format!("time_unix_nano <= {}", c.time_unix_nano));
                c.skip
            }
            None => 0,
        };
        // One more than the page, to know whether there is another.
        let sql = format!(
            "SELECT * FROM logs WHERE {} ORDER BY time_unix_nano DESC, \
             observed_time_unix_nano DESC, service_name, severity_number, body, \
             encode(span_id, 'hex') LIMIT {} OFFSET {skip}",
            conditions.join(" AND "),
            search.limit + 1
        );
        let mut records = Vec::new();
        for batch in self.internal_sql(&sql).await? {
            records.extend(logs_from_batch(&batch)?);
        }
        let more = records.len() > search.limit;
        records.truncate(search.limit);
        let next_cursor = more.then(|| {
            let last = records.last().expect("limit is at least 1").time_unix_nano;
            let of_last = records.iter().filter(|r| r.time_unix_nano == last).count();
            let before = match search.cursor {
                Some(c) if c.time_unix_nano == last => c.skip,
                _ => 0,
            };
            LogCursor {
                time_unix_nano: last,
                skip: before + of_last,
            }
        });
        Ok(LogPage {
            records,
            next_cursor,
        })
    }
}
