//! Devices (DOMAIN.md §8.3): suppliers, device models, bound devices, and the blacklist rule
//! (黑名单制度). Pure types and rules; storage and HTTP live elsewhere.

use serde::{Deserialize, Serialize};

use super::tenancy::{CustomerId, FieldError, RegionCode, Uscc, prefixed_id};
use crate::ids::IntegratorId;

prefixed_id!(
    /// A device supplier (manufacturer), in the platform-wide registry.
    SupplierId, "sup-"
);
prefixed_id!(
    /// A device model of a supplier, in the platform-wide registry.
    ModelId, "mdl-"
);
prefixed_id!(
    /// A blacklist entry (黑名单).
    BlacklistId, "blk-"
);
prefixed_id!(
    /// A device bound to a project.
    DeviceId, "dev-"
);

/// A device's serial number as printed on its nameplate: 1 to 64 of letters, digits and
/// `- _ . : /`, case-folded to upper case so a blacklist entry cannot be dodged by case. It is a
/// key segment, so the key delimiter `#` can never occur.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SerialNo(String);

impl SerialNo {
    pub fn parse(field: &str, s: &str) -> Result<SerialNo, FieldError> {
        let s = s.trim().to_ascii_uppercase();
        let ok = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
        if ok {
            Ok(SerialNo(s))
        } else {
            Err(FieldError::new(
                field,
                "a serial number is 1 to 64 of letters, digits and - _ . : /",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for SerialNo {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        SerialNo::parse("serial_no", &s).map_err(serde::de::Error::custom)
    }
}

/// What a device is. API.md's list; the snake_case names are the public contract.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    TowerCrane,
    Hoist,
    DustNoise,
    Spray,
    AccessGate,
    Camera,
    UnloadingPlatform,
    RangingInspection,
    Panorama,
}

impl Category {
    pub const ALL: [Category; 9] = [
        Category::TowerCrane,
        Category::Hoist,
        Category::DustNoise,
        Category::Spray,
        Category::AccessGate,
        Category::Camera,
        Category::UnloadingPlatform,
        Category::RangingInspection,
        Category::Panorama,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::TowerCrane => "tower_crane",
            Category::Hoist => "hoist",
            Category::DustNoise => "dust_noise",
            Category::Spray => "spray",
            Category::AccessGate => "access_gate",
            Category::Camera => "camera",
            Category::UnloadingPlatform => "unloading_platform",
            Category::RangingInspection => "ranging_inspection",
            Category::Panorama => "panorama",
        }
    }

    /// The static configuration fields a device of this category must (and may) carry, with the
    /// range each must lie in. Values come from DOMAIN.md §2 and §8.3; ranges are sanity bounds
    /// that catch unit mistakes (kg for t, N·m for t·m), not engineering limits.
    pub fn config_fields(self) -> &'static [ConfigField] {
        match self {
            Category::TowerCrane => &[
                ConfigField {
                    name: "rated_load_t",
                    required: true,
                    min: 0.1,
                    max: 100.0,
                },
                ConfigField {
                    name: "rated_moment_tm",
                    required: true,
                    min: 1.0,
                    max: 10_000.0,
                },
                ConfigField {
                    name: "jib_len_m",
                    required: false,
                    min: 1.0,
                    max: 120.0,
                },
                ConfigField {
                    name: "rated_wind_ms",
                    required: false,
                    min: 5.0,
                    max: 30.0,
                },
                ConfigField {
                    name: "in_site_no",
                    required: false,
                    min: 1.0,
                    max: 16.0,
                },
            ],
            Category::Hoist => &[
                ConfigField {
                    name: "rated_load_kg",
                    required: true,
                    min: 50.0,
                    max: 10_000.0,
                },
                ConfigField {
                    name: "rated_persons",
                    required: true,
                    min: 1.0,
                    max: 100.0,
                },
                ConfigField {
                    name: "max_height_m",
                    required: false,
                    min: 1.0,
                    max: 1_000.0,
                },
            ],
            Category::UnloadingPlatform => &[ConfigField {
                name: "rated_load_kg",
                required: true,
                min: 50.0,
                max: 10_000.0,
            }],
            Category::Spray => &[
                ConfigField {
                    name: "start_value",
                    required: false,
                    min: 0.0,
                    max: 10_000.0,
                },
                ConfigField {
                    name: "stop_value",
                    required: false,
                    min: 0.0,
                    max: 10_000.0,
                },
            ],
            _ => &[],
        }
    }

    /// Whether devices of this category speak HJ 212 and therefore need an `mn`.
    pub fn may_use_hj212(self) -> bool {
        self == Category::DustNoise
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConfigField {
    pub name: &'static str,
    pub required: bool,
    pub min: f64,
    pub max: f64,
}

/// Parses a device's category configuration from the request object: required fields present,
/// every known field numeric and in range, unknown numeric-looking extras refused so a typo
/// (`rated_load` for `rated_load_t`) is caught.
pub fn parse_config(
    category: Category,
    fields: &serde_json::Map<String, serde_json::Value>,
) -> Result<std::collections::BTreeMap<String, f64>, FieldError> {
    let mut out = std::collections::BTreeMap::new();
    for f in category.config_fields() {
        match fields.get(f.name) {
            None | Some(serde_json::Value::Null) if f.required => {
                return Err(FieldError::new(
                    f.name,
                    format!("required for a {}", category.as_str()),
                ));
            }
            None | Some(serde_json::Value::Null) => {}
            Some(v) => {
                let n = v
                    .as_f64()
                    .ok_or_else(|| FieldError::new(f.name, "must be a number"))?;
                if !(f.min..=f.max).contains(&n) {
                    return Err(FieldError::new(
                        f.name,
                        format!("must lie in {}..={}", f.min, f.max),
                    ));
                }
                out.insert(f.name.to_owned(), n);
            }
        }
    }
    if let (Some(start), Some(stop)) = (out.get("start_value"), out.get("stop_value"))
        && stop >= start
    {
        return Err(FieldError::new(
            "stop_value",
            "must be below start_value (hysteresis)",
        ));
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    MqttJson,
    Hj212,
}

/// HJ 212 device number (MN). HJ 212-2017 says 24 characters of 0-9/A-F, but real devices break
/// that (DOMAIN.md §11, C4): anything printable up to 24 characters is accepted, and whether it
/// follows the rule is reported so the caller can warn.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Mn(String);

impl Mn {
    pub fn parse(field: &str, s: &str) -> Result<Mn, FieldError> {
        let ok = !s.is_empty() && s.len() <= 24 && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if ok {
            Ok(Mn(s.to_owned()))
        } else {
            Err(FieldError::new(field, "an MN is 1 to 24 letters or digits"))
        }
    }

    /// Whether it follows HJ 212-2017: exactly 24 hex characters.
    pub fn is_standard(&self) -> bool {
        self.0.len() == 24 && self.0.bytes().all(|b| b.is_ascii_hexdigit())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a blacklist entry targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Supplier,
    Model,
    /// A physical device, by serial number.
    Device,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Supplier => "supplier",
            Scope::Model => "model",
            Scope::Device => "device",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entities, as stored.

/// A device supplier. Suppliers are a platform-wide registry (a government blacklists a
/// manufacturer across integrators), unique by USCC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Supplier {
    #[schema(value_type = String)]
    pub id: SupplierId,
    pub name: String,
    #[schema(value_type = String)]
    pub uscc: Uscc,
    pub created_at: String,
    /// The user who registered it; withheld (`null`) from other integrators' users.
    pub created_by: Option<String>,
    /// The integrator of that user (`None`: the platform administrator, or recorded before
    /// this was kept); never shown, it decides who sees `created_by`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub created_by_integrator_id: Option<IntegratorId>,
}

/// A device model of a supplier, platform-wide.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DeviceModel {
    #[schema(value_type = String)]
    pub id: ModelId,
    #[schema(value_type = String)]
    pub supplier_id: SupplierId,
    pub name: String,
    pub category: Category,
    pub protocol: Protocol,
    /// Access-standard certificate number (接入标准); without one the model is provisioned only
    /// where the integrator marked it compliant.
    pub access_cert_no: Option<String>,
    pub created_at: String,
    /// The user who registered it; withheld (`null`) from other integrators' users.
    pub created_by: Option<String>,
    /// As [`Supplier::created_by_integrator_id`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(ignore)]
    pub created_by_integrator_id: Option<IntegratorId>,
}

/// Whether `caller` may see who registered a shared catalogue entry: the platform administrator
/// always, otherwise only users of the integrator it was registered by. User ids of one
/// integrator are not another's business.
pub fn sees_creator(
    caller_integrator: Option<&IntegratorId>,
    platform_admin: bool,
    created_by_integrator: Option<&IntegratorId>,
) -> bool {
    platform_admin || (caller_integrator.is_some() && caller_integrator == created_by_integrator)
}

/// An integrator's explicit statement that a model without an access certificate is compliant,
/// with who made it and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ComplianceMark {
    #[schema(value_type = String)]
    pub model_id: ModelId,
    #[schema(value_type = String)]
    pub integrator_id: IntegratorId,
    pub marked_by: String,
    pub marked_at: String,
    pub note: String,
}

/// How an entry was lifted. Lifting is recorded; entries are never deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Lifted {
    pub by: String,
    pub at: String,
    pub reason: String,
}

/// A blacklist entry (黑名单制度): a supplier, a model or one device (by serial number), banned
/// in a region and every region below it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct BlacklistEntry {
    #[schema(value_type = String)]
    pub id: BlacklistId,
    pub scope: Scope,
    /// A supplier id, a model id, or a serial number, per `scope`.
    pub target_id: String,
    #[schema(value_type = String, example = "220100")]
    pub region_code: RegionCode,
    pub reason: String,
    /// The user who issued it.
    pub issued_by: String,
    /// The issuing government customer; `None` when the platform administrator issued it (and
    /// withheld from callers outside the issuing integrator).
    #[schema(value_type = Option<String>)]
    pub issued_by_customer_id: Option<CustomerId>,
    /// The integrator of the issuing government customer (withheld like the customer).
    #[schema(value_type = Option<String>)]
    pub issued_by_integrator_id: Option<IntegratorId>,
    pub issued_at: String,
    pub lifted: Option<Lifted>,
}

impl BlacklistEntry {
    pub fn is_active(&self) -> bool {
        self.lifted.is_none()
    }

    /// The entry as the binding rule sees it.
    pub fn ban(&self) -> Ban {
        Ban {
            id: self.id.to_string(),
            scope: self.scope,
            target: self.target_id.clone(),
            region: self.region_code.clone(),
            lifted: self.lifted.is_some(),
        }
    }
}

/// A blacklist entry as the binding rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ban {
    pub id: String,
    pub scope: Scope,
    pub target: String,
    pub region: RegionCode,
    pub lifted: bool,
}

/// The device being bound, as the blacklist rule sees it.
pub struct Candidate<'a> {
    pub supplier_id: &'a str,
    pub model_id: &'a str,
    pub serial_no: &'a str,
    pub project_region: &'a RegionCode,
}

/// The first active entry that forbids binding `c`: one naming its supplier, model or serial,
/// issued for the project's region or any region above it.
pub fn blocking_entry<'b>(c: &Candidate<'_>, entries: &'b [Ban]) -> Option<&'b Ban> {
    entries.iter().find(|b| {
        let target = match b.scope {
            Scope::Supplier => c.supplier_id,
            Scope::Model => c.model_id,
            Scope::Device => c.serial_no,
        };
        !b.lifted && b.target == target && b.region.covers(c.project_region)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(s: &str) -> RegionCode {
        RegionCode::parse("r", s).unwrap()
    }

    #[test]
    fn blacklist_covers_the_region_and_its_children_only() {
        let changchun = region("220100");
        let chaoyang = region("220102");
        let jilin_city = region("220201");
        let ban = |scope, target: &str, r: &str, lifted| Ban {
            id: format!("blk-{target}"),
            scope,
            target: target.into(),
            region: region(r),
            lifted,
        };
        let entries = vec![
            ban(Scope::Supplier, "sup-1", "220100", false),
            ban(Scope::Model, "mdl-2", "220000", false),
            ban(Scope::Device, "SN-3", "220102", false),
            ban(Scope::Supplier, "sup-9", "220000", true),
        ];
        let cand = |s, m, n, r| Candidate {
            supplier_id: s,
            model_id: m,
            serial_no: n,
            project_region: r,
        };
        // A Changchun ban reaches a Chaoyang project (child) but not Jilin City.
        assert_eq!(
            blocking_entry(&cand("sup-1", "m", "x", &chaoyang), &entries)
                .unwrap()
                .id,
            "blk-sup-1"
        );
        assert!(blocking_entry(&cand("sup-1", "m", "x", &jilin_city), &entries).is_none());
        // A province-level ban reaches everywhere in the province.
        assert_eq!(
            blocking_entry(&cand("s", "mdl-2", "x", &jilin_city), &entries)
                .unwrap()
                .id,
            "blk-mdl-2"
        );
        // A district ban does not reach the city around it.
        assert!(blocking_entry(&cand("s", "m", "SN-3", &changchun), &entries).is_none());
        assert!(blocking_entry(&cand("s", "m", "SN-3", &chaoyang), &entries).is_some());
        // Lifted entries no longer block.
        assert!(blocking_entry(&cand("sup-9", "m", "x", &chaoyang), &entries).is_none());
        // A supplier id is never confused with a serial that happens to be equal.
        assert!(blocking_entry(&cand("s", "m", "sup-1", &chaoyang), &entries).is_none());
    }

    #[test]
    fn category_config_is_checked() {
        let obj = |v: serde_json::Value| v.as_object().unwrap().clone();
        let ok = parse_config(
            Category::TowerCrane,
            &obj(serde_json::json!({"rated_load_t": 8, "rated_moment_tm": 160})),
        )
        .unwrap();
        assert_eq!(ok["rated_load_t"], 8.0);
        let e = parse_config(
            Category::TowerCrane,
            &obj(serde_json::json!({"rated_moment_tm": 160})),
        )
        .unwrap_err();
        assert_eq!(e.field, "rated_load_t");
        // 8000 t is a unit mistake (kg).
        let e = parse_config(
            Category::TowerCrane,
            &obj(serde_json::json!({"rated_load_t": 8000, "rated_moment_tm": 160})),
        )
        .unwrap_err();
        assert_eq!(e.field, "rated_load_t");
        let e = parse_config(
            Category::Hoist,
            &obj(serde_json::json!({"rated_load_kg": "2000", "rated_persons": 12})),
        )
        .unwrap_err();
        assert_eq!(
            (e.field.as_str(), e.message.as_str()),
            ("rated_load_kg", "must be a number")
        );
        let e = parse_config(
            Category::Spray,
            &obj(serde_json::json!({"start_value": 150, "stop_value": 150})),
        )
        .unwrap_err();
        assert_eq!(e.field, "stop_value");
        assert!(
            parse_config(Category::Camera, &obj(serde_json::json!({})))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn mn_accepts_field_devices_and_reports_the_standard() {
        let std = Mn::parse("mn", "0123456789ABCDEF01234567").unwrap();
        assert!(std.is_standard());
        let legacy = Mn::parse("mn", "JL2201SITE0001DUST01").unwrap();
        assert!(
            !legacy.is_standard(),
            "20 chars, non-hex: accepted with a warning"
        );
        assert!(Mn::parse("mn", "").is_err());
        assert!(Mn::parse("mn", "A#B").is_err());
        assert!(Mn::parse("mn", &"A".repeat(25)).is_err());
    }

    #[test]
    fn ids_and_serials_parse() {
        assert!(SupplierId::generate().as_str().starts_with("sup-"));
        assert!(ModelId::parse("id", "mdl-0a1b").is_ok());
        assert!(ModelId::parse("id", "sup-0a1b").is_err());
        assert!(BlacklistId::parse("id", "blk-").is_err());
        assert!(DeviceId::generate().as_str().starts_with("dev-"));
        assert_eq!(
            SerialNo::parse("serial_no", " sn-2024/001 ")
                .unwrap()
                .as_str(),
            "SN-2024/001"
        );
        assert!(SerialNo::parse("serial_no", "A#B").is_err());
        assert!(SerialNo::parse("serial_no", "").is_err());
        assert!(SerialNo::parse("serial_no", &"A".repeat(65)).is_err());
        assert_eq!(Scope::Model.as_str(), "model");
        assert_eq!(serde_json::to_value(Scope::Device).unwrap(), "device");
    }

    #[test]
    fn category_names_are_the_api_contract() {
        for c in Category::ALL {
            let json = serde_json::to_value(c).unwrap();
            assert_eq!(json, c.as_str());
        }
        assert!(Category::DustNoise.may_use_hj212() && !Category::Camera.may_use_hj212());
    }
}
