//! The billing → safety-fund hand-off (issue 5 §5, issue 7 §4): when an invoice is issued for a
//! subscription funded by the project's safety money (`civilized_fee` or `safety_fee`), billing
//! records an [`InvoiceIssued`] event in an outbox, **in the same transaction** that marks the
//! invoice issued. The safety-fund concern drains the outbox and posts each event as one
//! expenditure (category `safety_informatisation`), exactly once: the ledger append and the
//! removal of the outbox item commit together, and a per-invoice marker refuses a second posting.
//!
//! The outbox lives in the platform partition (`I#_platform#`, sort key `HANDOFF#{integrator}#
//! {invoice}`), so one consumer finds every integrator's pending events with one query. Volume is
//! one item per issued invoice. In the AWS edition the consumer is the safety-fund Lambda on an
//! EventBridge schedule; in the single-box edition, the scheduler and the issue call itself.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::store::records::{self, DATA};
use crate::store::{Condition, Key, Query, SkCond, Store, StoreError, TxOp, keys};

/// Sort-key prefix of pending hand-off events in the platform partition.
pub const HANDOFF_PREFIX: &str = "HANDOFF#";

/// What a funded invoice hands to the safety-fund ledger.
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

    pub fn key(&self) -> Key {
        outbox_key(&self.integrator_id, &self.invoice_id)
    }

    /// The outbox put to include in the issuing transaction; a second put of the same invoice
    /// fails its condition (an invoice is issued once).
    pub fn put_op(&self) -> Result<TxOp, serde_json::Error> {
        Ok(TxOp::Put {
            item: records::record(self.key(), self)?,
            cond: Some(Condition::NotExists),
        })
    }
}

/// The outbox item of one invoice.
pub fn outbox_key(integrator_id: &str, invoice_id: &str) -> Key {
    Key::new(
        keys::platform(),
        format!("{HANDOFF_PREFIX}{integrator_id}{}{invoice_id}", keys::DELIM),
    )
}

/// The consumer's removal of a posted event, to include in the posting transaction: it fails if
/// another consumer already took the event.
pub fn done_op(e: &InvoiceIssued) -> TxOp {
    TxOp::Delete {
        key: e.key(),
        cond: Some(Condition::Exists),
    }
}

/// Up to `limit` pending events, oldest integrator and invoice id first.
pub async fn pending(store: &dyn Store, limit: u32) -> Result<Vec<InvoiceIssued>, StoreError> {
    let page = store
        .query(
            Query::partition(&keys::platform())
                .sk(SkCond::BeginsWith(HANDOFF_PREFIX.to_owned()))
                .limit(limit),
        )
        .await?;
    page.items
        .iter()
        .map(|i| {
            i.json(DATA)
                .map_err(|e| StoreError::Invalid(format!("hand-off event: {e}")))
        })
        .collect()
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
        assert_eq!(
            pending(store.as_ref(), 10).await.unwrap(),
            vec![a.clone(), b.clone()]
        );
        store.transact(vec![done_op(&a)]).await.unwrap();
        // A second consumer taking the same event fails.
        assert!(store.transact(vec![done_op(&a)]).await.is_err());
        assert_eq!(pending(store.as_ref(), 10).await.unwrap(), vec![b]);
    }
}
