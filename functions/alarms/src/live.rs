//! `GET /v1/projects/{id}/live`: what a project's dashboard shows live — its devices' latest
//! states and presence, and its alarms — as they change.
//!
//! Two answers, one path:
//! - **Event stream** (single-box edition, `Accept: text/event-stream`): `state`, `presence` and
//!   `alarm` events. The first round sends the whole picture, later rounds only what changed; the
//!   project is re-read every [`LiveConfig::every`] (1 s), so a change reaches the page within
//!   about a second. The stream ends after [`LiveConfig::lifetime`]; the client reconnects and is
//!   authorised again with its current token, so a revoked or expired token cannot keep a stream.
//! - **Snapshot** (every other request, and always in the AWS edition, where API Gateway buffers a
//!   Lambda's answer and cannot stream): the same picture as one JSON document with an `ETag`;
//!   `If-None-Match` answers 304, so a console polling every few seconds moves almost nothing.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use smartsite_shared::auth::{Caller, roles_json};
use smartsite_shared::domain::tenancy::Project;
use smartsite_shared::fleet::DeviceStatus;
use smartsite_shared::http::Problem;
use smartsite_shared::ingest::{DeviceState, device_state};

use crate::AppState;
use crate::api::{READ_ROLES, project, shown_to};
use crate::service::Alarm;

/// How the live endpoint answers in this edition.
#[derive(Debug, Clone, Copy)]
pub struct LiveConfig {
    /// Whether event streams are served (the single box); otherwise only snapshots.
    pub stream: bool,
    /// How often a stream re-reads the project.
    pub every: Duration,
    /// How long one stream lasts before the client must reconnect.
    pub lifetime: Duration,
}

impl LiveConfig {
    /// Snapshots only: the AWS edition behind API Gateway.
    pub const SNAPSHOT: LiveConfig = LiveConfig {
        stream: false,
        every: Duration::from_secs(1),
        lifetime: Duration::from_secs(600),
    };
    /// Event streams and snapshots: the single-box edition.
    pub const STREAM: LiveConfig = LiveConfig {
        stream: true,
        ..LiveConfig::SNAPSHOT
    };
}

/// The most devices and alarms one live picture carries: a site has tens of devices; the
/// alarms are the newest ones.
const MAX_DEVICES: usize = 1000;
const MAX_ALARMS: u32 = 200;

/// One device on the dashboard: its state and its category (which gauge shows it).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LiveDevice {
    pub category: String,
    #[serde(flatten)]
    pub state: DeviceState,
}

/// A project's live picture: its active devices' states and its newest alarms (newest first).
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LiveSnapshot {
    pub devices: Vec<LiveDevice>,
    pub alarms: Vec<Alarm>,
}

/// The `presence` event: a device came online or went offline.
#[derive(Debug, Serialize)]
struct Presence<'a> {
    device_id: &'a str,
    online: bool,
    at: Option<&'a str>,
}

async fn snapshot(state: &AppState, caller: &Caller, p: &Project) -> Result<LiveSnapshot, Problem> {
    let mut devices = Vec::new();
    let mut cursor = None;
    loop {
        let page = state
            .fleet
            .list_project(&p.integrator_id, &p.id, 200, cursor)
            .await
            .map_err(|e| Problem::internal(&e))?;
        for d in page.items {
            if d.status == DeviceStatus::Active && devices.len() < MAX_DEVICES {
                let st = device_state(state.store.as_ref(), &d).await?;
                devices.push(LiveDevice {
                    category: d.category.as_str().to_owned(),
                    state: st,
                });
            }
        }
        match page.next {
            Some(next) if devices.len() < MAX_DEVICES => cursor = Some(next),
            _ => break,
        }
    }
    let (alarms, _) = state
        .alarms
        .list(
            p.integrator_id.as_str(),
            p.id.as_str(),
            None,
            MAX_ALARMS,
            None,
        )
        .await
        .map_err(crate::api::err)?;
    Ok(LiveSnapshot {
        devices,
        alarms: alarms.into_iter().filter(|a| shown_to(caller, a)).collect(),
    })
}

/// A strong validator of a snapshot: FNV-1a over its JSON.
fn etag(body: &[u8]) -> String {
    format!("\"{}\"", smartsite_shared::ingest::digest(body))
}

/// What a stream last sent, to send only changes (presence is the `online` of the last state).
#[derive(Default)]
struct Sent {
    states: HashMap<String, DeviceState>,
    alarms: HashMap<String, i64>,
}

/// One event of the stream: its name and its JSON data.
#[derive(Debug, PartialEq)]
struct LiveEvent {
    name: &'static str,
    data: serde_json::Value,
}

impl LiveEvent {
    fn new(name: &'static str, data: &impl Serialize) -> Option<LiveEvent> {
        match serde_json::to_value(data) {
            Ok(data) => Some(LiveEvent { name, data }),
            Err(e) => {
                tracing::error!(error = %e, event = name, "live event not serialisable");
                None
            }
        }
    }

    fn into_sse(self) -> Event {
        Event::default()
            .event(self.name)
            .data(self.data.to_string())
    }
}

impl Sent {
    /// The events that bring a client from what was sent to `now`, in order: presence, states,
    /// then alarms oldest first.
    fn diff(&mut self, now: &LiveSnapshot) -> Vec<LiveEvent> {
        let mut out = Vec::new();
        for d in &now.devices {
            let s = &d.state;
            let before = self.states.get(&s.device_id);
            if before.map(|b| b.online) != Some(s.online) {
                out.extend(LiveEvent::new(
                    "presence",
                    &Presence {
                        device_id: &s.device_id,
                        online: s.online,
                        at: s.last_seen.as_deref(),
                    },
                ));
            }
            if before != Some(s) {
                self.states.insert(s.device_id.clone(), s.clone());
                out.extend(LiveEvent::new("state", d));
            }
        }
        for a in now.alarms.iter().rev() {
            if self.alarms.get(&a.id) != Some(&a.version) {
                self.alarms.insert(a.id.clone(), a.version);
                out.extend(LiveEvent::new("alarm", a));
            }
        }
        out
    }
}

#[utoipa::path(get, path = "/v1/projects/{id}/live", tag = "alarms", params(("id" = String, Path)),
    security(("bearer" = [])), extensions(("x-roles" = json!(roles_json(READ_ROLES)))),
    responses(
        (status = 200, description = "`Accept: text/event-stream` on the single box: `state`, `presence` and `alarm` events (the whole picture first, then changes); otherwise the snapshot", body = LiveSnapshot),
        (status = 304, description = "the snapshot has not changed since the `If-None-Match` ETag"),
        (status = 404, description = "project not found or not visible")))]
pub async fn live(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    caller.require(READ_ROLES)?;
    let p = project(&state, &caller, &id).await?;
    let wants_stream = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    if wants_stream && state.live.stream {
        return Ok(stream(state, caller, p).into_response());
    }
    let body = serde_json::to_vec(&snapshot(&state, &caller, &p).await?)
        .map_err(|e| Problem::internal(&e))?;
    let tag = etag(&body);
    let tag_value = HeaderValue::from_str(&tag).map_err(|e| Problem::internal(&e))?;
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    if matches {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, tag_value)]).into_response());
    }
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::ETAG, tag_value),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, no-cache"),
            ),
        ],
        body,
    )
        .into_response())
}

/// The event stream: a task re-reads the project every `every` and sends what changed, until
/// the client goes away (the channel closes), the lifetime ends, or the project can no longer be
/// read (an `error` event, then the end).
fn stream(state: AppState, caller: Caller, p: Project) -> impl IntoResponse {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(64);
    let cfg = state.live;
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + cfg.lifetime;
        let mut sent = Sent::default();
        let mut tick = tokio::time::interval(cfg.every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = tx.closed() => return,
            }
            if tokio::time::Instant::now() >= deadline {
                return;
            }
            match snapshot(&state, &caller, &p).await {
                Ok(now) => {
                    for e in sent.diff(&now) {
                        if tx.send(e.into_sse()).await.is_err() {
                            return;
                        }
                    }
                }
                Err(problem) => {
                    tracing::warn!(status = problem.status, project_id = %p.id, "live stream stopped: the project could not be read");
                    let _ = tx
                        .send(Event::default().event("error").data(problem.title))
                        .await;
                    return;
                }
            }
        }
    });
    let events = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), rx))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, online: bool, ts: &str, v: f64) -> LiveDevice {
        LiveDevice {
            category: "dust_monitor".into(),
            state: DeviceState {
                device_id: id.into(),
                online,
                last_seen: Some(ts.into()),
                ts: Some(ts.into()),
                values: serde_json::json!({ "pm10": v })
                    .as_object()
                    .cloned()
                    .unwrap_or_default(),
                untrusted: false,
            },
        }
    }

    fn names(events: &[LiveEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.name).collect()
    }

    #[test]
    fn the_first_round_sends_everything_and_later_rounds_only_changes() {
        let mut sent = Sent::default();
        let mut snap = LiveSnapshot {
            devices: vec![
                device("d1", true, "2026-12-07T01:00:00.000Z", 10.0),
                device("d2", false, "2026-12-07T00:00:00.000Z", 5.0),
            ],
            alarms: vec![],
        };
        assert_eq!(
            names(&sent.diff(&snap)),
            ["presence", "state", "presence", "state"]
        );
        assert!(sent.diff(&snap).is_empty(), "nothing changed, nothing sent");
        snap.devices[0] = device("d1", true, "2026-12-07T01:00:05.000Z", 11.0);
        let changed = sent.diff(&snap);
        assert_eq!(names(&changed), ["state"]);
        assert_eq!(changed[0].data["device_id"], "d1");
        assert_eq!(changed[0].data["category"], "dust_monitor");
        assert_eq!(changed[0].data["values"]["pm10"], 11.0);
        snap.devices[1].state.online = true;
        assert_eq!(names(&sent.diff(&snap)), ["presence", "state"]);
    }
}
