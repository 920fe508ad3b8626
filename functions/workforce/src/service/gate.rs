//! Gate decisions over the device path (API.md, Workforce: gate messages), and what is read
//! from them: a day's decisions, attendance and headcount.
//!
//! An `access_gate` publishes a `gate_request` event; the ingest pipeline stores it as any event
//! and hands it to [`GateObserver`], which decides for the gate's project and the Asia/Shanghai
//! day of the event's own `ts`, stores the decision, and only then answers on the gate's `cmd`
//! topic. The decision is stored once per `request_id` (a condition on its key): a redelivered
//! request — same payload or not — gets the stored answer again, never a second record.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use smartsite_shared::directory::{Directory, ListPage};
use smartsite_shared::domain::devices::Category;
use smartsite_shared::domain::telemetry::{Event, Reading};
use smartsite_shared::domain::tenancy::Project;
use smartsite_shared::fleet::Device;
use smartsite_shared::ingest::{Downlink, Observer, stamp};
use smartsite_shared::store::records::{decode, record};
use smartsite_shared::store::{Condition, Key, Query, SkCond, TxOp, query_all};

use super::{Result, Workforce, WorkforceError, lost_race, now};
use crate::domain::{
    Decision, DenyReason, Direction, Enrolment, GateRules, Pass, TeamId, WorkType, Worker,
    WorkerId, attendance, day_of, decide,
};
use crate::keys;

/// The event type a gate asks with.
pub const GATE_REQUEST: &str = "gate_request";

/// `allow` or `deny`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    Deny,
}

/// A gate's question, as its event carried it.
#[derive(Debug, Clone, PartialEq)]
pub struct GateRequest {
    pub request_id: String,
    /// As sent: an id the integrator does not know is answered `not_enrolled`.
    pub worker_id: String,
    pub direction: Direction,
    pub attend_type: Option<String>,
    pub ts: DateTime<Utc>,
}

impl GateRequest {
    /// The request an accepted `gate_request` event carries (the pipeline validated its
    /// fields); `None` for any other event.
    pub fn from_event(e: &Event) -> Option<GateRequest> {
        if e.kind != GATE_REQUEST {
            return None;
        }
        let s = |k: &str| e.body.get(k).and_then(serde_json::Value::as_str);
        Some(GateRequest {
            request_id: s("request_id")?.to_owned(),
            worker_id: s("worker_id")?.to_owned(),
            direction: Direction::parse(s("direction")?)?,
            attend_type: s("attend_type").map(str::to_owned),
            ts: e.ts,
        })
    }
}

/// A stored gate decision (API.md: `GET /v1/projects/{id}/gate-decisions`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GateDecision {
    pub request_id: String,
    pub worker_id: String,
    /// The gate that asked.
    pub device_id: String,
    pub direction: Direction,
    pub decision: Verdict,
    /// Every reason to deny (empty when allowed).
    pub reasons: Vec<DenyReason>,
    /// When the person was at the gate (the event's `ts`, RFC 3339 UTC).
    pub ts: String,
    /// The Asia/Shanghai day of `ts`.
    pub day: NaiveDate,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attend_type: Option<String>,
    /// The rules version (`workforce.json`) that decided.
    pub rules_version: String,
    /// When the platform decided.
    pub decided_at: String,
}

impl GateDecision {
    pub fn allowed(&self) -> bool {
        self.decision == Verdict::Allow
    }

    /// The answer on the gate's `cmd` topic.
    pub fn command(&self) -> serde_json::Value {
        serde_json::json!({
            "cmd": "gate",
            "request_id": self.request_id,
            "worker_id": self.worker_id,
            "decision": self.decision,
            "reasons": self.reasons,
        })
    }

    fn pass(&self) -> Option<Pass> {
        Some(Pass {
            worker_id: WorkerId::parse("worker_id", &self.worker_id).ok()?,
            direction: self.direction,
            ts: DateTime::parse_from_rfc3339(&self.ts).ok()?.to_utc(),
        })
    }
}

/// A person's attendance on a day (API.md: `GET /v1/projects/{id}/attendance`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AttendanceLine {
    #[schema(value_type = String)]
    pub worker_id: WorkerId,
    pub name: String,
    #[schema(value_type = Option<String>)]
    pub team_id: Option<TeamId>,
    #[schema(value_type = Option<String>)]
    pub work_type: Option<WorkType>,
    /// The earliest allowed pass `in` (RFC 3339 UTC).
    pub first_in: Option<String>,
    /// The latest allowed pass `out`.
    pub last_out: Option<String>,
    /// From `first_in` to `last_out`, in hours (two decimals).
    pub hours: f64,
    /// Allowed passes either way.
    pub punches: u32,
    /// The region's valid-day rule (the shipped rules apply Jilin's to 22xxxx).
    pub valid: bool,
}

/// A project's headcount on a day (API.md: `GET /v1/projects/{id}/headcount`): numbers only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Headcount {
    pub date: NaiveDate,
    /// People whose last allowed pass of the day was `in`.
    pub on_site_now: u32,
    /// People with at least one allowed pass.
    pub attended: u32,
    /// `attended` by team id.
    pub by_team: BTreeMap<String, u32>,
    /// `attended` by national work type (工种) code.
    pub by_work_type: BTreeMap<String, u32>,
}

fn not_enrolled(rules: &GateRules) -> Decision {
    Decision {
        allow: false,
        reasons: vec![DenyReason::NotEnrolled],
        rules_version: rules.version.clone(),
        rules_region: rules.region.clone(),
    }
}

impl Workforce {
    fn gate_request_key(p: &Project, request_id: &str) -> Key {
        Key::new(
            keys::project(&p.integrator_id, &p.id),
            keys::gate_request_sk(request_id),
        )
    }

    /// The decision stored for a request, if any.
    pub async fn gate_decision(
        &self,
        p: &Project,
        request_id: &str,
    ) -> Result<Option<GateDecision>> {
        match self
            .store
            .get(&Self::gate_request_key(p, request_id))
            .await?
        {
            Some(item) => Ok(Some(decode(&item)?)),
            None => Ok(None),
        }
    }

    /// Decides a gate request of `device_id` at `p` for the day of its `ts`, and stores the
    /// decision before answering it. A request already decided answers as stored.
    pub async fn gate(
        &self,
        p: &Project,
        device_id: &str,
        r: &GateRequest,
    ) -> Result<GateDecision> {
        if let Some(d) = self.gate_decision(p, &r.request_id).await? {
            return Ok(d);
        }
        let day = day_of(r.ts);
        let rules = self.gate_rules(p, day)?;
        let decision = match WorkerId::parse("worker_id", &r.worker_id).ok() {
            None => not_enrolled(&rules),
            Some(w) => match self.person(&p.integrator_id, &w).await? {
                None => not_enrolled(&rules),
                Some(person) => {
                    let e = self.enrolment(p, &w).await?;
                    decide(&person.worker, e.as_ref(), day, &rules)
                }
            },
        };
        let ts = stamp(r.ts);
        let d = GateDecision {
            request_id: r.request_id.clone(),
            worker_id: r.worker_id.clone(),
            device_id: device_id.to_owned(),
            direction: r.direction,
            decision: if decision.allow {
                Verdict::Allow
            } else {
                Verdict::Deny
            },
            reasons: decision.reasons,
            ts: ts.clone(),
            day,
            attend_type: r.attend_type.clone(),
            rules_version: decision.rules_version,
            decided_at: now(),
        };
        let by_day = Key::new(
            keys::project(&p.integrator_id, &p.id),
            keys::pass_sk(day, &ts, &r.request_id),
        );
        let ops = vec![
            TxOp::Put {
                item: record(Self::gate_request_key(p, &r.request_id), &d)?,
                cond: Some(Condition::NotExists),
            },
            TxOp::Put {
                item: record(by_day, &d)?,
                cond: Some(Condition::NotExists),
            },
        ];
        match self.store.transact(ops).await {
            Ok(()) => Ok(d),
            // A concurrent delivery of the same request decided first: its answer stands.
            Err(s) if lost_race(&s) => self
                .gate_decision(p, &r.request_id)
                .await?
                .ok_or(WorkforceError::Contention),
            Err(s) => Err(s.into()),
        }
    }

    fn day_query(p: &Project, day: NaiveDate) -> Query {
        Query::partition(&keys::project(&p.integrator_id, &p.id))
            .sk(SkCond::BeginsWith(keys::pass_day_prefix(day)))
    }

    /// A day's gate decisions in `ts` order, a page at a time.
    pub async fn gate_decisions(
        &self,
        p: &Project,
        day: NaiveDate,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<GateDecision>> {
        smartsite_shared::store::records::page(&*self.store, Self::day_query(p, day), limit, cursor)
            .await
    }

    /// A day's allowed passes, in `ts` order.
    async fn passes(&self, p: &Project, day: NaiveDate) -> Result<Vec<Pass>> {
        let items = query_all(&*self.store, Self::day_query(p, day)).await?;
        let mut passes = Vec::with_capacity(items.len());
        for item in &items {
            let d: GateDecision = decode(item)?;
            if d.allowed()
                && let Some(pass) = d.pass()
            {
                passes.push(pass);
            }
        }
        Ok(passes)
    }

    /// The people and enrolments of `workers` in `p`.
    async fn people(
        &self,
        p: &Project,
        workers: &[WorkerId],
    ) -> Result<Vec<(Option<Worker>, Option<Enrolment>)>> {
        let mut keys = Vec::with_capacity(workers.len() * 2);
        for w in workers {
            keys.push(Self::person_key(&p.integrator_id, w));
            keys.push(Self::enrolment_key(p, w));
        }
        let mut out = Vec::with_capacity(workers.len());
        let items = self.store.get_many(&keys).await?;
        for pair in items.chunks(2) {
            let worker = match pair.first().and_then(Option::as_ref) {
                Some(item) => Some(decode(item)?),
                None => None,
            };
            let enrolment = match pair.get(1).and_then(Option::as_ref) {
                Some(item) => Some(decode(item)?),
                None => None,
            };
            out.push((worker, enrolment));
        }
        Ok(out)
    }

    /// Each person's attendance at `p` on `day`, from the allowed passes, in the order of
    /// their first pass.
    pub async fn attendance(&self, p: &Project, day: NaiveDate) -> Result<Vec<AttendanceLine>> {
        let rules = self.gate_rules(p, day)?;
        let days = attendance(&self.passes(p, day).await?, &rules.valid_day);
        let ids: Vec<WorkerId> = days.iter().map(|d| d.worker_id.clone()).collect();
        let people = self.people(p, &ids).await?;
        Ok(days
            .into_iter()
            .zip(people)
            .map(|(d, (worker, enrolment))| AttendanceLine {
                worker_id: d.worker_id,
                name: worker.map(|w| w.name).unwrap_or_default(),
                team_id: enrolment.as_ref().map(|e| e.team_id.clone()),
                work_type: enrolment.map(|e| e.work_type),
                first_in: d.first_in.map(stamp),
                last_out: d.last_out.map(stamp),
                hours: d.hours,
                punches: d.punches,
                valid: d.valid,
            })
            .collect())
    }

    /// The headcount of `p` on `day`: numbers only, no names.
    pub async fn headcount(&self, p: &Project, day: NaiveDate) -> Result<Headcount> {
        let rules = self.gate_rules(p, day)?;
        let days = attendance(&self.passes(p, day).await?, &rules.valid_day);
        let ids: Vec<WorkerId> = days.iter().map(|d| d.worker_id.clone()).collect();
        let people = self.people(p, &ids).await?;
        let mut h = Headcount {
            date: day,
            on_site_now: 0,
            attended: 0,
            by_team: BTreeMap::new(),
            by_work_type: BTreeMap::new(),
        };
        for (d, (_, enrolment)) in days.iter().zip(people) {
            h.attended += 1;
            if d.inside {
                h.on_site_now += 1;
            }
            if let Some(e) = enrolment {
                *h.by_team.entry(e.team_id.to_string()).or_default() += 1;
                *h.by_work_type.entry(e.work_type.to_string()).or_default() += 1;
            }
        }
        Ok(h)
    }
}

/// The workforce's part of the ingest pipeline: decides the `gate_request` events of access
/// gates and answers each on the gate's `cmd` topic once the decision is stored.
#[derive(Clone)]
pub struct GateObserver {
    workforce: Workforce,
    directory: Directory,
    downlink: Option<Arc<dyn Downlink>>,
}

impl GateObserver {
    pub fn new(workforce: Workforce, directory: Directory) -> GateObserver {
        GateObserver {
            workforce,
            directory,
            downlink: None,
        }
    }

    /// Where answers go; without one, decisions are stored and not sent.
    pub fn with_downlink(mut self, d: Arc<dyn Downlink>) -> GateObserver {
        self.downlink = Some(d);
        self
    }

    /// Decides one request of `device` and answers it; the decision, or why there is none.
    pub async fn answer(&self, device: &Device, r: &GateRequest) -> Result<GateDecision> {
        let p = self
            .directory
            .project(&device.integrator_id, &device.project_id)
            .await
            .map_err(|e| {
                WorkforceError::Store(smartsite_shared::store::StoreError::Backend(
                    anyhow::anyhow!("{e}"),
                ))
            })?
            .ok_or(WorkforceError::NotFound)?;
        let d = self.workforce.gate(&p, device.id.as_str(), r).await?;
        if let Some(downlink) = &self.downlink {
            let payload = Bytes::from(serde_json::to_vec(&d.command())?);
            if !downlink.send(device, payload).await {
                tracing::warn!(device = %device.id, request_id = %d.request_id, "gate answer not handed over: the gate is not connected");
            }
        }
        Ok(d)
    }
}

#[async_trait]
impl Observer for GateObserver {
    async fn observe(
        &self,
        _device: &Device,
        _readings: &[Reading],
        _hours: &[(DateTime<Utc>, BTreeMap<String, f64>)],
    ) {
    }

    async fn observe_events(&self, device: &Device, events: &[Event]) {
        if device.category != Category::AccessGate {
            return;
        }
        for r in events.iter().filter_map(GateRequest::from_event) {
            match self.answer(device, &r).await {
                Ok(d) => {
                    tracing::info!(device = %device.id, request_id = %d.request_id, worker_id = %d.worker_id, decision = ?d.decision, "gate decided")
                }
                // The event is stored; the gate's retry (a redelivery) decides again.
                Err(e) => {
                    tracing::warn!(device = %device.id, request_id = %r.request_id, error = %e, "gate request not decided")
                }
            }
        }
    }
}
