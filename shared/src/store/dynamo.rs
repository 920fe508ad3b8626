//! `DynamoStore`: the storage port on aws-sdk-dynamodb.
//!
//! The client comes from `aws_config`, so the endpoint is AWS itself or whatever the standard
//! `AWS_ENDPOINT_URL` names (the emulator, LocalStack); there is no "if local" here.
//! Expired items (see the port's rules) are filtered on every read and treated as absent by every
//! condition, because DynamoDB deletes expired items only eventually.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, DeleteRequest,
    GlobalSecondaryIndex, KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType,
    Put, PutRequest, ReturnValue, ScalarAttributeType, TableStatus, TimeToLiveSpecification,
    TransactWriteItem, Update, WriteRequest,
};

use super::item::TTL_ATTR;
use super::{
    Attr, BatchOp, Condition, Cursor, Item, Key, Page, Pk, Query, SkCond, Store, StoreError,
    TableDef, Target, TxOp, now_epoch, validate_transaction,
};

type AttrMap = HashMap<String, AttributeValue>;

/// The storage port over one DynamoDB table.
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table_name: String,
    def: TableDef,
}

impl DynamoStore {
    pub fn new(client: Client, table_name: impl Into<String>, def: &TableDef) -> Self {
        DynamoStore {
            client,
            table_name: table_name.into(),
            def: def.clone(),
        }
    }

    /// The client from the standard AWS configuration chain (region, credentials and
    /// `AWS_ENDPOINT_URL` from the environment), built once per process (a Lambda cold start).
    pub async fn from_config(cfg: &crate::config::AwsTableConfig) -> Self {
        let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        DynamoStore::from_sdk_config(&aws, cfg)
    }

    /// The same, from an SDK configuration already loaded (a process building several clients
    /// loads it once).
    pub fn from_sdk_config(
        aws: &aws_config::SdkConfig,
        cfg: &crate::config::AwsTableConfig,
    ) -> Self {
        DynamoStore::new(Client::new(aws), cfg.table_name.clone(), cfg.def)
    }

    pub fn table_name(&self) -> &str {
        &self.table_name
    }

    /// Creates the table from its template definition (key schema, indexes, TTL) and waits until
    /// it is active. Used for the emulator and for tests; in AWS the SAM stack creates it.
    pub async fn create_table(
        client: &Client,
        name: &str,
        def: &TableDef,
    ) -> Result<(), StoreError> {
        let mut attrs = vec![def.hash_key.clone(), def.range_key.clone()];
        for i in &def.indexes {
            for a in [&i.hash_key, &i.range_key] {
                if !attrs.contains(a) {
                    attrs.push(a.clone());
                }
            }
        }
        let mut req = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key_elem(&def.hash_key, KeyType::Hash)?)
            .key_schema(key_elem(&def.range_key, KeyType::Range)?);
        for a in &attrs {
            req = req.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(a)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build_err)?,
            );
        }
        for i in &def.indexes {
            req = req.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(&i.name)
                    .key_schema(key_elem(&i.hash_key, KeyType::Hash)?)
                    .key_schema(key_elem(&i.range_key, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::All)
                            .build(),
                    )
                    .build()
                    .map_err(build_err)?,
            );
        }
        req.send().await.map_err(sdk_err)?;
        for _ in 0..300 {
            let d = client
                .describe_table()
                .table_name(name)
                .send()
                .await
                .map_err(sdk_err)?;
            if d.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if let Some(ttl) = &def.ttl_attribute {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(ttl)
                        .enabled(true)
                        .build()
                        .map_err(build_err)?,
                )
                .send()
                .await
                .map_err(sdk_err)?;
        }
        Ok(())
    }

    fn key_map(&self, key: &Key) -> AttrMap {
        HashMap::from([
            (
                self.def.hash_key.clone(),
                AttributeValue::S(key.pk.as_str().to_owned()),
            ),
            (
                self.def.range_key.clone(),
                AttributeValue::S(key.sk.clone()),
            ),
        ])
    }

    fn item_map(&self, item: &Item) -> AttrMap {
        let mut m = self.key_map(&item.key);
        for (k, v) in item.attrs() {
            m.insert(k.clone(), to_av(v));
        }
        m
    }

    fn item_from_map(&self, mut m: AttrMap) -> Result<Item, StoreError> {
        let pk = take_s(&mut m, &self.def.hash_key)?;
        let sk = take_s(&mut m, &self.def.range_key)?;
        let pk = Pk::from_stored(&pk).ok_or_else(|| {
            StoreError::Backend(anyhow::anyhow!("stored key {pk:?} lacks the tenant prefix"))
        })?;
        let attrs = m
            .into_iter()
            .map(|(k, v)| Ok((k, from_av(v)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(Item::from_parts(Key::new(pk, sk), attrs))
    }

    fn ttl_attr(&self) -> &str {
        self.def.ttl_attribute.as_deref().unwrap_or(TTL_ATTR)
    }
}

fn key_elem(name: &str, kt: KeyType) -> Result<KeySchemaElement, StoreError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kt)
        .build()
        .map_err(build_err)
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Invalid(format!("request build: {e}"))
}

fn take_s(m: &mut AttrMap, name: &str) -> Result<String, StoreError> {
    match m.remove(name) {
        Some(AttributeValue::S(s)) => Ok(s),
        _ => Err(StoreError::Backend(anyhow::anyhow!(
            "item lacks string key attribute {name}"
        ))),
    }
}

fn to_av(a: &Attr) -> AttributeValue {
    match a {
        Attr::S(s) => AttributeValue::S(s.clone()),
        Attr::N(n) => AttributeValue::N(n.to_string()),
        Attr::B(b) => AttributeValue::B(Blob::new(b.clone())),
        Attr::Bool(b) => AttributeValue::Bool(*b),
        Attr::Null => AttributeValue::Null(true),
        Attr::L(l) => AttributeValue::L(l.iter().map(to_av).collect()),
        Attr::M(m) => AttributeValue::M(m.iter().map(|(k, v)| (k.clone(), to_av(v))).collect()),
    }
}

fn from_av(v: AttributeValue) -> Result<Attr, StoreError> {
    Ok(match v {
        AttributeValue::S(s) => Attr::S(s),
        AttributeValue::N(n) => Attr::N(
            n.parse()
                .map_err(|_| StoreError::Backend(anyhow::anyhow!("number {n:?} is not an i64")))?,
        ),
        AttributeValue::B(b) => Attr::B(b.into_inner()),
        AttributeValue::Bool(b) => Attr::Bool(b),
        AttributeValue::Null(_) => Attr::Null,
        AttributeValue::L(l) => Attr::L(l.into_iter().map(from_av).collect::<Result<_, _>>()?),
        AttributeValue::M(m) => Attr::M(
            m.into_iter()
                .map(|(k, v)| Ok((k, from_av(v)?)))
                .collect::<Result<_, StoreError>>()?,
        ),
        other => {
            return Err(StoreError::Backend(anyhow::anyhow!(
                "unsupported attribute type {other:?}"
            )));
        }
    })
}

/// Maps an SDK error: conditional failures to `ConditionFailed`, throttling and transport
/// failures to the retryable `Unavailable`, anything else to `Backend` with its cause.
fn sdk_err<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    const RETRYABLE: [&str; 6] = [
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TransactionConflictException",
        "InternalServerError",
        "ServiceUnavailable",
    ];
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            return StoreError::Unavailable(anyhow::Error::new(e));
        }
        _ => {}
    }
    match e.code() {
        Some("ConditionalCheckFailedException") => StoreError::ConditionFailed,
        Some(c) if RETRYABLE.contains(&c) => StoreError::Unavailable(anyhow::Error::new(e)),
        Some("ValidationException") => {
            StoreError::Invalid(e.message().unwrap_or("validation").to_owned())
        }
        _ => StoreError::Backend(anyhow::Error::new(e)),
    }
}

/// Keys per BatchGetItem request (DynamoDB's limit).
const BATCH_GET_KEYS: usize = 100;
/// Requests per BatchWriteItem call (DynamoDB's limit).
const BATCH_WRITE_OPS: usize = 25;

/// Sends one batch request, then again with whatever DynamoDB left unprocessed (throttling, the
/// 16 MB answer limit), with exponential backoff, until nothing is left. `send` answers what it
/// got back and what is still pending (`None` when nothing is); the answers are collected.
async fn until_processed<P, T, F, Fut>(first: P, send: F) -> Result<Vec<T>, StoreError>
where
    F: FnMut(P) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<P>), StoreError>>,
{
    until_processed_from(first, Duration::from_millis(20), send).await
}

async fn until_processed_from<P, T, F, Fut>(
    first: P,
    mut backoff: Duration,
    mut send: F,
) -> Result<Vec<T>, StoreError>
where
    F: FnMut(P) -> Fut,
    Fut: Future<Output = Result<(Vec<T>, Option<P>), StoreError>>,
{
    let mut answered = Vec::new();
    let mut pending = first;
    for attempt in 0.. {
        let (got, rest) = send(pending).await?;
        answered.extend(got);
        match rest {
            None => return Ok(answered),
            Some(rest) => pending = rest,
        }
        if attempt >= 8 {
            break;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
    Err(StoreError::Unavailable(anyhow::anyhow!(
        "a batch request left items unprocessed after 9 attempts"
    )))
}

/// Builds condition and key-condition expressions with unique placeholders.
#[derive(Default)]
struct Expr {
    names: HashMap<String, String>,
    values: AttrMap,
    n: usize,
}

impl Expr {
    fn name(&mut self, attr: &str) -> String {
        if let Some((k, _)) = self.names.iter().find(|(_, v)| v.as_str() == attr) {
            return k.clone();
        }
        let p = format!("#n{}", self.names.len());
        self.names.insert(p.clone(), attr.to_owned());
        p
    }

    fn value(&mut self, v: AttributeValue) -> String {
        self.n += 1;
        let p = format!(":v{}", self.n);
        self.values.insert(p.clone(), v);
        p
    }

    /// `cond` on the live item, with "live" meaning no ttl or a ttl after now.
    fn condition(&mut self, store: &DynamoStore, cond: &Condition, now: i64) -> String {
        // DynamoDB refuses placeholders an expression does not use: name only what each uses.
        let ttl = self.name(store.ttl_attr());
        let now = self.value(AttributeValue::N(now.to_string()));
        let live = format!("(attribute_not_exists({ttl}) OR {ttl} > {now})");
        match cond {
            Condition::NotExists => {
                let pk = self.name(&store.def.hash_key);
                format!("(attribute_not_exists({pk}) OR {ttl} <= {now})")
            }
            Condition::Exists => {
                let pk = self.name(&store.def.hash_key);
                format!("(attribute_exists({pk}) AND {live})")
            }
            Condition::Equals(a, v) => {
                let a = self.name(a);
                let v = self.value(to_av(v));
                format!("({a} = {v} AND {live})")
            }
        }
    }

    fn live_filter(&mut self, store: &DynamoStore, now: i64) -> String {
        let ttl = self.name(store.ttl_attr());
        let now = self.value(AttributeValue::N(now.to_string()));
        format!("attribute_not_exists({ttl}) OR {ttl} > {now}")
    }

    fn sk_condition(&mut self, sk_attr: &str, c: &SkCond) -> Option<String> {
        let s = |x: &String| AttributeValue::S(x.clone());
        let (op, v) = match c {
            SkCond::Any => return None,
            SkCond::Eq(x) => ("=", s(x)),
            SkCond::Lt(x) => ("<", s(x)),
            SkCond::Le(x) => ("<=", s(x)),
            SkCond::Gt(x) => (">", s(x)),
            SkCond::Ge(x) => (">=", s(x)),
            SkCond::BeginsWith(p) => {
                let (a, v) = (self.name(sk_attr), self.value(s(p)));
                return Some(format!("begins_with({a}, {v})"));
            }
            SkCond::Between(lo, hi) => {
                let a = self.name(sk_attr);
                let (l, h) = (self.value(s(lo)), self.value(s(hi)));
                return Some(format!("{a} BETWEEN {l} AND {h}"));
            }
        };
        let (a, v) = (self.name(sk_attr), self.value(v));
        Some(format!("{a} {op} {v}"))
    }

    fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    fn values(&self) -> Option<AttrMap> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}

#[async_trait]
impl Store for DynamoStore {
    fn table(&self) -> &TableDef {
        &self.def
    }

    async fn put(&self, item: Item, cond: Option<Condition>) -> Result<(), StoreError> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table_name)
            .set_item(Some(self.item_map(&item)));
        if let Some(c) = &cond {
            let mut x = Expr::default();
            let ce = x.condition(self, c, now_epoch());
            req = req
                .condition_expression(ce)
                .set_expression_attribute_names(x.names())
                .set_expression_attribute_values(x.values());
        }
        req.send().await.map_err(sdk_err)?;
        Ok(())
    }

    async fn get(&self, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table_name)
            .set_key(Some(self.key_map(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        match out.item {
            Some(m) => {
                let item = self.item_from_map(m)?;
                Ok(item.is_live(now_epoch()).then_some(item))
            }
            None => Ok(None),
        }
    }

    /// BatchGetItem in chunks of [`BATCH_GET_KEYS`] distinct keys (DynamoDB refuses a request
    /// that names a key twice), strongly consistent, retrying `UnprocessedKeys` with backoff; the
    /// answer follows the order of `keys`, duplicates included.
    async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        let mut seen = HashSet::with_capacity(keys.len());
        let distinct: Vec<&Key> = keys.iter().filter(|k| seen.insert(*k)).collect();
        let now = now_epoch();
        let mut found: HashMap<Key, Item> = HashMap::with_capacity(distinct.len());
        for chunk in distinct.chunks(BATCH_GET_KEYS) {
            let request = KeysAndAttributes::builder()
                .set_keys(Some(chunk.iter().map(|k| self.key_map(k)).collect()))
                .consistent_read(true)
                .build()
                .map_err(build_err)?;
            let first = HashMap::from([(self.table_name.clone(), request)]);
            let answered = until_processed(first, |pending| async move {
                let out = self
                    .client
                    .batch_get_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(sdk_err)?;
                let got = out
                    .responses
                    .and_then(|mut r| r.remove(&self.table_name))
                    .unwrap_or_default();
                let mut rest = out.unprocessed_keys.unwrap_or_default();
                rest.retain(|_, v| !v.keys().is_empty());
                Ok((got, (!rest.is_empty()).then_some(rest)))
            })
            .await?;
            for m in answered {
                let item = self.item_from_map(m)?;
                if item.is_live(now) {
                    found.insert(item.key.clone(), item);
                }
            }
        }
        Ok(keys.iter().map(|k| found.get(k).cloned()).collect())
    }

    async fn delete(&self, key: &Key, cond: Option<Condition>) -> Result<(), StoreError> {
        let mut req = self
            .client
            .delete_item()
            .table_name(&self.table_name)
            .set_key(Some(self.key_map(key)));
        if let Some(c) = &cond {
            let mut x = Expr::default();
            let ce = x.condition(self, c, now_epoch());
            req = req
                .condition_expression(ce)
                .set_expression_attribute_names(x.names())
                .set_expression_attribute_values(x.values());
        }
        req.send().await.map_err(sdk_err)?;
        Ok(())
    }

    async fn query(&self, q: Query) -> Result<Page, StoreError> {
        let (index, pk_attr, sk_attr) = match &q.target {
            Target::Table => (None, self.def.hash_key.clone(), self.def.range_key.clone()),
            Target::Index(name) => {
                let i = self.def.index(name)?;
                (Some(name.clone()), i.hash_key.clone(), i.range_key.clone())
            }
        };
        let mut x = Expr::default();
        let pk_name = x.name(&pk_attr);
        let pk_val = x.value(AttributeValue::S(q.pk.clone()));
        let mut kce = format!("{pk_name} = {pk_val}");
        if let Some(skc) = x.sk_condition(&sk_attr, &q.sk) {
            kce = format!("{kce} AND {skc}");
        }
        let filter = x.live_filter(self, now_epoch());

        let mut start = match &q.cursor {
            None => None,
            Some(c) => {
                let pos = c.decode()?;
                let mut m = HashMap::from([
                    (self.def.hash_key.clone(), AttributeValue::S(pos.pk)),
                    (self.def.range_key.clone(), AttributeValue::S(pos.sk)),
                ]);
                if let Target::Index(name) = &q.target {
                    let i = self.def.index(name)?;
                    let (Some(ipk), Some(isk)) = (pos.ipk, pos.isk) else {
                        return Err(StoreError::BadCursor);
                    };
                    if ipk != q.pk {
                        return Err(StoreError::BadCursor);
                    }
                    m.insert(i.hash_key.clone(), AttributeValue::S(ipk));
                    m.insert(i.range_key.clone(), AttributeValue::S(isk));
                } else if m.get(&self.def.hash_key) != Some(&AttributeValue::S(q.pk.clone())) {
                    return Err(StoreError::BadCursor);
                }
                Some(m)
            }
        };

        // Read one item past the limit so `next` is present exactly when more items follow.
        let limit = q.limit.map_or(usize::MAX, |l| l as usize);
        let want = limit.saturating_add(1);
        let mut items = Vec::new();
        loop {
            let page_limit = i32::try_from(want - items.len()).unwrap_or(i32::MAX);
            let out = self
                .client
                .query()
                .table_name(&self.table_name)
                .set_index_name(index.clone())
                .consistent_read(index.is_none())
                .key_condition_expression(&kce)
                .filter_expression(&filter)
                .set_expression_attribute_names(x.names())
                .set_expression_attribute_values(x.values())
                .scan_index_forward(q.forward)
                .limit(page_limit)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_err)?;
            for m in out.items.unwrap_or_default() {
                items.push(self.item_from_map(m)?);
            }
            start = out.last_evaluated_key;
            if items.len() >= want || start.is_none() {
                break;
            }
        }
        let mut next = None;
        if items.len() > limit {
            items.truncate(limit);
            if let Some(last) = items.last() {
                next = Some(Cursor::at(last, &q.target, &self.def)?);
            }
        }
        Ok(Page { items, next })
    }

    async fn transact(&self, ops: Vec<TxOp>) -> Result<(), StoreError> {
        validate_transaction(&ops)?;
        let now = now_epoch();
        let mut items = Vec::with_capacity(ops.len());
        for op in &ops {
            let mut x = Expr::default();
            let ce = op.cond().map(|c| x.condition(self, c, now));
            let item = match op {
                TxOp::Put { item, .. } => TransactWriteItem::builder().put(
                    Put::builder()
                        .table_name(&self.table_name)
                        .set_item(Some(self.item_map(item)))
                        .set_condition_expression(ce)
                        .set_expression_attribute_names(x.names())
                        .set_expression_attribute_values(x.values())
                        .build()
                        .map_err(build_err)?,
                ),
                TxOp::Delete { key, .. } => TransactWriteItem::builder().delete(
                    Delete::builder()
                        .table_name(&self.table_name)
                        .set_key(Some(self.key_map(key)))
                        .set_condition_expression(ce)
                        .set_expression_attribute_names(x.names())
                        .set_expression_attribute_values(x.values())
                        .build()
                        .map_err(build_err)?,
                ),
                TxOp::Check { key, .. } => TransactWriteItem::builder().condition_check(
                    ConditionCheck::builder()
                        .table_name(&self.table_name)
                        .set_key(Some(self.key_map(key)))
                        .set_condition_expression(ce)
                        .set_expression_attribute_names(x.names())
                        .set_expression_attribute_values(x.values())
                        .build()
                        .map_err(build_err)?,
                ),
                TxOp::Add { key, deltas, .. } => {
                    let parts = deltas
                        .iter()
                        .map(|(attr, delta)| {
                            let a = x.name(attr);
                            let d = x.value(AttributeValue::N(delta.to_string()));
                            format!("{a} {d}")
                        })
                        .collect::<Vec<_>>();
                    TransactWriteItem::builder().update(
                        Update::builder()
                            .table_name(&self.table_name)
                            .set_key(Some(self.key_map(key)))
                            .update_expression(format!("ADD {}", parts.join(", ")))
                            .set_condition_expression(ce)
                            .set_expression_attribute_names(x.names())
                            .set_expression_attribute_values(x.values())
                            .build()
                            .map_err(build_err)?,
                    )
                }
            };
            items.push(item.build());
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(tc)) = e.as_service_error() {
                    let failed = tc
                        .cancellation_reasons()
                        .iter()
                        .position(|r| r.code() == Some("ConditionalCheckFailed"));
                    if let Some(index) = failed {
                        return Err(StoreError::TransactionConditionFailed { index });
                    }
                    return Err(StoreError::Unavailable(anyhow::Error::new(e)));
                }
                Err(sdk_err(e))
            }
        }
    }

    async fn add(&self, key: &Key, attr: &str, delta: i64) -> Result<i64, StoreError> {
        let mut x = Expr::default();
        let a = x.name(attr);
        let d = x.value(AttributeValue::N(delta.to_string()));
        let out = self
            .client
            .update_item()
            .table_name(&self.table_name)
            .set_key(Some(self.key_map(key)))
            .update_expression(format!("ADD {a} {d}"))
            .set_expression_attribute_names(x.names())
            .set_expression_attribute_values(x.values())
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk_err)?;
        match out.attributes.and_then(|mut m| m.remove(attr)) {
            Some(AttributeValue::N(n)) => n
                .parse()
                .map_err(|_| StoreError::Backend(anyhow::anyhow!("counter {n:?} is not an i64"))),
            _ => Err(StoreError::Backend(anyhow::anyhow!(
                "UpdateItem returned no {attr}"
            ))),
        }
    }

    async fn batch_write(&self, ops: Vec<BatchOp>) -> Result<(), StoreError> {
        // BatchWriteItem takes 25 requests; unprocessed ones are retried with backoff.
        for chunk in ops.chunks(BATCH_WRITE_OPS) {
            let mut reqs = Vec::with_capacity(chunk.len());
            for op in chunk {
                reqs.push(match op {
                    BatchOp::Put(item) => WriteRequest::builder()
                        .put_request(
                            PutRequest::builder()
                                .set_item(Some(self.item_map(item)))
                                .build()
                                .map_err(build_err)?,
                        )
                        .build(),
                    BatchOp::Delete(key) => WriteRequest::builder()
                        .delete_request(
                            DeleteRequest::builder()
                                .set_key(Some(self.key_map(key)))
                                .build()
                                .map_err(build_err)?,
                        )
                        .build(),
                });
            }
            let first = HashMap::from([(self.table_name.clone(), reqs)]);
            until_processed(first, |pending| async move {
                let out = self
                    .client
                    .batch_write_item()
                    .set_request_items(Some(pending))
                    .send()
                    .await
                    .map_err(sdk_err)?;
                let mut rest = out.unprocessed_items.unwrap_or_default();
                rest.retain(|_, v| !v.is_empty());
                Ok((Vec::<()>::new(), (!rest.is_empty()).then_some(rest)))
            })
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What DynamoDB leaves unprocessed is sent again until nothing is left, and every answer of
    /// every round is kept.
    #[tokio::test]
    async fn unprocessed_requests_are_resent_and_answers_kept() {
        let mut rounds = Vec::new();
        let got = until_processed(vec![1, 2, 3, 4, 5], |pending: Vec<i32>| {
            rounds.push(pending.clone());
            async move {
                // Each round processes the first two keys and leaves the rest.
                let (done, rest) = pending.split_at(pending.len().min(2));
                Ok((done.to_vec(), (!rest.is_empty()).then(|| rest.to_vec())))
            }
        })
        .await
        .unwrap();
        assert_eq!(got, vec![1, 2, 3, 4, 5]);
        assert_eq!(rounds, vec![vec![1, 2, 3, 4, 5], vec![3, 4, 5], vec![5]]);
    }

    #[tokio::test]
    async fn a_batch_that_never_drains_is_unavailable() {
        let mut calls = 0;
        let err = until_processed_from(vec![1], Duration::from_micros(1), |pending: Vec<i32>| {
            calls += 1;
            async move { Ok((Vec::<i32>::new(), Some(pending))) }
        })
        .await
        .unwrap_err();
        assert!(err.is_retryable(), "{err:?}");
        assert_eq!(calls, 9);
    }
}
