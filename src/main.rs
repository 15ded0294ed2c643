//! `spyglass`: the binary. Command line, configuration loading, wiring, start-up order and
//! graceful shutdown live here; everything else lives in the library crates.

mod check;
mod cluster;
mod config;
mod demo;
mod otel;
mod query_cli;
mod rules_cli;
mod selfmetrics;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::Config;

/// Ingest allocates and frees many small strings on every core; glibc's allocator spent close
/// to half of the server's CPU time in its free lists under that load (perf, ingest benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc's `mi_option_t` (`mimalloc.h`, v2 and v3 alike).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// How long freed memory stays with the process before mimalloc returns it to the OS, in ms
/// (whole arenas: ten times longer). mimalloc's default is 10 ms. Longer delays kept more than
/// the memory budget leaves (see `return_kept_memory`).
const PURGE_DELAY_MS: std::ffi::c_long = 250;

/// Under sustained ingest the memory a flush frees is allocated again soon. Returned to the OS
/// at once, each page came back through a page fault that zeroes it (2 MiB at a time with
/// transparent huge pages): 290k faults and ~9% of the server's CPU in the ingest benchmark.
/// Kept a moment, it is reused; kept ten seconds, each thread's heap held its own peak and a
/// burst of large requests took the process past its memory budget.
/// `MIMALLOC_PURGE_DELAY` in the environment overrides this (`-1`: never return it).
fn keep_freed_memory_for_reuse() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one integer option of the allocator; no memory is touched.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, PURGE_DELAY_MS) };
    }
}

/// Returns the freed memory mimalloc keeps for reuse to the OS (this thread's and what waits in
/// its arenas), when the memory budget is short: kept memory counts in the process's size but
/// in no share of the budget.
pub(crate) fn return_kept_memory() {
    // SAFETY: asks the allocator to purge memory nothing holds; no live allocation is touched.
    unsafe { libmimalloc_sys::mi_collect(true) };
}

#[derive(Parser)]
#[command(
    name = "spyglass",
    version,
    about = "Observability and alerting backend for OpenTelemetry"
)]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// Where `serve` (and the server `demo` starts) listens and keeps its data.
#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file (see `spyglass config`); flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Data directory [default: ./data, ./demo-data for the demo].
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// OTLP/gRPC listen address [default: 127.0.0.1:4317].
    #[arg(long)]
    otlp_grpc: Option<SocketAddr>,
    /// OTLP/HTTP listen address [default: 127.0.0.1:4318].
    #[arg(long)]
    otlp_http: Option<SocketAddr>,
    /// UI and API listen address [default: 127.0.0.1:8080].
    #[arg(long)]
    http: Option<SocketAddr>,
    /// What this process does [default: all]: "ingest", "query" and "alert" share
    /// [store.object_store] with the others.
    #[arg(long, value_enum)]
    role: Option<config::Role>,
    /// Alert rule file (Prometheus format; a glob is allowed); repeat for more. Added to
    /// `[alerting] rule_files`.
    #[arg(long = "rules", value_name = "PATH")]
    rules: Vec<String>,
    /// Notification config in Alertmanager's format (routes, receivers, inhibit rules);
    /// replaces `[alerting] notify_config`.
    #[arg(long = "notify-config", value_name = "PATH")]
    notify_config: Option<String>,
}

impl ServeArgs {
    /// The configuration: defaults (`base`), then the file, then the flags.
    fn load(self, base: Config) -> anyhow::Result<Config> {
        let mut cfg = match self.config {
            Some(path) => Config::load_over(&base, &path)?,
            None => base,
        };
        if let Some(dir) = self.data_dir {
            cfg.data_dir = dir;
        }
        if let Some(addr) = self.otlp_grpc {
            cfg.ingest.otlp_grpc_addr = addr;
        }
        if let Some(addr) = self.otlp_http {
            cfg.ingest.otlp_http_addr = addr;
        }
        if let Some(addr) = self.http {
            cfg.ui.http_addr = addr;
        }
        if let Some(role) = self.role {
            cfg.role = role;
        }
        cfg.alerting.rule_files.extend(self.rules);
        if let Some(path) = self.notify_config {
            cfg.alerting.notify_config = path;
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run Spyglass: store, receivers, UI and API.
    Serve(ServeArgs),
    /// Run Spyglass on ./demo-data with a simulated shop sending it telemetry and incidents.
    Demo {
        #[command(flatten)]
        serve: ServeArgs,
        /// Divide the 10-minute incident timeline by this. Each alert window then holds this
        /// many times fewer requests: raise --rate with it, or one healthy failure among a
        /// dozen calls crosses the 5% error-ratio threshold.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Shop requests per second.
        #[arg(long, default_value_t = 20.0)]
        rate: f64,
        /// Send the shop's telemetry to this OTLP/gRPC endpoint instead of starting Spyglass.
        #[arg(long)]
        endpoint: Option<String>,
        /// Bearer token for the endpoint.
        #[arg(long)]
        token: Option<String>,
        /// Write `trace_id span_id` of every acknowledged span to this file.
        #[arg(long, hide = true)]
        record_acks: Option<PathBuf>,
        /// Send the incidents' notifications by e-mail through this SMTP server (host:port,
        /// plain SMTP as a local test server speaks it) instead of to the log.
        #[arg(long, value_name = "HOST:PORT", requires = "email_to")]
        smtp: Option<String>,
        /// Who gets the demo's e-mails.
        #[arg(long, value_name = "ADDR", requires = "smtp")]
        email_to: Option<String>,
    },
    /// Print the default configuration with the documentation of every field.
    Config,
    /// Run read-only SQL on a running Spyglass and print the answer (with the reading token
    /// in `SPYGLASS_TOKEN` when the server has `[ui] tokens`).
    Query {
        /// `SELECT`, `WITH` or `EXPLAIN` over the tables spans, metrics and logs.
        sql: String,
        /// The Spyglass HTTP API.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
        #[arg(long, value_enum, default_value_t = query_cli::Format::Table)]
        format: query_cli::Format,
    },
    /// Notification configs (Alertmanager's format).
    Notify {
        #[command(subcommand)]
        command: NotifyCommand,
    },
    /// Alert rule files.
    Rules {
        #[command(subcommand)]
        command: RulesCommand,
    },
    /// Write test traces to a Spyglass and read them back; exit 1 on any loss or mismatch.
    Check {
        /// OTLP/gRPC endpoint of the Spyglass under test.
        #[arg(long, default_value = "http://127.0.0.1:4317")]
        endpoint: String,
        /// Its HTTP API [default: port 8080 on the endpoint's host].
        #[arg(long)]
        api: Option<String>,
        /// Bearer token for the endpoint.
        #[arg(long)]
        token: Option<String>,
        /// How many traces to write.
        #[arg(long, default_value_t = 20)]
        traces: usize,
        /// How long to wait for everything to be readable, in seconds.
        #[arg(long, default_value_t = 10)]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum NotifyCommand {
    /// Check notification configs as `amtool check-config` does: every mistake with file and
    /// line, every field Spyglass does not support named; exit 1 on any.
    Check {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum RulesCommand {
    /// Check rule files as `promtool check rules` does: every mistake with file and line;
    /// exit 1 on any.
    Check {
        /// Rule files (Prometheus format, with `sql:` rules too).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Evaluate rules over the data a running Spyglass holds, from one time to another, and
    /// print when each alert would have been pending, firing and resolved.
    Backtest {
        /// Rule files; none: the built-in rules alone.
        paths: Vec<PathBuf>,
        /// Start: RFC 3339, Unix nanoseconds, or `now-2h`.
        #[arg(long)]
        from: String,
        /// End [default: now].
        #[arg(long, default_value = "now")]
        to: String,
        /// Time between evaluations, e.g. `30s` [default: the server's evaluation interval].
        #[arg(long)]
        step: Option<String>,
        /// Leave the built-in rules out.
        #[arg(long)]
        no_builtin: bool,
        /// The Spyglass HTTP API.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        api: String,
    },
}

/// A request to Spyglass's API with the reading token from `SPYGLASS_TOKEN`, when set (the
/// server's `[ui] tokens`).
pub(crate) fn reading_token(request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    match std::env::var("SPYGLASS_TOKEN") {
        Ok(token) if !token.is_empty() => request.bearer_auth(token),
        _ => request,
    }
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    keep_freed_memory_for_reuse();
    let cli = Cli::parse();
    let runtime = || tokio::runtime::Runtime::new();
    match cli.command {
        Command::Config => {
            print!("{}", config::documented_defaults());
            Ok(())
        }
        Command::Serve(args) => {
            init_logging(cli.log_format);
            let cfg = args.load(Config::default())?;
            runtime()?.block_on(serve::serve(cfg))
        }
        Command::Demo {
            serve,
            speed,
            rate,
            endpoint,
            token,
            record_acks,
            smtp,
            email_to,
        } => {
            // The demo's terminal is for its status line: the server logs only warnings.
            if std::env::var_os("RUST_LOG").is_none() {
                // SAFETY: no other thread exists yet.
                unsafe { std::env::set_var("RUST_LOG", "warn") };
            }
            init_logging(cli.log_format);
            let cfg = serve.load(config::demo_defaults())?;
            let options = demo::Options {
                speed,
                rate,
                endpoint,
                token,
                record_acks,
                email: smtp.zip(email_to),
            };
            runtime()?.block_on(demo::run(options, cfg))
        }
        Command::Notify {
            command: NotifyCommand::Check { paths },
        } => std::process::exit(if rules_cli::check_notify(&paths) {
            0
        } else {
            1
        }),
        Command::Rules {
            command: RulesCommand::Check { paths },
        } => std::process::exit(if rules_cli::check(&paths) { 0 } else { 1 }),
        Command::Rules {
            command:
                RulesCommand::Backtest {
                    paths,
                    from,
                    to,
                    step,
                    no_builtin,
                    api,
                },
        } => runtime()?.block_on(rules_cli::backtest(rules_cli::Backtest {
            paths,
            from,
            to,
            step,
            builtin: !no_builtin,
            api,
        })),
        Command::Query { sql, api, format } => {
            runtime()?.block_on(query_cli::run(&api, &sql, format))
        }
        Command::Check {
            endpoint,
            api,
            token,
            traces,
            timeout,
        } => {
            let options = check::Options {
                api: api.unwrap_or_else(|| otel::default_api(&endpoint)),
                target: otel::Target { endpoint, token },
                traces: traces.max(1),
                timeout: std::time::Duration::from_secs(timeout),
            };
            let passed = runtime()?.block_on(check::run(options))?;
            std::process::exit(if passed { 0 } else { 1 });
        }
    }
}
