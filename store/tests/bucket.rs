//! Parts, manifests and leases in a real S3-compatible server (moto on loopback).

mod common;

use std::time::Duration;

use common::moto::Moto;
use common::*;
use spyglass_store::bucket::{BucketPart, Committed, Lease, Mirror, Synced, Uploader, ingester};
use spyglass_store::{Signal, StoreConfig};

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
        let index = part.meta.index.as_ref().map(|i| reader.join(i));
        let file = reader.join(&part.meta.file);
        let bytes = bucket
            .download_part(part, &file, index.as_deref())
            .await
            .unwrap();
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

/// Every span id the store shows, sorted, duplicates kept (a part listed twice shows twice).
fn all_ids(store: &spyglass_store::Store) -> Vec<spyglass_store::model::SpanId> {
    span_ids(&store.snapshot())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_ingesters_and_a_querier_share_a_bucket() {
    let moto = Moto::start();
    let bucket = moto.bucket("shared-bucket", "prod");
    let dir = tempfile::tempdir().unwrap();
    let compacting = StoreConfig {
        compaction_min_parts: 2,
        ..config()
    };
    let a = open_with(&dir.path().join("a"), compacting);
    let b = open(&dir.path().join("b"));
    let id_a = ingester(&dir.path().join("a"), Some("ingester-a")).unwrap();
    let mut up_a = Uploader::new(bucket.clone(), &id_a)
        .unwrap()
        .with_grace(Duration::ZERO);
    let id_b = ingester(&dir.path().join("b"), None).unwrap();
    let mut up_b = Uploader::new(bucket.clone(), &id_b).unwrap();
    let querier = open(&dir.path().join("q"));
    let mut mirror = Mirror::new(bucket.clone());

    // Traces 0..100 go to a, 100..200 to b (as a load balancer routing by trace id sends them).
    let traces = |from: u64, to: u64| -> Vec<_> {
        (from..to)
            .flat_map(|t| {
                (0..4).map(move |n| span(t, n, ["web", "db"][n as usize % 2], T0 + t * 10 + n))
            })
            .collect()
    };
    let mut sent = traces(0, 100);
    append(&a, sent.clone()).await;
    a.flush().await.unwrap();
    append(&b, traces(100, 200)).await;
    b.flush().await.unwrap();
    sent.extend(traces(100, 200));
    // Nothing is visible before it is uploaded and listed.
    assert_eq!(mirror.refresh(&querier).await.unwrap(), Synced::default());
    assert_eq!(
        up_a.sync(&a).await.unwrap(),
        Synced {
            added: 1,
            removed: 0
        }
    );
    assert_eq!(
        up_b.sync(&b).await.unwrap(),
        Synced {
            added: 1,
            removed: 0
        }
    );
    assert_eq!(
        up_a.sync(&a).await.unwrap(),
        Synced::default(),
        "an uploaded part goes up once"
    );

    assert_eq!(
        mirror.refresh(&querier).await.unwrap(),
        Synced {
            added: 2,
            removed: 0
        }
    );
    assert_eq!(all_ids(&querier), expected_ids(&sent));
    for t in [7, 150] {
        let found = querier.snapshot().find_trace(&trace_id(t)).unwrap();
        assert_eq!(found.len(), 4, "trace {t} by id through the querier");
    }

    // a flushes again and compacts its two parts into one: the bucket lists the merged part in
    // the same commit that drops its inputs, and the querier never sees a span twice.
    let more = traces(200, 250);
    append(&a, more.clone()).await;
    a.flush().await.unwrap();
    sent.extend(more);
    assert_eq!(
        up_a.sync(&a).await.unwrap(),
        Synced {
            added: 1,
            removed: 0
        }
    );
    assert_eq!(
        mirror.refresh(&querier).await.unwrap(),
        Synced {
            added: 1,
            removed: 0
        }
    );
    assert_eq!(all_ids(&querier), expected_ids(&sent));
    assert_eq!(a.compact().await.unwrap(), 2);
    assert_eq!(
        up_a.sync(&a).await.unwrap(),
        Synced {
            added: 1,
            removed: 2
        }
    );
    assert_eq!(
        mirror.refresh(&querier).await.unwrap(),
        Synced {
            added: 1,
            removed: 2
        }
    );
    assert_eq!(all_ids(&querier), expected_ids(&sent));
    assert_eq!(querier.snapshot().parts(Signal::Spans).len(), 2);

    // A querier restarted on its cache directory knows what it holds: nothing is fetched again.
    querier.close().await.unwrap();
    drop(querier);
    let querier = open(&dir.path().join("q"));
    let mut mirror = Mirror::new(bucket.clone());
    assert_eq!(mirror.refresh(&querier).await.unwrap(), Synced::default());
    assert_eq!(all_ids(&querier), expected_ids(&sent));

    // A second data directory configured with a's id cannot commit under it, and a's data
    // directory cannot be given another id.
    let impostor = open(&dir.path().join("c"));
    append(&impostor, traces(900, 901)).await;
    impostor.flush().await.unwrap();
    let id_c = ingester(&dir.path().join("c"), Some("ingester-a")).unwrap();
    let refused = Uploader::new(bucket.clone(), &id_c)
        .unwrap()
        .sync(&impostor)
        .await;
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("another data directory")),
        "{refused:?}"
    );
    assert!(ingester(&dir.path().join("a"), Some("ingester-z")).is_err());
    assert_eq!(mirror.refresh(&querier).await.unwrap(), Synced::default());
    assert_eq!(all_ids(&querier), expected_ids(&sent));
    impostor.close().await.unwrap();

    // A part whose objects go between the read of the manifests and its download (merged
    // again, past retention) is skipped, not a failure of the whole read: a new querier takes
    // every other part.
    let (b_listed, _) = bucket
        .get_json::<spyglass_store::bucket::OwnerManifest>(&format!(
            "ingesters/{}/manifest.json",
            id_b.id
        ))
        .await
        .unwrap()
        .unwrap();
    bucket.delete_part(&b_listed.parts[0]).await.unwrap();
    let late = open(&dir.path().join("q2"));
    let synced = Mirror::new(bucket.clone()).refresh(&late).await.unwrap();
    assert_eq!(
        synced,
        Synced {
            added: 1,
            removed: 0
        }
    );
    let b_traces: Vec<_> = (100..200).map(trace_id).collect();
    let to_a: Vec<_> = (sent.iter())
        .filter(|s| !b_traces.contains(&s.trace_id))
        .cloned()
        .collect();
    assert_eq!(
        all_ids(&late),
        expected_ids(&to_a),
        "a's spans, and not b's"
    );
    late.close().await.unwrap();

    for store in [a, b, querier] {
        store.close().await.unwrap();
    }
}

#[tokio::test]
async fn a_file_larger_than_a_piece_goes_up_as_a_multipart_upload() {
    let moto = Moto::start();
    let bucket = moto.bucket("multipart", "");
    let dir = tempfile::tempdir().unwrap();
    // 20 MiB of varied bytes: three pieces of at most 8 MiB.
    let bytes: Vec<u8> = (0..20u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(dir.path().join("big"), &bytes).unwrap();
    let sent = bucket
        .upload_file(&dir.path().join("big"), "parts/big")
        .await
        .unwrap();
    assert_eq!(sent, bytes.len() as u64);
    let got = bucket
        .download_file("parts/big", &dir.path().join("back"))
        .await
        .unwrap();
    assert_eq!(got, sent);
    assert!(std::fs::read(dir.path().join("back")).unwrap() == bytes);
}
