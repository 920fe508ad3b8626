//! Onboarding over the public HTTP API, as an operator would do it: every token below comes from
//! a real `POST /v1/auth/token` login of a user created through `POST /v1/users`.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

/// A thin JSON client for black-box tests.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Any request; returns status and JSON body (Null when empty or not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> anyhow::Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await?;
        let status = res.status().as_u16();
        let text = res.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// A GET answered with raw bytes (exports): status, content type, body.
    pub async fn bytes(&self, path: &str, token: &str) -> anyhow::Result<(u16, String, Vec<u8>)> {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await?;
        let status = res.status().as_u16();
        let ct = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        Ok((status, ct, res.bytes().await?.to_vec()))
    }

    /// A device's stored telemetry, newest first (up to 200 messages: the tests' whole series).
    pub async fn telemetry(&self, device: &str, token: &str) -> anyhow::Result<Vec<Value>> {
        let path = format!("/v1/devices/{device}/telemetry?limit=200");
        let (s, mut v) = self.call("GET", &path, Some(token), None).await?;
        if s != 200 {
            bail!("GET {path} answered {s}: {v}");
        }
        match v["items"].take() {
            Value::Array(items) => Ok(items),
            _ => bail!("GET {path}: no items in {v}"),
        }
    }

    /// POST that must answer 201; returns the new id.
    pub async fn create(&self, path: &str, token: &str, body: Value) -> anyhow::Result<String> {
        let (s, v) = self.call("POST", path, Some(token), Some(&body)).await?;
        if s != 201 {
            bail!("POST {path} answered {s}: {v}");
        }
        Ok(v["id"].as_str().context("no id")?.to_owned())
    }

    pub async fn login(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let (s, v) = self
            .call(
                "POST",
                "/v1/auth/token",
                None,
                Some(&json!({"username": username, "password": password})),
            )
            .await?;
        if s != 200 {
            bail!("login {username} answered {s}: {v}");
        }
        Ok(v["access_token"]
            .as_str()
            .context("no access_token")?
            .to_owned())
    }
}

pub const PASSWORD: &str = "Site-Safety-2026";

/// Percent-encodes a query value (timestamps, cursors).
pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn uscc(first17: &str) -> String {
    let check = smartsite_shared::domain::tenancy::Uscc::check_char(first17).unwrap_or('?');
    format!("{first17}{check}")
}

/// A resident identity card number (type 01): region, birth date `YYYYMMDD` and 3-digit
/// sequence, with its GB 11643 check character.
pub fn resident_id(region: &str, birth: &str, seq: &str) -> String {
    let first17 = format!("{region}{birth}{seq}");
    let check = smartsite_workforce::domain::id_card::check_char(&first17).unwrap_or('?');
    format!("{first17}{check}")
}

/// One onboarded integrator: ids and a logged-in token per role.
#[derive(Debug, Clone)]
pub struct World {
    pub integrator: String,
    pub gov: String,
    pub enterprise: String,
    pub owner: String,
    pub project: String,
    /// A supplier and a model this integrator registered. The registry is platform-wide public
    /// data, so these are deliberately not among [`World::ids`].
    pub supplier: String,
    pub model: String,
    /// A blacklist entry against `supplier`, issued by this world's government supervisor for its
    /// own region. Every integrator may read it (without the issuer's tenant ids), so it is not
    /// among [`World::ids`] either; governments see it only where their jurisdictions overlap.
    pub blacklist: String,
    /// A device provisioned into `project` (of another supplier's certified model, since
    /// `supplier` is blacklisted here).
    pub device: String,
    /// role name → token of a user holding only that role.
    pub tokens: BTreeMap<&'static str, String>,
}

impl World {
    pub fn token(&self, role: &str) -> &str {
        self.tokens.get(role).map_or("", String::as_str)
    }

    /// Every id of this world, to check that nothing of it leaks into another tenant's answers.
    pub fn ids(&self) -> [&str; 6] {
        [
            &self.integrator,
            &self.gov,
            &self.enterprise,
            &self.owner,
            &self.project,
            &self.device,
        ]
    }
}

/// Onboards an integrator with a government customer governing `gov_region`, an enterprise, an
/// owner, a project in `project_region`, and one user per role. `tag` keeps usernames unique.
pub async fn onboard(
    api: &Api,
    admin: &str,
    tag: &str,
    gov_region: &str,
    project_region: &str,
    uscc_seq: u32,
) -> anyhow::Result<World> {
    let integrator = api
        .create("/v1/integrators", admin, json!({"name": format!("{tag} 电信"), "operator": "china_telecom", "province_code": "220000"}))
        .await?;
    let mut tokens = BTreeMap::new();
    let user = |roles: &'static str, extra: Value| {
        let name = format!("{tag}-{}", roles.replace('_', "-"));
        let mut body = json!({"username": name, "password": PASSWORD, "roles": [roles]});
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            body[k] = v;
        }
        (roles, name, body)
    };
    let (r, name, body) = user("integrator_admin", json!({"integrator_id": integrator}));
    api.create("/v1/users", admin, body).await?;
    let ia = api.login(&name, PASSWORD).await?;
    tokens.insert(r, ia.clone());

    let gov = api
        .create(
            "/v1/customers",
            &ia,
            json!({"kind": "gov_region", "name": "住房和城乡建设局", "region_code": gov_region}),
        )
        .await?;
    let enterprise = api
        .create(
            "/v1/customers",
            &ia,
            json!({"kind": "enterprise", "name": "建工集团", "region_code": "220100", "uscc": uscc(&format!("91220101A{uscc_seq:08}"))}),
        )
        .await?;
    let owner = api
        .create(
            "/v1/customers",
            &ia,
            json!({"kind": "project_owner", "name": "置业公司", "region_code": "220100", "uscc": uscc(&format!("91220101B{uscc_seq:08}"))}),
        )
        .await?;
    let project = api
        .create(
            "/v1/projects",
            &ia,
            json!({
                "name": "住宅一期", "contractor_customer_id": enterprise, "owner_customer_id": owner,
                "region_code": project_region, "project_type": "building", "contract_value_fen": 12_000_000_000i64,
                "contract_signed_date": "2026-03-01", "tender_completed_date": "2026-02-15",
                "start_date": "2026-04-01", "planned_end_date": "2027-10-31"
            }),
        )
        .await?;
    for (role, customer) in [
        ("integrator_ops", None),
        ("gov_supervisor", Some(&gov)),
        ("enterprise_admin", Some(&enterprise)),
        ("project_manager", Some(&enterprise)),
        ("safety_officer", Some(&enterprise)),
        ("labour_officer", Some(&enterprise)),
        ("owner_rep", Some(&owner)),
    ] {
        let extra = customer.map_or(json!({}), |c| json!({"customer_id": c}));
        let (r, name, body) = user(role, extra);
        api.create("/v1/users", &ia, body).await?;
        tokens.insert(r, api.login(&name, PASSWORD).await?);
    }
    // The device catalog: a supplier and a model in the shared registry, and a blacklist entry
    // of this world's government for its own region.
    let supplier = api
        .create(
            "/v1/suppliers",
            &ia,
            json!({"name": format!("{tag} 智塔科技"), "uscc": uscc(&format!("91430100C{uscc_seq:08}"))}),
        )
        .await?;
    let model = api
        .create(
            "/v1/device-models",
            &ia,
            json!({"supplier_id": supplier, "name": "塔机黑匣子", "category": "tower_crane", "protocol": "mqtt_json"}),
        )
        .await?;
    let blacklist = api
        .create(
            "/v1/blacklist",
            tokens.get("gov_supervisor").map_or("", String::as_str),
            json!({"scope": "supplier", "target_id": supplier, "region_code": gov_region, "reason": "数据造假"}),
        )
        .await?;
    let certified_supplier = api
        .create(
            "/v1/suppliers",
            &ia,
            json!({"name": format!("{tag} 安监电子"), "uscc": uscc(&format!("91430100D{uscc_seq:08}"))}),
        )
        .await?;
    let certified_model = api
        .create(
            "/v1/device-models",
            &ia,
            json!({"supplier_id": certified_supplier, "name": "塔机监控", "category": "tower_crane",
                "protocol": "mqtt_json", "access_cert_no": format!("JL-{tag}-001")}),
        )
        .await?;
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/projects/{project}/devices"),
            Some(&ia),
            Some(
                &json!({"model_id": certified_model, "serial_no": format!("{tag}-TC-1"),
                "category": "tower_crane", "rated_load_t": 8.0, "rated_moment_tm": 125.0}),
            ),
        )
        .await?;
    if s != 201 {
        bail!("provisioning a device answered {s}: {v}");
    }
    let device = v["device_id"].as_str().context("no device_id")?.to_owned();
    Ok(World {
        integrator,
        gov,
        enterprise,
        owner,
        project,
        supplier,
        model,
        blacklist,
        device,
        tokens,
    })
}

/// Provisions a tower crane of the world's certified model into its project; the answer
/// (credentials included, given once).
pub async fn provision_crane(api: &Api, w: &World, serial: &str) -> anyhow::Result<Value> {
    let ia = w.token("integrator_admin");
    let (s, d) = api
        .call("GET", &format!("/v1/devices/{}", w.device), Some(ia), None)
        .await?;
    if s != 200 {
        bail!("GET the world's device answered {s}: {d}");
    }
    let model = d["model_id"].as_str().context("no model_id")?;
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/projects/{}/devices", w.project),
            Some(ia),
            Some(
                &json!({"model_id": model, "serial_no": serial, "category": "tower_crane",
                "rated_load_t": 8.0, "rated_moment_tm": 125.0}),
            ),
        )
        .await?;
    if s != 201 {
        bail!("provisioning a crane answered {s}: {v}");
    }
    Ok(v)
}

/// Registers a certified dust/noise model (its own supplier) and provisions a device of it with
/// an HJ 212 `mn` into the world's project; the provisioning answer. `uscc_seq` keeps the
/// supplier's USCC unique within a server.
pub async fn provision_dust(
    api: &Api,
    w: &World,
    tag: &str,
    mn: &str,
    uscc_seq: u32,
) -> anyhow::Result<Value> {
    let ia = w.token("integrator_admin");
    let supplier = api
        .create(
            "/v1/suppliers",
            ia,
            json!({"name": format!("{tag} 环境监测"), "uscc": uscc(&format!("91220101E{uscc_seq:08}"))}),
        )
        .await?;
    let model = api
        .create(
            "/v1/device-models",
            ia,
            json!({"supplier_id": supplier, "name": "扬尘噪声监测仪", "category": "dust_noise",
                "protocol": "hj212", "access_cert_no": format!("JL-{tag}-DUST")}),
        )
        .await?;
    let (s, v) = api
        .call(
            "POST",
            &format!("/v1/projects/{}/devices", w.project),
            Some(ia),
            Some(&json!({"model_id": model, "serial_no": format!("{tag}-DN-1"), "category": "dust_noise", "mn": mn})),
        )
        .await?;
    if s != 201 {
        bail!("provisioning a dust monitor answered {s}: {v}");
    }
    Ok(v)
}
