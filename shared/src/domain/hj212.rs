//! HJ 212 (2005 / 2017 / 2025) wire codec for dust and noise monitors (DOMAIN.md §3, §11.5).
//!
//! Pure: framing, CRC, data-segment parsing, the acceptance policy, the mapping of real-time
//! factors to the platform's telemetry fields, and reply frames. Sockets live in the CLI's
//! session server, so the same rules can be tested without I/O and reused by a simulator.

use std::fmt;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, FixedOffset, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Number, Value};

/// Largest data segment the standard allows (`0 ≤ n ≤ 1024`).
pub const MAX_SEGMENT_LEN: usize = 1024;
/// `##` + 4 length digits.
const HEADER_LEN: usize = 6;
/// 4 CRC hex digits + CR LF.
const TRAILER_LEN: usize = 6;
/// Largest well-formed frame on the wire.
pub const MAX_FRAME_LEN: usize = HEADER_LEN + MAX_SEGMENT_LEN + TRAILER_LEN;
/// Most bytes the splitter holds while it cannot decide. A peer that leaves it a frame's worth
/// of bytes with neither a frame start nor a line end to resynchronise on (endless garbage, a
/// frame whose end never comes) is reported once as [`Reason::FrameTooLong`], and the listener
/// drops it: no well-formed device does that, and cutting such a stream into pieces would only
/// turn it into a quarantine record per kilobyte.
const MAX_PENDING: usize = MAX_FRAME_LEN;

/// Hours east of UTC of the timestamps inside frames (QN, DataTime): devices report
/// Beijing time, which has no daylight saving, so a fixed offset is exact.
const CHINA_OFFSET_SECS: i32 = 8 * 3600;

/// CRC16 of HJ 212 (init 0xFFFF, poly 0xA001, `crc = (crc >> 8) ^ byte` then 8 shift/XOR
/// steps) over the data segment only. This is not CRC-16/MODBUS: the byte is XORed into the
/// high byte's position after the shift, as every public parser and the standard's sample do.
pub fn crc16(data: &[u8]) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for &byte in data {
        crc = (crc >> 8) ^ u16::from(byte);
        for _ in 0..8 {
            let lsb = crc & 1;
            crc >>= 1;
            if lsb != 0 {
                crc ^= 0xA001;
            }
        }
    }
    crc
}

/// Wraps a data segment into a wire frame (`##`, length, segment, CRC, CR LF). The length is
/// not checked so tests can build invalid frames; keep segments within [`MAX_SEGMENT_LEN`].
pub fn encode(segment: &str) -> Vec<u8> {
    let seg = segment.as_bytes();
    let mut out = Vec::with_capacity(seg.len() + HEADER_LEN + TRAILER_LEN);
    out.extend_from_slice(format!("##{:04}", seg.len()).as_bytes());
    out.extend_from_slice(seg);
    out.extend_from_slice(format!("{:04X}\r\n", crc16(seg)).as_bytes());
    out
}

/// Why a fragment or frame was refused. The [`Reason::code`] strings are stable: they are
/// stored with quarantined messages and operators filter on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// Bytes before a frame start (`##`).
    Garbage,
    /// The 4 length characters are not decimal digits.
    BadLength,
    /// The declared data-segment length exceeds 1024.
    SegmentTooLong,
    /// A new frame start appeared before this frame ended, or the connection closed mid-frame.
    Truncated,
    /// No CR LF where the declared length says the frame ends.
    BadTerminator,
    /// The CRC field is not 4 hex digits or does not match the data segment.
    BadCrc,
    /// The data segment is not UTF-8.
    BadEncoding,
    /// The data segment is not `KEY=value;…;CP=&&…&&`.
    BadSegment,
    /// A header field has an invalid value (e.g. `Flag`, `PNUM`).
    BadField,
    /// `MN`, `ST` or `CN` is missing.
    MissingField,
    /// The CP content is not a list of `key=value` pairs.
    BadCp,
    /// The system code is not one this platform takes data from.
    UnsupportedSt,
    /// The command is not real-time data (2011) or a heartbeat (9015).
    UnsupportedCn,
    /// The CP is encrypted (HJ 212-2025 SM4, or 2017 §6.4); no keys are held yet.
    EncryptedUnsupported,
    /// A factor code outside the dust/noise set.
    UnknownFactor,
    /// A factor value is not a finite number.
    BadValue,
    /// `DataTime` or `QN` is not a valid timestamp.
    BadTime,
    /// Neither `DataTime` nor `QN` gives the observation time.
    MissingTime,
    /// A real-time data frame without any factor value.
    NoValues,
    /// More than [`MAX_FRAME_LEN`] bytes arrived without a frame ending; the connection is
    /// dropped (see [`Reason::ends_connection`]).
    FrameTooLong,
    /// Set by the listener, not the codec: the connection's budget of refusals is spent
    /// (a peer sending refused frames as fast as it can); the connection is dropped.
    TooManyRejects,
}

impl Reason {
    pub fn code(self) -> &'static str {
        match self {
            Reason::Garbage => "garbage",
            Reason::BadLength => "bad_length",
            Reason::SegmentTooLong => "segment_too_long",
            Reason::Truncated => "truncated",
            Reason::BadTerminator => "bad_terminator",
            Reason::BadCrc => "bad_crc",
            Reason::BadEncoding => "bad_encoding",
            Reason::BadSegment => "bad_segment",
            Reason::BadField => "bad_field",
            Reason::MissingField => "missing_field",
            Reason::BadCp => "bad_cp",
            Reason::UnsupportedSt => "unsupported_st",
            Reason::UnsupportedCn => "unsupported_cn",
            Reason::EncryptedUnsupported => "encrypted_unsupported",
            Reason::UnknownFactor => "unknown_factor",
            Reason::BadValue => "bad_value",
            Reason::BadTime => "bad_time",
            Reason::MissingTime => "missing_time",
            Reason::NoValues => "no_values",
            Reason::FrameTooLong => "frame_too_long",
            Reason::TooManyRejects => "too_many_rejects",
        }
    }

    /// Whether the listener closes the connection after reporting this: only for a peer that
    /// is not speaking HJ 212 framing at all, or refused faster than any device would be.
    /// Every other refusal keeps the connection, since a device resends what was not
    /// acknowledged over the same long-lived connection.
    pub fn ends_connection(self) -> bool {
        matches!(self, Reason::FrameTooLong | Reason::TooManyRejects)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refusal: a stable reason plus a human detail for the quarantine record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {detail}")]
pub struct Hj212Error {
    pub reason: Reason,
    pub detail: String,
}

impl Hj212Error {
    fn new(reason: Reason, detail: impl Into<String>) -> Hj212Error {
        Hj212Error {
            reason,
            detail: detail.into(),
        }
    }
}

/// Bytes the splitter could not turn into a frame, kept whole so they can be quarantined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    pub raw: Bytes,
    pub error: Hj212Error,
}

/// A frame whose length, terminator and CRC checked out. Only the envelope is verified; the
/// data segment is parsed by [`parse_segment`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    bytes: Bytes,
}

impl RawFrame {
    /// The whole frame as received, for quarantine records.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The data segment (between the length and the CRC).
    pub fn segment(&self) -> &[u8] {
        &self.bytes[HEADER_LEN..self.bytes.len() - TRAILER_LEN]
    }
}

/// Cuts a TCP byte stream into frames. Errors never stop it: after each rejected fragment it
/// resynchronises on the next frame start or line end, because HJ 212 devices keep one
/// long-lived connection and a dropped connection would lose the frames queued behind a bad one.
#[derive(Debug, Default)]
pub struct Splitter {
    buf: BytesMut,
}

impl Splitter {
    pub fn new() -> Splitter {
        Splitter::default()
    }

    /// Appends received bytes.
    pub fn extend(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The receive buffer, so a socket can read straight into it.
    pub fn buffer_mut(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Bytes waiting for the rest of a frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next whole frame or rejected fragment, or `None` when more bytes are needed.
    /// Call until `None` after each read; the buffer then holds at most about one frame.
    pub fn next_item(&mut self) -> Option<Result<RawFrame, Rejected>> {
        loop {
            if self.buf.is_empty() {
                return None;
            }
            match find_start(&self.buf) {
                Some(0) => return self.frame_at_start(),
                Some(at) => {
                    let junk = self.buf.split_to(at).freeze();
                    if let Some(rejected) = garbage(junk) {
                        return Some(Err(rejected));
                    }
                }
                None => {
                    // A trailing '#' may be half of the next frame start.
                    let keep = usize::from(self.buf.last() == Some(&b'#'));
                    if self.buf.len() - keep < MAX_PENDING {
                        return None;
                    }
                    return Some(Err(self.too_long("without a frame start")));
                }
            }
        }
    }

    /// What is left when the peer goes away: an unfinished frame or trailing garbage.
    /// Call after [`Splitter::next_item`] returned `None`.
    pub fn finish(&mut self) -> Option<Rejected> {
        if self.buf.is_empty() {
            return None;
        }
        let rest = self.buf.split().freeze();
        if rest.starts_with(b"##") {
            let detail = format!("the connection ended {} bytes into a frame", rest.len());
            Some(Rejected {
                raw: rest,
                error: Hj212Error::new(Reason::Truncated, detail),
            })
        } else {
            garbage(rest)
        }
    }

    /// Decodes the frame that starts at offset 0 (`##` is known to be there).
    fn frame_at_start(&mut self) -> Option<Result<RawFrame, Rejected>> {
        let avail = self.buf.len();
        let digits = &self.buf[2..avail.min(HEADER_LEN)];
        if let Some(bad) = digits.iter().find(|b| !b.is_ascii_digit()) {
            let detail = format!(
                "the length field must be 4 decimal digits, found {:?}",
                char::from(*bad)
            );
            return self.resync(Reason::BadLength, detail);
        }
        if avail < HEADER_LEN {
            return None;
        }
        let len = digits
            .iter()
            .fold(0usize, |n, d| n * 10 + usize::from(d - b'0'));
        if len > MAX_SEGMENT_LEN {
            let detail = format!("declared data segment length {len} exceeds {MAX_SEGMENT_LEN}");
            return self.resync(Reason::SegmentTooLong, detail);
        }
        let total = HEADER_LEN + len + TRAILER_LEN;
        // A new frame start inside this frame means this one was cut short; report it now
        // rather than waiting for bytes that belong to the next frame.
        if let Some(at) = find(&self.buf[2..avail.min(total)], b"##") {
            let raw = self.buf.split_to(2 + at).freeze();
            let detail = format!(
                "a new frame started {} bytes into a frame declared as {len} bytes",
                raw.len()
            );
            return Some(Err(Rejected {
                raw,
                error: Hj212Error::new(Reason::Truncated, detail),
            }));
        }
        if avail < total {
            return None;
        }
        if &self.buf[total - 2..total] != b"\r\n" {
            let detail = format!("no CR LF after the {len}-byte data segment and CRC");
            return self.resync(Reason::BadTerminator, detail);
        }
        let crc_at = HEADER_LEN + len;
        let declared = parse_hex4(&self.buf[crc_at..crc_at + 4]);
        let computed = crc16(&self.buf[HEADER_LEN..crc_at]);
        let raw = self.buf.split_to(total).freeze();
        match declared {
            Some(declared) if declared == computed => Some(Ok(RawFrame { bytes: raw })),
            Some(declared) => Some(Err(Rejected {
                raw,
                error: Hj212Error::new(
                    Reason::BadCrc,
                    format!("CRC field {declared:04X}, computed {computed:04X}"),
                ),
            })),
            None => {
                let field = String::from_utf8_lossy(&raw[crc_at..crc_at + 4]).into_owned();
                Some(Err(Rejected {
                    raw,
                    error: Hj212Error::new(
                        Reason::BadCrc,
                        format!("CRC field {field:?} is not 4 hex digits"),
                    ),
                }))
            }
        }
    }

    /// Everything buffered as one [`Reason::FrameTooLong`] refusal, leaving the splitter empty.
    fn too_long(&mut self, context: &str) -> Rejected {
        let raw = self.buf.split().freeze();
        let detail = format!(
            "{} bytes {context} and no frame end; a frame is at most {MAX_FRAME_LEN} bytes",
            raw.len()
        );
        Rejected {
            raw,
            error: Hj212Error::new(Reason::FrameTooLong, detail),
        }
    }

    /// Drops a broken frame up to its line end or the next frame start, whichever comes first,
    /// so the following frame decodes. Waits if neither has arrived yet; [`MAX_PENDING`] bytes
    /// buffered without either is [`Reason::FrameTooLong`].
    fn resync(&mut self, reason: Reason, detail: String) -> Option<Result<RawFrame, Rejected>> {
        let after_crlf = find(&self.buf, b"\r\n").map(|at| at + 2);
        let next_start = find(&self.buf[2..], b"##").map(|at| at + 2);
        let end = match (after_crlf, next_start) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) if self.buf.len() >= MAX_PENDING => {
                let context = format!("after a frame refused as {}", reason.code());
                return Some(Err(self.too_long(&context)));
            }
            (None, None) => return None,
        };
        let raw = self.buf.split_to(end).freeze();
        Some(Err(Rejected {
            raw,
            error: Hj212Error::new(reason, detail),
        }))
    }
}

/// First frame start; of a run of `#`, the last two start the frame.
fn find_start(buf: &[u8]) -> Option<usize> {
    let mut at = find(buf, b"##")?;
    while buf.get(at + 2) == Some(&b'#') {
        at += 1;
    }
    Some(at)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Garbage as a rejection, except pure whitespace: DTUs commonly send stray CR LF or NUL
/// padding between frames, which is noise, not a message worth quarantining.
fn garbage(junk: Bytes) -> Option<Rejected> {
    if junk.iter().all(|b| b.is_ascii_whitespace() || *b == 0) {
        return None;
    }
    let detail = format!("{} bytes outside a frame", junk.len());
    Some(Rejected {
        raw: junk,
        error: Hj212Error::new(Reason::Garbage, detail),
    })
}

fn parse_hex4(field: &[u8]) -> Option<u16> {
    let text = std::str::from_utf8(field).ok()?;
    if text.len() != 4 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u16::from_str_radix(text, 16).ok()
}

/// Protocol edition, from Flag bits 2–7 (DOMAIN.md §11.5.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// HJ/T 212-2005, also assumed when a frame has no Flag (old firmware omits it).
    V2005,
    V2017,
    V2025,
    /// Version bits this codec does not know.
    Unknown(u8),
}

impl Version {
    fn from_flag(flag: Option<u8>) -> Version {
        match flag.map(|f| f >> 2) {
            None | Some(0) => Version::V2005,
            Some(1) => Version::V2017,
            Some(2) => Version::V2025,
            Some(n) => Version::Unknown(n),
        }
    }

    /// The version bits, placed as in Flag.
    fn flag_bits(self) -> u8 {
        match self {
            Version::V2005 => 0,
            Version::V2017 => 1 << 2,
            Version::V2025 => 2 << 2,
            Version::Unknown(n) => n << 2,
        }
    }
}

/// A parsed data segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Request id `YYYYMMDDhhmmsszzz`; 2005 frames may lack it.
    pub qn: Option<String>,
    pub st: String,
    pub cn: String,
    pub pw: Option<String>,
    pub mn: String,
    pub flag: Option<u8>,
    pub pnum: Option<u32>,
    pub pno: Option<u32>,
    /// CP pairs in wire order (split on `;` and `,`); empty when `cp_encrypted`.
    pub cp: Vec<(String, String)>,
    /// The CP looked like ciphertext (hex/base64 blob), so `cp` could not be read.
    pub cp_encrypted: bool,
    pub version: Version,
    /// Flag bit A: the host must answer with 9014.
    pub needs_ack: bool,
    /// Flag bit D: one packet of a split message (PNUM/PNO). Packets are taken one by one.
    pub packetised: bool,
    /// MN is 24 characters of 0-9/A-F. Real devices often break this, so it is only a warning.
    pub mn_standard: bool,
}

impl Frame {
    /// First CP value for `key`.
    pub fn cp_get(&self, key: &str) -> Option<&str> {
        self.cp
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a data segment (`QN=…;ST=…;CN=…;PW=…;MN=…;Flag=…;CP=&&…&&`). Header fields may come
/// in any order and unknown header keys are ignored, because vendors add their own.
pub fn parse_segment(segment: &[u8]) -> Result<Frame, Hj212Error> {
    let text = std::str::from_utf8(segment).map_err(|e| {
        Hj212Error::new(
            Reason::BadEncoding,
            format!("the data segment is not UTF-8 ({e})"),
        )
    })?;
    let (header, cp_text) = match text.find("CP=&&") {
        Some(at) => {
            let body = &text[at + 5..];
            let Some(content) = body.strip_suffix("&&") else {
                return Err(Hj212Error::new(
                    Reason::BadSegment,
                    "CP must be the last field and end with &&",
                ));
            };
            (&text[..at], Some(content))
        }
        None if text.contains("CP=") => {
            return Err(Hj212Error::new(
                Reason::BadSegment,
                "CP must be written CP=&&…&&",
            ));
        }
        None => (text, None),
    };

    let mut qn = None;
    let mut st = None;
    let mut cn = None;
    let mut pw = None;
    let mut mn = None;
    let mut flag_text = None;
    let mut pnum_text = None;
    let mut pno_text = None;
    for item in header.split(';').filter(|s| !s.is_empty()) {
        let Some((key, value)) = item.split_once('=') else {
            return Err(Hj212Error::new(
                Reason::BadSegment,
                format!("header item {item:?} is not KEY=value"),
            ));
        };
        let slot = match key.to_ascii_uppercase().as_str() {
            "QN" => &mut qn,
            "ST" => &mut st,
            "CN" => &mut cn,
            "PW" => &mut pw,
            "MN" => &mut mn,
            "FLAG" => &mut flag_text,
            "PNUM" => &mut pnum_text,
            "PNO" => &mut pno_text,
            _ => continue,
        };
        slot.get_or_insert(value);
    }

    let required = |value: Option<&str>, name: &str| match value {
        Some(v) if !v.is_empty() => Ok(v.to_owned()),
        _ => Err(Hj212Error::new(
            Reason::MissingField,
            format!("the data segment has no {name}"),
        )),
    };
    let mn = required(mn, "MN")?;
    let st = required(st, "ST")?;
    let cn = required(cn, "CN")?;
    let flag =
        match flag_text {
            None => None,
            Some(f) => Some(f.parse::<u8>().map_err(|_| {
                Hj212Error::new(Reason::BadField, format!("Flag {f:?} is not 0–255"))
            })?),
        };
    let number = |value: Option<&str>, name: &str| -> Result<Option<u32>, Hj212Error> {
        value
            .map(|v| {
                v.parse::<u32>().map_err(|_| {
                    Hj212Error::new(Reason::BadField, format!("{name} {v:?} is not a number"))
                })
            })
            .transpose()
    };
    let pnum = number(pnum_text, "PNUM")?;
    let pno = number(pno_text, "PNO")?;

    let (cp, cp_encrypted) = match cp_text {
        None => (Vec::new(), false),
        Some(content) if looks_encrypted(content) => (Vec::new(), true),
        Some(content) => (parse_cp(content)?, false),
    };

    let flag_bits = flag.unwrap_or(0);
    Ok(Frame {
        qn: qn.filter(|q| !q.is_empty()).map(str::to_owned),
        mn_standard: mn.len() == 24 && mn.bytes().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F')),
        st,
        cn,
        pw: pw.map(str::to_owned),
        mn,
        flag,
        pnum,
        pno,
        cp,
        cp_encrypted,
        version: Version::from_flag(flag),
        needs_ack: flag_bits & 1 != 0,
        packetised: flag_bits & 2 != 0,
    })
}

/// Parses and checks a frame the splitter produced.
pub fn decode(frame: &RawFrame) -> Result<Frame, Hj212Error> {
    parse_segment(frame.segment())
}

/// Best-effort MN of a segment that failed to parse, so its rejection can still be attributed.
pub fn sniff_mn(segment: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(segment);
    let header = text.split("CP=").next().unwrap_or_default();
    header
        .split(';')
        .filter_map(|item| item.split_once('='))
        .find(|(k, _)| k.eq_ignore_ascii_case("MN"))
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// SM4 output is a multiple of 16 bytes sent as hex or base64: one long token without
/// separators and with `=` only as base64 padding. Plain CP always has `key=value`.
fn looks_encrypted(content: &str) -> bool {
    let body = content.trim_end_matches('=');
    content.len() - body.len() <= 2
        && body.len() >= 16
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn parse_cp(content: &str) -> Result<Vec<(String, String)>, Hj212Error> {
    content
        .split([';', ','])
        .filter(|item| !item.is_empty())
        .map(|item| match item.split_once('=') {
            Some((key, value))
                if !key.is_empty()
                    && key
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)) =>
            {
                Ok((key.to_owned(), value.to_owned()))
            }
            _ => Err(Hj212Error::new(
                Reason::BadCp,
                format!("CP item {item:?} is not key=value"),
            )),
        })
        .collect()
}

/// What an accepted frame is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// CN 2011 real-time data: map with [`telemetry`].
    Data,
    /// CN 9015 heartbeat (2025): liveness only.
    Heartbeat,
}

/// The acceptance policy: real-time data from a dust/air system, or a heartbeat.
/// ST 22 (air quality), 31 (air pollution source) and 39 (site dust) are all used by dust
/// monitors in the field (DOMAIN.md §11.0 C3); 91 (system interaction) only for heartbeats.
pub fn classify(frame: &Frame) -> Result<Kind, Hj212Error> {
    if frame.cp_encrypted {
        let detail = if frame.version == Version::V2025 {
            "SM4-encrypted HJ 212-2025 frames are not supported yet".to_owned()
        } else {
            "encrypted CP content is not supported yet".to_owned()
        };
        return Err(Hj212Error::new(Reason::EncryptedUnsupported, detail));
    }
    let data_st = matches!(frame.st.as_str(), "22" | "31" | "39");
    match frame.cn.as_str() {
        "2011" if data_st => Ok(Kind::Data),
        "9015" if data_st || frame.st == "91" => Ok(Kind::Heartbeat),
        "2011" | "9015" => Err(Hj212Error::new(
            Reason::UnsupportedSt,
            format!(
                "ST={} is not accepted for CN={} (data: 22, 31, 39; heartbeat also 91)",
                frame.st, frame.cn
            ),
        )),
        cn => Err(Hj212Error::new(
            Reason::UnsupportedCn,
            format!("CN={cn} is not supported (real-time data 2011 and heartbeat 9015 are)"),
        )),
    }
}

/// HJ 212 factor code → platform telemetry field (DOMAIN.md §3, §8.3).
const FACTORS: &[(&str, &str)] = &[
    ("a34001", "tsp_ugm3"),
    ("a34002", "pm10_ugm3"),
    ("a34004", "pm25_ugm3"),
    ("LA", "noise_dba"),
    ("Leq", "noise_dba"),
    ("a01001", "temp_c"),
    ("a01002", "rh_pct"),
    ("a01006", "pressure_kpa"),
    ("a01007", "wind_ms"),
    ("a01008", "wind_dir_deg"),
];

/// The telemetry field for a factor code (case-insensitive: some firmware upper-cases codes).
pub fn factor_field(code: &str) -> Option<&'static str> {
    FACTORS
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(code))
        .map(|(_, field)| *field)
}

/// A factor whose data flag is not `N` (normal): the value is kept, but the caller records
/// the flag because only normal values count toward compliance averages (DOMAIN.md §11.5.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FactorFlag {
    pub field: &'static str,
    pub code: String,
    pub flag: String,
}

/// A real-time data frame as platform telemetry.
#[derive(Debug, Clone, PartialEq)]
pub struct Telemetry {
    pub ts: DateTime<Utc>,
    /// The JSON object an MQTT dust device would publish: `{"ts": RFC 3339, "pm10_ugm3": …}`,
    /// so the same downstream validator checks ranges for both transports.
    pub values: Map<String, Value>,
    pub flags: Vec<FactorFlag>,
}

/// Maps CN 2011 factors (`<code>-Rtd`, `<code>-Flag`) to telemetry. Dust values are taken as
/// µg/m³, the unit dust monitors report on site; HJ 212 itself does not fix the unit and an
/// mg/m³ device would show up as implausibly low values in range checks. Other per-factor
/// keys (`-SampleTime`, `-EFlag`, `-ZsRtd`, …) are ignored; the first value of a field wins
/// (so `LA` beats a later `Leq`).
pub fn telemetry(frame: &Frame) -> Result<Telemetry, Hj212Error> {
    let ts = observed_at(frame)?;
    let mut values = Map::new();
    let mut flags = Vec::new();
    for (key, value) in &frame.cp {
        let Some((code, part)) = key.split_once('-') else {
            continue;
        };
        let field = factor_field(code).ok_or_else(|| {
            Hj212Error::new(
                Reason::UnknownFactor,
                format!("factor code {code:?} is not a dust/noise factor"),
            )
        })?;
        match part {
            "Rtd" => {
                let number = value
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .ok_or_else(|| {
                        Hj212Error::new(
                            Reason::BadValue,
                            format!("{key}={value:?} is not a finite number"),
                        )
                    })?;
                values.entry(field).or_insert(Value::Number(number));
            }
            "Flag" if !value.is_empty() && value != "N" => flags.push(FactorFlag {
                field,
                code: code.to_owned(),
                flag: value.clone(),
            }),
            _ => {}
        }
    }
    if values.is_empty() {
        return Err(Hj212Error::new(
            Reason::NoValues,
            "the real-time data frame has no <factor>-Rtd value",
        ));
    }
    values.insert(
        "ts".to_owned(),
        Value::String(ts.to_rfc3339_opts(SecondsFormat::AutoSi, true)),
    );
    Ok(Telemetry { ts, values, flags })
}

/// Observation time: CP `DataTime` (`YYYYMMDDhhmmss`), else the QN request time
/// (`YYYYMMDDhhmmsszzz`); both Beijing time.
pub fn observed_at(frame: &Frame) -> Result<DateTime<Utc>, Hj212Error> {
    if let Some(data_time) = frame.cp_get("DataTime") {
        return china_time(data_time, 14).ok_or_else(|| {
            Hj212Error::new(
                Reason::BadTime,
                format!("DataTime {data_time:?} is not YYYYMMDDhhmmss"),
            )
        });
    }
    if let Some(qn) = &frame.qn {
        return china_time(qn, 17).ok_or_else(|| {
            Hj212Error::new(
                Reason::BadTime,
                format!("QN {qn:?} is not YYYYMMDDhhmmsszzz"),
            )
        });
    }
    Err(Hj212Error::new(
        Reason::MissingTime,
        "the frame has neither DataTime nor QN",
    ))
}

/// `YYYYMMDDhhmmss` optionally followed by milliseconds, in UTC+8.
fn china_time(text: &str, digits: usize) -> Option<DateTime<Utc>> {
    if text.len() != digits || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(&text[..14], "%Y%m%d%H%M%S").ok()?;
    let millis: i64 = text[14..].parse().unwrap_or(0);
    let offset = FixedOffset::east_opt(CHINA_OFFSET_SECS)?;
    let local = offset.from_local_datetime(&naive).single()?;
    Some(local.with_timezone(&Utc) + chrono::Duration::milliseconds(millis))
}

/// The 9014 data reply to `frame`: ST=91, same QN/PW/MN, the request's version bits without
/// A (a reply is never itself acknowledged), `CP=&&&&`. Fields absent from the request (2005
/// frames without QN or Flag) are left out rather than invented.
pub fn data_ack(frame: &Frame) -> Vec<u8> {
    let mut segment = String::new();
    if let Some(qn) = &frame.qn {
        segment.push_str(&format!("QN={qn};"));
    }
    segment.push_str("ST=91;CN=9014;");
    if let Some(pw) = &frame.pw {
        segment.push_str(&format!("PW={pw};"));
    }
    segment.push_str(&format!("MN={};", frame.mn));
    if frame.flag.is_some() {
        segment.push_str(&format!("Flag={};", frame.version.flag_bits()));
    }
    segment.push_str("CP=&&&&");
    encode(&segment)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    const SAMPLE: &str = "QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;CP=&&RtdInterval=30&&";
    const MN: &str = "0A1B2C3D4E5F607182930A1B";

    fn data_segment(flag: &str) -> String {
        format!(
            "QN=20240501100000123;ST=39;CN=2011;PW=123456;MN={MN};{flag}CP=&&DataTime=20240501100000;\
             a34001-Rtd=120.5,a34001-Flag=N;a34002-Rtd=80,a34002-Flag=N;a34004-Rtd=35.2,a34004-Flag=D;\
             LA-Rtd=62.3,LA-Flag=N;a01001-Rtd=21.5;a01002-Rtd=45;a01006-Rtd=101.3;a01007-Rtd=3.2;a01008-Rtd=270&&"
        )
    }

    fn expected_json() -> Value {
        json!({
            "ts": "2024-05-01T02:00:00Z",
            "tsp_ugm3": 120.5, "pm10_ugm3": 80.0, "pm25_ugm3": 35.2, "noise_dba": 62.3,
            "temp_c": 21.5, "rh_pct": 45.0, "pressure_kpa": 101.3, "wind_ms": 3.2,
            "wind_dir_deg": 270.0,
        })
    }

    fn split_all(bytes: &[u8]) -> Vec<Result<RawFrame, Rejected>> {
        let mut splitter = Splitter::new();
        splitter.extend(bytes);
        std::iter::from_fn(|| splitter.next_item()).collect()
    }

    fn decode_one(bytes: &[u8]) -> Frame {
        let items = split_all(bytes);
        assert_eq!(items.len(), 1, "{items:?}");
        decode(items[0].as_ref().unwrap()).unwrap()
    }

    #[test]
    fn sample_crc_matches_the_standard() {
        assert_eq!(SAMPLE.len(), 101);
        assert_eq!(crc16(SAMPLE.as_bytes()), 0x1C80);
        let wire = encode(SAMPLE);
        assert!(wire.starts_with(b"##0101QN="));
        assert!(wire.ends_with(b"&&1C80\r\n"));
    }

    #[test]
    fn lower_case_crc_is_accepted() {
        let wire = format!("##0101{SAMPLE}1c80\r\n");
        let frame = decode_one(wire.as_bytes());
        assert_eq!(frame.cn, "1062");
        assert_eq!(frame.cp, vec![("RtdInterval".to_owned(), "30".to_owned())]);
    }

    #[test]
    fn realtime_2017_frame_decodes_and_needs_ack() {
        let frame = decode_one(&encode(&data_segment("Flag=5;")));
        assert_eq!(frame.version, Version::V2017);
        assert!(frame.needs_ack && !frame.packetised && frame.mn_standard);
        assert_eq!(frame.qn.as_deref(), Some("20240501100000123"));
        assert_eq!(frame.pw.as_deref(), Some("123456"));
        assert_eq!(classify(&frame), Ok(Kind::Data));
        let t = telemetry(&frame).unwrap();
        assert_eq!(Value::Object(t.values), expected_json());
        assert_eq!(
            t.flags,
            vec![FactorFlag {
                field: "pm25_ugm3",
                code: "a34004".to_owned(),
                flag: "D".to_owned()
            }]
        );
    }

    #[test]
    fn realtime_2025_frame_decodes_and_needs_ack() {
        let frame = decode_one(&encode(&data_segment("Flag=9;")));
        assert_eq!(frame.version, Version::V2025);
        assert!(frame.needs_ack);
        assert_eq!(classify(&frame), Ok(Kind::Data));
        assert_eq!(
            Value::Object(telemetry(&frame).unwrap().values),
            expected_json()
        );
    }

    #[test]
    fn length_counts_utf8_bytes() {
        let segment = format!(
            "ST=39;CN=2011;MN={MN};Flag=8;CP=&&DataTime=20240501100000;Info=扬尘;LA-Rtd=55&&"
        );
        let wire = encode(&segment);
        let declared: usize = std::str::from_utf8(&wire[2..6]).unwrap().parse().unwrap();
        assert_eq!(declared, segment.len());
        assert!(declared > segment.chars().count());
        let frame = decode_one(&wire);
        assert_eq!(frame.cp_get("Info"), Some("扬尘"));
    }

    #[test]
    fn frame_2005_without_flag_or_qn() {
        let segment = "ST=22;CN=2011;PW=123456;MN=JL2201SITE0001DUST01;CP=&&DataTime=20240501100000;a34002-Rtd=55.0&&";
        let frame = decode_one(&encode(segment));
        assert_eq!(frame.version, Version::V2005);
        assert_eq!(frame.flag, None);
        assert_eq!(frame.qn, None);
        assert!(!frame.needs_ack && !frame.mn_standard);
        assert_eq!(classify(&frame), Ok(Kind::Data));
        let values = telemetry(&frame).unwrap().values;
        assert_eq!(
            Value::Object(values),
            json!({"ts": "2024-05-01T02:00:00Z", "pm10_ugm3": 55.0})
        );
    }

    #[test]
    fn qn_is_the_fallback_time() {
        let segment = format!("QN=20240501100000123;ST=39;CN=2011;MN={MN};Flag=4;CP=&&LA-Rtd=50&&");
        let frame = decode_one(&encode(&segment));
        assert!(!frame.needs_ack);
        let t = telemetry(&frame).unwrap();
        assert_eq!(t.values["ts"], json!("2024-05-01T02:00:00.123Z"));
        let no_time =
            parse_segment(format!("ST=39;CN=2011;MN={MN};CP=&&LA-Rtd=50&&").as_bytes()).unwrap();
        assert_eq!(telemetry(&no_time).unwrap_err().reason, Reason::MissingTime);
        let bad_time = parse_segment(
            format!("ST=39;CN=2011;MN={MN};CP=&&DataTime=2024;LA-Rtd=50&&").as_bytes(),
        )
        .unwrap();
        assert_eq!(telemetry(&bad_time).unwrap_err().reason, Reason::BadTime);
    }

    #[test]
    fn non_standard_mn_is_decoded() {
        let segment = data_segment("Flag=5;").replace(MN, "JL2201SITE0001DUST01");
        let frame = decode_one(&encode(&segment));
        assert!(!frame.mn_standard);
        assert_eq!(frame.mn, "JL2201SITE0001DUST01");
        assert!(telemetry(&frame).is_ok());
        let lower = decode_one(&encode(
            &data_segment("Flag=5;").replace(MN, &MN.to_lowercase()),
        ));
        assert!(!lower.mn_standard);
    }

    #[test]
    fn missing_fields_are_refused() {
        for segment in [
            "ST=39;CN=2011;CP=&&&&",
            "ST=39;MN=AB;CP=&&&&",
            "CN=2011;MN=AB;CP=&&&&",
            "ST=39;CN=2011;MN=;CP=&&&&",
        ] {
            let err = parse_segment(segment.as_bytes()).unwrap_err();
            assert_eq!(err.reason, Reason::MissingField, "{segment}");
        }
        assert_eq!(sniff_mn(b"ST=39;MN=AB;CP=&&&&").as_deref(), Some("AB"));
        assert_eq!(
            parse_segment(b"ST=39;CN=2011;MN=AB;Flag=x;CP=&&&&")
                .unwrap_err()
                .reason,
            Reason::BadField
        );
        assert_eq!(
            parse_segment(b"ST=39;CN=2011;MN=AB;CP=&&a34002-Rtd&&")
                .unwrap_err()
                .reason,
            Reason::BadCp
        );
        assert_eq!(
            parse_segment(b"ST=39;CN=2011;MN=AB;CP=&&x=1")
                .unwrap_err()
                .reason,
            Reason::BadSegment
        );
    }

    #[test]
    fn policy_refuses_other_st_and_cn() {
        let frame = |st: &str, cn: &str| {
            parse_segment(format!("ST={st};CN={cn};MN={MN};Flag=9;CP=&&&&").as_bytes()).unwrap()
        };
        assert_eq!(classify(&frame("91", "9015")), Ok(Kind::Heartbeat));
        assert_eq!(classify(&frame("39", "9015")), Ok(Kind::Heartbeat));
        assert_eq!(classify(&frame("22", "2011")), Ok(Kind::Data));
        assert_eq!(classify(&frame("31", "2011")), Ok(Kind::Data));
        assert_eq!(
            classify(&frame("32", "2011")).unwrap_err().reason,
            Reason::UnsupportedSt
        );
        assert_eq!(
            classify(&frame("91", "2011")).unwrap_err().reason,
            Reason::UnsupportedSt
        );
        assert_eq!(
            classify(&frame("39", "2051")).unwrap_err().reason,
            Reason::UnsupportedCn
        );
    }

    #[test]
    fn unknown_factor_and_bad_value_are_refused() {
        let parse = |cp: &str| {
            parse_segment(
                format!("ST=39;CN=2011;MN={MN};CP=&&DataTime=20240501100000;{cp}&&").as_bytes(),
            )
            .unwrap()
        };
        let err = telemetry(&parse("a21026-Rtd=3")).unwrap_err();
        assert_eq!(err.reason, Reason::UnknownFactor);
        assert!(err.detail.contains("a21026"));
        assert_eq!(
            telemetry(&parse("LA-Rtd=abc")).unwrap_err().reason,
            Reason::BadValue
        );
        assert_eq!(
            telemetry(&parse("LA-Rtd=NaN")).unwrap_err().reason,
            Reason::BadValue
        );
        assert_eq!(
            telemetry(&parse("RtdInterval=30")).unwrap_err().reason,
            Reason::NoValues
        );
        let t = telemetry(&parse(
            "Leq-Rtd=58,Leq-Flag=T,a34002-SampleTime=20240501095959000,a34002-Rtd=9",
        ))
        .unwrap();
        assert_eq!(t.values["noise_dba"], json!(58.0));
        assert_eq!(t.flags[0].flag, "T");
    }

    #[test]
    fn sm4_looking_cp_on_2025_frame_is_refused() {
        let segment = format!(
            "QN=20240501100000123;ST=39;CN=2011;PW=123456;MN={MN};Flag=9;CP=&&8F3A61C0D2E94B7A15C6E0F2A9B3D4E1&&"
        );
        let frame = decode_one(&encode(&segment));
        assert!(frame.cp_encrypted);
        let err = classify(&frame).unwrap_err();
        assert_eq!(err.reason, Reason::EncryptedUnsupported);
        assert_eq!(
            err.detail,
            "SM4-encrypted HJ 212-2025 frames are not supported yet"
        );
        let b64 = parse_segment(
            format!("ST=39;CN=2011;MN={MN};Flag=9;CP=&&q83vEjRWeJq83vEjRWeA==&&").as_bytes(),
        )
        .unwrap();
        assert_eq!(
            classify(&b64).unwrap_err().reason,
            Reason::EncryptedUnsupported
        );
    }

    #[test]
    fn bad_crc_is_rejected_and_the_next_frame_decodes() {
        let mut wire = encode(SAMPLE);
        let n = wire.len();
        wire[n - 6..n - 2].copy_from_slice(b"1C81");
        wire.extend(encode(SAMPLE));
        let items = split_all(&wire);
        assert_eq!(items.len(), 2);
        let rejected = items[0].as_ref().unwrap_err();
        assert_eq!(rejected.error.reason, Reason::BadCrc);
        assert_eq!(rejected.raw.len(), n);
        assert!(items[1].is_ok());
    }

    #[test]
    fn bad_length_is_rejected_and_the_next_frame_decodes() {
        let mut wire = b"##01x1QN=1;ST=32\r\n".to_vec();
        wire.extend(encode(SAMPLE));
        let items = split_all(&wire);
        assert_eq!(items.len(), 2, "{items:?}");
        let rejected = items[0].as_ref().unwrap_err();
        assert_eq!(rejected.error.reason, Reason::BadLength);
        assert_eq!(&rejected.raw[..], b"##01x1QN=1;ST=32\r\n");
        assert!(items[1].is_ok());
    }

    #[test]
    fn over_long_segment_is_rejected_and_the_next_frame_decodes() {
        let mut wire = format!("##2000{}0000\r\n", "x".repeat(1500)).into_bytes();
        wire.extend(encode(SAMPLE));
        let items = split_all(&wire);
        assert_eq!(items.len(), 2, "{items:?}");
        assert_eq!(
            items[0].as_ref().unwrap_err().error.reason,
            Reason::SegmentTooLong
        );
        assert!(items[1].is_ok());
    }

    #[test]
    fn garbage_then_good_frame_in_one_buffer() {
        let mut wire = b"AT+CSQ\r\nhello#".to_vec();
        wire.extend(encode(SAMPLE));
        wire.extend(b"\r\n");
        wire.extend(encode(SAMPLE));
        let items = split_all(&wire);
        assert_eq!(items.len(), 3, "{items:?}");
        let rejected = items[0].as_ref().unwrap_err();
        assert_eq!(rejected.error.reason, Reason::Garbage);
        assert_eq!(&rejected.raw[..], b"AT+CSQ\r\nhello#");
        assert!(
            items[1].is_ok() && items[2].is_ok(),
            "blank line between frames is dropped"
        );
    }

    #[test]
    fn wrong_terminator_and_truncated_frames_resync() {
        // Declared length one byte too short: the terminator check fails, the rest of the line goes.
        let mut wire = format!("##0100{SAMPLE}1C80\r\n").into_bytes();
        // A frame cut off by the device, immediately followed by a good one.
        wire.extend(b"##0101QN=2016");
        wire.extend(encode(SAMPLE));
        let items = split_all(&wire);
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(
            items[0].as_ref().unwrap_err().error.reason,
            Reason::BadTerminator
        );
        let truncated = items[1].as_ref().unwrap_err();
        assert_eq!(truncated.error.reason, Reason::Truncated);
        assert_eq!(&truncated.raw[..], b"##0101QN=2016");
        assert!(items[2].is_ok());
    }

    /// Feeds `chunk` `times` times, collecting every item, and checks the buffer never holds a
    /// frame's worth.
    fn feed(splitter: &mut Splitter, chunk: &[u8], times: usize) -> Vec<Rejected> {
        let mut out = Vec::new();
        for _ in 0..times {
            splitter.extend(chunk);
            while let Some(item) = splitter.next_item() {
                out.push(item.unwrap_err());
            }
            assert!(splitter.pending() < MAX_PENDING);
        }
        out
    }

    #[test]
    fn more_than_a_frame_without_a_frame_end_is_frame_too_long() {
        // Endless garbage: one refusal once a frame's worth has arrived, naming the reason that
        // ends the connection, holding what was buffered.
        let mut splitter = Splitter::new();
        let items = feed(&mut splitter, &[b'x'; 100], 11);
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0].error.reason, Reason::FrameTooLong);
        assert_eq!(items[0].error.reason.code(), "frame_too_long");
        assert!(items[0].error.reason.ends_connection());
        assert_eq!(items[0].raw.len(), 1100);
        assert_eq!(splitter.pending(), 0);
        // A frame header whose line never ends: the bad length is not reported on its own.
        let mut splitter = Splitter::new();
        splitter.extend(b"##01x1");
        let items = feed(&mut splitter, &[b'y'; 100], 11);
        assert_eq!(items.len(), 1, "{items:?}");
        assert_eq!(items[0].error.reason, Reason::FrameTooLong);
        assert!(items[0].error.detail.contains("bad_length"), "{items:?}");
    }

    #[test]
    fn a_frame_of_the_largest_size_after_garbage_is_not_too_long() {
        // The largest frame the standard allows, after a little less than a frame of garbage.
        let segment = format!("{SAMPLE}{}", "0".repeat(MAX_SEGMENT_LEN - SAMPLE.len()));
        let frame = encode(&segment);
        assert_eq!(frame.len(), MAX_FRAME_LEN);
        let mut wire = vec![b'z'; MAX_FRAME_LEN - 1];
        wire.extend(&frame);
        wire.extend(b"##01x1 bad length\r\n");
        wire.extend(&frame);
        // Whole, and a byte per read: the splitter never holds a frame's worth undecided.
        let mut byte_by_byte = Splitter::new();
        let mut items = Vec::new();
        for b in &wire {
            byte_by_byte.extend(&[*b]);
            items.extend(std::iter::from_fn(|| byte_by_byte.next_item()));
        }
        for items in [split_all(&wire), items] {
            let reasons: Vec<_> = items
                .iter()
                .map(|i| i.as_ref().map_err(|r| r.error.reason).map(|_| "frame"))
                .collect();
            assert_eq!(
                reasons,
                [
                    Err(Reason::Garbage),
                    Ok("frame"),
                    Err(Reason::BadLength),
                    Ok("frame")
                ]
            );
        }
    }

    #[test]
    fn split_delivery_waits_for_the_whole_frame() {
        let wire = encode(&data_segment("Flag=5;"));
        let mut splitter = Splitter::new();
        let (a, rest) = wire.split_at(4);
        let (b, c) = rest.split_at(rest.len() - 3);
        splitter.extend(a);
        assert!(splitter.next_item().is_none());
        splitter.extend(b);
        assert!(splitter.next_item().is_none());
        splitter.extend(c);
        let frame = decode(&splitter.next_item().unwrap().unwrap()).unwrap();
        assert_eq!(frame.mn, MN);
        assert!(splitter.next_item().is_none());
        assert!(splitter.finish().is_none());
    }

    #[test]
    fn unfinished_frame_is_reported_at_end_of_stream() {
        let mut splitter = Splitter::new();
        splitter.extend(b"##0101QN=2016");
        assert!(splitter.next_item().is_none());
        assert_eq!(splitter.finish().unwrap().error.reason, Reason::Truncated);
    }

    #[test]
    fn acks_round_trip() {
        for (flag, version_flag) in [("Flag=5;", "Flag=4"), ("Flag=9;", "Flag=8")] {
            let request = decode_one(&encode(&data_segment(flag)));
            let wire = data_ack(&request);
            let segment = &wire[6..wire.len() - 6];
            let crc = format!("{:04X}", crc16(segment));
            assert_eq!(&wire[wire.len() - 6..wire.len() - 2], crc.as_bytes());
            assert_eq!(
                std::str::from_utf8(segment).unwrap(),
                format!(
                    "QN=20240501100000123;ST=91;CN=9014;PW=123456;MN={MN};{version_flag};CP=&&&&"
                )
            );
            let ack = decode_one(&wire);
            assert_eq!(ack.cn, "9014");
            assert_eq!(ack.version, request.version);
            assert!(!ack.needs_ack);
        }
        let heartbeat = decode_one(&encode(&format!(
            "QN=20260101000000000;ST=91;CN=9015;PW=123456;MN={MN};Flag=9;CP=&&&&"
        )));
        assert_eq!(classify(&heartbeat), Ok(Kind::Heartbeat));
        assert!(heartbeat.needs_ack);
        assert_eq!(decode_one(&data_ack(&heartbeat)).cn, "9014");
        let old = parse_segment(b"ST=22;CN=2011;MN=AB;CP=&&&&").unwrap();
        let ack = data_ack(&old);
        assert_eq!(&ack[6..ack.len() - 6], b"ST=91;CN=9014;MN=AB;CP=&&&&");
    }
}
