//! Durability under fire (issue 13, "a standing reliability suite"): `smartsite serve` is killed
//! with SIGKILL at random moments while a fleet of devices publishes QoS 1 telemetry over plain
//! MQTT and a ledger writer posts safety-fund expenditures over HTTP; it is restarted on the same
//! data dir each time. Every acknowledged message is recorded by its identity — the device and a
//! sequence number, which fix the message's `ts` (a base instant plus the sequence in
//! milliseconds) and its values — and afterwards looked up one by one through the HTTP API, as is
//! every expenditure answered 201; every ledger must verify.
//!
//! Used by `tests/tests/reliability.rs` (3 short rounds in the test command) and by the bench
//! command `kill9` (20 rounds under full load).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use smartsite::device_link::{Incoming, Link, LinkOptions};

use crate::Server;
use crate::world::{Api, PASSWORD, World, onboard, provision_crane, urlencode};

/// The admin password the runs give the server.
const ADMIN_PASSWORD: &str = "Kill9-Admin-2026!";

/// What one run does.
#[derive(Debug, Clone)]
pub struct KillRun {
    /// `smartsite serve` (the tests' debug build or the release binary).
    pub bin: PathBuf,
    /// SIGKILL → restart cycles.
    pub rounds: usize,
    pub devices: usize,
    /// Unacknowledged QoS 1 publishes per device.
    pub inflight: usize,
    /// Messages per second over the whole fleet; `None`: as fast as acknowledgements allow.
    pub rate: Option<f64>,
    /// How long the server runs under load before each kill: uniform in `[min_up, max_up]`.
    pub min_up: Duration,
    pub max_up: Duration,
    /// Seeds the kill moments (printed, so a run can be repeated).
    pub seed: u64,
    /// Extra environment for the server (`RUST_LOG`, …).
    pub env: Vec<(String, String)>,
}

/// What a run found. `missing`, `mismatched`, `missing_expenditures` and `broken_ledgers` must
/// be empty.
#[derive(Debug, Default)]
pub struct KillReport {
    pub rounds: usize,
    pub seed: u64,
    pub sent: u64,
    /// QoS 1 publishes the broker acknowledged.
    pub acked: u64,
    /// Acknowledged messages found stored, each at its `ts` with its values.
    pub found: u64,
    /// Stored messages that were sent but whose PUBACK never arrived (the kill came first):
    /// allowed, at least once means exactly that.
    pub stored_unacked: u64,
    /// Acknowledged messages not stored: `(device, sequence)`.
    pub missing: Vec<(String, u64)>,
    /// Stored at an acknowledged message's `ts` with other values: `(device, sequence, found)`.
    pub mismatched: Vec<(String, u64, String)>,
    /// Acknowledged after each round's kill (cumulative): the load really ran in every round.
    pub acked_by_round: Vec<u64>,
    pub expenditures_acked: u64,
    /// Evidence refs of expenditures answered 201 but not in the statement.
    pub missing_expenditures: Vec<String>,
    /// `GET /v1/projects/{id}/safety-fund/verify` answers that were not `ok`.
    pub broken_ledgers: Vec<Value>,
    pub ledgers_verified: usize,
    /// Reconnections of the devices (each kill drops every connection).
    pub reconnects: u64,
    pub seconds: f64,
}

impl KillReport {
    pub fn lossless(&self) -> bool {
        self.missing.is_empty()
            && self.mismatched.is_empty()
            && self.missing_expenditures.is_empty()
            && self.broken_ledgers.is_empty()
    }
}

/// Where the running server listens; `None` while it is down.
#[derive(Default)]
struct Target {
    http: Option<String>,
    mqtt: Option<(String, u16)>,
}

type SharedTarget = Arc<RwLock<Target>>;

fn set_target(target: &SharedTarget, server: Option<&Server>) -> anyhow::Result<()> {
    let next = match server {
        None => Target::default(),
        Some(s) => {
            let mqtt = s.endpoints["mqtt"]
                .as_str()
                .context("endpoints.json has no mqtt")?;
            let (h, p) = mqtt.rsplit_once(':').context("mqtt is not host:port")?;
            Target {
                http: Some(s.http()),
                mqtt: Some((h.to_owned(), p.parse()?)),
            }
        }
    };
    *target.write().map_err(|_| anyhow::anyhow!("target lock"))? = next;
    Ok(())
}

fn mqtt_of(target: &SharedTarget) -> Option<(String, u16)> {
    target.read().ok().and_then(|t| t.mqtt.clone())
}

fn http_of(target: &SharedTarget) -> Option<String> {
    target.read().ok().and_then(|t| t.http.clone())
}

/// The values of message `seq`: a function of the sequence, so a stored message can be told
/// from any other.
pub fn values_of(seq: u64) -> (f64, f64) {
    let load_t = (seq % 700) as f64 / 100.0;
    let moment_pct = 10.0 + (seq % 500) as f64 / 10.0;
    (load_t, moment_pct)
}

/// The `ts` of message `seq` of a device whose sequence starts at `base`.
pub fn ts_of(base: DateTime<Utc>, seq: u64) -> String {
    let at = base + chrono::Duration::milliseconds(i64::try_from(seq).unwrap_or(i64::MAX));
    at.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn payload(base: DateTime<Utc>, seq: u64) -> Bytes {
    let (load_t, moment_pct) = values_of(seq);
    Bytes::from(
        json!({"ts": ts_of(base, seq), "load_t": load_t, "moment_pct": moment_pct}).to_string(),
    )
}

/// One device's part of the load.
struct DeviceLoad {
    device_id: String,
    token: String,
    topic: String,
    base: DateTime<Utc>,
    interval: Option<Duration>,
    window: usize,
}

/// What one device saw.
#[derive(Debug, Default)]
struct Tally {
    sent: u64,
    acked: Vec<u64>,
    reconnects: u64,
}

/// Counters the run reads while the load goes on.
#[derive(Default)]
struct Live {
    acked: AtomicU64,
}

impl DeviceLoad {
    /// Publishes until `stop`, reconnecting whenever the server is gone; then waits (at most
    /// 15 s) for the acknowledgements of what is in flight.
    async fn run(self, target: SharedTarget, stop: Arc<AtomicBool>, live: Arc<Live>) -> Tally {
        let mut t = Tally::default();
        let mut seq = 0u64;
        let mut first = true;
        while !stop.load(Ordering::Relaxed) {
            let Some((host, port)) = mqtt_of(&target) else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            if !first {
                t.reconnects += 1;
            }
            first = false;
            let opts = LinkOptions {
                host,
                port,
                client_id: self.device_id.clone(),
                login: Some((self.device_id.clone(), self.token.clone())),
                tls: None,
                keep_alive: Duration::from_secs(30),
            };
            let link =
                match tokio::time::timeout(Duration::from_secs(5), Link::connect(&opts)).await {
                    Ok(Ok(l)) => l,
                    _ => {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
            // Whatever was in flight when a connection died stays unacknowledged: it may or may
            // not be stored, and is not counted either way.
            let _ = self.session(link, &mut seq, &mut t, &stop, &live).await;
        }
        t.sent = seq;
        t
    }

    async fn session(
        &self,
        mut link: Link,
        seq: &mut u64,
        t: &mut Tally,
        stop: &AtomicBool,
        live: &Live,
    ) -> anyhow::Result<()> {
        let mut pending: VecDeque<(u16, u64)> = VecDeque::new();
        let mut incoming = Vec::new();
        let mut next_at = tokio::time::Instant::now();
        let mut drain_until: Option<tokio::time::Instant> = None;
        loop {
            let now = tokio::time::Instant::now();
            if stop.load(Ordering::Relaxed) {
                let until = *drain_until.get_or_insert(now + Duration::from_secs(15));
                if pending.is_empty() || now >= until {
                    let _ = link.disconnect().await;
                    return Ok(());
                }
            } else {
                while pending.len() < self.window && self.interval.is_none_or(|_| now >= next_at) {
                    let pkid = link.publish(&self.topic, payload(self.base, *seq))?;
                    pending.push_back((pkid, *seq));
                    *seq += 1;
                    if let Some(i) = self.interval {
                        next_at += i;
                    }
                }
                if next_at < now {
                    next_at = now;
                }
            }
            link.flush().await?;
            let wake = match (self.interval, pending.len() < self.window) {
                (Some(_), true) => next_at,
                _ => now + Duration::from_millis(100),
            };
            tokio::select! {
                r = link.read(&mut incoming) => {
                    r?;
                    for i in incoming.drain(..) {
                        if let Incoming::PubAck(id) = i
                            && let Some(pos) = pending.iter().position(|(p, _)| *p == id)
                            && let Some((_, s)) = pending.remove(pos)
                        {
                            t.acked.push(s);
                            live.acked.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                () = tokio::time::sleep_until(wake) => {}
            }
        }
    }
}

/// Posts expenditures of 1 yuan, alternating the two ledgers, until `stop`; returns the evidence
/// refs answered 201 (each attempt has its own ref, so one lost in a kill is never retried under
/// the same name).
async fn ledger_writer(
    target: SharedTarget,
    project: String,
    token: String,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let mut acked = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let Some(http) = http_of(&target) else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        n += 1;
        let evidence = format!("KILL9-{n:06}");
        let (fund, category) = if n.is_multiple_of(2) {
            ("civilized", "civilized_construction")
        } else {
            ("safety", "ppe")
        };
        let body = json!({"date": "2026-11-20", "amount_fen": 100, "category": category,
            "evidence_ref": evidence, "fund": fund});
        let api = Api::new(&http);
        let path = format!("/v1/projects/{project}/safety-fund/expenditures");
        match tokio::time::timeout(
            Duration::from_secs(5),
            api.call("POST", &path, Some(&token), Some(&body)),
        )
        .await
        {
            Ok(Ok((201, _))) => acked.push(evidence),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    acked
}

/// A small deterministic generator for the kill moments (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn between(&mut self, lo: Duration, hi: Duration) -> Duration {
        let span = hi.saturating_sub(lo).as_millis() as u64;
        lo + Duration::from_millis(if span == 0 {
            0
        } else {
            self.next() % (span + 1)
        })
    }
}

async fn spawn_server(bin: &Path, dir: &Path, env: &[(String, String)]) -> anyhow::Result<Server> {
    let (bin, dir, env) = (bin.to_owned(), dir.to_owned(), env.to_owned());
    tokio::task::spawn_blocking(move || {
        let mut e: Vec<(&str, &str)> = vec![("SMARTSITE_ADMIN_PASSWORD", ADMIN_PASSWORD)];
        e.extend(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        Server::spawn_in_with_env(&bin, &dir, &["--mqtt", "127.0.0.1:0"], &e)
    })
    .await?
}

async fn kill(mut server: Server) -> anyhow::Result<()> {
    tokio::task::spawn_blocking(move || server.stop("KILL").map(|_| ())).await?
}

/// Runs the kill -9 rounds and checks what survived. Errors are failures of the harness (a
/// server that does not start); losses are in the report.
pub async fn kill_run(o: &KillRun) -> anyhow::Result<KillReport> {
    let started = Instant::now();
    let dir = tempfile::tempdir()?;
    let mut server = spawn_server(&o.bin, dir.path(), &o.env).await?;
    let api = Api::new(&server.http());
    let admin = api.login("admin", ADMIN_PASSWORD).await?;
    let w = onboard(&api, &admin, "k9", "220100", "220102", 1).await?;
    let mut devices = Vec::with_capacity(o.devices);
    let base = Utc::now() - chrono::Duration::hours(2);
    for n in 0..o.devices {
        let v = provision_crane(&api, &w, &format!("k9-TC-{n:04}")).await?;
        let s = |k: &str| v[k].as_str().map(str::to_owned);
        devices.push(DeviceLoad {
            device_id: s("device_id").context("no device_id")?,
            token: s("device_token").context("no device_token")?,
            topic: v["topics"]["telemetry"]
                .as_str()
                .context("no telemetry topic")?
                .to_owned(),
            base,
            interval: o
                .rate
                .map(|r| Duration::from_secs_f64(o.devices as f64 / r.max(0.001))),
            window: o.inflight.max(1),
        });
    }
    let ids: Vec<String> = devices.iter().map(|d| d.device_id.clone()).collect();

    let target: SharedTarget = Arc::default();
    set_target(&target, Some(&server))?;
    let stop = Arc::new(AtomicBool::new(false));
    let live = Arc::new(Live::default());
    let loads: Vec<_> = devices
        .into_iter()
        .map(|d| tokio::spawn(d.run(target.clone(), stop.clone(), live.clone())))
        .collect();
    let writer = tokio::spawn(ledger_writer(
        target.clone(),
        w.project.clone(),
        w.token("safety_officer").to_owned(),
        stop.clone(),
    ));

    let mut rng = Rng(o.seed.max(1));
    let mut report = KillReport {
        rounds: o.rounds,
        seed: o.seed,
        ..KillReport::default()
    };
    for round in 1..=o.rounds {
        let up = rng.between(o.min_up, o.max_up);
        tokio::time::sleep(up).await;
        set_target(&target, None)?;
        kill(server).await?;
        let acked = live.acked.load(Ordering::Relaxed);
        report.acked_by_round.push(acked);
        eprintln!(
            "kill9: round {round}/{}: SIGKILL after {:.1} s up; {acked} acknowledged so far",
            o.rounds,
            up.as_secs_f64()
        );
        server = spawn_server(&o.bin, dir.path(), &o.env).await?;
        set_target(&target, Some(&server))?;
    }
    // The last start runs under load too, then the load stops and drains.
    tokio::time::sleep(rng.between(o.min_up, o.max_up)).await;
    stop.store(true, Ordering::Relaxed);
    let mut acked: BTreeMap<String, Tally> = BTreeMap::new();
    for (id, task) in ids.iter().zip(loads) {
        acked.insert(id.clone(), task.await?);
    }
    let expenditures = writer.await?;

    let api = Api::new(&server.http());
    let token = api
        .login(&format!("k9-{}", "safety-officer"), PASSWORD)
        .await?;
    for (id, tally) in &acked {
        report.sent += tally.sent;
        report.acked += tally.acked.len() as u64;
        report.reconnects += tally.reconnects;
        let stored = stored_series(&api, &token, id, base, tally.sent).await?;
        let f = check_device(id, base, &tally.acked, &stored);
        report.found += f.found;
        report.stored_unacked += f.stored_unacked;
        report.missing.extend(f.missing);
        report.mismatched.extend(f.mismatched);
    }
    report.expenditures_acked = expenditures.len() as u64;
    report.missing_expenditures = missing_expenditures(&api, &token, &w, &expenditures).await?;
    let (verified, broken) = verify_ledgers(&api, &token, &[&w]).await?;
    report.ledgers_verified = verified;
    report.broken_ledgers = broken;
    report.seconds = started.elapsed().as_secs_f64();
    drop(server);
    Ok(report)
}

/// A device's stored telemetry between its first and last possible `ts`: `ts → values`.
async fn stored_series(
    api: &Api,
    token: &str,
    device: &str,
    base: DateTime<Utc>,
    sent: u64,
) -> anyhow::Result<BTreeMap<String, Value>> {
    let from = urlencode(&ts_of(base - chrono::Duration::seconds(1), 0));
    let to = urlencode(&ts_of(base, sent + 1000));
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/devices/{device}/telemetry?from={from}&to={to}&limit=200");
        if let Some(c) = &cursor {
            path.push_str("&cursor=");
            path.push_str(&urlencode(c));
        }
        let (s, mut page) = api.call("GET", &path, Some(token), None).await?;
        if s != 200 {
            bail!("GET {path} answered {s}: {page}");
        }
        if let Value::Array(items) = page["items"].take() {
            for mut item in items {
                let ts = item["ts"].as_str().unwrap_or_default().to_owned();
                out.insert(ts, item["values"].take());
            }
        }
        match page["next"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return Ok(out),
        }
    }
}

/// One device's findings.
#[derive(Debug, Default, PartialEq)]
pub struct DeviceFindings {
    pub found: u64,
    pub stored_unacked: u64,
    pub missing: Vec<(String, u64)>,
    pub mismatched: Vec<(String, u64, String)>,
}

/// Looks up each acknowledged sequence of `device` in what is stored (`ts → values`).
pub fn check_device(
    device: &str,
    base: DateTime<Utc>,
    acked: &[u64],
    stored: &BTreeMap<String, Value>,
) -> DeviceFindings {
    let mut f = DeviceFindings::default();
    let acked_ts: BTreeSet<String> = acked.iter().map(|&s| ts_of(base, s)).collect();
    for &seq in acked {
        match stored.get(&ts_of(base, seq)) {
            None => f.missing.push((device.to_owned(), seq)),
            Some(v) => {
                let (load_t, moment_pct) = values_of(seq);
                if v["load_t"].as_f64() == Some(load_t)
                    && v["moment_pct"].as_f64() == Some(moment_pct)
                {
                    f.found += 1;
                } else {
                    f.mismatched.push((device.to_owned(), seq, v.to_string()));
                }
            }
        }
    }
    f.stored_unacked = stored.keys().filter(|ts| !acked_ts.contains(*ts)).count() as u64;
    f
}

/// Evidence refs answered 201 that the project's two statements do not list.
async fn missing_expenditures(
    api: &Api,
    token: &str,
    w: &World,
    acked: &[String],
) -> anyhow::Result<Vec<String>> {
    let mut listed = BTreeSet::new();
    for fund in ["safety", "civilized"] {
        let path = format!(
            "/v1/projects/{}/safety-fund/statement?fund={fund}",
            w.project
        );
        let (s, v) = api.call("GET", &path, Some(token), None).await?;
        if s != 200 {
            bail!("GET {path} answered {s}: {v}");
        }
        for e in v["entries"].as_array().into_iter().flatten() {
            if let Some(r) = e["evidence_ref"].as_str() {
                listed.insert(r.to_owned());
            }
        }
    }
    Ok(acked
        .iter()
        .filter(|r| !listed.contains(*r))
        .cloned()
        .collect())
}

/// `GET /v1/projects/{id}/safety-fund/verify` of each world's project: how many ledgers were
/// verified, and the answers that were not `ok`.
pub async fn verify_ledgers(
    api: &Api,
    token: &str,
    worlds: &[&World],
) -> anyhow::Result<(usize, Vec<Value>)> {
    let (mut n, mut broken) = (0, Vec::new());
    for w in worlds {
        let path = format!("/v1/projects/{}/safety-fund/verify", w.project);
        let (s, v) = api.call("GET", &path, Some(token), None).await?;
        if s != 200 {
            bail!("GET {path} answered {s}: {v}");
        }
        n += v["ledgers"].as_array().map_or(0, Vec::len);
        if v["ok"] != json!(true) {
            broken.push(v);
        }
    }
    Ok((n, broken))
}

/// Shared by the cargo test and the bench: the report as the lines both print.
pub fn summary_lines(r: &KillReport) -> String {
    format!(
        "kill9: {} rounds (seed {}), {:.0} s: {} sent, {} acknowledged, {} of them found stored one by one, \
         {} missing, {} with other values; {} stored without an ack (in flight at a kill); \
         {} expenditures acknowledged, {} missing; {} ledgers verified, {} broken; {} reconnects",
        r.rounds,
        r.seed,
        r.seconds,
        r.sent,
        r.acked,
        r.found,
        r.missing.len(),
        r.mismatched.len(),
        r.stored_unacked,
        r.expenditures_acked,
        r.missing_expenditures.len(),
        r.ledgers_verified,
        r.broken_ledgers.len(),
        r.reconnects
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_acknowledged_message_is_looked_up_by_its_identity() {
        let base = DateTime::parse_from_rfc3339("2026-12-07T08:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let stored_value = |seq: u64| {
            let (l, m) = values_of(seq);
            json!({"load_t": l, "moment_pct": m})
        };
        let mut stored: BTreeMap<String, Value> = [0u64, 1, 3, 4]
            .iter()
            .map(|&s| (ts_of(base, s), stored_value(s)))
            .collect();
        // Message 4 stored with another message's values: not the acknowledged one.
        stored.insert(ts_of(base, 4), stored_value(5));
        let f = check_device("d1", base, &[0, 1, 2, 4], &stored);
        assert_eq!(f.found, 2);
        assert_eq!(f.missing, vec![("d1".to_owned(), 2)]);
        assert_eq!(f.mismatched.len(), 1);
        assert_eq!(f.mismatched[0].1, 4);
        assert_eq!(f.stored_unacked, 1); // message 3: sent, stored, its ack lost in a kill
        assert_eq!(ts_of(base, 1_234), "2026-12-07T08:00:01.234Z");
    }

    #[test]
    fn kill_moments_stay_within_bounds() {
        let mut r = Rng(42);
        let (lo, hi) = (Duration::from_millis(500), Duration::from_millis(1500));
        for _ in 0..1000 {
            let d = r.between(lo, hi);
            assert!(d >= lo && d <= hi, "{d:?}");
        }
        assert_eq!(r.between(lo, lo), lo);
    }
}
