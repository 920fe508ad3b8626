//! Real-name worker management (实名制, DOMAIN.md §4, §11.4, §12): the pure rules of the
//! workforce concern. Nothing here does I/O.
//!
//! - [`id_card`]: ID documents; the resident identity card (type `01`, GB 11643) is parsed, its
//!   birth date and sex derived, never typed;
//! - [`person`]: age on a day (the birthday rule), sex, masking of numbers for answers;
//! - [`contact`]: phone and bank card numbers, and the secret text that carries any of these
//!   numbers through a request without ever printing it;
//! - [`team`], [`worker`]: teams of a project, the person, the enrolment (进场 / 退场), contract,
//!   certificates and training records;
//! - [`rules`]: the versioned, per-region gate rules (`functions/workforce/config/workforce.json`);
//! - [`gate`]: [`decide`] — may this person pass the gate of this project on this day, and if
//!   not, every reason why;
//! - [`attendance`]: a day's attendance from the allowed passes, under the valid-day rule.

pub mod attendance;
pub mod contact;
pub mod gate;
pub mod id_card;
pub mod person;
pub mod rules;
pub mod team;
pub mod worker;

pub use attendance::{DayAttendance, Direction, Pass, attendance, day_of};
pub use contact::{BankCard, Phone, Secret};
pub use gate::{Decision, DenyReason, decide};
pub use id_card::{IdCardType, IdDocument, IdNumber};
pub use person::{Sex, age_on, mask_number, mask_phone};
pub use rules::{GateRules, RulesError, ValidDayPreset, WorkforceRules, WorkforceRulesSet};
pub use team::{NewTeam, Team};
pub use worker::{
    Certificate, CertificateKind, Contract, ContractKind, Enrolment, ExitError, IdValidUntil,
    OnSite, Stint, TrainingLevel, TrainingRecord, WorkRole, WorkType, Worker, WorkerBan,
};

use smartsite_shared::prefixed_id;

/// The default rules shipped with the code (`functions/workforce/config/workforce.json`).
pub const DEFAULT_RULES_JSON: &str = include_str!("../../config/workforce.json");

prefixed_id!(
    /// A person, once per integrator across its projects (API.md: `worker_id`).
    WorkerId, "wkr-"
);
prefixed_id!(
    /// A team (班组) of a project.
    TeamId, "team-"
);
