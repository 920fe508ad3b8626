//! The single-box [`Uplink`]: the broker's (and the HJ 212 listener's) way into the ingest
//! pipeline.
//!
//! Messages of all connections meet in one queue, as the groups a connection read together; a few
//! workers each take what is waiting (about [`BATCH`] messages) and run it through
//! [`Pipeline::process`], whose transactions share the store's group commit. Each sender waits for
//! its own messages' results, so the broker acknowledges a QoS 1 publish exactly when that message
//! is durable — batching only amortises the fsync and the hand-over.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use smartsite_shared::ingest::{Inbound, Pipeline};
use smartsite_shared::iot::DeviceIdentity;
use smartsite_shared::telemetry::Untrusted;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::broker::Uplink;

/// Messages one worker takes at once.
pub const BATCH: usize = 512;
/// Concurrent workers: enough to keep the store's group commit fed while one batch is being
/// decoded.
pub const WORKERS: usize = 4;

/// Messages of one connection that arrived together, and where their results go (in order).
type Job = (Vec<Inbound>, oneshot::Sender<Vec<Result<(), String>>>);

pub struct LocalUplink {
    pipeline: Pipeline,
    tx: mpsc::Sender<Job>,
}

impl LocalUplink {
    /// Starts the workers; they stop when the uplink is dropped.
    pub fn start(pipeline: Pipeline) -> Arc<Self> {
        let (tx, rx) = mpsc::channel::<Job>(BATCH * WORKERS);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..WORKERS {
            let rx = rx.clone();
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                let mut jobs: Vec<Job> = Vec::with_capacity(BATCH);
                let mut msgs: Vec<Inbound> = Vec::with_capacity(BATCH);
                loop {
                    // Take waiting jobs until about BATCH messages (a job is at least one).
                    {
                        let mut rx = rx.lock().await;
                        let Some(first) = rx.recv().await else {
                            return;
                        };
                        let mut n = first.0.len();
                        jobs.push(first);
                        while n < BATCH {
                            match rx.try_recv() {
                                Ok(job) => {
                                    n += job.0.len();
                                    jobs.push(job);
                                }
                                Err(_) => break,
                            }
                        }
                    }
                    let mut sizes = Vec::with_capacity(jobs.len());
                    let mut replies = Vec::with_capacity(jobs.len());
                    for (m, reply) in jobs.drain(..) {
                        sizes.push(m.len());
                        replies.push(reply);
                        msgs.extend(m);
                    }
                    let mut results = pipeline.process(&msgs).await.into_iter();
                    msgs.clear();
                    for (reply, n) in replies.into_iter().zip(sizes) {
                        let _ =
                            reply.send(results.by_ref().take(n).map(|r| r.map(|_| ())).collect());
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
        self.submit_all(vec![msg])
            .await
            .pop()
            .unwrap_or_else(|| Err("ingest answered nothing".to_owned()))
    }

    /// Stores messages that arrived together; one result per message, in order.
    pub async fn submit_all(&self, msgs: Vec<Inbound>) -> Vec<Result<(), String>> {
        let n = msgs.len();
        let failed = |why: &str| vec![Err(why.to_owned()); n];
        let (reply, rx) = oneshot::channel();
        if self.tx.send((msgs, reply)).await.is_err() {
            return failed("ingest is shutting down");
        }
        match rx.await {
            Ok(results) if results.len() == n => results,
            Ok(_) => failed("ingest answered a different number of results"),
            Err(_) => failed("ingest worker stopped"),
        }
    }
}

#[async_trait]
impl Uplink for LocalUplink {
    async fn accept(&self, msgs: Vec<Inbound>) -> Vec<Result<(), String>> {
        self.submit_all(msgs).await
    }

    async fn presence(&self, device: &DeviceIdentity, online: bool, at: DateTime<Utc>) {
        if let Err(e) = self
            .pipeline
            .presence(&device.integrator_id, &device.device_id, online, at)
            .await
        {
            tracing::warn!(device = %device.device_id, error = %Untrusted(&e), "presence not recorded");
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
            tracing::warn!(device = %device.device_id, error = %Untrusted(&e), "refused publish not quarantined");
        }
    }
}
