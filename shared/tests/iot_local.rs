//! The single-box device registry: local CA, device certificates and tokens, rotation and
//! decommissioning, over the embedded store.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use smartsite_shared::ids::IntegratorId;
use smartsite_shared::iot::local::{
    CA_CERT_FILE, CA_KEY_FILE, CertError, CredentialStatus, DEVICE_CERT_DAYS, LocalCa,
    LocalRegistry, fingerprint, token_hash,
};
use smartsite_shared::iot::{Credentials, DeviceIdentity, DeviceRegistry, RegistryError};
use smartsite_shared::store::keys::{self, EntityKind};
use smartsite_shared::store::{Attr, Item, Query, Store};
use smartsite_shared::testkit::{self, StoreFixture};

fn integrator(s: &str) -> IntegratorId {
    IntegratorId::parse(s).unwrap()
}

fn device(i: &str, p: &str, d: &str) -> DeviceIdentity {
    DeviceIdentity {
        integrator_id: integrator(i),
        project_id: p.into(),
        device_id: d.into(),
        category: "tower_crane".into(),
    }
}

struct Fx {
    reg: LocalRegistry,
    store: Arc<dyn Store>,
    dir: tempfile::TempDir,
    _store: StoreFixture,
}

async fn fixture() -> Fx {
    let fx = testkit::embedded().await;
    let dir = tempfile::tempdir().unwrap();
    let reg = LocalRegistry::open(&dir.path().join("ca"), fx.store.clone()).unwrap();
    Fx {
        reg,
        store: fx.store.clone(),
        dir,
        _store: fx,
    }
}

fn der(cert_pem: &str) -> Vec<u8> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes()).unwrap();
    assert_eq!(pem.label, "CERTIFICATE");
    pem.contents
}

async fn cert_status(fx: &Fx, d: &DeviceIdentity, c: &Credentials) -> Option<CredentialStatus> {
    fx.reg
        .certificate_status(&d.integrator_id, &d.device_id, &c.certificate_id)
        .await
        .unwrap()
}

async fn token_ok(fx: &Fx, d: &DeviceIdentity, c: &Credentials) -> bool {
    fx.reg
        .authenticate_token(
            &d.integrator_id,
            &d.device_id,
            c.device_token.as_deref().unwrap(),
        )
        .await
        .unwrap()
}

async fn partition(store: &Arc<dyn Store>, d: &DeviceIdentity) -> Vec<Item> {
    let pk = keys::entity(&d.integrator_id, EntityKind::Device, &d.device_id);
    let page = store.query(Query::partition(&pk)).await.unwrap();
    assert!(page.next.is_none());
    page.items
}

#[tokio::test]
async fn provisioned_certificate_chains_to_the_ca_and_names_the_device() {
    let fx = testkit::embedded().await;
    let dir = tempfile::tempdir().unwrap();
    let reg = LocalRegistry::open(dir.path(), fx.store.clone()).unwrap();
    let d = device("ct-jl", "prj-1", "dev-a1");
    let c = reg.provision(&d).await.unwrap();

    assert_eq!(c.ca_pem, reg.ca().ca_pem());
    assert!(c.ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
    let info = reg.ca().verify_chain(&c.certificate_pem).unwrap();
    assert_eq!(info.integrator_id, d.integrator_id);
    assert_eq!(info.project_id, "prj-1");
    assert_eq!(info.device_id, "dev-a1");
    assert_eq!(info.fingerprint, c.certificate_id);
    assert_eq!(c.certificate_id, fingerprint(&der(&c.certificate_pem)));

    // The certificate's shape: CN, SAN URI, clientAuth, not a CA, about two years.
    let der = der(&c.certificate_pem);
    let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
    let cn = x.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), "dev-a1");
    let san = x.subject_alternative_name().unwrap().unwrap();
    assert!(san.value.general_names.iter().any(|n| matches!(
        n,
        x509_parser::extensions::GeneralName::URI("urn:smartsite:device:ct-jl:prj-1:dev-a1")
    )));
    assert!(x.extended_key_usage().unwrap().unwrap().value.client_auth);
    assert!(!x.is_ca());
    let days = (x.validity().not_after.timestamp() - x.validity().not_before.timestamp()) / 86_400;
    assert!(
        (DEVICE_CERT_DAYS..=DEVICE_CERT_DAYS + 1).contains(&days),
        "{days}"
    );
    assert_eq!(info.not_after, x.validity().not_after.timestamp());

    // The private key is PKCS#8 and belongs to the certificate.
    assert!(c.private_key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let key = rcgen::KeyPair::from_pem(&c.private_key_pem).unwrap();
    assert_eq!(
        key.public_key_raw(),
        x.public_key().subject_public_key.data.as_ref()
    );

    // The broker's checks.
    assert_eq!(
        reg.certificate_status(&d.integrator_id, "dev-a1", &c.certificate_id)
            .await
            .unwrap(),
        Some(CredentialStatus::Active)
    );
    let admitted = reg.authenticate_certificate(&der).await.unwrap().unwrap();
    assert_eq!(admitted, info);
    // The broker's topic ACL, derived from the certificate alone, is the identity's.
    assert_eq!(admitted.topics(), d.topics());
    assert!(
        admitted
            .topics()
            .may_publish("ss/ct-jl/prj-1/dev-a1/telemetry")
    );
    assert!(
        !admitted
            .topics()
            .may_publish("ss/ct-jl/prj-2/dev-a1/telemetry")
    );
    assert!(admitted.topics().may_subscribe("ss/ct-jl/prj-1/dev-a1/cmd"));
}

#[tokio::test]
async fn certificates_of_another_ca_or_forged_are_refused() {
    let fx = fixture().await;
    let d = device("ct-jl", "prj-1", "dev-a1");
    fx.reg.provision(&d).await.unwrap();

    // Another CA (same subject name, different key) issuing for the same identity.
    let other_dir = tempfile::tempdir().unwrap();
    let other_store = testkit::embedded().await;
    let other = LocalRegistry::open(other_dir.path(), other_store.store.clone()).unwrap();
    assert_ne!(other.ca().ca_pem(), fx.reg.ca().ca_pem());
    let foreign = other.provision(&d).await.unwrap();
    let e = fx
        .reg
        .ca()
        .verify_chain(&foreign.certificate_pem)
        .unwrap_err();
    assert!(
        matches!(e, CertError::BadSignature | CertError::UnknownIssuer),
        "{e:?}"
    );
    assert!(
        fx.reg
            .authenticate_certificate(&der(&foreign.certificate_pem))
            .await
            .unwrap()
            .is_none()
    );

    // A self-signed certificate claiming the identity.
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.subject_alt_names = vec![rcgen::SanType::URI(
        "urn:smartsite:device:ct-jl:prj-1:dev-a1"
            .try_into()
            .unwrap(),
    )];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let forged = params.self_signed(&key).unwrap().pem();
    assert!(fx.reg.ca().verify_chain(&forged).is_err());

    // The CA itself is not a device certificate; garbage is malformed.
    assert!(fx.reg.ca().verify_chain(fx.reg.ca().ca_pem()).is_err());
    assert!(matches!(
        fx.reg.ca().verify_chain("not a pem"),
        Err(CertError::Malformed(_))
    ));
}

#[tokio::test]
async fn tokens_authenticate_only_their_device() {
    let fx = fixture().await;
    let d = device("ct-jl", "prj-1", "dev-a1");
    let c = fx.reg.provision(&d).await.unwrap();
    let token = c.device_token.clone().unwrap();
    // 32 random bytes, base64url without padding.
    assert_eq!(token.len(), 43);
    assert!(
        token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert!(token_ok(&fx, &d, &c).await);

    let i = &d.integrator_id;
    let no = |s: bool| assert!(!s);
    no(fx
        .reg
        .authenticate_token(i, "dev-a1", "wrong")
        .await
        .unwrap());
    no(fx.reg.authenticate_token(i, "dev-a1", "").await.unwrap());
    let mut tweaked = token.clone().into_bytes();
    tweaked[0] = if tweaked[0] == b'A' { b'B' } else { b'A' };
    no(fx
        .reg
        .authenticate_token(i, "dev-a1", std::str::from_utf8(&tweaked).unwrap())
        .await
        .unwrap());
    no(fx
        .reg
        .authenticate_token(i, "dev-b2", &token)
        .await
        .unwrap());
    no(fx
        .reg
        .authenticate_token(&integrator("ct-jl2"), "dev-a1", &token)
        .await
        .unwrap());
    no(fx
        .reg
        .authenticate_token(i, "dev-a1#x", &token)
        .await
        .unwrap());
}

#[tokio::test]
async fn stored_records_hold_no_secret_in_clear() {
    let fx = fixture().await;
    let d = device("ct-jl", "prj-1", "dev-a1");
    let c1 = fx.reg.provision(&d).await.unwrap();
    let c2 = fx.reg.rotate(&d).await.unwrap();
    let items = partition(&fx.store, &d).await;
    assert_eq!(items.len(), 5, "registration + 2 certificates + 2 tokens");
    let dump = format!("{items:?}");
    for c in [&c1, &c2] {
        let token = c.device_token.as_deref().unwrap();
        assert!(!dump.contains(token), "token stored in clear");
        // The key material itself (the base64 body of the PEM), in any line.
        for line in c
            .private_key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
        {
            assert!(!dump.contains(line), "private key stored");
        }
        assert!(dump.contains(&token_hash(token)), "token hash recorded");
        assert!(dump.contains(&c.certificate_id), "certificate recorded");
    }
    assert!(!dump.contains("PRIVATE KEY"));
    let pk = keys::entity(&d.integrator_id, EntityKind::Device, &d.device_id);
    assert_eq!(pk.as_str(), "I#ct-jl#D#dev-a1#");
    for item in &items {
        assert_eq!(item.key.pk, pk);
        for (name, v) in item.attrs() {
            if let Attr::S(s) = v {
                assert!(s.len() < 200, "{name} looks like key material: {s}");
            }
        }
    }
}

#[tokio::test]
async fn rotation_keeps_both_until_the_old_is_retired() {
    let fx = fixture().await;
    let d = device("ct-jl", "prj-1", "dev-a1");
    let old = fx.reg.provision(&d).await.unwrap();
    let new = fx.reg.rotate(&d).await.unwrap();
    assert_ne!(old.certificate_id, new.certificate_id);
    assert_ne!(old.device_token, new.device_token);
    for c in [&old, &new] {
        assert_eq!(
            cert_status(&fx, &d, c).await,
            Some(CredentialStatus::Active)
        );
        assert!(token_ok(&fx, &d, c).await);
    }

    // Keeping an unknown certificate must not lock the device out.
    let e = fx
        .reg
        .retire_previous(&d, &"0".repeat(64))
        .await
        .unwrap_err();
    assert!(matches!(e, RegistryError::NotFound), "{e:?}");
    assert_eq!(
        cert_status(&fx, &d, &old).await,
        Some(CredentialStatus::Active)
    );

    fx.reg
        .retire_previous(&d, &new.certificate_id)
        .await
        .unwrap();
    assert_eq!(
        cert_status(&fx, &d, &old).await,
        Some(CredentialStatus::Revoked)
    );
    assert!(!token_ok(&fx, &d, &old).await);
    assert_eq!(
        cert_status(&fx, &d, &new).await,
        Some(CredentialStatus::Active)
    );
    assert!(token_ok(&fx, &d, &new).await);
    assert!(
        fx.reg
            .authenticate_certificate(&der(&old.certificate_pem))
            .await
            .unwrap()
            .is_none()
    );
    // Idempotent; and a revoked certificate cannot be the one kept.
    fx.reg
        .retire_previous(&d, &new.certificate_id)
        .await
        .unwrap();
    assert!(matches!(
        fx.reg.retire_previous(&d, &old.certificate_id).await,
        Err(RegistryError::NotFound)
    ));

    // Rotating a device that was never provisioned.
    let ghost = device("ct-jl", "prj-1", "dev-zz");
    assert!(matches!(
        fx.reg.rotate(&ghost).await,
        Err(RegistryError::NotFound)
    ));
}

#[tokio::test]
async fn decommissioning_revokes_everything_and_keeps_history() {
    let fx = fixture().await;
    let d = device("ct-jl", "prj-1", "dev-a1");
    let other = device("ct-jl", "prj-1", "dev-b2");
    let a = fx.reg.provision(&d).await.unwrap();
    let b = fx.reg.rotate(&d).await.unwrap();
    let keep = fx.reg.provision(&other).await.unwrap();

    fx.reg.revoke(&d).await.unwrap();
    for c in [&a, &b] {
        assert_eq!(
            cert_status(&fx, &d, c).await,
            Some(CredentialStatus::Revoked)
        );
        assert!(!token_ok(&fx, &d, c).await);
        assert!(
            fx.reg
                .authenticate_certificate(&der(&c.certificate_pem))
                .await
                .unwrap()
                .is_none()
        );
        // Still a well-formed certificate of this CA: only the record refuses it.
        assert!(fx.reg.ca().verify_chain(&c.certificate_pem).is_ok());
    }
    // History kept: every record is still there, with its revocation time.
    let items = partition(&fx.store, &d).await;
    assert_eq!(items.len(), 5);
    let creds: Vec<_> = items
        .iter()
        .filter(|i| i.key.sk.starts_with("CRED#"))
        .collect();
    assert_eq!(creds.len(), 4);
    assert!(
        creds
            .iter()
            .all(|i| i.s("status") == Some("revoked") && i.n("revoked_at").is_some())
    );
    let reg = items.iter().find(|i| i.key.sk == "REGISTRY").unwrap();
    assert_eq!(reg.s("status"), Some("decommissioned"));

    // A decommissioned device cannot rotate; revoking again is harmless; others unaffected.
    assert!(matches!(
        fx.reg.rotate(&d).await,
        Err(RegistryError::NotFound)
    ));
    fx.reg.revoke(&d).await.unwrap();
    assert!(token_ok(&fx, &other, &keep).await);
    assert!(matches!(
        fx.reg.revoke(&device("ct-jl", "prj-1", "dev-zz")).await,
        Err(RegistryError::NotFound)
    ));
}

#[tokio::test]
async fn the_ca_persists_across_restarts_with_a_private_key_file() {
    let fx = fixture().await;
    let ca_dir = fx.dir.path().join("ca");
    let d = device("ct-jl", "prj-1", "dev-a1");
    let c = fx.reg.provision(&d).await.unwrap();
    let pem_before = std::fs::read_to_string(ca_dir.join(CA_CERT_FILE)).unwrap();
    assert_eq!(pem_before, fx.reg.ca().ca_pem());
    let key_file = std::fs::read_to_string(ca_dir.join(CA_KEY_FILE)).unwrap();
    assert!(
        key_file.starts_with("-----BEGIN PRIVATE KEY-----"),
        "PKCS#8"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(ca_dir.join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let reopened = LocalCa::open_or_create(&ca_dir).unwrap();
    assert_eq!(reopened.ca_pem(), pem_before);
    assert_eq!(
        reopened.verify_chain(&c.certificate_pem).unwrap().device_id,
        "dev-a1"
    );
    let reg = LocalRegistry::new(Arc::new(reopened), fx.store.clone());
    assert!(
        reg.authenticate_token(
            &d.integrator_id,
            &d.device_id,
            c.device_token.as_deref().unwrap()
        )
        .await
        .unwrap()
    );
    let c2 = reg.rotate(&d).await.unwrap();
    assert!(fx.reg.ca().verify_chain(&c2.certificate_pem).is_ok());

    // A certificate without its key is never silently replaced.
    let lone = tempfile::tempdir().unwrap();
    std::fs::write(lone.path().join(CA_CERT_FILE), &pem_before).unwrap();
    assert!(LocalCa::open_or_create(lone.path()).is_err());
    // A key whose certificate went missing gets a new certificate under which old ones verify.
    std::fs::remove_file(ca_dir.join(CA_CERT_FILE)).unwrap();
    let recovered = LocalCa::open_or_create(&ca_dir).unwrap();
    assert_ne!(recovered.ca_pem(), pem_before);
    assert!(recovered.verify_chain(&c.certificate_pem).is_ok());
}

#[tokio::test]
async fn malformed_identities_are_refused() {
    let fx = fixture().await;
    for d in [
        device("ct-jl", "prj-1", "dev-a#1"),
        device("ct-jl", "project-1", "dev-a1"),
        DeviceIdentity {
            category: "Tower Crane".into(),
            ..device("ct-jl", "prj-1", "dev-a1")
        },
    ] {
        assert!(
            matches!(fx.reg.provision(&d).await, Err(RegistryError::Invalid(_))),
            "{d:?}"
        );
    }
}
