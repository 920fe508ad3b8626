//! Typed records over the storage port: a value kept as JSON in one `data` attribute, and paged
//! lists of them. The data-access modules (directory, catalog, fleet) all store entities so.

use serde::{Serialize, de::DeserializeOwned};

use super::{Cursor, Item, Key, Query, Store, StoreError};

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
