//! Use case: accept one Greenhouse delivery. The 200 it leads to means "durably queued".

use std::time::Duration;

use serde_json::{Map, Value};

use crate::greenhouse::{self, Mapping, SignatureError, WebhookError};
use crate::notification::{self, Context, Notification};
use crate::ports::{AcceptOutcome, Accepted, Clock, Events, Instance, Instances, StoreError, rfc3339};

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
    let events = match webhook.mapping {
        Mapping::Ping { web_hook_id } => return Ok(Prepared::Ping { web_hook_id }),
        Mapping::Events(events) => events,
    };
    let accepted_at = rfc3339(accepted_at_ms);
    let ctx = Context {
        instance_id: instance.id,
        instance_name: &instance.spec.name,
        instance_tags: &instance.spec.tags,
        accepted_at: &accepted_at,
    };
    let delivery_key = notification::delivery_key(greenhouse_event_id, body);
    let notifications = notification::build(&ctx, &delivery_key, webhook.raw, &events);
    Ok(Prepared::Notifications { action: webhook.action.into_owned(), delivery_key, notifications })
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
            let mut ping = Map::new();
            ping.insert("webHookId".into(), web_hook_id.map(Value::String).unwrap_or(Value::Null));
            ping.insert("date".into(), Value::String(rfc3339(now)));
            instances.record_ping(instance.id, ping).await?;
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
