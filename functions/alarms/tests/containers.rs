//! Two alarm evaluators over one store, as two Lambda containers of the AWS edition handling the
//! same device at once (SQS does not order a standard queue, and IoT rules cannot feed FIFO
//! queues): the rule state is written under its revision and an alarm opens once per device and
//! rule, so racing containers raise one alarm, not two. Both storage adapters. Also: a device's
//! commands page with a real cursor.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use serde_json::json;
use smartsite_shared::alarming::{Alarms, Status};
use smartsite_shared::domain::devices::{Category, DeviceId, ModelId, SerialNo, SupplierId};
use smartsite_shared::domain::telemetry::decode_telemetry;
use smartsite_shared::domain::tenancy::{ProjectId, RegionCode};
use smartsite_shared::fleet::{Device, DeviceStatus};
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::ingest::Observer;
use smartsite_shared::store::Store;

fn crane(i: &IntegratorId) -> Device {
    Device {
        id: DeviceId::generate(),
        integrator_id: i.clone(),
        project_id: ProjectId::generate(),
        region_code: RegionCode::parse("r", "220102").unwrap(),
        model_id: ModelId::generate(),
        supplier_id: SupplierId::generate(),
        category: Category::TowerCrane,
        serial_no: SerialNo::parse("s", "RACE-TC-1").unwrap(),
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

async fn racing_containers_raise_one_alarm(store: Arc<dyn Store>) {
    let i = IntegratorId::parse("race-co").unwrap();
    let d = crane(&i);
    for round in 0..5 {
        // Two fresh containers (empty caches) see the same overload at the same time.
        let a = Alarms::new(store.clone());
        let b = Alarms::new(store.clone());
        let now = Utc::now();
        let r = decode_telemetry(
            Category::TowerCrane,
            json!({"ts": now.to_rfc3339(), "moment_pct": 105.0 + f64::from(round)})
                .to_string()
                .as_bytes(),
            now,
        )
        .unwrap();
        let (ra, rb) = (vec![r.clone()], vec![r]);
        tokio::join!(a.observe(&d, &ra, &[]), b.observe(&d, &rb, &[]));
    }
    let (items, _) = Alarms::new(store.clone())
        .list(i.as_str(), d.project_id.as_str(), None, 50, None)
        .await
        .unwrap();
    let moment: Vec<_> = items.iter().filter(|a| a.rule == "TC-MOMENT").collect();
    assert_eq!(moment.len(), 1, "{items:?}");
    assert_eq!(moment[0].status, Status::Open);
}

/// Seven commands stored as the spray logic stores them, read back two at a time by following
/// `next`: each once, oldest first.
async fn commands_page_with_a_cursor(store: Arc<dyn Store>) {
    use smartsite_shared::alarming::Command;
    use smartsite_shared::store::keys::{self, EntityKind};
    use smartsite_shared::store::{Key, records};
    let i = IntegratorId::parse("cmd-co").unwrap();
    let d = crane(&i);
    let mut sent = Vec::new();
    for n in 0..7 {
        let at = format!("2026-12-07T08:00:0{n}Z");
        let cmd = Command {
            device_id: d.id.to_string(),
            at: at.clone(),
            payload: json!({"cmd": "spray", "state": if n % 2 == 0 { "on" } else { "off" }}),
            delivered: true,
        };
        let key = Key::new(
            keys::entity(&i, EntityKind::Device, d.id.as_str()),
            keys::command_sk(&at, &format!("{n:04}")),
        );
        store
            .put(records::record(key, &cmd).unwrap(), None)
            .await
            .unwrap();
        sent.push(at);
    }
    let alarms = Alarms::new(store);
    let mut read = Vec::new();
    let mut cursor = None;
    loop {
        let (items, next) = alarms.commands(&d, 2, cursor).await.unwrap();
        assert!(items.len() <= 2);
        read.extend(items.into_iter().map(|c| c.at));
        match next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    assert_eq!(read, sent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded() {
    let fx = smartsite_shared::testkit::embedded().await;
    racing_containers_raise_one_alarm(fx.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo() {
    let fx = smartsite_shared::testkit::dynamo().await;
    racing_containers_raise_one_alarm(fx.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_page_embedded() {
    let fx = smartsite_shared::testkit::embedded().await;
    commands_page_with_a_cursor(fx.store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_page_dynamo() {
    let fx = smartsite_shared::testkit::dynamo().await;
    commands_page_with_a_cursor(fx.store).await;
}
