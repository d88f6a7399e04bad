//! Use cases: manage element instances, list and redeliver their notifications.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use url::Host;

use crate::ingest::DEDUPE_WINDOW;
use crate::instance::{self, CALLBACK_URL, ConfigError, InstanceSpec};
use crate::network::NetworkPolicy;
use crate::notification;
use crate::ports::{
    AcceptOutcome, Accepted, Callback, Clock, EventQuery, EventRecord, EventStatus, Events, Instance, Instances,
    SpecUpdate, StoreError, rfc3339,
};

pub const DEFAULT_EVENT_LIMIT: usize = 50;
pub const MAX_EVENT_LIMIT: usize = 500;

/// How many times a PATCH merges at most. A try fails only when another change landed between
/// its read and its write, so of N PATCHes sent at once each lands within N tries: this covers
/// bursts of up to 64 on one instance (a try is a few store calls; no waiting between tries).
pub const PATCH_TRIES: usize = 64;

/// What one bulk redelivery did. It handles at most `limit` (default and maximum
/// `MAX_EVENT_LIMIT`) notifications, so that one request stays short (a Lambda has 10 s);
/// `more` says that others matched: call again (those redelivered no longer match `failed`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BulkRedelivery {
    pub event_ids: Vec<String>,
    pub more: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error(transparent)]
    Invalid(#[from] ConfigError),
    #[error("{0}")]
    BadQuery(String),
    #[error("{0}")]
    NotFound(String),
    /// The request is fine but the instance's state does not allow it.
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

pub struct Manage<'a> {
    pub instances: &'a dyn Instances,
    pub events: &'a dyn Events,
    pub callback: &'a dyn Callback,
    pub clock: &'a dyn Clock,
    pub policy: &'a NetworkPolicy,
}

/// The instance as the API shows it: Cloud Elements fields, secrets masked.
pub fn instance_json(
    instance: &Instance,
    public_base_url: &str,
    token: Option<&str>,
    webhook_secret: Option<&str>,
) -> Value {
    let s = &instance.spec;
    let mut v = json!({
        "id": instance.id,
        "name": s.name,
        "token": token.unwrap_or(instance::MASK),
        "tags": s.tags,
        "element": {"key": instance::ELEMENT_KEY},
        "configuration": instance::masked(&s.configuration),
        "eventsEnabled": s.settings.events_enabled,
        "eventsNotificationCallbackUrl": s.settings.callback_url,
        "createdDate": rfc3339(instance.created_at_ms),
        "webhookUrl": format!("{}/events/greenhouse/{}", public_base_url.trim_end_matches('/'), instance.id),
        "lastPing": instance.last_ping,
    });
    if let Some(secret) = webhook_secret {
        v["webhookSecret"] = Value::String(secret.to_owned());
    }
    v
}

/// One notification record as the events API shows it, as JSON bytes. The notification is
/// embedded as the stored bytes (a `RawValue` serialised straight to the writer): going through
/// `Value` would round integers beyond 2^64 in `raw` and rewrite its escapes, so the API would
/// show something other than what was sent.
pub fn event_json(e: &EventRecord) -> Vec<u8> {
    #[derive(serde::Serialize)]
    #[serde(rename_all = "camelCase")]
    struct View<'a> {
        event_id: &'a str,
        instance_id: i64,
        part: u32,
        action: &'a str,
        status: &'static str,
        created_date: String,
        updated_date: String,
        next_attempt_date: Option<String>,
        dead_letter_reason: Option<&'a str>,
        series: u32,
        attempt_count: usize,
        attempts: Vec<Value>,
        notification: Option<&'a serde_json::value::RawValue>,
    }
    let view = View {
        event_id: &e.event_id,
        instance_id: e.instance_id,
        part: e.part,
        action: &e.action,
        status: e.status.as_str(),
        created_date: rfc3339(e.created_at_ms),
        updated_date: rfc3339(e.updated_at_ms),
        next_attempt_date: e.next_attempt_at_ms.map(rfc3339),
        dead_letter_reason: e.dead_letter_reason.as_deref(),
        series: e.series,
        attempt_count: e.attempts.len(),
        attempts: e
            .attempts
            .iter()
            .map(|a| {
                json!({
                    "date": rfc3339(a.at_ms),
                    "series": a.series,
                    "attempt": a.attempt,
                    "statusCode": a.status_code,
                    "error": a.error,
                    "durationMs": a.duration_ms,
                    "responseBody": a.response_body,
                })
            })
            .collect(),
        notification: serde_json::from_slice(&e.body).ok(),
    };
    // Strings, numbers and stored JSON only: serialising cannot fail.
    serde_json::to_vec(&view).unwrap_or_default()
}

impl Manage<'_> {
    /// Returns the instance, its token (shown once) and the generated vendor secret, if any.
    pub async fn create(&self, body: &[u8]) -> Result<(Instance, String, Option<String>), ManageError> {
        let (spec, generated) = instance::parse_create(body)?;
        self.check_callback(&spec).await?;
        let token = instance::generate_token();
        let created = self.instances.create(spec, instance::token_hash(&token), self.clock.now_ms()).await?;
        tracing::info!(instance_id = created.id, "instance created");
        Ok((created, token, generated))
    }

    pub async fn get(&self, id: i64) -> Result<Instance, ManageError> {
        self.instances.get(id).await?.ok_or_else(|| not_found(id))
    }

    /// Live instances by id after `after`: at most `limit`, and `more` when others follow.
    pub async fn list(&self, after: Option<i64>, limit: usize) -> Result<InstancePage, ManageError> {
        // One more than the limit tells whether others follow.
        let mut instances = self.instances.list(after, limit + 1).await?;
        let more = instances.len() > limit;
        instances.truncate(limit);
        Ok(InstancePage { instances, more })
    }

    /// A merge into what is stored. Another change landing between the read and the write (a
    /// concurrent PATCH) makes the store refuse the write, and the merge is made again on what
    /// is there now, so that neither change is lost.
    pub async fn patch(&self, id: i64, body: &[u8]) -> Result<Instance, ManageError> {
        for _ in 0..PATCH_TRIES {
            let current = self.get(id).await?;
            let spec = instance::apply_patch(&current.spec, body)?;
            if spec.settings.callback_url != current.spec.settings.callback_url {
                self.check_callback(&spec).await?;
            }
            match self.instances.update(id, &current.spec, spec).await? {
                SpecUpdate::Done(updated) => {
                    tracing::info!(instance_id = id, "instance updated");
                    return Ok(*updated);
                }
                SpecUpdate::Gone => return Err(not_found(id)),
                SpecUpdate::Changed => tracing::info!(instance_id = id, "instance changed meanwhile: merging again"),
            }
        }
        Err(ManageError::Unavailable(StoreError::Unavailable(format!(
            "instance {id} changed during each of {PATCH_TRIES} merges"
        ))))
    }

    /// A new token for the instance, in place of its current one, which stops working at once
    /// (a leaked or lost token, without a new instance and so a new webhook URL for Greenhouse).
    /// Returns the instance and the token, shown this once.
    pub async fn new_token(&self, id: i64) -> Result<(Instance, String), ManageError> {
        let token = instance::generate_token();
        let instance =
            self.instances.replace_token(id, instance::token_hash(&token)).await?.ok_or_else(|| not_found(id))?;
        tracing::info!(instance_id = id, "instance token replaced");
        Ok((instance, token))
    }

    pub async fn delete(&self, id: i64) -> Result<(), ManageError> {
        if self.instances.delete(id).await? {
            tracing::info!(instance_id = id, "instance deleted");
            Ok(())
        } else {
            Err(not_found(id))
        }
    }

    /// One page, newest first: at most `limit`, and `more` when others follow (ask again with
    /// `before` = the cursor of the last one).
    pub async fn list_events(&self, id: i64, query: &Map<String, Value>) -> Result<EventPage, ManageError> {
        self.get(id).await?;
        let q = event_query(query, None)?;
        let limit = q.limit;
        // One more than the limit tells whether others follow. The store stops once the bodies
        // pass what one response carries; the response then ends early, with a next link.
        let q = EventQuery { limit: limit + 1, max_bytes: Some(LIST_BYTES_MAX), ..q };
        let mut events = self.events.list(id, &q).await?;
        let more = events.len() > limit;
        events.truncate(limit);
        Ok(EventPage { events, more })
    }

    pub async fn get_event(&self, id: i64, event_id: &str) -> Result<EventRecord, ManageError> {
        self.get(id).await?;
        self.events
            .get(id, event_id)
            .await?
            .ok_or_else(|| ManageError::NotFound(format!("instance {id} has no notification {event_id}")))
    }

    pub async fn redeliver_one(&self, id: i64, event_id: &str) -> Result<(), ManageError> {
        self.get(id).await?;
        let ids = [event_id.to_owned()];
        let done = self.events.redeliver(id, &ids, None, self.clock.now_ms()).await?;
        // Nothing queued: either unknown (404) or already pending (nothing to do, not an error).
        if done.is_empty() && self.events.get(id, event_id).await?.is_none() {
            return Err(ManageError::NotFound(format!("instance {id} has no notification {event_id}")));
        }
        Ok(())
    }

    /// Queues a test notification (see [`test_notification`]) for the instance's callback, on the
    /// path of every other one: the queue, the signatures, the retries, the events API. Returns its
    /// id. Refused while events are disabled, since nothing would then be sent.
    pub async fn send_test(&self, id: i64, request_id: &str) -> Result<String, ManageError> {
        let instance = self.get(id).await?;
        if !instance.settings().events_enabled {
            return Err(ManageError::Conflict(format!(
                "events are disabled for instance {id} (configuration.event.notification.enabled), so nothing \
                 would be sent: enable them first"
            )));
        }
        let accepted = test_notification(&instance, request_id, self.clock.now_ms());
        let first = accepted.notifications.first().map(|n| n.event_id.clone()).unwrap_or_default();
        let event_id = match self.events.accept(accepted).await? {
            AcceptOutcome::Queued => first,
            AcceptOutcome::Duplicate { event_id } => event_id,
        };
        tracing::info!(instance_id = id, event_id, "test notification queued");
        Ok(event_id)
    }

    /// `?status=failed&since=<RFC 3339>&limit=N`: the newest `limit` matching notifications are
    /// queued again; `more` says whether others match.
    pub async fn redeliver_many(&self, id: i64, query: &Map<String, Value>) -> Result<BulkRedelivery, ManageError> {
        self.get(id).await?;
        let q = event_query(query, Some(EventStatus::Failed))?;
        let limit = if query.contains_key("limit") { q.limit } else { MAX_EVENT_LIMIT };
        // One more than the limit tells whether others match.
        let q = EventQuery { limit: limit + 1, ids_only: true, ..q };
        let mut ids: Vec<String> = self.events.list(id, &q).await?.into_iter().map(|e| e.event_id).collect();
        let more = ids.len() > limit;
        ids.truncate(limit);
        // Only those still in the status they were listed under (DynamoDB's index lags).
        let event_ids = self.events.redeliver(id, &ids, q.status, self.clock.now_ms()).await?;
        Ok(BulkRedelivery { event_ids, more })
    }

    async fn check_callback(&self, spec: &InstanceSpec) -> Result<(), ConfigError> {
        let Some(url) = &spec.settings.callback_url else { return Ok(()) };
        let field = format!("configuration.{CALLBACK_URL}");
        let bad = |e: crate::network::CallbackUrlError| ConfigError { field: field.clone(), message: e.to_string() };
        let parsed = self.policy.check_url(url).map_err(bad)?;
        if let Some(Host::Domain(name)) = parsed.host() {
            let addrs = self.callback.resolve(name, parsed.port_or_known_default().unwrap_or(443)).await;
            self.policy.check_resolved(&parsed, &addrs).map_err(bad)?;
        }
        Ok(())
    }
}

/// The `action` of a test notification's `raw`. Greenhouse's actions (documented and legacy)
/// are snake_case words with no dot, so a receiver can tell a test from a real delivery.
pub const TEST_ACTION: &str = "greenhouse_relay.test";

/// A test notification, as the ingest would queue a Greenhouse delivery: the same envelope,
/// with `raw` = `{"action": "greenhouse_relay.test", "payload": {...}}` and no events, so a
/// receiver that acts on `events` does nothing with it. It is keyed by the request that asked
/// for it, so its id is deterministic like any other: the same request id, the same test
/// (request ids are unique per request on both runtimes).
pub fn test_notification(instance: &Instance, request_id: &str, now_ms: i64) -> Accepted {
    let delivery_key = format!("test:{}", hex::encode(Sha256::digest(request_id.as_bytes())));
    let raw = json!({
        "action": TEST_ACTION,
        "payload": {
            "message": format!(
                "A test notification, sent on request (POST /instances/{}/events/test). It names no \
                 Greenhouse object: events is empty.",
                instance.id
            ),
            "requestId": request_id,
        },
    })
    .to_string();
    let accepted_at = rfc3339(now_ms);
    let ctx = instance.notification_context(&accepted_at);
    // One part of a body far below every limit: `build` cannot refuse it.
    let notifications = notification::build(&ctx, &delivery_key, &raw, &[]).unwrap_or_default();
    Accepted {
        instance_id: instance.id,
        delivery_key,
        action: TEST_ACTION.to_owned(),
        notifications,
        accepted_at_ms: now_ms,
        dedupe_until_ms: now_ms + DEDUPE_WINDOW.as_millis() as i64,
    }
}

fn not_found(id: i64) -> ManageError {
    ManageError::NotFound(format!("no instance {id}"))
}

/// A list response stays under this many bytes (a Lambda answers at most 6 MB): the page ends
/// early, with a `next` link, rather than fail. Always at least one notification.
pub const LIST_BYTES_MAX: usize = 4 * 1024 * 1024;

/// At most this many instances in one page (`pageSize`), and per store read.
pub const INSTANCES_PAGE_MAX: usize = 500;

/// A page of instances, by id.
#[derive(Debug)]
pub struct InstancePage {
    pub instances: Vec<Instance>,
    /// Others follow the last one.
    pub more: bool,
}

/// `GET /instances?pageSize=N&nextPage=<token>` (Cloud Elements' paging): the token is the
/// `Elements-Next-Page-Token` of the previous page.
#[derive(Debug)]
pub struct InstanceQuery {
    pub page_size: Option<usize>,
    pub after: Option<i64>,
}

pub fn instance_query(query: &Map<String, Value>) -> Result<InstanceQuery, ManageError> {
    let text = |k: &str| query.get(k).and_then(Value::as_str);
    let page_size = match text("pageSize") {
        None => None,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=INSTANCES_PAGE_MAX).contains(&n) => Some(n),
            _ => {
                return Err(ManageError::BadQuery(format!(
                    "pageSize: must be an integer from 1 to {INSTANCES_PAGE_MAX}"
                )));
            }
        },
    };
    let after = match text("nextPage") {
        None | Some("") => None,
        Some(s) => Some(s.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| {
            ManageError::BadQuery(format!("nextPage: `{s}` is not a token from an `Elements-Next-Page-Token` header"))
        })?),
    };
    Ok(InstanceQuery { page_size, after })
}

/// A page of an instance's notifications.
#[derive(Debug)]
pub struct EventPage {
    pub events: Vec<EventRecord>,
    /// Others follow the last one.
    pub more: bool,
}

/// Where the page after `e` starts: `<created ms>_<event id>`, the `before` of the next request.
pub fn page_cursor(e: &EventRecord) -> String {
    format!("{}_{}", e.created_at_ms, e.event_id)
}

fn parse_cursor(s: &str) -> Option<(i64, String)> {
    let (ms, id) = s.split_once('_')?;
    let ok_id = !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    Some((ms.parse::<i64>().ok().filter(|ms| *ms >= 0)?, id.to_owned())).filter(|_| ok_id)
}

fn event_query(query: &Map<String, Value>, default_status: Option<EventStatus>) -> Result<EventQuery, ManageError> {
    let text = |k: &str| query.get(k).and_then(Value::as_str);
    let status =
        match text("status") {
            None => default_status,
            Some(s) => Some(EventStatus::parse(s).ok_or_else(|| {
                ManageError::BadQuery(format!("status: `{s}` is not one of delivered, failed, pending"))
            })?),
        };
    let since_ms = match text("since") {
        None => None,
        Some(s) => Some(
            crate::ports::parse_rfc3339(s)
                .ok_or_else(|| ManageError::BadQuery(format!("since: `{s}` is not an RFC 3339 timestamp")))?,
        ),
    };
    let limit = match text("limit") {
        None => DEFAULT_EVENT_LIMIT,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_EVENT_LIMIT).contains(&n) => n,
            _ => return Err(ManageError::BadQuery(format!("limit: must be an integer from 1 to {MAX_EVENT_LIMIT}"))),
        },
    };
    let before = match text("before") {
        None => None,
        Some(s) => Some(parse_cursor(s).ok_or_else(|| {
            ManageError::BadQuery(format!("before: `{s}` is not a cursor from a `Link: rel=\"next\"` header"))
        })?),
    };
    Ok(EventQuery { status, since_ms, limit, ids_only: false, before, max_bytes: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> Instance {
        Instance::sample(7)
    }

    #[test]
    fn a_test_notification_is_the_usual_envelope_with_no_events_and_a_raw_no_greenhouse_action_has() {
        let a = test_notification(&instance(), "req-1", 1_764_000_000_000);
        assert_eq!((a.instance_id, a.action.as_str(), a.notifications.len()), (7, TEST_ACTION, 1));
        assert_eq!(a.dedupe_until_ms - a.accepted_at_ms, DEDUPE_WINDOW.as_millis() as i64);
        let n = &a.notifications[0];
        assert_eq!(n.part, 0);
        let v: Value = serde_json::from_slice(&n.body).unwrap();
        assert_eq!(v["id"], n.event_id.as_str());
        assert_eq!(v["topic"], "instance-7-greenhouse-events");
        assert_eq!(v["createdDate"], "2025-11-24T16:00:00Z");
        let m = &v["message"];
        assert_eq!(m["eventId"], n.event_id.as_str());
        assert_eq!((m["instanceId"].as_i64(), m["instance_id"].as_i64()), (Some(7), Some(7)));
        assert_eq!((m["instanceName"].as_str(), m["instanceTags"].clone()), (Some("acme-prod"), json!(["acme"])));
        assert_eq!(m["elementKey"], "greenhouse");
        assert_eq!(m["events"], json!([]));
        assert_eq!(m["raw"]["action"], TEST_ACTION);
        assert_eq!(m["raw"]["payload"]["requestId"], "req-1");
        assert!(m["raw"]["payload"]["message"].as_str().unwrap().contains("POST /instances/7/events/test"));
        // Not an action the mapping knows.
        let raw = serde_json::to_vec(&m["raw"]).unwrap();
        let mapping = crate::greenhouse::parse_webhook(&raw).unwrap();
        assert!(
            matches!(mapping.mapping, crate::greenhouse::Mapping::Events(ref e) if e[0].event_type == crate::greenhouse::EventType::Unknown)
        );
    }

    #[test]
    fn a_test_notifications_id_is_its_requests() {
        let id = |request_id: &str, at: i64| {
            test_notification(&instance(), request_id, at).notifications[0].event_id.clone()
        };
        assert_eq!(id("req-1", 0), id("req-1", 5_000));
        assert_ne!(id("req-1", 0), id("req-2", 0));
        let other = Instance { id: 8, ..instance() };
        assert_ne!(id("req-1", 0), test_notification(&other, "req-1", 0).notifications[0].event_id);
        // A request id of any length gives a key of one size (a store's key is bounded).
        let long = test_notification(&instance(), &"r".repeat(10_000), 0);
        assert_eq!(long.delivery_key.len(), "test:".len() + 64);
        // Nor can a request id break out of the JSON it is written into.
        let odd = test_notification(&instance(), "\"}]\\\u{1}", 0);
        let v: Value = serde_json::from_slice(&odd.notifications[0].body).unwrap();
        assert_eq!(v["message"]["raw"]["payload"]["requestId"], "\"}]\\\u{1}");
    }
}
