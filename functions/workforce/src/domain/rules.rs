//! The gate rules as configuration (`functions/workforce/config/workforce.json`), versioned and
//! per region, like the safety-fund's fee rules.
//!
//! A version holds named presets — age limits (年龄), three-level training hours (三级安全教育),
//! valid attendance days (有效考勤) — the national `default` settings, and `regions`: overrides
//! keyed by the significant digits of a GB/T 2260 code (`22` Jilin, `2201` Changchun, `220102`
//! one district). For a project the most specific matching key wins; each setting it leaves out
//! comes from `default`, and a preset set to `null` is off. [`WorkforceRulesSet::for_region`]
//! resolves that into [`GateRules`], which name the version and the region key they came from,
//! so every decision records them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use smartsite_shared::config::{self, Versioned};
use smartsite_shared::domain::tenancy::RegionCode;

use super::person::Sex;
use super::worker::{TrainingLevel, WorkType};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RulesError {
    #[error("workforce rules: {0}")]
    Config(String),
    #[error("no workforce rules version is in force on {0}")]
    NoneInForce(NaiveDate),
}

fn config_err(m: impl Into<String>) -> RulesError {
    RulesError::Config(m.into())
}

/// One value per sex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BySex<T> {
    pub male: T,
    pub female: T,
}

impl<T: Copy> BySex<T> {
    pub fn of(&self, sex: Sex) -> T {
        match sex {
            Sex::Male => self.male,
            Sex::Female => self.female,
        }
    }
}

/// A regional age limit: barred from site work at `site_max_age` and above, from the high-risk
/// work types at `high_risk_max_age` and above (a threshold includes its value).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgePreset {
    #[serde(default)]
    pub source: String,
    pub site_max_age: BySex<u32>,
    pub high_risk_max_age: BySex<u32>,
    pub high_risk_work_types: BTreeSet<WorkType>,
}

/// Three-level training: each level needs a passed record and at least these hours (学时).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingPreset {
    #[serde(default)]
    pub source: String,
    pub hours: BTreeMap<TrainingLevel, u32>,
}

/// What makes a day of attendance valid: at least `min_punches`, the earliest and the latest at
/// least `min_span_minutes` apart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidDayPreset {
    #[serde(default)]
    pub source: String,
    pub min_punches: u32,
    pub min_span_minutes: u32,
}

impl ValidDayPreset {
    /// Whether a day with these punches (passes of the gate, any order) is a valid day.
    pub fn is_valid(&self, punches: &[DateTime<Utc>]) -> bool {
        let (Some(first), Some(last)) = (punches.iter().min(), punches.iter().max()) else {
            return false;
        };
        punches.len() >= self.min_punches as usize
            && (*last - *first).num_seconds() >= i64::from(self.min_span_minutes) * 60
    }
}

/// The national settings of a version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Younger than this on the day: `under_age`.
    pub min_age: u32,
    pub age_preset: Option<String>,
    pub training_preset: Option<String>,
    /// Work types that need a valid special-operation certificate.
    pub special_work_types: BTreeSet<WorkType>,
    pub valid_day: String,
}

/// `Some(v)` for a present field, `null` included (`Some(None)`): absent is `None` via default.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// A region's overrides; an absent field keeps the default.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionSettings {
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub min_age: Option<u32>,
    #[serde(default, deserialize_with = "present")]
    pub age_preset: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    pub training_preset: Option<Option<String>>,
    #[serde(default)]
    pub special_work_types: Option<BTreeSet<WorkType>>,
    #[serde(default)]
    pub valid_day: Option<String>,
}

/// One version of the rules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkforceRules {
    pub version: String,
    pub effective_from: NaiveDate,
    #[serde(default)]
    pub notes: String,
    /// The national 工种 dictionary: code → name.
    pub work_types: BTreeMap<String, String>,
    #[serde(default)]
    pub age_presets: BTreeMap<String, AgePreset>,
    #[serde(default)]
    pub training_presets: BTreeMap<String, TrainingPreset>,
    pub valid_day_presets: BTreeMap<String, ValidDayPreset>,
    pub default: Settings,
    #[serde(default)]
    pub regions: BTreeMap<String, RegionSettings>,
}

/// The rules that apply to one project: what [`super::decide`] and the attendance rules read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GateRules {
    pub version: String,
    /// The `regions` key that applied, `""` for the national default.
    pub region: String,
    /// The project's region the rules were resolved for (bans apply by region).
    #[serde(skip)]
    pub region_code: RegionCode,
    pub min_age: u32,
    pub age: Option<AgePreset>,
    pub training: Option<TrainingPreset>,
    pub special_work_types: BTreeSet<WorkType>,
    pub valid_day: ValidDayPreset,
}

impl Versioned for WorkforceRules {
    fn version(&self) -> &str {
        &self.version
    }
    fn effective_from(&self) -> NaiveDate {
        self.effective_from
    }
}

impl WorkforceRules {
    /// Whether `code` is in the 工种 dictionary.
    pub fn knows_work_type(&self, code: &WorkType) -> bool {
        self.work_types.contains_key(code.as_str())
    }

    fn check_work_types<'a>(
        &self,
        what: &str,
        types: impl IntoIterator<Item = &'a WorkType>,
    ) -> Result<(), RulesError> {
        for t in types {
            if !self.knows_work_type(t) {
                return Err(config_err(format!(
                    "{}: {what} names work type {t}, not in work_types",
                    self.version
                )));
            }
        }
        Ok(())
    }

    /// Checks one version: names resolve, codes exist, numbers are sensible.
    pub fn validate(&self) -> Result<(), RulesError> {
        let v = &self.version;
        if v.trim().is_empty() {
            return Err(config_err("version is empty"));
        }
        for code in self.work_types.keys() {
            WorkType::parse("work_types", code)
                .map_err(|_| config_err(format!("{v}: work type `{code}` is not 3-4 digits")))?;
        }
        for (name, p) in &self.age_presets {
            self.check_work_types(&format!("age preset {name}"), &p.high_risk_work_types)?;
            for sex in [Sex::Male, Sex::Female] {
                if p.high_risk_max_age.of(sex) > p.site_max_age.of(sex) {
                    return Err(config_err(format!(
                        "{v}: age preset {name}: the high-risk limit exceeds the site limit"
                    )));
                }
            }
        }
        for (name, p) in &self.training_presets {
            if TrainingLevel::ALL.iter().any(|l| !p.hours.contains_key(l)) {
                return Err(config_err(format!(
                    "{v}: training preset {name} needs hours for company, project and team"
                )));
            }
        }
        let mut settings: Vec<(String, Settings)> = vec![("default".into(), self.default.clone())];
        for (key, r) in &self.regions {
            let region = RegionCode::parse("regions", &format!("{key:0<6}"))
                .ok()
                .filter(|c| c.prefix() == key);
            if region.is_none() {
                return Err(config_err(format!(
                    "{v}: region key `{key}` is not the significant digits of a GB/T 2260 code (22, 2201, 220102)"
                )));
            }
            settings.push((format!("region {key}"), self.apply(r)));
        }
        for (what, s) in settings {
            self.check_work_types(&format!("{what} special_work_types"), &s.special_work_types)?;
            let missing = |kind: &str, name: &str| {
                config_err(format!(
                    "{v}: {what} names {kind} preset `{name}`, which does not exist"
                ))
            };
            if let Some(a) = &s.age_preset
                && !self.age_presets.contains_key(a)
            {
                return Err(missing("age", a));
            }
            if let Some(t) = &s.training_preset
                && !self.training_presets.contains_key(t)
            {
                return Err(missing("training", t));
            }
            if !self.valid_day_presets.contains_key(&s.valid_day) {
                return Err(missing("valid-day", &s.valid_day));
            }
        }
        Ok(())
    }

    /// The default with a region's overrides applied.
    fn apply(&self, r: &RegionSettings) -> Settings {
        let d = &self.default;
        Settings {
            min_age: r.min_age.unwrap_or(d.min_age),
            age_preset: r.age_preset.clone().unwrap_or_else(|| d.age_preset.clone()),
            training_preset: r
                .training_preset
                .clone()
                .unwrap_or_else(|| d.training_preset.clone()),
            special_work_types: r
                .special_work_types
                .clone()
                .unwrap_or_else(|| d.special_work_types.clone()),
            valid_day: r.valid_day.clone().unwrap_or_else(|| d.valid_day.clone()),
        }
    }

    /// The rules of a project in `region`: the most specific `regions` key that covers it.
    pub fn for_region(&self, region: &RegionCode) -> GateRules {
        let code = region.as_str();
        let best = self
            .regions
            .iter()
            .filter(|(k, _)| code.starts_with(k.as_str()))
            .max_by_key(|(k, _)| k.len());
        let (key, s) = match best {
            Some((k, r)) => (k.clone(), self.apply(r)),
            None => (String::new(), self.default.clone()),
        };
        GateRules {
            version: self.version.clone(),
            region: key,
            region_code: region.clone(),
            min_age: s.min_age,
            age: s.age_preset.and_then(|n| self.age_presets.get(&n).cloned()),
            training: s
                .training_preset
                .and_then(|n| self.training_presets.get(&n).cloned()),
            special_work_types: s.special_work_types,
            // validate() proved the name resolves.
            valid_day: self.valid_day_presets.get(&s.valid_day).cloned().unwrap_or(
                ValidDayPreset {
                    source: String::new(),
                    min_punches: 1,
                    min_span_minutes: 0,
                },
            ),
        }
    }
}

/// All versions, ordered by `effective_from`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkforceRulesSet {
    versions: Vec<WorkforceRules>,
}

impl WorkforceRulesSet {
    /// Parses and validates a configuration document (`{"versions": [...]}`).
    pub fn from_json(json: &str) -> Result<Self, RulesError> {
        let set: WorkforceRulesSet =
            serde_json::from_str(json).map_err(|e| config_err(e.to_string()))?;
        WorkforceRulesSet::new(set.versions)
    }

    /// The rules shipped with the code.
    pub fn default_rules() -> Result<Self, RulesError> {
        WorkforceRulesSet::from_json(super::DEFAULT_RULES_JSON)
    }

    /// Validates every version; versions must have distinct names and start dates.
    pub fn new(versions: Vec<WorkforceRules>) -> Result<Self, RulesError> {
        for v in &versions {
            v.validate()?;
        }
        Ok(WorkforceRulesSet {
            versions: config::order_versions(versions).map_err(config_err)?,
        })
    }

    pub fn versions(&self) -> &[WorkforceRules] {
        &self.versions
    }

    /// The version in force on `day`: the latest with `effective_from ≤ day`.
    pub fn in_force(&self, day: NaiveDate) -> Result<&WorkforceRules, RulesError> {
        config::in_force(&self.versions, day).ok_or(RulesError::NoneInForce(day))
    }

    /// The gate rules of a project in `region` on `day`.
    pub fn for_region(&self, region: &RegionCode, day: NaiveDate) -> Result<GateRules, RulesError> {
        Ok(self.in_force(day)?.for_region(region))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn region(s: &str) -> RegionCode {
        RegionCode::parse("r", s).unwrap()
    }

    fn shipped() -> WorkforceRulesSet {
        WorkforceRulesSet::default_rules().unwrap()
    }

    #[test]
    fn shipped_rules_are_national_with_jilin_from_2023_09_01() {
        let set = shipped();
        let national = set.for_region(&region("310101"), d("2026-06-15")).unwrap();
        assert_eq!(
            (national.version.as_str(), national.region.as_str()),
            ("cn-2023.1", "")
        );
        assert_eq!(national.min_age, 18);
        assert_eq!(
            national.age, None,
            "age presets are off unless a region enables one"
        );
        let hours = &national.training.as_ref().unwrap().hours;
        assert_eq!(
            (
                hours[&TrainingLevel::Company],
                hours[&TrainingLevel::Project],
                hours[&TrainingLevel::Team]
            ),
            (15, 15, 20)
        );
        let special: Vec<&str> = national
            .special_work_types
            .iter()
            .map(WorkType::as_str)
            .collect();
        assert_eq!(special, ["030", "130", "170", "180"]);
        assert_eq!(
            (
                national.valid_day.min_punches,
                national.valid_day.min_span_minutes
            ),
            (1, 0)
        );

        let jilin = set.for_region(&region("220102"), d("2023-09-01")).unwrap();
        assert_eq!(
            (jilin.version.as_str(), jilin.region.as_str()),
            ("cn-2023.1", "22")
        );
        assert_eq!(
            (
                jilin.valid_day.min_punches,
                jilin.valid_day.min_span_minutes
            ),
            (2, 240)
        );
        assert_eq!(jilin.training, national.training);
        // The day before Jilin's rule took effect, the 2019 version applies.
        let before = set.for_region(&region("220102"), d("2023-08-31")).unwrap();
        assert_eq!(
            (before.version.as_str(), before.region.as_str()),
            ("cn-2019.1", "")
        );
        assert_eq!(before.valid_day.min_punches, 1);
        assert_eq!(
            set.for_region(&region("220102"), d("2019-02-28")),
            Err(RulesError::NoneInForce(d("2019-02-28")))
        );
    }

    fn with_regions(regions: serde_json::Value) -> Result<WorkforceRulesSet, RulesError> {
        let mut doc: serde_json::Value =
            serde_json::from_str(super::super::DEFAULT_RULES_JSON).unwrap();
        doc["versions"][1]["regions"] = regions;
        WorkforceRulesSet::from_json(&doc.to_string())
    }

    #[test]
    fn the_most_specific_region_wins_and_null_turns_a_preset_off() {
        let set = with_regions(serde_json::json!({
            "31": {"age_preset": "shanghai"},
            "3101": {"training_preset": null, "min_age": 16},
            "310104": {"age_preset": null}
        }))
        .unwrap();
        let day = d("2026-06-15");
        // 310230 (the former Chongming county) lies under 31 but not under 3101.
        let sh = set.for_region(&region("310230"), day).unwrap();
        assert_eq!(sh.region, "31");
        assert_eq!(sh.age.as_ref().unwrap().site_max_age.of(Sex::Female), 50);
        // 3101 keeps the default age preset (off) — overrides do not stack — and drops training.
        let city = set.for_region(&region("310101"), day).unwrap();
        assert_eq!((city.region.as_str(), city.min_age), ("3101", 16));
        assert_eq!((city.age.is_none(), city.training.is_none()), (true, true));
        let district = set.for_region(&region("310104"), day).unwrap();
        assert_eq!(district.region, "310104");
        assert!(district.age.is_none() && district.training.is_some());
        assert_eq!(set.for_region(&region("320100"), day).unwrap().region, "");
    }

    #[test]
    fn configurations_that_do_not_resolve_are_refused() {
        for (regions, why) in [
            (
                serde_json::json!({"31": {"age_preset": "beijing"}}),
                "does not exist",
            ),
            (serde_json::json!({"3100": {}}), "significant digits"),
            (serde_json::json!({"99": {}}), "significant digits"),
            (
                serde_json::json!({"22": {"special_work_types": ["999"]}}),
                "not in work_types",
            ),
            (
                serde_json::json!({"22": {"valid_day": "none"}}),
                "does not exist",
            ),
            (
                serde_json::json!({"22": {"valdi_day": "one-punch"}}),
                "unknown field",
            ),
        ] {
            let e = with_regions(regions.clone()).unwrap_err().to_string();
            assert!(e.contains(why), "{regions}: {e}");
        }
        assert!(WorkforceRulesSet::from_json(r#"{"versions": []}"#).is_err());
    }

    #[test]
    fn a_valid_day_needs_its_punches_and_span() {
        let jilin = shipped()
            .for_region(&region("220102"), d("2026-06-15"))
            .unwrap()
            .valid_day;
        let t = |h: u32, m: u32, s: u32| d("2026-06-15").and_hms_opt(h, m, s).unwrap().and_utc();
        assert!(!jilin.is_valid(&[]));
        assert!(!jilin.is_valid(&[t(0, 0, 0)]));
        // Exactly 4 h apart is valid; a second less is not.
        assert!(jilin.is_valid(&[t(12, 0, 0), t(8, 0, 0)]));
        assert!(!jilin.is_valid(&[t(8, 0, 0), t(11, 59, 59)]));
        assert!(jilin.is_valid(&[t(8, 0, 0), t(10, 0, 0), t(12, 0, 0)]));
        let national = shipped()
            .for_region(&region("110101"), d("2026-06-15"))
            .unwrap()
            .valid_day;
        assert!(national.is_valid(&[t(8, 0, 0)]));
    }
}
