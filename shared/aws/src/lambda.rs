//! What the three Lambda entry points share: configuration from the environment, the HTTP
//! adapter onto the shared router, and the SQS batch handler of the delivery function.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use lambda_runtime::LambdaEvent;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use relay_core::api::{Api, ApiConfig, ApiError, PublicBaseUrl};
use relay_core::delivery::{self, DeliveryConfig};
use relay_core::network::NetworkPolicy;
use relay_core::ports::{Callback, Clock, Events, Instances, NextStep, QueuedEvent, SystemClock};
use relay_core::retry::DeadLetterReason;

use crate::dynamo::{CachedInstances, DynamoStore};
use crate::metrics::{Metrics, Outcomes};
use crate::queue::{Queue, QueueMessage};

/// Deployment configuration, read once per cold start.
#[derive(Clone)]
pub struct Env {
    pub table_name: String,
    pub queue_url: String,
    pub admin_user_secret: String,
    pub admin_org_secret: String,
    pub public_base_url: Option<String>,
    pub policy: NetworkPolicy,
    pub time_scale: f64,
    pub attempt_timeout: Duration,
    /// Delivered notifications expire this long after delivery (`EVENT_RETENTION_DAYS`).
    pub event_retention: Duration,
    /// A PEM file of roots callbacks are also verified against (`CALLBACK_CA_BUNDLE`).
    pub callback_ca_bundle: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Env {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Env")
            .field("table_name", &self.table_name)
            .field("queue_url", &self.queue_url)
            .field("public_base_url", &self.public_base_url)
            .field("policy", &self.policy)
            .field("time_scale", &self.time_scale)
            .field("event_retention", &self.event_retention)
            .field("callback_ca_bundle", &self.callback_ca_bundle)
            .finish_non_exhaustive()
    }
}

impl Env {
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|k| std::env::var(k).ok())
    }

    /// The configuration from `lookup` (an unset or empty variable is absent).
    pub fn from_vars(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let var = |k: &str| lookup(k).filter(|v| !v.is_empty());
        let need = |k: &str| var(k).ok_or_else(|| format!("{k} is not set"));
        let allow = NetworkPolicy::parse_allow_list(&var("CALLBACK_ALLOW_NETS").unwrap_or_default())
            .map_err(|e| format!("CALLBACK_ALLOW_NETS: {e}"))?;
        Ok(Env {
            table_name: need("TABLE_NAME")?,
            queue_url: need("QUEUE_URL")?,
            admin_user_secret: var("ADMIN_USER_SECRET").unwrap_or_default(),
            admin_org_secret: var("ADMIN_ORG_SECRET").unwrap_or_default(),
            public_base_url: var("PUBLIC_BASE_URL")
                .map(|v| relay_core::api::public_base_url(&v).map_err(|e| format!("PUBLIC_BASE_URL {e}")))
                .transpose()?,
            policy: NetworkPolicy {
                allow,
                allow_http_to_allowed_nets: match var("CALLBACK_ALLOW_HTTP").as_deref() {
                    None | Some("false") => false,
                    Some("true") => true,
                    Some(v) => return Err(format!("CALLBACK_ALLOW_HTTP: {v:?} is neither true nor false")),
                },
            },
            time_scale: match var("DELIVERY_TIME_SCALE") {
                None => 1.0,
                Some(v) => match v.parse::<f64>() {
                    Ok(scale) if delivery::is_time_scale(scale) => scale,
                    _ => return Err(format!("DELIVERY_TIME_SCALE: {v:?} is not a number above 0")),
                },
            },
            attempt_timeout: match var("DELIVERY_TIMEOUT_MS") {
                None => relay_core::retry::ATTEMPT_TIMEOUT,
                Some(v) => match v.parse::<u64>() {
                    Ok(ms) if delivery::ATTEMPT_TIMEOUT_MS.contains(&ms) => Duration::from_millis(ms),
                    _ => {
                        let (from, to) = delivery::ATTEMPT_TIMEOUT_MS.into_inner();
                        return Err(format!(
                            "DELIVERY_TIMEOUT_MS: {v:?} is not a number of milliseconds from {from} to {to}"
                        ));
                    }
                },
            },
            event_retention: match var("EVENT_RETENTION_DAYS") {
                None => crate::dynamo::DEFAULT_RETENTION,
                Some(days) => match days.parse::<u64>() {
                    Ok(d) if delivery::RETENTION_DAYS.contains(&d) => Duration::from_secs(d * 24 * 3600),
                    _ => {
                        let (from, to) = delivery::RETENTION_DAYS.into_inner();
                        return Err(format!(
                            "EVENT_RETENTION_DAYS: {days:?} is not a number of days from {from} to {to}"
                        ));
                    }
                },
            },
            callback_ca_bundle: var("CALLBACK_CA_BUNDLE").map(Into::into),
        })
    }

    /// The callback sender this configuration describes (its roots read and checked now).
    pub fn callback(&self) -> Result<relay_callback::HttpCallback, String> {
        let callback = relay_callback::HttpCallback::new(self.policy.clone(), self.attempt_timeout)?;
        match &self.callback_ca_bundle {
            Some(path) => callback.with_ca_bundle_file(path),
            None => Ok(callback),
        }
    }
}

/// JSON logs for CloudWatch (Lambda adds the timestamp); `RUST_LOG` filters.
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().json().flatten_event(true).with_env_filter(filter).without_time().init();
}

/// The whole `main` of an HTTP function (ingest, instances): state once per cold start, then
/// every API Gateway request through the shared router.
pub async fn run_http() -> Result<(), lambda_runtime::Error> {
    init_tracing();
    let env = Env::from_env()?;
    let store = store(&env).await?;
    let callback = Arc::new(env.callback()?);
    let api = api(&env, store, callback);
    lambda_runtime::run(lambda_runtime::service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let api = &api;
        async move { Ok::<_, lambda_runtime::Error>(handle_http(api, event).await) }
    }))
    .await
}

/// The SDK configuration of a function, on the compiled-in-roots HTTPS client
/// ([`crate::http`]). Lambda always hands a function its role's credentials and its region in
/// environment variables, so when they are there the configuration is built from them alone:
/// the default chains would also construct the instance-metadata, container, SSO and
/// web-identity providers on every cold start, only to consult the environment first anyway.
/// Without them (a laptop, a test) it is the default chain.
pub async fn sdk_config() -> Result<aws_config::SdkConfig, String> {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let http = crate::http::SdkHttpClient::from_env()?;
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .timeout_config(timeouts(ATTEMPT_TIMEOUT, OPERATION_TIMEOUT));
    if set("AWS_ACCESS_KEY_ID") && set("AWS_SECRET_ACCESS_KEY") {
        loader = loader.credentials_provider(aws_config::environment::EnvironmentVariableCredentialsProvider::new());
    }
    if set("AWS_REGION") || set("AWS_DEFAULT_REGION") {
        loader = loader.region(aws_config::environment::EnvironmentVariableRegionProvider::new());
    }
    Ok(loader.load().await)
}

/// One DynamoDB or SQS attempt (a few ms in a region, 300 KB chunks included) gives up after
/// this; the SDK retries it.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(3);

/// One call, retries included, gives up after this: under the 10 s of the HTTP functions, so a
/// hung DynamoDB or SQS becomes a 503 they answer (and log), not a function timeout; and in the
/// delivery function one record's failure, not the whole batch's.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(8);

/// The functions' SDK timeouts (the SDK sets none but a 3.1 s connect timeout by default).
pub fn timeouts(attempt: Duration, operation: Duration) -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(attempt.min(Duration::from_secs(2)))
        .operation_attempt_timeout(attempt)
        .operation_timeout(operation)
        .build()
}

/// The AWS clients, from the standard environment (`AWS_ENDPOINT_URL` points them at an
/// emulator in tests).
pub async fn store(env: &Env) -> Result<DynamoStore, String> {
    let conf = sdk_config().await?;
    let dynamo = aws_sdk_dynamodb::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    Ok(DynamoStore::new(dynamo, env.table_name.clone(), Queue::new(sqs, env.queue_url.clone()))
        .with_retention(env.event_retention))
}

pub fn api(env: &Env, store: DynamoStore, callback: Arc<dyn Callback>) -> Api {
    Api {
        instances: Arc::new(store.clone()),
        events: Arc::new(store),
        callback,
        clock: Arc::new(SystemClock),
        config: Arc::new(ApiConfig {
            admin_user_secret: env.admin_user_secret.clone(),
            admin_org_secret: env.admin_org_secret.clone(),
            public_base_url: env.public_base_url.clone(),
            policy: env.policy.clone(),
        }),
    }
}

/// Bytes a URI path keeps as they are (RFC 3986 `pchar`, `/`, and `%` so that escapes stay
/// escapes); every other byte, non-ASCII ones included, is percent-encoded.
const PATH_KEEPS: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'!')
    .remove(b'$')
    .remove(b'&')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')')
    .remove(b'*')
    .remove(b'+')
    .remove(b',')
    .remove(b';')
    .remove(b'=')
    .remove(b':')
    .remove(b'@')
    .remove(b'/')
    .remove(b'%');
/// A query keeps `?` too.
const QUERY_KEEPS: &AsciiSet = &PATH_KEEPS.remove(b'?');

/// One API Gateway (HTTP API, payload 2.0) request through the shared router.
///
/// The event becomes an `http::Request` here rather than in `lambda_http`, whose conversion
/// panics on a raw query string holding a byte `http::Uri` refuses (a space, `"`, `{`, `|`...:
/// aws-lambda-rust-runtime#515), so that any client could make the function fail (500, and the
/// errors alarm) with one odd URL. Here such bytes are percent-encoded, which the router decodes
/// back: the request means what it meant. `tests/http_events.rs` holds this conversion to
/// `lambda_http`'s wherever that one does not panic.
pub async fn handle_http(api: &Api, event: LambdaEvent<ApiGatewayV2httpRequest>) -> ApiGatewayV2httpResponse {
    let LambdaEvent { payload, context } = event;
    let ctx = &payload.request_context;
    let request_id = [ctx.request_id.as_deref(), Some(context.request_id.as_str())]
        .into_iter()
        .flatten()
        .find(|id| !id.is_empty())
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let response = match request(payload) {
        Ok(req) => api.handle(req, &request_id).await,
        Err(e) => ApiError::BadRequest(e).into_response(&request_id),
    };
    let (parts, body) = response.into_parts();
    let mut out = ApiGatewayV2httpResponse::default();
    out.status_code = i64::from(parts.status.as_u16());
    out.headers = parts.headers;
    (out.body, out.is_base64_encoded) = match String::from_utf8(body.to_vec()) {
        Ok(text) if text.is_empty() => (None, false),
        Ok(text) => (Some(Body::Text(text)), false),
        Err(e) => (Some(Body::Binary(e.into_bytes())), true),
    };
    out
}

/// The `http::Request` an API Gateway event stands for: `rawPath` (without the stage, for a
/// named stage) and `rawQueryString`, bytes a URI cannot hold percent-encoded; the headers; the
/// body, base64-decoded when API Gateway encoded it; the public base URL of the API (its domain
/// and stage) as the `PublicBaseUrl` extension.
pub fn request(event: ApiGatewayV2httpRequest) -> Result<http::Request<Bytes>, String> {
    let ctx = event.request_context;
    let stage = ctx.stage.as_deref().filter(|s| !s.is_empty() && *s != "$default");
    let mut path = event.raw_path.unwrap_or_default();
    if let Some(stage) = stage
        && let Some(rest) = path.strip_prefix(&format!("/{stage}"))
        && (rest.is_empty() || rest.starts_with('/'))
    {
        path = rest.to_owned();
    }
    if !path.starts_with('/') {
        path.insert(0, '/');
    }
    let mut uri = utf8_percent_encode(&path, PATH_KEEPS).to_string();
    if let Some(query) = event.raw_query_string.as_deref().filter(|q| !q.is_empty()) {
        uri.push('?');
        uri.extend(utf8_percent_encode(query, QUERY_KEEPS));
    }
    let body = match event.body {
        None => Bytes::new(),
        Some(b) if event.is_base64_encoded => {
            Bytes::from(BASE64.decode(b).map_err(|e| format!("the body is not valid base64: {e}"))?)
        }
        Some(b) => Bytes::from(b),
    };
    let mut req = http::Request::builder()
        .method(ctx.http.method)
        .uri(uri)
        .body(body)
        .map_err(|e| format!("the request's URL cannot be read: {e}"))?;
    *req.headers_mut() = event.headers;
    if let Some(cookies) = event.cookies.filter(|c| !c.is_empty())
        && let Ok(v) = http::HeaderValue::from_str(&cookies.join("; "))
    {
        req.headers_mut().insert(http::header::COOKIE, v);
    }
    if let Some(domain) = ctx.domain_name.filter(|d| !d.is_empty()) {
        let base = match stage {
            None => format!("https://{domain}"),
            Some(stage) => format!("https://{domain}/{stage}"),
        };
        req.extensions_mut().insert(PublicBaseUrl(base));
    }
    Ok(req)
}

/// How much earlier than its due time a message may come back and still get its attempt: the
/// delay is rounded up to SQS's whole seconds (`Queue::retry_after`), so this only covers the
/// clocks of SQS and the function. A message back earlier is hidden again for the rest: one whose
/// delay SQS could not hold (over 12 h) or could not set, and a second copy of a message (SQS
/// delivers at least once). With 60 s here, a copy could bring the first retry (5 s) forward:
/// the Lambda conformance run once saw it after 3.1 s.
pub const EARLY_SLACK_MS: i64 = 500;

/// The delivery function's state, built once per cold start.
pub struct Delivery {
    pub instances: CachedInstances<DynamoStore>,
    pub events: DynamoStore,
    pub callback: Arc<dyn Callback>,
    pub clock: Arc<dyn Clock>,
    pub config: DeliveryConfig,
    /// One EMF line per batch (`crate::metrics`), when set.
    pub metrics: Option<Metrics>,
}

/// What became of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Delivered,
    Retried,
    DeadLettered,
    Gone,
    InstanceDeleted,
    Settled,
    Deferred,
    Unprocessed,
}

impl Delivery {
    pub fn new(store: DynamoStore, callback: Arc<dyn Callback>, time_scale: f64) -> Self {
        Delivery {
            instances: CachedInstances::new(store.clone(), Duration::from_secs(30)),
            events: store,
            callback,
            clock: Arc::new(SystemClock),
            config: DeliveryConfig { time_scale },
            metrics: None,
        }
    }

    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = Some(metrics);
        self
    }

    /// Delivers every record of the batch concurrently. A record whose attempt failed gets its
    /// visibility set to the next retry delay and is reported in `batchItemFailures`, so SQS
    /// keeps it; delivered and dead-lettered records are left to be deleted.
    pub async fn handle_batch(&self, event: SqsEvent) -> SqsBatchResponse {
        let results = futures_util::future::join_all(event.records.iter().map(|r| self.handle_record(r))).await;
        let mut response = SqsBatchResponse::default();
        let mut outcomes = Outcomes::default();
        for (record, outcome) in event.records.iter().zip(results) {
            let count = match outcome {
                Outcome::Delivered => &mut outcomes.delivered,
                Outcome::Retried => &mut outcomes.retried,
                Outcome::DeadLettered => &mut outcomes.dead_lettered,
                Outcome::Gone => &mut outcomes.gone,
                Outcome::InstanceDeleted => &mut outcomes.instance_deleted,
                Outcome::Settled => &mut outcomes.settled,
                Outcome::Deferred => &mut outcomes.deferred,
                Outcome::Unprocessed => &mut outcomes.unprocessed,
            };
            *count += 1;
            // Only the retried, the deferred and the unprocessed stay: SQS may delete the others'
            // messages.
            if matches!(outcome, Outcome::Retried | Outcome::Deferred | Outcome::Unprocessed) {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = record.message_id.clone().unwrap_or_default();
                response.batch_item_failures.push(failure);
            }
        }
        if let Some(metrics) = &self.metrics {
            metrics.record(self.clock.now_ms(), &outcomes);
        }
        response
    }

    /// Hides the record's message for `delay` (SQS holds 12 h at most). If that fails, the
    /// queue's own visibility timeout applies: the message comes back early and is deferred
    /// again then, as one SQS could not hold for the whole delay is.
    async fn hide(&self, record: &SqsMessage, event_id: &str, delay: Duration) {
        if let Some(handle) = &record.receipt_handle
            && let Err(e) = self.events.queue().retry_after(handle, delay).await
        {
            tracing::warn!(event_id = %event_id, error = %e, "could not set the retry delay");
        }
    }

    async fn handle_record(&self, record: &SqsMessage) -> Outcome {
        let id = record.message_id.clone().unwrap_or_default();
        let Some(message) = record.body.as_deref().and_then(|b| QueueMessage::decode(b).ok()) else {
            // Unreadable: keep failing it, so the redrive policy moves it to the dead-letter queue.
            tracing::error!(message_id = %id, "unreadable queue message");
            return Outcome::Unprocessed;
        };
        // The row first: a message whose notification is settled is not attempted again, as the
        // local worker only ever claims pending notifications. Too large for a message, the
        // bytes come with it (from the row or its chunks).
        let with_body = message.notification.is_none();
        let row = match self.events.delivery_state(&message.event_id, with_body).await {
            Ok(row) => row,
            Err(e) => {
                tracing::error!(event_id = %message.event_id, error = %e, "notification not read; SQS will retry");
                return Outcome::Unprocessed;
            }
        };
        if let Some(row) = &row
            && row.settled_for(message.series)
        {
            tracing::info!(
                event_id = %message.event_id,
                series = message.series,
                row_series = row.series,
                status = row.status.as_str(),
                "message of a settled notification acknowledged without an attempt"
            );
            return Outcome::Settled;
        }
        // Back before its attempt is due (a delay over SQS's 12 h, or the queue's own visibility
        // timeout after setting the delay failed): hidden again for the rest, without an attempt.
        // The slack covers SQS's whole seconds and clocks; only delays cut short matter here.
        if let Some(wait) = row.as_ref().and_then(|r| r.wait_for(message.series, self.clock.now_ms(), EARLY_SLACK_MS)) {
            self.hide(record, &message.event_id, wait).await;
            tracing::info!(event_id = %message.event_id, wait_s = wait.as_secs(), "message back before its attempt is due: hidden again");
            return Outcome::Deferred;
        }
        let attempts = row.as_ref().map(|r| r.attempts_for(message.series));
        let receives: u32 = record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
        let body = match (message.notification, row.and_then(|r| r.body)) {
            (Some(body), _) | (None, Some(body)) => body,
            (None, None) => {
                tracing::error!(message_id = %id, event_id = %message.event_id, "queued notification not in the table");
                return Outcome::Unprocessed;
            }
        };
        let queued = QueuedEvent {
            event_id: message.event_id,
            instance_id: message.instance_id,
            series: message.series,
            // Without a row (nothing records its attempts), SQS's count still ends the schedule.
            attempts: attempts.unwrap_or(receives.saturating_sub(1)),
            body,
        };
        let instances: &dyn Instances = &self.instances;
        let events: &dyn Events = &self.events;
        match delivery::deliver(instances, events, self.callback.as_ref(), self.clock.as_ref(), self.config, &queued)
            .await
        {
            Ok(NextStep::Delivered) => Outcome::Delivered,
            Ok(NextStep::DeadLettered(DeadLetterReason::Gone)) => Outcome::Gone,
            Ok(NextStep::DeadLettered(DeadLetterReason::AttemptsExhausted)) => Outcome::DeadLettered,
            Ok(NextStep::DeadLettered(DeadLetterReason::InstanceDeleted)) => Outcome::InstanceDeleted,
            Ok(NextStep::RetryAt { at_ms }) => {
                let delay = Duration::from_millis((at_ms - self.clock.now_ms()).max(0) as u64);
                self.hide(record, &queued.event_id, delay).await;
                Outcome::Retried
            }
            Err(e) => {
                tracing::error!(event_id = %queued.event_id, error = %e, "attempt not recorded; SQS will retry");
                Outcome::Unprocessed
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(extra: &[(&str, &str)]) -> Result<Env, String> {
        let vars: std::collections::HashMap<String, String> = [("TABLE_NAME", "t"), ("QUEUE_URL", "q")]
            .iter()
            .chain(extra)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Env::from_vars(|k| vars.get(k).cloned())
    }

    #[test]
    fn event_retention_is_30_days_unless_set_to_1_to_36500() {
        assert_eq!(env(&[]).unwrap().event_retention, Duration::from_secs(30 * 86400));
        assert_eq!(env(&[("EVENT_RETENTION_DAYS", "")]).unwrap().event_retention, Duration::from_secs(30 * 86400));
        assert_eq!(env(&[("EVENT_RETENTION_DAYS", "7")]).unwrap().event_retention, Duration::from_secs(7 * 86400));
        for bad in ["0", "-1", "seven", "36501", "1.5"] {
            let e = env(&[("EVENT_RETENTION_DAYS", bad)]).unwrap_err();
            assert!(e.starts_with("EVENT_RETENTION_DAYS"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_setting_that_does_not_parse_stops_the_start_instead_of_falling_back() {
        let ok = env(&[
            ("PUBLIC_BASE_URL", "https://relay.example.com/"),
            ("CALLBACK_ALLOW_HTTP", "true"),
            ("DELIVERY_TIME_SCALE", "0.001"),
            ("DELIVERY_TIMEOUT_MS", "2000"),
        ])
        .unwrap();
        assert_eq!(ok.public_base_url.as_deref(), Some("https://relay.example.com"));
        assert!(ok.policy.allow_http_to_allowed_nets);
        assert_eq!((ok.time_scale, ok.attempt_timeout), (0.001, Duration::from_secs(2)));
        let defaults = env(&[]).unwrap();
        assert_eq!(defaults.public_base_url, None);
        assert!(!defaults.policy.allow_http_to_allowed_nets);
        assert_eq!((defaults.time_scale, defaults.attempt_timeout), (1.0, relay_core::retry::ATTEMPT_TIMEOUT));
        for (name, bad) in [
            ("PUBLIC_BASE_URL", "relay.example.com"),
            ("PUBLIC_BASE_URL", "https://u:p@relay.example.com"),
            ("CALLBACK_ALLOW_HTTP", "yes"),
            ("CALLBACK_ALLOW_HTTP", "TRUE"),
            ("DELIVERY_TIME_SCALE", "0"),
            ("DELIVERY_TIME_SCALE", "-1"),
            ("DELIVERY_TIME_SCALE", "NaN"),
            ("DELIVERY_TIME_SCALE", "fast"),
            ("DELIVERY_TIMEOUT_MS", "15s"),
            ("DELIVERY_TIMEOUT_MS", "0"),
            ("DELIVERY_TIMEOUT_MS", "900001"),
        ] {
            let e = env(&[(name, bad)]).unwrap_err();
            assert!(e.starts_with(name), "{name}={bad}: {e}");
        }
    }

    #[test]
    fn callback_ca_bundle_adds_roots_and_stops_the_start_when_unusable() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(env(&[]).unwrap().callback_ca_bundle, None);
        assert!(env(&[]).unwrap().callback().is_ok());
        let good = dir.path().join("ca.pem");
        let pem = rcgen::generate_simple_self_signed(vec!["receiver.internal".to_owned()]).unwrap().cert.pem();
        std::fs::write(&good, pem).unwrap();
        let with = env(&[("CALLBACK_CA_BUNDLE", good.to_str().unwrap())]).unwrap();
        assert_eq!(with.callback_ca_bundle.as_deref(), Some(good.as_path()));
        assert!(with.callback().is_ok());
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        for bad in [dir.path().join("missing.pem"), empty] {
            let e = env(&[("CALLBACK_CA_BUNDLE", bad.to_str().unwrap())]).unwrap().callback().err().unwrap();
            assert!(e.starts_with("CALLBACK_CA_BUNDLE"), "{e}");
            assert!(e.contains(bad.to_str().unwrap()), "{e}");
        }
    }

    #[test]
    fn the_configuration_shows_in_debug_output_without_the_admin_secrets() {
        let env = env(&[
            ("ADMIN_USER_SECRET", "user-secret-1234"),
            ("ADMIN_ORG_SECRET", "org-secret-5678"),
            ("DELIVERY_TIME_SCALE", "0.5"),
        ])
        .unwrap();
        let shown = format!("{env:?}");
        for part in ["table_name: \"t\"", "queue_url: \"q\"", "time_scale: 0.5", "policy: "] {
            assert!(shown.contains(part), "{part} not in {shown}");
        }
        assert!(!shown.contains("user-secret-1234") && !shown.contains("org-secret-5678"), "{shown}");
    }

    #[test]
    fn table_and_queue_are_required() {
        let e = Env::from_vars(|_| None).unwrap_err();
        assert!(e.contains("TABLE_NAME"), "{e}");
    }
}
