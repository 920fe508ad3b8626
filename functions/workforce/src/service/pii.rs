//! Personal numbers at rest: envelope encryption and the blind index.
//!
//! A person's ID number, phone and bank card are sealed with AES-256-GCM under a data key made
//! for that record by the [`KeyVault`]; the wrapped data key is stored beside the ciphertexts,
//! and each field's associated data is the record's key and the field's name, so a ciphertext
//! moved to another record or field does not open. Nothing stores or keys a number in clear.
//!
//! To find a person by number, the number is hashed with HMAC-SHA256 under the integrator's own
//! blind-index key — a separate random key, never a data key — kept wrapped by the vault in the
//! integrator's partition and cached once unwrapped. The same number gives the same index within
//! an integrator and unrelated ones across integrators.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use serde::{Deserialize, Serialize};
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::store::{Condition, Item, Key, Store, StoreError};

use super::vault::{Context, KEY_LEN, KeyVault, VaultError, random};
use crate::domain::{IdCardType, IdNumber};
use crate::keys;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD_NO_PAD;

/// The numbers sealed in a person's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PiiField {
    IdNumber,
    Phone,
    BankCard,
}

impl PiiField {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiField::IdNumber => "id_number",
            PiiField::Phone => "phone",
            PiiField::BankCard => "bank_card",
        }
    }

    pub fn parse(s: &str) -> Option<PiiField> {
        [PiiField::IdNumber, PiiField::Phone, PiiField::BankCard]
            .into_iter()
            .find(|f| f.as_str() == s)
    }
}

/// Sealed numbers as stored: the wrapped data key and, per field, nonce and ciphertext (base64).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub key: String,
    pub fields: BTreeMap<PiiField, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PiiError {
    #[error(transparent)]
    Vault(#[from] VaultError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A sealed value or wrapped key that does not decode or open: tampering or a lost key.
    #[error("sealed personal data does not open: {0}")]
    Corrupt(&'static str),
}

/// Envelope encryption and blind indexing over a key vault.
#[derive(Clone)]
pub struct Pii {
    vault: Arc<dyn KeyVault>,
    store: Arc<dyn Store>,
    index_keys: Arc<Mutex<HashMap<IntegratorId, hmac::Key>>>,
}

/// What a record's data key is bound to: the record's key.
fn record_context(record: &Key) -> [(&'static str, String); 2] {
    [
        ("purpose", "worker-pii".to_owned()),
        ("record", format!("{}|{}", record.pk, record.sk)),
    ]
}

fn field_aad(record: &Key, field: PiiField) -> Vec<u8> {
    format!("{}|{}|{}", record.pk, record.sk, field.as_str()).into_bytes()
}

fn aead_key(bytes: &[u8; KEY_LEN]) -> Result<LessSafeKey, PiiError> {
    UnboundKey::new(&AES_256_GCM, bytes)
        .map(LessSafeKey::new)
        .map_err(|_| PiiError::Corrupt("data key"))
}

impl Pii {
    pub fn new(vault: Arc<dyn KeyVault>, store: Arc<dyn Store>) -> Pii {
        Pii {
            vault,
            store,
            index_keys: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Seals `fields` of the record at `record` under a new data key.
    pub async fn seal(
        &self,
        record: &Key,
        fields: &[(PiiField, &str)],
    ) -> Result<Sealed, PiiError> {
        let ctx = record_context(record);
        let ctx: Vec<(&str, &str)> = ctx.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let dk = self.vault.generate(&ctx).await?;
        let key = aead_key(&dk.plaintext)?;
        let mut sealed = BTreeMap::new();
        for (field, clear) in fields {
            let mut nonce = [0u8; NONCE_LEN];
            random(&mut nonce)?;
            let mut buf = clear.as_bytes().to_vec();
            key.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(field_aad(record, *field)),
                &mut buf,
            )
            .map_err(|_| PiiError::Corrupt("sealing"))?;
            let mut out = nonce.to_vec();
            out.extend_from_slice(&buf);
            sealed.insert(*field, B64.encode(out));
        }
        Ok(Sealed {
            key: B64.encode(&dk.wrapped),
            fields: sealed,
        })
    }

    /// The clear value of `field` sealed in the record at `record`, if it holds one.
    pub async fn open(
        &self,
        record: &Key,
        sealed: &Sealed,
        field: PiiField,
    ) -> Result<Option<String>, PiiError> {
        let Some(value) = sealed.fields.get(&field) else {
            return Ok(None);
        };
        let wrapped = B64
            .decode(&sealed.key)
            .map_err(|_| PiiError::Corrupt("wrapped key"))?;
        let ctx = record_context(record);
        let ctx: Vec<(&str, &str)> = ctx.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let key = aead_key(&self.vault.unwrap(&wrapped, &ctx).await?)?;
        let bytes = B64.decode(value).map_err(|_| PiiError::Corrupt("field"))?;
        if bytes.len() < NONCE_LEN {
            return Err(PiiError::Corrupt("field"));
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| PiiError::Corrupt("field"))?;
        let mut buf = rest.to_vec();
        let clear = key
            .open_in_place(nonce, Aad::from(field_aad(record, field)), &mut buf)
            .map_err(|_| PiiError::Corrupt("field"))?;
        String::from_utf8(clear.to_vec())
            .map(Some)
            .map_err(|_| PiiError::Corrupt("field"))
    }

    /// The blind index of a document number within integrator `i`: lower-case hex of
    /// HMAC-SHA256 over the type and the number.
    pub async fn blind_index(
        &self,
        i: &IntegratorId,
        card_type: &IdCardType,
        number: &IdNumber,
    ) -> Result<String, PiiError> {
        let key = self.index_key(i).await?;
        let msg = format!("{}\u{1f}{}", card_type.as_str(), number.expose());
        let tag = hmac::sign(&key, msg.as_bytes());
        Ok(tag.as_ref().iter().map(|b| format!("{b:02x}")).collect())
    }

    /// The integrator's blind-index key: cached, else unwrapped from the store, else made,
    /// wrapped and stored (the first writer wins a race; the others read its key).
    async fn index_key(&self, i: &IntegratorId) -> Result<hmac::Key, PiiError> {
        if let Some(k) = self.cached(i) {
            return Ok(k);
        }
        let at = Key::new(keys::integrator(i), keys::SK_INDEX_KEY);
        let ctx: Context<'_> = &[("purpose", "blind-index"), ("integrator", i.as_str())];
        let plain = match self.store.get(&at).await? {
            Some(item) => self.unwrap_index_key(&item, ctx).await?,
            None => {
                let dk = self.vault.generate(ctx).await?;
                let item = Item::new(at.clone()).with("wrapped", B64.encode(&dk.wrapped));
                match self.store.put(item, Some(Condition::NotExists)).await {
                    Ok(()) => dk.plaintext,
                    Err(StoreError::ConditionFailed) => {
                        let item = self
                            .store
                            .get(&at)
                            .await?
                            .ok_or(PiiError::Corrupt("blind-index key vanished"))?;
                        self.unwrap_index_key(&item, ctx).await?
                    }
                    Err(e) => return Err(e.into()),
                }
            }
        };
        let key = hmac::Key::new(hmac::HMAC_SHA256, &plain);
        self.index_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(i.clone(), key.clone());
        Ok(key)
    }

    fn cached(&self, i: &IntegratorId) -> Option<hmac::Key> {
        self.index_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(i)
            .cloned()
    }

    async fn unwrap_index_key(
        &self,
        item: &Item,
        ctx: Context<'_>,
    ) -> Result<[u8; KEY_LEN], PiiError> {
        let wrapped = item
            .s("wrapped")
            .and_then(|s| B64.decode(s).ok())
            .ok_or(PiiError::Corrupt("blind-index key"))?;
        Ok(self.vault.unwrap(&wrapped, ctx).await?)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::{IdDocument, Secret};
    use crate::service::vault::LocalKeyVault;
    use smartsite_shared::store::embedded::EmbeddedStore;
    use smartsite_shared::store::{Key, TableDef};

    struct Fixture {
        pii: Pii,
        store: Arc<dyn Store>,
        _dir: tempfile::TempDir,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            EmbeddedStore::open(dir.path().join("s.redb"), TableDef::main().unwrap()).unwrap(),
        );
        let vault = Arc::new(LocalKeyVault::new(dir.path().join("k")));
        Fixture {
            pii: Pii::new(vault, store.clone()),
            store,
            _dir: dir,
        }
    }

    fn record(w: &str) -> Key {
        let i = IntegratorId::parse("acme").unwrap();
        Key::new(
            keys::worker(&i, &crate::domain::WorkerId::parse("w", w).unwrap()),
            keys::SK_PERSON,
        )
    }

    #[tokio::test]
    async fn sealed_fields_open_only_in_their_record_and_field() {
        let f = fixture();
        let r = record("wkr-1");
        let sealed = f
            .pii
            .seal(
                &r,
                &[
                    (PiiField::IdNumber, "11010519491231002X"),
                    (PiiField::Phone, "13812345678"),
                ],
            )
            .await
            .unwrap();
        let json = serde_json::to_string(&sealed).unwrap();
        assert!(!json.contains("11010519491231002X") && !json.contains("13812345678"));
        assert_eq!(
            f.pii
                .open(&r, &sealed, PiiField::IdNumber)
                .await
                .unwrap()
                .as_deref(),
            Some("11010519491231002X")
        );
        assert_eq!(
            f.pii.open(&r, &sealed, PiiField::BankCard).await.unwrap(),
            None
        );
        // Copied to another record, or a field's ciphertext under another field: refused.
        assert!(
            f.pii
                .open(&record("wkr-2"), &sealed, PiiField::Phone)
                .await
                .is_err()
        );
        let mut swapped = sealed.clone();
        let phone = swapped.fields[&PiiField::Phone].clone();
        swapped.fields.insert(PiiField::IdNumber, phone);
        assert!(f.pii.open(&r, &swapped, PiiField::IdNumber).await.is_err());
        // Sealing twice gives different ciphertexts (fresh data key and nonces).
        let again = f
            .pii
            .seal(&r, &[(PiiField::Phone, "13812345678")])
            .await
            .unwrap();
        assert_ne!(
            again.fields[&PiiField::Phone],
            sealed.fields[&PiiField::Phone]
        );
    }

    #[tokio::test]
    async fn blind_indexes_are_stable_per_integrator_and_differ_across_them() {
        let f = fixture();
        let a = IntegratorId::parse("acme").unwrap();
        let b = IntegratorId::parse("bolt").unwrap();
        let doc = |n: &str| {
            IdDocument::parse(
                IdCardType::resident(),
                "id_number",
                &Secret::new(n),
                "2026-06-15".parse().unwrap(),
            )
            .unwrap()
        };
        let n = doc("11010519491231002X");
        let t = IdCardType::resident();
        let ia = f.pii.blind_index(&a, &t, &n.number).await.unwrap();
        assert_eq!(ia.len(), 64);
        assert!(!ia.contains("110105"));
        assert_eq!(
            f.pii
                .blind_index(&a, &t, &doc("11010519491231002x").number)
                .await
                .unwrap(),
            ia
        );
        assert_ne!(f.pii.blind_index(&b, &t, &n.number).await.unwrap(), ia);
        let passport = IdCardType::parse("t", "08").unwrap();
        assert_ne!(
            f.pii.blind_index(&a, &passport, &n.number).await.unwrap(),
            ia
        );
        // A restarted process (no cache) unwraps the stored key and gets the same index.
        let cold = Pii::new(f.pii.vault.clone(), f.store.clone());
        assert_eq!(cold.blind_index(&a, &t, &n.number).await.unwrap(), ia);
        let stored = f
            .store
            .get(&Key::new(keys::integrator(&a), keys::SK_INDEX_KEY))
            .await
            .unwrap()
            .unwrap();
        assert!(stored.s("wrapped").is_some());
    }
}
