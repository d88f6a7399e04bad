//! The ingest Lambda: `POST /events/greenhouse/{id}` behind API Gateway. Answers 200 only after
//! SQS accepted the notification; 503 when DynamoDB or SQS fail, so Greenhouse retries.

use std::sync::Arc;

use lambda_http::{Error, service_fn};
use relay_aws::{Env, lambda};
use relay_callback::HttpCallback;

#[tokio::main]
async fn main() -> Result<(), Error> {
    tracing_subscriber::fmt().json().flatten_event(true).with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
    ).without_time().init();
    let env = Env::from_env()?;
    let store = lambda::store(&env).await;
    let callback = Arc::new(HttpCallback::new(env.policy.clone(), env.attempt_timeout)?);
    let api = lambda::api(&env, store, callback);
    lambda_http::run(service_fn(|req| {
        let api = &api;
        async move { Ok::<_, Error>(lambda::handle_http(api, req).await) }
    }))
    .await
}
