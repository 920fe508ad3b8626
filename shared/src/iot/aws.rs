//! `AwsIotRegistry`: the device registry port on AWS IoT Core (aws-sdk-iot).
//!
//! The client comes from `aws_config`, so the endpoint is AWS itself or whatever the standard
//! `AWS_ENDPOINT_URL` names (the emulator). Per device:
//! - thing type `smartsite-{category}` (created if missing; integrator, project and status are its
//!   searchable attributes);
//! - thing group `{integrator}` and, under it, `{integrator}_{project}` (`_` cannot occur in an
//!   integrator id, so a project group can never take the name of another integrator's group, as
//!   `{integrator}-{project}` could: integrator `a-prj-1` vs integrator `a`, project `prj-1`);
//! - thing named by the device id, attributes `integrator_id`, `project_id` (which the device
//!   policy reads, see `infra/template.yaml`) and `status` (`active`/`decommissioned`);
//! - per credential set an AWS-issued certificate (CreateKeysAndCertificate), with the device
//!   policy attached and attached to the thing.
//!
//! Revocation sets certificates to `REVOKED` (terminal in AWS: a revoked certificate can never be
//! activated again, and IoT Core disconnects its sessions within minutes). Thing, certificate
//! attachments and policy attachments are kept: the thing's principals are the device's
//! credential history, and a revoked certificate cannot connect whatever is attached to it.
//!
//! `Credentials::ca_pem` is what devices need to trust the server: for the ATS data endpoint
//! that is Amazon Root CA 1, which AWS publishes. This crate does not embed it; deployments that
//! want it in the provisioning answer pass it with [`AwsIotRegistry::with_ca_pem`], and it is
//! empty otherwise.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_iot::Client;
use aws_sdk_iot::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_iot::types::{
    AttributePayload, CertificateStatus, ThingGroupProperties, ThingTypeProperties,
};

use super::{Credentials, DeviceIdentity, DevicePolicyDef, DeviceRegistry, RegistryError};
use crate::config::ConfigError;
use crate::ids::IntegratorId;

/// Thing attribute naming the integrator; the device policy reads it.
pub const ATTR_INTEGRATOR: &str = "integrator_id";
/// Thing attribute naming the project; the device policy reads it.
pub const ATTR_PROJECT: &str = "project_id";
/// Thing attribute `active` or `decommissioned`.
pub const ATTR_STATUS: &str = "status";
const STATUS_ACTIVE: &str = "active";
const STATUS_DECOMMISSIONED: &str = "decommissioned";

/// `smartsite-{category}`.
pub fn thing_type_name(category: &str) -> String {
    format!("smartsite-{category}")
}

/// The integrator's thing group: `{integrator}`.
pub fn integrator_group_name(i: &IntegratorId) -> String {
    i.as_str().to_owned()
}

/// The project's thing group, a child of the integrator's: `{integrator}_{project}`.
pub fn project_group_name(i: &IntegratorId, project_id: &str) -> String {
    format!("{i}_{project_id}")
}

/// Configuration of the AWS registry, read once at start-up.
#[derive(Debug, Clone)]
pub struct IotRegistryConfig {
    /// Name of the device policy (the SAM template's `DevicePolicy`, `smartsite-{stage}-device`).
    pub policy_name: String,
}

impl IotRegistryConfig {
    pub const POLICY_ENV: &'static str = "SMARTSITE_IOT_POLICY";

    pub fn from_env() -> Result<Self, ConfigError> {
        let policy_name = std::env::var(Self::POLICY_ENV)
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or(ConfigError::Missing(Self::POLICY_ENV))?;
        Ok(IotRegistryConfig { policy_name })
    }
}

/// The device registry on AWS IoT Core.
#[derive(Debug, Clone)]
pub struct AwsIotRegistry {
    client: Client,
    policy_name: String,
    ca_pem: String,
}

impl AwsIotRegistry {
    pub fn new(client: Client, policy_name: impl Into<String>) -> Self {
        AwsIotRegistry {
            client,
            policy_name: policy_name.into(),
            ca_pem: String::new(),
        }
    }

    /// From an SDK configuration already loaded (once per process).
    pub fn from_sdk_config(aws: &aws_config::SdkConfig, cfg: &IotRegistryConfig) -> Self {
        AwsIotRegistry::new(Client::new(aws), cfg.policy_name.clone())
    }

    /// The server CA devices should trust (Amazon Root CA 1 for ATS endpoints), returned in every
    /// [`Credentials::ca_pem`].
    pub fn with_ca_pem(mut self, ca_pem: impl Into<String>) -> Self {
        self.ca_pem = ca_pem.into();
        self
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    pub fn policy_name(&self) -> &str {
        &self.policy_name
    }

    /// Creates the device policy (from the template's definition) unless a policy of that name
    /// exists. For the emulator and tests; in AWS the SAM stack creates it.
    pub async fn ensure_policy(
        client: &Client,
        def: &DevicePolicyDef,
    ) -> Result<(), RegistryError> {
        match client
            .create_policy()
            .policy_name(&def.name)
            .policy_document(&def.document)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => Ok(()),
            Err(e) => Err(sdk_err(e)),
        }
    }

    async fn ensure_thing_type(&self, category: &str) -> Result<String, RegistryError> {
        let name = thing_type_name(category);
        match self
            .client
            .describe_thing_type()
            .thing_type_name(&name)
            .send()
            .await
        {
            Ok(_) => return Ok(name),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => {}
            Err(e) => return Err(sdk_err(e)),
        }
        let props = ThingTypeProperties::builder()
            .thing_type_description(format!("smartsite {category} devices"))
            .searchable_attributes(ATTR_INTEGRATOR)
            .searchable_attributes(ATTR_PROJECT)
            .searchable_attributes(ATTR_STATUS)
            .build();
        match self
            .client
            .create_thing_type()
            .thing_type_name(&name)
            .thing_type_properties(props)
            .send()
            .await
        {
            Ok(_) => Ok(name),
            Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => Ok(name),
            Err(e) => Err(sdk_err(e)),
        }
    }

    /// The integrator's group and the project's under it.
    async fn ensure_groups(&self, d: &DeviceIdentity) -> Result<String, RegistryError> {
        let parent = integrator_group_name(&d.integrator_id);
        self.ensure_group(
            &parent,
            None,
            &format!("smartsite integrator {}", d.integrator_id),
        )
        .await?;
        let group = project_group_name(&d.integrator_id, &d.project_id);
        self.ensure_group(
            &group,
            Some(&parent),
            &format!("smartsite project {} of {}", d.project_id, d.integrator_id),
        )
        .await?;
        Ok(group)
    }

    /// Creates the group unless it exists; an existing group must have the expected parent.
    /// (Described first rather than relying on CreateThingGroup's idempotency, which AWS grants
    /// only for identical properties and the emulator not even then.)
    async fn ensure_group(
        &self,
        name: &str,
        parent: Option<&str>,
        description: &str,
    ) -> Result<(), RegistryError> {
        let existing = match self
            .client
            .describe_thing_group()
            .thing_group_name(name)
            .send()
            .await
        {
            Ok(g) => Some(g),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => None,
            Err(e) => return Err(sdk_err(e)),
        };
        let existing = match existing {
            Some(g) => g,
            None => {
                match self
                    .client
                    .create_thing_group()
                    .thing_group_name(name)
                    .set_parent_group_name(parent.map(str::to_owned))
                    .thing_group_properties(
                        ThingGroupProperties::builder()
                            .thing_group_description(description)
                            .build(),
                    )
                    .send()
                    .await
                {
                    Ok(_) => return Ok(()),
                    // Created concurrently: check it as an existing one.
                    Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => self
                        .client
                        .describe_thing_group()
                        .thing_group_name(name)
                        .send()
                        .await
                        .map_err(sdk_err)?,
                    Err(e) => return Err(sdk_err(e)),
                }
            }
        };
        let actual = existing
            .thing_group_metadata()
            .and_then(|m| m.parent_group_name());
        if actual != parent {
            return Err(RegistryError::Invalid(format!(
                "thing group {name} exists with parent {actual:?}, expected {parent:?}"
            )));
        }
        Ok(())
    }

    /// The thing's attributes, or `None` if there is no such thing.
    async fn describe(
        &self,
        d: &DeviceIdentity,
    ) -> Result<Option<(Option<String>, HashMap<String, String>)>, RegistryError> {
        match self
            .client
            .describe_thing()
            .thing_name(&d.device_id)
            .send()
            .await
        {
            Ok(t) => Ok(Some((
                t.thing_type_name().map(str::to_owned),
                t.attributes().cloned().unwrap_or_default(),
            ))),
            Err(e) if code(&e) == Some("ResourceNotFoundException") => Ok(None),
            Err(e) => Err(sdk_err(e)),
        }
    }

    /// Creates the thing, or checks that the existing one is this device (same integrator,
    /// project and type: moving a device is not provisioning) and marks it active.
    async fn ensure_thing(
        &self,
        d: &DeviceIdentity,
        thing_type: &str,
    ) -> Result<(), RegistryError> {
        let existing = match self.describe(d).await? {
            Some(t) => t,
            None => {
                let attrs = AttributePayload::builder()
                    .attributes(ATTR_INTEGRATOR, d.integrator_id.as_str())
                    .attributes(ATTR_PROJECT, d.project_id.as_str())
                    .attributes(ATTR_STATUS, STATUS_ACTIVE)
                    .build();
                match self
                    .client
                    .create_thing()
                    .thing_name(&d.device_id)
                    .thing_type_name(thing_type)
                    .attribute_payload(attrs)
                    .send()
                    .await
                {
                    Ok(_) => return Ok(()),
                    // Created concurrently: check it is the same device.
                    Err(e) if code(&e) == Some("ResourceAlreadyExistsException") => {
                        self.describe(d).await?.ok_or(RegistryError::NotFound)?
                    }
                    Err(e) => return Err(sdk_err(e)),
                }
            }
        };
        let (ty, attrs) = existing;
        let same = attrs.get(ATTR_INTEGRATOR).map(String::as_str) == Some(d.integrator_id.as_str())
            && attrs.get(ATTR_PROJECT) == Some(&d.project_id)
            && ty.as_deref() == Some(thing_type);
        if !same {
            return Err(RegistryError::Invalid(format!(
                "thing {} is registered with another integrator, project or category",
                d.device_id
            )));
        }
        if attrs.get(ATTR_STATUS).map(String::as_str) != Some(STATUS_ACTIVE) {
            self.set_status(d, STATUS_ACTIVE).await?;
        }
        Ok(())
    }

    async fn set_status(&self, d: &DeviceIdentity, status: &str) -> Result<(), RegistryError> {
        self.client
            .update_thing()
            .thing_name(&d.device_id)
            .attribute_payload(
                AttributePayload::builder()
                    .attributes(ATTR_STATUS, status)
                    .merge(true)
                    .build(),
            )
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    /// A new active certificate with the device policy, attached to the thing.
    async fn issue(&self, d: &DeviceIdentity) -> Result<Credentials, RegistryError> {
        let out = self
            .client
            .create_keys_and_certificate()
            .set_as_active(true)
            .send()
            .await
            .map_err(sdk_err)?;
        let missing = |what: &str| {
            RegistryError::Backend(anyhow::anyhow!(
                "CreateKeysAndCertificate answered no {what}"
            ))
        };
        let arn = out
            .certificate_arn()
            .ok_or_else(|| missing("certificateArn"))?;
        let id = out
            .certificate_id()
            .ok_or_else(|| missing("certificateId"))?;
        let attached = async {
            self.client
                .attach_policy()
                .policy_name(&self.policy_name)
                .target(arn)
                .send()
                .await
                .map_err(sdk_err)?;
            self.client
                .attach_thing_principal()
                .thing_name(&d.device_id)
                .principal(arn)
                .send()
                .await
                .map_err(sdk_err)?;
            Ok::<_, RegistryError>(())
        }
        .await;
        if let Err(e) = attached {
            // Never leave an active certificate that nobody received.
            if let Err(cleanup) = self.set_cert_status(id, CertificateStatus::Revoked).await {
                tracing::warn!(certificate_id = id, error = ?cleanup, "could not revoke an orphaned certificate");
            }
            return Err(e);
        }
        Ok(Credentials {
            certificate_pem: out
                .certificate_pem()
                .ok_or_else(|| missing("certificatePem"))?
                .to_owned(),
            private_key_pem: out
                .key_pair()
                .and_then(|k| k.private_key())
                .ok_or_else(|| missing("keyPair.PrivateKey"))?
                .to_owned(),
            certificate_id: id.to_owned(),
            device_token: None,
            ca_pem: self.ca_pem.clone(),
        })
    }

    async fn set_cert_status(
        &self,
        id: &str,
        status: CertificateStatus,
    ) -> Result<(), RegistryError> {
        self.client
            .update_certificate()
            .certificate_id(id)
            .new_status(status)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(())
    }

    async fn cert_status(&self, id: &str) -> Result<Option<CertificateStatus>, RegistryError> {
        let out = self
            .client
            .describe_certificate()
            .certificate_id(id)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out
            .certificate_description()
            .and_then(|c| c.status())
            .cloned())
    }

    /// The ids of the certificates attached to the device's thing (its credential history).
    pub async fn certificate_ids(&self, device_id: &str) -> Result<Vec<String>, RegistryError> {
        let mut out = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let page = match self
                .client
                .list_thing_principals()
                .thing_name(device_id)
                .set_next_token(next.take())
                .send()
                .await
            {
                Ok(p) => p,
                Err(e) if code(&e) == Some("ResourceNotFoundException") => {
                    return Err(RegistryError::NotFound);
                }
                Err(e) => return Err(sdk_err(e)),
            };
            out.extend(
                page.principals()
                    .iter()
                    .filter_map(|a| certificate_id_of(a).map(str::to_owned)),
            );
            match page.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// Sets every listed certificate not yet revoked to `REVOKED`.
    async fn revoke_certs(
        &self,
        ids: impl IntoIterator<Item = String>,
    ) -> Result<(), RegistryError> {
        for id in ids {
            if self.cert_status(&id).await? != Some(CertificateStatus::Revoked) {
                self.set_cert_status(&id, CertificateStatus::Revoked)
                    .await?;
            }
        }
        Ok(())
    }

    /// `Ok` with the thing's status if it is this device's; `NotFound` otherwise.
    async fn registered(&self, d: &DeviceIdentity) -> Result<String, RegistryError> {
        let (_, attrs) = self.describe(d).await?.ok_or(RegistryError::NotFound)?;
        if attrs.get(ATTR_INTEGRATOR).map(String::as_str) != Some(d.integrator_id.as_str()) {
            // Another integrator's device: indistinguishable from absent.
            return Err(RegistryError::NotFound);
        }
        Ok(attrs
            .get(ATTR_STATUS)
            .cloned()
            .unwrap_or_else(|| STATUS_ACTIVE.to_owned()))
    }
}

/// The certificate id of a certificate ARN (`arn:…:cert/{id}`); `None` for other principals.
pub fn certificate_id_of(arn: &str) -> Option<&str> {
    arn.split_once(":cert/").map(|(_, id)| id)
}

#[async_trait]
impl DeviceRegistry for AwsIotRegistry {
    async fn provision(&self, d: &DeviceIdentity) -> Result<Credentials, RegistryError> {
        d.validate()?;
        let thing_type = self.ensure_thing_type(&d.category).await?;
        let group = self.ensure_groups(d).await?;
        self.ensure_thing(d, &thing_type).await?;
        self.client
            .add_thing_to_thing_group()
            .thing_group_name(&group)
            .thing_name(&d.device_id)
            .send()
            .await
            .map_err(sdk_err)?;
        self.issue(d).await
    }

    async fn rotate(&self, d: &DeviceIdentity) -> Result<Credentials, RegistryError> {
        d.validate()?;
        if self.registered(d).await? != STATUS_ACTIVE {
            return Err(RegistryError::NotFound);
        }
        self.issue(d).await
    }

    async fn retire_previous(
        &self,
        d: &DeviceIdentity,
        keep_certificate_id: &str,
    ) -> Result<(), RegistryError> {
        d.validate()?;
        self.registered(d).await?;
        let ids = self.certificate_ids(&d.device_id).await?;
        // Never lock a device out: the kept certificate must be one of its active ones.
        if !ids.iter().any(|i| i == keep_certificate_id)
            || self.cert_status(keep_certificate_id).await? != Some(CertificateStatus::Active)
        {
            return Err(RegistryError::NotFound);
        }
        self.revoke_certs(ids.into_iter().filter(|i| i != keep_certificate_id))
            .await
    }

    async fn revoke(&self, d: &DeviceIdentity) -> Result<(), RegistryError> {
        d.validate()?;
        self.registered(d).await?;
        // Mark first: a device half-revoked by a failure is already refused by rotate.
        self.set_status(d, STATUS_DECOMMISSIONED).await?;
        let ids = self.certificate_ids(&d.device_id).await?;
        self.revoke_certs(ids).await
    }
}

fn code<E, R>(e: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match e {
        SdkError::ServiceError(s) => s.err().code(),
        _ => None,
    }
}

fn sdk_err<E, R>(e: SdkError<E, R>) -> RegistryError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    const RETRYABLE: [&str; 4] = [
        "ThrottlingException",
        "ServiceUnavailableException",
        "InternalFailureException",
        "LimitExceededException",
    ];
    match &e {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => {
            return RegistryError::Unavailable(anyhow::Error::new(e));
        }
        _ => {}
    }
    match code(&e) {
        Some(c) if RETRYABLE.contains(&c) => RegistryError::Unavailable(anyhow::Error::new(e)),
        Some("InvalidRequestException") => {
            RegistryError::Invalid(e.message().unwrap_or("invalid request").to_owned())
        }
        _ => RegistryError::Backend(anyhow::Error::new(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_byte_exact() {
        let i = IntegratorId::parse("ct-jl").unwrap();
        assert_eq!(thing_type_name("tower_crane"), "smartsite-tower_crane");
        assert_eq!(integrator_group_name(&i), "ct-jl");
        assert_eq!(project_group_name(&i, "prj-1"), "ct-jl_prj-1");
        // No project group can be named like another integrator's group.
        assert_ne!(
            project_group_name(&IntegratorId::parse("a").unwrap(), "prj-1"),
            integrator_group_name(&IntegratorId::parse("a-prj-1").unwrap())
        );
    }

    #[test]
    fn certificate_ids_from_arns() {
        assert_eq!(
            certificate_id_of("arn:aws:iot:us-east-1:123456789012:cert/abc123"),
            Some("abc123")
        );
        assert_eq!(
            certificate_id_of("arn:aws:cognito-identity:us-east-1:1:identitypool/x"),
            None
        );
    }
}
