//! The billing service suite, over whichever store a fixture gives: `billing_suite!(fixture)`
//! expands to one test per case, so the same cases run on redb and on DynamoDB (emulator).
//! Every expected amount is computed by hand in the comments.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use futures::FutureExt as _;
use serde_json::{Value, json};
use smartsite_billing::Billing;
use smartsite_billing::service::{
    FundingSource, Invoice, InvoiceStatus, NewPackage, NewSubscription, ServiceError, UsageStatus,
    previous,
};
use smartsite_shared::domain::billing::{
    ChangeKind, InvoiceLine, Model, PausePolicy, Period, PriceLine, Tier, Unit, shanghai_date,
};
use smartsite_shared::handoff;
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::testkit::StoreFixture;

#[macro_export]
macro_rules! billing_suite {
    ($fixture:path, $many:expr) => {
        billing_suite!(@cases $fixture;
            the_same_usage_rated_under_the_three_models,
            mid_month_start_suspension_and_upgrade_are_prorated_by_day,
            late_usage_after_close_becomes_a_correction_in_the_next_period,
            issuing_a_funded_invoice_hands_it_off_exactly_once,
            usage_events_are_checked_one_by_one,
            packages_are_versioned_and_subscriptions_keep_theirs,
            platform_usage_comes_from_the_fleet_and_ingest_counts,
        );
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn redelivered_shuffled_usage_bills_like_one_clean_delivery() {
            suite::redelivery_is_exactly_once($fixture().await, $fixture().await, $many).await;
        }
    };
    (@cases $fixture:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                suite::$case($fixture().await).await;
            }
        )*
    };
}

pub fn acme() -> IntegratorId {
    IntegratorId::parse("acme").unwrap()
}

fn d(y: i32, m: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, day).unwrap()
}

/// The previous Shanghai month: usage of it is still accepted today, whatever today is.
pub fn last_month() -> Period {
    previous(Period::containing(Utc::now()))
}

/// `YYYY-MM-DDTHH:MM:SS+08:00` of day `day` of `p`.
fn at(p: Period, day: u32, hm: &str) -> String {
    format!("{p}-{day:02}T{hm}:00+08:00")
}

fn flat(unit: Unit, price_fen: i64) -> PriceLine {
    PriceLine::flat(unit, price_fen)
}

fn cat(unit: Unit, price_fen: i64, category: &str) -> PriceLine {
    PriceLine {
        category: Some(category.into()),
        ..PriceLine::flat(unit, price_fen)
    }
}

/// Full solution: ¥3,000/project-month, ¥12,000 installation, ¥0.50 per 1,000 messages beyond
/// 100,250.
pub fn full_solution() -> NewPackage {
    let mut messages = flat(Unit::MessageOveragePer1k, 50);
    messages.included = Some(100_250);
    NewPackage {
        name: "总体解决方案".into(),
        model: Model::FullSolution,
        prices: vec![
            flat(Unit::ProjectMonth, 300_000),
            flat(Unit::OneOff, 1_200_000),
            messages,
        ],
        pause_on_suspend: None,
    }
}

/// Technical service: per active device per month, ¥50 for the first 3, ¥40 beyond.
pub fn tech_service() -> NewPackage {
    NewPackage {
        name: "单纯技术服务".into(),
        model: Model::TechService,
        prices: vec![PriceLine {
            tiers: Some(vec![
                Tier {
                    up_to: Some(3),
                    price_fen: 5_000,
                },
                Tier {
                    up_to: None,
                    price_fen: 4_000,
                },
            ]),
            ..flat(Unit::DeviceMonth, 0)
        }],
        pause_on_suspend: None,
    }
}

/// Leasing: per bound device-day, ¥8 tower crane, ¥3 dust monitor, ¥2 anything else.
pub fn leasing() -> NewPackage {
    NewPackage {
        name: "租赁服务".into(),
        model: Model::Leasing,
        prices: vec![
            cat(Unit::DeviceDay, 800, "tower_crane"),
            cat(Unit::DeviceDay, 300, "dust_noise"),
            flat(Unit::DeviceDay, 200),
        ],
        pause_on_suspend: None,
    }
}

fn project_fee(name: &str, fee: i64) -> NewPackage {
    NewPackage {
        name: name.into(),
        model: Model::FullSolution,
        prices: vec![flat(Unit::ProjectMonth, fee)],
        pause_on_suspend: Some(PausePolicy::default()),
    }
}

pub async fn subscribe(
    b: &Billing,
    package: &str,
    project: &str,
    start: NaiveDate,
    funding: FundingSource,
) -> String {
    b.create_subscription(
        &acme(),
        NewSubscription {
            customer_id: "cus-1".into(),
            project_id: project.into(),
            package_id: package.into(),
            package_version: None,
            start_date: start,
            end_date: None,
            funding_source: funding,
        },
        Utc::now(),
    )
    .await
    .unwrap()
    .id
}

fn ev(id: String, sub: &str, metric: &str, q: i64, ts: String, dev: Option<(&str, &str)>) -> Value {
    let mut v =
        json!({"id": id, "subscription_id": sub, "metric": metric, "quantity": q, "ts": ts});
    if let Some((device, category)) = dev {
        v["device_id"] = json!(device);
        if !category.is_empty() {
            v["category"] = json!(category);
        }
    }
    v
}

/// One month `m` of usage, all times Shanghai-local, chosen so no figure depends on the month's
/// length:
///
/// | device  | category    | bound                       | days | messages | active |
/// |---------|-------------|-----------------------------|-----:|---------:|--------|
/// | crane-1 | tower_crane | day 1 00:00 – day 11 00:00  | 10   | 40,000   | yes    |
/// | dust-1  | dust_noise  | day 2 08:00 – day 22 08:00  | 21   | 60,000   | yes    |
/// | hoist-1 | hoist       | day 3 08:00 – day 3 17:00   | 1    | 0        | flag   |
/// | cam-1   | camera      | never                       | 0    | 3,000    | yes    |
/// | (none)  |             |                             |      | 1,500    |        |
///
/// Messages 104,500; active devices 4.
pub fn stream(sub: &str, tag: &str, m: Period) -> Vec<Value> {
    let tc = Some(("crane-1", "tower_crane"));
    let dn = Some(("dust-1", "dust_noise"));
    let h = Some(("hoist-1", "hoist"));
    let id = |n: u32| format!("{tag}-e{n}");
    vec![
        ev(id(1), sub, "device_bound", 1, at(m, 1, "00:00"), tc),
        ev(id(2), sub, "device_unbound", 1, at(m, 11, "00:00"), tc),
        ev(id(3), sub, "messages", 10_000, at(m, 2, "08:00"), tc),
        ev(id(4), sub, "messages", 10_000, at(m, 5, "08:00"), tc),
        ev(id(5), sub, "messages", 10_000, at(m, 8, "08:00"), tc),
        ev(id(6), sub, "messages", 10_000, at(m, 9, "08:00"), tc),
        ev(id(7), sub, "device_bound", 1, at(m, 2, "08:00"), dn),
        ev(id(8), sub, "device_unbound", 1, at(m, 22, "08:00"), dn),
        ev(id(9), sub, "messages", 20_000, at(m, 5, "12:00"), dn),
        ev(id(10), sub, "messages", 20_000, at(m, 15, "12:00"), dn),
        ev(id(11), sub, "messages", 20_000, at(m, 25, "12:00"), dn),
        ev(id(12), sub, "device_bound", 1, at(m, 3, "08:00"), h),
        ev(id(13), sub, "device_unbound", 1, at(m, 3, "17:00"), h),
        ev(id(14), sub, "device_active", 1, at(m, 3, "09:00"), h),
        ev(
            id(15),
            sub,
            "messages",
            3_000,
            at(m, 10, "10:00"),
            Some(("cam-1", "camera")),
        ),
        ev(id(16), sub, "messages", 1_500, at(m, 21, "10:00"), None),
    ]
}

pub fn summary(lines: &[InvoiceLine]) -> Vec<(&str, i64, i64, i64)> {
    lines
        .iter()
        .map(|l| {
            (
                l.item.as_str(),
                l.quantity_milli,
                l.unit_price_fen,
                l.amount_fen,
            )
        })
        .collect()
}

async fn post(b: &Billing, events: &[Value]) -> Vec<UsageStatus> {
    b.record_usage(&acme(), "api", events, Utc::now())
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            assert!(r.reason.is_none(), "{r:?}");
            r.status
        })
        .collect()
}

pub async fn the_same_usage_rated_under_the_three_models(fx: StoreFixture) {
    let b = Billing::new(Arc::clone(&fx.store));
    let i = acme();
    let now = Utc::now();
    let m = last_month();
    let full = b.create_package(&i, full_solution(), now).await.unwrap();
    let tech = b.create_package(&i, tech_service(), now).await.unwrap();
    let lease = b.create_package(&i, leasing(), now).await.unwrap();
    let mut subs = Vec::new();
    for (pkg, prj) in [
        (&full, "prj-full"),
        (&tech, "prj-tech"),
        (&lease, "prj-lease"),
    ] {
        let s = subscribe(
            &b,
            &pkg.package.id,
            prj,
            m.first_day(),
            FundingSource::Other,
        )
        .await;
        let events = stream(&s, prj, m);
        assert!(
            post(&b, &events)
                .await
                .iter()
                .all(|s| *s == UsageStatus::Accepted)
        );
        subs.push(s);
    }
    let invoices = b.close(&i, m, now).await.unwrap().invoices;
    let by_project: BTreeMap<&str, &Invoice> = invoices
        .iter()
        .map(|v| (v.project_id.as_str(), v))
        .collect();
    assert_eq!(invoices.len(), 3);

    // Full solution:
    //   one_off        1 × 1,200,000                                   = 1,200,000
    //   project_month  from day 1, no stop-work: the whole month       =   300,000
    //   messages       104,500 − 100,250 = 4,250 over;
    //                  4,250 × 50 / 1,000 = 212.5 → 213 (half-up)      =       213
    //   total                                                            1,500,213
    let f = by_project["prj-full"];
    assert_eq!(
        summary(&f.lines),
        vec![
            ("one_off", 1_000, 1_200_000, 1_200_000),
            ("project_month", 1_000, 300_000, 300_000),
            ("messages_overage", 4_250, 50, 213),
        ]
    );
    assert_eq!(f.total_fen, 1_500_213);
    assert_eq!(f.lines[2].trace, vec![format!("{m}/messages")]);

    // Technical service: 4 active devices (crane-1, dust-1, hoist-1 by flag, cam-1):
    //   tier 1: 3 × 5,000 = 15,000; tier 2: 1 × 4,000 = 4,000; total 19,000.
    let t = by_project["prj-tech"];
    assert_eq!(
        summary(&t.lines),
        vec![
            ("device_month#t1", 3_000, 5_000, 15_000),
            ("device_month#t2", 1_000, 4_000, 4_000),
        ]
    );
    assert_eq!(t.total_fen, 19_000);
    assert!(
        t.lines[0]
            .trace
            .contains(&format!("{m}/active_devices:tower_crane"))
    );

    // Leasing: tower_crane 10 days × 800 = 8,000; dust_noise 21 × 300 = 6,300;
    //   hoist (uncategorised line) 1 × 200 = 200; camera never bound; total 14,500.
    let l = by_project["prj-lease"];
    assert_eq!(
        summary(&l.lines),
        vec![
            ("device_day", 1_000, 200, 200),
            ("device_day:dust_noise", 21_000, 300, 6_300),
            ("device_day:tower_crane", 10_000, 800, 8_000),
        ]
    );
    assert_eq!(l.total_fen, 14_500);
    assert!(invoices.iter().all(|v| v.status == InvoiceStatus::Draft));

    // Re-running the close answers the same invoices, and the list finds them.
    assert_eq!(b.close(&i, m, now).await.unwrap().invoices, invoices);
    let (listed, _) = b
        .list_invoices(&i, Some("cus-1"), Some(m), 50, None)
        .await
        .unwrap();
    assert_eq!(listed.len(), 3);
    // Numbers are distinct within the period.
    let numbers: std::collections::BTreeSet<&str> =
        invoices.iter().map(|v| v.number.as_str()).collect();
    assert_eq!(numbers.len(), 3);
}

pub async fn mid_month_start_suspension_and_upgrade_are_prorated_by_day(fx: StoreFixture) {
    let b = Billing::new(Arc::clone(&fx.store));
    let i = acme();
    let basic = b
        .create_package(&i, project_fee("基础版", 300_000), Utc::now())
        .await
        .unwrap();
    let premium = b
        .create_package(&i, project_fee("高级版", 600_000), Utc::now())
        .await
        .unwrap();
    // November 2026 has 30 days. Start on the 11th; stop-work 15–19 (resumed on the 20th);
    // upgrade to premium on the 21st.
    let s = subscribe(
        &b,
        &basic.package.id,
        "prj-1",
        d(2026, 11, 11),
        FundingSource::Other,
    )
    .await;
    b.suspend(&i, &s, d(2026, 11, 15), None).await.unwrap();
    let sub = b.subscription(&i, &s).await.unwrap().unwrap();
    assert_eq!(sub.status(d(2026, 11, 16)), "suspended");
    b.resume(&i, &s, d(2026, 11, 20)).await.unwrap();
    let (_, kind) = b
        .change_package(&i, &s, &premium.package.id, None, d(2026, 11, 21))
        .await
        .unwrap();
    assert_eq!(kind, ChangeKind::Upgrade);
    let nov = Period::parse("2026-11").unwrap();
    // The close refuses a month that has not ended.
    let early = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z")
        .unwrap()
        .to_utc();
    assert!(matches!(
        b.close(&i, nov, early).await,
        Err(ServiceError::Invalid(_))
    ));
    let now = DateTime::parse_from_rfc3339("2026-12-05T00:00:00Z")
        .unwrap()
        .to_utc();
    let inv = b.close(&i, nov, now).await.unwrap().invoices;
    assert_eq!(inv.len(), 1);
    // Billable 11–30 = 20 days, of which 15–19 stopped: 15 paying days.
    //   basic   project_month: days 11–30 paying = 15 → 300,000 × 15/30 = 150,000 (qty 0.5)
    //   credit  unused from the 21st: 21–30 = 10 → −300,000 × 10/30 = −100,000 (qty −0.333)
    //   premium project_month: 21–30 = 10 → 600,000 × 10/30 = 200,000 (qty 0.333)
    //   total 150,000 − 100,000 + 200,000 = 250,000
    assert_eq!(
        summary(&inv[0].lines),
        vec![
            ("project_month", 500, 300_000, 150_000),
            ("project_month_credit", -333, 300_000, -100_000),
            ("project_month", 333, 600_000, 200_000),
        ]
    );
    assert_eq!(inv[0].lines[0].package_id, basic.package.id);
    assert_eq!(inv[0].lines[2].package_id, premium.package.id);
    assert_eq!(inv[0].total_fen, 250_000);
    // December (31 days): premium for the whole month, 600,000.
    let dec = Period::parse("2026-12").unwrap();
    let now = DateTime::parse_from_rfc3339("2027-01-05T00:00:00Z")
        .unwrap()
        .to_utc();
    let inv = b.close(&i, dec, now).await.unwrap().invoices;
    assert_eq!(
        summary(&inv[0].lines),
        vec![("project_month", 1_000, 600_000, 600_000)]
    );
    // A downgrade back to basic on 10 December would apply from January only.
    let (_, kind) = b
        .change_package(&i, &s, &basic.package.id, None, d(2026, 12, 10))
        .await
        .unwrap();
    assert_eq!(kind, ChangeKind::Downgrade);
    // Ending on 15 January 2027 (31 days): 15/31 × 300,000 = 145,161.29 → 145,161.
    b.end(&i, &s, d(2027, 1, 15)).await.unwrap();
    let jan = Period::parse("2027-01").unwrap();
    let now = DateTime::parse_from_rfc3339("2027-02-05T00:00:00Z")
        .unwrap()
        .to_utc();
    let inv = b.close(&i, jan, now).await.unwrap().invoices;
    assert_eq!(
        summary(&inv[0].lines),
        vec![("project_month", 484, 300_000, 145_161)]
    );
}

pub async fn late_usage_after_close_becomes_a_correction_in_the_next_period(fx: StoreFixture) {
    let b = Billing::new(Arc::clone(&fx.store));
    let i = acme();
    let m = last_month();
    let q = m.next();
    let lease = b.create_package(&i, leasing(), Utc::now()).await.unwrap();
    let s = subscribe(
        &b,
        &lease.package.id,
        "prj-1",
        m.first_day(),
        FundingSource::Other,
    )
    .await;
    let all = stream(&s, "late", m);
    // Only the crane arrives in time: 10 days × 800 = 8,000.
    post(&b, &all[0..2]).await;
    let closed = b.close(&i, m, Utc::now()).await.unwrap().invoices;
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].total_fen, 8_000);
    // The dust monitor's binding arrives after the close: accepted, flagged as a correction.
    let late = b
        .record_usage(&i, "api", &all[6..8], Utc::now())
        .await
        .unwrap();
    assert!(
        late.iter()
            .all(|r| r.status == UsageStatus::Accepted && r.correction)
    );
    // The closed invoice never changes, also when its close is run again.
    assert_eq!(
        b.invoice(&i, &closed[0].id).await.unwrap().unwrap(),
        closed[0]
    );
    assert_eq!(b.close(&i, m, Utc::now()).await.unwrap().invoices, closed);
    // The next period's close bills the difference: dust 21 days × 300 = 6,300.
    let after_q = q.end() + TimeDelta::days(4);
    let next = b.close(&i, q, after_q).await.unwrap().invoices;
    assert_eq!(next.len(), 1);
    assert_eq!(
        summary(&next[0].lines),
        vec![(
            format!("correction:{m}:device_day:dust_noise").as_str(),
            21_000,
            300,
            6_300
        )]
    );
    assert_eq!(next[0].lines[0].corrects, Some(m));
    assert_eq!(next[0].total_fen, 6_300);
    // 8,000 + 6,300 = 14,300: what a timely delivery of both would have billed.
    assert_eq!(closed[0].total_fen + next[0].total_fen, 14_300);
    // Nothing is corrected twice.
    assert_eq!(b.close(&i, q, after_q).await.unwrap().invoices, next);
    let later = b
        .close(&i, q.next(), q.next().end() + TimeDelta::days(4))
        .await
        .unwrap()
        .invoices;
    assert!(later.is_empty(), "{later:?}");
}

pub async fn issuing_a_funded_invoice_hands_it_off_exactly_once(fx: StoreFixture) {
    let notify = Arc::new(tokio::sync::Notify::new());
    let b = Billing::new(Arc::clone(&fx.store)).with_issue_notify(Arc::clone(&notify));
    let i = acme();
    let m = last_month();
    let p = b
        .create_package(&i, project_fee("基础版", 300_000), Utc::now())
        .await
        .unwrap();
    let funded = subscribe(
        &b,
        &p.package.id,
        "prj-1",
        m.first_day(),
        FundingSource::CivilizedFee,
    )
    .await;
    let other = subscribe(
        &b,
        &p.package.id,
        "prj-2",
        m.first_day(),
        FundingSource::Other,
    )
    .await;
    let invoices = b.close(&i, m, Utc::now()).await.unwrap().invoices;
    let inv = |sub: &str| {
        invoices
            .iter()
            .find(|v| v.subscription_id == sub)
            .unwrap()
            .clone()
    };
    let (funded, other) = (inv(&funded), inv(&other));

    // Issuing the other-funded invoice records nothing and wakes nobody.
    b.issue(&i, &other.id, Utc::now()).await.unwrap();
    assert!(
        handoff::pending(fx.store.as_ref(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(notify.notified().now_or_never().is_none());

    let issued = b.issue(&i, &funded.id, Utc::now()).await.unwrap();
    assert_eq!(issued.status, InvoiceStatus::Issued);
    let events = handoff::pending(fx.store.as_ref(), 10).await.unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (
            e.invoice_id.as_str(),
            e.invoice_no.as_str(),
            e.project_id.as_str()
        ),
        (funded.id.as_str(), funded.number.as_str(), "prj-1")
    );
    assert_eq!(
        (e.funding_source.as_str(), e.total_fen),
        ("civilized_fee", 300_000)
    );
    assert_eq!(e.period, m.to_string());
    assert_eq!(e.issued_on, shanghai_date(Utc::now()));
    assert!(notify.notified().now_or_never().is_some());

    // A second issue is refused and records nothing more.
    assert!(matches!(
        b.issue(&i, &funded.id, Utc::now()).await,
        Err(ServiceError::Conflict(_))
    ));
    assert_eq!(
        handoff::pending(fx.store.as_ref(), 10).await.unwrap().len(),
        1
    );

    // Paid, then final; credits never exceed the total.
    let (after, note) = b
        .credit_note(&i, &funded.id, 100_000, "停工补偿", "usr-1", Utc::now())
        .await
        .unwrap();
    assert_eq!((after.credited_fen, note.amount_fen), (100_000, 100_000));
    assert!(matches!(
        b.credit_note(&i, &funded.id, 200_001, "x", "usr-1", Utc::now())
            .await,
        Err(ServiceError::Invalid(_))
    ));
    assert_eq!(b.credit_notes(&i, &funded.id).await.unwrap(), vec![note]);
    assert_eq!(
        b.pay(&i, &funded.id, Utc::now()).await.unwrap().status,
        InvoiceStatus::Paid
    );
    assert!(matches!(
        b.void(&i, &funded.id, Utc::now()).await,
        Err(ServiceError::Conflict(_))
    ));
    // A draft may be voided; a void invoice cannot be issued.
    let q_after = m.next().end() + TimeDelta::days(4);
    let next = b.close(&i, m.next(), q_after).await.unwrap().invoices;
    let draft = &next[0];
    assert_eq!(
        b.void(&i, &draft.id, Utc::now()).await.unwrap().status,
        InvoiceStatus::Void
    );
    assert!(b.issue(&i, &draft.id, Utc::now()).await.is_err());
}

pub async fn usage_events_are_checked_one_by_one(fx: StoreFixture) {
    let b = Billing::new(Arc::clone(&fx.store));
    let i = acme();
    let m = last_month();
    let p = b.create_package(&i, leasing(), Utc::now()).await.unwrap();
    let s = subscribe(
        &b,
        &p.package.id,
        "prj-1",
        m.first_day(),
        FundingSource::Other,
    )
    .await;
    let ok = ev("ok-1".into(), &s, "messages", 5, at(m, 2, "08:00"), None);
    let old = previous(previous(previous(m)));
    let events = vec![
        ok.clone(),
        ok.clone(),
        ev("neg".into(), &s, "messages", -1, at(m, 2, "08:00"), None),
        ev("bad#id".into(), &s, "messages", 1, at(m, 2, "08:00"), None),
        ev(
            "nosub".into(),
            "sub-0",
            "messages",
            1,
            at(m, 2, "08:00"),
            None,
        ),
        ev(
            "nodev".into(),
            &s,
            "device_bound",
            1,
            at(m, 2, "08:00"),
            None,
        ),
        ev("old".into(), &s, "messages", 1, at(old, 2, "08:00"), None),
        json!({"id": "what", "subscription_id": s, "metric": "kilowatts", "ts": at(m, 2, "08:00")}),
        json!({"id": "future", "subscription_id": s, "metric": "messages",
               "ts": (Utc::now() + TimeDelta::days(3)).to_rfc3339()}),
    ];
    let r = b
        .record_usage(&i, "api", &events, Utc::now())
        .await
        .unwrap();
    let statuses: Vec<(&str, UsageStatus)> = r.iter().map(|r| (r.id.as_str(), r.status)).collect();
    use UsageStatus::*;
    assert_eq!(
        statuses,
        vec![
            ("ok-1", Accepted),
            ("ok-1", Duplicate),
            ("neg", Rejected),
            ("bad#id", Rejected),
            ("nosub", Rejected),
            ("nodev", Rejected),
            ("old", Rejected),
            ("what", Rejected),
            ("future", Rejected),
        ]
    );
    assert!(
        r[4].reason
            .as_deref()
            .unwrap()
            .contains("unknown subscription")
    );
    assert!(r[6].reason.as_deref().unwrap().starts_with("too late"));
    // Redelivered, it is a duplicate; the same id from another source is another event.
    let again = b
        .record_usage(&i, "api", std::slice::from_ref(&ok), Utc::now())
        .await
        .unwrap();
    assert_eq!(again[0].status, Duplicate);
    let other = b
        .record_usage(&i, "gateway-2", &[ok], Utc::now())
        .await
        .unwrap();
    assert_eq!(other[0].status, Accepted);
    let agg = b.usage(&i, &s, m).await.unwrap();
    assert_eq!((agg.messages, agg.message_events), (10, 2));
}

pub async fn packages_are_versioned_and_subscriptions_keep_theirs(fx: StoreFixture) {
    let b = Billing::new(Arc::clone(&fx.store));
    let i = acme();
    let m = last_month();
    let v1 = b
        .create_package(&i, project_fee("基础版", 300_000), Utc::now())
        .await
        .unwrap();
    let s = subscribe(
        &b,
        &v1.package.id,
        "prj-1",
        m.first_day(),
        FundingSource::Other,
    )
    .await;
    let v2 = b
        .create_version(
            &i,
            &v1.package.id,
            project_fee("基础版", 360_000),
            Utc::now(),
        )
        .await
        .unwrap();
    assert_eq!(
        (v2.package.id.as_str(), v2.package.version),
        (v1.package.id.as_str(), 2)
    );
    let latest = b.package(&i, &v1.package.id, None).await.unwrap().unwrap();
    assert_eq!(latest.package.version, 2);
    assert_eq!(
        b.package(&i, &v1.package.id, Some(1))
            .await
            .unwrap()
            .unwrap(),
        v1
    );
    assert_eq!(b.list_packages(&i).await.unwrap(), vec![latest]);
    // The subscription still bills version 1's fee.
    let inv = b.close(&i, m, Utc::now()).await.unwrap().invoices;
    assert_eq!(
        summary(&inv[0].lines),
        vec![("project_month", 1_000, 300_000, 300_000)]
    );
    assert_eq!(inv[0].lines[0].package_version, 1);
    let _ = s;
    // Invalid packages name the field.
    let mut bad = project_fee("坏", 1);
    bad.prices[0].price_fen = -1;
    match b.create_package(&i, bad, Utc::now()).await {
        Err(ServiceError::Invalid(e)) => assert_eq!(e.field, "prices[0].price_fen"),
        other => panic!("{other:?}"),
    }
    // Another integrator sees none of it.
    let other = IntegratorId::parse("acme-corp").unwrap();
    assert!(b.list_packages(&other).await.unwrap().is_empty());
    assert!(
        b.package(&other, &v1.package.id, None)
            .await
            .unwrap()
            .is_none()
    );
}

/// A small deterministic generator (no dependency needed for a shuffle).
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` random usage events of month `m` over `subs` subscriptions (indexes), 40 devices each.
pub fn random_events(n: usize, subs: usize, m: Period, rng: &mut Lcg) -> Vec<(usize, Value)> {
    let days = u64::from(m.days_in_month());
    let cats = ["tower_crane", "dust_noise", "hoist", "camera"];
    (0..n)
        .map(|k| {
            let s = rng.below(subs as u64) as usize;
            let dev = rng.below(40);
            let secs = rng.below(days * 86_400);
            let ts = (m.start() + TimeDelta::seconds(secs as i64)).to_rfc3339();
            let metric = match rng.below(100) {
                0..=89 => "messages",
                90..=94 => "device_active",
                95..=97 => "device_bound",
                _ => "device_unbound",
            };
            let mut v = json!({"id": format!("e{k}"), "subscription_id": "", "metric": metric,
                "quantity": rng.below(50) as i64, "ts": ts});
            if metric != "messages" || rng.below(10) > 0 {
                v["device_id"] = json!(format!("d{dev}"));
                v["category"] = json!(cats[(dev % 4) as usize]);
            }
            (s, v)
        })
        .collect()
}

/// Delivers `batch`-sized calls, several at once; answers (accepted, duplicates).
async fn deliver(b: &Billing, events: Vec<Value>, batch: usize) -> (usize, usize) {
    use futures::StreamExt as _;
    let i = acme();
    let counts: Vec<(usize, usize)> = futures::stream::iter(events.chunks(batch).map(|c| {
        let b = b.clone();
        let i = i.clone();
        async move {
            let r = b.record_usage(&i, "api", c, Utc::now()).await.unwrap();
            let acc = r
                .iter()
                .filter(|r| r.status == UsageStatus::Accepted)
                .count();
            let dup = r
                .iter()
                .filter(|r| r.status == UsageStatus::Duplicate)
                .count();
            assert_eq!(acc + dup, c.len(), "no event rejected");
            (acc, dup)
        }
    }))
    .buffer_unordered(2)
    .collect()
    .await;
    counts
        .into_iter()
        .fold((0, 0), |(a, d), (x, y)| (a + x, d + y))
}

/// `n` events delivered three times, all copies shuffled together, against one clean delivery
/// in order: every subscription's invoice is identical.
pub async fn redelivery_is_exactly_once(clean: StoreFixture, messy: StoreFixture, n: usize) {
    let m = last_month();
    let models = [full_solution(), tech_service(), leasing()];
    let subs = 12;
    let mut rng = Lcg(0x5eed);
    let events = random_events(n, subs, m, &mut rng);
    let mut outcomes = Vec::new();
    for (fx, copies) in [(&clean, 1usize), (&messy, 3)] {
        let b = Billing::new(Arc::clone(&fx.store));
        let mut ids = Vec::new();
        for k in 0..subs {
            let p = b
                .create_package(&acme(), models[k % 3].clone(), Utc::now())
                .await
                .unwrap();
            ids.push(
                subscribe(
                    &b,
                    &p.package.id,
                    &format!("prj-{k}"),
                    m.first_day(),
                    FundingSource::Other,
                )
                .await,
            );
        }
        let mut delivery: Vec<Value> = Vec::with_capacity(n * copies);
        for _ in 0..copies {
            for (s, v) in &events {
                let mut v = v.clone();
                v["subscription_id"] = json!(ids[*s]);
                delivery.push(v);
            }
        }
        if copies > 1 {
            // Fisher–Yates.
            for k in (1..delivery.len()).rev() {
                let j = rng.below(k as u64 + 1) as usize;
                delivery.swap(k, j);
            }
        }
        let (acc, dup) = deliver(&b, delivery, 5_000).await;
        assert_eq!((acc, dup), (n, n * (copies - 1)));
        let invoices = b.close(&acme(), m, Utc::now()).await.unwrap().invoices;
        // Package ids differ between the two stores; everything else must not.
        let rated: BTreeMap<String, (Vec<InvoiceLine>, i64)> = invoices
            .into_iter()
            .map(|v| {
                let lines = v
                    .lines
                    .into_iter()
                    .map(|l| InvoiceLine {
                        package_id: String::new(),
                        ..l
                    })
                    .collect();
                (v.project_id, (lines, v.total_fen))
            })
            .collect();
        outcomes.push(rated);
    }
    // Every full-solution subscription bills its monthly fee whatever the usage; the others
    // bill only if their share of a small run happened to hold billable usage.
    for k in (0..subs).step_by(3) {
        assert!(outcomes[0].contains_key(&format!("prj-{k}")), "prj-{k}");
    }
    assert!(outcomes[0].values().all(|(l, t)| !l.is_empty() && *t > 0));
    assert_eq!(outcomes[0], outcomes[1]);
}

/// A device record of the fleet, bound to `project` from `created` and decommissioned at
/// `decommissioned`, as `Fleet` stores its project listing.
async fn bound_device(
    fx: &StoreFixture,
    id: &str,
    project: &str,
    created: &str,
    decommissioned: Option<&str>,
) {
    use smartsite_shared::fleet::Device;
    use smartsite_shared::store::keys;
    use smartsite_shared::store::{Key, records};
    let d: Device = serde_json::from_value(json!({
        "id": id, "integrator_id": "acme", "project_id": project, "region_code": "220102",
        "model_id": "mdl-1", "supplier_id": "sup-1", "category": "tower_crane",
        "serial_no": format!("SN-{id}"), "mn": null, "config": {},
        "status": if decommissioned.is_some() { "decommissioned" } else { "active" },
        "certificate_id": "cert", "created_by": "usr-1", "created_at": created,
        "decommissioned_by": decommissioned.map(|_| "usr-1"), "decommissioned_at": decommissioned,
        "flags": []
    }))
    .unwrap();
    let key = Key::new(
        keys::integrator(&acme()),
        keys::project_device_sk(project, id),
    );
    fx.store
        .put(records::record(key, &d).unwrap(), None)
        .await
        .unwrap();
}

/// Adds `msgs` to the device's hourly aggregate of `hour` (UTC), as ingest does.
async fn hourly(fx: &StoreFixture, device: &str, hour: DateTime<Utc>, msgs: i64) {
    use smartsite_shared::store::Key;
    use smartsite_shared::store::keys::{self, EntityKind};
    let key = Key::new(
        keys::entity(&acme(), EntityKind::Device, device),
        keys::hourly_sk(&hour.format("%Y-%m-%dT%H:00:00Z").to_string()),
    );
    fx.store.add(&key, "msgs", msgs).await.unwrap();
}

pub async fn platform_usage_comes_from_the_fleet_and_ingest_counts(fx: StoreFixture) {
    let b = Billing::new(Arc::clone(&fx.store));
    let i = acme();
    let m = last_month();
    let utc = |day: u32, hm: &str| {
        DateTime::parse_from_rfc3339(&at(m, day, hm))
            .unwrap()
            .to_utc()
    };
    // dev-a: bound on day 5 00:00, decommissioned on day 15 00:00 (Shanghai): days 5–14 = 10.
    bound_device(
        &fx,
        "dev-a",
        "prj-1",
        &utc(5, "00:00").to_rfc3339(),
        Some(&utc(15, "00:00").to_rfc3339()),
    )
    .await;
    // dev-b: bound after the month: not billed in it.
    bound_device(
        &fx,
        "dev-b",
        "prj-1",
        &(m.end() + TimeDelta::hours(1)).to_rfc3339(),
        None,
    )
    .await;
    // dev-c: another project's.
    bound_device(&fx, "dev-c", "prj-2", &utc(1, "00:00").to_rfc3339(), None).await;
    // Messages ingest counted: 100 + 200 in the month; 999 the hour before it began (the last
    // hour of the previous month, Shanghai time) does not count.
    hourly(&fx, "dev-a", utc(6, "10:00"), 100).await;
    hourly(&fx, "dev-a", utc(14, "23:00"), 200).await;
    hourly(&fx, "dev-a", m.start() - TimeDelta::hours(1), 999).await;
    let usage = b.platform_usage(&i, "prj-1", m).await.unwrap();
    assert_eq!(usage.messages, 300);
    assert_eq!(usage.devices.len(), 1);
    assert_eq!(
        usage.devices["dev-a"].category.as_deref(),
        Some("tower_crane")
    );

    let lease = b.create_package(&i, leasing(), Utc::now()).await.unwrap();
    let tech = b
        .create_package(&i, tech_service(), Utc::now())
        .await
        .unwrap();
    let l = subscribe(
        &b,
        &lease.package.id,
        "prj-1",
        m.first_day(),
        FundingSource::Other,
    )
    .await;
    let t = subscribe(
        &b,
        &tech.package.id,
        "prj-1",
        m.first_day(),
        FundingSource::Other,
    )
    .await;
    let invoices = b.close(&i, m, Utc::now()).await.unwrap().invoices;
    let of = |s: &str| invoices.iter().find(|v| v.subscription_id == s).unwrap();
    // Leasing: dev-a 10 days × 800 (tower_crane) = 8,000.
    assert_eq!(
        summary(&of(&l).lines),
        vec![("device_day:tower_crane", 10_000, 800, 8_000)]
    );
    // Technical service: dev-a sent messages, so it was active: 1 × 5,000 = 5,000.
    assert_eq!(
        summary(&of(&t).lines),
        vec![("device_month#t1", 1_000, 5_000, 5_000)]
    );
}
