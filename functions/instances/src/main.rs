//! The management Lambda: `/instances` and the events API (list, redeliver) behind API Gateway.
//! Same router as the ingest and the local mode; `webhookUrl` comes from the request's domain and
//! stage, or from `PUBLIC_BASE_URL` (a custom domain).

// One invocation at a time per execution environment, and its work is I/O: a single-threaded
// runtime serves it as well, without starting a worker thread per core during init (~0.4 ms of
// the cold start, `make coldstart`).
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    relay_aws::lambda::run_http().await
}
