//! What Greenhouse sends: signature verification over the exact bytes, a bounded parse that keeps
//! the body untouched, and the action -> event mapping of `spec/greenhouse-webhooks.md`.

use std::borrow::Cow;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use sha2::Sha256;

/// Greenhouse bodies are a few KB; anything above this is refused before any parsing.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Real payloads nest about 6 levels. The bound keeps every consumer (ours and the
/// receivers' JSON parsers) far from stack exhaustion.
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Signature header is missing")]
    Missing,
    #[error("the Signature header is not of the form `sha256 <64 hex digits>`")]
    Malformed,
    #[error("the Signature header does not match the body under any secret key of this instance")]
    Mismatch,
}

/// Verifies `Signature: sha256 <hex>` against the exact received bytes with any of `keys`.
/// The comparison is constant time (`Mac::verify_slice`).
pub fn verify_signature<K: AsRef<[u8]>>(
    header: Option<&[u8]>,
    body: &[u8],
    keys: &[K],
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let expected = parse_signature_header(header)?;
    let matched = keys.iter().any(|key| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_ref()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&expected).is_ok()
    });
    if matched { Ok(()) } else { Err(SignatureError::Mismatch) }
}

fn parse_signature_header(header: &[u8]) -> Result<[u8; 32], SignatureError> {
    let text = std::str::from_utf8(header).map_err(|_| SignatureError::Malformed)?;
    let mut parts = text.split_ascii_whitespace();
    let (Some(algorithm), Some(digest), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(SignatureError::Malformed);
    };
    if !algorithm.eq_ignore_ascii_case("sha256") {
        return Err(SignatureError::Malformed);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(digest, &mut out).map_err(|_| SignatureError::Malformed)?;
    Ok(out)
}

/// The `Signature` header value Greenhouse would send for `body` under `key`.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256 {}", hex::encode(mac.finalize().into_bytes()))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    #[error("the body is not UTF-8")]
    NotUtf8,
    #[error("the body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the body is not valid JSON: {0}")]
    NotJson(String),
    #[error("the body is not a JSON object with a string `action` and an object `payload`")]
    NotAWebhook,
}

/// A parsed delivery. Nothing is copied: `raw` is the received document (outer whitespace
/// trimmed) exactly as it arrived, escapes and big integers included.
#[derive(Debug)]
pub struct Webhook<'a> {
    pub action: Cow<'a, str>,
    pub payload: &'a RawValue,
    pub raw: &'a str,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow)]
    payload: Option<&'a RawValue>,
}

pub fn parse_webhook(body: &[u8]) -> Result<Webhook<'_>, WebhookError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| WebhookError::NotUtf8)?;
    check_depth(text.as_bytes(), MAX_DEPTH)?;
    let raw = text.trim_ascii();
    if !raw.starts_with('{') {
        return Err(WebhookError::NotAWebhook);
    }
    let envelope: Envelope<'_> = serde_json::from_str(raw).map_err(|e| {
        if e.is_data() { WebhookError::NotAWebhook } else { WebhookError::NotJson(e.to_string()) }
    })?;
    match (envelope.action, envelope.payload) {
        (Some(action), Some(payload)) if payload.get().starts_with('{') => {
            Ok(Webhook { action, payload, raw })
        }
        _ => Err(WebhookError::NotAWebhook),
    }
}

/// serde_json skips ignored and raw values iteratively and without a depth limit, so the bound
/// is checked here, in one pass over the bytes, before anything else reads them.
fn check_depth(bytes: &[u8], max: usize) -> Result<(), WebhookError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(WebhookError::TooDeep);
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    Created,
    Updated,
    Deleted,
    Unknown,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Created => "CREATED",
            EventType::Updated => "UPDATED",
            EventType::Deleted => "DELETED",
            EventType::Unknown => "UNKNOWN",
        }
    }
}

/// One normalized event: what changed, in Cloud Elements terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedEvent {
    pub object_type: Cow<'static, str>,
    pub object_id: Option<String>,
    pub event_type: EventType,
}

/// What a delivery asks of us.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapping {
    /// `ping`: answer 200, forward nothing, remember the webhook id.
    Ping { web_hook_id: Option<String> },
    Events(Vec<MappedEvent>),
}

use EventType::{Created, Deleted, Updated};

/// The table of `greenhouse-webhooks.md`: action, objectType, eventType, path to the id.
/// `delete_candidate` and `merge_candidate` also fan out (see `map_person`).
const TABLE: &[(&str, &str, EventType, &[&str])] = &[
    ("new_candidate_application", "applications", Created, &["application", "id"]),
    ("new_prospect_application", "applications", Created, &["application", "id"]),
    ("application_updated", "applications", Updated, &["application", "id"]),
    ("candidate_stage_change", "applications", Updated, &["application", "id"]),
    ("hire_candidate", "applications", Updated, &["application", "id"]),
    ("unhire_candidate", "applications", Updated, &["application", "id"]),
    ("reject_candidate", "applications", Updated, &["application", "id"]),
    ("unreject_candidate", "applications", Updated, &["application", "id"]),
    ("delete_application", "applications", Deleted, &["application", "id"]),
    ("update_candidate", "candidates", Updated, &["candidate", "id"]),
    ("candidate_anonymized", "candidates", Updated, &["candidate_id"]),
    ("offer_created", "offers", Created, &["id"]),
    ("offer_approved", "offers", Updated, &["id"]),
    ("offer_updated", "offers", Updated, &["id"]),
    ("offer_deleted", "offers", Deleted, &["offer", "id"]),
    ("job_created", "jobs", Created, &["job", "id"]),
    ("job_updated", "jobs", Updated, &["job", "id"]),
    ("job_approved", "jobs", Updated, &["job", "id"]),
    ("job_deleted", "jobs", Deleted, &["job", "id"]),
    ("job_post_created", "job-posts", Created, &["id"]),
    ("job_post_updated", "job-posts", Updated, &["id"]),
    ("job_post_deleted", "job-posts", Deleted, &["job_post", "id"]),
    ("job_interview_stage_deleted", "job-stages", Deleted, &["job_interview_stage", "id"]),
    ("interview_deleted", "scheduled-interviews", Deleted, &["interview", "id"]),
    ("scorecard_deleted", "scorecards", Deleted, &["scorecard", "id"]),
    ("department_deleted", "departments", Deleted, &["department", "id"]),
    ("office_deleted", "offices", Deleted, &["office", "id"]),
];

/// Every action the table names, plus the two fan-out rows and `ping`.
pub fn known_actions() -> impl Iterator<Item = &'static str> {
    TABLE
        .iter()
        .map(|row| row.0)
        .chain(["delete_candidate", "merge_candidate", "ping"])
}

/// Maps a parsed delivery to its events, reading only the fields the table names.
pub fn map_webhook(webhook: &Webhook<'_>) -> Result<Mapping, WebhookError> {
    let payload = webhook.payload.get();
    let bad = |_: serde_json::Error| WebhookError::NotAWebhook;
    let action = webhook.action.as_ref();
    if action == "ping" {
        let id = dig(payload, &["web_hook_id"]).map_err(bad)?;
        return Ok(Mapping::Ping { web_hook_id: id });
    }
    if let Some(&(_, object_type, event_type, path)) = TABLE.iter().find(|row| row.0 == action) {
        let object_id = dig(payload, path).map_err(bad)?;
        return Ok(Mapping::Events(vec![MappedEvent {
            object_type: Cow::Borrowed(object_type),
            object_id,
            event_type,
        }]));
    }
    match action {
        "delete_candidate" | "merge_candidate" => map_person(action, payload).map_err(bad),
        _ => map_unknown(payload).map_err(bad),
    }
}

#[derive(Deserialize)]
struct PersonPayload {
    person: Option<Person>,
}

#[derive(Deserialize)]
struct Person {
    id: Option<Id>,
    deleted_application_ids: Option<Vec<Option<Id>>>,
    new_candidate_id: Option<Id>,
}

fn map_person(action: &str, payload: &str) -> Result<Mapping, serde_json::Error> {
    let person = serde_json::from_str::<PersonPayload>(payload)?.person;
    let person = person.unwrap_or(Person { id: None, deleted_application_ids: None, new_candidate_id: None });
    let mut events = vec![MappedEvent {
        object_type: Cow::Borrowed("candidates"),
        object_id: person.id.and_then(|id| id.0),
        event_type: Deleted,
    }];
    if action == "delete_candidate" {
        for id in person.deleted_application_ids.unwrap_or_default().into_iter().flatten() {
            if let Some(id) = id.0 {
                events.push(MappedEvent {
                    object_type: Cow::Borrowed("applications"),
                    object_id: Some(id),
                    event_type: Deleted,
                });
            }
        }
    } else if let Some(id) = person.new_candidate_id.and_then(|id| id.0) {
        events.push(MappedEvent {
            object_type: Cow::Borrowed("candidates"),
            object_id: Some(id),
            event_type: Updated,
        });
    }
    Ok(Mapping::Events(events))
}

/// Unknown action: the first key of `payload` holding an object with an `id`, pluralised.
fn map_unknown(payload: &str) -> Result<Mapping, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(payload);
    let found = de.deserialize_map(FirstObjectWithId)?;
    let event = match found {
        Some((key, id)) => MappedEvent {
            object_type: Cow::Owned(format!("{}s", key.replace('_', "-"))),
            object_id: Some(id),
            event_type: EventType::Unknown,
        },
        None => MappedEvent {
            object_type: Cow::Borrowed("unknown"),
            object_id: None,
            event_type: EventType::Unknown,
        },
    };
    Ok(Mapping::Events(vec![event]))
}

struct FirstObjectWithId;

impl<'de> Visitor<'de> for FirstObjectWithId {
    type Value = Option<(String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if found.is_some() {
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            let id = map.next_value_seed(Path(&["id"]))?;
            if let Some(id) = id {
                found = Some((key.into_owned(), id));
            }
        }
        Ok(found)
    }
}

/// Reads the id at `path` in a JSON object, skipping everything else without building it.
fn dig(json: &str, path: &[&str]) -> Result<Option<String>, serde_json::Error> {
    Path(path).deserialize(&mut serde_json::Deserializer::from_str(json))
}

struct Path<'p>(&'p [&'p str]);

impl<'de> DeserializeSeed<'de> for Path<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        match self.0.split_first() {
            None => Ok(Id::deserialize(d)?.0),
            Some((head, rest)) => d.deserialize_any(PathVisitor { head, rest }),
        }
    }
}

struct PathVisitor<'p> {
    head: &'p str,
    rest: &'p [&'p str],
}

impl<'de> Visitor<'de> for PathVisitor<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(key) = map.next_key::<Cow<'de, str>>()? {
            if found.is_none() && key == self.head {
                found = map.next_value_seed(Path(self.rest))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// A Greenhouse id as the string `objectId` carries. Read from the raw text so that integers
/// beyond 2^53 (or 2^64) survive exactly; strings are accepted too; anything else is no id.
struct Id(Option<String>);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <&'de RawValue>::deserialize(d)?;
        let text = raw.get();
        let id = match text.as_bytes().first() {
            Some(b'-' | b'0'..=b'9') => Some(text.to_owned()),
            Some(b'"') => serde_json::from_str::<String>(text).ok(),
            _ => None,
        };
        Ok(Id(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(body: &str) -> Vec<(String, Option<String>, EventType)> {
        let w = parse_webhook(body.as_bytes()).unwrap();
        match map_webhook(&w).unwrap() {
            Mapping::Events(e) => e
                .into_iter()
                .map(|e| (e.object_type.into_owned(), e.object_id, e.event_type))
                .collect(),
            Mapping::Ping { .. } => panic!("ping"),
        }
    }

    #[test]
    fn malformed_signature_headers_are_rejected_without_panicking() {
        let body = b"{}";
        let key = [b"k".as_slice()];
        for header in [
            "".as_bytes(),
            b"sha256",
            b"sha256 ",
            b"sha1 00",
            b"sha256 zz",
            b"sha256 abcd",
            b"sha256 00 00",
            &[0xff, 0xfe],
        ] {
            assert_eq!(verify_signature(Some(header), body, &key), Err(SignatureError::Malformed));
        }
        assert_eq!(verify_signature(None, body, &key), Err(SignatureError::Missing));
        let good = sign(b"k", body);
        assert_eq!(verify_signature(Some(good.as_bytes()), body, &key), Ok(()));
        let upper = good.to_uppercase();
        assert_eq!(verify_signature(Some(upper.as_bytes()), body, &key), Ok(()));
        let none: [&[u8]; 0] = [];
        assert_eq!(verify_signature(Some(good.as_bytes()), body, &none), Err(SignatureError::Mismatch));
    }

    #[test]
    fn any_of_several_keys_verifies() {
        let body = br#"{"action":"x","payload":{}}"#;
        let sig = sign(b"second", body);
        let keys = ["first", "second"];
        assert_eq!(verify_signature(Some(sig.as_bytes()), body, &keys), Ok(()));
        assert_eq!(verify_signature(Some(sig.as_bytes()), body, &keys[..1]), Err(SignatureError::Mismatch));
    }

    #[test]
    fn envelope_shape_is_enforced() {
        for body in [
            "[]",
            "1",
            "\"x\"",
            "{}",
            r#"{"action":1,"payload":{}}"#,
            r#"{"action":"x"}"#,
            r#"{"action":"x","payload":null}"#,
            r#"{"action":"x","payload":[1]}"#,
            r#"{"payload":{}}"#,
        ] {
            assert_eq!(parse_webhook(body.as_bytes()).unwrap_err(), WebhookError::NotAWebhook, "{body}");
        }
        assert!(matches!(parse_webhook(b"not json{"), Err(WebhookError::NotAWebhook | WebhookError::NotJson(_))));
        assert!(matches!(parse_webhook(br#"{"action":"x","payload":{}} x"#), Err(WebhookError::NotJson(_))));
        assert_eq!(parse_webhook(&[b'{', 0xff, b'}']).unwrap_err(), WebhookError::NotUtf8);
    }

    #[test]
    fn deep_and_large_bodies_are_refused() {
        let deep = format!(r#"{{"action":"x","payload":{}1{}}}"#, "{\"a\":".repeat(100_000), "}".repeat(100_000));
        assert_eq!(parse_webhook(deep.as_bytes()).unwrap_err(), WebhookError::TooDeep);
        let ok = format!(r#"{{"action":"x","payload":{}1{}}}"#, "[".repeat(MAX_DEPTH - 1), "]".repeat(MAX_DEPTH - 1));
        assert_eq!(parse_webhook(ok.as_bytes()).unwrap_err(), WebhookError::NotAWebhook);
        let brackets_in_strings = format!(r#"{{"action":"x","payload":{{"s":"{}\"{}"}}}}"#, "[".repeat(500), "{".repeat(500));
        assert!(parse_webhook(brackets_in_strings.as_bytes()).is_ok());
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(parse_webhook(&big).unwrap_err(), WebhookError::TooLarge);
    }

    #[test]
    fn raw_is_the_exact_text() {
        let body = "\n {\"action\":\"x\",\"payload\":{\"n\":123456789012345678901234567890,\"s\":\"\\u003c\\/\\ud83d\\ude00\"}} \n";
        let w = parse_webhook(body.as_bytes()).unwrap();
        assert_eq!(w.raw, body.trim());
    }

    #[test]
    fn ids_keep_their_exact_text() {
        assert_eq!(
            events(r#"{"action":"job_created","payload":{"job":{"id":123456789012345678901234567890}}}"#),
            vec![("jobs".into(), Some("123456789012345678901234567890".into()), Created)]
        );
        assert_eq!(
            events(r#"{"action":"job_created","payload":{"job":{"id":"abc"}}}"#),
            vec![("jobs".into(), Some("abc".into()), Created)]
        );
        assert_eq!(
            events(r#"{"action":"job_created","payload":{"job":{"id":null}}}"#),
            vec![("jobs".into(), None, Created)]
        );
        assert_eq!(
            events(r#"{"action":"job_created","payload":{"job":[1,2]}}"#),
            vec![("jobs".into(), None, Created)]
        );
    }

    #[test]
    fn unknown_actions_use_the_first_object_with_an_id() {
        assert_eq!(
            events(r#"{"action":"hiring_team_updated","payload":{"x":1,"meta":{"a":1},"hiring_team":{"id":4242},"job":{"id":7}}}"#),
            vec![("hiring-teams".into(), Some("4242".into()), EventType::Unknown)]
        );
        assert_eq!(
            events(r#"{"action":"job_opened","payload":{"flag":true}}"#),
            vec![("unknown".into(), None, EventType::Unknown)]
        );
    }

    #[test]
    fn fan_out_rows() {
        assert_eq!(
            events(r#"{"action":"delete_candidate","payload":{"person":{"id":1,"deleted_application_ids":[2,3]}}}"#),
            vec![
                ("candidates".into(), Some("1".into()), Deleted),
                ("applications".into(), Some("2".into()), Deleted),
                ("applications".into(), Some("3".into()), Deleted),
            ]
        );
        assert_eq!(
            events(r#"{"action":"merge_candidate","payload":{"person":{"id":1,"new_candidate_id":9}}}"#),
            vec![("candidates".into(), Some("1".into()), Deleted), ("candidates".into(), Some("9".into()), Updated)]
        );
        assert_eq!(
            events(r#"{"action":"merge_candidate","payload":{}}"#),
            vec![("candidates".into(), None, Deleted)]
        );
    }

    #[test]
    fn ping_is_recognised() {
        let w = parse_webhook(br#"{"action":"ping","payload":{"web_hook_id":48213}}"#).unwrap();
        assert_eq!(map_webhook(&w).unwrap(), Mapping::Ping { web_hook_id: Some("48213".into()) });
    }
}
