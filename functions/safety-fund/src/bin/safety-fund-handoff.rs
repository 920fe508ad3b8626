//! The safety-fund jobs Lambda (AWS edition), invoked by EventBridge Scheduler: posts every pending
//! billing hand-off (the issue, credit notes and void of a funded invoice, see
//! `smartsite_shared::handoff`) to its project's ledger, then brings the ledger alarms in line
//! with the flags standing today.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use smartsite_shared::alarming::Alarms;
use smartsite_shared::config::AwsTableConfig;
use smartsite_shared::funds::{DrainReport, Funds, today};
use smartsite_shared::store::{Store, dynamo::DynamoStore};
use smartsite_shared::telemetry::{self, LogFormat};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(LogFormat::from_env());
    let table = AwsTableConfig::main_from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store: Arc<dyn Store> = Arc::new(DynamoStore::from_sdk_config(&aws, &table));
    let funds = Funds::with_default_rules(store.clone())?.with_alarms(Alarms::new(store));
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| {
        let funds = funds.clone();
        async move {
            let report: DrainReport = funds.drain_handoffs().await?;
            let flagged = funds.sweep_flags(today()).await?;
            tracing::info!(?report, flagged, "hand-off drained, flags swept");
            Ok::<_, lambda_runtime::Error>(
                serde_json::json!({"handoff": report, "flagged_projects": flagged}),
            )
        }
    }))
    .await
}
