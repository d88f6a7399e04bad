//! What Greenhouse sends: signature verification over the exact bytes, a bounded parse that keeps
//! the body untouched, and the action -> event mapping of `spec/greenhouse-webhooks.md`.

use std::borrow::Cow;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::json::{self, ScanError, Scanner};

#[cfg(test)]
mod reference;

/// Greenhouse bodies are a few KB; anything above this is refused before any parsing.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Real payloads nest about 6 levels; a body may nest at most this many (objects and arrays).
/// The notification puts `raw` two levels down and the events API two more; all stay well under
/// the 128 that serde_json and other parsers refuse, so no consumer (ours or a receiver's) is
/// ever handed a document it cannot read, nor one deep enough to exhaust a stack.
pub const MAX_DEPTH: usize = 100;

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
pub fn verify_signature<K: AsRef<[u8]>>(header: Option<&[u8]>, body: &[u8], keys: &[K]) -> Result<(), SignatureError> {
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

/// `sha256 <64 hex digits>`, the algorithm name in any case, surrounded and separated by ASCII
/// whitespace. Byte slicing, not iterators: this runs on every request.
fn parse_signature_header(header: &[u8]) -> Result<[u8; 32], SignatureError> {
    let header = header.trim_ascii();
    let (algorithm, rest) = header.split_at_checked(6).ok_or(SignatureError::Malformed)?;
    if !algorithm.eq_ignore_ascii_case(b"sha256") || !rest.first().is_some_and(u8::is_ascii_whitespace) {
        return Err(SignatureError::Malformed);
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(rest.trim_ascii_start(), &mut out).map_err(|_| SignatureError::Malformed)?;
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
    #[error("the body is not a JSON object with one string `action` and one object `payload`")]
    NotAWebhook,
    #[error("the action is longer than {} bytes: no Greenhouse action is", crate::ingest::MAX_ACTION_BYTES)]
    ActionTooLong,
}

/// A parsed and mapped delivery. `raw` is the received document (outer whitespace trimmed)
/// exactly as it arrived, escapes and big integers included; nothing of it was copied.
#[derive(Debug)]
pub struct Webhook<'a> {
    pub action: Cow<'a, str>,
    pub raw: &'a str,
    pub mapping: Mapping,
}

/// Validates, bounds and maps a delivery in one pass over the bytes, reading only what the
/// mapping needs as the scanner goes by (see [`crate::json`]). Greenhouse puts `action` before
/// `payload`; a body in the other order costs a second pass over the payload.
///
/// Errors: `NotJson` or `TooDeep` when the body is not JSON within the depth bound, whatever its
/// shape; `NotAWebhook` only for valid JSON of the wrong shape (not an object, `action` missing,
/// repeated or not a string, `payload` missing, repeated or not an object).
pub fn parse_webhook(body: &[u8]) -> Result<Webhook<'_>, WebhookError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(WebhookError::TooLarge);
    }
    let text = std::str::from_utf8(body).map_err(|_| WebhookError::NotUtf8)?;
    // JSON's whitespace only (`trim_ascii` would also take a form feed, which JSON refuses).
    let raw = text.trim_matches([' ', '\t', '\n', '\r']);
    let error = |s: &Scanner<'_>| match s.error() {
        ScanError::Syntax { what, at } => {
            let (line, column) = json::line_column(raw, at);
            WebhookError::NotJson(format!("expected {what} at line {line} column {column}"))
        }
        ScanError::TooDeep => WebhookError::TooDeep,
    };
    let mut s = Scanner::new(raw, MAX_DEPTH);
    if s.peek() != Some(b'{') {
        s.skip(0).and_then(|()| s.end()).map_err(|_| error(&s))?;
        return Err(WebhookError::NotAWebhook);
    }
    let (mut action, mut payload) = (None::<Cow<'_, str>>, None);
    // A wrong shape is reported only once the whole body is known to be JSON.
    let mut wrong_shape = false;
    s.object(0, |s, key, depth| {
        if key.is("action") {
            if action.is_none() && !wrong_shape && s.peek() == Some(b'"') {
                action = Some(s.string()?.decode()?);
                return Ok(());
            }
            wrong_shape = true;
        } else if key.is("payload") {
            if payload.is_none() && !wrong_shape && s.peek() == Some(b'{') {
                payload = Some(match &action {
                    Some(action) => Payload::Mapped(map_payload(s, action, depth)?),
                    None => {
                        let start = s.offset();
                        s.skip(depth)?;
                        Payload::Later(start)
                    }
                });
                return Ok(());
            }
            wrong_shape = true;
        }
        s.skip(depth)
    })
    .and_then(|()| s.end())
    .map_err(|_| error(&s))?;
    let (Some(action), Some(payload), false) = (action, payload, wrong_shape) else {
        return Err(WebhookError::NotAWebhook);
    };
    let mapping = match payload {
        Payload::Mapped(mapping) => mapping,
        Payload::Later(start) => {
            s.seek(start);
            map_payload(&mut s, &action, 1).map_err(|_| error(&s))?
        }
    };
    Ok(Webhook { action, raw, mapping })
}

enum Payload {
    Mapped(Mapping),
    /// Where the payload starts, when it came before `action`.
    Later(usize),
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
    TABLE.iter().map(|row| row.0).chain(["delete_candidate", "merge_candidate", "ping"])
}

/// Maps the payload of `action` (the scanner is at the payload, an object) as the scanner goes
/// through it, reading only the fields the table names.
fn map_payload(s: &mut Scanner<'_>, action: &str, depth: usize) -> json::Result<Mapping> {
    if action == "ping" {
        let web_hook_id = path_id(s, depth, &["web_hook_id"])?;
        return Ok(Mapping::Ping { web_hook_id });
    }
    if let Some(&(_, object_type, event_type, path)) = TABLE.iter().find(|row| row.0 == action) {
        let object_id = path_id(s, depth, path)?;
        return Ok(Mapping::Events(vec![MappedEvent {
            object_type: Cow::Borrowed(object_type),
            object_id,
            event_type,
        }]));
    }
    match action {
        "delete_candidate" | "merge_candidate" => {
            let mut person = Person::default();
            s.object(depth, |s, key, depth| {
                if key.is("person") {
                    person = person_fields(s, depth)?;
                    Ok(())
                } else {
                    s.skip(depth)
                }
            })?;
            Ok(map_person(action, person))
        }
        _ => {
            let mut found = None;
            s.object(depth, |s, key, depth| {
                if found.is_some() {
                    return s.skip(depth);
                }
                if let Some(id) = path_id(s, depth, &["id"])? {
                    found = Some((key.decode()?.into_owned(), id));
                }
                Ok(())
            })?;
            Ok(map_unknown(found))
        }
    }
}

/// The id at `path` below the value the scanner is at; `None` when the path leads nowhere. Where
/// a key repeats, the first occurrence that yields an id wins.
fn path_id(s: &mut Scanner<'_>, depth: usize, path: &[&str]) -> json::Result<Option<String>> {
    let Some((head, rest)) = path.split_first() else {
        return id(s, depth);
    };
    if s.peek() != Some(b'{') {
        s.skip(depth)?;
        return Ok(None);
    }
    let mut found = None;
    s.object(depth, |s, key, depth| {
        if found.is_none() && key.is(head) {
            found = path_id(s, depth, rest)?;
            Ok(())
        } else {
            s.skip(depth)
        }
    })?;
    Ok(found)
}

/// A Greenhouse id as the string `objectId` carries: a number's exact text (so integers beyond
/// 2^53, or 2^64, survive), or a string's value; anything else is no id.
fn id(s: &mut Scanner<'_>, depth: usize) -> json::Result<Option<String>> {
    match s.peek() {
        Some(b'-' | b'0'..=b'9') => Ok(Some(s.number()?.to_owned())),
        Some(b'"') => Ok(Some(s.string()?.decode()?.into_owned())),
        _ => s.skip(depth).map(|()| None),
    }
}

/// `payload.person`: its `id`, `new_candidate_id` and `deleted_application_ids` (the last of
/// each when repeated). Any other shape is "no person": the mapping still yields its event,
/// without ids.
fn person_fields(s: &mut Scanner<'_>, depth: usize) -> json::Result<Person> {
    let mut p = Person::default();
    if s.peek() != Some(b'{') {
        s.skip(depth)?;
        return Ok(p);
    }
    s.object(depth, |s, key, depth| {
        if key.is("id") {
            p.id = id(s, depth)?;
        } else if key.is("new_candidate_id") {
            p.new_candidate_id = id(s, depth)?;
        } else if key.is("deleted_application_ids") {
            p.deleted_application_ids.clear();
            if s.peek() != Some(b'[') {
                return s.skip(depth);
            }
            s.array(depth, |s, depth| {
                p.deleted_application_ids.extend(id(s, depth)?);
                Ok(())
            })?;
        } else {
            s.skip(depth)?;
        }
        Ok(())
    })?;
    Ok(p)
}

/// `payload.person` of `delete_candidate` / `merge_candidate`: the fields the fan-out reads.
#[derive(Default)]
struct Person {
    id: Option<String>,
    deleted_application_ids: Vec<String>,
    new_candidate_id: Option<String>,
}

fn map_person(action: &str, person: Person) -> Mapping {
    let mut events =
        vec![MappedEvent { object_type: Cow::Borrowed("candidates"), object_id: person.id, event_type: Deleted }];
    if action == "delete_candidate" {
        events.extend(person.deleted_application_ids.into_iter().map(|id| MappedEvent {
            object_type: Cow::Borrowed("applications"),
            object_id: Some(id),
            event_type: Deleted,
        }));
    } else if let Some(id) = person.new_candidate_id {
        events.push(MappedEvent { object_type: Cow::Borrowed("candidates"), object_id: Some(id), event_type: Updated });
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
        None => MappedEvent { object_type: Cow::Borrowed("unknown"), object_id: None, event_type: EventType::Unknown },
    };
    Mapping::Events(vec![event])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(body: &str) -> Vec<(String, Option<String>, EventType)> {
        let w = parse_webhook(body.as_bytes()).unwrap();
        match w.mapping {
            Mapping::Events(e) => {
                e.into_iter().map(|e| (e.object_type.into_owned(), e.object_id, e.event_type)).collect()
            }
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
        let spaced = format!(" \t{}  ", good.replacen(' ', "\t ", 1));
        assert_eq!(verify_signature(Some(spaced.as_bytes()), body, &key), Ok(()));
        let glued = good.replacen(' ', "", 1);
        assert_eq!(verify_signature(Some(glued.as_bytes()), body, &key), Err(SignatureError::Malformed));
        let other = good.replacen("sha256", "sha257", 1);
        assert_eq!(verify_signature(Some(other.as_bytes()), body, &key), Err(SignatureError::Malformed));
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
            r#"{"action":"x","payload":{},"action":"y"}"#,
            r#"{"action":"x","payload":{},"payload":{}}"#,
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
        let ok = format!(r#"{{"action":"x","payload":{}1{}}}"#, "[".repeat(MAX_DEPTH - 4), "]".repeat(MAX_DEPTH - 4));
        assert_eq!(parse_webhook(ok.as_bytes()).unwrap_err(), WebhookError::NotAWebhook);
        let brackets_in_strings =
            format!(r#"{{"action":"x","payload":{{"s":"{}\"{}"}}}}"#, "[".repeat(500), "{".repeat(500));
        assert!(parse_webhook(brackets_in_strings.as_bytes()).is_ok());
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(parse_webhook(&big).unwrap_err(), WebhookError::TooLarge);
        // The limit itself is allowed: a body of exactly MAX_BODY_BYTES parses.
        let mut at_limit = br#"{"action":"x","payload":{}}"#.to_vec();
        at_limit.resize(MAX_BODY_BYTES, b' ');
        assert_eq!(parse_webhook(&at_limit).map(|w| w.action.into_owned()).unwrap(), "x");
    }

    #[test]
    fn depth_is_bounded_wherever_the_nesting_hides() {
        let nest = |n: usize| format!("{}1{}", "[".repeat(n), "]".repeat(n));
        // Each body with `N` where a value nests, and how many containers surround that value.
        for (template, around) in [
            (r#"{"action":"job_created","payload":{"job":{"id":1},"x":N}}"#, 2),
            (r#"{"action":"job_created","payload":{"job":{"id":N}}}"#, 3),
            (r#"{"extra":N,"action":"x","payload":{}}"#, 1),
            (r#"{"payload":{"a":N},"action":"x"}"#, 2),
            (r#"{"action":"delete_candidate","payload":{"person":{"id":1,"x":N}}}"#, 3),
            (r#"{"action":"delete_candidate","payload":{"person":{"deleted_application_ids":[N]}}}"#, 4),
            (r#"{"action":"merge_candidate","payload":{"person":N}}"#, 2),
            (r#"{"action":"hiring_team","payload":{"t":{"id":1},"u":N}}"#, 2),
            (r#"{"action":"hiring_team","payload":{"u":{"id":N}}}"#, 3),
            (r#"{"action":"ping","payload":{"web_hook_id":N}}"#, 2),
            (r#"N"#, 0),
        ] {
            let at_limit = template.replace('N', &nest(MAX_DEPTH - around));
            let over = template.replace('N', &nest(MAX_DEPTH - around + 1));
            let far_over = template.replace('N', &nest(200));
            let shaped = around > 0;
            assert_eq!(parse_webhook(at_limit.as_bytes()).is_ok(), shaped, "{template}");
            assert_eq!(parse_webhook(over.as_bytes()).unwrap_err(), WebhookError::TooDeep, "{template}");
            assert_eq!(parse_webhook(far_over.as_bytes()).unwrap_err(), WebhookError::TooDeep, "{template}");
        }
        assert_eq!(parse_webhook(nest(MAX_DEPTH).as_bytes()).unwrap_err(), WebhookError::NotAWebhook);
    }

    #[test]
    fn not_json_wins_over_a_wrong_shape_and_says_where() {
        for body in [
            r#"{"action":1,"payload":{}"#,
            r#"{"action":"x","payload":[],"rest":tru}"#,
            r#"{"action":"x","action":"y","payload":{}} x"#,
            r#"[1,2"#,
        ] {
            assert!(matches!(parse_webhook(body.as_bytes()), Err(WebhookError::NotJson(_))), "{body}");
        }
        let Err(WebhookError::NotJson(message)) =
            parse_webhook(b"{\n  \"action\": \"x\",\n  \"payload\": {\"a\": 01}\n}")
        else {
            panic!("accepted")
        };
        assert_eq!(message, "expected `,` or `}` at line 3 column 21");
    }

    #[test]
    fn only_json_whitespace_surrounds_the_document() {
        let body = r#"{"action":"x","payload":{}}"#;
        assert!(parse_webhook(format!(" \t\r\n{body}\n ").as_bytes()).is_ok());
        for around in ["\u{c}", "\u{b}", "\u{a0}", "\u{0}"] {
            for text in [format!("{around}{body}"), format!("{body}{around}")] {
                assert!(matches!(parse_webhook(text.as_bytes()), Err(WebhookError::NotJson(_))), "{text:?}");
                assert!(serde_json::from_str::<serde_json::Value>(&text).is_err());
            }
        }
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
        assert_eq!(events(r#"{"action":"job_created","payload":{"job":[1,2]}}"#), vec![("jobs".into(), None, Created)]);
    }

    #[test]
    fn unknown_actions_use_the_first_object_with_an_id() {
        assert_eq!(
            events(
                r#"{"action":"hiring_team_updated","payload":{"x":1,"meta":{"a":1},"hiring_team":{"id":4242},"job":{"id":7}}}"#
            ),
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
        assert_eq!(events(r#"{"action":"merge_candidate","payload":{}}"#), vec![("candidates".into(), None, Deleted)]);
    }

    #[test]
    fn payload_before_action_maps_the_same() {
        assert_eq!(
            events(r#"{"payload":{"application":{"id":5}},"action":"hire_candidate"}"#),
            vec![("applications".into(), Some("5".into()), Updated)]
        );
        assert_eq!(parse_webhook(br#"{"payload":[1],"action":"x"}"#).unwrap_err(), WebhookError::NotAWebhook);
        assert_eq!(
            parse_webhook(br#"{"action":"x","action":"y","payload":{}}"#).unwrap_err(),
            WebhookError::NotAWebhook
        );
    }

    #[test]
    fn ping_is_recognised() {
        let w = parse_webhook(br#"{"action":"ping","payload":{"web_hook_id":48213}}"#).unwrap();
        assert_eq!(w.mapping, Mapping::Ping { web_hook_id: Some("48213".into()) });
    }
}
