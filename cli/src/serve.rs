//! `smartsite serve`: the single-box edition. One process hosts every concern's router over one
//! durable embedded store (redb in the data dir).

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use smartsite_shared::accounts::LocalAccounts;
use smartsite_shared::auth::{Authenticator, LocalIssuer, Role};
use smartsite_shared::directory::{Directory, User};
use smartsite_shared::domain::tenancy::UserId;
use smartsite_shared::iot::DeviceRegistry;
use smartsite_shared::iot::local::LocalRegistry;
use smartsite_shared::store::TableDef;
use smartsite_shared::store::embedded::{DbOptions, EmbeddedDb, EmbeddedStore};
use smartsite_shared::{fsutil, password};
use smartsite_tenants::AppState;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::broker::Broker;
use crate::uplink::LocalUplink;
use smartsite_alarms::service::{Alarms, Downlink};
use smartsite_safety_fund::service::Funds;
use smartsite_shared::fleet::Device;
use smartsite_shared::fleet::Fleet;
use smartsite_shared::ingest::Pipeline;
use smartsite_workforce::service::Workforce;
use smartsite_workforce::service::gate::GateObserver;
use smartsite_workforce::service::vault::LocalKeyVault;

#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// Where the store, keys and certificates live.
    #[arg(long, default_value = "./smartsite-data")]
    pub data_dir: PathBuf,
    /// HTTP API address; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub http: SocketAddr,
    /// MQTT over TLS with client certificates.
    #[arg(long, default_value = "127.0.0.1:8883")]
    pub mqtts: SocketAddr,
    /// Plain MQTT with device tokens (off unless given).
    #[arg(long)]
    pub mqtt: Option<SocketAddr>,
    /// HJ 212 TCP listener (off unless given).
    #[arg(long)]
    pub hj212: Option<SocketAddr>,
    /// HTTP: a request's headers must arrive within this many seconds (also between keep-alive
    /// requests), or the connection is closed.
    #[arg(long, env = "SMARTSITE_HTTP_HEADER_TIMEOUT_SECS", default_value_t = 10)]
    pub http_header_timeout_secs: u64,
    /// HTTP: connections open at once; beyond it new ones are closed.
    #[arg(long, env = "SMARTSITE_HTTP_MAX_CONNECTIONS", default_value_t = 4096)]
    pub http_max_connections: usize,
    /// HTTP: the largest request body, in bytes (413 beyond).
    #[arg(long, env = "SMARTSITE_HTTP_MAX_BODY_BYTES", default_value_t = 2 * 1024 * 1024)]
    pub http_max_body_bytes: usize,
    /// HTTP: the longest a request may take, in seconds (503 beyond).
    #[arg(
        long,
        env = "SMARTSITE_HTTP_REQUEST_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub http_request_timeout_secs: u64,
    /// Memory the store may use to cache pages, in MiB.
    #[arg(long, env = "SMARTSITE_STORE_CACHE_MB", default_value_t = 64)]
    pub store_cache_mb: usize,
    #[command(flatten)]
    pub mqtt_limits: crate::limits::MqttLimits,
    #[command(flatten)]
    pub hj212_limits: crate::limits::Hj212Limits,
}

/// The addresses actually bound, written to `DIR/endpoints.json`.
#[derive(Debug, Clone, Serialize)]
pub struct Endpoints {
    pub http: String,
    pub mqtts: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hj212: Option<String>,
}

pub const ENDPOINTS_FILE: &str = "endpoints.json";
pub const STORE_FILE: &str = "store.redb";
pub const KEYS_DIR: &str = "keys";
/// The local CA of device certificates.
pub const CA_DIR: &str = "ca";
pub const ADMIN_PASSWORD_FILE: &str = "admin-password";
pub const ADMIN_USERNAME: &str = "admin";
/// The `iss` of single-box tokens.
pub const ISSUER: &str = "smartsite-single-box";
/// Access tokens live 15 minutes.
pub const TOKEN_TTL_SECS: i64 = 900;

/// How often expired items are physically removed (reads already hide them).
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Runs until `shutdown` completes, then drains in-flight requests and returns.
pub async fn run(
    args: ServeArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // The store, keys, CA and passwords live here: owner-only, also for a dir that existed.
    fsutil::private_dir(&args.data_dir)
        .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    smartsite_shared::http::set_edge_limits(smartsite_shared::http::EdgeLimits {
        max_body_bytes: args.http_max_body_bytes,
        request_timeout: Duration::from_secs(args.http_request_timeout_secs.max(1)),
    });
    #[cfg(feature = "profile")]
    let profile = crate::profile::Profile::from_env(499)?;
    let store_path = args.data_dir.join(STORE_FILE);
    let options = DbOptions {
        cache_bytes: args.store_cache_mb.max(1) * 1024 * 1024,
    };
    let db = EmbeddedDb::open_with(&store_path, options).with_context(|| {
        format!(
            "cannot open the store {} (is another smartsite serve using this data dir?)",
            store_path.display()
        )
    })?;
    let main = db.store(TableDef::main()?)?;
    let store: Arc<EmbeddedStore> = Arc::new(main.clone());
    let issuer = Arc::new(LocalIssuer::load_or_create(
        &args.data_dir.join(KEYS_DIR),
        ISSUER,
        TOKEN_TTL_SECS,
    )?);
    let auth = Authenticator::Bearer(Arc::new(issuer.verifier()?));
    let accounts = Arc::new(LocalAccounts::new(Directory::new(store.clone())));
    let registry = Arc::new(LocalRegistry::open(
        &args.data_dir.join(CA_DIR),
        store.clone(),
    )?);
    // The broker needs the pipeline (uplink), the pipeline the alarm rules and the gate
    // decisions, those the broker (downlink): the downlink is bound once the broker exists.
    let downlink = Arc::new(BrokerDownlink::default());
    // Personal numbers of workers are sealed under data keys wrapped by the key file in keys/.
    let workforce = Workforce::with_default_rules(
        store.clone(),
        Arc::new(LocalKeyVault::new(
            args.data_dir.join(KEYS_DIR).join(LocalKeyVault::FILE),
        )),
    )?;
    let alarms = Alarms::new(store.clone()).with_downlink(downlink.clone());
    // Gates ask over MQTT; the workforce decides, stores, and answers on the gate's cmd topic.
    let gates = GateObserver::new(workforce.clone(), Directory::new(store.clone()))
        .with_downlink(downlink.clone());
    let pipeline = Pipeline::new(store.clone())
        .with_observer(Arc::new(alarms.clone()))
        .with_observer(Arc::new(gates));
    let uplink = LocalUplink::start(pipeline);
    let broker = Broker::new(
        registry.clone(),
        Fleet::new(store.clone()),
        uplink.clone(),
        &args.mqtt_limits,
    );
    let _ = downlink.broker.set(broker.clone());
    let funds = Funds::with_default_rules(store.clone())?.with_alarms(alarms.clone());
    // Billing wakes the safety-fund consumer when it issues an invoice funded by safety money.
    let handoff_wake = Arc::new(tokio::sync::Notify::new());
    let billing =
        smartsite_billing::Billing::new(store.clone()).with_issue_notify(handoff_wake.clone());
    let state = AppState::new(store, auth, Some(issuer), accounts);
    bootstrap_admin(&state, &args.data_dir).await?;

    let listener = TcpListener::bind(args.http)
        .await
        .with_context(|| format!("cannot listen for HTTP on {}", args.http))?;
    let http_addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = Vec::new();

    let mqtts = TcpListener::bind(args.mqtts)
        .await
        .with_context(|| format!("cannot listen for MQTT over TLS on {}", args.mqtts))?;
    let mqtts_addr = mqtts.local_addr()?;
    let tls = broker.tls_config(&server_names(mqtts_addr))?;
    tasks.push(tokio::spawn(broker.clone().serve_tls(
        mqtts,
        tls,
        stop_rx.clone(),
    )));
    let mut mqtt_addr = None;
    if let Some(addr) = args.mqtt {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for MQTT on {addr}"))?;
        mqtt_addr = Some(l.local_addr()?);
        tasks.push(tokio::spawn(broker.clone().serve_plain(l, stop_rx.clone())));
    }
    let mut hj212_addr = None;
    if let Some(addr) = args.hj212 {
        let l = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen for HJ 212 on {addr}"))?;
        hj212_addr = Some(l.local_addr()?);
        let sink = Arc::new(crate::hj212_sink::LocalHj212::new(uplink.clone()));
        let mut stop = stop_rx.clone();
        let limits = args.hj212_limits.clone();
        tasks.push(tokio::spawn(async move {
            let stopped = async move {
                let _ = stop.wait_for(|s| *s).await;
            };
            if let Err(e) = crate::hj212::serve(l, sink, stopped, &limits).await {
                tracing::error!(error = %e, "HJ 212 listener failed");
            }
        }));
    }

    tasks.push(tokio::spawn(scheduler(
        alarms.clone(),
        billing.clone(),
        stop_rx.clone(),
    )));
    tasks.push(tokio::spawn(handoff_consumer(
        funds.clone(),
        handoff_wake.clone(),
        stop_rx.clone(),
    )));
    let app = router(
        state,
        registry,
        Services {
            alarms,
            funds,
            billing,
            workforce,
        },
        format!("mqtts://{mqtts_addr}"),
    );
    // Before endpoints.json appears: a supervisor may signal the process as soon as it does,
    // and the signal handlers are installed only when the HTTP server starts.
    crate::limits::warn_if_fd_limit_below(
        u64::from(args.mqtt_limits.max_connections)
            + hj212_addr.map_or(0, |_| u64::from(args.hj212_limits.max_connections)),
    );
    let endpoints = Endpoints {
        http: http_addr.to_string(),
        mqtts: mqtts_addr.to_string(),
        mqtt: mqtt_addr.map(|a| a.to_string()),
        hj212: hj212_addr.map(|a| a.to_string()),
    };
    write_endpoints(&args.data_dir, &endpoints)?;
    println!(
        "smartsite serve: http {http_addr} (http://{http_addr}/healthz), mqtts {mqtts_addr}{}{}, data dir {}",
        mqtt_addr.map(|a| format!(", mqtt {a}")).unwrap_or_default(),
        hj212_addr
            .map(|a| format!(", hj212 {a}"))
            .unwrap_or_default(),
        args.data_dir.display()
    );
    tracing::info!(http = %http_addr, mqtts = %mqtts_addr, data_dir = %args.data_dir.display(), "ready");

    let purger = tokio::spawn(purge_loop(main));
    let limits = crate::http_server::HttpLimits {
        header_timeout: Duration::from_secs(args.http_header_timeout_secs.max(1)),
        max_connections: args.http_max_connections,
    };
    let served = crate::http_server::serve(listener, app, limits, shutdown).await;
    // Stop the device listeners; sessions acknowledge what they stored and close.
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    purger.abort();
    let _ = std::fs::remove_file(args.data_dir.join(ENDPOINTS_FILE));
    served.context("HTTP server failed")?;
    #[cfg(feature = "profile")]
    if let Some(p) = profile {
        p.finish()?;
    }
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The alarm rules' and the gates' way to devices: the broker, bound after it is built.
#[derive(Default)]
struct BrokerDownlink {
    broker: std::sync::OnceLock<Arc<Broker>>,
}

#[async_trait::async_trait]
impl Downlink for BrokerDownlink {
    async fn send(&self, device: &Device, payload: bytes::Bytes) -> bool {
        self.broker
            .get()
            .is_some_and(|b| b.send(device.id.as_str(), payload))
    }
}

/// How often the scheduler runs the offline check and the escalation sweep
/// (`SMARTSITE_SWEEP_SECS`, default 60).
fn sweep_every() -> Duration {
    std::env::var("SMARTSITE_SWEEP_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(Duration::from_secs(60), Duration::from_secs)
}

/// The single-box scheduler (EventBridge Scheduler's job in the AWS edition).
async fn scheduler(
    alarms: Alarms,
    billing: smartsite_billing::Billing,
    mut stop: watch::Receiver<bool>,
) {
    // Devices that went silent while the process was down still need their DU-OFFLINE.
    match alarms.seed_seen().await {
        Ok(n) => tracing::info!(devices = n, "offline sweep seeded from stored device state"),
        Err(e) => tracing::warn!(error = %e, "offline sweep not seeded"),
    }
    let mut tick = tokio::time::interval(sweep_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closed: Option<smartsite_shared::calendar::Period> = None;
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = alarms.sweep_offline().await {
            tracing::warn!(error = %e, "offline sweep failed");
        }
        match alarms.sweep_escalation(chrono::Utc::now()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(escalated = n, "escalation sweep"),
            Err(e) => tracing::warn!(error = %e, "escalation sweep failed"),
        }
        // The monthly close: the previous month once its grace window has passed, for every
        // integrator. Idempotent, so a restart that closes it again changes nothing.
        if let Some(period) = smartsite_billing::service::due_period(chrono::Utc::now())
            && closed != Some(period)
        {
            match smartsite_billing::close_period_for_all(
                Arc::clone(billing.store()),
                period,
                chrono::Utc::now(),
            )
            .await
            {
                Ok(r) if r.failed.is_empty() => {
                    tracing::info!(period = %period, invoices = r.invoices, "billing close");
                    closed = Some(period);
                }
                Ok(r) => {
                    tracing::warn!(period = %period, failed = ?r.failed, "billing close incomplete; retried next tick")
                }
                Err(e) => tracing::warn!(error = %e, "billing close failed; retried next tick"),
            }
        }
    }
}

/// The single-box safety-fund jobs: drains billing's invoice hand-off when billing wakes it and
/// on every sweep tick, and on every tick brings the ledger alarms in line with the flags the
/// calendar raised (the AWS edition runs both on an EventBridge schedule).
async fn handoff_consumer(
    funds: Funds,
    wake: Arc<tokio::sync::Notify>,
    mut stop: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(sweep_every());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let swept = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tick.tick() => true,
            _ = wake.notified() => false,
        };
        if swept
            && let Err(e) = funds
                .sweep_flags(smartsite_safety_fund::service::today())
                .await
        {
            tracing::warn!(error = %e, "safety-fund flag sweep failed");
        }
        match funds.drain_handoffs().await {
            Ok(r) if r == Default::default() => {}
            Ok(r) => tracing::info!(
                posted = r.posted,
                already = r.already_posted,
                failed = r.failed,
                "hand-off drained"
            ),
            Err(e) => tracing::warn!(error = %e, "hand-off drain failed"),
        }
    }
}

/// The services the concerns' routers share with the rest of the process.
pub struct Services {
    pub alarms: Alarms,
    pub funds: Funds,
    pub billing: smartsite_billing::Billing,
    pub workforce: Workforce,
}

/// Names the broker's server certificate is valid for: the bound IP, and `localhost` when bound
/// to a loopback or unspecified address.
fn server_names(addr: SocketAddr) -> Vec<String> {
    let mut names =
        std::collections::BTreeSet::from([addr.ip().to_string(), "localhost".to_owned()]);
    if addr.ip().is_unspecified() || addr.ip().is_loopback() {
        names.insert("127.0.0.1".to_owned());
    }
    names.into_iter().collect()
}

/// Every concern's routes, the OpenAPI document of all of them, one fallback, one tracing layer.
/// Each concern's routes get their own state (over the same store and authenticator); the
/// tenants `finish` then applies the write guard to all of them.
pub fn router(
    state: AppState,
    registry: Arc<dyn DeviceRegistry>,
    services: Services,
    mqtt_endpoint: String,
) -> Router {
    let (routes, mut doc) = smartsite_tenants::routes()
        .merge(smartsite_tenants::local_identity_routes())
        .split_for_parts();
    let (device_routes, device_doc) = smartsite_devices::routes().split_for_parts();
    doc.merge(device_doc);
    let devices = device_routes.with_state(smartsite_devices::AppState::new(
        Arc::clone(&state.store),
        state.auth.clone(),
        registry,
        mqtt_endpoint,
    ));
    let (ingest_routes, ingest_doc) = smartsite_ingest::routes().split_for_parts();
    doc.merge(ingest_doc);
    let ingest = ingest_routes.with_state(smartsite_ingest::AppState::new(
        Arc::clone(&state.store),
        state.auth.clone(),
    ));
    let (alarm_routes, alarm_doc) = smartsite_alarms::routes().split_for_parts();
    doc.merge(alarm_doc);
    let alarm_routes = alarm_routes.with_state(
        smartsite_alarms::AppState::new(
            Arc::clone(&state.store),
            state.auth.clone(),
            services.alarms,
        )
        .streaming(),
    );
    let (fund_routes, fund_doc) = smartsite_safety_fund::routes().split_for_parts();
    doc.merge(fund_doc);
    let fund_routes = fund_routes.with_state(smartsite_safety_fund::AppState::new(
        Arc::clone(&state.store),
        state.auth.clone(),
        services.funds,
    ));
    let (billing_routes, billing_doc) = smartsite_billing::routes().split_for_parts();
    doc.merge(billing_doc);
    let billing_routes = billing_routes.with_state(smartsite_billing::AppState::with_billing(
        Arc::clone(&state.store),
        state.auth.clone(),
        services.billing,
    ));
    let (workforce_routes, workforce_doc) = smartsite_workforce::routes().split_for_parts();
    doc.merge(workforce_doc);
    let workforce_routes = workforce_routes.with_state(smartsite_workforce::AppState::new(
        Arc::clone(&state.store),
        state.auth.clone(),
        services.workforce,
    ));
    let routes = routes
        .merge(devices)
        .merge(ingest)
        .merge(alarm_routes)
        .merge(fund_routes)
        .merge(billing_routes)
        .merge(workforce_routes);
    let doc = smartsite_tenants::openapi::finish(doc);
    let page = smartsite_tenants::openapi::docs_page(&doc);
    let doc = Arc::new(doc);
    let roles = Arc::clone(&doc);
    let public = Router::new()
        .route("/healthz", get(healthz))
        .route(
            "/openapi.json",
            get(move || std::future::ready(Json(Arc::clone(&doc)))),
        )
        .route(
            "/docs",
            get(move || std::future::ready(axum::response::Html(page.clone()))),
        );
    crate::console::mount(smartsite_tenants::finish(
        routes.merge(public),
        &roles,
        state,
    ))
}

/// Creates the platform administrator on first start: the password from
/// `SMARTSITE_ADMIN_PASSWORD`, or a generated one printed once and stored readable only by the
/// owner in `DIR/admin-password`.
async fn bootstrap_admin(state: &AppState, data_dir: &Path) -> anyhow::Result<()> {
    if state
        .directory
        .user_by_username(ADMIN_USERNAME)
        .await?
        .is_some()
    {
        return Ok(());
    }
    let (pw, generated) = match std::env::var("SMARTSITE_ADMIN_PASSWORD") {
        Ok(p) if !p.is_empty() => {
            password::check_strength(&p)
                .map_err(|m| anyhow::anyhow!("SMARTSITE_ADMIN_PASSWORD: {m}"))?;
            (p, false)
        }
        _ => (generate_password()?, true),
    };
    let user = User {
        id: UserId::generate(),
        username: ADMIN_USERNAME.into(),
        roles: vec![Role::PlatformAdmin],
        integrator_id: None,
        customer_id: None,
        created_at: chrono_now(),
    };
    state.accounts.create(&user, &pw).await?;
    if generated {
        let path = data_dir.join(ADMIN_PASSWORD_FILE);
        fsutil::write_private(&path, pw.as_bytes())?;
        println!(
            "created platform administrator '{ADMIN_USERNAME}' with password {pw} (also in {}, mode 0600)",
            path.display()
        );
    } else {
        println!(
            "created platform administrator '{ADMIN_USERNAME}' with the password from SMARTSITE_ADMIN_PASSWORD"
        );
    }
    Ok(())
}

fn generate_password() -> anyhow::Result<String> {
    use base64::Engine as _;
    let mut bytes = [0u8; 18];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| anyhow::anyhow!("no randomness"))?;
    // 24 base64url characters plus a fixed mixed tail so the strength rule always holds.
    Ok(format!(
        "{}-Ss9",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[derive(Serialize)]
struct Healthz {
    status: &'static str,
    edition: &'static str,
}

async fn healthz() -> Json<Healthz> {
    Json(Healthz {
        status: "ok",
        edition: "single-box",
    })
}

/// Writes the file atomically (temp file + rename) so readers never see half of it.
fn write_endpoints(dir: &Path, endpoints: &Endpoints) -> anyhow::Result<()> {
    fsutil::write_private(
        &dir.join(ENDPOINTS_FILE),
        &serde_json::to_vec_pretty(endpoints)?,
    )?;
    Ok(())
}

async fn purge_loop(store: EmbeddedStore) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    loop {
        tick.tick().await;
        match store.purge_expired(10_000).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired items removed"),
            Err(e) => tracing::warn!(error = %e, "purge of expired items failed"),
        }
    }
}

/// Completes on SIGINT or SIGTERM. The handlers are installed when this is called, not when the
/// future is first polled: `serve` writes `endpoints.json` (which tells the world it is up)
/// before its HTTP loop polls the future, and a SIGTERM in between used to kill the process
/// with the default action instead of stopping it cleanly.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    #[cfg(unix)]
    let int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt());
    async move {
        #[cfg(unix)]
        {
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(e) => {
                        tracing::error!(error = %e, signal = name, "cannot listen for the signal");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = wait(int, "SIGINT") => tracing::info!("SIGINT: shutting down"),
                () = wait(term, "SIGTERM") => tracing::info!("SIGTERM: shutting down"),
            }
        }
        #[cfg(not(unix))]
        {
            if let Err(e) = tokio::signal::ctrl_c().await {
                tracing::error!(error = %e, "cannot listen for Ctrl-C");
                std::future::pending::<()>().await;
            }
            tracing::info!("Ctrl-C: shutting down");
        }
    }
}

#[cfg(test)]
mod openapi_tests {
    #![allow(clippy::unwrap_used)]

    /// Every concern's OpenAPI document, as `router` merges them.
    fn concern_docs() -> Vec<(&'static str, utoipa::openapi::OpenApi)> {
        vec![
            ("tenants", smartsite_tenants::routes().split_for_parts().1),
            ("devices", smartsite_devices::routes().split_for_parts().1),
            ("ingest", smartsite_ingest::routes().split_for_parts().1),
            ("alarms", smartsite_alarms::routes().split_for_parts().1),
            (
                "safety-fund",
                smartsite_safety_fund::routes().split_for_parts().1,
            ),
            ("billing", smartsite_billing::routes().split_for_parts().1),
            (
                "workforce",
                smartsite_workforce::routes().split_for_parts().1,
            ),
        ]
    }

    /// `OpenApi::merge` keeps the first of two schemas of one name and drops the other without a
    /// word: two Rust types named `Status` in two concerns made the alarm's status show the
    /// customer's values. Any name two concerns define differently must be renamed
    /// (`#[schema(as = …)]`).
    #[test]
    fn no_two_concerns_define_one_schema_name_differently() {
        let docs = concern_docs();
        let mut clashes = Vec::new();
        for (i, (a, da)) in docs.iter().enumerate() {
            for (b, db) in &docs[i + 1..] {
                let (Some(ca), Some(cb)) = (&da.components, &db.components) else {
                    continue;
                };
                for (name, sa) in &ca.schemas {
                    if let Some(sb) = cb.schemas.get(name)
                        && serde_json::to_value(sa).unwrap() != serde_json::to_value(sb).unwrap()
                    {
                        clashes.push(format!("{name}: {a} and {b}"));
                    }
                }
            }
        }
        assert!(clashes.is_empty(), "schemas defined twice: {clashes:?}");
    }
}
