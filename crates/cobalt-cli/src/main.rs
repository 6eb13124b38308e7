//! The `cobalt` command: `cobalt serve` runs the services in the foreground.
//!
//! Owns: argument parsing, logging setup, signal handling. Must not do: protocol or storage
//! work; it only wires `cobalt-server`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use cobalt_server::{Server, ServerConfig};

/// Cobalt: a self-hosted Azure Batch and Blob Storage service.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the services in the foreground until Ctrl-C or SIGTERM.
    ///
    /// Example: cobalt serve --data-dir /tmp/cobalt --blob-port 0 --batch-port 0
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Where state lives [default: the per-user data directory, e.g. ~/.local/share/cobalt].
    #[arg(long, env = "COBALT_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Configuration file (TOML) with more storage and Batch accounts.
    #[arg(long, env = "COBALT_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: IpAddr,
    /// Blob service port (0 picks a free port; the log line says which).
    #[arg(long, default_value_t = 10000)]
    blob_port: u16,
    /// Batch service port (0 picks a free port; the log line says which).
    #[arg(long, default_value_t = 10100)]
    batch_port: u16,
    /// Garbage-collect uncommitted blocks older than this many seconds (Azure: 7 days).
    #[arg(long, default_value_t = 7 * 24 * 3600, hide = true)]
    uncommitted_block_ttl: u64,
    /// How often to look for expired uncommitted blocks, in seconds.
    #[arg(long, default_value_t = 3600, hide = true)]
    gc_interval: u64,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("COBALT_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let data_dir = match args.data_dir {
        Some(d) => d,
        None => dirs::data_local_dir()
            .context("no per-user data directory on this system; pass --data-dir")?
            .join("cobalt"),
    };
    let mut config = ServerConfig::new(data_dir);
    if let Some(path) = &args.config {
        config.apply(&cobalt_server::ConfigFile::load(path)?);
    }
    config.host = args.host;
    config.blob_port = args.blob_port;
    config.batch_port = args.batch_port;
    config.engine.uncommitted_ttl = Duration::from_secs(args.uncommitted_block_ttl);
    config.gc_interval = Duration::from_secs(args.gc_interval.max(1));
    let server = Server::start(config).await?;
    shutdown_signal().await;
    tracing::info!("shutting down: finishing in-flight requests");
    server.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
