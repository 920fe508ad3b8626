//! Device messages (API.md "Device messages"; DOMAIN.md §2.2, §2.3, §3, §8.3, §8.5): the
//! per-category telemetry schema, the decoders for telemetry and event payloads, and the hourly
//! aggregation regulators judge dust and noise on. Pure: no I/O, no clock (the caller passes the
//! receive time), so the ingest path and its tests see the same rules.
//!
//! The decoders are the ingest hot path. Telemetry is validated while it is parsed: values are
//! checked against a static table as they stream past, containers are skipped without being
//! built, and strings are borrowed from the payload where they hold no escapes. A message is
//! rejected whole on its first error, with a stable reason code, because the caller quarantines
//! it (GET /v1/quarantine shows the reason); half a reading stored as if it were whole would feed
//! alarms with stale neighbours of the bad field.
//!
//! The decoders assume serde_json without `arbitrary_precision` (numbers reach a visitor as
//! numbers); the accept-path tests fail loudly if a dependency ever turns that feature on.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, TimeDelta, Utc};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::devices::Category;

/// The largest accepted payload, telemetry or event. Real messages are a few hundred bytes;
/// the cap bounds the work and the quarantine record a misbehaving device can cause.
pub const MAX_PAYLOAD_BYTES: usize = 16 * 1024;

/// How far a message's timestamp may run ahead of the receive time. Device clocks drift and
/// NTP is not guaranteed on site, so a little skew is tolerated; more means a broken clock whose
/// readings would sort after everything real. Old timestamps are always fine: devices buffer
/// while offline and back-fill on reconnect (DOMAIN.md §2.1).
pub const MAX_FUTURE_SKEW: TimeDelta = TimeDelta::minutes(5);

/// The project time zone, Asia/Shanghai, as a fixed offset in seconds. China has had no daylight
/// saving since 1991, so a fixed UTC+8 is exact for every timestamp a device can produce.
pub const SHANGHAI_OFFSET_SECS: i64 = crate::calendar::SHANGHAI_OFFSET_SECS as i64;

/// The stable rejection codes. They are stored with quarantined messages and shown by the API,
/// so they never change meaning.
pub mod reason {
    /// The payload does not parse as JSON (including trailing data, a duplicate key, or bytes
    /// that are not UTF-8).
    pub const NOT_JSON: &str = "not_json";
    /// Valid JSON, but not an object.
    pub const NOT_OBJECT: &str = "not_object";
    pub const MISSING_TS: &str = "missing_ts";
    /// `ts` (or an event's `start`/`end`) is not an RFC 3339 timestamp.
    pub const BAD_TS: &str = "bad_ts";
    pub const TS_IN_FUTURE: &str = "ts_in_future";
    pub const UNKNOWN_FIELD: &str = "unknown_field";
    pub const WRONG_TYPE: &str = "wrong_type";
    pub const OUT_OF_RANGE: &str = "out_of_range";
    pub const TOO_LARGE: &str = "too_large";
    pub const BAD_EVENT: &str = "bad_event";
    /// A text field holds a control, bidirectional or invisible formatting character
    /// ([`crate::domain::text`]), which would show differently from what is stored.
    pub const BAD_TEXT: &str = "bad_text";
    /// A telemetry message with `ts` and nothing else: it carries no reading, and storing it
    /// would make a silent device look alive.
    pub const EMPTY: &str = "empty";
}

// ---------------------------------------------------------------------------------------------
// Public types.

/// One telemetry value. Untagged so it serialises as the plain JSON scalar the device sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Num(f64),
    Bool(bool),
    Text(String),
}

/// One accepted telemetry message: its timestamp (UTC) and its validated fields, keyed by the
/// canonical field names of DOMAIN.md §8.3.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    pub ts: DateTime<Utc>,
    pub values: BTreeMap<String, Value>,
}

impl Reading {
    /// A numeric field, if present (and numeric, which the schema guarantees for number fields).
    pub fn num(&self, field: &str) -> Option<f64> {
        match self.values.get(field)? {
            Value::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn flag(&self, field: &str) -> Option<bool> {
        match self.values.get(field)? {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    pub fn text(&self, field: &str) -> Option<&str> {
        match self.values.get(field)? {
            Value::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// Why a message was refused: a stable code from [`reason`], the offending field when there is
/// one, and a human-readable detail (ranges, expected types) for whoever reads the quarantine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub reason: &'static str,
    pub field: Option<String>,
    pub detail: String,
}

impl Rejection {
    fn new(reason: &'static str, field: Option<&str>, detail: impl Into<String>) -> Rejection {
        Rejection {
            reason,
            field: field.map(clip),
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({field}): {}", self.reason, self.detail),
            None => write!(f, "{}: {}", self.reason, self.detail),
        }
    }
}

impl std::error::Error for Rejection {}

/// One accepted event: its timestamp, its `type`, and every other top-level field. Unknown
/// extra fields are kept, not refused: vendors attach their own codes and snapshots to events,
/// and an event (an alarm, an attendance) is too important to lose over an extra key. Fields the
/// platform names are still checked for type and range.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub ts: DateTime<Utc>,
    pub kind: String,
    pub body: serde_json::Map<String, serde_json::Value>,
}

// ---------------------------------------------------------------------------------------------
// Telemetry schema.

/// What a telemetry field holds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldKind {
    /// A number in `min..=max` (in `unit`); `integer` demands a whole number (counts, floors).
    Num {
        min: f64,
        max: f64,
        unit: &'static str,
        integer: bool,
    },
    Bool,
    /// One of a fixed set of strings (case-sensitive: the wire format is canonical).
    Enum(&'static [&'static str]),
    /// Free text of at most `max_chars` characters.
    Text {
        max_chars: usize,
    },
}

/// One telemetry field of a category.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub kind: FieldKind,
}

const fn num(name: &'static str, min: f64, max: f64, unit: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        kind: FieldKind::Num {
            min,
            max,
            unit,
            integer: false,
        },
    }
}

const fn int(name: &'static str, min: f64, max: f64) -> FieldSpec {
    FieldSpec {
        name,
        kind: FieldKind::Num {
            min,
            max,
            unit: "",
            integer: true,
        },
    }
}

const fn flag(name: &'static str) -> FieldSpec {
    FieldSpec {
        name,
        kind: FieldKind::Bool,
    }
}

const fn one_of(name: &'static str, allowed: &'static [&'static str]) -> FieldSpec {
    FieldSpec {
        name,
        kind: FieldKind::Enum(allowed),
    }
}

const fn text(name: &'static str, max_chars: usize) -> FieldSpec {
    FieldSpec {
        name,
        kind: FieldKind::Text { max_chars },
    }
}

// Fields shared by several categories. The ranges are sanity bounds that catch unit mistakes
// and garbage, not engineering limits: a reading past an alarm threshold must still be stored,
// because it is exactly the reading the alarm rules (DOMAIN.md §8.5) exist for.

/// Received signal strength, every category: −140 dBm (LTE RSRP floor) to 0.
const SIGNAL_DBM: FieldSpec = num("signal_dbm", -140.0, 0.0, "dBm");
/// Battery charge, every category.
const BATTERY_PCT: FieldSpec = num("battery_pct", 0.0, 100.0, "%");
/// Wind speed. The crane black-box format tops out at 36.9 m/s (DOMAIN.md §2.2), but field
/// anemometers report gusts above that, and a storm gust is the last reading to quarantine; 60 m/s
/// is above any recorded typhoon gust in the service area.
const WIND_MS: FieldSpec = num("wind_ms", 0.0, 60.0, "m/s");
/// Hoist and platform tilt: the inclinometer's physical range. The crane's ±9.99° is a wire
/// format of its sensor (§2.2); on a hoist or platform a large tilt is the alarm itself.
const TILT_X_DEG: FieldSpec = num("tilt_x_deg", -90.0, 90.0, "°");
const TILT_Y_DEG: FieldSpec = num("tilt_y_deg", -90.0, 90.0, "°");
/// Measured load in kg: twice the largest rated load a device may be configured with
/// (devices.rs `rated_load_kg` ≤ 10 000), so gross overloads are stored, not refused.
const LOAD_KG: FieldSpec = num("load_kg", 0.0, 20_000.0, "kg");
/// Load (or moment) as a percentage of rated: the crane sensor word's range (§2.2).
const LOAD_PCT: FieldSpec = num("load_pct", 0.0, 655.35, "%");
const DRIVER_ID_VERIFIED: FieldSpec = flag("driver_id_verified");

/// Tower crane, DOMAIN.md §8.3 names with §2.2 ranges.
static TOWER_CRANE: &[FieldSpec] = &[
    num("load_t", 0.0, 99.99, "t"),
    num("radius_m", 0.0, 99.99, "m"),
    num("height_m", -100.0, 655.35, "m"),
    num("slew_deg", -540.0, 540.0, "°"),
    num("moment_pct", 0.0, 655.35, "%"),
    LOAD_PCT,
    WIND_MS,
    num("tilt_deg", -9.99, 9.99, "°"),
    int("reeving", 1.0, 99.0),
    one_of("mode", &["operating", "jacking"]),
    DRIVER_ID_VERIFIED,
    SIGNAL_DBM,
    BATTERY_PCT,
];

/// Construction hoist, §2.3 / §8.3.
static HOIST: &[FieldSpec] = &[
    LOAD_KG,
    LOAD_PCT,
    int("persons", 0.0, 100.0),
    // The zero is set at installation; pits and basements sit below it. 1 000 m matches the
    // largest configurable `max_height_m`.
    num("height_m", -100.0, 1_000.0, "m"),
    // Basements are negative floors.
    int("floor", -20.0, 300.0),
    // A magnitude: the sign lives in `direction`. Hoists run at most ~1.6 m/s.
    num("speed_ms", 0.0, 10.0, "m/s"),
    one_of("direction", &["still", "up", "down"]),
    flag("door_front_open"),
    flag("door_back_open"),
    flag("upper_limit"),
    flag("lower_limit"),
    TILT_X_DEG,
    TILT_Y_DEG,
    WIND_MS,
    DRIVER_ID_VERIFIED,
    SIGNAL_DBM,
    BATTERY_PCT,
];

/// Dust and noise monitor, §3 / §8.3 (the HJ 212 factors, in canonical names).
static DUST_NOISE: &[FieldSpec] = &[
    num("pm10_ugm3", 0.0, 20_000.0, "µg/m³"),
    num("pm25_ugm3", 0.0, 20_000.0, "µg/m³"),
    num("tsp_ugm3", 0.0, 20_000.0, "µg/m³"),
    num("noise_dba", 20.0, 140.0, "dB(A)"),
    num("temp_c", -50.0, 70.0, "°C"),
    num("rh_pct", 0.0, 100.0, "%"),
    num("pressure_kpa", 50.0, 120.0, "kPa"),
    WIND_MS,
    num("wind_dir_deg", 0.0, 360.0, "°"),
    SIGNAL_DBM,
    BATTERY_PCT,
];

/// Spray / fog cannon (actuator), §3 / §8.3.
static SPRAY: &[FieldSpec] = &[
    one_of("state", &["on", "off"]),
    text("reason", 256),
    // Scheduled tasks run in minutes (§3); a day bounds any single run.
    num("duration_min", 0.0, 1_440.0, "min"),
    SIGNAL_DBM,
    BATTERY_PCT,
];

/// Unloading platform (卸料平台), §8.3.
static UNLOADING_PLATFORM: &[FieldSpec] = &[
    LOAD_KG,
    LOAD_PCT,
    TILT_X_DEG,
    TILT_Y_DEG,
    BATTERY_PCT,
    SIGNAL_DBM,
];

/// Automatic ranging inspection (自动测距巡检). Its schema is still open in §8.3; these two
/// fields and their generous bounds are the working assumption.
static RANGING_INSPECTION: &[FieldSpec] = &[
    num("distance_m", 0.0, 1_000.0, "m"),
    num("displacement_mm", -10_000.0, 10_000.0, "mm"),
    SIGNAL_DBM,
    BATTERY_PCT,
];

/// Gates, cameras and panoramas report their business data as events (attendance, AI events);
/// their telemetry is device health only.
static HEALTH_ONLY: &[FieldSpec] = &[
    BATTERY_PCT,
    SIGNAL_DBM,
    int("online_channels", 0.0, 1_024.0),
];

/// The telemetry fields a device of `category` may send. Every field is optional on its own;
/// a message must carry at least one.
pub fn telemetry_fields(category: Category) -> &'static [FieldSpec] {
    match category {
        Category::TowerCrane => TOWER_CRANE,
        Category::Hoist => HOIST,
        Category::DustNoise => DUST_NOISE,
        Category::Spray => SPRAY,
        Category::UnloadingPlatform => UNLOADING_PLATFORM,
        Category::RangingInspection => RANGING_INSPECTION,
        Category::AccessGate | Category::Camera | Category::Panorama => HEALTH_ONLY,
    }
}

// ---------------------------------------------------------------------------------------------
// Telemetry decoding.

/// Decodes and validates one telemetry payload of a `category` device received at `now`.
///
/// Checks, in order: size; one JSON object; then each field in document order (`ts` an RFC 3339
/// timestamp not more than [`MAX_FUTURE_SKEW`] after `now`, every other key a field of the
/// category with the right JSON type and range); then that `ts` was present and at least one
/// other field was. `null` values count as absent (vendors send `null` for an unfitted sensor).
/// A payload that does not parse is `not_json` even if an earlier field was already wrong, so
/// garbage is always reported as garbage.
pub fn decode_telemetry(
    category: Category,
    payload: &[u8],
    now: DateTime<Utc>,
) -> Result<Reading, Rejection> {
    check_envelope(payload)?;
    let mut overflow = None;
    let mut de = serde_json::Deserializer::from_slice(payload);
    let parsed = de
        .deserialize_map(TelemetryVisitor {
            category,
            fields: telemetry_fields(category),
            now,
            overflow: &mut overflow,
        })
        .and_then(|r| de.end().map(|()| r));
    match parsed {
        Ok(r) => r,
        Err(e) => Err(overflow.unwrap_or_else(|| not_json(&e))),
    }
}

/// Size and shape checks shared by both decoders. The shape check sniffs the first byte so the
/// common case costs nothing; only a non-object pays for a second parse that tells "valid JSON,
/// wrong shape" from "not JSON".
fn check_envelope(payload: &[u8]) -> Result<(), Rejection> {
    if payload.len() > MAX_PAYLOAD_BYTES {
        return Err(Rejection::new(
            reason::TOO_LARGE,
            None,
            format!("{} bytes; the limit is {MAX_PAYLOAD_BYTES}", payload.len()),
        ));
    }
    match payload.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(()),
        _ => match serde_json::from_slice::<IgnoredAny>(payload) {
            Ok(_) => Err(Rejection::new(
                reason::NOT_OBJECT,
                None,
                "a message is one JSON object",
            )),
            Err(e) => Err(not_json(&e)),
        },
    }
}

fn not_json(e: &serde_json::Error) -> Rejection {
    Rejection::new(reason::NOT_JSON, None, e.to_string())
}

fn duplicate(field: &str) -> Rejection {
    Rejection::new(
        reason::NOT_JSON,
        Some(field),
        format!("duplicate key `{}`", clip(field)),
    )
}

/// Whether a parse error is serde_json's "number out of range" (a literal beyond f64, such as
/// `1e400`), which is reported as `out_of_range` rather than `not_json`: the device sent a
/// number, just an impossible one. serde_json exposes no error code for it, only the message.
fn is_overflow(e: &dyn fmt::Display) -> bool {
    e.to_string().starts_with("number out of range")
}

/// Streams over the top-level object, validating each entry as it is read. Its value is the
/// decoding outcome; the serde error channel is kept for syntax errors only.
struct TelemetryVisitor<'p> {
    category: Category,
    fields: &'static [FieldSpec],
    now: DateTime<Utc>,
    /// Set when a known field's number overflows f64, so the caller can name the field.
    overflow: &'p mut Option<Rejection>,
}

impl<'de> Visitor<'de> for TelemetryVisitor<'_> {
    type Value = Result<Reading, Rejection>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut ts = None;
        let mut ts_seen = false;
        // Which schema fields were seen, by table index (tables have fewer than 64 entries);
        // catches duplicates even when the first copy was `null`.
        let mut seen: u64 = 0;
        let mut values = BTreeMap::new();
        let mut first: Option<Rejection> = None;
        while let Some(JsonStr(key)) = map.next_key::<JsonStr<'de>>()? {
            if first.is_some() {
                // Already rejected; keep parsing only to report broken JSON as such.
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let outcome = if key == "ts" {
                let v = next_scalar(&mut map, "ts", self.overflow)?;
                if ts_seen {
                    Err(duplicate("ts"))
                } else {
                    ts_seen = true;
                    ts_of(v, self.now).map(|t| ts = t)
                }
            } else if let Some((i, spec)) =
                self.fields.iter().enumerate().find(|(_, f)| f.name == key)
            {
                let v = next_scalar(&mut map, spec.name, self.overflow)?;
                let bit = 1u64 << i;
                if seen & bit != 0 {
                    Err(duplicate(spec.name))
                } else {
                    seen |= bit;
                    check_value(spec, &v).map(|v| {
                        if let Some(v) = v {
                            values.insert(spec.name.to_owned(), v);
                        }
                    })
                }
            } else {
                map.next_value::<IgnoredAny>()?;
                Err(Rejection::new(
                    reason::UNKNOWN_FIELD,
                    Some(&key),
                    format!(
                        "`{}` is not a {} telemetry field",
                        clip(&key),
                        self.category.as_str()
                    ),
                ))
            };
            if let Err(r) = outcome {
                first = Some(r);
            }
        }
        if let Some(r) = first {
            return Ok(Err(r));
        }
        let Some(ts) = ts else {
            return Ok(Err(Rejection::new(
                reason::MISSING_TS,
                Some("ts"),
                "every message carries `ts` (RFC 3339)",
            )));
        };
        if values.is_empty() {
            return Ok(Err(Rejection::new(
                reason::EMPTY,
                None,
                "a telemetry message carries at least one field besides `ts`",
            )));
        }
        Ok(Ok(Reading { ts, values }))
    }
}

fn next_scalar<'de, A: MapAccess<'de>>(
    map: &mut A,
    field: &'static str,
    overflow: &mut Option<Rejection>,
) -> Result<Scalar<'de>, A::Error> {
    map.next_value::<Scalar<'de>>().inspect_err(|e| {
        if is_overflow(e) {
            *overflow = Some(Rejection::new(
                reason::OUT_OF_RANGE,
                Some(field),
                "the number does not fit a 64-bit float",
            ));
        }
    })
}

/// `ts` from a telemetry value; `None` when it is `null` (reported as missing at the end).
fn ts_of(v: Scalar<'_>, now: DateTime<Utc>) -> Result<Option<DateTime<Utc>>, Rejection> {
    match v {
        Scalar::Null => Ok(None),
        Scalar::Str(s) => parse_time("ts", &s, now).map(Some),
        other => Err(wrong_type("ts", "an RFC 3339 string", &other)),
    }
}

/// Parses an RFC 3339 timestamp (any offset, stored as UTC) and applies the clock-skew guard.
fn parse_time(field: &str, s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, Rejection> {
    let t = DateTime::parse_from_rfc3339(s)
        .map_err(|e| {
            Rejection::new(
                reason::BAD_TS,
                Some(field),
                format!("`{}` is not an RFC 3339 timestamp: {e}", clip(s)),
            )
        })?
        .with_timezone(&Utc);
    if let Some(limit) = now.checked_add_signed(MAX_FUTURE_SKEW)
        && t > limit
    {
        return Err(Rejection::new(
            reason::TS_IN_FUTURE,
            Some(field),
            format!(
                "{} is more than {} minutes after the receive time {}",
                t.to_rfc3339(),
                MAX_FUTURE_SKEW.num_minutes(),
                now.to_rfc3339()
            ),
        ));
    }
    Ok(t)
}

fn wrong_type(field: &str, expected: &str, got: &Scalar<'_>) -> Rejection {
    Rejection::new(
        reason::WRONG_TYPE,
        Some(field),
        format!("expected {expected}, got {}", got.type_name()),
    )
}

/// Sanity bounds are compared with a relative slack of 1e-9 so a value sent exactly at a bound
/// (`99.99`) is never refused over the last bit of float parsing; no real reading is that close
/// to a bound without being meant as the bound.
fn within(x: f64, min: f64, max: f64) -> bool {
    let slack = |b: f64| b.abs().max(1.0) * 1e-9;
    x >= min - slack(min) && x <= max + slack(max)
}

/// Checks one value against its field; `Ok(None)` for `null`.
fn check_value(spec: &FieldSpec, v: &Scalar<'_>) -> Result<Option<Value>, Rejection> {
    let name = spec.name;
    if let Scalar::Null = v {
        return Ok(None);
    }
    match (spec.kind, v) {
        (
            FieldKind::Num {
                min,
                max,
                unit,
                integer,
            },
            Scalar::Num(x),
        ) => {
            let x = *x;
            if integer && x.fract() != 0.0 {
                return Err(Rejection::new(
                    reason::WRONG_TYPE,
                    Some(name),
                    format!("expected a whole number, got {x}"),
                ));
            }
            if !within(x, min, max) {
                let unit = if unit.is_empty() {
                    String::new()
                } else {
                    format!(" {unit}")
                };
                return Err(Rejection::new(
                    reason::OUT_OF_RANGE,
                    Some(name),
                    format!("{x} is outside {min}..={max}{unit}"),
                ));
            }
            Ok(Some(Value::Num(x)))
        }
        (FieldKind::Num { integer, .. }, other) => Err(wrong_type(
            name,
            if integer {
                "a whole number"
            } else {
                "a number"
            },
            other,
        )),
        (FieldKind::Bool, Scalar::Bool(b)) => Ok(Some(Value::Bool(*b))),
        (FieldKind::Bool, other) => Err(wrong_type(name, "true or false", other)),
        (FieldKind::Enum(allowed), Scalar::Str(s)) => match allowed.iter().find(|a| **a == s) {
            Some(a) => Ok(Some(Value::Text((*a).to_owned()))),
            None => Err(Rejection::new(
                reason::OUT_OF_RANGE,
                Some(name),
                format!("`{}` is not one of {}", clip(s), allowed.join(", ")),
            )),
        },
        (FieldKind::Enum(allowed), other) => Err(wrong_type(
            name,
            &format!("one of {}", allowed.join(", ")),
            other,
        )),
        (FieldKind::Text { max_chars }, Scalar::Str(s)) => {
            if s.chars().count() > max_chars {
                return Err(Rejection::new(
                    reason::OUT_OF_RANGE,
                    Some(name),
                    format!("at most {max_chars} characters"),
                ));
            }
            if let Some(why) = crate::domain::text::forbidden(s, false) {
                return Err(Rejection::new(reason::BAD_TEXT, Some(name), why));
            }
            Ok(Some(Value::Text(s.to_string())))
        }
        (FieldKind::Text { .. }, other) => Err(wrong_type(name, "a string", other)),
    }
}

/// Keeps at most 64 characters of device-supplied text in rejections, so a hostile key or value
/// cannot bloat the quarantine index (the raw payload is kept separately anyway).
fn clip(s: &str) -> String {
    match s.char_indices().nth(64) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

/// A JSON value as the telemetry decoder needs it: scalars kept (strings borrowed from the
/// payload unless they contain escapes), containers drained without being built.
enum Scalar<'a> {
    Num(f64),
    Bool(bool),
    Str(Cow<'a, str>),
    Null,
    Array,
    Object,
}

impl Scalar<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Num(_) => "a number",
            Scalar::Bool(_) => "a boolean",
            Scalar::Str(_) => "a string",
            Scalar::Null => "null",
            Scalar::Array => "an array",
            Scalar::Object => "an object",
        }
    }

    fn of_json(v: &serde_json::Value) -> Scalar<'_> {
        match v {
            serde_json::Value::Null => Scalar::Null,
            serde_json::Value::Bool(b) => Scalar::Bool(*b),
            // Always `Some` without `arbitrary_precision`; NaN would fail every range check.
            serde_json::Value::Number(n) => Scalar::Num(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Scalar::Str(Cow::Borrowed(s)),
            serde_json::Value::Array(_) => Scalar::Array,
            serde_json::Value::Object(_) => Scalar::Object,
        }
    }
}

impl<'de> Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;

impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v as f64))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v as f64))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::Num(v))
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Object)
    }
}

/// An object key, borrowed from the payload unless it contains escapes.
struct JsonStr<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for JsonStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(JsonStrVisitor)
    }
}

struct JsonStrVisitor;

impl<'de> Visitor<'de> for JsonStrVisitor {
    type Value = JsonStr<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(JsonStr(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(JsonStr(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(JsonStr(Cow::Owned(v)))
    }
}

// ---------------------------------------------------------------------------------------------
// Events.

/// The event types a device of `category` may send. `boot` and `fault` are universal device
/// lifecycle events; the rest carry the category's business data (DOMAIN.md §2, §4, §8.3).
pub fn event_types(category: Category) -> &'static [&'static str] {
    match category {
        Category::TowerCrane => &[
            "work_cycle",
            "alarm",
            "sensor_fault",
            "driver_login",
            "boot",
            "fault",
        ],
        Category::Hoist => &["alarm", "sensor_fault", "driver_login", "boot", "fault"],
        Category::AccessGate => &["attendance", "gate_request", "boot", "fault"],
        Category::Camera | Category::Panorama => &["ai_event", "snapshot", "boot", "fault"],
        Category::Spray => &["spray_started", "spray_stopped", "boot", "fault"],
        Category::DustNoise | Category::UnloadingPlatform | Category::RangingInspection => {
            &["boot", "fault"]
        }
    }
}

/// What a named event field holds.
#[derive(Debug, Clone, Copy, PartialEq)]
enum EventFieldKind {
    Value(FieldKind),
    /// An RFC 3339 timestamp, under the same clock-skew guard as `ts`.
    Time,
    /// An array of vendor codes, each a string or a whole number.
    Codes,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct EventField {
    name: &'static str,
    required: bool,
    kind: EventFieldKind,
}

const fn ev(spec: FieldSpec) -> EventField {
    EventField {
        name: spec.name,
        required: false,
        kind: EventFieldKind::Value(spec.kind),
    }
}

const fn required(spec: FieldSpec) -> EventField {
    EventField {
        required: true,
        ..ev(spec)
    }
}

/// The crane work cycle (吊装循环, DOMAIN.md §2.2 `EquipmentTowerEffect`, §8.3
/// `TOWER_CRANE_CYCLE`), with the real-time record's ranges. Only `start` and `end` are required:
/// vendors fill different subsets of the statistics.
static WORK_CYCLE: &[EventField] = &[
    EventField {
        name: "start",
        required: true,
        kind: EventFieldKind::Time,
    },
    EventField {
        name: "end",
        required: true,
        kind: EventFieldKind::Time,
    },
    ev(num("min_load_t", 0.0, 99.99, "t")),
    ev(num("avg_load_t", 0.0, 99.99, "t")),
    ev(num("max_load_t", 0.0, 99.99, "t")),
    ev(num("max_moment_pct", 0.0, 655.35, "%")),
    ev(num("min_radius_m", 0.0, 99.99, "m")),
    ev(num("max_radius_m", 0.0, 99.99, "m")),
    ev(num("min_height_m", -100.0, 655.35, "m")),
    ev(num("max_height_m", -100.0, 655.35, "m")),
    ev(num("max_wind_ms", 0.0, 60.0, "m/s")),
    ev(num("lift_radius_m", 0.0, 99.99, "m")),
    ev(num("unload_radius_m", 0.0, 99.99, "m")),
    ev(num("lift_height_m", -100.0, 655.35, "m")),
    ev(num("unload_height_m", -100.0, 655.35, "m")),
    ev(num("lift_slew_deg", -540.0, 540.0, "°")),
    ev(num("unload_slew_deg", -540.0, 540.0, "°")),
    EventField {
        name: "codes",
        required: false,
        kind: EventFieldKind::Codes,
    },
];

/// Statistics of a work cycle that must be ordered (low, high) when both are present.
const WORK_CYCLE_ORDER: &[(&str, &str)] = &[
    ("min_load_t", "avg_load_t"),
    ("avg_load_t", "max_load_t"),
    ("min_load_t", "max_load_t"),
    ("min_radius_m", "max_radius_m"),
    ("min_height_m", "max_height_m"),
];

static DRIVER_LOGIN: &[EventField] = &[ev(DRIVER_ID_VERIFIED)];
/// Attendance direction (§4: the source's 0 = in, 1 = out, in canonical words).
static ATTENDANCE: &[EventField] = &[ev(one_of("direction", &["in", "out"]))];
/// A gate asking whether a person may pass (API.md, Workforce: gate messages); the platform
/// answers on the gate's `cmd` topic.
static GATE_REQUEST: &[EventField] = &[
    required(text("request_id", 64)),
    required(text("worker_id", 64)),
    required(one_of("direction", &["in", "out"])),
    ev(text("attend_type", 8)),
];
static SPRAY_STARTED: &[EventField] = &[
    ev(text("reason", 256)),
    ev(num("duration_min", 0.0, 1_440.0, "min")),
];
static SPRAY_STOPPED: &[EventField] = &[ev(text("reason", 256))];

fn event_fields(kind: &str) -> &'static [EventField] {
    match kind {
        "work_cycle" => WORK_CYCLE,
        "driver_login" => DRIVER_LOGIN,
        "attendance" => ATTENDANCE,
        "gate_request" => GATE_REQUEST,
        "spray_started" => SPRAY_STARTED,
        "spray_stopped" => SPRAY_STOPPED,
        _ => &[],
    }
}

/// Decodes and validates one event payload of a `category` device received at `now`: one JSON
/// object of at most [`MAX_PAYLOAD_BYTES`], with `ts` (as for telemetry) and a `type` the
/// category may send. The fields the platform names for that type are checked for type and
/// range; any other field is kept as sent in [`Event::body`] (without `ts` and `type`).
pub fn decode_event(
    category: Category,
    payload: &[u8],
    now: DateTime<Utc>,
) -> Result<Event, Rejection> {
    check_envelope(payload)?;
    let mut de = serde_json::Deserializer::from_slice(payload);
    let raw = de
        .deserialize_map(EventVisitor)
        .and_then(|r| de.end().map(|()| r))
        .map_err(|e| {
            if is_overflow(&e) {
                Rejection::new(
                    reason::OUT_OF_RANGE,
                    None,
                    "a number does not fit a 64-bit float",
                )
            } else {
                not_json(&e)
            }
        })?
        .map_err(|key| duplicate(&key))?;

    let ts = match raw.ts {
        None | Some(serde_json::Value::Null) => {
            return Err(Rejection::new(
                reason::MISSING_TS,
                Some("ts"),
                "every message carries `ts` (RFC 3339)",
            ));
        }
        Some(serde_json::Value::String(s)) => parse_time("ts", &s, now)?,
        Some(other) => {
            return Err(wrong_type(
                "ts",
                "an RFC 3339 string",
                &Scalar::of_json(&other),
            ));
        }
    };
    let kind = match raw.kind {
        None | Some(serde_json::Value::Null) => {
            return Err(Rejection::new(
                reason::BAD_EVENT,
                Some("type"),
                "every event names its `type`",
            ));
        }
        Some(serde_json::Value::String(s)) => s,
        Some(other) => return Err(wrong_type("type", "a string", &Scalar::of_json(&other))),
    };
    let allowed = event_types(category);
    if !allowed.contains(&kind.as_str()) {
        return Err(Rejection::new(
            reason::BAD_EVENT,
            Some("type"),
            format!(
                "`{}` is not an event of a {}; expected one of {}",
                clip(&kind),
                category.as_str(),
                allowed.join(", ")
            ),
        ));
    }
    check_event_body(&kind, &raw.body, now)?;
    Ok(Event {
        ts,
        kind,
        body: raw.body,
    })
}

fn check_event_body(
    kind: &str,
    body: &serde_json::Map<String, serde_json::Value>,
    now: DateTime<Utc>,
) -> Result<(), Rejection> {
    let mut start = None;
    let mut end = None;
    for f in event_fields(kind) {
        let v = match body.get(f.name) {
            None | Some(serde_json::Value::Null) => {
                if f.required {
                    return Err(Rejection::new(
                        reason::BAD_EVENT,
                        Some(f.name),
                        format!("a {kind} event carries `{}`", f.name),
                    ));
                }
                continue;
            }
            Some(v) => v,
        };
        match f.kind {
            EventFieldKind::Value(kind) => {
                check_value(&FieldSpec { name: f.name, kind }, &Scalar::of_json(v))?;
            }
            EventFieldKind::Time => {
                let serde_json::Value::String(s) = v else {
                    return Err(wrong_type(
                        f.name,
                        "an RFC 3339 string",
                        &Scalar::of_json(v),
                    ));
                };
                let t = parse_time(f.name, s, now)?;
                match f.name {
                    "start" => start = Some(t),
                    "end" => end = Some(t),
                    _ => {}
                }
            }
            EventFieldKind::Codes => {
                let ok = v.as_array().is_some_and(|codes| {
                    codes
                        .iter()
                        .all(|c| c.is_string() || c.is_i64() || c.is_u64())
                });
                if !ok {
                    return Err(Rejection::new(
                        reason::WRONG_TYPE,
                        Some(f.name),
                        "expected an array of strings or whole numbers",
                    ));
                }
                // Codes are shown as text: the same rule as any device text field.
                let bad = v
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(serde_json::Value::as_str)
                    .find_map(|c| crate::domain::text::forbidden(c, false));
                if let Some(why) = bad {
                    return Err(Rejection::new(reason::BAD_TEXT, Some(f.name), why));
                }
            }
        }
    }
    if let (Some(start), Some(end)) = (start, end)
        && end < start
    {
        return Err(Rejection::new(
            reason::OUT_OF_RANGE,
            Some("end"),
            format!(
                "end {} is before start {}",
                end.to_rfc3339(),
                start.to_rfc3339()
            ),
        ));
    }
    if kind == "work_cycle" {
        for (low, high) in WORK_CYCLE_ORDER {
            let get = |k: &str| body.get(k).and_then(serde_json::Value::as_f64);
            if let (Some(l), Some(h)) = (get(low), get(high))
                && l > h
            {
                return Err(Rejection::new(
                    reason::OUT_OF_RANGE,
                    Some(high),
                    format!("{high} ({h}) is below {low} ({l})"),
                ));
            }
        }
    }
    Ok(())
}

/// An event object split into its envelope (`ts`, `type`) and body as it is parsed, so the body
/// keeps the device's key order whatever map serde_json is built with.
#[derive(Default)]
struct RawEvent {
    ts: Option<serde_json::Value>,
    kind: Option<serde_json::Value>,
    body: serde_json::Map<String, serde_json::Value>,
}

/// Builds a [`RawEvent`], refusing duplicate keys (serde_json's own map would silently keep the
/// last one, and an event's `type` must not be ambiguous). Its value carries the first duplicate
/// key as an error.
struct EventVisitor;

impl<'de> Visitor<'de> for EventVisitor {
    type Value = Result<RawEvent, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawEvent::default();
        let mut dup = None;
        while let Some(key) = map.next_key::<String>()? {
            if dup.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let value = map.next_value::<serde_json::Value>()?;
            let slot = match key.as_str() {
                "ts" => &mut raw.ts,
                "type" => &mut raw.kind,
                _ => {
                    if raw.body.contains_key(&key) {
                        dup = Some(key);
                    } else {
                        raw.body.insert(key, value);
                    }
                    continue;
                }
            };
            if slot.is_some() {
                dup = Some(key);
            } else {
                *slot = Some(value);
            }
        }
        Ok(match dup {
            Some(key) => Err(key),
            None => Ok(raw),
        })
    }
}

// ---------------------------------------------------------------------------------------------
// Hourly means and day/night.

/// The start of the Asia/Shanghai clock hour containing `ts`, as a UTC instant. Regulators judge
/// dust on hourly means of the local clock hour (DOMAIN.md §3, §8.5 DU-PM10). UTC+8 is a whole
/// number of hours, so the local hour boundaries are exactly the UTC hour boundaries and the
/// bucket is simply `ts` truncated to the UTC hour.
pub fn hour_bucket(ts: DateTime<Utc>) -> DateTime<Utc> {
    let secs = ts.timestamp();
    DateTime::from_timestamp(secs - secs.rem_euclid(3600), 0).unwrap_or(ts)
}

/// The dust and noise fields averaged per hour.
pub const HOURLY_FIELDS: [&str; 4] = ["pm10_ugm3", "pm25_ugm3", "tsp_ugm3", "noise_dba"];

/// Count and sum of one field's samples.
#[derive(Serialize, Deserialize, Default, Clone, Copy, Debug, PartialEq)]
pub struct SumCount {
    pub count: u64,
    pub sum: f64,
}

impl SumCount {
    fn add(&mut self, x: f64) {
        self.count += 1;
        self.sum += x;
    }

    fn merge(&mut self, other: &SumCount) {
        self.count += other.count;
        self.sum += other.sum;
    }

    fn mean(&self) -> Option<f64> {
        (self.count > 0).then(|| self.sum / self.count as f64)
    }
}

/// A mergeable accumulator for one device-hour (see [`hour_bucket`]). It stores sums, not means,
/// so partial hours from parallel or late (back-filled) batches merge exactly. Noise also keeps
/// the energetic sum Σ10^(L/10), because its hourly level is the energy-equivalent Leq of
/// GB 12523, not the arithmetic mean of decibels, and the largest sample for the night L_max rule.
#[derive(Serialize, Deserialize, Default, Clone, Debug, PartialEq)]
#[serde(default)]
pub struct HourlyAcc {
    pub pm10_ugm3: SumCount,
    pub pm25_ugm3: SumCount,
    pub tsp_ugm3: SumCount,
    /// Count and arithmetic sum of the dB(A) samples.
    pub noise_dba: SumCount,
    /// Σ 10^(L/10) over the same samples as `noise_dba`.
    pub noise_energy: f64,
    /// The loudest sample (L_max), if any.
    pub noise_max_dba: Option<f64>,
}

impl HourlyAcc {
    /// Adds the dust and noise fields of one reading; other fields are ignored.
    pub fn add(&mut self, reading: &Reading) {
        if let Some(x) = reading.num("pm10_ugm3") {
            self.pm10_ugm3.add(x);
        }
        if let Some(x) = reading.num("pm25_ugm3") {
            self.pm25_ugm3.add(x);
        }
        if let Some(x) = reading.num("tsp_ugm3") {
            self.tsp_ugm3.add(x);
        }
        if let Some(l) = reading.num("noise_dba") {
            self.noise_dba.add(l);
            self.noise_energy += 10f64.powf(l / 10.0);
            self.noise_max_dba = Some(self.noise_max_dba.map_or(l, |m| m.max(l)));
        }
    }

    /// Folds another accumulator of the same device-hour into this one.
    pub fn merge(&mut self, other: &HourlyAcc) {
        self.pm10_ugm3.merge(&other.pm10_ugm3);
        self.pm25_ugm3.merge(&other.pm25_ugm3);
        self.tsp_ugm3.merge(&other.tsp_ugm3);
        self.noise_dba.merge(&other.noise_dba);
        self.noise_energy += other.noise_energy;
        self.noise_max_dba = match (self.noise_max_dba, other.noise_max_dba) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }

    /// The energy-equivalent noise level Leq = 10·log10(mean(10^(L/10))), if any noise sample.
    pub fn noise_leq(&self) -> Option<f64> {
        (self.noise_dba.count > 0)
            .then(|| 10.0 * (self.noise_energy / self.noise_dba.count as f64).log10())
    }

    /// The hourly value of each field that has samples: arithmetic means for dust, Leq for
    /// `noise_dba`.
    pub fn means(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let dust = [
            ("pm10_ugm3", &self.pm10_ugm3),
            ("pm25_ugm3", &self.pm25_ugm3),
            ("tsp_ugm3", &self.tsp_ugm3),
        ];
        for (name, acc) in dust {
            if let Some(m) = acc.mean() {
                out.insert(name.to_owned(), m);
            }
        }
        if let Some(leq) = self.noise_leq() {
            out.insert("noise_dba".to_owned(), leq);
        }
        out
    }
}

/// GB 12523 day or night.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DayPeriod {
    Day,
    Night,
}

impl DayPeriod {
    pub fn as_str(self) -> &'static str {
        match self {
            DayPeriod::Day => "day",
            DayPeriod::Night => "night",
        }
    }
}

/// Day is 06:00–22:00 Asia/Shanghai, night 22:00–06:00 (GB 12523-2011; a local government may
/// redefine them, which callers handle by configuration, DOMAIN.md §3). Noise limits differ:
/// 70 dB(A) by day, 55 by night.
pub fn day_period(ts: DateTime<Utc>) -> DayPeriod {
    let local_secs_of_day = (ts.timestamp() + SHANGHAI_OFFSET_SECS).rem_euclid(86_400);
    if (6 * 3600..22 * 3600).contains(&local_secs_of_day) {
        DayPeriod::Day
    } else {
        DayPeriod::Night
    }
}

// ---------------------------------------------------------------------------------------------

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use chrono::{FixedOffset, TimeZone, Timelike};

    fn now() -> DateTime<Utc> {
        "2024-05-20T02:00:00Z".parse().unwrap()
    }

    fn tel(c: Category, json: &str) -> Result<Reading, Rejection> {
        decode_telemetry(c, json.as_bytes(), now())
    }

    fn rej(c: Category, json: &str) -> Rejection {
        tel(c, json).unwrap_err()
    }

    fn evt(c: Category, json: &str) -> Result<Event, Rejection> {
        decode_event(c, json.as_bytes(), now())
    }

    fn field(r: &Rejection) -> Option<&str> {
        r.field.as_deref()
    }

    // --- accept paths, one per category ---

    #[test]
    fn tower_crane_message_is_accepted() {
        let r = tel(
            Category::TowerCrane,
            r#"{"ts":"2024-05-20T01:59:58Z","load_t":3.25,"radius_m":42.5,"height_m":38.2,
                "slew_deg":-127.5,"moment_pct":71.3,"load_pct":54.2,"wind_ms":6.4,
                "tilt_deg":0.12,"reeving":2,"mode":"operating","driver_id_verified":true,
                "signal_dbm":-87}"#,
        )
        .unwrap();
        assert_eq!(
            r.ts,
            "2024-05-20T01:59:58Z".parse::<DateTime<Utc>>().unwrap()
        );
        assert_eq!(r.num("load_t"), Some(3.25));
        assert_eq!(r.num("slew_deg"), Some(-127.5));
        assert_eq!(r.num("reeving"), Some(2.0));
        assert_eq!(r.text("mode"), Some("operating"));
        assert_eq!(r.flag("driver_id_verified"), Some(true));
        assert_eq!(r.values.len(), 12);
        // Typed getters do not cross types.
        assert_eq!(r.num("mode"), None);
        assert_eq!(r.flag("load_t"), None);
        assert_eq!(r.text("nope"), None);
    }

    #[test]
    fn hoist_message_is_accepted() {
        let r = tel(
            Category::Hoist,
            r#"{"ts":"2024-05-20T01:59:00Z","load_kg":1350,"load_pct":67.5,"persons":8,
                "height_m":57.3,"floor":-2,"speed_ms":0.6,"direction":"up",
                "door_front_open":false,"door_back_open":false,"upper_limit":false,
                "lower_limit":false,"tilt_x_deg":0.05,"tilt_y_deg":-0.08,"wind_ms":4.1,
                "driver_id_verified":true,"battery_pct":88}"#,
        )
        .unwrap();
        assert_eq!(r.num("persons"), Some(8.0));
        assert_eq!(r.num("floor"), Some(-2.0));
        assert_eq!(r.text("direction"), Some("up"));
        assert_eq!(r.flag("door_front_open"), Some(false));
        assert_eq!(r.values.len(), 16);
    }

    #[test]
    fn dust_noise_message_is_accepted() {
        let r = tel(
            Category::DustNoise,
            r#"{"ts":"2024-05-20T01:55:00Z","pm10_ugm3":86,"pm25_ugm3":41.5,"tsp_ugm3":173,
                "noise_dba":63.8,"temp_c":-12.5,"rh_pct":35,"pressure_kpa":99.1,
                "wind_ms":3.2,"wind_dir_deg":270}"#,
        )
        .unwrap();
        assert_eq!(r.num("pm25_ugm3"), Some(41.5));
        assert_eq!(r.num("temp_c"), Some(-12.5));
        assert_eq!(r.values.len(), 9);
    }

    #[test]
    fn spray_message_is_accepted() {
        let r = tel(
            Category::Spray,
            r#"{"ts":"2024-05-20T01:55:00Z","state":"on","reason":"PM10 hourly mean 162 > 150",
                "duration_min":30}"#,
        )
        .unwrap();
        assert_eq!(r.text("state"), Some("on"));
        assert_eq!(r.text("reason"), Some("PM10 hourly mean 162 > 150"));
    }

    #[test]
    fn device_text_with_controls_or_bidi_overrides_is_quarantined() {
        for bad in [
            r"PM10\u202Eexe.txt",
            r"line1\nline2",
            r"nul\u0000",
            r"\u001b[2J",
        ] {
            let json = format!(r#"{{"ts":"2024-05-20T01:55:00Z","state":"on","reason":"{bad}"}}"#);
            let e = rej(Category::Spray, &json);
            assert_eq!(
                (e.reason, field(&e)),
                (reason::BAD_TEXT, Some("reason")),
                "{json}"
            );
            assert!(e.detail.contains("must not contain"), "{}", e.detail);
        }
        // An event's text field too, and the codes of a work cycle.
        let e = evt(
            Category::TowerCrane,
            r#"{"ts":"2024-05-20T01:55:00Z","type":"work_cycle","start":"2024-05-20T01:40:00Z",
                "end":"2024-05-20T01:50:00Z","codes":["E01","E0\u202E2"]}"#,
        )
        .unwrap_err();
        assert_eq!((e.reason, field(&e)), (reason::BAD_TEXT, Some("codes")));
        let e = evt(
            Category::Spray,
            r#"{"ts":"2024-05-20T01:55:00Z","type":"spray_stopped","reason":"a\u2066b"}"#,
        )
        .unwrap_err();
        assert_eq!((e.reason, field(&e)), (reason::BAD_TEXT, Some("reason")));
    }

    #[test]
    fn unloading_platform_message_is_accepted() {
        let r = tel(
            Category::UnloadingPlatform,
            r#"{"ts":"2024-05-20T01:55:00Z","load_kg":820.5,"load_pct":41,"tilt_x_deg":0.4,
                "tilt_y_deg":-1.1,"battery_pct":76,"signal_dbm":-95.5}"#,
        )
        .unwrap();
        assert_eq!(r.num("tilt_y_deg"), Some(-1.1));
    }

    #[test]
    fn ranging_inspection_message_is_accepted() {
        let r = tel(
            Category::RangingInspection,
            r#"{"ts":"2024-05-20T01:55:00Z","distance_m":12.345,"displacement_mm":-3.2}"#,
        )
        .unwrap();
        assert_eq!(r.num("displacement_mm"), Some(-3.2));
    }

    #[test]
    fn health_only_categories_accept_health_and_nothing_else() {
        for c in [Category::AccessGate, Category::Camera, Category::Panorama] {
            let r = tel(
                c,
                r#"{"ts":"2024-05-20T01:55:00Z","signal_dbm":-71,"battery_pct":100,
                    "online_channels":4}"#,
            )
            .unwrap();
            assert_eq!(r.num("online_channels"), Some(4.0));
            // Business data arrives as events, never as telemetry.
            let e = rej(c, r#"{"ts":"2024-05-20T01:55:00Z","direction":"in"}"#);
            assert_eq!(e.reason, reason::UNKNOWN_FIELD);
        }
    }

    #[test]
    fn every_category_accepts_signal_and_battery() {
        for c in Category::ALL {
            let names: Vec<_> = telemetry_fields(c).iter().map(|f| f.name).collect();
            assert!(names.contains(&"signal_dbm") && names.contains(&"battery_pct"));
            let r = tel(
                c,
                r#"{"ts":"2024-05-20T01:55:00Z","signal_dbm":-140,"battery_pct":0}"#,
            )
            .unwrap();
            assert_eq!(r.num("signal_dbm"), Some(-140.0), "{c:?}");
        }
    }

    #[test]
    fn schema_tables_are_well_formed() {
        for c in Category::ALL {
            let fields = telemetry_fields(c);
            // The duplicate check keeps one bit per field in a u64.
            assert!(fields.len() < 64);
            for (i, f) in fields.iter().enumerate() {
                assert!(f.name != "ts" && f.name != "type");
                assert!(
                    fields[i + 1..].iter().all(|g| g.name != f.name),
                    "{c:?} repeats {}",
                    f.name
                );
                if let FieldKind::Num { min, max, .. } = f.kind {
                    assert!(min < max, "{}", f.name);
                }
            }
            assert!(event_types(c).contains(&"boot") && event_types(c).contains(&"fault"));
        }
    }

    #[test]
    fn bounds_are_inclusive_and_exact() {
        // 99.99, 655.35, 9.99 and 0.1-style decimals are not exactly representable; a value sent
        // exactly at the bound must pass.
        let r = tel(
            Category::TowerCrane,
            r#"{"ts":"2024-05-20T01:55:00Z","load_t":99.99,"radius_m":0,"height_m":-100,
                "slew_deg":540,"moment_pct":655.35,"tilt_deg":-9.99,"wind_ms":60,"reeving":99}"#,
        )
        .unwrap();
        assert_eq!(r.num("moment_pct"), Some(655.35));
        let e = rej(
            Category::TowerCrane,
            r#"{"ts":"2024-05-20T01:55:00Z","tilt_deg":10.0}"#,
        );
        assert_eq!(
            (e.reason, field(&e)),
            (reason::OUT_OF_RANGE, Some("tilt_deg"))
        );
        let e = rej(
            Category::TowerCrane,
            r#"{"ts":"2024-05-20T01:55:00Z","load_t":99.991}"#,
        );
        assert_eq!(e.reason, reason::OUT_OF_RANGE);
        // Wind above the crane wire format's 36.9 is kept: it is a storm gust, not garbage.
        assert!(
            tel(
                Category::TowerCrane,
                r#"{"ts":"2024-05-20T01:55:00Z","wind_ms":41.7}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn offset_timestamps_are_stored_as_utc() {
        let r = tel(
            Category::DustNoise,
            r#"{"ts":"2024-05-20T09:30:15.250+08:00","pm10_ugm3":80}"#,
        )
        .unwrap();
        assert_eq!(
            r.ts,
            Utc.with_ymd_and_hms(2024, 5, 20, 1, 30, 15).unwrap() + TimeDelta::milliseconds(250)
        );
        assert_eq!(r.ts.to_rfc3339(), "2024-05-20T01:30:15.250+00:00");
    }

    #[test]
    fn old_timestamps_are_back_fill_and_fine() {
        assert!(
            tel(
                Category::DustNoise,
                r#"{"ts":"2023-01-01T00:00:00+08:00","pm10_ugm3":80}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn null_means_absent_but_a_reading_needs_a_value() {
        let r = tel(
            Category::DustNoise,
            r#"{"ts":"2024-05-20T01:55:00Z","pm10_ugm3":80,"tsp_ugm3":null}"#,
        )
        .unwrap();
        assert_eq!(r.values.len(), 1);
        let e = rej(
            Category::DustNoise,
            r#"{"ts":"2024-05-20T01:55:00Z","tsp_ugm3":null}"#,
        );
        assert_eq!(e.reason, reason::EMPTY);
    }

    #[test]
    fn escaped_keys_and_values_are_understood() {
        let r = tel(
            Category::Spray,
            r#"{"\u0074s":"2024-05-20T01:55:00Z","st\u0061te":"o\u006e","reason":"\u626c\u5c18"}"#,
        )
        .unwrap();
        assert_eq!(r.text("state"), Some("on"));
        assert_eq!(r.text("reason"), Some("扬尘"));
    }

    // --- every rejection reason ---

    #[test]
    fn rejects_too_large() {
        let pad = " ".repeat(MAX_PAYLOAD_BYTES);
        let e = rej(
            Category::DustNoise,
            &format!(r#"{{"ts":"2024-05-20T01:55:00Z","pm10_ugm3":80}}{pad}"#),
        );
        assert_eq!(e.reason, reason::TOO_LARGE);
        // Exactly at the limit is fine.
        let body = r#"{"ts":"2024-05-20T01:55:00Z","pm10_ugm3":80}"#;
        let at_limit = format!("{body}{}", " ".repeat(MAX_PAYLOAD_BYTES - body.len()));
        assert!(tel(Category::DustNoise, &at_limit).is_ok());
    }

    #[test]
    fn rejects_not_json() {
        for bad in [
            "",
            "   ",
            "{",
            r#"{"ts":"2024-05-20T01:55:00Z","pm10_ugm3":80"#,
            r#"{"ts":"2024-05-20T01:55:00Z","pm10_ugm3":80,}"#,
            r#"{"ts":"2024-05-20T01:55:00Z","pm10_ugm3":80}{"ts":"x"}"#,
            "ts=2024&pm10=80",
            // Broken JSON after an already-wrong field is still reported as broken JSON.
            r#"{"nope":1,"pm10_ugm3":}"#,
        ] {
            assert_eq!(
                rej(Category::DustNoise, bad).reason,
                reason::NOT_JSON,
                "{bad}"
            );
        }
        let invalid_utf8 = b"{\"ts\":\"2024-05-20T01:55:00Z\",\"reason\":\"\xff\"}";
        let e = decode_telemetry(Category::Spray, invalid_utf8, now()).unwrap_err();
        assert_eq!(e.reason, reason::NOT_JSON);
    }

    #[test]
    fn rejects_duplicate_keys() {
        let e = rej(
            Category::DustNoise,
            r#"{"ts":"2024-05-20T01:55:00Z","pm10_ugm3":null,"pm10_ugm3":80}"#,
        );
        assert_eq!((e.reason, field(&e)), (reason::NOT_JSON, Some("pm10_ugm3")));
        let e = rej(
            Category::DustNoise,
            r#"{"ts":"2024-05-20T01:55:00Z","ts":"2024-05-20T01:56:00Z","pm10_ugm3":80}"#,
        );
        assert_eq!((e.reason, field(&e)), (reason::NOT_JSON, Some("ts")));
    }

    #[test]
    fn rejects_not_object() {
        for bad in ["[]", "42", r#""ts""#, "null", " [{\"ts\":1}]"] {
            assert_eq!(
                rej(Category::DustNoise, bad).reason,
                reason::NOT_OBJECT,
                "{bad}"
            );
        }
    }

    #[test]
    fn rejects_missing_ts() {
        let e = rej(Category::DustNoise, r#"{"pm10_ugm3":80}"#);
        assert_eq!((e.reason, field(&e)), (reason::MISSING_TS, Some("ts")));
        let e = rej(Category::DustNoise, r#"{"ts":null,"pm10_ugm3":80}"#);
        assert_eq!(e.reason, reason::MISSING_TS);
        assert_eq!(rej(Category::DustNoise, "{}").reason, reason::MISSING_TS);
    }

    #[test]
    fn rejects_bad_ts() {
        for ts in [
            "2024-05-20 09:55",
            "2024-05-20",
            "2024-05-20T01:55:00",
            "1716170100",
            "2024-13-01T00:00:00Z",
        ] {
            let e = rej(
                Category::DustNoise,
                &format!(r#"{{"ts":"{ts}","pm10_ugm3":80}}"#),
            );
            assert_eq!((e.reason, field(&e)), (reason::BAD_TS, Some("ts")), "{ts}");
        }
        // A number is the wrong type, not a bad string.
        let e = rej(Category::DustNoise, r#"{"ts":1716170100,"pm10_ugm3":80}"#);
        assert_eq!((e.reason, field(&e)), (reason::WRONG_TYPE, Some("ts")));
    }

    #[test]
    fn rejects_ts_in_future_beyond_the_skew() {
        // now = 02:00Z; exactly five minutes ahead is tolerated, a second more is not.
        assert!(
            tel(
                Category::DustNoise,
                r#"{"ts":"2024-05-20T02:05:00Z","pm10_ugm3":80}"#
            )
            .is_ok()
        );
        let e = rej(
            Category::DustNoise,
            r#"{"ts":"2024-05-20T10:05:01+08:00","pm10_ugm3":80}"#,
        );
        assert_eq!((e.reason, field(&e)), (reason::TS_IN_FUTURE, Some("ts")));
    }

    #[test]
    fn rejects_unknown_field_naming_it() {
        let e = rej(
            Category::TowerCrane,
            r#"{"ts":"2024-05-20T01:55:00Z","load_t":1.0,"load_kg":1000}"#,
        );
        assert_eq!(
            (e.reason, field(&e)),
            (reason::UNKNOWN_FIELD, Some("load_kg"))
        );
        assert!(e.detail.contains("tower_crane"), "{}", e.detail);
        // Hostile keys are clipped in the rejection.
        let long = "k".repeat(500);
        let e = rej(
            Category::TowerCrane,
            &format!(r#"{{"ts":"2024-05-20T01:55:00Z","{long}":1}}"#),
        );
        assert!(e.field.unwrap().chars().count() <= 65);
    }

    #[test]
    fn rejects_wrong_type() {
        for (json, f) in [
            (r#"{"ts":"2024-05-20T01:55:00Z","load_t":"3.2"}"#, "load_t"),
            (
                r#"{"ts":"2024-05-20T01:55:00Z","driver_id_verified":1}"#,
                "driver_id_verified",
            ),
            (r#"{"ts":"2024-05-20T01:55:00Z","mode":0}"#, "mode"),
            (r#"{"ts":"2024-05-20T01:55:00Z","load_t":[3.2]}"#, "load_t"),
            (
                r#"{"ts":"2024-05-20T01:55:00Z","load_t":{"v":3.2}}"#,
                "load_t",
            ),
        ] {
            let e = rej(Category::TowerCrane, json);
            assert_eq!(
                (e.reason, field(&e)),
                (reason::WRONG_TYPE, Some(f)),
                "{json}"
            );
        }
        let e = rej(
            Category::Spray,
            r#"{"ts":"2024-05-20T01:55:00Z","reason":7}"#,
        );
        assert_eq!((e.reason, field(&e)), (reason::WRONG_TYPE, Some("reason")));
    }

    #[test]
    fn integer_fields_must_be_whole() {
        let e = rej(
            Category::Hoist,
            r#"{"ts":"2024-05-20T01:55:00Z","persons":8.5}"#,
        );
        assert_eq!((e.reason, field(&e)), (reason::WRONG_TYPE, Some("persons")));
        let e = rej(
            Category::TowerCrane,
            r#"{"ts":"2024-05-20T01:55:00Z","reeving":2.5}"#,
        );
        assert_eq!((e.reason, field(&e)), (reason::WRONG_TYPE, Some("reeving")));
        let e = rej(
            Category::Hoist,
            r#"{"ts":"2024-05-20T01:55:00Z","floor":3.01}"#,
        );
        assert_eq!((e.reason, field(&e)), (reason::WRONG_TYPE, Some("floor")));
        // A whole number written with a fraction or exponent is still whole.
        let r = tel(
            Category::Hoist,
            r#"{"ts":"2024-05-20T01:55:00Z","persons":9.0,"floor":1e1}"#,
        )
        .unwrap();
        assert_eq!((r.num("persons"), r.num("floor")), (Some(9.0), Some(10.0)));
        // And range applies to integers too.
        let e = rej(
            Category::TowerCrane,
            r#"{"ts":"2024-05-20T01:55:00Z","reeving":0}"#,
        );
        assert_eq!(e.reason, reason::OUT_OF_RANGE);
    }

    #[test]
    fn rejects_out_of_range_with_the_range() {
        let e = rej(
            Category::TowerCrane,
            r#"{"ts":"2024-05-20T01:55:00Z","load_t":8000}"#,
        );
        assert_eq!(
            (e.reason, field(&e)),
            (reason::OUT_OF_RANGE, Some("load_t"))
        );
        assert_eq!(e.detail, "8000 is outside 0..=99.99 t");
        let e = rej(
            Category::DustNoise,
            r#"{"ts":"2024-05-20T01:55:00Z","noise_dba":12}"#,
        );
        assert_eq!(e.detail, "12 is outside 20..=140 dB(A)");
        let e = rej(
            Category::TowerCrane,
            r#"{"ts":"2024-05-20T01:55:00Z","mode":"Jacking"}"#,
        );
        assert_eq!((e.reason, field(&e)), (reason::OUT_OF_RANGE, Some("mode")));
        assert!(e.detail.contains("operating, jacking"));
        let e = rej(
            Category::Spray,
            &format!(
                r#"{{"ts":"2024-05-20T01:55:00Z","reason":"{}"}}"#,
                "x".repeat(257)
            ),
        );
        assert_eq!(
            (e.reason, field(&e)),
            (reason::OUT_OF_RANGE, Some("reason"))
        );
        let e = rej(
            Category::AccessGate,
            r#"{"ts":"2024-05-20T01:55:00Z","signal_dbm":3}"#,
        );
        assert_eq!(e.reason, reason::OUT_OF_RANGE);
    }

    #[test]
    fn numbers_overflowing_f64_are_out_of_range() {
        let e = rej(
            Category::DustNoise,
            r#"{"ts":"2024-05-20T01:55:00Z","pm10_ugm3":1e400}"#,
        );
        assert_eq!(
            (e.reason, field(&e)),
            (reason::OUT_OF_RANGE, Some("pm10_ugm3"))
        );
        let e = rej(
            Category::DustNoise,
            r#"{"ts":"2024-05-20T01:55:00Z","pm10_ugm3":-1e400}"#,
        );
        assert_eq!(e.reason, reason::OUT_OF_RANGE);
        // Huge integers parse (as floats) and fail the range check instead.
        let e = rej(
            Category::DustNoise,
            r#"{"ts":"2024-05-20T01:55:00Z","pm10_ugm3":123456789012345678901234567890}"#,
        );
        assert_eq!(e.reason, reason::OUT_OF_RANGE);
    }

    #[test]
    fn the_first_error_in_document_order_wins() {
        let e = rej(
            Category::TowerCrane,
            r#"{"load_t":-1,"ts":"nope","bogus":1}"#,
        );
        assert_eq!(
            (e.reason, field(&e)),
            (reason::OUT_OF_RANGE, Some("load_t"))
        );
        let e = rej(Category::TowerCrane, r#"{"bogus":1,"load_t":-1}"#);
        assert_eq!(e.reason, reason::UNKNOWN_FIELD);
    }

    #[test]
    fn rejection_displays_reason_field_and_detail() {
        let e = rej(
            Category::TowerCrane,
            r#"{"ts":"2024-05-20T01:55:00Z","load_t":120}"#,
        );
        assert_eq!(
            e.to_string(),
            "out_of_range (load_t): 120 is outside 0..=99.99 t"
        );
    }

    // --- events ---

    const CYCLE: &str = r#"{"ts":"2024-05-20T09:58:00+08:00","type":"work_cycle",
        "start":"2024-05-20T09:55:10+08:00","end":"2024-05-20T09:57:55+08:00",
        "min_load_t":0,"avg_load_t":1.8,"max_load_t":2.45,"max_moment_pct":63.2,
        "min_radius_m":12.0,"max_radius_m":38.5,"min_height_m":2.1,"max_height_m":41.7,
        "max_wind_ms":5.3,"lift_radius_m":12.0,"unload_radius_m":38.5,"lift_height_m":2.1,
        "unload_height_m":30.4,"lift_slew_deg":15.0,"unload_slew_deg":-95.5,
        "codes":["W01",3],"vendor_seq":88123}"#;

    #[test]
    fn work_cycle_is_accepted_with_vendor_extras() {
        let e = evt(Category::TowerCrane, CYCLE).unwrap();
        assert_eq!(e.kind, "work_cycle");
        assert_eq!(e.ts, Utc.with_ymd_and_hms(2024, 5, 20, 1, 58, 0).unwrap());
        assert!(!e.body.contains_key("ts") && !e.body.contains_key("type"));
        assert_eq!(e.body["max_load_t"], 2.45);
        // Unknown extras are kept, not refused (vendor codes).
        assert_eq!(e.body["vendor_seq"], 88123);
    }

    #[test]
    fn work_cycle_known_fields_are_checked() {
        let with = |from: &str, to: &str| {
            let json = CYCLE.replace(from, to);
            assert_ne!(json, CYCLE, "{from}");
            evt(Category::TowerCrane, &json).unwrap_err()
        };
        let e = with(r#""max_load_t":2.45"#, r#""max_load_t":"2.45""#);
        assert_eq!(
            (e.reason, field(&e)),
            (reason::WRONG_TYPE, Some("max_load_t"))
        );
        let e = with(r#""max_moment_pct":63.2"#, r#""max_moment_pct":700"#);
        assert_eq!(
            (e.reason, field(&e)),
            (reason::OUT_OF_RANGE, Some("max_moment_pct"))
        );
        let e = with(
            r#""end":"2024-05-20T09:57:55+08:00""#,
            r#""end":"2024-05-20T09:55:09+08:00""#,
        );
        assert_eq!((e.reason, field(&e)), (reason::OUT_OF_RANGE, Some("end")));
        let e = with(r#""start":"2024-05-20T09:55:10+08:00","#, "");
        assert_eq!((e.reason, field(&e)), (reason::BAD_EVENT, Some("start")));
        let e = with(
            r#""start":"2024-05-20T09:55:10+08:00""#,
            r#""start":"09:55""#,
        );
        assert_eq!((e.reason, field(&e)), (reason::BAD_TS, Some("start")));
        let e = with(
            r#""start":"2024-05-20T09:55:10+08:00""#,
            r#""start":1716170110"#,
        );
        assert_eq!((e.reason, field(&e)), (reason::WRONG_TYPE, Some("start")));
        let e = with(
            r#""end":"2024-05-20T09:57:55+08:00""#,
            r#""end":"2024-05-20T11:57:55+08:00""#,
        );
        assert_eq!((e.reason, field(&e)), (reason::TS_IN_FUTURE, Some("end")));
        let e = with(r#""min_radius_m":12.0"#, r#""min_radius_m":40.0"#);
        assert_eq!(
            (e.reason, field(&e)),
            (reason::OUT_OF_RANGE, Some("max_radius_m"))
        );
        let e = with(r#""codes":["W01",3]"#, r#""codes":"W01""#);
        assert_eq!((e.reason, field(&e)), (reason::WRONG_TYPE, Some("codes")));
        let e = with(r#""codes":["W01",3]"#, r#""codes":[1.5]"#);
        assert_eq!(e.reason, reason::WRONG_TYPE);
        let e = with(r#""max_wind_ms":5.3"#, r#""max_wind_ms":1e999"#);
        assert_eq!(e.reason, reason::OUT_OF_RANGE);
    }

    #[test]
    fn event_types_follow_the_category() {
        let ok = [
            (Category::TowerCrane, "alarm"),
            (Category::TowerCrane, "sensor_fault"),
            (Category::Hoist, "alarm"),
            (Category::Hoist, "sensor_fault"),
            (Category::AccessGate, "attendance"),
            (Category::Camera, "ai_event"),
            (Category::Panorama, "snapshot"),
            (Category::Spray, "spray_stopped"),
            (Category::DustNoise, "boot"),
            (Category::UnloadingPlatform, "fault"),
            (Category::RangingInspection, "boot"),
        ];
        for (c, t) in ok {
            let json = format!(r#"{{"ts":"2024-05-20T01:55:00Z","type":"{t}","code":"E42"}}"#);
            let e = evt(c, &json).unwrap();
            assert_eq!(
                (e.kind.as_str(), &e.body["code"]),
                (t, &serde_json::json!("E42"))
            );
        }
        for (c, t) in [
            (Category::Hoist, "work_cycle"),
            (Category::DustNoise, "alarm"),
            (Category::Camera, "attendance"),
            (Category::TowerCrane, "Alarm"),
        ] {
            let json = format!(r#"{{"ts":"2024-05-20T01:55:00Z","type":"{t}"}}"#);
            let e = evt(c, &json).unwrap_err();
            assert_eq!(
                (e.reason, field(&e)),
                (reason::BAD_EVENT, Some("type")),
                "{c:?} {t}"
            );
        }
    }

    #[test]
    fn other_named_event_fields_are_checked() {
        let gate = |d: &str| {
            evt(
                Category::AccessGate,
                &format!(
                    r#"{{"ts":"2024-05-20T01:55:00Z","type":"attendance","direction":{d},
                        "worker_id":"wkr-1","photo":"s3://x"}}"#
                ),
            )
        };
        assert!(gate(r#""in""#).is_ok());
        assert_eq!(gate("0").unwrap_err().reason, reason::WRONG_TYPE);
        assert_eq!(
            gate(r#""inside""#).unwrap_err().reason,
            reason::OUT_OF_RANGE
        );
        let login = evt(
            Category::Hoist,
            r#"{"ts":"2024-05-20T01:55:00Z","type":"driver_login","driver_id_verified":"yes"}"#,
        )
        .unwrap_err();
        assert_eq!(login.reason, reason::WRONG_TYPE);
        let spray = evt(
            Category::Spray,
            r#"{"ts":"2024-05-20T01:55:00Z","type":"spray_started","reason":"PM10","duration_min":30}"#,
        )
        .unwrap();
        assert_eq!(spray.body["duration_min"], 30);
    }

    #[test]
    fn a_gate_request_names_request_worker_and_direction() {
        let req = |body: &str| {
            evt(
                Category::AccessGate,
                &format!(r#"{{"ts":"2024-05-20T01:55:00Z","type":"gate_request"{body}}}"#),
            )
        };
        let ok =
            req(r#","request_id":"r-1","worker_id":"wkr-1","direction":"in","attend_type":"001""#)
                .unwrap();
        assert_eq!(
            (
                &ok.body["request_id"],
                &ok.body["worker_id"],
                &ok.body["direction"]
            ),
            (
                &serde_json::json!("r-1"),
                &serde_json::json!("wkr-1"),
                &serde_json::json!("in")
            )
        );
        for (body, f) in [
            (r#","worker_id":"wkr-1","direction":"in""#, "request_id"),
            (r#","request_id":"r-1","direction":"in""#, "worker_id"),
            (r#","request_id":"r-1","worker_id":"wkr-1""#, "direction"),
        ] {
            let e = req(body).unwrap_err();
            assert_eq!(
                (e.reason, field(&e)),
                (reason::BAD_EVENT, Some(f)),
                "{body}"
            );
        }
        let e = req(r#","request_id":"r-1","worker_id":"wkr-1","direction":"up""#).unwrap_err();
        assert_eq!(
            (e.reason, field(&e)),
            (reason::OUT_OF_RANGE, Some("direction"))
        );
        let e = req(r#","request_id":7,"worker_id":"wkr-1","direction":"in""#).unwrap_err();
        assert_eq!(
            (e.reason, field(&e)),
            (reason::WRONG_TYPE, Some("request_id"))
        );
        // Only a gate asks.
        let e = evt(
            Category::Camera,
            r#"{"ts":"2024-05-20T01:55:00Z","type":"gate_request","request_id":"r","worker_id":"w","direction":"in"}"#,
        )
        .unwrap_err();
        assert_eq!((e.reason, field(&e)), (reason::BAD_EVENT, Some("type")));
    }

    #[test]
    fn event_envelope_rejections() {
        let c = Category::TowerCrane;
        let e = evt(c, r#"{"ts":"2024-05-20T01:55:00Z"}"#).unwrap_err();
        assert_eq!((e.reason, field(&e)), (reason::BAD_EVENT, Some("type")));
        let e = evt(c, r#"{"ts":"2024-05-20T01:55:00Z","type":7}"#).unwrap_err();
        assert_eq!((e.reason, field(&e)), (reason::WRONG_TYPE, Some("type")));
        let e = evt(c, r#"{"type":"boot"}"#).unwrap_err();
        assert_eq!(e.reason, reason::MISSING_TS);
        let e = evt(c, r#"{"ts":true,"type":"boot"}"#).unwrap_err();
        assert_eq!(e.reason, reason::WRONG_TYPE);
        let e = evt(c, r#"{"ts":"yesterday","type":"boot"}"#).unwrap_err();
        assert_eq!(e.reason, reason::BAD_TS);
        let e = evt(c, r#"{"ts":"2024-05-20T03:00:00Z","type":"boot"}"#).unwrap_err();
        assert_eq!(e.reason, reason::TS_IN_FUTURE);
        let e = evt(
            c,
            r#"{"ts":"2024-05-20T01:55:00Z","type":"boot","type":"fault"}"#,
        )
        .unwrap_err();
        assert_eq!((e.reason, field(&e)), (reason::NOT_JSON, Some("type")));
        let e = evt(
            c,
            r#"{"ts":"2024-05-20T01:55:00Z","type":"boot","ts":"2024-05-20T01:56:00Z"}"#,
        )
        .unwrap_err();
        assert_eq!((e.reason, field(&e)), (reason::NOT_JSON, Some("ts")));
        let e = evt(
            c,
            r#"{"ts":"2024-05-20T01:55:00Z","type":"boot","a":1,"a":2}"#,
        )
        .unwrap_err();
        assert_eq!((e.reason, field(&e)), (reason::NOT_JSON, Some("a")));
        assert_eq!(evt(c, "[1]").unwrap_err().reason, reason::NOT_OBJECT);
        assert_eq!(evt(c, "{\"ts\":").unwrap_err().reason, reason::NOT_JSON);
        let big = format!(
            r#"{{"ts":"2024-05-20T01:55:00Z","type":"boot","blob":"{}"}}"#,
            "x".repeat(MAX_PAYLOAD_BYTES)
        );
        assert_eq!(evt(c, &big).unwrap_err().reason, reason::TOO_LARGE);
        // Telemetry fields mean nothing to an event and are simply kept.
        let e = evt(
            c,
            r#"{"ts":"2024-05-20T01:55:00Z","type":"boot","fw":"2.1.0"}"#,
        )
        .unwrap();
        assert_eq!(e.body["fw"], "2.1.0");
    }

    // --- hourly buckets, Leq, day/night ---

    #[test]
    fn hour_bucket_is_the_shanghai_hour_start() {
        let cst = FixedOffset::east_opt(8 * 3600).unwrap();
        let t: DateTime<Utc> = "2024-05-20T09:59:59.999+08:00".parse().unwrap();
        assert_eq!(
            hour_bucket(t),
            "2024-05-20T09:00:00+08:00"
                .parse::<DateTime<Utc>>()
                .unwrap()
        );
        // Local midnight is 16:00Z of the previous day.
        let t: DateTime<Utc> = "2024-05-21T00:10:00+08:00".parse().unwrap();
        assert_eq!(
            hour_bucket(t),
            "2024-05-20T16:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
        // Exhaustively over two days at 7-minute steps: truncating in UTC equals truncating on
        // the UTC+8 wall clock, because the offset is whole hours.
        let start = Utc.with_ymd_and_hms(2024, 12, 31, 0, 3, 17).unwrap();
        for i in 0..(2 * 24 * 60 / 7) {
            let t = start + TimeDelta::minutes(7 * i);
            let local = t.with_timezone(&cst);
            let local_start = local
                .with_minute(0)
                .and_then(|l| l.with_second(0))
                .and_then(|l| l.with_nanosecond(0))
                .unwrap();
            assert_eq!(hour_bucket(t), local_start.with_timezone(&Utc), "{t}");
        }
        // Before 1970 too.
        let t: DateTime<Utc> = "1969-12-31T23:30:00Z".parse().unwrap();
        assert_eq!(
            hour_bucket(t),
            "1969-12-31T23:00:00Z".parse::<DateTime<Utc>>().unwrap()
        );
    }

    fn dust(ts: &str, json_fields: &str) -> Reading {
        tel(
            Category::DustNoise,
            &format!(r#"{{"ts":"{ts}",{json_fields}}}"#),
        )
        .unwrap()
    }

    #[test]
    fn leq_of_60_and_70_db_is_67_4() {
        let mut acc = HourlyAcc::default();
        acc.add(&dust("2024-05-20T01:00:00Z", r#""noise_dba":60"#));
        acc.add(&dust("2024-05-20T01:30:00Z", r#""noise_dba":70"#));
        // 10^(60/10) = 1e6, 10^(70/10) = 1e7; mean = 5.5e6;
        // 10·log10(5.5e6) = 10·(6 + log10 5.5) = 10·6.740363 = 67.40363 dB (arithmetic: 65).
        let leq = acc.means()["noise_dba"];
        assert!((leq - 67.403_63).abs() < 1e-4, "{leq}");
        assert_eq!(acc.noise_max_dba, Some(70.0));
        // Equal levels: Leq is that level.
        let mut flat = HourlyAcc::default();
        for _ in 0..3 {
            flat.add(&dust("2024-05-20T01:00:00Z", r#""noise_dba":55"#));
        }
        assert!((flat.noise_leq().unwrap() - 55.0).abs() < 1e-9);
    }

    #[test]
    fn hourly_means_add_merge_and_round_trip() {
        let mut a = HourlyAcc::default();
        a.add(&dust(
            "2024-05-20T01:05:00Z",
            r#""pm10_ugm3":100,"pm25_ugm3":40,"noise_dba":50,"temp_c":20"#,
        ));
        a.add(&dust(
            "2024-05-20T01:10:00Z",
            r#""pm10_ugm3":140,"tsp_ugm3":300"#,
        ));
        let mut b = HourlyAcc::default();
        b.add(&dust(
            "2024-05-20T01:40:00Z",
            r#""pm10_ugm3":180,"pm25_ugm3":50,"noise_dba":50"#,
        ));
        b.add(&dust("2024-05-20T01:50:00Z", r#""noise_dba":60"#));
        let mut merged = a.clone();
        merged.merge(&b);
        let m = merged.means();
        // PM10: (100 + 140 + 180) / 3 = 140.
        assert_eq!(m["pm10_ugm3"], 140.0);
        // PM2.5: (40 + 50) / 2 = 45.
        assert_eq!(m["pm25_ugm3"], 45.0);
        // TSP: one sample.
        assert_eq!(m["tsp_ugm3"], 300.0);
        // Noise 50, 50, 60: (1e5 + 1e5 + 1e6) / 3 = 4e5; 10·log10(4e5) = 10·5.60206 = 56.0206.
        assert!(
            (m["noise_dba"] - 56.0206).abs() < 1e-4,
            "{}",
            m["noise_dba"]
        );
        // Only the hourly fields; temperature is not averaged here.
        assert_eq!(m.len(), 4);
        assert_eq!(merged.noise_max_dba, Some(60.0));
        // Merging in either order, or into an empty accumulator, agrees.
        let mut other_way = b.clone();
        other_way.merge(&a);
        assert_eq!(other_way.means(), m);
        let mut from_empty = HourlyAcc::default();
        from_empty.merge(&merged);
        assert_eq!(from_empty, merged);
        assert!(HourlyAcc::default().means().is_empty());
        // Stored and reloaded without loss; older stored forms without the newer fields load.
        let json = serde_json::to_string(&merged).unwrap();
        assert_eq!(serde_json::from_str::<HourlyAcc>(&json).unwrap(), merged);
        let old: HourlyAcc =
            serde_json::from_str(r#"{"pm10_ugm3":{"count":2,"sum":100.0}}"#).unwrap();
        assert_eq!(old.means()["pm10_ugm3"], 50.0);
        assert_eq!(HOURLY_FIELDS.len(), 4);
    }

    #[test]
    fn day_and_night_follow_gb_12523_in_shanghai_time() {
        let p = |s: &str| day_period(s.parse::<DateTime<Utc>>().unwrap());
        assert_eq!(p("2024-05-20T05:59:59+08:00"), DayPeriod::Night);
        assert_eq!(p("2024-05-20T06:00:00+08:00"), DayPeriod::Day);
        assert_eq!(p("2024-05-20T21:59:59+08:00"), DayPeriod::Day);
        assert_eq!(p("2024-05-20T22:00:00+08:00"), DayPeriod::Night);
        assert_eq!(p("2024-05-20T00:00:00+08:00"), DayPeriod::Night);
        // 14:00Z is 22:00 in Shanghai; 21:59:59Z is 05:59:59 the next morning.
        assert_eq!(p("2024-05-20T14:00:00Z"), DayPeriod::Night);
        assert_eq!(p("2024-05-20T21:59:59Z"), DayPeriod::Night);
        assert_eq!(p("2024-05-20T22:00:00Z"), DayPeriod::Day);
        assert_eq!(p("1969-12-31T22:00:00Z"), DayPeriod::Day);
        assert_eq!(DayPeriod::Night.as_str(), "night");
        assert_eq!(serde_json::to_value(DayPeriod::Day).unwrap(), "day");
    }

    #[test]
    fn throughput_sanity() {
        // A crude check that decoding is cheap enough to loop over; no timing is asserted (CI
        // machines vary), the rate is printed for whoever runs it with --nocapture.
        let msg = br#"{"ts":"2024-05-20T09:59:58+08:00","load_t":3.25,"radius_m":42.5,
            "height_m":38.2,"slew_deg":-127.5,"moment_pct":71.3,"load_pct":54.2,"wind_ms":6.4,
            "tilt_deg":0.12,"reeving":2,"mode":"operating","driver_id_verified":true}"#;
        let n = 20_000;
        let started = std::time::Instant::now();
        let mut total = 0usize;
        for _ in 0..n {
            total += decode_telemetry(Category::TowerCrane, msg, now())
                .unwrap()
                .values
                .len();
        }
        let elapsed = started.elapsed();
        assert_eq!(total, n * 11);
        eprintln!(
            "decoded {n} crane messages in {elapsed:?} ({:.0}/s)",
            n as f64 / elapsed.as_secs_f64()
        );
    }
}
