//! Ledger.

use super::*;

/// What a ledger entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A month's first progress report (计提).
    Accrual,
    /// A later report for the same month: the delta against what the month already holds.
    Correction,
    /// Money received from the owner (建设单位).
    OwnerPayment,
    /// Money passed to a subcontractor (分包单位).
    Allocation,
    /// A use of the fund (支出).
    Expenditure,
    /// Cancels an earlier entry by negating its amounts.
    Reversal,
    /// Completion settlement (竣工决算): the surplus returned to the owner.
    Settlement,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Accrual => "accrual",
            EntryKind::Correction => "correction",
            EntryKind::OwnerPayment => "owner_payment",
            EntryKind::Allocation => "allocation",
            EntryKind::Expenditure => "expenditure",
            EntryKind::Reversal => "reversal",
            EntryKind::Settlement => "settlement",
        }
    }
}

/// Optional links of an entry to other concerns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Links {
    #[serde(default)]
    pub device_id: Option<String>,
    #[serde(default)]
    pub subscription_id: Option<String>,
    #[serde(default)]
    pub invoice_id: Option<String>,
    /// The subcontract an allocation goes to.
    #[serde(default)]
    pub subcontract_id: Option<String>,
    /// The smart-site cost-plan line an expenditure realises.
    #[serde(default)]
    pub plan_line_id: Option<String>,
}

/// One ledger entry. Amount columns are signed fen; reversals and corrections carry negative
/// amounts where they take something back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// 1-based position in the ledger.
    pub seq: u64,
    pub date: NaiveDate,
    pub kind: EntryKind,
    /// 摘要.
    pub summary: String,
    #[serde(default)]
    pub category: Option<String>,
    /// The progress month of accrual and correction entries (and of their reversals).
    #[serde(default)]
    pub month: Option<YearMonth>,
    /// The month's progress (建安工作量) this entry adds (a delta for corrections).
    #[serde(default)]
    pub progress_fen: Option<i64>,
    /// Accrual paused by the enterprise 3× rule (第五十条).
    #[serde(default)]
    pub paused: bool,
    /// The balance was negative after this expenditure or allocation (allowed, flagged).
    #[serde(default)]
    pub overspent: bool,
    pub accrued_fen: i64,
    pub spent_fen: i64,
    pub allocated_fen: i64,
    pub paid_fen: i64,
    #[serde(default)]
    pub links: Links,
    #[serde(default)]
    pub evidence_ref: Option<String>,
    /// The seq a reversal cancels.
    #[serde(default)]
    pub reverses: Option<u64>,
    pub prev_hash: String,
    /// Lower-case hex SHA-256 of `prev_hash ‖ canonical(entry without hash)`.
    pub hash: String,
}

/// Appends `s` as a JSON string literal (the escaping serde_json uses).
pub(super) fn push_json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

pub(super) fn push_opt_str(out: &mut String, v: Option<&str>) {
    match v {
        Some(s) => push_json_str(out, s),
        None => out.push_str("null"),
    }
}

pub(super) fn push_opt_num<T: fmt::Display>(out: &mut String, v: Option<T>) {
    match v {
        Some(n) => out.push_str(&n.to_string()),
        None => out.push_str("null"),
    }
}

impl Entry {
    /// A blank entry to fill and hand to [`Ledger::append`] (which sets seq, prev_hash, hash).
    pub fn draft(date: NaiveDate, kind: EntryKind, summary: impl Into<String>) -> Entry {
        Entry {
            seq: 0,
            date,
            kind,
            summary: summary.into(),
            category: None,
            month: None,
            progress_fen: None,
            paused: false,
            overspent: false,
            accrued_fen: 0,
            spent_fen: 0,
            allocated_fen: 0,
            paid_fen: 0,
            links: Links::default(),
            evidence_ref: None,
            reverses: None,
            prev_hash: String::new(),
            hash: String::new(),
        }
    }

    /// The canonical serialisation hashed into the chain: compact JSON of every field except
    /// `hash`, in declaration order, absent options as `null` (byte-identical to serde_json's
    /// output for the same fields).
    pub fn canonical(&self) -> String {
        let mut o = String::with_capacity(512);
        o.push_str("{\"seq\":");
        o.push_str(&self.seq.to_string());
        o.push_str(",\"date\":\"");
        o.push_str(&self.date.format("%Y-%m-%d").to_string());
        o.push_str("\",\"kind\":\"");
        o.push_str(self.kind.as_str());
        o.push_str("\",\"summary\":");
        push_json_str(&mut o, &self.summary);
        o.push_str(",\"category\":");
        push_opt_str(&mut o, self.category.as_deref());
        o.push_str(",\"month\":");
        match self.month {
            Some(m) => push_json_str(&mut o, &m.to_string()),
            None => o.push_str("null"),
        }
        o.push_str(",\"progress_fen\":");
        push_opt_num(&mut o, self.progress_fen);
        o.push_str(&format!(
            ",\"paused\":{},\"overspent\":{},\"accrued_fen\":{},\"spent_fen\":{},\"allocated_fen\":{},\"paid_fen\":{}",
            self.paused,
            self.overspent,
            self.accrued_fen,
            self.spent_fen,
            self.allocated_fen,
            self.paid_fen
        ));
        let l = &self.links;
        o.push_str(",\"links\":{\"device_id\":");
        push_opt_str(&mut o, l.device_id.as_deref());
        o.push_str(",\"subscription_id\":");
        push_opt_str(&mut o, l.subscription_id.as_deref());
        o.push_str(",\"invoice_id\":");
        push_opt_str(&mut o, l.invoice_id.as_deref());
        o.push_str(",\"subcontract_id\":");
        push_opt_str(&mut o, l.subcontract_id.as_deref());
        o.push_str(",\"plan_line_id\":");
        push_opt_str(&mut o, l.plan_line_id.as_deref());
        o.push_str("},\"evidence_ref\":");
        push_opt_str(&mut o, self.evidence_ref.as_deref());
        o.push_str(",\"reverses\":");
        push_opt_num(&mut o, self.reverses);
        o.push_str(",\"prev_hash\":");
        push_json_str(&mut o, &self.prev_hash);
        o.push('}');
        o
    }

    /// `hex(SHA-256(prev_hash ‖ canonical))`.
    pub fn compute_hash(&self) -> String {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(self.prev_hash.as_bytes());
        ctx.update(self.canonical().as_bytes());
        let digest = ctx.finish();
        let mut hex = String::with_capacity(64);
        for b in digest.as_ref() {
            hex.push_str(&format!("{b:02x}"));
        }
        hex
    }

    /// The balance effect of this entry: `accrued − spent − allocated`.
    pub fn balance_effect_fen(&self) -> i64 {
        self.accrued_fen
            .saturating_sub(self.spent_fen)
            .saturating_sub(self.allocated_fen)
    }
}

/// The first broken link of a chain: at `seq`, `expected` (recomputed or required) differs from
/// `found` (stored). A mismatch of the entry's own hash means the entry was edited; a mismatch of
/// `prev_hash` means an earlier entry was replaced, removed or re-hashed; a seq mismatch means
/// entries were dropped or reordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("ledger chain broken at seq {seq}: expected {expected}, found {found}")]
pub struct BrokenLink {
    pub seq: u64,
    pub expected: String,
    pub found: String,
}

/// Checks the chain from the genesis hash; reports the first broken link.
pub fn verify(entries: &[Entry]) -> Result<(), BrokenLink> {
    let mut prev = GENESIS_HASH;
    for (i, e) in entries.iter().enumerate() {
        let want_seq = i as u64 + 1;
        if e.seq != want_seq {
            return Err(BrokenLink {
                seq: e.seq,
                expected: format!("seq {want_seq}"),
                found: format!("seq {}", e.seq),
            });
        }
        if e.prev_hash != prev {
            return Err(BrokenLink {
                seq: e.seq,
                expected: prev.to_owned(),
                found: e.prev_hash.clone(),
            });
        }
        let h = e.compute_hash();
        if h != e.hash {
            return Err(BrokenLink {
                seq: e.seq,
                expected: h,
                found: e.hash.clone(),
            });
        }
        prev = &e.hash;
    }
    Ok(())
}

/// Column totals of a ledger; `balance = accrued − spent − allocated` (owner payments are cash
/// received and do not change the balance).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    pub accrued_fen: i64,
    pub spent_fen: i64,
    pub allocated_fen: i64,
    pub paid_fen: i64,
    pub balance_fen: i64,
}

/// Sums the columns (saturating; input amounts are capped at [`MAX_AMOUNT_FEN`], so realistic
/// ledgers never come near `i64`).
pub fn totals(entries: &[Entry]) -> Totals {
    let mut t = Totals::default();
    for e in entries {
        t.accrued_fen = t.accrued_fen.saturating_add(e.accrued_fen);
        t.spent_fen = t.spent_fen.saturating_add(e.spent_fen);
        t.allocated_fen = t.allocated_fen.saturating_add(e.allocated_fen);
        t.paid_fen = t.paid_fen.saturating_add(e.paid_fen);
    }
    t.balance_fen = t
        .accrued_fen
        .saturating_sub(t.spent_fen)
        .saturating_sub(t.allocated_fen);
    t
}

/// The balance of the entries dated before `date` (e.g. the balance at a month start).
pub fn balance_before(entries: &[Entry], date: NaiveDate) -> i64 {
    entries
        .iter()
        .filter(|e| e.date < date)
        .fold(0i64, |acc, e| acc.saturating_add(e.balance_effect_fen()))
}

/// An append-only, hash-chained ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Vec<Entry>", into = "Vec<Entry>")]
pub struct Ledger {
    entries: Vec<Entry>,
}

impl TryFrom<Vec<Entry>> for Ledger {
    type Error = BrokenLink;

    fn try_from(entries: Vec<Entry>) -> Result<Self, BrokenLink> {
        Ledger::from_entries(entries)
    }
}

impl From<Ledger> for Vec<Entry> {
    fn from(l: Ledger) -> Self {
        l.entries
    }
}

impl Ledger {
    pub fn new() -> Self {
        Ledger::default()
    }

    /// Rebuilds a stored ledger, refusing a broken chain.
    pub fn from_entries(entries: Vec<Entry>) -> Result<Self, BrokenLink> {
        verify(&entries)?;
        Ok(Ledger { entries })
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn get(&self, seq: u64) -> Option<&Entry> {
        let i = usize::try_from(seq.checked_sub(1)?).ok()?;
        self.entries.get(i)
    }

    /// The hash the next entry links to.
    pub fn last_hash(&self) -> &str {
        self.entries
            .last()
            .map_or(GENESIS_HASH, |e| e.hash.as_str())
    }

    /// Appends `draft`, setting its seq, prev_hash and hash; returns the stored entry.
    ///
    /// Every column total of the ledger (accrued, spent, allocated, paid) stays within
    /// ±[`MAX_AMOUNT_FEN`]: an entry that would take one beyond is refused as an
    /// [`SafetyFundError::InvalidAmount`] of `field` (the input that brought the amount), and
    /// nothing is appended. So the sums of a stored ledger are exact and its balance is far from
    /// `i64` overflow, however many entries it holds.
    pub fn append(&mut self, mut draft: Entry, field: &'static str) -> Result<&Entry> {
        let t = self.totals();
        for (total, amount) in [
            (t.accrued_fen, draft.accrued_fen),
            (t.spent_fen, draft.spent_fen),
            (t.allocated_fen, draft.allocated_fen),
            (t.paid_fen, draft.paid_fen),
        ] {
            if smartsite_shared::domain::bounds::sum_within([total, amount], MAX_AMOUNT_FEN)
                .is_none()
            {
                return Err(SafetyFundError::InvalidAmount {
                    field,
                    amount_fen: amount,
                    expected: "a ledger's totals within ±10^15 fen",
                });
            }
        }
        draft.seq = self.entries.len() as u64 + 1;
        draft.prev_hash = self.last_hash().to_owned();
        draft.hash = draft.compute_hash();
        self.entries.push(draft);
        let i = self.entries.len() - 1;
        Ok(&self.entries[i])
    }

    pub fn totals(&self) -> Totals {
        totals(&self.entries)
    }

    pub fn verify(&self) -> Result<(), BrokenLink> {
        verify(&self.entries)
    }

    /// Appends an expenditure whose amount and category the account already checked: evidence
    /// required, an invoice posted at most once, spending beyond the balance allowed and flagged
    /// `overspent`; `default_summary` when the expenditure has none.
    pub(super) fn append_expenditure(
        &mut self,
        exp: Expenditure,
        default_summary: &str,
    ) -> Result<ExpenditureOutcome> {
        if exp.evidence_ref.trim().is_empty() {
            return Err(SafetyFundError::Missing {
                field: "evidence_ref",
            });
        }
        self.check_invoice_unposted(&exp.links)?;
        let balance = sub(self.totals().balance_fen, exp.amount_fen)?;
        let summary = if exp.summary.trim().is_empty() {
            default_summary.to_owned()
        } else {
            exp.summary
        };
        let mut e = Entry::draft(exp.date, EntryKind::Expenditure, summary);
        e.category = Some(exp.category);
        e.spent_fen = exp.amount_fen;
        e.overspent = balance < 0;
        e.links = exp.links;
        e.evidence_ref = Some(exp.evidence_ref);
        let entry = self.append(e, "amount_fen")?.clone();
        Ok(ExpenditureOutcome {
            overspent: entry.overspent,
            entry,
            balance_fen: balance,
        })
    }

    /// The reversal entry that cancels `seq`, if any.
    pub fn reversed_by(&self, seq: u64) -> Option<u64> {
        self.entries
            .iter()
            .find(|e| e.kind == EntryKind::Reversal && e.reverses == Some(seq))
            .map(|e| e.seq)
    }

    /// Refuses a second posting of an invoice (unless the first was reversed).
    fn check_invoice_unposted(&self, links: &Links) -> Result<()> {
        let Some(inv) = &links.invoice_id else {
            return Ok(());
        };
        match self.entries.iter().find(|e| {
            e.kind == EntryKind::Expenditure
                && e.links.invoice_id.as_ref() == Some(inv)
                && self.reversed_by(e.seq).is_none()
        }) {
            Some(p) => Err(SafetyFundError::InvoiceAlreadyPosted {
                invoice_id: inv.clone(),
                seq: p.seq,
            }),
            None => Ok(()),
        }
    }

    /// What the entries booked for invoice `invoice_id` still spend: its expenditure less what
    /// credit notes, voids and reversals took back.
    pub fn invoice_net_fen(&self, invoice_id: &str) -> i64 {
        self.entries
            .iter()
            .filter(|e| e.links.invoice_id.as_deref() == Some(invoice_id))
            .fold(0i64, |acc, e| acc.saturating_add(e.spent_fen))
    }

    /// The draft that takes back (part of) what invoice `invoice_id` booked, after billing
    /// credited or voided it (see [`TakeBack`]). Never edits the expenditure: a credit note is a
    /// `correction` entry of minus its amount; a void is the `reversal` of the expenditure when
    /// nothing was credited yet, else a `correction` of minus what the invoice still holds. Both
    /// keep the expenditure's category and links. Each credit note and the void are taken at
    /// most once ([`SafetyFundError::CreditNoteAlreadyPosted`],
    /// [`SafetyFundError::NothingToTakeBack`]).
    fn take_back_draft(&self, invoice_id: &str, take: &TakeBack, date: NaiveDate) -> Result<Entry> {
        let booked = self.entries.iter().rev().find(|e| {
            e.kind == EntryKind::Expenditure
                && e.links.invoice_id.as_deref() == Some(invoice_id)
                && self.reversed_by(e.seq).is_none()
        });
        let linked = || {
            self.entries
                .iter()
                .filter(|e| e.links.invoice_id.as_deref() == Some(invoice_id))
        };
        let Some(booked) = booked else {
            // A void booked as the expenditure's reversal leaves no expenditure standing.
            if linked().any(|e| e.kind == EntryKind::Expenditure) {
                return Err(SafetyFundError::NothingToTakeBack {
                    invoice_id: invoice_id.to_owned(),
                });
            }
            return Err(SafetyFundError::InvoiceNotPosted {
                invoice_id: invoice_id.to_owned(),
            });
        };
        let invoice_no = booked.evidence_ref.clone().unwrap_or_default();
        let net = self.invoice_net_fen(invoice_id);
        let (amount, summary, evidence) = match take {
            TakeBack::Credit {
                note_id,
                amount_fen,
            } => {
                if let Some(e) = linked().find(|e| {
                    e.kind == EntryKind::Correction && e.evidence_ref.as_ref() == Some(note_id)
                }) {
                    return Err(SafetyFundError::CreditNoteAlreadyPosted {
                        note_id: note_id.clone(),
                        seq: e.seq,
                    });
                }
                check_amount("amount_fen", *amount_fen, false)?;
                if *amount_fen > net {
                    return Err(SafetyFundError::InvalidAmount {
                        field: "amount_fen",
                        amount_fen: *amount_fen,
                        expected: "at most what the invoice still holds in the ledger",
                    });
                }
                (
                    *amount_fen,
                    format!("红字冲减：发票 {invoice_no}，红字发票 {note_id}"),
                    note_id.clone(),
                )
            }
            TakeBack::Void => {
                if net <= 0 {
                    return Err(SafetyFundError::NothingToTakeBack {
                        invoice_id: invoice_id.to_owned(),
                    });
                }
                if net == booked.spent_fen && linked().count() == 1 {
                    return self.reversal_draft(
                        booked.seq,
                        date,
                        &format!("发票 {invoice_no} 作废"),
                    );
                }
                (
                    net,
                    format!("发票 {invoice_no} 作废：冲减未红冲余额"),
                    invoice_no.clone(),
                )
            }
        };
        let mut e = Entry::draft(date, EntryKind::Correction, summary);
        e.category = booked.category.clone();
        e.spent_fen = -amount;
        e.links = booked.links.clone();
        e.evidence_ref = Some(evidence);
        Ok(e)
    }

    /// Appends the entry that takes back (part of) invoice `invoice_id` (see
    /// [`Ledger::take_back_draft`]).
    pub fn take_back(
        &mut self,
        invoice_id: &str,
        take: &TakeBack,
        date: NaiveDate,
    ) -> Result<&Entry> {
        let e = self.take_back_draft(invoice_id, take, date)?;
        self.append(e, "amount_fen")
    }

    /// The reversal draft of entry `seq`: its amounts negated, its month, progress, category and
    /// links kept (so per-month and per-line sums stay right). Reversals and settlements cannot
    /// be reversed; an entry is reversed at most once.
    pub(super) fn reversal_draft(&self, seq: u64, date: NaiveDate, reason: &str) -> Result<Entry> {
        let orig = self.get(seq).ok_or(SafetyFundError::UnknownEntry { seq })?;
        if matches!(orig.kind, EntryKind::Reversal | EntryKind::Settlement) {
            return Err(SafetyFundError::NotReversible {
                seq,
                kind: orig.kind,
            });
        }
        if let Some(by) = self.reversed_by(seq) {
            return Err(SafetyFundError::AlreadyReversed { seq, by });
        }
        if reason.trim().is_empty() {
            return Err(SafetyFundError::Missing { field: "reason" });
        }
        let mut e = Entry::draft(
            date,
            EntryKind::Reversal,
            format!("冲销第{seq}笔：{reason}"),
        );
        e.category = orig.category.clone();
        e.month = orig.month;
        e.progress_fen = orig.progress_fen.map(|p| -p);
        e.paused = orig.paused;
        e.accrued_fen = -orig.accrued_fen;
        e.spent_fen = -orig.spent_fen;
        e.allocated_fen = -orig.allocated_fen;
        e.paid_fen = -orig.paid_fen;
        e.links = orig.links.clone();
        e.evidence_ref = orig.evidence_ref.clone();
        e.reverses = Some(seq);
        Ok(e)
    }
}
