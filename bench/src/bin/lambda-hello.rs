//! Hello-world Lambda on `lambda_runtime` 1.x: echoes the JSON event.
//!
//! Baseline for `lambda-init`: the smallest cold init a Rust Lambda can have.

use lambda_runtime::{Error, LambdaEvent, service_fn};
use serde_json::Value;

async fn echo(event: LambdaEvent<Value>) -> Result<Value, Error> {
    Ok(event.payload)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(echo)).await
}
