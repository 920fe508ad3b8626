//! The billing service suite, over whichever store a fixture gives: `billing_suite!(fixture)`
//! expands to one test per case, so the same cases run on redb and on DynamoDB (emulator).
//! Every expected amount is computed by hand in the comments.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use futures::FutureExt as _;
use serde_json::{Value, json};
use smartsite_billing::Billing;
use smartsite_billing::service::{
    FundingSource, Invoice, InvoiceScope, InvoiceStatus, NewPackage, NewSubscription, ServiceError,
    UsageStatus, previous,
};
use smartsite_shared::domain::billing::{
    ChangeKind, InvoiceLine, Model, PausePolicy, Period, PriceLine, Tier, Unit, shanghai_date,
};
use smartsite_shared::handoff::{self, InvoiceChange};
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
            credit_notes_and_voids_reach_the_safety_fund_ledger_once,
            a_device_the_platform_reports_and_usage_posts_is_counted_once,
            owner_reps_read_their_projects_invoices_and_every_list_pages,
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
    subscribe_for(b, package, project, "cus-1", start, funding).await
}

pub async fn subscribe_for(
    b: &Billing,
    package: &str,
    project: &str,
    customer: &str,
    start: NaiveDate,
    funding: FundingSource,
) -> String {
    b.create_subscription(
        &acme(),
        NewSubscription {
            customer_id: customer.into(),
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
        .list_invoices(&i, InvoiceScope::Customer("cus-1"), Some(m), 50, None)
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
    let (funded, other) = (
        invoice_of(&invoices, &funded).clone(),
        invoice_of(&invoices, &other).clone(),
    );

    // Issuing the other-funded invoice records nothing and wakes nobody.
    b.issue(&i, &other.id, Utc::now()).await.unwrap();
    assert!(pending(&fx).await.is_empty());
    assert!(notify.notified().now_or_never().is_none());

    let issued = b.issue(&i, &funded.id, Utc::now()).await.unwrap();
    assert_eq!(issued.status, InvoiceStatus::Issued);
    let events = pending(&fx).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].change, InvoiceChange::Issued);
    let e = &events[0].invoice;
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
    assert_eq!(pending(&fx).await.len(), 1);

    // Paid, then final; credits never exceed the total. A credit note of a funded invoice is
    // handed over in its transaction too; a refused one records nothing.
    let (after, note) = b
        .credit_note(&i, &funded.id, 100_000, "停工补偿", "usr-1", Utc::now())
        .await
        .unwrap();
    assert_eq!((after.credited_fen, note.amount_fen), (100_000, 100_000));
    assert!(notify.notified().now_or_never().is_some());
    assert!(matches!(
        b.credit_note(&i, &funded.id, 200_001, "x", "usr-1", Utc::now())
            .await,
        Err(ServiceError::Invalid(_))
    ));
    let events = pending(&fx).await;
    assert_eq!(
        events.iter().map(|e| e.change.clone()).collect::<Vec<_>>(),
        vec![
            InvoiceChange::Issued,
            InvoiceChange::Credited {
                credit_note_id: note.id.clone(),
                amount_fen: 100_000,
                on: shanghai_date(Utc::now()),
            }
        ]
    );
    assert_eq!(events[1].invoice, events[0].invoice);
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
    // A draft was never booked: its void hands nothing over.
    assert_eq!(pending(&fx).await.len(), 2);
}

/// `acme` in the directory, with the customers and projects the cases need.
struct Dir(smartsite_shared::directory::Directory);

impl Dir {
    async fn new(fx: &StoreFixture) -> Dir {
        let dir = smartsite_shared::directory::Directory::new(Arc::clone(&fx.store));
        smartsite_shared::testkit::integrator(&dir, &acme()).await;
        Dir(dir)
    }

    async fn customer(
        &self,
        kind: smartsite_shared::domain::tenancy::CustomerKind,
    ) -> smartsite_shared::domain::tenancy::CustomerId {
        smartsite_shared::testkit::customer(&self.0, &acme(), kind).await
    }

    /// A project under the 2022 rules.
    async fn project(
        &self,
        contractor: &smartsite_shared::domain::tenancy::CustomerId,
        owner: Option<&smartsite_shared::domain::tenancy::CustomerId>,
    ) -> smartsite_shared::domain::tenancy::Project {
        use smartsite_shared::domain::tenancy::{Project, ProjectId, ProjectType, RegionCode};
        let p = Project {
            id: ProjectId::generate(),
            integrator_id: acme(),
            name: "长春一号楼".into(),
            contractor_customer_id: contractor.clone(),
            owner_customer_id: owner.cloned(),
            region_code: RegionCode::parse("r", "220102").unwrap(),
            project_type: ProjectType::Building,
            contract_value_fen: 10_000_000_000,
            contract_signed_date: d(2023, 3, 1),
            tender_completed_date: Some(d(2023, 1, 5)),
            start_date: Some(d(2026, 1, 10)),
            planned_end_date: None,
            created_at: Utc::now().to_rfc3339(),
        };
        self.0.create_project(&p).await.unwrap();
        p
    }
}

/// A project of `acme` in the directory (the safety-fund consumer books only known projects).
async fn directory_project(fx: &StoreFixture) -> smartsite_shared::domain::tenancy::Project {
    let dir = Dir::new(fx).await;
    let contractor = dir
        .customer(smartsite_shared::domain::tenancy::CustomerKind::Enterprise)
        .await;
    dir.project(&contractor, None).await
}

/// Billing's credit notes and voids of funded invoices reach the project's ledger through the
/// outbox, each booked once, never by editing the expenditure: a partial credit note takes its
/// amount back, the void what is left; a void with nothing credited reverses the expenditure.
pub async fn credit_notes_and_voids_reach_the_safety_fund_ledger_once(fx: StoreFixture) {
    use smartsite_shared::domain::safety_fund::EntryKind::{Correction, Expenditure, Reversal};
    use smartsite_shared::funds::{Fund, Funds};
    let b = Billing::new(Arc::clone(&fx.store));
    let funds = Funds::with_default_rules(Arc::clone(&fx.store)).unwrap();
    let i = acme();
    let m = last_month();
    let project = directory_project(&fx).await;
    let pkg = b
        .create_package(&i, project_fee("基础版", 300_000), Utc::now())
        .await
        .unwrap();
    let pid = project.id.as_str();
    let safety = subscribe(
        &b,
        &pkg.package.id,
        pid,
        m.first_day(),
        FundingSource::SafetyFee,
    )
    .await;
    let civilized = subscribe(
        &b,
        &pkg.package.id,
        pid,
        m.first_day(),
        FundingSource::CivilizedFee,
    )
    .await;
    let invoices = b.close(&i, m, Utc::now()).await.unwrap().invoices;
    let s_inv = invoice_of(&invoices, &safety).id.clone();
    let c_inv = invoice_of(&invoices, &civilized).id.clone();
    let today = shanghai_date(Utc::now());
    let consumer = &funds;
    let drain = || async move {
        let r = consumer.drain_handoffs().await.unwrap();
        (r.posted, r.already_posted, r.failed)
    };
    let ledger = |fund| {
        let (funds, project) = (funds.clone(), project.clone());
        async move { funds.load(&project).await.unwrap().ledger(fund).to_vec() }
    };

    for inv in [&s_inv, &c_inv] {
        b.issue(&i, inv, Utc::now()).await.unwrap();
    }
    assert_eq!(drain().await, (2, 0, 0));

    // The 安全生产费 invoice: two partial credit notes (1,000.00 and 500.00 yuan), then its void
    // takes back the 1,500.00 left.
    let (_, n1) = b
        .credit_note(&i, &s_inv, 100_000, "停工补偿", "usr-1", Utc::now())
        .await
        .unwrap();
    let (_, n2) = b
        .credit_note(&i, &s_inv, 50_000, "少计设备", "usr-1", Utc::now())
        .await
        .unwrap();
    let credit_event = pending(&fx).await.remove(0);
    assert_eq!(drain().await, (2, 0, 0));
    assert_eq!(drain().await, (0, 0, 0));
    b.void(&i, &s_inv, Utc::now()).await.unwrap();
    let void_event = pending(&fx).await.remove(0);
    assert_eq!(drain().await, (1, 0, 0));
    let s = ledger(Fund::Safety).await;
    let shape: Vec<_> = s.iter().map(|e| (e.kind, e.spent_fen)).collect();
    assert_eq!(
        shape,
        vec![
            (Expenditure, 300_000),
            (Correction, -100_000),
            (Correction, -50_000),
            (Correction, -150_000)
        ]
    );
    for e in &s {
        assert_eq!(e.links.invoice_id.as_deref(), Some(s_inv.as_str()));
        assert_eq!(e.category, s[0].category);
    }
    assert_eq!(s[1].evidence_ref.as_deref(), Some(n1.id.as_str()));
    assert_eq!(s[2].evidence_ref.as_deref(), Some(n2.id.as_str()));
    assert!(
        s[1..]
            .iter()
            .all(|e| e.date == today && e.reverses.is_none())
    );
    assert_eq!(s.iter().map(|e| e.spent_fen).sum::<i64>(), 0);

    // The 安全文明施工费 invoice, voided with nothing credited: the expenditure's reversal.
    b.void(&i, &c_inv, Utc::now()).await.unwrap();
    assert_eq!(drain().await, (1, 0, 0));
    let c = ledger(Fund::Civilized).await;
    let shape: Vec<_> = c
        .iter()
        .map(|e| (e.kind, e.spent_fen, e.reverses))
        .collect();
    assert_eq!(
        shape,
        vec![(Expenditure, 300_000, None), (Reversal, -300_000, Some(1))]
    );

    // A credit note or a void delivered again (billing's outbox written twice) is consumed
    // without a second entry.
    for e in [credit_event, void_event] {
        fx.store.transact(vec![e.put_op().unwrap()]).await.unwrap();
    }
    assert_eq!(drain().await, (0, 2, 0));
    assert_eq!(ledger(Fund::Safety).await, s);
    assert_eq!(ledger(Fund::Civilized).await, c);
    assert!(funds.verify(&project).await.unwrap().iter().all(|r| r.ok));
}

/// A device the platform knows (bound to the project, messages counted by ingest) that the
/// integrator also posts usage for is rated once: the platform's messages win for it, a bound
/// day counts once whichever source has it, the platform's category prices it.
pub async fn a_device_the_platform_reports_and_usage_posts_is_counted_once(fx: StoreFixture) {
    let b = Billing::new(Arc::clone(&fx.store));
    let i = acme();
    let m = last_month();
    platform_dev_a(&fx, m).await;
    let lease = b.create_package(&i, leasing(), Utc::now()).await.unwrap();
    let l = subscribe(
        &b,
        &lease.package.id,
        "prj-1",
        m.first_day(),
        FundingSource::Other,
    )
    .await;
    // Posted: dev-a again (5,000 messages, bound days 1–6, another category), a device the
    // platform does not know, and messages without a device.
    let a = Some(("dev-a", "hoist"));
    let events = vec![
        ev("u1".into(), &l, "messages", 5_000, at(m, 6, "11:00"), a),
        ev("u2".into(), &l, "device_bound", 1, at(m, 1, "00:00"), a),
        ev("u3".into(), &l, "device_unbound", 1, at(m, 7, "00:00"), a),
        ev(
            "u4".into(),
            &l,
            "messages",
            300,
            at(m, 8, "09:00"),
            Some(("cam-1", "camera")),
        ),
        ev("u5".into(), &l, "messages", 50, at(m, 9, "09:00"), None),
    ];
    assert!(
        post(&b, &events)
            .await
            .iter()
            .all(|s| *s == UsageStatus::Accepted)
    );

    let sub = b.subscription(&i, &l).await.unwrap().unwrap();
    let rated = b.rated_usage(&i, &sub, m).await.unwrap();
    // 300 (the platform's dev-a) + 300 (cam-1) + 50, never 5,000 + 300 for dev-a.
    assert_eq!(rated.messages, 650);
    // Events: u4 and u5, plus the platform's 300 (it counts each message as one).
    assert_eq!(rated.message_events, 302);
    assert_eq!(rated.devices["dev-a"].messages, 300);
    assert_eq!(rated.devices["cam-1"].messages, 300);
    // dev-a: days 1–6 (posted) ∪ 5–14 (platform) = 1–14, each once, at the tower-crane price.
    let invoices = b.close(&i, m, Utc::now()).await.unwrap().invoices;
    assert_eq!(
        summary(&invoices[0].lines),
        vec![("device_day:tower_crane", 14_000, 800, 11_200)]
    );
}

/// The billing router over the fixture's store, with tokens of `acme`'s users.
struct Api {
    client: smartsite_shared::testkit::RouterClient,
    issuer: Arc<smartsite_shared::auth::LocalIssuer>,
    billing: Billing,
    _keys: tempfile::TempDir,
}

impl Api {
    fn new(fx: &StoreFixture) -> Api {
        use smartsite_shared::auth::{Authenticator, LocalIssuer};
        let keys = tempfile::tempdir().unwrap();
        let issuer =
            Arc::new(LocalIssuer::load_or_create(keys.path(), "test-issuer", 900).unwrap());
        let auth = Authenticator::Bearer(Arc::new(issuer.verifier().unwrap()));
        let state = smartsite_billing::AppState::new(Arc::clone(&fx.store), auth);
        let billing = state.billing.clone();
        Api {
            client: smartsite_shared::testkit::RouterClient::new(smartsite_billing::app(state)),
            issuer,
            billing,
            _keys: keys,
        }
    }

    fn token(
        &self,
        role: &str,
        customer: Option<&smartsite_shared::domain::tenancy::CustomerId>,
    ) -> String {
        let claims = smartsite_shared::auth::Claims {
            sub: "usr-test".into(),
            integrator_id: Some("acme".into()),
            customer_id: customer.map(|c| c.as_str().to_owned()),
            roles: vec![role.into()],
        };
        self.issuer
            .issue(claims, smartsite_shared::store::now_epoch())
            .unwrap()
    }

    /// The ids a list answers, walked `limit` at a time; no id twice.
    async fn ids(&self, path: &str, token: &str, limit: u32) -> BTreeSet<String> {
        let items = self.client.walk(path, token, limit).await;
        let ids: Vec<String> = items
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect();
        let set: BTreeSet<String> = ids.iter().cloned().collect();
        assert_eq!(
            set.len(),
            ids.len(),
            "GET {path}: an item came twice: {ids:?}"
        );
        set
    }
}

/// An owner's representative (建设单位) reads the invoices of the projects its customer owns,
/// whoever they are billed to, and nothing else; every billing list pages with a real cursor,
/// each item once.
pub async fn owner_reps_read_their_projects_invoices_and_every_list_pages(fx: StoreFixture) {
    use smartsite_shared::domain::tenancy::CustomerKind::{Enterprise, ProjectOwner};
    let api = Api::new(&fx);
    let b = &api.billing;
    let i = acme();
    let m = last_month();
    let dir = Dir::new(&fx).await;
    let contractor = dir.customer(Enterprise).await;
    let (o1, o2) = (
        dir.customer(ProjectOwner).await,
        dir.customer(ProjectOwner).await,
    );
    let p1 = dir.project(&contractor, Some(&o1)).await;
    let p2 = dir.project(&contractor, Some(&o2)).await;

    // Five packages, the first in three versions.
    let mut packages = BTreeSet::new();
    for n in 0..5 {
        let p = b
            .create_package(
                &i,
                project_fee(&format!("套餐{n}"), 100_000 + n),
                Utc::now(),
            )
            .await
            .unwrap();
        packages.insert(p.package.id.clone());
    }
    let first = packages.first().unwrap().clone();
    for fee in [200_000, 300_000] {
        b.create_version(&i, &first, project_fee("基础版", fee), Utc::now())
            .await
            .unwrap();
    }
    // p1: three subscriptions billed to the contractor and one to the owner; p2: one.
    let c = contractor.as_str();
    let mut mine = Vec::new();
    for customer in [c, c, c, o1.as_str()] {
        mine.push(
            subscribe_for(
                b,
                &first,
                p1.id.as_str(),
                customer,
                m.first_day(),
                FundingSource::Other,
            )
            .await,
        );
    }
    let theirs = subscribe_for(
        b,
        &first,
        p2.id.as_str(),
        c,
        m.first_day(),
        FundingSource::Other,
    )
    .await;
    let invoices = b.close(&i, m, Utc::now()).await.unwrap().invoices;
    assert_eq!(invoices.len(), 5);
    let inv_of = |sub: &String| invoice_of(&invoices, sub).id.clone();
    let my_invoices: BTreeSet<String> = mine.iter().map(inv_of).collect();
    let all_invoices: BTreeSet<String> = invoices.iter().map(|v| v.id.clone()).collect();

    let o1_rep = api.token("owner_rep", Some(&o1));
    for limit in [1, 3, 50] {
        assert_eq!(api.ids("/v1/invoices", &o1_rep, limit).await, my_invoices);
    }
    let this_month = format!("/v1/invoices?period={m}");
    assert_eq!(api.ids(&this_month, &o1_rep, 2).await, my_invoices);
    let before = format!("/v1/invoices?period={}", previous(m));
    assert!(api.ids(&before, &o1_rep, 2).await.is_empty());
    let o2_rep = api.token("owner_rep", Some(&o2));
    assert_eq!(
        api.ids("/v1/invoices", &o2_rep, 1).await,
        BTreeSet::from([inv_of(&theirs)])
    );
    // By id: its own projects' invoices, whoever pays them; another's answers like none.
    let (s, v) = api
        .client
        .get(&format!("/v1/invoices/{}", inv_of(&mine[0])), &o1_rep)
        .await;
    assert_eq!(
        (s.as_u16(), v["project_id"].as_str()),
        (200, Some(p1.id.as_str()))
    );
    assert!(v["credit_notes"].is_array());
    let (s, v) = api
        .client
        .get(&format!("/v1/invoices/{}", inv_of(&theirs)), &o1_rep)
        .await;
    let (gs, gv) = api
        .client
        .get(
            &format!("/v1/invoices/inv-202001{}", "f".repeat(32)),
            &o1_rep,
        )
        .await;
    assert_eq!((s, &v["type"]), (gs, &gv["type"]));
    assert_eq!(s, 404);
    // Asking for the contractor's invoices is a 404; writes stay with the integrator's staff.
    let (s, _) = api
        .client
        .get(&format!("/v1/invoices?customer_id={c}"), &o1_rep)
        .await;
    assert_eq!(s, 404);
    let (s, _) = api
        .client
        .post(
            &format!("/v1/invoices/{}/issue", inv_of(&mine[0])),
            &o1_rep,
            serde_json::json!({}),
        )
        .await;
    assert_eq!(s, 403);

    // The contractor's administrator reads what is billed to it; staff read everything.
    let ea = api.token("enterprise_admin", Some(&contractor));
    let billed_to_c: BTreeSet<String> = invoices
        .iter()
        .filter(|v| v.customer_id == c)
        .map(|v| v.id.clone())
        .collect();
    assert_eq!(billed_to_c.len(), 4);
    assert_eq!(api.ids("/v1/invoices", &ea, 3).await, billed_to_c);
    let staff = api.token("integrator_ops", None);
    assert_eq!(api.ids("/v1/invoices", &staff, 2).await, all_invoices);
    assert_eq!(api.ids(&this_month, &staff, 4).await, all_invoices);

    // Packages: each once, at its latest version, across pages.
    let listed = api.client.walk("/v1/packages", &staff, 2).await;
    let ids: Vec<&str> = listed.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(ids, packages.iter().map(String::as_str).collect::<Vec<_>>());
    let first_listed = listed.iter().find(|p| p["id"] == first.as_str()).unwrap();
    assert_eq!(first_listed["version"], 3);
    let (s, _) = api
        .client
        .get("/v1/packages?cursor=not-a-package", &staff)
        .await;
    assert_eq!(s, 400);

    // Subscriptions: staff all five, the contractor's administrator its four, by project too.
    let all_subs: BTreeSet<String> = mine.iter().chain([&theirs]).cloned().collect();
    assert_eq!(api.ids("/v1/subscriptions", &staff, 2).await, all_subs);
    let c_subs: BTreeSet<String> = mine[..3].iter().chain([&theirs]).cloned().collect();
    assert_eq!(api.ids("/v1/subscriptions", &ea, 1).await, c_subs);
    let of_p2 = format!("/v1/subscriptions?project_id={}", p2.id.as_str());
    assert_eq!(
        api.ids(&of_p2, &staff, 1).await,
        BTreeSet::from([theirs.clone()])
    );
}

/// The invoice of subscription `sub` among `invoices`.
fn invoice_of<'a>(invoices: &'a [Invoice], sub: &str) -> &'a Invoice {
    invoices
        .iter()
        .find(|v| v.subscription_id == sub)
        .unwrap_or_else(|| panic!("no invoice of {sub}"))
}

/// The pending hand-off events, in the order the consumer reads them.
async fn pending(fx: &StoreFixture) -> Vec<handoff::HandoffEvent> {
    let (events, next) = handoff::pending(fx.store.as_ref(), 100, None)
        .await
        .unwrap();
    assert!(next.is_none());
    events
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
    assert_eq!(
        b.list_packages(&i, 50, None).await.unwrap(),
        (vec![latest], None)
    );
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
    assert!(
        b.list_packages(&other, 50, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
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

/// The instant of `hm` on day `day` of `p`, Shanghai time.
fn shanghai(p: Period, day: u32, hm: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(&at(p, day, hm))
        .unwrap()
        .to_utc()
}

/// The platform's dev-a (tower_crane) in month `m`: bound to prj-1 on day 5 00:00 and
/// decommissioned on day 15 00:00 (Shanghai: days 5–14, 10 days), with 100 + 200 messages
/// counted by ingest in the month.
async fn platform_dev_a(fx: &StoreFixture, m: Period) {
    bound_device(
        fx,
        "dev-a",
        "prj-1",
        &shanghai(m, 5, "00:00").to_rfc3339(),
        Some(&shanghai(m, 15, "00:00").to_rfc3339()),
    )
    .await;
    hourly(fx, "dev-a", shanghai(m, 6, "10:00"), 100).await;
    hourly(fx, "dev-a", shanghai(m, 14, "23:00"), 200).await;
}

pub async fn platform_usage_comes_from_the_fleet_and_ingest_counts(fx: StoreFixture) {
    let b = Billing::new(Arc::clone(&fx.store));
    let i = acme();
    let m = last_month();
    let utc = |day: u32, hm: &str| shanghai(m, day, hm);
    platform_dev_a(&fx, m).await;
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
    // 999 messages counted the hour before the month began (the last hour of the previous
    // month, Shanghai time) do not count.
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
    let of = |s: &str| invoice_of(&invoices, s);
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
