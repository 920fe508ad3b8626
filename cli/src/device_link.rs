//! A lean MQTT 3.1.1 device connection for the simulator: CONNECT, one SUBSCRIBE, a window of
//! QoS 1 PUBLISHes written together, PUBACKs and commands read back. No client state machine, no
//! request channel between the caller and the socket: one task owns the connection, so a message
//! costs its encoding and a share of one `write` system call.
//!
//! The packet encoders and decoders are rumqttc's `mqttbytes` v4, as in the broker's codec.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::{QoS, v4};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// Largest packet read back (commands are small).
const MAX_IN: usize = 64 * 1024;

/// Where and how to connect.
#[derive(Clone)]
pub struct LinkOptions {
    pub host: String,
    pub port: u16,
    pub client_id: String,
    /// `(username, password)`: the device id and its token on a plain listener.
    pub login: Option<(String, String)>,
    /// TLS with the device's client certificate (the `--mqtts` listener).
    pub tls: Option<Arc<rustls::ClientConfig>>,
    pub keep_alive: Duration,
}

/// Something read from the broker.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    PubAck(u16),
    /// A message on a subscribed topic (acknowledged by the link when QoS 1).
    Publish {
        topic: String,
        payload: Bytes,
    },
    SubAck {
        granted: bool,
    },
    Other,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// One connected device.
pub struct Link {
    io: Box<dyn Io>,
    inb: BytesMut,
    out: BytesMut,
    next_pkid: u16,
}

impl Link {
    /// Connects and waits for a successful CONNACK.
    pub async fn connect(o: &LinkOptions) -> anyhow::Result<Link> {
        let tcp = TcpStream::connect((o.host.as_str(), o.port))
            .await
            .with_context(|| format!("cannot connect to {}:{}", o.host, o.port))?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match &o.tls {
            None => Box::new(tcp),
            Some(config) => {
                let name = rustls_pki_types::ServerName::try_from(o.host.clone())?;
                Box::new(
                    tokio_rustls::TlsConnector::from(config.clone())
                        .connect(name, tcp)
                        .await
                        .context("TLS handshake")?,
                )
            }
        };
        let mut link = Link {
            io,
            inb: BytesMut::with_capacity(8 * 1024),
            out: BytesMut::with_capacity(64 * 1024),
            next_pkid: 0,
        };
        let mut connect = v4::Connect::new(o.client_id.clone());
        connect.keep_alive = u16::try_from(o.keep_alive.as_secs()).unwrap_or(u16::MAX);
        if let Some((u, p)) = &o.login {
            connect.set_login(u.clone(), p.clone());
        }
        v4::Packet::Connect(connect).write(&mut link.out, usize::MAX)?;
        link.flush().await?;
        loop {
            if let Some(p) = link.decode()? {
                match p {
                    v4::Packet::ConnAck(a) if a.code == v4::ConnectReturnCode::Success => {
                        return Ok(link);
                    }
                    v4::Packet::ConnAck(a) => bail!("connection refused: {:?}", a.code),
                    other => bail!("expected CONNACK, got {other:?}"),
                }
            }
            link.fill().await?;
        }
    }

    fn pkid(&mut self) -> u16 {
        self.next_pkid = self.next_pkid.checked_add(1).unwrap_or(1);
        self.next_pkid
    }

    /// Queues a SUBSCRIBE (QoS 1); the SUBACK comes back through [`Link::read`].
    pub fn subscribe(&mut self, filter: &str) -> anyhow::Result<()> {
        let mut s = v4::Subscribe::new(filter, QoS::AtLeastOnce);
        s.pkid = self.pkid();
        v4::Packet::Subscribe(s).write(&mut self.out, usize::MAX)?;
        Ok(())
    }

    /// Queues a QoS 1 PUBLISH; returns its packet id. Nothing is sent before [`Link::flush`].
    pub fn publish(&mut self, topic: &str, payload: Bytes) -> anyhow::Result<u16> {
        let mut p = v4::Publish::from_bytes(topic, QoS::AtLeastOnce, payload);
        p.pkid = self.pkid();
        p.write(&mut self.out)?;
        Ok(p.pkid)
    }

    pub fn ping(&mut self) -> anyhow::Result<()> {
        v4::Packet::PingReq.write(&mut self.out, usize::MAX)?;
        Ok(())
    }

    /// Writes everything queued in one go.
    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.out.is_empty() {
            self.io.write_all(&self.out).await?;
            self.io.flush().await?;
            self.out.clear();
        }
        Ok(())
    }

    /// Sends DISCONNECT and closes.
    pub async fn disconnect(mut self) -> anyhow::Result<()> {
        v4::Packet::Disconnect.write(&mut self.out, usize::MAX)?;
        self.flush().await?;
        self.io.shutdown().await?;
        Ok(())
    }

    fn decode(&mut self) -> anyhow::Result<Option<v4::Packet>> {
        match v4::Packet::read(&mut self.inb, MAX_IN) {
            Ok(p) => Ok(Some(p)),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => bail!("malformed packet from the broker: {e}"),
        }
    }

    async fn fill(&mut self) -> anyhow::Result<()> {
        if self.io.read_buf(&mut self.inb).await? == 0 {
            bail!("the broker closed the connection");
        }
        Ok(())
    }

    /// Waits for data and appends every packet it completes (at least one). A QoS 1 PUBLISH is
    /// acknowledged in the next flush. Cancel-safe: bytes read stay buffered.
    pub async fn read(&mut self, into: &mut Vec<Incoming>) -> anyhow::Result<()> {
        let had = into.len();
        loop {
            while let Some(p) = self.decode()? {
                into.push(match p {
                    v4::Packet::PubAck(a) => Incoming::PubAck(a.pkid),
                    v4::Packet::Publish(p) => {
                        if p.qos == QoS::AtLeastOnce {
                            v4::PubAck::new(p.pkid).write(&mut self.out)?;
                        }
                        Incoming::Publish {
                            topic: p.topic,
                            payload: p.payload,
                        }
                    }
                    v4::Packet::SubAck(s) => Incoming::SubAck {
                        granted: s
                            .return_codes
                            .iter()
                            .all(|c| !matches!(c, v4::SubscribeReasonCode::Failure)),
                    },
                    _ => Incoming::Other,
                });
            }
            if into.len() > had {
                return Ok(());
            }
            self.fill().await?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Device `dev-1` with `token` on a plain local listener.
    fn local(port: u16, token: &str) -> LinkOptions {
        LinkOptions {
            host: "127.0.0.1".into(),
            port,
            client_id: "dev-1".into(),
            login: Some(("dev-1".into(), token.into())),
            tls: None,
            keep_alive: Duration::from_secs(30),
        }
    }

    /// A scripted broker: answers CONNECT, SUBSCRIBE and every PUBLISH, sends one command.
    #[tokio::test]
    async fn connects_publishes_a_window_and_reads_acks_and_commands() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut inb = BytesMut::new();
            let mut seen = Vec::new();
            loop {
                match v4::Packet::read(&mut inb, MAX_IN) {
                    Ok(p) => {
                        let mut out = BytesMut::new();
                        match &p {
                            v4::Packet::Connect(c) => {
                                assert_eq!(c.client_id, "dev-1");
                                assert_eq!(c.login.as_ref().unwrap().password, "tok");
                                v4::ConnAck::new(v4::ConnectReturnCode::Success, false)
                                    .write(&mut out)
                                    .unwrap();
                            }
                            v4::Packet::Subscribe(sub) => {
                                v4::SubAck::new(
                                    sub.pkid,
                                    vec![v4::SubscribeReasonCode::Success(QoS::AtLeastOnce)],
                                )
                                .write(&mut out)
                                .unwrap();
                                let mut cmd =
                                    v4::Publish::new("t/dev-1/cmd", QoS::AtLeastOnce, "spray on");
                                cmd.pkid = 7;
                                cmd.write(&mut out).unwrap();
                            }
                            v4::Packet::Publish(p) => {
                                v4::PubAck::new(p.pkid).write(&mut out).unwrap();
                            }
                            v4::Packet::Disconnect => {
                                seen.push(p);
                                return seen;
                            }
                            _ => {}
                        }
                        seen.push(p);
                        s.write_all(&out).await.unwrap();
                    }
                    Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                        if s.read_buf(&mut inb).await.unwrap() == 0 {
                            return seen;
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
        });
        let mut link = Link::connect(&local(port, "tok")).await.unwrap();
        link.subscribe("t/dev-1/cmd").unwrap();
        let ids: Vec<u16> = (0..5)
            .map(|i| {
                link.publish("t/dev-1/telemetry", Bytes::from(format!("{{\"n\":{i}}}")))
                    .unwrap()
            })
            .collect();
        link.flush().await.unwrap();
        let mut got = Vec::new();
        while got
            .iter()
            .filter(|i| matches!(i, Incoming::PubAck(_)))
            .count()
            < 5
        {
            link.read(&mut got).await.unwrap();
        }
        link.flush().await.unwrap(); // the command's PUBACK
        link.disconnect().await.unwrap();
        let acks: Vec<u16> = got
            .iter()
            .filter_map(|i| match i {
                Incoming::PubAck(id) => Some(*id),
                _ => None,
            })
            .collect();
        assert_eq!(acks, ids);
        assert!(got.contains(&Incoming::SubAck { granted: true }));
        assert!(got.contains(&Incoming::Publish {
            topic: "t/dev-1/cmd".into(),
            payload: Bytes::from_static(b"spray on"),
        }));
        let seen = server.await.unwrap();
        let publishes = seen
            .iter()
            .filter(|p| matches!(p, v4::Packet::Publish(_)))
            .count();
        assert_eq!(publishes, 5);
        assert!(
            seen.iter()
                .any(|p| matches!(p, v4::Packet::PubAck(a) if a.pkid == 7))
        );
        assert!(matches!(seen.last(), Some(v4::Packet::Disconnect)));
    }

    #[tokio::test]
    async fn a_refused_connect_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 256];
            let _ = s.read(&mut buf).await.unwrap();
            let mut out = BytesMut::new();
            v4::ConnAck::new(v4::ConnectReturnCode::BadUserNamePassword, false)
                .write(&mut out)
                .unwrap();
            s.write_all(&out).await.unwrap();
        });
        let err = Link::connect(&local(port, "wrong")).await.err().unwrap();
        assert!(err.to_string().contains("BadUserNamePassword"), "{err}");
    }
}
