//! The workspace keeps the crate edges of docs/ARCHITECTURE.md ("Crates"): read from `cargo metadata`, any other
//! edge between our crates, or a heavy dependency in the wrong crate, fails this test.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Our crates and the crates of ours each may depend on.
const ALLOWED: [(&str, &[&str]); 6] = [
    ("spyglass-store", &[]),
    ("spyglass-ingest", &["spyglass-store"]),
    ("spyglass-query", &["spyglass-store"]),
    ("spyglass-alerting", &["spyglass-query"]),
    ("spyglass-ui", &["spyglass-query", "spyglass-alerting"]),
    (
        "spyglass",
        &[
            "spyglass-store",
            "spyglass-ingest",
            "spyglass-query",
            "spyglass-alerting",
            "spyglass-ui",
        ],
    ),
];

/// Third-party crates that belong to one layer only (docs/ARCHITECTURE.md, "Crates").
const FORBIDDEN: [(&str, &[&str]); 5] = [
    (
        "spyglass-store",
        &[
            "datafusion",
            "tonic",
            "axum",
            "lettre",
            "opentelemetry-proto",
        ],
    ),
    (
        "spyglass-ingest",
        &["datafusion", "lettre", "tantivy", "parquet"],
    ),
    (
        "spyglass-query",
        &["tonic", "lettre", "opentelemetry-proto", "axum"],
    ),
    (
        "spyglass-alerting",
        &["tonic", "opentelemetry-proto", "tantivy", "parquet"],
    ),
    (
        "spyglass-ui",
        &[
            "lettre",
            "opentelemetry-proto",
            "tonic",
            "tantivy",
            "parquet",
        ],
    ),
];

#[test]
fn crate_edges_follow_the_design() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--manifest-path",
        ])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap().to_owned();
        let names = package["dependencies"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["name"].as_str().unwrap().to_owned());
        deps.insert(name, names.collect());
    }
    let ours: BTreeSet<&str> = ALLOWED.iter().map(|(name, _)| *name).collect();
    assert_eq!(
        deps.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        ours,
        "the workspace has exactly the five crates and the binary"
    );

    let mut violations = Vec::new();
    for (krate, allowed) in ALLOWED {
        for dep in &deps[krate] {
            if ours.contains(dep.as_str()) && !allowed.contains(&dep.as_str()) {
                violations.push(format!("{krate} -> {dep}"));
            }
        }
    }
    for (krate, forbidden) in FORBIDDEN {
        for dep in forbidden {
            if deps[krate].contains(*dep) {
                violations.push(format!("{krate} -> {dep} (belongs to another layer)"));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "edges docs/ARCHITECTURE.md does not allow: {violations:?}"
    );
}
