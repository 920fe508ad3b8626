//! A server to measure: `smartsite serve` started on a fresh data dir, a tenant onboarded over
//! HTTP, and the simulator's arguments for a fleet of its devices. Shared by mqtt-throughput,
//! soak and the flood commands.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;
use smartsite::simulate::{Scenario, SimulateArgs};
use smartsite_tests::Server;
use smartsite_tests::world::{Api, onboard};

/// The bootstrap admin's password on the servers the benches start.
pub const ADMIN_PASSWORD: &str = "Bench-Admin-2026!";

/// Starts `bin serve` on a fresh temp data dir (HTTP and MQTT over TLS on free ports, plus
/// `extra`), logging warnings only; stopped (SIGKILL) when dropped.
pub fn serve(bin: &Path, extra: &[&str]) -> anyhow::Result<Server> {
    Server::spawn_with(
        bin,
        extra,
        &[
            ("SMARTSITE_ADMIN_PASSWORD", ADMIN_PASSWORD),
            ("RUST_LOG", "warn"),
        ],
    )
}

/// An onboarded tenant whose integrator admin provisions the simulator's devices.
pub struct Fleet {
    pub endpoints: PathBuf,
    pub project: String,
    pub model: String,
    pub token: String,
}

/// Onboards a tenant on the server whose endpoints.json is `endpoints`.
pub async fn onboard_fleet(endpoints: &Path) -> anyhow::Result<Fleet> {
    let ep: Value = serde_json::from_slice(&std::fs::read(endpoints)?)?;
    let api = Api::new(&format!("http://{}", ep["http"].as_str().context("http")?));
    let admin = api.login("admin", ADMIN_PASSWORD).await?;
    let w = onboard(&api, &admin, "bench", "220100", "220102", 1).await?;
    let token = w.token("integrator_admin").to_owned();
    let (_, d) = api
        .call(
            "GET",
            &format!("/v1/devices/{}", w.device),
            Some(&token),
            None,
        )
        .await?;
    Ok(Fleet {
        endpoints: endpoints.to_owned(),
        project: w.project.clone(),
        model: d["model_id"].as_str().context("model")?.to_owned(),
        token,
    })
}

impl Fleet {
    /// The simulator's arguments: `devices` tower cranes of this tenant, QoS 1 with `inflight`
    /// unacknowledged publishes each, at `rate` msg/s over all (0: as fast as acks allow), for
    /// `duration` seconds or `messages` in all.
    pub fn simulate(
        &self,
        devices: usize,
        inflight: u16,
        rate: f64,
        duration: Option<u64>,
        messages: Option<u64>,
    ) -> SimulateArgs {
        SimulateArgs {
            endpoints: Some(self.endpoints.clone()),
            devices,
            rate,
            scenario: Scenario::Normal,
            duration,
            messages,
            project_id: Some(self.project.clone()),
            model_id: Some(self.model.clone()),
            token: Some(self.token.clone()),
            state: None,
            broker: None,
            inflight,
            sink: false,
        }
    }
}
