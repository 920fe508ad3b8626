//! The safety-fund service on both storage adapters (the embedded store, and DynamoDB on the
//! emulator): every rule of issue 7 with hand-computed figures, the billing hand-off posted
//! exactly once, tamper detection on stored entries, and the balance invariant.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use smartsite_shared::alarming::Alarms;
use smartsite_shared::directory::Directory;
use smartsite_shared::domain::alarms::{Level, Tier};
use smartsite_shared::domain::safety_fund::{
    CivPrepayRule, ContractVariation, EntryKind, Expenditure, FEE_CIV_PREPAY, FEE_OWNER_50,
    FEE_SUB_50, FlagLevel, Links, Regime, SafetyFundError, Subcontract, YearMonth,
};
use smartsite_shared::domain::tenancy::{
    CustomerId, CustomerKind, Project, ProjectId, ProjectType, RegionCode,
};
use smartsite_shared::funds::{FEE_OVERSPENT, Funds, FundsError};
use smartsite_shared::handoff::{self, InvoiceChange, InvoiceIssued};
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::store::keys::{self, EntityKind};
use smartsite_shared::store::records::{decode, record};
use smartsite_shared::store::{Key, Store};
use smartsite_shared::testkit;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn ym(s: &str) -> YearMonth {
    s.parse().unwrap()
}

struct Fixture {
    funds: Funds,
    store: Arc<dyn Store>,
    integrator: IntegratorId,
    enterprise: CustomerId,
}

async fn fixture(store: Arc<dyn Store>, tag: &str) -> Fixture {
    let dir = Directory::new(store.clone());
    let integrator = IntegratorId::parse(&format!("sf-{tag}")).unwrap();
    testkit::integrator(&dir, &integrator).await;
    let enterprise = testkit::customer(&dir, &integrator, CustomerKind::Enterprise).await;
    Fixture {
        funds: Funds::with_default_rules(store.clone()).unwrap(),
        store,
        integrator,
        enterprise,
    }
}

async fn project(
    f: &Fixture,
    contractor: &CustomerId,
    contract_value_fen: i64,
    tender: Option<&str>,
    signed: &str,
    start: Option<&str>,
) -> Project {
    let p = Project {
        id: ProjectId::generate(),
        integrator_id: f.integrator.clone(),
        name: "长春一号楼".into(),
        contractor_customer_id: contractor.clone(),
        owner_customer_id: None,
        region_code: RegionCode::parse("r", "220102").unwrap(),
        project_type: ProjectType::Building,
        contract_value_fen,
        contract_signed_date: d(signed),
        tender_completed_date: tender.map(d),
        start_date: start.map(d),
        planned_end_date: None,
        created_at: Utc::now().to_rfc3339(),
    };
    Directory::new(f.store.clone())
        .create_project(&p)
        .await
        .unwrap();
    p
}

fn exp(date: &str, fen: i64, category: &str) -> Expenditure {
    Expenditure {
        date: d(date),
        amount_fen: fen,
        category: category.into(),
        summary: String::new(),
        evidence_ref: "VCH-1".into(),
        links: Links::default(),
    }
}

fn invoice(f: &Fixture, p: &Project, id: &str, source: &str, total_fen: i64) -> InvoiceIssued {
    InvoiceIssued {
        integrator_id: f.integrator.as_str().into(),
        customer_id: p.contractor_customer_id.as_str().into(),
        project_id: p.id.as_str().into(),
        subscription_id: "sub-1".into(),
        invoice_id: id.into(),
        invoice_no: format!("NO-{id}"),
        period: "2026-02".into(),
        funding_source: source.into(),
        total_fen,
        issued_on: d("2026-03-01"),
    }
}

async fn rules_of_a_project_account(store: Arc<dyn Store>) {
    let f = fixture(store, &format!("a{}", std::process::id())).await;
    // ¥100,000,000.00 contract, tender and contract after 2022-11-21 → r2022, building 300 bp;
    // planned total = 10 000 000 000 × 300 / 10 000 = 300 000 000 fen.
    let p1 = project(
        &f,
        &f.enterprise,
        10_000_000_000,
        Some("2023-01-05"),
        "2023-03-01",
        Some("2026-01-10"),
    )
    .await;
    let v = f.funds.view(&p1, d("2026-01-11")).await.unwrap();
    assert_eq!(
        (v.regime, v.rate_bp, v.planned_total_fen),
        (Regime::R2022, 300, 300_000_000)
    );
    assert!(v.flags.is_empty());

    // Progress 2026-01: 123 456 789 × 300 / 10 000 = 3 703 703.67 → 3 703 704 fen.
    let out = f
        .funds
        .report_progress(&p1, ym("2026-01"), 123_456_789, d("2026-02-01"))
        .await
        .unwrap();
    let e = out.entry.unwrap();
    assert_eq!(
        (e.kind, e.accrued_fen, e.seq),
        (EntryKind::Accrual, 3_703_704, 1)
    );
    // A second report for January is a correction: 123 456 000 × 0.03 = 3 703 680 → Δ −24.
    let out = f
        .funds
        .report_progress(&p1, ym("2026-01"), 123_456_000, d("2026-02-03"))
        .await
        .unwrap();
    let e = out.entry.unwrap();
    assert_eq!(
        (e.kind, e.accrued_fen, e.progress_fen),
        (EntryKind::Correction, -24, Some(-789))
    );
    assert_eq!(out.month.accrued_fen, 3_703_680);
    // The same report again changes nothing.
    let out = f
        .funds
        .report_progress(&p1, ym("2026-01"), 123_456_000, d("2026-02-04"))
        .await
        .unwrap();
    assert!(out.entry.is_none());
    // February 200 000 000 → 6 000 000.
    f.funds
        .report_progress(&p1, ym("2026-02"), 200_000_000, d("2026-03-01"))
        .await
        .unwrap();

    // Owner paid 100 000 000 on 2026-01-20; 50 % of 300 000 000 = 150 000 000 was due within one
    // month of the 2026-01-10 start, i.e. by 2026-02-10.
    f.funds
        .change(&p1, Vec::new(), |a, _| {
            a.safety
                .record_owner_payment(d("2026-01-20"), 100_000_000, Some("BANK-1".into()))?;
            Ok(())
        })
        .await
        .unwrap();
    let warn = f.funds.view(&p1, d("2026-01-31")).await.unwrap();
    // From start + 21 days (2026-01-31) a shortfall is a warning.
    assert_eq!(warn.flags.len(), 1);
    assert_eq!(
        (warn.flags[0].code.as_str(), warn.flags[0].level),
        (FEE_OWNER_50, FlagLevel::Warning)
    );
    let v = f.funds.view(&p1, d("2026-02-11")).await.unwrap();
    let owner = v.flags.iter().find(|x| x.code == FEE_OWNER_50).unwrap();
    assert_eq!(owner.level, FlagLevel::Breach);
    assert_eq!(
        (owner.required_fen, owner.paid_fen, owner.due_date),
        (150_000_000, 100_000_000, d("2026-02-10"))
    );
    assert_eq!(v.owner_paid_fen, 100_000_000);

    // Subcontract share 30 000 000 from 2026-02-01: ≥ 15 000 000 by 2026-03-01; 10 000 000 passed.
    f.funds
        .change(&p1, Vec::new(), |a, _| {
            a.safety.add_subcontract(Subcontract {
                id: "steel".into(),
                share_fen: 30_000_000,
                start_date: d("2026-02-01"),
            })?;
            a.safety
                .allocate(d("2026-02-05"), "steel", 10_000_000, None)?;
            Ok(())
        })
        .await
        .unwrap();
    let v = f.funds.view(&p1, d("2026-03-02")).await.unwrap();
    let sub = v.flags.iter().find(|x| x.code == FEE_SUB_50).unwrap();
    assert_eq!(
        (sub.required_fen, sub.paid_fen, sub.subject.as_deref()),
        (15_000_000, 10_000_000, Some("steel"))
    );

    // Expenditure (ppe) 5 000 000: balance 3 703 680 + 6 000 000 − 10 000 000 − 5 000 000
    // = −5 296 320: allowed, flagged overspent.
    let out = f
        .funds
        .change(&p1, Vec::new(), |a, rules| {
            Ok(a.safety
                .record_expenditure(exp("2026-02-15", 5_000_000, "ppe"), rules)?)
        })
        .await
        .unwrap();
    assert_eq!((out.balance_fen, out.overspent), (-5_296_320, true));
    let v = f.funds.view(&p1, d("2026-03-02")).await.unwrap();
    assert!(v.flags.iter().any(|x| x.code == FEE_OVERSPENT));
    // Diversion is refused and nothing is written.
    let before = f.funds.load(&p1).await.unwrap().safety.entries().len();
    let r = f
        .funds
        .change(&p1, Vec::new(), |a, rules| {
            Ok(a.safety
                .record_expenditure(exp("2026-02-16", 1, "banquet"), rules)?)
        })
        .await;
    assert!(
        matches!(r, Err(FundsError::Rule(SafetyFundError::Diversion { .. }))),
        "{r:?}"
    );
    assert_eq!(
        f.funds.load(&p1).await.unwrap().safety.entries().len(),
        before
    );
    // The overspending expenditure is reversed (a new entry, nothing edited): −296 320 + …
    let seq = out.entry.seq;
    f.funds
        .change(&p1, Vec::new(), |a, _| {
            Ok(a.safety
                .reverse(seq, d("2026-02-20"), "booked on the wrong project")?
                .clone())
        })
        .await
        .unwrap();
    // 9 703 680 − 10 000 000 = −296 320 after the reversal.
    let v = f.funds.view(&p1, d("2026-03-02")).await.unwrap();
    assert_eq!(v.balance_fen, -296_320);
    assert_eq!(v.balance_fen, v.accrued_fen - v.spent_fen - v.allocated_fen);

    // Cumulative progress may not pass the contract value without a recorded variation:
    // 10 000 000 000 − 323 456 000 = 9 676 544 000 is the most March may add.
    let r = f
        .funds
        .report_progress(&p1, ym("2026-03"), 9_676_544_001, d("2026-04-01"))
        .await;
    assert!(
        matches!(
            r,
            Err(FundsError::Rule(
                SafetyFundError::ProgressBeyondContract { .. }
            ))
        ),
        "{r:?}"
    );
    f.funds
        .change(&p1, Vec::new(), |a, _| {
            a.safety.record_variation(ContractVariation {
                date: d("2026-03-20"),
                amount_fen: 1,
                reference: "BG-1".into(),
            })?;
            Ok(())
        })
        .await
        .unwrap();
    f.funds
        .report_progress(&p1, ym("2026-03"), 9_676_544_001, d("2026-04-01"))
        .await
        .unwrap();
    // 9 676 544 001 × 0.03 = 290 296 320.03 → 290 296 320.
    let a = f.funds.load(&p1).await.unwrap();
    assert_eq!(a.safety.month_state(ym("2026-03")).accrued_fen, 290_296_320);

    // 安全文明施工费: 2026 planned 20 000 000, GB 50500: ≥ 60 % = 12 000 000 within 28 days of
    // the start (by 2026-02-07); 5 000 000 received → breach.
    f.funds
        .change(&p1, Vec::new(), |a, _| {
            a.civilized.terms.year_planned_fen.insert(2026, 20_000_000);
            a.civilized.terms.prepay_rule = CivPrepayRule::Gb50500;
            a.civilized
                .record_payment(d("2026-01-15"), 5_000_000, None)?;
            Ok(())
        })
        .await
        .unwrap();
    let v = f.funds.view(&p1, d("2026-02-08")).await.unwrap();
    let civ = v.flags.iter().find(|x| x.code == FEE_CIV_PREPAY).unwrap();
    assert_eq!(
        (civ.required_fen, civ.paid_fen, civ.due_date),
        (12_000_000, 5_000_000, d("2026-02-07"))
    );
    assert_eq!(
        (v.civilized.received_fen, v.civilized.balance_fen),
        (5_000_000, 5_000_000)
    );

    // The smart-site cost plan: L1 2 × 3 000 000 = 6 000 000 and L2 1 × 800 000; after the
    // owner's approval it is frozen. A ppe expenditure of 2 500 000 realises L1.
    use smartsite_shared::domain::safety_fund::PlanLine;
    let line = |id: &str, q: i64, price: i64| PlanLine {
        id: id.into(),
        item: format!("item {id}"),
        quantity: q,
        unit_price_fen: price,
    };
    let plan = f
        .funds
        .put_plan(&p1, vec![line("L1", 2, 3_000_000), line("L2", 1, 800_000)])
        .await
        .unwrap();
    assert_eq!(plan.total_fen().unwrap(), 6_800_000);
    f.funds
        .change(&p1, Vec::new(), |a, rules| {
            let mut e = exp("2026-03-05", 2_500_000, "ppe");
            e.links.plan_line_id = Some("L1".into());
            a.safety.record_expenditure(e, rules)?;
            a.plan.approve("owner-rep-1", Utc::now())?;
            Ok(())
        })
        .await
        .unwrap();
    let a = f.funds.load(&p1).await.unwrap();
    let pva = a.plan.plan_vs_actual(a.safety.entries()).unwrap();
    // L1: 2 500 000 − 6 000 000 = −3 500 000; L2 untouched: −800 000.
    assert_eq!(
        (pva.lines[0].actual_fen, pva.lines[0].variance_fen),
        (2_500_000, -3_500_000)
    );
    assert_eq!(
        (pva.planned_total_fen, pva.actual_total_fen),
        (6_800_000, 2_500_000)
    );
    let r = f.funds.put_plan(&p1, vec![line("L3", 1, 1)]).await;
    assert!(
        matches!(r, Err(FundsError::Rule(SafetyFundError::PlanApproved))),
        "{r:?}"
    );

    // Stored entries verify; the chain is per ledger.
    let chains = f.funds.verify(&p1).await.unwrap();
    assert!(chains.iter().all(|c| c.ok), "{chains:?}");
    assert_eq!(chains[1].entries, 1);
}

async fn handoff_posts_each_invoice_once(store: Arc<dyn Store>) {
    let f = fixture(store.clone(), &format!("h{}", std::process::id())).await;
    let p22 = project(
        &f,
        &f.enterprise,
        1_000_000_000,
        None,
        "2024-01-01",
        Some("2024-02-01"),
    )
    .await;
    // Tender 2022-10-01 and contract 2022-11-01, both before 2022-11-21 → r2012, building 200 bp.
    let p12 = project(
        &f,
        &f.enterprise,
        1_000_000_000,
        Some("2022-10-01"),
        "2022-11-01",
        None,
    )
    .await;
    assert_eq!(
        f.funds.view(&p12, d("2026-01-01")).await.unwrap().regime,
        Regime::R2012
    );
    for e in [
        invoice(&f, &p22, "inv-a", "safety_fee", 1_234_500),
        invoice(&f, &p12, "inv-b", "safety_fee", 200_000),
        invoice(&f, &p22, "inv-c", "civilized_fee", 99_900),
    ] {
        store.transact(vec![e.put_op().unwrap()]).await.unwrap();
    }
    let r = f.funds.drain_handoffs().await.unwrap();
    assert_eq!((r.posted, r.already_posted, r.failed), (3, 0, 0));
    assert!(
        handoff::pending(store.as_ref(), 10, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
    // Draining again posts nothing.
    assert_eq!(f.funds.drain_handoffs().await.unwrap(), Default::default());

    let a22 = f.funds.load(&p22).await.unwrap();
    let e = &a22.safety.entries()[0];
    // r2022: the 2022 list's 工程项目安全生产信息化建设 category.
    assert_eq!(
        (
            e.category.as_deref(),
            e.spent_fen,
            e.links.invoice_id.as_deref()
        ),
        (Some("safety_informatisation"), 1_234_500, Some("inv-a"))
    );
    assert_eq!(e.date, d("2026-03-01"));
    let c = &a22.civilized.entries()[0];
    assert_eq!(
        (c.category.as_deref(), c.spent_fen),
        (Some("smart_site"), 99_900)
    );
    // r2012 has no informatisation category: the rules map invoices to 监控 (monitoring).
    let a12 = f.funds.load(&p12).await.unwrap();
    assert_eq!(
        a12.safety.entries()[0].category.as_deref(),
        Some("hazard_monitoring_rectification")
    );

    // A redelivered event (billing's outbox re-put after a crash) finds the invoice posted and
    // is consumed without a second entry.
    store
        .transact(vec![
            invoice(&f, &p22, "inv-a", "safety_fee", 1_234_500)
                .put_op()
                .unwrap(),
        ])
        .await
        .unwrap();
    let r = f.funds.drain_handoffs().await.unwrap();
    assert_eq!((r.posted, r.already_posted), (0, 1));
    assert_eq!(f.funds.load(&p22).await.unwrap().safety.entries().len(), 1);

    // An event for an unknown project is kept aside with its reason, never dropped.
    let mut ghost = invoice(&f, &p22, "inv-ghost", "safety_fee", 10);
    ghost.project_id = ProjectId::generate().as_str().into();
    store.transact(vec![ghost.put_op().unwrap()]).await.unwrap();
    assert_eq!(f.funds.drain_handoffs().await.unwrap().failed, 1);
    let failed = f.funds.failed_handoffs().await.unwrap();
    assert!(
        failed
            .iter()
            .any(|x| x.event.invoice.invoice_id == "inv-ghost"
                && x.reason.contains("unknown project")),
        "{failed:?}"
    );
    // So is the void of an invoice this ledger never booked.
    let never = invoice(&f, &p22, "inv-never", "safety_fee", 10).event(InvoiceChange::Voided {
        on: d("2026-03-05"),
    });
    store.transact(vec![never.put_op().unwrap()]).await.unwrap();
    assert_eq!(f.funds.drain_handoffs().await.unwrap().failed, 1);
    let failed = f.funds.failed_handoffs().await.unwrap();
    assert!(
        failed
            .iter()
            .any(|x| x.event == never && x.reason.contains("no expenditure")),
        "{failed:?}"
    );
    assert_eq!(failed.len(), 2);

    // Settlement of the r2012 project: progress 10 000 000 × 2 % = 200 000 accrued, 200 000
    // spent by the invoice → 0; then 50 000 000 more progress → +1 000 000: surplus 1 000 000.
    f.funds
        .report_progress(&p12, ym("2026-01"), 10_000_000, d("2026-02-01"))
        .await
        .unwrap();
    f.funds
        .report_progress(&p12, ym("2026-02"), 50_000_000, d("2026-03-01"))
        .await
        .unwrap();
    let s = f.funds.settle(&p12, d("2026-12-31")).await.unwrap();
    assert_eq!(
        (s.balance_fen, s.surplus_fen, s.deficit_fen),
        (1_000_000, 1_000_000, 0)
    );
    let v = f.funds.view(&p12, d("2026-12-31")).await.unwrap();
    assert_eq!((v.balance_fen, v.settled), (0, true));
    let r = f
        .funds
        .report_progress(&p12, ym("2027-01"), 1, d("2027-02-01"))
        .await;
    assert!(
        matches!(r, Err(FundsError::Rule(SafetyFundError::Closed))),
        "{r:?}"
    );
}

async fn tampering_is_found_at_the_edited_entry(store: Arc<dyn Store>) {
    let f = fixture(store.clone(), &format!("t{}", std::process::id())).await;
    let p = project(&f, &f.enterprise, 1_000_000_000, None, "2024-01-01", None).await;
    for (m, v) in [
        ("2026-01", 10_000_000),
        ("2026-02", 20_000_000),
        ("2026-03", 30_000_000),
    ] {
        f.funds
            .report_progress(&p, ym(m), v, d("2026-04-01"))
            .await
            .unwrap();
    }
    assert!(f.funds.verify(&p).await.unwrap()[0].ok);
    // Someone with table access edits entry 2's amount in place.
    let key = Key::new(
        keys::entity(&f.integrator, EntityKind::Project, p.id.as_str()),
        keys::fund_entry_sk("S", 2),
    );
    let item = store.get(&key).await.unwrap().unwrap();
    let mut e: smartsite_shared::domain::safety_fund::Entry = decode(&item).unwrap();
    e.accrued_fen += 100;
    store.put(record(key, &e).unwrap(), None).await.unwrap();
    let chains = f.funds.verify(&p).await.unwrap();
    assert!(!chains[0].ok);
    assert_eq!(chains[0].first_broken.as_ref().unwrap().seq, 2);
    // A ledger with a broken chain takes no further entries.
    let r = f
        .funds
        .report_progress(&p, ym("2026-04"), 1, d("2026-05-01"))
        .await;
    assert!(
        matches!(r, Err(FundsError::Broken(ref b)) if b.seq == 2),
        "{r:?}"
    );
}

async fn enterprise_year_and_pause(store: Arc<dyn Store>) {
    let f = fixture(store.clone(), &format!("y{}", std::process::id())).await;
    let p = project(
        &f,
        &f.enterprise,
        100_000_000_000,
        None,
        "2023-06-01",
        Some("2023-07-01"),
    )
    .await;
    // 2024-06: 3 000 000 000 × 3 % = 90 000 000. 2025-03: the 2024 requirement is 90 000 000;
    // the balance at 2025-03-01 is 90 000 000 < 3 × 90 000 000 → not paused;
    // 100 000 000 × 3 % = 3 000 000.
    f.funds
        .report_progress(&p, ym("2024-06"), 3_000_000_000, d("2024-07-01"))
        .await
        .unwrap();
    let out = f
        .funds
        .report_progress(&p, ym("2025-03"), 100_000_000, d("2025-04-01"))
        .await
        .unwrap();
    assert_eq!(
        (out.month.paused, out.month.accrued_fen),
        (false, 3_000_000)
    );
    // 2026-01: the 2025 requirement is 3 000 000 and the balance at 2026-01-01 is 93 000 000
    // ≥ 9 000 000 → the month's accrual pauses (0, marked paused).
    let out = f
        .funds
        .report_progress(&p, ym("2026-01"), 200_000_000, d("2026-02-01"))
        .await
        .unwrap();
    assert_eq!((out.month.paused, out.month.accrued_fen), (true, 0));
    // 2025 use: 1 500 000 spent of 3 000 000 required = 50 % < 60 % → under-use, report due
    // 2026-04-30.
    f.funds
        .change(&p, Vec::new(), |a, rules| {
            Ok(a.safety
                .record_expenditure(exp("2025-05-01", 1_500_000, "training_publicity"), rules)?)
        })
        .await
        .unwrap();
    let y = f
        .funds
        .enterprise_year(&f.integrator, &f.enterprise, 2025, d("2026-01-15"))
        .await
        .unwrap();
    let s = &y.summary;
    assert_eq!(
        (
            s.opening_balance_fen,
            s.required_accrual_fen,
            s.accrued_fen,
            s.used_fen
        ),
        (90_000_000, 3_000_000, 3_000_000, 1_500_000)
    );
    // closing 90 000 000 + 3 000 000 − 1 500 000 = 91 500 000 ≥ 3 × 3 000 000 → paused next year.
    assert_eq!(
        (
            s.closing_balance_fen,
            s.use_ratio_bp,
            s.pause_at_next_year_start
        ),
        (91_500_000, Some(5000), true)
    );
    assert_eq!(s.under_use.unwrap().report_due, d("2026-04-30"));
    assert_eq!(y.projects.len(), 1);
    assert_eq!(y.projects[0].used_fen, 1_500_000);
    // 2026: the paused month still counts as required (200 000 000 × 3 % = 6 000 000).
    let y = f
        .funds
        .enterprise_year(&f.integrator, &f.enterprise, 2026, d("2026-02-15"))
        .await
        .unwrap();
    assert_eq!(
        (y.summary.required_accrual_fen, y.summary.accrued_fen),
        (6_000_000, 0)
    );
    assert_eq!(y.summary.paused_months, vec![ym("2026-01")]);
}

async fn concurrent_writers_never_fork_the_chain(store: Arc<dyn Store>) {
    let f = fixture(store.clone(), &format!("c{}", std::process::id())).await;
    let p = project(&f, &f.enterprise, 1_000_000_000, None, "2024-01-01", None).await;
    let mut tasks = Vec::new();
    for n in 0..8i64 {
        let funds = f.funds.clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            funds
                .change(&p, Vec::new(), move |a, rules| {
                    Ok(a.safety
                        .record_expenditure(exp("2026-01-02", 100 + n, "ppe"), rules)?)
                })
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let a = f.funds.load(&p).await.unwrap();
    assert_eq!(a.safety.entries().len(), 8);
    // Σ (100 + n), n < 8 = 828.
    assert_eq!(a.safety.totals().spent_fen, 828);
    assert!(f.funds.verify(&p).await.unwrap().iter().all(|c| c.ok));
}

async fn ledger_alarms_follow_the_flags(store: Arc<dyn Store>) {
    let mut f = fixture(store.clone(), &format!("l{}", std::process::id())).await;
    let alarms = Alarms::new(store.clone());
    f.funds = f.funds.clone().with_alarms(alarms.clone());
    // Planned 10 000 000 000 × 3 % = 300 000 000; the owner owes 150 000 000 by 2027-07-01
    // (start 2027-06-01 + 1 month), warning from 2027-06-22 (start + 21 days).
    let paid = project(
        &f,
        &f.enterprise,
        10_000_000_000,
        None,
        "2026-05-01",
        Some("2027-06-01"),
    )
    .await;
    let unpaid = project(
        &f,
        &f.enterprise,
        10_000_000_000,
        None,
        "2026-05-01",
        Some("2027-06-01"),
    )
    .await;
    for p in [&paid, &unpaid] {
        f.funds
            .report_progress(p, ym("2027-06"), 1_000_000, d("2027-06-02"))
            .await
            .unwrap();
    }
    let list = |p: &Project| {
        let alarms = alarms.clone();
        let (i, id) = (
            p.integrator_id.as_str().to_owned(),
            p.id.as_str().to_owned(),
        );
        async move { alarms.list(&i, &id, None, 50, None).await.unwrap().0 }
    };
    assert!(list(&paid).await.is_empty());
    // Both projects: a warning on 2027-06-22, raised once however often the sweep runs, and
    // escalated to government at once (the rule notifies owner and government).
    assert_eq!(f.funds.sweep_flags(d("2027-06-22")).await.unwrap(), 2);
    f.funds.sweep_flags(d("2027-06-23")).await.unwrap();
    let a = list(&unpaid).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].rule.as_str(), a[0].level, a[0].escalated_to),
        (FEE_OWNER_50, Level::Warning, Tier::Government)
    );
    assert_eq!((a[0].device_id.as_str(), a[0].category), ("", None));
    assert_eq!((a[0].value, a[0].threshold), (0.0, 1_500_000.0));
    // The owner of `paid` pays in full on 2027-06-25: the finding no longer stands, the alarm is
    // cleared (it stays until handled) and no breach follows.
    f.funds
        .change(&paid, Vec::new(), |a, _| {
            a.safety
                .record_owner_payment(d("2027-06-25"), 150_000_000, None)?;
            Ok(())
        })
        .await
        .unwrap();
    f.funds.sweep_flags(d("2027-07-02")).await.unwrap();
    let a = list(&paid).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert!(a[0].cleared_at.is_some());
    assert_eq!(a[0].level, Level::Warning);
    // `unpaid` reaches the due date unpaid: the same alarm is upgraded to a breach (报警).
    let a = list(&unpaid).await;
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(
        (a[0].level, a[0].cleared_at.as_deref()),
        (Level::Alarm, None)
    );
}

macro_rules! on_both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn embedded() {
                let fx = smartsite_shared::testkit::embedded().await;
                super::$name(fx.store).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dynamo() {
                let fx = smartsite_shared::testkit::dynamo().await;
                super::$name(fx.store).await;
            }
        }
    };
}

on_both!(rules_of_a_project_account);
on_both!(handoff_posts_each_invoice_once);
on_both!(tampering_is_found_at_the_edited_entry);
on_both!(enterprise_year_and_pause);
on_both!(concurrent_writers_never_fork_the_chain);
on_both!(ledger_alarms_follow_the_flags);
