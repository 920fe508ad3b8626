//! Every key format of the pooled tables, in one place, unit-tested byte for byte.
//!
//! Partition keys always start with `I#{integrator_id}#`: the trailing delimiter means a prefix
//! query for integrator `acme` can never match `acme-corp`. Ids are parsed newtypes that cannot
//! contain `#`, so every segment boundary is unambiguous.

use crate::ids::IntegratorId;

/// The segment delimiter. Parsed ids never contain it.
pub const DELIM: char = '#';

/// A partition key. Built only by the functions of this module, so it always starts with the
/// integrator prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pk(String);

impl Pk {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }

    /// Re-wraps a partition key read back from storage. Refuses anything that does not carry the
    /// integrator prefix, so a malformed stored key cannot escape its tenant.
    pub fn from_stored(s: &str) -> Option<Pk> {
        let rest = s.strip_prefix("I#")?;
        let (id, _) = rest.split_once(DELIM)?;
        if id != PLATFORM_ID {
            IntegratorId::parse(id).ok()?;
        }
        Some(Pk(s.to_owned()))
    }
}

impl std::fmt::Display for Pk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The reserved integrator id of platform-level records (the integrator registry, platform
/// administrators). `_` cannot occur in a parsed [`IntegratorId`], so no integrator collides.
pub const PLATFORM_ID: &str = "_platform";

/// `I#_platform#`: the platform's own partition.
pub fn platform() -> Pk {
    Pk(format!("I#{PLATFORM_ID}#"))
}

/// `I#{integrator}#`: the integrator's own partition (its profile, its customer list, ...).
pub fn integrator(i: &IntegratorId) -> Pk {
    Pk(format!("I#{i}#"))
}

/// `I#{integrator}#{kind}#{id}#`: one entity's partition inside an integrator.
/// `kind` is one of the upper-case entity tags below; `id` a parsed id.
pub fn entity(i: &IntegratorId, kind: EntityKind, id: &str) -> Pk {
    Pk(format!("I#{i}#{}#{id}#", kind.tag()))
}

/// The entity tags used inside partition and sort keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntityKind {
    Customer,
    Project,
    Device,
    User,
    /// A person of the workforce concern (实名制): one per person within an integrator.
    Worker,
    /// Scratch partitions of the storage contract suite and the benchmarks.
    Test,
}

impl EntityKind {
    pub const fn tag(self) -> &'static str {
        match self {
            EntityKind::Customer => "C",
            EntityKind::Project => "P",
            EntityKind::Device => "D",
            EntityKind::User => "U",
            EntityKind::Worker => "W",
            EntityKind::Test => "T",
        }
    }
}

/// Sort key of an entity's own record inside its partition.
pub const SK_PROFILE: &str = "PROFILE";

/// Health-check record: each function reads it to prove its store answers.
pub fn health_probe() -> (Pk, String) {
    (platform(), "HEALTH".to_owned())
}

// ---- Tenancy (DOMAIN.md §8.1). Sort keys inside the integrator's (or the platform's) partition.

/// Integrator profile: `(I#{i}#, PROFILE)`. Registry entry: `(I#_platform#, INTEGRATOR#{i})`.
pub fn integrator_registry_sk(i: &IntegratorId) -> String {
    format!("INTEGRATOR{DELIM}{i}")
}
pub const INTEGRATOR_REGISTRY_PREFIX: &str = "INTEGRATOR#";

/// Customer: `(I#{i}#, CUSTOMER#{c})`.
pub fn customer_sk(c: &str) -> String {
    format!("CUSTOMER{DELIM}{c}")
}
pub const CUSTOMER_PREFIX: &str = "CUSTOMER#";

/// Project: `(I#{i}#, PROJECT#{p})`; pointer from the id to its integrator, for callers who see
/// across integrators (government supervisors): `(I#_platform#, PROJECT#{p})`.
pub fn project_sk(p: &str) -> String {
    format!("PROJECT{DELIM}{p}")
}
pub const PROJECT_PREFIX: &str = "PROJECT#";

/// Which customer may see which project, and why: `(I#{i}#, ACCESS#{c}#{p})`.
pub fn access_sk(c: &str, p: &str) -> String {
    format!("ACCESS{DELIM}{c}{DELIM}{p}")
}
pub fn access_prefix(c: &str) -> String {
    format!("ACCESS{DELIM}{c}{DELIM}")
}

/// The region index (gsi1) of projects. It is the one deliberate exception to the integrator
/// prefix: a government supervisor's jurisdiction spans integrators (API.md, Visibility).
/// Partition `REGION#{province}`; sort `{region_code}#{project}`, so a jurisdiction is a prefix
/// query on its significant digits (220100 → `2201`).
pub fn region_gsi_pk(province: &str) -> String {
    format!("REGION{DELIM}{province}")
}
pub fn region_gsi_sk(region_code: &str, p: &str) -> String {
    format!("{region_code}{DELIM}{p}")
}

/// User: `(I#{i}#, USER#{u})`, or in the platform partition for platform administrators.
/// Usernames are unique platform-wide: `(I#_platform#, USERNAME#{name})` points at the user.
pub fn user_sk(u: &str) -> String {
    format!("USER{DELIM}{u}")
}
pub const USER_PREFIX: &str = "USER#";
pub fn username_sk(name: &str) -> String {
    format!("USERNAME{DELIM}{name}")
}

// ---- Device catalog (DOMAIN.md §8.3). Suppliers, models and the blacklist are platform-wide
// registries in the platform partition; compliance marks belong to the integrator.

/// Supplier: `(I#_platform#, SUPPLIER#{s})`.
pub fn supplier_sk(s: &str) -> String {
    format!("SUPPLIER{DELIM}{s}")
}
pub const SUPPLIER_PREFIX: &str = "SUPPLIER#";

/// USCC uniqueness of suppliers: `(I#_platform#, SUPPLIER_USCC#{uscc})` points at the supplier.
/// (`SUPPLIER_USCC#` does not start with `SUPPLIER#`, so supplier lists never see it.)
pub fn supplier_uscc_sk(uscc: &str) -> String {
    format!("SUPPLIER_USCC{DELIM}{uscc}")
}

/// Device model: `(I#_platform#, MODEL#{m})`.
pub fn model_sk(m: &str) -> String {
    format!("MODEL{DELIM}{m}")
}
pub const MODEL_PREFIX: &str = "MODEL#";

/// A supplier's models: `(I#_platform#, SUPPLIER_MODEL#{s}#{m})`, for `?supplier_id=` lists.
pub fn supplier_model_sk(s: &str, m: &str) -> String {
    format!("SUPPLIER_MODEL{DELIM}{s}{DELIM}{m}")
}
pub fn supplier_models_prefix(s: &str) -> String {
    format!("SUPPLIER_MODEL{DELIM}{s}{DELIM}")
}

/// An integrator's compliance mark on a model without an access certificate:
/// `(I#{i}#, MODELOK#{m})`.
pub fn compliance_sk(m: &str) -> String {
    format!("MODELOK{DELIM}{m}")
}

/// Blacklist entry: `(I#_platform#, BLACKLIST#{b})`.
pub fn blacklist_sk(b: &str) -> String {
    format!("BLACKLIST{DELIM}{b}")
}
pub const BLACKLIST_PREFIX: &str = "BLACKLIST#";

/// The blacklist by target: `(I#_platform#, BLTARGET#{scope}#{target}#{b})`, so "is this supplier,
/// model or serial banned anywhere" is one prefix query per scope ([`blacklist_target_prefix`]).
/// `scope` is `supplier`/`model`/`device`; `target` a parsed id or serial number (no `#`).
pub fn blacklist_target_sk(scope: &str, target: &str, b: &str) -> String {
    format!("BLTARGET{DELIM}{scope}{DELIM}{target}{DELIM}{b}")
}
pub fn blacklist_target_prefix(scope: &str, target: &str) -> String {
    format!("BLTARGET{DELIM}{scope}{DELIM}{target}{DELIM}")
}
/// The blacklist version of a target: `(I#_platform#, BLVER#{scope}#{target})`, a counter of the
/// entries ever issued against it, which a binding conditions its transaction on.
pub fn blacklist_version_sk(scope: &str, target: &str) -> String {
    format!("BLVER{DELIM}{scope}{DELIM}{target}")
}

/// A bound device, in its integrator's partition: `(I#{i}#, DEVICE#{d})`.
pub fn device_sk(d: &str) -> String {
    format!("DEVICE{DELIM}{d}")
}
pub const DEVICE_PREFIX: &str = "DEVICE#";

/// A project's device listing, in the integrator's partition: `(I#{i}#, PDEV#{p}#{d})`.
pub fn project_device_sk(p: &str, d: &str) -> String {
    format!("PDEV{DELIM}{p}{DELIM}{d}")
}
pub fn project_devices_prefix(p: &str) -> String {
    format!("PDEV{DELIM}{p}{DELIM}")
}

/// Serial uniqueness per supplier across the platform: `(I#_platform#, SERIAL#{supplier}#{serial})`.
/// Serial numbers are parsed (`SerialNo`) and never contain `#`.
pub fn serial_sk(supplier: &str, serial: &str) -> String {
    format!("SERIAL{DELIM}{supplier}{DELIM}{serial}")
}

/// The platform's id pointer of a device, `(I#_platform#, DEVICE#{d})` → its integrator and
/// project (what the broker and `GET /v1/devices/{id}` resolve first). Same sort key format as
/// [`device_sk`], in the platform partition.
pub fn device_pointer_sk(d: &str) -> String {
    device_sk(d)
}

/// A device bound under a blacklist target, in the platform partition:
/// `(I#_platform#, BOUND#{scope}#{target}#{region}#{d})`, so the devices an entry flags are one
/// prefix query ([`bound_prefix`]).
pub fn bound_sk(scope: &str, target: &str, region: &str, d: &str) -> String {
    format!("BOUND{DELIM}{scope}{DELIM}{target}{DELIM}{region}{DELIM}{d}")
}
pub fn bound_prefix(scope: &str, target: &str) -> String {
    format!("BOUND{DELIM}{scope}{DELIM}{target}{DELIM}")
}

// ---- Device data (issue 6): one partition per device, `entity(i, Device, d)` = `I#{i}#D#{d}#`.

/// A stored telemetry message: `TS#{ts}#{digest}` with `ts` as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC, so
/// byte order = time order) and a 16-hex digest of the payload, so a redelivered message lands on
/// the same key (and is recognised) while two different messages of the same instant do not.
pub fn series_sk(ts: &str, digest: &str) -> String {
    format!("TS{DELIM}{ts}{DELIM}{digest}")
}
pub const SERIES_PREFIX: &str = "TS#";
/// A stored event message: `EV#{ts}#{digest}`, as [`series_sk`].
pub fn event_sk(ts: &str, digest: &str) -> String {
    format!("EV{DELIM}{ts}{DELIM}{digest}")
}
pub const EVENT_PREFIX: &str = "EV#";
/// The hourly aggregate of a device (message count, sums for the hourly means): `HR#{hour}` with
/// the hour's start as `YYYY-MM-DDTHH:00:00Z`.
pub fn hourly_sk(hour: &str) -> String {
    format!("HR{DELIM}{hour}")
}
pub const HOURLY_PREFIX: &str = "HR#";
/// A device's latest accepted values.
pub const SK_STATE: &str = "STATE";
/// A device's connection state (online, last seen).
pub const SK_PRESENCE: &str = "PRESENCE";
/// The persisted evaluation state of one alarm rule for the device: `RULE#{rule}`.
pub fn rule_state_sk(rule: &str) -> String {
    format!("RULE{DELIM}{rule}")
}

/// The quarantine of a project: `I#{i}#Q#{p}#`; `p` = `_` for messages no project could be
/// found for (an HJ 212 MN nobody holds) — those go to the platform's `I#_platform#Q#_#`.
pub fn quarantine(i: &str, p: &str) -> Pk {
    Pk(format!("I#{i}#Q#{p}#"))
}
/// A quarantined message: `{received_at}#{digest}`.
pub fn quarantine_sk(received_at: &str, digest: &str) -> String {
    format!("{received_at}{DELIM}{digest}")
}

/// HJ 212 MN uniqueness and lookup across the platform: `(I#_platform#, MN#{mn})` → the device.
pub fn mn_sk(mn: &str) -> String {
    format!("MN{DELIM}{mn}")
}

// ---- Alarms (issue 6).

/// A region's alarm-rule overrides, platform-wide: `(I#_platform#, ALARMRULES#R#{code})`.
pub fn region_rules_sk(code: &str) -> String {
    format!("ALARMRULES{DELIM}R{DELIM}{code}")
}
/// A project's alarm-rule overrides, in its integrator's partition: `ALARMRULES#P#{p}`.
pub fn project_rules_sk(p: &str) -> String {
    format!("ALARMRULES{DELIM}P{DELIM}{p}")
}
/// A project's alarms: `I#{i}#AL#{p}#`, sort key `{opened_at}#{id}` ([`alarm_sk`]).
pub fn alarms(i: &str, p: &str) -> Pk {
    Pk(format!("I#{i}#AL#{p}#"))
}
pub fn alarm_sk(opened_at: &str, id: &str) -> String {
    format!("{opened_at}{DELIM}{id}")
}
/// An alarm's id pointer: `(I#_platform#, ALARM#{id})`.
pub fn alarm_pointer_sk(id: &str) -> String {
    format!("ALARM{DELIM}{id}")
}
/// An unhandled alarm, for the escalation sweep: `(I#_platform#, OPENALARM#{id})`.
pub fn open_alarm_sk(id: &str) -> String {
    format!("{OPEN_ALARM_PREFIX}{id}")
}
pub const OPEN_ALARM_PREFIX: &str = "OPENALARM#";
/// A device's open alarm of one rule, in the device's partition: `OPEN#{rule}`.
pub fn device_open_alarm_sk(rule: &str) -> String {
    format!("OPEN{DELIM}{rule}")
}
/// A project's open ledger alarm of one rule and subject, in the project's partition:
/// `OPEN#{rule}#{subject}`.
pub fn ledger_open_sk(rule: &str, subject: &str) -> String {
    format!("{LEDGER_OPEN_PREFIX}{rule}{DELIM}{subject}")
}
pub const LEDGER_OPEN_PREFIX: &str = "OPEN#";
/// A command sent to a device, in its partition: `CMD#{at}#{n}`.
pub fn command_sk(at: &str, n: &str) -> String {
    format!("{COMMAND_PREFIX}{at}{DELIM}{n}")
}
pub const COMMAND_PREFIX: &str = "CMD#";

// ---- Safety fund (issue 7) and the billing hand-off.

/// A project's fund account header, in the project's partition.
pub const SK_FUND_ACCOUNT: &str = "SF#ACCOUNT";
/// The entries of one ledger of a project (`S` 安全生产费, `C` 安全文明施工费): `SF#{fund}#`.
pub fn fund_entries_prefix(fund: &str) -> String {
    format!("SF{DELIM}{fund}{DELIM}")
}
/// One ledger entry: `SF#{fund}#{seq:020}`, in seq order.
pub fn fund_entry_sk(fund: &str, seq: u64) -> String {
    seq_sk(&format!("SF{DELIM}{fund}"), seq)
}
/// A pending billing hand-off event, platform-wide: `(I#_platform#, HANDOFF#{i}#{event})`, where
/// the event is the invoice id for its issue, or one of [`handoff_credit_event`] and
/// [`handoff_void_event`]. An invoice's issue sorts before its credit notes, and those before its
/// void, so a consumer reading in key order books them in the order they can happen.
pub fn handoff_sk(i: &str, event: &str) -> String {
    format!("{HANDOFF_PREFIX}{i}{DELIM}{event}")
}
pub const HANDOFF_PREFIX: &str = "HANDOFF#";
/// The hand-off event of a credit note against an invoice: `{invoice}#CN#{note}`.
pub fn handoff_credit_event(invoice: &str, note: &str) -> String {
    format!("{invoice}{DELIM}CN{DELIM}{note}")
}
/// The hand-off event of an issued invoice's void: `{invoice}#VOID`.
pub fn handoff_void_event(invoice: &str) -> String {
    format!("{invoice}{DELIM}VOID")
}
/// A hand-off event that could not be posted: `(I#_platform#, HANDOFF_FAILED#{i}#{event})`.
pub fn handoff_failed_sk(i: &str, event: &str) -> String {
    format!("{HANDOFF_FAILED_PREFIX}{i}{DELIM}{event}")
}
pub const HANDOFF_FAILED_PREFIX: &str = "HANDOFF_FAILED#";

// ---- Billing (issue 5). Packages, subscriptions and invoices live in the integrator's partition;
// usage has partitions of its own so the hot write path never touches the integrator's.

/// A package version: `(I#{i}#, PACKAGE#{pkg}#{version:010})`, so a package's versions sort by
/// number and its latest is the last of [`package_versions_prefix`].
pub fn package_sk(pkg: &str, version: u32) -> String {
    format!("PACKAGE{DELIM}{pkg}{DELIM}{version:010}")
}
pub fn package_versions_prefix(pkg: &str) -> String {
    format!("PACKAGE{DELIM}{pkg}{DELIM}")
}
pub const PACKAGE_PREFIX: &str = "PACKAGE#";

/// A subscription: `(I#{i}#, SUBSCRIPTION#{s})`.
pub fn subscription_sk(s: &str) -> String {
    format!("SUBSCRIPTION{DELIM}{s}")
}
pub const SUBSCRIPTION_PREFIX: &str = "SUBSCRIPTION#";

/// A subscription's billing state: `I#{i}#SUB#{s}#`, holding what was billed per period
/// ([`billed_sk`]).
pub fn subscription(i: &IntegratorId, s: &str) -> Pk {
    Pk(format!("I#{i}#SUB#{s}#"))
}
/// The lines billed for a period (`YYYY-MM`), and the marker that the period is closed for the
/// subscription: `BILLED#{period}`.
pub fn billed_sk(period: &str) -> String {
    format!("{BILLED_PREFIX}{period}")
}
pub const BILLED_PREFIX: &str = "BILLED#";

/// The usage ledger and idempotency keys of one source: `I#{i}#USAGE#{source}#`, sort key
/// `E#{event id}` ([`usage_event_sk`]). Sources and event ids never contain `#`.
pub fn usage_events(i: &IntegratorId, source: &str) -> Pk {
    Pk(format!("I#{i}#USAGE#{source}#"))
}
pub fn usage_event_sk(id: &str) -> String {
    format!("E{DELIM}{id}")
}

/// The usage aggregates of one (subscription, period): `I#{i}#UA#{s}#{period}#`, with
/// [`AGG_TOTAL`], per-device counters [`agg_device_sk`], category marks [`agg_category_sk`] and
/// binding transitions [`agg_binding_sk`].
pub fn usage_aggregate(i: &IntegratorId, s: &str, period: &str) -> Pk {
    Pk(format!("I#{i}#UA#{s}#{period}#"))
}
pub const AGG_TOTAL: &str = "TOTAL";
pub fn agg_device_sk(d: &str) -> String {
    format!("{AGG_DEVICE_PREFIX}{d}")
}
pub const AGG_DEVICE_PREFIX: &str = "DEV#";
pub fn agg_category_sk(d: &str, category: &str) -> String {
    format!("{AGG_CATEGORY_PREFIX}{d}{DELIM}{category}")
}
pub const AGG_CATEGORY_PREFIX: &str = "CAT#";
/// A binding transition: `BIND#{d}#{at_ms:020}#{0 bound|1 unbound}#{source}#{event id}`; one item
/// per event, so the transitions stay a multiset.
pub fn agg_binding_sk(d: &str, at_ms: u64, unbound: bool, source: &str, id: &str) -> String {
    let c = if unbound { '1' } else { '0' };
    format!("{AGG_BINDING_PREFIX}{d}{DELIM}{at_ms:020}{DELIM}{c}{DELIM}{source}{DELIM}{id}")
}
pub const AGG_BINDING_PREFIX: &str = "BIND#";

/// An invoice: `(I#{i}#, INVOICE#{inv})`.
pub fn invoice_sk(inv: &str) -> String {
    format!("INVOICE{DELIM}{inv}")
}
/// Invoices by period and customer: `(I#{i}#, INVPERIOD#{period}#{customer}#{inv})`.
pub fn invoice_by_period_sk(period: &str, customer: &str, inv: &str) -> String {
    format!("INVPERIOD{DELIM}{period}{DELIM}{customer}{DELIM}{inv}")
}
pub fn invoices_of_period_prefix(period: &str) -> String {
    format!("INVPERIOD{DELIM}{period}{DELIM}")
}
pub fn invoices_of_period_customer_prefix(period: &str, customer: &str) -> String {
    format!("INVPERIOD{DELIM}{period}{DELIM}{customer}{DELIM}")
}
/// Invoices by customer: `(I#{i}#, INVCUSTOMER#{customer}#{period}#{inv})`.
pub fn invoice_by_customer_sk(customer: &str, period: &str, inv: &str) -> String {
    format!("INVCUSTOMER{DELIM}{customer}{DELIM}{period}{DELIM}{inv}")
}
pub fn invoices_of_customer_prefix(customer: &str) -> String {
    format!("INVCUSTOMER{DELIM}{customer}{DELIM}")
}
/// Invoices by the owner (建设单位) of their project at close, whoever they are billed to:
/// `(I#{i}#, INVOWNER#{owner}#{period}#{inv})`.
pub fn invoice_by_owner_sk(owner: &str, period: &str, inv: &str) -> String {
    format!("INVOWNER{DELIM}{owner}{DELIM}{period}{DELIM}{inv}")
}
pub fn invoices_of_owner_prefix(owner: &str) -> String {
    format!("INVOWNER{DELIM}{owner}{DELIM}")
}
pub fn invoices_of_owner_period_prefix(owner: &str, period: &str) -> String {
    format!("INVOWNER{DELIM}{owner}{DELIM}{period}{DELIM}")
}
/// All invoices of the integrator, by id: the prefix of [`invoice_sk`].
pub const INVOICE_PREFIX: &str = "INVOICE#";
/// The invoice-number counter of a period: `(I#{i}#, INVSEQ#{period})`.
pub fn invoice_seq_sk(period: &str) -> String {
    format!("INVSEQ{DELIM}{period}")
}
/// A credit note against an invoice: `(I#{i}#, CREDIT#{inv}#{cn})`.
pub fn credit_note_sk(inv: &str, cn: &str) -> String {
    format!("CREDIT{DELIM}{inv}{DELIM}{cn}")
}
pub fn credit_notes_prefix(inv: &str) -> String {
    format!("CREDIT{DELIM}{inv}{DELIM}")
}

/// `{prefix}#{seq:020}`: a sort key whose byte order equals numeric order of `seq`
/// (zero-padded to the width of u64::MAX).
pub fn seq_sk(prefix: &str, seq: u64) -> String {
    format!("{prefix}{DELIM}{seq:020}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn fund_keys_are_byte_exact() {
        assert_eq!(SK_FUND_ACCOUNT, "SF#ACCOUNT");
        assert_eq!(fund_entries_prefix("S"), "SF#S#");
        assert_eq!(fund_entry_sk("S", 12), "SF#S#00000000000000000012");
        assert!(fund_entry_sk("C", 1).starts_with(&fund_entries_prefix("C")));
        assert!(fund_entry_sk("S", 9) < fund_entry_sk("S", 10));
        assert!(!SK_FUND_ACCOUNT.starts_with(&fund_entries_prefix("S")));
        assert_eq!(handoff_sk("acme", "inv-1"), "HANDOFF#acme#inv-1");
        assert_eq!(
            handoff_failed_sk("acme", "inv-1"),
            "HANDOFF_FAILED#acme#inv-1"
        );
        // A pending-event scan never sees failed ones.
        assert!(!handoff_failed_sk("a", "b").starts_with(HANDOFF_PREFIX));
        let credit = handoff_sk("acme", &handoff_credit_event("inv-1", "cn-9"));
        let void = handoff_sk("acme", &handoff_void_event("inv-1"));
        assert_eq!(credit, "HANDOFF#acme#inv-1#CN#cn-9");
        assert_eq!(void, "HANDOFF#acme#inv-1#VOID");
        // Issue, then credit notes, then the void; another invoice's events never interleave.
        assert!(handoff_sk("acme", "inv-1") < credit && credit < void);
        assert!(void < handoff_sk("acme", "inv-10"));
    }

    #[test]
    fn alarm_keys_are_byte_exact() {
        assert_eq!(region_rules_sk("220100"), "ALARMRULES#R#220100");
        assert_eq!(project_rules_sk("prj-1"), "ALARMRULES#P#prj-1");
        assert_eq!(alarms("acme", "prj-1").as_str(), "I#acme#AL#prj-1#");
        assert_eq!(alarm_sk("t", "alm-1"), "t#alm-1");
        assert_eq!(alarm_pointer_sk("alm-1"), "ALARM#alm-1");
        assert_eq!(open_alarm_sk("alm-1"), "OPENALARM#alm-1");
        assert!(open_alarm_sk("x").starts_with(OPEN_ALARM_PREFIX));
        assert_eq!(device_open_alarm_sk("TC-MOMENT"), "OPEN#TC-MOMENT");
        assert_eq!(
            ledger_open_sk("FEE-SUB-50", "steel"),
            "OPEN#FEE-SUB-50#steel"
        );
        assert!(ledger_open_sk("FEE-OWNER-50", "").starts_with(LEDGER_OPEN_PREFIX));
        assert_eq!(command_sk("t", "n"), "CMD#t#n");
        assert!(command_sk("t", "n").starts_with(COMMAND_PREFIX));
    }

    #[test]
    fn device_data_keys_are_byte_exact() {
        assert_eq!(
            series_sk("2026-11-24T08:00:00.000Z", "00ff00ff00ff00ff"),
            "TS#2026-11-24T08:00:00.000Z#00ff00ff00ff00ff"
        );
        assert!(series_sk("x", "y").starts_with(SERIES_PREFIX));
        assert_eq!(event_sk("t", "d"), "EV#t#d");
        assert_eq!(hourly_sk("2026-11-24T08:00:00Z"), "HR#2026-11-24T08:00:00Z");
        assert_eq!(rule_state_sk("TC-MOMENT"), "RULE#TC-MOMENT");
        assert_eq!(quarantine("acme", "prj-1").as_str(), "I#acme#Q#prj-1#");
        assert_eq!(quarantine_sk("t", "d"), "t#d");
        assert_eq!(
            mn_sk("0123456789ABCDEF01234567"),
            "MN#0123456789ABCDEF01234567"
        );
    }

    use super::*;

    #[test]
    fn device_keys_byte_exact() {
        assert_eq!(device_sk("dev-1"), "DEVICE#dev-1");
        assert_eq!(DEVICE_PREFIX, "DEVICE#");
        assert_eq!(device_pointer_sk("dev-1"), "DEVICE#dev-1");
        assert_eq!(project_device_sk("prj-1", "dev-1"), "PDEV#prj-1#dev-1");
        assert_eq!(project_devices_prefix("prj-1"), "PDEV#prj-1#");
        assert_eq!(serial_sk("sup-1", "SN-9/A"), "SERIAL#sup-1#SN-9/A");
        assert_eq!(
            bound_sk("supplier", "sup-1", "220102", "dev-1"),
            "BOUND#supplier#sup-1#220102#dev-1"
        );
        assert_eq!(bound_prefix("device", "SN-9"), "BOUND#device#SN-9#");
    }

    fn id(s: &str) -> IntegratorId {
        IntegratorId::parse(s).unwrap()
    }

    #[test]
    fn integrator_partition_is_delimiter_terminated() {
        assert_eq!(integrator(&id("acme")).as_str(), "I#acme#");
        // The trailing delimiter keeps acme's prefix from matching acme-corp.
        assert!(
            !integrator(&id("acme-corp"))
                .as_str()
                .starts_with(integrator(&id("acme")).as_str())
        );
    }

    #[test]
    fn entity_partitions_byte_exact() {
        let i = id("ct-jl");
        assert_eq!(
            entity(&i, EntityKind::Customer, "c1").as_str(),
            "I#ct-jl#C#c1#"
        );
        assert_eq!(
            entity(&i, EntityKind::Project, "p-9").as_str(),
            "I#ct-jl#P#p-9#"
        );
        assert_eq!(
            entity(&i, EntityKind::Device, "d7").as_str(),
            "I#ct-jl#D#d7#"
        );
        assert_eq!(entity(&i, EntityKind::User, "u").as_str(), "I#ct-jl#U#u#");
        assert_eq!(
            entity(&i, EntityKind::Worker, "wkr-1").as_str(),
            "I#ct-jl#W#wkr-1#"
        );
        assert_eq!(entity(&i, EntityKind::Test, "t").as_str(), "I#ct-jl#T#t#");
        assert!(
            entity(&i, EntityKind::Project, "p")
                .as_str()
                .starts_with(integrator(&i).as_str())
        );
    }

    #[test]
    fn health_probe_key() {
        let (pk, sk) = health_probe();
        assert_eq!((pk.as_str(), sk.as_str()), ("I#_platform#", "HEALTH"));
        assert!(
            IntegratorId::parse(PLATFORM_ID).is_err(),
            "no integrator can take the platform id"
        );
        assert_eq!(Pk::from_stored("I#_platform#").unwrap(), platform());
    }

    #[test]
    fn tenancy_keys_byte_exact() {
        let i = id("ct-jl");
        assert_eq!(platform().as_str(), "I#_platform#");
        assert_eq!(integrator_registry_sk(&i), "INTEGRATOR#ct-jl");
        assert!(integrator_registry_sk(&i).starts_with(INTEGRATOR_REGISTRY_PREFIX));
        assert_eq!(customer_sk("cus-1"), "CUSTOMER#cus-1");
        assert!(customer_sk("cus-1").starts_with(CUSTOMER_PREFIX));
        assert_eq!(project_sk("prj-1"), "PROJECT#prj-1");
        assert!(project_sk("prj-1").starts_with(PROJECT_PREFIX));
        assert_eq!(access_sk("cus-1", "prj-2"), "ACCESS#cus-1#prj-2");
        assert!(access_sk("cus-1", "prj-2").starts_with(&access_prefix("cus-1")));
        // cus-1's prefix does not match cus-10's entries.
        assert!(!access_sk("cus-10", "prj-2").starts_with(&access_prefix("cus-1")));
        assert_eq!(region_gsi_pk("22"), "REGION#22");
        assert_eq!(region_gsi_sk("220102", "prj-1"), "220102#prj-1");
        assert_eq!(user_sk("usr-1"), "USER#usr-1");
        assert_eq!(username_sk("ct-admin"), "USERNAME#ct-admin");
    }

    #[test]
    fn catalog_keys_byte_exact() {
        let i = id("ct-jl");
        assert_eq!(supplier_sk("sup-1"), "SUPPLIER#sup-1");
        assert!(supplier_sk("sup-1").starts_with(SUPPLIER_PREFIX));
        assert_eq!(
            supplier_uscc_sk("91220101MA00000013"),
            "SUPPLIER_USCC#91220101MA00000013"
        );
        assert!(!supplier_uscc_sk("9").starts_with(SUPPLIER_PREFIX));
        assert_eq!(model_sk("mdl-1"), "MODEL#mdl-1");
        assert!(model_sk("mdl-1").starts_with(MODEL_PREFIX));
        assert_eq!(
            supplier_model_sk("sup-1", "mdl-2"),
            "SUPPLIER_MODEL#sup-1#mdl-2"
        );
        assert_eq!(supplier_models_prefix("sup-1"), "SUPPLIER_MODEL#sup-1#");
        assert!(supplier_model_sk("sup-1", "mdl-2").starts_with(&supplier_models_prefix("sup-1")));
        assert!(
            !supplier_model_sk("sup-10", "mdl-2").starts_with(&supplier_models_prefix("sup-1"))
        );
        assert!(!supplier_model_sk("sup-1", "m").starts_with(SUPPLIER_PREFIX));
        assert_eq!(
            (integrator(&i).as_str(), compliance_sk("mdl-1").as_str()),
            ("I#ct-jl#", "MODELOK#mdl-1")
        );
        assert_eq!(blacklist_sk("blk-1"), "BLACKLIST#blk-1");
        assert!(blacklist_sk("blk-1").starts_with(BLACKLIST_PREFIX));
        assert_eq!(
            blacklist_target_sk("supplier", "sup-1", "blk-2"),
            "BLTARGET#supplier#sup-1#blk-2"
        );
        assert_eq!(
            blacklist_target_sk("device", "SN-1", "blk-3"),
            "BLTARGET#device#SN-1#blk-3"
        );
        assert_eq!(
            blacklist_target_prefix("model", "mdl-1"),
            "BLTARGET#model#mdl-1#"
        );
        assert_eq!(blacklist_version_sk("model", "mdl-1"), "BLVER#model#mdl-1");
        assert!(!blacklist_version_sk("model", "mdl-1").starts_with(BLACKLIST_PREFIX));
        assert!(
            blacklist_target_sk("model", "mdl-1", "blk-2")
                .starts_with(&blacklist_target_prefix("model", "mdl-1"))
        );
        // mdl-1's prefix does not match mdl-10's entries, nor another scope's.
        assert!(
            !blacklist_target_sk("model", "mdl-10", "blk-2")
                .starts_with(&blacklist_target_prefix("model", "mdl-1"))
        );
        assert!(
            !blacklist_target_sk("device", "mdl-1", "blk-2")
                .starts_with(&blacklist_target_prefix("model", "mdl-1"))
        );
        assert!(!blacklist_target_sk("model", "m", "b").starts_with(BLACKLIST_PREFIX));
    }

    #[test]
    fn billing_keys_are_byte_exact() {
        let i = id("ct-jl");
        assert_eq!(package_sk("pkg-1", 7), "PACKAGE#pkg-1#0000000007");
        assert!(package_sk("pkg-1", 7).starts_with(&package_versions_prefix("pkg-1")));
        assert!(!package_sk("pkg-10", 1).starts_with(&package_versions_prefix("pkg-1")));
        assert!(package_sk("pkg-1", 9) < package_sk("pkg-1", 10));
        assert!(package_sk("p", 1).starts_with(PACKAGE_PREFIX));
        assert_eq!(subscription_sk("sub-1"), "SUBSCRIPTION#sub-1");
        assert!(subscription_sk("s").starts_with(SUBSCRIPTION_PREFIX));
        assert_eq!(subscription(&i, "sub-1").as_str(), "I#ct-jl#SUB#sub-1#");
        assert_eq!(billed_sk("2026-11"), "BILLED#2026-11");
        assert!(billed_sk("2026-11").starts_with(BILLED_PREFIX));
        assert_eq!(usage_events(&i, "api").as_str(), "I#ct-jl#USAGE#api#");
        assert_eq!(usage_event_sk("e-1"), "E#e-1");
        assert_eq!(
            usage_aggregate(&i, "sub-1", "2026-11").as_str(),
            "I#ct-jl#UA#sub-1#2026-11#"
        );
        assert_eq!(AGG_TOTAL, "TOTAL");
        assert_eq!(agg_device_sk("crane-1"), "DEV#crane-1");
        assert!(agg_device_sk("d").starts_with(AGG_DEVICE_PREFIX));
        assert_eq!(
            agg_category_sk("crane-1", "tower_crane"),
            "CAT#crane-1#tower_crane"
        );
        assert!(agg_category_sk("d", "c").starts_with(AGG_CATEGORY_PREFIX));
        assert_eq!(
            agg_binding_sk("crane-1", 1_764_000_000_000, false, "api", "e1"),
            "BIND#crane-1#00000001764000000000#0#api#e1"
        );
        assert_eq!(
            agg_binding_sk("d", 5, true, "platform", "x"),
            "BIND#d#00000000000000000005#1#platform#x"
        );
        assert!(agg_binding_sk("d", 5, true, "s", "x").starts_with(AGG_BINDING_PREFIX));
        // Bound sorts before unbound at the same instant, and time order is byte order.
        assert!(agg_binding_sk("d", 5, false, "s", "z") < agg_binding_sk("d", 5, true, "s", "a"));
        assert!(agg_binding_sk("d", 9, true, "s", "a") < agg_binding_sk("d", 10, false, "s", "a"));
        assert_eq!(invoice_sk("inv-1"), "INVOICE#inv-1");
        assert!(invoice_sk("inv-1").starts_with(INVOICE_PREFIX));
        assert_eq!(
            invoice_by_period_sk("2026-11", "cus-1", "inv-1"),
            "INVPERIOD#2026-11#cus-1#inv-1"
        );
        assert!(
            invoice_by_period_sk("2026-11", "cus-1", "inv-1")
                .starts_with(&invoices_of_period_customer_prefix("2026-11", "cus-1"))
        );
        assert!(
            !invoice_by_period_sk("2026-11", "cus-10", "inv-1")
                .starts_with(&invoices_of_period_customer_prefix("2026-11", "cus-1"))
        );
        assert_eq!(invoices_of_period_prefix("2026-11"), "INVPERIOD#2026-11#");
        assert_eq!(
            invoice_by_customer_sk("cus-1", "2026-11", "inv-1"),
            "INVCUSTOMER#cus-1#2026-11#inv-1"
        );
        assert_eq!(invoices_of_customer_prefix("cus-1"), "INVCUSTOMER#cus-1#");
        assert_eq!(
            invoice_by_owner_sk("cus-2", "2026-11", "inv-1"),
            "INVOWNER#cus-2#2026-11#inv-1"
        );
        assert!(
            invoice_by_owner_sk("cus-2", "2026-11", "inv-1")
                .starts_with(&invoices_of_owner_period_prefix("cus-2", "2026-11"))
        );
        assert!(
            invoices_of_owner_period_prefix("cus-2", "2026-11")
                .starts_with(&invoices_of_owner_prefix("cus-2"))
        );
        assert!(!invoice_by_owner_sk("cus-2", "2026-11", "inv-1").starts_with(INVOICE_PREFIX));
        assert_eq!(invoice_seq_sk("2026-11"), "INVSEQ#2026-11");
        assert_eq!(credit_note_sk("inv-1", "cn-1"), "CREDIT#inv-1#cn-1");
        assert_eq!(credit_notes_prefix("inv-1"), "CREDIT#inv-1#");
    }

    #[test]
    fn seq_sort_keys_order_numerically() {
        assert_eq!(seq_sk("E", 7), "E#00000000000000000007");
        assert_eq!(seq_sk("E", u64::MAX), "E#18446744073709551615");
        assert!(seq_sk("E", 9) < seq_sk("E", 10));
    }

    #[test]
    fn stored_partition_keys_are_checked() {
        assert_eq!(
            Pk::from_stored("I#acme#P#1#").unwrap().as_str(),
            "I#acme#P#1#"
        );
        assert!(Pk::from_stored("X#acme#").is_none());
        assert!(Pk::from_stored("I#Bad Id#").is_none());
        assert!(Pk::from_stored("I#acme").is_none());
    }
}
