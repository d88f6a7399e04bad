//! What Greenhouse sends: signature verification over the exact bytes, a bounded parse that keeps
//! the body untouched, and the action -> event mapping of `spec/greenhouse-webhooks.md`.

use std::borrow::Cow;
use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;
use sha2::Sha256;

/// Greenhouse bodies are a few KB; anything above this is refused before any parsing.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Real payloads nest about 6 levels. serde_json's recursion limit (128) bounds what we accept,
/// which keeps every consumer (ours and the receivers' JSON parsers) far from stack exhaustion.
pub const MAX_DEPTH: usize = 128;

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
    if matched {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

/// `sha256 <64 hex digits>`, the algorithm name in any case, surrounded and separated by ASCII
/// whitespace. Byte slicing, not iterators: this runs on every request.
fn parse_signature_header(header: &[u8]) -> Result<[u8; 32], SignatureError> {
    let header = header.trim_ascii();
    let (algorithm, rest) = header
        .split_at_checked(6)
        .ok_or(SignatureError::Malformed)?;
    if !algorithm.eq_ignore_ascii_case(b"sha256")
        || !rest.first().is_some_and(u8::is_ascii_whitespace)
    {
        return Err(SignatureError::Malformed);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(rest.trim_ascii_start(), &mut out)
        .map_err(|_| SignatureError::Malformed)?;
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

/// A parsed and mapped delivery. `raw` is the received document (outer whitespace trimmed)
/// exactly as it arrived, escapes and big integers included; nothing of it was copied.
#[derive(Debug)]
pub struct Webhook<'a> {
    pub action: Cow<'a, str>,
    pub raw: &'a str,
    pub mapping: Mapping,
}

/// Validates, bounds and maps a delivery in one pass over the bytes (plus the depth check).
/// Greenhouse puts `action` before `payload`, so the mapping reads the payload as it streams
/// by; a body in the other order costs a second pass over the payload.
pub fn parse_webhook(body: &[u8]) -> Result<Webhook<'_>, WebhookError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| WebhookError::NotUtf8)?;
    let raw = text.trim_ascii();
    if !raw.starts_with('{') {
        return Err(WebhookError::NotAWebhook);
    }
    let classify = |e: serde_json::Error| {
        if e.is_data() {
            WebhookError::NotAWebhook
        } else if e.to_string().starts_with("recursion limit exceeded") {
            WebhookError::TooDeep
        } else {
            WebhookError::NotJson(e.to_string())
        }
    };
    let mut de = serde_json::Deserializer::from_str(raw);
    let envelope = de.deserialize_map(EnvelopeVisitor).map_err(classify)?;
    de.end().map_err(classify)?;
    let (action, mapping) = match envelope {
        (Some(action), Some(Payload::Mapped(mapping))) => (action, mapping),
        (Some(action), Some(Payload::Raw(payload))) => {
            let mapping = PayloadSeed(&action)
                .deserialize(&mut serde_json::Deserializer::from_str(payload.get()))
                .map_err(classify)?;
            (action, mapping)
        }
        _ => return Err(WebhookError::NotAWebhook),
    };
    Ok(Webhook {
        action,
        raw,
        mapping,
    })
}

enum Payload<'a> {
    Mapped(Mapping),
    Raw(&'a RawValue),
}

struct EnvelopeVisitor;

impl<'de> Visitor<'de> for EnvelopeVisitor {
    type Value = (Option<Cow<'de, str>>, Option<Payload<'de>>);

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object with `action` and `payload`")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut action, mut payload) = (None::<Cow<'de, str>>, None);
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "action" if action.is_none() => action = Some(map.next_value::<Key<'de>>()?.0),
                "payload" if payload.is_none() => {
                    payload = Some(match &action {
                        Some(a) => Payload::Mapped(map.next_value_seed(PayloadSeed(a))?),
                        // Mapped (and depth-checked) in a second pass below.
                        None => Payload::Raw(map.next_value::<&'de RawValue>()?),
                    })
                }
                "action" | "payload" => {
                    return Err(de::Error::custom(format!("duplicate `{key}`")));
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        if let (Some(_), Some(Payload::Raw(p))) = (&action, &payload)
            && !p.get().starts_with('{')
        {
            return Err(de::Error::custom("`payload` is not an object"));
        }
        Ok((action, payload))
    }
}

/// A string that borrows from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The visitor methods for scalars, all answering `$value`: a visitor that descends into objects
/// has nothing to read in a bool, number, string or null.
macro_rules! scalars_are {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// Skips a value. Unlike `IgnoredAny` (which serde_json skips iteratively with no depth
/// limit), it descends through `deserialize_any`, so serde_json's recursion limit bounds the
/// nesting of everything we accept, in the same pass that validates it.
struct Skip;

impl<'de> Deserialize<'de> for Skip {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SkipVisitor)
    }
}

struct SkipVisitor;

impl<'de> Visitor<'de> for SkipVisitor {
    type Value = Skip;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Skip, A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value::<Skip>()?;
        }
        Ok(Skip)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Skip, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Skip)
    }
    scalars_are!(Skip);
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
    Ping {
        web_hook_id: Option<String>,
    },
    Events(Vec<MappedEvent>),
}

use EventType::{Created, Deleted, Updated};

/// The table of `greenhouse-webhooks.md`: action, objectType, eventType, path to the id.
/// `delete_candidate` and `merge_candidate` also fan out (see `map_person`).
const TABLE: &[(&str, &str, EventType, &[&str])] = &[
    (
        "new_candidate_application",
        "applications",
        Created,
        &["application", "id"],
    ),
    (
        "new_prospect_application",
        "applications",
        Created,
        &["application", "id"],
    ),
    (
        "application_updated",
        "applications",
        Updated,
        &["application", "id"],
    ),
    (
        "candidate_stage_change",
        "applications",
        Updated,
        &["application", "id"],
    ),
    (
        "hire_candidate",
        "applications",
        Updated,
        &["application", "id"],
    ),
    (
        "unhire_candidate",
        "applications",
        Updated,
        &["application", "id"],
    ),
    (
        "reject_candidate",
        "applications",
        Updated,
        &["application", "id"],
    ),
    (
        "unreject_candidate",
        "applications",
        Updated,
        &["application", "id"],
    ),
    (
        "delete_application",
        "applications",
        Deleted,
        &["application", "id"],
    ),
    (
        "update_candidate",
        "candidates",
        Updated,
        &["candidate", "id"],
    ),
    (
        "candidate_anonymized",
        "candidates",
        Updated,
        &["candidate_id"],
    ),
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
    (
        "job_post_deleted",
        "job-posts",
        Deleted,
        &["job_post", "id"],
    ),
    (
        "job_interview_stage_deleted",
        "job-stages",
        Deleted,
        &["job_interview_stage", "id"],
    ),
    (
        "interview_deleted",
        "scheduled-interviews",
        Deleted,
        &["interview", "id"],
    ),
    (
        "scorecard_deleted",
        "scorecards",
        Deleted,
        &["scorecard", "id"],
    ),
    (
        "department_deleted",
        "departments",
        Deleted,
        &["department", "id"],
    ),
    ("office_deleted", "offices", Deleted, &["office", "id"]),
];

/// Every action the table names, plus the two fan-out rows and `ping`.
pub fn known_actions() -> impl Iterator<Item = &'static str> {
    TABLE
        .iter()
        .map(|row| row.0)
        .chain(["delete_candidate", "merge_candidate", "ping"])
}

/// Maps the payload of `action` as serde streams it, reading only the fields the table names.
struct PayloadSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = Mapping;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let action = self.0;
        if action == "ping" {
            let web_hook_id = d.deserialize_map(PathVisitor {
                head: "web_hook_id",
                rest: &[],
            })?;
            return Ok(Mapping::Ping { web_hook_id });
        }
        if let Some(&(_, object_type, event_type, path)) = TABLE.iter().find(|row| row.0 == action)
        {
            let (head, rest) = path.split_first().expect("table paths are not empty");
            let object_id = d.deserialize_map(PathVisitor { head, rest })?;
            return Ok(Mapping::Events(vec![MappedEvent {
                object_type: Cow::Borrowed(object_type),
                object_id,
                event_type,
            }]));
        }
        match action {
            "delete_candidate" | "merge_candidate" => {
                Ok(map_person(action, d.deserialize_map(PersonPayload)?))
            }
            _ => Ok(map_unknown(d.deserialize_map(FirstObjectWithId)?)),
        }
    }
}

/// `payload.person` of `delete_candidate` / `merge_candidate`: the fields the fan-out reads.
#[derive(Default)]
struct Person {
    id: Option<String>,
    deleted_application_ids: Vec<String>,
    new_candidate_id: Option<String>,
}

struct PersonPayload;

impl<'de> Visitor<'de> for PersonPayload {
    type Value = Person;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Person, A::Error> {
        let mut person = Person::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if key == "person" {
                person = map.next_value_seed(PersonFields)?;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(person)
    }
}

struct PersonFields;

impl<'de> DeserializeSeed<'de> for PersonFields {
    type Value = Person;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Person, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for PersonFields {
    type Value = Person;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a person object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Person, A::Error> {
        let mut p = Person::default();
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            match key.as_ref() {
                "id" => p.id = map.next_value::<Id>()?.0,
                "new_candidate_id" => p.new_candidate_id = map.next_value::<Id>()?.0,
                "deleted_application_ids" => {
                    p.deleted_application_ids = map
                        .next_value::<Option<Vec<Id>>>()?
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|id| id.0)
                        .collect()
                }
                _ => {
                    map.next_value::<Skip>()?;
                }
            }
        }
        Ok(p)
    }

    // Any other shape is "no person": the mapping still yields its event, without ids.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Person, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(Person::default())
    }
    scalars_are!(Person::default());
}

fn map_person(action: &str, person: Person) -> Mapping {
    let mut events = vec![MappedEvent {
        object_type: Cow::Borrowed("candidates"),
        object_id: person.id,
        event_type: Deleted,
    }];
    if action == "delete_candidate" {
        events.extend(
            person
                .deleted_application_ids
                .into_iter()
                .map(|id| MappedEvent {
                    object_type: Cow::Borrowed("applications"),
                    object_id: Some(id),
                    event_type: Deleted,
                }),
        );
    } else if let Some(id) = person.new_candidate_id {
        events.push(MappedEvent {
            object_type: Cow::Borrowed("candidates"),
            object_id: Some(id),
            event_type: Updated,
        });
    }
    Mapping::Events(events)
}

/// Unknown action: the first key of `payload` holding an object with an `id`, pluralised.
fn map_unknown(found: Option<(String, String)>) -> Mapping {
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
    Mapping::Events(vec![event])
}

struct FirstObjectWithId;

impl<'de> Visitor<'de> for FirstObjectWithId {
    type Value = Option<(String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut found = None;
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if found.is_some() {
                map.next_value::<Skip>()?;
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
        while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
            if found.is_none() && key == self.head {
                found = map.next_value_seed(Path(self.rest))?;
            } else {
                map.next_value::<Skip>()?;
            }
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<Skip>()?.is_some() {}
        Ok(None)
    }

    scalars_are!(None);
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
            Some(b'[' | b'{') => {
                // Raw values skip without a depth limit: bound this one like everything else.
                serde_json::from_str::<Skip>(text).map_err(de::Error::custom)?;
                None
            }
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
        match w.mapping {
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
            assert_eq!(
                verify_signature(Some(header), body, &key),
                Err(SignatureError::Malformed)
            );
        }
        assert_eq!(
            verify_signature(None, body, &key),
            Err(SignatureError::Missing)
        );
        let good = sign(b"k", body);
        assert_eq!(verify_signature(Some(good.as_bytes()), body, &key), Ok(()));
        let upper = good.to_uppercase();
        assert_eq!(verify_signature(Some(upper.as_bytes()), body, &key), Ok(()));
        let spaced = format!(" \t{}  ", good.replacen(' ', "\t ", 1));
        assert_eq!(
            verify_signature(Some(spaced.as_bytes()), body, &key),
            Ok(())
        );
        let glued = good.replacen(' ', "", 1);
        assert_eq!(
            verify_signature(Some(glued.as_bytes()), body, &key),
            Err(SignatureError::Malformed)
        );
        let other = good.replacen("sha256", "sha257", 1);
        assert_eq!(
            verify_signature(Some(other.as_bytes()), body, &key),
            Err(SignatureError::Malformed)
        );
        let none: [&[u8]; 0] = [];
        assert_eq!(
            verify_signature(Some(good.as_bytes()), body, &none),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn any_of_several_keys_verifies() {
        let body = br#"{"action":"x","payload":{}}"#;
        let sig = sign(b"second", body);
        let keys = ["first", "second"];
        assert_eq!(verify_signature(Some(sig.as_bytes()), body, &keys), Ok(()));
        assert_eq!(
            verify_signature(Some(sig.as_bytes()), body, &keys[..1]),
            Err(SignatureError::Mismatch)
        );
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
            assert_eq!(
                parse_webhook(body.as_bytes()).unwrap_err(),
                WebhookError::NotAWebhook,
                "{body}"
            );
        }
        assert!(matches!(
            parse_webhook(b"not json{"),
            Err(WebhookError::NotAWebhook | WebhookError::NotJson(_))
        ));
        assert!(matches!(
            parse_webhook(br#"{"action":"x","payload":{}} x"#),
            Err(WebhookError::NotJson(_))
        ));
        assert_eq!(
            parse_webhook(&[b'{', 0xff, b'}']).unwrap_err(),
            WebhookError::NotUtf8
        );
    }

    #[test]
    fn deep_and_large_bodies_are_refused() {
        let deep = format!(
            r#"{{"action":"x","payload":{}1{}}}"#,
            "{\"a\":".repeat(100_000),
            "}".repeat(100_000)
        );
        assert_eq!(
            parse_webhook(deep.as_bytes()).unwrap_err(),
            WebhookError::TooDeep
        );
        let ok = format!(
            r#"{{"action":"x","payload":{}1{}}}"#,
            "[".repeat(MAX_DEPTH - 4),
            "]".repeat(MAX_DEPTH - 4)
        );
        assert_eq!(
            parse_webhook(ok.as_bytes()).unwrap_err(),
            WebhookError::NotAWebhook
        );
        let brackets_in_strings = format!(
            r#"{{"action":"x","payload":{{"s":"{}\"{}"}}}}"#,
            "[".repeat(500),
            "{".repeat(500)
        );
        assert!(parse_webhook(brackets_in_strings.as_bytes()).is_ok());
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(parse_webhook(&big).unwrap_err(), WebhookError::TooLarge);
    }

    #[test]
    fn depth_is_bounded_wherever_the_nesting_hides() {
        let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        for body in [
            format!(
                r#"{{"action":"job_created","payload":{{"job":{{"id":1}},"x":{}}}}}"#,
                nest(200)
            ),
            format!(
                r#"{{"action":"job_created","payload":{{"job":{{"id":{}}}}}}}"#,
                nest(200)
            ),
            format!(r#"{{"extra":{},"action":"x","payload":{{}}}}"#, nest(200)),
            format!(r#"{{"payload":{{"a":{}}},"action":"x"}}"#, nest(200)),
            format!(
                r#"{{"action":"delete_candidate","payload":{{"person":{{"id":1,"x":{}}}}}}}"#,
                nest(200)
            ),
            format!(
                r#"{{"action":"hiring_team","payload":{{"t":{{"id":1}},"u":{}}}}}"#,
                nest(200)
            ),
        ] {
            assert!(
                matches!(
                    parse_webhook(body.as_bytes()),
                    Err(WebhookError::TooDeep | WebhookError::NotAWebhook)
                ),
                "{body}"
            );
        }
        let fine = format!(
            r#"{{"action":"job_created","payload":{{"job":{{"id":1}},"x":{}}}}}"#,
            nest(100)
        );
        assert!(parse_webhook(fine.as_bytes()).is_ok());
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
            events(
                r#"{"action":"job_created","payload":{"job":{"id":123456789012345678901234567890}}}"#
            ),
            vec![(
                "jobs".into(),
                Some("123456789012345678901234567890".into()),
                Created
            )]
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
            events(
                r#"{"action":"hiring_team_updated","payload":{"x":1,"meta":{"a":1},"hiring_team":{"id":4242},"job":{"id":7}}}"#
            ),
            vec![(
                "hiring-teams".into(),
                Some("4242".into()),
                EventType::Unknown
            )]
        );
        assert_eq!(
            events(r#"{"action":"job_opened","payload":{"flag":true}}"#),
            vec![("unknown".into(), None, EventType::Unknown)]
        );
    }

    #[test]
    fn fan_out_rows() {
        assert_eq!(
            events(
                r#"{"action":"delete_candidate","payload":{"person":{"id":1,"deleted_application_ids":[2,3]}}}"#
            ),
            vec![
                ("candidates".into(), Some("1".into()), Deleted),
                ("applications".into(), Some("2".into()), Deleted),
                ("applications".into(), Some("3".into()), Deleted),
            ]
        );
        assert_eq!(
            events(
                r#"{"action":"merge_candidate","payload":{"person":{"id":1,"new_candidate_id":9}}}"#
            ),
            vec![
                ("candidates".into(), Some("1".into()), Deleted),
                ("candidates".into(), Some("9".into()), Updated)
            ]
        );
        assert_eq!(
            events(r#"{"action":"merge_candidate","payload":{}}"#),
            vec![("candidates".into(), None, Deleted)]
        );
    }

    #[test]
    fn payload_before_action_maps_the_same() {
        assert_eq!(
            events(r#"{"payload":{"application":{"id":5}},"action":"hire_candidate"}"#),
            vec![("applications".into(), Some("5".into()), Updated)]
        );
        assert_eq!(
            parse_webhook(br#"{"payload":[1],"action":"x"}"#).unwrap_err(),
            WebhookError::NotAWebhook
        );
        assert_eq!(
            parse_webhook(br#"{"action":"x","action":"y","payload":{}}"#).unwrap_err(),
            WebhookError::NotAWebhook
        );
    }

    #[test]
    fn ping_is_recognised() {
        let w = parse_webhook(br#"{"action":"ping","payload":{"web_hook_id":48213}}"#).unwrap();
        assert_eq!(
            w.mapping,
            Mapping::Ping {
                web_hook_id: Some("48213".into())
            }
        );
    }
}
