//! Baseline for the cold-start measurement: the smallest `lambda_runtime` function.
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<SqsEvent>| async { Ok::<_, Error>(SqsBatchResponse::default()) }))
        .await
}
