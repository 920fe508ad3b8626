//! The person (one per integrator, across projects) and the enrolment (进场 … 退场) of a person
//! in a project, with its contract, the person's certificates and training records.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use smartsite_shared::domain::tenancy::{ProjectId, RegionCode};
use smartsite_shared::ids::FieldError;

use super::person::Sex;
use super::{IdCardType, TeamId, WorkerId};

/// A national 工种 code (`workType`, DOMAIN.md §11.4.2), e.g. `130` 建筑电工; which codes exist
/// is part of the rules (`work_types`), checked where the rules are at hand.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct WorkType(String);

impl WorkType {
    /// The shape of a code: 3 or 4 digits.
    pub fn parse(field: &str, s: &str) -> Result<WorkType, FieldError> {
        if (3..=4).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(WorkType(s.to_owned()))
        } else {
            Err(FieldError::new(
                field,
                "a national work type (工种) code is 3 or 4 digits, e.g. \"130\"",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for WorkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `workRole`: `10` manager (管理人员), `20` worker (建筑工人).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum WorkRole {
    #[serde(rename = "10")]
    Manager,
    #[serde(rename = "20")]
    Worker,
}

/// Until when the ID document is valid: a date, or `"long_term"` (长期).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdValidUntil {
    Date(NaiveDate),
    LongTerm,
}

impl IdValidUntil {
    /// Valid on `day`: a document valid until today is valid today.
    pub fn valid_on(self, day: NaiveDate) -> bool {
        match self {
            IdValidUntil::Date(d) => day <= d,
            IdValidUntil::LongTerm => true,
        }
    }
}

impl Serialize for IdValidUntil {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IdValidUntil::Date(d) => d.serialize(s),
            IdValidUntil::LongTerm => s.serialize_str("long_term"),
        }
    }
}

impl<'de> Deserialize<'de> for IdValidUntil {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s == "long_term" {
            return Ok(IdValidUntil::LongTerm);
        }
        NaiveDate::parse_from_str(&s, "%Y-%m-%d")
            .map(IdValidUntil::Date)
            .map_err(|_| serde::de::Error::custom("expected a date YYYY-MM-DD or \"long_term\""))
    }
}

/// 劳动合同 or, where no employment relation is established, 用工书面协议 (建市〔2022〕59号).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractKind {
    LabourContract,
    WrittenAgreement,
}

/// The contract of an enrolment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Contract {
    pub kind: ContractKind,
    pub start_date: NaiveDate,
    /// Absent: open-ended. The contract is in force on its end date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<NaiveDate>,
    /// The agreed daily wage (fen), the base of wage sheets.
    pub day_rate_fen: i64,
}

impl Contract {
    /// Checks the contract's own consistency (dates in order, a positive rate in bounds).
    pub fn check(self) -> Result<Contract, FieldError> {
        use smartsite_shared::domain::bounds;
        bounds::date("contract.start_date", self.start_date)?;
        if let Some(end) = self.end_date {
            bounds::date("contract.end_date", end)?;
            if end < self.start_date {
                return Err(FieldError::new(
                    "contract.end_date",
                    "a contract cannot end before it starts",
                ));
            }
        }
        bounds::positive_amount("contract.day_rate_fen", self.day_rate_fen)?;
        Ok(self)
    }

    /// Whether the contract is in force on `day` (both ends included).
    pub fn in_force(&self, day: NaiveDate) -> bool {
        self.start_date <= day && self.end_date.is_none_or(|e| day <= e)
    }
}

/// Kinds of certificates a worker holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CertificateKind {
    /// 建筑施工特种作业操作资格证书 (建质〔2008〕75号): what special work types need.
    SpecialOperation,
    /// 职业技能等级证书.
    Skill,
    /// 岗位证书 (managers' posts).
    Post,
    Other,
}

/// A certificate of a person, for one work type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Certificate {
    pub kind: CertificateKind,
    pub number: String,
    #[schema(value_type = String)]
    pub work_type: WorkType,
    /// Valid through this day.
    pub valid_until: NaiveDate,
}

/// The three levels of entry safety training (三级安全教育).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum TrainingLevel {
    Company,
    Project,
    Team,
}

impl TrainingLevel {
    pub const ALL: [TrainingLevel; 3] = [
        TrainingLevel::Company,
        TrainingLevel::Project,
        TrainingLevel::Team,
    ];
}

/// One training a person took.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrainingRecord {
    pub level: TrainingLevel,
    /// 学时.
    pub hours: u32,
    pub completed_on: NaiveDate,
    pub passed: bool,
    pub recorded_at: String,
    pub recorded_by: String,
}

/// A ban (黑名单) on a person: in force from `from` through `until` (open-ended without), in a
/// region and below it (everywhere without).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerBan {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub region_code: Option<RegionCode>,
    pub from: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<NaiveDate>,
    pub reason: String,
}

impl WorkerBan {
    pub fn applies(&self, region: &RegionCode, day: NaiveDate) -> bool {
        self.from <= day
            && self.until.is_none_or(|u| day <= u)
            && self.region_code.as_ref().is_none_or(|r| r.covers(region))
    }
}

/// A person as the platform knows them, without the clear numbers (those are sealed beside the
/// record, see the service's `pii` module).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    pub id: WorkerId,
    pub name: String,
    pub id_card_type: IdCardType,
    pub id_number_masked: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_masked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_card_masked: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bank_name: Option<String>,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub id_valid_until: IdValidUntil,
    #[serde(default)]
    pub certificates: Vec<Certificate>,
    #[serde(default)]
    pub training: Vec<TrainingRecord>,
    #[serde(default)]
    pub blacklist: Vec<WorkerBan>,
    pub created_at: String,
}

impl Worker {
    /// Adds or replaces certificates (one per kind and number).
    pub fn merge_certificates(&mut self, certificates: Vec<Certificate>) {
        for c in certificates {
            self.certificates
                .retain(|old| !(old.kind == c.kind && old.number == c.number));
            self.certificates.push(c);
        }
    }

    /// Hours of passed training of `level` completed by `day`.
    pub fn training_hours(&self, level: TrainingLevel, day: NaiveDate) -> Option<u32> {
        let mut passed = self
            .training
            .iter()
            .filter(|t| t.level == level && t.passed && t.completed_on <= day)
            .peekable();
        passed.peek()?;
        Some(passed.map(|t| t.hours).sum())
    }
}

/// One stay on site: entered on `entry_date`, left on `exit_date` (gone that day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Stint {
    pub entry_date: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_date: Option<NaiveDate>,
}

impl Stint {
    fn contains(&self, day: NaiveDate) -> bool {
        self.entry_date <= day && self.exit_date.is_none_or(|x| day < x)
    }
}

/// Where a person stands with a project on a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSite {
    /// Not yet entered (or never): `not_enrolled`.
    NotEnrolled,
    Enrolled,
    /// Left before or on that day, and not back: `exited`.
    Exited,
}

/// A person's enrolment in a project: the current stint, the ones before, the terms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrolment {
    pub project_id: ProjectId,
    pub worker_id: WorkerId,
    pub team_id: TeamId,
    pub work_type: WorkType,
    pub work_role: WorkRole,
    pub entry_date: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_date: Option<NaiveDate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contract: Option<Contract>,
    /// Earlier stints in this project, oldest first.
    #[serde(default)]
    pub previous: Vec<Stint>,
    pub enrolled_at: String,
}

/// Why an exit (退场) is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExitError {
    #[error("the worker has already exited this project on {0}")]
    AlreadyExited(NaiveDate),
    #[error("the exit date cannot precede the entry date {0}")]
    BeforeEntry(NaiveDate),
    #[error("the exit date cannot lie in the future (today is {0} in Asia/Shanghai)")]
    InFuture(NaiveDate),
}

impl Enrolment {
    pub fn is_active(&self) -> bool {
        self.exit_date.is_none()
    }

    pub fn stint(&self) -> Stint {
        Stint {
            entry_date: self.entry_date,
            exit_date: self.exit_date,
        }
    }

    /// The person's standing on `day`, by every stint in the project.
    pub fn on_site(&self, day: NaiveDate) -> OnSite {
        let stints = || self.previous.iter().copied().chain([self.stint()]);
        if stints().any(|s| s.contains(day)) {
            OnSite::Enrolled
        } else if stints().all(|s| day < s.entry_date) {
            OnSite::NotEnrolled
        } else {
            OnSite::Exited
        }
    }

    /// Records the exit (退场) on `date`: not before the entry, not after `today`.
    pub fn exit(&mut self, date: NaiveDate, today: NaiveDate) -> Result<(), ExitError> {
        if let Some(d) = self.exit_date {
            return Err(ExitError::AlreadyExited(d));
        }
        if date < self.entry_date {
            return Err(ExitError::BeforeEntry(self.entry_date));
        }
        if date > today {
            return Err(ExitError::InFuture(today));
        }
        self.exit_date = Some(date);
        Ok(())
    }

    /// Starts a new stint after an exit: the one that ended is kept in `previous`. The new entry
    /// may not precede the last exit.
    pub fn reenter(&mut self, next: Enrolment) -> Result<(), NaiveDate> {
        let Some(left) = self.exit_date else {
            return Err(self.entry_date);
        };
        if next.entry_date < left {
            return Err(left);
        }
        let mut previous = std::mem::take(&mut self.previous);
        previous.push(self.stint());
        *self = Enrolment { previous, ..next };
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    pub(crate) fn enrolment(entry: &str) -> Enrolment {
        Enrolment {
            project_id: ProjectId::parse("p", "prj-1").unwrap(),
            worker_id: WorkerId::parse("w", "wkr-1").unwrap(),
            team_id: TeamId::parse("t", "team-1").unwrap(),
            work_type: WorkType::parse("work_type", "010").unwrap(),
            work_role: WorkRole::Worker,
            entry_date: d(entry),
            exit_date: None,
            contract: None,
            previous: Vec::new(),
            enrolled_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn exit_dates_lie_between_entry_and_today() {
        let today = d("2026-06-15");
        let mut e = enrolment("2026-05-01");
        assert_eq!(
            e.exit(d("2026-04-30"), today),
            Err(ExitError::BeforeEntry(d("2026-05-01")))
        );
        assert_eq!(
            e.exit(d("2026-06-16"), today),
            Err(ExitError::InFuture(today))
        );
        assert!(e.is_active());
        // Exit on the entry day is allowed, and so is exit today.
        let mut same_day = enrolment("2026-05-01");
        assert_eq!(same_day.exit(d("2026-05-01"), today), Ok(()));
        assert_eq!(e.exit(today, today), Ok(()));
        assert!(!e.is_active());
        assert_eq!(e.exit(today, today), Err(ExitError::AlreadyExited(today)));
    }

    #[test]
    fn standing_on_a_day_follows_every_stint() {
        let mut e = enrolment("2026-03-01");
        e.exit(d("2026-03-10"), d("2026-06-15")).unwrap();
        assert_eq!(e.on_site(d("2026-02-28")), OnSite::NotEnrolled);
        assert_eq!(e.on_site(d("2026-03-01")), OnSite::Enrolled);
        assert_eq!(e.on_site(d("2026-03-09")), OnSite::Enrolled);
        // Gone on the exit day itself.
        assert_eq!(e.on_site(d("2026-03-10")), OnSite::Exited);
        // Back from 2026-04-01: the first stint is kept.
        assert_eq!(e.reenter(enrolment("2026-03-09")), Err(d("2026-03-10")));
        e.reenter(enrolment("2026-04-01")).unwrap();
        assert_eq!(e.previous.len(), 1);
        assert_eq!(e.on_site(d("2026-03-05")), OnSite::Enrolled);
        assert_eq!(e.on_site(d("2026-03-20")), OnSite::Exited);
        assert_eq!(e.on_site(d("2026-04-01")), OnSite::Enrolled);
        // An active enrolment cannot be entered again.
        assert!(e.reenter(enrolment("2026-05-01")).is_err());
    }

    #[test]
    fn contracts_are_consistent_and_in_force_through_their_end() {
        let c = Contract {
            kind: ContractKind::WrittenAgreement,
            start_date: d("2026-05-01"),
            end_date: Some(d("2026-05-31")),
            day_rate_fen: 35_000,
        };
        assert!(c.clone().check().is_ok());
        assert!(!c.in_force(d("2026-04-30")));
        assert!(c.in_force(d("2026-05-01")) && c.in_force(d("2026-05-31")));
        assert!(!c.in_force(d("2026-06-01")));
        let backwards = Contract {
            end_date: Some(d("2026-04-30")),
            ..c.clone()
        };
        assert_eq!(backwards.check().unwrap_err().field, "contract.end_date");
        let free = Contract {
            day_rate_fen: 0,
            ..c.clone()
        };
        assert_eq!(free.check().unwrap_err().field, "contract.day_rate_fen");
        let open = Contract {
            end_date: None,
            ..c
        };
        assert!(open.in_force(d("2099-01-01")));
    }

    #[test]
    fn id_validity_includes_its_last_day_and_parses_long_term() {
        let v: IdValidUntil = serde_json::from_str("\"2026-06-15\"").unwrap();
        assert!(v.valid_on(d("2026-06-15")) && !v.valid_on(d("2026-06-16")));
        let l: IdValidUntil = serde_json::from_str("\"long_term\"").unwrap();
        assert_eq!(l, IdValidUntil::LongTerm);
        assert_eq!(serde_json::to_string(&l).unwrap(), "\"long_term\"");
        assert!(serde_json::from_str::<IdValidUntil>("\"forever\"").is_err());
        assert!(WorkType::parse("work_type", "13").is_err());
        assert!(WorkType::parse("work_type", "1000").is_ok());
        assert_eq!(serde_json::to_string(&WorkRole::Manager).unwrap(), "\"10\"");
    }
}
