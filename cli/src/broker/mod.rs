//! The single-box MQTT broker: what AWS IoT Core does for the AWS edition, for devices of the
//! single-box edition.
//!
//! - MQTT 3.1.1 and 5 on one listener (the protocol level is read from CONNECT), over TLS with
//!   client certificates from the local CA (`--mqtts`) or plain TCP with device tokens (`--mqtt`:
//!   username = device id, password = token).
//! - Every device is authenticated against its credential records, so a revoked certificate or
//!   token is refused at CONNECT even though the certificate still chains to the CA. The client
//!   id must be the device id (the IoT policy's `client/${iot:Connection.Thing.ThingName}`).
//! - The topic ACL is the IoT policy's: publish only `ss/I/P/<itself>/telemetry|events`,
//!   subscribe only its own `cmd`. A refused publish is quarantined with its reason, answered with
//!   PUBACK "not authorized" on MQTT 5 and with a disconnect on 3.1.1 (which has no negative ack),
//!   as IoT Core does.
//! - A QoS 1 PUBLISH is acknowledged only after the [`Uplink`] reports it durably stored, and
//!   PUBACKs leave in the order the PUBLISHes came (MQTT 3.1.1 §4.6) while up to
//!   [`MAX_INFLIGHT`] messages of one connection are stored concurrently. The publishes decoded
//!   from one read go to the uplink as one group (one hand-over, one reply), including those
//!   that came in the same read as a DISCONNECT. QoS 2 is stored before PUBREC.
//! - Presence: online at CONNACK, offline at disconnect, keep-alive expiry (1.5 × keep-alive) or
//!   takeover; the last will is delivered (as an `events` message, if the ACL allows its topic)
//!   unless the client disconnected normally.
//! - Downlink: [`Broker::send`] publishes on a connected device's `cmd` topic (QoS 1).
//! - Bounded ([`MqttLimits`]): connections in total and per source address (both listeners
//!   share the budget; refused at accept); one deadline from TCP accept to a complete CONNECT,
//!   TLS handshake included; packets of at most [`codec::MAX_PACKET`], refused from the fixed
//!   header, so the read buffer never holds more than one packet; keep-alive capped (0 = the
//!   cap) and renewed only by whole packets, so a client trickling bytes is idle; at most
//!   [`MAX_INFLIGHT`] publishes and [`MAX_INFLIGHT_BYTES`] of them being stored per connection.
//!
//! Why our own session loop over rumqttc's codecs rather than rumqttd or ntex-mqtt: rumqttd
//! acknowledges QoS 1 once a message is in its in-memory commit log, with no hook to wait for our
//! store, and ntex-mqtt brings its own runtime and I/O stack beside tokio/axum. The session logic
//! we need (authenticate, ACL, ack-after-commit, presence) is a few hundred lines; the wire
//! format is rumqttc's well-tested encoders and decoders.

pub mod codec;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Utc};
use futures::stream::{FuturesOrdered, StreamExt as _};
use smartsite_shared::domain::devices::DeviceId;
use smartsite_shared::fleet::{DeviceStatus, Fleet};
use smartsite_shared::ingest::{Inbound, MessageKind};
use smartsite_shared::iot::local::{LocalRegistry, fingerprint};
use smartsite_shared::iot::{DeviceIdentity, DeviceRegistry as _, TopicKind};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::{Notify, mpsc, watch};

use codec::{ConnectCode, In, Out, PubOutcome, Version};
use smartsite_shared::telemetry::Untrusted;

use crate::limits::{ConnCaps, MqttLimits};

/// QoS 1/2 publishes of one connection being stored at once; beyond it the broker stops reading
/// from that connection (back-pressure) until acks go out. Advertised as MQTT 5 receive maximum.
pub const MAX_INFLIGHT: usize = 256;
/// Payload bytes of one connection being stored at once, the other bound of the back-pressure:
/// 256 packets of the largest size would pin 16 MiB per connection; telemetry (≈ 200 bytes a
/// message) never comes near it.
pub const MAX_INFLIGHT_BYTES: usize = 1024 * 1024;
/// Read buffer before CONNECT: enough for a CONNECT with credentials; it grows (up to one packet)
/// if the CONNECT carries a large will, and to [`SESSION_BUFFER`] once the client is in.
const CONNECT_BUFFER: usize = 512;
/// Read buffer of an authenticated session.
const SESSION_BUFFER: usize = 8 * 1024;

/// Resolves once the stop flag is set (or its sender is gone). The watch guard stays inside, so
/// the caller's future remains `Send`.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Where the broker hands messages and presence.
#[async_trait]
pub trait Uplink: Send + Sync + 'static {
    /// Stores messages that arrived together durably; one result per message, in order. `Ok` ⇒
    /// the broker acknowledges it; `Err` ⇒ it does not.
    async fn accept(&self, msgs: Vec<Inbound>) -> Vec<Result<(), String>>;
    /// A device came online or went offline.
    async fn presence(&self, device: &DeviceIdentity, online: bool, at: DateTime<Utc>);
    /// A publish the ACL refused (for the device's quarantine).
    async fn refused(&self, device: &DeviceIdentity, topic: &str, payload: Bytes, reason: &str);
}

/// The outcomes `(packet id, QoS, outcome)` of publishes handed over together, and their bytes.
type Stored = (Vec<(u16, u8, PubOutcome)>, usize);
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = Stored> + Send>>;

/// What publishes hold while they are stored (the back-pressure's byte count).
fn payload_bytes(msgs: &[Inbound]) -> usize {
    msgs.iter().map(|m| m.payload.len()).sum()
}

struct SessionHandle {
    id: u64,
    kick: Arc<Notify>,
    downlink: mpsc::Sender<Bytes>,
}

/// The broker; one per process, serving any number of listeners.
pub struct Broker {
    registry: Arc<LocalRegistry>,
    fleet: Fleet,
    uplink: Arc<dyn Uplink>,
    sessions: Mutex<HashMap<String, SessionHandle>>,
    next_id: AtomicU64,
    caps: Arc<ConnCaps>,
    connect_timeout: Duration,
    max_keep_alive: u16,
}

/// An authenticated connection's device and how it proved itself.
struct Authed {
    identity: DeviceIdentity,
}

impl Broker {
    pub fn new(
        registry: Arc<LocalRegistry>,
        fleet: Fleet,
        uplink: Arc<dyn Uplink>,
        limits: &MqttLimits,
    ) -> Arc<Self> {
        Arc::new(Broker {
            registry,
            fleet,
            uplink,
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            caps: ConnCaps::new(
                "mqtt",
                limits.max_connections,
                limits.max_connections_per_addr,
            ),
            connect_timeout: limits.connect_timeout(),
            max_keep_alive: limits.max_keep_alive_secs,
        })
    }

    /// The rustls server configuration of `--mqtts`: a server certificate from the local CA for
    /// `names`, and client certificates required and verified against the same CA.
    pub fn tls_config(&self, names: &[String]) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        use rustls_pki_types::pem::PemObject as _;
        use rustls_pki_types::{CertificateDer, PrivateKeyDer};
        let ca = self.registry.ca();
        let (cert_pem, key_pem) = ca.issue_server(names)?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.ca_der().to_vec()))?;
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(roots),
            provider.clone(),
        )
        .build()?;
        let certs = vec![
            CertificateDer::from_pem_slice(cert_pem.as_bytes())?,
            CertificateDer::from(ca.ca_der().to_vec()),
        ];
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)?;
        Ok(Arc::new(config))
    }

    /// Serves MQTT over TLS on `listener` until `stop` turns true.
    pub async fn serve_tls(
        self: Arc<Self>,
        listener: TcpListener,
        tls: Arc<rustls::ServerConfig>,
        stop: watch::Receiver<bool>,
    ) {
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        self.accept_loop(listener, stop, move |broker, tcp, peer, connect_by, stop| {
            let acceptor = acceptor.clone();
            async move {
                let tls = match tokio::time::timeout_at(connect_by, acceptor.accept(tcp)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %Untrusted(&e), "mqtts: TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "mqtts: no TLS handshake in time; closing");
                        return;
                    }
                };
                let cert = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|c| c.first())
                    .map(|c| c.as_ref().to_vec());
                broker.session(tls, peer, cert, connect_by, stop).await;
            }
        })
        .await;
    }

    /// Serves plain MQTT (device tokens) on `listener` until `stop` turns true.
    pub async fn serve_plain(self: Arc<Self>, listener: TcpListener, stop: watch::Receiver<bool>) {
        self.accept_loop(
            listener,
            stop,
            |broker, tcp, peer, connect_by, stop| async move {
                broker.session(tcp, peer, None, connect_by, stop).await;
            },
        )
        .await;
    }

    /// Accepts connections within the caps and hands each to `handle` with the instant by which
    /// its CONNECT must have arrived.
    async fn accept_loop<F, Fut>(
        self: Arc<Self>,
        listener: TcpListener,
        mut stop: watch::Receiver<bool>,
        handle: F,
    ) where
        F: Fn(
            Arc<Self>,
            tokio::net::TcpStream,
            SocketAddr,
            tokio::time::Instant,
            watch::Receiver<bool>,
        ) -> Fut,
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let sessions_stop = stop.clone();
        loop {
            tokio::select! {
                _ = stopped(&mut stop) => return,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        // Beyond a cap the stream is dropped here, which closes it.
                        let Some(permit) = self.caps.admit(peer) else { continue };
                        let _ = tcp.set_nodelay(true);
                        let connect_by = tokio::time::Instant::now() + self.connect_timeout;
                        let session = handle(self.clone(), tcp, peer, connect_by, sessions_stop.clone());
                        tokio::spawn(async move {
                            session.await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "mqtt: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    /// Publishes `payload` on the device's `cmd` topic if it is connected (QoS 1). Returns whether
    /// it was handed to a live session.
    pub fn send(&self, device_id: &str, payload: Bytes) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions
            .get(device_id)
            .is_some_and(|s| s.downlink.try_send(payload).is_ok())
    }

    /// Whether a device has a live session.
    pub fn is_connected(&self, device_id: &str) -> bool {
        let sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        sessions.contains_key(device_id)
    }

    async fn authenticate(
        &self,
        c: &codec::Connect,
        cert: Option<&[u8]>,
    ) -> Result<Authed, ConnectCode> {
        let backend = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "mqtt: authentication backend failed");
            ConnectCode::Unavailable
        };
        let (integrator, device_id, cert_fp) = match cert {
            Some(der) => {
                let info = self
                    .registry
                    .authenticate_certificate(der)
                    .await
                    .map_err(|e| backend(&e))?
                    .ok_or(ConnectCode::NotAuthorized)?;
                (info.integrator_id, info.device_id, Some(fingerprint(der)))
            }
            None => {
                let (Some(user), Some(pass)) = (&c.username, &c.password) else {
                    return Err(ConnectCode::BadCredentials);
                };
                let id =
                    DeviceId::parse("username", user).map_err(|_| ConnectCode::BadCredentials)?;
                let loc = self
                    .fleet
                    .locate(&id)
                    .await
                    .map_err(|e| backend(&e))?
                    .ok_or(ConnectCode::BadCredentials)?;
                let ok = self
                    .registry
                    .authenticate_token(&loc.integrator_id, user, pass)
                    .await
                    .map_err(|e| backend(&e))?;
                if !ok {
                    return Err(ConnectCode::BadCredentials);
                }
                (loc.integrator_id, user.clone(), None)
            }
        };
        if c.client_id != device_id {
            return Err(ConnectCode::BadClientId);
        }
        let id =
            DeviceId::parse("device_id", &device_id).map_err(|_| ConnectCode::NotAuthorized)?;
        let device = self
            .fleet
            .device(&integrator, &id)
            .await
            .map_err(|e| backend(&e))?
            .ok_or(ConnectCode::NotAuthorized)?;
        if device.status != DeviceStatus::Active {
            return Err(ConnectCode::NotAuthorized);
        }
        let identity = DeviceIdentity {
            integrator_id: integrator,
            project_id: device.project_id.to_string(),
            device_id,
            category: device.category.as_str().to_owned(),
        };
        // Rotation revokes the old credentials once the new ones are used (issue 4, item 5): the
        // first connection with the latest certificate retires the others.
        if cert_fp.as_deref() == Some(device.certificate_id.as_str())
            && let Err(e) = self
                .registry
                .retire_previous(&identity, &device.certificate_id)
                .await
        {
            tracing::warn!(device = %identity.device_id, error = %e, "mqtt: retiring old credentials failed");
        }
        Ok(Authed { identity })
    }

    /// Hands the publishes read together to the uplink; resolves to each one's outcome.
    fn hand_over(&self, batch: &mut Vec<Inbound>, arrived: &mut Vec<(u16, u8)>) -> Pending {
        let uplink = self.uplink.clone();
        let msgs = std::mem::take(batch);
        let ids = std::mem::take(arrived);
        let bytes = payload_bytes(&msgs);
        Box::pin(async move {
            let results = uplink.accept(msgs).await;
            let outcomes = ids
                .into_iter()
                .zip(results)
                .map(|((pkid, qos), r)| {
                    let outcome = match r {
                        Ok(()) => PubOutcome::Stored,
                        Err(e) => {
                            tracing::warn!(error = %Untrusted(&e), "mqtt: message not stored");
                            PubOutcome::Failed
                        }
                    };
                    (pkid, qos, outcome)
                })
                .collect();
            (outcomes, bytes)
        })
    }

    async fn session<S>(
        self: Arc<Self>,
        stream: S,
        peer: SocketAddr,
        cert: Option<Vec<u8>>,
        connect_by: tokio::time::Instant,
        mut stop: watch::Receiver<bool>,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (mut rd, mut wr) = tokio::io::split(stream);
        // Small until the client is in: an unauthenticated connection costs little.
        let mut inb = BytesMut::with_capacity(CONNECT_BUFFER);
        let mut out = BytesMut::new();

        // CONNECT first, by the deadline set at accept.
        let first = tokio::time::timeout_at(connect_by, async {
            loop {
                if let Some(level) = codec::sniff_connect_level(&inb) {
                    let version = match level {
                        Ok(4) => Version::V4,
                        Ok(5) => Version::V5,
                        Ok(l) => return Err(codec::CodecError::Level(l).to_string()),
                        Err(e) => return Err(e.to_string()),
                    };
                    if let Some(p) = codec::read(version, &mut inb).map_err(|e| e.to_string())? {
                        return Ok((version, p));
                    }
                }
                match rd.read_buf(&mut inb).await {
                    Ok(0) | Err(_) => return Err("closed before CONNECT".to_owned()),
                    Ok(_) => {}
                }
            }
        })
        .await;
        let (version, connect) = match first {
            Ok(Ok((v, In::Connect(c)))) => (v, c),
            Ok(Ok(_)) => return,
            Ok(Err(e)) => {
                tracing::info!(%peer, error = %Untrusted(&e), "mqtt: refused before CONNECT");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "mqtt: no CONNECT in time; closing");
                return;
            }
        };
        let authed = match self.authenticate(&connect, cert.as_deref()).await {
            Ok(a) => a,
            Err(code) => {
                tracing::info!(
                    %peer,
                    client_id = %Untrusted(&connect.client_id),
                    username = connect.username.as_deref().map(|u| tracing::field::display(Untrusted(u))),
                    ?code,
                    "mqtt: connection refused"
                );
                let _ = codec::write(
                    version,
                    Out::ConnAck {
                        code,
                        receive_maximum: 0,
                        server_keep_alive: None,
                    },
                    &mut out,
                );
                let _ = wr.write_all(&out).await;
                let _ = wr.shutdown().await;
                return;
            }
        };
        let identity = authed.identity;
        let topics = identity.topics();
        let cmd_topic = topics.topic(TopicKind::Cmd);
        let device_id = identity.device_id.clone();

        // Register, taking over an older session of the same device.
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let kick = Arc::new(Notify::new());
        let (down_tx, mut down_rx) = mpsc::channel::<Bytes>(64);
        {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(old) = sessions.insert(
                device_id.clone(),
                SessionHandle {
                    id,
                    kick: kick.clone(),
                    downlink: down_tx,
                },
            ) {
                old.kick.notify_one();
            }
        }
        // Keep-alive as AWS IoT Core: none asked (0) or more than the cap gets the cap, which an
        // MQTT 5 client is told; 3.1.1 has no way to say it.
        let keep_alive_secs = match connect.keep_alive {
            0 => self.max_keep_alive,
            k => k.min(self.max_keep_alive),
        };
        let _ = codec::write(
            version,
            Out::ConnAck {
                code: ConnectCode::Accepted,
                receive_maximum: MAX_INFLIGHT as u16,
                server_keep_alive: (keep_alive_secs != connect.keep_alive)
                    .then_some(keep_alive_secs),
            },
            &mut out,
        );
        self.uplink.presence(&identity, true, Utc::now()).await;
        tracing::debug!(%peer, device = %device_id, ?version, "mqtt: connected");
        inb.reserve(SESSION_BUFFER);

        // 1.5 × keep-alive without a whole packet from the client ends the session (MQTT 3.1.1
        // §3.1.2.10): bytes that do not complete a packet do not count.
        let keep_alive = Duration::from_millis(u64::from(keep_alive_secs) * 1500);
        let mut deadline = tokio::time::Instant::now() + keep_alive;
        // Publishes read together are stored together: one hand-over to the uplink per read.
        let mut inflight: FuturesOrdered<Pending> = FuturesOrdered::new();
        let mut inflight_msgs = 0usize;
        let mut inflight_bytes = 0usize;
        let mut arrived: Vec<(u16, u8)> = Vec::new();
        let mut batch: Vec<Inbound> = Vec::new();
        let mut qos2: HashSet<u16> = HashSet::new();
        let mut subscribed = false;
        let mut next_pkid: u16 = 0;
        // Why the session ended: true = send the will.
        let mut abnormal = true;
        let mut taken_over = false;

        'session: loop {
            // Decode everything already buffered.
            let mut heard = false;
            loop {
                let pkt = match codec::read(version, &mut inb) {
                    Ok(Some(p)) => p,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::info!(device = %device_id, error = %Untrusted(&e), "mqtt: malformed packet, closing");
                        break 'session;
                    }
                };
                heard = true;
                match pkt {
                    In::Publish(p) => {
                        if !topics.may_publish(&p.topic) {
                            self.uplink
                                .refused(
                                    &identity,
                                    &p.topic,
                                    p.payload.clone(),
                                    "topic_not_allowed",
                                )
                                .await;
                            if version == Version::V5 && p.qos > 0 {
                                let _ = codec::write(
                                    version,
                                    Out::PubAck {
                                        pkid: p.pkid,
                                        outcome: PubOutcome::NotAuthorized,
                                    },
                                    &mut out,
                                );
                                continue;
                            }
                            tracing::info!(device = %device_id, topic = %Untrusted(&p.topic), "mqtt: publish outside the ACL, closing");
                            break 'session;
                        }
                        if p.qos == 2 && qos2.contains(&p.pkid) {
                            // A resent QoS 2 publish we already stored: PUBREC again, store nothing.
                            let _ = codec::write(version, Out::PubRec(p.pkid), &mut out);
                            continue;
                        }
                        let kind = if p.topic.ends_with("/telemetry") {
                            MessageKind::Telemetry
                        } else {
                            MessageKind::Events
                        };
                        batch.push(Inbound {
                            integrator_id: identity.integrator_id.clone(),
                            project_id: identity.project_id.clone(),
                            device_id: device_id.clone(),
                            kind,
                            payload: p.payload,
                            received_at: Utc::now(),
                        });
                        if p.qos == 2 {
                            qos2.insert(p.pkid);
                        }
                        arrived.push((p.pkid, p.qos));
                    }
                    In::PubRel(pkid) => {
                        qos2.remove(&pkid);
                        let _ = codec::write(version, Out::PubComp(pkid), &mut out);
                    }
                    In::PubAck(_) => {}
                    In::Subscribe { pkid, filters } => {
                        let granted = filters
                            .iter()
                            .map(|(f, q)| topics.may_subscribe(f).then_some((*q).min(1)))
                            .collect::<Vec<_>>();
                        subscribed |= granted.iter().any(Option::is_some);
                        let _ = codec::write(version, Out::SubAck { pkid, granted }, &mut out);
                    }
                    In::Unsubscribe { pkid, filters } => {
                        if filters.contains(&cmd_topic) {
                            subscribed = false;
                        }
                        let count = filters.len();
                        let _ = codec::write(version, Out::UnsubAck { pkid, count }, &mut out);
                    }
                    In::PingReq => {
                        let _ = codec::write(version, Out::PingResp, &mut out);
                    }
                    In::Disconnect { normal } => {
                        abnormal = !normal;
                        break 'session;
                    }
                    In::Connect(_) => {
                        tracing::info!(device = %device_id, "mqtt: second CONNECT, closing");
                        break 'session;
                    }
                    In::Unexpected(what) => {
                        tracing::info!(device = %device_id, what, "mqtt: unexpected packet, closing");
                        break 'session;
                    }
                }
            }
            if heard {
                deadline = tokio::time::Instant::now() + keep_alive;
            }
            if !batch.is_empty() {
                inflight_msgs += arrived.len();
                inflight_bytes += payload_bytes(&batch);
                inflight.push_back(self.hand_over(&mut batch, &mut arrived));
            }
            if !out.is_empty() {
                if wr.write_all(&out).await.is_err() {
                    break 'session;
                }
                out.clear();
            }
            let may_read = inflight_msgs < MAX_INFLIGHT && inflight_bytes < MAX_INFLIGHT_BYTES;
            tokio::select! {
                biased;
                _ = kick.notified() => {
                    taken_over = true;
                    break 'session;
                }
                _ = stopped(&mut stop) => {
                    abnormal = false;
                    break 'session;
                }
                Some((stored, bytes)) = inflight.next(), if !inflight.is_empty() => {
                    inflight_msgs -= stored.len();
                    inflight_bytes -= bytes;
                    // The client's packets were whole when they were read; while the store held
                    // them back, the client was not idle.
                    if !may_read {
                        deadline = tokio::time::Instant::now() + keep_alive;
                    }
                    for (pkid, qos, outcome) in stored {
                        match (qos, outcome) {
                            (0, _) => {}
                            (1, PubOutcome::Stored) => {
                                let _ = codec::write(version, Out::PubAck { pkid, outcome }, &mut out);
                            }
                            (2, PubOutcome::Stored) => {
                                let _ = codec::write(version, Out::PubRec(pkid), &mut out);
                            }
                            (_, _) if version == Version::V5 && qos == 1 => {
                                let _ = codec::write(version, Out::PubAck { pkid, outcome }, &mut out);
                            }
                            _ => {
                                // 3.1.1 cannot say "not stored": close so the client resends.
                                break 'session;
                            }
                        }
                    }
                }
                Some(payload) = down_rx.recv() => {
                    if subscribed {
                        next_pkid = next_pkid.checked_add(1).unwrap_or(1);
                        let _ = codec::write(version, Out::Publish {
                            topic: cmd_topic.clone(),
                            qos: 1,
                            pkid: next_pkid,
                            payload,
                        }, &mut out);
                    }
                }
                read = rd.read_buf(&mut inb), if may_read => {
                    match read {
                        Ok(0) | Err(_) => break 'session,
                        Ok(_) => {}
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::info!(device = %device_id, "mqtt: keep-alive expired");
                    break 'session;
                }
            }
        }

        // Store what was read before the session ended (publishes followed by DISCONNECT in one
        // read), and acknowledge what was stored, as far as the socket allows.
        if !batch.is_empty() {
            inflight.push_back(self.hand_over(&mut batch, &mut arrived));
        }
        while let Some((stored, _)) = inflight.next().await {
            for (pkid, qos, outcome) in stored {
                if qos == 1 && outcome == PubOutcome::Stored {
                    let _ = codec::write(version, Out::PubAck { pkid, outcome }, &mut out);
                }
            }
        }
        if !out.is_empty() {
            let _ = wr.write_all(&out).await;
        }
        let _ = wr.shutdown().await;

        if abnormal
            && let Some(will) = connect.will
            && topics.may_publish(&will.topic)
        {
            let msg = Inbound {
                integrator_id: identity.integrator_id.clone(),
                project_id: identity.project_id.clone(),
                device_id: device_id.clone(),
                kind: MessageKind::Events,
                payload: will.payload,
                received_at: Utc::now(),
            };
            if let Some(Err(e)) = self.uplink.accept(vec![msg]).await.pop() {
                tracing::warn!(device = %device_id, error = %e, "mqtt: last will not stored");
            }
        }
        let still_ours = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            if sessions.get(&device_id).is_some_and(|s| s.id == id) {
                sessions.remove(&device_id);
                true
            } else {
                false
            }
        };
        if still_ours && !taken_over {
            self.uplink.presence(&identity, false, Utc::now()).await;
        }
        tracing::debug!(%peer, device = %device_id, abnormal, "mqtt: disconnected");
    }
}
