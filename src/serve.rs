//! `spyglass serve`: start-up in order, then one ordered, timed shutdown.
//!
//! Start: bind the UI port (so `/healthz` answers during replay) → open the store and replay
//! the WAL → bind the OTLP receivers → ready → maintenance (flush, compaction, retention).
//! Stop (SIGINT/SIGTERM): stop the receivers (in-flight requests finish) → write the last span
//! metrics → stop maintenance →
//! close the store (queued appends finish, memtable flushed) → stop the UI.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use spyglass_ingest::{GrpcReceiver, HttpReceiver, Ingest, SpanMetricsWriter};
use spyglass_query::QueryEngine;
use spyglass_store::Store;
use spyglass_ui::{EngineSlot, Readiness, UiServer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::config::Config;
use crate::selfmetrics;

/// How long the final flush may take before Spyglass exits anyway (the WAL still has the data).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(120);

/// `spyglass serve`: runs until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    run(config, shutdown_signal(), || {}).await
}

/// Runs Spyglass until `shutdown` completes; `on_ready` is called once it takes telemetry.
pub async fn run(
    config: Config,
    shutdown: impl Future<Output = anyhow::Result<()>>,
    on_ready: impl FnOnce(),
) -> anyhow::Result<()> {
    for addr in config.exposed_without_tokens() {
        tracing::warn!(%addr, "listening beyond loopback with no ingest tokens configured: anyone who can reach this address can use it");
    }
    let readiness = Readiness::default();
    let engine_slot = EngineSlot::default();
    // `/metrics` answers from the start; the store's and ingest's figures join once they exist.
    let sources: Arc<OnceLock<selfmetrics::Sources>> = Arc::default();
    let exposition = selfmetrics::exposition(sources.clone());
    let ui = UiServer::bind(config.ui.http_addr, readiness.clone(), engine_slot.clone())
        .await
        .with_context(|| format!("failed to bind the UI address {}", config.ui.http_addr))?
        .with_exposition(exposition);
    tracing::info!(addr = %ui.local_addr()?, "UI and API listening");
    let (stop_ui, ui_stopped) = oneshot::channel::<()>();
    let ui_task = tokio::spawn(ui.run(async {
        let _ = ui_stopped.await;
    }));

    let data_dir = config.data_dir.clone();
    let store_config = config.store.clone();
    // Ingest logs fast-path requests in the WAL as they came: replay reads them with its decoder.
    let decoder = spyglass_ingest::source_decoder();
    let (store, report) = tokio::task::spawn_blocking(move || {
        Store::open_with_decoder(&data_dir, store_config, decoder)
    })
    .await?
    .with_context(|| format!("failed to open the store in {}", config.data_dir.display()))?;
    if !report.damaged.is_empty() {
        tracing::warn!(
            ranges = report.damaged.len(),
            bytes = report.bytes_set_aside(),
            "damaged WAL ranges were set aside under wal/corrupt/"
        );
    }

    let engine = QueryEngine::new(store.clone(), config.query.clone());
    engine_slot.set(engine.clone());
    // Open every part's trace index and footer in the background, so the first trace lookups
    // after a restart are as fast as later ones. Its handle is dropped: the job ends by itself.
    let warm_store = store.clone();
    drop(tokio::task::spawn_blocking(move || {
        if let Err(error) = warm_store.warm_caches() {
            tracing::warn!(%error, "failed to open part indexes ahead of queries; they open on first use");
        }
    }));
    let ingest = Ingest::new(store.clone(), config.ingest.clone());
    let _ = sources.set(selfmetrics::Sources {
        store: store.clone(),
        ingest: ingest.clone(),
        query: engine,
    });
    let grpc_listener = TcpListener::bind(config.ingest.otlp_grpc_addr)
        .await
        .with_context(|| {
            format!(
                "failed to bind the OTLP/gRPC address {}",
                config.ingest.otlp_grpc_addr
            )
        })?;
    let http_listener = TcpListener::bind(config.ingest.otlp_http_addr)
        .await
        .with_context(|| {
            format!(
                "failed to bind the OTLP/HTTP address {}",
                config.ingest.otlp_http_addr
            )
        })?;
    tracing::info!(grpc = %grpc_listener.local_addr()?, http = %http_listener.local_addr()?, "OTLP receivers listening");
    let (stop_grpc, grpc_stopped) = oneshot::channel::<()>();
    let (stop_http, http_stopped) = oneshot::channel::<()>();
    let grpc_task = tokio::spawn(GrpcReceiver::new(ingest.clone()).run(grpc_listener, async {
        let _ = grpc_stopped.await;
    }));
    let writer = SpanMetricsWriter::new(
        ingest.span_metrics().clone(),
        store.clone(),
        Duration::from_secs(config.ingest.span_metrics_interval_secs.max(1)),
    );
    let http_task = tokio::spawn(HttpReceiver::new(ingest).run(http_listener, async {
        let _ = http_stopped.await;
    }));
    let (stop_writer, writer_stopped) = oneshot::channel::<()>();
    let writer_task = tokio::spawn(writer.run(async {
        let _ = writer_stopped.await;
    }));
    readiness.set_ready();
    on_ready();
    tracing::info!(data_dir = %config.data_dir.display(), replayed = report.records_replayed, "ready");

    let (stop_maintenance, maintenance_stopped) = oneshot::channel::<()>();
    let maintenance_task = tokio::spawn(store.maintenance().run(async {
        let _ = maintenance_stopped.await;
    }));

    shutdown.await?;
    tracing::info!("shutting down: stopping the receivers");
    let _ = stop_grpc.send(());
    let _ = stop_http.send(());
    grpc_task.await.context("OTLP/gRPC task failed")??;
    http_task.await.context("OTLP/HTTP task failed")??;
    let _ = stop_writer.send(());
    writer_task.await.context("span metrics task failed")?;
    tracing::info!("flushing the memtable");
    let _ = stop_maintenance.send(());
    maintenance_task.await.context("maintenance task failed")?;
    match tokio::time::timeout(CLOSE_TIMEOUT, store.close()).await {
        Ok(result) => result.context("failed to flush the memtable")?,
        Err(_) => tracing::warn!(
            "final flush timed out; the WAL still holds the data and is replayed on start"
        ),
    }
    let _ = stop_ui.send(());
    ui_task.await.context("UI task failed")??;
    tracing::info!("stopped");
    Ok(())
}

/// SIGINT (Ctrl+C) or SIGTERM.
pub async fn shutdown_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result?,
        _ = term.recv() => {}
    }
    Ok(())
}
