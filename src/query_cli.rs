//! `spyglass query "SQL"`: run read-only SQL on a running Spyglass and print the answer.

use anyhow::{Context, bail};
use serde_json::{Value, json};

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for the terminal.
    Table,
    Csv,
    /// The API's JSON answer as it is.
    Json,
}

pub async fn run(api: &str, sql: &str, format: Format) -> anyhow::Result<()> {
    let accept = match format {
        Format::Csv => "text/csv",
        Format::Table | Format::Json => "application/json",
    };
    let url = format!("{}/api/v1/sql", api.trim_end_matches('/'));
    let response = crate::reading_token(reqwest::Client::new().post(&url))
        .header("accept", accept)
        .json(&json!({ "query": sql }))
        .send()
        .await
        .with_context(|| format!("cannot reach Spyglass at {url}"))?;
    let status = response.status();
    let truncated = response.headers().contains_key("x-spyglass-truncated");
    let body = response.text().await?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or(body);
        bail!("{message} (HTTP {})", status.as_u16());
    }
    match format {
        Format::Csv | Format::Json => print!("{body}"),
        Format::Table => {
            let answer: Value = serde_json::from_str(&body).context("the answer is not JSON")?;
            print!("{}", table(&answer));
        }
    }
    if truncated {
        eprintln!("(truncated at the server's row limit)");
    }
    Ok(())
}

/// The answer's rows as aligned text columns, numbers right-aligned, and a row count.
fn table(answer: &Value) -> String {
    let names: Vec<&str> = answer["columns"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let rows: Vec<Vec<(String, bool)>> = answer["rows"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|row| {
            names
                .iter()
                .map(|name| match &row[*name] {
                    Value::Null => (String::new(), false),
                    Value::String(s) => (s.clone(), false),
                    Value::Number(n) => (n.to_string(), true),
                    other => (other.to_string(), false),
                })
                .collect()
        })
        .collect();
    let widths: Vec<usize> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            rows.iter()
                .map(|r| r[i].0.chars().count())
                .chain([name.chars().count()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    let line = |cells: Vec<(String, bool)>, out: &mut String| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|((cell, numeric), &w)| {
                if *numeric {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        out.push_str(text.join(" │ ").trim_end());
        out.push('\n');
    };
    line(
        names.iter().map(|n| (n.to_string(), false)).collect(),
        &mut out,
    );
    let rule: Vec<String> = widths.iter().map(|&w| "─".repeat(w)).collect();
    out.push_str(&rule.join("─┼─"));
    out.push('\n');
    let count = rows.len();
    for row in rows {
        line(row, &mut out);
    }
    out.push_str(&format!(
        "({count} row{})\n",
        if count == 1 { "" } else { "s" }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::table;
    use serde_json::json;

    #[test]
    fn rows_are_aligned_under_their_column_names() {
        let answer = json!({
            "columns": [{"name": "service_name"}, {"name": "n"}],
            "rows": [{"service_name": "checkout", "n": 12}, {"service_name": "db", "n": 3}],
        });
        assert_eq!(
            table(&answer),
            "service_name │ n\n\
             ─────────────┼───\n\
             checkout     │ 12\n\
             db           │  3\n\
             (2 rows)\n"
        );
    }
}
