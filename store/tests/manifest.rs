//! A data directory whose parts lost their manifest (a backup restored without it, a mistake)
//! is refused and left as it is: taken for a new store, every part would be deleted as
//! unreferenced.

mod common;

use common::*;
use spyglass_store::{Error, Store};

/// Every file under `dir`, sorted.
fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn parts_without_their_manifest_are_refused_and_nothing_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(dir.path(), config());
    append(&store, (0..10).map(|n| span(1, n, "api", T0)).collect()).await;
    store.flush().await.unwrap();
    store.close().await.unwrap();
    drop(store);

    std::fs::remove_file(dir.path().join("manifest.json")).unwrap();
    let parts_before = files(&dir.path().join("parts"));
    assert!(!parts_before.is_empty());
    let error = Store::open(dir.path(), config()).err().expect("refused");
    assert!(matches!(error, Error::MissingManifest { .. }), "{error}");
    let message = error.to_string();
    assert!(
        message.contains("no manifest.json") && message.contains("nothing was deleted"),
        "{message}"
    );
    assert_eq!(
        files(&dir.path().join("parts")),
        parts_before,
        "every part is still there"
    );
    assert!(
        !dir.path().join("manifest.json").exists(),
        "and no empty manifest was written"
    );
}

#[tokio::test]
async fn a_new_store_writes_its_manifest_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = Store::open(dir.path(), config()).unwrap();
    assert!(
        dir.path().join("manifest.json").exists(),
        "before any flush"
    );
    drop(store);
    // Opened again with nothing flushed: an empty store, not a refusal.
    Store::open(dir.path(), config()).unwrap();
}
