//! The `workforce` concern (实名制, API.md Workforce; issue 15): teams and their labour
//! subcontractors, the enrolment (进场) and exit (退场) of people, one `worker_id` per person
//! within an integrator, contracts, certificates, three-level training records, the gate rules
//! (`decide`), and personal numbers protected at rest (envelope encryption, blind index,
//! audited reveals).

pub mod api;
pub mod domain;
pub mod keys;
pub mod service;

use crate::service::Workforce;
use axum::Router;
use smartsite_shared::directory::{self, ConcernState};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The router state: authentication, the directory, and the [`Workforce`] service.
pub type AppState = ConcernState<Workforce>;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(api::create_team, api::teams))
        .routes(routes!(api::enrol, api::workers))
        .routes(routes!(api::exit))
        .routes(routes!(api::worker))
        .routes(routes!(api::training))
        .routes(routes!(api::reveals))
        .routes(routes!(api::attendance))
        .routes(routes!(api::headcount))
        .routes(routes!(api::gate_decisions))
}

pub fn app(state: AppState) -> Router {
    let (router, doc) = routes().split_for_parts();
    directory::guarded(router, &doc, state)
}
