//! `EmbeddedStore`: the storage port on redb, for the single-box edition.
//!
//! Durability: every write is committed with `Durability::Immediate` (fsync) before its caller is
//! answered, so an acknowledged write survives `kill -9`. Throughput comes from *group commit*:
//! one writer thread drains every write request that is waiting, applies them in a single redb
//! write transaction (each request's conditions are checked against the state left by the
//! requests before it, exactly as if they ran one by one), commits once, then answers them all.
//! Reads run on redb's MVCC read transactions in the blocking pool and never wait for writers.
//!
//! Layout per logical table `T` (a [`TableDef`] from the template):
//! - `T`: (pk, sk) → postcard-encoded attributes;
//! - `T/idx/{index}`: (index pk, index sk, pk, sk) → () for each item carrying that index's key;
//! - `T/ttl`: (ttl, pk, sk) → () for each item carrying a `ttl`, for [`EmbeddedStore::purge_expired`].

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;

use async_trait::async_trait;
use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::sync::oneshot;

use super::schema::IndexDef;
use super::{
    Attr, BatchOp, Condition, Cursor, Item, Key, Page, Pk, Query, Store, StoreError, TableDef,
    Target, TxOp, now_epoch, validate_transaction,
};

type MainKey = (&'static str, &'static str);
type IdxKey = (&'static str, &'static str, &'static str, &'static str);
type TtlKey = (i64, &'static str, &'static str);

/// Most write requests one group commit takes.
const MAX_GROUP: usize = 1024;

fn backend(e: impl Into<redb::Error>) -> StoreError {
    StoreError::Backend(anyhow::Error::new(e.into()))
}

/// The redb file of names for one logical table.
#[derive(Debug, Clone)]
struct Names {
    def: TableDef,
    main: String,
    idx: Vec<(IndexDef, String)>,
    ttl: String,
}

impl Names {
    fn new(def: &TableDef) -> Self {
        let main = def.logical_id.clone();
        Names {
            def: def.clone(),
            idx: def
                .indexes
                .iter()
                .map(|i| (i.clone(), format!("{main}/idx/{}", i.name)))
                .collect(),
            ttl: format!("{main}/ttl"),
            main,
        }
    }

    fn main_def(&self) -> TableDefinition<'_, MainKey, &'static [u8]> {
        TableDefinition::new(&self.main)
    }

    fn ttl_def(&self) -> TableDefinition<'_, TtlKey, ()> {
        TableDefinition::new(&self.ttl)
    }

    fn idx_def<'a>(name: &'a str) -> TableDefinition<'a, IdxKey, ()> {
        TableDefinition::new(name)
    }

    fn idx_name(&self, index: &str) -> Result<&str, StoreError> {
        self.idx
            .iter()
            .find(|(d, _)| d.name == index)
            .map(|(_, n)| n.as_str())
            .ok_or_else(|| StoreError::Invalid(format!("table {} has no index {index}", self.main)))
    }
}

enum WriteOp {
    Put(Item, Option<Condition>),
    Delete(Key, Option<Condition>),
    Transact(Vec<TxOp>),
    Add(Key, String, i64),
    Batch(Vec<BatchOp>),
    Purge(usize),
}

enum Done {
    Unit,
    Number(i64),
}

struct WriteReq {
    names: Arc<Names>,
    op: WriteOp,
    now: i64,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

struct Writer {
    tx: Option<mpsc::Sender<WriteReq>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel ends the writer loop after it has committed what it holds.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// An open redb database file with its group-commit writer. Cheap to clone.
#[derive(Clone)]
pub struct EmbeddedDb {
    db: Arc<Database>,
    tx: mpsc::Sender<WriteReq>,
    _writer: Arc<Writer>,
}

/// The name of the thread that commits every write (the one part of a write that cannot spread
/// over cores; benchmarks read its CPU time from /proc by this name).
pub const WRITER_THREAD: &str = "store-writer";

/// How an [`EmbeddedDb`] is opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbOptions {
    /// Memory redb may use to cache pages, in bytes. redb's own default is 1 GiB, which a box
    /// that keeps months of telemetry fills: resident memory then grows with the data stored
    /// (measured: ~0.8 kB per stored message, not levelling off). Bounded here, so memory stays
    /// flat however much is stored; the hot pages (device state, rules, recent hours) fit easily.
    pub cache_bytes: usize,
}

impl DbOptions {
    pub const DEFAULT_CACHE_BYTES: usize = 64 * 1024 * 1024;
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            cache_bytes: Self::DEFAULT_CACHE_BYTES,
        }
    }
}

impl EmbeddedDb {
    /// Opens (or creates) the database file with [`DbOptions::default`]. redb recovers to the
    /// last committed transaction if the previous process died mid-write.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, DbOptions::default())
    }

    /// Opens (or creates, readable only by its owner) the database file.
    pub fn open_with(path: impl AsRef<Path>, options: DbOptions) -> Result<Self, StoreError> {
        let path = path.as_ref();
        crate::fsutil::ensure_private_file(path).map_err(|e| StoreError::Backend(e.into()))?;
        let db = Arc::new(
            Database::builder()
                .set_cache_size(options.cache_bytes)
                .create(path)
                .map_err(backend)?,
        );
        let (tx, rx) = mpsc::channel::<WriteReq>();
        let wdb = Arc::clone(&db);
        let thread = std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || writer_loop(&wdb, &rx))
            .map_err(|e| StoreError::Backend(e.into()))?;
        let writer = Writer {
            tx: Some(tx.clone()),
            thread: Some(thread),
        };
        Ok(EmbeddedDb {
            db,
            tx,
            _writer: Arc::new(writer),
        })
    }

    /// A store over the logical table `def`, creating its redb tables if needed.
    pub fn store(&self, def: &TableDef) -> Result<EmbeddedStore, StoreError> {
        let names = Arc::new(Names::new(def));
        let txn = self.db.begin_write().map_err(backend)?;
        {
            txn.open_table(names.main_def()).map_err(backend)?;
            txn.open_table(names.ttl_def()).map_err(backend)?;
            for (_, n) in &names.idx {
                txn.open_table(Names::idx_def(n)).map_err(backend)?;
            }
        }
        txn.commit().map_err(backend)?;
        Ok(EmbeddedStore {
            db: self.clone(),
            names,
        })
    }
}

/// The storage port over one logical table of an [`EmbeddedDb`].
#[derive(Clone)]
pub struct EmbeddedStore {
    db: EmbeddedDb,
    names: Arc<Names>,
}

impl EmbeddedStore {
    /// Opens `path` and returns the store for `def`: the common single-table case.
    pub fn open(path: impl AsRef<Path>, def: &TableDef) -> Result<Self, StoreError> {
        EmbeddedDb::open(path)?.store(def)
    }

    /// Physically removes up to `max` items whose `ttl` is at or before now; returns how many.
    /// Reads already hide them; this reclaims the space.
    pub async fn purge_expired(&self, max: usize) -> Result<usize, StoreError> {
        match self.write(WriteOp::Purge(max)).await? {
            Done::Number(n) => Ok(usize::try_from(n).unwrap_or(0)),
            Done::Unit => Ok(0),
        }
    }

    async fn write(&self, op: WriteOp) -> Result<Done, StoreError> {
        let (reply, rx) = oneshot::channel();
        let req = WriteReq {
            names: Arc::clone(&self.names),
            op,
            now: now_epoch(),
            reply,
        };
        self.db
            .tx
            .send(req)
            .map_err(|_| StoreError::Unavailable(anyhow::anyhow!("store writer has stopped")))?;
        rx.await.map_err(|_| {
            StoreError::Unavailable(anyhow::anyhow!("store writer dropped the request"))
        })?
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database, &Names) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = Arc::clone(&self.db.db);
        let names = Arc::clone(&self.names);
        tokio::task::spawn_blocking(move || f(&db, &names))
            .await
            .map_err(|e| StoreError::Backend(e.into()))?
    }
}

fn decode(key: Key, bytes: &[u8]) -> Result<Item, StoreError> {
    let attrs: BTreeMap<String, Attr> =
        postcard::from_bytes(bytes).map_err(|e| StoreError::Backend(e.into()))?;
    Ok(Item::from_parts(key, attrs))
}

/// The item a table handed back at `key` (a get's, an insert's or a remove's guard), decoded.
fn decoded(
    key: &Key,
    raw: Option<redb::AccessGuard<'_, &'static [u8]>>,
) -> Result<Option<Item>, StoreError> {
    raw.map(|v| decode(key.clone(), v.value())).transpose()
}

fn key_of(pk: &str, sk: &str) -> Result<Key, StoreError> {
    let pk = Pk::from_stored(pk).ok_or_else(|| {
        StoreError::Backend(anyhow::anyhow!("stored key {pk:?} lacks the tenant prefix"))
    })?;
    Ok(Key::new(pk, sk))
}

fn get_in<T: ReadableTable<MainKey, &'static [u8]>>(
    t: &T,
    key: &Key,
    now: i64,
) -> Result<Option<Item>, StoreError> {
    let raw = t.get((key.pk.as_str(), key.sk.as_str())).map_err(backend)?;
    Ok(decoded(key, raw)?.filter(|i| i.is_live(now)))
}

#[async_trait]
impl Store for EmbeddedStore {
    fn table(&self) -> &TableDef {
        &self.names.def
    }

    async fn put(&self, item: Item, cond: Option<Condition>) -> Result<(), StoreError> {
        self.write(WriteOp::Put(item, cond)).await.map(|_| ())
    }

    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let key = key.clone();
        let now = now_epoch();
        self.read(move |db, names| {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(names.main_def()).map_err(backend)?;
            get_in(&t, &key, now)
        })
        .await
    }

    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        let keys = keys.to_vec();
        let now = now_epoch();
        self.read(move |db, names| {
            let txn = db.begin_read().map_err(backend)?;
            let t = txn.open_table(names.main_def()).map_err(backend)?;
            keys.iter().map(|k| get_in(&t, k, now)).collect()
        })
        .await
    }

    async fn delete(&self, key: &Key, cond: Option<Condition>) -> Result<(), StoreError> {
        self.write(WriteOp::Delete(key.clone(), cond))
            .await
            .map(|_| ())
    }

    async fn query(&self, q: Query) -> Result<Page, StoreError> {
        let now = now_epoch();
        self.read(move |db, names| query_blocking(db, names, q, now))
            .await
    }

    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        self.write(WriteOp::Transact(ops)).await.map(|_| ())
    }

    async fn add(&self, key: &Key, attr: &str, delta: i64) -> Result<i64, StoreError> {
        match self
            .write(WriteOp::Add(key.clone(), attr.to_owned(), delta))
            .await?
        {
            Done::Number(n) => Ok(n),
            Done::Unit => Err(StoreError::Backend(anyhow::anyhow!(
                "add returned no value"
            ))),
        }
    }

    async fn batch_write(&self, ops: Vec<BatchOp>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        self.write(WriteOp::Batch(ops)).await.map(|_| ())
    }
}

fn query_blocking(db: &Database, names: &Names, q: Query, now: i64) -> Result<Page, StoreError> {
    let txn = db.begin_read().map_err(backend)?;
    let main = txn.open_table(names.main_def()).map_err(backend)?;
    let limit = q.limit.map_or(usize::MAX, |l| l as usize);
    let want = limit.saturating_add(1);
    let cursor = q.cursor.as_ref().map(Cursor::decode).transpose()?;
    let (lo, hi) = q.sk.range();
    let after = |b: &str| format!("{b}\0");
    let mut items: Vec<Item> = Vec::new();

    match &q.target {
        Target::Table => {
            let pk = q.pk.as_str();
            let pk_end = after(pk);
            let lo = lo.unwrap_or_default();
            let mut lower = Bound::Included((pk, lo.as_str()));
            let mut upper = match &hi {
                Some(h) => Bound::Excluded((pk, h.as_str())),
                None => Bound::Excluded((pk_end.as_str(), "")),
            };
            if let Some(c) = &cursor {
                if c.pk != q.pk {
                    return Err(StoreError::BadCursor);
                }
                if q.forward {
                    lower = Bound::Excluded((pk, c.sk.as_str()));
                } else {
                    upper = Bound::Excluded((pk, c.sk.as_str()));
                }
            }
            let range = main
                .range::<(&str, &str)>((lower, upper))
                .map_err(backend)?;
            let iter: Box<dyn Iterator<Item = _>> = if q.forward {
                Box::new(range)
            } else {
                Box::new(range.rev())
            };
            for entry in iter {
                let (k, v) = entry.map_err(backend)?;
                let (kp, ks) = k.value();
                let item = decode(key_of(kp, ks)?, v.value())?;
                if item.is_live(now) {
                    items.push(item);
                    if items.len() >= want {
                        break;
                    }
                }
            }
        }
        Target::Index(index) => {
            let idx = txn
                .open_table(Names::idx_def(names.idx_name(index)?))
                .map_err(backend)?;
            let ipk = q.pk.as_str();
            let ipk_end = after(ipk);
            let lo = lo.unwrap_or_default();
            let mut lower = Bound::Included((ipk, lo.as_str(), "", ""));
            let mut upper = match &hi {
                Some(h) => Bound::Excluded((ipk, h.as_str(), "", "")),
                None => Bound::Excluded((ipk_end.as_str(), "", "", "")),
            };
            let (cipk, cisk);
            if let Some(c) = &cursor {
                cipk = c.ipk.clone().unwrap_or_default();
                cisk = c.isk.clone().unwrap_or_default();
                if cipk != q.pk {
                    return Err(StoreError::BadCursor);
                }
                let at = (ipk, cisk.as_str(), c.pk.as_str(), c.sk.as_str());
                if q.forward {
                    lower = Bound::Excluded(at);
                } else {
                    upper = Bound::Excluded(at);
                }
            }
            let range = idx
                .range::<(&str, &str, &str, &str)>((lower, upper))
                .map_err(backend)?;
            let iter: Box<dyn Iterator<Item = _>> = if q.forward {
                Box::new(range)
            } else {
                Box::new(range.rev())
            };
            for entry in iter {
                let (k, _) = entry.map_err(backend)?;
                let (_, _, pk, sk) = k.value();
                if let Some(item) = get_in(&main, &key_of(pk, sk)?, now)? {
                    items.push(item);
                    if items.len() >= want {
                        break;
                    }
                }
            }
        }
    }

    let mut next = None;
    if items.len() > limit {
        items.truncate(limit);
        if let Some(last) = items.last() {
            next = Some(Cursor::at(last, &q.target, &names.def)?);
        }
    }
    Ok(Page { items, next })
}

// ---------------------------------------------------------------------------------------------
// The writer thread.

fn writer_loop(db: &Database, rx: &mpsc::Receiver<WriteReq>) {
    while let Ok(first) = rx.recv() {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(r) => group.push(r),
                Err(_) => break,
            }
        }
        match commit_group(db, &group) {
            Ok(results) => {
                for (req, res) in group.into_iter().zip(results) {
                    let _ = req.reply.send(res);
                }
            }
            Err(e) => {
                // The whole transaction was rolled back: nothing of the group was written.
                tracing::error!(error = %e, "group commit failed");
                let msg = e.to_string();
                for req in group {
                    let _ = req.reply.send(Err(StoreError::Unavailable(anyhow::anyhow!(
                        "commit failed: {msg}"
                    ))));
                }
            }
        }
    }
}

/// Applies every request in one write transaction and commits it durably. Returns each request's
/// own outcome (a failed condition only fails its request); an `Err` means nothing was committed.
fn commit_group(
    db: &Database,
    group: &[WriteReq],
) -> Result<Vec<Result<Done, StoreError>>, StoreError> {
    let mut txn = db.begin_write().map_err(backend)?;
    txn.set_durability(Durability::Immediate).map_err(backend)?;
    let mut results = Vec::with_capacity(group.len());
    {
        // Each logical table's redb tables are opened once per group, not once per request.
        let mut opened: Vec<Open<'_>> = Vec::new();
        for req in group {
            let at = match opened.iter().position(|o| o.names.main == req.names.main) {
                Some(i) => i,
                None => {
                    opened.push(Open::new(&txn, &req.names)?);
                    opened.len() - 1
                }
            };
            match apply(&mut opened[at], &req.op, req.now) {
                Ok(done) => results.push(Ok(done)),
                Err(
                    e @ (StoreError::ConditionFailed
                    | StoreError::TransactionConditionFailed { .. }
                    | StoreError::Invalid(_)),
                ) => results.push(Err(e)),
                Err(e) => return Err(e),
            }
        }
    }
    txn.commit().map_err(backend)?;
    Ok(results)
}

/// The redb tables of one logical table, open in a write transaction.
struct Open<'t> {
    names: &'t Names,
    main: redb::Table<'t, MainKey, &'static [u8]>,
    idx: Vec<(&'t IndexDef, redb::Table<'t, IdxKey, ()>)>,
    ttl: redb::Table<'t, TtlKey, ()>,
}

impl<'t> Open<'t> {
    fn new(txn: &'t redb::WriteTransaction, names: &'t Names) -> Result<Self, StoreError> {
        let mut idx = Vec::with_capacity(names.idx.len());
        for (d, n) in &names.idx {
            idx.push((d, txn.open_table(Names::idx_def(n)).map_err(backend)?));
        }
        Ok(Open {
            names,
            main: txn.open_table(names.main_def()).map_err(backend)?,
            idx,
            ttl: txn.open_table(names.ttl_def()).map_err(backend)?,
        })
    }

    /// The stored item at `key`, live or expired.
    fn raw(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let raw = self
            .main
            .get((key.pk.as_str(), key.sk.as_str()))
            .map_err(backend)?;
        decoded(key, raw)
    }

    fn unindex(&mut self, old: &Item) -> Result<(), StoreError> {
        let (pk, sk) = (old.key.pk.as_str(), old.key.sk.as_str());
        for (d, t) in &mut self.idx {
            if let Some((ipk, isk)) = old.index_key(d) {
                t.remove((ipk, isk, pk, sk)).map_err(backend)?;
            }
        }
        if let Some(ttl) = old.ttl() {
            self.ttl.remove((ttl, pk, sk)).map_err(backend)?;
        }
        Ok(())
    }

    fn remove(&mut self, key: &Key) -> Result<(), StoreError> {
        let raw = self
            .main
            .remove((key.pk.as_str(), key.sk.as_str()))
            .map_err(backend)?;
        if let Some(old) = decoded(key, raw)? {
            self.unindex(&old)?;
        }
        Ok(())
    }

    /// Writes `item`; what it replaces comes back from the insert itself (one B-tree walk).
    fn write(&mut self, item: &Item) -> Result<(), StoreError> {
        let replaced = self.insert(item)?;
        if let Some(old) = decoded(&item.key, replaced)? {
            self.unindex(&old)?;
        }
        self.index(item)
    }

    /// Writes `item` over `old`, the raw item its caller has just read at the same key.
    fn write_over(&mut self, item: &Item, old: Option<&Item>) -> Result<(), StoreError> {
        if let Some(old) = old {
            self.unindex(old)?;
        }
        self.insert(item)?;
        self.index(item)
    }

    /// Puts `item`'s attributes in the main table; the guard of what was there.
    fn insert(
        &mut self,
        item: &Item,
    ) -> Result<Option<redb::AccessGuard<'_, &'static [u8]>>, StoreError> {
        let bytes = postcard::to_stdvec(item.attrs()).map_err(|e| StoreError::Backend(e.into()))?;
        self.main
            .insert(
                (item.key.pk.as_str(), item.key.sk.as_str()),
                bytes.as_slice(),
            )
            .map_err(backend)
    }

    fn index(&mut self, item: &Item) -> Result<(), StoreError> {
        let (pk, sk) = (item.key.pk.as_str(), item.key.sk.as_str());
        for (d, t) in &mut self.idx {
            if let Some((ipk, isk)) = item.index_key(d) {
                t.insert((ipk, isk, pk, sk), ()).map_err(backend)?;
            }
        }
        if let Some(ttl) = item.ttl() {
            self.ttl.insert((ttl, pk, sk), ()).map_err(backend)?;
        }
        Ok(())
    }
}

/// `deltas` added to the live item (or a new one) at `key`.
fn added(
    key: &Key,
    live: Option<&Item>,
    deltas: &[(String, i64)],
) -> Result<(Item, Vec<i64>), StoreError> {
    let mut item = live.cloned().unwrap_or_else(|| Item::new(key.clone()));
    let mut values = Vec::with_capacity(deltas.len());
    for (attr, delta) in deltas {
        let cur = match item.attr(attr) {
            None => 0,
            Some(Attr::N(n)) => *n,
            Some(_) => {
                return Err(StoreError::Invalid(format!(
                    "attribute {attr} of {key:?} is not a number"
                )));
            }
        };
        let new = cur
            .checked_add(*delta)
            .ok_or_else(|| StoreError::Invalid(format!("counter {attr} would overflow")))?;
        item.set(attr, new);
        values.push(new);
    }
    Ok((item, values))
}

/// The raw item if it is live at `now`.
fn live(raw: &Option<Item>, now: i64) -> Option<&Item> {
    raw.as_ref().filter(|i| i.is_live(now))
}

fn apply(open: &mut Open<'_>, op: &WriteOp, now: i64) -> Result<Done, StoreError> {
    match op {
        WriteOp::Put(item, None) => {
            open.write(item)?;
            Ok(Done::Unit)
        }
        WriteOp::Put(item, Some(cond)) => {
            let raw = open.raw(&item.key)?;
            if !cond.holds(live(&raw, now)) {
                return Err(StoreError::ConditionFailed);
            }
            open.write_over(item, raw.as_ref())?;
            Ok(Done::Unit)
        }
        WriteOp::Delete(key, cond) => {
            if let Some(c) = cond
                && !c.holds(live(&open.raw(key)?, now))
            {
                return Err(StoreError::ConditionFailed);
            }
            open.remove(key)?;
            Ok(Done::Unit)
        }
        WriteOp::Add(key, attr, delta) => {
            let raw = open.raw(key)?;
            let (item, values) = added(key, live(&raw, now), &[(attr.clone(), *delta)])?;
            open.write_over(&item, raw.as_ref())?;
            Ok(Done::Number(values.first().copied().unwrap_or(0)))
        }
        WriteOp::Transact(ops) => {
            // Read what the conditions and the ADDs need, once; check every condition before
            // anything is written, so one failure aborts all. The keys are distinct
            // (`validate_transaction`), so what was read is what each write replaces.
            let mut raws: Vec<Option<Option<Item>>> = Vec::with_capacity(ops.len());
            for (index, op) in ops.iter().enumerate() {
                if op.cond().is_none() && !matches!(op, TxOp::Add { .. }) {
                    raws.push(None);
                    continue;
                }
                let raw = open.raw(op.key())?;
                if let Some(c) = op.cond()
                    && !c.holds(live(&raw, now))
                {
                    return Err(StoreError::TransactionConditionFailed { index });
                }
                raws.push(Some(raw));
            }
            let mut sums = Vec::with_capacity(ops.len());
            for (op, raw) in ops.iter().zip(&raws) {
                sums.push(match (op, raw) {
                    (TxOp::Add { key, deltas, .. }, Some(raw)) => {
                        Some(added(key, live(raw, now), deltas)?.0)
                    }
                    _ => None,
                });
            }
            for ((op, raw), sum) in ops.iter().zip(&raws).zip(&sums) {
                match (op, sum) {
                    (_, Some(item)) => {
                        open.write_over(item, raw.as_ref().and_then(Option::as_ref))?
                    }
                    (TxOp::Put { item, .. }, None) => match raw {
                        Some(raw) => open.write_over(item, raw.as_ref())?,
                        None => open.write(item)?,
                    },
                    (TxOp::Delete { key, .. }, None) => open.remove(key)?,
                    (TxOp::Check { .. } | TxOp::Add { .. }, None) => {}
                }
            }
            Ok(Done::Unit)
        }
        WriteOp::Batch(ops) => {
            for op in ops {
                match op {
                    BatchOp::Put(item) => open.write(item)?,
                    BatchOp::Delete(key) => open.remove(key)?,
                }
            }
            Ok(Done::Unit)
        }
        WriteOp::Purge(max) => {
            let mut expired = Vec::new();
            for entry in open
                .ttl
                .range::<(i64, &str, &str)>(..=(now, "\u{10FFFF}", ""))
                .map_err(backend)?
            {
                let (k, _) = entry.map_err(backend)?;
                let (_, pk, sk) = k.value();
                expired.push(key_of(pk, sk)?);
                if expired.len() >= *max {
                    break;
                }
            }
            for key in &expired {
                open.remove(key)?;
            }
            Ok(Done::Number(
                i64::try_from(expired.len()).unwrap_or(i64::MAX),
            ))
        }
    }
}

#[allow(dead_code)]
fn _assert_send_sync() {
    fn is<T: Send + Sync>() {}
    is::<EmbeddedStore>();
}

#[cfg(test)]
mod tests {
    use redb::ReadableTableMetadata;

    use super::*;
    use crate::ids::IntegratorId;
    use crate::store::keys;

    #[tokio::test]
    async fn purge_removes_only_expired_items_and_their_index_entries() {
        let dir = tempfile::tempdir().unwrap();
        let def = TableDef::main().unwrap();
        let s = EmbeddedStore::open(dir.path().join("db.redb"), def).unwrap();
        let pk = keys::integrator(&IntegratorId::parse("p").unwrap());
        let gsi = def.index("gsi1").unwrap();
        let old = Item::new(Key::new(pk.clone(), "old"))
            .with_ttl(1)
            .with_index_key(gsi, "G", "1");
        let new = Item::new(Key::new(pk.clone(), "new"))
            .with_ttl(i64::MAX)
            .with_index_key(gsi, "G", "2");
        s.batch_write(vec![BatchOp::Put(old), BatchOp::Put(new)])
            .await
            .unwrap();
        assert_eq!(s.purge_expired(100).await.unwrap(), 1);
        assert_eq!(s.purge_expired(100).await.unwrap(), 0);
        let page = s.query(Query::index("gsi1", "G")).await.unwrap();
        assert_eq!(page.items.len(), 1);
        // The raw index table holds no dangling entry for the purged item.
        let txn = s.db.db.begin_read().unwrap();
        let idx = txn
            .open_table(Names::idx_def(s.names.idx_name("gsi1").unwrap()))
            .unwrap();
        assert_eq!(idx.len().unwrap(), 1);
    }
}
