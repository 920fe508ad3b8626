//! The `smartsite` command: the single-box edition (`serve`) and, later, the device simulator,
//! the HJ 212 gateway and admin verbs.

pub mod admin;
pub mod broker;
pub mod console;
pub mod device_link;
pub mod gateway;
pub mod hj212;
pub mod hj212_sink;
pub mod http_server;
pub mod limits;
#[cfg(feature = "profile")]
pub mod profile;
pub mod serve;
pub mod simulate;
pub mod uplink;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use smartsite_shared::telemetry::{self, LogFormat};

#[derive(Debug, Parser)]
#[command(
    name = "smartsite",
    version,
    about = "Smart construction site platform"
)]
pub struct Cli {
    /// Log format on stderr: `pretty` for a terminal, `json` for collectors.
    #[arg(
        long,
        global = true,
        env = "SMARTSITE_LOG_FORMAT",
        default_value = "pretty"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the single-box edition: HTTP API, store and scheduler in one process.
    Serve(serve::ServeArgs),
    /// Operator client of the HTTP API: sign in, onboard integrators, customers, projects, users.
    Admin(admin::AdminArgs),
    /// A fleet of simulated devices publishing telemetry over MQTT.
    Simulate(simulate::SimulateArgs),
    /// Protocol gateways for the AWS edition.
    #[command(subcommand)]
    Gateway(GatewayCommand),
}

#[derive(Debug, Subcommand)]
pub enum GatewayCommand {
    /// HJ 212 TCP in, MQTT out (per-device credentials), acknowledging after the broker did.
    Hj212(gateway::GatewayArgs),
}

/// Threads tokio may start for blocking work (store reads, file I/O). Its default, 512, let a
/// burst of reads grow the server to hundreds of threads that then idled; reads wait their turn
/// instead. `SMARTSITE_MAX_BLOCKING_THREADS` overrides it.
fn max_blocking_threads() -> usize {
    std::env::var("SMARTSITE_MAX_BLOCKING_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(32)
}

/// Parses the command line, runs the command, and maps failure to exit code 1 with the cause
/// chain on stderr.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    telemetry::init(cli.log_format);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(max_blocking_threads())
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("smartsite: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Serve(args) => serve::run(args, serve::shutdown_signal()).await,
            Command::Admin(args) => admin::run(args).await,
            Command::Simulate(args) => simulate::run(args).await.map(|_| ()),
            Command::Gateway(GatewayCommand::Hj212(args)) => gateway::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smartsite: {e:#}");
            ExitCode::FAILURE
        }
    }
}
