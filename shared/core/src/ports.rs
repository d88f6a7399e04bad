//! What the use cases need from the world. Each runtime (SQLite locally, DynamoDB + SQS on AWS)
//! implements these; the use cases never see which.

use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::instance::{InstanceSpec, Settings};
use crate::notification::{Context, Notification};
use crate::retry::{AttemptResult, DeadLetterReason};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store or queue cannot be reached or refused the write; the caller may retry.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

/// A stored element instance. Secrets are in clear here and nowhere else.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: i64,
    pub spec: InstanceSpec,
    pub token_hash: String,
    pub created_at_ms: i64,
    pub last_ping: Option<Map<String, Value>>,
}

impl Instance {
    pub fn settings(&self) -> &Settings {
        &self.spec.settings
    }

    /// Who its notifications are about, as of `accepted_at` (RFC 3339).
    pub fn notification_context<'a>(&'a self, accepted_at: &'a str) -> Context<'a> {
        Context { instance_id: self.id, instance_name: &self.spec.name, instance_tags: &self.spec.tags, accepted_at }
    }

    /// The unit tests' instance: events on, a callback, Greenhouse key `k`, no signing key.
    #[cfg(test)]
    pub(crate) fn sample(id: i64) -> Instance {
        Instance {
            id,
            spec: InstanceSpec {
                name: "acme-prod".into(),
                tags: vec!["acme".into()],
                configuration: Map::new(),
                settings: Settings {
                    events_enabled: true,
                    callback_url: Some("https://receiver.example.com/hooks".into()),
                    signature_keys: vec![],
                    vendor_keys: vec!["k".into()],
                },
            },
            token_hash: String::new(),
            created_at_ms: 0,
            last_ping: None,
        }
    }
}

#[async_trait]
pub trait Instances: Send + Sync {
    /// Stores a new instance and assigns its id (ids are never reused).
    async fn create(&self, spec: InstanceSpec, token_hash: String, created_at_ms: i64) -> Result<Instance, StoreError>;
    /// A live (not deleted) instance.
    async fn get(&self, id: i64) -> Result<Option<Instance>, StoreError>;
    /// Live instances with an id above `after` (all when `None`), by id, at most `limit`.
    async fn list(&self, after: Option<i64>, limit: usize) -> Result<Vec<Instance>, StoreError>;
    /// Replaces the spec of a live instance if it is still `expected`: a compare-and-set, so
    /// that of two merges made at once (two PATCHes) neither is lost.
    async fn update(&self, id: i64, expected: &InstanceSpec, spec: InstanceSpec) -> Result<SpecUpdate, StoreError>;
    async fn delete(&self, id: i64) -> Result<bool, StoreError>;
    /// Replaces the token hash of a live instance (a new token; the old one stops working at
    /// once) and returns the instance as it now is, or `None` when no live instance has this id.
    /// Touches nothing else, so a PATCH running at the same time loses nothing.
    async fn replace_token(&self, id: i64, token_hash: String) -> Result<Option<Instance>, StoreError>;
    async fn record_ping(&self, id: i64, ping: Map<String, Value>) -> Result<(), StoreError>;
}

/// What [`Instances::update`] did.
#[derive(Debug, Clone)]
pub enum SpecUpdate {
    /// Written: the instance as it now is.
    Done(Box<Instance>),
    /// Nothing written: the spec is no longer the one expected (another change came first).
    Changed,
    /// Nothing written: no live instance has this id.
    Gone,
}

/// A Greenhouse delivery that passed verification, ready to be made durable.
#[derive(Debug, Clone)]
pub struct Accepted {
    pub instance_id: i64,
    pub delivery_key: String,
    pub action: String,
    pub notifications: Vec<Notification>,
    pub accepted_at_ms: i64,
    /// Until when a repeat of `delivery_key` is a duplicate.
    pub dedupe_until_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AcceptOutcome {
    Queued,
    /// Seen before: nothing new queued; the id of the earlier first notification.
    Duplicate {
        event_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventStatus {
    Pending,
    Delivered,
    Failed,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Delivered => "delivered",
            EventStatus::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(EventStatus::Pending),
            "delivered" => Some(EventStatus::Delivered),
            "failed" => Some(EventStatus::Failed),
            _ => None,
        }
    }
}

/// One attempt as the events API shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AttemptLog {
    pub at_ms: i64,
    /// Which redelivery series (0 = the original) and which attempt in it (1-based).
    pub series: u32,
    pub attempt: u32,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub duration_ms: u64,
    /// The first 4 KiB of the response body, lossily decoded.
    pub response_body: String,
}

/// What happens to a notification after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NextStep {
    Delivered,
    RetryAt { at_ms: i64 },
    DeadLettered(DeadLetterReason),
}

/// A notification as the queue hands it to a delivery worker.
#[derive(Debug, Clone)]
pub struct QueuedEvent {
    pub event_id: String,
    pub instance_id: i64,
    pub series: u32,
    /// Attempts already made in this series.
    pub attempts: u32,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone)]
pub struct EventRecord {
    pub event_id: String,
    pub instance_id: i64,
    pub part: u32,
    pub action: String,
    pub status: EventStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub next_attempt_at_ms: Option<i64>,
    pub dead_letter_reason: Option<String>,
    pub series: u32,
    pub attempts: Vec<AttemptLog>,
    pub body: Vec<u8>,
}

impl EventRecord {
    /// A notification as an ids-only list names it: its id, instance and the status it was
    /// listed under; nothing else read.
    pub fn listed(event_id: String, instance_id: i64, status: EventStatus) -> Self {
        EventRecord {
            event_id,
            instance_id,
            part: 0,
            action: String::new(),
            status,
            created_at_ms: 0,
            updated_at_ms: 0,
            next_attempt_at_ms: None,
            dead_letter_reason: None,
            series: 0,
            attempts: vec![],
            body: vec![],
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct EventQuery {
    pub status: Option<EventStatus>,
    pub since_ms: Option<i64>,
    pub limit: usize,
    /// Only `event_id` (and the fields a filter needs) are wanted: a store may leave out the
    /// attempts and the body.
    pub ids_only: bool,
    /// Only notifications after this one in the list's order (newest first: created earlier,
    /// or at the same millisecond with a smaller id): the next page.
    pub before: Option<(i64, String)>,
    /// Stop after the notification whose body takes the listed bodies past this many bytes, so
    /// that a page of large notifications is not read whole only to be cut (a caller that gets
    /// fewer than `limit` back this way sees that the bodies add up to more).
    pub max_bytes: Option<usize>,
}

#[async_trait]
pub trait Events: Send + Sync {
    /// Dedupe then enqueue, durably, before returning. A failure between the two may cause a
    /// duplicate later, never a loss.
    async fn accept(&self, accepted: Accepted) -> Result<AcceptOutcome, StoreError>;
    /// Newest first.
    async fn list(&self, instance_id: i64, query: &EventQuery) -> Result<Vec<EventRecord>, StoreError>;
    /// One notification of the instance, with its attempts.
    async fn get(&self, instance_id: i64, event_id: &str) -> Result<Option<EventRecord>, StoreError>;
    /// Logs an attempt and moves the notification to its next step.
    async fn record_attempt(&self, event: &QueuedEvent, log: AttemptLog, next: NextStep) -> Result<(), StoreError>;
    /// Starts a new attempt series for these notifications of the instance, now. Returns the
    /// ids that were queued again (unknown ids and pending ones are skipped, and with `only` those
    /// whose status is not that one any more: a list by status may lag behind).
    async fn redeliver(
        &self,
        instance_id: i64,
        event_ids: &[String],
        only: Option<EventStatus>,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError>;
}

/// How a callback request went, for the attempt log and the retry decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackResponse {
    pub result: AttemptResult,
    pub status_code: Option<u16>,
    pub error: Option<String>,
    pub body_excerpt: String,
    pub duration: Duration,
}

#[async_trait]
pub trait Callback: Send + Sync {
    /// The addresses a callback host resolves to (for the configuration-time check). A name
    /// that does not resolve yields an empty list: it is judged again at delivery time.
    async fn resolve(&self, host: &str, port: u16) -> Vec<IpAddr>;
    /// POSTs `body` with `headers`, enforcing the network policy after DNS resolution.
    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: &[u8]) -> CallbackResponse;
}

pub trait Clock: Send + Sync {
    fn now_ms(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// RFC 3339 UTC with seconds precision, the format of `createdDate` and `date`.
/// On every ingest's path: the calendar fields come from `time`, the digits are written
/// directly (`time`'s generic formatter costs several times more).
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let year = t.year();
    if !(0..=9999).contains(&year) {
        let f = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
        return t.format(&f).unwrap_or_default();
    }
    let (month, day, hour, minute, second) = (t.month() as u8, t.day(), t.hour(), t.minute(), t.second());
    let mut b = *b"0000-00-00T00:00:00Z";
    let two = |b: &mut [u8], v: u8| {
        b[0] = b'0' + v / 10;
        b[1] = b'0' + v % 10;
    };
    two(&mut b[0..2], (year / 100) as u8);
    two(&mut b[2..4], (year % 100) as u8);
    two(&mut b[5..7], month);
    two(&mut b[8..10], day);
    two(&mut b[11..13], hour);
    two(&mut b[14..16], minute);
    two(&mut b[17..19], second);
    b.iter().map(|&c| c as char).collect()
}

/// Parses an RFC 3339 timestamp to unix milliseconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    Some((t.unix_timestamp_nanos() / 1_000_000) as i64)
}

#[cfg(test)]
mod tests {
    use super::{EventStatus, rfc3339};

    /// The digits written directly cover years 0 to 9999 (the properties test them against
    /// `time`); a year before 0 goes to `time`'s formatter rather than come out as wrong digits.
    #[test]
    fn years_before_0_are_written_by_time() {
        assert_eq!(rfc3339(253_402_300_799_000), "9999-12-31T23:59:59Z");
        assert_eq!(rfc3339(-62_167_219_200_000), "0000-01-01T00:00:00Z");
        assert_eq!(rfc3339(-62_167_219_201_000), "-0001-12-31T23:59:59Z");
    }

    #[test]
    fn each_status_parses_from_the_name_it_is_written_as_and_nothing_else_does() {
        for status in [EventStatus::Pending, EventStatus::Delivered, EventStatus::Failed] {
            assert_eq!(EventStatus::parse(status.as_str()), Some(status));
        }
        for other in ["", "Pending", "dead", "pending ", "queued"] {
            assert_eq!(EventStatus::parse(other), None, "{other:?}");
        }
    }
}
