//! The management Lambda: `/instances` and the events API (list, redeliver) behind API Gateway.
//! Same router as the ingest and the local mode; `webhookUrl` comes from the request's domain and
//! stage, or from `PUBLIC_BASE_URL` (a custom domain).

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
