//! Arbitrary bytes on every OTLP/HTTP endpoint, as protobuf and as JSON, plain and gzip, with
//! small limits so that bodies cross them (long runs that gzip to a few bytes and expand past
//! the body limit): the answer is always 200 (what decoded), 400 (what did not) or 413 (over a
//! limit) — never a panic, never a 5xx — and the store keeps working.

use std::io::Write;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use proptest::prelude::*;
use spyglass_ingest::{HttpReceiver, Ingest, IngestConfig};
use spyglass_store::{Store, StoreConfig};
use tower::ServiceExt;

/// The body limit of these tests: random bodies and their decompressed forms cross it.
const LIMIT: usize = 4096;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_bodies_get_an_answer_not_a_crash(
        body in prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..2048),
            (any::<u8>(), 0..20_000usize).prop_map(|(byte, n)| vec![byte; n]),
        ],
        path in proptest::sample::select(vec!["/v1/traces", "/v1/metrics", "/v1/logs"]),
        json in any::<bool>(),
        gzip in any::<bool>(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path(), StoreConfig::default()).unwrap();
        let config = IngestConfig {
            max_body_bytes: LIMIT,
            max_expanded_bytes: 4 * LIMIT as u64,
            ..IngestConfig::default()
        };
        let router = HttpReceiver::new(Ingest::new(store, config)).router();
        let length = body.len();
        let payload = if gzip {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&body).unwrap();
            gz.finish().unwrap()
        } else {
            body
        };
        let content_type = if json { "application/json" } else { "application/x-protobuf" };
        let mut request = Request::post(path).header("content-type", content_type);
        if gzip {
            request = request.header("content-encoding", "gzip");
        }
        let status = runtime.block_on(router.clone().oneshot(request.body(Body::from(payload)).unwrap())).unwrap().status();
        prop_assert!(
            [StatusCode::OK, StatusCode::BAD_REQUEST, StatusCode::PAYLOAD_TOO_LARGE].contains(&status),
            "{status}"
        );
        if length > LIMIT {
            prop_assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{} bytes decompressed", length);
        }
        let empty = Request::post(path).header("content-type", "application/x-protobuf").body(Body::empty()).unwrap();
        prop_assert_eq!(runtime.block_on(router.oneshot(empty)).unwrap().status(), StatusCode::OK);
    }
}
