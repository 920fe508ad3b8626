//! The scheduled period close (AWS edition): EventBridge Scheduler invokes it monthly, after the
//! grace window; it closes the previous month for every integrator (idempotent, so a retried
//! invocation changes nothing). An explicit `{"period": "YYYY-MM"}` payload closes that month.

use std::sync::Arc;

use lambda_runtime::{LambdaEvent, service_fn};
use smartsite_billing::domain::Period;
use smartsite_billing::{CloseReport, close_all, close_period_for_all};
use smartsite_shared::config::AwsTableConfig;
use smartsite_shared::store::{Store, dynamo::DynamoStore};
use smartsite_shared::telemetry::{self, LogFormat};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(LogFormat::from_env());
    let table = AwsTableConfig::main_from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store: Arc<dyn Store> = Arc::new(DynamoStore::from_sdk_config(&aws, &table));
    lambda_runtime::run(service_fn(move |e: LambdaEvent<serde_json::Value>| {
        let store = Arc::clone(&store);
        async move {
            let now = chrono::Utc::now();
            let report: CloseReport = match e.payload.get("period").and_then(|p| p.as_str()) {
                Some(p) => close_period_for_all(store, Period::parse(p)?, now).await?,
                None => close_all(store, now).await?,
            };
            if !report.failed.is_empty() {
                // Failing the invocation makes the scheduler retry; the close is idempotent.
                return Err(lambda_runtime::Error::from(format!(
                    "billing close failed for {:?}",
                    report.failed
                )));
            }
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
        }
    }))
    .await
}
