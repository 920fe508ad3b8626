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
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::admin::Client;

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

/// The rustls client configuration of a device: trust the platform's CA, present the device's
/// certificate. Shared with the black-box tests.
pub fn device_tls(ca_pem: &str, cert_pem: &str, key_pem: &str) -> anyhow::Result<TlsConfiguration> {
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
    Ok(TlsConfiguration::Rustls(Arc::new(config)))
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
    failed_connections: AtomicU64,
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
    let counters = Arc::new(Counters::default());
    let started = Instant::now();
    let deadline = args.duration.map(|d| started + Duration::from_secs(d));
    let per_device_limit = args
        .messages
        .map(|m| m.div_ceil(devices.len().max(1) as u64));
    let interval =
        (args.rate > 0.0).then(|| Duration::from_secs_f64(devices.len() as f64 / args.rate));
    let anonymous = args.broker.is_some();
    let mut tasks = Vec::new();
    for (n, d) in devices.into_iter().enumerate() {
        let (host, port) = host_port(&target)?;
        let mut opts = MqttOptions::new(d.device_id.clone(), host, port);
        opts.set_keep_alive(Duration::from_secs(30));
        opts.set_inflight(args.inflight.max(1));
        opts.set_max_packet_size(64 * 1024, 64 * 1024);
        if !anonymous {
            if plain {
                opts.set_credentials(d.device_id.clone(), d.device_token.clone());
            } else {
                opts.set_transport(Transport::tls_with_config(device_tls(
                    &d.ca_pem,
                    &d.certificate_pem,
                    &d.private_key_pem,
                )?));
            }
        }
        let counters = counters.clone();
        let scenario = args.scenario;
        let silent_after = (scenario == Scenario::Offline && n % 3 == 0).then_some(5u64);
        tasks.push(tokio::spawn(async move {
            let (client, mut eventloop) = AsyncClient::new(opts, 1024);
            let mine = Arc::new(AtomicU64::new(0));
            let poller = {
                let counters = counters.clone();
                let mine = mine.clone();
                tokio::spawn(async move {
                    loop {
                        match eventloop.poll().await {
                            Ok(Event::Incoming(Packet::PubAck(_))) => {
                                counters.acked.fetch_add(1, Ordering::Relaxed);
                                mine.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Event::Incoming(Packet::Publish(_))) => {
                                counters.commands.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(_) => {}
                            Err(e) => {
                                counters.failed_connections.fetch_add(1, Ordering::Relaxed);
                                tracing::debug!(error = %e, "simulated device disconnected");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                    }
                })
            };
            let _ = client.subscribe(&d.cmd_topic, QoS::AtLeastOnce).await;
            let mut tick = interval.map(tokio::time::interval);
            let mut k: u64 = 0;
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d)
                    || per_device_limit.is_some_and(|l| k >= l)
                {
                    break;
                }
                if let Some(t) = &mut tick {
                    t.tick().await;
                }
                if silent_after.is_some_and(|s| k >= s) {
                    // Silent but connected; with a message budget and no duration it is done.
                    if per_device_limit.is_some() && deadline.is_none() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                let payload =
                    serde_json::to_vec(&reading(&d.category, scenario, k, n)).unwrap_or_default();
                if client
                    .publish(&d.telemetry_topic, QoS::AtLeastOnce, false, payload)
                    .await
                    .is_err()
                {
                    break;
                }
                counters.sent.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
            // Wait for the acknowledgements of what was sent (publish only queues it), up to 60 s.
            let waited = Instant::now();
            while mine.load(Ordering::Relaxed) < k && waited.elapsed() < Duration::from_secs(60) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let _ = client.disconnect().await;
            poller.abort();
        }));
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
    progress.abort();
    let secs = started.elapsed().as_secs_f64();
    let acked = counters.acked.load(Ordering::Relaxed);
    let summary = json!({
        "devices": args.devices,
        "sent": counters.sent.load(Ordering::Relaxed),
        "acked": acked,
        "commands": counters.commands.load(Ordering::Relaxed),
        "seconds": (secs * 100.0).round() / 100.0,
        "acked_per_second": (acked as f64 / secs).round(),
        "connection_errors": counters.failed_connections.load(Ordering::Relaxed),
    });
    eprintln!();
    println!("{summary}");
    Ok(summary)
}
