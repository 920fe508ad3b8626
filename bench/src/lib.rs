//! Lambda cold-init measurement against a local Runtime API stub.
//!
//! [`measure_once`] binds a tiny HTTP/1.1 stub of the Lambda Runtime API on
//! `127.0.0.1:0`, spawns a bootstrap binary pointed at it, and records the time
//! from just before the spawn to the moment the request line of the first
//! `GET /2018-06-01/runtime/invocation/next` arrives (before anything is
//! answered). The child is then killed and reaped.
//!
//! Optionally ([`MeasureOptions::event`]) the first `/next` is answered with one
//! event and the time until the function posts its result
//! (`/invocation/{id}/response` or `/invocation/{id}/error`) is recorded too.

pub mod fleet;
pub mod procfs;

use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, anyhow, bail};
use tokio::io::{
    AsyncBufReadExt as _, AsyncRead, AsyncReadExt as _, AsyncWriteExt as _, BufReader,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Path of the Runtime API "next invocation" endpoint.
pub const NEXT_PATH: &str = "/2018-06-01/runtime/invocation/next";
/// Path of the Runtime API init-error endpoint.
pub const INIT_ERROR_PATH: &str = "/2018-06-01/runtime/init/error";
const INVOCATION_PREFIX: &str = "/2018-06-01/runtime/invocation/";
/// Request id handed out with the optional event.
pub const REQUEST_ID: &str = "00000000-0000-4000-8000-000000000001";

/// How many bytes of the child's stderr are kept for error messages.
const STDERR_TAIL_BYTES: usize = 4096;
/// How long to wait for the stderr pipe to close after the child is reaped.
const STDERR_DRAIN: Duration = Duration::from_secs(1);
/// Largest request body the stub reads (init-error diagnostics).
const MAX_BODY: usize = 64 * 1024;

/// What one measurement does besides the fixed Lambda environment.
#[derive(Debug, Clone)]
pub struct MeasureOptions {
    /// Extra environment variables, applied after (and so overriding) the
    /// defaults of [`lambda_env`].
    pub extra_env: Vec<(String, String)>,
    /// Arguments passed to the binary (Lambda passes none; used by tests).
    pub args: Vec<OsString>,
    /// Per-run limit, from spawn to the last awaited request.
    pub timeout: Duration,
    /// When set, the first `/next` is answered with this JSON body and the run
    /// also waits for the function's result.
    pub event: Option<Arc<[u8]>>,
}

impl Default for MeasureOptions {
    fn default() -> Self {
        Self {
            extra_env: Vec::new(),
            args: Vec::new(),
            timeout: Duration::from_secs(10),
            event: None,
        }
    }
}

/// How the function answered the optional event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvocationOutcome {
    /// `POST /runtime/invocation/{id}/response`
    Response,
    /// `POST /runtime/invocation/{id}/error`
    Error,
}

/// One measurement of one binary.
#[derive(Debug, Clone)]
pub struct Sample {
    /// Spawn → request line of the first `GET .../invocation/next` received.
    pub init: Duration,
    /// Spawn → request line of the result of the first invocation (only when
    /// [`MeasureOptions::event`] is set).
    pub first_invocation: Option<(Duration, InvocationOutcome)>,
    /// Process id the child had.
    pub pid: u32,
    /// Exit status collected by `wait` after the kill: the child is reaped.
    pub exit_status: ExitStatus,
}

/// The environment a measured binary sees (besides `PATH`, inherited, and
/// [`MeasureOptions::extra_env`]): the parent's environment is cleared so host
/// AWS profiles, credentials or `RUST_LOG` cannot leak into the measurement.
pub fn lambda_env(bin: &Path, runtime_api: SocketAddr) -> Vec<(String, String)> {
    let name = bin.file_name().map_or_else(
        || "function".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    vec![
        ("AWS_LAMBDA_RUNTIME_API".into(), runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME".into(), name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION".into(), "$LATEST".into()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE".into(), "256".into()),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME".into(),
            format!("/aws/lambda/{name}"),
        ),
        (
            "AWS_LAMBDA_LOG_STREAM_NAME".into(),
            "2025/01/01/[$LATEST]00000000000000000000000000000000".into(),
        ),
        ("AWS_LAMBDA_INITIALIZATION_TYPE".into(), "on-demand".into()),
        ("AWS_REGION".into(), "us-east-1".into()),
        ("AWS_DEFAULT_REGION".into(), "us-east-1".into()),
        ("AWS_ACCESS_KEY_ID".into(), "test".into()),
        ("AWS_SECRET_ACCESS_KEY".into(), "test".into()),
    ]
}

/// Something the stub saw.
#[derive(Debug)]
enum StubEvent {
    Next(Instant),
    Completed(Instant, InvocationOutcome),
    InitError(String),
    Unexpected(String),
}

/// Measures one cold init of `bin`. Always kills and reaps the child before
/// returning; errors name the binary and carry the tail of its stderr.
pub async fn measure_once(bin: &Path, opts: &MeasureOptions) -> Result<Sample> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("binding the Runtime API stub")?;
    let addr = listener.local_addr()?;

    let mut cmd = Command::new(bin);
    cmd.args(&opts.args)
        .env_clear()
        .envs(lambda_env(bin, addr))
        .envs(opts.extra_env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }

    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut conns = JoinSet::new();

    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("{}: spawning failed", bin.display()))?;
    let pid = child.id().unwrap_or(0);
    let stderr_task = child.stderr.take().map(|e| tokio::spawn(tail_of(e)));

    let outcome = drive(
        &listener, &mut child, &mut rx, &tx, &mut conns, opts, started,
    )
    .await;

    // Kill (no-op error if it already exited) and reap, whatever happened.
    let _ = child.start_kill();
    let exit_status = child
        .wait()
        .await
        .with_context(|| format!("{}: waiting for the killed child", bin.display()))?;
    conns.shutdown().await;
    drop(listener);

    match outcome {
        Ok((init, first_invocation)) => Ok(Sample {
            init,
            first_invocation,
            pid,
            exit_status,
        }),
        Err(err) => {
            let tail = match stderr_task {
                Some(task) => match tokio::time::timeout(STDERR_DRAIN, task).await {
                    Ok(Ok(tail)) => tail,
                    _ => String::from("(stderr not available)"),
                },
                None => String::new(),
            };
            let tail = if tail.trim().is_empty() {
                "(empty)".to_owned()
            } else {
                tail
            };
            Err(err.context(format!(
                "{} (pid {pid}, {exit_status}); stderr tail:\n{tail}",
                bin.display()
            )))
        }
    }
}

/// Accepts connections and waits for the `/next` (and optionally the result)
/// until the deadline, or until the child exits early.
async fn drive(
    listener: &TcpListener,
    child: &mut Child,
    rx: &mut mpsc::UnboundedReceiver<StubEvent>,
    tx: &mpsc::UnboundedSender<StubEvent>,
    conns: &mut JoinSet<()>,
    opts: &MeasureOptions,
    started: Instant,
) -> Result<(Duration, Option<(Duration, InvocationOutcome)>)> {
    let answered = Arc::new(AtomicBool::new(false));
    let sleep = tokio::time::sleep_until((started + opts.timeout).into());
    tokio::pin!(sleep);
    let mut init = None;
    loop {
        tokio::select! {
            biased;
            ev = rx.recv() => match ev {
                Some(StubEvent::Next(at)) => {
                    if init.is_none() {
                        let d = at.duration_since(started);
                        init = Some(d);
                        if opts.event.is_none() {
                            return Ok((d, None));
                        }
                    }
                }
                Some(StubEvent::Completed(at, outcome)) => {
                    let init = init.ok_or_else(|| anyhow!("invocation result posted before any /next"))?;
                    return Ok((init, Some((at.duration_since(started), outcome))));
                }
                Some(StubEvent::InitError(body)) => bail!("function reported an init error: {body}"),
                Some(StubEvent::Unexpected(line)) => bail!("unexpected request to the Runtime API stub: {line}"),
                None => bail!("Runtime API stub channel closed"),
            },
            acc = listener.accept() => {
                let (stream, _) = acc.context("accepting on the Runtime API stub")?;
                let _ = stream.set_nodelay(true);
                conns.spawn(serve_conn(stream, tx.clone(), opts.event.clone(), answered.clone()));
            }
            status = child.wait() => {
                let status = status.context("waiting for the child")?;
                bail!("exited ({status}) before requesting {NEXT_PATH}");
            }
            () = &mut sleep => bail!(
                "timed out after {:.1} s waiting for {}",
                opts.timeout.as_secs_f64(),
                if init.is_none() { NEXT_PATH } else { "the first invocation's result" },
            ),
        }
    }
}

/// Serves one keep-alive connection of the runtime client.
async fn serve_conn(
    stream: TcpStream,
    tx: mpsc::UnboundedSender<StubEvent>,
    event: Option<Arc<[u8]>>,
    answered: Arc<AtomicBool>,
) {
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::new(rd);
    loop {
        let mut line = String::new();
        match rd.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // The timestamp: the request line is in, nothing has been answered.
        let at = Instant::now();
        let line = line.trim_end().to_owned();
        let mut parts = line.split_ascii_whitespace();
        let method = parts.next().unwrap_or_default().to_owned();
        let path = parts.next().unwrap_or_default().to_owned();

        let Ok(content_length) = read_headers(&mut rd).await else {
            return;
        };

        if method == "GET" && path == NEXT_PATH {
            let _ = tx.send(StubEvent::Next(at));
            match &event {
                Some(body) if !answered.swap(true, Ordering::SeqCst) => {
                    let deadline_ms = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis())
                        + 900_000;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\n\
                         Content-Type: application/json\r\n\
                         Lambda-Runtime-Aws-Request-Id: {REQUEST_ID}\r\n\
                         Lambda-Runtime-Deadline-Ms: {deadline_ms}\r\n\
                         Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:000000000000:function:bench\r\n\
                         Lambda-Runtime-Trace-Id: Root=1-00000000-000000000000000000000000;Sampled=0\r\n\
                         Content-Length: {}\r\n\r\n",
                        body.len()
                    );
                    if wr.write_all(head.as_bytes()).await.is_err()
                        || wr.write_all(body).await.is_err()
                    {
                        return;
                    }
                }
                // Hold the request open: the measurement is over.
                _ => std::future::pending::<()>().await,
            }
        } else if method == "POST" && path.starts_with(INVOCATION_PREFIX) {
            let outcome = if path.ends_with("/response") {
                InvocationOutcome::Response
            } else if path.ends_with("/error") {
                InvocationOutcome::Error
            } else {
                let _ = tx.send(StubEvent::Unexpected(line));
                return;
            };
            let _ = tx.send(StubEvent::Completed(at, outcome));
            let _ = wr
                .write_all(
                    b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        } else if method == "POST" && path == INIT_ERROR_PATH {
            let mut body = vec![0; content_length.unwrap_or(0).min(MAX_BODY)];
            let _ = rd.read_exact(&mut body).await;
            let _ = tx.send(StubEvent::InitError(
                String::from_utf8_lossy(&body).into_owned(),
            ));
            let _ = wr
                .write_all(
                    b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        } else {
            let _ = tx.send(StubEvent::Unexpected(line));
            let _ = wr
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        }
    }
}

/// Reads header lines up to the blank line; returns `Content-Length` if given.
async fn read_headers<R: AsyncRead + Unpin>(rd: &mut BufReader<R>) -> Result<Option<usize>> {
    let mut content_length = None;
    loop {
        let mut h = String::new();
        if rd.read_line(&mut h).await? == 0 {
            bail!("connection closed inside the headers");
        }
        let h = h.trim_end();
        if h.is_empty() {
            return Ok(content_length);
        }
        if let Some((name, value)) = h.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().ok();
        }
    }
}

/// Reads a pipe to its end, keeping the last [`STDERR_TAIL_BYTES`].
async fn tail_of<R: AsyncRead + Unpin>(mut r: R) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * STDERR_TAIL_BYTES {
                    kept.drain(..kept.len() - STDERR_TAIL_BYTES);
                }
            }
        }
    }
    let start = kept.len().saturating_sub(STDERR_TAIL_BYTES);
    String::from_utf8_lossy(&kept[start..]).into_owned()
}

/// Order statistics of a set of durations.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub runs: usize,
    pub min: Duration,
    /// Mean of the two middle values when `runs` is even.
    pub median: Duration,
    /// Nearest-rank 90th percentile: the `ceil(0.9 n)`-th smallest value.
    pub p90: Duration,
    pub max: Duration,
}

/// Summarizes `samples`; `None` when empty.
pub fn summarize(samples: &[Duration]) -> Option<Summary> {
    let mut v = samples.to_vec();
    v.sort_unstable();
    let n = v.len();
    let (&min, &max) = (v.first()?, v.last()?);
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    };
    let rank = (n * 9).div_ceil(10).max(1);
    Some(Summary {
        runs: n,
        min,
        median,
        p90: v[rank - 1],
        max,
    })
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

/// One row of the results table.
#[derive(Debug, Clone)]
pub struct Row {
    pub label: String,
    pub size_bytes: Option<u64>,
    pub summary: Summary,
}

/// Renders rows as a GitHub markdown table, times in milliseconds.
pub fn markdown_table(rows: &[Row]) -> String {
    let mut out = String::from(
        "| binary | size (MiB) | runs | min (ms) | median (ms) | p90 (ms) | max (ms) |\n\
         |---|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let size = r.size_bytes.map_or_else(
            || "?".to_owned(),
            |b| format!("{:.2}", b as f64 / (1024.0 * 1024.0)),
        );
        let s = &r.summary;
        let _ = writeln!(
            out,
            "| `{}` | {size} | {} | {} | {} | {} | {} |",
            r.label,
            s.runs,
            ms(s.min),
            ms(s.median),
            ms(s.p90),
            ms(s.max)
        );
    }
    out
}

/// `nproc`, CPU model, kernel and the UTC date, as one markdown line.
pub fn machine_facts() -> String {
    let nproc = std::thread::available_parallelism().map_or(0, std::num::NonZero::get);
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".to_owned(), |s| s.trim().to_owned());
    format!(
        "Machine: nproc={nproc}, CPU: {cpu}, Linux {kernel}; measured {} (UTC).",
        utc_date(SystemTime::now())
    )
}

/// `YYYY-MM-DD` of `t` in UTC.
pub fn utc_date(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    #[test]
    fn summary_of_even_and_odd_sets() {
        assert_eq!(summarize(&[]), None);
        let s = summarize(&[d(5)]);
        assert_eq!(
            s.map(|s| (s.min, s.median, s.p90, s.max)),
            Some((d(5), d(5), d(5), d(5)))
        );
        let v: Vec<_> = (1..=20).rev().map(d).collect();
        let s = summarize(&v);
        assert_eq!(
            s.map(|s| (s.runs, s.min, s.median, s.p90, s.max)),
            Some((20, d(1), Duration::from_micros(10_500), d(18), d(20)))
        );
        let s = summarize(&[d(3), d(1), d(2)]);
        assert_eq!(s.map(|s| (s.median, s.p90)), Some((d(2), d(3))));
    }

    #[test]
    fn table_has_three_decimals() {
        let t = markdown_table(&[Row {
            label: "x".into(),
            size_bytes: Some(1024 * 1024),
            summary: Summary {
                runs: 1,
                min: Duration::from_micros(1234),
                median: d(2),
                p90: d(3),
                max: d(4),
            },
        }]);
        assert!(
            t.contains("| `x` | 1.00 | 1 | 1.234 | 2.000 | 3.000 | 4.000 |"),
            "{t}"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(utc_date(UNIX_EPOCH), "1970-01-01");
        assert_eq!(
            utc_date(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29"
        );
        assert_eq!(
            utc_date(UNIX_EPOCH + Duration::from_secs(1_767_225_600)),
            "2026-01-01"
        );
    }
}
