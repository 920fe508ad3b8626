//! The AWS edition's key vault against KMS on the emulator (`AWS_ENDPOINT_URL`): data keys made
//! and opened in their encryption context only, and the whole envelope — sealing, opening, blind
//! index — over KMS and DynamoDB. Fails, never skips, without an emulator.
#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::Arc;

use smartsite_shared::ids::IntegratorId;
use smartsite_shared::store::Key;
use smartsite_shared::testkit;
use smartsite_workforce::domain::{IdCardType, IdDocument, Secret, WorkerId};
use smartsite_workforce::keys;
use smartsite_workforce::service::pii::{Pii, PiiField};
use smartsite_workforce::service::vault::{KeyVault, KmsKeyVault, VaultError};

/// A fresh symmetric KMS key on the emulator and a vault over it.
async fn vault() -> (KmsKeyVault, aws_sdk_kms::Client, String) {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()),
        "AWS_ENDPOINT_URL is not set: run scripts/test, which starts the emulator, \
         or `localstack/emulator start && eval \"$(localstack/emulator env)\"`"
    );
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let client = aws_sdk_kms::Client::new(&conf);
    let key = client
        .create_key()
        .description("smartsite workforce test")
        .send()
        .await
        .unwrap();
    let id = key.key_metadata().unwrap().key_id().to_owned();
    (KmsKeyVault::new(client.clone(), id.clone()), client, id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kms_data_keys_open_only_in_their_context() {
    let (vault, client, _) = vault().await;
    let ctx: &[(&str, &str)] = &[
        ("purpose", "worker-pii"),
        ("record", "I#a#W#wkr-1#|PROFILE"),
    ];
    let dk = vault.generate(ctx).await.unwrap();
    assert_eq!(dk.plaintext.len(), 32);
    assert!(!dk.wrapped.windows(32).any(|w| w == dk.plaintext));
    assert_eq!(vault.unwrap(&dk.wrapped, ctx).await.unwrap(), dk.plaintext);
    // Order of the pairs is irrelevant (a map), their values are not.
    let swapped: &[(&str, &str)] = &[
        ("record", "I#a#W#wkr-1#|PROFILE"),
        ("purpose", "worker-pii"),
    ];
    assert_eq!(
        vault.unwrap(&dk.wrapped, swapped).await.unwrap(),
        dk.plaintext
    );
    let other: &[(&str, &str)] = &[
        ("purpose", "worker-pii"),
        ("record", "I#a#W#wkr-2#|PROFILE"),
    ];
    let refused = vault.unwrap(&dk.wrapped, other).await;
    assert!(
        matches!(refused, Err(VaultError::Refused(_))),
        "{refused:?}"
    );
    // Another key's vault cannot open it either.
    let stranger = client.create_key().send().await.unwrap();
    let stranger = KmsKeyVault::new(
        client.clone(),
        stranger.key_metadata().unwrap().key_id().to_owned(),
    );
    assert!(stranger.unwrap(&dk.wrapped, ctx).await.is_err());
    // Two data keys differ.
    assert_ne!(vault.generate(ctx).await.unwrap().plaintext, dk.plaintext);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelope_and_blind_index_over_kms_and_dynamodb() {
    let (vault, _, _) = vault().await;
    let vault = Arc::new(vault);
    let store = testkit::dynamo().await;
    let pii = Pii::new(vault.clone(), store.store.clone());
    let i = IntegratorId::parse("int-kms").unwrap();
    let w = WorkerId::generate();
    let record = Key::new(keys::worker(&i, &w), keys::SK_PERSON);
    let number = "11010519491231002X";
    let sealed = pii
        .seal(
            &record,
            &[
                (PiiField::IdNumber, number),
                (PiiField::Phone, "13812345678"),
            ],
        )
        .await
        .unwrap();
    assert!(!serde_json::to_string(&sealed).unwrap().contains(number));
    assert_eq!(
        pii.open(&record, &sealed, PiiField::IdNumber)
            .await
            .unwrap()
            .as_deref(),
        Some(number)
    );
    let elsewhere = Key::new(keys::worker(&i, &WorkerId::generate()), keys::SK_PERSON);
    assert!(
        pii.open(&elsewhere, &sealed, PiiField::IdNumber)
            .await
            .is_err()
    );

    let doc = IdDocument::parse(
        IdCardType::resident(),
        "id_number",
        &Secret::new(number),
        "2026-06-15".parse().unwrap(),
    )
    .unwrap();
    let index = pii
        .blind_index(&i, &doc.card_type, &doc.number)
        .await
        .unwrap();
    // A cold process unwraps the integrator's stored index key through KMS: same index.
    let cold = Pii::new(vault, store.store.clone());
    assert_eq!(
        cold.blind_index(&i, &doc.card_type, &doc.number)
            .await
            .unwrap(),
        index
    );
    let stored = store
        .store
        .get(&Key::new(keys::integrator(&i), keys::SK_INDEX_KEY))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.s("wrapped").is_some_and(|s| !s.is_empty()));
}
