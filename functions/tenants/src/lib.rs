//! The `tenants` concern: integrators, customers, projects and users.
//!
//! `app(state)` is the whole HTTP surface of the concern. The AWS edition runs it under
//! `lambda_http` (see `main.rs`); the single-box edition mounts the same router in
//! `smartsite serve`; tests drive it with `oneshot`.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use smartsite_shared::http::{self, Problem};
use smartsite_shared::store::{Key, Store, keys};

/// Everything the handlers need, built once at start-up.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>) -> Self {
        AppState { store }
    }
}

#[derive(Debug, Serialize)]
pub struct Health {
    pub status: &'static str,
    pub concern: &'static str,
    pub store: &'static str,
}

/// The concern's routes, for composition: `smartsite serve` merges every concern's routes under
/// one fallback and one tracing layer.
pub fn routes() -> Router<AppState> {
    Router::new().route("/v1/tenants/healthz", get(health))
}

/// The concern as a complete service: what the Lambda runs.
pub fn app(state: AppState) -> Router {
    http::finish(routes().with_state(state))
}

/// Proves the function is up and its table answers (one consistent read).
async fn health(State(state): State<AppState>) -> Result<Json<Health>, Problem> {
    let (pk, sk) = keys::health_probe();
    state.store.get(&Key::new(pk, sk)).await?;
    Ok(Json(Health {
        status: "ok",
        concern: "tenants",
        store: "ok",
    }))
}

#[cfg(test)]
mod tests {
    use ::http::{Request, StatusCode};
    use axum::body::Body;
    use smartsite_shared::store::TableDef;
    use smartsite_shared::store::embedded::EmbeddedStore;
    use tower::ServiceExt;

    use super::*;

    fn state() -> (AppState, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let store =
            EmbeddedStore::open(dir.path().join("s.redb"), TableDef::main().unwrap()).unwrap();
        (AppState::new(Arc::new(store)), dir)
    }

    async fn call(app: Router, req: Request<Body>) -> (StatusCode, String, serde_json::Value) {
        let res = app.oneshot(req).await.unwrap();
        let status = res.status();
        let ct = res
            .headers()
            .get(::http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, ct, serde_json::from_slice(&body).unwrap())
    }

    #[tokio::test]
    async fn health_round_trips_the_store() {
        let (state, _dir) = state();
        let req = Request::get("/v1/tenants/healthz")
            .body(Body::empty())
            .unwrap();
        let (status, _, body) = call(app(state), req).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["concern"], "tenants");
        assert_eq!(body["store"], "ok");
    }

    #[tokio::test]
    async fn unknown_routes_are_problem_json_404() {
        let (state, _dir) = state();
        let req = Request::get("/v1/nope").body(Body::empty()).unwrap();
        let (status, ct, body) = call(app(state), req).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(ct, "application/problem+json");
        assert_eq!(body["type"], "https://smartsite.dev/problems/not-found");
    }

    /// The Lambda path: an API Gateway HTTP API (v2) event, converted by lambda_http exactly as
    /// the runtime does, is served by the same router.
    #[tokio::test]
    async fn api_gateway_v2_event_reaches_the_router() {
        let event = serde_json::json!({
            "version": "2.0",
            "routeKey": "GET /v1/tenants/healthz",
            "rawPath": "/v1/tenants/healthz",
            "rawQueryString": "",
            "headers": {"host": "abc.execute-api.us-east-1.amazonaws.com"},
            "requestContext": {
                "accountId": "123456789012", "apiId": "abc", "domainName": "abc.execute-api.us-east-1.amazonaws.com",
                "domainPrefix": "abc", "requestId": "r1", "routeKey": "GET /v1/tenants/healthz", "stage": "$default",
                "time": "23/Nov/2026:00:00:00 +0000", "timeEpoch": 1795392000000u64,
                "http": {"method": "GET", "path": "/v1/tenants/healthz", "protocol": "HTTP/1.1",
                         "sourceIp": "127.0.0.1", "userAgent": "test"}
            },
            "isBase64Encoded": false
        });
        let req = lambda_http::request::from_str(&event.to_string()).unwrap();
        let (state, _dir) = state();
        let res = app(state).oneshot(req.map(Body::new)).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
    }
}
