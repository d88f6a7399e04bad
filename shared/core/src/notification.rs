//! The Cloud Elements notification a callback receives, and how it is signed
//! (`spec/contract.md` section 3).

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::greenhouse::MappedEvent;

/// A notification never carries more events than this; a bigger delivery is split.
pub const MAX_EVENTS_PER_NOTIFICATION: usize = 20;

/// What the notifications of one delivery may come to: each part carries the whole body
/// (`raw`), so a fan-out (`delete_candidate`, `merge_candidate`) of many ids over a big body
/// multiplies it (600 parts of a 108 KB body came to 65 MB from one request). A real fan-out
/// lists one candidate's applications, far below both limits.
pub const MAX_PARTS: usize = 100;
pub const MAX_DELIVERY_BYTES: usize = 16 * 1024 * 1024;

/// A delivery whose notifications would pass `MAX_PARTS` or `MAX_DELIVERY_BYTES`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "this delivery would make {parts} notifications of at least {bytes} bytes in all; one delivery may make at most \
     {MAX_PARTS} notifications and {MAX_DELIVERY_BYTES} bytes"
)]
pub struct TooMuch {
    pub parts: usize,
    pub bytes: usize,
}

pub const USER_AGENT: &str = concat!("greenhouse-relay/", env!("CARGO_PKG_VERSION"));

/// Who the notification is about, as of the moment the ingest accepted the delivery.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub instance_id: i64,
    pub instance_name: &'a str,
    pub instance_tags: &'a [String],
    /// RFC 3339 UTC, seconds precision: `createdDate` and every event's `date`.
    pub accepted_at: &'a str,
}

/// One notification ready to queue: its deterministic id and the exact bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub event_id: String,
    pub part: u32,
    pub body: Vec<u8>,
}

/// A `Greenhouse-Event-ID` longer than this is keyed by its hash. Greenhouse sends UUIDs; the
/// key must stay well within what a store takes as a key (DynamoDB: 2,048 bytes), or a long
/// header would make the ingest answer 503 on AWS while the local mode answered 200.
pub const MAX_EVENT_ID_KEY: usize = 200;

/// The idempotency key of a Greenhouse delivery: its `Greenhouse-Event-ID` (hashed when longer
/// than `MAX_EVENT_ID_KEY`), else a body hash.
pub fn delivery_key(greenhouse_event_id: Option<&str>, body: &[u8]) -> String {
    match greenhouse_event_id.map(str::trim).filter(|id| !id.is_empty()) {
        Some(id) if id.len() <= MAX_EVENT_ID_KEY => format!("gh:{id}"),
        Some(id) => format!("gh-sha256:{}", hex::encode(Sha256::digest(id.as_bytes()))),
        None => format!("sha256:{}", hex::encode(Sha256::digest(body))),
    }
}

/// Same instance, same delivery key, same part: same id, whatever process computes it.
/// Formatted as a UUID (version 8, "custom") from the first 16 bytes of a SHA-256.
pub fn event_id(instance_id: i64, delivery_key: &str, part: u32) -> String {
    let mut h = Sha256::new();
    h.update(b"greenhouse-relay/event-id/v1\0");
    h.update(instance_id.to_be_bytes());
    h.update(part.to_be_bytes());
    h.update(delivery_key.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut hex = [0u8; 32];
    // 16 bytes always fit 32 hex digits.
    let _ = hex::encode_to_slice(b, &mut hex);
    let mut out = [b'-'; 36];
    out[0..8].copy_from_slice(&hex[0..8]);
    out[9..13].copy_from_slice(&hex[8..12]);
    out[14..18].copy_from_slice(&hex[12..16]);
    out[19..23].copy_from_slice(&hex[16..20]);
    out[24..36].copy_from_slice(&hex[20..32]);
    // Hex digits and dashes: always ASCII.
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

/// Builds the notifications for one delivery: parts of at most 20 events, each carrying `raw`
/// copied byte for byte (never re-serialised), so big integers and escapes arrive as sent.
/// Refused, before more than `MAX_DELIVERY_BYTES` are built, past the limits of [`TooMuch`].
pub fn build(
    ctx: &Context<'_>,
    delivery_key: &str,
    raw: &str,
    events: &[MappedEvent],
) -> Result<Vec<Notification>, TooMuch> {
    let empty: [MappedEvent; 0] = [];
    let mut chunks: Vec<&[MappedEvent]> = events.chunks(MAX_EVENTS_PER_NOTIFICATION).collect();
    if chunks.is_empty() {
        chunks.push(&empty);
    }
    let parts = chunks.len();
    // Every part carries `raw`: the least they can come to, known before building any.
    let least = parts.saturating_mul(raw.len());
    if parts > MAX_PARTS || least > MAX_DELIVERY_BYTES {
        return Err(TooMuch { parts, bytes: least });
    }
    let mut out = Vec::with_capacity(parts);
    let mut bytes = 0usize;
    for (part, events) in chunks.into_iter().enumerate() {
        let part = part as u32;
        let event_id = event_id(ctx.instance_id, delivery_key, part);
        let body = write_body(ctx, &event_id, raw, events);
        bytes += body.len();
        if bytes > MAX_DELIVERY_BYTES {
            return Err(TooMuch { parts, bytes });
        }
        out.push(Notification { event_id, part, body });
    }
    Ok(out)
}

/// Writes `s` as a JSON string. Most strings here (ids, dates, object types, names) need no
/// escaping, so they are copied as they are; anything else goes through serde_json.
fn json_str(out: &mut Vec<u8>, s: &str) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        // Writing into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

/// Writes a string this module generated (UUID-shaped ids, RFC 3339 dates): nothing to escape.
fn json_plain(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b':' | b'+')));
    out.push(b'"');
    out.extend_from_slice(s.as_bytes());
    out.push(b'"');
}

fn write_body(ctx: &Context<'_>, event_id: &str, raw: &str, events: &[MappedEvent]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len() + 400 + events.len() * 140);
    let mut digits = itoa::Buffer::new();
    let instance_id = digits.format(ctx.instance_id).as_bytes();
    out.extend_from_slice(b"{\"id\":");
    json_plain(&mut out, event_id);
    out.extend_from_slice(b",\"topic\":\"instance-");
    out.extend_from_slice(instance_id);
    out.extend_from_slice(b"-greenhouse-events\",\"createdDate\":");
    json_plain(&mut out, ctx.accepted_at);
    out.extend_from_slice(b",\"message\":{\"eventId\":");
    json_plain(&mut out, event_id);
    out.extend_from_slice(b",\"elementKey\":\"greenhouse\",\"instanceId\":");
    out.extend_from_slice(instance_id);
    out.extend_from_slice(b",\"instance_id\":");
    out.extend_from_slice(instance_id);
    out.extend_from_slice(b",\"instanceName\":");
    json_str(&mut out, ctx.instance_name);
    out.extend_from_slice(b",\"instanceTags\":[");
    for (i, tag) in ctx.instance_tags.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        json_str(&mut out, tag);
    }
    out.extend_from_slice(b"],\"raw\":");
    out.extend_from_slice(raw.as_bytes());
    out.extend_from_slice(b",\"events\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"elementKey\":\"greenhouse\",\"objectType\":");
        json_str(&mut out, &e.object_type);
        if let Some(id) = &e.object_id {
            out.extend_from_slice(b",\"objectId\":");
            json_str(&mut out, id);
        }
        out.extend_from_slice(b",\"eventType\":\"");
        out.extend_from_slice(e.event_type.as_str().as_bytes());
        out.extend_from_slice(b"\",\"date\":");
        json_plain(&mut out, ctx.accepted_at);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}}");
    out
}

fn hmac_base64(key: &[u8], parts: &[&[u8]]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    for p in parts {
        mac.update(p);
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// `Elements-Webhook-Signature`: `sha256=` + base64 HMAC-SHA256 of the exact bytes sent (the
/// Cloud Elements scheme). It depends only on the key and the bytes, like the notification.
pub fn elements_signature(key: &[u8], body: &[u8]) -> String {
    format!("sha256={}", hmac_base64(key, &[body]))
}

/// `webhook-signature` (Standard Webhooks): `v1,` + base64 HMAC-SHA256 of
/// `<webhook-id>.<webhook-timestamp>.<body>`. It covers the attempt's timestamp, so it is
/// computed per attempt.
pub fn standard_signature(key: &[u8], event_id: &str, timestamp: &str, body: &[u8]) -> String {
    format!("v1,{}", hmac_base64(key, &[event_id.as_bytes(), b".", timestamp.as_bytes(), b".", body]))
}

/// The headers of one attempt. `timestamp` is the attempt's unix time: Standard Webhooks
/// receivers reject stale timestamps, which is the replay protection Cloud Elements lacked.
///
/// With several signature keys (a rotation), `webhook-signature` carries one signature per key,
/// in their order and separated by spaces, as Standard Webhooks provides for: a receiver
/// verifying with any of the keys accepts the notification. `Elements-Webhook-Signature` holds
/// one signature, by the first key.
pub fn headers<K: AsRef<[u8]>>(
    body: &[u8],
    event_id: &str,
    signature_keys: &[K],
    timestamp: i64,
) -> Vec<(&'static str, String)> {
    let mut h = vec![
        ("content-type", "application/json".to_owned()),
        ("user-agent", USER_AGENT.to_owned()),
        ("elements-webhook-id", event_id.to_owned()),
    ];
    if let Some(first) = signature_keys.first() {
        let ts = timestamp.to_string();
        let standard: Vec<String> =
            signature_keys.iter().map(|key| standard_signature(key.as_ref(), event_id, &ts, body)).collect();
        h.push(("elements-webhook-signature", elements_signature(first.as_ref(), body)));
        h.push(("webhook-id", event_id.to_owned()));
        h.push(("webhook-signature", standard.join(" ")));
        h.push(("webhook-timestamp", ts));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::greenhouse::EventType;
    use std::borrow::Cow;

    fn ctx<'a>(tags: &'a [String]) -> Context<'a> {
        Context {
            instance_id: 476120,
            instance_name: "acme \"prod\"",
            instance_tags: tags,
            accepted_at: "2026-03-02T17:40:11Z",
        }
    }

    #[test]
    fn event_ids_are_deterministic_and_distinct() {
        assert_eq!(event_id(1, "gh:a", 0), event_id(1, "gh:a", 0));
        assert_ne!(event_id(1, "gh:a", 0), event_id(2, "gh:a", 0));
        assert_ne!(event_id(1, "gh:a", 0), event_id(1, "gh:b", 0));
        assert_ne!(event_id(1, "gh:a", 0), event_id(1, "gh:a", 1));
        let id = event_id(1, "gh:a", 0);
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "8");
    }

    /// Receivers drop duplicates by `eventId`, so the derivation must not change between
    /// versions (a Greenhouse retry straddling a deploy would otherwise arrive twice under two
    /// ids). The ids below were computed outside this code (Python's `hashlib` and `uuid`):
    /// SHA-256 of `greenhouse-relay/event-id/v1\0`, the instance id (i64, big-endian), the
    /// part (u32, big-endian) and the delivery key; its first 16 bytes with the UUID version
    /// set to 8 and the variant to RFC 4122's.
    #[test]
    fn event_ids_are_stable_across_versions() {
        let key = "gh:4f3c1e2a-9d1b-4a8e-b2f7-0c5d6e7f8a9b";
        assert_eq!(event_id(476120, key, 0), "d32ef691-6f01-894a-94d4-3554379f618c");
        assert_eq!(event_id(476120, key, 1), "ff0a2d41-08fc-8c0d-bdae-2d1950abc979");
        assert_eq!(event_id(1, &delivery_key(None, b"{}"), 0), "6ef2fc14-8cf7-837f-9619-d275d78699e2");
        assert_eq!(event_id(-5, "gh:x", 7), "beb7c632-e52e-87cf-94bd-629fb1f07702");
    }

    #[test]
    fn delivery_key_prefers_the_greenhouse_id() {
        assert_eq!(delivery_key(Some(" abc "), b"x"), "gh:abc");
        assert_eq!(delivery_key(Some(""), b"x"), delivery_key(None, b"x"));
        assert_ne!(delivery_key(None, b"x"), delivery_key(None, b"y"));
        // A long one is keyed by its hash: bounded, the same for the same id, distinct otherwise.
        let (long, other) = ("e".repeat(3000), format!("{}f", "e".repeat(2999)));
        let key = delivery_key(Some(&long), b"x");
        assert!(key.starts_with("gh-sha256:") && key.len() < 100, "{key}");
        assert_eq!(key, delivery_key(Some(&long), b"y"));
        assert_ne!(key, delivery_key(Some(&other), b"x"));
        let at_bound = "e".repeat(MAX_EVENT_ID_KEY);
        assert_eq!(delivery_key(Some(&at_bound), b"x"), format!("gh:{at_bound}"));
    }

    #[test]
    fn body_is_the_documented_envelope() {
        let tags = vec!["acme".to_owned()];
        let raw = r#"{"action":"hire_candidate","payload":{"n":123456789012345678901,"s":"\u003c\/"}}"#;
        let events = vec![MappedEvent {
            object_type: Cow::Borrowed("applications"),
            object_id: Some("7".into()),
            event_type: EventType::Updated,
        }];
        let n = build(&ctx(&tags), "gh:x", raw, &events).unwrap();
        assert_eq!(n.len(), 1);
        let v: serde_json::Value = serde_json::from_slice(&n[0].body).unwrap();
        assert_eq!(v["id"], n[0].event_id.as_str());
        assert_eq!(v["topic"], "instance-476120-greenhouse-events");
        assert_eq!(v["createdDate"], "2026-03-02T17:40:11Z");
        let m = &v["message"];
        assert_eq!(m["eventId"], n[0].event_id.as_str());
        assert_eq!(m["elementKey"], "greenhouse");
        assert_eq!(m["instanceId"], 476120);
        assert_eq!(m["instance_id"], 476120);
        assert_eq!(m["instanceName"], "acme \"prod\"");
        assert_eq!(m["instanceTags"], serde_json::json!(["acme"]));
        assert_eq!(
            m["events"],
            serde_json::json!([{"elementKey":"greenhouse","objectType":"applications","objectId":"7","eventType":"UPDATED","date":"2026-03-02T17:40:11Z"}])
        );
        // raw is spliced verbatim.
        let text = std::str::from_utf8(&n[0].body).unwrap();
        assert!(text.contains(raw));
    }

    #[test]
    fn names_and_tags_of_nothing_but_characters_to_escape_stay_json() {
        for special in ["\"", "\\", "\n", "\u{1}", "\u{1f}", "\"\"", "\\\\", "\"\\\n"] {
            let tags = vec![special.to_owned(), "acme".to_owned(), special.repeat(3)];
            let c = Context { instance_name: special, ..ctx(&tags) };
            let n = build(&c, "gh:x", "{}", &[]).unwrap();
            let v: serde_json::Value = serde_json::from_slice(&n[0].body).expect(special);
            assert_eq!(v["message"]["instanceName"], special);
            assert_eq!(v["message"]["instanceTags"], serde_json::json!(tags));
        }
    }

    proptest::proptest! {
        #[test]
        fn strings_are_written_as_serde_json_writes_them(s in "\\PC*|[\\x00-\\x7f]{0,12}") {
            let mut out = vec![];
            json_str(&mut out, &s);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
        }
    }

    #[test]
    fn big_deliveries_are_split_in_parts_of_twenty() {
        let tags = vec![];
        let n = build(&ctx(&tags), "gh:x", "{}", &deleted_applications(45)).unwrap();
        assert_eq!(n.iter().map(|n| n.part).collect::<Vec<_>>(), vec![0, 1, 2]);
        let counts: Vec<usize> = n
            .iter()
            .map(|n| {
                serde_json::from_slice::<serde_json::Value>(&n.body).unwrap()["message"]["events"]
                    .as_array()
                    .unwrap()
                    .len()
            })
            .collect();
        assert_eq!(counts, vec![20, 20, 5]);
    }

    /// `n` deleted applications, as a fan-out maps them.
    fn deleted_applications(n: usize) -> Vec<MappedEvent> {
        (0..n)
            .map(|i| MappedEvent {
                object_type: Cow::Borrowed("applications"),
                object_id: Some(i.to_string()),
                event_type: EventType::Deleted,
            })
            .collect()
    }

    #[test]
    fn a_fan_out_past_the_parts_or_the_bytes_of_a_delivery_is_refused() {
        let tags = vec![];
        let parts = |n: usize, raw: &str| build(&ctx(&tags), "gh:x", raw, &deleted_applications(n)).map(|v| v.len());
        assert_eq!(parts(MAX_PARTS * MAX_EVENTS_PER_NOTIFICATION, "{}"), Ok(MAX_PARTS));
        assert_eq!(
            parts(MAX_PARTS * MAX_EVENTS_PER_NOTIFICATION + 1, "{}"),
            Err(TooMuch { parts: MAX_PARTS + 1, bytes: 202 })
        );
        // A body as big as a delivery may be: one part fits, two cannot.
        let raw = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_DELIVERY_BYTES / 2));
        assert_eq!(parts(20, &raw), Ok(1));
        assert_eq!(parts(41, &raw).unwrap_err().parts, 3);
        // The envelope counts too: parts whose raw alone fits, but not with their events.
        let raw = format!("{{\"a\":\"{}\"}}", "x".repeat(MAX_DELIVERY_BYTES / MAX_PARTS - 100));
        let refused = parts(MAX_PARTS * MAX_EVENTS_PER_NOTIFICATION, &raw).unwrap_err();
        assert!(
            refused.bytes > MAX_DELIVERY_BYTES && refused.bytes < MAX_DELIVERY_BYTES + raw.len() + 5000,
            "{refused:?}"
        );
    }

    #[test]
    fn the_limits_of_a_delivery_hold_at_their_bounds() {
        let tags = vec![];
        let c = ctx(&tags);
        let string_of = |len: usize| format!("\"{}\"", "x".repeat(len - 2));
        // The largest body Greenhouse may send fans out to 15 parts (about 15 MiB), not to 17.
        let body = string_of(crate::greenhouse::MAX_BODY_BYTES);
        assert_eq!(build(&c, "gh:x", &body, &deleted_applications(15 * 20)).map(|n| n.len()), Ok(15));
        let refused = build(&c, "gh:x", &body, &deleted_applications(17 * 20)).unwrap_err();
        // Refused before any part is built: the figure is what `raw` alone comes to.
        assert_eq!(refused, TooMuch { parts: 17, bytes: 17 * body.len() });
        // `raw` alone at the limit is not refused early: with the envelopes it is over, and
        // the figure says by how much.
        let half = string_of(MAX_DELIVERY_BYTES / 2);
        let refused = build(&c, "gh:x", &half, &deleted_applications(40)).unwrap_err();
        assert_eq!(refused.parts, 2);
        assert!(refused.bytes > MAX_DELIVERY_BYTES, "{refused:?}");
        // One notification of exactly MAX_DELIVERY_BYTES is allowed; a byte more is not.
        let envelope = build(&c, "gh:x", "{}", &deleted_applications(1)).unwrap()[0].body.len() - 2;
        let exact = string_of(MAX_DELIVERY_BYTES - envelope);
        let built = build(&c, "gh:x", &exact, &deleted_applications(1)).unwrap();
        assert_eq!(built[0].body.len(), MAX_DELIVERY_BYTES);
        let over = string_of(MAX_DELIVERY_BYTES - envelope + 1);
        assert_eq!(
            build(&c, "gh:x", &over, &deleted_applications(1)),
            Err(TooMuch { parts: 1, bytes: MAX_DELIVERY_BYTES + 1 })
        );
    }

    #[test]
    fn signatures_follow_both_schemes() {
        let body = br#"{"id":"e"}"#;
        let h = headers(body, "e", &["key"], 1_700_000_000);
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(body);
        assert_eq!(get("elements-webhook-signature"), format!("sha256={}", BASE64.encode(mac.finalize().into_bytes())));
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(b"e.1700000000.");
        mac.update(body);
        assert_eq!(get("webhook-signature"), format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())));
        assert_eq!(get("webhook-timestamp"), "1700000000");
        assert_eq!(get("webhook-id"), "e");
        assert_eq!(get("elements-webhook-id"), "e");
        let unsigned = headers::<&str>(body, "e", &[], 1);
        assert!(unsigned.iter().all(|(k, _)| !k.contains("signature")));
        // A rotation: one Standard Webhooks signature per key, in order; the Cloud Elements one
        // by the first key.
        let rotating = headers(body, "e", &["new", "key"], 1_700_000_000);
        let get = |n: &str| rotating.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()).unwrap();
        let by = |key: &str| standard_signature(key.as_bytes(), "e", "1700000000", body);
        assert_eq!(get("webhook-signature"), format!("{} {}", by("new"), by("key")));
        assert_eq!(get("elements-webhook-signature"), elements_signature(b"new", body));
    }
}
