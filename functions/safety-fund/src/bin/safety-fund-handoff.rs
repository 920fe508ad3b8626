//! The billing hand-off consumer Lambda (AWS edition): invoked by EventBridge Scheduler, it posts
//! every pending `InvoiceIssued` event to its project's ledger (see `smartsite_shared::handoff`).

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use smartsite_shared::config::AwsTableConfig;
use smartsite_shared::funds::{DrainReport, Funds};
use smartsite_shared::store::{Store, dynamo::DynamoStore};
use smartsite_shared::telemetry::{self, LogFormat};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(LogFormat::from_env());
    let table = AwsTableConfig::main_from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store: Arc<dyn Store> = Arc::new(DynamoStore::from_sdk_config(&aws, &table));
    let funds = Funds::with_default_rules(store)?;
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| {
        let funds = funds.clone();
        async move {
            let report: DrainReport = funds.drain_handoffs().await?;
            tracing::info!(?report, "hand-off drained");
            Ok::<_, lambda_runtime::Error>(report)
        }
    }))
    .await
}
