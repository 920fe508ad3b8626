//! The `workforce` concern (实名制, API.md Workforce; issue 15): teams and their labour
//! subcontractors, the enrolment (进场) and exit (退场) of people, one `worker_id` per person
//! within an integrator, contracts, certificates, three-level training records, the gate rules
//! (`decide`), and personal numbers protected at rest (envelope encryption, blind index,
//! audited reveals).

pub mod domain;
