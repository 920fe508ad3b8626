//! The workforce concern's key formats, built on the kernel's key builder
//! (`smartsite_shared::store::keys`), tested byte for byte.
//!
//! - the project's partition `I#{i}#P#{p}#`: teams `WF#TEAM#{team}` and enrolments
//!   `WF#ENROL#{worker}` (one per person and project: the `409` of a second active enrolment is
//!   the condition on this key); gate decisions, each twice in one transaction: by request
//!   `WF#GATEREQ#{request_id}` (the condition that makes a redelivered request one decision)
//!   and by day `WF#PASS#{day}#{ts}#{request_id}` (a day's decisions in `ts` order);
//! - a person's partition `I#{i}#W#{worker}#`: the record `PROFILE` (sealed numbers beside it)
//!   and a pointer `ENROL#{p}` per project the person was enrolled in;
//! - the integrator's partition `I#{i}#`: the person index `WF#PERSON#{blind index}` (one
//!   `worker_id` per person within the integrator; the blind index is a keyed hash, never the
//!   number), the integrator's wrapped blind-index key `WF#PIIKEY`, and the audit of reveals
//!   `WF#REVEAL#{at}#{id}` in time order.

use chrono::NaiveDate;
use smartsite_shared::domain::tenancy::ProjectId;
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::store::keys::{self, DELIM, EntityKind, Pk};

use crate::domain::{TeamId, WorkerId};

/// A project's partition (shared with the other concerns that keep project records).
pub fn project(i: &IntegratorId, p: &ProjectId) -> Pk {
    keys::entity(i, EntityKind::Project, p.as_str())
}

/// A person's partition.
pub fn worker(i: &IntegratorId, w: &WorkerId) -> Pk {
    keys::entity(i, EntityKind::Worker, w.as_str())
}

/// The integrator's own partition.
pub fn integrator(i: &IntegratorId) -> Pk {
    keys::integrator(i)
}

/// A team, in its project's partition.
pub fn team_sk(t: &TeamId) -> String {
    format!("{TEAM_PREFIX}{t}")
}
pub const TEAM_PREFIX: &str = "WF#TEAM#";

/// A person's enrolment, in the project's partition.
pub fn enrolment_sk(w: &WorkerId) -> String {
    format!("{ENROLMENT_PREFIX}{w}")
}
pub const ENROLMENT_PREFIX: &str = "WF#ENROL#";

/// A gate decision by its request, in the project's partition.
pub fn gate_request_sk(request_id: &str) -> String {
    format!("{GATE_REQUEST_PREFIX}{request_id}")
}
pub const GATE_REQUEST_PREFIX: &str = "WF#GATEREQ#";

/// A gate decision by its day (Asia/Shanghai) and `ts` (RFC 3339 UTC, milliseconds), in the
/// project's partition.
pub fn pass_sk(day: NaiveDate, ts: &str, request_id: &str) -> String {
    format!("{}{ts}{DELIM}{request_id}", pass_day_prefix(day))
}
/// Every gate decision of a day.
pub fn pass_day_prefix(day: NaiveDate) -> String {
    format!("WF{DELIM}PASS{DELIM}{day}{DELIM}")
}

/// The person's record, in the person's partition.
pub const SK_PERSON: &str = keys::SK_PROFILE;

/// A project the person was enrolled in, in the person's partition.
pub fn person_project_sk(p: &ProjectId) -> String {
    format!("{PERSON_PROJECT_PREFIX}{p}")
}
pub const PERSON_PROJECT_PREFIX: &str = "ENROL#";

/// The person index: a blind index (lower-case hex) → the `worker_id`, in the integrator's
/// partition.
pub fn person_index_sk(blind_index: &str) -> String {
    format!("WF{DELIM}PERSON{DELIM}{blind_index}")
}

/// The integrator's blind-index key, wrapped by the key vault.
pub const SK_INDEX_KEY: &str = "WF#PIIKEY";

/// An audited reveal of a person's number: `WF#REVEAL#{at}#{id}`, `at` as RFC 3339 UTC with
/// microseconds, so key order is time order.
pub fn reveal_sk(at: &str, id: &str) -> String {
    format!("{REVEAL_PREFIX}{at}{DELIM}{id}")
}
pub const REVEAL_PREFIX: &str = "WF#REVEAL#";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn workforce_keys_are_byte_exact() {
        let i = IntegratorId::parse("ct-jl").unwrap();
        let p = ProjectId::parse("p", "prj-1").unwrap();
        let w = WorkerId::parse("w", "wkr-9").unwrap();
        let t = TeamId::parse("t", "team-2").unwrap();
        assert_eq!(project(&i, &p).as_str(), "I#ct-jl#P#prj-1#");
        assert_eq!(worker(&i, &w).as_str(), "I#ct-jl#W#wkr-9#");
        assert_eq!(integrator(&i).as_str(), "I#ct-jl#");
        assert_eq!(team_sk(&t), "WF#TEAM#team-2");
        assert!(team_sk(&t).starts_with(TEAM_PREFIX));
        assert_eq!(enrolment_sk(&w), "WF#ENROL#wkr-9");
        assert!(enrolment_sk(&w).starts_with(ENROLMENT_PREFIX));
        // Teams and enrolments never answer each other's prefix queries.
        assert!(!enrolment_sk(&w).starts_with(TEAM_PREFIX));
        assert!(!team_sk(&t).starts_with(ENROLMENT_PREFIX));
        assert_eq!(SK_PERSON, "PROFILE");
        assert_eq!(person_project_sk(&p), "ENROL#prj-1");
        assert!(!SK_PERSON.starts_with(PERSON_PROJECT_PREFIX));
        assert_eq!(person_index_sk("00ff"), "WF#PERSON#00ff");
        assert_eq!(SK_INDEX_KEY, "WF#PIIKEY");
        assert_eq!(
            reveal_sk("2026-06-15T08:00:00.000000Z", "rvl-1"),
            "WF#REVEAL#2026-06-15T08:00:00.000000Z#rvl-1"
        );
        assert!(reveal_sk("t", "x").starts_with(REVEAL_PREFIX));
        let day = NaiveDate::from_ymd_opt(2026, 6, 15).unwrap();
        assert_eq!(gate_request_sk("r-1"), "WF#GATEREQ#r-1");
        assert_eq!(
            pass_sk(day, "2026-06-15T01:00:00.000Z", "r-1"),
            "WF#PASS#2026-06-15#2026-06-15T01:00:00.000Z#r-1"
        );
        assert!(pass_sk(day, "x", "r").starts_with(&pass_day_prefix(day)));
        assert!(!pass_sk(day.succ_opt().unwrap(), "x", "r").starts_with(&pass_day_prefix(day)));
        assert!(
            reveal_sk("2026-06-15T08:00:00.000000Z", "z")
                < reveal_sk("2026-06-15T08:00:00.000001Z", "a")
        );
        // The workforce's keys in shared partitions stay clear of the kernel's and the other
        // concerns' prefixes there.
        for sk in [
            team_sk(&t),
            enrolment_sk(&w),
            gate_request_sk("r"),
            pass_sk(day, "x", "r"),
            person_index_sk("0"),
            SK_INDEX_KEY.into(),
        ] {
            for other in [
                keys::PROJECT_PREFIX,
                keys::CUSTOMER_PREFIX,
                keys::USER_PREFIX,
                "SF#",
                "OPEN#",
            ] {
                assert!(!sk.starts_with(other), "{sk} vs {other}");
            }
        }
    }
}
