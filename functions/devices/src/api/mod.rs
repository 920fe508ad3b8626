//! HTTP handlers of the devices concern.

pub mod blacklist;
pub mod devices;
pub mod models;
pub mod suppliers;

use axum::Json;
use axum::extract::State;
use smartsite_shared::auth::Role;
use smartsite_shared::catalog::CatalogError;
use smartsite_shared::http::{self, Problem};

use crate::AppState;

/// Who may read the registry (suppliers, models) and the blacklist: integrator staff, government
/// supervisors and the platform administrator. Enterprise and project users have no use for it.
pub const READ_ROLES: &[Role] = &[
    Role::PlatformAdmin,
    Role::IntegratorAdmin,
    Role::IntegratorOps,
    Role::GovSupervisor,
];

/// The current instant as RFC 3339 (UTC, seconds).
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Maps catalog errors at the edge.
pub fn cat_err(e: CatalogError) -> Problem {
    match e {
        CatalogError::DuplicateUscc(id) => {
            Problem::conflict(format!("a supplier with this uscc already exists: {id}"))
        }
        CatalogError::UnknownSupplier => Problem::validation("supplier_id", "no such supplier"),
        CatalogError::AlreadyLifted => Problem::conflict("the blacklist entry is already lifted"),
        CatalogError::Exists(what) => Problem::conflict(format!("{what} already exists")),
        CatalogError::Store(s) => s.into(),
        CatalogError::Corrupt(c) => Problem::internal(&c),
    }
}

/// Liveness of the concern and its table.
#[utoipa::path(get, path = "/v1/devices/healthz", operation_id = "devices_health", tag = "devices",
    responses((status = 200, body = http::Health)))]
pub async fn health(State(state): State<AppState>) -> Result<Json<http::Health>, Problem> {
    http::check_store(&*state.store, "devices").await
}
