//! OTLP/gRPC exporters of the OpenTelemetry SDK, for the commands that send telemetry to a
//! Spyglass (`demo`, `check`).

use std::time::Duration;

use anyhow::Context;
use opentelemetry_otlp::{WithExportConfig, WithTonicConfig};
use tonic::metadata::{MetadataMap, MetadataValue};

/// Where to send and how to authenticate.
#[derive(Clone, Debug)]
pub struct Target {
    /// OTLP/gRPC endpoint, e.g. `http://127.0.0.1:4317`.
    pub endpoint: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub token: Option<String>,
}

impl Target {
    fn metadata(&self) -> anyhow::Result<MetadataMap> {
        let mut map = MetadataMap::new();
        if let Some(token) = &self.token {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .context("the token is not a valid header value")?;
            map.insert("authorization", value);
        }
        Ok(map)
    }

    pub fn span_exporter(&self) -> anyhow::Result<opentelemetry_otlp::SpanExporter> {
        opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(&self.endpoint)
            .with_timeout(Duration::from_secs(10))
            .with_metadata(self.metadata()?)
            .build()
            .with_context(|| format!("cannot export spans to {}", self.endpoint))
    }

    pub fn metric_exporter(&self) -> anyhow::Result<opentelemetry_otlp::MetricExporter> {
        opentelemetry_otlp::MetricExporter::builder()
            .with_tonic()
            .with_endpoint(&self.endpoint)
            .with_timeout(Duration::from_secs(10))
            .with_metadata(self.metadata()?)
            .build()
            .with_context(|| format!("cannot export metrics to {}", self.endpoint))
    }

    pub fn log_exporter(&self) -> anyhow::Result<opentelemetry_otlp::LogExporter> {
        opentelemetry_otlp::LogExporter::builder()
            .with_tonic()
            .with_endpoint(&self.endpoint)
            .with_timeout(Duration::from_secs(10))
            .with_metadata(self.metadata()?)
            .build()
            .with_context(|| format!("cannot export logs to {}", self.endpoint))
    }
}

/// The API address beside an OTLP endpoint: the same host, port 8080.
pub fn default_api(endpoint: &str) -> String {
    let rest = endpoint
        .split_once("://")
        .map(|(_, rest)| rest)
        .unwrap_or(endpoint);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    format!("http://{host}:8080")
}

#[cfg(test)]
mod tests {
    use super::default_api;

    #[test]
    fn the_api_is_on_port_8080_of_the_endpoints_host() {
        assert_eq!(default_api("http://10.0.0.5:4317"), "http://10.0.0.5:8080");
        assert_eq!(default_api("http://spyglass"), "http://spyglass:8080");
        assert_eq!(default_api("[::1]:4317"), "http://[::1]:8080");
    }
}
