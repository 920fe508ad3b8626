//! A device's side of MQTT for the black-box tests: rumqttc over TLS with the client certificate
//! the platform issued, or plain MQTT with the device token. Events of the connection arrive on a
//! channel so a test can wait for the acks, refusals and commands it expects.

use std::time::Duration;

use anyhow::{Context as _, bail};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use serde_json::Value;
use tokio::sync::mpsc;

/// What a device was given at provisioning.
#[derive(Debug, Clone)]
pub struct DeviceCreds {
    pub device_id: String,
    pub certificate_pem: String,
    pub private_key_pem: String,
    pub ca_pem: String,
    pub device_token: String,
    pub telemetry: String,
    pub events: String,
    pub cmd: String,
}

impl DeviceCreds {
    /// From the provisioning answer (`POST /v1/projects/{id}/devices`).
    pub fn from_answer(v: &Value) -> anyhow::Result<DeviceCreds> {
        let s = |k: &str| -> anyhow::Result<String> {
            Ok(v[k]
                .as_str()
                .with_context(|| format!("no {k} in {v}"))?
                .to_owned())
        };
        let t = |k: &str| -> anyhow::Result<String> {
            Ok(v["topics"][k]
                .as_str()
                .with_context(|| format!("no topics.{k} in {v}"))?
                .to_owned())
        };
        Ok(DeviceCreds {
            device_id: s("device_id")?,
            certificate_pem: s("certificate_pem")?,
            private_key_pem: s("private_key_pem")?,
            ca_pem: s("ca_pem")?,
            device_token: s("device_token")?,
            telemetry: t("telemetry")?,
            events: t("events")?,
            cmd: t("cmd")?,
        })
    }
}

/// Provisions a tower crane into the world's project and returns its credentials.
pub async fn crane(
    api: &crate::world::Api,
    w: &crate::world::World,
    serial: &str,
) -> anyhow::Result<DeviceCreds> {
    DeviceCreds::from_answer(&crate::world::provision_crane(api, w, serial).await?)
}

/// The events of one connection, as the test sees them.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    ConnAck(ConnectReturnCode),
    PubAck(u16),
    SubAck,
    Publish {
        topic: String,
        payload: Vec<u8>,
    },
    /// The connection ended (closed by the broker, refused, or failed), with the error.
    Closed(String),
}

pub struct Device {
    pub client: AsyncClient,
    pub events: mpsc::UnboundedReceiver<Seen>,
    /// Events seen while waiting for something else (a command that arrived before an ack).
    backlog: std::collections::VecDeque<Seen>,
}

fn tls(creds: &DeviceCreds) -> anyhow::Result<TlsConfiguration> {
    smartsite::simulate::device_tls(
        &creds.ca_pem,
        &creds.certificate_pem,
        &creds.private_key_pem,
    )
}

/// Connects as the device: over TLS with its certificate (`addr` = the `mqtts` endpoint), or
/// with its token (`token = true`, `addr` = the `mqtt` endpoint). The client id is `client_id`
/// (normally the device id). The event loop runs until the connection ends once; reconnecting
/// is the test's business.
pub fn connect(
    creds: &DeviceCreds,
    addr: &str,
    token: bool,
    client_id: &str,
) -> anyhow::Result<Device> {
    let (host, port) = smartsite::simulate::host_port(addr)?;
    let mut opts = MqttOptions::new(client_id, host, port);
    opts.set_keep_alive(Duration::from_secs(30));
    opts.set_inflight(200);
    if token {
        opts.set_credentials(creds.device_id.clone(), creds.device_token.clone());
    } else {
        opts.set_transport(Transport::tls_with_config(tls(creds)?));
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 1000);
    let (tx, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(c))) => {
                    let _ = tx.send(Seen::ConnAck(c.code));
                }
                Ok(Event::Incoming(Packet::PubAck(a))) => {
                    let _ = tx.send(Seen::PubAck(a.pkid));
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(Seen::SubAck);
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let _ = tx.send(Seen::Publish {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                    });
                }
                Ok(_) => {}
                Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
                    let _ = tx.send(Seen::ConnAck(code));
                    let _ = tx.send(Seen::Closed(format!("refused: {code:?}")));
                    return;
                }
                Err(e) => {
                    let _ = tx.send(Seen::Closed(e.to_string()));
                    return;
                }
            }
        }
    });
    Ok(Device {
        client,
        events,
        backlog: Default::default(),
    })
}

impl Device {
    /// The next event, or an error after `secs` seconds of silence.
    pub async fn next(&mut self, secs: u64) -> anyhow::Result<Seen> {
        if let Some(s) = self.backlog.pop_front() {
            return Ok(s);
        }
        match tokio::time::timeout(Duration::from_secs(secs), self.events.recv()).await {
            Ok(Some(s)) => Ok(s),
            Ok(None) => bail!("event loop ended"),
            Err(_) => bail!("nothing happened within {secs} s"),
        }
    }

    /// Waits for the CONNACK; `Ok(code)`, or the error if the connection failed first.
    pub async fn connack(&mut self) -> anyhow::Result<Result<ConnectReturnCode, String>> {
        loop {
            match self.next(10).await? {
                Seen::ConnAck(c) => return Ok(Ok(c)),
                Seen::Closed(e) => return Ok(Err(e)),
                _ => {}
            }
        }
    }

    /// Publishes QoS 1 and waits for its PUBACK (`Err` if the connection closes first).
    pub async fn publish_acked(&mut self, topic: &str, payload: &Value) -> anyhow::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, serde_json::to_vec(payload)?)
            .await?;
        let mut kept = Vec::new();
        let r = loop {
            match self.next(10).await {
                Ok(Seen::PubAck(_)) => break Ok(()),
                Ok(Seen::Closed(e)) => {
                    break Err(anyhow::anyhow!("connection closed before PUBACK: {e}"));
                }
                Ok(other) => kept.push(other),
                Err(e) => break Err(e),
            }
        };
        self.backlog.extend(kept);
        r
    }
}

/// A raw MQTT 3.1.1 session over plain TCP with a token: CONNECT with `keep_alive` seconds and a
/// last will on the device's own events topic carrying `cause`; answers the socket after an
/// accepting CONNACK.
pub async fn raw_session(
    addr: &str,
    creds: &DeviceCreds,
    keep_alive: u16,
    cause: &str,
) -> anyhow::Result<tokio::net::TcpStream> {
    use rumqttc::mqttbytes::v4::{Connect, LastWill};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut c = Connect::new(creds.device_id.clone());
    c.keep_alive = keep_alive;
    c.set_login(creds.device_id.clone(), creds.device_token.clone());
    let will =
        serde_json::json!({"ts": chrono::Utc::now().to_rfc3339(), "type": "fault", "cause": cause});
    c.last_will = Some(LastWill::new(
        creds.events.clone(),
        will.to_string(),
        QoS::AtLeastOnce,
        false,
    ));
    let mut buf = bytes::BytesMut::new();
    c.write(&mut buf)?;
    let mut sock = tokio::net::TcpStream::connect(addr).await?;
    sock.write_all(&buf).await?;
    let mut connack = [0u8; 4];
    tokio::time::timeout(Duration::from_secs(10), sock.read_exact(&mut connack))
        .await
        .context("no CONNACK within 10 s")??;
    if connack != [0x20, 0x02, 0x00, 0x00] {
        bail!("CONNACK {connack:?} does not accept the session");
    }
    Ok(sock)
}
