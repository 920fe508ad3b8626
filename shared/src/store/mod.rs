//! The storage port: one small trait with DynamoDB semantics, and its two adapters.
//!
//! - [`embedded::EmbeddedStore`]: redb, durable (a write acknowledged to a caller survives
//!   `kill -9`), with group commit so concurrent writers share one fsync.
//! - [`dynamo::DynamoStore`]: aws-sdk-dynamodb against AWS or the emulator (`AWS_ENDPOINT_URL`).
//!
//! Both pass the same contract suite (`shared/tests/contract/`). Semantics both adapters share:
//! - An item whose `ttl` attribute (epoch seconds) is at or before now is *expired*: reads do not
//!   return it and conditions treat it as absent, whether or not it was physically removed yet.
//! - `query` returns at most `limit` items in sort-key byte order and a cursor exactly when more
//!   items follow.
//! - `transact` is all-or-nothing over at most [`MAX_TRANSACT_ITEMS`] operations on distinct keys.

#[cfg(feature = "aws")]
pub mod dynamo;
pub mod embedded;
pub mod item;
pub mod keys;
pub mod records;
pub mod schema;

use async_trait::async_trait;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

pub use item::{Attr, Item};
pub use keys::Pk;
pub use schema::TableDef;

/// DynamoDB's limit for TransactWriteItems, which the embedded adapter enforces too.
pub const MAX_TRANSACT_ITEMS: usize = 100;

/// The primary key of an item: partition key (always tenant-prefixed) and sort key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key {
    pub pk: Pk,
    pub sk: String,
}

impl Key {
    pub fn new(pk: Pk, sk: impl Into<String>) -> Self {
        Key { pk, sk: sk.into() }
    }
}

/// A condition on the current (live) item at a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Condition {
    /// No live item exists at the key.
    NotExists,
    /// A live item exists at the key.
    Exists,
    /// A live item exists and its attribute `name` equals the value.
    Equals(String, Attr),
}

impl Condition {
    pub fn equals(name: impl Into<String>, value: impl Into<Attr>) -> Self {
        Condition::Equals(name.into(), value.into())
    }

    /// Evaluates against the live item (`None` when absent or expired).
    pub fn holds(&self, current: Option<&Item>) -> bool {
        match (self, current) {
            (Condition::NotExists, cur) => cur.is_none(),
            (Condition::Exists, cur) => cur.is_some(),
            (Condition::Equals(name, v), Some(item)) => item.attr(name) == Some(v),
            (Condition::Equals(..), None) => false,
        }
    }
}

/// A sort-key condition of a query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkCond {
    Any,
    Eq(String),
    BeginsWith(String),
    /// Inclusive on both ends, like DynamoDB's BETWEEN.
    Between(String, String),
    Lt(String),
    Le(String),
    Gt(String),
    Ge(String),
}

impl SkCond {
    /// The condition as a half-open byte range `[lo, hi)` of sort keys (`None` = unbounded).
    /// Uses two facts about byte-ordered strings: the least string greater than `x` is `x + "\0"`,
    /// and the strings with prefix `p` are exactly `[p, succ(p))`.
    pub fn range(&self) -> (Option<String>, Option<String>) {
        fn after(x: &str) -> String {
            format!("{x}\0")
        }
        match self {
            SkCond::Any => (None, None),
            SkCond::Eq(x) => (Some(x.clone()), Some(after(x))),
            SkCond::BeginsWith(p) => (Some(p.clone()), prefix_successor(p)),
            SkCond::Between(a, b) => (Some(a.clone()), Some(after(b))),
            SkCond::Lt(x) => (None, Some(x.clone())),
            SkCond::Le(x) => (None, Some(after(x))),
            SkCond::Gt(x) => (Some(after(x)), None),
            SkCond::Ge(x) => (Some(x.clone()), None),
        }
    }

    pub fn matches(&self, sk: &str) -> bool {
        let (lo, hi) = self.range();
        lo.is_none_or(|lo| sk >= lo.as_str()) && hi.is_none_or(|hi| sk < hi.as_str())
    }
}

/// The least string greater than every string that starts with `p`, or `None` if unbounded.
/// (UTF-8 byte order equals code-point order, so incrementing the last char works.)
pub fn prefix_successor(p: &str) -> Option<String> {
    let mut chars: Vec<char> = p.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last {
            '\u{D7FF}' => Some('\u{E000}'),
            char::MAX => None,
            c => char::from_u32(c as u32 + 1),
        };
        if let Some(n) = next {
            chars.push(n);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Where a query reads: the table's primary key or a global secondary index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Table,
    Index(String),
}

/// A query over one partition of the table or of an index.
#[derive(Debug, Clone)]
pub struct Query {
    pub target: Target,
    /// The partition key value (of the table or of the index).
    pub pk: String,
    pub sk: SkCond,
    pub forward: bool,
    pub limit: Option<u32>,
    pub cursor: Option<Cursor>,
}

impl Query {
    pub fn partition(pk: &Pk) -> Self {
        Query {
            target: Target::Table,
            pk: pk.as_str().to_owned(),
            sk: SkCond::Any,
            forward: true,
            limit: None,
            cursor: None,
        }
    }

    pub fn index(index: &str, pk: impl Into<String>) -> Self {
        Query {
            target: Target::Index(index.to_owned()),
            pk: pk.into(),
            sk: SkCond::Any,
            forward: true,
            limit: None,
            cursor: None,
        }
    }

    pub fn sk(mut self, cond: SkCond) -> Self {
        self.sk = cond;
        self
    }

    pub fn backward(mut self) -> Self {
        self.forward = false;
        self
    }

    pub fn limit(mut self, n: u32) -> Self {
        self.limit = Some(n);
        self
    }

    pub fn after(mut self, cursor: Option<Cursor>) -> Self {
        self.cursor = cursor;
        self
    }
}

/// One page of a query.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub items: Vec<Item>,
    /// Present exactly when more items match after this page.
    pub next: Option<Cursor>,
}

/// An opaque pagination cursor: the position of the last item returned. It is the same for both
/// adapters, so it can be handed to API clients as `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

#[derive(Serialize, Deserialize)]
pub(crate) struct CursorPos {
    pub pk: String,
    pub sk: String,
    /// Index key of the last item, for index queries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isk: Option<String>,
}

impl Cursor {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Accepts a cursor from an API client; it is checked when used.
    pub fn from_client(s: impl Into<String>) -> Self {
        Cursor(s.into())
    }

    pub(crate) fn encode(pos: &CursorPos) -> Result<Cursor, StoreError> {
        let json = serde_json::to_vec(pos).map_err(|e| StoreError::Backend(e.into()))?;
        Ok(Cursor(
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json),
        ))
    }

    pub(crate) fn decode(&self) -> Result<CursorPos, StoreError> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&self.0)
            .map_err(|_| StoreError::BadCursor)?;
        serde_json::from_slice(&bytes).map_err(|_| StoreError::BadCursor)
    }

    /// The cursor positioned at `item`, for a query on `target` of `table`.
    pub(crate) fn at(item: &Item, target: &Target, table: &TableDef) -> Result<Cursor, StoreError> {
        let (ipk, isk) = match target {
            Target::Table => (None, None),
            Target::Index(name) => {
                let (ipk, isk) = item.index_key(table.index(name)?).ok_or_else(|| {
                    StoreError::Invalid(format!("item lacks the key of index {name}"))
                })?;
                (Some(ipk.to_owned()), Some(isk.to_owned()))
            }
        };
        Cursor::encode(&CursorPos {
            pk: item.key.pk.as_str().to_owned(),
            sk: item.key.sk.clone(),
            ipk,
            isk,
        })
    }
}

/// One operation of an all-or-nothing transaction.
#[derive(Debug, Clone)]
pub enum TxOp {
    Put {
        item: Item,
        cond: Option<Condition>,
    },
    Delete {
        key: Key,
        cond: Option<Condition>,
    },
    /// Only checks a condition; writes nothing.
    Check {
        key: Key,
        cond: Condition,
    },
    /// Atomically adds each delta to its number attribute (created at 0 if absent), like one
    /// DynamoDB `ADD a :x, b :y` update: counters and sums of one aggregate move together.
    Add {
        key: Key,
        deltas: Vec<(String, i64)>,
        cond: Option<Condition>,
    },
}

impl TxOp {
    /// An unconditional [`TxOp::Add`] of one attribute.
    pub fn add(key: Key, attr: impl Into<String>, delta: i64) -> TxOp {
        TxOp::Add {
            key,
            deltas: vec![(attr.into(), delta)],
            cond: None,
        }
    }

    pub fn key(&self) -> &Key {
        match self {
            TxOp::Put { item, .. } => &item.key,
            TxOp::Delete { key, .. } | TxOp::Check { key, .. } | TxOp::Add { key, .. } => key,
        }
    }

    pub fn cond(&self) -> Option<&Condition> {
        match self {
            TxOp::Put { cond, .. } | TxOp::Delete { cond, .. } | TxOp::Add { cond, .. } => {
                cond.as_ref()
            }
            TxOp::Check { cond, .. } => Some(cond),
        }
    }
}

/// One unconditional write of a batch.
#[derive(Debug, Clone)]
pub enum BatchOp {
    Put(Item),
    Delete(Key),
}

/// Checks the shape rules DynamoDB applies to a transaction, identically for both adapters.
pub fn validate_transaction(ops: &[TxOp]) -> Result<(), StoreError> {
    if ops.is_empty() || ops.len() > MAX_TRANSACT_ITEMS {
        return Err(StoreError::Invalid(format!(
            "a transaction takes 1 to {MAX_TRANSACT_ITEMS} operations, got {}",
            ops.len()
        )));
    }
    let mut seen = std::collections::HashSet::with_capacity(ops.len());
    for op in ops {
        if !seen.insert(op.key()) {
            return Err(StoreError::Invalid(
                "a transaction may touch each item only once".into(),
            ));
        }
    }
    Ok(())
}

/// Errors of the storage port. `ConditionFailed` is the expected outcome of an optimistic write
/// and maps to 409 at HTTP; `Unavailable` is retryable; the rest are bugs or outages.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("condition failed")]
    ConditionFailed,
    #[error("transaction cancelled: the condition of operation {index} failed")]
    TransactionConditionFailed { index: usize },
    #[error("invalid storage request: {0}")]
    Invalid(String),
    /// A pagination cursor that is malformed or belongs to another query: the client's mistake.
    #[error("invalid cursor")]
    BadCursor,
    #[error("storage temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("storage backend error")]
    Backend(#[source] anyhow::Error),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}

/// The port. One instance serves one table; the tenant is carried by every key's [`Pk`].
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// The table this store serves.
    fn table(&self) -> &TableDef;

    async fn put(&self, item: Item, cond: Option<Condition>) -> Result<(), StoreError>;

    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError>;

    /// The live items at `keys`, in their order (`None` where absent or expired). Each read is
    /// consistent on its own; no snapshot across the keys is promised. The default reads one by
    /// one; an adapter may batch (the embedded one reads all in one read transaction, DynamoDB's
    /// uses BatchGetItem). A key may be named more than once; each occurrence gets its answer.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            out.push(self.get(key).await?);
        }
        Ok(out)
    }

    async fn delete(&self, key: &Key, cond: Option<Condition>) -> Result<(), StoreError>;

    async fn query(&self, query: Query) -> Result<Page, StoreError>;

    /// All or nothing: if any condition fails, nothing is written and the error names the first
    /// failing operation.
    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError>;

    /// Atomically adds `delta` to a number attribute (0 if absent, creating the item if needed)
    /// and returns the new value.
    async fn add(&self, key: &Key, attr: &str, delta: i64) -> Result<i64, StoreError>;

    /// Unconditional puts and deletes, any number; each write is atomic on its own.
    async fn batch_write(&self, ops: Vec<BatchOp>) -> Result<(), StoreError>;
}

/// How many store reads one filtered page makes at most (see [`query_filtered`]).
pub const MAX_FILTERED_READS: usize = 8;

/// One page of up to `limit` results of `q` after `cursor`, keeping the items `pick` maps to
/// `Some`: reads pages of `limit` items until `limit` results are kept (cutting the page at the
/// last item kept), the query is exhausted, or [`MAX_FILTERED_READS`] reads were made — so a
/// sparse filter answers a short (even empty) page instead of scanning a whole partition in one
/// request. The cursor is present exactly when items follow the last one read, and it is the
/// store's own, so it can be handed to API clients as `next`.
pub async fn query_filtered<T, E>(
    store: &dyn Store,
    q: Query,
    limit: u32,
    cursor: Option<Cursor>,
    mut pick: impl FnMut(&Item) -> Result<Option<T>, E>,
) -> Result<(Vec<T>, Option<Cursor>), E>
where
    E: From<StoreError>,
{
    let limit = limit.max(1);
    let mut out = Vec::new();
    let mut cursor = cursor;
    for _ in 0..MAX_FILTERED_READS {
        let page = store
            .query(q.clone().limit(limit).after(cursor.take()))
            .await?;
        let read = page.items.len();
        for (n, item) in page.items.iter().enumerate() {
            if let Some(t) = pick(item)? {
                out.push(t);
            }
            if out.len() >= limit as usize {
                let next = if n + 1 < read || page.next.is_some() {
                    Some(Cursor::at(item, &q.target, store.table())?)
                } else {
                    None
                };
                return Ok((out, next));
            }
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => return Ok((out, None)),
        }
    }
    Ok((out, cursor))
}

/// Every item `q` matches, page after page: for small sets bounded by the domain (a person's
/// projects, a device's credentials), never for lists a client pages through.
pub async fn query_all(store: &dyn Store, q: Query) -> Result<Vec<Item>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let page = store.query(q.clone().after(cursor)).await?;
        out.extend(page.items);
        match page.next {
            Some(c) => cursor = Some(c),
            None => return Ok(out),
        }
    }
}

/// Current time in epoch seconds, the unit of `ttl`.
pub fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_successor_bounds_exactly_the_prefixed_strings() {
        assert_eq!(prefix_successor("ab").as_deref(), Some("ac"));
        assert_eq!(prefix_successor("a#").as_deref(), Some("a$"));
        assert_eq!(prefix_successor(""), None);
        assert_eq!(prefix_successor("a\u{10FFFF}").as_deref(), Some("b"));
        assert_eq!(prefix_successor("\u{D7FF}").as_deref(), Some("\u{E000}"));
    }

    #[test]
    fn sk_conditions_as_ranges() {
        let c = SkCond::BeginsWith("E#".into());
        assert!(c.matches("E#1") && c.matches("E#") && !c.matches("E") && !c.matches("F"));
        let c = SkCond::Between("b".into(), "d".into());
        assert!(c.matches("b") && c.matches("d") && !c.matches("d\u{1}") && !c.matches("a"));
        assert!(SkCond::Gt("b".into()).matches("b\0") && !SkCond::Gt("b".into()).matches("b"));
        assert!(SkCond::Le("b".into()).matches("b") && !SkCond::Le("b".into()).matches("ba"));
        assert!(SkCond::Lt("b".into()).matches("a") && !SkCond::Lt("b".into()).matches("b"));
        assert!(SkCond::Eq("b".into()).matches("b") && !SkCond::Eq("b".into()).matches("ba"));
        assert!(SkCond::Any.matches(""));
    }

    #[test]
    fn transactions_are_shape_checked() {
        let i = crate::ids::IntegratorId::parse("t").unwrap();
        let key = |s: &str| Key::new(keys::integrator(&i), s);
        let put = |s: &str| TxOp::Put {
            item: Item::new(key(s)),
            cond: None,
        };
        assert!(validate_transaction(&[]).is_err());
        assert!(validate_transaction(&[put("a"), put("b")]).is_ok());
        assert!(validate_transaction(&[put("a"), put("a")]).is_err());
        let many: Vec<_> = (0..101).map(|n| put(&n.to_string())).collect();
        assert!(validate_transaction(&many).is_err());
        assert!(validate_transaction(&many[..100]).is_ok());
    }

    #[test]
    fn cursor_round_trips_and_rejects_garbage() {
        let pos = CursorPos {
            pk: "I#a#".into(),
            sk: "x".into(),
            ipk: None,
            isk: None,
        };
        let c = Cursor::encode(&pos).unwrap();
        assert_eq!(c.decode().unwrap().sk, "x");
        assert!(matches!(
            Cursor::from_client("%%%").decode(),
            Err(StoreError::BadCursor)
        ));
    }
}
