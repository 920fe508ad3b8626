//! Alarm rules (DOMAIN.md §8.5): the catalogue of default rules, the override chain (platform
//! default → region → project), the evaluator that turns readings into alarm transitions, and the
//! escalation ladder.
//!
//! Everything here is pure so it can be tested with hand-computed fixtures and run unchanged in
//! both editions: the caller loads and stores each (device, rule) [`RuleState`], persists the
//! alarms a [`Transition`] opens or closes, stores every reading (including back-filled ones), and
//! sends notifications and spray commands.
//!
//! Every rule in the catalogue is "greater is worse": a level is reached when the value meets the
//! threshold with the rule's comparison (`>=` or `>`), and held until the value no longer meets
//! `threshold − clear_margin` with the same comparison.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use super::devices::Category;
use super::telemetry::{DayPeriod, Reading, day_period};

/// An unacknowledged alarm reaches the GC enterprise after 30 min (DOMAIN.md §8.5 [I]).
pub const ESCALATE_ENTERPRISE_S: u64 = 30 * 60;
/// An unacknowledged alarm reaches the supervising government region after 2 h (§8.5 [I]).
pub const ESCALATE_GOVERNMENT_S: u64 = 2 * 60 * 60;
/// GB 3095-2012 grade II 24 h PM10 limit, the common site default (DOMAIN.md §3).
pub const PM10_LIMIT_UGM3: f64 = 150.0;
/// Warning at 0.8 × the PM10 limit (§8.5, factor [I]).
pub const PM10_WARN_FACTOR: f64 = 0.8;
/// The expected upload interval when a rule override does not set one.
pub const DEFAULT_INTERVAL_S: u64 = 60;
/// The longest duration, escalation delay or upload interval an override may set (30 days):
/// anything longer is a unit mistake, or a rule switched off without saying so.
pub const MAX_RULE_SECONDS: i64 = 30 * 24 * 3600;
/// Hourly means closer than this count as identical for DU-STUCK: a real sensor's hourly mean of
/// dozens of samples essentially never repeats, while float summation order may differ by a few
/// ulps between two computations of the same stuck value.
pub const STUCK_EPSILON: f64 = 1e-9;

/// The rule identifiers of §8.5. The spelled-out ids (`TC-MOMENT`, …) are the public contract:
/// they appear in alarms and in the alarm-rules API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RuleId {
    #[serde(rename = "TC-MOMENT")]
    TcMoment,
    #[serde(rename = "TC-LOAD")]
    TcLoad,
    #[serde(rename = "TC-WIND")]
    TcWind,
    #[serde(rename = "TC-WIND-JACK")]
    TcWindJack,
    #[serde(rename = "HO-LOAD")]
    HoLoad,
    #[serde(rename = "HO-PERSONS")]
    HoPersons,
    #[serde(rename = "HO-DOOR")]
    HoDoor,
    #[serde(rename = "HO-WIND")]
    HoWind,
    #[serde(rename = "DU-PM10")]
    DuPm10,
    #[serde(rename = "DU-STUCK")]
    DuStuck,
    #[serde(rename = "DU-OFFLINE")]
    DuOffline,
    #[serde(rename = "NO-DAY")]
    NoDay,
    #[serde(rename = "NO-NIGHT")]
    NoNight,
}

impl RuleId {
    pub const ALL: [RuleId; 13] = [
        RuleId::TcMoment,
        RuleId::TcLoad,
        RuleId::TcWind,
        RuleId::TcWindJack,
        RuleId::HoLoad,
        RuleId::HoPersons,
        RuleId::HoDoor,
        RuleId::HoWind,
        RuleId::DuPm10,
        RuleId::DuStuck,
        RuleId::DuOffline,
        RuleId::NoDay,
        RuleId::NoNight,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::TcMoment => "TC-MOMENT",
            RuleId::TcLoad => "TC-LOAD",
            RuleId::TcWind => "TC-WIND",
            RuleId::TcWindJack => "TC-WIND-JACK",
            RuleId::HoLoad => "HO-LOAD",
            RuleId::HoPersons => "HO-PERSONS",
            RuleId::HoDoor => "HO-DOOR",
            RuleId::HoWind => "HO-WIND",
            RuleId::DuPm10 => "DU-PM10",
            RuleId::DuStuck => "DU-STUCK",
            RuleId::DuOffline => "DU-OFFLINE",
            RuleId::NoDay => "NO-DAY",
            RuleId::NoNight => "NO-NIGHT",
        }
    }

    /// The id spelled as in the API, or `None` so the caller can name the offending field.
    pub fn parse(s: &str) -> Option<RuleId> {
        RuleId::ALL.into_iter().find(|id| id.as_str() == s)
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Severity: a warning (预警) stays in the project; an alarm (报警) may escalate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Warning,
    Alarm,
}

/// How a value is compared with a threshold. Fixed per rule because the sources differ
/// (moment "≥100" but PM10 "> limit"); shown in the API so the chain reads unambiguously.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cmp {
    #[serde(rename = ">=")]
    AtLeast,
    #[serde(rename = ">")]
    Above,
}

impl Cmp {
    fn met(self, value: f64, threshold: f64) -> bool {
        match self {
            Cmp::AtLeast => value >= threshold,
            Cmp::Above => value > threshold,
        }
    }
}

/// The concrete parameter values of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleValues {
    pub enabled: bool,
    /// Warning threshold; `None` when the rule has no warning level.
    pub warn: Option<f64>,
    /// Alarm threshold; `None` when the rule only warns. For HO-PERSONS it is the rated person
    /// count used when the device config lacks `rated_persons`; for DU-STUCK the number of
    /// identical consecutive hourly means; for DU-OFFLINE (like `warn`) a number of intervals.
    pub alarm: Option<f64>,
    /// Hysteresis: a raised level is held until the value no longer meets threshold − margin.
    pub clear_margin: f64,
    /// The condition must hold continuously this long before a level is raised, so a single
    /// spike of a noisy signal does not page anyone.
    pub duration_s: u64,
    pub escalate_enterprise_s: u64,
    pub escalate_government_s: u64,
    /// DU-PM10 spray linkage: spray on when the value reaches `spray_start`, off when it falls
    /// below `spray_stop`. `None` disables the linkage (and is the only value for other rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spray_start: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spray_stop: Option<f64>,
    /// DU-OFFLINE: the device's expected upload interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<u64>,
}

/// A catalogue entry: what a rule watches and its platform defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    pub id: RuleId,
    /// The device category the rule watches; `None` for rules that watch every device
    /// (DU-OFFLINE).
    pub category: Option<Category>,
    pub description: String,
    pub warn_cmp: Cmp,
    pub alarm_cmp: Cmp,
    pub defaults: RuleValues,
}

/// Which layer of the override chain set a parameter, so the API can show the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "layer", content = "id", rename_all = "snake_case")]
pub enum Source {
    Default,
    /// A region override, by trimmed GB/T 2260 code ("22", "2201", "220102").
    Region(String),
    /// A project override, by project id.
    Project(String),
}

/// A rule after the override chain: its values and, per parameter, the layer that set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectiveRule {
    pub id: RuleId,
    pub category: Option<Category>,
    pub description: String,
    pub warn_cmp: Cmp,
    pub alarm_cmp: Cmp,
    #[serde(flatten)]
    pub values: RuleValues,
    /// Parameter name → layer; only the parameters that apply to this rule are listed.
    pub set_by: BTreeMap<String, Source>,
}

impl EffectiveRule {
    fn from_default(rule: &Rule) -> EffectiveRule {
        let set_by = PARAMS
            .iter()
            .filter(|p| accepts(rule.id, p))
            .map(|p| ((*p).to_owned(), Source::Default))
            .collect();
        EffectiveRule {
            id: rule.id,
            category: rule.category,
            description: rule.description.clone(),
            warn_cmp: rule.warn_cmp,
            alarm_cmp: rule.alarm_cmp,
            values: rule.defaults.clone(),
            set_by,
        }
    }

    /// Whether the rule watches devices of this category; the caller evaluates only those, since
    /// fields such as `wind_ms` or `load_pct` occur in more than one category.
    pub fn applies_to(&self, category: Category) -> bool {
        self.category.is_none_or(|c| c == category)
    }

    pub fn escalation(&self) -> EscalationDelays {
        EscalationDelays {
            enterprise_s: self.values.escalate_enterprise_s,
            government_s: self.values.escalate_government_s,
        }
    }
}

/// Every parameter name a patch may carry, in display order.
const PARAMS: [&str; 10] = [
    "enabled",
    "warn",
    "alarm",
    "clear_margin",
    "duration_s",
    "escalate_enterprise_s",
    "escalate_government_s",
    "spray_start",
    "spray_stop",
    "interval_s",
];

/// Which parameters mean something for a rule. HO-DOOR is a yes/no condition, HO-PERSONS and
/// DU-STUCK count whole things with one level only, and the spray and interval settings belong
/// to one rule each; refusing the rest keeps a patch from silently doing nothing.
fn accepts(id: RuleId, param: &str) -> bool {
    use RuleId::*;
    match param {
        "enabled" | "duration_s" | "escalate_enterprise_s" | "escalate_government_s" => true,
        "warn" => !matches!(id, HoPersons | HoDoor | DuStuck),
        "alarm" => id != HoDoor,
        "clear_margin" => !matches!(id, HoDoor | DuStuck),
        "spray_start" | "spray_stop" => id == DuPm10,
        "interval_s" => id == DuOffline,
        _ => false,
    }
}

/// The platform defaults of DOMAIN.md §8.5 (and §2.1, §2.3, §3 for the numbers).
pub fn default_rules() -> Vec<Rule> {
    use Category::{DustNoise, Hoist, TowerCrane};
    use Cmp::{Above, AtLeast};

    // Safety-critical crane and hoist rules raise at once (duration 0): the device cuts power
    // itself, and the platform must not lag behind it.
    let values =
        |warn: Option<f64>, alarm: Option<f64>, clear_margin: f64, duration_s: u64| RuleValues {
            enabled: true,
            warn,
            alarm,
            clear_margin,
            duration_s,
            escalate_enterprise_s: ESCALATE_ENTERPRISE_S,
            escalate_government_s: ESCALATE_GOVERNMENT_S,
            spray_start: None,
            spray_stop: None,
            interval_s: None,
        };
    let rule = |id, category, description: &str, warn_cmp, alarm_cmp, defaults| Rule {
        id,
        category,
        description: description.to_owned(),
        warn_cmp,
        alarm_cmp,
        defaults,
    };
    let pm10_warn = PM10_WARN_FACTOR * PM10_LIMIT_UGM3;

    vec![
        rule(
            RuleId::TcMoment,
            Some(TowerCrane),
            "Tower crane moment, % of rated: pre-warning at 90, alarm at 100 (device cuts hoist-up and trolley-out)",
            AtLeast,
            AtLeast,
            values(Some(90.0), Some(100.0), 5.0, 0),
        ),
        rule(
            RuleId::TcLoad,
            Some(TowerCrane),
            "Tower crane load, % of rated (load_pct, else load_t / rated_load_t): pre-warning at 90, alarm at 100",
            AtLeast,
            AtLeast,
            values(Some(90.0), Some(100.0), 5.0, 0),
        ),
        rule(
            RuleId::TcWind,
            Some(TowerCrane),
            "Tower crane wind, m/s: warning at Beaufort 5 (8.0), stop work at Beaufort 6 (10.8)",
            AtLeast,
            AtLeast,
            values(Some(8.0), Some(10.8), 1.0, 0),
        ),
        rule(
            RuleId::TcWindJack,
            Some(TowerCrane),
            "Tower crane wind while jacking (mode = jacking), m/s: no jacking from Beaufort 4 (5.5)",
            AtLeast,
            AtLeast,
            values(None, Some(5.5), 1.0, 0),
        ),
        rule(
            RuleId::HoLoad,
            Some(Hoist),
            "Hoist load, % of rated (load_pct, else load_kg / rated_load_kg): signal at 90, alarm at 100",
            AtLeast,
            AtLeast,
            values(Some(90.0), Some(100.0), 5.0, 0),
        ),
        rule(
            RuleId::HoPersons,
            Some(Hoist),
            "Hoist persons above rated_persons (this rule's alarm value when the device does not say; 9 incl. driver)",
            AtLeast,
            Above,
            values(None, Some(9.0), 0.0, 0),
        ),
        rule(
            RuleId::HoDoor,
            Some(Hoist),
            "Hoist moving (direction up/down or speed > 0) with a cage door open",
            AtLeast,
            AtLeast,
            values(None, Some(1.0), 0.0, 0),
        ),
        rule(
            RuleId::HoWind,
            Some(Hoist),
            "Hoist wind, m/s: park at the bottom and cut power at Beaufort 6 (10.8)",
            AtLeast,
            AtLeast,
            values(None, Some(10.8), 1.0, 0),
        ),
        rule(
            RuleId::DuPm10,
            Some(DustNoise),
            "PM10 hourly mean, ug/m3: warning at 0.8 x limit, alarm above the limit (GB 3095 grade II 150); spray on at spray_start, off below spray_stop",
            AtLeast,
            Above,
            RuleValues {
                // The spray starts at the limit and runs until the mean is back below the
                // warning level, so one spray run covers the whole excursion.
                spray_start: Some(PM10_LIMIT_UGM3),
                spray_stop: Some(pm10_warn),
                ..values(Some(pm10_warn), Some(PM10_LIMIT_UGM3), 10.0, 0)
            },
        ),
        rule(
            RuleId::DuStuck,
            Some(DustNoise),
            "Dust monitor data quality: the same PM10 hourly mean for this many consecutive complete hours",
            AtLeast,
            AtLeast,
            values(None, Some(3.0), 0.0, 0),
        ),
        rule(
            RuleId::DuOffline,
            None,
            "Device offline, in expected upload intervals without data: warning above 1, alarm above 3",
            Above,
            Above,
            RuleValues {
                interval_s: Some(DEFAULT_INTERVAL_S),
                ..values(Some(1.0), Some(3.0), 0.0, 0)
            },
        ),
        rule(
            RuleId::NoDay,
            Some(DustNoise),
            "Boundary noise Leq by day (06:00-22:00 Asia/Shanghai), dB(A): warning at 65, alarm above 70 (GB 12523)",
            AtLeast,
            Above,
            // Noise is bursty (a dropped bar, a horn); require a minute before raising.
            values(Some(65.0), Some(70.0), 2.0, 60),
        ),
        rule(
            RuleId::NoNight,
            Some(DustNoise),
            "Boundary noise Leq at night (22:00-06:00 Asia/Shanghai), dB(A): alarm above 55 (GB 12523)",
            AtLeast,
            Above,
            values(None, Some(55.0), 2.0, 60),
        ),
    ]
}

/// The region layers to look up for a project's region, widest first: "220102" → ["22", "2201",
/// "220102"], "220100" → ["22", "2201"]. Trailing "00" pairs name the same region as the shorter
/// code, so they are not separate layers.
pub fn region_layers(region_code: &str) -> Vec<String> {
    let mut layers = Vec::new();
    for len in [2, 4, 6] {
        let (Some(prefix), Some(pair)) = (region_code.get(..len), region_code.get(len - 2..len))
        else {
            break;
        };
        if len == 2 || pair != "00" {
            layers.push(prefix.to_owned());
        }
    }
    layers
}

/// Deserializes a field that distinguishes "absent" (outer `None`, via `#[serde(default)]`)
/// from an explicit `null` (`Some(None)`), so a patch can remove a level, not only change it.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// One layer's changes to one rule. Absent fields inherit from the layer below; for `warn`,
/// `alarm`, `spray_start` and `spray_stop` an explicit `null` removes the value. Durations are
/// signed so a negative one reaches [`Patch::validate`] and gets a clear error.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleParams {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub warn: Option<Option<f64>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub alarm: Option<Option<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_margin: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_s: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_enterprise_s: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_government_s: Option<i64>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub spray_start: Option<Option<f64>>,
    #[serde(
        default,
        deserialize_with = "nullable",
        skip_serializing_if = "Option::is_none"
    )]
    pub spray_stop: Option<Option<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_s: Option<i64>,
}

impl RuleParams {
    /// The names of the parameters this patch sets.
    fn set_params(&self) -> Vec<&'static str> {
        let set = [
            self.enabled.is_some(),
            self.warn.is_some(),
            self.alarm.is_some(),
            self.clear_margin.is_some(),
            self.duration_s.is_some(),
            self.escalate_enterprise_s.is_some(),
            self.escalate_government_s.is_some(),
            self.spray_start.is_some(),
            self.spray_stop.is_some(),
            self.interval_s.is_some(),
        ];
        PARAMS
            .into_iter()
            .zip(set)
            .filter_map(|(p, s)| s.then_some(p))
            .collect()
    }
}

/// One layer of overrides: rule id (as in the API, e.g. `"TC-MOMENT"`) → changes. Keyed by
/// string so an unknown id reaches [`Patch::validate`] and is refused by name. This is the body
/// of `PUT /v1/projects/{id}/alarm-rules`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Patch(pub BTreeMap<String, RuleParams>);

/// A refused patch, naming the field (`"TC-MOMENT.warn"`) so HTTP can answer 422 with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct PatchError {
    pub field: String,
    pub message: String,
}

impl PatchError {
    fn new(id: &str, param: &str, message: impl Into<String>) -> PatchError {
        let field = if param.is_empty() {
            id.to_owned()
        } else {
            format!("{id}.{param}")
        };
        PatchError {
            field,
            message: message.into(),
        }
    }
}

impl Patch {
    /// Checks this patch on top of `base`, the effective rules of the layers below it (so a
    /// project `warn` is compared with the region's `alarm`). Relations between two parameters
    /// are only checked when the patch sets one of them, so a project can still save unrelated
    /// changes if a region later made its own values inconsistent.
    pub fn validate(&self, base: &[EffectiveRule]) -> Result<(), PatchError> {
        for (key, params) in &self.0 {
            let Some(rule) = RuleId::parse(key).and_then(|id| base.iter().find(|r| r.id == id))
            else {
                return Err(PatchError::new(key, "", "unknown rule id"));
            };
            validate_params(rule, params)?;
        }
        Ok(())
    }
}

fn validate_params(rule: &EffectiveRule, params: &RuleParams) -> Result<(), PatchError> {
    let id = rule.id.as_str();
    let set = params.set_params();
    if let Some(p) = set.iter().find(|p| !accepts(rule.id, p)) {
        return Err(PatchError::new(id, p, format!("does not apply to {id}")));
    }
    let number = |param: &str, v: f64| {
        if !v.is_finite() || v < 0.0 {
            Err(PatchError::new(id, param, "must be a number not below 0"))
        } else {
            Ok(())
        }
    };
    let seconds = |param: &str, v: Option<i64>| match v {
        Some(s) if s < 0 => Err(PatchError::new(id, param, "must not be negative")),
        Some(s) if s > MAX_RULE_SECONDS => Err(PatchError::new(
            id,
            param,
            format!(
                "at most {MAX_RULE_SECONDS} s (30 days); set enabled to false to switch the rule off"
            ),
        )),
        _ => Ok(()),
    };
    for (param, v) in [
        ("warn", params.warn),
        ("alarm", params.alarm),
        ("spray_start", params.spray_start),
        ("spray_stop", params.spray_stop),
    ] {
        if let Some(Some(v)) = v {
            number(param, v)?;
        }
    }
    if let Some(m) = params.clear_margin {
        number("clear_margin", m)?;
    }
    seconds("duration_s", params.duration_s)?;
    seconds("escalate_enterprise_s", params.escalate_enterprise_s)?;
    seconds("escalate_government_s", params.escalate_government_s)?;
    if let Some(s) = params.interval_s
        && s <= 0
    {
        return Err(PatchError::new(id, "interval_s", "must be above 0"));
    }
    seconds("interval_s", params.interval_s)?;

    // Whole-count rules: the alarm is a count and cannot be removed (there is no warning).
    let min_count = match rule.id {
        RuleId::HoPersons => Some(1.0),
        RuleId::DuStuck => Some(2.0),
        _ => None,
    };
    if let (Some(min), Some(alarm)) = (min_count, params.alarm) {
        match alarm {
            None => return Err(PatchError::new(id, "alarm", "is required for this rule")),
            Some(a) if a.fract() != 0.0 || a < min => {
                return Err(PatchError::new(
                    id,
                    "alarm",
                    format!("must be a whole number of at least {min}"),
                ));
            }
            Some(_) => {}
        }
    }

    // Relations, on the values as they would be after this patch.
    let mut merged = rule.clone();
    apply(&mut merged, params, &Source::Default);
    let v = &merged.values;
    if params.warn.is_some() || params.alarm.is_some() {
        match (v.warn, v.alarm) {
            (Some(w), Some(a)) if w >= a => {
                let param = if params.warn.is_some() {
                    "warn"
                } else {
                    "alarm"
                };
                return Err(PatchError::new(
                    id,
                    param,
                    format!("warn ({w}) must be below alarm ({a})"),
                ));
            }
            (None, None) => {
                return Err(PatchError::new(
                    id,
                    "alarm",
                    "a rule needs a warn or an alarm threshold; set enabled to false to switch it off",
                ));
            }
            _ => {}
        }
    }
    if (params.escalate_enterprise_s.is_some() || params.escalate_government_s.is_some())
        && v.escalate_government_s < v.escalate_enterprise_s
    {
        return Err(PatchError::new(
            id,
            "escalate_government_s",
            "must not be shorter than escalate_enterprise_s",
        ));
    }
    if params.spray_start.is_some() || params.spray_stop.is_some() {
        match (v.spray_start, v.spray_stop) {
            (Some(start), Some(stop)) if stop >= start => {
                return Err(PatchError::new(
                    id,
                    "spray_stop",
                    format!("spray_stop ({stop}) must be below spray_start ({start})"),
                ));
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(PatchError::new(
                    id,
                    "spray_stop",
                    "spray_start and spray_stop are set or removed together",
                ));
            }
            _ => {}
        }
    }
    Ok(())
}

/// Applies one layer to one rule, recording `source` for each parameter it sets. Parameters that
/// do not apply to the rule are skipped, so a patch stored under older validation rules cannot
/// corrupt the result; negative seconds count as 0.
fn apply(rule: &mut EffectiveRule, params: &RuleParams, source: &Source) {
    let id = rule.id;
    let mut set = |name: &'static str| -> bool {
        if accepts(id, name) {
            rule.set_by.insert(name.to_owned(), source.clone());
            true
        } else {
            false
        }
    };
    let secs = |s: i64| u64::try_from(s).unwrap_or(0);
    let v = &mut rule.values;
    if let Some(x) = params.enabled
        && set("enabled")
    {
        v.enabled = x;
    }
    if let Some(x) = params.warn
        && set("warn")
    {
        v.warn = x;
    }
    if let Some(x) = params.alarm
        && set("alarm")
    {
        v.alarm = x;
    }
    if let Some(x) = params.clear_margin
        && set("clear_margin")
    {
        v.clear_margin = x.max(0.0);
    }
    if let Some(x) = params.duration_s
        && set("duration_s")
    {
        v.duration_s = secs(x);
    }
    if let Some(x) = params.escalate_enterprise_s
        && set("escalate_enterprise_s")
    {
        v.escalate_enterprise_s = secs(x);
    }
    if let Some(x) = params.escalate_government_s
        && set("escalate_government_s")
    {
        v.escalate_government_s = secs(x);
    }
    if let Some(x) = params.spray_start
        && set("spray_start")
    {
        v.spray_start = x;
    }
    if let Some(x) = params.spray_stop
        && set("spray_stop")
    {
        v.spray_stop = x;
    }
    if let Some(x) = params.interval_s
        && set("interval_s")
    {
        v.interval_s = Some(secs(x).max(1));
    }
}

/// Applies the override chain to the catalogue. `chain` is applied in order, so the caller
/// passes the region layers widest first (see [`region_layers`]) and the project layer last.
/// Unknown rule ids in a stored patch are ignored here: they are refused when the patch is
/// written ([`Patch::validate`]), and reading must never fail because of an old patch.
pub fn effective(defaults: &[Rule], chain: &[(Source, Patch)]) -> Vec<EffectiveRule> {
    let mut rules: Vec<EffectiveRule> = defaults.iter().map(EffectiveRule::from_default).collect();
    for (source, patch) in chain {
        for (key, params) in &patch.0 {
            if let Some(rule) =
                RuleId::parse(key).and_then(|id| rules.iter_mut().find(|r| r.id == id))
            {
                apply(rule, params, source);
            }
        }
    }
    rules
}

/// What the evaluator looks at.
#[derive(Debug, Clone, Copy)]
pub enum Input<'a> {
    /// A telemetry reading with the device's static config (`rated_load_t`, `rated_persons`, …).
    Reading {
        reading: &'a Reading,
        config: &'a BTreeMap<String, f64>,
    },
    /// PM10 hourly means for DU-PM10 and DU-STUCK, as of `ts`.
    Hourly {
        ts: DateTime<Utc>,
        /// The current hour's mean so far; DU-PM10 evaluates it.
        current: Option<f64>,
        /// The most recent complete hourly means, oldest first, at least as many as DU-STUCK's
        /// `alarm` (default 3). `None` is an hour without data, which breaks a run.
        complete: &'a [Option<f64>],
        /// The linked spray device's config; its `start_value` and `stop_value`, when both are
        /// present, take precedence over the rule's `spray_start` and `spray_stop` because they
        /// belong to that one installation.
        config: &'a BTreeMap<String, f64>,
    },
    /// A periodic liveness check for DU-OFFLINE. `None`: never seen, which is not "offline"
    /// (a device registered but not yet installed must not page anyone).
    Liveness { last_seen: Option<DateTime<Utc>> },
}

/// The persisted evaluator state of one (device, rule). The caller loads it before
/// [`evaluate`] and stores it after, in the same write as the transitions it produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RuleState {
    /// The level currently raised, if any.
    pub level: Option<Level>,
    /// When the current level was entered.
    pub since: Option<DateTime<Utc>>,
    /// Start of the current unbroken run in which the warning-or-worse condition held; a level
    /// is raised once its run is `duration_s` long. Two runs, not one pending slot, so a value
    /// that climbs from the warning band into the alarm band during a window keeps its warning
    /// run and starts an alarm run.
    pub warn_met_since: Option<DateTime<Utc>>,
    pub alarm_met_since: Option<DateTime<Utc>>,
    /// DU-PM10 spray linkage state.
    pub spray_on: bool,
    /// The time of the last evaluated input: older inputs (back-filled or reordered) are
    /// ignored so they cannot flip the state.
    pub last_ts: Option<DateTime<Utc>>,
    /// The last evaluated value, reported when disabling a rule clears its level.
    pub last_value: Option<f64>,
}

/// What changed; the caller opens, updates or resolves the alarm record and drives the spray.
/// `at` is the evaluation time (the input's timestamp, capped at `now`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transition {
    Raise {
        rule: RuleId,
        level: Level,
        value: f64,
        threshold: f64,
        at: DateTime<Utc>,
    },
    /// Warning → alarm.
    Upgrade {
        rule: RuleId,
        value: f64,
        threshold: f64,
        at: DateTime<Utc>,
    },
    /// Alarm → warning; `threshold` is the warning threshold still met.
    Downgrade {
        rule: RuleId,
        value: f64,
        threshold: f64,
        at: DateTime<Utc>,
    },
    Clear {
        rule: RuleId,
        value: f64,
        at: DateTime<Utc>,
    },
    SprayOn {
        rule: RuleId,
        value: f64,
        threshold: f64,
        at: DateTime<Utc>,
    },
    SprayOff {
        rule: RuleId,
        value: f64,
        at: DateTime<Utc>,
    },
}

/// A value extracted from an input for one rule.
struct Observation {
    at: DateTime<Utc>,
    value: f64,
    /// False when the rule does not apply at this moment (NO-DAY at night, TC-WIND-JACK while
    /// operating): the condition counts as not met, so a raised level clears.
    active: bool,
    /// The device's own alarm threshold (HO-PERSONS `rated_persons`).
    alarm_override: Option<f64>,
    /// Spray (start, stop) in force for DU-PM10.
    spray: Option<(f64, f64)>,
}

/// `part / rated × 100`, when the rating is usable.
fn percent(part: Option<f64>, rated: Option<&f64>) -> Option<f64> {
    match (part, rated) {
        (Some(p), Some(&r)) if r > 0.0 => Some(p / r * 100.0),
        _ => None,
    }
}

fn observe(rule: &EffectiveRule, input: &Input<'_>, now: DateTime<Utc>) -> Option<Observation> {
    let obs = |ts: DateTime<Utc>, value: f64| Observation {
        // A device clock far in the future must not freeze the rule (see `last_ts`).
        at: ts.min(now),
        value,
        active: true,
        alarm_override: None,
        spray: None,
    };
    match (rule.id, *input) {
        (RuleId::TcMoment, Input::Reading { reading: r, .. }) => {
            Some(obs(r.ts, r.num("moment_pct")?))
        }
        // The device's load_pct is relative to the load chart at the current radius; the
        // fallback uses the nameplate rating, which is only exact at short radius.
        (RuleId::TcLoad, Input::Reading { reading: r, config }) => {
            let pct = r
                .num("load_pct")
                .or_else(|| percent(r.num("load_t"), config.get("rated_load_t")))?;
            Some(obs(r.ts, pct))
        }
        (RuleId::TcWind | RuleId::HoWind, Input::Reading { reading: r, .. }) => {
            Some(obs(r.ts, r.num("wind_ms")?))
        }
        (RuleId::TcWindJack, Input::Reading { reading: r, .. }) => {
            let jacking = r.text("mode")? == "jacking";
            Some(Observation {
                active: jacking,
                ..obs(r.ts, r.num("wind_ms")?)
            })
        }
        (RuleId::HoLoad, Input::Reading { reading: r, config }) => {
            let pct = r
                .num("load_pct")
                .or_else(|| percent(r.num("load_kg"), config.get("rated_load_kg")))?;
            Some(obs(r.ts, pct))
        }
        (RuleId::HoPersons, Input::Reading { reading: r, config }) => Some(Observation {
            alarm_override: config.get("rated_persons").copied(),
            ..obs(r.ts, r.num("persons")?)
        }),
        (RuleId::HoDoor, Input::Reading { reading: r, .. }) => {
            let doors = [r.flag("door_front_open"), r.flag("door_back_open")];
            if doors.iter().all(Option::is_none) {
                return None;
            }
            let open = doors.contains(&Some(true));
            let moving = match (r.text("direction"), r.num("speed_ms")) {
                (None, None) => None,
                (dir, speed) => {
                    Some(matches!(dir, Some("up" | "down")) || speed.is_some_and(|s| s > 0.0))
                }
            };
            // A closed door is safe whatever the motion; an open one needs the motion known.
            let hazard = if open { moving? } else { false };
            Some(obs(r.ts, if hazard { 1.0 } else { 0.0 }))
        }
        (RuleId::NoDay | RuleId::NoNight, Input::Reading { reading: r, .. }) => {
            let want = if rule.id == RuleId::NoDay {
                DayPeriod::Day
            } else {
                DayPeriod::Night
            };
            Some(Observation {
                active: day_period(r.ts) == want,
                ..obs(r.ts, r.num("noise_dba")?)
            })
        }
        (
            RuleId::DuPm10,
            Input::Hourly {
                ts,
                current,
                config,
                ..
            },
        ) => {
            let device = config.get("start_value").zip(config.get("stop_value"));
            let spray = match device {
                Some((&start, &stop)) => Some((start, stop)),
                None => rule.values.spray_start.zip(rule.values.spray_stop),
            };
            Some(Observation {
                spray,
                ..obs(ts, current?)
            })
        }
        (RuleId::DuStuck, Input::Hourly { ts, complete, .. }) => {
            let last = (*complete.last()?)?;
            let run = complete
                .iter()
                .rev()
                .take_while(|m| m.is_some_and(|m| (m - last).abs() < STUCK_EPSILON))
                .count();
            Some(obs(ts, run as f64))
        }
        (RuleId::DuOffline, Input::Liveness { last_seen }) => {
            let interval = rule.values.interval_s.unwrap_or(DEFAULT_INTERVAL_S).max(1);
            let silent_ms = (now - last_seen?).num_milliseconds().max(0);
            Some(obs(now, silent_ms as f64 / 1000.0 / interval as f64))
        }
        _ => None,
    }
}

/// A threshold with its comparison.
#[derive(Clone, Copy)]
struct Threshold {
    value: f64,
    cmp: Cmp,
}

impl Threshold {
    fn met(self, v: f64) -> bool {
        self.cmp.met(v, self.value)
    }

    /// Hysteresis: a raised level holds while the value meets threshold − margin.
    fn holds(self, v: f64, margin: f64) -> bool {
        self.cmp.met(v, self.value - margin)
    }
}

/// Whether a run that started at `since` has lasted `duration_s` by `at`.
fn lasted(since: Option<DateTime<Utc>>, at: DateTime<Utc>, duration_s: u64) -> bool {
    let need = i64::try_from(duration_s).unwrap_or(i64::MAX);
    since.is_some_and(|s| (at - s).num_seconds() >= need)
}

/// Evaluates one rule on one input and updates `state`. Returns the transitions to persist, in
/// order: level changes first, then spray commands. Inputs the rule cannot read (another
/// category's fields, a missing field, an older timestamp than the last evaluated one) leave
/// the state untouched and return nothing.
pub fn evaluate(
    rule: &EffectiveRule,
    state: &mut RuleState,
    input: &Input<'_>,
    now: DateTime<Utc>,
) -> Vec<Transition> {
    let mut out = Vec::new();
    let id = rule.id;

    if !rule.values.enabled {
        // Switching a rule off resolves what it had raised, so no alarm stays open forever.
        let value = state.last_value.unwrap_or(0.0);
        if state.level.is_some() {
            out.push(Transition::Clear {
                rule: id,
                value,
                at: now,
            });
        }
        if state.spray_on {
            out.push(Transition::SprayOff {
                rule: id,
                value,
                at: now,
            });
        }
        *state = RuleState {
            last_ts: state.last_ts,
            last_value: state.last_value,
            ..RuleState::default()
        };
        return out;
    }

    let Some(obs) = observe(rule, input, now) else {
        return out;
    };
    if state.last_ts.is_some_and(|last| obs.at < last) {
        return out;
    }
    let (at, v) = (obs.at, obs.value);
    let warn = rule.values.warn.map(|value| Threshold {
        value,
        cmp: rule.warn_cmp,
    });
    let alarm = obs
        .alarm_override
        .or(rule.values.alarm)
        .map(|value| Threshold {
            value,
            cmp: rule.alarm_cmp,
        });

    // The raw condition, and the runs it extends or breaks.
    let met_alarm = obs.active && alarm.is_some_and(|t| t.met(v));
    let met_warn = met_alarm || (obs.active && warn.is_some_and(|t| t.met(v)));
    state.alarm_met_since = if met_alarm {
        state.alarm_met_since.or(Some(at))
    } else {
        None
    };
    state.warn_met_since = if met_warn {
        state.warn_met_since.or(Some(at))
    } else {
        None
    };

    // The level the runs have earned, and the level hysteresis keeps; the higher one wins.
    let d = rule.values.duration_s;
    let earned = match (alarm, warn) {
        (Some(a), _) if met_alarm && lasted(state.alarm_met_since, at, d) => {
            Some((Level::Alarm, a.value))
        }
        (_, Some(w)) if met_warn && lasted(state.warn_met_since, at, d) => {
            Some((Level::Warning, w.value))
        }
        _ => None,
    };
    let margin = rule.values.clear_margin;
    let held = match (state.level, alarm, warn) {
        (Some(Level::Alarm), Some(a), _) if obs.active && a.holds(v, margin) => {
            Some((Level::Alarm, a.value))
        }
        (Some(_), _, Some(w)) if obs.active && w.holds(v, margin) => {
            Some((Level::Warning, w.value))
        }
        _ => None,
    };
    let next = match (earned, held) {
        (Some(e), Some(h)) => Some(if e.0 >= h.0 { e } else { h }),
        (e, h) => e.or(h),
    };

    match (state.level, next) {
        (None, Some((level, threshold))) => out.push(Transition::Raise {
            rule: id,
            level,
            value: v,
            threshold,
            at,
        }),
        (Some(Level::Warning), Some((Level::Alarm, threshold))) => {
            out.push(Transition::Upgrade {
                rule: id,
                value: v,
                threshold,
                at,
            });
        }
        (Some(Level::Alarm), Some((Level::Warning, threshold))) => {
            out.push(Transition::Downgrade {
                rule: id,
                value: v,
                threshold,
                at,
            });
        }
        (Some(_), None) => out.push(Transition::Clear {
            rule: id,
            value: v,
            at,
        }),
        _ => {}
    }
    let next_level = next.map(|(l, _)| l);
    if next_level != state.level {
        state.level = next_level;
        state.since = next_level.map(|_| at);
    }

    // Spray linkage, with its own hysteresis (start/stop values).
    match obs.spray {
        Some((start, stop)) if obs.active => {
            if !state.spray_on && v >= start {
                state.spray_on = true;
                out.push(Transition::SprayOn {
                    rule: id,
                    value: v,
                    threshold: start,
                    at,
                });
            } else if state.spray_on && v < stop {
                state.spray_on = false;
                out.push(Transition::SprayOff {
                    rule: id,
                    value: v,
                    at,
                });
            }
        }
        _ if state.spray_on => {
            state.spray_on = false;
            out.push(Transition::SprayOff {
                rule: id,
                value: v,
                at,
            });
        }
        _ => {}
    }

    state.last_ts = Some(at);
    state.last_value = Some(v);
    out
}

/// Who must see an open alarm now (DOMAIN.md §8.5 escalation proposal).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Project,
    /// The GC enterprise.
    Enterprise,
    /// The supervising `gov_region` customer.
    Government,
}

/// How long an unacknowledged alarm waits before each escalation step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationDelays {
    pub enterprise_s: u64,
    pub government_s: u64,
}

impl Default for EscalationDelays {
    fn default() -> Self {
        EscalationDelays {
            enterprise_s: ESCALATE_ENTERPRISE_S,
            government_s: ESCALATE_GOVERNMENT_S,
        }
    }
}

/// The tier an open alarm has reached at `now`. Warnings never leave the project, and an
/// acknowledged alarm stops escalating because someone on site owns it. The caller keeps the
/// record of whom it already notified; this only answers "who should know by now".
pub fn escalation_tier(
    level: Level,
    opened_at: DateTime<Utc>,
    acknowledged: bool,
    now: DateTime<Utc>,
    delays: &EscalationDelays,
) -> Tier {
    if level == Level::Warning || acknowledged {
        return Tier::Project;
    }
    let open_s = (now - opened_at).num_seconds();
    let after = |s: u64| open_s >= i64::try_from(s).unwrap_or(i64::MAX);
    if after(delays.government_s) {
        Tier::Government
    } else if after(delays.enterprise_s) {
        Tier::Enterprise
    } else {
        Tier::Project
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::telemetry::Value;
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn secs(base: DateTime<Utc>, s: i64) -> DateTime<Utc> {
        base + chrono::TimeDelta::seconds(s)
    }

    fn rules(chain: &[(Source, Patch)]) -> Vec<EffectiveRule> {
        effective(&default_rules(), chain)
    }

    fn find(rules: &[EffectiveRule], id: RuleId) -> EffectiveRule {
        rules.iter().find(|r| r.id == id).unwrap().clone()
    }

    fn rule(id: RuleId) -> EffectiveRule {
        find(&rules(&[]), id)
    }

    fn patch(json: &str) -> Patch {
        serde_json::from_str(json).unwrap()
    }

    /// The rule after a project patch (validated first, as the API would).
    fn project_rule(id: RuleId, json: &str) -> EffectiveRule {
        let p = patch(json);
        p.validate(&rules(&[])).unwrap();
        find(&rules(&[(Source::Project("prj-1".into()), p)]), id)
    }

    fn n(x: f64) -> Value {
        Value::Num(x)
    }

    fn reading(ts: DateTime<Utc>, fields: &[(&str, Value)]) -> Reading {
        Reading {
            ts,
            values: fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        }
    }

    fn config(fields: &[(&str, f64)]) -> BTreeMap<String, f64> {
        fields.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
    }

    /// Evaluates a reading taken at `ts`, with `now = ts`.
    fn feed(
        rule: &EffectiveRule,
        state: &mut RuleState,
        ts: DateTime<Utc>,
        fields: &[(&str, Value)],
        cfg: &BTreeMap<String, f64>,
    ) -> Vec<String> {
        let r = reading(ts, fields);
        brief(&evaluate(
            rule,
            state,
            &Input::Reading {
                reading: &r,
                config: cfg,
            },
            ts,
        ))
    }

    /// One numeric field, no config; returns the transitions in short form.
    fn feed1(
        rule: &EffectiveRule,
        state: &mut RuleState,
        ts: DateTime<Utc>,
        field: &str,
        v: f64,
    ) -> Vec<String> {
        feed(rule, state, ts, &[(field, n(v))], &BTreeMap::new())
    }

    fn hourly(
        rule: &EffectiveRule,
        state: &mut RuleState,
        ts: DateTime<Utc>,
        current: Option<f64>,
        complete: &[Option<f64>],
        cfg: &BTreeMap<String, f64>,
    ) -> Vec<String> {
        brief(&evaluate(
            rule,
            state,
            &Input::Hourly {
                ts,
                current,
                complete,
                config: cfg,
            },
            ts,
        ))
    }

    /// "raise warning 90@90" = raise to warning, value 90, threshold 90.
    fn brief(ts: &[Transition]) -> Vec<String> {
        ts.iter()
            .map(|tr| match tr {
                Transition::Raise {
                    level,
                    value,
                    threshold,
                    ..
                } => format!("raise {level:?} {value}@{threshold}").to_lowercase(),
                Transition::Upgrade {
                    value, threshold, ..
                } => format!("upgrade {value}@{threshold}"),
                Transition::Downgrade {
                    value, threshold, ..
                } => format!("downgrade {value}@{threshold}"),
                Transition::Clear { value, .. } => format!("clear {value}"),
                Transition::SprayOn {
                    value, threshold, ..
                } => format!("spray_on {value}@{threshold}"),
                Transition::SprayOff { value, .. } => format!("spray_off {value}"),
            })
            .collect()
    }

    const T0: &str = "2024-06-01T02:00:00Z"; // 10:00 Asia/Shanghai, day

    // ---- catalogue ----

    #[test]
    fn catalogue_has_every_listed_rule_with_documented_defaults() {
        let all = default_rules();
        assert_eq!(all.len(), RuleId::ALL.len());
        for id in RuleId::ALL {
            assert!(all.iter().any(|r| r.id == id), "{id} missing");
            assert_eq!(RuleId::parse(id.as_str()), Some(id));
            assert_eq!(
                serde_json::to_value(id).unwrap(),
                serde_json::json!(id.as_str())
            );
        }
        let pm = rule(RuleId::DuPm10);
        // 0.8 × 150 = 120
        assert_eq!(pm.values.warn, Some(120.0));
        assert_eq!(pm.values.alarm, Some(150.0));
        assert_eq!(
            (pm.values.spray_start, pm.values.spray_stop),
            (Some(150.0), Some(120.0))
        );
        assert_eq!(rule(RuleId::DuOffline).values.interval_s, Some(60));
        assert_eq!(rule(RuleId::TcMoment).values.duration_s, 0);
        assert_eq!(rule(RuleId::HoDoor).values.duration_s, 0);
        assert_eq!(rule(RuleId::NoDay).values.duration_s, 60);
        for r in rules(&[]) {
            assert_eq!(r.escalation(), EscalationDelays::default());
            assert_eq!(
                (
                    r.values.escalate_enterprise_s,
                    r.values.escalate_government_s
                ),
                (1800, 7200)
            );
        }
        assert!(rule(RuleId::DuOffline).applies_to(Category::Hoist));
        assert!(rule(RuleId::HoWind).applies_to(Category::Hoist));
        assert!(!rule(RuleId::HoWind).applies_to(Category::TowerCrane));
        assert_eq!(serde_json::to_value(Level::Warning).unwrap(), "warning");
    }

    // ---- one test per rule, hand-computed ----

    #[test]
    fn tc_moment_warn_alarm_downgrade_clear() {
        let r = rule(RuleId::TcMoment);
        let mut s = RuleState::default();
        let t0 = t(T0);
        let f = "moment_pct";
        assert!(feed1(&r, &mut s, t0, f, 89.9).is_empty());
        assert_eq!(
            feed1(&r, &mut s, secs(t0, 1), f, 90.0),
            ["raise warning 90@90"]
        );
        assert_eq!(
            feed1(&r, &mut s, secs(t0, 2), f, 100.0),
            ["upgrade 100@100"]
        );
        // Alarm held down to 100 − 5 = 95.
        assert!(feed1(&r, &mut s, secs(t0, 3), f, 95.0).is_empty());
        assert_eq!(
            feed1(&r, &mut s, secs(t0, 4), f, 94.9),
            ["downgrade 94.9@90"]
        );
        // Warning held down to 90 − 5 = 85.
        assert!(feed1(&r, &mut s, secs(t0, 5), f, 85.0).is_empty());
        assert_eq!(feed1(&r, &mut s, secs(t0, 6), f, 84.9), ["clear 84.9"]);
        assert_eq!(s.level, None);
    }

    #[test]
    fn tc_load_uses_load_pct_or_computes_it_from_rated_load() {
        let r = rule(RuleId::TcLoad);
        let t0 = t(T0);
        let rated = config(&[("rated_load_t", 4.0)]);
        let mut s = RuleState::default();
        // 3.5 / 4.0 × 100 = 87.5
        assert!(feed(&r, &mut s, t0, &[("load_t", n(3.5))], &rated).is_empty());
        // 3.75 / 4.0 × 100 = 93.75
        assert_eq!(
            feed(&r, &mut s, secs(t0, 1), &[("load_t", n(3.75))], &rated),
            ["raise warning 93.75@90"]
        );
        // 4.5 / 4.0 × 100 = 112.5
        assert_eq!(
            feed(&r, &mut s, secs(t0, 2), &[("load_t", n(4.5))], &rated),
            ["upgrade 112.5@100"]
        );
        // load_pct, when sent, wins over the computation: 50 < 90 − 5
        assert_eq!(
            feed(
                &r,
                &mut s,
                secs(t0, 3),
                &[("load_pct", n(50.0)), ("load_t", n(4.5))],
                &rated
            ),
            ["clear 50"]
        );
        // No rating: nothing to compare, state untouched.
        let before = s.clone();
        assert!(
            feed(
                &r,
                &mut s,
                secs(t0, 4),
                &[("load_t", n(9.0))],
                &BTreeMap::new()
            )
            .is_empty()
        );
        assert_eq!(s, before);
    }

    #[test]
    fn tc_wind_beaufort_5_warns_beaufort_6_alarms() {
        let r = rule(RuleId::TcWind);
        let t0 = t(T0);
        let mut s = RuleState::default();
        let f = "wind_ms";
        assert!(feed1(&r, &mut s, t0, f, 7.9).is_empty());
        assert_eq!(
            feed1(&r, &mut s, secs(t0, 1), f, 8.0),
            ["raise warning 8@8"]
        );
        assert!(feed1(&r, &mut s, secs(t0, 2), f, 10.7).is_empty());
        assert_eq!(
            feed1(&r, &mut s, secs(t0, 3), f, 10.8),
            ["upgrade 10.8@10.8"]
        );
        // Alarm held while ≥ 10.8 − 1.0 = 9.8.
        assert!(feed1(&r, &mut s, secs(t0, 4), f, 9.8).is_empty());
        assert_eq!(feed1(&r, &mut s, secs(t0, 5), f, 9.7), ["downgrade 9.7@8"]);
        // Warning held while ≥ 8.0 − 1.0 = 7.0.
        assert_eq!(feed1(&r, &mut s, secs(t0, 6), f, 6.9), ["clear 6.9"]);
    }

    #[test]
    fn tc_wind_jack_only_while_jacking() {
        let r = rule(RuleId::TcWindJack);
        let t0 = t(T0);
        let none = BTreeMap::new();
        let jack = Value::Text("jacking".into());
        let oper = Value::Text("operating".into());
        let mut s = RuleState::default();
        assert!(
            feed(
                &r,
                &mut s,
                t0,
                &[("wind_ms", n(6.0)), ("mode", oper.clone())],
                &none
            )
            .is_empty()
        );
        assert!(
            feed(
                &r,
                &mut s,
                secs(t0, 1),
                &[("wind_ms", n(5.4)), ("mode", jack.clone())],
                &none
            )
            .is_empty()
        );
        assert_eq!(
            feed(
                &r,
                &mut s,
                secs(t0, 2),
                &[("wind_ms", n(5.5)), ("mode", jack)],
                &none
            ),
            ["raise alarm 5.5@5.5"]
        );
        // Mode unknown: cannot judge, state untouched.
        let before = s.clone();
        assert!(feed(&r, &mut s, secs(t0, 3), &[("wind_ms", n(9.0))], &none).is_empty());
        assert_eq!(s, before);
        // Jacking finished: the rule no longer applies, so it clears.
        assert_eq!(
            feed(
                &r,
                &mut s,
                secs(t0, 4),
                &[("wind_ms", n(6.0)), ("mode", oper)],
                &none
            ),
            ["clear 6"]
        );
    }

    #[test]
    fn ho_load_uses_load_pct_or_load_kg_over_rated() {
        let r = rule(RuleId::HoLoad);
        let t0 = t(T0);
        let rated = config(&[("rated_load_kg", 2000.0)]);
        let mut s = RuleState::default();
        // 1750 / 2000 × 100 = 87.5
        assert!(feed(&r, &mut s, t0, &[("load_kg", n(1750.0))], &rated).is_empty());
        // 1875 / 2000 × 100 = 93.75
        assert_eq!(
            feed(&r, &mut s, secs(t0, 1), &[("load_kg", n(1875.0))], &rated),
            ["raise warning 93.75@90"]
        );
        assert_eq!(
            feed(&r, &mut s, secs(t0, 2), &[("load_pct", n(101.0))], &rated),
            ["upgrade 101@100"]
        );
    }

    #[test]
    fn ho_persons_above_rated_default_nine() {
        let r = rule(RuleId::HoPersons);
        let t0 = t(T0);
        let mut s = RuleState::default();
        let f = "persons";
        assert!(feed1(&r, &mut s, t0, f, 9.0).is_empty());
        assert_eq!(
            feed1(&r, &mut s, secs(t0, 1), f, 10.0),
            ["raise alarm 10@9"]
        );
        // Margin 0 on a ">" rule: 9 persons is allowed again, so it clears.
        assert_eq!(feed1(&r, &mut s, secs(t0, 2), f, 9.0), ["clear 9"]);
        // The device's own rating wins.
        let rated12 = config(&[("rated_persons", 12.0)]);
        let mut s = RuleState::default();
        assert!(feed(&r, &mut s, t0, &[(f, n(10.0))], &rated12).is_empty());
        assert_eq!(
            feed(&r, &mut s, secs(t0, 1), &[(f, n(13.0))], &rated12),
            ["raise alarm 13@12"]
        );
    }

    #[test]
    fn ho_door_open_while_moving() {
        let r = rule(RuleId::HoDoor);
        let t0 = t(T0);
        let none = BTreeMap::new();
        let dir = |d: &str| Value::Text(d.into());
        let mut s = RuleState::default();
        // Loading at a landing: door open, cage still.
        assert!(
            feed(
                &r,
                &mut s,
                t0,
                &[
                    ("door_front_open", Value::Bool(true)),
                    ("direction", dir("still")),
                    ("speed_ms", n(0.0))
                ],
                &none
            )
            .is_empty()
        );
        assert_eq!(
            feed(
                &r,
                &mut s,
                secs(t0, 1),
                &[
                    ("door_back_open", Value::Bool(true)),
                    ("direction", dir("up"))
                ],
                &none
            ),
            ["raise alarm 1@1"]
        );
        // Speed > 0 counts as moving even if the direction says still: still raised.
        assert!(
            feed(
                &r,
                &mut s,
                secs(t0, 2),
                &[
                    ("door_back_open", Value::Bool(true)),
                    ("direction", dir("still")),
                    ("speed_ms", n(0.5))
                ],
                &none
            )
            .is_empty()
        );
        // Open door but motion unknown: cannot judge, state untouched.
        let before = s.clone();
        assert!(
            feed(
                &r,
                &mut s,
                secs(t0, 3),
                &[("door_front_open", Value::Bool(true))],
                &none
            )
            .is_empty()
        );
        assert_eq!(s, before);
        // Doors closed while moving down: safe.
        assert_eq!(
            feed(
                &r,
                &mut s,
                secs(t0, 4),
                &[
                    ("door_front_open", Value::Bool(false)),
                    ("door_back_open", Value::Bool(false)),
                    ("direction", dir("down"))
                ],
                &none
            ),
            ["clear 0"]
        );
    }

    #[test]
    fn ho_wind_alarm_only() {
        let r = rule(RuleId::HoWind);
        let t0 = t(T0);
        let mut s = RuleState::default();
        assert!(feed1(&r, &mut s, t0, "wind_ms", 10.7).is_empty());
        assert_eq!(
            feed1(&r, &mut s, secs(t0, 1), "wind_ms", 10.8),
            ["raise alarm 10.8@10.8"]
        );
    }

    #[test]
    fn du_pm10_levels_and_spray_with_hysteresis() {
        let r = rule(RuleId::DuPm10);
        let t0 = t(T0);
        let h = |i: i64| secs(t0, i * 600);
        let none = BTreeMap::new();
        let mut s = RuleState::default();
        assert!(hourly(&r, &mut s, h(0), Some(119.9), &[], &none).is_empty());
        // Warning at 0.8 × 150 = 120.
        assert_eq!(
            hourly(&r, &mut s, h(1), Some(120.0), &[], &none),
            ["raise warning 120@120"]
        );
        // 150 is not above the limit, but it reaches the spray start (150).
        assert_eq!(
            hourly(&r, &mut s, h(2), Some(150.0), &[], &none),
            ["spray_on 150@150"]
        );
        assert_eq!(
            hourly(&r, &mut s, h(3), Some(150.1), &[], &none),
            ["upgrade 150.1@150"]
        );
        // Alarm held while > 150 − 10 = 140.
        assert!(hourly(&r, &mut s, h(4), Some(141.0), &[], &none).is_empty());
        assert_eq!(
            hourly(&r, &mut s, h(5), Some(140.0), &[], &none),
            ["downgrade 140@120"]
        );
        // The spray runs until below stop (120); the warning holds down to 120 − 10 = 110.
        assert!(hourly(&r, &mut s, h(6), Some(120.0), &[], &none).is_empty());
        assert!(s.spray_on);
        assert_eq!(
            hourly(&r, &mut s, h(7), Some(119.9), &[], &none),
            ["spray_off 119.9"]
        );
        assert_eq!(
            hourly(&r, &mut s, h(8), Some(109.9), &[], &none),
            ["clear 109.9"]
        );
        // No current mean yet this hour: nothing.
        assert!(hourly(&r, &mut s, h(9), None, &[], &none).is_empty());
    }

    #[test]
    fn du_pm10_spray_values_from_the_spray_device_win() {
        let r = rule(RuleId::DuPm10);
        let t0 = t(T0);
        let spray = config(&[("start_value", 100.0), ("stop_value", 80.0)]);
        let mut s = RuleState::default();
        assert_eq!(
            hourly(&r, &mut s, t0, Some(100.0), &[], &spray),
            ["spray_on 100@100"]
        );
        assert!(hourly(&r, &mut s, secs(t0, 60), Some(80.0), &[], &spray).is_empty());
        assert_eq!(
            hourly(&r, &mut s, secs(t0, 120), Some(79.9), &[], &spray),
            ["spray_off 79.9"]
        );
        // Linkage removed by the project (and no spray device config): a running spray is
        // stopped, and a high mean starts none.
        let r = project_rule(
            RuleId::DuPm10,
            r#"{"DU-PM10": {"spray_start": null, "spray_stop": null}}"#,
        );
        let none = BTreeMap::new();
        let mut s = RuleState::default();
        assert_eq!(
            hourly(&r, &mut s, t0, Some(110.0), &[], &spray),
            ["spray_on 110@100"]
        );
        assert_eq!(
            hourly(&r, &mut s, secs(t0, 60), Some(110.0), &[], &none),
            ["spray_off 110"]
        );
        assert!(hourly(&r, &mut s, secs(t0, 120), Some(110.0), &[], &none).is_empty());
    }

    #[test]
    fn du_stuck_three_identical_complete_hours() {
        let r = rule(RuleId::DuStuck);
        let t0 = t(T0);
        let none = BTreeMap::new();
        let mut s = RuleState::default();
        // A gap breaks the run: 48.2, –, 48.2, 48.2 is a run of 2.
        assert!(
            hourly(
                &r,
                &mut s,
                t0,
                None,
                &[Some(48.2), None, Some(48.2), Some(48.2)],
                &none
            )
            .is_empty()
        );
        assert_eq!(
            hourly(
                &r,
                &mut s,
                secs(t0, 3600),
                None,
                &[Some(50.0), Some(48.2), Some(48.2), Some(48.2)],
                &none
            ),
            ["raise alarm 3@3"]
        );
        assert_eq!(
            hourly(
                &r,
                &mut s,
                secs(t0, 7200),
                None,
                &[Some(48.2), Some(48.2), Some(48.2), Some(48.3)],
                &none
            ),
            ["clear 1"]
        );
        // No complete hour at all: nothing to judge.
        assert!(hourly(&r, &mut s, secs(t0, 9000), None, &[], &none).is_empty());
    }

    #[test]
    fn du_offline_warns_after_one_interval_alarms_after_three() {
        let r = rule(RuleId::DuOffline);
        let t0 = t(T0);
        let live = |s: &mut RuleState, last: Option<DateTime<Utc>>, now| {
            brief(&evaluate(&r, s, &Input::Liveness { last_seen: last }, now))
        };
        let mut s = RuleState::default();
        assert!(live(&mut s, None, secs(t0, 999)).is_empty());
        // 60 s / 60 s = 1.0 interval: not more than 1.
        assert!(live(&mut s, Some(t0), secs(t0, 60)).is_empty());
        // 61 / 60 = 1.0166… > 1
        assert_eq!(
            live(&mut s, Some(t0), secs(t0, 61)),
            [format!("raise warning {}@1", 61.0 / 60.0)]
        );
        // 180 / 60 = 3.0: not more than 3.
        assert!(live(&mut s, Some(t0), secs(t0, 180)).is_empty());
        // 181 / 60 = 3.0166… > 3
        assert_eq!(
            live(&mut s, Some(t0), secs(t0, 181)),
            [format!("upgrade {}@3", 181.0 / 60.0)]
        );
        // Data again at t0+195; checked at t0+200: 5 / 60 = 0.0833…
        assert_eq!(
            live(&mut s, Some(secs(t0, 195)), secs(t0, 200)),
            [format!("clear {}", 5.0 / 60.0)]
        );
        // A per-project interval of 300 s: 301 / 300 > 1
        let r = project_rule(RuleId::DuOffline, r#"{"DU-OFFLINE": {"interval_s": 300}}"#);
        let mut s = RuleState::default();
        let out = evaluate(
            &r,
            &mut s,
            &Input::Liveness {
                last_seen: Some(t0),
            },
            secs(t0, 240),
        );
        assert!(out.is_empty());
        let out = evaluate(
            &r,
            &mut s,
            &Input::Liveness {
                last_seen: Some(t0),
            },
            secs(t0, 301),
        );
        assert_eq!(brief(&out), [format!("raise warning {}@1", 301.0 / 300.0)]);
    }

    #[test]
    fn noise_day_and_night_switch_at_22_00_shanghai() {
        // Durations zeroed so the boundary, not the window, is under test.
        let chain = [(
            Source::Project("prj-1".into()),
            patch(r#"{"NO-DAY": {"duration_s": 0}, "NO-NIGHT": {"duration_s": 0}}"#),
        )];
        let all = rules(&chain);
        let (day, night) = (find(&all, RuleId::NoDay), find(&all, RuleId::NoNight));
        let at2159 = t("2024-06-01T13:59:00Z"); // 21:59 +08:00
        let at2200 = t("2024-06-01T14:00:00Z"); // 22:00 +08:00
        let f = "noise_dba";

        // 60 dB(A): fine by day (< 65), too loud at night (> 55).
        let (mut sd, mut sn) = (RuleState::default(), RuleState::default());
        assert!(feed1(&day, &mut sd, at2159, f, 60.0).is_empty());
        assert!(feed1(&night, &mut sn, at2159, f, 60.0).is_empty());
        assert!(feed1(&day, &mut sd, at2200, f, 60.0).is_empty());
        assert_eq!(
            feed1(&night, &mut sn, at2200, f, 60.0),
            ["raise alarm 60@55"]
        );

        // 68 dB(A): a day warning (≥ 65, not > 70) that the night rule takes over at 22:00.
        let (mut sd, mut sn) = (RuleState::default(), RuleState::default());
        assert_eq!(
            feed1(&day, &mut sd, at2159, f, 68.0),
            ["raise warning 68@65"]
        );
        assert!(feed1(&night, &mut sn, at2159, f, 68.0).is_empty());
        assert_eq!(feed1(&day, &mut sd, at2200, f, 68.0), ["clear 68"]);
        assert_eq!(
            feed1(&night, &mut sn, at2200, f, 68.0),
            ["raise alarm 68@55"]
        );

        // 70 is not above the day limit; 70.1 is.
        let mut sd = RuleState::default();
        let noon = t("2024-06-01T04:00:00Z");
        assert_eq!(feed1(&day, &mut sd, noon, f, 70.0), ["raise warning 70@65"]);
        assert_eq!(
            feed1(&day, &mut sd, secs(noon, 1), f, 70.1),
            ["upgrade 70.1@70"]
        );
    }

    // ---- duration window, hysteresis, ordering ----

    #[test]
    fn duration_window_raises_only_after_the_condition_held() {
        let r = rule(RuleId::NoDay); // 60 s by default
        let t0 = t(T0);
        let f = "noise_dba";
        let mut s = RuleState::default();
        assert!(feed1(&r, &mut s, t0, f, 72.0).is_empty());
        assert_eq!(s.alarm_met_since, Some(t0));
        assert!(feed1(&r, &mut s, secs(t0, 30), f, 72.0).is_empty());
        // A dip below 65 breaks both runs.
        assert!(feed1(&r, &mut s, secs(t0, 40), f, 50.0).is_empty());
        assert_eq!((s.warn_met_since, s.alarm_met_since), (None, None));
        assert!(feed1(&r, &mut s, secs(t0, 50), f, 72.0).is_empty());
        // 50 + 59 = 109: 59 s is not yet 60.
        assert!(feed1(&r, &mut s, secs(t0, 109), f, 72.0).is_empty());
        assert_eq!(
            feed1(&r, &mut s, secs(t0, 110), f, 72.0),
            ["raise alarm 72@70"]
        );
        assert_eq!(s.since, Some(secs(t0, 110)));

        // Warning band first, then the alarm band: the warning run keeps its start.
        let mut s = RuleState::default();
        assert!(feed1(&r, &mut s, t0, f, 66.0).is_empty());
        assert!(feed1(&r, &mut s, secs(t0, 30), f, 72.0).is_empty());
        assert_eq!(
            feed1(&r, &mut s, secs(t0, 60), f, 72.0),
            ["raise warning 72@65"]
        );
        // Alarm run began at t0+30: 30 + 60 = 90.
        assert!(feed1(&r, &mut s, secs(t0, 89), f, 72.0).is_empty());
        assert_eq!(feed1(&r, &mut s, secs(t0, 90), f, 72.0), ["upgrade 72@70"]);
    }

    #[test]
    fn hysteresis_no_flapping_around_the_alarm_threshold() {
        // Alarm-only rule: 10.7 / 10.9 around 10.8 raises exactly once.
        let r = rule(RuleId::HoWind);
        let t0 = t(T0);
        let mut s = RuleState::default();
        let mut all = Vec::new();
        for (i, v) in [10.7, 10.9, 10.7, 10.9, 10.7, 10.9, 10.7]
            .into_iter()
            .enumerate()
        {
            all.extend(feed1(&r, &mut s, secs(t0, i as i64), "wind_ms", v));
        }
        assert_eq!(all, ["raise alarm 10.9@10.8"]);
        // Held down to 10.8 − 1.0 = 9.8.
        assert!(feed1(&r, &mut s, secs(t0, 10), "wind_ms", 9.8).is_empty());
        assert_eq!(
            feed1(&r, &mut s, secs(t0, 11), "wind_ms", 9.79),
            ["clear 9.79"]
        );

        // Moment 99.9 / 100.1 around 100: one warning (99.9 ≥ 90), one upgrade, then quiet.
        let r = rule(RuleId::TcMoment);
        let mut s = RuleState::default();
        let mut all = Vec::new();
        for (i, v) in [99.9, 100.1, 99.9, 100.1, 99.9, 100.1, 99.9]
            .into_iter()
            .enumerate()
        {
            all.extend(feed1(&r, &mut s, secs(t0, i as i64), "moment_pct", v));
        }
        assert_eq!(all, ["raise warning 99.9@90", "upgrade 100.1@100"]);
        assert_eq!(s.level, Some(Level::Alarm));
    }

    #[test]
    fn old_readings_do_not_flip_state_and_future_clocks_do_not_freeze_it() {
        let r = rule(RuleId::TcWind);
        let t0 = t(T0);
        let mut s = RuleState::default();
        assert_eq!(
            feed1(&r, &mut s, t0, "wind_ms", 11.0),
            ["raise alarm 11@10.8"]
        );
        let before = s.clone();
        // Back-filled calm reading from 10 s earlier: ignored.
        assert!(feed1(&r, &mut s, secs(t0, -10), "wind_ms", 2.0).is_empty());
        assert_eq!(s, before);
        assert_eq!(feed1(&r, &mut s, secs(t0, 10), "wind_ms", 2.0), ["clear 2"]);

        // A reading stamped a day ahead is evaluated at `now`, so the next honest one still counts.
        let mut s = RuleState::default();
        let ahead = reading(secs(t0, 86_400), &[("wind_ms", n(11.0))]);
        let cfg = BTreeMap::new();
        let out = evaluate(
            &r,
            &mut s,
            &Input::Reading {
                reading: &ahead,
                config: &cfg,
            },
            t0,
        );
        assert_eq!(brief(&out), ["raise alarm 11@10.8"]);
        assert_eq!(s.last_ts, Some(t0));
        assert_eq!(feed1(&r, &mut s, secs(t0, 5), "wind_ms", 2.0), ["clear 2"]);
    }

    #[test]
    fn disabling_a_rule_clears_what_it_raised() {
        let t0 = t(T0);
        let r = rule(RuleId::DuPm10);
        let mut s = RuleState::default();
        let none = BTreeMap::new();
        assert_eq!(
            hourly(&r, &mut s, t0, Some(160.0), &[], &none),
            ["raise alarm 160@150", "spray_on 160@150"]
        );
        let off = project_rule(RuleId::DuPm10, r#"{"DU-PM10": {"enabled": false}}"#);
        assert_eq!(
            hourly(&off, &mut s, secs(t0, 60), Some(170.0), &[], &none),
            ["clear 160", "spray_off 160"]
        );
        assert_eq!((s.level, s.spray_on), (None, false));
        assert!(hourly(&off, &mut s, secs(t0, 120), Some(170.0), &[], &none).is_empty());
    }

    #[test]
    fn state_and_transitions_round_trip_through_json() {
        let r = rule(RuleId::TcMoment);
        let mut s = RuleState::default();
        let t0 = t(T0);
        let reading = reading(t0, &[("moment_pct", n(101.0))]);
        let cfg = BTreeMap::new();
        let out = evaluate(
            &r,
            &mut s,
            &Input::Reading {
                reading: &reading,
                config: &cfg,
            },
            t0,
        );
        assert_eq!(
            out,
            [Transition::Raise {
                rule: RuleId::TcMoment,
                level: Level::Alarm,
                value: 101.0,
                threshold: 100.0,
                at: t0
            }]
        );
        assert_eq!(
            serde_json::to_value(&out[0]).unwrap(),
            serde_json::json!({"kind": "raise", "rule": "TC-MOMENT", "level": "alarm",
                "value": 101.0, "threshold": 100.0, "at": "2024-06-01T02:00:00Z"})
        );
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<RuleState>(&json).unwrap(), s);
        // A state stored before fields were added still loads.
        assert_eq!(
            serde_json::from_str::<RuleState>("{}").unwrap(),
            RuleState::default()
        );
    }

    // ---- override chain ----

    #[test]
    fn region_then_project_overrides_record_their_layer() {
        let chain = [
            (
                Source::Region("22".into()),
                patch(r#"{"TC-WIND": {"alarm": 10.0}}"#),
            ),
            (
                Source::Region("2201".into()),
                patch(r#"{"TC-WIND": {"warn": 7.0, "alarm": 9.5}}"#),
            ),
            (
                Source::Region("220102".into()),
                patch(
                    r#"{"DU-PM10": {"warn": 64, "alarm": 80, "spray_start": 80, "spray_stop": 64}}"#,
                ),
            ),
            (
                Source::Project("prj-1".into()),
                patch(r#"{"TC-WIND": {"alarm": 9.0, "duration_s": 5}}"#),
            ),
        ];
        // Each layer validates against the layers below it.
        for i in 0..chain.len() {
            chain[i].1.validate(&rules(&chain[..i])).unwrap();
        }
        let all = rules(&chain);
        let wind = find(&all, RuleId::TcWind);
        assert_eq!(
            (wind.values.warn, wind.values.alarm, wind.values.duration_s),
            (Some(7.0), Some(9.0), 5)
        );
        assert_eq!(wind.set_by["warn"], Source::Region("2201".into()));
        assert_eq!(wind.set_by["alarm"], Source::Project("prj-1".into()));
        assert_eq!(wind.set_by["duration_s"], Source::Project("prj-1".into()));
        assert_eq!(wind.set_by["clear_margin"], Source::Default);
        assert!(!wind.set_by.contains_key("spray_start"));
        let pm = find(&all, RuleId::DuPm10);
        assert_eq!((pm.values.warn, pm.values.alarm), (Some(64.0), Some(80.0)));
        assert_eq!(pm.set_by["spray_stop"], Source::Region("220102".into()));
        // Untouched rules stay at the defaults.
        assert_eq!(find(&all, RuleId::TcMoment), rule(RuleId::TcMoment));

        // The API shape: values flattened next to the chain.
        let json = serde_json::to_value(&wind).unwrap();
        assert_eq!(json["alarm"], 9.0);
        assert_eq!(json["alarm_cmp"], ">=");
        assert_eq!(
            json["set_by"]["alarm"],
            serde_json::json!({"layer": "project", "id": "prj-1"})
        );
        assert_eq!(
            json["set_by"]["enabled"],
            serde_json::json!({"layer": "default"})
        );
        assert_eq!(serde_json::from_value::<EffectiveRule>(json).unwrap(), wind);

        // The overridden rule drives the evaluator: 9.0 now alarms, after 5 s.
        let mut s = RuleState::default();
        let t0 = t(T0);
        assert!(feed1(&wind, &mut s, t0, "wind_ms", 9.0).is_empty());
        assert_eq!(
            feed1(&wind, &mut s, secs(t0, 5), "wind_ms", 9.0),
            ["raise alarm 9@9"]
        );
    }

    #[test]
    fn region_layers_widest_first() {
        assert_eq!(region_layers("220102"), ["22", "2201", "220102"]);
        assert_eq!(region_layers("220100"), ["22", "2201"]);
        assert_eq!(region_layers("220000"), ["22"]);
        assert!(region_layers("2").is_empty());
    }

    #[test]
    fn patch_json_distinguishes_absent_null_and_value() {
        let p = patch(r#"{"TC-WIND": {"warn": null, "alarm": 9.0}}"#);
        let params = &p.0["TC-WIND"];
        assert_eq!(
            (params.warn, params.alarm, params.duration_s),
            (Some(None), Some(Some(9.0)), None)
        );
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"TC-WIND": {"warn": null, "alarm": 9.0}})
        );
        p.validate(&rules(&[])).unwrap();
        let wind = find(
            &rules(&[(Source::Project("prj-1".into()), p)]),
            RuleId::TcWind,
        );
        assert_eq!(wind.values.warn, None);
        // A misspelt parameter is refused by name.
        let err = serde_json::from_str::<Patch>(r#"{"TC-WIND": {"warm": 7}}"#).unwrap_err();
        assert!(err.to_string().contains("warm"), "{err}");
    }

    #[test]
    fn patch_validation_names_the_field() {
        let base = rules(&[]);
        let err = |json: &str| patch(json).validate(&base).unwrap_err();
        let e = err(r#"{"TC-FOO": {"warn": 1}}"#);
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("TC-FOO", "unknown rule id")
        );
        let e = err(r#"{"TC-MOMENT": {"warn": 100}}"#);
        assert_eq!(e.field, "TC-MOMENT.warn");
        assert_eq!(
            e.to_string(),
            "TC-MOMENT.warn: warn (100) must be below alarm (100)"
        );
        assert_eq!(
            err(r#"{"TC-MOMENT": {"alarm": 85}}"#).field,
            "TC-MOMENT.alarm"
        );
        let e = err(r#"{"NO-DAY": {"duration_s": -5}}"#);
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("NO-DAY.duration_s", "must not be negative")
        );
        for (json, field) in [
            (
                r#"{"NO-DAY": {"duration_s": 2592001}}"#,
                "NO-DAY.duration_s",
            ),
            (
                r#"{"NO-DAY": {"duration_s": 9223372036854775807}}"#,
                "NO-DAY.duration_s",
            ),
            (
                r#"{"TC-LOAD": {"escalate_enterprise_s": 2592001}}"#,
                "TC-LOAD.escalate_enterprise_s",
            ),
            (
                r#"{"DU-OFFLINE": {"interval_s": 2592001}}"#,
                "DU-OFFLINE.interval_s",
            ),
        ] {
            let e = err(json);
            assert_eq!(e.field, field, "{json}");
            assert!(e.message.contains("30 days"), "{json}: {e}");
        }
        assert_eq!(
            err(r#"{"TC-LOAD": {"escalate_enterprise_s": -1}}"#).field,
            "TC-LOAD.escalate_enterprise_s"
        );
        assert_eq!(
            err(r#"{"TC-LOAD": {"escalate_government_s": 600}}"#).field,
            "TC-LOAD.escalate_government_s"
        );
        assert_eq!(
            err(r#"{"TC-MOMENT": {"clear_margin": -1}}"#).field,
            "TC-MOMENT.clear_margin"
        );
        let e = err(r#"{"TC-MOMENT": {"spray_start": 10}}"#);
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("TC-MOMENT.spray_start", "does not apply to TC-MOMENT")
        );
        assert_eq!(err(r#"{"HO-DOOR": {"alarm": 2}}"#).field, "HO-DOOR.alarm");
        assert_eq!(
            err(r#"{"DU-PM10": {"spray_stop": 160}}"#).field,
            "DU-PM10.spray_stop"
        );
        assert_eq!(
            err(r#"{"DU-PM10": {"spray_start": null}}"#).field,
            "DU-PM10.spray_stop"
        );
        assert_eq!(
            err(r#"{"HO-PERSONS": {"alarm": 8.5}}"#).field,
            "HO-PERSONS.alarm"
        );
        assert_eq!(
            err(r#"{"DU-STUCK": {"alarm": null}}"#).field,
            "DU-STUCK.alarm"
        );
        assert_eq!(
            err(r#"{"DU-OFFLINE": {"interval_s": 0}}"#).field,
            "DU-OFFLINE.interval_s"
        );
        // HO-WIND has no warning, so removing the alarm leaves nothing to watch.
        assert_eq!(
            err(r#"{"HO-WIND": {"alarm": null}}"#).field,
            "HO-WIND.alarm"
        );

        // Checked against the layers below: the region lowered the alarm to 9.0.
        let region = [(
            Source::Region("22".into()),
            patch(r#"{"TC-WIND": {"alarm": 9.0}}"#),
        )];
        let e = patch(r#"{"TC-WIND": {"warn": 9.5}}"#)
            .validate(&rules(&region))
            .unwrap_err();
        assert_eq!(e.field, "TC-WIND.warn");

        // A good patch passes.
        patch(r#"{"TC-WIND": {"warn": 7.5, "alarm": 10.0}, "NO-NIGHT": {"duration_s": 120}, "HO-PERSONS": {"alarm": 8}}"#)
            .validate(&base)
            .unwrap();
    }

    // ---- escalation ----

    #[test]
    fn only_unacknowledged_alarms_escalate_after_30_min_and_2_h() {
        let opened = t("2024-06-01T02:00:00Z");
        let d = EscalationDelays::default();
        let tier = |level, ack, now: &str| escalation_tier(level, opened, ack, t(now), &d);
        assert_eq!(
            tier(Level::Alarm, false, "2024-06-01T02:29:59Z"),
            Tier::Project
        );
        assert_eq!(
            tier(Level::Alarm, false, "2024-06-01T02:30:00Z"),
            Tier::Enterprise
        );
        assert_eq!(
            tier(Level::Alarm, false, "2024-06-01T03:59:59Z"),
            Tier::Enterprise
        );
        assert_eq!(
            tier(Level::Alarm, false, "2024-06-01T04:00:00Z"),
            Tier::Government
        );
        assert_eq!(
            tier(Level::Alarm, true, "2024-06-01T05:00:00Z"),
            Tier::Project
        );
        assert_eq!(
            tier(Level::Warning, false, "2024-06-02T02:00:00Z"),
            Tier::Project
        );
        // Clock skew: an alarm "opened" in the future stays in the project.
        assert_eq!(
            tier(Level::Alarm, false, "2024-06-01T01:00:00Z"),
            Tier::Project
        );
        // Per-rule delays (10 min / 20 min).
        let r = project_rule(
            RuleId::TcMoment,
            r#"{"TC-MOMENT": {"escalate_enterprise_s": 600, "escalate_government_s": 1200}}"#,
        );
        let at = |s| escalation_tier(Level::Alarm, opened, false, t(s), &r.escalation());
        assert_eq!(at("2024-06-01T02:10:00Z"), Tier::Enterprise);
        assert_eq!(at("2024-06-01T02:20:00Z"), Tier::Government);
    }
}
