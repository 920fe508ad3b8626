//! kill -9 × N under MQTT load (issue 13, BENCHMARKS.md "Reliability"): starts `smartsite serve`
//! (release) on one data dir, drives QoS 1 telemetry from `--devices` devices and safety-fund
//! expenditures over HTTP, kills the server with SIGKILL at a random moment `--rounds` times,
//! restarting it each time, then looks up every acknowledged message and expenditure one by one
//! and verifies every ledger. Exits 1 when anything acknowledged is missing.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use smartsite_tests::load::{KillRun, kill_run, summary_lines};

#[derive(Debug, Parser)]
struct Args {
    /// The smartsite binary (release).
    #[arg(long, default_value = "target/release/smartsite")]
    smartsite: PathBuf,
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Unacknowledged QoS 1 publishes per device.
    #[arg(long, default_value_t = 100)]
    inflight: usize,
    /// Messages per second over the fleet (default: as fast as acknowledgements allow).
    #[arg(long)]
    rate: Option<f64>,
    /// Shortest time under load before a kill, in milliseconds.
    #[arg(long, default_value_t = 2_000)]
    min_up_ms: u64,
    /// Longest time under load before a kill, in milliseconds.
    #[arg(long, default_value_t = 8_000)]
    max_up_ms: u64,
    /// Seeds the kill moments (default: the clock; printed either way).
    #[arg(long)]
    seed: Option<u64>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let r = kill_run(&KillRun {
        bin: a.smartsite,
        rounds: a.rounds,
        devices: a.devices,
        inflight: a.inflight,
        rate: a.rate,
        min_up: Duration::from_millis(a.min_up_ms),
        max_up: Duration::from_millis(a.max_up_ms),
        seed,
        env: vec![("RUST_LOG".into(), "error".into())],
    })
    .await?;
    println!("{}", summary_lines(&r));
    println!("{}", smartsite_bench::machine_facts());
    for (d, s) in r.missing.iter().take(20) {
        println!("missing: device {d} message {s}");
    }
    for (d, s, v) in r.mismatched.iter().take(20) {
        println!("other values: device {d} message {s}: {v}");
    }
    for v in &r.broken_ledgers {
        println!("broken ledger: {v}");
    }
    if !r.lossless() {
        anyhow::bail!("acknowledged data was lost or a ledger is broken");
    }
    Ok(())
}
