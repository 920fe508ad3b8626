//! The `billing` concern (API.md, Billing; issue 5): versioned service packages, subscriptions of
//! projects, exactly-once usage metering, the monthly close into invoices (draft → issued →
//! paid / void, credit notes, CSV/XLSX export) and the hand-off of invoices paid from a project's
//! safety money to the safety-fund ledger. [`service::Billing`] holds the logic over the storage
//! port; [`api`] is its HTTP edge; [`close_all`] is the scheduled close both editions run.

pub mod api;
pub mod domain;
pub mod service;

use std::sync::Arc;

use crate::domain::Period;
use axum::Router;
use axum::extract::FromRef;
use chrono::{DateTime, Utc};
use smartsite_shared::auth::Authenticator;
use smartsite_shared::directory::{self, Directory};
use smartsite_shared::store::Store;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use service::Billing;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub directory: Directory,
    pub billing: Billing,
    pub auth: Authenticator,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, auth: Authenticator) -> Self {
        let billing = Billing::new(Arc::clone(&store));
        Self::with_billing(store, auth, billing)
    }

    /// With a service built by the caller (e.g. one that notifies the safety-fund consumer).
    pub fn with_billing(store: Arc<dyn Store>, auth: Authenticator, billing: Billing) -> Self {
        AppState {
            directory: Directory::new(Arc::clone(&store)),
            store,
            billing,
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
        .routes(routes!(api::create_package, api::list_packages))
        .routes(routes!(api::get_package))
        .routes(routes!(api::create_version))
        .routes(routes!(api::create_subscription, api::list_subscriptions))
        .routes(routes!(api::get_subscription))
        .routes(routes!(api::suspend))
        .routes(routes!(api::resume))
        .routes(routes!(api::change_package))
        .routes(routes!(api::end))
        .routes(routes!(api::usage))
        .routes(routes!(api::close))
        .routes(routes!(api::list_invoices))
        .routes(routes!(api::get_invoice))
        .routes(routes!(api::issue))
        .routes(routes!(api::pay))
        .routes(routes!(api::void))
        .routes(routes!(api::credit_note))
}

pub fn app(state: AppState) -> Router {
    let (router, doc) = routes().split_for_parts();
    directory::guarded(router, &doc, state)
}

/// What a scheduled close did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CloseReport {
    /// `None` when no period was due yet.
    pub period: Option<String>,
    pub integrators: usize,
    pub invoices: usize,
    /// Integrators whose close failed (the store, …): retried by the next run.
    pub failed: Vec<String>,
    /// Subscriptions that could not be rated (`{integrator}/{subscription}: {field}: {why}`):
    /// nothing was written for them, the rest of their integrator closed. A rerun gives the
    /// same answer until the subscription's inputs change, so these do not ask for a retry.
    pub unrated: Vec<String>,
}

/// The scheduled close (EventBridge Scheduler in AWS, the single-box scheduler): once the grace
/// window of the previous month has passed, close it for every integrator. Idempotent, so
/// running it again (a retry, a restart) changes nothing; an integrator that fails is reported
/// and does not stop the others.
pub async fn close_all(store: Arc<dyn Store>, now: DateTime<Utc>) -> anyhow::Result<CloseReport> {
    let Some(period) = service::due_period(now) else {
        return Ok(CloseReport::default());
    };
    close_period_for_all(store, period, now).await
}

/// Closes `period` for every integrator.
pub async fn close_period_for_all(
    store: Arc<dyn Store>,
    period: Period,
    now: DateTime<Utc>,
) -> anyhow::Result<CloseReport> {
    let directory = Directory::new(Arc::clone(&store));
    let billing = Billing::new(store);
    let mut report = CloseReport {
        period: Some(period.to_string()),
        ..CloseReport::default()
    };
    let mut cursor = None;
    loop {
        let page = directory.list_integrators(200, cursor).await?;
        for integrator in &page.items {
            report.integrators += 1;
            match billing.close(&integrator.id, period, now).await {
                Ok(closed) => {
                    report.invoices += closed.invoices.len();
                    report.unrated.extend(closed.failed.iter().map(|f| {
                        format!(
                            "{}/{}: {}: {}",
                            integrator.id, f.subscription_id, f.field, f.detail
                        )
                    }));
                }
                Err(e) => {
                    tracing::error!(integrator_id = %integrator.id, error = %e, "billing close failed");
                    report.failed.push(integrator.id.to_string());
                }
            }
        }
        match page.next {
            Some(c) => cursor = Some(c),
            None => return Ok(report),
        }
    }
}
