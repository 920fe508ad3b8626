//! The `ingest` concern: device messages into device data (`smartsite_shared::ingest`), and the
//! HTTP reads of that data — latest state, time series, quarantine.
//!
//! AWS edition: an IoT topic rule forwards every `ss/+/+/+/telemetry|events` message to SQS;
//! [`handle_sqs`] consumes the batches and reports partial batch failures (`main.rs`), so only
//! messages whose storing failed come back. The HTTP routes run in the same concern's router,
//! mounted by `smartsite serve` and served by API Gateway in the AWS edition.

pub mod api;

use std::sync::Arc;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use axum::Router;
use axum::extract::FromRef;
use base64::Engine as _;
use chrono::{DateTime, TimeZone as _, Utc};
use serde::Deserialize;
use smartsite_shared::auth::Authenticator;
use smartsite_shared::directory::{self, Directory};
use smartsite_shared::fleet::Fleet;
use smartsite_shared::ids::IntegratorId;
use smartsite_shared::ingest::{Inbound, MessageKind, Pipeline};
use smartsite_shared::store::Store;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub directory: Directory,
    pub fleet: Fleet,
    pub auth: Authenticator,
}

impl AppState {
    pub fn new(store: Arc<dyn Store>, auth: Authenticator) -> Self {
        AppState {
            directory: Directory::new(Arc::clone(&store)),
            fleet: Fleet::new(Arc::clone(&store)),
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

/// The concern's HTTP routes, served by both editions.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(api::state))
        .routes(routes!(api::telemetry))
        .routes(routes!(api::events))
        .routes(routes!(api::quarantine))
        .routes(routes!(api::get_settings, api::put_settings))
}

/// The concern's HTTP routes as a complete service.
pub fn app(state: AppState) -> Router {
    let (router, doc) = routes().split_for_parts();
    directory::guarded(router, &doc, state)
}

/// What the topic rule puts in each SQS message (see `IngestTopicRule` in infra/template.yaml):
/// the payload base64-encoded (so any bytes survive, and invalid JSON reaches the quarantine
/// instead of failing the rule), the topic, and IoT's receive time.
#[derive(Debug, Deserialize)]
pub struct RuleMessage {
    pub payload: String,
    pub topic: String,
    pub received_ms: Option<i64>,
}

/// `ss/{I}/{P}/{D}/telemetry|events` → the message's identity. The IoT policy lets a device
/// publish only under its own thing name and attributes, so the topic is authenticated.
pub fn parse_topic(topic: &str) -> Option<(IntegratorId, String, String, MessageKind)> {
    let mut parts = topic.split('/');
    let (ss, i, p, d, kind) = (
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
        parts.next()?,
    );
    if ss != "ss" || parts.next().is_some() {
        return None;
    }
    let kind = match kind {
        "telemetry" => MessageKind::Telemetry,
        "events" => MessageKind::Events,
        _ => return None,
    };
    Some((
        IntegratorId::parse(i).ok()?,
        p.to_owned(),
        d.to_owned(),
        kind,
    ))
}

/// Consumes one SQS batch. A record that cannot even be read as a rule message is quarantined
/// (platform quarantine) and counts as handled; a record whose storing failed is reported as a
/// batch item failure, so SQS redelivers exactly those (and, after the redrive limit, moves them
/// to the DLQ).
pub async fn handle_sqs(pipeline: &Pipeline, event: SqsEvent) -> SqsBatchResponse {
    let mut failures = Vec::new();
    let mut inbound = Vec::new();
    let mut ids = Vec::new();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.unwrap_or_default();
        match decode_record(&body) {
            Ok(m) => {
                inbound.push(m);
                ids.push(id);
            }
            Err(reason) => {
                if let Err(e) = pipeline
                    .quarantine(
                        None,
                        None,
                        None,
                        "sqs",
                        "bad_rule_message",
                        &reason,
                        body.as_bytes(),
                    )
                    .await
                {
                    tracing::error!(error = %e, "ingest: unreadable record not quarantined");
                    failures.push(item_failure(id));
                }
            }
        }
    }
    let results = pipeline.process(&inbound).await;
    for (id, r) in ids.into_iter().zip(results) {
        if let Err(e) = r {
            tracing::warn!(message_id = %id, error = %e, "ingest: message not stored, SQS will redeliver");
            failures.push(item_failure(id));
        }
    }
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failures;
    response
}

fn item_failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}

fn decode_record(body: &str) -> Result<Inbound, String> {
    let m: RuleMessage =
        serde_json::from_str(body).map_err(|e| format!("not a rule message: {e}"))?;
    let (integrator_id, project_id, device_id, kind) =
        parse_topic(&m.topic).ok_or_else(|| format!("not a device topic: {}", m.topic))?;
    let payload = base64::engine::general_purpose::STANDARD
        .decode(m.payload.as_bytes())
        .map_err(|e| format!("payload is not base64: {e}"))?;
    let received_at: DateTime<Utc> = m
        .received_ms
        .and_then(|ms| Utc.timestamp_millis_opt(ms).single())
        .unwrap_or_else(Utc::now);
    Ok(Inbound {
        integrator_id,
        project_id,
        device_id,
        kind,
        payload: payload.into(),
        received_at,
    })
}
