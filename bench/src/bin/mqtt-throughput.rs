//! End-to-end MQTT throughput of the single-box edition, and of Debian's mosquitto with the same
//! client, in one run (BENCHMARKS.md, issue 6 item 7).
//!
//! 1. Starts `smartsite serve` (release build) on a fresh data dir with plain MQTT, onboards a
//!    tenant over HTTP, provisions `--devices` tower cranes, and runs `smartsite simulate` with
//!    QoS 1 at full speed: every message is authenticated, ACL-checked, decoded, validated,
//!    stored durably (fsync) with its hourly aggregate, the latest state updated and the alarm
//!    rules evaluated before its PUBACK.
//! 2. Starts mosquitto (no persistence) and runs the same simulator against it anonymously: the
//!    transport limit of this machine with this client. Twice: publishers only (pub→ack), then
//!    with one more connection subscribed to every device's telemetry at QoS 1 (pub→sub, the
//!    throughput counted at that subscriber).
//!
//! The simulator runs in this process: its CPU is reported as the client's.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use serde_json::Value;
use smartsite::simulate::{Scenario, SimulateArgs};
use smartsite_bench::fleet::onboard_fleet;
use smartsite_bench::procfs::{cpu_seconds, thread_cpu_seconds};
use smartsite_shared::store::embedded::WRITER_THREAD;

#[derive(Debug, Parser)]
struct Args {
    /// The smartsite binary (release).
    #[arg(long, default_value = "target/release/smartsite")]
    smartsite: PathBuf,
    #[arg(long, default_value = "/usr/sbin/mosquitto")]
    mosquitto: PathBuf,
    #[arg(long, default_value_t = 100)]
    devices: usize,
    #[arg(long, default_value_t = 200_000)]
    messages: u64,
    /// Unacknowledged QoS 1 publishes per device.
    #[arg(long, default_value_t = 100)]
    inflight: u16,
    /// Skip the smartsite run (mosquitto only).
    #[arg(long)]
    mosquitto_only: bool,
    /// Skip the mosquitto runs (where it is not installed).
    #[arg(long, conflicts_with = "mosquitto_only")]
    smartsite_only: bool,
}

/// Stops the broker when dropped: SIGTERM first (so `smartsite serve` shuts down cleanly and,
/// built with `--features profile` and run with `SMARTSITE_PROFILE`, writes its profile), then
/// SIGKILL after 10 s.
struct Killer(Child);
impl Drop for Killer {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// One measured run: the simulator's summary, the broker's and the client's CPU seconds.
struct Run {
    summary: Value,
    broker_cpu: f64,
    /// Of the broker's CPU, its store-writer thread's (smartsite only).
    writer_cpu: f64,
    client_cpu: f64,
}

async fn measured(broker: u32, sim: SimulateArgs) -> anyhow::Result<Run> {
    let (b0, c0) = (
        cpu_seconds(broker).unwrap_or(0.0),
        cpu_seconds(std::process::id()).unwrap_or(0.0),
    );
    let w0 = thread_cpu_seconds(broker, WRITER_THREAD);
    let summary = smartsite::simulate::run(sim).await?;
    Ok(Run {
        summary,
        broker_cpu: cpu_seconds(broker).unwrap_or(0.0) - b0,
        writer_cpu: thread_cpu_seconds(broker, WRITER_THREAD) - w0,
        client_cpu: cpu_seconds(std::process::id()).unwrap_or(0.0) - c0,
    })
}

async fn smartsite_run(args: &Args) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let child = Command::new(&args.smartsite)
        .args(["serve", "--data-dir"])
        .arg(dir.path())
        .args([
            "--http",
            "127.0.0.1:0",
            "--mqtts",
            "127.0.0.1:0",
            "--mqtt",
            "127.0.0.1:0",
        ])
        .env("SMARTSITE_ADMIN_PASSWORD", "Bench-Admin-2026!")
        .env("SMARTSITE_LOG_FORMAT", "json")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start {}", args.smartsite.display()))?;
    let server = Killer(child);
    let endpoints = dir.path().join("endpoints.json");
    let started = Instant::now();
    while !endpoints.exists() {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("smartsite serve did not start");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fleet = onboard_fleet(&endpoints).await?;
    eprintln!("smartsite: provisioning {} devices…", args.devices);
    let sim =
        |messages: u64| fleet.simulate(args.devices, args.inflight, 0.0, None, Some(messages));
    // Provision and warm up, then measure.
    smartsite::simulate::run(sim(args.devices as u64 * 10)).await?;
    measured(server.0.id(), sim(args.messages)).await
}

async fn mosquitto_run(args: &Args, sink: bool) -> anyhow::Result<Run> {
    let dir = tempfile::tempdir()?;
    let port = free_port()?;
    let conf = dir.path().join("mosquitto.conf");
    std::fs::write(
        &conf,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_inflight_messages 0\nmax_queued_messages 100000\n"
        ),
    )?;
    let child = Command::new(&args.mosquitto)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| {
            format!(
                "cannot start {} (apt-get install mosquitto)",
                args.mosquitto.display()
            )
        })?;
    let broker = Killer(child);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sim = |messages: u64| SimulateArgs {
        endpoints: None,
        devices: args.devices,
        rate: 0.0,
        scenario: Scenario::Normal,
        duration: None,
        messages: Some(messages),
        project_id: None,
        model_id: None,
        token: None,
        state: None,
        broker: Some(format!("127.0.0.1:{port}")),
        inflight: args.inflight,
        sink,
    };
    smartsite::simulate::run(sim(args.devices as u64 * 10)).await?;
    measured(broker.0.id(), sim(args.messages)).await
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();
    if !args.mosquitto_only {
        let r = smartsite_run(&args).await?;
        let n = &r.summary["acked"];
        let rate = &r.summary["acked_per_second"];
        rows.push((
            "smartsite serve: pub→ack (token auth, durable store, alarms on)",
            n.clone(),
            r.summary["seconds"].clone(),
            rate.clone(),
            r,
        ));
    }
    if args.smartsite_only {
        print_rows(rows);
        return Ok(());
    }
    let r = mosquitto_run(&args, false).await?;
    rows.push((
        "mosquitto 2.0 (no persistence): pub→ack, same client",
        r.summary["acked"].clone(),
        r.summary["seconds"].clone(),
        r.summary["acked_per_second"].clone(),
        r,
    ));
    let r = mosquitto_run(&args, true).await?;
    rows.push((
        "mosquitto 2.0 (no persistence): pub→sub, one QoS 1 subscriber to all",
        r.summary["delivered"].clone(),
        r.summary["delivered_seconds"].clone(),
        r.summary["delivered_per_second"].clone(),
        r,
    ));
    print_rows(rows);
    Ok(())
}

type ResultRow = (&'static str, Value, Value, Value, Run);

fn print_rows(rows: Vec<ResultRow>) {
    println!(
        "| run | devices | messages | seconds | msg/s | broker CPU s (store writer) | client CPU s |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for (name, n, secs, rate, r) in rows {
        let writer = if r.writer_cpu > 0.0 {
            format!(" ({:.1})", r.writer_cpu)
        } else {
            String::new()
        };
        println!(
            "| {name} | {} | {n} | {secs} | {rate} | {:.1}{writer} | {:.1} |",
            r.summary["devices"], r.broker_cpu, r.client_cpu
        );
    }
}
