//! `spyglass`: the binary. Command line, configuration loading, wiring, start-up order and
//! graceful shutdown live here; everything else lives in the library crates.

mod config;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

/// Ingest allocates and frees many small strings on every core; glibc's allocator spent close
/// to half of the server's CPU time in its free lists under that load (perf, ingest benchmark).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

#[derive(Subcommand)]
enum Command {
    /// Run Spyglass: store, receivers, UI and API.
    Serve {
        /// TOML configuration file (see `spyglass config`); flags override it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Data directory [default: ./data].
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
    },
    /// Print the default configuration with the documentation of every field.
    Config,
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
    let cli = Cli::parse();
    match cli.command {
        Command::Config => {
            print!("{}", config::documented_defaults());
            Ok(())
        }
        Command::Serve {
            config,
            data_dir,
            otlp_grpc,
            otlp_http,
            http,
        } => {
            init_logging(cli.log_format);
            let mut cfg = match config {
                Some(path) => Config::load(&path)?,
                None => Config::default(),
            };
            if let Some(dir) = data_dir {
                cfg.data_dir = dir;
            }
            if let Some(addr) = otlp_grpc {
                cfg.ingest.otlp_grpc_addr = addr;
            }
            if let Some(addr) = otlp_http {
                cfg.ingest.otlp_http_addr = addr;
            }
            if let Some(addr) = http {
                cfg.ui.http_addr = addr;
            }
            cfg.validate()?;
            let runtime = tokio::runtime::Runtime::new()?;
            runtime.block_on(serve::serve(cfg))
        }
    }
}
