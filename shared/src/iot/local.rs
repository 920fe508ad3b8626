//! The single-box device registry: a local CA and credential records in the storage port.
//!
//! - [`LocalCa`] is created on first use in a directory (the data dir): `ca.key` (PKCS#8, mode
//!   0600) and `ca.pem`, ECDSA P-256. It issues device client certificates: subject CN = device
//!   id, EKU clientAuth, about two years, and a SAN URI
//!   `urn:smartsite:device:{integrator}:{project}:{device}` from which the broker derives the
//!   identity and so the topics. [`LocalCa::verify_chain`] checks a presented certificate.
//! - [`LocalRegistry`] implements [`DeviceRegistry`]: it issues a certificate and a device token
//!   (32 random bytes, base64url) per credential set and records, in the device's partition, the
//!   certificate's fingerprint and the token's SHA-256 with their status. Neither the private key
//!   nor the token is stored. The broker admits a device only if the certificate chains to the CA
//!   *and* its record is active ([`LocalRegistry::authenticate_certificate`]), or the token's
//!   record is active ([`LocalRegistry::authenticate_token`]); so a certificate whose record was
//!   never written (a failed provisioning) is refused, and revocation needs no CRL.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType, SerialNumber,
};
use x509_parser::extensions::GeneralName;

use super::{Credentials, DeviceIdentity, DeviceRegistry, RegistryError, Topics, is_device_id};
use crate::domain::tenancy::ProjectId;
use crate::fsutil::write_private;
use crate::ids::IntegratorId;
use crate::store::keys::{self, EntityKind};
use crate::store::{
    Attr, Item, Key, MAX_TRANSACT_ITEMS, Pk, Query, SkCond, Store, StoreError, TxOp, now_epoch,
};

/// The CA's private key file in the CA directory (PKCS#8 PEM, mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// The CA's certificate file in the CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
/// Validity of a device certificate.
pub const DEVICE_CERT_DAYS: i64 = 730;
/// Validity of the CA certificate.
pub const CA_CERT_DAYS: i64 = 20 * 365 + 5;
/// Prefix of the SAN URI naming a device.
pub const DEVICE_URN_PREFIX: &str = "urn:smartsite:device:";
/// Common name of the local CA.
pub const CA_COMMON_NAME: &str = "smartsite local device CA";

fn backend(e: impl Into<anyhow::Error>) -> RegistryError {
    RegistryError::Backend(e.into())
}

/// `urn:smartsite:device:{integrator}:{project}:{device}`.
pub fn device_urn(d: &DeviceIdentity) -> String {
    format!(
        "{DEVICE_URN_PREFIX}{}:{}:{}",
        d.integrator_id, d.project_id, d.device_id
    )
}

/// Parses [`device_urn`]'s form back into (integrator, project, device).
pub fn parse_device_urn(s: &str) -> Option<(IntegratorId, String, String)> {
    let mut parts = s.strip_prefix(DEVICE_URN_PREFIX)?.split(':');
    let (i, p, d) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_device_id(d) {
        return None;
    }
    let i = IntegratorId::parse(i).ok()?;
    ProjectId::parse("project_id", p).ok()?;
    Some((i, p.to_owned(), d.to_owned()))
}

/// SHA-256 of a certificate's DER, lower-case hex: a local certificate's id.
pub fn fingerprint(der: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, der).as_ref())
}

/// SHA-256 of a device token, lower-case hex: all that is stored of it.
pub fn token_hash(token: &str) -> String {
    hex(digest::digest(&digest::SHA256, token.as_bytes()).as_ref())
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn random_bytes<const N: usize>() -> Result<[u8; N], RegistryError> {
    let mut buf = [0u8; N];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| backend(anyhow::anyhow!("system random number generator failed")))?;
    Ok(buf)
}

/// A positive, non-zero 128-bit serial number.
fn random_serial() -> Result<SerialNumber, RegistryError> {
    let mut b = random_bytes::<16>()?;
    b[0] = (b[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&b))
}

/// Why a presented certificate is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CertError {
    #[error("malformed certificate: {0}")]
    Malformed(String),
    #[error("certificate not issued by this CA")]
    UnknownIssuer,
    #[error("certificate signature does not verify with the CA key")]
    BadSignature,
    #[error("certificate outside its validity period")]
    Expired,
    #[error("certificate is not a device client certificate: {0}")]
    NotAClientCertificate(&'static str),
    #[error("certificate names no device identity")]
    NoIdentity,
}

/// What a verified device certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceCertInfo {
    pub integrator_id: IntegratorId,
    pub project_id: String,
    pub device_id: String,
    /// [`fingerprint`] of the certificate: its id in the registry.
    pub fingerprint: String,
    /// The serial number, lower-case hex.
    pub serial_hex: String,
    /// End of validity, epoch seconds.
    pub not_after: i64,
}

impl DeviceCertInfo {
    /// The topics this certificate's device may use.
    pub fn topics(&self) -> Topics<'_> {
        Topics {
            integrator_id: &self.integrator_id,
            project_id: &self.project_id,
            device_id: &self.device_id,
        }
    }
}

/// A certificate and key just issued.
struct Issued {
    certificate_pem: String,
    private_key_pem: String,
    fingerprint: String,
    serial_hex: String,
    not_after: i64,
}

/// The local certificate authority of the single-box edition.
pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: Vec<u8>,
    dir: PathBuf,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("dir", &self.dir)
            .field("fingerprint", &fingerprint(&self.cert_der))
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// Opens the CA in `dir`, creating it (and `dir`) on first use. A `ca.key` without `ca.pem`
    /// (a crash between the two writes) gets a new CA certificate for the same key, under which
    /// every certificate already issued still verifies; a `ca.pem` without `ca.key` is an error,
    /// never silently replaced.
    pub fn open_or_create(dir: &Path) -> Result<LocalCa, RegistryError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        crate::fsutil::private_dir(dir).map_err(|e| {
            backend(anyhow::Error::new(e).context(format!("create {}", dir.display())))
        })?;
        let key = if key_path.exists() {
            read(&key_path)?
        } else {
            if cert_path.exists() {
                return Err(backend(anyhow::anyhow!(
                    "{} exists without {}: refusing to replace the device CA",
                    cert_path.display(),
                    key_path.display()
                )));
            }
            let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(backend)?;
            let pem = key.serialize_pem();
            write_private(&key_path, pem.as_bytes()).map_err(|e| {
                backend(anyhow::Error::new(e).context(format!("write {}", key_path.display())))
            })?;
            pem
        };
        let key = KeyPair::from_pem(&key).map_err(|e| {
            backend(anyhow::Error::new(e).context(format!("parse {}", key_path.display())))
        })?;
        if !cert_path.exists() {
            let pem = Self::self_signed(&key)?;
            write_private(&cert_path, pem.as_bytes()).map_err(|e| {
                backend(anyhow::Error::new(e).context(format!("write {}", cert_path.display())))
            })?;
        }
        let cert_pem = read(&cert_path)?;
        Self::from_parts(dir, key, cert_pem)
    }

    fn self_signed(key: &KeyPair) -> Result<String, RegistryError> {
        let now = time::OffsetDateTime::now_utc();
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_COMMON_NAME);
        dn.push(DnType::OrganizationName, "smartsite");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(CA_CERT_DAYS);
        params.serial_number = Some(random_serial()?);
        Ok(params.self_signed(key).map_err(backend)?.pem())
    }

    fn from_parts(dir: &Path, key: KeyPair, cert_pem: String) -> Result<LocalCa, RegistryError> {
        let cert_der = pem_der(&cert_pem)
            .map_err(|e| backend(anyhow::anyhow!("{}: {e}", dir.join(CA_CERT_FILE).display())))?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| backend(anyhow::anyhow!("{CA_CERT_FILE}: {e}")))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            return Err(backend(anyhow::anyhow!(
                "{CA_CERT_FILE} does not belong to {CA_KEY_FILE} in {}",
                dir.display()
            )));
        }
        let issuer = Issuer::from_ca_cert_pem(&cert_pem, key).map_err(backend)?;
        Ok(LocalCa {
            issuer,
            cert_pem,
            cert_der,
            dir: dir.to_owned(),
        })
    }

    /// The CA certificate, PEM: what devices and the broker trust.
    pub fn ca_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// A server certificate for the single-box broker, valid for `names` (DNS names or IP
    /// addresses) for a year: devices already trust this CA, so the broker's TLS needs nothing
    /// else. Issued at every start and kept in memory only. Returns `(certificate_pem, key_pem)`.
    pub fn issue_server(&self, names: &[String]) -> Result<(String, String), RegistryError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(backend)?;
        let now = time::OffsetDateTime::now_utc();
        let mut params = CertificateParams::new(names.to_vec()).map_err(backend)?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, "smartsite broker");
        params.distinguished_name = dn;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = now + time::Duration::days(365);
        params.serial_number = Some(random_serial()?);
        let cert = params.signed_by(&key, &self.issuer).map_err(backend)?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// A new key pair and client certificate for the device.
    fn issue(&self, d: &DeviceIdentity) -> Result<Issued, RegistryError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(backend)?;
        let now = time::OffsetDateTime::now_utc();
        let not_after = now + time::Duration::days(DEVICE_CERT_DAYS);
        let serial = random_serial()?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, d.device_id.as_str());
        params.distinguished_name = dn;
        params.subject_alt_names =
            vec![SanType::URI(device_urn(d).try_into().map_err(|e| {
                RegistryError::Invalid(format!("device urn: {e}"))
            })?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.use_authority_key_identifier_extension = true;
        params.not_before = now - time::Duration::minutes(5);
        params.not_after = not_after;
        params.serial_number = Some(serial.clone());
        let cert = params.signed_by(&key, &self.issuer).map_err(backend)?;
        Ok(Issued {
            certificate_pem: cert.pem(),
            private_key_pem: key.serialize_pem(),
            fingerprint: fingerprint(cert.der()),
            serial_hex: hex(&serial.to_bytes()),
            not_after: not_after.unix_timestamp(),
        })
    }

    /// Checks that a PEM certificate was issued by this CA for a device, is within its validity,
    /// and returns the identity its SAN names. Says nothing about revocation: see
    /// [`LocalRegistry::authenticate_certificate`].
    pub fn verify_chain(&self, cert_pem: &str) -> Result<DeviceCertInfo, CertError> {
        let der = pem_der(cert_pem).map_err(CertError::Malformed)?;
        self.verify_der(&der)
    }

    /// [`verify_chain`](Self::verify_chain) on DER, as a TLS handshake presents it.
    pub fn verify_der(&self, der: &[u8]) -> Result<DeviceCertInfo, CertError> {
        let (rest, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| CertError::Malformed(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CertError::Malformed("trailing data".into()));
        }
        let (_, ca) = x509_parser::parse_x509_certificate(&self.cert_der)
            .map_err(|e| CertError::Malformed(format!("CA: {e}")))?;
        if cert.issuer().as_raw() != ca.subject().as_raw() {
            return Err(CertError::UnknownIssuer);
        }
        cert.verify_signature(Some(ca.public_key()))
            .map_err(|_| CertError::BadSignature)?;
        if !cert.validity().is_valid() {
            return Err(CertError::Expired);
        }
        if cert.is_ca() {
            return Err(CertError::NotAClientCertificate("it is a CA"));
        }
        let client_auth = cert
            .extended_key_usage()
            .map_err(|e| CertError::Malformed(e.to_string()))?
            .is_some_and(|eku| eku.value.client_auth);
        if !client_auth {
            return Err(CertError::NotAClientCertificate("no clientAuth usage"));
        }
        let mut ids = cert
            .subject_alternative_name()
            .map_err(|e| CertError::Malformed(e.to_string()))?
            .map(|san| {
                san.value
                    .general_names
                    .iter()
                    .filter_map(|n| match n {
                        GeneralName::URI(u) if u.starts_with(DEVICE_URN_PREFIX) => Some(*u),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter();
        let (Some(urn), None) = (ids.next(), ids.next()) else {
            return Err(CertError::NoIdentity);
        };
        let (integrator_id, project_id, device_id) =
            parse_device_urn(urn).ok_or(CertError::NoIdentity)?;
        let cn = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok());
        if cn != Some(device_id.as_str()) {
            return Err(CertError::NoIdentity);
        }
        Ok(DeviceCertInfo {
            integrator_id,
            project_id,
            device_id,
            fingerprint: fingerprint(der),
            serial_hex: hex(cert.raw_serial()),
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}

fn read(path: &Path) -> Result<String, RegistryError> {
    std::fs::read_to_string(path)
        .map_err(|e| backend(anyhow::Error::new(e).context(format!("read {}", path.display()))))
}

/// The DER of the single CERTIFICATE block of a PEM text.
fn pem_der(pem: &str) -> Result<Vec<u8>, String> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
    if p.label != "CERTIFICATE" {
        return Err(format!("PEM block {:?}, expected CERTIFICATE", p.label));
    }
    Ok(p.contents)
}

// ---- Credential records. Key formats: they belong in store/keys.rs (kept here until moved, so
// this module stays out of concurrent edits there); byte-exact tests below.
//
// Partition: the device's, `I#{integrator}#D#{device}#` (keys::entity). Sort keys:
//   REGISTRY                     the registration: project, category, active/decommissioned
//   CRED#CERT#{sha256 hex}       one issued certificate: serial, status, times
//   CRED#TOKEN#{sha256 hex}      one device token's hash: status, the certificate issued with it

/// `I#{integrator}#D#{device}#`.
fn device_pk(i: &IntegratorId, device_id: &str) -> Pk {
    keys::entity(i, EntityKind::Device, device_id)
}

/// Sort key of the device's registration.
fn registration_sk() -> String {
    "REGISTRY".to_owned()
}

/// `CRED#CERT#{fingerprint}`.
fn cert_sk(fingerprint: &str) -> String {
    format!("{CERT_PREFIX}{fingerprint}")
}
const CERT_PREFIX: &str = "CRED#CERT#";

/// `CRED#TOKEN#{token hash}`.
fn token_sk(hash: &str) -> String {
    format!("{TOKEN_PREFIX}{hash}")
}
const TOKEN_PREFIX: &str = "CRED#TOKEN#";

/// Status of one credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialStatus {
    Active,
    Revoked,
}

impl CredentialStatus {
    pub const fn as_str(self) -> &'static str {
        match self {
            CredentialStatus::Active => "active",
            CredentialStatus::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "active" => Some(CredentialStatus::Active),
            "revoked" => Some(CredentialStatus::Revoked),
            _ => None,
        }
    }
}

const A_STATUS: &str = "status";
const A_KIND: &str = "kind";
const A_PROJECT: &str = "project_id";
const A_CATEGORY: &str = "category";
const A_ISSUED_AT: &str = "issued_at";
const A_REVOKED_AT: &str = "revoked_at";
const A_NOT_AFTER: &str = "not_after";
const A_SERIAL: &str = "serial";
const A_CERT_ID: &str = "certificate_id";
const A_PROVISIONED_AT: &str = "provisioned_at";
const A_DECOMMISSIONED_AT: &str = "decommissioned_at";
const A_UPDATED_AT: &str = "updated_at";
const REG_ACTIVE: &str = "active";
const REG_DECOMMISSIONED: &str = "decommissioned";

/// The device registry of the single-box edition.
#[derive(Clone)]
pub struct LocalRegistry {
    ca: Arc<LocalCa>,
    store: Arc<dyn Store>,
}

impl std::fmt::Debug for LocalRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalRegistry")
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

impl LocalRegistry {
    /// The registry over `store`, with the CA of `ca_dir` (created on first use).
    pub fn open(ca_dir: &Path, store: Arc<dyn Store>) -> Result<LocalRegistry, RegistryError> {
        Ok(LocalRegistry::new(
            Arc::new(LocalCa::open_or_create(ca_dir)?),
            store,
        ))
    }

    pub fn new(ca: Arc<LocalCa>, store: Arc<dyn Store>) -> LocalRegistry {
        LocalRegistry { ca, store }
    }

    pub fn ca(&self) -> &LocalCa {
        &self.ca
    }

    /// Whether `token` is an active device token of the device (plain MQTT: username = device id,
    /// password = token). Malformed input is simply not authenticated.
    pub async fn authenticate_token(
        &self,
        integrator: &IntegratorId,
        device_id: &str,
        token: &str,
    ) -> Result<bool, RegistryError> {
        if !is_device_id(device_id) || token.is_empty() {
            return Ok(false);
        }
        let key = Key::new(
            device_pk(integrator, device_id),
            token_sk(&token_hash(token)),
        );
        let item = self.store.get(&key).await?;
        Ok(item.is_some_and(|i| status_of(&i) == Some(CredentialStatus::Active)))
    }

    /// The recorded status of the device's certificate with this [`fingerprint`], if it was
    /// issued to that device.
    pub async fn certificate_status(
        &self,
        integrator: &IntegratorId,
        device_id: &str,
        fingerprint: &str,
    ) -> Result<Option<CredentialStatus>, RegistryError> {
        if !is_device_id(device_id) || !is_sha256_hex(fingerprint) {
            return Ok(None);
        }
        let key = Key::new(device_pk(integrator, device_id), cert_sk(fingerprint));
        Ok(self.store.get(&key).await?.as_ref().and_then(status_of))
    }

    /// The broker's check of a presented client certificate (DER): it chains to the CA, is valid
    /// now, names a device, and its record is active. `Ok(None)` = refuse the connection.
    pub async fn authenticate_certificate(
        &self,
        der: &[u8],
    ) -> Result<Option<DeviceCertInfo>, RegistryError> {
        let Ok(info) = self.ca.verify_der(der) else {
            return Ok(None);
        };
        let status = self
            .certificate_status(&info.integrator_id, &info.device_id, &info.fingerprint)
            .await?;
        Ok((status == Some(CredentialStatus::Active)).then_some(info))
    }

    async fn registration(&self, d: &DeviceIdentity) -> Result<Option<Item>, RegistryError> {
        let key = Key::new(device_pk(&d.integrator_id, &d.device_id), registration_sk());
        Ok(self.store.get(&key).await?)
    }

    /// Issues a credential set and records it (atomically with `extra`).
    async fn issue(
        &self,
        d: &DeviceIdentity,
        extra: Vec<TxOp>,
    ) -> Result<Credentials, RegistryError> {
        let issued = self.ca.issue(d)?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
        let pk = device_pk(&d.integrator_id, &d.device_id);
        let now = now_epoch();
        let cert = Item::new(Key::new(pk.clone(), cert_sk(&issued.fingerprint)))
            .with(A_KIND, "certificate")
            .with(A_STATUS, CredentialStatus::Active.as_str())
            .with(A_SERIAL, issued.serial_hex.as_str())
            .with(A_PROJECT, d.project_id.as_str())
            .with(A_ISSUED_AT, now)
            .with(A_NOT_AFTER, issued.not_after);
        let tok = Item::new(Key::new(pk, token_sk(&token_hash(&token))))
            .with(A_KIND, "token")
            .with(A_STATUS, CredentialStatus::Active.as_str())
            .with(A_CERT_ID, issued.fingerprint.as_str())
            .with(A_ISSUED_AT, now);
        let mut ops = extra;
        ops.push(TxOp::Put {
            item: cert,
            cond: Some(crate::store::Condition::NotExists),
        });
        ops.push(TxOp::Put {
            item: tok,
            cond: Some(crate::store::Condition::NotExists),
        });
        self.store.transact(ops).await.map_err(|e| match e {
            // 256 random bits cannot collide; a failed condition here is a concurrent change.
            StoreError::TransactionConditionFailed { .. } | StoreError::ConditionFailed => {
                RegistryError::Unavailable(anyhow::anyhow!(
                    "device {} changed concurrently; retry",
                    d.device_id
                ))
            }
            other => other.into(),
        })?;
        Ok(Credentials {
            certificate_pem: issued.certificate_pem,
            private_key_pem: issued.private_key_pem,
            certificate_id: issued.fingerprint,
            device_token: Some(token),
            ca_pem: self.ca.ca_pem().to_owned(),
        })
    }

    /// Every credential record of the device (certificates and tokens).
    async fn credentials(&self, d: &DeviceIdentity) -> Result<Vec<Item>, RegistryError> {
        let pk = device_pk(&d.integrator_id, &d.device_id);
        let mut out = Vec::new();
        let mut cursor = None;
        loop {
            let page = self
                .store
                .query(
                    Query::partition(&pk)
                        .sk(SkCond::BeginsWith("CRED#".into()))
                        .after(cursor),
                )
                .await?;
            out.extend(page.items);
            match page.next {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Marks the given active records revoked, in transactions of at most the store's limit.
    /// Each write is conditional on the record still being active, so it never resurrects or
    /// re-dates a revoked one.
    async fn revoke_items(
        &self,
        items: Vec<Item>,
        mut extra: Vec<TxOp>,
    ) -> Result<(), RegistryError> {
        let now = now_epoch();
        let mut ops: Vec<TxOp> = items
            .into_iter()
            .map(|mut item| {
                item.set(A_STATUS, CredentialStatus::Revoked.as_str());
                item.set(A_REVOKED_AT, now);
                TxOp::Put {
                    item,
                    cond: Some(crate::store::Condition::equals(
                        A_STATUS,
                        CredentialStatus::Active.as_str(),
                    )),
                }
            })
            .collect();
        ops.append(&mut extra);
        while !ops.is_empty() {
            let rest = ops.split_off(ops.len().min(MAX_TRANSACT_ITEMS));
            match self.store.transact(ops).await {
                Ok(()) => {}
                Err(
                    StoreError::TransactionConditionFailed { .. } | StoreError::ConditionFailed,
                ) => {
                    return Err(RegistryError::Unavailable(anyhow::anyhow!(
                        "credentials changed concurrently; retry"
                    )));
                }
                Err(e) => return Err(e.into()),
            }
            ops = rest;
        }
        Ok(())
    }
}

fn status_of(item: &Item) -> Option<CredentialStatus> {
    item.s(A_STATUS).and_then(CredentialStatus::parse)
}

fn is_active(item: &Item) -> bool {
    status_of(item) == Some(CredentialStatus::Active)
}

#[async_trait]
impl DeviceRegistry for LocalRegistry {
    async fn provision(&self, d: &DeviceIdentity) -> Result<Credentials, RegistryError> {
        d.validate()?;
        let now = now_epoch();
        let existing = self.registration(d).await?;
        let provisioned_at = existing
            .as_ref()
            .and_then(|r| r.n(A_PROVISIONED_AT))
            .unwrap_or(now);
        let reg = Item::new(Key::new(
            device_pk(&d.integrator_id, &d.device_id),
            registration_sk(),
        ))
        .with(A_STATUS, REG_ACTIVE)
        .with(A_PROJECT, d.project_id.as_str())
        .with(A_CATEGORY, d.category.as_str())
        .with(A_PROVISIONED_AT, provisioned_at)
        .with(A_UPDATED_AT, now);
        // Optimistic: the registration is exactly as read (or still absent).
        let cond = match &existing {
            None => crate::store::Condition::NotExists,
            Some(r) => {
                crate::store::Condition::equals(A_UPDATED_AT, r.n(A_UPDATED_AT).unwrap_or(0))
            }
        };
        self.issue(
            d,
            vec![TxOp::Put {
                item: reg,
                cond: Some(cond),
            }],
        )
        .await
    }

    async fn rotate(&self, d: &DeviceIdentity) -> Result<Credentials, RegistryError> {
        d.validate()?;
        let reg = self.registration(d).await?.ok_or(RegistryError::NotFound)?;
        if reg.s(A_STATUS) != Some(REG_ACTIVE) {
            return Err(RegistryError::NotFound);
        }
        let key = reg.key.clone();
        self.issue(
            d,
            vec![TxOp::Check {
                key,
                cond: crate::store::Condition::equals(A_STATUS, REG_ACTIVE),
            }],
        )
        .await
    }

    async fn retire_previous(
        &self,
        d: &DeviceIdentity,
        keep_certificate_id: &str,
    ) -> Result<(), RegistryError> {
        d.validate()?;
        if self.registration(d).await?.is_none() {
            return Err(RegistryError::NotFound);
        }
        let creds = self.credentials(d).await?;
        let keep_sk = cert_sk(keep_certificate_id);
        // Never lock a device out: the kept certificate must be one of its active ones.
        if !creds.iter().any(|c| c.key.sk == keep_sk && is_active(c)) {
            return Err(RegistryError::NotFound);
        }
        let retire = creds
            .into_iter()
            .filter(is_active)
            .filter(|c| {
                if c.key.sk.starts_with(CERT_PREFIX) {
                    c.key.sk != keep_sk
                } else {
                    c.s(A_CERT_ID) != Some(keep_certificate_id)
                }
            })
            .collect();
        self.revoke_items(retire, Vec::new()).await
    }

    async fn revoke(&self, d: &DeviceIdentity) -> Result<(), RegistryError> {
        d.validate()?;
        let mut reg = self.registration(d).await?.ok_or(RegistryError::NotFound)?;
        let active: Vec<Item> = self
            .credentials(d)
            .await?
            .into_iter()
            .filter(is_active)
            .collect();
        let mut extra = Vec::new();
        if reg.s(A_STATUS) != Some(REG_DECOMMISSIONED) {
            let now = now_epoch();
            let prev = reg.attr(A_UPDATED_AT).cloned().unwrap_or(Attr::N(0));
            reg.set(A_STATUS, REG_DECOMMISSIONED);
            reg.set(A_DECOMMISSIONED_AT, now);
            reg.set(A_UPDATED_AT, now);
            extra.push(TxOp::Put {
                item: reg,
                cond: Some(crate::store::Condition::Equals(
                    A_UPDATED_AT.to_owned(),
                    prev,
                )),
            });
        }
        self.revoke_items(active, extra).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credential_keys_byte_exact() {
        let i = IntegratorId::parse("ct-jl").unwrap();
        assert_eq!(device_pk(&i, "dev-1").as_str(), "I#ct-jl#D#dev-1#");
        assert_eq!(registration_sk(), "REGISTRY");
        let h = "ab".repeat(32);
        assert_eq!(cert_sk(&h), format!("CRED#CERT#{h}"));
        assert_eq!(token_sk(&h), format!("CRED#TOKEN#{h}"));
        assert!(cert_sk(&h).starts_with("CRED#") && token_sk(&h).starts_with("CRED#"));
        assert!(!registration_sk().starts_with("CRED#"));
    }

    #[test]
    fn urns_round_trip_and_refuse_junk() {
        let d = DeviceIdentity {
            integrator_id: IntegratorId::parse("ct-jl").unwrap(),
            project_id: "prj-1a".into(),
            device_id: "dev-2b".into(),
            category: "hoist".into(),
        };
        let u = device_urn(&d);
        assert_eq!(u, "urn:smartsite:device:ct-jl:prj-1a:dev-2b");
        let (i, p, dev) = parse_device_urn(&u).unwrap();
        assert_eq!(
            (i.as_str(), p.as_str(), dev.as_str()),
            ("ct-jl", "prj-1a", "dev-2b")
        );
        for bad in [
            "urn:smartsite:device:ct-jl:prj-1a",
            "urn:smartsite:device:ct-jl:prj-1a:dev-2b:x",
            "urn:smartsite:device:CT:prj-1a:dev-2b",
            "urn:smartsite:device:ct-jl:p-1:dev-2b",
            "urn:other:ct-jl:prj-1a:dev-2b",
        ] {
            assert!(parse_device_urn(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn hashes_are_lowercase_sha256_hex() {
        // SHA-256("abc"), FIPS 180-2 test vector.
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(is_sha256_hex(&fingerprint(b"x")));
        assert!(!is_sha256_hex("AB"));
    }
}
