//! The OTLP/HTTP decode-and-convert path on arbitrary input: endpoint, content type, encoding
//! and body all come from the fuzzer. It must answer (Ok or a clear error), never panic.
//!
//! `ingest/fuzz/run [SECONDS]` builds it with libFuzzer on stable Rust and runs it (60 s in CI).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let path = ["/v1/traces", "/v1/metrics", "/v1/logs"][usize::from(selector & 3) % 3];
    let content_type = if selector & 4 == 0 { "application/x-protobuf" } else { "application/json" };
    let encoding = ["identity", "gzip", "zstd", "identity"][usize::from(selector >> 3) & 3];
    let _ = spyglass_ingest::decode_and_convert(path, content_type, encoding, body, 4 << 20);
});
