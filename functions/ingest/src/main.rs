//! The ingest Lambda: `POST /events/greenhouse/{id}` behind API Gateway. Answers 200 only after
//! SQS accepted the notification; 503 when DynamoDB or SQS fail, so Greenhouse retries.

// One invocation at a time per execution environment, and its work is I/O: a single-threaded
// runtime serves it as well, without starting a worker thread per core during init (~0.4 ms of
// the cold start, `make coldstart`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    relay_aws::lambda::run_http().await
}
