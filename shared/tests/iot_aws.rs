//! The AWS IoT device registry against the emulator (`AWS_ENDPOINT_URL`). Panics — never skips —
//! without an endpoint: run scripts/test, or
//! `localstack/emulator start && eval "$(localstack/emulator env)"`.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

use std::sync::atomic::{AtomicU32, Ordering};

use aws_sdk_iot::Client;
use aws_sdk_iot::types::CertificateStatus;
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::iot::aws::{
    ATTR_INTEGRATOR, ATTR_PROJECT, ATTR_STATUS, AwsIotRegistry, integrator_group_name,
    project_group_name, thing_type_name,
};
use smartsite_shared::iot::{
    DeviceIdentity, DeviceRegistry, PolicyVars, RegistryError, device_policy,
};
use smartsite_shared::store::schema::TEMPLATE;

/// A unique suffix per call: tests share one emulator account.
fn unique() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!(
        "{}{nanos}{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn client() -> Client {
    assert!(
        std::env::var("AWS_ENDPOINT_URL").is_ok_and(|v| !v.is_empty()),
        "AWS_ENDPOINT_URL is not set: run scripts/test, which starts the emulator, \
         or `localstack/emulator start && eval \"$(localstack/emulator env)\"`"
    );
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    Client::new(&conf)
}

/// A registry whose device policy was created from the template's definition.
async fn registry() -> (AwsIotRegistry, Client, String) {
    let client = client().await;
    let def = device_policy(TEMPLATE, &PolicyVars::wildcard(&format!("t{}", unique()))).unwrap();
    AwsIotRegistry::ensure_policy(&client, &def).await.unwrap();
    // Twice: creating an existing policy is not an error.
    AwsIotRegistry::ensure_policy(&client, &def).await.unwrap();
    let stored = client
        .get_policy()
        .policy_name(&def.name)
        .send()
        .await
        .unwrap();
    let stored: serde_json::Value =
        serde_json::from_str(stored.policy_document().unwrap()).unwrap();
    let ours: serde_json::Value = serde_json::from_str(&def.document).unwrap();
    assert_eq!(stored, ours);
    (
        AwsIotRegistry::new(client.clone(), def.name.clone()),
        client,
        def.name,
    )
}

fn device(i: &IntegratorId, p: &str, category: &str) -> DeviceIdentity {
    DeviceIdentity {
        integrator_id: i.clone(),
        project_id: p.to_owned(),
        device_id: format!("dev-{}", uuid::Uuid::now_v7().simple()),
        category: category.to_owned(),
    }
}

async fn cert_status(c: &Client, id: &str) -> CertificateStatus {
    c.describe_certificate()
        .certificate_id(id)
        .send()
        .await
        .unwrap()
        .certificate_description()
        .unwrap()
        .status()
        .unwrap()
        .clone()
}

async fn things_in(c: &Client, group: &str) -> Vec<String> {
    let mut names = c
        .list_things_in_thing_group()
        .thing_group_name(group)
        .send()
        .await
        .unwrap()
        .things()
        .to_vec();
    names.sort();
    names
}

#[tokio::test]
async fn provisioning_registers_things_groups_and_certificates() {
    let (reg, c, policy) = registry().await;
    let i = IntegratorId::parse(&format!("it{}", unique())).unwrap();
    let p1 = format!("prj-{}", uuid::Uuid::now_v7().simple());
    let p2 = format!("prj-{}", uuid::Uuid::now_v7().simple());
    let a = device(&i, &p1, "tower_crane");
    let b = device(&i, &p1, "dust_noise");
    let x = device(&i, &p2, "tower_crane");
    let ca = reg.provision(&a).await.unwrap();
    let cb = reg.provision(&b).await.unwrap();
    let cx = reg.provision(&x).await.unwrap();

    for (d, cred) in [(&a, &ca), (&b, &cb), (&x, &cx)] {
        let t = c
            .describe_thing()
            .thing_name(&d.device_id)
            .send()
            .await
            .unwrap();
        assert_eq!(
            t.thing_type_name(),
            Some(thing_type_name(&d.category).as_str())
        );
        let attrs = t.attributes().unwrap();
        assert_eq!(attrs[ATTR_INTEGRATOR], i.as_str());
        assert_eq!(attrs[ATTR_PROJECT], d.project_id);
        assert_eq!(attrs[ATTR_STATUS], "active");

        assert!(
            cred.certificate_pem
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert!(cred.private_key_pem.contains("PRIVATE KEY"));
        assert!(cred.device_token.is_none());
        let principals = c
            .list_thing_principals()
            .thing_name(&d.device_id)
            .send()
            .await
            .unwrap();
        assert_eq!(principals.principals().len(), 1);
        let arn = &principals.principals()[0];
        assert!(
            arn.ends_with(&format!("cert/{}", cred.certificate_id)),
            "{arn}"
        );
        let policies = c.list_attached_policies().target(arn).send().await.unwrap();
        let names: Vec<_> = policies
            .policies()
            .iter()
            .filter_map(|p| p.policy_name())
            .collect();
        assert_eq!(names, [policy.as_str()]);
        assert_eq!(
            cert_status(&c, &cred.certificate_id).await,
            CertificateStatus::Active
        );
    }

    let g1 = project_group_name(&i, &p1);
    let mut expect = vec![a.device_id.clone(), b.device_id.clone()];
    expect.sort();
    assert_eq!(things_in(&c, &g1).await, expect);
    assert_eq!(
        things_in(&c, &project_group_name(&i, &p2)).await,
        [x.device_id.as_str()]
    );
    for g in [&g1, &project_group_name(&i, &p2)] {
        let desc = c
            .describe_thing_group()
            .thing_group_name(g)
            .send()
            .await
            .unwrap();
        assert_eq!(
            desc.thing_group_metadata().unwrap().parent_group_name(),
            Some(integrator_group_name(&i).as_str())
        );
    }
    c.describe_thing_type()
        .thing_type_name(thing_type_name("dust_noise"))
        .send()
        .await
        .unwrap();

    // Provisioning again is idempotent on the thing and groups and issues another certificate.
    let again = reg.provision(&a).await.unwrap();
    assert_ne!(again.certificate_id, ca.certificate_id);
    assert_eq!(things_in(&c, &g1).await, expect);
    assert_eq!(reg.certificate_ids(&a.device_id).await.unwrap().len(), 2);

    // The same device id under another project is not provisioning but a move: refused.
    let moved = DeviceIdentity {
        project_id: p2.clone(),
        ..a.clone()
    };
    assert!(matches!(
        reg.provision(&moved).await,
        Err(RegistryError::Invalid(_))
    ));
}

#[tokio::test]
async fn rotation_then_retirement_then_decommissioning() {
    let (reg, c, _) = registry().await;
    let i = IntegratorId::parse(&format!("it{}", unique())).unwrap();
    let p = format!("prj-{}", uuid::Uuid::now_v7().simple());
    let d = device(&i, &p, "hoist");
    let old = reg.provision(&d).await.unwrap();
    let new = reg.rotate(&d).await.unwrap();
    assert_ne!(old.certificate_id, new.certificate_id);
    assert_eq!(
        cert_status(&c, &old.certificate_id).await,
        CertificateStatus::Active
    );
    assert_eq!(
        cert_status(&c, &new.certificate_id).await,
        CertificateStatus::Active
    );

    // Keeping a certificate the device does not have must revoke nothing.
    assert!(matches!(
        reg.retire_previous(&d, "0000").await,
        Err(RegistryError::NotFound)
    ));
    assert_eq!(
        cert_status(&c, &old.certificate_id).await,
        CertificateStatus::Active
    );

    reg.retire_previous(&d, &new.certificate_id).await.unwrap();
    assert_eq!(
        cert_status(&c, &old.certificate_id).await,
        CertificateStatus::Revoked
    );
    assert_eq!(
        cert_status(&c, &new.certificate_id).await,
        CertificateStatus::Active
    );
    reg.retire_previous(&d, &new.certificate_id).await.unwrap();

    // Decommission: every certificate revoked; thing and attachments kept as history.
    reg.revoke(&d).await.unwrap();
    for id in [&old.certificate_id, &new.certificate_id] {
        assert_eq!(cert_status(&c, id).await, CertificateStatus::Revoked);
    }
    let t = c
        .describe_thing()
        .thing_name(&d.device_id)
        .send()
        .await
        .unwrap();
    assert_eq!(t.attributes().unwrap()[ATTR_STATUS], "decommissioned");
    assert_eq!(t.attributes().unwrap()[ATTR_PROJECT], p);
    let mut ids = reg.certificate_ids(&d.device_id).await.unwrap();
    ids.sort();
    let mut expect = vec![old.certificate_id.clone(), new.certificate_id.clone()];
    expect.sort();
    assert_eq!(ids, expect);
    assert!(matches!(reg.rotate(&d).await, Err(RegistryError::NotFound)));
    reg.revoke(&d).await.unwrap();

    // Unknown devices, and devices of another integrator, are not found.
    let ghost = device(&i, &p, "hoist");
    assert!(matches!(
        reg.rotate(&ghost).await,
        Err(RegistryError::NotFound)
    ));
    assert!(matches!(
        reg.revoke(&ghost).await,
        Err(RegistryError::NotFound)
    ));
    let other = IntegratorId::parse(&format!("it{}", unique())).unwrap();
    let theirs = DeviceIdentity {
        integrator_id: other,
        ..d.clone()
    };
    assert!(matches!(
        reg.revoke(&theirs).await,
        Err(RegistryError::NotFound)
    ));
}
