//! The `alarms` concern's data access and runtime (issue 6): rule configuration per region and
//! project, rule evaluation on ingested readings ([`crate::domain`]), alarm records and
//! their lifecycle, escalation, and spray commands.
//!
//! Storage:
//! - rule patches: a region's `(I#_platform#, ALARMRULES#R#{code})` (regional government rules
//!   apply to every integrator's projects there), a project's `(I#{i}#, ALARMRULES#P#{p})`;
//! - rule state per device and rule: `(I#{i}#D#{d}#, RULE#{rule})`;
//! - alarms: `(I#{i}#AL#{p}#, {opened_at}#{id})`, with the id pointer `(I#_platform#, ALARM#{id})`
//!   and, while unhandled, `(I#_platform#, OPENALARM#{id})` for the escalation sweep;
//! - commands sent to devices: `(I#{i}#D#{d}#, CMD#{at}#{n})`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::{
    self as alarms, EffectiveRule, Input, Level, Patch, RuleId, RuleState, Source, Tier, Transition,
};
use smartsite_shared::domain::devices::Category;
use smartsite_shared::domain::telemetry::{Reading, hour_bucket};
use smartsite_shared::fleet::Device;
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::ingest::{Observer, hourly_at, stamp};
use smartsite_shared::store::keys::{self, EntityKind};
use smartsite_shared::store::records::{decode, record};
use smartsite_shared::store::{
    Condition, Cursor, Key, Pk, Query, SkCond, Store, StoreError, TxOp, query_filtered,
};

/// Where commands to devices go (shared with the workforce's gate answers).
pub use smartsite_shared::ingest::Downlink;

#[derive(Debug, thiserror::Error)]
pub enum AlarmError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("the alarm changed concurrently")]
    Conflict,
}

/// Lifecycle of an alarm record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = AlarmStatus)]
pub enum Status {
    Open,
    Acknowledged,
    Resolved,
}

/// A human step in an alarm's handling record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Handling {
    pub action: String,
    pub by: String,
    pub at: String,
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Alarm {
    pub id: String,
    pub integrator_id: String,
    pub project_id: String,
    pub region_code: String,
    /// Empty for ledger alarms (FEE-*), which are about a project's fund, not a device.
    pub device_id: String,
    /// The device's category; absent for ledger alarms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub category: Option<Category>,
    /// e.g. `TC-MOMENT`
    pub rule: String,
    /// `warning` / `alarm`: the highest level reached.
    #[schema(value_type = String)]
    pub level: Level,
    pub status: Status,
    /// The value that raised (or last upgraded) it, and the threshold it crossed.
    pub value: f64,
    pub threshold: f64,
    pub opened_at: String,
    /// When the condition stopped holding (the rule cleared); the alarm stays until handled.
    pub cleared_at: Option<String>,
    /// Who has been told: `project`, then `enterprise`, then `government`.
    #[schema(value_type = String)]
    pub escalated_to: Tier,
    pub escalated_at: Option<String>,
    /// Data of a blacklisted device: the alarm stands but its basis is not trusted.
    pub untrusted: bool,
    pub handling: Vec<Handling>,
    /// Optimistic concurrency: incremented on every change.
    pub version: i64,
}

/// A command sent to a device (spray on/off), kept for the record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Command {
    pub device_id: String,
    pub at: String,
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub delivered: bool,
}

/// Level, its start, the two condition windows, spray.
type Material = (
    Option<Level>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    bool,
);

/// The parts of a rule's state that decide future transitions; `last_ts`/`last_value` only
/// order inputs, so changing them alone is not persisted on every message.
fn material(s: &RuleState) -> Material {
    (
        s.level,
        s.since,
        s.warn_met_since,
        s.alarm_met_since,
        s.spray_on,
    )
}

/// The GB/T 2260 codes whose rules apply to a project in `region`, widest first: province
/// (`220000`), city (`220100`), district (`220102`), without repeats.
pub fn region_layers(region: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if region.len() == 6 && region.is_ascii() {
        for code in [
            format!("{}0000", &region[..2]),
            format!("{}00", &region[..4]),
            region.to_owned(),
        ] {
            if !out.contains(&code) {
                out.push(code);
            }
        }
    }
    out
}

fn tier_name(t: Tier) -> &'static str {
    match t {
        Tier::Project => "project",
        Tier::Enterprise => "enterprise",
        Tier::Government => "government",
    }
}

fn region_patch_key(code: &str) -> Key {
    Key::new(keys::platform(), keys::region_rules_sk(code))
}
fn project_patch_key(i: &IntegratorId, p: &str) -> Key {
    Key::new(keys::integrator(i), keys::project_rules_sk(p))
}
fn pointer_key(id: &str) -> Key {
    Key::new(keys::platform(), keys::alarm_pointer_sk(id))
}
fn open_key(id: &str) -> Key {
    Key::new(keys::platform(), keys::open_alarm_sk(id))
}
fn current_key(d: &Device, rule: RuleId) -> Key {
    Key::new(device_pk(d), keys::device_open_alarm_sk(rule.as_str()))
}
fn device_pk(d: &Device) -> Pk {
    keys::entity(&d.integrator_id, EntityKind::Device, d.id.as_str())
}

/// The project a ledger alarm is about.
#[derive(Debug, Clone, Copy)]
pub struct LedgerProject<'a> {
    pub integrator_id: &'a IntegratorId,
    pub project_id: &'a str,
    pub region_code: &'a str,
}

/// One finding of the safety-fund rules that should stand as an alarm.
#[derive(Debug, Clone, PartialEq)]
pub struct LedgerFinding {
    /// e.g. `FEE-OWNER-50`.
    pub rule: String,
    /// What the finding is about within the project (a subcontract, a year, a fund); may be
    /// empty.
    pub subject: String,
    pub level: Level,
    /// Paid (or spent), in yuan.
    pub value: f64,
    /// Required (or available), in yuan.
    pub threshold: f64,
}

/// Where an alarm record lives.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AlarmRef {
    pk: String,
    sk: String,
}

/// The effective rules of a project with where each value came from (API.md alarm-rules).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RuleView {
    #[schema(value_type = Vec<Object>)]
    pub rules: Vec<EffectiveRule>,
    /// The layers applied, widest first.
    #[schema(value_type = Vec<Object>)]
    pub chain: Vec<Source>,
    /// The project's own overrides.
    #[schema(value_type = Object)]
    pub project_overrides: Patch,
}

/// A device heard from, and when (for DU-OFFLINE).
type LastSeen = (Arc<Device>, DateTime<Utc>);
/// A rule state and the `rev` it was stored at (0: never stored).
type StoredState = (RuleState, i64);

/// One touched hour of a dust device: the latest reading's time, the hour's PM10 mean so far,
/// and the three complete hours before it (oldest first).
type HourInput = (DateTime<Utc>, Option<f64>, Vec<Option<f64>>);

struct CachedRules {
    at: Instant,
    rules: Arc<Vec<EffectiveRule>>,
}

/// How long effective rules are cached by the evaluator (a PUT takes effect within this).
pub const RULES_CACHE_TTL: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Alarms {
    store: Arc<dyn Store>,
    downlink: Option<Arc<dyn Downlink>>,
    rules: Arc<Mutex<HashMap<(String, String), CachedRules>>>,
    /// Rule state per (device, rule) with the `rev` it was stored at.
    states: Arc<Mutex<HashMap<(String, RuleId), StoredState>>>,
    seen: Arc<Mutex<HashMap<String, LastSeen>>>,
}

impl Alarms {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Alarms {
            store,
            downlink: None,
            rules: Default::default(),
            states: Default::default(),
            seen: Default::default(),
        }
    }

    pub fn with_downlink(mut self, d: Arc<dyn Downlink>) -> Self {
        self.downlink = Some(d);
        self
    }

    // ---- rule configuration

    async fn patch_at(&self, key: Key) -> Result<Patch, AlarmError> {
        Ok(match self.store.get(&key).await? {
            Some(item) => decode(&item)?,
            None => Patch::default(),
        })
    }

    /// The override chain of a project: region layers widest first, then the project.
    pub async fn chain(
        &self,
        i: &IntegratorId,
        project: &str,
        region: &str,
    ) -> Result<Vec<(Source, Patch)>, AlarmError> {
        let mut chain = Vec::new();
        for code in region_layers(region) {
            let p = self.patch_at(region_patch_key(&code)).await?;
            if !p.0.is_empty() {
                chain.push((Source::Region(code), p));
            }
        }
        let p = self.patch_at(project_patch_key(i, project)).await?;
        if !p.0.is_empty() {
            chain.push((Source::Project(project.to_owned()), p));
        }
        Ok(chain)
    }

    pub async fn view(
        &self,
        i: &IntegratorId,
        project: &str,
        region: &str,
    ) -> Result<RuleView, AlarmError> {
        let chain = self.chain(i, project, region).await?;
        let rules = alarms::effective(&alarms::default_rules(), &chain);
        let project_overrides = self.patch_at(project_patch_key(i, project)).await?;
        Ok(RuleView {
            rules,
            chain: chain.into_iter().map(|(s, _)| s).collect(),
            project_overrides,
        })
    }

    /// Validates `patch` against the layers below the project and stores it (replacing the
    /// project's previous overrides).
    pub async fn set_project_patch(
        &self,
        i: &IntegratorId,
        project: &str,
        region: &str,
        patch: &Patch,
    ) -> Result<Result<(), alarms::PatchError>, AlarmError> {
        let below: Vec<_> = self
            .chain(i, project, region)
            .await?
            .into_iter()
            .filter(|(s, _)| !matches!(s, Source::Project(_)))
            .collect();
        let base = alarms::effective(&alarms::default_rules(), &below);
        if let Err(e) = patch.validate(&base) {
            return Ok(Err(e));
        }
        self.store
            .put(record(project_patch_key(i, project), patch)?, None)
            .await?;
        self.rules
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(i.to_string(), project.to_owned()));
        Ok(Ok(()))
    }

    /// A region's own overrides.
    pub async fn region_patch(&self, code: &str) -> Result<Patch, AlarmError> {
        self.patch_at(region_patch_key(code)).await
    }

    /// Stores a region's overrides (validated against the wider regions' layers).
    pub async fn set_region_patch(
        &self,
        code: &str,
        patch: &Patch,
    ) -> Result<Result<(), alarms::PatchError>, AlarmError> {
        let mut below = Vec::new();
        for c in region_layers(code) {
            if c == code {
                break;
            }
            let p = self.patch_at(region_patch_key(&c)).await?;
            below.push((Source::Region(c), p));
        }
        let base = alarms::effective(&alarms::default_rules(), &below);
        if let Err(e) = patch.validate(&base) {
            return Ok(Err(e));
        }
        self.store
            .put(record(region_patch_key(code), patch)?, None)
            .await?;
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).clear();
        Ok(Ok(()))
    }

    async fn rules_for(&self, d: &Device) -> Result<Arc<Vec<EffectiveRule>>, AlarmError> {
        let k = (d.integrator_id.to_string(), d.project_id.to_string());
        if let Some(c) = self.rules.lock().unwrap_or_else(|e| e.into_inner()).get(&k)
            && c.at.elapsed() < RULES_CACHE_TTL
        {
            return Ok(c.rules.clone());
        }
        let chain = self
            .chain(
                &d.integrator_id,
                d.project_id.as_str(),
                d.region_code.as_str(),
            )
            .await?;
        let rules = Arc::new(alarms::effective(&alarms::default_rules(), &chain));
        self.rules.lock().unwrap_or_else(|e| e.into_inner()).insert(
            k,
            CachedRules {
                at: Instant::now(),
                rules: rules.clone(),
            },
        );
        Ok(rules)
    }

    // ---- evaluation

    /// The rule state and its stored `rev` (0: never stored); from the cache unless `fresh`.
    async fn state(
        &self,
        d: &Device,
        rule: RuleId,
        fresh: bool,
    ) -> Result<(RuleState, i64), AlarmError> {
        let k = (d.id.to_string(), rule);
        if !fresh
            && let Some(s) = self
                .states
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&k)
        {
            return Ok(s.clone());
        }
        let key = Key::new(device_pk(d), keys::rule_state_sk(rule.as_str()));
        Ok(match self.store.get(&key).await? {
            Some(item) => (decode(&item)?, item.n("rev").unwrap_or(0)),
            None => (RuleState::default(), 0),
        })
    }

    /// Stores the state if nobody stored another since `rev` was read (another process, e.g. a
    /// concurrent Lambda container, evaluating the same device); `false` on such a conflict.
    async fn save_state(
        &self,
        d: &Device,
        rule: RuleId,
        s: &RuleState,
        rev: i64,
    ) -> Result<bool, AlarmError> {
        let key = Key::new(device_pk(d), keys::rule_state_sk(rule.as_str()));
        let cond = if rev == 0 {
            Condition::NotExists
        } else {
            Condition::equals("rev", rev)
        };
        match self
            .store
            .put(record(key, s)?.with("rev", rev + 1), Some(cond))
            .await
        {
            Ok(()) => {}
            Err(StoreError::ConditionFailed) => {
                self.states
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&(d.id.to_string(), rule));
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        self.states
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((d.id.to_string(), rule), (s.clone(), rev + 1));
        Ok(true)
    }

    /// Runs one rule over `inputs` and persists what changed. The state is written under its
    /// `rev`: when another process wrote it meanwhile, the inputs are evaluated again from the
    /// stored state. Transitions are idempotent where it matters (an alarm opens once per device
    /// and rule, upgrades and clears are version-checked), so a re-evaluation never doubles an
    /// alarm.
    async fn run(
        &self,
        d: &Device,
        rule: &EffectiveRule,
        inputs: &[Input<'_>],
        now: DateTime<Utc>,
    ) -> Result<(), AlarmError> {
        for attempt in 0..4 {
            let (mut state, rev) = self.state(d, rule.id, attempt > 0).await?;
            let before = state.clone();
            let mut transitions = Vec::new();
            for input in inputs {
                transitions.extend(alarms::evaluate(rule, &mut state, input, now));
            }
            for t in &transitions {
                self.apply(d, t).await?;
            }
            if material(&state) != material(&before) {
                if self.save_state(d, rule.id, &state, rev).await? {
                    return Ok(());
                }
                continue;
            }
            if state != before {
                // Only the last-seen input moved: keep it in memory, not worth a write per
                // message (after a restart the rule re-reads the persisted level and windows).
                self.states
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert((d.id.to_string(), rule.id), (state, rev));
            }
            return Ok(());
        }
        Err(AlarmError::Conflict)
    }

    async fn evaluate_device(
        &self,
        d: &Device,
        readings: &[Reading],
        hours: &[(DateTime<Utc>, BTreeMap<String, f64>)],
    ) -> Result<(), AlarmError> {
        let rules = self.rules_for(d).await?;
        let now = Utc::now();
        let mut inputs: Vec<Input<'_>> = readings
            .iter()
            .map(|r| Input::Reading {
                reading: r,
                config: &d.config,
            })
            .collect();
        // Hourly inputs for dust: the touched hour's mean and the three complete hours before.
        let mut history: Vec<HourInput> = Vec::new();
        for (start, means) in hours {
            let mut complete = Vec::new();
            for back in (1..=3).rev() {
                let h = *start - chrono::Duration::hours(back);
                let m = hourly_at(
                    &*self.store,
                    d,
                    &h.to_rfc3339_opts(SecondsFormat::Secs, true),
                )
                .await
                .map_err(|e| AlarmError::Store(StoreError::Backend(anyhow::anyhow!("{e}"))))?;
                complete.push(m.and_then(|m| m.get("pm10_ugm3").copied()));
            }
            let ts = readings
                .iter()
                .filter(|r| hour_bucket(r.ts) == *start)
                .map(|r| r.ts)
                .max()
                .unwrap_or(*start);
            history.push((ts, means.get("pm10_ugm3").copied(), complete));
        }
        for (ts, current, complete) in &history {
            inputs.push(Input::Hourly {
                ts: *ts,
                current: *current,
                complete,
                config: &d.config,
            });
        }
        for rule in rules.iter().filter(|r| r.applies_to(d.category)) {
            if rule.id == RuleId::DuOffline {
                continue;
            }
            self.run(d, rule, &inputs, now).await?;
        }
        Ok(())
    }

    /// Learns, from the store, every active device that ever sent data and when it last did
    /// (its latest state's `ts`), so DU-OFFLINE also covers devices that went silent before this
    /// process started. Run once by the scheduler before its first sweep; returns how many
    /// devices it added. Devices already heard from keep their fresher in-memory time.
    pub async fn seed_seen(&self) -> Result<usize, AlarmError> {
        let to_store = |e: String| AlarmError::Store(StoreError::Backend(anyhow::anyhow!(e)));
        let directory = smartsite_shared::directory::Directory::new(Arc::clone(&self.store));
        let fleet = smartsite_shared::fleet::Fleet::new(Arc::clone(&self.store));
        let mut added = 0;
        let mut cursor = None;
        loop {
            let page = directory
                .list_integrators(100, cursor)
                .await
                .map_err(|e| to_store(e.to_string()))?;
            for i in &page.items {
                let devices = fleet
                    .devices_of(&i.id)
                    .await
                    .map_err(|e| to_store(e.to_string()))?;
                for d in devices
                    .into_iter()
                    .filter(|d| d.status == smartsite_shared::fleet::DeviceStatus::Active)
                {
                    let state = Key::new(device_pk(&d), keys::SK_STATE);
                    let Some(ts) = self
                        .store
                        .get(&state)
                        .await?
                        .and_then(|item| item.s("ts").map(str::to_owned))
                        .and_then(|ts| DateTime::parse_from_rfc3339(&ts).ok())
                    else {
                        continue;
                    };
                    let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
                    if !seen.contains_key(d.id.as_str()) {
                        seen.insert(d.id.to_string(), (Arc::new(d), ts.with_timezone(&Utc)));
                        added += 1;
                    }
                }
            }
            match page.next {
                Some(n) => cursor = Some(n),
                None => return Ok(added),
            }
        }
    }

    /// DU-OFFLINE for every device heard from (since start, or seeded by [`Alarms::seed_seen`]):
    /// run by the scheduler every minute.
    pub async fn sweep_offline(&self) -> Result<(), AlarmError> {
        let seen: Vec<_> = self
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let now = Utc::now();
        for (d, last) in seen {
            let rules = self.rules_for(&d).await?;
            if let Some(rule) = rules
                .iter()
                .find(|r| r.id == RuleId::DuOffline && r.applies_to(d.category))
            {
                let input = Input::Liveness {
                    last_seen: Some(last),
                };
                self.run(&d, rule, &[input], now).await?;
            }
        }
        Ok(())
    }

    /// Applies one transition to the alarm records and the spray.
    async fn apply(&self, d: &Device, t: &Transition) -> Result<(), AlarmError> {
        match t {
            Transition::Raise {
                rule,
                level,
                value,
                threshold,
                at,
            } => self.open(d, *rule, *level, *value, *threshold, *at).await,
            Transition::Upgrade {
                rule,
                value,
                threshold,
                ..
            } => {
                self.update_open(d, *rule, |a| {
                    a.level = Level::Alarm;
                    a.value = *value;
                    a.threshold = *threshold;
                })
                .await
            }
            Transition::Downgrade { .. } => Ok(()),
            Transition::Clear { rule, at, .. } => {
                self.update_open(d, *rule, |a| {
                    a.cleared_at = Some(stamp(*at));
                })
                .await
            }
            Transition::SprayOn {
                rule,
                value,
                threshold,
                at,
            } => {
                let payload = serde_json::json!({
                    "cmd": "spray", "state": "on", "rule": rule.as_str(),
                    "value": value, "threshold": threshold, "at": stamp(*at),
                });
                self.command(d, payload).await
            }
            Transition::SprayOff { rule, value, at } => {
                let payload = serde_json::json!({
                    "cmd": "spray", "state": "off", "rule": rule.as_str(),
                    "value": value, "at": stamp(*at),
                });
                self.command(d, payload).await
            }
        }
    }

    async fn open(
        &self,
        d: &Device,
        rule: RuleId,
        level: Level,
        value: f64,
        threshold: f64,
        at: DateTime<Utc>,
    ) -> Result<(), AlarmError> {
        let id = format!("alm-{}", uuid::Uuid::now_v7().simple());
        let alarm = Alarm {
            id: id.clone(),
            integrator_id: d.integrator_id.to_string(),
            project_id: d.project_id.to_string(),
            region_code: d.region_code.to_string(),
            device_id: d.id.to_string(),
            category: Some(d.category),
            rule: rule.as_str().to_owned(),
            level,
            status: Status::Open,
            value,
            threshold,
            opened_at: stamp(at),
            cleared_at: None,
            escalated_to: Tier::Project,
            escalated_at: None,
            untrusted: d.untrusted(),
            handling: Vec::new(),
            version: 1,
        };
        let key = Key::new(
            keys::alarms(&alarm.integrator_id, &alarm.project_id),
            keys::alarm_sk(&alarm.opened_at, &id),
        );
        let r = AlarmRef {
            pk: key.pk.as_str().to_owned(),
            sk: key.sk.clone(),
        };
        // The device's open alarm of this rule, for upgrades and clears.
        let current = current_key(d, rule);
        let ops = vec![
            TxOp::Put {
                item: record(key, &alarm)?.with("version", alarm.version),
                cond: Some(Condition::NotExists),
            },
            TxOp::Put {
                item: record(pointer_key(&id), &r)?,
                cond: Some(Condition::NotExists),
            },
            TxOp::Put {
                item: record(open_key(&id), &r)?,
                cond: None,
            },
            // One open alarm per device and rule, whoever raises it first.
            TxOp::Put {
                item: record(current, &r)?,
                cond: Some(Condition::NotExists),
            },
        ];
        match self.store.transact(ops.clone()).await {
            Ok(()) => {}
            Err(StoreError::TransactionConditionFailed { index: 3 }) => {
                // Another process opened it, or a pointer outlived its cleared alarm (a crash
                // between clearing and removing it): only the latter is replaced.
                let held = match self.store.get(&current_key(d, rule)).await? {
                    Some(item) => self.get_ref(&decode(&item)?).await?,
                    None => None,
                };
                if held.is_some_and(|a| a.cleared_at.is_none()) {
                    tracing::debug!(device = %d.id, rule = rule.as_str(), "alarm already open");
                    return Ok(());
                }
                self.store.delete(&current_key(d, rule), None).await?;
                self.store.transact(ops).await?;
            }
            Err(e) => return Err(e.into()),
        }
        tracing::info!(alarm = %id, device = %d.id, rule = rule.as_str(), ?level, value, "alarm raised");
        Ok(())
    }

    async fn update_open(
        &self,
        d: &Device,
        rule: RuleId,
        f: impl Fn(&mut Alarm),
    ) -> Result<(), AlarmError> {
        let current = current_key(d, rule);
        let Some(item) = self.store.get(&current).await? else {
            return Ok(());
        };
        let r: AlarmRef = decode(&item)?;
        self.modify(&r, |a| {
            f(a);
            true
        })
        .await?;
        if self
            .get_ref(&r)
            .await?
            .is_some_and(|a| a.cleared_at.is_some())
        {
            self.store.delete(&current, None).await?;
        }
        Ok(())
    }

    async fn get_ref(&self, r: &AlarmRef) -> Result<Option<Alarm>, AlarmError> {
        let Some(pk) = Pk::from_stored(&r.pk) else {
            return Ok(None);
        };
        Ok(match self.store.get(&Key::new(pk, r.sk.clone())).await? {
            Some(i) => Some(decode(&i)?),
            None => None,
        })
    }

    /// Read-modify-write of one alarm with a version check, retried on conflict. `f` returns
    /// whether to write.
    async fn modify(
        &self,
        r: &AlarmRef,
        f: impl Fn(&mut Alarm) -> bool,
    ) -> Result<Option<Alarm>, AlarmError> {
        let Some(pk) = Pk::from_stored(&r.pk) else {
            return Ok(None);
        };
        let key = Key::new(pk, r.sk.clone());
        for _ in 0..5 {
            let Some(item) = self.store.get(&key).await? else {
                return Ok(None);
            };
            let mut a: Alarm = decode(&item)?;
            let old = a.version;
            if !f(&mut a) {
                return Ok(Some(a));
            }
            a.version = old + 1;
            let item = record(key.clone(), &a)?.with("version", a.version);
            let mut ops = vec![TxOp::Put {
                item,
                cond: Some(Condition::equals("version", old)),
            }];
            if a.status != Status::Open || a.escalated_to == Tier::Government {
                ops.push(TxOp::Delete {
                    key: open_key(&a.id),
                    cond: None,
                });
            }
            match self.store.transact(ops).await {
                Ok(()) => return Ok(Some(a)),
                Err(StoreError::TransactionConditionFailed { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(AlarmError::Conflict)
    }

    async fn command(&self, d: &Device, payload: serde_json::Value) -> Result<(), AlarmError> {
        let bytes = Bytes::from(serde_json::to_vec(&payload)?);
        let delivered = match &self.downlink {
            Some(dl) => dl.send(d, bytes).await,
            None => false,
        };
        let at = Utc::now();
        let cmd = Command {
            device_id: d.id.to_string(),
            at: stamp(at),
            payload,
            delivered,
        };
        let sk = keys::command_sk(&cmd.at, &uuid::Uuid::now_v7().simple().to_string());
        self.store
            .put(record(Key::new(device_pk(d), sk), &cmd)?, None)
            .await?;
        tracing::info!(device = %d.id, delivered, "command sent");
        Ok(())
    }

    /// Brings a project's ledger alarms (DOMAIN.md §8.5 FEE-OWNER-50, FEE-CIV-PREPAY, and the
    /// safety-fund's other findings) in line with the findings standing now: a new finding opens
    /// an alarm (escalated to government at once: the rule says "notify owner / gov"), a worse
    /// level upgrades it, a finding that no longer stands clears it (it stays until handled).
    /// One open alarm per (rule, subject): `(I#{i}#P#{p}#, OPEN#{rule}#{subject})` points at it.
    pub async fn sync_ledger(
        &self,
        p: &LedgerProject<'_>,
        findings: &[LedgerFinding],
        at: DateTime<Utc>,
    ) -> Result<(), AlarmError> {
        let pk = keys::entity(p.integrator_id, EntityKind::Project, p.project_id);
        let standing = self
            .store
            .query(Query::partition(&pk).sk(SkCond::BeginsWith(keys::LEDGER_OPEN_PREFIX.into())))
            .await?;
        let mut seen = std::collections::BTreeSet::new();
        for f in findings {
            let current = Key::new(pk.clone(), keys::ledger_open_sk(&f.rule, &f.subject));
            seen.insert(current.sk.clone());
            if let Some(item) = self.store.get(&current).await? {
                let r: AlarmRef = decode(&item)?;
                self.modify(&r, |a| {
                    let worse = f.level > a.level;
                    if worse {
                        a.level = f.level;
                    }
                    let changed = worse || a.value != f.value || a.cleared_at.is_some();
                    a.value = f.value;
                    a.threshold = f.threshold;
                    a.cleared_at = None;
                    changed
                })
                .await?;
                continue;
            }
            let id = format!("alm-{}", uuid::Uuid::now_v7().simple());
            let alarm = Alarm {
                id: id.clone(),
                integrator_id: p.integrator_id.to_string(),
                project_id: p.project_id.to_owned(),
                region_code: p.region_code.to_owned(),
                device_id: String::new(),
                category: None,
                rule: f.rule.clone(),
                level: f.level,
                status: Status::Open,
                value: f.value,
                threshold: f.threshold,
                opened_at: stamp(at),
                cleared_at: None,
                escalated_to: Tier::Government,
                escalated_at: Some(stamp(at)),
                untrusted: false,
                handling: Vec::new(),
                version: 1,
            };
            let key = Key::new(
                keys::alarms(&alarm.integrator_id, &alarm.project_id),
                keys::alarm_sk(&alarm.opened_at, &id),
            );
            let r = AlarmRef {
                pk: key.pk.as_str().to_owned(),
                sk: key.sk.clone(),
            };
            let ops = vec![
                TxOp::Put {
                    item: record(key, &alarm)?.with("version", alarm.version),
                    cond: Some(Condition::NotExists),
                },
                TxOp::Put {
                    item: record(pointer_key(&id), &r)?,
                    cond: Some(Condition::NotExists),
                },
                // A concurrent sync raising the same finding loses here: one alarm per finding.
                TxOp::Put {
                    item: record(current, &r)?,
                    cond: Some(Condition::NotExists),
                },
            ];
            match self.store.transact(ops).await {
                Ok(()) => {
                    tracing::info!(alarm = %id, project = p.project_id, rule = %f.rule, level = ?f.level, "ledger alarm raised");
                }
                Err(StoreError::TransactionConditionFailed { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        for item in &standing.items {
            if seen.contains(&item.key.sk) {
                continue;
            }
            let r: AlarmRef = decode(item)?;
            self.modify(&r, |a| {
                a.cleared_at = Some(stamp(at));
                true
            })
            .await?;
            self.store.delete(&item.key, None).await?;
        }
        Ok(())
    }

    /// The commands sent to a device, oldest first.
    pub async fn commands(
        &self,
        d: &Device,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Command>, Option<String>), AlarmError> {
        let page = self
            .store
            .query(
                Query::partition(&device_pk(d))
                    .sk(SkCond::BeginsWith(keys::COMMAND_PREFIX.into()))
                    .limit(limit)
                    .after(cursor.map(Cursor::from_client)),
            )
            .await?;
        let items = page.items.iter().map(decode).collect::<Result<_, _>>()?;
        Ok((items, page.next.map(|c| c.as_str().to_owned())))
    }

    // ---- lifecycle

    pub async fn get(&self, id: &str) -> Result<Option<Alarm>, AlarmError> {
        let Some(item) = self.store.get(&pointer_key(id)).await? else {
            return Ok(None);
        };
        let r: AlarmRef = decode(&item)?;
        self.get_ref(&r).await
    }

    /// Acknowledges (from open) or resolves (from open or acknowledged). `Ok(None)`: no such
    /// alarm; `Ok(Some(Err(status)))`: the transition is not allowed from `status`.
    pub async fn handle(
        &self,
        id: &str,
        to: Status,
        by: &str,
        note: Option<String>,
    ) -> Result<Option<Result<Alarm, Status>>, AlarmError> {
        let Some(item) = self.store.get(&pointer_key(id)).await? else {
            return Ok(None);
        };
        let r: AlarmRef = decode(&item)?;
        let refused = Mutex::new(None);
        let at = stamp(Utc::now());
        let done = self
            .modify(&r, |a| {
                let ok = matches!(
                    (a.status, to),
                    (Status::Open, Status::Acknowledged)
                        | (Status::Open | Status::Acknowledged, Status::Resolved)
                );
                if !ok {
                    *refused.lock().unwrap_or_else(|e| e.into_inner()) = Some(a.status);
                    return false;
                }
                a.status = to;
                a.handling.push(Handling {
                    action: match to {
                        Status::Acknowledged => "acknowledged",
                        Status::Resolved => "resolved",
                        Status::Open => "opened",
                    }
                    .to_owned(),
                    by: by.to_owned(),
                    at: at.clone(),
                    note: note.clone(),
                });
                true
            })
            .await?;
        let refused = *refused.lock().unwrap_or_else(|e| e.into_inner());
        Ok(done.map(|a| match refused {
            Some(s) => Err(s),
            None => Ok(a),
        }))
    }

    /// A page of a project's alarms, newest first, optionally of one status.
    pub async fn list(
        &self,
        i: &str,
        project: &str,
        status: Option<Status>,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<(Vec<Alarm>, Option<String>), AlarmError> {
        // Filter while paging, so a page is never short while more matching items follow
        // (within a bounded number of reads).
        let (out, next) = query_filtered(
            self.store.as_ref(),
            Query::partition(&keys::alarms(i, project)).backward(),
            limit,
            cursor.map(Cursor::from_client),
            |item| {
                let a: Alarm = decode(item)?;
                Ok::<_, AlarmError>(status.is_none_or(|s| s == a.status).then_some(a))
            },
        )
        .await?;
        Ok((out, next.map(|c| c.as_str().to_owned())))
    }

    /// Escalates unacknowledged alarms whose delay passed (project → enterprise → government).
    /// Run by the scheduler; returns how many alarms moved up.
    pub async fn sweep_escalation(&self, now: DateTime<Utc>) -> Result<usize, AlarmError> {
        let mut moved = 0;
        let mut cursor = None;
        loop {
            let page = self
                .store
                .query(
                    Query::partition(&keys::platform())
                        .sk(SkCond::BeginsWith(keys::OPEN_ALARM_PREFIX.into()))
                        .limit(100)
                        .after(cursor),
                )
                .await?;
            for item in &page.items {
                let r: AlarmRef = decode(item)?;
                let Some(a) = self.get_ref(&r).await? else {
                    continue;
                };
                let delays = self.escalation_delays(&a).await?;
                let Ok(opened) = DateTime::parse_from_rfc3339(&a.opened_at) else {
                    continue;
                };
                let tier = alarms::escalation_tier(
                    a.level,
                    opened.with_timezone(&Utc),
                    a.status != Status::Open,
                    now,
                    &delays,
                );
                if tier > a.escalated_to {
                    let to = tier_name(tier);
                    let at = stamp(now);
                    self.modify(&r, |x| {
                        if tier <= x.escalated_to || x.status != Status::Open {
                            return false;
                        }
                        x.escalated_to = tier;
                        x.escalated_at = Some(at.clone());
                        x.handling.push(Handling {
                            action: format!("escalated to {to}"),
                            by: "system".to_owned(),
                            at: at.clone(),
                            note: None,
                        });
                        true
                    })
                    .await?;
                    tracing::info!(alarm = %a.id, to, "alarm escalated");
                    moved += 1;
                }
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => return Ok(moved),
            }
        }
    }

    async fn escalation_delays(&self, a: &Alarm) -> Result<alarms::EscalationDelays, AlarmError> {
        let Ok(i) = IntegratorId::parse(&a.integrator_id) else {
            return Ok(alarms::EscalationDelays::default());
        };
        let chain = self.chain(&i, &a.project_id, &a.region_code).await?;
        let rules = alarms::effective(&alarms::default_rules(), &chain);
        Ok(rules
            .iter()
            .find(|r| r.id.as_str() == a.rule)
            .map(EffectiveRule::escalation)
            .unwrap_or_default())
    }
}

#[async_trait]
impl Observer for Alarms {
    async fn observe(
        &self,
        device: &Device,
        readings: &[Reading],
        hours: &[(DateTime<Utc>, BTreeMap<String, f64>)],
    ) {
        if let Some(last) = readings.iter().map(|r| r.ts).max() {
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            let e = seen
                .entry(device.id.to_string())
                .or_insert_with(|| (Arc::new(device.clone()), last));
            e.1 = e.1.max(last.min(Utc::now()));
        }
        if let Err(e) = self.evaluate_device(device, readings, hours).await {
            tracing::warn!(device = %device.id, error = %e, "alarm evaluation failed");
        }
    }
}
