//! The `ingest` Lambda (AWS edition): consumes the SQS queue the IoT topic rule feeds, reporting
//! partial batch failures so SQS redelivers only the messages whose storing failed.

use std::sync::Arc;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{LambdaEvent, service_fn};
use smartsite_alarms::service::Alarms;
use smartsite_shared::config::AwsTableConfig;
use smartsite_shared::ingest::Pipeline;
use smartsite_shared::store::{Store, dynamo::DynamoStore};
use smartsite_shared::telemetry::{self, LogFormat};
use smartsite_workforce::service::Workforce;
use smartsite_workforce::service::gate::GateObserver;
use smartsite_workforce::service::vault::KmsKeyVault;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    telemetry::init(LogFormat::from_env());
    let table = AwsTableConfig::main_from_env()?;
    let aws = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    let store: Arc<dyn Store> = Arc::new(DynamoStore::from_sdk_config(&aws, &table));
    let alarms = Arc::new(Alarms::new(store.clone()));
    // Gate requests are decided and the decisions stored here. Answers are not published in this
    // edition yet (no IoT data-plane downlink): the gate sees no `cmd` until one is added.
    let workforce =
        Workforce::with_default_rules(store.clone(), Arc::new(KmsKeyVault::from_env(&aws)?))?;
    let gates = Arc::new(GateObserver::new(
        workforce,
        smartsite_shared::directory::Directory::new(store.clone()),
    ));
    let pipeline = Arc::new(
        Pipeline::new(store)
            .with_observer(alarms)
            .with_observer(gates),
    );
    lambda_runtime::run(service_fn(move |e: LambdaEvent<SqsEvent>| {
        let pipeline = pipeline.clone();
        async move {
            Ok::<SqsBatchResponse, lambda_runtime::Error>(
                smartsite_ingest::handle_sqs(&pipeline, e.payload).await,
            )
        }
    }))
    .await
}
