//! The billing → safety-fund hand-off (issue 5 §5, issue 7 §4): whatever happens to an invoice
//! of a subscription funded by the project's safety money (`civilized_fee` or `safety_fee`) after
//! it is issued reaches the ledger through an outbox. Billing records a [`HandoffEvent`] **in the
//! same transaction** that changes the invoice: its issue ([`InvoiceChange::Issued`], booked as
//! one expenditure, category `safety_informatisation`), each credit note against it
//! ([`InvoiceChange::Credited`], a correction taking the credited amount back) and its void
//! ([`InvoiceChange::Voided`], reversing whatever the invoice still holds in the ledger). The
//! safety-fund concern drains the outbox and books each event exactly once: the ledger append
//! and the removal of the outbox item commit together, and the ledger itself refuses a second
//! booking of the same issue, credit note or void.
//!
//! The outbox lives in the platform partition (`I#_platform#`, sort key `HANDOFF#{integrator}#
//! {event}`, see [`keys::handoff_sk`]), so one consumer finds every integrator's pending events
//! with one query, an invoice's events in the order they can happen. Volume is one item per
//! issued invoice, credit note and void. In the AWS edition the consumer is the safety-fund
//! Lambda on an EventBridge schedule; in the single-box edition, the scheduler and a wake-up from
//! billing after each event.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::store::records::{self, DATA};
use crate::store::{Condition, Cursor, Key, Query, SkCond, Store, StoreError, TxOp, keys};

pub use keys::HANDOFF_PREFIX;

/// The funded invoice as it was issued: what every hand-off event of it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct InvoiceIssued {
    pub integrator_id: String,
    pub customer_id: String,
    pub project_id: String,
    pub subscription_id: String,
    pub invoice_id: String,
    /// The invoice number printed on it (发票号).
    pub invoice_no: String,
    /// `YYYY-MM`, the billed period.
    pub period: String,
    /// `civilized_fee` or `safety_fee`.
    pub funding_source: String,
    pub total_fen: i64,
    /// The Asia/Shanghai date of issue: the expenditure's date.
    #[schema(value_type = String, format = Date)]
    pub issued_on: NaiveDate,
}

impl InvoiceIssued {
    /// Whether a subscription's funding source hands its invoices to the safety fund.
    pub fn funds(funding_source: &str) -> bool {
        matches!(funding_source, "civilized_fee" | "safety_fee")
    }

    /// The outbox put of the issue, for the issuing transaction.
    pub fn put_op(&self) -> Result<TxOp, serde_json::Error> {
        self.event(InvoiceChange::Issued).put_op()
    }

    /// An event of this invoice.
    pub fn event(&self, change: InvoiceChange) -> HandoffEvent {
        HandoffEvent {
            invoice: self.clone(),
            change,
        }
    }
}

/// What happened to a funded invoice. Events stored before credit notes and voids were handed
/// over carry no `change` and are issues.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InvoiceChange {
    /// Issued: booked as one expenditure of `total_fen` on `issued_on`.
    #[default]
    Issued,
    /// A credit note (红字发票) of `amount_fen` against it, on the Asia/Shanghai date `on`: booked
    /// as a correction taking that amount back.
    Credited {
        credit_note_id: String,
        amount_fen: i64,
        on: NaiveDate,
    },
    /// Voided after its issue, on `on`: what the invoice still holds in the ledger (its total
    /// less the credit notes booked) is taken back.
    Voided { on: NaiveDate },
}

/// One pending hand-off event: the invoice and what happened to it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandoffEvent {
    #[serde(flatten)]
    pub invoice: InvoiceIssued,
    #[serde(default)]
    pub change: InvoiceChange,
}

impl HandoffEvent {
    /// The event's id within its integrator: the invoice id for the issue, then the credit note
    /// or the void (see [`keys::handoff_sk`] for the order this gives).
    pub fn id(&self) -> String {
        let inv = &self.invoice.invoice_id;
        match &self.change {
            InvoiceChange::Issued => inv.clone(),
            InvoiceChange::Credited { credit_note_id, .. } => {
                keys::handoff_credit_event(inv, credit_note_id)
            }
            InvoiceChange::Voided { .. } => keys::handoff_void_event(inv),
        }
    }

    pub fn key(&self) -> Key {
        outbox_key(&self.invoice.integrator_id, &self.id())
    }

    /// The outbox put to include in the transaction that changes the invoice; a second put of
    /// the same event fails its condition (an invoice is issued and voided once, a credit note
    /// written once).
    pub fn put_op(&self) -> Result<TxOp, serde_json::Error> {
        Ok(TxOp::Put {
            item: records::record(self.key(), self)?,
            cond: Some(Condition::NotExists),
        })
    }
}

/// The outbox item of one event (see [`HandoffEvent::id`]).
pub fn outbox_key(integrator_id: &str, event_id: &str) -> Key {
    Key::new(keys::platform(), keys::handoff_sk(integrator_id, event_id))
}

/// The consumer's removal of a posted event, to include in the posting transaction: it fails if
/// another consumer already took the event.
pub fn done_op(e: &HandoffEvent) -> TxOp {
    TxOp::Delete {
        key: e.key(),
        cond: Some(Condition::Exists),
    }
}

/// Up to `limit` pending events after `cursor`, by integrator, invoice id and event (issue,
/// credit notes, void), with the cursor of the next page.
pub async fn pending(
    store: &dyn Store,
    limit: u32,
    cursor: Option<Cursor>,
) -> Result<(Vec<HandoffEvent>, Option<Cursor>), StoreError> {
    let page = store
        .query(
            Query::partition(&keys::platform())
                .sk(SkCond::BeginsWith(HANDOFF_PREFIX.to_owned()))
                .limit(limit)
                .after(cursor),
        )
        .await?;
    let events = page
        .items
        .iter()
        .map(|i| {
            i.json(DATA)
                .map_err(|e| StoreError::Invalid(format!("hand-off event: {e}")))
        })
        .collect::<Result<_, _>>()?;
    Ok((events, page.next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit;

    fn event(i: &str, inv: &str) -> InvoiceIssued {
        InvoiceIssued {
            integrator_id: i.into(),
            customer_id: "c1".into(),
            project_id: "p1".into(),
            subscription_id: "s1".into(),
            invoice_id: inv.into(),
            invoice_no: "SS-2026-01-000001".into(),
            period: "2026-01".into(),
            funding_source: "safety_fee".into(),
            total_fen: 12_345,
            issued_on: NaiveDate::from_ymd_opt(2026, 2, 1).unwrap(),
        }
    }

    #[test]
    fn only_safety_money_funds_the_ledger() {
        assert!(InvoiceIssued::funds("civilized_fee"));
        assert!(InvoiceIssued::funds("safety_fee"));
        assert!(!InvoiceIssued::funds("other"));
    }

    #[test]
    fn outbox_key_is_delimited_per_integrator() {
        let k = outbox_key("acme", "inv1");
        assert_eq!(k.pk.as_str(), "I#_platform#");
        assert_eq!(k.sk, "HANDOFF#acme#inv1");
        assert_ne!(outbox_key("acme", "x").sk, outbox_key("acme-corp", "x").sk);
    }

    #[tokio::test]
    async fn outbox_put_once_drain_once() {
        let fx = testkit::embedded().await;
        let store = fx.store;
        let a = event("acme", "inv1");
        let b = event("acme-corp", "inv2");
        store.transact(vec![a.put_op().unwrap()]).await.unwrap();
        store.transact(vec![b.put_op().unwrap()]).await.unwrap();
        // Issuing the same invoice twice is refused by the outbox condition.
        assert!(store.transact(vec![a.put_op().unwrap()]).await.is_err());
        let (a, b) = (
            a.event(InvoiceChange::Issued),
            b.event(InvoiceChange::Issued),
        );
        assert_eq!(
            pending(store.as_ref(), 10, None).await.unwrap().0,
            vec![a.clone(), b.clone()]
        );
        store.transact(vec![done_op(&a)]).await.unwrap();
        // A second consumer taking the same event fails.
        assert!(store.transact(vec![done_op(&a)]).await.is_err());
        assert_eq!(pending(store.as_ref(), 10, None).await.unwrap().0, vec![b]);
    }

    #[tokio::test]
    async fn an_invoices_events_drain_in_the_order_they_happen() {
        let fx = testkit::embedded().await;
        let store = fx.store;
        let inv = event("acme", "inv-1");
        let on = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let void = inv.event(InvoiceChange::Voided { on });
        let credit = |n: &str| {
            inv.event(InvoiceChange::Credited {
                credit_note_id: n.into(),
                amount_fen: 100,
                on,
            })
        };
        // Written in any order (they are written in the order they happen, but a page boundary
        // must not matter either), read issue first, credit notes, then the void.
        for e in [void.clone(), credit("cn-b"), credit("cn-a")] {
            store.transact(vec![e.put_op().unwrap()]).await.unwrap();
        }
        store.transact(vec![inv.put_op().unwrap()]).await.unwrap();
        // The same credit note twice is refused like a second issue.
        assert!(
            store
                .transact(vec![credit("cn-a").put_op().unwrap()])
                .await
                .is_err()
        );
        let (first, next) = pending(store.as_ref(), 2, None).await.unwrap();
        let (rest, end) = pending(store.as_ref(), 2, next).await.unwrap();
        assert!(end.is_none());
        let all: Vec<HandoffEvent> = first.into_iter().chain(rest).collect();
        assert_eq!(
            all,
            vec![
                inv.event(InvoiceChange::Issued),
                credit("cn-a"),
                credit("cn-b"),
                void
            ]
        );
    }

    #[test]
    fn events_stored_before_changes_were_handed_over_read_as_issues() {
        let legacy = serde_json::to_value(event("acme", "inv1")).unwrap();
        let read: HandoffEvent = serde_json::from_value(legacy).unwrap();
        assert_eq!(read, event("acme", "inv1").event(InvoiceChange::Issued));
        let on = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        let voided = event("acme", "inv1").event(InvoiceChange::Voided { on });
        let json = serde_json::to_value(&voided).unwrap();
        assert_eq!(json["change"]["kind"], "voided");
        assert_eq!(
            serde_json::from_value::<HandoffEvent>(json).unwrap(),
            voided
        );
    }
}
