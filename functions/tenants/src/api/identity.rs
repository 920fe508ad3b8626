//! Single-box identity: password login issuing short-lived ES256 tokens, and the JWKS.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use smartsite_shared::auth::Claims;
use smartsite_shared::domain::tenancy::Status;
use smartsite_shared::http::{ApiJson, ClientIp, Problem};
use smartsite_shared::password;
use std::time::Instant;

use crate::AppState;

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(example = json!({"username": "admin", "password": "…"}))]
pub struct TokenRequest {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
}

/// Exchanges a username and password for a bearer token.
///
/// Failed attempts are throttled per username and per source address: after a few failures each
/// further one blocks the name (or address) for twice as long, up to a 15-minute lockout, during
/// which every attempt — the right password too — answers 429 with `Retry-After`, before any
/// password is hashed. An unknown username is throttled and timed exactly like a known one.
#[utoipa::path(post, path = "/v1/auth/token", tag = "identity", request_body = TokenRequest,
    responses((status = 200, body = TokenResponse),
        (status = 401, description = "wrong username or password"),
        (status = 429, description = "too many failed attempts for this username or address; see Retry-After"),
        (status = 503, description = "sign-in is busy; see Retry-After")))]
pub async fn token(
    State(state): State<AppState>,
    ClientIp(source): ClientIp,
    ApiJson(req): ApiJson<TokenRequest>,
) -> Result<Json<TokenResponse>, Problem> {
    let issuer = state.issuer.as_ref().ok_or_else(Problem::not_found)?;
    let name = req.username.trim().to_ascii_lowercase();
    let throttled = |b: smartsite_shared::throttle::Blocked| {
        Problem::too_many_requests(b.retry_after_secs()).detail(format!(
            "too many failed sign-ins; try again in {} s",
            b.retry_after_secs()
        ))
    };
    state
        .sign_in
        .check(&name, source, Instant::now())
        .map_err(throttled)?;
    let record = state
        .directory
        .user_by_username(&name)
        .await
        .map_err(Problem::from)?;
    // Unknown users cost one hash verification too, so timing does not reveal which usernames exist.
    let (hash, user) = match record {
        Some(r) => (r.password_hash, Some(r.user)),
        None => (password::DUMMY_HASH.to_owned(), None),
    };
    let ok = password::verify(req.password, hash)
        .await
        .map_err(|password::Busy| {
            Problem::unavailable()
                .detail("sign-in is busy; retry shortly")
                .retry_after(1)
        })?;
    let bad = || Problem::unauthorized().detail("wrong username or password");
    let user = match (ok, user) {
        (true, Some(u)) => u,
        _ => {
            state.sign_in.fail(&name, source, Instant::now());
            return Err(bad());
        }
    };
    state.sign_in.succeed(&name);
    // An offboarded customer's users cannot sign in; a suspended one's can (read-only).
    if let (Some(i), Some(c)) = (&user.integrator_id, &user.customer_id) {
        let cust = state
            .directory
            .customer(i, c)
            .await
            .map_err(Problem::from)?;
        if cust.is_none_or(|c| c.status == Status::Offboarded) {
            return Err(bad());
        }
    }
    let claims = Claims {
        sub: user.id.to_string(),
        integrator_id: user.integrator_id.map(|i| i.to_string()),
        customer_id: user.customer_id.map(|c| c.to_string()),
        roles: user.roles.iter().map(|r| r.as_str().to_owned()).collect(),
    };
    let access_token = issuer
        .issue(claims, smartsite_shared::store::now_epoch())
        .map_err(|e| Problem::internal(&e))?;
    Ok(Json(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: issuer.ttl_secs(),
    }))
}

/// The issuer's public keys (JWK set).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "identity",
    responses((status = 200, description = "JWK set", content_type = "application/json")))]
pub async fn jwks(State(state): State<AppState>) -> Result<Json<serde_json::Value>, Problem> {
    let issuer = state.issuer.as_ref().ok_or_else(Problem::not_found)?;
    serde_json::to_value(issuer.jwks())
        .map(Json)
        .map_err(|e| Problem::internal(&e))
}
