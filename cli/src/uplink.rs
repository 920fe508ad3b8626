//! The single-box [`Uplink`]: the broker's (and the HJ 212 listener's) way into the ingest
//! pipeline.
//!
//! Messages of all connections meet in one queue; a few workers each take what is waiting (up to
//! [`BATCH`]) and run it through [`Pipeline::process`], whose transactions share the store's
//! group commit. Each sender waits for its own message's result, so the broker acknowledges a
//! QoS 1 publish exactly when that message is durable — batching only amortises the fsync.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use smartsite_shared::ingest::{Inbound, Pipeline};
use smartsite_shared::iot::DeviceIdentity;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::broker::Uplink;

/// Messages one worker takes at once.
pub const BATCH: usize = 512;
/// Concurrent workers: enough to keep the store's group commit fed while one batch is being
/// decoded.
pub const WORKERS: usize = 4;

type Job = (Inbound, oneshot::Sender<Result<(), String>>);

pub struct LocalUplink {
    pipeline: Pipeline,
    tx: mpsc::Sender<Job>,
}

impl LocalUplink {
    /// Starts the workers; they stop when the uplink is dropped.
    pub fn start(pipeline: Pipeline) -> Arc<Self> {
        let (tx, rx) = mpsc::channel::<Job>(BATCH * WORKERS * 4);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WORKERS {
            let rx = rx.clone();
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                let mut jobs = Vec::with_capacity(BATCH);
                loop {
                    let n = rx.lock().await.recv_many(&mut jobs, BATCH).await;
                    if n == 0 {
                        return;
                    }
                    let (msgs, replies): (Vec<Inbound>, Vec<_>) = jobs.drain(..).unzip();
                    let results = pipeline.process(&msgs).await;
                    for (reply, r) in replies.into_iter().zip(results) {
                        let _ = reply.send(r.map(|_| ()));
                    }
                }
            });
        }
        Arc::new(LocalUplink { pipeline, tx })
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Stores one message; `Ok` once durable (accepted, duplicate or quarantined).
    pub async fn submit(&self, msg: Inbound) -> Result<(), String> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((msg, reply))
            .await
            .map_err(|_| "ingest is shutting down".to_owned())?;
        rx.await.map_err(|_| "ingest worker stopped".to_owned())?
    }
}

#[async_trait]
impl Uplink for LocalUplink {
    async fn accept(&self, msg: Inbound) -> Result<(), String> {
        self.submit(msg).await
    }

    async fn presence(&self, device: &DeviceIdentity, online: bool, at: DateTime<Utc>) {
        if let Err(e) = self
            .pipeline
            .presence(&device.integrator_id, &device.device_id, online, at)
            .await
        {
            tracing::warn!(device = %device.device_id, error = %e, "presence not recorded");
        }
    }

    async fn refused(&self, device: &DeviceIdentity, topic: &str, payload: Bytes, reason: &str) {
        let detail = format!(
            "a device may publish only on its own telemetry and events topics, not {topic}"
        );
        if let Err(e) = self
            .pipeline
            .quarantine(
                Some(&device.integrator_id),
                Some(&device.project_id),
                Some(&device.device_id),
                "mqtt",
                reason,
                &detail,
                &payload,
            )
            .await
        {
            tracing::warn!(device = %device.device_id, error = %e, "refused publish not quarantined");
        }
    }
}
