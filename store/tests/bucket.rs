//! Parts, manifests and leases in a real S3-compatible server (moto on loopback).

mod common;

use std::time::Duration;

use common::moto::Moto;
use common::*;
use spyglass_store::Signal;
use spyglass_store::bucket::{BucketPart, Committed, Lease};

#[tokio::test]
async fn a_conditional_put_loses_to_an_earlier_writer() {
    let moto = Moto::start();
    let bucket = moto.bucket("conditional", "spyglass");
    assert!(
        bucket
            .get_json::<Vec<u32>>("m.json")
            .await
            .unwrap()
            .is_none()
    );

    let Committed::Done(first) = bucket.put_json("m.json", &vec![1], None).await.unwrap() else {
        panic!("creating a new object succeeds");
    };
    // A second creator finds it there.
    assert_eq!(
        bucket.put_json("m.json", &vec![2], None).await.unwrap(),
        Committed::Lost
    );
    let (read, version) = bucket
        .get_json::<Vec<u32>>("m.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((read, &version), (vec![1], &first));
    let Committed::Done(second) = bucket
        .put_json("m.json", &vec![3], Some(&version))
        .await
        .unwrap()
    else {
        panic!("replacing the version read succeeds");
    };
    assert_ne!(second, first);
    // A writer that read the first version has lost to that replacement.
    assert_eq!(
        bucket
            .put_json("m.json", &vec![4], Some(&first))
            .await
            .unwrap(),
        Committed::Lost
    );
    let (read, _) = bucket
        .get_json::<Vec<u32>>("m.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, vec![3]);
}

#[tokio::test]
async fn a_lease_moves_when_its_holder_stops_renewing() {
    let moto = Moto::start();
    let bucket = moto.bucket("leases", "");
    let ttl = Duration::from_secs(30);
    let mut a = Lease::new(bucket.clone(), "compactor", "a", ttl);
    let mut b = Lease::new(bucket.clone(), "compactor", "b", ttl);
    let t0 = 1_800_000_000_000;

    assert!(a.refresh_at(t0).await.unwrap(), "a free lease is taken");
    assert!(
        !b.refresh_at(t0 + 1_000).await.unwrap(),
        "a held lease is not"
    );
    // a renews at 10 s: held until 40 s.
    assert!(a.refresh_at(t0 + 10_000).await.unwrap());
    assert!(
        !b.refresh_at(t0 + 35_000).await.unwrap(),
        "renewed, not expired"
    );
    // a stops renewing (as a process killed with kill -9 does); past 40 s, b takes it.
    assert!(
        b.refresh_at(t0 + 40_001).await.unwrap(),
        "an expired lease is taken"
    );
    assert!(b.holds());
    // a comes back: its renewal loses, and it sees b's lease.
    assert!(!a.refresh_at(t0 + 41_000).await.unwrap());
    assert!(!a.holds());
    // b gives the lease up on its way out; a need not wait for it to expire.
    b.release().await.unwrap();
    assert!(a.refresh_at(t0 + 42_000).await.unwrap());
    assert!(!b.refresh_at(t0 + 42_500).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_uploaded_and_downloaded_are_the_parts_written() {
    let moto = Moto::start();
    let bucket = moto.bucket("parts", "cluster-a");
    let dir = tempfile::tempdir().unwrap();
    let store = open_with(&dir.path().join("ingester"), config());
    let mut spans = Vec::new();
    for trace in 0..200u64 {
        for n in 0..5 {
            spans.push(span(
                trace,
                n,
                ["api", "db"][n as usize % 2],
                T0 + trace * 1_000 + n,
            ));
        }
    }
    append(&store, spans[..500].to_vec()).await;
    store.flush().await.unwrap();
    append(&store, spans[500..].to_vec()).await;
    store.flush().await.unwrap();
    let parts = store.snapshot().parts(Signal::Spans);
    assert_eq!(parts.len(), 2);

    let mut uploaded = Vec::new();
    for part in &parts {
        let up = bucket
            .upload_part("ingester-1", part.meta(), store.root())
            .await
            .unwrap();
        assert!(
            !up.index_files.is_empty(),
            "the trace index goes up with its part"
        );
        uploaded.push(up);
    }
    assert!(matches!(
        bucket
            .put_json("ingesters/ingester-1/manifest.json", &uploaded, None)
            .await
            .unwrap(),
        Committed::Done(_)
    ));

    // Another machine reads the manifest and fetches every file it names.
    let (listed, _) = bucket
        .get_json::<Vec<BucketPart>>("ingesters/ingester-1/manifest.json")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(listed, uploaded);
    let reader = dir.path().join("querier");
    for part in &listed {
        let bytes = bucket.download_part(part, &reader).await.unwrap();
        assert_eq!(bytes, part.meta.bytes + part.meta.index_bytes);
        let original = std::fs::read(store.root().join(&part.meta.file)).unwrap();
        assert_eq!(
            std::fs::read(reader.join(&part.meta.file)).unwrap(),
            original
        );
        for name in &part.index_files {
            let file = format!("{}/{name}", part.meta.index.as_ref().unwrap());
            assert_eq!(
                std::fs::read(reader.join(&file)).unwrap(),
                std::fs::read(store.root().join(&file)).unwrap(),
                "{file}"
            );
        }
    }
    store.close().await.unwrap();
}
