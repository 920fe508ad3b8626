//! The `tenants` concern: integrators, customers, projects, users and (single-box) identity.
//!
//! `routes()` is the concern's whole HTTP surface, each route registered through its OpenAPI
//! description so the document cannot drift from the router. The AWS edition runs `app(state)`
//! under `lambda_http` (see `main.rs`); the single-box edition merges `routes()` and
//! `local_identity_routes()` into `smartsite serve`; tests drive it with `oneshot`.

pub mod api;
pub mod openapi;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use smartsite_shared::accounts::Accounts;
use smartsite_shared::auth::{Authenticator, LocalIssuer};
use smartsite_shared::directory::{self, Directory};
use smartsite_shared::store::Store;
use smartsite_shared::throttle::SignInThrottle;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Everything the handlers need, built once at start-up.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub directory: Directory,
    pub auth: Authenticator,
    /// The single-box token issuer; `None` in the AWS edition, where Cognito issues tokens.
    pub issuer: Option<Arc<LocalIssuer>>,
    /// Where users' sign-in credentials go: the directory (single-box) or Cognito (AWS).
    pub accounts: Arc<dyn Accounts>,
    /// Failed sign-ins per username and per source address (single-box issuer).
    pub sign_in: Arc<SignInThrottle>,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        auth: Authenticator,
        issuer: Option<Arc<LocalIssuer>>,
        accounts: Arc<dyn Accounts>,
    ) -> Self {
        AppState {
            directory: Directory::new(Arc::clone(&store)),
            store,
            auth,
            issuer,
            accounts,
            sign_in: Arc::new(SignInThrottle::default()),
        }
    }
}

impl FromRef<AppState> for Authenticator {
    fn from_ref(s: &AppState) -> Self {
        s.auth.clone()
    }
}

impl FromRef<AppState> for Directory {
    fn from_ref(s: &AppState) -> Self {
        s.directory.clone()
    }
}

/// The concern's routes, served by both editions.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(api::health))
        .routes(routes!(api::me))
        .routes(routes!(api::integrators::create, api::integrators::list))
        .routes(routes!(api::integrators::get))
        .routes(routes!(api::customers::create, api::customers::list))
        .routes(routes!(api::customers::get))
        .routes(routes!(api::customers::suspend))
        .routes(routes!(api::customers::resume))
        .routes(routes!(api::customers::offboard))
        .routes(routes!(api::customers::export))
        .routes(routes!(api::projects::create, api::projects::list))
        .routes(routes!(api::projects::get))
        .routes(routes!(api::users::create, api::users::list))
}

/// Token issuing and JWKS of the single-box edition (Cognito does this in AWS).
pub fn local_identity_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(api::identity::token))
        .routes(routes!(api::identity::jwks))
}

/// Applies the cross-cutting layers every deployment of this concern gets.
/// `doc` is the OpenAPI document of the routes: the roles each operation admits come from it.
pub fn finish(router: Router<AppState>, doc: &utoipa::openapi::OpenApi, state: AppState) -> Router {
    directory::guarded(router, doc, state)
}

/// The concern as a complete service: what the Lambda runs.
pub fn app(state: AppState) -> Router {
    let (router, doc) = routes().split_for_parts();
    finish(router, &doc, state)
}
