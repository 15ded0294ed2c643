//! Sending pre-encoded OTLP export requests over gRPC, as the ingest benchmarks do.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;

/// An export request already encoded: the load generator sends these bytes as they are, so the
/// client costs what a real exporter's send costs, not a re-encode per request.
#[derive(Clone, Debug, Default)]
pub struct Encoded(pub bytes::Bytes);

impl prost::Message for Encoded {
    fn encode_raw(&self, buf: &mut impl bytes::BufMut) {
        buf.put_slice(&self.0);
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: prost::encoding::WireType,
        buf: &mut impl bytes::Buf,
        ctx: prost::encoding::DecodeContext,
    ) -> Result<(), prost::DecodeError> {
        prost::encoding::skip_field(wire_type, tag, buf, ctx)
    }

    fn encoded_len(&self) -> usize {
        self.0.len()
    }

    fn clear(&mut self) {
        self.0.clear();
    }
}

/// Sends one pre-encoded request to `path` (e.g. `/…TraceService/Export`).
/// An export answer's partial success: how many items the server rejected.
pub trait Rejected {
    fn rejected(&self) -> usize;
}

impl Rejected for ExportTraceServiceResponse {
    fn rejected(&self) -> usize {
        self.partial_success
            .as_ref()
            .map_or(0, |p| p.rejected_spans as usize)
    }
}

impl Rejected for ExportMetricsServiceResponse {
    fn rejected(&self) -> usize {
        self.partial_success
            .as_ref()
            .map_or(0, |p| p.rejected_data_points as usize)
    }
}

/// Sends one encoded request; answers the items the server rejected (partial success).
pub async fn export<Resp: prost::Message + Default + Rejected + Send + Sync + 'static>(
    channel: tonic::transport::Channel,
    path: &'static str,
    request: Encoded,
) -> Result<usize, tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready()
        .await
        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
    let codec = tonic_prost::ProstCodec::<Encoded, Resp>::default();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    grpc.unary(tonic::Request::new(request), path, codec)
        .await
        .map(|answer| answer.into_inner().rejected())
}
