//! `spyglass demo`: Spyglass on embedded storage plus a simulated shop exporting real OTLP to
//! it, with a scripted timeline of incidents (docs/ARCHITECTURE.md, "spyglass demo").

mod acks;
mod shop;
mod timeline;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::sync::{oneshot, watch};

use crate::config::Config;
use crate::otel::Target;
use crate::serve;
use acks::Acks;
use shop::Shop;
use timeline::{Phase, Timeline};

pub struct Options {
    /// Divides every duration of the timeline.
    pub speed: f64,
    /// Requests per second.
    pub rate: f64,
    /// Send to this Spyglass instead of starting one.
    pub endpoint: Option<String>,
    pub token: Option<String>,
    /// Write `trace_id span_id` of every acknowledged span here.
    pub record_acks: Option<PathBuf>,
    /// Notifications by e-mail: the SMTP server (`host:port`) and the recipient.
    pub email: Option<(String, String)>,
}

/// Writes the notify config that mails every incident to `to` through `smtp` into the data
/// directory, with the intervals the default log route would have; answers its path.
fn email_config(config: &Config, smtp: &str, to: &str) -> anyhow::Result<String> {
    if spyglass_alerting::notify::config::split_host_port(smtp).is_none() {
        bail!("--smtp must be host:port, not {smtp:?}");
    }
    if !to.contains('@') {
        bail!("--email-to must be an e-mail address, not {to:?}");
    }
    let evaluation = Duration::from_secs(config.alerting.evaluation_interval_secs);
    let (wait, interval) = spyglass_alerting::notify::config::default_intervals(evaluation);
    let yaml = format!(
        "# written by `spyglass demo --smtp {smtp} --email-to {to}`
global:
  smtp_smarthost: {smtp:?}
  smtp_from: spyglass-demo@localhost
  smtp_require_tls: false
route:
  receiver: demo-mail
  group_by: [incident]
  group_wait: {}s
  group_interval: {}s
  repeat_interval: 4h
receivers:
  - name: demo-mail
    email_configs:
      - to: {to:?}
        send_resolved: true
",
        wait.as_secs(),
        interval.as_secs()
    );
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create {}", config.data_dir.display()))?;
    let path = config.data_dir.join("demo-notify.yml");
    std::fs::write(&path, yaml).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path.to_string_lossy().into_owned())
}

pub async fn run(options: Options, mut config: Config) -> anyhow::Result<()> {
    if !(options.speed > 0.0 && options.speed.is_finite()) {
        bail!("--speed must be a positive number");
    }
    if !(options.rate > 0.0 && options.rate <= 10_000.0) {
        bail!("--rate must be between 0 and 10000 requests per second");
    }
    crate::config::speed_up(&mut config, options.speed);
    if let Some((smtp, to)) = &options.email {
        config.alerting.notify_config = email_config(&config, smtp, to)?;
    }
    let ui = format!("http://{}", loopback_if_unspecified(config.ui.http_addr));
    let (stop_server, server_stopped) = oneshot::channel::<()>();
    let mut server = None;
    let endpoint = match &options.endpoint {
        Some(endpoint) => endpoint.clone(),
        None => {
            let endpoint = format!(
                "http://{}",
                loopback_if_unspecified(config.ingest.otlp_grpc_addr)
            );
            let (ready, is_ready) = oneshot::channel::<()>();
            let mut task = tokio::spawn(serve::run(
                config,
                async {
                    let _ = server_stopped.await;
                    Ok(())
                },
                move || {
                    let _ = ready.send(());
                },
            ));
            tokio::select! {
                _ = is_ready => {}
                result = &mut task => {
                    result.context("the server task failed")??;
                    bail!("the server stopped before it was ready");
                }
            }
            server = Some(task);
            println!("Spyglass is running: open {ui}");
            match &options.email {
                Some((smtp, to)) => println!("Notifications: e-mail to {to} through {smtp}"),
                None => println!("Notifications: to the log; see {ui}/notifications"),
            }
            endpoint
        }
    };
    let target = Target {
        endpoint: endpoint.clone(),
        token: options.token.clone(),
    };
    let acks = Arc::new(Acks::recording_to(options.record_acks.as_deref())?);
    let shop = Shop::new(&target, acks.clone())?;
    println!(
        "Shop: frontend, checkout, cart, payments, inventory and shipping with PostgreSQL and Redis, {} requests/s to {endpoint}; incidents every 10 min{}. Ctrl+C stops.",
        options.rate,
        if options.speed == 1.0 {
            String::new()
        } else {
            format!(" / {}", options.speed)
        }
    );

    let (stop_shop, shop_stopped) = watch::channel(false);
    let traffic = tokio::spawn(traffic(
        shop,
        options.rate,
        options.speed,
        shop_stopped,
        acks.clone(),
    ));
    serve::shutdown_signal().await?;
    let _ = stop_shop.send(true);
    let shop = traffic.await.context("the shop task failed")?;
    tokio::task::spawn_blocking(move || shop.shutdown()).await?;
    acks.finish()?;
    println!(
        "\nacknowledged: spans={}",
        acks.spans.load(Ordering::Relaxed)
    );
    if let Some(task) = server {
        let _ = stop_server.send(());
        task.await.context("the server task failed")??;
    }
    Ok(())
}

/// Serves `rate` requests per second until `stop`, showing a status line; gives the shop back
/// for its final flush.
async fn traffic(
    mut shop: Shop,
    rate: f64,
    speed: f64,
    mut stop: watch::Receiver<bool>,
    acks: Arc<Acks>,
) -> Shop {
    let timeline = Timeline::new(Instant::now(), speed);
    let terminal = std::io::stdout().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut phase: Option<Phase> = None;
    let mut status = Status::new();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let now = Instant::now();
        let (current, left) = timeline.at(now);
        if phase != Some(current) {
            if let Some(previous) = phase.filter(|p| *p != Phase::Steady) {
                status.line(terminal, &format!("timeline: {} ends", previous.describe()));
            }
            if current != Phase::Steady {
                status.line(
                    terminal,
                    &format!("timeline: {} begins", current.describe()),
                );
            }
            phase = Some(current);
        }
        let served = shop.serve_one(current);
        status.requests += 1;
        status.failed += u64::from(served.failed);
        status.show(terminal, current, left, &acks);
    }
    shop
}

/// The live status line: on a terminal rewritten in place once a second, otherwise printed
/// every ten seconds.
struct Status {
    requests: u64,
    failed: u64,
    since: Instant,
    shown_requests: u64,
    shown_failed: u64,
}

impl Status {
    fn new() -> Self {
        Self {
            requests: 0,
            failed: 0,
            since: Instant::now(),
            shown_requests: 0,
            shown_failed: 0,
        }
    }

    fn line(&self, terminal: bool, text: &str) {
        if terminal {
            print!("\r\x1b[2K");
        }
        println!("{text}");
    }

    fn show(&mut self, terminal: bool, phase: Phase, left: Duration, acks: &Acks) {
        let elapsed = self.since.elapsed();
        let every = if terminal { 1.0 } else { 10.0 };
        if elapsed.as_secs_f64() < every {
            return;
        }
        let seconds = elapsed.as_secs_f64();
        let rate = (self.requests - self.shown_requests) as f64 / seconds;
        let failed = (self.failed - self.shown_failed) as f64 / seconds;
        let incident = match phase {
            Phase::Steady => format!("steady (next incident in {}s)", left.as_secs()),
            other => format!("INCIDENT: {} ({}s left)", other.describe(), left.as_secs()),
        };
        let text = format!(
            "{rate:.0} req/s, {failed:.1} failed/s · {} spans acknowledged · {incident}",
            acks.spans.load(Ordering::Relaxed)
        );
        if terminal {
            print!("\r\x1b[2K{text}");
            let _ = std::io::stdout().flush();
        } else {
            println!("{text}");
        }
        self.since = Instant::now();
        self.shown_requests = self.requests;
        self.shown_failed = self.failed;
    }
}

fn loopback_if_unspecified(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    if addr.ip().is_unspecified() {
        std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
    } else {
        addr
    }
}
