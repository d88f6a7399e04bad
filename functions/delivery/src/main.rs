//! The delivery Lambda: SQS event source with partial batch responses. Each record is attempted
//! once; a failure sets the message's visibility to the next retry delay and is reported in
//! `batchItemFailures`.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};
use relay_aws::{Delivery, Env, lambda};

// One invocation at a time per execution environment, and its work is I/O: a single-threaded
// runtime serves it as well, without starting a worker thread per core during init (~0.4 ms of
// the cold start, `make coldstart`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda::init_tracing();
    let env = Env::from_env()?;
    let store = lambda::store(&env).await?;
    let callback = env.callback()?;
    // Delivering is this function's work: pay for the TLS setup during init, not on the first event.
    callback.warm()?;
    let callback = Arc::new(callback);
    let mut delivery = Delivery::new(store, callback, env.time_scale);
    // Lambda names the function in its environment; the metrics' `Function` dimension.
    if let Ok(name) = std::env::var("AWS_LAMBDA_FUNCTION_NAME") {
        delivery = delivery.with_metrics(relay_aws::metrics::Metrics::stdout(name));
    }
    lambda_runtime::run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let delivery = &delivery;
        async move { Ok::<SqsBatchResponse, Error>(delivery.handle_batch(event.payload).await) }
    }))
    .await
}
