//! The AWS edition's message path without AWS: SQS batches (as the IoT topic rule writes them)
//! through `handle_sqs` into the pipeline, on both storage adapters. Redelivered messages change
//! nothing, rejected ones are quarantined, unreadable records never fail the batch, and the
//! hourly aggregate counts each message once (the metering count); a gate's request is decided
//! and stored once by the workforce's gate observer, as the ingest Lambda wires it.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use base64::Engine as _;
use chrono::{SecondsFormat, Utc};
use serde_json::json;
use smartsite_ingest::handle_sqs;
use smartsite_shared::domain::devices::{Category, DeviceId, ModelId, SerialNo, SupplierId};
use smartsite_shared::domain::telemetry::hour_bucket;
use smartsite_shared::domain::tenancy::{ProjectId, RegionCode};
use smartsite_shared::fleet::{Device, DeviceStatus, Fleet};
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::ingest::Pipeline;
use smartsite_shared::store::keys::{self, EntityKind};
use smartsite_shared::store::{Key, Query, SkCond, Store};
use smartsite_shared::testkit;

fn device(integrator: &IntegratorId) -> Device {
    Device {
        id: DeviceId::generate(),
        integrator_id: integrator.clone(),
        project_id: ProjectId::generate(),
        region_code: RegionCode::parse("r", "220102").unwrap(),
        model_id: ModelId::generate(),
        supplier_id: SupplierId::generate(),
        category: Category::DustNoise,
        serial_no: SerialNo::parse("s", "SQS-DN-1").unwrap(),
        mn: None,
        config: BTreeMap::new(),
        status: DeviceStatus::Active,
        certificate_id: "c".repeat(64),
        created_by: "test".into(),
        created_at: Utc::now().to_rfc3339(),
        decommissioned_by: None,
        decommissioned_at: None,
        flags: Vec::new(),
    }
}

fn record(id: &str, topic: &str, payload: &[u8]) -> SqsMessage {
    let mut m = SqsMessage::default();
    m.message_id = Some(id.to_owned());
    m.body = Some(
        json!({
            "payload": base64::engine::general_purpose::STANDARD.encode(payload),
            "topic": topic,
            "received_ms": Utc::now().timestamp_millis(),
        })
        .to_string(),
    );
    m
}

fn event(records: Vec<SqsMessage>) -> SqsEvent {
    let mut e = SqsEvent::default();
    e.records = records;
    e
}

async fn series_len(store: &dyn Store, d: &Device) -> usize {
    let q = Query::partition(&keys::entity(
        &d.integrator_id,
        EntityKind::Device,
        d.id.as_str(),
    ))
    .sk(SkCond::BeginsWith(keys::SERIES_PREFIX.into()))
    .limit(1000);
    store.query(q).await.unwrap().items.len()
}

async fn batches_are_stored_exactly_once(store: Arc<dyn Store>) {
    let integrator = IntegratorId::parse("acme-sqs").unwrap();
    let d = device(&integrator);
    bind(&store, &integrator, &d).await;
    let pipeline = Pipeline::new(store.clone());
    let topic = format!("ss/{}/{}/{}/telemetry", integrator, d.project_id, d.id);
    let t0 = Utc::now() - chrono::Duration::minutes(2);
    let msgs: Vec<Vec<u8>> = (0..30)
        .map(|i| {
            let ts =
                (t0 + chrono::Duration::seconds(i)).to_rfc3339_opts(SecondsFormat::Millis, true);
            serde_json::to_vec(&json!({"ts": ts, "pm10_ugm3": 100.0 + i as f64, "noise_dba": 60.0}))
                .unwrap()
        })
        .collect();
    let mut records: Vec<SqsMessage> = msgs
        .iter()
        .enumerate()
        .map(|(i, m)| record(&format!("m{i}"), &topic, m))
        .collect();
    records.push(record(
        "bad-field",
        &topic,
        br#"{"ts":"2026-11-24T00:00:00Z","pm10":5}"#,
    ));
    let mut garbage = SqsMessage::default();
    garbage.message_id = Some("garbage".into());
    garbage.body = Some("not json".into());
    records.push(garbage);

    let r = handle_sqs(&pipeline, event(records.clone())).await;
    assert!(
        r.batch_item_failures.is_empty(),
        "{:?}",
        r.batch_item_failures
    );
    assert_eq!(series_len(&*store, &d).await, 30);

    // SQS redelivers the whole batch (a retry after a timeout), in another order: nothing changes.
    records.reverse();
    let r = handle_sqs(&pipeline, event(records)).await;
    assert!(r.batch_item_failures.is_empty());
    assert_eq!(series_len(&*store, &d).await, 30);

    // The hourly aggregates count the 30 messages once, with the exact PM10 sum:
    // Σ (100 + i) for i in 0..30 = 3000 + 435 = 3435, stored ×1000 (milli-units).
    let pk = keys::entity(&d.integrator_id, EntityKind::Device, d.id.as_str());
    let hours = store
        .query(
            Query::partition(&pk)
                .sk(SkCond::BeginsWith(keys::HOURLY_PREFIX.into()))
                .limit(10),
        )
        .await
        .unwrap();
    let msgs: i64 = hours.items.iter().map(|i| i.n("msgs").unwrap()).sum();
    let sum: i64 = hours
        .items
        .iter()
        .map(|i| i.n("pm10_ugm3_sum").unwrap())
        .sum();
    assert_eq!((msgs, sum), (30, 3_435_000));
    let hour = hour_bucket(t0).to_rfc3339_opts(SecondsFormat::Secs, true);
    assert!(
        hours
            .items
            .iter()
            .any(|i| i.key == Key::new(pk.clone(), keys::hourly_sk(&hour)))
    );

    // The bad message sits in the project's quarantine with its reason (once, however often it
    // is delivered); the unreadable record in the platform's.
    let q = store
        .query(
            Query::partition(&keys::quarantine(
                integrator.as_str(),
                d.project_id.as_str(),
            ))
            .limit(10),
        )
        .await
        .unwrap();
    assert_eq!(q.items.len(), 1, "{:?}", q.items);
    assert!(q.items[0].s("data").unwrap().contains("unknown_field"));
    let pq = store
        .query(Query::partition(&keys::quarantine(keys::PLATFORM_ID, "_")).limit(10))
        .await
        .unwrap();
    assert!(
        pq.items
            .iter()
            .any(|i| i.s("data").unwrap().contains("bad_rule_message"))
    );
}

/// The integrator's retention setting decides the TTL of what is stored from then on.
async fn retention_follows_the_integrators_setting(store: Arc<dyn Store>) {
    let integrator = IntegratorId::parse("acme-ret").unwrap();
    let d = device(&integrator);
    bind(&store, &integrator, &d).await;
    store
        .put(
            smartsite_shared::store::records::record(
                smartsite_shared::ingest::settings_key(&integrator),
                &smartsite_shared::ingest::IngestSettings {
                    telemetry_retention_days: 30,
                },
            )
            .unwrap(),
            None,
        )
        .await
        .unwrap();
    let pipeline = Pipeline::new(store.clone());
    let topic = format!("ss/{}/{}/{}/telemetry", integrator, d.project_id, d.id);
    let ts = Utc::now() - chrono::Duration::minutes(1);
    let payload = serde_json::to_vec(&json!({"ts": ts.to_rfc3339(), "pm10_ugm3": 50.0})).unwrap();
    let r = handle_sqs(&pipeline, event(vec![record("r1", &topic, &payload)])).await;
    assert!(r.batch_item_failures.is_empty());
    let q = Query::partition(&keys::entity(
        &d.integrator_id,
        EntityKind::Device,
        d.id.as_str(),
    ))
    .sk(SkCond::BeginsWith(keys::SERIES_PREFIX.into()))
    .limit(10);
    let items = store.query(q).await.unwrap().items;
    assert_eq!(items.len(), 1);
    // received (now) is later than ts: expiry = received + 30 days, within the test's seconds.
    let ttl = items[0].ttl().unwrap();
    let want = Utc::now().timestamp() + 30 * 86_400;
    assert!(
        (want - 5..=want + 1).contains(&ttl),
        "ttl {ttl}, want about {want}"
    );
}

#[tokio::test]
async fn retention_follows_the_integrators_setting_embedded() {
    let f = testkit::embedded().await;
    retention_follows_the_integrators_setting(f.store.clone()).await;
}

#[tokio::test]
async fn retention_follows_the_integrators_setting_dynamo() {
    let f = testkit::dynamo().await;
    retention_follows_the_integrators_setting(f.store.clone()).await;
}

#[tokio::test]
async fn sqs_batches_are_stored_exactly_once_embedded() {
    let f = testkit::embedded().await;
    batches_are_stored_exactly_once(f.store.clone()).await;
}

#[tokio::test]
async fn sqs_batches_are_stored_exactly_once_dynamo() {
    let f = testkit::dynamo().await;
    batches_are_stored_exactly_once(f.store.clone()).await;
}

/// Binds `d` as provisioning does: after reading the blacklist versions of its targets.
async fn bind(store: &Arc<dyn Store>, integrator: &IntegratorId, d: &Device) {
    let (_, versions) = smartsite_shared::catalog::Catalog::new(store.clone())
        .active_bans_for(&d.supplier_id, &d.model_id, &d.serial_no)
        .await
        .unwrap();
    Fleet::new(store.clone())
        .bind(integrator, d, &versions)
        .await
        .unwrap();
}

/// The ingest Lambda's gate path: a gate's request arriving in an SQS batch is decided and the
/// decision stored (once, also when SQS redelivers the record) by the workforce's gate observer.
/// The AWS edition has no downlink yet, so nothing is answered here.
async fn gate_requests_from_sqs_are_decided_and_stored_once(store: Arc<dyn Store>) {
    use smartsite_workforce::service::Workforce;
    use smartsite_workforce::service::gate::GateObserver;
    use smartsite_workforce::service::vault::LocalKeyVault;

    let directory = smartsite_shared::directory::Directory::new(store.clone());
    let (integrator, enterprise) = testkit::tenant(&directory, "acme-gate", "吉林建工").await;
    let project = testkit::project(&directory, &integrator, &enterprise, "一期", 1_000_000).await;
    let mut d = device(&integrator);
    d.project_id = project.clone();
    d.category = Category::AccessGate;
    d.serial_no = SerialNo::parse("s", "SQS-GATE-1").unwrap();
    bind(&store, &integrator, &d).await;
    let keys_dir = tempfile::tempdir().unwrap();
    let vault = Arc::new(LocalKeyVault::new(
        keys_dir.path().join(LocalKeyVault::FILE),
    ));
    let workforce = Workforce::with_default_rules(store.clone(), vault).unwrap();
    let gates = GateObserver::new(workforce.clone(), directory.clone());
    let pipeline = Pipeline::new(store.clone()).with_observer(Arc::new(gates));

    let topic = format!("ss/{}/{}/{}/events", integrator, d.project_id, d.id);
    let ts = Utc::now() - chrono::Duration::minutes(1);
    let payload = serde_json::to_vec(&json!({"ts": ts.to_rfc3339(), "type": "gate_request",
        "request_id": "sqs-1", "worker_id": "wkr-unknown", "direction": "in"}))
    .unwrap();
    for id in ["m1", "m1-again"] {
        let r = handle_sqs(&pipeline, event(vec![record(id, &topic, &payload)])).await;
        assert!(r.batch_item_failures.is_empty());
    }
    let p = directory
        .project(&integrator, &project)
        .await
        .unwrap()
        .unwrap();
    let day = smartsite_shared::calendar::shanghai_date(ts);
    let decisions = workforce.gate_decisions(&p, day, 50, None).await.unwrap();
    assert_eq!(decisions.items.len(), 1, "{:?}", decisions.items);
    let got = &decisions.items[0];
    assert_eq!(
        (
            got.request_id.as_str(),
            got.worker_id.as_str(),
            got.device_id.as_str()
        ),
        ("sqs-1", "wkr-unknown", d.id.as_str())
    );
    assert_eq!(got.command()["decision"], "deny");
    assert_eq!(got.command()["reasons"], json!(["not_enrolled"]));
}

#[tokio::test]
async fn gate_requests_from_sqs_are_decided_and_stored_once_embedded() {
    let f = testkit::embedded().await;
    gate_requests_from_sqs_are_decided_and_stored_once(f.store.clone()).await;
}

#[tokio::test]
async fn gate_requests_from_sqs_are_decided_and_stored_once_dynamo() {
    let f = testkit::dynamo().await;
    gate_requests_from_sqs_are_decided_and_stored_once(f.store.clone()).await;
}
