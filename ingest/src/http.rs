//! The OTLP/HTTP receiver (`:4318`): `POST /v1/traces`, `/v1/metrics`, `/v1/logs` with
//! `application/x-protobuf` or `application/json` bodies, optionally gzip- or zstd-compressed.
//!
//! Answers as <https://opentelemetry.io/docs/specs/otlp/#otlphttp-response> says: 200 with the
//! export response (partial success included) in the request's encoding; 400 with a
//! `google.rpc.Status` naming what was wrong; 401; 413 for a body over the limit before or after
//! decompression; 415 for another content type or encoding; 429 with `Retry-After` when the
//! store says "retry later"; 503 when it cannot make data durable.

use std::future::Future;
use std::io::Read;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prost::Message;
use serde::Serialize;
use serde::de::DeserializeOwned;
use spyglass_store::Signal;
use tokio::net::TcpListener;

use crate::error::{Answer, Error, Result};
use crate::inflight::RequestMemory;
use crate::pipeline::{Ingest, Protocol};

const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Protobuf,
    Json,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Format::Protobuf => PROTOBUF,
            Format::Json => JSON,
        }
    }
}

/// The HTTP receiver; run it with [`HttpReceiver::run`] or mount [`HttpReceiver::router`].
#[derive(Clone)]
pub struct HttpReceiver {
    ingest: Ingest,
}

impl HttpReceiver {
    pub fn new(ingest: Ingest) -> Self {
        Self { ingest }
    }

    pub fn router(self) -> Router {
        Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .route("/v1/logs", post(logs))
            // The body limit is enforced while reading (see `read_body`), with OTLP's answer.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(self)
    }

    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        axum::serve(listener, self.router())
            .with_graceful_shutdown(shutdown)
            .await
    }

    /// Checks, reads and decompresses the body, then hands it to `export` with its format.
    async fn handle<Resp, Fut>(
        &self,
        signal: Signal,
        headers: HeaderMap,
        body: Body,
        export: impl FnOnce(Ingest, Bytes, Format, RequestMemory) -> Fut,
    ) -> Response
    where
        Resp: Message + Serialize,
        Fut: Future<Output = Result<Resp>>,
    {
        let format = match content_format(&headers) {
            Ok(format) => format,
            Err(e) => return self.error(signal, Format::Protobuf, e),
        };
        let result = async {
            let auth = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok());
            self.ingest.authorize(auth)?;
            let limit = self.ingest.config().max_body_bytes;
            let encoding = headers
                .get(header::CONTENT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("identity");
            let memory = self.ingest.request_memory();
            let raw = read_raw(body, limit, &memory).await?;
            let bytes = decompress(raw, encoding, limit, &memory)?;
            export(self.ingest.clone(), bytes, format, memory).await
        }
        .await;
        match result {
            Ok(response) => {
                let body = match format {
                    Format::Protobuf => response.encode_to_vec(),
                    Format::Json => {
                        serde_json::to_vec(&response).expect("export responses serialize")
                    }
                };
                ([(header::CONTENT_TYPE, format.content_type())], body).into_response()
            }
            Err(e) => self.error(signal, format, e),
        }
    }

    fn error(&self, signal: Signal, format: Format, error: Error) -> Response {
        self.ingest
            .stats()
            .count_error(signal, Protocol::Http, &error);
        let retry_after = Duration::from_secs(self.ingest.config().retry_after_secs);
        let answer = error.answer(retry_after);
        let (status, grpc_code) = match answer {
            Answer::BadRequest => (StatusCode::BAD_REQUEST, tonic::Code::InvalidArgument),
            Answer::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                tonic::Code::ResourceExhausted,
            ),
            Answer::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                tonic::Code::InvalidArgument,
            ),
            Answer::Unauthenticated => (StatusCode::UNAUTHORIZED, tonic::Code::Unauthenticated),
            Answer::RetryLater(_) => (StatusCode::TOO_MANY_REQUESTS, tonic::Code::Unavailable),
            Answer::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, tonic::Code::Unavailable),
            Answer::Internal => (StatusCode::INTERNAL_SERVER_ERROR, tonic::Code::Internal),
        };
        let rpc_status = tonic_types::pb::Status {
            code: grpc_code as i32,
            message: error.client_message(),
            details: Vec::new(),
        };
        let body = match format {
            Format::Protobuf => rpc_status.encode_to_vec(),
            Format::Json => serde_json::to_vec(
                &serde_json::json!({ "code": rpc_status.code, "message": rpc_status.message }),
            )
            .expect("a status serializes"),
        };
        let mut response = (
            status,
            [(header::CONTENT_TYPE, format.content_type())],
            body,
        )
            .into_response();
        let retry = match answer {
            Answer::RetryLater(delay) => Some(delay),
            Answer::Unavailable => Some(retry_after),
            _ => None,
        };
        if let Some(delay) = retry {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(delay.as_secs().max(1)),
            );
        }
        response
    }
}

fn content_format(headers: &HeaderMap) -> Result<Format> {
    let value = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let media = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        PROTOBUF => Ok(Format::Protobuf),
        JSON => Ok(Format::Json),
        _ => Err(Error::Unsupported {
            what: "content type",
            value: value.to_owned(),
            allowed: "application/x-protobuf or application/json",
        }),
    }
}

/// Reads the body, refusing more than `limit` bytes on the wire.
async fn read_raw(mut body: Body, limit: usize, memory: &RequestMemory) -> Result<Bytes> {
    use http_body_util::BodyExt;
    let mut frames: Vec<Bytes> = Vec::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::Decode(format!("failed to read the body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > limit {
            return Err(Error::TooLarge { limit });
        }
        memory.grow_to(total as u64)?;
        frames.push(data);
    }
    if frames.len() <= 1 {
        return Ok(frames.pop().unwrap_or_default());
    }
    // The frames and their concatenation, for a moment.
    memory.grow_to(2 * total as u64)?;
    let mut whole = bytes::BytesMut::with_capacity(total);
    for frame in frames {
        whole.extend_from_slice(&frame);
    }
    Ok(whole.freeze())
}

/// Undoes the `Content-Encoding`, refusing more than `limit` bytes decompressed — so a small
/// gzip bomb is refused as early as a large body.
fn decompress(raw: Bytes, encoding: &str, limit: usize, memory: &RequestMemory) -> Result<Bytes> {
    let encoding = encoding.trim().to_ascii_lowercase();
    let mut out = Vec::new();
    let read = match encoding.as_str() {
        "" | "identity" => return Ok(raw),
        "gzip" => flate2::read::GzDecoder::new(&raw[..])
            .take(limit as u64 + 1)
            .read_to_end(&mut out),
        "zstd" => zstd::stream::read::Decoder::new(&raw[..])
            .and_then(|d| d.take(limit as u64 + 1).read_to_end(&mut out)),
        other => {
            return Err(Error::Unsupported {
                what: "content encoding",
                value: other.to_owned(),
                allowed: "gzip, zstd or none",
            });
        }
    };
    read.map_err(|e| Error::Decode(format!("failed to decompress the {encoding} body: {e}")))?;
    if out.len() > limit {
        return Err(Error::TooLarge { limit });
    }
    // Made beside what was read.
    memory.grow(out.len() as u64)?;
    Ok(Bytes::from(out))
}

/// Decodes a request, refusing it first when decoding would take more than `limit` bytes, and
/// taking what it will take from the request's memory.
fn decode<Req: Message + Default + DeserializeOwned + crate::decoded::Root>(
    bytes: &[u8],
    format: Format,
    limit: u64,
    memory: &RequestMemory,
) -> Result<Req> {
    match format {
        Format::Protobuf => crate::pipeline::decode_protobuf(bytes, limit, memory),
        Format::Json => {
            memory.admit_decode(crate::decoded::json_bytes(bytes), limit)?;
            serde_json::from_slice(bytes).map_err(|e| Error::Decode(e.to_string()))
        }
    }
}

/// The receiver's decode-and-convert path without a store or a socket, for fuzzing: undoes the
/// encoding, decodes the body as the endpoint's request and converts it. Returns how many items
/// were converted and how many were rejected.
pub fn decode_and_convert(
    path: &str,
    content_type: &str,
    content_encoding: &str,
    body: &[u8],
    limit: usize,
) -> Result<(usize, u64)> {
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    let format = content_format(&headers)?;
    let uncounted = RequestMemory::uncounted();
    let bytes = decompress(
        Bytes::copy_from_slice(body),
        content_encoding,
        limit,
        &uncounted,
    )?;
    let decoded_limit = crate::IngestConfig::default().max_decoded_bytes;
    match path {
        "/v1/traces" => {
            if format == Format::Protobuf
                && let Ok(batch) = crate::direct::spans(&bytes, u64::MAX)
            {
                return Ok((batch.map_or(0, |b| b.num_rows()), 0));
            }
            let c = crate::convert::spans(decode(&bytes, format, decoded_limit, &uncounted)?);
            Ok((c.items.len(), c.rejected))
        }
        "/v1/metrics" => {
            if format == Format::Protobuf
                && let Ok(batch) = crate::direct::metrics(&bytes, u64::MAX)
            {
                return Ok((batch.map_or(0, |b| b.num_rows()), 0));
            }
            let c = crate::convert::metrics(decode(&bytes, format, decoded_limit, &uncounted)?);
            Ok((c.items.len(), c.rejected))
        }
        _ => {
            let c = crate::convert::logs(decode(&bytes, format, decoded_limit, &uncounted)?);
            Ok((c.items.len(), c.rejected))
        }
    }
}

async fn traces(State(rx): State<HttpReceiver>, headers: HeaderMap, body: Body) -> Response {
    rx.handle(
        Signal::Spans,
        headers,
        body,
        |ingest, bytes, format, memory| async move {
            match format {
                Format::Protobuf => {
                    ingest
                        .traces_protobuf(&bytes, Protocol::Http, &memory)
                        .await
                }
                Format::Json => {
                    let limit = ingest.config().max_decoded_bytes;
                    let request = decode(&bytes, format, limit, &memory)?;
                    ingest.traces(request, Protocol::Http, &memory).await
                }
            }
        },
    )
    .await
}

async fn metrics(State(rx): State<HttpReceiver>, headers: HeaderMap, body: Body) -> Response {
    rx.handle(
        Signal::Metrics,
        headers,
        body,
        |ingest, bytes, format, memory| async move {
            match format {
                Format::Protobuf => {
                    ingest
                        .metrics_protobuf(&bytes, Protocol::Http, &memory)
                        .await
                }
                Format::Json => {
                    let limit = ingest.config().max_decoded_bytes;
                    let request = decode(&bytes, format, limit, &memory)?;
                    ingest.metrics(request, Protocol::Http, &memory).await
                }
            }
        },
    )
    .await
}

async fn logs(State(rx): State<HttpReceiver>, headers: HeaderMap, body: Body) -> Response {
    rx.handle(
        Signal::Logs,
        headers,
        body,
        |ingest, bytes, format, memory| async move {
            let limit = ingest.config().max_decoded_bytes;
            let request = decode(&bytes, format, limit, &memory)?;
            ingest.logs(request, Protocol::Http, &memory).await
        },
    )
    .await
}
