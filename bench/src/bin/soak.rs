//! Soak with an RSS trace (issue 13, BENCHMARKS.md "Reliability"): `smartsite serve` (release)
//! under steady QoS 1 load at `--rate` msg/s for `--minutes`, its resident memory and thread
//! count sampled every second from /proc. Writes the trace as CSV and as an SVG chart
//! (`--out PREFIX` → PREFIX.csv, PREFIX.svg) and prints the least-squares slope of RSS and of the
//! thread count after `--warmup-minutes`.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use smartsite_bench::fleet::{onboard_fleet, serve};
use smartsite_bench::procfs::{Sample, Sampler, csv, peaks, slope, svg_chart};

#[derive(Debug, Parser)]
struct Args {
    /// The smartsite binary (release).
    #[arg(long, default_value = "target/release/smartsite")]
    smartsite: PathBuf,
    #[arg(long, default_value_t = 100)]
    devices: usize,
    /// Messages per second over the fleet (half the peak mqtt-throughput measures).
    #[arg(long)]
    rate: f64,
    #[arg(long, default_value_t = 10)]
    minutes: u64,
    /// Samples before this are left out of the slope.
    #[arg(long, default_value_t = 2.0)]
    warmup_minutes: f64,
    /// Unacknowledged QoS 1 publishes per device.
    #[arg(long, default_value_t = 100)]
    inflight: u16,
    /// Where the trace goes: PREFIX.csv and PREFIX.svg.
    #[arg(long, default_value = "bench/results/soak")]
    out: PathBuf,
    /// A label for the chart's title (e.g. the commit).
    #[arg(long, default_value = "")]
    label: String,
}

/// The slope of `f` over the samples after `warmup_s`, per minute.
fn slope_per_minute(samples: &[Sample], warmup_s: f64, f: impl Fn(&Sample) -> f64) -> f64 {
    let pts: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.t >= warmup_s)
        .map(|s| (s.t / 60.0, f(s)))
        .collect();
    slope(&pts).unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let server = serve(&a.smartsite, &["--mqtt", "127.0.0.1:0"])?;
    let fleet = onboard_fleet(&server.data_dir.join("endpoints.json")).await?;
    eprintln!("soak: provisioning {} devices…", a.devices);
    smartsite::simulate::run(fleet.simulate(
        a.devices,
        a.inflight,
        0.0,
        None,
        Some(a.devices as u64 * 10),
    ))
    .await?;
    let sampler = Sampler::start(server.pid(), Duration::from_secs(1));
    let summary = smartsite::simulate::run(fleet.simulate(
        a.devices,
        a.inflight,
        a.rate,
        Some(a.minutes * 60),
        None,
    ))
    .await?;
    let samples = sampler.stop();
    let warmup_s = a.warmup_minutes * 60.0;
    let rss_slope = slope_per_minute(&samples, warmup_s, |s| s.rss_kb as f64);
    let thr_slope = slope_per_minute(&samples, warmup_s, |s| s.threads as f64);
    let (rss_peak, thr_peak) = peaks(&samples);
    let first = samples.first().copied();
    let last = samples.last().copied();
    if let Some(dir) = a.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let csv_path = a.out.with_extension("csv");
    let svg_path = a.out.with_extension("svg");
    std::fs::write(&csv_path, csv(&samples))?;
    let title = format!(
        "smartsite serve, {} devices at {:.0} msg/s for {} min{}: RSS {:+.0} KB/min, threads {:+.2}/min after warm-up",
        a.devices,
        a.rate,
        a.minutes,
        if a.label.is_empty() {
            String::new()
        } else {
            format!(" ({})", a.label)
        },
        rss_slope,
        thr_slope
    );
    std::fs::write(&svg_path, svg_chart(&samples, warmup_s, &title))?;
    println!("{summary}");
    println!(
        "| devices | rate (msg/s) | acked | minutes | RSS first → last (MB) | RSS peak (MB) | RSS slope after {:.0} min warm-up (KB/min) | threads first → last (peak) | threads slope (/min) |",
        a.warmup_minutes
    );
    println!("|---:|---:|---:|---:|---|---:|---:|---|---:|");
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "| {} | {:.0} | {} | {} | {:.0} → {:.0} | {:.0} | {:.0} | {} → {} ({}) | {:.2} |",
        a.devices,
        a.rate,
        summary["acked"],
        a.minutes,
        first.map_or(0.0, |s| mb(s.rss_kb)),
        last.map_or(0.0, |s| mb(s.rss_kb)),
        mb(rss_peak),
        rss_slope,
        first.map_or(0, |s| s.threads),
        last.map_or(0, |s| s.threads),
        thr_peak,
        thr_slope
    );
    println!("trace: {} and {}", csv_path.display(), svg_path.display());
    println!("{}", smartsite_bench::machine_facts());
    Ok(())
}
