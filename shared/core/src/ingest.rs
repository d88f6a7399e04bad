//! Use case: accept one Greenhouse delivery. The 200 it leads to means "durably queued".

use std::time::Duration;

use serde_json::{Map, Value};

use crate::greenhouse::{self, Mapping, SignatureError, WebhookError};
use crate::notification::{self, Notification};
use crate::ports::{AcceptOutcome, Accepted, Clock, Events, Instance, Instances, StoreError, rfc3339};

/// A ping's `web_hook_id` is recorded on the instance up to this length.
pub const MAX_WEB_HOOK_ID_BYTES: usize = 64;

/// Greenhouse's actions are short names (`candidate_stage_change`); one longer than this is no
/// Greenhouse webhook. The action is kept beside each notification (a DynamoDB attribute).
pub const MAX_ACTION_BYTES: usize = 128;

/// Greenhouse retries for about 15 hours; a repeat within this window is a duplicate.
pub const DEDUPE_WINDOW: Duration = Duration::from_secs(72 * 3600);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Queued { event_id: String },
    Duplicate { event_id: String },
    Ping,
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("the body is larger than {} bytes", greenhouse::MAX_BODY_BYTES)]
    TooLarge,
    #[error("no instance with events enabled at this URL")]
    UnknownInstance,
    #[error(transparent)]
    Signature(#[from] SignatureError),
    #[error(transparent)]
    Malformed(WebhookError),
    #[error(transparent)]
    TooMuch(#[from] notification::TooMuch),
    #[error(transparent)]
    Unavailable(#[from] StoreError),
}

/// A verified, mapped delivery: what would be queued.
#[derive(Debug)]
pub enum Prepared {
    Ping { web_hook_id: Option<String> },
    Notifications { action: String, delivery_key: String, notifications: Vec<Notification> },
}

/// The pure part of the ingest: verify, parse, map, build. No I/O.
pub fn prepare(
    instance: &Instance,
    signature: Option<&[u8]>,
    greenhouse_event_id: Option<&str>,
    body: &[u8],
    accepted_at_ms: i64,
) -> Result<Prepared, IngestError> {
    if body.len() > greenhouse::MAX_BODY_BYTES {
        return Err(IngestError::TooLarge);
    }
    greenhouse::verify_signature(signature, body, &instance.settings().vendor_keys)?;
    let webhook = greenhouse::parse_webhook(body).map_err(|e| match e {
        WebhookError::TooLarge => IngestError::TooLarge,
        e => IngestError::Malformed(e),
    })?;
    if webhook.action.len() > MAX_ACTION_BYTES {
        return Err(IngestError::Malformed(WebhookError::ActionTooLong));
    }
    let events = match webhook.mapping {
        Mapping::Ping { web_hook_id } => return Ok(Prepared::Ping { web_hook_id }),
        Mapping::Events(events) => events,
    };
    let accepted_at = rfc3339(accepted_at_ms);
    let ctx = instance.notification_context(&accepted_at);
    let delivery_key = notification::delivery_key(greenhouse_event_id, body);
    let notifications = notification::build(&ctx, &delivery_key, webhook.raw, &events)?;
    Ok(Prepared::Notifications { action: webhook.action.into_owned(), delivery_key, notifications })
}

/// What an instance keeps of its last ping (`lastPing`). Greenhouse's webhook ids are numbers;
/// one too long to be one is not kept.
fn ping_record(web_hook_id: Option<String>, now_ms: i64) -> Map<String, Value> {
    let web_hook_id = web_hook_id.filter(|id| id.len() <= MAX_WEB_HOOK_ID_BYTES);
    let mut ping = Map::new();
    ping.insert("webHookId".into(), web_hook_id.map(Value::String).unwrap_or(Value::Null));
    ping.insert("date".into(), Value::String(rfc3339(now_ms)));
    ping
}

/// Accepts one delivery for instance `instance_id`.
pub async fn accept_webhook(
    instances: &dyn Instances,
    events: &dyn Events,
    clock: &dyn Clock,
    instance_id: i64,
    signature: Option<&[u8]>,
    greenhouse_event_id: Option<&str>,
    body: &[u8],
) -> Result<IngestOutcome, IngestError> {
    if body.len() > greenhouse::MAX_BODY_BYTES {
        return Err(IngestError::TooLarge);
    }
    let instance = match instances.get(instance_id).await? {
        Some(i) if i.settings().events_enabled => i,
        _ => return Err(IngestError::UnknownInstance),
    };
    let now = clock.now_ms();
    match prepare(&instance, signature, greenhouse_event_id, body, now)? {
        Prepared::Ping { web_hook_id } => {
            instances.record_ping(instance.id, ping_record(web_hook_id, now)).await?;
            Ok(IngestOutcome::Ping)
        }
        Prepared::Notifications { action, delivery_key, notifications } => {
            let first = notifications.first().map(|n| n.event_id.clone()).unwrap_or_default();
            let accepted = Accepted {
                instance_id: instance.id,
                delivery_key,
                action,
                notifications,
                accepted_at_ms: now,
                dedupe_until_ms: now + DEDUPE_WINDOW.as_millis() as i64,
            };
            match events.accept(accepted).await? {
                AcceptOutcome::Queued => Ok(IngestOutcome::Queued { event_id: first }),
                AcceptOutcome::Duplicate { event_id } => Ok(IngestOutcome::Duplicate { event_id }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance() -> Instance {
        Instance::sample(7)
    }

    #[test]
    fn an_action_too_long_for_greenhouse_is_refused_and_a_long_one_of_its_size_is_not() {
        let body = |action: &str| format!(r#"{{"action":"{action}","payload":{{}}}}"#).into_bytes();
        let long = body(&"a".repeat(MAX_ACTION_BYTES + 1));
        let sig = greenhouse::sign(b"k", &long);
        let refused = prepare(&instance(), Some(sig.as_bytes()), None, &long, 0);
        assert!(matches!(refused, Err(IngestError::Malformed(WebhookError::ActionTooLong))), "{refused:?}");
        let fits = body(&"a".repeat(MAX_ACTION_BYTES));
        let sig = greenhouse::sign(b"k", &fits);
        assert!(matches!(
            prepare(&instance(), Some(sig.as_bytes()), None, &fits, 0),
            Ok(Prepared::Notifications { .. })
        ));
    }

    #[test]
    fn a_body_over_the_limit_is_too_large_before_its_signature_is_checked() {
        let mut body = br#"{"action":"x","payload":{}}"#.to_vec();
        body.resize(greenhouse::MAX_BODY_BYTES + 1, b' ');
        assert!(matches!(prepare(&instance(), None, None, &body, 0), Err(IngestError::TooLarge)));
        body.pop();
        let sig = greenhouse::sign(b"k", &body);
        assert!(matches!(
            prepare(&instance(), Some(sig.as_bytes()), None, &body, 0),
            Ok(Prepared::Notifications { .. })
        ));
    }

    #[test]
    fn a_ping_keeps_a_webhook_id_of_greenhouse_size_only() {
        assert_eq!(ping_record(Some("48213".into()), 0)["webHookId"], "48213");
        assert_eq!(ping_record(Some("9".repeat(MAX_WEB_HOOK_ID_BYTES + 1)), 0)["webHookId"], Value::Null);
        assert_eq!(ping_record(None, 0)["date"], "1970-01-01T00:00:00Z");
    }
}
