//! `smartsite simulate`: a fleet of simulated devices publishing realistic telemetry over MQTT.
//!
//! Against a smartsite server it provisions devices into a project through the HTTP API (or
//! reuses those it provisioned before, kept with their credentials in a state file beside
//! endpoints.json) and connects each with its own identity: plain MQTT with the device token when
//! the server has `--mqtt`, else TLS with the client certificate. With `--broker` it drives any
//! MQTT broker anonymously instead (how BENCHMARKS.md measures mosquitto with the same client).
//! A live line on stderr shows sent, acknowledged and the rate; the summary is printed as JSON.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bytes::Bytes;
use rumqttc::TlsConfiguration;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin::Client;
use crate::device_link::{Incoming, Link, LinkOptions};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Ordinary working values.
    Normal,
    /// Tower-crane moment climbing past 90 % (warning) and 100 % (alarm).
    CraneOverload,
    /// PM10 rising past the hourly limit (alarm and spray linkage).
    DustExceedance,
    /// A third of the devices fall silent after connecting (DU-OFFLINE).
    Offline,
}

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The server's endpoints.json (`smartsite serve` writes it into its data dir).
    #[arg(long)]
    pub endpoints: Option<PathBuf>,
    /// Number of devices.
    #[arg(long, default_value_t = 10)]
    pub devices: usize,
    /// Messages per second over all devices; 0 = as fast as acknowledgements allow.
    #[arg(long, default_value_t = 10.0)]
    pub rate: f64,
    #[arg(long, value_enum, default_value = "normal")]
    pub scenario: Scenario,
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Stop after this many messages in total.
    #[arg(long)]
    pub messages: Option<u64>,
    /// The project to provision devices into (needs `--model-id` and a token).
    #[arg(long)]
    pub project_id: Option<String>,
    /// A device model of the scenario's category (tower_crane for crane scenarios, dust_noise for
    /// dust-exceedance; either for the others).
    #[arg(long)]
    pub model_id: Option<String>,
    /// Bearer token of an integrator admin or operator (provisioning).
    #[arg(long, env = "SMARTSITE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Where provisioned devices and their credentials are kept for reuse (default:
    /// `simulator-devices.json` beside endpoints.json; mode 0600).
    #[arg(long)]
    pub state: Option<PathBuf>,
    /// Drive this MQTT broker (`host:port`) anonymously instead of a smartsite server.
    #[arg(long, conflicts_with = "endpoints")]
    pub broker: Option<String>,
    /// QoS 1 publishes a device may have unacknowledged.
    #[arg(long, default_value_t = 100)]
    pub inflight: u16,
    /// With `--broker`: one more connection subscribes to every device's telemetry and counts
    /// what the broker delivers (pub→sub throughput).
    #[arg(long, requires = "broker")]
    pub sink: bool,
}

/// A simulated device and what it needs to connect.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimDevice {
    pub device_id: String,
    pub category: String,
    pub telemetry_topic: String,
    pub cmd_topic: String,
    pub device_token: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub ca_pem: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    project_id: String,
    devices: Vec<SimDevice>,
}

/// The rustls client configuration of a device, for rumqttc (the gateway, the black-box tests).
pub fn device_tls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<TlsConfiguration> {
    Ok(TlsConfiguration::Rustls(device_tls_config(
        ca_pem, cert_pem, key_pem,
    )?))
}

/// The rustls client configuration of a device: trust the platform's CA, present the device's
/// certificate.
pub fn device_tls_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_slice(cert_pem.as_bytes())?],
            PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?,
        )?;
    Ok(Arc::new(config))
}

/// `host:port` (as endpoints.json and `--broker` give it) into its parts.
pub fn host_port(addr: &str) -> anyhow::Result<(String, u16)> {
    let (h, p) = addr.rsplit_once(':').context("expected host:port")?;
    Ok((h.to_owned(), p.parse().context("port")?))
}

fn read_json(path: &Path) -> anyhow::Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&bytes).with_context(|| format!("{} is not JSON", path.display()))
}

/// Config fields a device of `category` must be provisioned with.
fn provisioning_body(category: &str, model: &str, serial: &str, n: usize) -> Value {
    let mut body = json!({"model_id": model, "serial_no": serial, "category": category});
    match category {
        "tower_crane" => {
            body["rated_load_t"] = json!(8.0);
            body["rated_moment_tm"] = json!(125.0);
        }
        "hoist" => {
            body["rated_load_kg"] = json!(2000.0);
            body["rated_persons"] = json!(9.0);
        }
        "unloading_platform" => body["rated_load_kg"] = json!(1000.0),
        "dust_noise" => body["mn"] = json!(format!("5157{:020X}", n)),
        _ => {}
    }
    body
}

async fn provision(
    args: &SimulateArgs,
    http: &str,
    state_path: &Path,
) -> anyhow::Result<Vec<SimDevice>> {
    let mut state: State = if state_path.exists() {
        serde_json::from_value(read_json(state_path)?)?
    } else {
        State::default()
    };
    if let Some(p) = &args.project_id
        && &state.project_id != p
    {
        state = State {
            project_id: p.clone(),
            devices: Vec::new(),
        };
    }
    if state.devices.len() >= args.devices {
        state.devices.truncate(args.devices);
        return Ok(state.devices);
    }
    let (Some(project), Some(model), Some(token)) = (&args.project_id, &args.model_id, &args.token)
    else {
        bail!(
            "{} has {} devices and {} are wanted: give --project-id, --model-id and a token (--token or SMARTSITE_TOKEN) to provision the rest",
            state_path.display(),
            state.devices.len(),
            args.devices
        );
    };
    let client = Client::new(http, Some(token.clone()))?;
    let m = client
        .get(&format!("/v1/device-models/{model}"), &[])
        .await?;
    let category = m["category"]
        .as_str()
        .context("the model has no category")?
        .to_owned();
    let stamp = chrono::Utc::now().format("%Y%m%d%H%M%S");
    for n in state.devices.len()..args.devices {
        let serial = format!("SIM-{stamp}-{n:05}");
        let v = client
            .post(
                &format!("/v1/projects/{project}/devices"),
                &provisioning_body(&category, model, &serial, n),
            )
            .await?;
        let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
        state.devices.push(SimDevice {
            device_id: s("device_id"),
            category: category.clone(),
            telemetry_topic: v["topics"]["telemetry"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            cmd_topic: v["topics"]["cmd"].as_str().unwrap_or_default().to_owned(),
            device_token: s("device_token"),
            certificate_pem: s("certificate_pem"),
            private_key_pem: s("private_key_pem"),
            ca_pem: s("ca_pem"),
        });
        if (n + 1) % 50 == 0 {
            eprint!("\rprovisioned {}/{}", n + 1, args.devices);
        }
    }
    eprintln!("\rprovisioned {} devices", state.devices.len());
    smartsite_shared::fsutil::write_private(state_path, &serde_json::to_vec_pretty(&state)?)?;
    Ok(state.devices)
}

/// One reading of `category` at step `k` of the scenario.
pub fn reading(category: &str, scenario: Scenario, k: u64, n: usize) -> Value {
    let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let wave = ((k as f64 / 10.0) + n as f64).sin();
    match category {
        "tower_crane" => {
            let moment = match scenario {
                // 70 % climbing 4 points a message: warning (90) at the 6th, alarm (100) at the
                // 9th, then holding at 110.
                Scenario::CraneOverload => (70.0 + k as f64 * 4.0).min(110.0),
                _ => 45.0 + 15.0 * wave,
            };
            json!({"ts": ts, "moment_pct": (moment * 10.0).round() / 10.0, "load_pct": (moment * 0.9 * 10.0).round() / 10.0,
                   "load_t": ((moment / 100.0 * 6.0) * 100.0).round() / 100.0, "radius_m": 25.0 + 10.0 * wave,
                   "height_m": 40.0, "slew_deg": (k % 360) as f64, "wind_ms": (3.0 + 2.0 * wave).max(0.0),
                   "tilt_deg": 0.2, "mode": "operating"})
        }
        "dust_noise" => {
            let pm10 = match scenario {
                // 80 µg/m³ climbing 20 a message to 260: the hour's mean passes 150 quickly.
                Scenario::DustExceedance => (80.0 + k as f64 * 20.0).min(260.0),
                _ => 60.0 + 20.0 * wave,
            };
            json!({"ts": ts, "pm10_ugm3": pm10, "pm25_ugm3": (pm10 * 0.5).round(), "tsp_ugm3": pm10 * 1.6,
                   "noise_dba": 58.0 + 6.0 * wave, "temp_c": 5.0, "rh_pct": 40.0, "wind_ms": 2.5})
        }
        "hoist" => {
            json!({"ts": ts, "load_kg": 800.0 + 300.0 * wave, "persons": 4, "speed_ms": 0.5, "direction": "up",
                          "door_front_open": false, "door_back_open": false, "wind_ms": 3.0})
        }
        _ => json!({"ts": ts, "battery_pct": 80.0, "signal_dbm": -70.0}),
    }
}

#[derive(Default)]
struct Counters {
    sent: AtomicU64,
    acked: AtomicU64,
    commands: AtomicU64,
    delivered: AtomicU64,
    failed_connections: AtomicU64,
}

/// What one simulated device does.
struct Plan {
    link: LinkOptions,
    category: String,
    telemetry_topic: String,
    cmd_topic: String,
    n: usize,
    scenario: Scenario,
    /// Falls silent (connected, publishing nothing) after this many messages.
    silent_after: Option<u64>,
    budget: Option<u64>,
    deadline: Option<Instant>,
    interval: Option<Duration>,
    window: usize,
}

/// How long a finished device waits for the acknowledgements of what it sent.
const ACK_WAIT: Duration = Duration::from_secs(60);

impl Plan {
    fn finished(&self, k: u64) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
            || self.budget.is_some_and(|b| k >= b)
            // Silent with a message budget and no duration: done.
            || (self.silent_after.is_some_and(|s| k >= s)
                && self.budget.is_some()
                && self.deadline.is_none())
    }

    fn may_publish(&self, k: u64) -> bool {
        !self.finished(k) && self.silent_after.is_none_or(|s| k < s)
    }

    fn payload(&self, k: u64) -> Bytes {
        Bytes::from(
            serde_json::to_vec(&reading(&self.category, self.scenario, k, self.n))
                .unwrap_or_default(),
        )
    }

    /// Publishes until the budget or the deadline, reconnecting after a lost connection (what
    /// was unacknowledged then counts as sent, not acknowledged).
    async fn drive(self, counters: Arc<Counters>) {
        let mut k: u64 = 0;
        let mut next_at = tokio::time::Instant::now();
        loop {
            match self.session(&counters, &mut k, &mut next_at).await {
                Ok(()) => return,
                Err(e) => {
                    counters.failed_connections.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "simulated device disconnected");
                    if self.finished(k) {
                        return;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// One connection: publish (at the rate, or keeping the window full), read acknowledgements
    /// and commands, ping; `Ok` when finished and acknowledged (or after [`ACK_WAIT`]).
    async fn session(
        &self,
        counters: &Counters,
        k: &mut u64,
        next_at: &mut tokio::time::Instant,
    ) -> anyhow::Result<()> {
        use tokio::time::Instant as TInstant;
        let mut link = Link::connect(&self.link).await?;
        link.subscribe(&self.cmd_topic)?;
        let mut inflight = 0usize;
        let mut incoming = Vec::new();
        let mut ping = tokio::time::interval(self.link.keep_alive / 2);
        ping.tick().await;
        let mut drain_until: Option<TInstant> = None;
        loop {
            let now = TInstant::now();
            let mut n = 0;
            while inflight < self.window
                && self.may_publish(*k)
                && self.interval.is_none_or(|_| now >= *next_at)
            {
                link.publish(&self.telemetry_topic, self.payload(*k))?;
                inflight += 1;
                *k += 1;
                n += 1;
                if let Some(i) = self.interval {
                    *next_at += i;
                }
            }
            counters.sent.fetch_add(n, Ordering::Relaxed);
            if *next_at < now {
                // Behind (window full or reconnecting): do not burst to catch up.
                *next_at = now;
            }
            link.flush().await?;
            let mut wake: Option<TInstant> = None;
            if self.finished(*k) {
                let until = *drain_until.get_or_insert(now + ACK_WAIT);
                if inflight == 0 || now >= until {
                    break;
                }
                wake = Some(until);
            } else {
                if self.interval.is_some() && inflight < self.window && self.may_publish(*k) {
                    wake = Some(*next_at);
                }
                if let Some(d) = self.deadline {
                    let d = TInstant::from_std(d);
                    wake = Some(wake.map_or(d, |w| w.min(d)));
                }
            }
            tokio::select! {
                r = link.read(&mut incoming) => {
                    r?;
                    let mut acked = 0;
                    for i in incoming.drain(..) {
                        match i {
                            Incoming::PubAck(_) => {
                                inflight = inflight.saturating_sub(1);
                                acked += 1;
                            }
                            Incoming::Publish { .. } => {
                                counters.commands.fetch_add(1, Ordering::Relaxed);
                            }
                            Incoming::SubAck { .. } | Incoming::Other => {}
                        }
                    }
                    counters.acked.fetch_add(acked, Ordering::Relaxed);
                }
                _ = ping.tick() => link.ping()?,
                _ = tokio::time::sleep_until(wake.unwrap_or(now)), if wake.is_some() => {}
            }
        }
        let _ = link.disconnect().await;
        Ok(())
    }
}

/// `--sink`: one more connection subscribed to every device's telemetry (`bench/+/telemetry`),
/// counting what the broker delivers: pub→sub throughput of a plain broker.
async fn sink(link: LinkOptions, counters: Arc<Counters>, ready: tokio::sync::oneshot::Sender<()>) {
    let mut ready = Some(ready);
    let r: anyhow::Result<()> = async {
        let mut l = Link::connect(&link).await?;
        l.subscribe("bench/+/telemetry")?;
        l.flush().await?;
        let mut incoming = Vec::new();
        loop {
            l.read(&mut incoming).await?;
            let mut n = 0;
            for i in incoming.drain(..) {
                match i {
                    Incoming::Publish { .. } => n += 1,
                    Incoming::SubAck { granted } => {
                        anyhow::ensure!(granted, "the broker refused the sink's subscription");
                        if let Some(r) = ready.take() {
                            let _ = r.send(());
                        }
                    }
                    _ => {}
                }
            }
            counters.delivered.fetch_add(n, Ordering::Relaxed);
            l.flush().await?;
        }
    }
    .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "sink connection ended");
    }
}

/// Runs the simulation; returns the summary it also prints.
pub async fn run(args: SimulateArgs) -> anyhow::Result<Value> {
    let (devices, target, plain) = match (&args.broker, &args.endpoints) {
        (Some(b), _) => {
            let devices = (0..args.devices)
                .map(|i| SimDevice {
                    device_id: format!("sim-{i}"),
                    category: if args.scenario == Scenario::DustExceedance {
                        "dust_noise"
                    } else {
                        "tower_crane"
                    }
                    .into(),
                    telemetry_topic: format!("bench/sim-{i}/telemetry"),
                    cmd_topic: format!("bench/sim-{i}/cmd"),
                    device_token: String::new(),
                    certificate_pem: String::new(),
                    private_key_pem: String::new(),
                    ca_pem: String::new(),
                })
                .collect::<Vec<_>>();
            (devices, b.clone(), true)
        }
        (None, Some(file)) => {
            let ep = read_json(file)?;
            let http = format!(
                "http://{}",
                ep["http"].as_str().context("endpoints.json has no http")?
            );
            let state_path = args
                .state
                .clone()
                .unwrap_or_else(|| file.with_file_name("simulator-devices.json"));
            let devices = provision(&args, &http, &state_path).await?;
            match (ep["mqtt"].as_str(), ep["mqtts"].as_str()) {
                (Some(m), _) => (devices, m.to_owned(), true),
                (None, Some(m)) => (devices, m.to_owned(), false),
                _ => bail!("endpoints.json names no MQTT listener"),
            }
        }
        (None, None) => bail!("give --endpoints DIR/endpoints.json (or --broker host:port)"),
    };
    if args.sink && args.broker.is_none() {
        bail!("--sink needs --broker (a smartsite server lets no device read another's topics)");
    }
    let (host, port) = host_port(&target)?;
    let anonymous = args.broker.is_some();
    let counters = Arc::new(Counters::default());
    let mut sink_task = None;
    if args.sink {
        let (ready, is_ready) = tokio::sync::oneshot::channel();
        sink_task = Some(tokio::spawn(sink(
            LinkOptions {
                host: host.clone(),
                port,
                client_id: "sim-sink".into(),
                login: None,
                tls: None,
                keep_alive: Duration::from_secs(30),
            },
            counters.clone(),
            ready,
        )));
        tokio::time::timeout(Duration::from_secs(10), is_ready)
            .await
            .context("the sink did not subscribe within 10 s")?
            .context("the sink's connection failed")?;
    }
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + Duration::from_secs(d));
    let budget = args
        .messages
        .map(|m| m.div_ceil(devices.len().max(1) as u64));
    let interval =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(devices.len() as f64 / args.rate));
    let mut tasks = Vec::new();
    for (n, d) in devices.into_iter().enumerate() {
        let (login, tls) = match (anonymous, plain) {
            (true, _) => (None, None),
            (false, true) => (Some((d.device_id.clone(), d.device_token.clone())), None),
            (false, false) => (
                None,
                Some(device_tls_config(
                    &d.ca_pem,
                    &d.certificate_pem,
                    &d.private_key_pem,
                )?),
            ),
        };
        let plan = Plan {
            link: LinkOptions {
                host: host.clone(),
                port,
                client_id: d.device_id.clone(),
                login,
                tls,
                keep_alive: Duration::from_secs(30),
            },
            category: d.category,
            telemetry_topic: d.telemetry_topic,
            cmd_topic: d.cmd_topic,
            n,
            scenario: args.scenario,
            silent_after: (args.scenario == Scenario::Offline && n % 3 == 0).then_some(5),
            budget,
            deadline,
            interval,
            window: usize::from(args.inflight.max(1)),
        };
        tasks.push(tokio::spawn(plan.drive(counters.clone())));
    }
    let progress = {
        let counters = counters.clone();
        tokio::spawn(async move {
            let mut last = (Instant::now(), 0u64);
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let acked = counters.acked.load(Ordering::Relaxed);
                let rate = (acked - last.1) as f64 / last.0.elapsed().as_secs_f64();
                last = (Instant::now(), acked);
                eprint!(
                    "\rsent {:>9}  acked {:>9}  rate {:>8.0} msg/s  commands {:>5}   ",
                    counters.sent.load(Ordering::Relaxed),
                    acked,
                    rate,
                    counters.commands.load(Ordering::Relaxed)
                );
            }
        })
    };
    let all = futures::future::join_all(tasks);
    tokio::select! {
        _ = all => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    let secs = started.elapsed().as_secs_f64();
    let acked = counters.acked.load(Ordering::Relaxed);
    let mut summary = json!({
        "devices": args.devices,
        "sent": counters.sent.load(Ordering::Relaxed),
        "acked": acked,
        "commands": counters.commands.load(Ordering::Relaxed),
        "seconds": (secs * 100.0).round() / 100.0,
        "acked_per_second": (acked as f64 / secs).round(),
        "connection_errors": counters.failed_connections.load(Ordering::Relaxed),
    });
    if let Some(task) = sink_task {
        // Everything acknowledged has been routed; wait until the sink has it (or stalls 5 s).
        let mut last = (Instant::now(), counters.delivered.load(Ordering::Relaxed));
        while last.1 < acked && last.0.elapsed() < Duration::from_secs(5) {
            tokio::time::sleep(Duration::from_millis(5)).await;
            let d = counters.delivered.load(Ordering::Relaxed);
            if d != last.1 {
                last = (Instant::now(), d);
            }
        }
        task.abort();
        let secs = started.elapsed().as_secs_f64();
        summary["delivered"] = json!(last.1);
        summary["delivered_seconds"] = json!((secs * 100.0).round() / 100.0);
        summary["delivered_per_second"] = json!((last.1 as f64 / secs).round());
    }
    progress.abort();
    eprintln!();
    println!("{summary}");
    Ok(summary)
}
