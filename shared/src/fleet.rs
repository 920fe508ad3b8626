//! Bound devices (DOMAIN.md §8.3) over the storage port: binding a provisioned device to a
//! project, reading and listing devices, decommissioning, and blacklist flags.
//!
//! Storage (keys in `store::keys`), all written in one transaction at binding:
//! - `(I#{i}#, DEVICE#{d})`: the device record, in its integrator's partition;
//! - `(I#{i}#, PDEV#{p}#{d})`: a copy under the project, for the project's list;
//! - `(I#_platform#, DEVICE#{d})`: the id pointer → integrator and project (the broker and
//!   `GET /v1/devices/{id}` resolve it first);
//! - `(I#_platform#, SERIAL#{supplier}#{serial})`: serial uniqueness per supplier across the
//!   platform, written with `NotExists`;
//! - `(I#_platform#, BOUND#{scope}#{target}#{region}#{d})` for each blacklist scope (supplier,
//!   model, device serial): flagging the devices a new entry covers is one prefix query per entry.
//!
//! Decommissioning keeps the record and the id pointer (history) and removes the serial and
//! `BOUND` pointers, so the serial can be bound again.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use crate::catalog::BlacklistVersions;
use crate::directory::ListPage;
use crate::domain::devices::{
    BlacklistEntry, BlacklistId, Category, DeviceId, ModelId, Scope, SerialNo, SupplierId,
};
use crate::domain::tenancy::{ProjectId, RegionCode};
use crate::ids::IntegratorId;
use crate::store::records::{self, decode, record};
use crate::store::{
    Attr, Condition, Cursor, Item, Key, Query, SkCond, Store, StoreError, TxOp, keys,
};

/// How often a change of a device record is retried after losing a race.
const MAX_ATTEMPTS: usize = 8;

/// Attribute conditioning decommissioning: `active` until decommissioned.
const STATUS: &str = "status";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    Active,
    Decommissioned,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Decommissioned => "decommissioned",
        }
    }
}

/// A blacklist entry in force against a bound device (the device stays bound but its data is
/// untrusted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Flag {
    #[schema(value_type = String)]
    pub entry_id: BlacklistId,
    pub scope: Scope,
    /// When the device was flagged (RFC 3339).
    pub since: String,
}

/// A device bound to a project. Never holds credentials beyond the current certificate id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Device {
    pub id: DeviceId,
    pub integrator_id: IntegratorId,
    pub project_id: ProjectId,
    /// The project's region at binding: where the blacklist applies.
    pub region_code: RegionCode,
    pub model_id: ModelId,
    pub supplier_id: SupplierId,
    pub category: Category,
    pub serial_no: SerialNo,
    pub mn: Option<String>,
    pub config: BTreeMap<String, f64>,
    pub status: DeviceStatus,
    /// The certificate issued at provisioning or the latest rotation.
    pub certificate_id: String,
    pub created_by: String,
    pub created_at: String,
    pub decommissioned_by: Option<String>,
    pub decommissioned_at: Option<String>,
    pub flags: Vec<Flag>,
}

impl Device {
    /// Whether its data must be tagged untrusted: any blacklist flag in force.
    pub fn untrusted(&self) -> bool {
        !self.flags.is_empty()
    }

    /// `(scope, target)` of the three blacklist scopes this device falls under.
    pub fn targets(&self) -> [(Scope, &str); 3] {
        [
            (Scope::Supplier, self.supplier_id.as_str()),
            (Scope::Model, self.model_id.as_str()),
            (Scope::Device, self.serial_no.as_str()),
        ]
    }
}

/// The platform's id pointer of a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceLocation {
    pub integrator_id: IntegratorId,
    pub project_id: ProjectId,
}

/// Who holds a serial number.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SerialHolder {
    pub integrator_id: IntegratorId,
    pub project_id: ProjectId,
    pub device_id: DeviceId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Bound {
    integrator_id: IntegratorId,
    device_id: DeviceId,
    region_code: RegionCode,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// The supplier's serial number is bound to a device already (possibly another tenant's:
    /// the holder is for the edge to decide what to reveal).
    #[error("serial already bound")]
    SerialBound(SerialHolder),
    #[error("the device is already decommissioned")]
    AlreadyDecommissioned,
    #[error("{0} already exists")]
    Exists(&'static str),
    /// A blacklist entry naming the device's supplier, model or serial was issued since its
    /// binding check: check again.
    #[error("the blacklist changed during the binding; check it again")]
    BlacklistChanged,
    /// The device kept changing concurrently.
    #[error("the device changed concurrently; retry")]
    Contention,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored record is corrupt: {0}")]
    Corrupt(#[from] serde_json::Error),
}

fn is_condition_failure(e: &StoreError) -> bool {
    matches!(
        e,
        StoreError::ConditionFailed | StoreError::TransactionConditionFailed { .. }
    )
}

fn device_key(i: &IntegratorId, d: &DeviceId) -> Key {
    Key::new(keys::integrator(i), keys::device_sk(d.as_str()))
}

fn listing_key(d: &Device) -> Key {
    Key::new(
        keys::integrator(&d.integrator_id),
        keys::project_device_sk(d.project_id.as_str(), d.id.as_str()),
    )
}

fn pointer_key(d: &DeviceId) -> Key {
    Key::new(keys::platform(), keys::device_pointer_sk(d.as_str()))
}

fn mn_key(mn: &str) -> Key {
    Key::new(keys::platform(), keys::mn_sk(mn))
}

/// Who holds an HJ 212 MN: what the HJ 212 listener maps a frame's MN to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MnHolder {
    pub integrator_id: IntegratorId,
    pub project_id: ProjectId,
    pub device_id: DeviceId,
}

fn serial_key(supplier: &SupplierId, serial: &SerialNo) -> Key {
    Key::new(
        keys::platform(),
        keys::serial_sk(supplier.as_str(), serial.as_str()),
    )
}

fn bound_keys(d: &Device) -> Vec<Key> {
    d.targets()
        .iter()
        .map(|(scope, target)| {
            Key::new(
                keys::platform(),
                keys::bound_sk(
                    scope.as_str(),
                    target,
                    d.region_code.as_str(),
                    d.id.as_str(),
                ),
            )
        })
        .collect()
}

#[derive(Clone)]
pub struct Fleet {
    store: Arc<dyn Store>,
}

impl Fleet {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Fleet { store }
    }

    async fn get_json<T: DeserializeOwned>(&self, key: Key) -> Result<Option<T>, FleetError> {
        records::get_json(&*self.store, key).await
    }

    /// The record and its project-listing copy, with the status attribute.
    fn copies(d: &Device) -> Result<(Item, Item), FleetError> {
        let main = record(device_key(&d.integrator_id, &d.id), d)?.with(STATUS, d.status.as_str());
        let listing = record(listing_key(d), d)?.with(STATUS, d.status.as_str());
        Ok((main, listing))
    }

    /// Binds a new (active) device: record, listing, id pointer, serial pointer and `BOUND`
    /// pointers in one transaction, conditioned on the blacklist `versions` its binding check
    /// read (`BlacklistChanged` when an entry was issued since). `SerialBound` names the holder
    /// if the supplier's serial is bound already.
    pub async fn bind(
        &self,
        integrator: &IntegratorId,
        d: &Device,
        versions: &BlacklistVersions,
    ) -> Result<(), FleetError> {
        if &d.integrator_id != integrator || d.status != DeviceStatus::Active {
            return Err(FleetError::Store(StoreError::Invalid(
                "bind takes an active device of the integrator".into(),
            )));
        }
        let serial = record(
            serial_key(&d.supplier_id, &d.serial_no),
            &SerialHolder {
                integrator_id: d.integrator_id.clone(),
                project_id: d.project_id.clone(),
                device_id: d.id.clone(),
            },
        )?;
        let (main, listing) = Self::copies(d)?;
        let pointer = record(
            pointer_key(&d.id),
            &DeviceLocation {
                integrator_id: d.integrator_id.clone(),
                project_id: d.project_id.clone(),
            },
        )?;
        let mut ops = vec![
            TxOp::Put {
                item: serial,
                cond: Some(Condition::NotExists),
            },
            TxOp::Put {
                item: main,
                cond: Some(Condition::NotExists),
            },
            TxOp::Put {
                item: listing,
                cond: Some(Condition::NotExists),
            },
            TxOp::Put {
                item: pointer,
                cond: Some(Condition::NotExists),
            },
        ];
        for key in bound_keys(d) {
            ops.push(TxOp::Put {
                item: record(
                    key,
                    &Bound {
                        integrator_id: d.integrator_id.clone(),
                        device_id: d.id.clone(),
                        region_code: d.region_code.clone(),
                    },
                )?,
                cond: None,
            });
        }
        let checks = ops.len()..ops.len() + versions.checks().len();
        ops.extend(versions.checks());
        let mn_index = ops.len();
        if let Some(mn) = &d.mn {
            ops.push(TxOp::Put {
                item: record(
                    mn_key(mn),
                    &MnHolder {
                        integrator_id: d.integrator_id.clone(),
                        project_id: d.project_id.clone(),
                        device_id: d.id.clone(),
                    },
                )?,
                cond: Some(Condition::NotExists),
            });
        }
        match self.store.transact(ops).await {
            Ok(()) => Ok(()),
            Err(StoreError::TransactionConditionFailed { index }) if checks.contains(&index) => {
                Err(FleetError::BlacklistChanged)
            }
            Err(StoreError::TransactionConditionFailed { index }) if index == mn_index => {
                Err(FleetError::Exists("device with this HJ 212 MN"))
            }
            Err(StoreError::TransactionConditionFailed { index: 0 }) => {
                match self.serial_holder(&d.supplier_id, &d.serial_no).await? {
                    Some(h) => Err(FleetError::SerialBound(h)),
                    None => Err(FleetError::Exists("serial binding")),
                }
            }
            Err(e) if is_condition_failure(&e) => Err(FleetError::Exists("device")),
            Err(e) => Err(e.into()),
        }
    }

    /// Who holds the supplier's serial number, if anyone.
    pub async fn serial_holder(
        &self,
        supplier: &SupplierId,
        serial: &SerialNo,
    ) -> Result<Option<SerialHolder>, FleetError> {
        self.get_json(serial_key(supplier, serial)).await
    }

    /// The active device holding an HJ 212 MN.
    pub async fn mn_holder(&self, mn: &str) -> Result<Option<MnHolder>, FleetError> {
        self.get_json(mn_key(mn)).await
    }

    /// Where a device id lives (platform pointer). Kept after decommissioning.
    pub async fn locate(&self, d: &DeviceId) -> Result<Option<DeviceLocation>, FleetError> {
        self.get_json(pointer_key(d)).await
    }

    pub async fn device(
        &self,
        integrator: &IntegratorId,
        d: &DeviceId,
    ) -> Result<Option<Device>, FleetError> {
        self.get_json(device_key(integrator, d)).await
    }

    /// A page of a project's devices (active and decommissioned), in id order.
    pub async fn list_project(
        &self,
        integrator: &IntegratorId,
        project: &ProjectId,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<Device>, FleetError> {
        let q = Query::partition(&keys::integrator(integrator))
            .sk(SkCond::BeginsWith(keys::project_devices_prefix(
                project.as_str(),
            )))
            .limit(limit)
            .after(cursor.map(Cursor::from_client));
        let page = self.store.query(q).await?;
        Ok(ListPage {
            items: page.items.iter().map(decode).collect::<Result<_, _>>()?,
            next: page.next.map(|c| c.as_str().to_owned()),
        })
    }

    /// A page of the integrator's devices (by id), only those carrying a blacklist flag when
    /// `only_flagged`.
    pub async fn list_devices(
        &self,
        integrator: &IntegratorId,
        only_flagged: bool,
        limit: u32,
        cursor: Option<String>,
    ) -> Result<ListPage<Device>, FleetError> {
        let q = Query::partition(&keys::integrator(integrator))
            .sk(SkCond::BeginsWith(keys::DEVICE_PREFIX.into()));
        records::page_filtered(&*self.store, q, limit, cursor, |d: &Device| {
            !only_flagged || d.untrusted()
        })
        .await
    }

    /// Every device of the integrator (for platform jobs), read a page at a time.
    pub async fn devices_of(&self, integrator: &IntegratorId) -> Result<Vec<Device>, FleetError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.list_devices(integrator, false, 200, cursor).await?;
            out.extend(page.items);
            match page.next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Changes an active device: reads its record, applies `change` (which answers whether it
    /// changed anything), and stores the record and its listing copy only if the record is
    /// still exactly what was read — a compare-and-swap on the stored JSON, so a concurrent
    /// change (another entry's flag, a rotation) is never overwritten; on a lost race it reads
    /// again and reapplies. `None`: no such device; `AlreadyDecommissioned` when it is not
    /// active.
    pub async fn modify(
        &self,
        integrator: &IntegratorId,
        id: &DeviceId,
        mut change: impl FnMut(&mut Device) -> bool,
    ) -> Result<Option<Device>, FleetError> {
        for _ in 0..MAX_ATTEMPTS {
            let Some(item) = self.store.get(&device_key(integrator, id)).await? else {
                return Ok(None);
            };
            let mut d: Device = decode(&item)?;
            if d.status != DeviceStatus::Active {
                return Err(FleetError::AlreadyDecommissioned);
            }
            if !change(&mut d) {
                return Ok(Some(d));
            }
            let read = item.attr(records::DATA).cloned().unwrap_or(Attr::Null);
            let (main, listing) = Self::copies(&d)?;
            match self
                .store
                .transact(vec![
                    TxOp::Put {
                        item: main,
                        cond: Some(Condition::Equals(records::DATA.to_owned(), read)),
                    },
                    TxOp::Put {
                        item: listing,
                        cond: Some(Condition::Exists),
                    },
                ])
                .await
            {
                Ok(()) => return Ok(Some(d)),
                Err(e) if is_condition_failure(&e) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(FleetError::Contention)
    }

    /// Stores `d` (now decommissioned) if the stored record is active, and removes its serial
    /// and `BOUND` pointers in the same transaction. The record and the id pointer stay.
    pub async fn decommission(
        &self,
        integrator: &IntegratorId,
        d: &Device,
    ) -> Result<(), FleetError> {
        if &d.integrator_id != integrator || d.status != DeviceStatus::Decommissioned {
            return Err(FleetError::Store(StoreError::Invalid(
                "decommission takes a decommissioned device of the integrator".into(),
            )));
        }
        let (main, listing) = Self::copies(d)?;
        let mut ops = vec![
            TxOp::Put {
                item: main,
                cond: Some(Condition::equals(STATUS, DeviceStatus::Active.as_str())),
            },
            TxOp::Put {
                item: listing,
                cond: Some(Condition::Exists),
            },
            TxOp::Delete {
                key: serial_key(&d.supplier_id, &d.serial_no),
                cond: None,
            },
        ];
        for key in bound_keys(d) {
            ops.push(TxOp::Delete { key, cond: None });
        }
        if let Some(mn) = &d.mn {
            ops.push(TxOp::Delete {
                key: mn_key(mn),
                cond: None,
            });
        }
        self.store.transact(ops).await.map_err(|e| {
            if is_condition_failure(&e) {
                FleetError::AlreadyDecommissioned
            } else {
                e.into()
            }
        })
    }

    /// The active devices an entry covers: bound under its target in a region the entry's
    /// region covers. One prefix query.
    async fn covered_by(&self, e: &BlacklistEntry) -> Result<Vec<Bound>, FleetError> {
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let q = Query::partition(&keys::platform())
                .sk(SkCond::BeginsWith(keys::bound_prefix(
                    e.scope.as_str(),
                    &e.target_id,
                )))
                .limit(200)
                .after(cursor);
            let page = self.store.query(q).await?;
            for item in &page.items {
                let b: Bound = decode(item)?;
                if e.region_code.covers(&b.region_code) {
                    out.push(b);
                }
            }
            match page.next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Flags every active device the (active) entry covers; idempotent. Returns how many
    /// devices carry the flag now.
    pub async fn flag(&self, e: &BlacklistEntry, since: &str) -> Result<usize, FleetError> {
        let mut n = 0;
        for b in self.covered_by(e).await? {
            let flagged = self
                .modify(&b.integrator_id, &b.device_id, |d| {
                    if d.flags.iter().any(|f| f.entry_id == e.id) {
                        return false;
                    }
                    d.flags.push(Flag {
                        entry_id: e.id.clone(),
                        scope: e.scope,
                        since: since.to_owned(),
                    });
                    true
                })
                .await;
            match flagged {
                Ok(Some(_)) => n += 1,
                Ok(None) | Err(FleetError::AlreadyDecommissioned) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Removes the entry's flag from every device it covers (after lifting); idempotent.
    pub async fn unflag(&self, e: &BlacklistEntry) -> Result<(), FleetError> {
        for b in self.covered_by(e).await? {
            let unflagged = self
                .modify(&b.integrator_id, &b.device_id, |d| {
                    let before = d.flags.len();
                    d.flags.retain(|f| f.entry_id != e.id);
                    d.flags.len() != before
                })
                .await;
            match unflagged {
                Ok(_) | Err(FleetError::AlreadyDecommissioned) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// The device `id`, if `caller` may see its project (a government supervisor its region, the
/// integrator's staff, the customer's users…); `None` otherwise, which the edge answers 404 so a
/// device of another tenant is indistinguishable from none.
pub async fn visible_device(
    fleet: &Fleet,
    directory: &crate::directory::Directory,
    caller: &crate::auth::Caller,
    id: &str,
) -> Result<Option<Device>, FleetError> {
    let Ok(id) = DeviceId::parse("id", id) else {
        return Ok(None);
    };
    let Some(loc) = fleet.locate(&id).await? else {
        return Ok(None);
    };
    let dir = |e: crate::directory::DirectoryError| match e {
        crate::directory::DirectoryError::Store(s) => FleetError::Store(s),
        crate::directory::DirectoryError::Corrupt(c) => FleetError::Corrupt(c),
        crate::directory::DirectoryError::Exists(w) => FleetError::Exists(w),
    };
    let Some(p) = directory
        .project(&loc.integrator_id, &loc.project_id)
        .await
        .map_err(dir)?
    else {
        return Ok(None);
    };
    if !directory.may_see_project(caller, &p).await.map_err(dir)? {
        return Ok(None);
    }
    fleet.device(&loc.integrator_id, &id).await
}
