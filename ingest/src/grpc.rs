//! The OTLP/gRPC receiver (`:4317`): `TraceService`, `MetricsService`, `LogsService`, with gzip
//! and zstd request compression.
//!
//! Answers as the OTLP specification says
//! (<https://opentelemetry.io/docs/specs/otlp/#failures>): INVALID_ARGUMENT for what cannot be
//! decoded, UNAUTHENTICATED without a valid token, UNAVAILABLE with `RetryInfo` when the store
//! says "retry later", UNAVAILABLE without it when the store cannot make data durable.

use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use spyglass_store::Signal;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::{Code, Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

mod metered;
mod raw;

use raw::RawServer;

use crate::error::{Answer, Error};
use crate::inflight::RequestMemory;
use crate::pipeline::{Ingest, Protocol};

/// The gRPC receiver; run it with [`GrpcReceiver::run`].
#[derive(Clone)]
pub struct GrpcReceiver {
    ingest: Ingest,
}

impl GrpcReceiver {
    pub fn new(ingest: Ingest) -> Self {
        Self { ingest }
    }

    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let limit = self.ingest.config().max_body_bytes;
        tonic::transport::Server::builder()
            .add_service(RawServer::<raw::Traces>::new(self.clone(), limit))
            .add_service(RawServer::<raw::Metrics>::new(self.clone(), limit))
            .add_service(RawServer::<raw::Logs>::new(self.clone(), limit))
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
            .await
    }

    /// `TraceService/Export`, with the request message's bytes (see [`raw`]).
    async fn export_traces(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let result = async {
            let memory = self.request_memory(&request)?;
            let body = request.get_ref();
            self.ingest
                .traces_protobuf(body, Protocol::Grpc, &memory)
                .await
        }
        .await;
        result
            .map(Response::new)
            .map_err(|e| self.status(Signal::Spans, e))
    }

    async fn export_metrics(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let result = async {
            let memory = self.request_memory(&request)?;
            let body = request.get_ref();
            self.ingest
                .metrics_protobuf(body, Protocol::Grpc, &memory)
                .await
        }
        .await;
        result
            .map(Response::new)
            .map_err(|e| self.status(Signal::Metrics, e))
    }

    async fn export_logs(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<ExportLogsServiceResponse>, Status> {
        let result = async {
            let memory = self.request_memory(&request)?;
            let limit = self.ingest.config().max_decoded_bytes;
            let decoded: ExportLogsServiceRequest =
                crate::pipeline::decode_protobuf(request.get_ref(), limit, &memory)?;
            self.ingest.logs(decoded, Protocol::Grpc, &memory).await
        };
        result
            .await
            .map(Response::new)
            .map_err(|e| self.status(Signal::Logs, e))
    }

    /// The reservation the raw server made for this request as its body was read, grown by
    /// the message (beside the frames it was read or decompressed from).
    fn request_memory(&self, request: &Request<Bytes>) -> Result<RequestMemory, Error> {
        let memory = (request.extensions().get::<RequestMemory>().cloned())
            .unwrap_or_else(|| self.ingest.request_memory());
        memory.grow(request.get_ref().len() as u64)?;
        Ok(memory)
    }

    fn status(&self, signal: Signal, error: Error) -> Status {
        self.ingest
            .stats()
            .count_error(signal, Protocol::Grpc, &error);
        let retry_after = Duration::from_secs(self.ingest.config().retry_after_secs);
        let message = error.client_message();
        match error.answer(retry_after) {
            Answer::BadRequest | Answer::UnsupportedMediaType => Status::invalid_argument(message),
            Answer::TooLarge => Status::resource_exhausted(message),
            Answer::Unauthenticated => Status::unauthenticated(message),
            Answer::RetryLater(delay) => Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(Some(delay)),
            ),
            Answer::Unavailable => Status::with_error_details(
                Code::Unavailable,
                message,
                ErrorDetails::with_retry_info(Some(retry_after)),
            ),
            Answer::Internal => Status::internal(message),
        }
    }
}
