//! Typed records over the storage port: a value kept as JSON in one `data` attribute, and paged
//! lists of them. The data-access modules (directory, catalog, fleet) all store entities so.

use serde::{Serialize, de::DeserializeOwned};

use super::{Cursor, Item, Key, Query, Store, StoreError, query_filtered};

/// The attribute that holds a record's JSON.
pub const DATA: &str = "data";

/// A page of a list answer (`{"items": [...], "next": cursor-or-null}`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ListPage<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

/// An item holding `value` as JSON.
pub fn record<T: Serialize>(key: Key, value: &T) -> Result<Item, serde_json::Error> {
    Item::new(key).with_json(DATA, value)
}

/// The JSON value an item holds.
pub fn decode<T: DeserializeOwned>(item: &Item) -> Result<T, serde_json::Error> {
    item.json(DATA)
}

/// The record at `key`, if any.
pub async fn get_json<T, E>(store: &dyn Store, key: Key) -> Result<Option<T>, E>
where
    T: DeserializeOwned,
    E: From<StoreError> + From<serde_json::Error>,
{
    match store.get(&key).await? {
        Some(item) => Ok(Some(decode(&item)?)),
        None => Ok(None),
    }
}

/// One page of the records `q` matches, resuming after a client's cursor.
pub async fn page<T, E>(
    store: &dyn Store,
    q: Query,
    limit: u32,
    cursor: Option<String>,
) -> Result<ListPage<T>, E>
where
    T: DeserializeOwned,
    E: From<StoreError> + From<serde_json::Error>,
{
    let page = store
        .query(q.limit(limit).after(cursor.map(Cursor::from_client)))
        .await?;
    let items = page.items.iter().map(decode).collect::<Result<_, _>>()?;
    Ok(ListPage {
        items,
        next: page.next.map(|c| c.as_str().to_owned()),
    })
}

/// One page of the records `q` matches that `keep` accepts, resuming after a client's cursor
/// (see [`query_filtered`]: a page may be short while `next` says more may follow).
pub async fn page_filtered<T, E>(
    store: &dyn Store,
    q: Query,
    limit: u32,
    cursor: Option<String>,
    keep: impl Fn(&T) -> bool,
) -> Result<ListPage<T>, E>
where
    T: DeserializeOwned,
    E: From<StoreError> + From<serde_json::Error>,
{
    let (items, next) = query_filtered(store, q, limit, cursor.map(Cursor::from_client), |item| {
        let t: T = decode(item)?;
        Ok::<_, E>(keep(&t).then_some(t))
    })
    .await?;
    Ok(ListPage {
        items,
        next: next.map(|c| c.as_str().to_owned()),
    })
}
