//! The gate decision (API.md, Workforce: gate messages): may a person pass a project's gate on a
//! day, and if not, why — every reason, in the order of [`DenyReason`], not just the first.
//!
//! The day is a calendar day in Asia/Shanghai; the caller converts an event's `ts`. Boundaries
//! follow DOMAIN.md §12 (a threshold includes its value): 18 on the 18th birthday passes; a
//! document, contract or certificate valid until today is valid today and expired tomorrow; a
//! training level needs its full hours; an age limit bars from its value on.

use super::person::age_on;
use super::rules::GateRules;
use super::worker::{CertificateKind, Enrolment, OnSite, TrainingLevel, Worker};
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// The stable deny codes of API.md.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum DenyReason {
    /// No enrolment in the project, or not yet entered on that day.
    NotEnrolled,
    /// Left the project (退场) on or before that day.
    Exited,
    /// Under the minimum age (18) on that day.
    UnderAge,
    /// At or over the region's age limit (for site work, or for the high-risk work type).
    OverAge,
    /// The ID document expired before that day.
    IdExpired,
    /// No labour contract or written agreement in force (none, or not yet started).
    NoContract,
    /// The contract ended before that day.
    ContractExpired,
    /// A special work type without a special-operation certificate for it.
    CertificateMissing,
    /// A special work type whose certificates for it all expired before that day.
    CertificateExpired,
    /// A level of the three-level safety training not passed with its hours.
    NoSafetyTraining,
    /// Banned (黑名单) on that day in the project's region.
    Blacklisted,
}

impl DenyReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NotEnrolled => "not_enrolled",
            DenyReason::Exited => "exited",
            DenyReason::UnderAge => "under_age",
            DenyReason::OverAge => "over_age",
            DenyReason::IdExpired => "id_expired",
            DenyReason::NoContract => "no_contract",
            DenyReason::ContractExpired => "contract_expired",
            DenyReason::CertificateMissing => "certificate_missing",
            DenyReason::CertificateExpired => "certificate_expired",
            DenyReason::NoSafetyTraining => "no_safety_training",
            DenyReason::Blacklisted => "blacklisted",
        }
    }
}

/// A decision and the rules it was taken under.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Decision {
    pub allow: bool,
    /// Every reason to deny, in a fixed order; empty exactly when `allow`.
    pub reasons: Vec<DenyReason>,
    /// The rules version (`workforce.json`) that decided.
    pub rules_version: String,
    /// The `regions` key whose settings applied (`""`: the national default).
    pub rules_region: String,
}

/// Decides whether `worker` may pass the gate of the project `enrolment` belongs to on `day`,
/// under the `rules` of that project's region. Without an enrolment the person is
/// `not_enrolled`, and what depends on the enrolment's work type and contract is not judged.
pub fn decide(
    worker: &Worker,
    enrolment: Option<&Enrolment>,
    day: NaiveDate,
    rules: &GateRules,
) -> Decision {
    let mut reasons = Vec::new();
    match enrolment.map(|e| e.on_site(day)) {
        None | Some(OnSite::NotEnrolled) => reasons.push(DenyReason::NotEnrolled),
        Some(OnSite::Exited) => reasons.push(DenyReason::Exited),
        Some(OnSite::Enrolled) => {}
    }
    let work_type = enrolment.map(|e| &e.work_type);
    let age = age_on(worker.birth_date, day).unwrap_or(0);
    if age < rules.min_age {
        reasons.push(DenyReason::UnderAge);
    }
    if let Some(preset) = &rules.age {
        let high_risk = work_type.is_some_and(|t| preset.high_risk_work_types.contains(t));
        let limit = if high_risk {
            preset.high_risk_max_age.of(worker.sex)
        } else {
            preset.site_max_age.of(worker.sex)
        };
        if age >= limit {
            reasons.push(DenyReason::OverAge);
        }
    }
    if !worker.id_valid_until.valid_on(day) {
        reasons.push(DenyReason::IdExpired);
    }
    if let Some(e) = enrolment {
        match &e.contract {
            Some(c) if c.in_force(day) => {}
            Some(c) if c.start_date <= day => reasons.push(DenyReason::ContractExpired),
            _ => reasons.push(DenyReason::NoContract),
        }
        if rules.special_work_types.contains(&e.work_type) {
            let mut certs = worker.certificates.iter().filter(|c| {
                c.kind == CertificateKind::SpecialOperation && c.work_type == e.work_type
            });
            match certs.next() {
                None => reasons.push(DenyReason::CertificateMissing),
                Some(first) => {
                    if std::iter::once(first)
                        .chain(certs)
                        .all(|c| c.valid_until < day)
                    {
                        reasons.push(DenyReason::CertificateExpired);
                    }
                }
            }
        }
    }
    if let Some(preset) = &rules.training {
        let short = TrainingLevel::ALL.iter().any(|level| {
            let needed = preset.hours.get(level).copied().unwrap_or(0);
            worker
                .training_hours(*level, day)
                .is_none_or(|h| h < needed)
        });
        if short {
            reasons.push(DenyReason::NoSafetyTraining);
        }
    }
    if worker
        .blacklist
        .iter()
        .any(|b| b.applies(&rules.region_code, day))
    {
        reasons.push(DenyReason::Blacklisted);
    }
    Decision {
        allow: reasons.is_empty(),
        reasons,
        rules_version: rules.version.clone(),
        rules_region: rules.region.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::id_card::tests::resident;
    use crate::domain::person::Sex;
    use crate::domain::rules::WorkforceRulesSet;
    use crate::domain::worker::tests::{d, enrolment};
    use crate::domain::worker::{
        Certificate, Contract, ContractKind, IdValidUntil, TrainingRecord, WorkType, WorkerBan,
    };
    use crate::domain::{IdCardType, WorkerId, mask_number};
    use smartsite_shared::domain::tenancy::RegionCode;

    const TODAY: &str = "2026-06-15";

    fn region() -> RegionCode {
        RegionCode::parse("r", "220102").unwrap()
    }

    fn rules() -> GateRules {
        WorkforceRulesSet::default_rules()
            .unwrap()
            .for_region(&region(), d(TODAY))
            .unwrap()
    }

    fn training(level: TrainingLevel, hours: u32, on: &str, passed: bool) -> TrainingRecord {
        TrainingRecord {
            level,
            hours,
            completed_on: d(on),
            passed,
            recorded_at: "2026-01-01T00:00:00Z".into(),
            recorded_by: "usr-1".into(),
        }
    }

    /// A 30-year-old man with a long-term ID and all three levels passed with their hours.
    fn worker() -> Worker {
        Worker {
            id: WorkerId::parse("w", "wkr-1").unwrap(),
            name: "张三".into(),
            id_card_type: IdCardType::resident(),
            id_number_masked: mask_number(&resident("220102", "19960101", "011")),
            phone_masked: None,
            bank_card_masked: None,
            bank_name: None,
            birth_date: d("1996-01-01"),
            sex: Sex::Male,
            id_valid_until: IdValidUntil::LongTerm,
            certificates: Vec::new(),
            training: vec![
                training(TrainingLevel::Company, 15, "2026-04-01", true),
                training(TrainingLevel::Project, 15, "2026-04-02", true),
                training(TrainingLevel::Team, 20, "2026-04-03", true),
            ],
            blacklist: Vec::new(),
            created_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    /// Enrolled on 2026-05-01 as 010 (not special) with an open-ended contract.
    fn enrolled() -> Enrolment {
        let mut e = enrolment("2026-05-01");
        e.contract = Some(Contract {
            kind: ContractKind::LabourContract,
            start_date: d("2026-05-01"),
            end_date: None,
            day_rate_fen: 30_000,
        });
        e
    }

    fn reasons(
        w: &Worker,
        e: Option<&Enrolment>,
        day: &str,
        rules: &GateRules,
    ) -> Vec<&'static str> {
        let decision = decide(w, e, d(day), rules);
        assert_eq!(decision.allow, decision.reasons.is_empty());
        assert_eq!(decision.rules_version, rules.version);
        decision.reasons.iter().map(|r| r.as_str()).collect()
    }

    #[test]
    fn an_eligible_worker_passes_and_the_decision_names_its_rules() {
        let r = rules();
        let decision = decide(&worker(), Some(&enrolled()), d(TODAY), &r);
        assert!(decision.allow);
        assert_eq!(
            (
                decision.rules_version.as_str(),
                decision.rules_region.as_str()
            ),
            ("cn-2023.1", "22")
        );
    }

    #[test]
    fn not_enrolled_and_exited() {
        let r = rules();
        assert_eq!(reasons(&worker(), None, TODAY, &r), ["not_enrolled"]);
        // Entering on 2026-05-01: the day before is not enrolled, the day itself is.
        assert_eq!(
            reasons(&worker(), Some(&enrolled()), "2026-04-30", &r),
            ["not_enrolled", "no_contract"]
        );
        assert!(reasons(&worker(), Some(&enrolled()), "2026-05-01", &r).is_empty());
        let mut left = enrolled();
        left.exit(d("2026-06-10"), d(TODAY)).unwrap();
        assert!(reasons(&worker(), Some(&left), "2026-06-09", &r).is_empty());
        assert_eq!(
            reasons(&worker(), Some(&left), "2026-06-10", &r),
            ["exited"]
        );
    }

    #[test]
    fn under_age_until_the_18th_birthday() {
        let r = rules();
        let mut w = worker();
        w.birth_date = d("2008-06-15");
        assert_eq!(
            reasons(&w, Some(&enrolled()), "2026-06-14", &r),
            ["under_age"]
        );
        assert!(reasons(&w, Some(&enrolled()), "2026-06-15", &r).is_empty());
        // Born 29 February 2008: still 17 on 28 February 2026, 18 on 1 March.
        w.birth_date = d("2008-02-29");
        let mut e = enrolled();
        e.entry_date = d("2026-02-01");
        e.contract.as_mut().unwrap().start_date = d("2026-02-01");
        w.training
            .iter_mut()
            .for_each(|t| t.completed_on = d("2026-01-15"));
        assert_eq!(reasons(&w, Some(&e), "2026-02-28", &r), ["under_age"]);
        assert!(reasons(&w, Some(&e), "2026-03-01", &r).is_empty());
    }

    fn shanghai() -> GateRules {
        let mut r = rules();
        let set = WorkforceRulesSet::default_rules().unwrap();
        r.age = set.versions()[1].age_presets.get("shanghai").cloned();
        assert!(r.age.is_some());
        r
    }

    #[test]
    fn over_age_from_the_regional_limit_on() {
        let r = shanghai();
        let mut man = worker();
        man.birth_date = d("1966-06-15");
        // 60 on 2026-06-15: barred from that day; 59 the day before passes.
        assert!(reasons(&man, Some(&enrolled()), "2026-06-14", &r).is_empty());
        assert_eq!(reasons(&man, Some(&enrolled()), TODAY, &r), ["over_age"]);
        // Without the preset, no upper limit.
        assert!(reasons(&man, Some(&enrolled()), TODAY, &rules()).is_empty());
        let mut woman = worker();
        woman.sex = Sex::Female;
        woman.birth_date = d("1976-06-15");
        assert!(reasons(&woman, Some(&enrolled()), "2026-06-14", &r).is_empty());
        assert_eq!(reasons(&woman, Some(&enrolled()), TODAY, &r), ["over_age"]);
        // High-risk work (架子工 030, also a special type: certificate held): 55 for men.
        let mut scaffolder = enrolled();
        scaffolder.work_type = WorkType::parse("w", "030").unwrap();
        let mut m55 = worker();
        m55.birth_date = d("1971-06-15");
        m55.certificates.push(cert("030", "2027-01-01"));
        assert!(reasons(&m55, Some(&scaffolder), "2026-06-14", &r).is_empty());
        assert_eq!(reasons(&m55, Some(&scaffolder), TODAY, &r), ["over_age"]);
        assert!(reasons(&m55, Some(&enrolled()), TODAY, &r).is_empty());
    }

    #[test]
    fn id_document_valid_through_its_last_day() {
        let r = rules();
        let mut w = worker();
        w.id_valid_until = IdValidUntil::Date(d(TODAY));
        assert!(reasons(&w, Some(&enrolled()), TODAY, &r).is_empty());
        w.id_valid_until = IdValidUntil::Date(d("2026-06-14"));
        assert_eq!(reasons(&w, Some(&enrolled()), TODAY, &r), ["id_expired"]);
    }

    #[test]
    fn contracts_missing_not_started_and_ended() {
        let r = rules();
        let mut e = enrolled();
        e.contract = None;
        assert_eq!(reasons(&worker(), Some(&e), TODAY, &r), ["no_contract"]);
        e.contract = Some(Contract {
            kind: ContractKind::WrittenAgreement,
            start_date: d("2026-06-16"),
            end_date: Some(d("2026-12-31")),
            day_rate_fen: 30_000,
        });
        assert_eq!(reasons(&worker(), Some(&e), TODAY, &r), ["no_contract"]);
        e.contract = Some(Contract {
            kind: ContractKind::WrittenAgreement,
            start_date: d("2026-05-01"),
            end_date: Some(d(TODAY)),
            day_rate_fen: 30_000,
        });
        assert!(reasons(&worker(), Some(&e), TODAY, &r).is_empty());
        assert_eq!(
            reasons(&worker(), Some(&e), "2026-06-16", &r),
            ["contract_expired"]
        );
    }

    fn cert(work_type: &str, valid_until: &str) -> Certificate {
        Certificate {
            kind: CertificateKind::SpecialOperation,
            number: format!("吉A{work_type}2024000001"),
            work_type: WorkType::parse("w", work_type).unwrap(),
            valid_until: d(valid_until),
        }
    }

    #[test]
    fn special_work_types_need_a_valid_certificate_for_that_type() {
        let r = rules();
        let mut electrician = enrolled();
        electrician.work_type = WorkType::parse("w", "130").unwrap();
        let mut w = worker();
        assert_eq!(
            reasons(&w, Some(&electrician), TODAY, &r),
            ["certificate_missing"]
        );
        // A certificate for another type, or of another kind, does not count.
        w.certificates.push(cert("030", "2027-01-01"));
        w.certificates.push(Certificate {
            kind: CertificateKind::Skill,
            ..cert("130", "2027-01-01")
        });
        assert_eq!(
            reasons(&w, Some(&electrician), TODAY, &r),
            ["certificate_missing"]
        );
        // Valid until today: valid today; until yesterday: expired.
        w.certificates.push(cert("130", "2026-06-14"));
        assert_eq!(
            reasons(&w, Some(&electrician), TODAY, &r),
            ["certificate_expired"]
        );
        w.certificates.push(cert("130", TODAY));
        assert!(reasons(&w, Some(&electrician), TODAY, &r).is_empty());
        assert_eq!(
            reasons(&w, Some(&electrician), "2026-06-16", &r),
            ["certificate_expired"]
        );
        // Work types that are not special need none.
        assert!(reasons(&worker(), Some(&enrolled()), TODAY, &r).is_empty());
    }

    #[test]
    fn every_training_level_needs_its_hours_passed_by_the_day() {
        let r = rules();
        let mut w = worker();
        // Team level one hour short (19 of 20).
        w.training[2].hours = 19;
        assert_eq!(
            reasons(&w, Some(&enrolled()), TODAY, &r),
            ["no_safety_training"]
        );
        // Hours add up over records of a level.
        w.training
            .push(training(TrainingLevel::Team, 1, "2026-06-15", true));
        assert!(reasons(&w, Some(&enrolled()), TODAY, &r).is_empty());
        assert_eq!(
            reasons(&w, Some(&enrolled()), "2026-06-14", &r),
            ["no_safety_training"],
            "completed after the day: not yet trained"
        );
        // A failed record counts for nothing; a missing level fails.
        let mut failed = worker();
        failed.training[0].passed = false;
        assert_eq!(
            reasons(&failed, Some(&enrolled()), TODAY, &r),
            ["no_safety_training"]
        );
        let mut two_levels = worker();
        two_levels.training.pop();
        assert_eq!(
            reasons(&two_levels, Some(&enrolled()), TODAY, &r),
            ["no_safety_training"]
        );
        let mut no_preset = r.clone();
        no_preset.training = None;
        assert!(reasons(&two_levels, Some(&enrolled()), TODAY, &no_preset).is_empty());
    }

    #[test]
    fn bans_apply_in_their_region_and_time() {
        let r = rules();
        let mut w = worker();
        w.blacklist.push(WorkerBan {
            region_code: Some(RegionCode::parse("r", "220100").unwrap()),
            from: d("2026-06-15"),
            until: Some(d("2026-06-20")),
            reason: "恶意讨薪".into(),
        });
        assert!(reasons(&w, Some(&enrolled()), "2026-06-14", &r).is_empty());
        assert_eq!(reasons(&w, Some(&enrolled()), TODAY, &r), ["blacklisted"]);
        assert_eq!(
            reasons(&w, Some(&enrolled()), "2026-06-20", &r),
            ["blacklisted"]
        );
        assert!(reasons(&w, Some(&enrolled()), "2026-06-21", &r).is_empty());
        w.blacklist[0].region_code = Some(RegionCode::parse("r", "220200").unwrap());
        assert!(
            reasons(&w, Some(&enrolled()), TODAY, &r).is_empty(),
            "another city's ban"
        );
    }

    #[test]
    fn all_reasons_are_listed_in_order() {
        let r = shanghai();
        let mut w = worker();
        w.birth_date = d("2010-01-01");
        w.id_valid_until = IdValidUntil::Date(d("2026-01-01"));
        w.training.clear();
        w.blacklist.push(WorkerBan {
            region_code: None,
            from: d("2026-01-01"),
            until: None,
            reason: "x".into(),
        });
        let mut e = enrolled();
        e.work_type = WorkType::parse("w", "180").unwrap();
        e.contract.as_mut().unwrap().end_date = Some(d("2026-06-01"));
        e.exit(d("2026-06-10"), d(TODAY)).unwrap();
        assert_eq!(
            reasons(&w, Some(&e), TODAY, &r),
            [
                "exited",
                "under_age",
                "id_expired",
                "contract_expired",
                "certificate_missing",
                "no_safety_training",
                "blacklisted"
            ]
        );
        let mut old = worker();
        old.birth_date = d("1950-01-01");
        old.certificates.push(cert("180", "2020-01-01"));
        let mut e = enrolled();
        e.work_type = WorkType::parse("w", "180").unwrap();
        e.contract = None;
        assert_eq!(
            reasons(&old, Some(&e), TODAY, &r),
            ["over_age", "no_contract", "certificate_expired"]
        );
        assert_eq!(
            serde_json::to_value(decide(&old, None, d(TODAY), &r)).unwrap()["reasons"],
            serde_json::json!(["not_enrolled", "over_age"])
        );
    }
}
