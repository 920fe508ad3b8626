use super::*;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn ym(s: &str) -> YearMonth {
    s.parse().unwrap()
}

fn rules() -> FeeRules {
    FeeRulesSet::default_rules()
        .unwrap()
        .in_force(d("2024-01-01"))
        .unwrap()
        .clone()
}

fn terms(project_type: &str, contract_value_fen: i64, signed: &str) -> ProjectTerms {
    ProjectTerms {
        project_type: project_type.to_owned(),
        contract_value_fen,
        contract_signed: d(signed),
        tender_completed: None,
        start_date: None,
    }
}

/// A building project under the 2022 rules (300 bp).
fn building(contract_value_fen: i64) -> FundAccount {
    FundAccount::open(
        terms("building", contract_value_fen, "2024-01-05"),
        &rules(),
    )
    .unwrap()
}

fn spend(date: &str, amount_fen: i64, category: &str) -> Expenditure {
    Expenditure {
        date: d(date),
        amount_fen,
        category: category.to_owned(),
        summary: format!("{category} 支出"),
        evidence_ref: format!("voucher-{date}-{amount_fen}"),
        links: Links::default(),
    }
}

// --- configuration ---------------------------------------------------------------------

#[test]
fn default_rules_cover_exactly_the_tenancy_project_types() {
    // The serde names of tenancy::ProjectType.
    let want = [
        "building",
        "chem_petro",
        "highway",
        "mech_elec_install",
        "mining",
        "municipal",
        "port_waterway",
        "power",
        "railway",
        "smelting",
        "telecom",
        "urban_rail",
        "water_hydro",
    ];
    let r = rules();
    assert_eq!(r.project_types().collect::<Vec<_>>(), want);
    assert_eq!(r.r2022_effective_date, d("2022-11-21"));
}

#[test]
fn rules_version_in_force_and_validation() {
    let base = rules();
    let mut later = base.clone();
    later.version = "jl-2025.1".into();
    later.effective_from = d("2025-01-01");
    later.owner_payment.min_share_bp = 6000;
    let set = FeeRulesSet::new(vec![later, base]).unwrap();
    assert_eq!(set.in_force(d("2024-12-31")).unwrap().version, "cn-2022.1");
    assert_eq!(set.in_force(d("2025-01-01")).unwrap().version, "jl-2025.1");
    assert_eq!(
        set.in_force(d("2012-02-13")).unwrap_err(),
        SafetyFundError::NoRulesInForce {
            date: d("2012-02-13")
        }
    );
    assert!(set.by_version("jl-2025.1").is_some());

    let mut bad = rules();
    bad.rates_bp.r2022.insert("building".into(), 10_001);
    assert!(matches!(
        FeeRulesSet::new(vec![bad]),
        Err(SafetyFundError::Config(_))
    ));
    let mut bad = rules();
    bad.rates_bp.r2012.remove("mining");
    assert!(FeeRulesSet::new(vec![bad]).is_err());
    let mut bad = rules();
    bad.enterprise.pause_multiple = 0;
    assert!(FeeRulesSet::new(vec![bad]).is_err());
    assert!(FeeRulesSet::new(vec![rules(), rules()]).is_err());
    assert!(FeeRulesSet::from_json("{\"versions\": []}").is_err());
}

// --- regime and rate -------------------------------------------------------------------

#[test]
fn regime_at_the_cut_off() {
    let r = rules();
    // DOMAIN.md §11.1.7: tendering 2022-11-10, contract 2022-11-20 ⇒ legacy.
    assert_eq!(
        regime(Some(d("2022-11-10")), d("2022-11-20"), &r),
        Regime::R2012
    );
    // Contract signed on the cut-off day ⇒ 2022 rules.
    assert_eq!(
        regime(Some(d("2022-11-10")), d("2022-11-21"), &r),
        Regime::R2022
    );
    // Tendering done before, contract after ⇒ 2022 rules.
    assert_eq!(
        regime(Some(d("2022-11-15")), d("2022-11-25"), &r),
        Regime::R2022
    );
    // Contract before but tendering completed on the cut-off day ⇒ not both before ⇒ 2022.
    assert_eq!(
        regime(Some(d("2022-11-21")), d("2022-11-20"), &r),
        Regime::R2022
    );
    // No tender date: judged by the contract date alone.
    assert_eq!(regime(None, d("2022-11-20"), &r), Regime::R2012);
    assert_eq!(regime(None, d("2022-11-21"), &r), Regime::R2022);
    assert_eq!(serde_json::to_string(&Regime::R2012).unwrap(), "\"r2012\"");
    assert_eq!(serde_json::to_string(&Regime::R2022).unwrap(), "\"r2022\"");
}

#[test]
fn rates_by_type_under_both_regimes() {
    let r = rules();
    // (type, 2012 bp, 2022 bp): 第十七条 and 财企〔2012〕16号 (DOMAIN.md §1.1; mining 2012 [M]).
    let table = [
        ("mining", 250, 350),
        ("railway", 200, 300),
        ("building", 200, 300),
        ("urban_rail", 200, 300),
        ("water_hydro", 200, 250),
        ("power", 200, 250),
        ("smelting", 150, 200),
        ("mech_elec_install", 150, 200),
        ("chem_petro", 150, 200),
        ("telecom", 150, 200),
        ("municipal", 150, 150),
        ("port_waterway", 150, 150),
        ("highway", 150, 150),
    ];
    for (ty, old, new) in table {
        assert_eq!(rate_bp(Regime::R2012, ty, &r).unwrap(), old, "{ty} r2012");
        assert_eq!(rate_bp(Regime::R2022, ty, &r).unwrap(), new, "{ty} r2022");
    }
    assert_eq!(
        rate_bp(Regime::R2022, "castle", &r).unwrap_err(),
        SafetyFundError::UnknownProjectType {
            project_type: "castle".into(),
            regime: Regime::R2022
        }
    );
    // Account opening: building signed 2022-06-01 ⇒ r2012, 200 bp; planned total on
    // 12 345 678 fen = 12 345 678 × 200 / 10 000 = 246 913.56 ⇒ 246 914 fen.
    let acc = FundAccount::open(terms("building", 12_345_678, "2022-06-01"), &r).unwrap();
    assert_eq!((acc.regime, acc.rate_bp), (Regime::R2012, 200));
    assert_eq!(acc.planned_total_fen().unwrap(), 246_914);
    // Same under r2022: × 300 / 10 000 = 370 370.34 ⇒ 370 370 fen.
    assert_eq!(planned_total_fen(12_345_678, 300).unwrap(), 370_370);
}

// --- accrual ---------------------------------------------------------------------------

#[test]
fn accrual_rounds_half_up_at_the_fen() {
    // 150 × 300 / 10 000 = 4.5 ⇒ 5; 149 × 300 / 10 000 = 4.47 ⇒ 4.
    assert_eq!(accrual_fen(150, 300).unwrap(), 5);
    assert_eq!(accrual_fen(149, 300).unwrap(), 4);
    // 1 666 650 × 300 / 10 000 = 49 999.5 ⇒ 50 000.
    assert_eq!(accrual_fen(1_666_650, 300).unwrap(), 50_000);
    // 1 000 050 × 150 / 10 000 = 15 000.75 ⇒ 15 001; 1 000 030 × 150 = 15 000.45 ⇒ 15 000.
    assert_eq!(accrual_fen(1_000_050, 150).unwrap(), 15_001);
    assert_eq!(accrual_fen(1_000_030, 150).unwrap(), 15_000);
    // Negative amounts round half away from zero: −4.5 ⇒ −5.
    assert_eq!(mul_bp_half_up(-150, 300).unwrap(), -5);
    // Required shares round up: 3 000 001 × 5 000 / 10 000 = 1 500 000.5 ⇒ 1 500 001.
    assert_eq!(mul_bp_ceil(3_000_001, 5000).unwrap(), 1_500_001);
    assert_eq!(mul_bp_ceil(3_000_000, 5000).unwrap(), 1_500_000);
    // No overflow on i64::MAX × 10 000 bp (i128 arithmetic).
    assert_eq!(mul_bp_half_up(i64::MAX, 10_000).unwrap(), i64::MAX);
}

#[test]
fn second_report_for_a_month_is_a_delta_correction() {
    let mut acc = building(1_000_000_000);
    // March: 1 666 650 × 3 % = 49 999.5 ⇒ 50 000.
    let out = acc
        .report_progress(ym("2024-03"), 1_666_650, d("2024-03-31"), false)
        .unwrap();
    let e = out.entry.unwrap();
    assert_eq!(e.kind, EntryKind::Accrual);
    assert_eq!((e.progress_fen, e.accrued_fen), (Some(1_666_650), 50_000));
    // Corrected to 2 000 000 ⇒ 60 000; delta +333 350 progress, +10 000 accrual.
    let out = acc
        .report_progress(ym("2024-03"), 2_000_000, d("2024-04-03"), false)
        .unwrap();
    let e = out.entry.unwrap();
    assert_eq!(e.kind, EntryKind::Correction);
    assert_eq!((e.progress_fen, e.accrued_fen), (Some(333_350), 10_000));
    assert_eq!(out.month.progress_fen, 2_000_000);
    assert_eq!(out.month.accrued_fen, 60_000);
    // The same report again changes nothing and appends nothing.
    let out = acc
        .report_progress(ym("2024-03"), 2_000_000, d("2024-04-04"), false)
        .unwrap();
    assert!(out.entry.is_none());
    // Corrected down to 1 000 000 ⇒ 30 000; delta −1 000 000 / −30 000.
    let e = acc
        .report_progress(ym("2024-03"), 1_000_000, d("2024-04-05"), false)
        .unwrap()
        .entry
        .unwrap();
    assert_eq!((e.progress_fen, e.accrued_fen), (Some(-1_000_000), -30_000));
    assert_eq!(acc.entries().len(), 3);
    assert_eq!(acc.totals().accrued_fen, 30_000);
    // Rounding is on the month's total, not on deltas: 150 ⇒ 4.5 ⇒ 5; 300 ⇒ 9.0 ⇒ 9, so
    // the correction is +4 (a rounded delta would have been round(4.5) = 5).
    acc.report_progress(ym("2024-04"), 150, d("2024-04-30"), false)
        .unwrap();
    let e = acc
        .report_progress(ym("2024-04"), 300, d("2024-05-02"), false)
        .unwrap()
        .entry
        .unwrap();
    assert_eq!(e.accrued_fen, 4);
    assert_eq!(acc.month_state(ym("2024-04")).accrued_fen, 9);
    assert!(acc.ledger.verify().is_ok());
}

#[test]
fn progress_beyond_the_contract_is_refused_until_a_variation() {
    let mut acc = building(1_000_000);
    acc.report_progress(ym("2024-01"), 600_000, d("2024-01-31"), false)
        .unwrap();
    // 600 000 + 400 001 = 1 000 001 > 1 000 000.
    let err = acc
        .report_progress(ym("2024-02"), 400_001, d("2024-02-29"), false)
        .unwrap_err();
    assert_eq!(
        err,
        SafetyFundError::ProgressBeyondContract {
            month: ym("2024-02"),
            cumulative_fen: 1_000_001,
            limit_fen: 1_000_000
        }
    );
    assert!(err.to_string().contains("contract variation"), "{err}");
    assert_eq!(acc.entries().len(), 1);
    // Exactly the contract value is fine.
    acc.report_progress(ym("2024-02"), 400_000, d("2024-02-29"), false)
        .unwrap();
    // A correction counts the month's new total: Jan 600 001 ⇒ 1 000 001 > 1 000 000.
    assert!(
        acc.report_progress(ym("2024-01"), 600_001, d("2024-03-01"), false)
            .is_err()
    );
    // Variation +100 000 ⇒ limit 1 100 000; March 100 000 fits.
    acc.record_variation(ContractVariation {
        date: d("2024-03-10"),
        amount_fen: 100_000,
        reference: "变更单 BG-001".into(),
    })
    .unwrap();
    acc.report_progress(ym("2024-03"), 100_000, d("2024-03-31"), false)
        .unwrap();
    // Planned total on 1 100 000 × 300 / 10 000 = 33 000.
    assert_eq!(acc.planned_total_fen().unwrap(), 33_000);
    // A reduction below the 1 100 000 already reported is refused.
    assert_eq!(
        acc.record_variation(ContractVariation {
            date: d("2024-04-01"),
            amount_fen: -200_000,
            reference: "变更单 BG-002".into(),
        })
        .unwrap_err(),
        SafetyFundError::VariationBelowProgress {
            limit_fen: 900_000,
            cumulative_fen: 1_100_000
        }
    );
    assert!(
        acc.report_progress(ym("2024-04"), -1, d("2024-04-30"), false)
            .is_err()
    );
}

#[test]
fn enterprise_three_times_pause() {
    let r = rules();
    // Last year's required accrual 1 000 000; 3 × = 3 000 000.
    assert!(enterprise_pause_applies(3_000_000, 1_000_000, &r));
    assert!(enterprise_pause_applies(3_500_000, 1_000_000, &r));
    assert!(!enterprise_pause_applies(2_999_999, 1_000_000, &r));
    // No prior-year requirement ⇒ never paused.
    assert!(!enterprise_pause_applies(0, 0, &r));
    assert!(!enterprise_pause_applies(5, 0, &r));

    let mut acc = building(100_000_000);
    let e = acc
        .report_progress(ym("2024-05"), 1_000_000, d("2024-05-31"), true)
        .unwrap()
        .entry
        .unwrap();
    assert!(e.paused);
    assert_eq!((e.accrued_fen, e.progress_fen), (0, Some(1_000_000)));
    // A correction of a paused month stays paused (the test is at month start), even if the
    // caller now says otherwise.
    let e = acc
        .report_progress(ym("2024-05"), 2_000_000, d("2024-06-02"), false)
        .unwrap()
        .entry
        .unwrap();
    assert!(e.paused);
    assert_eq!(e.accrued_fen, 0);
    // The next month, no longer paused: 1 000 000 × 3 % = 30 000.
    let e = acc
        .report_progress(ym("2024-06"), 1_000_000, d("2024-06-30"), false)
        .unwrap()
        .entry
        .unwrap();
    assert_eq!(e.accrued_fen, 30_000);
}

// --- payment shares --------------------------------------------------------------------

#[test]
fn owner_fifty_percent_warning_and_breach_dates() {
    let r = rules();
    let mut acc = building(100_000_000);
    acc.terms.start_date = Some(d("2024-03-10"));
    // Planned 100 000 000 × 3 % = 3 000 000; required 50 % = 1 500 000.
    // Warning from 03-10 + 21 d = 03-31; due 03-10 + 1 month = 04-10.
    acc.record_owner_payment(d("2024-03-20"), 1_000_000, Some("回单-1".into()))
        .unwrap();
    assert!(acc.flags(d("2024-03-30"), &r).unwrap().is_empty());
    let warn = acc.flags(d("2024-03-31"), &r).unwrap();
    assert_eq!(
        warn,
        vec![Flag {
            code: FEE_OWNER_50.into(),
            level: FlagLevel::Warning,
            due_date: d("2024-04-10"),
            required_fen: 1_500_000,
            paid_fen: 1_000_000,
            subject: None,
        }]
    );
    // Unpaid on the due date ⇒ breach.
    let breach = acc.flags(d("2024-04-10"), &r).unwrap();
    assert_eq!(breach[0].level, FlagLevel::Breach);
    assert_eq!(breach[0].paid_fen, 1_000_000);
    // A late payment (04-11) does not cure the breach: paid by the due date stays 1 000 000.
    let mut late = acc.clone();
    late.record_owner_payment(d("2024-04-11"), 500_000, None)
        .unwrap();
    assert_eq!(
        late.flags(d("2024-04-12"), &r).unwrap()[0].paid_fen,
        1_000_000
    );
    // Paying the rest on the due date itself is on time ⇒ no flag.
    acc.record_owner_payment(d("2024-04-10"), 500_000, None)
        .unwrap();
    assert!(acc.flags(d("2024-04-10"), &r).unwrap().is_empty());
    assert!(acc.flags(d("2024-06-01"), &r).unwrap().is_empty());
    // Month arithmetic clamps: start 2024-01-31 ⇒ due 2024-02-29.
    let f = owner_payment_flag(3_000_000, d("2024-01-31"), &[], d("2024-02-29"), &r)
        .unwrap()
        .unwrap();
    assert_eq!((f.level, f.due_date), (FlagLevel::Breach, d("2024-02-29")));
}

#[test]
fn subcontract_fifty_percent_within_a_month_of_its_start() {
    let r = rules();
    let mut acc = building(100_000_000);
    // Share 400 001 ⇒ required ceil(200 000.5) = 200 001; warn 05-20 + 21 d = 06-10;
    // due 06-20.
    acc.add_subcontract(Subcontract {
        id: "sub-steel".into(),
        share_fen: 400_001,
        start_date: d("2024-05-20"),
    })
    .unwrap();
    acc.allocate(d("2024-06-01"), "sub-steel", 200_000, Some("转账-7".into()))
        .unwrap();
    assert!(acc.flags(d("2024-06-09"), &r).unwrap().is_empty());
    let f = acc.flags(d("2024-06-10"), &r).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(
        (f[0].code.as_str(), f[0].level, f[0].subject.as_deref()),
        (FEE_SUB_50, FlagLevel::Warning, Some("sub-steel"))
    );
    assert_eq!((f[0].required_fen, f[0].paid_fen), (200_001, 200_000));
    assert_eq!(
        acc.flags(d("2024-06-20"), &r).unwrap()[0].level,
        FlagLevel::Breach
    );
    acc.allocate(d("2024-06-20"), "sub-steel", 1, None).unwrap();
    assert!(acc.flags(d("2024-06-20"), &r).unwrap().is_empty());
    assert_eq!(
        acc.allocate(d("2024-06-20"), "sub-nobody", 1, None)
            .unwrap_err(),
        SafetyFundError::UnknownSubcontract("sub-nobody".into())
    );
}

#[test]
fn civilized_fee_prepayment_gb50500_and_contract_rule() {
    let r = rules();
    // GB 50500: year planned 1 000 000 ⇒ required 60 % = 600 000 by 03-01 + 28 d = 03-29.
    let start = d("2024-03-01");
    let paid = [(d("2024-03-05"), 599_999)];
    let rule = CivPrepayRule::Gb50500;
    // No warning stage.
    assert!(
        civ_prepay_flag(&rule, 1_000_000, start, &paid, d("2024-03-28"), &r)
            .unwrap()
            .is_none()
    );
    let f = civ_prepay_flag(&rule, 1_000_000, start, &paid, d("2024-03-29"), &r)
        .unwrap()
        .unwrap();
    assert_eq!(
        f,
        Flag {
            code: FEE_CIV_PREPAY.into(),
            level: FlagLevel::Breach,
            due_date: d("2024-03-29"),
            required_fen: 600_000,
            paid_fen: 599_999,
            subject: None,
        }
    );
    let paid = [(d("2024-03-05"), 599_999), (d("2024-03-29"), 1)];
    assert!(
        civ_prepay_flag(&rule, 1_000_000, start, &paid, d("2024-03-29"), &r)
            .unwrap()
            .is_none()
    );
    // Contract rule 30 % within 14 days: 300 000 by 03-15.
    let rule = CivPrepayRule::Contract {
        min_share_bp: 3000,
        within_days: 14,
    };
    let f = civ_prepay_flag(&rule, 1_000_000, start, &[], d("2024-03-15"), &r)
        .unwrap()
        .unwrap();
    assert_eq!((f.required_fen, f.due_date), (300_000, d("2024-03-15")));
    let bad = CivPrepayRule::Contract {
        min_share_bp: 0,
        within_days: 14,
    };
    assert!(civ_prepay_flag(&bad, 1_000_000, start, &[], d("2024-03-15"), &r).is_err());
}

// --- expenditures ----------------------------------------------------------------------

#[test]
fn diversion_is_refused_naming_the_category() {
    let r = rules();
    // Legacy account (signed 2022-06-01): informatisation is not on the 2012 list.
    let mut old = FundAccount::open(terms("building", 1_000_000, "2022-06-01"), &r).unwrap();
    assert_eq!(old.regime, Regime::R2012);
    let err = old
        .record_expenditure(spend("2024-01-10", 100, "safety_informatisation"), &r)
        .unwrap_err();
    assert_eq!(
        err,
        SafetyFundError::Diversion {
            category: "safety_informatisation".into(),
            regime: Regime::R2012
        }
    );
    assert!(err.to_string().contains("safety_informatisation"));
    assert!(old.entries().is_empty());
    // 2022 account: informatisation and insurance allowed, fines never.
    let mut new = building(1_000_000);
    for c in [
        "safety_informatisation",
        "safety_liability_insurance",
        "ppe",
    ] {
        new.record_expenditure(spend("2024-01-10", 100, c), &r)
            .unwrap();
    }
    assert!(matches!(
        new.record_expenditure(spend("2024-01-10", 100, "administrative_fines"), &r),
        Err(SafetyFundError::Diversion { .. })
    ));
    assert_eq!(allowed_categories(Regime::R2012, &r).len(), 9);
    assert_eq!(allowed_categories(Regime::R2022, &r).len(), 11);
    // Evidence is required (支出有据).
    let mut e = spend("2024-01-10", 100, "ppe");
    e.evidence_ref = " ".into();
    assert_eq!(
        new.record_expenditure(e, &r).unwrap_err(),
        SafetyFundError::Missing {
            field: "evidence_ref"
        }
    );
}

#[test]
fn overspend_is_allowed_but_flagged_and_invoices_post_once() {
    let r = rules();
    let mut acc = building(10_000_000);
    // 1 000 000 × 3 % = 30 000 accrued.
    acc.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
        .unwrap();
    // 30 000 − 20 000 = 10 000 ⇒ fine.
    let o = acc
        .record_expenditure(spend("2024-02-01", 20_000, "ppe"), &r)
        .unwrap();
    assert!(!o.overspent);
    assert_eq!(o.balance_fen, 10_000);
    // 10 000 − 15 000 = −5 000 ⇒ recorded, flagged.
    let mut e = spend("2024-02-02", 15_000, "safety_informatisation");
    e.links.invoice_id = Some("inv-001".into());
    e.links.subscription_id = Some("sub-2024".into());
    let o = acc.record_expenditure(e.clone(), &r).unwrap();
    assert!(o.overspent && o.entry.overspent);
    assert_eq!(o.balance_fen, -5_000);
    assert_eq!(acc.totals().balance_fen, -5_000);
    // The billing hand-off posts an invoice once.
    assert_eq!(
        acc.record_expenditure(e.clone(), &r).unwrap_err(),
        SafetyFundError::InvoiceAlreadyPosted {
            invoice_id: "inv-001".into(),
            seq: 3
        }
    );
    // After a reversal it can be posted again.
    acc.reverse(3, d("2024-02-03"), "发票作废").unwrap();
    assert_eq!(acc.totals().balance_fen, 10_000);
    assert!(acc.record_expenditure(e, &r).is_ok());
}

fn invoice_spend(date: &str, amount_fen: i64, invoice: &str) -> Expenditure {
    let mut e = spend(date, amount_fen, "safety_informatisation");
    e.evidence_ref = format!("NO-{invoice}");
    e.links.invoice_id = Some(invoice.into());
    e.links.subscription_id = Some("sub-1".into());
    e
}

#[test]
fn credit_notes_and_a_void_take_an_invoice_back_once_each() {
    let r = rules();
    let mut acc = building(10_000_000);
    acc.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
        .unwrap(); // 30 000 accrued
    acc.record_expenditure(invoice_spend("2024-02-01", 10_000, "inv-7"), &r)
        .unwrap();
    let credit = |note: &str, amount_fen| TakeBack::Credit {
        note_id: note.into(),
        amount_fen,
    };
    // A partial credit note: a correction of minus its amount, the expenditure untouched.
    let e = acc
        .take_back("inv-7", &credit("cn-1", 3_000), d("2024-02-05"))
        .unwrap()
        .clone();
    assert_eq!(
        (e.kind, e.spent_fen, e.category.as_deref(), e.reverses),
        (
            EntryKind::Correction,
            -3_000,
            Some("safety_informatisation"),
            None
        )
    );
    assert_eq!(e.links.invoice_id.as_deref(), Some("inv-7"));
    assert_eq!(e.evidence_ref.as_deref(), Some("cn-1"));
    assert_eq!(acc.entries()[1].spent_fen, 10_000);
    assert_eq!(acc.ledger.invoice_net_fen("inv-7"), 7_000);
    assert_eq!(acc.totals().balance_fen, 23_000);
    // The same note again, or more than the invoice still holds, is refused.
    assert_eq!(
        acc.take_back("inv-7", &credit("cn-1", 3_000), d("2024-02-06"))
            .unwrap_err(),
        SafetyFundError::CreditNoteAlreadyPosted {
            note_id: "cn-1".into(),
            seq: 3
        }
    );
    assert!(matches!(
        acc.take_back("inv-7", &credit("cn-2", 7_001), d("2024-02-06")),
        Err(SafetyFundError::InvalidAmount { .. })
    ));
    // The void takes back the 7 000 left, as a correction (the expenditure was partly
    // credited, so a reversal of all of it would take too much).
    let e = acc
        .take_back("inv-7", &TakeBack::Void, d("2024-02-07"))
        .unwrap()
        .clone();
    assert_eq!((e.kind, e.spent_fen), (EntryKind::Correction, -7_000));
    assert_eq!(acc.ledger.invoice_net_fen("inv-7"), 0);
    assert_eq!(acc.totals().balance_fen, 30_000);
    assert_eq!(
        acc.take_back("inv-7", &TakeBack::Void, d("2024-02-08"))
            .unwrap_err(),
        SafetyFundError::NothingToTakeBack {
            invoice_id: "inv-7".into()
        }
    );
    assert!(matches!(
        acc.take_back("inv-7", &credit("cn-3", 1), d("2024-02-08")),
        Err(SafetyFundError::InvalidAmount { .. })
    ));

    // An invoice voided with nothing credited: the expenditure's reversal, once.
    acc.record_expenditure(invoice_spend("2024-03-01", 4_000, "inv-8"), &r)
        .unwrap();
    let e = acc
        .take_back("inv-8", &TakeBack::Void, d("2024-03-02"))
        .unwrap()
        .clone();
    assert_eq!(
        (e.kind, e.spent_fen, e.reverses),
        (EntryKind::Reversal, -4_000, Some(5))
    );
    for take in [TakeBack::Void, credit("cn-4", 1)] {
        assert_eq!(
            acc.take_back("inv-8", &take, d("2024-03-03")).unwrap_err(),
            SafetyFundError::NothingToTakeBack {
                invoice_id: "inv-8".into()
            }
        );
    }
    assert_eq!(
        acc.take_back("inv-9", &TakeBack::Void, d("2024-03-03"))
            .unwrap_err(),
        SafetyFundError::InvoiceNotPosted {
            invoice_id: "inv-9".into()
        }
    );
    assert_eq!(acc.totals().balance_fen, 30_000);
    acc.ledger.verify().unwrap();
}

#[test]
fn reversals_negate_once_and_cannot_be_reversed() {
    let r = rules();
    let mut acc = building(10_000_000);
    acc.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
        .unwrap();
    acc.record_expenditure(spend("2024-02-01", 7_000, "ppe"), &r)
        .unwrap();
    let rev = acc.reverse(2, d("2024-02-02"), "录入错误").unwrap().clone();
    assert_eq!(
        (rev.kind, rev.spent_fen, rev.reverses),
        (EntryKind::Reversal, -7_000, Some(2))
    );
    assert_eq!(rev.category.as_deref(), Some("ppe"));
    assert_eq!(
        acc.reverse(2, d("2024-02-02"), "again").unwrap_err(),
        SafetyFundError::AlreadyReversed { seq: 2, by: 3 }
    );
    assert!(matches!(
        acc.reverse(3, d("2024-02-02"), "x"),
        Err(SafetyFundError::NotReversible { .. })
    ));
    assert_eq!(
        acc.reverse(9, d("2024-02-02"), "x").unwrap_err(),
        SafetyFundError::UnknownEntry { seq: 9 }
    );
    // Reversing the January accrual empties the month; a new report is then a correction.
    acc.reverse(1, d("2024-02-05"), "进度报错").unwrap();
    assert_eq!(acc.month_state(ym("2024-01")).progress_fen, 0);
    assert_eq!(acc.totals().balance_fen, 0);
    let e = acc
        .report_progress(ym("2024-01"), 500_000, d("2024-02-06"), false)
        .unwrap()
        .entry
        .unwrap();
    assert_eq!((e.kind, e.accrued_fen), (EntryKind::Correction, 15_000));
}

// --- enterprise year -------------------------------------------------------------------

#[test]
fn enterprise_year_summary_with_under_use_and_pause() {
    let r = rules();
    let mut a = building(100_000_000); // 300 bp
    let mut b = FundAccount::open(terms("municipal", 100_000_000, "2024-01-05"), &r).unwrap(); // 150 bp
    // Outside the year: ignored.
    a.report_progress(ym("2023-12"), 1_000_000, d("2023-12-31"), false)
        .unwrap();
    // A: Jan 1 000 000 × 3 % = 30 000; Feb 2 000 000 × 3 % = 60 000.
    a.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
        .unwrap();
    a.report_progress(ym("2024-02"), 2_000_000, d("2024-02-29"), false)
        .unwrap();
    a.record_expenditure(spend("2024-03-01", 20_000, "ppe"), &r)
        .unwrap();
    // B: Jan 1 000 000 × 1.5 % = 15 000; Mar paused (required 15 000, accrued 0).
    b.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
        .unwrap();
    b.report_progress(ym("2024-03"), 1_000_000, d("2024-03-31"), true)
        .unwrap();
    b.add_subcontract(Subcontract {
        id: "sub-1".into(),
        share_fen: 20_000,
        start_date: d("2024-02-01"),
    })
    .unwrap();
    b.allocate(d("2024-02-10"), "sub-1", 10_000, None).unwrap();
    let projects = [
        ProjectLedger {
            rate_bp: a.rate_bp,
            entries: a.entries(),
        },
        ProjectLedger {
            rate_bp: b.rate_bp,
            entries: b.entries(),
        },
    ];
    // required = 30 000 + 60 000 + 15 000 + 15 000 = 120 000; accrued = 105 000;
    // used = 20 000 + 10 000 = 30 000; ratio = 30 000 × 10 000 / 120 000 = 2 500 bp < 6 000.
    // closing = 100 000 + 105 000 − 30 000 = 175 000 < 3 × 120 000 = 360 000.
    let s = enterprise_year_summary(2024, 100_000, &projects, &r).unwrap();
    assert_eq!(
        s,
        EnterpriseYearSummary {
            year: 2024,
            opening_balance_fen: 100_000,
            required_accrual_fen: 120_000,
            accrued_fen: 105_000,
            used_fen: 30_000,
            closing_balance_fen: 175_000,
            use_ratio_bp: Some(2_500),
            under_use: Some(UnderUse {
                threshold_bp: 6_000,
                report_due: d("2025-04-30"),
            }),
            paused_months: vec![ym("2024-03")],
            pause_at_next_year_start: false,
        }
    );
    // Opening 300 000 ⇒ closing 375 000 ≥ 360 000 ⇒ pause from January 2025.
    let s = enterprise_year_summary(2024, 300_000, &projects, &r).unwrap();
    assert!(s.pause_at_next_year_start);
    // Exactly 60 % is not under-use: required 30 000 (A Jan 2025 1 000 000 × 3 %),
    // used 18 000 ⇒ 6 000 bp.
    let mut c = building(100_000_000);
    c.report_progress(ym("2025-01"), 1_000_000, d("2025-01-31"), false)
        .unwrap();
    c.record_expenditure(spend("2025-02-01", 18_000, "ppe"), &r)
        .unwrap();
    let one = [ProjectLedger {
        rate_bp: 300,
        entries: c.entries(),
    }];
    let s = enterprise_year_summary(2025, 0, &one, &r).unwrap();
    assert_eq!((s.use_ratio_bp, s.under_use), (Some(6_000), None));
    // 17 999 ⇒ 5 999.67 ⇒ ratio 6 000 bp when rounded, but under-use compares exactly.
    c.reverse(2, d("2025-02-02"), "金额错误").unwrap();
    c.record_expenditure(spend("2025-02-03", 17_999, "ppe"), &r)
        .unwrap();
    let one = [ProjectLedger {
        rate_bp: 300,
        entries: c.entries(),
    }];
    let s = enterprise_year_summary(2025, 0, &one, &r).unwrap();
    assert_eq!(s.use_ratio_bp, Some(6_000));
    assert_eq!(s.under_use.unwrap().report_due, d("2026-04-30"));
    // Nothing required ⇒ no ratio, no flag.
    let s = enterprise_year_summary(2030, 0, &one, &r).unwrap();
    assert_eq!((s.use_ratio_bp, s.under_use), (None, None));
}

// --- settlement ------------------------------------------------------------------------

#[test]
fn completion_returns_the_surplus_to_the_owner() {
    let r = rules();
    let mut acc = building(10_000_000);
    // 3 000 000 × 3 % = 90 000 accrued; spent 20 000; allocated 10 000 ⇒ balance 60 000.
    acc.report_progress(ym("2024-01"), 3_000_000, d("2024-01-31"), false)
        .unwrap();
    acc.record_owner_payment(d("2024-01-15"), 90_000, None)
        .unwrap();
    acc.record_expenditure(spend("2024-02-01", 20_000, "ppe"), &r)
        .unwrap();
    acc.add_subcontract(Subcontract {
        id: "sub-1".into(),
        share_fen: 10_000,
        start_date: d("2024-01-20"),
    })
    .unwrap();
    acc.allocate(d("2024-02-05"), "sub-1", 10_000, None)
        .unwrap();
    let s = acc.settle(d("2024-12-31")).unwrap();
    assert_eq!(
        (s.balance_fen, s.surplus_fen, s.deficit_fen),
        (60_000, 60_000, 0)
    );
    assert_eq!((s.entry.accrued_fen, s.entry.paid_fen), (-60_000, -60_000));
    let t = acc.totals();
    // Balance 0; owner net paid 90 000 − 60 000 = 30 000 = spent + allocated.
    assert_eq!((t.balance_fen, t.paid_fen), (0, 30_000));
    // The ledger is closed.
    assert_eq!(
        acc.record_owner_payment(d("2025-01-01"), 1, None)
            .unwrap_err(),
        SafetyFundError::Closed
    );
    assert_eq!(
        acc.settle(d("2025-01-01")).unwrap_err(),
        SafetyFundError::Closed
    );

    // Overspent project: accrued 30 000, spent 35 000 ⇒ deficit 5 000, nothing returned.
    let mut over = building(10_000_000);
    over.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
        .unwrap();
    over.record_expenditure(spend("2024-02-01", 35_000, "ppe"), &r)
        .unwrap();
    let s = over.settle(d("2024-12-31")).unwrap();
    assert_eq!(
        (s.balance_fen, s.surplus_fen, s.deficit_fen),
        (-5_000, 0, 5_000)
    );
    assert_eq!(s.entry.accrued_fen, 0);
    assert!(s.entry.summary.contains("50.00"));
}

// --- cost plan -------------------------------------------------------------------------

#[test]
fn smart_site_cost_plan_versus_actual() {
    let r = rules();
    let mut plan = CostPlan::new();
    // 10 cameras × 1 500.00 = 15 000.00 yuan; 12 months × 200.00 = 2 400.00 yuan.
    plan.add_line(PlanLine {
        id: "L1".into(),
        item: "塔吊监控摄像机".into(),
        quantity: 10,
        unit_price_fen: 150_000,
    })
    .unwrap();
    plan.add_line(PlanLine {
        id: "L2".into(),
        item: "平台服务（月）".into(),
        quantity: 12,
        unit_price_fen: 20_000,
    })
    .unwrap();
    assert_eq!(plan.total_fen().unwrap(), 1_740_000);
    assert!(matches!(
        plan.add_line(PlanLine {
            id: "L1".into(),
            item: "dup".into(),
            quantity: 1,
            unit_price_fen: 1
        }),
        Err(SafetyFundError::DuplicatePlanLine(_))
    ));
    let at: DateTime<Utc> = "2024-02-01T08:00:00Z".parse().unwrap();
    plan.approve("usr-owner-rep", at).unwrap();
    assert_eq!(plan.approval.as_ref().unwrap().by, "usr-owner-rep");
    assert_eq!(
        plan.add_line(PlanLine {
            id: "L3".into(),
            item: "x".into(),
            quantity: 1,
            unit_price_fen: 1
        })
        .unwrap_err(),
        SafetyFundError::PlanApproved
    );

    let mut acc = building(1_000_000_000);
    acc.report_progress(ym("2024-01"), 100_000_000, d("2024-01-31"), false)
        .unwrap();
    let mut post = |date: &str, amount: i64, line: &str| {
        let mut e = spend(date, amount, "safety_informatisation");
        e.links.plan_line_id = Some(line.into());
        acc.record_expenditure(e, &r).unwrap().entry.seq
    };
    post("2024-02-10", 1_200_000, "L1");
    post("2024-03-10", 400_000, "L1");
    post("2024-03-11", 20_000, "L2");
    let wrong = post("2024-03-12", 5_000, "L2");
    post("2024-03-13", 3_000, "L9");
    acc.reverse(wrong, d("2024-03-14"), "重复入账").unwrap();
    // L1: 1 200 000 + 400 000 = 1 600 000 vs 1 500 000 ⇒ +100 000.
    // L2: 20 000 + 5 000 − 5 000 = 20 000 vs 240 000 ⇒ −220 000. L9 unplanned 3 000.
    let pva = plan.plan_vs_actual(acc.entries()).unwrap();
    assert_eq!(pva.lines[0].actual_fen, 1_600_000);
    assert_eq!(pva.lines[0].variance_fen, 100_000);
    assert_eq!(pva.lines[1].actual_fen, 20_000);
    assert_eq!(pva.lines[1].variance_fen, -220_000);
    assert_eq!(pva.planned_total_fen, 1_740_000);
    assert_eq!(pva.actual_total_fen, 1_620_000);
    assert_eq!(pva.unplanned_fen, 3_000);
}

// --- statement -------------------------------------------------------------------------

#[test]
fn amounts_and_ledger_totals_are_bounded_however_many_entries() {
    // The contract value: 10^15 fen opens an account, anything beyond does not.
    assert!(
        FundAccount::open(
            terms("building", MAX_AMOUNT_FEN + 1, "2024-01-05"),
            &rules()
        )
        .is_err()
    );
    assert!(FundAccount::open(terms("building", i64::MAX, "2024-01-05"), &rules()).is_err());
    let mut a = building(MAX_AMOUNT_FEN);
    let refused = |r: Result<&Entry>| {
        matches!(
            r,
            Err(SafetyFundError::InvalidAmount {
                field: "amount_fen",
                ..
            })
        )
    };
    for bad in [i64::MAX, MAX_AMOUNT_FEN + 1, i64::MIN, -1, 0] {
        assert!(
            refused(a.record_owner_payment(d("2024-02-01"), bad, None)),
            "{bad}"
        );
    }
    // Sums that would overflow i64 over many entries: every entry that keeps the column
    // within 10^15 is booked, every later one refused, and the totals stay exact.
    let step = MAX_AMOUNT_FEN / 1000;
    for _ in 0..1000 {
        a.record_owner_payment(d("2024-02-01"), step, None).unwrap();
    }
    for amount in [1, step, MAX_AMOUNT_FEN] {
        for _ in 0..10_000 {
            assert!(refused(a.record_owner_payment(
                d("2024-02-02"),
                amount,
                None
            )));
        }
    }
    assert_eq!(a.entries().len(), 1000);
    assert_eq!(a.totals().paid_fen, MAX_AMOUNT_FEN);
    // Spending too, and its refusal appends nothing.
    a.record_expenditure(spend("2024-03-01", MAX_AMOUNT_FEN, "ppe"), &rules())
        .unwrap();
    let e = a
        .record_expenditure(spend("2024-03-02", 1, "ppe"), &rules())
        .unwrap_err();
    assert!(
        matches!(
            e,
            SafetyFundError::InvalidAmount {
                field: "amount_fen",
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(a.entries().len(), 1001);
    assert_eq!(a.totals().balance_fen, -MAX_AMOUNT_FEN);
    // A reversal brings the column back down, and room for one more.
    a.reverse(1001, d("2024-03-03"), "录错").unwrap();
    a.record_expenditure(spend("2024-03-04", MAX_AMOUNT_FEN, "ppe"), &rules())
        .unwrap();
    assert!(a.ledger.verify().is_ok());
    // Progress up to the contract (10^15), then no variation may lift it beyond 10^15.
    a.report_progress(ym("2024-03"), MAX_AMOUNT_FEN, d("2024-03-31"), false)
        .unwrap();
    let v = |amount_fen: i64| ContractVariation {
        date: d("2024-04-01"),
        amount_fen,
        reference: "BG-1".into(),
    };
    for bad in [1, MAX_AMOUNT_FEN, i64::MAX, i64::MIN] {
        assert!(
            matches!(
                a.record_variation(v(bad)),
                Err(SafetyFundError::InvalidAmount { .. })
            ),
            "{bad}"
        );
    }
    assert!(a.variations.is_empty());
}

#[test]
fn plan_lines_and_prepayment_windows_are_bounded() {
    let line = |quantity: i64, unit_price_fen: i64| PlanLine {
        id: format!("L{quantity}-{unit_price_fen}"),
        item: "摄像机".into(),
        quantity,
        unit_price_fen,
    };
    let mut plan = CostPlan::new();
    for (q, p) in [
        (i64::MAX, 2),
        (2, i64::MAX),
        (1_000_000_000_001, 1),
        (1, MAX_AMOUNT_FEN + 1),
    ] {
        assert!(
            matches!(
                plan.add_line(line(q, p)),
                Err(SafetyFundError::InvalidAmount { .. })
            ),
            "{q} × {p}"
        );
    }
    // i64 overflow of quantity × price is refused, not wrapped.
    assert!(
        plan.add_line(line(1_000_000_000_000, 1_000_000_000))
            .is_err()
    );
    plan.add_line(line(1, MAX_AMOUNT_FEN)).unwrap();
    // The plan's total is bounded like any amount.
    assert!(plan.add_line(line(1, 1)).is_err());
    assert_eq!(plan.total_fen().unwrap(), MAX_AMOUNT_FEN);

    let terms = |within_days: u32| CivilizedTerms {
        year_planned_fen: BTreeMap::from([(2026, 100)]),
        prepay_rule: CivPrepayRule::Contract {
            min_share_bp: 6000,
            within_days,
        },
    };
    assert!(terms(MAX_PREPAY_DAYS).validate().is_ok());
    for bad in [0, MAX_PREPAY_DAYS + 1, u32::MAX] {
        assert!(
            matches!(
                terms(bad).validate(),
                Err(SafetyFundError::InvalidAmount {
                    field: "within_days",
                    ..
                })
            ),
            "{bad}"
        );
    }
}

#[test]
fn yuan_formatting() {
    assert_eq!(yuan(123_456), "1234.56");
    assert_eq!(yuan(-5), "-0.05");
    assert_eq!(yuan(0), "0.00");
    assert_eq!(yuan(100), "1.00");
    assert_eq!(yuan(-123_400), "-1234.00");
    assert_eq!(yuan(i64::MIN), "-92233720368547758.08");
}

#[test]
fn statement_rows_carry_the_running_balance() {
    let r = rules();
    let mut acc = building(10_000_000);
    acc.report_progress(ym("2024-01"), 1_234_567, d("2024-01-31"), false)
        .unwrap(); // 1 234 567 × 3 % = 37 037.01 ⇒ 37 037
    acc.record_owner_payment(d("2024-02-01"), 50_000, None)
        .unwrap();
    acc.record_expenditure(spend("2024-02-03", 12_345, "ppe"), &r)
        .unwrap();
    acc.add_subcontract(Subcontract {
        id: "sub-1".into(),
        share_fen: 10_000,
        start_date: d("2024-02-01"),
    })
    .unwrap();
    acc.allocate(d("2024-02-04"), "sub-1", 5_000, None).unwrap();
    let rows = statement_rows(acc.entries());
    assert_eq!(
        STATEMENT_HEADERS,
        ["日期", "摘要", "类别", "计提(元)", "支出(元)", "余额(元)"]
    );
    let cells: Vec<[String; 6]> = rows.iter().map(StatementRow::cells).collect();
    assert_eq!(cells[0][0], "2024-01-31");
    assert!(cells[0][1].starts_with("2024-01 按进度计提"));
    assert_eq!(&cells[0][3..], ["370.37", "0.00", "370.37"]);
    // Owner payment: no balance effect.
    assert_eq!(&cells[1][3..], ["0.00", "0.00", "370.37"]);
    // 37 037 − 12 345 = 24 692.
    assert_eq!(&cells[2][2..], ["ppe", "0.00", "123.45", "246.92"]);
    // Allocation shows under 支出: 24 692 − 5 000 = 19 692.
    assert_eq!(&cells[3][3..], ["0.00", "50.00", "196.92"]);
    assert_eq!(rows.last().unwrap().balance_fen, acc.totals().balance_fen);
}

// --- hash chain ------------------------------------------------------------------------

fn sample_ledger() -> FundAccount {
    let r = rules();
    let mut acc = building(100_000_000);
    acc.report_progress(ym("2024-01"), 1_000_000, d("2024-01-31"), false)
        .unwrap();
    acc.record_owner_payment(d("2024-02-01"), 50_000, Some("回单 \"A\"\n".into()))
        .unwrap();
    acc.record_expenditure(spend("2024-02-03", 12_345, "ppe"), &r)
        .unwrap();
    acc.report_progress(ym("2024-01"), 1_100_000, d("2024-02-05"), false)
        .unwrap();
    acc.reverse(3, d("2024-02-06"), "录入错误").unwrap();
    acc
}

#[test]
fn hash_chain_detects_edits_at_the_edited_entry() {
    let acc = sample_ledger();
    let entries = acc.entries().to_vec();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0].prev_hash, GENESIS_HASH);
    for w in entries.windows(2) {
        assert_eq!(w[1].prev_hash, w[0].hash);
    }
    assert!(verify(&entries).is_ok());

    // Editing entry 3's amount: its own hash no longer matches ⇒ broken at seq 3.
    let mut tampered = entries.clone();
    tampered[2].spent_fen = 1;
    let err = verify(&tampered).unwrap_err();
    assert_eq!(err.seq, 3);
    assert_eq!(err.found, entries[2].hash);
    assert_eq!(err.expected, tampered[2].compute_hash());
    // Editing and re-hashing entry 3 ⇒ entry 4's link breaks.
    tampered[2].hash = tampered[2].compute_hash();
    let err = verify(&tampered).unwrap_err();
    assert_eq!(
        (err.seq, err.expected.as_str()),
        (4, tampered[2].hash.as_str())
    );
    // Dropping entry 2 ⇒ the seq gap shows at the next entry.
    let mut dropped = entries.clone();
    dropped.remove(1);
    assert_eq!(verify(&dropped).unwrap_err().seq, 3);
    // A stored ledger with a broken chain is refused on load.
    let json = serde_json::to_string(&tampered).unwrap();
    assert!(serde_json::from_str::<Ledger>(&json).is_err());
    let json = serde_json::to_string(&entries).unwrap();
    assert_eq!(
        serde_json::from_str::<Ledger>(&json).unwrap().entries(),
        &entries[..]
    );
}

#[test]
fn canonical_form_is_serde_json_without_the_hash() {
    for e in sample_ledger().entries() {
        let mut v = serde_json::to_value(e).unwrap();
        v.as_object_mut().unwrap().remove("hash");
        let canonical: serde_json::Value = serde_json::from_str(&e.canonical()).unwrap();
        assert_eq!(canonical, v);
        // Byte-identical too (serde_json keeps field order for structs).
        assert_eq!(
            serde_json::to_string(&v).unwrap().len(),
            e.canonical().len()
        );
    }
}

/// A small LCG (Numerical Recipes constants), so the sequence is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> i64 {
        (self.next() % n) as i64
    }
}

#[test]
fn invariant_over_a_long_pseudo_random_sequence() {
    let r = rules();
    let categories: Vec<String> = allowed_categories(Regime::R2022, &r)
        .iter()
        .map(|c| c.name.clone())
        .collect();
    let mut acc = building(10_000_000_000);
    acc.add_subcontract(Subcontract {
        id: "sub-1".into(),
        share_fen: 1_000_000,
        start_date: d("2024-01-01"),
    })
    .unwrap();
    let mut rng = Lcg(20_240_101);
    // Independently kept sums.
    let (mut accrued, mut spent, mut allocated, mut paid) = (0i64, 0i64, 0i64, 0i64);
    let mut month_progress: BTreeMap<YearMonth, i64> = BTreeMap::new();
    let mut day = d("2024-01-01");
    for _ in 0..600 {
        day = day.succ_opt().unwrap();
        let before = acc.entries().len();
        match rng.below(10) {
            0..=2 => {
                // Report (or correct) one of the last few months.
                let m = YearMonth::of(day - Days::new(rng.below(90) as u64)).unwrap();
                let progress = rng.below(5_000_000);
                let paused = rng.below(8) == 0;
                let held = acc.month_state(m);
                acc.report_progress(m, progress, day, paused).unwrap();
                let paused = if held.entries > 0 {
                    held.paused
                } else {
                    paused
                };
                let want = if paused {
                    0
                } else {
                    accrual_fen(progress, 300).unwrap()
                };
                accrued += want - held.accrued_fen;
                month_progress.insert(m, progress);
                assert_eq!(acc.month_state(m).accrued_fen, want);
            }
            3..=5 => {
                let amount = 1 + rng.below(100_000);
                let c = &categories[rng.below(categories.len() as u64) as usize];
                acc.record_expenditure(spend(&day.to_string(), amount, c), &r)
                    .unwrap();
                spent += amount;
            }
            6 => {
                let amount = 1 + rng.below(50_000);
                acc.allocate(day, "sub-1", amount, None).unwrap();
                allocated += amount;
            }
            7 => {
                let amount = 1 + rng.below(200_000);
                acc.record_owner_payment(day, amount, None).unwrap();
                paid += amount;
            }
            _ => {
                // Reverse a random reversible, not yet reversed entry.
                let n = acc.entries().len() as u64;
                if n == 0 {
                    continue;
                }
                let seq = 1 + rng.below(n) as u64;
                let e = acc.ledger.get(seq).unwrap().clone();
                if let Ok(rev) = acc.reverse(seq, day, "随机冲销") {
                    assert_eq!(rev.reverses, Some(seq));
                    accrued -= e.accrued_fen;
                    spent -= e.spent_fen;
                    allocated -= e.allocated_fen;
                    paid -= e.paid_fen;
                    if let (Some(m), Some(p)) = (e.month, e.progress_fen) {
                        *month_progress.get_mut(&m).unwrap() -= p;
                    }
                }
            }
        }
        // Running balance = formula after every step.
        let t = acc.totals();
        assert_eq!(
            (t.accrued_fen, t.spent_fen, t.allocated_fen, t.paid_fen),
            (accrued, spent, allocated, paid)
        );
        assert_eq!(t.balance_fen, accrued - spent - allocated);
        if acc.entries().len() > before {
            let last = acc.entries().last().unwrap();
            assert_eq!(last.seq as usize, acc.entries().len());
        }
    }
    for (m, p) in &month_progress {
        assert_eq!(acc.month_state(*m).progress_fen, *p, "{m}");
    }
    let entries = acc.entries().to_vec();
    assert!(entries.len() > 400, "{}", entries.len());
    assert!(entries.iter().any(|e| e.kind == EntryKind::Correction));
    assert!(entries.iter().any(|e| e.kind == EntryKind::Reversal));
    assert!(entries.iter().any(|e| e.paused));
    assert!(verify(&entries).is_ok());
    let rows = statement_rows(&entries);
    assert_eq!(
        rows.last().unwrap().balance_fen,
        accrued - spent - allocated
    );
    // Editing any single entry's amount is detected at exactly that seq.
    for i in 0..entries.len() {
        let mut t = entries.clone();
        match rng.below(4) {
            0 => t[i].accrued_fen += 1,
            1 => t[i].spent_fen -= 1,
            2 => t[i].allocated_fen += 100,
            _ => t[i].paid_fen += 7,
        }
        assert_eq!(verify(&t).unwrap_err().seq, i as u64 + 1);
    }
}

fn civ_exp(date: &str, fen: i64, category: &str, invoice: Option<&str>) -> Expenditure {
    Expenditure {
        date: d(date),
        amount_fen: fen,
        category: category.into(),
        summary: String::new(),
        evidence_ref: "voucher-1".into(),
        links: Links {
            invoice_id: invoice.map(str::to_owned),
            ..Links::default()
        },
    }
}

#[test]
fn civilized_prepayment_per_year() {
    let r = rules();
    // 2026 planned ¥1,000,000.00 = 100 000 000 fen; GB 50500: ≥ 60 % within 28 days of the
    // start 2026-03-10 → due 2026-04-07, required ceil(100 000 000 × 6000 / 10 000)
    // = 60 000 000. 2027 planned 80 000 000 from 2027-01-01 → due 2027-01-29, required
    // 48 000 000.
    let mut acc = CivilizedAccount {
        terms: CivilizedTerms {
            year_planned_fen: BTreeMap::from([(2026, 100_000_000), (2027, 80_000_000)]),
            prepay_rule: CivPrepayRule::Gb50500,
        },
        ledger: Ledger::new(),
    };
    let start = Some(d("2026-03-10"));
    acc.record_payment(d("2026-03-20"), 50_000_000, None)
        .unwrap();
    // Before the due date: no warning stage for this rule.
    assert!(acc.flags(start, d("2026-04-06"), &r).unwrap().is_empty());
    let f = acc.flags(start, d("2026-04-07"), &r).unwrap();
    assert_eq!(f.len(), 1);
    assert_eq!(f[0].code, FEE_CIV_PREPAY);
    assert_eq!(f[0].level, FlagLevel::Breach);
    assert_eq!(f[0].due_date, d("2026-04-07"));
    assert_eq!((f[0].required_fen, f[0].paid_fen), (60_000_000, 50_000_000));
    assert_eq!(f[0].subject.as_deref(), Some("2026"));
    // A late payment does not cure the breach.
    acc.record_payment(d("2026-04-10"), 10_000_000, None)
        .unwrap();
    assert_eq!(acc.flags(start, d("2026-05-01"), &r).unwrap().len(), 1);
    // 2027: 2026 payments do not count; 48 000 000 paid on 2027-01-15 meets the rule.
    let f = acc.flags(start, d("2027-01-29"), &r).unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!((f[1].required_fen, f[1].paid_fen), (48_000_000, 0));
    acc.record_payment(d("2027-01-15"), 48_000_000, None)
        .unwrap();
    let f = acc.flags(start, d("2027-02-01"), &r).unwrap();
    assert_eq!(f.len(), 1, "{f:?}");
    // Contract rule instead: 50 % within 14 days of 2026-03-10 → due 2026-03-24,
    // required 50 000 000, paid 50 000 000 on 2026-03-20: met.
    acc.terms.prepay_rule = CivPrepayRule::Contract {
        min_share_bp: 5000,
        within_days: 14,
    };
    assert!(acc.flags(start, d("2026-12-31"), &r).unwrap().is_empty());
    // Without a start date there is no clock.
    assert!(acc.flags(None, d("2027-12-31"), &r).unwrap().is_empty());
}

#[test]
fn civilized_ledger_balance_categories_and_invoices() {
    let r = rules();
    let mut acc = CivilizedAccount::default();
    acc.record_payment(d("2026-03-20"), 100_000, None).unwrap();
    // A safety-production category is not a civilized one.
    assert!(matches!(
        acc.record_expenditure(civ_exp("2026-03-21", 100, "ppe", None), &r),
        Err(SafetyFundError::CivilizedDiversion { .. })
    ));
    let out = acc
        .record_expenditure(
            civ_exp("2026-03-22", 60_000, "smart_site", Some("inv-1")),
            &r,
        )
        .unwrap();
    // balance 100 000 − 60 000 = 40 000 fen.
    assert_eq!((out.balance_fen, out.overspent), (40_000, false));
    assert!(matches!(
        acc.record_expenditure(
            civ_exp("2026-03-23", 60_000, "smart_site", Some("inv-1")),
            &r
        ),
        Err(SafetyFundError::InvoiceAlreadyPosted { seq: 2, .. })
    ));
    acc.reverse(2, d("2026-03-24"), "wrong project").unwrap();
    // After the reversal the invoice may be posted again; 100 000 − 60 000 − 60 000 + 60 000.
    let out = acc
        .record_expenditure(
            civ_exp("2026-03-25", 60_000, "smart_site", Some("inv-1")),
            &r,
        )
        .unwrap();
    assert_eq!(out.balance_fen, 40_000);
    let over = acc
        .record_expenditure(
            civ_exp("2026-03-26", 50_000, "safety_construction", None),
            &r,
        )
        .unwrap();
    // 40 000 − 50 000 = −10 000: allowed, flagged.
    assert_eq!((over.balance_fen, over.overspent), (-10_000, true));
    let t = acc.ledger.totals();
    assert_eq!(t.balance_fen, t.accrued_fen - t.spent_fen - t.allocated_fen);
    assert_eq!(t.paid_fen, 100_000);
    assert!(acc.ledger.verify().is_ok());
    let rows = statement_rows(acc.entries());
    assert_eq!(rows.last().unwrap().balance_fen, -10_000);
}

#[test]
fn invoice_categories_are_validated_against_the_lists() {
    let mut r = rules();
    assert_eq!(
        r.invoice_category.get(Regime::R2022),
        "safety_informatisation"
    );
    assert!(check_category(Regime::R2012, r.invoice_category.get(Regime::R2012), &r).is_ok());
    r.invoice_category.r2012 = "safety_informatisation".into();
    assert!(r.validate().is_err(), "not in the 2012 list");
    let mut r = rules();
    r.civilized_invoice_category = "ppe".into();
    assert!(r.validate().is_err());
}
