//! The device registry port: per-device identity and credentials, and its two adapters.
//!
//! - [`aws::AwsIotRegistry`]: AWS IoT Core (aws-sdk-iot). The thing is named by the device id, has
//!   a thing type per category and attributes for integrator and project, sits in a thing group
//!   per project under one per integrator; each credential is an AWS-issued certificate with the
//!   device policy of `infra/template.yaml` attached.
//! - [`local::LocalRegistry`]: the single-box edition. A local CA (created on first use in the
//!   data dir) issues per-device X.509 client certificates, and a per-device token serves plain
//!   MQTT. Credential state lives in the storage port; the embedded broker asks it who may connect.
//!
//! Both return the private key and the token exactly once, from [`DeviceRegistry::provision`] or
//! [`DeviceRegistry::rotate`]; neither is stored in clear anywhere.
//!
//! Topics (API.md, Device messages): `ss/{integrator}/{project}/{device}/telemetry`, `…/events`,
//! and downlink `…/cmd`. A device may publish only the first two and subscribe only the third of
//! its own identity: the AWS policy enforces this with policy variables, the local broker with
//! [`Topics::may_publish`] / [`Topics::may_subscribe`].

#[cfg(feature = "aws")]
pub mod aws;
pub mod local;

use async_trait::async_trait;
use serde_json::Value as Json;
use serde_yaml::Value;

use crate::domain::tenancy::ProjectId;
use crate::ids::IntegratorId;

/// Who a device is: the identity its credentials carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    pub integrator_id: IntegratorId,
    /// `prj-…`
    pub project_id: String,
    /// `dev-…`; also the AWS thing name and the MQTT client id.
    pub device_id: String,
    /// snake_case category (`tower_crane`, `hoist`, `dust_noise`, …; API.md, Devices).
    pub category: String,
}

/// What a device needs to connect, returned once by `provision` and `rotate`.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub certificate_pem: String,
    /// PKCS#8 (local) or the PEM AWS returns. Never stored by the registry.
    pub private_key_pem: String,
    /// AWS: the certificate id. Local: the SHA-256 fingerprint of the certificate's DER, lower-case
    /// hex (what the broker computes from the certificate a device presents).
    pub certificate_id: String,
    /// Local only: the password for plain MQTT (username = device id). Only its hash is stored.
    pub device_token: Option<String>,
    /// The CA that devices trust for the server side. Local: the local CA, which also issued the
    /// client certificate. AWS: empty unless configured — see [`aws::AwsIotRegistry::with_ca_pem`].
    pub ca_pem: String,
}

impl std::fmt::Debug for Credentials {
    /// Never prints the private key or the token.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("certificate_id", &self.certificate_id)
            .field("private_key_pem", &"[redacted]")
            .field(
                "device_token",
                &self.device_token.as_ref().map(|_| "[redacted]"),
            )
            .finish_non_exhaustive()
    }
}

/// Errors of the registry port. `Unavailable` is retryable; `NotFound` means the device has no
/// registration to act on (never provisioned, or decommissioned where that matters).
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("device registry temporarily unavailable")]
    Unavailable(#[source] anyhow::Error),
    #[error("device registry error")]
    Backend(#[source] anyhow::Error),
    #[error("device not registered")]
    NotFound,
    /// A malformed identity or argument: a caller's bug, since identities are parsed at the edge.
    #[error("invalid device registry request: {0}")]
    Invalid(String),
}

impl RegistryError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, RegistryError::Unavailable(_))
    }
}

impl From<crate::store::StoreError> for RegistryError {
    fn from(e: crate::store::StoreError) -> Self {
        if e.is_retryable() {
            RegistryError::Unavailable(e.into())
        } else {
            RegistryError::Backend(e.into())
        }
    }
}

/// The port.
#[async_trait]
pub trait DeviceRegistry: Send + Sync {
    /// Registers the device (idempotent on its registration: thing, type, groups) and issues a
    /// new credential set on every call. A decommissioned device is registered again (its old
    /// credentials stay revoked); the same device id under another integrator, project or
    /// category is refused where the backend records them (AWS thing attributes).
    async fn provision(&self, d: &DeviceIdentity) -> Result<Credentials, RegistryError>;

    /// Issues a new credential set for a registered device; the previous ones stay valid until
    /// [`retire_previous`](Self::retire_previous). `NotFound` if the device is not registered.
    async fn rotate(&self, d: &DeviceIdentity) -> Result<Credentials, RegistryError>;

    /// Revokes every credential of the device except the set of `keep_certificate_id` (the one the
    /// device proved it uses): "revoke the old after use".
    async fn retire_previous(
        &self,
        d: &DeviceIdentity,
        keep_certificate_id: &str,
    ) -> Result<(), RegistryError>;

    /// Decommission: every credential revoked; the registration and the credential records are
    /// kept as history.
    async fn revoke(&self, d: &DeviceIdentity) -> Result<(), RegistryError>;
}

/// Longest device id accepted (a thing name may be 128 characters; ids are far shorter).
pub const DEVICE_ID_MAX: usize = 64;
/// Prefix of device ids.
pub const DEVICE_ID_PREFIX: &str = "dev-";

/// Whether `s` is a well-formed device id: `dev-` and lower-case letters and digits. Such an id
/// never contains the key delimiter `#`, a topic separator or an MQTT wildcard.
pub fn is_device_id(s: &str) -> bool {
    s.len() <= DEVICE_ID_MAX
        && s.strip_prefix(DEVICE_ID_PREFIX).is_some_and(|rest| {
            !rest.is_empty()
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
}

/// The three topic kinds of a device (API.md, Device messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicKind {
    Telemetry,
    Events,
    Cmd,
}

impl TopicKind {
    pub const ALL: [TopicKind; 3] = [TopicKind::Telemetry, TopicKind::Events, TopicKind::Cmd];

    pub const fn suffix(self) -> &'static str {
        match self {
            TopicKind::Telemetry => "telemetry",
            TopicKind::Events => "events",
            TopicKind::Cmd => "cmd",
        }
    }
}

impl DeviceIdentity {
    /// Checks every part, since they become key segments, thing and group names and topic levels.
    pub fn validate(&self) -> Result<(), RegistryError> {
        ProjectId::parse("project_id", &self.project_id)
            .map_err(|e| RegistryError::Invalid(e.to_string()))?;
        if !is_device_id(&self.device_id) {
            return Err(RegistryError::Invalid(format!(
                "device_id: not a valid id (expected {DEVICE_ID_PREFIX}…), got {:?}",
                self.device_id
            )));
        }
        let c = self.category.as_bytes();
        let snake = !c.is_empty()
            && c.len() <= 40
            && c[0].is_ascii_lowercase()
            && c.iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_');
        if !snake {
            return Err(RegistryError::Invalid(format!(
                "category: expected a snake_case name, got {:?}",
                self.category
            )));
        }
        Ok(())
    }

    /// The device's topics and topic ACL.
    pub fn topics(&self) -> Topics<'_> {
        Topics {
            integrator_id: &self.integrator_id,
            project_id: &self.project_id,
            device_id: &self.device_id,
        }
    }
}

/// The topics of one device, and the ACL the broker enforces on them. Built from a
/// [`DeviceIdentity`] or from a verified certificate ([`local::DeviceCertInfo::topics`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Topics<'a> {
    pub integrator_id: &'a IntegratorId,
    pub project_id: &'a str,
    pub device_id: &'a str,
}

impl Topics<'_> {
    /// `ss/{integrator}/{project}/{device}/{kind}`.
    pub fn topic(&self, kind: TopicKind) -> String {
        format!(
            "ss/{}/{}/{}/{}",
            self.integrator_id,
            self.project_id,
            self.device_id,
            kind.suffix()
        )
    }

    /// Publishing: only its own telemetry and events.
    pub fn may_publish(&self, topic: &str) -> bool {
        topic == self.topic(TopicKind::Telemetry) || topic == self.topic(TopicKind::Events)
    }

    /// Subscribing: only its own command topic, literally (no wildcards).
    pub fn may_subscribe(&self, filter: &str) -> bool {
        filter == self.topic(TopicKind::Cmd)
    }
}

// ---- The device policy, read from the SAM template (one definition, like the tables).

/// Logical id of the device policy in `infra/template.yaml`.
pub const DEVICE_POLICY: &str = "DevicePolicy";

/// Values for CloudFormation's substitutions when the policy is created outside CloudFormation
/// (the emulator, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyVars {
    pub stage: String,
    pub partition: String,
    pub region: String,
    pub account_id: String,
}

impl PolicyVars {
    /// Partition `aws` and wildcards for region and account: as strict as the template on topics
    /// and client ids, valid in any account.
    pub fn wildcard(stage: &str) -> Self {
        PolicyVars {
            stage: stage.to_owned(),
            partition: "aws".to_owned(),
            region: "*".to_owned(),
            account_id: "*".to_owned(),
        }
    }
}

/// The device policy of the template with its substitutions resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePolicyDef {
    pub name: String,
    /// The policy document as JSON text, ready for `CreatePolicy`.
    pub document: String,
}

/// The device policy document of the compiled-in template, with region and account wildcards
/// (see [`PolicyVars::wildcard`]).
pub fn policy_document() -> Result<String, RegistryError> {
    Ok(device_policy(crate::store::schema::TEMPLATE, &PolicyVars::wildcard("dev"))?.document)
}

/// Reads the `DevicePolicy` resource of a template and resolves `!Sub`/`Fn::Sub` with `vars`
/// (`${Stage}`, `${AWS::Partition}`, `${AWS::Region}`, `${AWS::AccountId}`; `${!x}` is the
/// literal `${x}`, how the template escapes IoT policy variables).
pub fn device_policy(template: &str, vars: &PolicyVars) -> Result<DevicePolicyDef, RegistryError> {
    let doc: Value = serde_yaml::from_str(template)
        .map_err(|e| RegistryError::Invalid(format!("template: {e}")))?;
    let invalid = |m: &str| RegistryError::Invalid(format!("template {DEVICE_POLICY}: {m}"));
    let res = doc
        .get("Resources")
        .and_then(|r| r.get(DEVICE_POLICY))
        .ok_or_else(|| invalid("no such resource"))?;
    if res.get("Type").and_then(Value::as_str) != Some("AWS::IoT::Policy") {
        return Err(invalid("not an AWS::IoT::Policy"));
    }
    let props = res
        .get("Properties")
        .ok_or_else(|| invalid("no Properties"))?;
    let name = resolve(
        props
            .get("PolicyName")
            .ok_or_else(|| invalid("no PolicyName"))?,
        vars,
    )
    .map_err(|e| invalid(&e))?;
    let name = name
        .as_str()
        .ok_or_else(|| invalid("PolicyName is not a string"))?
        .to_owned();
    let document = resolve(
        props
            .get("PolicyDocument")
            .ok_or_else(|| invalid("no PolicyDocument"))?,
        vars,
    )
    .map_err(|e| invalid(&e))?;
    let document = serde_json::to_string(&document).map_err(|e| invalid(&e.to_string()))?;
    Ok(DevicePolicyDef { name, document })
}

/// YAML (with CloudFormation tags) to JSON, resolving `Sub`; any other intrinsic is refused.
fn resolve(v: &Value, vars: &PolicyVars) -> Result<Json, String> {
    Ok(match v {
        Value::Null => Json::Null,
        Value::Bool(b) => Json::Bool(*b),
        Value::Number(n) => serde_json::to_value(n).map_err(|e| e.to_string())?,
        Value::String(s) => Json::String(s.clone()),
        Value::Sequence(seq) => Json::Array(
            seq.iter()
                .map(|x| resolve(x, vars))
                .collect::<Result<_, _>>()?,
        ),
        Value::Mapping(m) => {
            if m.len() == 1
                && let Some(s) = m.get("Fn::Sub")
            {
                return sub(s, vars);
            }
            let mut out = serde_json::Map::new();
            for (k, x) in m {
                let k = k.as_str().ok_or("non-string mapping key")?;
                if k.starts_with("Fn::") || k == "Ref" {
                    return Err(format!("unsupported intrinsic {k}"));
                }
                out.insert(k.to_owned(), resolve(x, vars)?);
            }
            Json::Object(out)
        }
        Value::Tagged(t) if t.tag == "Sub" => sub(&t.value, vars)?,
        Value::Tagged(t) => return Err(format!("unsupported intrinsic {}", t.tag)),
    })
}

fn sub(v: &Value, vars: &PolicyVars) -> Result<Json, String> {
    let s = v
        .as_str()
        .ok_or("only the string form of Sub is supported")?;
    substitute(s, vars).map(Json::String)
}

/// CloudFormation's `Fn::Sub` over the variables this policy may use.
fn substitute(s: &str, vars: &PolicyVars) -> Result<String, String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("unterminated ${{ in {s:?}"))?;
        let name = &after[..end];
        if let Some(literal) = name.strip_prefix('!') {
            out.push_str("${");
            out.push_str(literal);
            out.push('}');
        } else {
            out.push_str(match name {
                "Stage" => &vars.stage,
                "AWS::Partition" => &vars.partition,
                "AWS::Region" => &vars.region,
                "AWS::AccountId" => &vars.account_id,
                other => return Err(format!("unsupported variable ${{{other}}}")),
            });
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ident() -> DeviceIdentity {
        DeviceIdentity {
            integrator_id: IntegratorId::parse("ct-jl").unwrap(),
            project_id: "prj-1".into(),
            device_id: "dev-9".into(),
            category: "tower_crane".into(),
        }
    }

    #[test]
    fn identities_are_validated() {
        assert!(ident().validate().is_ok());
        for (field, bad) in [
            ("project", "p-1"),
            ("project", "prj-1#x"),
            ("device", "dev-"),
            ("device", "dev-a/b"),
            ("device", "dev-+"),
            ("device", "d-1"),
            ("category", "TowerCrane"),
            ("category", "tower-crane"),
            ("category", ""),
        ] {
            let mut d = ident();
            match field {
                "project" => d.project_id = bad.into(),
                "device" => d.device_id = bad.into(),
                _ => d.category = bad.into(),
            }
            assert!(
                matches!(d.validate(), Err(RegistryError::Invalid(_))),
                "{field} {bad:?}"
            );
        }
    }

    #[test]
    fn topics_and_acl() {
        let id = ident();
        let d = id.topics();
        assert_eq!(
            d.topic(TopicKind::Telemetry),
            "ss/ct-jl/prj-1/dev-9/telemetry"
        );
        assert_eq!(d.topic(TopicKind::Events), "ss/ct-jl/prj-1/dev-9/events");
        assert_eq!(d.topic(TopicKind::Cmd), "ss/ct-jl/prj-1/dev-9/cmd");
        assert!(d.may_publish("ss/ct-jl/prj-1/dev-9/telemetry"));
        assert!(d.may_publish("ss/ct-jl/prj-1/dev-9/events"));
        assert!(!d.may_publish("ss/ct-jl/prj-1/dev-9/cmd"));
        assert!(!d.may_publish("ss/ct-jl/prj-2/dev-9/telemetry"));
        assert!(!d.may_publish("ss/ct-jl/prj-1/dev-8/telemetry"));
        assert!(d.may_subscribe("ss/ct-jl/prj-1/dev-9/cmd"));
        assert!(!d.may_subscribe("ss/ct-jl/prj-1/+/cmd"));
        assert!(!d.may_subscribe("ss/#"));
    }

    #[test]
    fn credentials_debug_redacts_secrets() {
        let c = Credentials {
            certificate_pem: "CERT".into(),
            private_key_pem: "SECRET-KEY".into(),
            certificate_id: "abc".into(),
            device_token: Some("SECRET-TOKEN".into()),
            ca_pem: String::new(),
        };
        let s = format!("{c:?}");
        assert!(!s.contains("SECRET") && s.contains("abc"), "{s}");
    }

    #[test]
    fn substitution_resolves_and_escapes() {
        let v = PolicyVars {
            stage: "prod".into(),
            partition: "aws-cn".into(),
            region: "cn-north-1".into(),
            account_id: "123".into(),
        };
        assert_eq!(
            substitute(
                "arn:${AWS::Partition}:iot:${AWS::Region}:${AWS::AccountId}:client/${!iot:Connection.Thing.ThingName}",
                &v
            )
            .unwrap(),
            "arn:aws-cn:iot:cn-north-1:123:client/${iot:Connection.Thing.ThingName}"
        );
        assert_eq!(
            substitute("smartsite-${Stage}-device", &v).unwrap(),
            "smartsite-prod-device"
        );
        assert!(substitute("${Other}", &v).unwrap_err().contains("Other"));
        assert!(substitute("${AWS::Region", &v).is_err());
    }

    #[test]
    fn template_device_policy_confines_a_device_to_itself() {
        let p =
            device_policy(crate::store::schema::TEMPLATE, &PolicyVars::wildcard("dev")).unwrap();
        assert_eq!(p.name, "smartsite-dev-device");
        let doc: Json = serde_json::from_str(&p.document).unwrap();
        assert_eq!(doc["Version"], "2012-10-17");
        let stmts = doc["Statement"].as_array().unwrap();
        let resources = |action: &str| -> Vec<String> {
            let s = stmts
                .iter()
                .find(|s| s["Action"] == action)
                .unwrap_or_else(|| panic!("no statement for {action}"));
            assert_eq!(s["Effect"], "Allow");
            match &s["Resource"] {
                Json::String(r) => vec![r.clone()],
                Json::Array(a) => a.iter().map(|r| r.as_str().unwrap().to_owned()).collect(),
                other => panic!("{other}"),
            }
        };
        let thing = "${iot:Connection.Thing.ThingName}";
        let own = format!(
            "ss/${{iot:Connection.Thing.Attributes[integrator_id]}}/${{iot:Connection.Thing.Attributes[project_id]}}/{thing}"
        );
        assert_eq!(
            resources("iot:Connect"),
            [format!("arn:aws:iot:*:*:client/{thing}")]
        );
        let connect = stmts.iter().find(|s| s["Action"] == "iot:Connect").unwrap();
        assert_eq!(
            connect["Condition"]["Bool"]["iot:Connection.Thing.IsAttached"],
            "true"
        );
        assert_eq!(
            resources("iot:Publish"),
            [
                format!("arn:aws:iot:*:*:topic/{own}/telemetry"),
                format!("arn:aws:iot:*:*:topic/{own}/events")
            ]
        );
        assert_eq!(
            resources("iot:Subscribe"),
            [format!("arn:aws:iot:*:*:topicfilter/{own}/cmd")]
        );
        assert_eq!(
            resources("iot:Receive"),
            [format!("arn:aws:iot:*:*:topic/{own}/cmd")]
        );
        assert_eq!(stmts.len(), 4, "nothing else is allowed");
        // The thing attributes the policy reads are the ones provisioning writes.
        assert!(p.document.contains(aws::ATTR_INTEGRATOR));
        assert!(p.document.contains(aws::ATTR_PROJECT));
        assert_eq!(policy_document().unwrap(), p.document);
    }

    #[test]
    fn policy_reader_refuses_what_it_cannot_resolve() {
        let t = "Resources:\n  DevicePolicy:\n    Type: AWS::IoT::Policy\n    Properties:\n      PolicyName: !Ref Name\n      PolicyDocument: {}\n";
        let e = device_policy(t, &PolicyVars::wildcard("dev")).unwrap_err();
        assert!(e.to_string().contains("Ref"), "{e}");
        let e = device_policy("Resources: {}\n", &PolicyVars::wildcard("dev")).unwrap_err();
        assert!(e.to_string().contains("no such resource"), "{e}");
    }
}
