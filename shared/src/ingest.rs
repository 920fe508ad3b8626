//! The ingest pipeline both editions share (issue 6): device messages in, durable device data out.
//!
//! For each message: find the device, decode and validate it for its category
//! ([`crate::domain::telemetry`]), then in one transaction per chunk
//! - store it in the device's time series (`TS#…`/`EV#…`, with the retention TTL), keyed by its
//!   timestamp and a payload digest under the condition "not there yet", so a redelivered message
//!   (MQTT DUP, SQS at-least-once, a Lambda retry) is recognised and changes nothing;
//! - add it to the device's hourly aggregate (`HR#…`): the message count metering reads, and the
//!   sums behind the dust/noise hourly means regulators judge.
//!
//! Rejected messages go to the project's quarantine with their reason; nothing is dropped. After
//! the commit the latest state is updated and the [`Observer`]s (alarm rules, the workforce's
//! gate decisions) see the readings and the events — a redelivered event too, so whoever
//! answers a device can answer a repeated question again.
//! [`Pipeline::process`] answers per message: `Ok` once stored (accepted, duplicate or
//! quarantined), `Err` only when the store failed — the caller must not acknowledge those.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::devices::{Category, DeviceId};
use crate::domain::telemetry::{self, Event, HourlyAcc, Reading, Rejection};
use crate::fleet::{Device, DeviceStatus, Fleet};
use crate::ids::IntegratorId;
use crate::store::keys::{self, EntityKind};
use crate::store::{Attr, Item, Key, MAX_TRANSACT_ITEMS, Pk, Store, StoreError, TxOp};

/// Which topic a message came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Telemetry,
    Events,
}

/// One device message, as the broker (or SQS, or the HJ 212 listener) hands it over. The identity
/// comes from the device's authenticated connection, never from the payload.
#[derive(Debug, Clone)]
pub struct Inbound {
    pub integrator_id: IntegratorId,
    pub project_id: String,
    pub device_id: String,
    pub kind: MessageKind,
    pub payload: Bytes,
    pub received_at: DateTime<Utc>,
}

/// Default telemetry retention when the integrator set none.
pub const DEFAULT_RETENTION_DAYS: i64 = 400;
/// Quarantined payloads are kept up to this size (the rest is cut, the reason says so).
pub const MAX_QUARANTINE_PAYLOAD: usize = 16 * 1024;
/// How long device facts (category, config, blacklist flags) are cached.
pub const DEVICE_CACHE_TTL: Duration = Duration::from_secs(5);

pub use crate::domain::telemetry::HOURLY_FIELDS;

/// What the alarm rules (and other concerns that act on device data) get to see after a chunk
/// is stored.
#[async_trait]
pub trait Observer: Send + Sync {
    /// Accepted readings of one device, in timestamp order, and for dust devices the updated
    /// hourly means of the hours they touched.
    async fn observe(
        &self,
        device: &Device,
        readings: &[Reading],
        hours: &[(DateTime<Utc>, BTreeMap<String, f64>)],
    );

    /// Events of one device, in timestamp order, once they are durable: those stored now and
    /// those recognised as redeliveries of stored ones (a device that repeats a question did
    /// not get the answer). By default nothing is done with them.
    async fn observe_events(&self, _device: &Device, _events: &[Event]) {}
}

/// Where commands to devices go: the single-box broker, or AWS IoT's data plane.
#[async_trait]
pub trait Downlink: Send + Sync {
    /// Publishes on the device's `cmd` topic; `false` when it could not be handed over (the
    /// command is recorded either way).
    async fn send(&self, device: &Device, payload: Bytes) -> bool;
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored record is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A quarantined message as the API lists it.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Quarantined {
    pub received_at: String,
    pub project_id: Option<String>,
    pub device_id: Option<String>,
    /// `telemetry`, `events`, `hj212`, …
    pub source: String,
    /// Stable reason code (`out_of_range`, `unknown_field`, `bad_crc`, `topic_not_allowed`, …).
    pub reason: String,
    pub field: Option<String>,
    pub detail: String,
    /// The payload as received (UTF-8 lossy), cut at 16 KiB.
    pub payload: String,
}

struct Cached {
    at: Instant,
    device: Option<Arc<Device>>,
}

/// The pipeline. Cheap to clone.
#[derive(Clone)]
pub struct Pipeline {
    store: Arc<dyn Store>,
    fleet: Fleet,
    observers: Vec<Arc<dyn Observer>>,
    cache: Arc<Mutex<HashMap<(IntegratorId, String), Cached>>>,
    /// Each integrator's retention, as read from its settings record (cached like devices).
    retention: Arc<Mutex<HashMap<IntegratorId, (Instant, i64)>>>,
    /// The `ts` of each device state this process wrote last (see `update_state`).
    state_ts: Arc<Mutex<HashMap<Key, Option<String>>>>,
    retention_days: i64,
}

/// The outcome of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Stored,
    Duplicate,
    Quarantined,
}

/// One device's share of a stored chunk: its readings, the hours they touched, and its events
/// (stored or redelivered).
type DeviceBatch = (
    Arc<Device>,
    Vec<Reading>,
    BTreeMap<String, DateTime<Utc>>,
    Vec<Event>,
);

/// What a chunk's commit did: stored, redelivered, and each message's outcome.
type Committed = (
    Vec<Accepted>,
    Vec<Accepted>,
    Vec<(usize, Result<Outcome, String>)>,
);

/// A message decoded and ready to write.
struct Accepted {
    idx: usize,
    device: Arc<Device>,
    key: Key,
    item: Item,
    hour: String,
    hour_start: DateTime<Utc>,
    acc: HourlyAcc,
    reading: Option<Reading>,
    event: Option<Event>,
}

impl Pipeline {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Pipeline {
            fleet: Fleet::new(store.clone()),
            store,
            observers: Vec::new(),
            cache: Arc::new(Mutex::new(HashMap::new())),
            state_ts: Arc::new(Mutex::new(HashMap::new())),
            retention: Arc::new(Mutex::new(HashMap::new())),
            retention_days: DEFAULT_RETENTION_DAYS,
        }
    }

    /// Adds an observer; each sees every stored chunk, in the order they were added.
    pub fn with_observer(mut self, observer: Arc<dyn Observer>) -> Self {
        self.observers.push(observer);
        self
    }

    /// The telemetry retention of an integrator: its settings record, else the default.
    pub async fn retention_days(&self, i: &IntegratorId) -> Result<i64, IngestError> {
        if let Some((at, days)) = self
            .retention
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(i)
            .copied()
            && at.elapsed() < DEVICE_CACHE_TTL
        {
            return Ok(days);
        }
        let days = stored_retention(&*self.store, i)
            .await?
            .unwrap_or(self.retention_days);
        self.retention
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(i.clone(), (Instant::now(), days));
        Ok(days)
    }

    /// The default retention for integrators without a setting.
    pub fn with_retention_days(mut self, days: i64) -> Self {
        self.retention_days = days.max(1);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    async fn device(&self, i: &IntegratorId, d: &str) -> Result<Option<Arc<Device>>, IngestError> {
        let k = (i.clone(), d.to_owned());
        if let Some(c) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&k)
            && c.at.elapsed() < DEVICE_CACHE_TTL
        {
            return Ok(c.device.clone());
        }
        let device = match DeviceId::parse("device_id", d) {
            Ok(id) => self
                .fleet
                .device(i, &id)
                .await
                .map_err(|e| IngestError::Store(StoreError::Backend(anyhow::anyhow!("{e}"))))?
                .map(Arc::new),
            Err(_) => None,
        };
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).insert(
            k,
            Cached {
                at: Instant::now(),
                device: device.clone(),
            },
        );
        Ok(device)
    }

    /// Processes a batch; one result per message, in order.
    pub async fn process(&self, batch: &[Inbound]) -> Vec<Result<Outcome, String>> {
        let mut results: Vec<Result<Outcome, String>> = vec![Ok(Outcome::Stored); batch.len()];
        let mut accepted = Vec::new();
        let mut quarantine = Vec::new();
        let now = Utc::now();
        for (idx, m) in batch.iter().enumerate() {
            let device = match self.device(&m.integrator_id, &m.device_id).await {
                Ok(d) => d,
                Err(e) => {
                    results[idx] = Err(e.to_string());
                    continue;
                }
            };
            let source = match m.kind {
                MessageKind::Telemetry => "telemetry",
                MessageKind::Events => "events",
            };
            let Some(device) = device.filter(|d| d.project_id.as_str() == m.project_id) else {
                quarantine.push((
                    idx,
                    self.quarantine_item(
                        m,
                        source,
                        &reject("unknown_device", None, "no such device in this project"),
                    ),
                ));
                continue;
            };
            if device.status != DeviceStatus::Active {
                quarantine.push((
                    idx,
                    self.quarantine_item(
                        m,
                        source,
                        &reject(
                            "device_decommissioned",
                            None,
                            "the device is decommissioned",
                        ),
                    ),
                ));
                continue;
            }
            let retention = match self.retention_days(&m.integrator_id).await {
                Ok(d) => d,
                Err(e) => {
                    results[idx] = Err(e.to_string());
                    continue;
                }
            };
            match self.decode(&device, m, now, retention) {
                Ok(a) => accepted.push(Accepted { idx, ..a }),
                Err(r) => quarantine.push((idx, self.quarantine_item(m, source, &r))),
            }
        }

        // Quarantine: plain puts (a redelivered bad message lands on the same key).
        for chunk in quarantine.chunks(MAX_TRANSACT_ITEMS) {
            let ops = chunk
                .iter()
                .map(|(_, item)| TxOp::Put {
                    item: item.clone(),
                    cond: None,
                })
                .collect::<Vec<_>>();
            let r = self.store.transact(ops).await;
            for (idx, _) in chunk {
                results[*idx] = match &r {
                    Ok(()) => Ok(Outcome::Quarantined),
                    Err(e) => Err(e.to_string()),
                };
            }
        }

        // Accepted: series put (NotExists) + hourly ADD, chunked so each transaction stays
        // within the limit and touches each hourly item once.
        // The chunks commit concurrently: the store's group commit then shares one fsync among
        // them, which is what bounds a durable pipeline's rate.
        let mut chunks = Vec::new();
        let mut pending: Vec<Accepted> = accepted;
        while !pending.is_empty() {
            let (chunk, rest) = take_chunk(pending);
            pending = rest;
            chunks.push(chunk);
        }
        let committed =
            futures::future::join_all(chunks.into_iter().map(|c| self.commit_chunk(c))).await;
        let mut stored: Vec<Accepted> = Vec::new();
        let mut redelivered: Vec<Accepted> = Vec::new();
        for (ok, dups, outcomes) in committed {
            for (idx, r) in outcomes {
                results[idx] = r;
            }
            stored.extend(ok);
            redelivered.extend(dups);
        }

        if !stored.is_empty() || !redelivered.is_empty() {
            self.after_commit(stored, redelivered).await;
        }
        results
    }

    /// Commits one chunk; a series item that exists already is a redelivery, dropped (and
    /// answered `Duplicate`) before the rest is retried. Returns what was stored, what was
    /// recognised as redelivered (if the chunk committed), and every message's outcome.
    async fn commit_chunk(&self, mut chunk: Vec<Accepted>) -> Committed {
        let mut outcomes = Vec::with_capacity(chunk.len());
        let mut dups = Vec::new();
        while !chunk.is_empty() {
            match self.store.transact(chunk_ops(&chunk)).await {
                Ok(()) => {
                    outcomes.extend(chunk.iter().map(|a| (a.idx, Ok(Outcome::Stored))));
                    return (chunk, dups, outcomes);
                }
                Err(StoreError::TransactionConditionFailed { index }) if index < chunk.len() => {
                    let dup = chunk.remove(index);
                    outcomes.push((dup.idx, Ok(Outcome::Duplicate)));
                    dups.push(dup);
                }
                Err(e) => {
                    outcomes.extend(chunk.iter().map(|a| (a.idx, Err(e.to_string()))));
                    return (Vec::new(), Vec::new(), outcomes);
                }
            }
        }
        (chunk, dups, outcomes)
    }

    fn decode(
        &self,
        device: &Arc<Device>,
        m: &Inbound,
        now: DateTime<Utc>,
        retention_days: i64,
    ) -> Result<Accepted, Rejection> {
        let digest = digest(&m.payload);
        let pk = keys::entity(
            &device.integrator_id,
            EntityKind::Device,
            device.id.as_str(),
        );
        let (ts, key, reading, event, acc) = match m.kind {
            MessageKind::Telemetry => {
                let r = telemetry::decode_telemetry(device.category, &m.payload, now)?;
                let mut acc = HourlyAcc::default();
                if device.category == Category::DustNoise {
                    acc.add(&r);
                }
                let ts = r.ts;
                let key = Key::new(pk, keys::series_sk(&stamp(ts), &digest));
                (ts, key, Some(r), None, acc)
            }
            MessageKind::Events => {
                let e = telemetry::decode_event(device.category, &m.payload, now)?;
                let key = Key::new(pk, keys::event_sk(&stamp(e.ts), &digest));
                (e.ts, key, None, Some(e), HourlyAcc::default())
            }
        };
        let hour_start = telemetry::hour_bucket(ts);
        let expires = ts.max(m.received_at).timestamp() + retention_days * 86_400;
        let item = Item::new(key.clone())
            .with("payload", Attr::B(m.payload.to_vec()))
            .with("received_at", stamp(m.received_at))
            .with("untrusted", device.untrusted())
            .with_ttl(expires);
        Ok(Accepted {
            idx: 0,
            device: device.clone(),
            key,
            item,
            hour: hour_start.to_rfc3339_opts(SecondsFormat::Secs, true),
            hour_start,
            acc,
            reading,
            event,
        })
    }

    fn quarantine_item(&self, m: &Inbound, source: &str, r: &Rejection) -> Item {
        quarantine_record(
            &m.integrator_id.to_string(),
            Some(&m.project_id),
            Some(&m.device_id),
            source,
            r.reason,
            r.field.as_deref(),
            &r.detail,
            &m.payload,
            m.received_at,
        )
    }

    /// Latest state, then the observers — after the data is durable, so a failure here never
    /// loses a message (the state is rebuilt by the next message; alarms re-evaluate).
    async fn after_commit(&self, stored: Vec<Accepted>, redelivered: Vec<Accepted>) {
        let mut per_device: BTreeMap<String, DeviceBatch> = BTreeMap::new();
        for a in redelivered {
            if let Some(ev) = a.event {
                per_device
                    .entry(a.device.id.to_string())
                    .or_insert_with(|| (a.device.clone(), Vec::new(), BTreeMap::new(), Vec::new()))
                    .3
                    .push(ev);
            }
        }
        for a in stored {
            let e = per_device
                .entry(a.device.id.to_string())
                .or_insert_with(|| (a.device.clone(), Vec::new(), BTreeMap::new(), Vec::new()));
            if let Some(ev) = a.event {
                e.3.push(ev);
            }
            if let Some(r) = a.reading {
                e.1.push(r);
                if a.device.category == Category::DustNoise {
                    e.2.insert(a.hour.clone(), a.hour_start);
                }
            }
        }
        // Devices are independent: their state writes and rule evaluations run concurrently,
        // so the store's group commit can share fsyncs among them.
        let work = per_device
            .into_values()
            .map(|(device, mut readings, hours, mut events)| async move {
                if !readings.is_empty() {
                    readings.sort_by_key(|r| r.ts);
                    if let Err(e) = self.update_state(&device, &readings).await {
                        tracing::warn!(device = %device.id, error = %e, "ingest: state update failed");
                    }
                    if !self.observers.is_empty() {
                        let mut means = Vec::new();
                        for (hour, start) in hours {
                            match self.hourly(&device, &hour).await {
                                Ok(Some(m)) => means.push((start, m)),
                                Ok(None) => {}
                                Err(e) => {
                                    tracing::warn!(device = %device.id, error = %e, "ingest: hourly read failed")
                                }
                            }
                        }
                        for observer in &self.observers {
                            observer.observe(&device, &readings, &means).await;
                        }
                    }
                }
                if !events.is_empty() {
                    events.sort_by_key(|e| e.ts);
                    for observer in &self.observers {
                        observer.observe_events(&device, &events).await;
                    }
                }
            });
        futures::future::join_all(work).await;
    }

    async fn update_state(&self, device: &Device, readings: &[Reading]) -> Result<(), IngestError> {
        let Some(last) = readings.last() else {
            return Ok(());
        };
        let key = state_key(device);
        let ts = stamp(last.ts);
        let values = serde_json::to_string(&last.values)?;
        // The stored state's timestamp as this process last wrote it saves a read per device
        // and batch; the write's condition catches any other writer, after which we re-read.
        let mut known = self
            .state_ts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned();
        for _ in 0..5 {
            let current_ts = match known.take() {
                Some(c) => c,
                None => self
                    .store
                    .get(&key)
                    .await?
                    .and_then(|i| i.s("ts").map(str::to_owned)),
            };
            // Only move forward: back-filled old data does not overwrite newer state (a reading
            // of the same instant, arriving later, does: HJ 212 times have one-second resolution).
            if current_ts.as_deref().is_some_and(|c| c > ts.as_str()) {
                return Ok(());
            }
            let cond = match current_ts {
                Some(c) => Some(crate::store::Condition::equals("ts", c)),
                None => Some(crate::store::Condition::NotExists),
            };
            let item = Item::new(key.clone())
                .with("ts", ts.clone())
                .with("values", values.clone())
                .with("untrusted", device.untrusted());
            match self.store.put(item, cond).await {
                Ok(()) => {
                    self.state_ts
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(key, Some(ts));
                    return Ok(());
                }
                // Another writer moved it: read it again and compare.
                Err(StoreError::ConditionFailed) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// The hourly means of one device-hour (`hour` as stored), if any message counted.
    pub async fn hourly(
        &self,
        device: &Device,
        hour: &str,
    ) -> Result<Option<BTreeMap<String, f64>>, IngestError> {
        hourly_at(&*self.store, device, hour).await
    }

    /// Records a device's connection state.
    pub async fn presence(
        &self,
        integrator: &IntegratorId,
        device_id: &str,
        online: bool,
        at: DateTime<Utc>,
    ) -> Result<(), IngestError> {
        let key = Key::new(
            keys::entity(integrator, EntityKind::Device, device_id),
            keys::SK_PRESENCE,
        );
        let mut item = Item::new(key)
            .with("online", online)
            .with("last_seen", stamp(at));
        item.set(
            if online {
                "connected_at"
            } else {
                "disconnected_at"
            },
            stamp(at),
        );
        self.store.put(item, None).await?;
        Ok(())
    }

    /// Quarantines something that never became a message of a known device (an ACL refusal, an
    /// HJ 212 frame that could not be parsed or mapped).
    #[allow(clippy::too_many_arguments)]
    pub async fn quarantine(
        &self,
        integrator: Option<&IntegratorId>,
        project: Option<&str>,
        device: Option<&str>,
        source: &str,
        reason: &str,
        detail: &str,
        payload: &[u8],
    ) -> Result<(), IngestError> {
        let i = integrator.map_or_else(|| keys::PLATFORM_ID.to_owned(), |i| i.to_string());
        let item = quarantine_record(
            &i,
            project,
            device,
            source,
            reason,
            None,
            detail,
            payload,
            Utc::now(),
        );
        self.store.put(item, None).await?;
        Ok(())
    }
}

fn reject(reason: &'static str, field: Option<String>, detail: &str) -> Rejection {
    Rejection {
        reason,
        field,
        detail: detail.to_owned(),
    }
}

/// Splits off the next chunk: at most 99 messages (the hourly ADDs need room too) and no more
/// than the transaction limit in total, each hourly key once.
fn take_chunk(mut pending: Vec<Accepted>) -> (Vec<Accepted>, Vec<Accepted>) {
    let mut chunk = Vec::new();
    let mut hours: std::collections::HashSet<(String, String)> = Default::default();
    let mut series: std::collections::HashSet<Key> = Default::default();
    let mut rest = Vec::new();
    for a in pending.drain(..) {
        let hk = (a.device.id.to_string(), a.hour.clone());
        let new_hour = !hours.contains(&hk);
        let ops = chunk.len() + hours.len() + 1 + usize::from(new_hour);
        if ops > MAX_TRANSACT_ITEMS || series.contains(&a.key) {
            rest.push(a);
            continue;
        }
        hours.insert(hk);
        series.insert(a.key.clone());
        chunk.push(a);
    }
    (chunk, rest)
}

/// The chunk's operations: its series puts first (so a failed condition's index is the
/// message's index in the chunk), then one ADD per device-hour.
fn chunk_ops(chunk: &[Accepted]) -> Vec<TxOp> {
    let mut ops = Vec::with_capacity(chunk.len() * 2);
    let mut hours: BTreeMap<Key, (i64, HourlyAcc)> = BTreeMap::new();
    for a in chunk {
        ops.push(TxOp::Put {
            item: a.item.clone(),
            cond: Some(crate::store::Condition::NotExists),
        });
        let k = Key::new(a.key.pk.clone(), keys::hourly_sk(&a.hour));
        let e = hours.entry(k).or_default();
        e.0 += 1;
        e.1.merge(&a.acc);
    }
    for (key, (msgs, acc)) in hours {
        let mut deltas = vec![("msgs".to_owned(), msgs)];
        deltas.extend(acc_deltas(&acc));
        ops.push(TxOp::Add {
            key,
            deltas,
            cond: None,
        });
    }
    ops
}

/// Hourly sums as integer ADD deltas: `{field}_n` counts, `{field}_sum` in milli-units, and for
/// noise `noise_dba_e` = Σ 10^(L/10) (energetic sum; ≤ 10^14 per message, so i64 holds years).
fn acc_deltas(acc: &HourlyAcc) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    let parts = [
        ("pm10_ugm3", &acc.pm10_ugm3, None),
        ("pm25_ugm3", &acc.pm25_ugm3, None),
        ("tsp_ugm3", &acc.tsp_ugm3, None),
        ("noise_dba", &acc.noise_dba, Some(acc.noise_energy)),
    ];
    for (field, sc, energy) in parts {
        if sc.count == 0 {
            continue;
        }
        out.push((
            format!("{field}_n"),
            i64::try_from(sc.count).unwrap_or(i64::MAX),
        ));
        out.push((format!("{field}_sum"), (sc.sum * 1000.0).round() as i64));
        if let Some(e) = energy {
            out.push((format!("{field}_e"), e.round() as i64));
        }
    }
    out
}

/// The hourly means of one device-hour (`hour` as stored, `YYYY-MM-DDTHH:00:00Z`), if any
/// message counted: what the alarm rules read for the hours before the current one.
pub async fn hourly_at(
    store: &dyn Store,
    device: &Device,
    hour: &str,
) -> Result<Option<BTreeMap<String, f64>>, IngestError> {
    let key = Key::new(
        keys::entity(
            &device.integrator_id,
            EntityKind::Device,
            device.id.as_str(),
        ),
        keys::hourly_sk(hour),
    );
    Ok(store.get(&key).await?.map(|i| hourly_means(&i)))
}

/// The retention an integrator set, if it set one.
pub async fn stored_retention(
    store: &dyn Store,
    i: &IntegratorId,
) -> Result<Option<i64>, IngestError> {
    Ok(match store.get(&settings_key(i)).await? {
        Some(item) => {
            Some(crate::store::records::decode::<IngestSettings>(&item)?.telemetry_retention_days)
        }
        None => None,
    })
}

/// The means of a stored hourly item (see [`acc_deltas`]), plus `msgs`.
pub fn hourly_means(item: &Item) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Some(m) = item.n("msgs") {
        out.insert("msgs".to_owned(), m as f64);
    }
    for f in HOURLY_FIELDS {
        let n = item.n(&format!("{f}_n")).unwrap_or(0);
        if n == 0 {
            continue;
        }
        let mean = match item.n(&format!("{f}_e")) {
            Some(e) if e > 0 => 10.0 * (e as f64 / n as f64).log10(),
            _ => item.n(&format!("{f}_sum")).unwrap_or(0) as f64 / 1000.0 / n as f64,
        };
        out.insert(f.to_owned(), (mean * 100.0).round() / 100.0);
    }
    out
}

/// An integrator's ingest settings (API: `GET/PUT /v1/integrators/{id}/ingest-settings`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestSettings {
    /// How long telemetry and events are kept, in days (1–3650), counted from the later of the
    /// message's time and its arrival. Applies to messages stored from now on.
    pub telemetry_retention_days: i64,
}

/// `(I#{i}#, SETTINGS#INGEST)`.
pub fn settings_key(i: &IntegratorId) -> Key {
    Key::new(keys::integrator(i), "SETTINGS#INGEST")
}

pub fn state_key(device: &Device) -> Key {
    Key::new(
        keys::entity(
            &device.integrator_id,
            EntityKind::Device,
            device.id.as_str(),
        ),
        keys::SK_STATE,
    )
}

/// A device's latest values and connection state (`GET /v1/devices/{id}/state`, and the `state`
/// events of a project's live stream).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DeviceState {
    pub device_id: String,
    pub online: bool,
    /// Last time the device was heard from (a message or its connection).
    pub last_seen: Option<String>,
    /// Timestamp of the latest accepted reading.
    pub ts: Option<String>,
    #[schema(value_type = Object)]
    pub values: serde_json::Map<String, serde_json::Value>,
    /// The device is flagged by a blacklist entry: its data are not to be trusted.
    pub untrusted: bool,
}

/// Reads a device's [`DeviceState`]: its latest accepted reading and its presence record.
pub async fn device_state(store: &dyn Store, d: &Device) -> Result<DeviceState, StoreError> {
    let st = store.get(&state_key(d)).await?;
    let presence = store
        .get(&Key::new(
            keys::entity(&d.integrator_id, EntityKind::Device, d.id.as_str()),
            keys::SK_PRESENCE,
        ))
        .await?;
    let values = match st.as_ref().and_then(|i| i.s("values")) {
        Some(v) => serde_json::from_str(v).map_err(|e| StoreError::Backend(e.into()))?,
        None => serde_json::Map::new(),
    };
    let ts = st.as_ref().and_then(|i| i.s("ts")).map(str::to_owned);
    let seen = presence
        .as_ref()
        .and_then(|p| p.s("last_seen"))
        .map(str::to_owned);
    let last_seen = match (seen, ts.clone()) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    };
    Ok(DeviceState {
        device_id: d.id.to_string(),
        online: presence
            .as_ref()
            .and_then(|p| p.attr("online"))
            .is_some_and(|a| *a == Attr::Bool(true)),
        last_seen,
        ts,
        values,
        untrusted: d.untrusted(),
    })
}

/// Millisecond UTC RFC 3339 (`2026-11-24T08:00:00.000Z`): fixed width, so byte order = time order.
pub fn stamp(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// 16 hex chars of FNV-1a 64 over the payload: enough to tell apart two messages of one device
/// at one millisecond; not a security property (the series key's condition only guards
/// redelivery of the same bytes).
pub fn digest(payload: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in payload {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[allow(clippy::too_many_arguments)]
fn quarantine_record(
    integrator: &str,
    project: Option<&str>,
    device: Option<&str>,
    source: &str,
    reason: &str,
    field: Option<&str>,
    detail: &str,
    payload: &[u8],
    received_at: DateTime<Utc>,
) -> Item {
    let at = stamp(received_at);
    let pk: Pk = keys::quarantine(integrator, project.unwrap_or("_"));
    let mut sk_digest = digest(payload);
    sk_digest.push_str(&digest(reason.as_bytes())[..4]);
    let cut = payload.len().min(MAX_QUARANTINE_PAYLOAD);
    let q = Quarantined {
        received_at: at.clone(),
        project_id: project.map(str::to_owned),
        device_id: device.map(str::to_owned),
        source: source.to_owned(),
        reason: reason.to_owned(),
        field: field.map(str::to_owned),
        detail: if cut < payload.len() {
            format!("{detail} (payload cut at {MAX_QUARANTINE_PAYLOAD} bytes)")
        } else {
            detail.to_owned()
        },
        payload: String::from_utf8_lossy(&payload[..cut]).into_owned(),
    };
    let key = Key::new(pk, keys::quarantine_sk(&at, &sk_digest));
    // The record is plain serialisable data; a failure here cannot happen for these types.
    Item::new(key)
        .with_json(crate::store::records::DATA, &q)
        .unwrap_or_else(|_| Item::new(Key::new(keys::quarantine(integrator, "_"), at)))
}
