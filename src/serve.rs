//! `spyglass serve`: start-up in order, then one ordered, timed shutdown.
//!
//! Start: bind the UI port (so `/healthz` answers during replay) → open the store and replay
//! the WAL → load the alert rules and state → bind the OTLP receivers → ready → alerting,
//! maintenance (flush, compaction, retention). SIGHUP reloads the rule files.
//! Stop (SIGINT/SIGTERM): stop the receivers (in-flight requests finish) → write the last span
//! metrics → stop alerting (its state is saved after every evaluation) → stop maintenance →
//! close the store (queued appends finish, memtable flushed) → stop the UI.

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use spyglass_alerting::{Evaluator, SystemClock, notify};
use spyglass_ingest::Protocol;
use spyglass_ingest::{GrpcReceiver, HttpReceiver, Ingest, SpanMetricsWriter};
use spyglass_query::QueryEngine;
use spyglass_store::Signal;
use spyglass_store::Store;
use spyglass_store::bucket::{self, Bucket, Lease, Mirror, Uploader};
use spyglass_ui::{AlertingSlot, EngineSlot, Readiness, UiServer};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::cluster;
use crate::config::{Config, Role};
use crate::selfmetrics;

/// How long the final flush may take before Spyglass exits anyway (the WAL still has the data).
const CLOSE_TIMEOUT: Duration = Duration::from_secs(120);

/// How long the upload after the final flush may take.
const UPLOAD_STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How long stopping the bucket reader or the lease keeper may take.
const BUCKET_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// How long an evaluation in progress may hold up the exit.
const ALERTING_STOP_TIMEOUT: Duration = Duration::from_secs(10);

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
    for (addr, section) in config.exposed_without_tokens() {
        tracing::warn!(%addr, "listening beyond loopback with no {section} tokens configured: anyone who can reach this address can use it");
    }
    if !config.ui.http_addr.ip().is_loopback() {
        tracing::info!(allowed_hosts = ?config.ui.allowed_hosts, "the UI answers only requests whose Host is in [ui] allowed_hosts; add the names it is reached by");
    }
    let readiness = Readiness::default();
    let engine_slot = EngineSlot::default();
    let alerting_slot = AlertingSlot::default();
    // `/metrics` answers from the start; the store's and ingest's figures join once they exist.
    let sources: Arc<OnceLock<selfmetrics::Sources>> = Arc::default();
    let exposition = selfmetrics::exposition(sources.clone());
    // Queries (the API, the UI, alert evaluation) run on a runtime of their own: a heavy query
    // keeps its threads busy, not the receivers' that acknowledge telemetry.
    let queries = QueryRuntime::new(config.query.threads)?;
    let ui = queries
        .spawn(UiServer::bind(
            config.ui.http_addr,
            readiness.clone(),
            engine_slot.clone(),
        ))
        .await?
        .with_context(|| format!("failed to bind the UI address {}", config.ui.http_addr))?
        .with_exposition(exposition)
        .with_alerting(alerting_slot.clone())
        .with_access(config.ui.access());
    tracing::info!(addr = %ui.local_addr()?, "UI and API listening");
    let (stop_ui, ui_stopped) = oneshot::channel::<()>();
    let ui_task = queries.spawn(ui.run(async {
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
    store.memory().on_short(crate::return_kept_memory);
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
    let (evaluator, alerting, dispatcher) = alerting(&config, &engine, &ingest, &store)?;
    alerting_slot.set(alerting.clone());
    let _ = sources.set(selfmetrics::Sources {
        store: store.clone(),
        ingest: ingest.clone(),
        query: engine,
        alerting: alerting.clone(),
    });
    let role = config.role;
    let bucket = (config.store.object_store.as_ref())
        .map(Bucket::open)
        .transpose()
        .context("invalid [store.object_store] section")?;
    let receivers = match role {
        Role::Query | Role::Alert => None,
        Role::All | Role::Ingest => Some(Receivers::start(&config, &ingest, &store).await?),
    };
    // A querier shows the bucket's parts: the first read is done before it says it is ready.
    let mirror_task = match (&bucket, role) {
        (Some(bucket), Role::Query | Role::Alert) => {
            let mut mirror = Mirror::new(bucket.clone());
            if let Err(error) = mirror.refresh(&store).await {
                tracing::warn!(%error, "failed to read the object store; retrying");
            }
            let every = Duration::from_secs(
                config
                    .store
                    .object_store
                    .as_ref()
                    .map_or(5, |c| c.refresh_secs),
            );
            let (stop, stopped) = oneshot::channel::<()>();
            Some((
                stop,
                tokio::spawn(cluster::mirror_loop(mirror, store.clone(), every, async {
                    let _ = stopped.await;
                })),
            ))
        }
        _ => None,
    };
    let upload_task = match (&bucket, role) {
        (Some(bucket), Role::All | Role::Ingest) => {
            let configured = config
                .store
                .object_store
                .as_ref()
                .and_then(|c| c.ingester_id.as_deref());
            let ingester = bucket::ingester(&config.data_dir, configured)?;
            tracing::info!(ingester = %ingester.id, "uploading parts to the object store");
            let uploader = Uploader::new(bucket.clone(), &ingester)?;
            // What waits for upload is measured every second, whatever the network does.
            drop(tokio::spawn(cluster::watch_backlog(
                uploader.backlog(),
                store.clone(),
            )));
            let (stop, stopped) = oneshot::channel::<()>();
            Some((
                stop,
                tokio::spawn(cluster::upload_loop(uploader, store.clone(), async {
                    let _ = stopped.await;
                })),
            ))
        }
        _ => None,
    };
    readiness.set_ready();
    on_ready();
    tracing::info!(data_dir = %config.data_dir.display(), ?role, replayed = report.records_replayed, "ready");

    // Alerts are evaluated by the process that does everything, or by the one process of role
    // `alert` that holds the alerting lease; ingesters and queriers do not (each would notify).
    let lease_task = match (&bucket, role) {
        (Some(bucket), Role::Alert) => {
            let holder = cluster::lease_holder();
            tracing::info!(%holder, "taking part in the alerting lease");
            let lease = Lease::new(bucket.clone(), "alerting", &holder, cluster::LEASE_TTL);
            let (gate, gated) = tokio::sync::watch::channel(false);
            let (stop, stopped) = oneshot::channel::<()>();
            let task = tokio::spawn(cluster::hold_lease(lease, gate, async {
                let _ = stopped.await;
            }));
            Some((stop, task, gated))
        }
        _ => None,
    };
    let (stop_alerting, alerting_stopped) = oneshot::channel::<()>();
    let alerting_task = match (&lease_task, role) {
        (_, Role::All) => Some(evaluator),
        (Some((_, _, gated)), Role::Alert) => Some(evaluator.with_gate(gated.clone())),
        _ => None,
    }
    .map(|evaluator| {
        queries.spawn(evaluator.run(async {
            let _ = alerting_stopped.await;
        }))
    });
    // It ends when the evaluator (the holder of its inbox) is gone.
    let dispatcher_task = tokio::spawn(dispatcher.run(std::future::pending()));
    let (stop_hangups, hangups_stopped) = oneshot::channel::<()>();
    let hangup_task = tokio::spawn(reload_on_hangup(alerting, async {
        let _ = hangups_stopped.await;
    }));

    // A querier's store holds the bucket's parts as they are: it neither flushes nor compacts.
    let (stop_maintenance, maintenance_stopped) = oneshot::channel::<()>();
    let maintenance_task = matches!(role, Role::All | Role::Ingest).then(|| {
        tokio::spawn(store.maintenance().run(async {
            let _ = maintenance_stopped.await;
        }))
    });

    shutdown.await?;
    if let Some(receivers) = receivers {
        receivers.stop().await?;
    }
    // A read of the bucket or a lease refresh in progress may hold up the exit a little, not
    // for the length of a download or a hung request.
    if let Some((stop, task)) = mirror_task {
        let _ = stop.send(());
        if tokio::time::timeout(BUCKET_STOP_TIMEOUT, task)
            .await
            .is_err()
        {
            tracing::warn!("a read of the object store was still running; left unfinished");
        }
    }
    tracing::info!("stopping alerting");
    let _ = stop_hangups.send(());
    hangup_task.await.context("reload task failed")??;
    let _ = stop_alerting.send(());
    // An evaluation in progress finishes first; a slow rule must not hold the exit up for long
    // (the state was saved after the last evaluation that finished).
    if let Some(task) = alerting_task
        && tokio::time::timeout(ALERTING_STOP_TIMEOUT, task)
            .await
            .is_err()
    {
        tracing::warn!("alerting did not stop in time; its last saved state is kept");
    }
    dispatcher_task.abort();
    if let Some((stop, task, _)) = lease_task {
        let _ = stop.send(());
        if tokio::time::timeout(BUCKET_STOP_TIMEOUT, task)
            .await
            .is_err()
        {
            tracing::warn!("the alerting lease was not released in time; it expires by itself");
        }
    }
    tracing::info!("flushing the memtable");
    let _ = stop_maintenance.send(());
    if let Some(task) = maintenance_task {
        task.await.context("maintenance task failed")?;
    }
    match tokio::time::timeout(CLOSE_TIMEOUT, store.close()).await {
        Ok(result) => result.context("failed to flush the memtable")?,
        Err(_) => tracing::warn!(
            "final flush timed out; the WAL still holds the data and is replayed on start"
        ),
    }
    if let Some((stop, task)) = upload_task {
        let _ = stop.send(());
        let mut uploader = task.await.context("uploader failed")?;
        // The last flush's parts go up now; what cannot goes up at the next start.
        match tokio::time::timeout(UPLOAD_STOP_TIMEOUT, uploader.sync(&store)).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => {
                tracing::warn!(%error, "parts not uploaded; they go up at the next start")
            }
            Err(_) => tracing::warn!("upload timed out; the rest goes up at the next start"),
        }
    }
    let _ = stop_ui.send(());
    ui_task.await.context("UI task failed")??;
    queries.stop();
    tracing::info!("stopped");
    Ok(())
}

/// The OTLP receivers and the span-metrics writer: what an ingesting process runs.
struct Receivers {
    stop_grpc: oneshot::Sender<()>,
    stop_http: oneshot::Sender<()>,
    stop_writer: oneshot::Sender<()>,
    grpc: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    http: tokio::task::JoinHandle<std::io::Result<()>>,
    writer: tokio::task::JoinHandle<()>,
}

impl Receivers {
    /// Binds the OTLP addresses and starts taking telemetry.
    async fn start(config: &Config, ingest: &Ingest, store: &Store) -> anyhow::Result<Self> {
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
        let grpc = tokio::spawn(GrpcReceiver::new(ingest.clone()).run(grpc_listener, async {
            let _ = grpc_stopped.await;
        }));
        let writer = SpanMetricsWriter::new(
            ingest.span_metrics().clone(),
            store.clone(),
            Duration::from_secs(config.ingest.span_metrics_interval_secs.max(1)),
        );
        let http = tokio::spawn(HttpReceiver::new(ingest.clone()).run(http_listener, async {
            let _ = http_stopped.await;
        }));
        let (stop_writer, writer_stopped) = oneshot::channel::<()>();
        let writer = tokio::spawn(writer.run(async {
            let _ = writer_stopped.await;
        }));
        Ok(Self {
            stop_grpc,
            stop_http,
            stop_writer,
            grpc,
            http,
            writer,
        })
    }

    /// Stops the receivers (requests in flight finish), then writes the last span metrics.
    async fn stop(self) -> anyhow::Result<()> {
        tracing::info!("shutting down: stopping the receivers");
        let _ = self.stop_grpc.send(());
        let _ = self.stop_http.send(());
        self.grpc.await.context("OTLP/gRPC task failed")??;
        self.http.await.context("OTLP/HTTP task failed")??;
        let _ = self.stop_writer.send(());
        self.writer.await.context("span metrics task failed")?;
        Ok(())
    }
}

/// The runtime queries run on, threads named `spyglass-query`.
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl QueryRuntime {
    /// `threads` workers; 0: one per core.
    fn new(threads: usize) -> anyhow::Result<Self> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
            n => n,
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("spyglass-query")
            .enable_all()
            .build()
            .context("failed to start the query runtime")?;
        Ok(Self(Some(runtime)))
    }

    fn spawn<F>(&self, task: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.as_ref().expect("running until stopped").spawn(task)
    }

    /// Stops it without waiting for what is left (every task was awaited already).
    fn stop(mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        // Dropped on an error path inside the main runtime: a blocking drop would panic there.
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}

/// Telemetry requests refused or throttled so far, every signal and protocol together: what
/// the `TelemetryRefused` rule watches.
fn refused_counter(ingest: &Ingest) -> spyglass_alerting::Counter {
    let stats = ingest.stats().clone();
    Arc::new(move || {
        Signal::ALL
            .iter()
            .flat_map(|&signal| {
                [Protocol::Grpc, Protocol::Http].map(|protocol| {
                    stats.refused(signal, protocol) + stats.throttled(signal, protocol)
                })
            })
            .sum()
    })
}

/// The rule evaluator (rules and saved state loaded; a bad rule file is an error), its handle,
/// and the notification dispatcher it sends alerts to (a bad notify config is an error); the
/// `alerts` and `notifications` tables join the query engine's.
fn alerting(
    config: &Config,
    engine: &QueryEngine,
    ingest: &Ingest,
    store: &Store,
) -> anyhow::Result<(
    Evaluator<QueryEngine>,
    spyglass_alerting::Alerting,
    spyglass_alerting::notify::Dispatcher,
)> {
    let (evaluator, alerting) = Evaluator::new(
        engine.clone(),
        config.alerting(),
        &config.data_dir.join("alerts"),
        Arc::new(SystemClock),
    )
    .context("failed to start alerting")?;
    engine.supply_table("alerts", alerting.table());
    let alerting_config = config.alerting();
    let notify_config = match alerting_config.notify_config.as_str() {
        "" => notify::NotifyConfig::log_only_for(Duration::from_secs(
            alerting_config.evaluation_interval_secs,
        )),
        path => notify::load_config(path)
            .map_err(spyglass_alerting::Error::NotifyConfig)
            .context("failed to start notifications")?,
    };
    let (notifier, dispatcher) = notify::Dispatcher::new(
        notify_config,
        &config.data_dir.join("alerts"),
        Arc::new(SystemClock),
        &alerting_config.external_url,
    )
    .context("failed to start notifications")?;
    engine.supply_table("notifications", notifier.ledger().table());
    let alerting = alerting.with_notifier(notifier.clone());
    let evaluator = evaluator
        .with_refusals(refused_counter(ingest))
        .with_recorder(recorder(store))
        .with_notifier(notifier);
    Ok((evaluator, alerting, dispatcher))
}

/// Recording rules' points go into the store as any metric point does.
fn recorder(store: &Store) -> spyglass_alerting::Recorder {
    let store = store.clone();
    Arc::new(move |points| {
        let store = store.clone();
        Box::pin(async move {
            store
                .append(&spyglass_store::Records::Metrics(points))
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        })
    })
}

/// Reloads the rule files on each SIGHUP until `stop`.
async fn reload_on_hangup(
    alerting: spyglass_alerting::Alerting,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => return Ok(()),
            _ = hangups.recv() => {
                tracing::info!("SIGHUP: reloading the rule files");
                // A refused reload is logged and shown by the evaluator.
                let _ = alerting.reload().await;
            }
        }
    }
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
