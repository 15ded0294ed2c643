//! The three OTLP services served with the request message's bytes: the trace fast path reads
//! them itself, and every signal's undecodable message is answered by our code
//! (INVALID_ARGUMENT, as OTLP asks) rather than by the generated server's codec (INTERNAL).
//!
//! tonic still does the framing, decompression (gzip, zstd), the size limit and the response
//! encoding; only the codec and the routing differ from the generated servers. The bearer
//! token is checked here, on the headers, before any of the body is read.

use std::convert::Infallible;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use spyglass_store::Signal;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::{Body, BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Request, Response, Status};

use super::GrpcReceiver;
use super::metered::Metered;

/// One OTLP service: its name and what `Export` answers.
pub(super) trait Export: Send + Sync + 'static {
    const SIGNAL: Signal;
    const SERVICE: &'static str;
    const PATH: &'static str;
    type Response: Message + Send + 'static;
    fn export(
        receiver: GrpcReceiver,
        request: Request<Bytes>,
    ) -> BoxFuture<Response<Self::Response>, Status>;
}

pub(super) struct Traces;
pub(super) struct Metrics;
pub(super) struct Logs;

impl Export for Traces {
    const SIGNAL: Signal = Signal::Spans;
    const SERVICE: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
    const PATH: &'static str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    type Response = ExportTraceServiceResponse;
    fn export(
        receiver: GrpcReceiver,
        request: Request<Bytes>,
    ) -> BoxFuture<Response<Self::Response>, Status> {
        Box::pin(async move { receiver.export_traces(request).await })
    }
}

impl Export for Metrics {
    const SIGNAL: Signal = Signal::Metrics;
    const SERVICE: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    type Response = ExportMetricsServiceResponse;
    fn export(
        receiver: GrpcReceiver,
        request: Request<Bytes>,
    ) -> BoxFuture<Response<Self::Response>, Status> {
        Box::pin(async move { receiver.export_metrics(request).await })
    }
}

impl Export for Logs {
    const SIGNAL: Signal = Signal::Logs;
    const SERVICE: &'static str = "opentelemetry.proto.collector.logs.v1.LogsService";
    const PATH: &'static str = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";
    type Response = ExportLogsServiceResponse;
    fn export(
        receiver: GrpcReceiver,
        request: Request<Bytes>,
    ) -> BoxFuture<Response<Self::Response>, Status> {
        Box::pin(async move { receiver.export_logs(request).await })
    }
}

/// Decodes a message to its bytes; encodes the (prost) response `R`.
struct RawCodec<R>(PhantomData<R>);

impl<R> RawCodec<R> {
    fn new() -> Self {
        Self(PhantomData)
    }
}

impl<R: Message + Send + 'static> Codec for RawCodec<R> {
    type Encode = R;
    type Decode = Bytes;
    type Encoder = RawCodec<R>;
    type Decoder = RawCodec<R>;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec::new()
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec::new()
    }
}

impl<R: Message> Encoder for RawCodec<R> {
    type Item = R;
    type Error = Status;

    fn encode(&mut self, item: R, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("failed to encode the response: {e}")))
    }
}

impl<R> Decoder for RawCodec<R> {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A service for `tonic::transport::Server::add_service`.
pub(super) struct RawServer<E> {
    receiver: GrpcReceiver,
    max_message_bytes: usize,
    export: PhantomData<fn() -> E>,
}

impl<E> Clone for RawServer<E> {
    fn clone(&self) -> Self {
        Self {
            receiver: self.receiver.clone(),
            max_message_bytes: self.max_message_bytes,
            export: PhantomData,
        }
    }
}

impl<E> RawServer<E> {
    pub(super) fn new(receiver: GrpcReceiver, max_message_bytes: usize) -> Self {
        Self {
            receiver,
            max_message_bytes,
            export: PhantomData,
        }
    }
}

impl<E: Export> NamedService for RawServer<E> {
    const NAME: &'static str = E::SERVICE;
}

struct Method<E>(GrpcReceiver, PhantomData<fn() -> E>);

impl<E: Export> UnaryService<Bytes> for Method<E> {
    type Response = E::Response;
    type Future = BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, request: Request<Bytes>) -> Self::Future {
        E::export(self.0.clone(), request)
    }
}

impl<E: Export, B> Service<http::Request<B>> for RawServer<E>
where
    B: Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != E::PATH {
            let status = Status::unimplemented(format!("{} has only Export", E::SERVICE));
            return Box::pin(async move { Ok(status.into_http()) });
        }
        // The token is checked on the headers, before the body is read or decompressed: an
        // unauthenticated client cannot make the server hold its body.
        let header = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Err(e) = self.receiver.ingest.authorize(header) {
            let status = self.receiver.status(E::SIGNAL, e);
            return Box::pin(async move { Ok(status.into_http()) });
        }
        let server = self.clone();
        let memory = self.receiver.ingest.request_memory();
        let refused = Arc::new(Mutex::new(None));
        let (mut parts, body) = request.into_parts();
        parts.extensions.insert(memory.clone());
        let request = http::Request::from_parts(parts, Metered::new(body, memory, refused.clone()));
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec::<E::Response>::new())
                .accept_compressed(CompressionEncoding::Gzip)
                .accept_compressed(CompressionEncoding::Zstd)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(server.max_message_bytes);
            let method = Method::<E>(server.receiver.clone(), PhantomData);
            let response = grpc.unary(method, request).await;
            let refused = refused.lock().unwrap_or_else(|p| p.into_inner()).take();
            Ok(match refused {
                Some(e) => server.receiver.status(E::SIGNAL, e).into_http(),
                None => response,
            })
        })
    }
}
