//! SQL golden tests: each `golden/<name>.sql` runs over the fixed data set (part of it in
//! Parquet parts, part in the memtable) and its answer, as a text table, must equal
//! `golden/<name>.result`. `SPYGLASS_BLESS=1 cargo test -p spyglass-query --test golden`
//! rewrites the `.result` files; review the diff before committing it.

mod common;

use std::path::Path;

#[tokio::test]
async fn sql_answers_match_their_golden_files() {
    let dir = tempfile::tempdir().unwrap();
    let engine = common::engine(dir.path(), common::Layout::Split).await;
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let bless = std::env::var_os("SPYGLASS_BLESS").is_some();

    let mut files: Vec<_> = std::fs::read_dir(&golden)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    assert!(
        files.len() >= 8,
        "golden files missing in {}",
        golden.display()
    );

    let mut failures = Vec::new();
    for sql_file in &files {
        let sql = std::fs::read_to_string(sql_file).unwrap();
        let got = match engine.sql(&sql).await {
            Ok(out) => format!("{}\n", out.to_table().unwrap()),
            Err(e) => format!("error: {e}\n"),
        };
        let result_file = sql_file.with_extension("result");
        if bless {
            std::fs::write(&result_file, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&result_file).unwrap_or_default();
        if got != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- got\n{got}",
                sql_file.file_name().unwrap().to_string_lossy()
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
