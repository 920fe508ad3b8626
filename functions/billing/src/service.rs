//! The billing service over the storage port (issue 5): packages, subscriptions, exactly-once
//! usage metering, period close into invoices, the invoice lifecycle and the hand-off of funded
//! invoices to the safety fund. The rating rules are pure and live in
//! `smartsite_shared::domain::billing`; this module persists their inputs and outputs.
//!
//! Storage (every key format in `store::keys`):
//! - package versions `(I#{i}#, PACKAGE#{pkg}#{version:010})`, immutable once written;
//! - subscriptions `(I#{i}#, SUBSCRIPTION#{s})` with the package version bought and the timeline
//!   (suspensions, package changes with the versions changed to), optimistic `rev`;
//! - the usage ledger `(I#{i}#USAGE#{source}#, E#{event id})`: the idempotency key *and* the raw
//!   event, written with `NotExists` in the same transaction as the aggregate updates
//!   `(I#{i}#UA#{s}#{period}#, …)`, so a redelivered event or a retried Lambda can never count
//!   twice. The ledger item expires ([`keep_until`]) only after usage of its period is no longer
//!   accepted ([`ACCEPT_DAYS`]), so a duplicate can never be taken for a new event;
//! - per subscription and closed period, the lines billed `(I#{i}#SUB#{s}#, BILLED#{period})`:
//!   the close marker, and what later corrections are computed against;
//! - invoices `(I#{i}#, INVOICE#{inv})` with pointers by period and by customer, the number
//!   counter `INVSEQ#{period}`, credit notes `CREDIT#{inv}#{cn}`.
//!
//! Platform usage (devices bound to the subscription's project, their hourly message counts from
//! ingest) is derived at rating time from the fleet records and the `HR#` aggregates, which are
//! themselves exactly-once, so it needs no events of its own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Days, NaiveDate, SecondsFormat, TimeDelta, Utc};
use futures::{StreamExt as _, TryStreamExt as _};
use serde::{Deserialize, Serialize};
use smartsite_shared::directory::{Directory, DirectoryError};
use smartsite_shared::domain::billing::{
    Aggregates, BillingError, Binding, BindingChange, ChangeKind, DeviceUsage, InvoiceLine, Metric,
    Model, Package, PackageChange, PausePolicy, Period, PriceLine, Suspension, Timeline,
    UsageEvent, classify_change, diff_lines, rate, total_fen,
};
use smartsite_shared::domain::bounds;
use smartsite_shared::domain::tenancy::ProjectId;
use smartsite_shared::domain::text;
use smartsite_shared::fleet::{Fleet, FleetError};
use smartsite_shared::handoff::{InvoiceChange, InvoiceIssued};
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::store::keys::{self, EntityKind};
use smartsite_shared::store::records::{self, ListPage, decode, record};
use smartsite_shared::store::{
    Condition, Cursor, Item, Key, MAX_TRANSACT_ITEMS, Query, SkCond, Store, StoreError, TxOp,
    prefix_successor,
};
use tokio::sync::Notify;

/// Days after a period's end before the scheduled close rates it: usage arriving by then lands
/// in its period's invoice.
pub const GRACE_DAYS: i64 = 3;
/// Usage of a period is accepted until this many days after the period's end; after its close
/// it becomes correction lines of the next period. Later usage is refused as too late.
pub const ACCEPT_DAYS: i64 = 35;
/// Idempotency keys outlive the acceptance window by this margin (clock skew, slow retries).
pub const KEEP_MARGIN_DAYS: i64 = 10;
/// Closed periods are checked for corrections while their acceptance window is open and this
/// long after (late hourly counts, backdated stop-work).
pub const CORRECTION_SLACK_DAYS: i64 = 62;
/// The source of usage posted to `POST /v1/usage` when the request names none.
pub const API_SOURCE: &str = "api";
/// Most events one call records.
pub const MAX_EVENTS: usize = 10_000;
/// Keys per batched read, batches read at once, and transactions written at once per usage call.
const READ_BATCH: usize = 64;
const READ_CONCURRENCY: usize = 16;
const WRITE_CONCURRENCY: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
    #[error(transparent)]
    Invalid(#[from] BillingError),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

impl From<smartsite_shared::domain::tenancy::FieldError> for ServiceError {
    fn from(e: smartsite_shared::domain::tenancy::FieldError) -> Self {
        ServiceError::Invalid(e.into())
    }
}

type Result<T, E = ServiceError> = std::result::Result<T, E>;

fn invalid(field: &str, message: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(BillingError::new(field, message))
}

/// Who pays a subscription's invoices: the project's 安全文明施工费, its 安全生产费, or other money.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FundingSource {
    CivilizedFee,
    SafetyFee,
    Other,
}

impl FundingSource {
    pub fn as_str(self) -> &'static str {
        match self {
            FundingSource::CivilizedFee => "civilized_fee",
            FundingSource::SafetyFee => "safety_fee",
            FundingSource::Other => "other",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Draft,
    Issued,
    Paid,
    Void,
}

impl InvoiceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InvoiceStatus::Draft => "draft",
            InvoiceStatus::Issued => "issued",
            InvoiceStatus::Paid => "paid",
            InvoiceStatus::Void => "void",
        }
    }
}

/// A package version as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredPackage {
    #[serde(flatten)]
    pub package: Package,
    pub created_at: String,
}

/// What a new package (or a new version of one) consists of.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"name": "塔吊监测租赁", "model": "leasing", "prices": [
    {"unit": "device_day", "price_fen": 800, "category": "tower_crane"},
    {"unit": "device_day", "price_fen": 200}]}))]
pub struct NewPackage {
    pub name: String,
    #[schema(value_type = String, example = "leasing")]
    pub model: Model,
    #[schema(value_type = Vec<Object>)]
    pub prices: Vec<PriceLine>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub pause_on_suspend: Option<PausePolicy>,
}

/// A subscription of a customer's project to a package version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: String,
    pub integrator_id: String,
    pub customer_id: String,
    pub project_id: String,
    pub funding_source: FundingSource,
    /// The package version bought.
    pub package: Package,
    pub timeline: Timeline,
    pub created_at: String,
    pub rev: i64,
}

impl Subscription {
    /// `ended` once the end date has passed, `suspended` during an open stop-work, else `active`.
    pub fn status(&self, today: NaiveDate) -> &'static str {
        if self.timeline.end.is_some_and(|e| e < today) {
            "ended"
        } else if self
            .timeline
            .suspensions
            .iter()
            .any(|s| s.from <= today && s.to.is_none_or(|t| t >= today))
        {
            "suspended"
        } else {
            "active"
        }
    }

    /// The wire form (API.md Billing): ids, dates, status, suspensions and changes.
    pub fn view(&self, today: NaiveDate) -> serde_json::Value {
        let changes: Vec<serde_json::Value> = self
            .timeline
            .schedule(&self.package)
            .iter()
            .skip(1)
            .map(|e| {
                serde_json::json!({
                    "effective_from": e.from,
                    "package_id": e.package.id,
                    "package_version": e.package.version,
                    "kind": e.via,
                })
            })
            .collect();
        serde_json::json!({
            "id": self.id,
            "customer_id": self.customer_id,
            "project_id": self.project_id,
            "package_id": self.package.id,
            "package_version": self.package.version,
            "model": self.package.model,
            "funding_source": self.funding_source,
            "start_date": self.timeline.start,
            "end_date": self.timeline.end,
            "suspensions": self.timeline.suspensions,
            "changes": changes,
            "status": self.status(today),
            "created_at": self.created_at,
        })
    }
}

#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"customer_id": "cus-0", "project_id": "prj-0", "package_id": "pkg-0",
    "start_date": "2026-11-01", "funding_source": "civilized_fee"}))]
pub struct NewSubscription {
    pub customer_id: String,
    pub project_id: String,
    pub package_id: String,
    /// The version to buy; the latest when absent.
    pub package_version: Option<u32>,
    #[schema(value_type = String, format = Date)]
    pub start_date: NaiveDate,
    #[schema(value_type = Option<String>, format = Date)]
    pub end_date: Option<NaiveDate>,
    pub funding_source: FundingSource,
}

/// An invoice of one subscription for one period. Amounts in fen; every line names the
/// aggregates it was rated from (`trace`) and its quantity in milli-units.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Invoice {
    pub id: String,
    /// 发票号: `{YYYYMM}-{n:06}`, numbered per integrator and period.
    pub number: String,
    pub integrator_id: String,
    pub customer_id: String,
    pub project_id: String,
    pub subscription_id: String,
    /// `YYYY-MM`
    pub period: String,
    pub funding_source: FundingSource,
    pub status: InvoiceStatus,
    #[schema(value_type = Vec<Object>)]
    pub lines: Vec<InvoiceLine>,
    pub total_fen: i64,
    /// The sum of the credit notes against it.
    pub credited_fen: i64,
    pub created_at: String,
    pub issued_at: Option<String>,
    pub paid_at: Option<String>,
    pub voided_at: Option<String>,
    pub rev: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CreditNote {
    pub id: String,
    pub invoice_id: String,
    pub amount_fen: i64,
    pub reason: String,
    pub created_by: String,
    pub created_at: String,
}

/// A subscription a close could not rate, and why (the field and detail of the refusal).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CloseFailure {
    pub subscription_id: String,
    pub field: String,
    pub detail: String,
}

/// What a close did: the period's invoices, and the subscriptions it could not rate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Closed {
    pub invoices: Vec<Invoice>,
    pub failed: Vec<CloseFailure>,
}

/// What was billed for a (subscription, period): the rating's own lines, updated when a later
/// close bills a correction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Billed {
    lines: Vec<InvoiceLine>,
    rev: i64,
}

/// A usage event as kept in the ledger.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LedgerEntry {
    source: String,
    period: Period,
    event: UsageEvent,
    received_at: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageStatus {
    /// Recorded now.
    Accepted,
    /// Recorded before (same source and id): nothing changed.
    Duplicate,
    /// Not recorded; `reason` says why. Deliver again only if the reason is retryable.
    Rejected,
}

/// The answer for one event of `POST /v1/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageResult {
    pub id: String,
    pub status: UsageStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Accepted after its period was closed for the subscription: it will be billed as a
    /// correction line in the next period closed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub correction: bool,
}

/// The wire form of a usage event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEvent {
    id: String,
    subscription_id: String,
    metric: Metric,
    #[serde(default)]
    quantity: i64,
    ts: DateTime<Utc>,
    #[serde(default)]
    device_id: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

/// The last day on which usage of `period` is accepted (exclusive instant).
pub fn accept_until(period: Period) -> DateTime<Utc> {
    period.end() + TimeDelta::days(ACCEPT_DAYS)
}

/// When a ledger item of `period` may expire (epoch seconds): after the acceptance window.
pub fn keep_until(period: Period) -> i64 {
    (accept_until(period) + TimeDelta::days(KEEP_MARGIN_DAYS)).timestamp()
}

/// The period the scheduled close rates at `now`: the previous month, once its grace window
/// has passed (`None` before that).
pub fn due_period(now: DateTime<Utc>) -> Option<Period> {
    let current = Period::containing(now);
    let previous = previous(current);
    (now >= previous.end() + TimeDelta::days(GRACE_DAYS)).then_some(previous)
}

pub fn previous(p: Period) -> Period {
    Period::of_date(p.first_day() - Days::new(1))
}

/// Source names and event and device ids: 1–128 of `A-Za-z0-9._:-` (never the key delimiter).
pub fn valid_token(s: &str, max: usize) -> bool {
    (1..=max).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

fn valid_category(c: &str) -> bool {
    (1..=64).contains(&c.len())
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Whether `s` is an id of ours with `prefix` (`pkg-`, `sub-`, `inv-`, `cn-`).
pub fn valid_id(prefix: &str, s: &str) -> bool {
    s.len() <= 64
        && s.strip_prefix(prefix).is_some_and(|r| {
            !r.is_empty()
                && r.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::now_v7().simple())
}

/// The invoice of (subscription, period): `inv-{YYYYMM}{subscription hex}`, the same on every
/// close.
pub fn invoice_id(subscription_id: &str, period: Period) -> String {
    let hex = subscription_id.trim_start_matches("sub-");
    format!("inv-{:04}{:02}{hex}", period.year(), period.month())
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn is_condition(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::ConditionFailed | StoreError::TransactionConditionFailed { .. }
    )
}

/// Whose invoices a listing reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvoiceScope<'a> {
    /// Every invoice of the integrator.
    All,
    /// Those billed to a customer.
    Customer(&'a str),
    /// Those of the projects a customer owned (建设单位) when they were closed, whoever they are
    /// billed to.
    Owner(&'a str),
}

/// The billing service. Cheap to clone.
#[derive(Clone)]
pub struct Billing {
    store: Arc<dyn Store>,
    fleet: Fleet,
    directory: Directory,
    issued: Option<Arc<Notify>>,
}

impl Billing {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Billing {
            fleet: Fleet::new(Arc::clone(&store)),
            directory: Directory::new(Arc::clone(&store)),
            store,
            issued: None,
        }
    }

    /// Notified after a hand-off event committed: the issue, a credit note or the void of a
    /// funded invoice (the single-box edition wakes the safety-fund consumer with it).
    pub fn with_issue_notify(mut self, n: Arc<Notify>) -> Self {
        self.issued = Some(n);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, key: Key) -> Result<Option<T>> {
        Ok(match self.store.get(&key).await? {
            Some(item) => Some(decode(&item)?),
            None => None,
        })
    }

    async fn query_all(&self, q: Query) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut cursor: Option<Cursor> = None;
        loop {
            let page = self
                .store
                .query(q.clone().limit(1000).after(cursor.take()))
                .await?;
            out.extend(page.items);
            match page.next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    // ---- packages

    fn package_key(i: &IntegratorId, id: &str, version: u32) -> Key {
        Key::new(keys::integrator(i), keys::package_sk(id, version))
    }

    async fn put_package(
        &self,
        i: &IntegratorId,
        package: Package,
        now: DateTime<Utc>,
    ) -> Result<StoredPackage> {
        package.validate_new()?;
        let stored = StoredPackage {
            package,
            created_at: stamp(now),
        };
        let key = Self::package_key(i, &stored.package.id, stored.package.version);
        match self
            .store
            .put(record(key, &stored)?, Some(Condition::NotExists))
            .await
        {
            Ok(()) => Ok(stored),
            Err(e) if is_condition(&e) => Err(ServiceError::Conflict(
                "another version of the package was created concurrently; retry".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// A new package at version 1.
    pub async fn create_package(
        &self,
        i: &IntegratorId,
        new: NewPackage,
        now: DateTime<Utc>,
    ) -> Result<StoredPackage> {
        let package = Package {
            id: new_id("pkg-"),
            version: 1,
            name: new.name.trim().to_owned(),
            model: new.model,
            prices: new.prices,
            pause_on_suspend: new.pause_on_suspend.unwrap_or_default(),
        };
        self.put_package(i, package, now).await
    }

    /// The next version of a package. Subscriptions keep the version they bought.
    pub async fn create_version(
        &self,
        i: &IntegratorId,
        id: &str,
        new: NewPackage,
        now: DateTime<Utc>,
    ) -> Result<StoredPackage> {
        let latest = self
            .package(i, id, None)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let package = Package {
            id: id.to_owned(),
            version: latest.package.version + 1,
            name: new.name.trim().to_owned(),
            model: new.model,
            prices: new.prices,
            pause_on_suspend: new.pause_on_suspend.unwrap_or_default(),
        };
        self.put_package(i, package, now).await
    }

    /// A version of a package, the latest when `version` is absent.
    pub async fn package(
        &self,
        i: &IntegratorId,
        id: &str,
        version: Option<u32>,
    ) -> Result<Option<StoredPackage>> {
        if !valid_id("pkg-", id) {
            return Ok(None);
        }
        match version {
            Some(v) => self.get_json(Self::package_key(i, id, v)).await,
            None => {
                let page = self
                    .store
                    .query(
                        Query::partition(&keys::integrator(i))
                            .sk(SkCond::BeginsWith(keys::package_versions_prefix(id)))
                            .backward()
                            .limit(1),
                    )
                    .await?;
                Ok(match page.items.first() {
                    Some(item) => Some(decode(item)?),
                    None => None,
                })
            }
        }
    }

    /// The latest version of each package of the integrator, by id: up to `limit` packages
    /// after the package `after` (the `next` of the previous page, which is the last package id
    /// it held), and the `next` of this page when more packages follow.
    pub async fn list_packages(
        &self,
        i: &IntegratorId,
        limit: u32,
        after: Option<&str>,
    ) -> Result<(Vec<StoredPackage>, Option<String>)> {
        let from = match after {
            None => keys::PACKAGE_PREFIX.to_owned(),
            Some(id) if valid_id("pkg-", id) => {
                prefix_successor(&keys::package_versions_prefix(id)).ok_or(StoreError::BadCursor)?
            }
            Some(_) => return Err(StoreError::BadCursor.into()),
        };
        let to = prefix_successor(keys::PACKAGE_PREFIX).ok_or(StoreError::BadCursor)?;
        let q = Query::partition(&keys::integrator(i)).sk(SkCond::Between(from, to));
        let limit = limit.max(1) as usize;
        let mut out: Vec<StoredPackage> = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .query(q.clone().limit(200).after(cursor.take()))
                .await?;
            for item in &page.items {
                let p: StoredPackage = decode(item)?;
                // A package's versions sort in order: the last one read is the latest.
                if let Some(last) = out.last_mut().filter(|l| l.package.id == p.package.id) {
                    *last = p;
                } else if out.len() == limit {
                    let next = out.last().map(|l| l.package.id.clone());
                    return Ok((out, next));
                } else {
                    out.push(p);
                }
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => return Ok((out, None)),
            }
        }
    }

    // ---- subscriptions

    fn subscription_key(i: &IntegratorId, id: &str) -> Key {
        Key::new(keys::integrator(i), keys::subscription_sk(id))
    }

    fn subscription_item(i: &IntegratorId, s: &Subscription) -> Result<Item> {
        Ok(record(Self::subscription_key(i, &s.id), s)?.with("rev", s.rev))
    }

    /// Subscribes a project. The caller has checked that customer and project exist and belong
    /// together.
    pub async fn create_subscription(
        &self,
        i: &IntegratorId,
        new: NewSubscription,
        now: DateTime<Utc>,
    ) -> Result<Subscription> {
        let package = self
            .package(i, &new.package_id, new.package_version)
            .await?
            .ok_or_else(|| invalid("package_id", "no such package (version)"))?
            .package;
        bounds::date("start_date", new.start_date)?;
        new.end_date
            .map(|d| bounds::date("end_date", d))
            .transpose()?;
        let timeline = Timeline {
            end: new.end_date,
            ..Timeline::starting(new.start_date)
        };
        timeline.validate().map_err(|e| {
            ServiceError::Invalid(BillingError::new(
                if e.field == "end" {
                    "end_date"
                } else {
                    "start_date"
                },
                e.message,
            ))
        })?;
        let s = Subscription {
            id: new_id("sub-"),
            integrator_id: i.to_string(),
            customer_id: new.customer_id,
            project_id: new.project_id,
            funding_source: new.funding_source,
            package,
            timeline,
            created_at: stamp(now),
            rev: 1,
        };
        self.store
            .put(Self::subscription_item(i, &s)?, Some(Condition::NotExists))
            .await?;
        Ok(s)
    }

    pub async fn subscription(&self, i: &IntegratorId, id: &str) -> Result<Option<Subscription>> {
        if !valid_id("sub-", id) {
            return Ok(None);
        }
        self.get_json(Self::subscription_key(i, id)).await
    }

    /// A page of the integrator's subscriptions (by id) that `keep` accepts; a page may be
    /// short while `next` says more may follow.
    pub async fn list_subscriptions_page(
        &self,
        i: &IntegratorId,
        limit: u32,
        cursor: Option<String>,
        keep: impl Fn(&Subscription) -> bool,
    ) -> Result<ListPage<Subscription>> {
        let q = Query::partition(&keys::integrator(i))
            .sk(SkCond::BeginsWith(keys::SUBSCRIPTION_PREFIX.into()));
        records::page_filtered(self.store.as_ref(), q, limit, cursor, keep).await
    }

    /// Every subscription of the integrator, by id.
    pub async fn list_subscriptions(&self, i: &IntegratorId) -> Result<Vec<Subscription>> {
        let items = self
            .query_all(
                Query::partition(&keys::integrator(i))
                    .sk(SkCond::BeginsWith(keys::SUBSCRIPTION_PREFIX.into())),
            )
            .await?;
        items
            .iter()
            .map(|i| decode(i).map_err(Into::into))
            .collect()
    }

    /// Applies `change` to the stored subscription, if nobody changed it meanwhile.
    async fn update<F>(&self, i: &IntegratorId, id: &str, change: F) -> Result<Subscription>
    where
        F: FnOnce(&mut Subscription) -> Result<()>,
    {
        let mut s = self
            .subscription(i, id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        let rev = s.rev;
        change(&mut s)?;
        s.timeline.validate()?;
        s.rev = rev + 1;
        match self
            .store
            .put(
                Self::subscription_item(i, &s)?,
                Some(Condition::equals("rev", rev)),
            )
            .await
        {
            Ok(()) => Ok(s),
            Err(e) if is_condition(&e) => Err(ServiceError::Conflict(
                "the subscription changed concurrently; retry".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    /// Stop-work (停工) from `from` (inclusive), until `to` (inclusive) or a resume.
    pub async fn suspend(
        &self,
        i: &IntegratorId,
        id: &str,
        from: NaiveDate,
        to: Option<NaiveDate>,
    ) -> Result<Subscription> {
        bounds::date("from", from)?;
        to.map(|d| bounds::date("to", d)).transpose()?;
        self.update(i, id, |s| {
            if s.timeline.suspensions.iter().any(|x| x.to.is_none()) {
                return Err(ServiceError::Conflict(
                    "the subscription is suspended already; resume it first".into(),
                ));
            }
            if from < s.timeline.start || s.timeline.end.is_some_and(|e| from > e) {
                return Err(invalid("from", "must lie within the subscription"));
            }
            if to.is_some_and(|t| t < from) {
                return Err(invalid("to", "must not be before from"));
            }
            let overlaps = s.timeline.suspensions.iter().any(|x| {
                let end = to.unwrap_or(NaiveDate::MAX);
                x.from <= end && x.to.is_none_or(|t| t >= from)
            });
            if overlaps {
                return Err(invalid("from", "overlaps an earlier suspension"));
            }
            s.timeline.suspensions.push(Suspension { from, to });
            Ok(())
        })
        .await
    }

    /// Work resumes on `on`: the open suspension ends the day before.
    pub async fn resume(&self, i: &IntegratorId, id: &str, on: NaiveDate) -> Result<Subscription> {
        bounds::date("on", on)?;
        self.update(i, id, |s| {
            let open = s
                .timeline
                .suspensions
                .iter_mut()
                .find(|x| x.to.is_none())
                .ok_or_else(|| {
                    ServiceError::Conflict("the subscription is not suspended".into())
                })?;
            if on <= open.from {
                return Err(invalid("on", "must be after the suspension's first day"));
            }
            open.to = Some(on - Days::new(1));
            Ok(())
        })
        .await
    }

    /// A change of package on `on`: an upgrade applies at once (with a prorated credit of the
    /// old project fee), a downgrade from the next period.
    pub async fn change_package(
        &self,
        i: &IntegratorId,
        id: &str,
        package_id: &str,
        version: Option<u32>,
        on: NaiveDate,
    ) -> Result<(Subscription, ChangeKind)> {
        bounds::date("on", on)?;
        let package = self
            .package(i, package_id, version)
            .await?
            .ok_or_else(|| invalid("package_id", "no such package (version)"))?
            .package;
        let mut kind = ChangeKind::Downgrade;
        let s = self
            .update(i, id, |s| {
                if on < s.timeline.start || s.timeline.end.is_some_and(|e| on > e) {
                    return Err(invalid("on", "must lie within the subscription"));
                }
                let schedule = s.timeline.schedule(&s.package);
                let current = schedule
                    .iter()
                    .rev()
                    .find(|e| e.from <= on)
                    .map_or(&s.package, |e| e.package);
                kind = classify_change(current, &package);
                s.timeline.changes.push(PackageChange { on, package });
                Ok(())
            })
            .await?;
        Ok((s, kind))
    }

    /// The subscription ends on `on` (the last billed day).
    pub async fn end(&self, i: &IntegratorId, id: &str, on: NaiveDate) -> Result<Subscription> {
        bounds::date("on", on)?;
        self.update(i, id, |s| {
            if on < s.timeline.start {
                return Err(invalid("on", "must not be before the start date"));
            }
            if s.timeline.changes.iter().any(|c| c.on > on) {
                return Err(invalid("on", "a package change is dated after it"));
            }
            s.timeline.end = Some(on);
            Ok(())
        })
        .await
    }

    // ---- usage

    /// Records usage events exactly once per (integrator, `source`, event id) and answers for
    /// each: accepted, duplicate or rejected with the reason. Events are independent: a
    /// rejected one changes nothing for the others.
    pub async fn record_usage(
        &self,
        i: &IntegratorId,
        source: &str,
        events: &[serde_json::Value],
        now: DateTime<Utc>,
    ) -> Result<Vec<UsageResult>> {
        if !valid_token(source, 64) {
            return Err(invalid("source", "must be 1 to 64 of A-Za-z0-9._:-"));
        }
        let mut results: Vec<UsageResult> = events
            .iter()
            .map(|v| UsageResult {
                id: v
                    .get("id")
                    .and_then(|x| x.as_str())
                    .unwrap_or_default()
                    .to_owned(),
                status: UsageStatus::Accepted,
                reason: None,
                correction: false,
            })
            .collect();
        let mut subs: HashMap<String, Option<Subscription>> = HashMap::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut pending: Vec<Pending> = Vec::new();
        for (idx, v) in events.iter().enumerate() {
            let r = &mut results[idx];
            let e = match self.parse_event(i, v, now, &mut subs).await? {
                Ok(e) => e,
                Err(reason) => {
                    r.status = UsageStatus::Rejected;
                    r.reason = Some(reason);
                    continue;
                }
            };
            if seen.insert(e.id.clone(), idx).is_some() {
                r.status = UsageStatus::Duplicate;
                continue;
            }
            let period = Period::containing(e.ts);
            pending.push(Pending {
                idx,
                key: Key::new(keys::usage_events(i, source), keys::usage_event_sk(&e.id)),
                period,
                event: e,
            });
        }

        // Already recorded earlier: filtered with reads, which cost far less than failed writes.
        let present = exist_many(
            Arc::clone(&self.store),
            pending.iter().map(|p| p.key.clone()).collect(),
        )
        .await?;
        let mut fresh = Vec::with_capacity(pending.len());
        for (p, dup) in pending.into_iter().zip(present) {
            if dup {
                results[p.idx].status = UsageStatus::Duplicate;
            } else {
                fresh.push(p);
            }
        }

        // Events of one aggregate together, so a transaction touches few aggregate items.
        fresh.sort_by(|a, b| {
            (&a.event.subscription_id, a.period, &a.event.device_id).cmp(&(
                &b.event.subscription_id,
                b.period,
                &b.event.device_id,
            ))
        });
        let chunks = chunk(i, source, fresh);
        let received_at = stamp(now);
        let outcomes: Vec<Vec<(usize, UsageStatus, Option<String>)>> =
            futures::stream::iter(chunks.into_iter().map(|c| {
                let received_at = received_at.clone();
                async move { self.write_chunk(i, source, c, &received_at).await }
            }))
            .buffer_unordered(WRITE_CONCURRENCY)
            .try_collect()
            .await?;
        let mut corrections: HashMap<(String, Period), bool> = HashMap::new();
        for (idx, status, reason) in outcomes.into_iter().flatten() {
            results[idx].status = status;
            results[idx].reason = reason;
        }
        // Accepted after the close of their period: say they become corrections.
        for (idx, v) in events.iter().enumerate() {
            if results[idx].status != UsageStatus::Accepted {
                continue;
            }
            let (Some(sub), Some(ts)) = (
                v.get("subscription_id").and_then(|x| x.as_str()),
                v.get("ts")
                    .and_then(|x| x.as_str())
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
            ) else {
                continue;
            };
            let period = Period::containing(ts.with_timezone(&Utc));
            let k = (sub.to_owned(), period);
            let closed = match corrections.get(&k) {
                Some(c) => *c,
                None => {
                    let c = self
                        .store
                        .get(&Key::new(
                            keys::subscription(i, sub),
                            keys::billed_sk(&period.to_string()),
                        ))
                        .await?
                        .is_some();
                    corrections.insert(k, c);
                    c
                }
            };
            results[idx].correction = closed;
        }
        Ok(results)
    }

    /// One event checked, or the reason it is refused.
    async fn parse_event(
        &self,
        i: &IntegratorId,
        v: &serde_json::Value,
        now: DateTime<Utc>,
        subs: &mut HashMap<String, Option<Subscription>>,
    ) -> Result<Result<UsageEvent, String>> {
        let w: WireEvent = match serde_json::from_value(v.clone()) {
            Ok(w) => w,
            Err(e) => return Ok(Err(format!("invalid event: {e}"))),
        };
        if !valid_token(&w.id, 128) {
            return Ok(Err("id must be 1 to 128 of A-Za-z0-9._:-".into()));
        }
        if let Some(d) = &w.device_id
            && !valid_token(d, 128)
        {
            return Ok(Err("device_id must be 1 to 128 of A-Za-z0-9._:-".into()));
        }
        if let Some(c) = &w.category
            && !valid_category(c)
        {
            return Ok(Err(
                "category must be 1 to 64 of lower-case letters, digits and _".into(),
            ));
        }
        let e = UsageEvent {
            id: w.id,
            subscription_id: w.subscription_id,
            metric: w.metric,
            quantity: w.quantity,
            ts: w.ts,
            device_id: w.device_id,
            category: w.category,
        };
        if let Err(err) = e.check() {
            return Ok(Err(err.to_string()));
        }
        if e.ts.timestamp() < 946_684_800 {
            return Ok(Err("ts: before 2000-01-01".into()));
        }
        if e.ts > now + TimeDelta::days(1) {
            return Ok(Err("ts: more than a day in the future".into()));
        }
        let period = Period::containing(e.ts);
        if now >= accept_until(period) {
            return Ok(Err(format!(
                "too late: usage of {period} was accepted until {}",
                stamp(accept_until(period))
            )));
        }
        if !subs.contains_key(&e.subscription_id) {
            let s = self.subscription(i, &e.subscription_id).await?;
            subs.insert(e.subscription_id.clone(), s);
        }
        if subs.get(&e.subscription_id).is_none_or(Option::is_none) {
            return Ok(Err(format!("unknown subscription {:?}", e.subscription_id)));
        }
        Ok(Ok(e))
    }

    /// Writes one chunk all-or-nothing; a failed condition means another delivery stored some
    /// of these events meanwhile: those become duplicates and the rest is tried again.
    async fn write_chunk(
        &self,
        i: &IntegratorId,
        source: &str,
        mut chunk: Vec<Pending>,
        received_at: &str,
    ) -> Result<Vec<(usize, UsageStatus, Option<String>)>> {
        let mut out = Vec::with_capacity(chunk.len());
        while !chunk.is_empty() {
            let ops = chunk_ops(i, source, &chunk, received_at)?;
            match self.store.transact(ops).await {
                Ok(()) => {
                    out.extend(chunk.iter().map(|p| (p.idx, UsageStatus::Accepted, None)));
                    break;
                }
                Err(e) if is_condition(&e) => {
                    let before = chunk.len();
                    let mut rest = Vec::with_capacity(before);
                    let present = exist_many(
                        Arc::clone(&self.store),
                        chunk.iter().map(|p| p.key.clone()).collect(),
                    )
                    .await?;
                    for (p, dup) in chunk.into_iter().zip(present) {
                        if dup {
                            out.push((p.idx, UsageStatus::Duplicate, None));
                        } else {
                            rest.push(p);
                        }
                    }
                    if rest.len() == before {
                        return Err(ServiceError::Conflict(
                            "usage write failed a condition no event explains".into(),
                        ));
                    }
                    chunk = rest;
                }
                Err(e) if e.is_retryable() => {
                    tracing::warn!(error = %e, "usage write unavailable");
                    out.extend(chunk.iter().map(|p| {
                        (
                            p.idx,
                            UsageStatus::Rejected,
                            Some("storage unavailable: deliver again".to_owned()),
                        )
                    }));
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(out)
    }

    /// The usage aggregates of one (subscription, period) posted as events.
    pub async fn usage(&self, i: &IntegratorId, sub: &str, period: Period) -> Result<Aggregates> {
        let items = self
            .query_all(Query::partition(&keys::usage_aggregate(
                i,
                sub,
                &period.to_string(),
            )))
            .await?;
        let mut agg = Aggregates::default();
        for item in &items {
            let sk = item.key.sk.as_str();
            if sk == keys::AGG_TOTAL {
                agg.messages = item.n("msgs").unwrap_or(0);
                agg.message_events = u64::try_from(item.n("msg_events").unwrap_or(0)).unwrap_or(0);
            } else if let Some(d) = sk.strip_prefix(keys::AGG_DEVICE_PREFIX) {
                let dev = agg.devices.entry(d.to_owned()).or_default();
                dev.messages = item.n("msgs").unwrap_or(0);
                dev.message_events = u64::try_from(item.n("msg_events").unwrap_or(0)).unwrap_or(0);
                dev.active = item.n("active").unwrap_or(0) > 0;
            } else if let Some(rest) = sk.strip_prefix(keys::AGG_CATEGORY_PREFIX) {
                if let Some((d, c)) = rest.split_once(keys::DELIM) {
                    note_category(agg.devices.entry(d.to_owned()).or_default(), c);
                }
            } else if let Some(rest) = sk.strip_prefix(keys::AGG_BINDING_PREFIX) {
                let parts: Vec<&str> = rest.splitn(4, keys::DELIM).collect();
                if let [d, at, c, _] = parts[..]
                    && let Ok(at_ms) = at.parse::<i64>()
                {
                    agg.devices
                        .entry(d.to_owned())
                        .or_default()
                        .bindings
                        .push(Binding {
                            at_ms,
                            change: if c == "1" {
                                BindingChange::Unbound
                            } else {
                                BindingChange::Bound
                            },
                        });
                }
            }
        }
        for dev in agg.devices.values_mut() {
            dev.bindings.sort_unstable();
        }
        Ok(agg)
    }

    /// Usage the platform measured itself for a project in a period: each device bound to it
    /// (bound from its provisioning, unbound at decommissioning; category from its record) with
    /// the messages ingest counted in the period's hours (`HR#…` `msgs`).
    pub async fn platform_usage(
        &self,
        i: &IntegratorId,
        project: &str,
        period: Period,
    ) -> Result<Aggregates> {
        let mut agg = Aggregates::default();
        let Ok(pid) = ProjectId::parse("project_id", project) else {
            return Ok(agg);
        };
        let start = period.start();
        let end = period.end();
        let mut cursor = None;
        loop {
            let page = self.fleet.list_project(i, &pid, 200, cursor).await?;
            for d in &page.items {
                let Some(bound) = DateTime::parse_from_rfc3339(&d.created_at)
                    .ok()
                    .map(|t| t.with_timezone(&Utc))
                else {
                    continue;
                };
                let unbound = d
                    .decommissioned_at
                    .as_deref()
                    .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&Utc));
                if bound >= end || unbound.is_some_and(|u| u <= start) {
                    continue;
                }
                let mut dev = DeviceUsage {
                    category: serde_json::to_value(d.category)?
                        .as_str()
                        .map(str::to_owned),
                    ..DeviceUsage::default()
                };
                dev.bindings.push(Binding {
                    at_ms: bound.timestamp_millis(),
                    change: BindingChange::Bound,
                });
                if let Some(u) = unbound {
                    dev.bindings.push(Binding {
                        at_ms: u.timestamp_millis(),
                        change: BindingChange::Unbound,
                    });
                }
                let hours = self
                    .query_all(
                        Query::partition(&keys::entity(i, EntityKind::Device, d.id.as_str())).sk(
                            SkCond::Between(
                                keys::hourly_sk(&hour(start)),
                                keys::hourly_sk(&hour(end - TimeDelta::hours(1))),
                            ),
                        ),
                    )
                    .await?;
                let msgs = bounds::report_sum(hours.iter().map(|h| h.n("msgs").unwrap_or(0)));
                dev.messages = msgs;
                dev.message_events = u64::try_from(msgs).unwrap_or(0);
                dev.active = msgs > 0;
                agg.messages = agg.messages.saturating_add(msgs);
                agg.message_events = agg.message_events.saturating_add(dev.message_events);
                agg.devices.insert(d.id.as_str().to_owned(), dev);
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => return Ok(agg),
            }
        }
    }

    /// Everything a (subscription, period) is rated on: posted usage with the platform's own
    /// usage laid over it, each device counted once ([`Aggregates::overlay_platform`]).
    pub async fn rated_usage(
        &self,
        i: &IntegratorId,
        s: &Subscription,
        period: Period,
    ) -> Result<Aggregates> {
        let mut agg = self.usage(i, &s.id, period).await?;
        let platform = self.platform_usage(i, &s.project_id, period).await?;
        agg.overlay_platform(&platform, period);
        Ok(agg)
    }

    // ---- close

    /// Rates every subscription of the integrator for `period` into invoices (one per
    /// subscription with anything to bill), with corrections of earlier closed periods whose
    /// usage changed since. Idempotent: a second close answers the invoices of the first.
    ///
    /// A subscription whose rating is refused (an amount beyond the bounds) is reported in
    /// [`Closed::failed`] with the reason; nothing is written for it (no invoice, no close
    /// marker, so a later close tries it again) and the others close.
    pub async fn close(
        &self,
        i: &IntegratorId,
        period: Period,
        now: DateTime<Utc>,
    ) -> Result<Closed> {
        if now < period.end() {
            return Err(invalid("period", format!("{period} has not ended yet")));
        }
        let mut subs = self.list_subscriptions(i).await?;
        subs.sort_by(|a, b| a.id.cmp(&b.id));
        let mut out = Closed::default();
        for s in &subs {
            match self.close_one(i, s, period, now).await {
                Ok(Some(inv)) => out.invoices.push(inv),
                Ok(None) => {}
                Err(ServiceError::Invalid(e)) => {
                    tracing::error!(integrator_id = %i, subscription_id = %s.id, %period,
                        field = %e.field, error = %e.message, "subscription not rated");
                    out.failed.push(CloseFailure {
                        subscription_id: s.id.clone(),
                        field: e.field,
                        detail: e.message,
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    async fn close_one(
        &self,
        i: &IntegratorId,
        s: &Subscription,
        period: Period,
        now: DateTime<Utc>,
    ) -> Result<Option<Invoice>> {
        if s.timeline.start > period.last_day() {
            return Ok(None);
        }
        let inv_id = invoice_id(&s.id, period);
        let sub_pk = keys::subscription(i, &s.id);
        let billed_key = Key::new(sub_pk.clone(), keys::billed_sk(&period.to_string()));
        if self.store.get(&billed_key).await?.is_some() {
            return self.invoice(i, &inv_id).await;
        }
        let usage = self.rated_usage(i, s, period).await?;
        let lines = rate(&s.package, &s.timeline, &usage, period)?;

        // Corrections of earlier closed periods whose rating changed (late usage).
        let mut ops = Vec::new();
        let mut all_lines = lines.clone();
        let earlier = self
            .query_all(Query::partition(&sub_pk).sk(SkCond::Between(
                keys::BILLED_PREFIX.to_owned(),
                keys::billed_sk(&previous(period).to_string()),
            )))
            .await?;
        for item in &earlier {
            if ops.len() >= MAX_TRANSACT_ITEMS - 10 {
                break; // the rest is corrected by the next close
            }
            let Some(p) = item
                .key
                .sk
                .strip_prefix(keys::BILLED_PREFIX)
                .and_then(|p| Period::parse(p).ok())
            else {
                continue;
            };
            // Usage of a period stops changing once its acceptance window closed; periods that
            // long gone are not rated again (the cost of a close stays flat over the years).
            if period.start() - p.end() > TimeDelta::days(ACCEPT_DAYS + CORRECTION_SLACK_DAYS) {
                continue;
            }
            let billed: Billed = decode(item)?;
            let usage = self.rated_usage(i, s, p).await?;
            let now_rated = rate(&s.package, &s.timeline, &usage, p)?;
            let corr = diff_lines(p, &billed.lines, &now_rated)?;
            if corr.is_empty() {
                continue;
            }
            all_lines.extend(corr);
            let updated = Billed {
                lines: now_rated,
                rev: billed.rev + 1,
            };
            ops.push(TxOp::Put {
                item: record(item.key.clone(), &updated)?.with("rev", updated.rev),
                cond: Some(Condition::equals("rev", billed.rev)),
            });
        }
        let billed = Billed { lines, rev: 1 };
        ops.push(TxOp::Put {
            item: record(billed_key, &billed)?.with("rev", 1),
            cond: Some(Condition::NotExists),
        });
        let mut invoice = None;
        if !all_lines.is_empty() {
            let n = self
                .store
                .add(
                    &Key::new(
                        keys::integrator(i),
                        keys::invoice_seq_sk(&period.to_string()),
                    ),
                    "n",
                    1,
                )
                .await?;
            let inv = Invoice {
                id: inv_id.clone(),
                number: format!("{:04}{:02}-{n:06}", period.year(), period.month()),
                integrator_id: i.to_string(),
                customer_id: s.customer_id.clone(),
                project_id: s.project_id.clone(),
                subscription_id: s.id.clone(),
                period: period.to_string(),
                funding_source: s.funding_source,
                status: InvoiceStatus::Draft,
                total_fen: total_fen(&all_lines)?,
                lines: all_lines,
                credited_fen: 0,
                created_at: stamp(now),
                issued_at: None,
                paid_at: None,
                voided_at: None,
                rev: 1,
            };
            ops.push(TxOp::Put {
                item: invoice_item(i, &inv)?,
                cond: Some(Condition::NotExists),
            });
            let pointer = |sk: String| TxOp::Put {
                item: Item::new(Key::new(keys::integrator(i), sk))
                    .with("invoice_id", inv.id.as_str()),
                cond: None,
            };
            ops.push(pointer(keys::invoice_by_period_sk(
                &inv.period,
                &inv.customer_id,
                &inv.id,
            )));
            ops.push(pointer(keys::invoice_by_customer_sk(
                &inv.customer_id,
                &inv.period,
                &inv.id,
            )));
            if let Some(owner) = self.project_owner(i, &inv.project_id).await? {
                ops.push(pointer(keys::invoice_by_owner_sk(
                    &owner,
                    &inv.period,
                    &inv.id,
                )));
            }
            invoice = Some(inv);
        }
        match self.store.transact(ops).await {
            Ok(()) => Ok(invoice),
            // A concurrent close of the same period won: answer what it wrote.
            Err(e) if is_condition(&e) => self.invoice(i, &inv_id).await,
            Err(e) => Err(e.into()),
        }
    }

    // ---- invoices

    /// The owner (建设单位) of a project, if it has one.
    async fn project_owner(&self, i: &IntegratorId, project: &str) -> Result<Option<String>> {
        let Ok(pid) = ProjectId::parse("project_id", project) else {
            return Ok(None);
        };
        let p = self.directory.project(i, &pid).await.map_err(|e| match e {
            DirectoryError::Store(s) => ServiceError::Store(s),
            DirectoryError::Corrupt(j) => ServiceError::Corrupt(j),
            other @ DirectoryError::Exists(_) => ServiceError::Conflict(other.to_string()),
        })?;
        Ok(p.and_then(|p| p.owner_customer_id)
            .map(|c| c.as_str().to_owned()))
    }

    pub async fn invoice(&self, i: &IntegratorId, id: &str) -> Result<Option<Invoice>> {
        if !valid_id("inv-", id) {
            return Ok(None);
        }
        self.get_json(Key::new(keys::integrator(i), keys::invoice_sk(id)))
            .await
    }

    /// Invoices of a scope and/or period, a page at a time (by period then id, or by id).
    pub async fn list_invoices(
        &self,
        i: &IntegratorId,
        scope: InvoiceScope<'_>,
        period: Option<Period>,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Invoice>, Option<String>)> {
        let period = period.map(|p| p.to_string());
        let prefix = match (scope, period.as_deref()) {
            (InvoiceScope::Customer(c), Some(p)) => keys::invoices_of_period_customer_prefix(p, c),
            (InvoiceScope::Customer(c), None) => keys::invoices_of_customer_prefix(c),
            (InvoiceScope::Owner(o), Some(p)) => keys::invoices_of_owner_period_prefix(o, p),
            (InvoiceScope::Owner(o), None) => keys::invoices_of_owner_prefix(o),
            (InvoiceScope::All, Some(p)) => keys::invoices_of_period_prefix(p),
            (InvoiceScope::All, None) => keys::INVOICE_PREFIX.to_owned(),
        };
        let direct = matches!(scope, InvoiceScope::All) && period.is_none();
        let page = self
            .store
            .query(
                Query::partition(&keys::integrator(i))
                    .sk(SkCond::BeginsWith(prefix))
                    .limit(limit)
                    .after(cursor.map(Cursor::from_client)),
            )
            .await?;
        let mut out = Vec::with_capacity(page.items.len());
        for item in &page.items {
            if direct {
                out.push(decode(item)?);
            } else if let Some(id) = item.s("invoice_id")
                && let Some(inv) = self.invoice(i, id).await?
            {
                out.push(inv);
            }
        }
        Ok((out, page.next.map(|c| c.as_str().to_owned())))
    }

    /// Moves an invoice from one of `from` to `to`. Issuing or voiding an invoice of a
    /// subscription funded by safety money records the hand-off event in the same transaction.
    async fn transition(
        &self,
        i: &IntegratorId,
        id: &str,
        from: &[InvoiceStatus],
        to: InvoiceStatus,
        now: DateTime<Utc>,
    ) -> Result<Invoice> {
        let mut inv = self.invoice(i, id).await?.ok_or(ServiceError::NotFound)?;
        if !from.contains(&inv.status) {
            return Err(ServiceError::Conflict(format!(
                "the invoice is {} and cannot become {}",
                inv.status.as_str(),
                to.as_str()
            )));
        }
        let was = inv.status;
        let rev = inv.rev;
        inv.status = to;
        inv.rev = rev + 1;
        match to {
            InvoiceStatus::Issued => inv.issued_at = Some(stamp(now)),
            InvoiceStatus::Paid => inv.paid_at = Some(stamp(now)),
            InvoiceStatus::Void => inv.voided_at = Some(stamp(now)),
            InvoiceStatus::Draft => {}
        }
        let mut ops = vec![TxOp::Put {
            item: invoice_item(i, &inv)?,
            cond: Some(Condition::equals("status", was.as_str())),
        }];
        // The ledger hears of an issue, and of the void of an issued invoice (a draft was never
        // booked), in the same transaction.
        let change = match (was, to) {
            (_, InvoiceStatus::Issued) => Some(InvoiceChange::Issued),
            (InvoiceStatus::Issued, InvoiceStatus::Void) => Some(InvoiceChange::Voided {
                on: smartsite_shared::domain::billing::shanghai_date(now),
            }),
            _ => None,
        };
        let handoff = match change {
            Some(change) => self.handoff_event(&inv, change)?,
            None => None,
        };
        if let Some(op) = &handoff {
            ops.push(op.clone());
        }
        match self.store.transact(ops).await {
            Ok(()) => {}
            Err(e) if is_condition(&e) => {
                return Err(ServiceError::Conflict(
                    "the invoice changed concurrently; retry".into(),
                ));
            }
            Err(e) => return Err(e.into()),
        }
        if handoff.is_some() {
            self.wake_handoff();
        }
        Ok(inv)
    }

    /// The outbox put of `change` to a funded invoice (`None` when its funding source does not
    /// hand invoices to the safety fund). The issue date is the Asia/Shanghai date it was issued.
    fn handoff_event(&self, inv: &Invoice, change: InvoiceChange) -> Result<Option<TxOp>> {
        if !InvoiceIssued::funds(inv.funding_source.as_str()) {
            return Ok(None);
        }
        let issued_on = inv
            .issued_at
            .as_deref()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map(|t| smartsite_shared::domain::billing::shanghai_date(t.with_timezone(&Utc)))
            .ok_or_else(|| {
                ServiceError::Conflict("a funded invoice changed before it was issued".into())
            })?;
        let issued = InvoiceIssued {
            integrator_id: inv.integrator_id.clone(),
            customer_id: inv.customer_id.clone(),
            project_id: inv.project_id.clone(),
            subscription_id: inv.subscription_id.clone(),
            invoice_id: inv.id.clone(),
            invoice_no: inv.number.clone(),
            period: inv.period.clone(),
            funding_source: inv.funding_source.as_str().to_owned(),
            total_fen: inv.total_fen,
            issued_on,
        };
        Ok(Some(issued.event(change).put_op()?))
    }

    /// Wakes the single-box safety-fund consumer after a hand-off event committed.
    fn wake_handoff(&self) {
        if let Some(n) = &self.issued {
            n.notify_one();
        }
    }

    pub async fn issue(&self, i: &IntegratorId, id: &str, now: DateTime<Utc>) -> Result<Invoice> {
        self.transition(i, id, &[InvoiceStatus::Draft], InvoiceStatus::Issued, now)
            .await
    }

    pub async fn pay(&self, i: &IntegratorId, id: &str, now: DateTime<Utc>) -> Result<Invoice> {
        self.transition(i, id, &[InvoiceStatus::Issued], InvoiceStatus::Paid, now)
            .await
    }

    pub async fn void(&self, i: &IntegratorId, id: &str, now: DateTime<Utc>) -> Result<Invoice> {
        self.transition(
            i,
            id,
            &[InvoiceStatus::Draft, InvoiceStatus::Issued],
            InvoiceStatus::Void,
            now,
        )
        .await
    }

    /// A credit note against an issued or paid invoice; credits never exceed its total.
    pub async fn credit_note(
        &self,
        i: &IntegratorId,
        id: &str,
        amount_fen: i64,
        reason: &str,
        by: &str,
        now: DateTime<Utc>,
    ) -> Result<(Invoice, CreditNote)> {
        bounds::positive_amount("amount_fen", amount_fen)?;
        let reason = text::note("reason", reason, 500)?;
        let mut inv = self.invoice(i, id).await?.ok_or(ServiceError::NotFound)?;
        if !matches!(inv.status, InvoiceStatus::Issued | InvoiceStatus::Paid) {
            return Err(ServiceError::Conflict(format!(
                "credit notes are for issued or paid invoices; this one is {}",
                inv.status.as_str()
            )));
        }
        let credited = inv
            .credited_fen
            .checked_add(amount_fen)
            .filter(|c| *c <= inv.total_fen);
        let Some(credited) = credited else {
            return Err(invalid(
                "amount_fen",
                format!(
                    "credits would exceed the invoice total ({} of {} fen credited already)",
                    inv.credited_fen, inv.total_fen
                ),
            ));
        };
        let note = CreditNote {
            id: new_id("cn-"),
            invoice_id: inv.id.clone(),
            amount_fen,
            reason,
            created_by: by.to_owned(),
            created_at: stamp(now),
        };
        let rev = inv.rev;
        inv.credited_fen = credited;
        inv.rev = rev + 1;
        let mut ops = vec![
            TxOp::Put {
                item: invoice_item(i, &inv)?,
                cond: Some(Condition::equals("rev", rev)),
            },
            TxOp::Put {
                item: record(
                    Key::new(keys::integrator(i), keys::credit_note_sk(&inv.id, &note.id)),
                    &note,
                )?,
                cond: Some(Condition::NotExists),
            },
        ];
        // The ledger takes the credited amount back, through the outbox, in this transaction.
        let handoff = self.handoff_event(
            &inv,
            InvoiceChange::Credited {
                credit_note_id: note.id.clone(),
                amount_fen,
                on: smartsite_shared::domain::billing::shanghai_date(now),
            },
        )?;
        ops.extend(handoff.clone());
        match self.store.transact(ops).await {
            Ok(()) => {
                if handoff.is_some() {
                    self.wake_handoff();
                }
                Ok((inv, note))
            }
            Err(e) if is_condition(&e) => Err(ServiceError::Conflict(
                "the invoice changed concurrently; retry".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn credit_notes(&self, i: &IntegratorId, id: &str) -> Result<Vec<CreditNote>> {
        let items = self
            .query_all(
                Query::partition(&keys::integrator(i))
                    .sk(SkCond::BeginsWith(keys::credit_notes_prefix(id))),
            )
            .await?;
        items
            .iter()
            .map(|i| decode(i).map_err(Into::into))
            .collect()
    }
}

/// Whether each key holds a live item: batched reads, several batches at once.
async fn exist_many(store: Arc<dyn Store>, keys: Vec<Key>) -> Result<Vec<bool>> {
    let batches: Vec<Vec<Key>> = keys.chunks(READ_BATCH).map(<[Key]>::to_vec).collect();
    let found: Vec<Vec<Option<Item>>> = futures::stream::iter(batches.into_iter().map(move |b| {
        let store = Arc::clone(&store);
        async move { store.get_many(&b).await }
    }))
    .buffered(READ_CONCURRENCY)
    .try_collect()
    .await?;
    Ok(found.into_iter().flatten().map(|x| x.is_some()).collect())
}

fn invoice_item(i: &IntegratorId, inv: &Invoice) -> Result<Item> {
    Ok(record(
        Key::new(keys::integrator(i), keys::invoice_sk(&inv.id)),
        inv,
    )?
    .with("status", inv.status.as_str())
    .with("rev", inv.rev))
}

fn note_category(dev: &mut DeviceUsage, c: &str) {
    if dev.category.as_deref().is_none_or(|cur| c < cur) {
        dev.category = Some(c.to_owned());
    }
}

/// `YYYY-MM-DDTHH:00:00Z` of the hour holding `t`, as ingest keys hourly aggregates.
fn hour(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:00:00Z").to_string()
}

/// An event on its way into the store.
struct Pending {
    idx: usize,
    key: Key,
    period: Period,
    event: UsageEvent,
}

/// The aggregate items one event updates.
fn agg_keys(i: &IntegratorId, source: &str, p: &Pending) -> Vec<(Key, AggWrite)> {
    let e = &p.event;
    let pk = keys::usage_aggregate(i, &e.subscription_id, &p.period.to_string());
    let mut out = Vec::with_capacity(3);
    if e.metric == Metric::Messages {
        out.push((
            Key::new(pk.clone(), keys::AGG_TOTAL),
            AggWrite::Add(vec![("msgs", e.quantity), ("msg_events", 1)]),
        ));
    }
    let Some(d) = e.device_id.as_deref() else {
        return out;
    };
    match e.metric {
        Metric::Messages => out.push((
            Key::new(pk.clone(), keys::agg_device_sk(d)),
            AggWrite::Add(vec![
                ("msgs", e.quantity),
                ("msg_events", 1),
                ("active", i64::from(e.quantity > 0)),
            ]),
        )),
        Metric::DeviceActive => out.push((
            Key::new(pk.clone(), keys::agg_device_sk(d)),
            AggWrite::Add(vec![("active", 1)]),
        )),
        Metric::DeviceBound | Metric::DeviceUnbound => out.push((
            Key::new(
                pk.clone(),
                keys::agg_binding_sk(
                    d,
                    u64::try_from(e.ts.timestamp_millis()).unwrap_or(0),
                    e.metric == Metric::DeviceUnbound,
                    source,
                    &e.id,
                ),
            ),
            AggWrite::Put,
        )),
    }
    if let Some(c) = e.category.as_deref() {
        out.push((Key::new(pk, keys::agg_category_sk(d, c)), AggWrite::Put));
    }
    out
}

enum AggWrite {
    Add(Vec<(&'static str, i64)>),
    Put,
}

/// Splits events into transactions of at most [`MAX_TRANSACT_ITEMS`] operations: one ledger
/// put per event plus one write per aggregate item the chunk touches.
fn chunk(i: &IntegratorId, source: &str, events: Vec<Pending>) -> Vec<Vec<Pending>> {
    let mut out = Vec::new();
    let mut cur: Vec<Pending> = Vec::new();
    let mut touched: BTreeSet<Key> = BTreeSet::new();
    for p in events {
        let ks: Vec<Key> = agg_keys(i, source, &p)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        let new = ks.iter().filter(|k| !touched.contains(*k)).count();
        if cur.len() + 1 + touched.len() + new > MAX_TRANSACT_ITEMS {
            out.push(std::mem::take(&mut cur));
            touched.clear();
        }
        touched.extend(ks);
        cur.push(p);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// The chunk's ledger puts (each `NotExists`) and its merged aggregate writes.
fn chunk_ops(
    i: &IntegratorId,
    source: &str,
    chunk: &[Pending],
    received_at: &str,
) -> Result<Vec<TxOp>> {
    let mut ops = Vec::with_capacity(chunk.len() * 2);
    let mut aggs: BTreeMap<Key, Option<BTreeMap<&'static str, i64>>> = BTreeMap::new();
    for p in chunk {
        let entry = LedgerEntry {
            source: source.to_owned(),
            period: p.period,
            event: p.event.clone(),
            received_at: received_at.to_owned(),
        };
        ops.push(TxOp::Put {
            item: record(p.key.clone(), &entry)?.with_ttl(keep_until(p.period)),
            cond: Some(Condition::NotExists),
        });
        for (k, w) in agg_keys(i, source, p) {
            match w {
                AggWrite::Put => {
                    aggs.entry(k).or_insert(None);
                }
                AggWrite::Add(deltas) => {
                    let m = aggs.entry(k).or_insert_with(|| Some(BTreeMap::new()));
                    if let Some(m) = m {
                        for (a, d) in deltas {
                            *m.entry(a).or_insert(0) += d;
                        }
                    }
                }
            }
        }
    }
    for (key, w) in aggs {
        ops.push(match w {
            None => TxOp::Put {
                item: Item::new(key),
                cond: None,
            },
            Some(m) => TxOp::Add {
                key,
                deltas: m.into_iter().map(|(a, d)| (a.to_owned(), d)).collect(),
                cond: None,
            },
        });
    }
    Ok(ops)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().to_utc()
    }

    #[test]
    fn the_scheduled_close_waits_for_the_grace_window_in_shanghai_time() {
        // The grace window of November ends at 00:00 on 4 December, Shanghai (16:00 UTC the 3rd).
        assert_eq!(due_period(utc("2026-12-03T15:59:59Z")), None);
        assert_eq!(
            due_period(utc("2026-12-03T16:00:00Z")),
            Some(Period::parse("2026-11").unwrap())
        );
        assert_eq!(
            due_period(utc("2027-01-20T00:00:00Z")),
            Some(Period::parse("2026-12").unwrap())
        );
        assert_eq!(
            previous(Period::parse("2027-01").unwrap()),
            Period::parse("2026-12").unwrap()
        );
    }

    #[test]
    fn idempotency_keys_outlive_the_acceptance_window() {
        let p = Period::parse("2026-11").unwrap();
        // Accepted until 35 days after 1 December 00:00 Shanghai (30 November 16:00 UTC).
        assert_eq!(accept_until(p), utc("2027-01-04T16:00:00Z"));
        assert!(keep_until(p) > accept_until(p).timestamp());
        assert_eq!(
            keep_until(p) - accept_until(p).timestamp(),
            KEEP_MARGIN_DAYS * 86_400
        );
    }

    #[test]
    fn ids_and_tokens() {
        let p = Period::parse("2026-03").unwrap();
        assert_eq!(invoice_id("sub-0a1b", p), "inv-2026030a1b");
        assert!(valid_id("inv-", &invoice_id("sub-0a1b", p)));
        assert!(!valid_id("inv-", "inv-"));
        assert!(!valid_id("inv-", "sub-1"));
        assert!(valid_token("evt-1.a:b_c", 128));
        for bad in ["", "a#b", "a b", "事件"] {
            assert!(!valid_token(bad, 128), "{bad:?}");
        }
        assert!(!valid_token(&"x".repeat(129), 128));
    }
}
