//! The device catalog (DOMAIN.md §8.3) over the storage port: the platform-wide registry of
//! suppliers and device models, each integrator's compliance marks on models without an access
//! certificate, and the blacklist (黑名单制度).
//!
//! Storage (keys in `store::keys`): suppliers, models and blacklist entries live in the platform
//! partition — they are public registry data shared by every integrator and government. Each
//! blacklist entry is written twice in one transaction: once by id (`BLACKLIST#{id}`) and once
//! under its target (`BLTARGET#{scope}#{target}#{id}`), so the binding check of a device is three
//! prefix queries ([`Catalog::active_bans_for`]) whatever the size of the blacklist.
//!
//! Issuing an entry also counts it in its target's version (`BLVER#{scope}#{target}`), in the same
//! transaction. A binding reads the versions of the device's three targets before its check and
//! conditions its own transaction on them ([`BlacklistVersions::checks`]): an entry issued between
//! the check and the binding fails the binding (which checks again) instead of missing a device
//! that the entry's flagging, querying the bound devices, could not see yet.

use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::directory::ListPage;
use crate::domain::devices::{
    Ban, BlacklistEntry, BlacklistId, ComplianceMark, DeviceModel, ModelId, Scope, SerialNo,
    Supplier, SupplierId,
};
use crate::ids::IntegratorId;
use crate::store::records::{self, decode, record};
use crate::store::{Condition, Key, Query, SkCond, Store, StoreError, TxOp, keys};

/// Attribute of blacklist items that conditions the lift: `active` until lifted, then `lifted`.
const STATE: &str = "state";
const ACTIVE: &str = "active";
const LIFTED: &str = "lifted";

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Suppliers are unique by USCC; the existing supplier is public registry data, so it is named.
    #[error("a supplier with this uscc already exists: {0}")]
    DuplicateUscc(SupplierId),
    #[error("no such supplier")]
    UnknownSupplier,
    #[error("the blacklist entry is already lifted")]
    AlreadyLifted,
    #[error("{0} already exists")]
    Exists(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

#[derive(Serialize, Deserialize)]
struct SupplierRef {
    supplier_id: SupplierId,
}

fn is_condition_failure(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::ConditionFailed | StoreError::TransactionConditionFailed { .. }
    )
}

fn supplier_key(s: &SupplierId) -> Key {
    Key::new(keys::platform(), keys::supplier_sk(s.as_str()))
}

fn model_key(m: &ModelId) -> Key {
    Key::new(keys::platform(), keys::model_sk(m.as_str()))
}

fn compliance_key(i: &IntegratorId, m: &ModelId) -> Key {
    Key::new(keys::integrator(i), keys::compliance_sk(m.as_str()))
}

fn blacklist_key(b: &BlacklistId) -> Key {
    Key::new(keys::platform(), keys::blacklist_sk(b.as_str()))
}

fn blacklist_target_key(e: &BlacklistEntry) -> Key {
    Key::new(
        keys::platform(),
        keys::blacklist_target_sk(e.scope.as_str(), &e.target_id, e.id.as_str()),
    )
}

fn blacklist_version_key(scope: Scope, target: &str) -> Key {
    Key::new(
        keys::platform(),
        keys::blacklist_version_sk(scope.as_str(), target),
    )
}

/// The attribute of a blacklist version item that counts the entries.
const VERSION: &str = "n";

/// The blacklist versions of a device's targets, read before its binding check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlacklistVersions(Vec<(Key, Option<i64>)>);

impl BlacklistVersions {
    /// The checks a binding transaction includes: each target's version is still what it was
    /// when the bans were read (never issued against: still no version).
    pub fn checks(&self) -> Vec<TxOp> {
        self.0
            .iter()
            .map(|(key, n)| TxOp::Check {
                key: key.clone(),
                cond: match n {
                    Some(n) => Condition::equals(VERSION, *n),
                    None => Condition::NotExists,
                },
            })
            .collect()
    }
}

fn state_of(e: &BlacklistEntry) -> &'static str {
    if e.is_active() { ACTIVE } else { LIFTED }
}

#[derive(Clone)]
pub struct Catalog {
    store: Arc<dyn Store>,
}

impl Catalog {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Catalog { store }
    }

    async fn get_json<T: DeserializeOwned>(&self, key: Key) -> Result<Option<T>, CatalogError> {
        records::get_json(&*self.store, key).await
    }

    async fn page<T: DeserializeOwned>(
        &self,
        q: Query,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<T>, CatalogError> {
        records::page(&*self.store, q, limit, cursor).await
    }

    // ---- suppliers

    /// Registers a supplier; `DuplicateUscc` names the supplier already registered under its USCC.
    pub async fn create_supplier(&self, s: &Supplier) -> Result<(), CatalogError> {
        let supplier = record(supplier_key(&s.id), s)?;
        let uscc = record(
            Key::new(keys::platform(), keys::supplier_uscc_sk(s.uscc.as_str())),
            &SupplierRef {
                supplier_id: s.id.clone(),
            },
        )?;
        let written = self
            .store
            .transact(vec![
                TxOp::Put {
                    item: supplier,
                    cond: Some(Condition::NotExists),
                },
                TxOp::Put {
                    item: uscc,
                    cond: Some(Condition::NotExists),
                },
            ])
            .await;
        match written {
            Ok(()) => Ok(()),
            Err(e) if is_condition_failure(&e) => {
                let existing: Option<SupplierRef> = self
                    .get_json(Key::new(
                        keys::platform(),
                        keys::supplier_uscc_sk(s.uscc.as_str()),
                    ))
                    .await?;
                Err(match existing {
                    Some(r) => CatalogError::DuplicateUscc(r.supplier_id),
                    None => CatalogError::Exists("supplier"),
                })
            }
            Err(e) => Err(e.into()),
        }
    }

    pub async fn supplier(&self, id: &SupplierId) -> Result<Option<Supplier>, CatalogError> {
        self.get_json(supplier_key(id)).await
    }

    pub async fn list_suppliers(
        &self,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<Supplier>, CatalogError> {
        let q = Query::partition(&keys::platform())
            .sk(SkCond::BeginsWith(keys::SUPPLIER_PREFIX.into()));
        self.page(q, limit, cursor).await
    }

    // ---- device models

    /// Registers a model of an existing supplier (checked in the same transaction:
    /// `UnknownSupplier` otherwise).
    pub async fn create_model(&self, m: &DeviceModel) -> Result<(), CatalogError> {
        let model = record(model_key(&m.id), m)?;
        let by_supplier = record(
            Key::new(
                keys::platform(),
                keys::supplier_model_sk(m.supplier_id.as_str(), m.id.as_str()),
            ),
            m,
        )?;
        let written = self
            .store
            .transact(vec![
                TxOp::Check {
                    key: supplier_key(&m.supplier_id),
                    cond: Condition::Exists,
                },
                TxOp::Put {
                    item: model,
                    cond: Some(Condition::NotExists),
                },
                TxOp::Put {
                    item: by_supplier,
                    cond: Some(Condition::NotExists),
                },
            ])
            .await;
        match written {
            Ok(()) => Ok(()),
            Err(StoreError::TransactionConditionFailed { index: 0 }) => {
                Err(CatalogError::UnknownSupplier)
            }
            Err(e) if is_condition_failure(&e) => Err(CatalogError::Exists("model")),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn model(&self, id: &ModelId) -> Result<Option<DeviceModel>, CatalogError> {
        self.get_json(model_key(id)).await
    }

    /// All models, or one supplier's.
    pub async fn list_models(
        &self,
        supplier: Option<&SupplierId>,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<DeviceModel>, CatalogError> {
        let prefix = match supplier {
            Some(s) => keys::supplier_models_prefix(s.as_str()),
            None => keys::MODEL_PREFIX.to_owned(),
        };
        let q = Query::partition(&keys::platform()).sk(SkCond::BeginsWith(prefix));
        self.page(q, limit, cursor).await
    }

    // ---- compliance marks (per integrator)

    /// Records the integrator's mark. The first mark is the record: marking again returns the
    /// existing mark unchanged (who and when stay those of the first).
    pub async fn mark_compliant(
        &self,
        mark: &ComplianceMark,
    ) -> Result<ComplianceMark, CatalogError> {
        let key = compliance_key(&mark.integrator_id, &mark.model_id);
        match self
            .store
            .put(record(key.clone(), mark)?, Some(Condition::NotExists))
            .await
        {
            Ok(()) => Ok(mark.clone()),
            Err(e) if is_condition_failure(&e) => self
                .get_json(key)
                .await?
                .ok_or(CatalogError::Exists("compliance mark")),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn compliance(
        &self,
        integrator: &IntegratorId,
        model: &ModelId,
    ) -> Result<Option<ComplianceMark>, CatalogError> {
        self.get_json(compliance_key(integrator, model)).await
    }

    /// Whether `integrator` may provision devices of `model` into its projects: the model has an
    /// access-standard certificate, or the integrator marked it compliant. Unknown models: no.
    pub async fn may_provision_model(
        &self,
        integrator: &IntegratorId,
        model: &ModelId,
    ) -> Result<bool, CatalogError> {
        let Some(m) = self.model(model).await? else {
            return Ok(false);
        };
        if m.access_cert_no.is_some() {
            return Ok(true);
        }
        Ok(self.compliance(integrator, model).await?.is_some())
    }

    // ---- blacklist

    /// Writes a new entry by id and under its target and counts it in its target's version, in
    /// one transaction. Flagging the devices already bound in its scope is
    /// `fleet::Fleet::flag`, after this commits.
    pub async fn issue_blacklist(&self, e: &BlacklistEntry) -> Result<(), CatalogError> {
        let entry = record(blacklist_key(&e.id), e)?.with(STATE, state_of(e));
        let by_target = record(blacklist_target_key(e), e)?.with(STATE, state_of(e));
        self.store
            .transact(vec![
                TxOp::Put {
                    item: entry,
                    cond: Some(Condition::NotExists),
                },
                TxOp::Put {
                    item: by_target,
                    cond: Some(Condition::NotExists),
                },
                TxOp::add(blacklist_version_key(e.scope, &e.target_id), VERSION, 1),
            ])
            .await
            .map_err(|e| {
                if is_condition_failure(&e) {
                    CatalogError::Exists("blacklist entry")
                } else {
                    e.into()
                }
            })
    }

    pub async fn blacklist_entry(
        &self,
        id: &BlacklistId,
    ) -> Result<Option<BlacklistEntry>, CatalogError> {
        self.get_json(blacklist_key(id)).await
    }

    /// A page of entries in id (= issue time) order, keeping those `keep` accepts. Filtering
    /// happens after the read, so a page may hold fewer than `limit` entries while `next` is set;
    /// the blacklist is small (government sanctions, not telemetry).
    pub async fn list_blacklist(
        &self,
        limit: u32,
        cursor: Option<String>,
        keep: impl Fn(&BlacklistEntry) -> bool,
    ) -> Result<ListPage<BlacklistEntry>, CatalogError> {
        let q = Query::partition(&keys::platform())
            .sk(SkCond::BeginsWith(keys::BLACKLIST_PREFIX.into()));
        records::page_filtered(&*self.store, q, limit, cursor, keep).await
    }

    /// Stores `lifted` (an entry whose `lifted` is now set) if the stored entry is still active;
    /// `AlreadyLifted` otherwise. The entry stays, with its lifting recorded.
    pub async fn lift_blacklist(&self, lifted: &BlacklistEntry) -> Result<(), CatalogError> {
        if lifted.is_active() {
            return Err(CatalogError::Store(StoreError::Invalid(
                "lift_blacklist takes a lifted entry".into(),
            )));
        }
        let entry = record(blacklist_key(&lifted.id), lifted)?.with(STATE, LIFTED);
        let by_target = record(blacklist_target_key(lifted), lifted)?.with(STATE, LIFTED);
        self.store
            .transact(vec![
                TxOp::Put {
                    item: entry,
                    cond: Some(Condition::equals(STATE, ACTIVE)),
                },
                TxOp::Put {
                    item: by_target,
                    cond: Some(Condition::Exists),
                },
            ])
            .await
            .map_err(|e| {
                if is_condition_failure(&e) {
                    CatalogError::AlreadyLifted
                } else {
                    e.into()
                }
            })
    }

    async fn entries_targeting(
        &self,
        scope: Scope,
        target: &str,
    ) -> Result<Vec<BlacklistEntry>, CatalogError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let q = Query::partition(&keys::platform())
                .sk(SkCond::BeginsWith(keys::blacklist_target_prefix(
                    scope.as_str(),
                    target,
                )))
                .limit(200)
                .after(cursor);
            let page = self.store.query(q).await?;
            for item in &page.items {
                if item.s(STATE) == Some(ACTIVE) {
                    out.push(decode(item)?);
                }
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Every active entry naming the supplier, the model or the serial number, whatever its
    /// region: three prefix queries. Feed them to `domain::devices::blocking_entry` with the
    /// project's region to decide a binding, and the versions (read first) to the binding's
    /// transaction (`fleet::Fleet::bind`).
    pub async fn active_bans_for(
        &self,
        supplier: &SupplierId,
        model: &ModelId,
        serial: &SerialNo,
    ) -> Result<(Vec<Ban>, BlacklistVersions), CatalogError> {
        let targets = [
            (Scope::Supplier, supplier.as_str()),
            (Scope::Model, model.as_str()),
            (Scope::Device, serial.as_str()),
        ];
        let version_keys: Vec<Key> = targets
            .iter()
            .map(|(scope, target)| blacklist_version_key(*scope, target))
            .collect();
        let read = self.store.get_many(&version_keys).await?;
        let versions = BlacklistVersions(
            version_keys
                .into_iter()
                .zip(read)
                .map(|(key, item)| (key, item.map(|i| i.n(VERSION).unwrap_or(0))))
                .collect(),
        );
        let mut bans = Vec::new();
        for (scope, target) in targets {
            bans.extend(
                self.entries_targeting(scope, target)
                    .await?
                    .iter()
                    .map(BlacklistEntry::ban),
            );
        }
        Ok((bans, versions))
    }
}
