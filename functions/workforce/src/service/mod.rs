//! The workforce concern's data access over the storage port (key formats in [`crate::keys`]):
//! teams, people and their enrolments, training records, audited reveals of sealed numbers.
//!
//! Every write that depends on what it read is one transaction conditioned on the records' `rev`
//! (or on their absence), retried a few times when another writer got there first — so a person
//! is one `worker_id` per integrator and an active enrolment exists once per project even when
//! the same person is enrolled twice at the same moment.

pub mod gate;
pub mod pii;
pub mod vault;

use std::sync::Arc;

use chrono::{NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use smartsite_shared::directory::ListPage;
use smartsite_shared::domain::tenancy::{Project, ProjectId};
use smartsite_shared::ids::{FieldError, IntegratorId};
use smartsite_shared::store::records::{decode, record};
use smartsite_shared::store::{
    Condition, Cursor, Item, Key, Query, SkCond, Store, StoreError, TxOp, query_all, query_filtered,
};

use crate::domain::{
    BankCard, Certificate, Contract, Decision, DenyReason, Enrolment, ExitError, GateRules,
    IdDocument, IdValidUntil, NewTeam, Phone, RulesError, Sex, Team, TeamId, TrainingRecord,
    WorkRole, WorkType, Worker, WorkerId, WorkforceRulesSet, age_on, decide,
};
use crate::keys;
use pii::{Pii, PiiError, PiiField, Sealed};
use vault::KeyVault;

/// How often a write is retried after losing a race.
const MAX_ATTEMPTS: usize = 8;
/// The optimistic-concurrency counter of every record.
const REV: &str = "rev";
/// The sealed numbers of a person's record.
const SEALED: &str = "pii";
/// Training records kept per person; beyond them a record is refused.
pub const MAX_TRAINING_RECORDS: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum WorkforceError {
    #[error(transparent)]
    Field(#[from] FieldError),
    #[error("the worker is already enrolled and active in this project")]
    AlreadyEnrolled,
    #[error("this ID number is enrolled under another name")]
    IdentityMismatch,
    #[error(transparent)]
    Exit(#[from] ExitError),
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error(transparent)]
    Pii(#[from] PiiError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the record kept changing concurrently; retry")]
    Contention,
}

type Result<T, E = WorkforceError> = std::result::Result<T, E>;

/// An enrolment (进场) as parsed from a request.
#[derive(Debug, Clone)]
pub struct Enrol {
    pub document: IdDocument,
    pub name: String,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    pub phone: Phone,
    pub bank_card: Option<BankCard>,
    pub bank_name: Option<String>,
    pub id_valid_until: IdValidUntil,
    pub team_id: TeamId,
    pub work_type: WorkType,
    pub work_role: WorkRole,
    pub entry_date: NaiveDate,
    pub contract: Option<Contract>,
    pub certificates: Vec<Certificate>,
}

/// What an enrolment did.
#[derive(Debug, Clone)]
pub struct Enrolled {
    pub worker: Worker,
    pub enrolment: Enrolment,
    /// The person was new to the integrator (a new `worker_id`).
    pub new_person: bool,
}

/// A person's record as stored: the person, the sealed numbers, the revision.
#[derive(Debug, Clone)]
pub struct PersonRecord {
    pub worker: Worker,
    pub sealed: Sealed,
    rev: i64,
}

/// `active` or `exited`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = WorkerStatus)]
pub enum Status {
    Active,
    Exited,
}

impl Status {
    pub fn of(e: &Enrolment) -> Status {
        if e.is_active() {
            Status::Active
        } else {
            Status::Exited
        }
    }
}

/// A worker of a project as lists show it (API.md: `GET /v1/projects/{id}/workers`).
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WorkerLine {
    #[schema(value_type = String)]
    pub worker_id: WorkerId,
    pub name: String,
    /// First 6, eight `*`, last 4.
    pub id_number_masked: String,
    /// Whole years today (Asia/Shanghai).
    pub age: Option<u32>,
    pub sex: Sex,
    #[schema(value_type = String)]
    pub work_type: WorkType,
    pub work_role: WorkRole,
    #[schema(value_type = String)]
    pub team_id: TeamId,
    pub status: Status,
    pub entry_date: NaiveDate,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_date: Option<NaiveDate>,
    /// What the gate would deny today, and why (empty: it would allow).
    pub blockers: Vec<DenyReason>,
}

/// An audited reveal of a person's number: who, when, which worker, which number.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Reveal {
    pub id: String,
    #[schema(value_type = String)]
    pub worker_id: WorkerId,
    /// `id_number`, `phone` or `bank_card`.
    #[schema(value_type = String)]
    pub field: PiiField,
    /// The user who saw it (`sub`).
    pub by: String,
    pub at: String,
}

/// Today in Asia/Shanghai.
pub fn today() -> NaiveDate {
    smartsite_shared::calendar::shanghai_date(Utc::now())
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Now to the microsecond: the audit's key order is the order of reveals.
fn now_micros() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Whether a failed write lost a race (reload and retry) rather than failed.
fn lost_race(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::ConditionFailed | StoreError::TransactionConditionFailed { .. }
    )
}

fn rev_of(item: &Item) -> i64 {
    item.n(REV).unwrap_or(0)
}

/// A put that creates (`rev` 0: must not exist) or replaces revision `rev`.
fn put(item: Item, rev: i64) -> TxOp {
    TxOp::Put {
        item: item.with(REV, rev + 1),
        cond: Some(if rev == 0 {
            Condition::NotExists
        } else {
            Condition::equals(REV, rev)
        }),
    }
}

/// The workforce service over the storage port.
#[derive(Clone)]
pub struct Workforce {
    store: Arc<dyn Store>,
    rules: Arc<WorkforceRulesSet>,
    pii: Pii,
}

impl Workforce {
    pub fn new(
        store: Arc<dyn Store>,
        vault: Arc<dyn KeyVault>,
        rules: Arc<WorkforceRulesSet>,
    ) -> Workforce {
        Workforce {
            pii: Pii::new(vault, Arc::clone(&store)),
            store,
            rules,
        }
    }

    /// The service with the rules shipped in `functions/workforce/config/workforce.json`.
    pub fn with_default_rules(
        store: Arc<dyn Store>,
        vault: Arc<dyn KeyVault>,
    ) -> Result<Workforce, RulesError> {
        Ok(Workforce::new(
            store,
            vault,
            Arc::new(WorkforceRulesSet::default_rules()?),
        ))
    }

    pub fn rules(&self) -> &WorkforceRulesSet {
        &self.rules
    }

    /// The gate rules of the project on `day`.
    pub fn gate_rules(&self, p: &Project, day: NaiveDate) -> Result<GateRules> {
        Ok(self.rules.for_region(&p.region_code, day)?)
    }

    // ---- teams

    fn team_key(p: &Project, t: &TeamId) -> Key {
        Key::new(keys::project(&p.integrator_id, &p.id), keys::team_sk(t))
    }

    pub async fn create_team(&self, p: &Project, t: NewTeam) -> Result<Team> {
        let team = t.into_team(TeamId::generate(), p.id.clone(), now());
        let item = record(Self::team_key(p, &team.id), &team)?;
        self.store.transact(vec![put(item, 0)]).await?;
        Ok(team)
    }

    pub async fn team(&self, p: &Project, t: &TeamId) -> Result<Option<Team>> {
        match self.store.get(&Self::team_key(p, t)).await? {
            Some(item) => Ok(Some(decode(&item)?)),
            None => Ok(None),
        }
    }

    pub async fn teams(
        &self,
        p: &Project,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<Team>> {
        let q = Query::partition(&keys::project(&p.integrator_id, &p.id))
            .sk(SkCond::BeginsWith(keys::TEAM_PREFIX.into()));
        smartsite_shared::store::records::page(&*self.store, q, limit, cursor).await
    }

    // ---- people and enrolments

    fn person_key(i: &IntegratorId, w: &WorkerId) -> Key {
        Key::new(keys::worker(i, w), keys::SK_PERSON)
    }

    fn enrolment_key(p: &Project, w: &WorkerId) -> Key {
        Key::new(
            keys::project(&p.integrator_id, &p.id),
            keys::enrolment_sk(w),
        )
    }

    fn person_item(&self, i: &IntegratorId, w: &Worker, sealed: &Sealed) -> Result<Item> {
        Ok(record(Self::person_key(i, &w.id), w)?.with_json(SEALED, sealed)?)
    }

    /// A person of integrator `i`.
    pub async fn person(&self, i: &IntegratorId, w: &WorkerId) -> Result<Option<PersonRecord>> {
        match self.store.get(&Self::person_key(i, w)).await? {
            Some(item) => Ok(Some(Self::decode_person(&item)?)),
            None => Ok(None),
        }
    }

    fn decode_person(item: &Item) -> Result<PersonRecord> {
        Ok(PersonRecord {
            worker: decode(item)?,
            sealed: item.json(SEALED)?,
            rev: rev_of(item),
        })
    }

    /// A person's enrolment in `p` and its revision.
    async fn enrolment_rev(&self, p: &Project, w: &WorkerId) -> Result<Option<(Enrolment, i64)>> {
        match self.store.get(&Self::enrolment_key(p, w)).await? {
            Some(item) => Ok(Some((decode(&item)?, rev_of(&item)))),
            None => Ok(None),
        }
    }

    pub async fn enrolment(&self, p: &Project, w: &WorkerId) -> Result<Option<Enrolment>> {
        Ok(self.enrolment_rev(p, w).await?.map(|(e, _)| e))
    }

    /// The projects a person was ever enrolled in, within the integrator.
    pub async fn projects_of(&self, i: &IntegratorId, w: &WorkerId) -> Result<Vec<ProjectId>> {
        let q = Query::partition(&keys::worker(i, w))
            .sk(SkCond::BeginsWith(keys::PERSON_PROJECT_PREFIX.into()));
        let items = query_all(&*self.store, q).await?;
        let ids = items.iter().map(|item| {
            let id = item.key.sk.trim_start_matches(keys::PERSON_PROJECT_PREFIX);
            ProjectId::parse("project_id", id)
        });
        Ok(ids.collect::<Result<_, _>>()?)
    }

    /// Enrols a person (进场) in `p`: a new person gets a new `worker_id`; a known one (same
    /// document type and number within the integrator) keeps theirs. A second enrolment while
    /// active answers [`WorkforceError::AlreadyEnrolled`]; after an exit it starts a new stint.
    pub async fn enrol(&self, p: &Project, e: Enrol, today: NaiveDate) -> Result<Enrolled> {
        let rules = self.rules.in_force(today)?;
        if !rules.knows_work_type(&e.work_type) {
            return Err(
                FieldError::new("work_type", "not a national work type (工种) code").into(),
            );
        }
        for (n, c) in e.certificates.iter().enumerate() {
            if !rules.knows_work_type(&c.work_type) {
                return Err(FieldError::new(
                    &format!("certificates[{n}].work_type"),
                    "not a national work type (工种) code",
                )
                .into());
            }
        }
        if e.entry_date > today {
            return Err(FieldError::new("entry_date", "cannot lie in the future").into());
        }
        if self.team(p, &e.team_id).await?.is_none() {
            return Err(FieldError::new("team_id", "no such team in this project").into());
        }
        let i = &p.integrator_id;
        let index = self
            .pii
            .blind_index(i, &e.document.card_type, &e.document.number)
            .await?;
        let index_key = Key::new(keys::integrator(i), keys::person_index_sk(&index));
        for _ in 0..MAX_ATTEMPTS {
            let known = self.store.get(&index_key).await?;
            let attempt = match known.as_ref().and_then(|item| item.s("worker_id")) {
                None => self.enrol_new(p, &e, &index_key).await,
                Some(w) => {
                    let w = WorkerId::parse("worker_id", w)?;
                    self.enrol_known(p, &e, &w).await
                }
            };
            match attempt {
                Err(WorkforceError::Store(s)) if lost_race(&s) => continue,
                other => return other,
            }
        }
        Err(WorkforceError::Contention)
    }

    fn new_enrolment(p: &Project, w: &WorkerId, e: &Enrol) -> Enrolment {
        Enrolment {
            project_id: p.id.clone(),
            worker_id: w.clone(),
            team_id: e.team_id.clone(),
            work_type: e.work_type.clone(),
            work_role: e.work_role,
            entry_date: e.entry_date,
            exit_date: None,
            contract: e.contract.clone(),
            previous: Vec::new(),
            enrolled_at: now(),
        }
    }

    fn pointer(i: &IntegratorId, w: &WorkerId, p: &ProjectId) -> TxOp {
        TxOp::Put {
            item: Item::new(Key::new(keys::worker(i, w), keys::person_project_sk(p))),
            cond: None,
        }
    }

    async fn seal(
        &self,
        i: &IntegratorId,
        w: &WorkerId,
        e: &Enrol,
        bank: Option<&str>,
    ) -> Result<Sealed> {
        let mut fields = vec![
            (PiiField::IdNumber, e.document.number.expose()),
            (PiiField::Phone, e.phone.expose()),
        ];
        if let Some(b) = bank {
            fields.push((PiiField::BankCard, b));
        }
        Ok(self.pii.seal(&Self::person_key(i, w), &fields).await?)
    }

    async fn enrol_new(&self, p: &Project, e: &Enrol, index_key: &Key) -> Result<Enrolled> {
        let i = &p.integrator_id;
        let id = WorkerId::generate();
        let worker = Worker {
            id: id.clone(),
            name: e.name.clone(),
            id_card_type: e.document.card_type.clone(),
            id_number_masked: e.document.number.masked(),
            phone_masked: Some(e.phone.masked()),
            bank_card_masked: e.bank_card.as_ref().map(BankCard::masked),
            bank_name: e.bank_name.clone(),
            birth_date: e.birth_date,
            sex: e.sex,
            id_valid_until: e.id_valid_until,
            certificates: e.certificates.clone(),
            training: Vec::new(),
            blacklist: Vec::new(),
            created_at: now(),
        };
        let sealed = self
            .seal(i, &id, e, e.bank_card.as_ref().map(BankCard::expose))
            .await?;
        let enrolment = Self::new_enrolment(p, &id, e);
        let index = Item::new(index_key.clone()).with("worker_id", id.as_str());
        self.store
            .transact(vec![
                put(index, 0),
                put(self.person_item(i, &worker, &sealed)?, 0),
                Self::pointer(i, &id, &p.id),
                put(record(Self::enrolment_key(p, &id), &enrolment)?, 0),
            ])
            .await?;
        Ok(Enrolled {
            worker,
            enrolment,
            new_person: true,
        })
    }

    async fn enrol_known(&self, p: &Project, e: &Enrol, w: &WorkerId) -> Result<Enrolled> {
        let i = &p.integrator_id;
        let Some(person) = self.person(i, w).await? else {
            // The index is written with the person: a miss is a concurrent writer's half.
            return Err(StoreError::ConditionFailed.into());
        };
        let current = self.enrolment_rev(p, w).await?;
        if current.as_ref().is_some_and(|(c, _)| c.is_active()) {
            return Err(WorkforceError::AlreadyEnrolled);
        }
        if person.worker.name != e.name {
            return Err(WorkforceError::IdentityMismatch);
        }
        let mut worker = person.worker.clone();
        worker.id_valid_until = e.id_valid_until;
        worker.merge_certificates(e.certificates.clone());
        worker.phone_masked = Some(e.phone.masked());
        let bank = match &e.bank_card {
            Some(b) => {
                worker.bank_card_masked = Some(b.masked());
                worker.bank_name = e.bank_name.clone();
                Some(b.expose().to_owned())
            }
            None => {
                self.pii
                    .open(&Self::person_key(i, w), &person.sealed, PiiField::BankCard)
                    .await?
            }
        };
        let sealed = self.seal(i, w, e, bank.as_deref()).await?;
        let next = Self::new_enrolment(p, w, e);
        let (enrolment, rev) = match current {
            None => (next, 0),
            Some((mut old, rev)) => {
                old.reenter(next).map_err(|left| {
                    FieldError::new(
                        "entry_date",
                        format!("cannot precede the last exit from this project, {left}"),
                    )
                })?;
                (old, rev)
            }
        };
        self.store
            .transact(vec![
                put(self.person_item(i, &worker, &sealed)?, person.rev),
                Self::pointer(i, w, &p.id),
                put(record(Self::enrolment_key(p, w), &enrolment)?, rev),
            ])
            .await?;
        Ok(Enrolled {
            worker,
            enrolment,
            new_person: false,
        })
    }

    /// Records the exit (退场) of a person from `p` on `date`.
    pub async fn exit(
        &self,
        p: &Project,
        w: &WorkerId,
        date: NaiveDate,
        today: NaiveDate,
    ) -> Result<Enrolment> {
        for _ in 0..MAX_ATTEMPTS {
            let (mut e, rev) = self
                .enrolment_rev(p, w)
                .await?
                .ok_or(WorkforceError::NotFound)?;
            e.exit(date, today)?;
            let item = record(Self::enrolment_key(p, w), &e)?;
            match self.store.transact(vec![put(item, rev)]).await {
                Ok(()) => return Ok(e),
                Err(s) if lost_race(&s) => continue,
                Err(s) => return Err(s.into()),
            }
        }
        Err(WorkforceError::Contention)
    }

    /// Changes a person's record with `f` under its revision, retrying lost races.
    async fn change_person<T>(
        &self,
        i: &IntegratorId,
        w: &WorkerId,
        f: impl Fn(&mut Worker) -> Result<T>,
    ) -> Result<T> {
        for _ in 0..MAX_ATTEMPTS {
            let mut person = self.person(i, w).await?.ok_or(WorkforceError::NotFound)?;
            let out = f(&mut person.worker)?;
            let item = self.person_item(i, &person.worker, &person.sealed)?;
            match self.store.transact(vec![put(item, person.rev)]).await {
                Ok(()) => return Ok(out),
                Err(s) if lost_race(&s) => continue,
                Err(s) => return Err(s.into()),
            }
        }
        Err(WorkforceError::Contention)
    }

    /// Adds a training record (三级安全教育) to a person.
    pub async fn add_training(
        &self,
        i: &IntegratorId,
        w: &WorkerId,
        record: TrainingRecord,
    ) -> Result<Worker> {
        self.change_person(i, w, |worker| {
            if worker.training.len() >= MAX_TRAINING_RECORDS {
                return Err(FieldError::new(
                    "level",
                    format!("a worker keeps at most {MAX_TRAINING_RECORDS} training records"),
                )
                .into());
            }
            worker.training.push(record.clone());
            Ok(worker.clone())
        })
        .await
    }

    /// The gate's decision for a person at `p` on `day` (the ingest path of gate requests
    /// calls this; so do the lists' `blockers`).
    pub async fn decide(&self, p: &Project, w: &WorkerId, day: NaiveDate) -> Result<Decision> {
        let rules = self.gate_rules(p, day)?;
        let person = self
            .person(&p.integrator_id, w)
            .await?
            .ok_or(WorkforceError::NotFound)?;
        let enrolment = self.enrolment(p, w).await?;
        Ok(decide(&person.worker, enrolment.as_ref(), day, &rules))
    }

    /// A project's workers, a page at a time, each with its age and blockers on `today`.
    pub async fn list(
        &self,
        p: &Project,
        status: Option<Status>,
        limit: u32,
        cursor: Option<String>,
        today: NaiveDate,
    ) -> Result<ListPage<WorkerLine>> {
        let q = Query::partition(&keys::project(&p.integrator_id, &p.id))
            .sk(SkCond::BeginsWith(keys::ENROLMENT_PREFIX.into()));
        let (enrolments, next) = query_filtered(
            &*self.store,
            q,
            limit,
            cursor.map(Cursor::from_client),
            |item| {
                let e: Enrolment = decode(item)?;
                Ok::<_, WorkforceError>(status.is_none_or(|s| Status::of(&e) == s).then_some(e))
            },
        )
        .await?;
        let keys: Vec<Key> = enrolments
            .iter()
            .map(|e| Self::person_key(&p.integrator_id, &e.worker_id))
            .collect();
        let people = self.store.get_many(&keys).await?;
        let rules = self.gate_rules(p, today)?;
        let mut items = Vec::with_capacity(enrolments.len());
        for (e, item) in enrolments.iter().zip(people) {
            let Some(item) = item else { continue };
            let worker: Worker = decode(&item)?;
            items.push(line(&worker, e, today, &rules));
        }
        Ok(ListPage {
            items,
            next: next.map(|c| c.as_str().to_owned()),
        })
    }

    /// The clear value of a person's number, for an audited reveal: the reveal is recorded
    /// (who, when, which worker, which number) before the number is handed out.
    pub async fn reveal(
        &self,
        i: &IntegratorId,
        person: &PersonRecord,
        field: PiiField,
        by: &str,
    ) -> Result<Option<String>> {
        let w = &person.worker.id;
        let Some(clear) = self
            .pii
            .open(&Self::person_key(i, w), &person.sealed, field)
            .await?
        else {
            return Ok(None);
        };
        let r = Reveal {
            id: format!("rvl-{}", uuid::Uuid::now_v7().simple()),
            worker_id: w.clone(),
            field,
            by: by.to_owned(),
            at: now_micros(),
        };
        let key = Key::new(keys::integrator(i), keys::reveal_sk(&r.at, &r.id));
        self.store
            .put(record(key, &r)?, Some(Condition::NotExists))
            .await?;
        tracing::info!(worker_id = %w, field = field.as_str(), by, "personal number revealed");
        Ok(Some(clear))
    }

    /// The integrator's reveals, newest first, optionally of one worker.
    pub async fn reveals(
        &self,
        i: &IntegratorId,
        worker: Option<&WorkerId>,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<Reveal>> {
        let q = Query::partition(&keys::integrator(i))
            .sk(SkCond::BeginsWith(keys::REVEAL_PREFIX.into()))
            .backward();
        smartsite_shared::store::records::page_filtered(
            &*self.store,
            q,
            limit,
            cursor,
            |r: &Reveal| worker.is_none_or(|w| &r.worker_id == w),
        )
        .await
    }
}

/// A worker's line of a project list on `today`.
pub fn line(worker: &Worker, e: &Enrolment, today: NaiveDate, rules: &GateRules) -> WorkerLine {
    WorkerLine {
        worker_id: worker.id.clone(),
        name: worker.name.clone(),
        id_number_masked: worker.id_number_masked.clone(),
        age: age_on(worker.birth_date, today),
        sex: worker.sex,
        work_type: e.work_type.clone(),
        work_role: e.work_role,
        team_id: e.team_id.clone(),
        status: Status::of(e),
        entry_date: e.entry_date,
        exit_date: e.exit_date,
        blockers: decide(worker, Some(e), today, rules).reasons,
    }
}
