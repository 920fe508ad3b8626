//! MQTT 3.1.1 and 5 packets, reduced to the one shape the broker's session logic needs.
//!
//! The wire codecs are rumqttc's (`mqttbytes` v4 and v5): well-tested encoders and decoders of
//! every packet, without rumqttc's client state machine. The protocol level is read from the
//! CONNECT packet, so one listener serves both versions.

use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4;
use rumqttc::v5::mqttbytes::v5;

/// Largest packet accepted from a device: telemetry objects are ≤ 16 KiB; 64 KiB leaves room for
/// events with attachments' metadata while bounding memory per connection.
pub const MAX_PACKET: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V4,
    V5,
}

/// A packet from a client.
#[derive(Debug)]
pub enum In {
    Connect(Connect),
    Publish(Publish),
    PubAck(u16),
    PubRel(u16),
    Subscribe {
        pkid: u16,
        filters: Vec<(String, u8)>,
    },
    Unsubscribe {
        pkid: u16,
        filters: Vec<String>,
    },
    PingReq,
    /// `normal`: a DISCONNECT without "with will message" (v5 reason 0x04), so no will is sent.
    Disconnect {
        normal: bool,
    },
    /// Something a client must not send (CONNACK, SUBACK, …) or an AUTH exchange we do not offer.
    Unexpected(&'static str),
}

#[derive(Debug)]
pub struct Connect {
    pub version: Version,
    pub client_id: String,
    pub keep_alive: u16,
    pub clean: bool,
    pub username: Option<String>,
    pub password: Option<String>,
    pub will: Option<Will>,
    /// v5 receive maximum the client allows for our QoS 1 sends.
    pub receive_maximum: Option<u16>,
}

#[derive(Debug, Clone)]
pub struct Will {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
}

#[derive(Debug)]
pub struct Publish {
    pub topic: String,
    pub qos: u8,
    pub pkid: u16,
    pub dup: bool,
    pub payload: Bytes,
}

/// Outcome of a CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectCode {
    Accepted,
    BadCredentials,
    NotAuthorized,
    BadClientId,
    Unavailable,
}

/// Outcome of a QoS 1 publish as the broker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PubOutcome {
    Stored,
    NotAuthorized,
    Failed,
}

/// A packet to a client.
#[derive(Debug)]
pub enum Out {
    ConnAck {
        code: ConnectCode,
        receive_maximum: u16,
        /// The keep-alive the server holds the client to, when not the one it asked for (v5).
        server_keep_alive: Option<u16>,
    },
    PubAck {
        pkid: u16,
        outcome: PubOutcome,
    },
    PubRec(u16),
    PubComp(u16),
    Publish {
        topic: String,
        qos: u8,
        pkid: u16,
        payload: Bytes,
    },
    SubAck {
        pkid: u16,
        /// granted QoS, or None = refused
        granted: Vec<Option<u8>>,
    },
    UnsubAck {
        pkid: u16,
        count: usize,
    },
    PingResp,
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("malformed packet: {0}")]
    Malformed(String),
    #[error("unsupported protocol level {0} (MQTT 3.1.1 = 4 and 5 are supported)")]
    Level(u8),
}

/// The CONNECT's protocol level once `buf` holds that far, or why the bytes cannot be a CONNECT
/// (including one larger than [`MAX_PACKET`], refused from its fixed header). Used before the
/// version is known.
pub fn sniff_connect_level(buf: &[u8]) -> Option<Result<u8, CodecError>> {
    let first = *buf.first()?;
    if first >> 4 != 1 {
        return Some(Err(CodecError::Malformed(
            "the first packet must be CONNECT".into(),
        )));
    }
    // Remaining length: up to 4 bytes of 7-bit groups, least significant first.
    let mut i = 1;
    let mut remaining = 0usize;
    loop {
        let b = *buf.get(i)?;
        remaining |= usize::from(b & 0x7f) << (7 * (i - 1));
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i > 4 {
            return Some(Err(CodecError::Malformed("bad remaining length".into())));
        }
    }
    if remaining > MAX_PACKET {
        return Some(Err(CodecError::Malformed(format!(
            "CONNECT of {remaining} bytes exceeds the maximum packet size {MAX_PACKET}"
        ))));
    }
    // Protocol name: 2-byte length, then "MQTT" (4) — level follows, inside the packet.
    let len = u16::from_be_bytes([*buf.get(i)?, *buf.get(i + 1)?]) as usize;
    if 2 + len >= remaining {
        return Some(Err(CodecError::Malformed(
            "CONNECT protocol name longer than the packet".into(),
        )));
    }
    let level = *buf.get(i + 2 + len)?;
    Some(Ok(level))
}

fn qos_u8(q: rumqttc::mqttbytes::QoS) -> u8 {
    q as u8
}
fn qos5_u8(q: rumqttc::v5::mqttbytes::QoS) -> u8 {
    q as u8
}
fn qos_v4(q: u8) -> rumqttc::mqttbytes::QoS {
    match q {
        0 => rumqttc::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::mqttbytes::QoS::ExactlyOnce,
    }
}
fn qos_v5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    match q {
        0 => rumqttc::v5::mqttbytes::QoS::AtMostOnce,
        1 => rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
        _ => rumqttc::v5::mqttbytes::QoS::ExactlyOnce,
    }
}

/// Decodes the next packet of `buf`. `Ok(None)`: more bytes needed.
pub fn read(version: Version, buf: &mut BytesMut) -> Result<Option<In>, CodecError> {
    match version {
        Version::V4 => match v4::Packet::read(buf, MAX_PACKET) {
            Ok(p) => Ok(Some(from_v4(p))),
            Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(CodecError::Malformed(e.to_string())),
        },
        // MQTT 5 §3.14.2: a DISCONNECT may have remaining length 0, meaning reason 0x00 (normal
        // disconnection) without properties — what most clients send — or 1, a reason code
        // without the property length. rumqttc's reader refuses every zero-length packet but
        // PINGREQ/PINGRESP and wants the property length, which would turn each clean
        // disconnect into a malformed packet and publish the client's last will.
        Version::V5 if buf.starts_with(&[0xE0, 0x00]) => {
            let _ = buf.split_to(2);
            Ok(Some(In::Disconnect { normal: true }))
        }
        Version::V5 if buf.starts_with(&[0xE0, 0x01]) => match buf.get(2).copied() {
            None => Ok(None),
            Some(reason) => {
                let _ = buf.split_to(3);
                Ok(Some(In::Disconnect {
                    normal: reason != v5::DisconnectReasonCode::DisconnectWithWillMessage as u8,
                }))
            }
        },
        Version::V5 => match v5::Packet::read(buf, Some(MAX_PACKET as u32)) {
            Ok(p) => Ok(Some(from_v5(p))),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
            Err(e) => Err(CodecError::Malformed(e.to_string())),
        },
    }
}

fn from_v4(p: v4::Packet) -> In {
    match p {
        v4::Packet::Connect(c) => In::Connect(Connect {
            version: Version::V4,
            client_id: c.client_id,
            keep_alive: c.keep_alive,
            clean: c.clean_session,
            username: c.login.as_ref().map(|l| l.username.clone()),
            password: c.login.map(|l| l.password),
            will: c.last_will.map(|w| Will {
                topic: w.topic,
                payload: w.message,
                qos: qos_u8(w.qos),
            }),
            receive_maximum: None,
        }),
        v4::Packet::Publish(p) => In::Publish(Publish {
            topic: p.topic,
            qos: qos_u8(p.qos),
            pkid: p.pkid,
            dup: p.dup,
            payload: p.payload,
        }),
        v4::Packet::PubAck(a) => In::PubAck(a.pkid),
        v4::Packet::PubRel(r) => In::PubRel(r.pkid),
        v4::Packet::Subscribe(s) => In::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, qos_u8(f.qos)))
                .collect(),
        },
        v4::Packet::Unsubscribe(u) => In::Unsubscribe {
            pkid: u.pkid,
            filters: u.topics,
        },
        v4::Packet::PingReq => In::PingReq,
        v4::Packet::Disconnect => In::Disconnect { normal: true },
        v4::Packet::PubRec(_) | v4::Packet::PubComp(_) => In::Unexpected("QoS 2 downlink ack"),
        v4::Packet::ConnAck(_) => In::Unexpected("CONNACK"),
        v4::Packet::SubAck(_) => In::Unexpected("SUBACK"),
        v4::Packet::UnsubAck(_) => In::Unexpected("UNSUBACK"),
        v4::Packet::PingResp => In::Unexpected("PINGRESP"),
    }
}

fn from_v5(p: v5::Packet) -> In {
    match p {
        v5::Packet::Connect(c, will, login) => In::Connect(Connect {
            version: Version::V5,
            client_id: c.client_id,
            keep_alive: c.keep_alive,
            clean: c.clean_start,
            username: login.as_ref().map(|l| l.username.clone()),
            password: login.map(|l| l.password),
            will: will.map(|w| Will {
                topic: String::from_utf8_lossy(&w.topic).into_owned(),
                payload: w.message,
                qos: qos5_u8(w.qos),
            }),
            receive_maximum: c.properties.and_then(|p| p.receive_maximum),
        }),
        v5::Packet::Publish(p) => In::Publish(Publish {
            topic: String::from_utf8_lossy(&p.topic).into_owned(),
            qos: qos5_u8(p.qos),
            pkid: p.pkid,
            dup: p.dup,
            payload: p.payload,
        }),
        v5::Packet::PubAck(a) => In::PubAck(a.pkid),
        v5::Packet::PubRel(r) => In::PubRel(r.pkid),
        v5::Packet::Subscribe(s) => In::Subscribe {
            pkid: s.pkid,
            filters: s
                .filters
                .into_iter()
                .map(|f| (f.path, qos5_u8(f.qos)))
                .collect(),
        },
        v5::Packet::Unsubscribe(u) => In::Unsubscribe {
            pkid: u.pkid,
            filters: u.filters,
        },
        v5::Packet::PingReq(_) => In::PingReq,
        v5::Packet::Disconnect(d) => In::Disconnect {
            normal: d.reason_code != v5::DisconnectReasonCode::DisconnectWithWillMessage,
        },
        v5::Packet::Auth(_) => In::Unexpected("AUTH"),
        v5::Packet::PubRec(_) | v5::Packet::PubComp(_) => In::Unexpected("QoS 2 downlink ack"),
        v5::Packet::ConnAck(_) => In::Unexpected("CONNACK"),
        v5::Packet::SubAck(_) => In::Unexpected("SUBACK"),
        v5::Packet::UnsubAck(_) => In::Unexpected("UNSUBACK"),
        v5::Packet::PingResp(_) => In::Unexpected("PINGRESP"),
    }
}

/// Encodes `out` onto `buf`.
pub fn write(version: Version, out: Out, buf: &mut BytesMut) -> Result<(), CodecError> {
    let r = match version {
        Version::V4 => to_v4(out).write(buf, usize::MAX).map(|_| ()),
        Version::V5 => {
            return to_v5(out)
                .write(buf, None)
                .map(|_| ())
                .map_err(|e| CodecError::Malformed(e.to_string()));
        }
    };
    r.map_err(|e| CodecError::Malformed(e.to_string()))
}

fn to_v4(out: Out) -> v4::Packet {
    match out {
        Out::ConnAck { code, .. } => v4::Packet::ConnAck(v4::ConnAck::new(
            match code {
                ConnectCode::Accepted => v4::ConnectReturnCode::Success,
                ConnectCode::BadCredentials => v4::ConnectReturnCode::BadUserNamePassword,
                ConnectCode::NotAuthorized => v4::ConnectReturnCode::NotAuthorized,
                ConnectCode::BadClientId => v4::ConnectReturnCode::BadClientId,
                ConnectCode::Unavailable => v4::ConnectReturnCode::ServiceUnavailable,
            },
            false,
        )),
        // 3.1.1 has no negative PUBACK; refusals close the connection instead (see session).
        Out::PubAck { pkid, .. } => v4::Packet::PubAck(v4::PubAck::new(pkid)),
        Out::PubRec(pkid) => v4::Packet::PubRec(v4::PubRec::new(pkid)),
        Out::PubComp(pkid) => v4::Packet::PubComp(v4::PubComp::new(pkid)),
        Out::Publish {
            topic,
            qos,
            pkid,
            payload,
        } => {
            let mut p = v4::Publish::from_bytes(topic, qos_v4(qos), payload);
            p.pkid = pkid;
            v4::Packet::Publish(p)
        }
        Out::SubAck { pkid, granted } => v4::Packet::SubAck(v4::SubAck::new(
            pkid,
            granted
                .into_iter()
                .map(|g| match g {
                    Some(q) => v4::SubscribeReasonCode::Success(qos_v4(q)),
                    None => v4::SubscribeReasonCode::Failure,
                })
                .collect(),
        )),
        Out::UnsubAck { pkid, .. } => v4::Packet::UnsubAck(v4::UnsubAck::new(pkid)),
        Out::PingResp => v4::Packet::PingResp,
    }
}

fn to_v5(out: Out) -> v5::Packet {
    match out {
        Out::ConnAck {
            code,
            receive_maximum,
            server_keep_alive,
        } => v5::Packet::ConnAck(v5::ConnAck {
            session_present: false,
            code: match code {
                ConnectCode::Accepted => v5::ConnectReturnCode::Success,
                ConnectCode::BadCredentials => v5::ConnectReturnCode::BadUserNamePassword,
                ConnectCode::NotAuthorized => v5::ConnectReturnCode::NotAuthorized,
                ConnectCode::BadClientId => v5::ConnectReturnCode::ClientIdentifierNotValid,
                ConnectCode::Unavailable => v5::ConnectReturnCode::ServerUnavailable,
            },
            properties: (code == ConnectCode::Accepted).then(|| v5::ConnAckProperties {
                session_expiry_interval: None,
                receive_max: Some(receive_maximum),
                max_qos: Some(1),
                retain_available: Some(0),
                max_packet_size: Some(MAX_PACKET as u32),
                assigned_client_identifier: None,
                topic_alias_max: None,
                reason_string: None,
                user_properties: Vec::new(),
                wildcard_subscription_available: Some(0),
                subscription_identifiers_available: Some(0),
                shared_subscription_available: Some(0),
                server_keep_alive,
                response_information: None,
                server_reference: None,
                authentication_method: None,
                authentication_data: None,
            }),
        }),
        Out::PubAck { pkid, outcome } => v5::Packet::PubAck(v5::PubAck {
            pkid,
            reason: match outcome {
                PubOutcome::Stored => v5::PubAckReason::Success,
                PubOutcome::NotAuthorized => v5::PubAckReason::NotAuthorized,
                PubOutcome::Failed => v5::PubAckReason::UnspecifiedError,
            },
            properties: None,
        }),
        Out::PubRec(pkid) => v5::Packet::PubRec(v5::PubRec::new(pkid, None)),
        Out::PubComp(pkid) => v5::Packet::PubComp(v5::PubComp::new(pkid, None)),
        Out::Publish {
            topic,
            qos,
            pkid,
            payload,
        } => {
            let mut p = v5::Publish::new(topic, qos_v5(qos), payload, None);
            p.pkid = pkid;
            v5::Packet::Publish(p)
        }
        Out::SubAck { pkid, granted } => v5::Packet::SubAck(v5::SubAck {
            pkid,
            return_codes: granted
                .into_iter()
                .map(|g| match g {
                    Some(q) => v5::SubscribeReasonCode::Success(qos_v5(q)),
                    None => v5::SubscribeReasonCode::NotAuthorized,
                })
                .collect(),
            properties: None,
        }),
        Out::UnsubAck { pkid, count } => v5::Packet::UnsubAck(v5::UnsubAck {
            pkid,
            reasons: vec![v5::UnsubAckReason::Success; count],
            properties: None,
        }),
        Out::PingResp => v5::Packet::PingResp(v5::PingResp),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A CONNECT's first bytes: the fixed header with `remaining` (a variable byte integer as
    /// sent), then the protocol name "MQTT" and level 4.
    #[test]
    fn an_mqtt5_disconnect_without_reason_is_a_normal_disconnect() {
        let mut buf = BytesMut::from(&[0xE0, 0x00, 0xC0][..]);
        assert!(matches!(
            read(Version::V5, &mut buf),
            Ok(Some(In::Disconnect { normal: true }))
        ));
        assert_eq!(&buf[..], &[0xC0], "only the DISCONNECT is consumed");
        // A reason code without the property length (remaining length 1) reads too, and 0x04
        // keeps the will; the reason arriving in a later read is waited for.
        let mut buf = BytesMut::from(&[0xE0, 0x01][..]);
        assert!(matches!(read(Version::V5, &mut buf), Ok(None)));
        buf.extend_from_slice(&[0x04]);
        assert!(matches!(
            read(Version::V5, &mut buf),
            Ok(Some(In::Disconnect { normal: false }))
        ));
        let mut buf = BytesMut::from(&[0xE0, 0x01, 0x00][..]);
        assert!(matches!(
            read(Version::V5, &mut buf),
            Ok(Some(In::Disconnect { normal: true }))
        ));
        // With reason and properties, rumqttc's reader takes it as before.
        let mut buf = BytesMut::from(&[0xE0, 0x02, 0x04, 0x00][..]);
        assert!(matches!(
            read(Version::V5, &mut buf),
            Ok(Some(In::Disconnect { normal: false }))
        ));
        // Any other zero-length packet but PINGREQ stays malformed.
        let mut buf = BytesMut::from(&[0x40, 0x00][..]);
        assert!(matches!(
            read(Version::V5, &mut buf),
            Err(CodecError::Malformed(_))
        ));
    }

    fn connect_head(remaining: &[u8]) -> Vec<u8> {
        let mut out = vec![0x10];
        out.extend(remaining);
        out.extend([0, 4, b'M', b'Q', b'T', b'T', 4]);
        out
    }

    #[test]
    fn a_connect_declaring_more_than_the_maximum_packet_is_refused_from_its_header() {
        // 100 bytes, and exactly MAX_PACKET (64 KiB = 0x80 0x80 0x04).
        assert!(matches!(
            sniff_connect_level(&connect_head(&[100])),
            Some(Ok(4))
        ));
        assert_eq!(MAX_PACKET, 4 * 128 * 128);
        assert!(matches!(
            sniff_connect_level(&connect_head(&[0x80, 0x80, 0x04])),
            Some(Ok(4))
        ));
        // 256 MiB (the largest the encoding allows): refused before any of it is read.
        let refused = sniff_connect_level(&connect_head(&[0xff, 0xff, 0xff, 0x7f]));
        assert!(
            matches!(&refused, Some(Err(CodecError::Malformed(m))) if m.contains("exceeds")),
            "{refused:?}"
        );
        // One byte over.
        assert!(matches!(
            sniff_connect_level(&connect_head(&[0x81, 0x80, 0x04])),
            Some(Err(_))
        ));
        // A protocol name that runs past the packet is no CONNECT either (it would make the
        // sniffer wait for bytes of the next packet).
        let mut long_name = connect_head(&[10]);
        long_name[2] = 0xff;
        assert!(matches!(sniff_connect_level(&long_name), Some(Err(_))));
    }

    #[test]
    fn packets_after_connect_are_refused_from_their_header_beyond_the_maximum() {
        for version in [Version::V4, Version::V5] {
            // PUBLISH QoS 0 declaring MAX_PACKET + 1 bytes, of which only the header is here.
            let mut buf = BytesMut::from(&[0x30, 0x81, 0x80, 0x04][..]);
            assert!(read(version, &mut buf).is_err(), "{version:?}");
            // Within the maximum, the same header just waits for more bytes.
            let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x04][..]);
            assert!(matches!(read(version, &mut buf), Ok(None)), "{version:?}");
        }
    }
}
