//! Items: a key plus named attributes, the DynamoDB data model reduced to what we use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::Key;
use super::schema::IndexDef;

/// Name of the expiry attribute (epoch seconds). The template's TimeToLiveSpecification names the
/// same attribute; `schema` tests that they agree.
pub const TTL_ATTR: &str = "ttl";

/// An attribute value. Numbers are integers: money is fen, rates are basis points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Attr {
    S(String),
    N(i64),
    B(Vec<u8>),
    Bool(bool),
    Null,
    L(Vec<Attr>),
    M(BTreeMap<String, Attr>),
}

impl From<&str> for Attr {
    fn from(s: &str) -> Self {
        Attr::S(s.to_owned())
    }
}
impl From<String> for Attr {
    fn from(s: String) -> Self {
        Attr::S(s)
    }
}
impl From<i64> for Attr {
    fn from(n: i64) -> Self {
        Attr::N(n)
    }
}
impl From<bool> for Attr {
    fn from(b: bool) -> Self {
        Attr::Bool(b)
    }
}
impl From<Vec<u8>> for Attr {
    fn from(b: Vec<u8>) -> Self {
        Attr::B(b)
    }
}

/// An item. `pk`/`sk` live in `key`, never among the attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub key: Key,
    attrs: BTreeMap<String, Attr>,
}

/// Attribute names an item may not carry because they are its key.
pub const KEY_ATTRS: [&str; 2] = ["pk", "sk"];

impl Item {
    pub fn new(key: Key) -> Self {
        Item {
            key,
            attrs: BTreeMap::new(),
        }
    }

    pub(crate) fn from_parts(key: Key, attrs: BTreeMap<String, Attr>) -> Self {
        Item { key, attrs }
    }

    /// Sets an attribute. Key attribute names are ignored: the key is `self.key`.
    pub fn with(mut self, name: &str, value: impl Into<Attr>) -> Self {
        self.set(name, value);
        self
    }

    pub fn set(&mut self, name: &str, value: impl Into<Attr>) {
        if !KEY_ATTRS.contains(&name) {
            self.attrs.insert(name.to_owned(), value.into());
        }
    }

    pub fn remove(&mut self, name: &str) -> Option<Attr> {
        self.attrs.remove(name)
    }

    pub fn attr(&self, name: &str) -> Option<&Attr> {
        self.attrs.get(name)
    }

    pub fn attrs(&self) -> &BTreeMap<String, Attr> {
        &self.attrs
    }

    pub fn s(&self, name: &str) -> Option<&str> {
        match self.attrs.get(name) {
            Some(Attr::S(s)) => Some(s),
            _ => None,
        }
    }

    pub fn n(&self, name: &str) -> Option<i64> {
        match self.attrs.get(name) {
            Some(Attr::N(n)) => Some(*n),
            _ => None,
        }
    }

    /// Stores a serializable value as a JSON string attribute.
    pub fn with_json<T: Serialize>(self, name: &str, value: &T) -> Result<Self, serde_json::Error> {
        let json = serde_json::to_string(value)?;
        Ok(self.with(name, json))
    }

    /// Reads a JSON string attribute back.
    pub fn json<T: DeserializeOwned>(&self, name: &str) -> Result<T, serde_json::Error> {
        let s = self.s(name).unwrap_or("null");
        serde_json::from_str(s)
    }

    /// Expires the item at `epoch_secs`.
    pub fn with_ttl(self, epoch_secs: i64) -> Self {
        self.with(TTL_ATTR, epoch_secs)
    }

    pub fn ttl(&self) -> Option<i64> {
        self.n(TTL_ATTR)
    }

    /// Whether the item is visible at `now` (epoch seconds).
    pub fn is_live(&self, now: i64) -> bool {
        self.ttl().is_none_or(|t| t > now)
    }

    /// Places the item in a secondary index.
    pub fn with_index_key(
        self,
        index: &IndexDef,
        pk: impl Into<String>,
        sk: impl Into<String>,
    ) -> Self {
        self.with(&index.hash_key, pk.into())
            .with(&index.range_key, sk.into())
    }

    /// The item's key in `index`, if it carries both index attributes as strings.
    pub fn index_key(&self, index: &IndexDef) -> Option<(&str, &str)> {
        Some((self.s(&index.hash_key)?, self.s(&index.range_key)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::IntegratorId;
    use crate::store::keys;

    fn key() -> Key {
        Key::new(keys::integrator(&IntegratorId::parse("a").unwrap()), "s")
    }

    #[test]
    fn key_attributes_cannot_be_overwritten() {
        let item = Item::new(key())
            .with("pk", "evil")
            .with("sk", "evil")
            .with("x", 1);
        assert_eq!(item.attrs().len(), 1);
        assert_eq!(item.n("x"), Some(1));
    }

    #[test]
    fn json_and_ttl_round_trip() {
        let item = Item::new(key())
            .with_json("data", &vec![1, 2])
            .unwrap()
            .with_ttl(100);
        assert_eq!(item.json::<Vec<i32>>("data").unwrap(), vec![1, 2]);
        assert!(item.is_live(99) && !item.is_live(100));
        assert!(Item::new(key()).is_live(i64::MAX));
    }
}
