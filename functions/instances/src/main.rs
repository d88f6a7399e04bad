//! The management Lambda: `/instances` and the events API (list, redeliver) behind API Gateway.
//! Same router as the ingest and the local mode; `webhookUrl` comes from the request's domain and
//! stage, or from `PUBLIC_BASE_URL` (a custom domain).

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    relay_aws::lambda::run_http().await
}
