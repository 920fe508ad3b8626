//! The `billing` concern (API.md). Work in progress: routes are added with the concern.

use std::sync::Arc;

use axum::Router;
use axum::extract::FromRef;
use smartsite_shared::auth::Authenticator;
use smartsite_shared::directory::{self, Directory};
use smartsite_shared::store::Store;
use utoipa_axum::router::OpenApiRouter;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub directory: Directory,
    pub auth: Authenticator,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, auth: Authenticator) -> Self {
        AppState {
            directory: Directory::new(Arc::clone(&store)),
            store,
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
}

pub fn app(state: AppState) -> Router {
    let (router, _doc) = routes().split_for_parts();
    directory::guarded(router, state)
}
