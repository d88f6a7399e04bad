//! The ingest Lambda: `POST /events/greenhouse/{id}` behind API Gateway. Answers 200 only after
//! SQS accepted the notification; 503 when DynamoDB or SQS fail, so Greenhouse retries.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    relay_aws::lambda::run_http().await
}
