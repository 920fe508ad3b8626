//! `smartsite gateway hj212`: the AWS edition's way in for HJ 212 dust monitors, which speak TCP,
//! not MQTT. It serves the same HJ 212 listener as `smartsite serve --hj212` and republishes each
//! data frame as the telemetry of the device whose MN matches, over MQTT with that device's own
//! credentials (to AWS IoT Core, or any smartsite broker), so the IoT policy, the topic rule and
//! the ingest pipeline treat it like any other device message. The 9014 acknowledgement goes
//! back to the monitor only once the broker acknowledged the publish (QoS 1).
//!
//! Frames that cannot be taken (bad CRC, unknown factor…) of a known MN are published as a
//! `fault` event of that device, so they are kept in the platform; those of an unknown MN are
//! logged.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use async_trait::async_trait;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, Transport};
use serde::Deserialize;
use serde_json::json;
use smartsite_shared::domain::hj212::Frame;
use smartsite_shared::telemetry::Untrusted;
use tokio::sync::{Mutex, mpsc};

use crate::hj212::Hj212Sink;
use crate::simulate::{device_tls, host_port};

#[derive(Debug, Clone, clap::Args)]
pub struct GatewayArgs {
    /// Where HJ 212 monitors connect (TCP).
    #[arg(long, default_value = "0.0.0.0:9212")]
    pub listen: SocketAddr,
    /// The MQTT broker, `host:port`: the AWS IoT ATS endpoint on 8883, or a smartsite server's
    /// `mqtts`/`mqtt` address.
    #[arg(long)]
    pub mqtt: String,
    /// JSON list of the monitors: `[{"mn", "device_id", "telemetry_topic", "events_topic",
    /// "ca_pem", "certificate_pem", "private_key_pem"}]` (TLS), or with `"device_token"` instead of
    /// the certificate and key for plain MQTT — what provisioning answered for each device.
    #[arg(long)]
    pub devices: PathBuf,
    #[command(flatten)]
    pub limits: crate::limits::Hj212Limits,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Monitor {
    pub mn: String,
    pub device_id: String,
    pub telemetry_topic: String,
    pub events_topic: String,
    #[serde(default)]
    pub ca_pem: String,
    #[serde(default)]
    pub certificate_pem: String,
    #[serde(default)]
    pub private_key_pem: String,
    #[serde(default)]
    pub device_token: Option<String>,
}

/// One device's MQTT session; publishes are serialised so each waits for its own PUBACK.
struct Session {
    client: AsyncClient,
    acks: Mutex<mpsc::UnboundedReceiver<()>>,
}

pub struct Gateway {
    broker: String,
    monitors: HashMap<String, Monitor>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl Gateway {
    pub fn new(broker: String, monitors: Vec<Monitor>) -> Self {
        Gateway {
            broker,
            monitors: monitors.into_iter().map(|m| (m.mn.clone(), m)).collect(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    async fn session(&self, m: &Monitor) -> anyhow::Result<Arc<Session>> {
        let mut sessions = self.sessions.lock().await;
        if let Some(s) = sessions.get(&m.mn) {
            return Ok(s.clone());
        }
        let (host, port) = host_port(&self.broker).context("--mqtt")?;
        let mut opts = MqttOptions::new(m.device_id.clone(), host, port);
        opts.set_keep_alive(Duration::from_secs(60));
        match &m.device_token {
            Some(t) => {
                opts.set_credentials(m.device_id.clone(), t.clone());
            }
            None => {
                opts.set_transport(Transport::tls_with_config(device_tls(
                    &m.ca_pem,
                    &m.certificate_pem,
                    &m.private_key_pem,
                )?));
            }
        }
        let (client, mut eventloop) = AsyncClient::new(opts, 64);
        let (tx, rx) = mpsc::unbounded_channel();
        let device = m.device_id.clone();
        tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        if tx.send(()).is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(device = %device, error = %e, "gateway: MQTT connection failed, retrying");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                    }
                }
            }
        });
        let s = Arc::new(Session {
            client,
            acks: Mutex::new(rx),
        });
        sessions.insert(m.mn.clone(), s.clone());
        Ok(s)
    }

    /// Publishes QoS 1 and waits for the broker's acknowledgement.
    async fn publish(&self, m: &Monitor, topic: &str, payload: Vec<u8>) -> Result<(), String> {
        let s = self.session(m).await.map_err(|e| e.to_string())?;
        let mut acks = s.acks.lock().await;
        while acks.try_recv().is_ok() {}
        s.client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(Duration::from_secs(10), acks.recv()).await {
            Ok(Some(())) => Ok(()),
            _ => Err("the broker did not acknowledge within 10 s".to_owned()),
        }
    }
}

#[async_trait]
impl Hj212Sink for Gateway {
    async fn data(
        &self,
        peer: SocketAddr,
        frame: &Frame,
        telemetry: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), String> {
        let Some(m) = self.monitors.get(&frame.mn) else {
            tracing::warn!(%peer, mn = %Untrusted(&frame.mn), "gateway: no device configured for this MN; frame dropped unacknowledged");
            return Err(format!("unknown MN {}", frame.mn));
        };
        let payload = serde_json::to_vec(&telemetry).map_err(|e| e.to_string())?;
        self.publish(m, &m.telemetry_topic, payload).await
    }

    async fn heartbeat(&self, _peer: SocketAddr, _mn: &str) {}

    async fn reject(
        &self,
        peer: SocketAddr,
        mn: Option<&str>,
        raw: &[u8],
        reason: &str,
        detail: &str,
    ) {
        let Some(m) = mn.and_then(|mn| self.monitors.get(mn)) else {
            tracing::warn!(
                %peer,
                mn = mn.map(|m| tracing::field::display(Untrusted(m))),
                reason,
                detail = %Untrusted(detail),
                "gateway: rejected HJ 212 frame of an unknown MN"
            );
            return;
        };
        let event = json!({
            "ts": chrono::Utc::now().to_rfc3339(),
            "type": "fault",
            "source": "hj212",
            "reason": reason,
            "detail": detail,
            "raw": String::from_utf8_lossy(&raw[..raw.len().min(2048)]),
        });
        let payload = serde_json::to_vec(&event).unwrap_or_default();
        if let Err(e) = self.publish(m, &m.events_topic, payload).await {
            tracing::warn!(%peer, error = %Untrusted(&e), "gateway: fault event not published");
        }
    }
}

pub async fn run(args: GatewayArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.devices)
        .with_context(|| format!("cannot read {}", args.devices.display()))?;
    let monitors: Vec<Monitor> = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a JSON list of monitors", args.devices.display()))?;
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    println!(
        "smartsite gateway hj212: listening on {}, {} monitors, publishing to {}",
        listener.local_addr()?,
        monitors.len(),
        args.mqtt
    );
    let gateway = Arc::new(Gateway::new(args.mqtt, monitors));
    crate::limits::warn_if_fd_limit_below(u64::from(args.limits.max_connections));
    crate::hj212::serve(
        listener,
        gateway,
        crate::serve::shutdown_signal(),
        &args.limits,
    )
    .await?;
    Ok(())
}
