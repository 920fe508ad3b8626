//! Sign-in flood with memory sampled (issue 13 item 1, BENCHMARKS.md "Reliability"): `--clients`
//! concurrent clients post wrong passwords for `admin` to `POST /v1/auth/token` for `--seconds`
//! against `smartsite serve` (release); RSS and threads are sampled every 250 ms during the flood
//! and for `--after-seconds` after it. Reports the answers by status, the guesses per second the
//! server actually checked (answered 401), RSS and threads during and after, and whether the
//! right password still signs in right after the flood.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use serde_json::json;
use smartsite_bench::fleet::{ADMIN_PASSWORD, serve};
use smartsite_bench::procfs::{Sampler, peaks};
use tokio::sync::Mutex;

#[derive(Debug, Parser)]
struct Args {
    /// The smartsite binary (release).
    #[arg(long, default_value = "target/release/smartsite")]
    smartsite: PathBuf,
    /// Concurrent clients, each posting one failed sign-in after another.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// How long memory is watched after the flood.
    #[arg(long, default_value_t = 30)]
    after_seconds: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let server = serve(&a.smartsite, &[])?;
    let url = format!("{}/v1/auth/token", server.http());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()?;
    // One right sign-in first: the server is warm and the baseline is a working process.
    let ok = http
        .post(&url)
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await?
        .status();
    anyhow::ensure!(ok.is_success(), "the right password answered {ok}");

    let sampler = Sampler::start(server.pid(), Duration::from_millis(250));
    let statuses: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    let mut tasks = Vec::new();
    for c in 0..a.clients {
        let (http, url, statuses) = (http.clone(), url.clone(), statuses.clone());
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                n += 1;
                let body = json!({"username": "admin", "password": format!("guess-{c}-{n}")});
                let key = match http.post(&url).json(&body).send().await {
                    Ok(r) => r.status().as_u16().to_string(),
                    Err(e) if e.is_timeout() => "timeout".to_owned(),
                    Err(_) => "connection error".to_owned(),
                };
                *statuses.lock().await.entry(key).or_default() += 1;
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let flood_s = started.elapsed().as_secs_f64();
    // Right after the flood: does the right password still work?
    let after = http
        .post(&url)
        .json(&json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await
        .map_or_else(
            |e| format!("error: {e}"),
            |r| r.status().as_u16().to_string(),
        );
    tokio::time::sleep(Duration::from_secs(a.after_seconds)).await;
    let samples = sampler.stop();
    let during: Vec<_> = samples.iter().copied().filter(|s| s.t <= flood_s).collect();
    let (peak_rss, peak_threads) = peaks(&during);
    let first = samples.first().copied();
    let last = samples.last().copied();
    let statuses = statuses.lock().await.clone();
    let checked = statuses.get("401").copied().unwrap_or(0);
    let total: u64 = statuses.values().sum();
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "| clients | seconds | attempts | answers | guesses checked/s (401) | RSS before (MB) | RSS peak during (MB) | RSS {} s after (MB) | threads before → peak → after | right password right after |",
        a.after_seconds
    );
    println!("|---:|---:|---:|---|---:|---:|---:|---:|---|---|");
    println!(
        "| {} | {:.1} | {total} | {} | {:.1} | {:.0} | {:.0} | {:.0} | {} → {} → {} | {after} |",
        a.clients,
        flood_s,
        statuses
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", "),
        checked as f64 / flood_s,
        first.map_or(0.0, |s| mb(s.rss_kb)),
        mb(peak_rss),
        last.map_or(0.0, |s| mb(s.rss_kb)),
        first.map_or(0, |s| s.threads),
        peak_threads,
        last.map_or(0, |s| s.threads),
    );
    println!("{}", smartsite_bench::machine_facts());
    Ok(())
}
