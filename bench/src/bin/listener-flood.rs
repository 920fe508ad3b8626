//! Hostile clients against the device listeners of `smartsite serve`, with the server's memory
//! sampled from /proc (issue 13, item 2): the bench version of `tests/tests/listeners.rs`.
//!
//! Each scenario runs against a fresh server (`--mqtt` and `--hj212` on, default limits unless
//! `--serve-arg` says otherwise) and reports the server's RSS before, its peak during, and 5 s
//! after the clients are gone, and how the server dealt with the clients:
//!
//! - `garbage`: one HJ 212 connection sends up to `--garbage-mb` of bytes without a frame end.
//! - `rejects`: one HJ 212 connection sends `--reject-frames` well-framed frames that are all
//!   refused (`##0000FFFF`, the empty segment), each a quarantine record if the server takes it.
//! - `slow`: `--slow` clients on each of HJ 212, plain MQTT and MQTT over TLS trickle one byte
//!   every `--slow-gap-secs` for `--slow-secs` (a frame, a CONNECT, a TLS ClientHello that never
//!   complete): how many the server closed, and when.
//! - `hold`: `--hold` idle connections opened at once to each listener from 127.0.0.1: how many
//!   were admitted, and the RSS each costs.
//!
//! The same command runs against an older binary (which has no limit flags): give
//! `--smartsite` the binary to measure.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use smartsite_tests::Server;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

#[derive(Debug, Parser)]
struct Args {
    /// The smartsite binary to measure.
    #[arg(long, default_value = "target/release/smartsite")]
    smartsite: PathBuf,
    /// Scenarios to run, of garbage, rejects, slow, hold.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "garbage,rejects,slow,hold"
    )]
    scenarios: Vec<String>,
    /// Bytes of garbage (MiB) the `garbage` client tries to send.
    #[arg(long, default_value_t = 256)]
    garbage_mb: usize,
    /// Refused frames the `rejects` client tries to send.
    #[arg(long, default_value_t = 200_000)]
    reject_frames: usize,
    /// How long a flood's server may take to work through what it accepted.
    #[arg(long, default_value_t = 600)]
    drain_secs: u64,
    /// Slow clients per listener.
    #[arg(long, default_value_t = 1000)]
    slow: usize,
    /// How long the slow clients keep trickling. The HJ 212 idle timeout is 600 s by default:
    /// pass `--serve-arg=--hj212-idle-timeout-secs=60` (or run longer) to see it act.
    #[arg(long, default_value_t = 90)]
    slow_secs: u64,
    #[arg(long, default_value_t = 5)]
    slow_gap_secs: u64,
    /// Idle connections per listener.
    #[arg(long, default_value_t = 3000)]
    hold: usize,
    /// Times the idle connections are opened and closed again on the same server.
    #[arg(long, default_value_t = 3)]
    hold_rounds: usize,
    /// Extra `smartsite serve` arguments (repeatable), e.g. `--serve-arg=--hj212-max-connections-per-addr=5000`.
    #[arg(long)]
    serve_arg: Vec<String>,
}

/// Samples a process's RSS every 50 ms and keeps the peak.
struct Sampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// RSS in bytes; 0 once the process is gone.
fn rss(pid: u32) -> u64 {
    smartsite_tests::rss_bytes(pid).unwrap_or(0)
}

impl Sampler {
    fn start(pid: u32) -> Sampler {
        let peak = Arc::new(AtomicU64::new(rss(pid)));
        let stop = Arc::new(AtomicBool::new(false));
        let (p, s) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                p.fetch_max(rss(pid), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        Sampler { peak, stop }
    }

    fn peak(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// One scenario's figures.
struct Row {
    scenario: String,
    before: u64,
    peak: u64,
    after: u64,
    store_growth: u64,
    outcome: String,
}

struct Fresh {
    server: Server,
    _dir: tempfile::TempDir,
    hj212: String,
    mqtt: String,
    mqtts: String,
}

fn fresh(args: &Args) -> anyhow::Result<Fresh> {
    let dir = tempfile::tempdir()?;
    let mut extra = vec!["--mqtt", "127.0.0.1:0", "--hj212", "127.0.0.1:0"];
    extra.extend(args.serve_arg.iter().map(String::as_str));
    let server = Server::spawn_in_with_env(
        &args.smartsite,
        dir.path(),
        &extra,
        &[
            ("SMARTSITE_ADMIN_PASSWORD", "Bench-Admin-2026!"),
            ("RUST_LOG", "error"),
        ],
    )?;
    let ep = |k: &str| -> anyhow::Result<String> {
        Ok(server.endpoints[k]
            .as_str()
            .with_context(|| format!("no {k} endpoint"))?
            .to_owned())
    };
    Ok(Fresh {
        hj212: ep("hj212")?,
        mqtt: ep("mqtt")?,
        mqtts: ep("mqtts")?,
        server,
        _dir: dir,
    })
}

fn store_size(f: &Fresh) -> u64 {
    std::fs::metadata(f.server.data_dir.join("store.redb")).map_or(0, |m| m.len())
}

/// Runs `clients` against a fresh server and measures it.
async fn measure<F, Fut>(args: &Args, scenario: &str, clients: F) -> anyhow::Result<Row>
where
    F: FnOnce(Arc<Fresh>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    let f = Arc::new(fresh(args)?);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = f.server.pid();
    let before = rss(pid);
    let store0 = store_size(&f);
    let sampler = Sampler::start(pid);
    let started = Instant::now();
    let outcome = clients(f.clone()).await?;
    eprintln!(
        "{scenario}: {outcome} ({:.0} s)",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    let after = rss(pid);
    let peak = sampler.peak().max(after);
    Ok(Row {
        scenario: scenario.to_owned(),
        before,
        peak,
        after,
        store_growth: store_size(&f).saturating_sub(store0),
        outcome,
    })
}

/// Writes `chunk` until `total` bytes went out, the server closed the connection, or it stopped
/// reading for 30 s; then waits (up to `drain` more) for the server to work through what it took
/// and close the connection, so the figures include all of it.
async fn flood(addr: &str, chunk: &[u8], total: usize, drain: Duration) -> anyhow::Result<String> {
    let mut sock = TcpStream::connect(addr).await?;
    let mut sent = 0;
    let started = Instant::now();
    let mut ended = "all sent";
    while sent < total {
        match tokio::time::timeout(Duration::from_secs(30), sock.write_all(chunk)).await {
            Ok(Ok(())) => sent += chunk.len(),
            Ok(Err(_)) => {
                ended = "closed by the server";
                break;
            }
            Err(_) => {
                ended = "server stopped reading";
                break;
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = sock.shutdown().await;
    let mut sink = vec![0u8; 4096];
    let drained = tokio::time::timeout(drain, async {
        while matches!(sock.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
    let done = match drained {
        Ok(()) => format!(
            "done with it {:.0} s after the start",
            started.elapsed().as_secs_f64()
        ),
        Err(_) => format!(
            "still working after {:.0} s",
            started.elapsed().as_secs_f64()
        ),
    };
    Ok(format!(
        "{} MiB accepted in {secs:.1} s, {ended}; {done}",
        mib(sent as u64)
    ))
}

/// What each slow client trickles: the start of something that never completes, then one
/// filler byte for ever.
fn slow_bytes(kind: &str) -> (&'static [u8], u8) {
    match kind {
        // A frame declared 1000 bytes long.
        "hj212" => (b"##1000QN=20261207000000000;ST=39;CN=2011;", b'1'),
        // A 3.1.1 CONNECT declaring 127 bytes.
        "mqtt" => (
            &[
                0x10, 0x7f, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 30, 0, 0x70,
            ],
            b'c',
        ),
        // A TLS record header of a ClientHello, then its body.
        _ => (
            &[
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ],
            0x42,
        ),
    }
}

/// `n` clients per listener trickling a byte every `gap`; when (if) the server closed each.
async fn slow_clients(f: Arc<Fresh>, n: usize, secs: u64, gap: Duration) -> anyhow::Result<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    let mut tasks = tokio::task::JoinSet::new();
    for (kind, addr) in [
        ("hj212", f.hj212.clone()),
        ("mqtt", f.mqtt.clone()),
        ("mqtts", f.mqtts.clone()),
    ] {
        for _ in 0..n {
            let addr = addr.clone();
            tasks.spawn(async move {
                let started = Instant::now();
                let Ok(mut sock) = TcpStream::connect(&addr).await else {
                    return (kind, Some(Duration::ZERO));
                };
                let (start, filler) = slow_bytes(kind);
                let mut sink = [0u8; 512];
                for b in start.iter().chain(std::iter::repeat(&filler)) {
                    if sock.write_all(&[*b]).await.is_err() {
                        return (kind, Some(started.elapsed()));
                    }
                    let next = (tokio::time::Instant::now() + gap).min(deadline);
                    // Reading meanwhile notices a close before the next write.
                    loop {
                        match tokio::time::timeout_at(next, sock.read(&mut sink)).await {
                            Ok(Ok(0)) | Ok(Err(_)) => return (kind, Some(started.elapsed())),
                            Ok(Ok(_)) => {}
                            Err(_) => break,
                        }
                    }
                    if tokio::time::Instant::now() >= deadline {
                        return (kind, None);
                    }
                }
                unreachable!("the byte source is endless")
            });
        }
    }
    let mut closed: std::collections::BTreeMap<&str, Vec<Duration>> = Default::default();
    let mut open: std::collections::BTreeMap<&str, usize> = Default::default();
    while let Some(r) = tasks.join_next().await {
        match r? {
            (kind, Some(t)) => closed.entry(kind).or_default().push(t),
            (kind, None) => *open.entry(kind).or_default() += 1,
        }
    }
    let mut parts = Vec::new();
    for kind in ["hj212", "mqtt", "mqtts"] {
        let mut times = closed.remove(kind).unwrap_or_default();
        times.sort();
        let median = times
            .get(times.len() / 2)
            .map_or("-".to_owned(), |t| format!("{:.0} s", t.as_secs_f64()));
        parts.push(format!(
            "{kind}: {} closed by the server (median after {median}), {} still open after {secs} s",
            times.len(),
            open.get(kind).copied().unwrap_or(0)
        ));
    }
    Ok(parts.join("; "))
}

/// `n` idle connections per listener at once, `rounds` times on the same server: how many the
/// server kept, its RSS with them and 5 s after they closed. A steady RSS from round to round
/// means what a closed connection freed is used again, not leaked.
async fn hold(f: Arc<Fresh>, n: usize, rounds: usize) -> anyhow::Result<String> {
    let mut out = Vec::new();
    for round in 1..=rounds {
        let mut parts = Vec::new();
        let mut held = Vec::new();
        for (kind, addr) in [("hj212", &f.hj212), ("mqtt", &f.mqtt), ("mqtts", &f.mqtts)] {
            let mut socks = Vec::with_capacity(n);
            for _ in 0..n {
                if let Ok(s) = TcpStream::connect(addr).await {
                    socks.push(s);
                }
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
            let open = socks.iter().filter(|s| would_block(s)).count();
            parts.push(format!("{kind} {open}/{n}"));
            held.push(socks);
        }
        let rss_held = rss(f.server.pid());
        drop(held);
        tokio::time::sleep(Duration::from_secs(5)).await;
        out.push(format!(
            "round {round}: held {}, RSS {} MiB, {} MiB once closed",
            parts.join(" "),
            mib(rss_held),
            mib(rss(f.server.pid()))
        ));
    }
    Ok(out.join("; "))
}

/// An idle open socket: a read would block.
fn would_block(s: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(s.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut rows = Vec::new();
    for scenario in &args.scenarios {
        let row = match scenario.as_str() {
            "garbage" => {
                let total = args.garbage_mb << 20;
                let drain = Duration::from_secs(args.drain_secs);
                measure(&args, scenario, |f| async move {
                    flood(&f.hj212, &vec![b'x'; 64 * 1024], total, drain).await
                })
                .await?
            }
            "rejects" => {
                let frames = args.reject_frames;
                let drain = Duration::from_secs(args.drain_secs);
                measure(&args, scenario, |f| async move {
                    let chunk = b"##0000FFFF\r\n".repeat(5461);
                    flood(&f.hj212, &chunk, frames * 12, drain).await
                })
                .await?
            }
            "slow" => {
                let (n, secs, gap) = (args.slow, args.slow_secs, args.slow_gap_secs);
                measure(&args, scenario, |f| async move {
                    slow_clients(f, n, secs, Duration::from_secs(gap)).await
                })
                .await?
            }
            "hold" => {
                let (n, rounds) = (args.hold, args.hold_rounds);
                measure(&args, scenario, |f| async move { hold(f, n, rounds).await }).await?
            }
            other => anyhow::bail!("unknown scenario {other}"),
        };
        rows.push(row);
    }
    println!("binary: {}", args.smartsite.display());
    println!(
        "| scenario | RSS before MiB | peak MiB | 5 s after MiB | store growth MiB | what the server did |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {} | {} |",
            r.scenario,
            mib(r.before),
            mib(r.peak),
            mib(r.after),
            mib(r.store_growth),
            r.outcome
        );
    }
    Ok(())
}
