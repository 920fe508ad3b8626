//! The `safety-fund` concern (API.md, Safety fund; issue 7): per project the 安全生产费 and
//! 安全文明施工费 ledgers (accrual by progress, owner payments, subcontract allocations,
//! expenditures, reversals, settlement), the smart-site cost plan, hash-chain verification,
//! statements and summaries (JSON, CSV, XLSX), and the consumer of billing's invoice hand-off.

pub mod api;
pub mod domain;
pub mod service;

use std::sync::Arc;

use crate::service::Funds;
use axum::Router;
use axum::extract::FromRef;
use smartsite_shared::auth::Authenticator;
use smartsite_shared::directory::{self, Directory};
use smartsite_shared::store::Store;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub directory: Directory,
    pub funds: Funds,
    pub auth: Authenticator,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, auth: Authenticator, funds: Funds) -> Self {
        AppState {
            directory: Directory::new(Arc::clone(&store)),
            store,
            funds,
            auth,
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

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(api::account))
        .routes(routes!(api::progress))
        .routes(routes!(api::owner_payment))
        .routes(routes!(api::expenditure))
        .routes(routes!(api::variation))
        .routes(routes!(api::subcontract))
        .routes(routes!(api::allocation))
        .routes(routes!(api::reverse))
        .routes(routes!(api::settle))
        .routes(routes!(api::put_civilized))
        .routes(routes!(api::cost_plan, api::put_cost_plan))
        .routes(routes!(api::approve_cost_plan))
        .routes(routes!(api::statement))
        .routes(routes!(api::verify))
        .routes(routes!(api::enterprise_year))
        .routes(routes!(api::region_summary))
        .routes(routes!(api::drain))
}

pub fn app(state: AppState) -> Router {
    let (router, doc) = routes().split_for_parts();
    directory::guarded(router, &doc, state)
}
