//! The `devices` concern: the platform-wide registry of suppliers and device models, each
//! integrator's compliance marks, the blacklist (黑名单制度), and devices bound to projects
//! (`smartsite_shared::fleet`), provisioned through the `DeviceRegistry` port.
//!
//! Same shape as `smartsite_tenants`: `routes()` is the concern's whole HTTP surface, registered
//! through its OpenAPI description; the AWS edition runs `app(state)` under `lambda_http` (see
//! `main.rs`); the single-box edition merges `routes()` into `smartsite serve`; tests drive it
//! with `oneshot`.

pub mod api;

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use smartsite_shared::auth::Authenticator;
use smartsite_shared::catalog::Catalog;
use smartsite_shared::directory::{self, Directory};
use smartsite_shared::fleet::Fleet;
use smartsite_shared::iot::DeviceRegistry;
use smartsite_shared::store::Store;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Everything the handlers need, built once at start-up.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// Tenancy: a government supervisor's jurisdiction, and the write guard.
    pub directory: Directory,
    pub catalog: Catalog,
    pub fleet: Fleet,
    pub auth: Authenticator,
    /// Device identities and credentials (AWS IoT Core, or the single-box local CA).
    pub registry: Arc<dyn DeviceRegistry>,
    /// What devices connect to, answered at provisioning (`mqtts://host:port`, or the AWS IoT
    /// ATS endpoint).
    pub mqtt_endpoint: String,
}

impl AppState {
    pub fn new(
        store: Arc<dyn Store>,
        auth: Authenticator,
        registry: Arc<dyn DeviceRegistry>,
        mqtt_endpoint: String,
    ) -> Self {
        AppState {
            directory: Directory::new(Arc::clone(&store)),
            catalog: Catalog::new(Arc::clone(&store)),
            fleet: Fleet::new(Arc::clone(&store)),
            store,
            auth,
            registry,
            mqtt_endpoint,
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
        .routes(routes!(api::suppliers::create, api::suppliers::list))
        .routes(routes!(api::suppliers::get))
        .routes(routes!(api::models::create, api::models::list))
        .routes(routes!(api::models::get))
        .routes(routes!(api::models::mark_compliant))
        .routes(routes!(api::blacklist::issue, api::blacklist::list))
        .routes(routes!(api::blacklist::get))
        .routes(routes!(api::blacklist::lift))
        .routes(routes!(api::devices::provision, api::devices::list))
        .routes(routes!(api::devices::provision_bulk))
        .routes(routes!(api::devices::get, api::devices::decommission))
        .routes(routes!(api::devices::rotate))
        .routes(routes!(api::devices::retire))
        .routes(routes!(api::devices::fleet))
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
