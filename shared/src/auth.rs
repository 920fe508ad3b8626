//! Identity: who is calling, from verified claims only.
//!
//! Two ways a request arrives with verified claims:
//! - single-box: a bearer JWT signed by the built-in [`LocalIssuer`] (ES256, keys in the data dir),
//!   verified here by a [`JwtVerifier`];
//! - AWS: API Gateway's JWT authorizer has already verified a Cognito token; the claims come in
//!   the lambda_http request context ([`Authenticator::ApiGateway`]).
//!
//! Either way the handler sees a [`Caller`]. The tenant is never taken from the path, the body or
//! a plain header.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::tenancy::CustomerId;
use crate::http::Problem;
use crate::ids::IntegratorId;

/// Roles of API.md. Unknown role names in a token are ignored.
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
pub enum Role {
    PlatformAdmin,
    IntegratorAdmin,
    IntegratorOps,
    GovSupervisor,
    EnterpriseAdmin,
    ProjectManager,
    SafetyOfficer,
    LabourOfficer,
    OwnerRep,
}

impl Role {
    pub const ALL: [Role; 9] = [
        Role::PlatformAdmin,
        Role::IntegratorAdmin,
        Role::IntegratorOps,
        Role::GovSupervisor,
        Role::EnterpriseAdmin,
        Role::ProjectManager,
        Role::SafetyOfficer,
        Role::LabourOfficer,
        Role::OwnerRep,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::PlatformAdmin => "platform_admin",
            Role::IntegratorAdmin => "integrator_admin",
            Role::IntegratorOps => "integrator_ops",
            Role::GovSupervisor => "gov_supervisor",
            Role::EnterpriseAdmin => "enterprise_admin",
            Role::ProjectManager => "project_manager",
            Role::SafetyOfficer => "safety_officer",
            Role::LabourOfficer => "labour_officer",
            Role::OwnerRep => "owner_rep",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Where a user holding the role belongs.
    pub fn scope(self) -> RoleScope {
        match self {
            Role::PlatformAdmin => RoleScope::Platform,
            Role::IntegratorAdmin | Role::IntegratorOps => RoleScope::Integrator,
            _ => RoleScope::Customer,
        }
    }
}

/// The roles as JSON, for the `x-roles` extension of each OpenAPI operation: the same constant
/// the handler checks is what the document publishes.
pub fn roles_json(roles: &[Role]) -> serde_json::Value {
    serde_json::Value::Array(
        roles
            .iter()
            .map(|r| serde_json::Value::String(r.as_str().into()))
            .collect(),
    )
}

/// The roles each operation admits, read from the `x-roles` of the OpenAPI document the routes
/// publish: the same list the console uses to hide what a role may not do is the one the edge
/// enforces before a handler runs (and so before its body is parsed). Operations without
/// `x-roles` (sign-in, health) are not in the table.
#[derive(Debug, Default, Clone)]
pub struct RoleTable(HashMap<String, Vec<(axum::http::Method, Vec<Role>)>>);

impl RoleTable {
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> RoleTable {
        use axum::http::Method;
        let mut table: HashMap<String, Vec<(Method, Vec<Role>)>> = HashMap::new();
        for (path, item) in &doc.paths.paths {
            let ops = [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::DELETE, &item.delete),
                (Method::PATCH, &item.patch),
            ];
            for (method, op) in ops {
                let Some(roles) = op
                    .as_ref()
                    .and_then(|op| op.extensions.as_ref())
                    .and_then(|ext| ext.get("x-roles"))
                    .and_then(|v| v.as_array())
                else {
                    continue;
                };
                let roles = roles
                    .iter()
                    .filter_map(|r| r.as_str().and_then(Role::parse))
                    .collect();
                table.entry(path.clone()).or_default().push((method, roles));
            }
        }
        RoleTable(table)
    }

    /// The roles that may call `method` on the route `path` (its template, `/v1/alarms/{id}`);
    /// `None` when the operation does not restrict roles.
    pub fn roles(&self, method: &axum::http::Method, path: &str) -> Option<&[Role]> {
        self.0
            .get(path)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, roles)| roles.as_slice())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleScope {
    /// No integrator, no customer.
    Platform,
    /// An integrator, no customer.
    Integrator,
    /// An integrator and one of its customers.
    Customer,
}

/// The claims a token carries (API.md, Identity).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub integrator_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default)]
    pub roles: Vec<String>,
}

/// The verified caller: the tenant context every handler takes first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub integrator: Option<IntegratorId>,
    pub customer: Option<CustomerId>,
    pub roles: BTreeSet<Role>,
}

impl Caller {
    /// Builds the caller from verified claims, refusing inconsistent combinations (an integrator
    /// role without an integrator, a customer role without a customer, a platform admin bound to
    /// a tenant).
    pub fn from_claims(c: &Claims) -> Result<Caller, AuthError> {
        let integrator = c
            .integrator_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(IntegratorId::parse)
            .transpose()
            .map_err(|_| AuthError::Claims("integrator_id"))?;
        let customer = c
            .customer_id
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| CustomerId::parse("customer_id", s))
            .transpose()
            .map_err(|_| AuthError::Claims("customer_id"))?;
        let roles: BTreeSet<Role> = c.roles.iter().filter_map(|r| Role::parse(r)).collect();
        if c.sub.is_empty() {
            return Err(AuthError::Claims("sub"));
        }
        for r in &roles {
            let ok = match r.scope() {
                RoleScope::Platform => integrator.is_none() && customer.is_none(),
                RoleScope::Integrator => integrator.is_some() && customer.is_none(),
                RoleScope::Customer => integrator.is_some() && customer.is_some(),
            };
            if !ok {
                return Err(AuthError::Claims("roles"));
            }
        }
        Ok(Caller {
            user_id: c.sub.clone(),
            integrator,
            customer,
            roles,
        })
    }

    /// 403 unless the caller holds one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), Problem> {
        if self.has_any(roles) {
            Ok(())
        } else {
            Err(Problem::forbidden("your roles do not allow this"))
        }
    }

    /// Records the tenant on the current request span (see `http::request_span`).
    fn record_on_span(&self) {
        let span = tracing::Span::current();
        span.record("user_id", self.user_id.as_str());
        if let Some(i) = &self.integrator {
            span.record("integrator_id", i.as_str());
        }
        if let Some(c) = &self.customer {
            span.record("customer_id", c.as_str());
        }
    }

    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    pub fn has_any(&self, roles: &[Role]) -> bool {
        roles.iter().any(|r| self.roles.contains(r))
    }

    pub fn is_platform_admin(&self) -> bool {
        self.has(Role::PlatformAdmin)
    }

    /// The integrator of integrator staff (admin or ops), if the caller is such.
    pub fn staff_of(&self) -> Option<&IntegratorId> {
        if self.customer.is_none() && self.has_any(&[Role::IntegratorAdmin, Role::IntegratorOps]) {
            self.integrator.as_ref()
        } else {
            None
        }
    }

    /// Claims parsed from API Gateway's authorizer context, where every claim is a string.
    /// Accepts our claim names and Cognito's custom-attribute names (`custom:integrator_id`, …);
    /// `roles` may be a JSON array, `[a b]` (how API Gateway renders arrays) or `a,b`.
    pub fn from_gateway_claims(claims: &HashMap<String, String>) -> Result<Caller, AuthError> {
        let get = |name: &str| {
            claims
                .get(name)
                .or_else(|| claims.get(&format!("custom:{name}")))
                .cloned()
        };
        let roles_raw = get("roles")
            .or_else(|| claims.get("cognito:groups").cloned())
            .unwrap_or_default();
        let roles = match serde_json::from_str::<Vec<String>>(&roles_raw) {
            Ok(v) => v,
            Err(_) => roles_raw
                .trim_matches(|c| c == '[' || c == ']')
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
        };
        let sub = claims.get("sub").cloned().ok_or(AuthError::Claims("sub"))?;
        Caller::from_claims(&Claims {
            sub,
            integrator_id: get("integrator_id"),
            customer_id: get("customer_id"),
            roles,
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("no bearer token")]
    Missing,
    #[error("token rejected: {0}")]
    Invalid(String),
    #[error("token claim {0} is missing or inconsistent")]
    Claims(&'static str),
}

impl IntoResponse for AuthError {
    fn into_response(self) -> Response {
        tracing::debug!(reason = %self, "authentication failed");
        let mut res = Problem::unauthorized()
            .detail(self.to_string())
            .into_response();
        res.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        res
    }
}

// ---------------------------------------------------------------------------------------------
// Verification.

struct VerifyKey {
    kid: Option<String>,
    alg: Algorithm,
    key: DecodingKey,
}

/// Verifies JWTs against a JWK set, an issuer and (optionally) an audience.
pub struct JwtVerifier {
    keys: Vec<VerifyKey>,
    issuer: String,
    audience: Option<String>,
}

const ALLOWED: [Algorithm; 2] = [Algorithm::ES256, Algorithm::RS256];

/// The clock skew tolerated between the issuer and this verifier, on `exp` and `nbf`: a few
/// seconds, so an expired token stops working within that much of its `exp`.
pub const MAX_CLOCK_SKEW_SECS: u64 = 5;

/// The order n of the P-256 group, big-endian.
const P256_N: [u8; 32] = [
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
];
/// ⌊n / 2⌋ of P-256: a canonical (low-S) signature has `s ≤` this.
const P256_HALF_N: [u8; 32] = [
    0x7f, 0xff, 0xff, 0xff, 0x80, 0x00, 0x00, 0x00, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xde, 0x73, 0x7d, 0x56, 0xd3, 0x8b, 0xcf, 0x42, 0x79, 0xdc, 0xe5, 0x61, 0x7e, 0x31, 0x92, 0xa8,
];

/// Whether an ES256 JWS signature (`r ‖ s`, 32 bytes each) is in canonical low-S form. ECDSA
/// accepts both `s` and `n − s` for the same message, so without this rule anyone holding a token
/// can mint a second, different token string that verifies (signature malleability): token
/// deny-lists, caches and logs keyed by the token would then miss it.
pub fn es256_low_s(sig: &[u8]) -> bool {
    sig.len() == 64 && sig[32..] <= P256_HALF_N[..]
}

/// Rewrites an ES256 signature to its low-S twin (`s → n − s`) when `s` is high; both verify,
/// only the low one is accepted here. A signature of another length is left alone.
fn es256_normalise(sig: &mut [u8]) {
    if sig.len() == 64 && !es256_low_s(sig) {
        es256_flip_s(sig);
    }
}

/// `s → n − s` in a 64-byte `r ‖ s` signature (`0 < s < n`, so the result is in range too).
fn es256_flip_s(sig: &mut [u8]) {
    if sig.len() != 64 {
        return;
    }
    let s = &mut sig[32..];
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(P256_N[i]) - i16::from(s[i]) - borrow;
        borrow = i16::from(d < 0);
        // In 0..=255 after adding 256 to a negative digit.
        s[i] = u8::try_from(d.rem_euclid(256)).unwrap_or(0);
    }
}

/// Refuses an ES256 token whose signature is not in low-S form (see [`es256_low_s`]).
fn check_es256_canonical(token: &str) -> Result<(), AuthError> {
    let sig = token
        .rsplit('.')
        .next()
        .and_then(|s| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(s)
                .ok()
        })
        .ok_or_else(|| AuthError::Invalid("signature is not base64url".into()))?;
    if es256_low_s(&sig) {
        Ok(())
    } else {
        Err(AuthError::Invalid(
            "non-canonical (high-S) ECDSA signature".into(),
        ))
    }
}

impl JwtVerifier {
    /// `issuer` must be configurable: Cognito's `iss` names the real AWS URL even on an emulator.
    pub fn from_jwks(
        jwks: &JwkSet,
        issuer: &str,
        audience: Option<&str>,
    ) -> Result<Self, AuthError> {
        let mut keys = Vec::new();
        for jwk in &jwks.keys {
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                _ => continue,
            };
            let key = DecodingKey::from_jwk(jwk)
                .map_err(|e| AuthError::Invalid(format!("bad JWK: {e}")))?;
            keys.push(VerifyKey {
                kid: jwk.common.key_id.clone(),
                alg,
                key,
            });
        }
        if keys.is_empty() {
            return Err(AuthError::Invalid("no usable key in the JWK set".into()));
        }
        Ok(JwtVerifier {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.map(str::to_owned),
        })
    }

    /// Verifies signature (ES256 only in low-S form), algorithm, `exp` and `nbf` (with
    /// [`MAX_CLOCK_SKEW_SECS`] of leeway), `iss` and `aud`; returns the claims.
    pub fn verify<T: for<'de> Deserialize<'de>>(&self, token: &str) -> Result<T, AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        if !ALLOWED.contains(&header.alg) {
            return Err(AuthError::Invalid(format!(
                "algorithm {:?} not accepted",
                header.alg
            )));
        }
        if header.alg == Algorithm::ES256 {
            check_es256_canonical(token)?;
        }
        let candidates = self
            .keys
            .iter()
            .filter(|k| k.alg == header.alg && (header.kid.is_none() || k.kid == header.kid));
        let mut last = AuthError::Invalid("no key matches the token's kid".into());
        for k in candidates {
            let mut v = Validation::new(k.alg);
            v.leeway = MAX_CLOCK_SKEW_SECS;
            v.validate_nbf = true;
            v.set_issuer(&[&self.issuer]);
            // With an audience to check, `aud` is required: jsonwebtoken skips the audience
            // check when the claim does not parse (a number, an object, invalid UTF-8) as if it
            // were absent (found by the jwt fuzz target).
            match &self.audience {
                Some(a) => {
                    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
                    v.set_audience(&[a]);
                }
                None => {
                    v.set_required_spec_claims(&["exp", "iss", "sub"]);
                    v.validate_aud = false;
                }
            }
            match jsonwebtoken::decode::<T>(token, &k.key, &v) {
                Ok(data) => return Ok(data.claims),
                Err(e) => last = AuthError::Invalid(e.to_string()),
            }
        }
        Err(last)
    }
}

/// How requests are authenticated in this deployment.
#[derive(Clone)]
pub enum Authenticator {
    /// Verify the bearer token here (single-box edition).
    Bearer(Arc<JwtVerifier>),
    /// Trust the claims API Gateway's JWT authorizer verified (AWS edition).
    #[cfg(feature = "aws")]
    ApiGateway,
}

impl<S> FromRequestParts<S> for Caller
where
    Authenticator: FromRef<S>,
    S: Send + Sync,
{
    type Rejection = AuthError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The edge guard (`directory::guard`) verified the token already and left the caller
        // here; extensions are set by the server only, never by a client.
        if let Some(caller) = parts.extensions.get::<Caller>() {
            return Ok(caller.clone());
        }
        let caller = Self::authenticate(parts, state)?;
        caller.record_on_span();
        Ok(caller)
    }
}

impl Caller {
    fn authenticate<S>(parts: &Parts, state: &S) -> Result<Caller, AuthError>
    where
        Authenticator: FromRef<S>,
    {
        match Authenticator::from_ref(state) {
            Authenticator::Bearer(v) => {
                let token = bearer(parts).ok_or(AuthError::Missing)?;
                let claims: Claims = v.verify(token)?;
                Caller::from_claims(&claims)
            }
            #[cfg(feature = "aws")]
            Authenticator::ApiGateway => {
                use lambda_http::request::RequestContext;
                let claims = match parts.extensions.get::<RequestContext>() {
                    Some(RequestContext::ApiGatewayV2(ctx)) => ctx
                        .authorizer
                        .as_ref()
                        .and_then(|a| a.jwt.as_ref())
                        .map(|j| &j.claims),
                    _ => None,
                };
                Caller::from_gateway_claims(claims.ok_or(AuthError::Missing)?)
            }
        }
    }
}

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

// ---------------------------------------------------------------------------------------------
// The single-box issuer.

/// Claims as issued: ours plus the registered ones.
#[derive(Debug, Serialize, Deserialize)]
struct IssuedClaims {
    #[serde(flatten)]
    claims: Claims,
    iss: String,
    aud: String,
    iat: i64,
    /// Not valid before it was issued.
    nbf: i64,
    exp: i64,
}

/// Signs short-lived ES256 tokens with a P-256 key kept in the data dir (PKCS#8, mode 0600).
pub struct LocalIssuer {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
    issuer: String,
    ttl_secs: i64,
}

pub const LOCAL_AUDIENCE: &str = "smartsite";
pub const KEY_FILE: &str = "jwt-es256.pk8";

impl LocalIssuer {
    /// Loads `dir/jwt-es256.pk8`, creating it on first start.
    pub fn load_or_create(dir: &Path, issuer: &str, ttl_secs: i64) -> anyhow::Result<Self> {
        use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let path = dir.join(KEY_FILE);
        let der = match std::fs::read(&path) {
            Ok(der) => der,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                crate::fsutil::private_dir(dir)?;
                let rng = aws_lc_rs::rand::SystemRandom::new();
                let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| anyhow::anyhow!("cannot generate a P-256 key"))?;
                crate::fsutil::write_private(&path, doc.as_ref())?;
                doc.as_ref().to_vec()
            }
            Err(e) => return Err(e.into()),
        };
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
            .map_err(|_| anyhow::anyhow!("{} is not a P-256 PKCS#8 key", path.display()))?;
        let point = pair.public_key().as_ref();
        anyhow::ensure!(
            point.len() == 65 && point[0] == 4,
            "unexpected public key encoding"
        );
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (x, y) = (b64.encode(&point[1..33]), b64.encode(&point[33..65]));
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, point);
        let kid = b64.encode(&digest.as_ref()[..12]);
        let jwk: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "EC", "crv": "P-256", "x": x, "y": y, "kid": kid, "use": "sig", "alg": "ES256"
        }))?;
        Ok(LocalIssuer {
            kid,
            encoding: EncodingKey::from_ec_der(&der),
            jwk,
            issuer: issuer.to_owned(),
            ttl_secs,
        })
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
        }
    }

    pub fn verifier(&self) -> Result<JwtVerifier, AuthError> {
        JwtVerifier::from_jwks(&self.jwks(), &self.issuer, Some(LOCAL_AUDIENCE))
    }

    /// A token for `claims`, valid from now for the issuer's TTL.
    pub fn issue(&self, claims: Claims, now: i64) -> Result<String, AuthError> {
        self.issue_with_expiry(claims, now, now + self.ttl_secs)
    }

    /// A token with an explicit expiry (tests use it to mint expired tokens).
    pub fn issue_with_expiry(
        &self,
        claims: Claims,
        iat: i64,
        exp: i64,
    ) -> Result<String, AuthError> {
        self.issue_at(claims, iat, iat, exp)
    }

    /// A token with explicit `iat`, `nbf` and `exp` (tests mint not-yet-valid tokens with it).
    pub fn issue_at(
        &self,
        claims: Claims,
        iat: i64,
        nbf: i64,
        exp: i64,
    ) -> Result<String, AuthError> {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        let body = IssuedClaims {
            claims,
            iss: self.issuer.clone(),
            aud: LOCAL_AUDIENCE.to_owned(),
            iat,
            nbf,
            exp,
        };
        let token = jsonwebtoken::encode(&header, &body, &self.encoding)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        // aws-lc signs with whichever `s` it computed; the verifier accepts only low-S, so the
        // issuer writes every signature in that form.
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let Some((signed, sig)) = token.rsplit_once('.') else {
            return Err(AuthError::Invalid("encoder produced no signature".into()));
        };
        let mut sig = b64
            .decode(sig)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        es256_normalise(&mut sig);
        Ok(format!("{signed}.{}", b64.encode(sig)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(roles: &[&str], integrator: Option<&str>, customer: Option<&str>) -> Claims {
        Claims {
            sub: "usr-1".into(),
            integrator_id: integrator.map(Into::into),
            customer_id: customer.map(Into::into),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn caller_requires_consistent_claims() {
        let c = Caller::from_claims(&claims(&["integrator_admin"], Some("ct-jl"), None)).unwrap();
        assert_eq!(c.staff_of().unwrap().as_str(), "ct-jl");
        assert!(Caller::from_claims(&claims(&["integrator_admin"], None, None)).is_err());
        assert!(Caller::from_claims(&claims(&["platform_admin"], Some("ct-jl"), None)).is_err());
        assert!(Caller::from_claims(&claims(&["gov_supervisor"], Some("ct-jl"), None)).is_err());
        let g = Caller::from_claims(&claims(&["gov_supervisor"], Some("ct-jl"), Some("cus-1")))
            .unwrap();
        assert!(g.staff_of().is_none() && g.has(Role::GovSupervisor));
        // Unknown roles are ignored, not trusted.
        let u = Caller::from_claims(&claims(&["root"], Some("ct-jl"), None)).unwrap();
        assert!(u.roles.is_empty());
    }

    #[test]
    fn gateway_claims_in_every_rendering() {
        for roles in [
            r#"["integrator_ops","x"]"#,
            "[integrator_ops x]",
            "integrator_ops,x",
        ] {
            let m = HashMap::from([
                ("sub".to_string(), "abc".to_string()),
                ("custom:integrator_id".to_string(), "ct-jl".to_string()),
                ("custom:roles".to_string(), roles.to_string()),
            ]);
            let c = Caller::from_gateway_claims(&m).unwrap();
            assert_eq!(c.roles, BTreeSet::from([Role::IntegratorOps]), "{roles}");
        }
    }

    #[test]
    fn local_tokens_verify_and_forgeries_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = LocalIssuer::load_or_create(dir.path(), "smartsite-test", 900).unwrap();
        let now = crate::store::now_epoch();
        let token = issuer
            .issue(claims(&["platform_admin"], None, None), now)
            .unwrap();
        let v = issuer.verifier().unwrap();
        let got: Claims = v.verify(&token).unwrap();
        assert_eq!(got.roles, vec!["platform_admin"]);

        // The key persists: a reload verifies the same token.
        let again = LocalIssuer::load_or_create(dir.path(), "smartsite-test", 900).unwrap();
        assert!(again.verifier().unwrap().verify::<Claims>(&token).is_ok());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }

        // Expired, another key, another issuer, tampered, alg=none: all refused.
        let expired = issuer
            .issue_with_expiry(claims(&[], None, None), now - 3600, now - 600)
            .unwrap();
        assert!(v.verify::<Claims>(&expired).is_err());
        let other_dir = tempfile::tempdir().unwrap();
        let other = LocalIssuer::load_or_create(other_dir.path(), "smartsite-test", 900).unwrap();
        let forged = other
            .issue(claims(&["platform_admin"], None, None), now)
            .unwrap();
        assert!(v.verify::<Claims>(&forged).is_err());
        let wrong_iss = LocalIssuer::load_or_create(dir.path(), "someone-else", 900).unwrap();
        assert!(
            v.verify::<Claims>(&wrong_iss.issue(claims(&[], None, None), now).unwrap())
                .is_err()
        );
        let mut parts: Vec<&str> = token.split('.').collect();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let evil = b64.encode(br#"{"sub":"usr-1","roles":["platform_admin"],"iss":"smartsite-test","aud":"smartsite","exp":9999999999}"#);
        parts[1] = &evil;
        assert!(v.verify::<Claims>(&parts.join(".")).is_err());
        let none = format!("{}.{}.", b64.encode(br#"{"alg":"none","typ":"JWT"}"#), evil);
        assert!(v.verify::<Claims>(&none).is_err());
    }

    #[test]
    fn exp_and_nbf_allow_only_a_few_seconds_of_skew() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = LocalIssuer::load_or_create(dir.path(), "smartsite-test", 900).unwrap();
        let v = issuer.verifier().unwrap();
        let now = crate::store::now_epoch();
        let skew = MAX_CLOCK_SKEW_SECS as i64;
        let c = || claims(&["platform_admin"], None, None);
        let at = |nbf: i64, exp: i64| issuer.issue_at(c(), now - 60, nbf, exp).unwrap();
        // Expired: refused once the skew is past, not 30 or 60 s later.
        assert!(v.verify::<Claims>(&at(now - 60, now - skew - 2)).is_err());
        assert!(v.verify::<Claims>(&at(now - 60, now - 1)).is_ok());
        // Not yet valid: refused beyond the skew, accepted within it.
        assert!(v.verify::<Claims>(&at(now + skew + 30, now + 900)).is_err());
        assert!(v.verify::<Claims>(&at(now + 1, now + 900)).is_ok());
    }

    #[test]
    fn high_s_twins_of_valid_signatures_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = LocalIssuer::load_or_create(dir.path(), "smartsite-test", 900).unwrap();
        let v = issuer.verifier().unwrap();
        let now = crate::store::now_epoch();
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        // aws-lc picks s at random, so about half of raw signatures are high-S: 64 tokens all
        // low-S means the issuer normalises.
        for i in 0..64 {
            // Same claims every time: ECDSA's random nonce makes each signature different.
            let token = issuer
                .issue(claims(&["platform_admin"], None, None), now)
                .unwrap();
            let (signed, sig) = token.rsplit_once('.').unwrap();
            let sig = b64.decode(sig).unwrap();
            assert!(es256_low_s(&sig), "issued token {i} is high-S");
            assert!(v.verify::<Claims>(&token).is_ok());
            // Its twin s' = n − s is a valid ECDSA signature of the same message…
            let mut twin = sig.clone();
            es256_flip_s(&mut twin);
            assert_ne!(twin, sig);
            let forged = format!("{signed}.{}", b64.encode(&twin));
            let mut plain = Validation::new(Algorithm::ES256);
            plain.set_audience(&[LOCAL_AUDIENCE]);
            assert!(
                jsonwebtoken::decode::<Claims>(&forged, &v.keys[0].key, &plain).is_ok(),
                "the twin verifies cryptographically"
            );
            // …which the verifier refuses.
            let err = v.verify::<Claims>(&forged).unwrap_err();
            assert!(err.to_string().contains("high-S"), "{err}");
        }
    }

    /// A token signed outside the issuer, in the low-S form the verifier requires.
    fn low_s(token: String) -> String {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let (signed, sig) = token.rsplit_once('.').unwrap();
        let mut sig = b64.decode(sig).unwrap();
        es256_normalise(&mut sig);
        format!("{signed}.{}", b64.encode(sig))
    }

    #[test]
    fn an_audience_that_does_not_parse_is_refused_not_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let issuer = LocalIssuer::load_or_create(dir.path(), "smartsite-test", 900).unwrap();
        let v = issuer.verifier().unwrap();
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(issuer.kid.clone());
        let exp = crate::store::now_epoch() + 600;
        let signed = |aud: serde_json::Value| {
            let body = serde_json::json!({"sub": "usr-1", "roles": ["platform_admin"],
                "iss": "smartsite-test", "aud": aud, "exp": exp});
            low_s(jsonwebtoken::encode(&header, &body, &issuer.encoding).unwrap())
        };
        assert!(v.verify::<Claims>(&signed(LOCAL_AUDIENCE.into())).is_ok());
        for aud in [
            serde_json::json!(5),
            serde_json::json!({"a": 1}),
            serde_json::json!("another-audience"),
            serde_json::Value::Null,
        ] {
            assert!(
                v.verify::<Claims>(&signed(aud.clone())).is_err(),
                "aud {aud}"
            );
        }
        let no_aud = low_s(
            jsonwebtoken::encode(
                &header,
                &serde_json::json!({"sub": "usr-1", "iss": "smartsite-test", "exp": exp}),
                &issuer.encoding,
            )
            .unwrap(),
        );
        assert!(v.verify::<Claims>(&no_aud).is_err());
    }
}
