//! The `alarms` concern: alarm rules per region and project (with the override chain visible),
//! the alarms raised on device data and their lifecycle (open → acknowledged → resolved), and the
//! commands sent to devices (spray linkage). Evaluation itself runs inside ingest
//! (`crate::service::Alarms` is the pipeline's observer); escalation and offline
//! checks run on the scheduler.

pub mod api;
pub mod domain;
pub mod live;
pub mod service;

use std::sync::Arc;

use crate::service::Alarms;
use axum::Router;
use axum::extract::FromRef;
use smartsite_shared::auth::Authenticator;
use smartsite_shared::directory::{self, Directory};
use smartsite_shared::fleet::Fleet;
use smartsite_shared::store::Store;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub directory: Directory,
    pub fleet: Fleet,
    pub alarms: Alarms,
    pub auth: Authenticator,
    /// How `GET /v1/projects/{id}/live` answers: snapshots only unless [`AppState::streaming`].
    pub live: live::LiveConfig,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, auth: Authenticator, alarms: Alarms) -> Self {
        AppState {
            directory: Directory::new(Arc::clone(&store)),
            fleet: Fleet::new(Arc::clone(&store)),
            store,
            alarms,
            auth,
            live: live::LiveConfig::SNAPSHOT,
        }
    }

    /// Serves event streams on the live endpoint: the single-box edition, which answers over a
    /// long-lived connection (API Gateway in front of a Lambda cannot).
    pub fn streaming(self) -> Self {
        AppState {
            live: live::LiveConfig::STREAM,
            ..self
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
        .routes(routes!(api::list))
        .routes(routes!(api::get))
        .routes(routes!(api::acknowledge))
        .routes(routes!(api::resolve))
        .routes(routes!(api::project_rules, api::put_project_rules))
        .routes(routes!(api::region_rules, api::put_region_rules))
        .routes(routes!(api::commands))
        .routes(routes!(live::live))
}

pub fn app(state: AppState) -> Router {
    let (router, doc) = routes().split_for_parts();
    directory::guarded(router, &doc, state)
}
