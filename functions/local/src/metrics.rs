//! The local mode's metrics, in the Prometheus text formats on `METRICS_ADDR`:
//! requests by route and status, delivery attempts by outcome, and the queue as the store holds
//! it at each scrape. What the delivery function's CloudWatch metrics are on AWS
//! (`shared/aws/src/metrics.rs`), for a team that runs the local mode in production: a
//! dead-lettered notification, a growing backlog or a run of 503s can page someone.
//!
//! One registry per server (not a process-wide recorder), so that servers in one process (the
//! tests') count apart.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use relay_core::ports::{NextStep, StoreError};
use relay_core::retry::DeadLetterReason;
use relay_sqlite::{QueueDepth, SqliteStore};

/// The text format of a scrape's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// What a scrape that asks for it gets (Prometheus does).
    OpenMetrics,
    /// What any other scrape gets: the classic format, which every tool reads.
    Text,
}

impl Format {
    /// The format a scrape's `Accept` header asks for: OpenMetrics when it names it, else the
    /// classic text format.
    pub fn accepted(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Text,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    status: &'static str,
}

/// Seconds, from 1 ms to about 33 s: an answer of the API, an attempt up to its 15 s timeout.
fn seconds_buckets() -> Histogram {
    Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<RouteLabels, Histogram, fn() -> Histogram>,
    attempts: Family<OutcomeLabels, Counter>,
    attempt_seconds: Histogram,
    notifications: Family<StatusLabels, Gauge>,
    oldest_due_seconds: Gauge<f64, AtomicU64>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("greenhouse_relay");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by route (the router's, ids not filled in) and status",
            requests.clone(),
        );
        let request_seconds =
            Family::<RouteLabels, Histogram, fn() -> Histogram>::new_with_constructor(seconds_buckets);
        registry.register(
            "http_request_duration_seconds",
            "Time to answer a request, its body read included, by route",
            request_seconds.clone(),
        );
        let attempts = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "delivery_attempts",
            "Delivery attempts, by what followed: delivered, retried, dead_lettered (all attempts failed), \
             gone (the callback answered 410), instance_deleted, unrecorded (the store could not record it: \
             attempted again)",
            attempts.clone(),
        );
        let attempt_seconds = seconds_buckets();
        registry.register(
            "delivery_attempt_duration_seconds",
            "Time of one delivery attempt, the callback's answer and its record",
            attempt_seconds.clone(),
        );
        let notifications = Family::<StatusLabels, Gauge>::default();
        registry.register(
            "notifications",
            "Notifications in the store now, by status (pending: queued or awaiting a retry; failed: \
             dead-lettered, redeliverable)",
            notifications.clone(),
        );
        let oldest_due_seconds = Gauge::<f64, AtomicU64>::default();
        registry.register(
            "oldest_due_seconds",
            "How long the pending notification due first has been due (0 when none is overdue): the \
             backlog's age",
            oldest_due_seconds.clone(),
        );
        Arc::new(Metrics {
            registry,
            requests,
            request_seconds,
            attempts,
            attempt_seconds,
            notifications,
            oldest_due_seconds,
        })
    }

    pub fn request(&self, route: &'static str, status: u16, took: Duration) {
        self.requests.get_or_create(&RequestLabels { route, status }).inc();
        self.request_seconds.get_or_create(&RouteLabels { route }).observe(took.as_secs_f64());
    }

    pub fn attempt(&self, result: Result<&NextStep, &StoreError>, took: Duration) {
        let outcome = match result {
            Ok(NextStep::Delivered) => "delivered",
            Ok(NextStep::RetryAt { .. }) => "retried",
            Ok(NextStep::DeadLettered(DeadLetterReason::AttemptsExhausted)) => "dead_lettered",
            Ok(NextStep::DeadLettered(DeadLetterReason::Gone)) => "gone",
            Ok(NextStep::DeadLettered(DeadLetterReason::InstanceDeleted)) => "instance_deleted",
            Err(_) => "unrecorded",
        };
        self.attempts.get_or_create(&OutcomeLabels { outcome }).inc();
        self.attempt_seconds.observe(took.as_secs_f64());
    }

    fn queue(&self, depth: QueueDepth, now_ms: i64) {
        let set = |status, n: u64| self.notifications.get_or_create(&StatusLabels { status }).set(n as i64);
        set("pending", depth.pending);
        set("failed", depth.failed);
        let overdue_ms = depth.oldest_due_ms.map_or(0, |due| now_ms.saturating_sub(due).max(0));
        self.oldest_due_seconds.set(overdue_ms as f64 / 1000.0);
    }

    /// The text a scrape gets, in `format`: the counters as they are, the queue as the store
    /// holds it now. `Err` when the store cannot be read (the scrape then fails, which is itself
    /// a signal).
    pub async fn render(&self, store: &SqliteStore, now_ms: i64, format: Format) -> Result<String, StoreError> {
        self.queue(store.queue_depth().await?, now_ms);
        let mut text = String::new();
        // Writing to a String cannot fail.
        let _ = match format {
            Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut text, &self.registry),
            Format::Text => prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry),
        };
        Ok(text)
    }
}
