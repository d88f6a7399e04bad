//! The hello-world baseline of `make coldstart` on a single-threaded runtime, like the functions.
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent};
use lambda_runtime::{Error, LambdaEvent, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<SqsEvent>| async { Ok::<_, Error>(SqsBatchResponse::default()) }))
        .await
}
