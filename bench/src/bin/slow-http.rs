//! Slow HTTP clients with memory sampled (issue 13 item 4, BENCHMARKS.md "Reliability"):
//! `--connections` clients each open a connection to `smartsite serve` (release) and send a
//! request's headers one byte every `--byte-ms` milliseconds, never finishing them, for at most
//! `--seconds`. Reports how many connections the server still holds after 5, 10, 30 s and at the
//! end, how long it held the ones it closed, whether a fresh `GET /healthz` still answered
//! meanwhile (every second), and RSS and threads during the attack.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use smartsite_bench::fleet::serve;
use smartsite_bench::procfs::{Sampler, peaks};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
struct Args {
    /// The smartsite binary (release).
    #[arg(long, default_value = "target/release/smartsite")]
    smartsite: PathBuf,
    #[arg(long, default_value_t = 200)]
    connections: usize,
    /// Milliseconds between two bytes of a client's headers.
    #[arg(long, default_value_t = 1_000)]
    byte_ms: u64,
    /// Longest the attack lasts.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
}

/// One slow client: the seconds until the server closed its connection (`None`: still open at
/// the end).
async fn slow_client(addr: String, byte: Duration, until: Instant) -> Option<f64> {
    let started = Instant::now();
    let Ok(stream) = TcpStream::connect(&addr).await else {
        return Some(0.0);
    };
    let (mut rd, mut wr) = stream.into_split();
    let head = format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ");
    let closed = async move {
        // Any answer (a 408, say) or the end of the stream means the server gave up on us.
        let mut buf = [0u8; 512];
        let _ = rd.read(&mut buf).await;
    };
    let write = async move {
        for b in head.bytes().chain(std::iter::repeat(b'a')) {
            if wr.write_all(&[b]).await.is_err() {
                return;
            }
            tokio::time::sleep(byte).await;
        }
    };
    tokio::select! {
        () = closed => Some(started.elapsed().as_secs_f64()),
        () = write => Some(started.elapsed().as_secs_f64()),
        () = tokio::time::sleep_until(until.into()) => None,
    }
}

/// A fresh `GET /healthz`: its latency, or `None` when it got no 200 within 5 s.
async fn probe(http: &reqwest::Client, url: &str) -> Option<f64> {
    let t = Instant::now();
    match http.get(url).send().await {
        Ok(r) if r.status().is_success() => Some(t.elapsed().as_secs_f64()),
        _ => None,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let server = serve(&a.smartsite, &[])?;
    let addr = server.endpoints["http"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let healthz = format!("{}/healthz", server.http());
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    anyhow::ensure!(
        probe(&http, &healthz).await.is_some(),
        "/healthz does not answer"
    );

    let sampler = Sampler::start(server.pid(), Duration::from_millis(500));
    let started = Instant::now();
    let until = started + Duration::from_secs(a.seconds);
    let open = Arc::new(AtomicUsize::new(0));
    let byte = Duration::from_millis(a.byte_ms);
    let mut clients = Vec::new();
    for _ in 0..a.connections {
        let (addr, open) = (addr.clone(), open.clone());
        open.fetch_add(1, Ordering::Relaxed);
        clients.push(tokio::spawn(async move {
            let r = slow_client(addr, byte, until).await;
            open.fetch_sub(1, Ordering::Relaxed);
            r
        }));
    }
    let mut held_at = Vec::new();
    let (mut probes, mut failed, mut worst) = (0u32, 0u32, 0.0f64);
    let mut next_mark = [5u64, 10, 30].into_iter().peekable();
    while Instant::now() < until && open.load(Ordering::Relaxed) > 0 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = started.elapsed().as_secs();
        while next_mark.peek().is_some_and(|m| *m <= s) {
            if let Some(m) = next_mark.next() {
                held_at.push((m, open.load(Ordering::Relaxed)));
            }
        }
        probes += 1;
        match probe(&http, &healthz).await {
            Some(l) => worst = worst.max(l),
            None => failed += 1,
        }
    }
    let mut closed = Vec::new();
    let mut still_open = 0;
    for c in clients {
        match c.await? {
            Some(s) => closed.push(s),
            None => still_open += 1,
        }
    }
    let samples = sampler.stop();
    let (peak_rss, peak_threads) = peaks(&samples);
    let first = samples.first().copied();
    let max_closed = closed.iter().copied().fold(f64::NAN, f64::max);
    let mb = |kb: u64| kb as f64 / 1024.0;
    println!(
        "| connections | byte every (ms) | held after 5 / 10 / 30 s | held at the end ({} s) | closed by the server after (median / max s) | /healthz probes failed | worst /healthz (ms) | RSS before → peak (MB) | threads before → peak |",
        started.elapsed().as_secs()
    );
    println!("|---:|---:|---|---:|---|---:|---:|---|---|");
    println!(
        "| {} | {} | {} | {still_open} | {} | {failed} of {probes} | {:.1} | {:.0} → {:.0} | {} → {} |",
        a.connections,
        a.byte_ms,
        held_at
            .iter()
            .map(|(s, n)| format!("{n} ({s} s)"))
            .collect::<Vec<_>>()
            .join(" / "),
        if closed.is_empty() {
            "none closed".to_owned()
        } else {
            format!("{:.1} / {:.1}", median(&mut closed.clone()), max_closed)
        },
        worst * 1e3,
        first.map_or(0.0, |s| mb(s.rss_kb)),
        mb(peak_rss),
        first.map_or(0, |s| s.threads),
        peak_threads,
    );
    println!("{}", smartsite_bench::machine_facts());
    Ok(())
}
