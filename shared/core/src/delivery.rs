//! Use case: one delivery attempt of one queued notification, and what follows it.

use std::ops::RangeInclusive;
use std::time::Duration;

use rand::RngExt;

use crate::notification;
use crate::ports::{
    AttemptLog, Callback, CallbackResponse, Clock, Events, Instances, NextStep, QueuedEvent, StoreError,
};
use crate::retry::{self, AttemptResult, DeadLetterReason, Decision};

#[derive(Debug, Clone, Copy)]
pub struct DeliveryConfig {
    /// Multiplies every retry delay. 1.0 in production; tests shrink hours to milliseconds.
    pub time_scale: f64,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig { time_scale: 1.0 }
    }
}

/// What both runtimes accept for their delivery settings (`DELIVERY_TIMEOUT_MS`,
/// `EVENT_RETENTION_DAYS`, `DELIVERY_TIME_SCALE`), so that neither takes a value the other
/// refuses.
pub const ATTEMPT_TIMEOUT_MS: RangeInclusive<u64> = 1..=900_000;
pub const RETENTION_DAYS: RangeInclusive<u64> = 1..=36_500;

/// A time scale is a finite number above 0 (0 or less would retry at once).
pub fn is_time_scale(scale: f64) -> bool {
    scale.is_finite() && scale > 0.0
}

/// Attempts `event` once, logs the attempt and returns the step the store recorded.
pub async fn deliver(
    instances: &dyn Instances,
    events: &dyn Events,
    callback: &dyn Callback,
    clock: &dyn Clock,
    config: DeliveryConfig,
    event: &QueuedEvent,
) -> Result<NextStep, StoreError> {
    let started = clock.now_ms();
    let instance = instances.get(event.instance_id).await?;
    let response = match &instance {
        None => refused("the instance was deleted"),
        Some(i) if !i.settings().events_enabled => refused("events are disabled for this instance"),
        Some(i) => match &i.settings().callback_url {
            None => refused("the instance has no callback URL"),
            Some(url) => {
                let keys = &i.settings().signature_keys;
                let headers = notification::headers(&event.body, &event.event_id, keys, started / 1000);
                callback.post(url, &headers, &event.body).await
            }
        },
    };
    let attempt = event.attempts + 1;
    let decision = match instance {
        // Retrying would refuse it again up to the last attempt, 27.5 hours on.
        None => Decision::DeadLetter(DeadLetterReason::InstanceDeleted),
        Some(_) => retry::decide(attempt, &response.result, jitter_draw()),
    };
    let next = match decision {
        Decision::Delivered => NextStep::Delivered,
        Decision::RetryAfter(delay) => {
            let delay = delay.mul_f64(config.time_scale.max(0.0));
            NextStep::RetryAt { at_ms: clock.now_ms() + delay.as_millis() as i64 }
        }
        Decision::DeadLetter(reason) => NextStep::DeadLettered(reason),
    };
    let log = AttemptLog {
        at_ms: started,
        series: event.series,
        attempt,
        status_code: response.status_code,
        error: response.error,
        duration_ms: response.duration.as_millis() as u64,
        response_body: response.body_excerpt,
    };
    match &next {
        NextStep::Delivered => {
            tracing::info!(event_id = %event.event_id, instance_id = event.instance_id, attempt, status = ?log.status_code, "delivered")
        }
        _ => {
            tracing::warn!(event_id = %event.event_id, instance_id = event.instance_id, attempt, status = ?log.status_code, error = ?log.error, next = ?next, "delivery attempt failed")
        }
    }
    events.record_attempt(event, log, next.clone()).await?;
    Ok(next)
}

/// The jitter of one retry delay: uniform in [-1, 1], which `retry::decide` scales to ±20 %.
fn jitter_draw() -> f64 {
    rand::rng().random_range(-1.0..=1.0)
}

/// An attempt that could not even be made: it counts as a failure so the schedule still
/// applies and the notification ends dead-lettered (and redeliverable), never dropped. (For a
/// deleted instance the first such attempt is the last.)
fn refused(reason: &str) -> CallbackResponse {
    CallbackResponse {
        result: AttemptResult::Failed,
        status_code: None,
        error: Some(reason.to_owned()),
        body_excerpt: String::new(),
        duration: Duration::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jitter_spreads_delays_both_ways_within_its_range() {
        let draws: Vec<f64> = (0..1000).map(|_| jitter_draw()).collect();
        assert!(draws.iter().all(|d| (-1.0..=1.0).contains(d)), "{draws:?}");
        // Each bound fails with a probability of 0.75^1000 for a uniform draw.
        assert!(draws.iter().any(|&d| d < -0.5) && draws.iter().any(|&d| d > 0.5), "{draws:?}");
    }
}
