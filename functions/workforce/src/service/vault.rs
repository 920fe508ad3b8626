//! The key vault port: data keys for envelope encryption, and its two adapters.
//!
//! A data key is 32 random bytes used once to encrypt one record's numbers (AES-256-GCM); the
//! vault hands it out in the clear for this process and wrapped (encrypted under a key the vault
//! never lets go) for storage beside the record. Each wrapped key is bound to a context — which
//! record, for what — that unwrapping must repeat, so a wrapped key copied to another record does
//! not open.
//!
//! - [`LocalKeyVault`] (single-box edition): the wrapping key is a file of 32 random bytes in the
//!   data dir, created owner-only (0600) on first use and refused if group or others may read it.
//! - `KmsKeyVault` (AWS edition, feature `aws`): AWS KMS `GenerateDataKey`/`Decrypt` with the
//!   context as the encryption context. KMS is available in the AWS China regions too
//!   (cn-north-1, cn-northwest-1), so the edition needs no other key store there.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of a data key (AES-256).
pub const KEY_LEN: usize = 32;

/// What a wrapped key is bound to, as `(name, value)` pairs; not secret.
pub type Context<'a> = &'a [(&'a str, &'a str)];

/// A fresh data key: in the clear for this process, and wrapped for storage.
pub struct DataKey {
    pub plaintext: [u8; KEY_LEN],
    pub wrapped: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The vault could not be reached or answered with a transient failure: retryable.
    #[error("key vault unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// The vault refused: a wrapped key that is not its own, or bound to another context.
    #[error("key vault refused the key: {0}")]
    Refused(String),
    /// The local key file is missing its bytes or may be read by others.
    #[error("pii key file: {0}")]
    KeyFile(String),
}

/// The port: two calls, like KMS's.
#[async_trait]
pub trait KeyVault: Send + Sync + 'static {
    async fn generate(&self, context: Context<'_>) -> Result<DataKey, VaultError>;
    async fn unwrap(
        &self,
        wrapped: &[u8],
        context: Context<'_>,
    ) -> Result<[u8; KEY_LEN], VaultError>;
}

/// The context as associated data: pairs sorted by name, `name=value` lines.
fn context_aad(context: Context<'_>) -> Vec<u8> {
    let mut pairs = context.to_vec();
    pairs.sort();
    pairs
        .iter()
        .flat_map(|(k, v)| format!("{k}={v}\n").into_bytes())
        .collect()
}

/// Fills `buf` with random bytes.
pub fn random(buf: &mut [u8]) -> Result<(), VaultError> {
    SystemRandom::new()
        .fill(buf)
        .map_err(|_| VaultError::Unavailable(anyhow::anyhow!("no randomness")))
}

/// The version byte of a locally wrapped key.
const LOCAL_V1: u8 = 1;

/// The single-box vault: a wrapping key in a file of the data dir.
pub struct LocalKeyVault {
    path: PathBuf,
    key: tokio::sync::OnceCell<LessSafeKey>,
}

impl LocalKeyVault {
    /// The file's name in the data dir's `keys/`.
    pub const FILE: &'static str = "pii-wrapping.key";

    /// A vault over the key at `path`, read (or created) on first use.
    pub fn new(path: impl Into<PathBuf>) -> LocalKeyVault {
        LocalKeyVault {
            path: path.into(),
            key: tokio::sync::OnceCell::new(),
        }
    }

    async fn key(&self) -> Result<&LessSafeKey, VaultError> {
        self.key
            .get_or_try_init(|| async {
                let path = self.path.clone();
                let bytes = tokio::task::spawn_blocking(move || load_or_create(&path))
                    .await
                    .map_err(|e| VaultError::Unavailable(e.into()))??;
                let key = UnboundKey::new(&AES_256_GCM, &bytes)
                    .map_err(|_| VaultError::KeyFile("not an AES-256 key".into()))?;
                Ok(LessSafeKey::new(key))
            })
            .await
    }
}

/// Reads the 32-byte key at `path`, or creates it (0600, in an owner-only directory) when there
/// is none. A key that group or others may read is refused, not repaired: it may have leaked.
pub fn load_or_create(path: &Path) -> Result<[u8; KEY_LEN], VaultError> {
    let io = |what: &str, e: std::io::Error| {
        VaultError::KeyFile(format!("{what} {}: {e}", path.display()))
    };
    match std::fs::metadata(path) {
        Ok(meta) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(VaultError::KeyFile(format!(
                        "{} is readable by group or others (mode {mode:o}); it may have leaked: \
                         restrict it to the owner (chmod 600) only once you know it did not",
                        path.display()
                    )));
                }
            }
            let bytes = std::fs::read(path).map_err(|e| io("cannot read", e))?;
            <[u8; KEY_LEN]>::try_from(bytes.as_slice()).map_err(|_| {
                VaultError::KeyFile(format!(
                    "{} holds {} bytes, not {KEY_LEN}",
                    path.display(),
                    bytes.len()
                ))
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent() {
                smartsite_shared::fsutil::private_dir(dir).map_err(|e| io("cannot create", e))?;
            }
            let mut key = [0u8; KEY_LEN];
            random(&mut key)?;
            create_new_private(path, &key).map_err(|e| io("cannot create", e))?;
            Ok(key)
        }
        Err(e) => Err(io("cannot read", e)),
    }
}

/// Writes a new file readable only by its owner; fails if it exists (never overwrites a key).
fn create_new_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[async_trait]
impl KeyVault for LocalKeyVault {
    async fn generate(&self, context: Context<'_>) -> Result<DataKey, VaultError> {
        let key = self.key().await?;
        let mut plaintext = [0u8; KEY_LEN];
        random(&mut plaintext)?;
        let mut nonce = [0u8; NONCE_LEN];
        random(&mut nonce)?;
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context_aad(context)),
            &mut sealed,
        )
        .map_err(|_| VaultError::Refused("sealing failed".into()))?;
        let mut wrapped = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        wrapped.push(LOCAL_V1);
        wrapped.extend_from_slice(&nonce);
        wrapped.extend_from_slice(&sealed);
        Ok(DataKey { plaintext, wrapped })
    }

    async fn unwrap(
        &self,
        wrapped: &[u8],
        context: Context<'_>,
    ) -> Result<[u8; KEY_LEN], VaultError> {
        let refused = || VaultError::Refused("not a key of this vault, or another context".into());
        let key = self.key().await?;
        let (&version, rest) = wrapped.split_first().ok_or_else(refused)?;
        if version != LOCAL_V1 || rest.len() < NONCE_LEN {
            return Err(refused());
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| refused())?;
        let mut buf = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(context_aad(context)), &mut buf)
            .map_err(|_| refused())?;
        <[u8; KEY_LEN]>::try_from(&plain[..]).map_err(|_| refused())
    }
}

#[cfg(feature = "aws")]
pub use kms::KmsKeyVault;

#[cfg(feature = "aws")]
mod kms {
    use std::collections::HashMap;

    use aws_sdk_kms::primitives::Blob;
    use aws_sdk_kms::types::DataKeySpec;

    use super::*;

    /// The AWS edition's vault: one KMS key (symmetric, `SYMMETRIC_DEFAULT`) wraps every data
    /// key; the context is KMS's encryption context, so a wrapped key opens only for the record
    /// it was made for. Needs `kms:GenerateDataKey` and `kms:Decrypt` on that key, nothing else.
    pub struct KmsKeyVault {
        client: aws_sdk_kms::Client,
        key_id: String,
    }

    impl KmsKeyVault {
        /// The environment variable naming the key (id, ARN or alias), set by the SAM template.
        pub const KEY_ENV: &'static str = "SMARTSITE_PII_KMS_KEY";

        pub fn new(client: aws_sdk_kms::Client, key_id: impl Into<String>) -> KmsKeyVault {
            KmsKeyVault {
                client,
                key_id: key_id.into(),
            }
        }

        /// The vault of the key named by [`Self::KEY_ENV`], over the SDK configuration chain.
        pub fn from_env(conf: &aws_config::SdkConfig) -> Result<KmsKeyVault, VaultError> {
            let key_id = std::env::var(Self::KEY_ENV)
                .ok()
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    VaultError::KeyFile(format!(
                        "environment variable {} is required",
                        Self::KEY_ENV
                    ))
                })?;
            Ok(KmsKeyVault::new(aws_sdk_kms::Client::new(conf), key_id))
        }
    }

    fn context_map(context: Context<'_>) -> HashMap<String, String> {
        context
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    /// A service's refusal (bad ciphertext, wrong context, disabled key) is final; anything
    /// else (network, throttling, timeouts) may pass.
    fn classify<E, R>(e: aws_sdk_kms::error::SdkError<E, R>) -> VaultError
    where
        E: aws_sdk_kms::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        let code = e
            .as_service_error()
            .and_then(|s| s.code())
            .map(str::to_owned);
        match code {
            Some(c) if c != "ThrottlingException" && c != "KMSInternalException" => {
                VaultError::Refused(c)
            }
            _ => VaultError::Unavailable(anyhow::Error::new(e)),
        }
    }

    fn key_bytes(b: Option<&Blob>) -> Result<[u8; KEY_LEN], VaultError> {
        b.and_then(|b| <[u8; KEY_LEN]>::try_from(b.as_ref()).ok())
            .ok_or_else(|| VaultError::Refused("KMS answered no 32-byte key".into()))
    }

    #[async_trait]
    impl KeyVault for KmsKeyVault {
        async fn generate(&self, context: Context<'_>) -> Result<DataKey, VaultError> {
            let out = self
                .client
                .generate_data_key()
                .key_id(&self.key_id)
                .key_spec(DataKeySpec::Aes256)
                .set_encryption_context(Some(context_map(context)))
                .send()
                .await
                .map_err(classify)?;
            let plaintext = key_bytes(out.plaintext())?;
            let wrapped = out
                .ciphertext_blob()
                .map(|b| b.as_ref().to_vec())
                .ok_or_else(|| VaultError::Refused("KMS answered no wrapped key".into()))?;
            Ok(DataKey { plaintext, wrapped })
        }

        async fn unwrap(
            &self,
            wrapped: &[u8],
            context: Context<'_>,
        ) -> Result<[u8; KEY_LEN], VaultError> {
            let out = self
                .client
                .decrypt()
                .key_id(&self.key_id)
                .ciphertext_blob(Blob::new(wrapped))
                .set_encryption_context(Some(context_map(context)))
                .send()
                .await
                .map_err(classify)?;
            key_bytes(out.plaintext())
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_keys_round_trip_only_in_their_context() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join(LocalKeyVault::FILE);
        let vault = LocalKeyVault::new(&path);
        let ctx: Context<'_> = &[
            ("purpose", "worker-pii"),
            ("record", "I#a#W#wkr-1#|PROFILE"),
        ];
        let dk = vault.generate(ctx).await.unwrap();
        assert_ne!(dk.plaintext, [0u8; KEY_LEN]);
        assert!(!dk.wrapped.windows(KEY_LEN).any(|w| w == dk.plaintext));
        // The order of the pairs does not matter; their values do.
        let swapped: Context<'_> = &[
            ("record", "I#a#W#wkr-1#|PROFILE"),
            ("purpose", "worker-pii"),
        ];
        assert_eq!(
            vault.unwrap(&dk.wrapped, swapped).await.unwrap(),
            dk.plaintext
        );
        let other: Context<'_> = &[
            ("purpose", "worker-pii"),
            ("record", "I#a#W#wkr-2#|PROFILE"),
        ];
        assert!(matches!(
            vault.unwrap(&dk.wrapped, other).await,
            Err(VaultError::Refused(_))
        ));
        let mut tampered = dk.wrapped.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(vault.unwrap(&tampered, ctx).await.is_err());
        assert!(vault.unwrap(&[], ctx).await.is_err());
        // A second vault over the same file (a restart) opens what the first wrapped.
        let again = LocalKeyVault::new(&path);
        assert_eq!(again.unwrap(&dk.wrapped, ctx).await.unwrap(), dk.plaintext);
        // Another key file does not.
        let stranger = LocalKeyVault::new(dir.path().join("other.key"));
        assert!(stranger.unwrap(&dk.wrapped, ctx).await.is_err());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn the_key_file_is_created_owner_only_and_refused_when_others_may_read_it() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join(LocalKeyVault::FILE);
        let key = load_or_create(&path).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(std::fs::read(&path).unwrap(), key);
        assert_eq!(
            load_or_create(&path).unwrap(),
            key,
            "read back, not replaced"
        );
        for wide in [0o640, 0o604, 0o644] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(wide)).unwrap();
            let e = load_or_create(&path).unwrap_err().to_string();
            assert!(e.contains("readable by group or others"), "{e}");
            let vault = LocalKeyVault::new(&path);
            assert!(vault.generate(&[("p", "x")]).await.is_err());
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, [0u8; 31]).unwrap();
        assert!(
            load_or_create(&path)
                .unwrap_err()
                .to_string()
                .contains("31 bytes")
        );
    }
}
