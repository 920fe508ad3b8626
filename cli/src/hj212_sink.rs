//! The single-box edition's HJ 212 sink: frames become telemetry of the dust device whose `mn`
//! matches, through the same pipeline as MQTT messages.

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::Utc;
use smartsite_shared::domain::hj212::Frame;
use smartsite_shared::fleet::{Fleet, MnHolder};
use smartsite_shared::ingest::{Inbound, MessageKind};
use smartsite_shared::telemetry::Untrusted;

use crate::hj212::Hj212Sink;
use crate::uplink::LocalUplink;

pub struct LocalHj212 {
    uplink: Arc<LocalUplink>,
    fleet: Fleet,
}

impl LocalHj212 {
    pub fn new(uplink: Arc<LocalUplink>) -> Self {
        let fleet = Fleet::new(uplink.pipeline().store().clone());
        LocalHj212 { uplink, fleet }
    }

    async fn holder(&self, mn: &str) -> Result<Option<MnHolder>, String> {
        self.fleet.mn_holder(mn).await.map_err(|e| e.to_string())
    }
}

#[async_trait]
impl Hj212Sink for LocalHj212 {
    async fn data(
        &self,
        peer: SocketAddr,
        frame: &Frame,
        telemetry: serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), String> {
        let payload = serde_json::to_vec(&telemetry).map_err(|e| e.to_string())?;
        let Some(h) = self.holder(&frame.mn).await? else {
            // Kept (and so acknowledged): an unknown MN is an installation problem the platform
            // administrator sees in the platform quarantine, not a reason for endless resends.
            return self
                .uplink
                .pipeline()
                .quarantine(
                    None,
                    None,
                    None,
                    "hj212",
                    "unknown_mn",
                    &format!("no device is bound with MN {} (from {peer})", frame.mn),
                    &payload,
                )
                .await
                .map_err(|e| e.to_string());
        };
        self.uplink
            .submit(Inbound {
                integrator_id: h.integrator_id,
                project_id: h.project_id.to_string(),
                device_id: h.device_id.to_string(),
                kind: MessageKind::Telemetry,
                payload: payload.into(),
                received_at: Utc::now(),
            })
            .await
    }

    async fn heartbeat(&self, _peer: SocketAddr, mn: &str) {
        if let Ok(Some(h)) = self.holder(mn).await
            && let Err(e) = self
                .uplink
                .pipeline()
                .presence(&h.integrator_id, h.device_id.as_str(), true, Utc::now())
                .await
        {
            tracing::warn!(mn = %Untrusted(mn), error = %Untrusted(&e), "hj212: presence not recorded");
        }
    }

    async fn reject(
        &self,
        peer: SocketAddr,
        mn: Option<&str>,
        raw: &[u8],
        reason: &str,
        detail: &str,
    ) {
        let holder = match mn {
            Some(mn) => self.holder(mn).await.ok().flatten(),
            None => None,
        };
        let detail = format!("{detail} (from {peer})");
        let r = self
            .uplink
            .pipeline()
            .quarantine(
                holder.as_ref().map(|h| &h.integrator_id),
                holder.as_ref().map(|h| h.project_id.as_str()),
                holder.as_ref().map(|h| h.device_id.as_str()),
                "hj212",
                reason,
                &detail,
                raw,
            )
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %Untrusted(&e), "hj212: rejected frame not quarantined");
        }
    }
}
