//! The previous serde-based `parse_webhook`, kept only as an oracle for the differential tests of
//! the scanner-based one: same envelope, same mapping, reached through serde_json's visitors.
//! Three differences from the shipped one are expected and excluded by the tests: this one counts
//! depth by serde_json's recursion limit (128, reset when the payload is re-read), it skips
//! object keys with `IgnoredAny` (no surrogate check there), and it trims a form feed around the
//! document as if JSON allowed it there. In each case it accepts what `Value` refuses.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use super::{MappedEvent, Mapping, Person, TABLE, Webhook, WebhookError, map_person, map_unknown};

/// Validates, bounds and maps a delivery in one pass over the bytes (plus the depth check).
/// Greenhouse puts `action` before `payload`, so the mapping reads the payload as it streams
/// by; a body in the other order costs a second pass over the payload.
pub fn parse_webhook_reference(body: &[u8]) -> Result<Webhook<'_>, WebhookError> {
    if body.len() > super::MAX_BODY_BYTES {
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
    Ok(Webhook { action, raw, mapping })
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

/// Maps the payload of `action` as serde streams it, reading only the fields the table names.
struct PayloadSeed<'a>(&'a str);

impl<'de> DeserializeSeed<'de> for PayloadSeed<'_> {
    type Value = Mapping;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        let action = self.0;
        if action == "ping" {
            let web_hook_id = d.deserialize_map(PathVisitor { head: "web_hook_id", rest: &[] })?;
            return Ok(Mapping::Ping { web_hook_id });
        }
        if let Some(&(_, object_type, event_type, path)) = TABLE.iter().find(|row| row.0 == action) {
            let (head, rest) = path.split_first().expect("table paths are not empty");
            let object_id = d.deserialize_map(PathVisitor { head, rest })?;
            return Ok(Mapping::Events(vec![MappedEvent {
                object_type: Cow::Borrowed(object_type),
                object_id,
                event_type,
            }]));
        }
        match action {
            "delete_candidate" | "merge_candidate" => Ok(map_person(action, d.deserialize_map(PersonPayload)?)),
            _ => Ok(map_unknown(d.deserialize_map(FirstObjectWithId)?)),
        }
    }
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
                    p.deleted_application_ids = map.next_value::<Ids>()?.0;
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

/// `deleted_application_ids`: the ids of an array; any other value is no ids.
struct Ids(Vec<String>);

impl<'de> Deserialize<'de> for Ids {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Ids;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Ids, A::Error> {
                let mut ids = vec![];
                while let Some(id) = seq.next_element::<Id>()? {
                    ids.extend(id.0);
                }
                Ok(Ids(ids))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Ids, A::Error> {
                SkipVisitor.visit_map(map).map(|_| Ids(vec![]))
            }
            scalars_are!(Ids(vec![]));
        }
        d.deserialize_any(V)
    }
}

/// The scanner-based `parse_webhook` against this one and against `serde_json::Value`:
/// - it accepts exactly what both accept (this one alone is laxer in the three ways the module
///   names, each refused by `Value`);
/// - where both accept, the action, `raw` and the mapping are the same;
/// - it answers `NotJson` exactly when `Value` refuses the text, else `NotAWebhook`.
#[cfg(test)]
mod differential {
    use proptest::prelude::*;

    use super::super::{WebhookError, known_actions, parse_webhook};
    use super::parse_webhook_reference;

    fn check(body: &str) -> Result<(), TestCaseError> {
        let new = parse_webhook(body.as_bytes());
        let old = parse_webhook_reference(body.as_bytes());
        let value = serde_json::from_str::<serde_json::Value>(body);
        match (&new, &old) {
            (Ok(n), Ok(o)) => {
                prop_assert_eq!(&n.action, &o.action, "{}", body);
                prop_assert_eq!(n.raw, o.raw, "{}", body);
                prop_assert_eq!(&n.mapping, &o.mapping, "{}", body);
                prop_assert!(value.is_ok(), "accepted what Value refuses: {}", body);
            }
            (Ok(n), Err(e)) => prop_assert!(false, "only the scanner accepts {}: {:?} / {}", body, n.mapping, e),
            (Err(e), Ok(_)) => prop_assert!(value.is_err(), "only the reference accepts {}: {}", body, e),
            (Err(_), Err(_)) => {}
        }
        if let Err(e) = &new {
            match &value {
                Ok(_) => prop_assert_eq!(e, &WebhookError::NotAWebhook, "{}", body),
                Err(_) => prop_assert!(matches!(e, WebhookError::NotJson(_)), "{}: {:?}", body, e),
            }
        }
        Ok(())
    }

    fn ws() -> impl Strategy<Value = &'static str> {
        prop_oneof![4 => Just(""), 1 => Just(" "), 1 => Just("\n    "), 1 => Just("\t\r\n")]
    }

    fn string() -> impl Strategy<Value = String> {
        let part = prop_oneof![
            40 => "[a-zA-Z0-9 _]{1,12}",
            2 => Just("\\u003c".to_owned()),
            2 => Just("\\u0000".to_owned()),
            2 => Just("\\/\\b\\f\\n\\r\\t\\\"\\\\".to_owned()),
            2 => Just("\\ud83d\\ude00".to_owned()),
            2 => Just("\\uD83D\\uDE00".to_owned()),
            2 => Just("\u{7f}é€😀".to_owned()),
            2 => Just("{[\\\"]}".to_owned()),
        ];
        prop::collection::vec(part, 0..4).prop_map(|p| format!("\"{}\"", p.concat()))
    }

    /// Numbers, including big integers and the ones near the f64 bound (some just over).
    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            40 => any::<i64>().prop_map(|n| n.to_string()),
            10 => any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(|f| format!("{f:e}")),
            10 => "-?[1-9][0-9]{15,40}",
            3 => Just("-0".to_owned()),
            1 => "-?[1-9][0-9]{300,310}",
            1 => "-?[0-9]\\.[0-9]{1,3}[eE][+-]?(29[0-9]|30[0-9]|31[0-9])",
            1 => prop::sample::select(vec!["1.7976931348623157e308", "1.7976931348623158e308", "1.797693134862316e308", "0e99999999999999999999", "1e99999999999999999999", "1e-99999999999999999999"]).prop_map(str::to_owned),
        ]
    }

    /// What is not JSON (or not for `Value`: lone surrogates), rarely, among the leaves.
    fn broken() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "01",
            "1.",
            ".5",
            "-",
            "1e",
            "+1",
            "0x1",
            "tru",
            "nul",
            "NaN",
            r#""\x""#,
            "\"a\tb\"",
            "\"\u{1}\"",
            r#""\u12g4""#,
            r#""\ud83d""#,
            r#""\ude00""#,
            r#""\ud83d\u0041""#,
            r#""\ud83d\ud83d""#,
            r#""\ud83d\""#,
            r#""\ud83d\u""#,
        ])
        .prop_map(str::to_owned)
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            3 => prop::sample::select(vec![
                "action", "payload", "id", "person", "job", "application", "offer", "candidate_id",
                "deleted_application_ids", "new_candidate_id", "web_hook_id", "job_post",
            ]).prop_map(|k| format!("\"{k}\"")),
            1 => prop::sample::select(vec!["\"a\\u0063tion\"", "\"i\\u0064\"", "\"\\u0070ayload\"", "\"id\\u0000\""]).prop_map(str::to_owned),
            2 => "\"[a-z_]{1,6}\"",
        ]
    }

    fn value() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            10 => prop::sample::select(vec!["null", "true", "false"]).prop_map(str::to_owned),
            30 => number(),
            30 => string(),
            10 => prop::sample::select(known_actions().collect::<Vec<_>>()).prop_map(|a| format!("\"{a}\"")),
            1 => broken(),
        ];
        leaf.prop_recursive(6, 64, 6, |inner| {
            prop_oneof![
                (prop::collection::vec((ws(), inner.clone()), 0..6), ws()).prop_map(|(v, end)| {
                    let items: Vec<String> = v.into_iter().map(|(w, x)| format!("{w}{x}")).collect();
                    format!("[{}{end}]", items.join(","))
                }),
                (prop::collection::vec((ws(), key(), ws(), inner), 0..6), ws()).prop_map(|(kv, end)| {
                    let members: Vec<String> = kv.into_iter().map(|(w, k, w2, v)| format!("{w}{k}{w2}:{v}")).collect();
                    format!("{{{}{end}}}", members.join(","))
                }),
            ]
        })
    }

    /// Mostly an id, where the mapping reads one.
    fn id() -> impl Strategy<Value = String> {
        prop_oneof![3 => number(), 2 => string(), 1 => value()]
    }

    /// The `person` member the fan-out rows read: its id, up to 25 application ids, a new id.
    fn person() -> impl Strategy<Value = String> {
        (id(), prop::collection::vec(id(), 0..25), id()).prop_map(|(a, ids, b)| {
            let ids = ids.join(",");
            format!("\"person\": {{\"id\": {a}, \"deleted_application_ids\": [{ids}], \"new_candidate_id\": {b}}}")
        })
    }

    /// Payload objects with ids where the table, the fan-out rows, ping and the unknown-action
    /// rule read them, among other members, in any order, sometimes repeated.
    fn payload() -> impl Strategy<Value = String> {
        let member = prop_oneof![
            (
                prop::sample::select(vec![
                    "application",
                    "candidate",
                    "job",
                    "offer",
                    "job_post",
                    "interview",
                    "scorecard",
                    "department",
                    "office",
                    "job_interview_stage",
                    "hiring_team"
                ]),
                id(),
                value()
            )
                .prop_map(|(k, id, v)| format!("\"{k}\": {{\"x\": {v}, \"id\": {id}}}")),
            (prop::sample::select(vec!["id", "candidate_id", "web_hook_id"]), id())
                .prop_map(|(k, id)| format!("\"{k}\":{id}")),
            person(),
            (key(), value()).prop_map(|(k, v)| format!("{k}: {v}")),
        ];
        prop::collection::vec(member, 0..5).prop_map(|m| format!("{{{}}}", m.join(", ")))
    }

    /// The payload member where `action`'s mapping reads its id, most of the time.
    fn where_the_id_is(action: &str) -> BoxedStrategy<Option<String>> {
        let path: Vec<String> = match action {
            "ping" => vec!["web_hook_id".into()],
            "delete_candidate" | "merge_candidate" => {
                return prop_oneof![4 => person().prop_map(Some), 1 => Just(None)].boxed();
            }
            _ => match super::super::TABLE.iter().find(|row| row.0 == action) {
                Some(row) => row.3.iter().map(|k| (*k).to_owned()).collect(),
                None => vec!["[a-z_]{1,10}".into(), "id".into()],
            },
        };
        let (head, rest) = (path[0].clone(), path[1..].to_vec());
        let head: BoxedStrategy<String> =
            if head.starts_with('[') { "[a-z_]{1,10}".boxed() } else { Just(head).boxed() };
        prop_oneof![
            4 => (head, id(), value()).prop_map(move |(head, id, v)| Some(match rest.first() {
                None => format!("\"{head}\": {id}"),
                Some(k) => format!("\"{head}\": {{\"x\": {v}, \"{k}\": {id}}}"),
            })),
            1 => Just(None),
        ]
        .boxed()
    }

    /// Bodies that are mostly webhooks: an action (known, unknown or not a string) and a payload
    /// (mostly an object) in either order, extra members, sometimes repeated.
    fn body() -> impl Strategy<Value = String> {
        // The action, and the payload, which mostly holds an id where that action's mapping reads it.
        let names = prop_oneof![
            12 => prop::sample::select(known_actions().collect::<Vec<_>>()).prop_map(str::to_owned),
            1 => Just("ping".to_owned()),
            2 => "[a-z_]{1,12}",
        ];
        let mapped = names.prop_flat_map(|name| {
            let member = where_the_id_is(&name);
            let quoted = if name == "job_created" { "\"job_cr\\u0065ated\"".to_owned() } else { format!("\"{name}\"") };
            (Just(quoted), member, payload())
        });
        let both = prop_oneof![
            8 => mapped.prop_map(|(action, member, payload)| {
                let payload = match member {
                    None => payload,
                    Some(m) if payload == "{}" => format!("{{{m}}}"),
                    Some(m) => format!("{{{m}, {}", &payload[1..]),
                };
                (action, payload)
            }),
            1 => (value(), value()),
        ];
        let action_and_payload = both.prop_map(|(a, p)| (format!("\"action\":{a}"), format!("\"payload\": {p}")));
        let member = prop_oneof![
            1 => action_and_payload.clone().prop_map(|(a, _)| a),
            1 => action_and_payload.clone().prop_map(|(_, p)| p),
            4 => (key(), value()).prop_map(|(k, v)| format!("{k}:{v}")),
        ];
        let envelope =
            (action_and_payload, any::<bool>(), prop::collection::vec((member, any::<prop::sample::Index>()), 0..3))
                .prop_map(|((a, p), payload_first, extra)| {
                    let mut members = if payload_first { vec![p, a] } else { vec![a, p] };
                    for (m, at) in extra {
                        members.insert(at.index(members.len() + 1), m);
                    }
                    members
                });
        prop_oneof![
            8 => (envelope, ws()).prop_map(|(m, w)| format!("{w}{{{}}}{w}", m.join(","))),
            1 => value(),
        ]
    }

    /// One byte-level change: a deletion, an insertion of a JSON-significant byte, a truncation.
    fn mutate(body: &str, at: prop::sample::Index, what: u8) -> Option<String> {
        let mut b = body.as_bytes().to_vec();
        if b.is_empty() {
            return None;
        }
        let i = at.index(b.len());
        match what % 3 {
            0 => {
                b.remove(i);
            }
            1 => b.insert(i, b"{}[]\",:\\ 0-.eu"[(what / 3) as usize % 14]),
            _ => b.truncate(i),
        }
        String::from_utf8(b).ok()
    }

    fn fixtures() -> Vec<String> {
        let dir = std::env::var("GREENHOUSE_FIXTURES").map(std::path::PathBuf::from).unwrap_or_else(|_| {
            std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/greenhouse")
        });
        let mut out: Vec<String> = std::fs::read_dir(&dir)
            .expect("fixtures present")
            .map(|e| e.expect("readable").path())
            .filter(|p| {
                p.extension().is_some_and(|x| x == "json")
                    && !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('_'))
            })
            .map(|p| std::fs::read_to_string(p).expect("UTF-8 fixture"))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn fixtures_map_the_same() {
        let fixtures = fixtures();
        assert!(fixtures.len() >= 30);
        for body in &fixtures {
            assert!(parse_webhook(body.as_bytes()).is_ok());
            check(body).unwrap();
        }
    }

    /// The generators are not vacuous: they reach acceptance, both refusals, and the mappings.
    #[test]
    fn generated_bodies_reach_every_outcome() {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let mut runner = TestRunner::deterministic();
        let (mut events, mut pings, mut with_id, mut shape, mut syntax) = (0, 0, 0, 0, 0);
        let strategy = body();
        for _ in 0..1000 {
            let body = strategy.new_tree(&mut runner).expect("a body").current();
            match parse_webhook(body.as_bytes()) {
                Ok(w) => match w.mapping {
                    super::Mapping::Events(e) => {
                        events += 1;
                        with_id += usize::from(e.iter().any(|e| e.object_id.is_some()));
                    }
                    super::Mapping::Ping { .. } => pings += 1,
                },
                Err(WebhookError::NotAWebhook) => shape += 1,
                Err(_) => syntax += 1,
            }
        }
        for (what, n) in [
            ("events", events),
            ("with an id", with_id),
            ("pings", pings),
            ("wrong shape", shape),
            ("not JSON", syntax),
        ] {
            assert!(n >= 10, "{what}: {n} of 1000");
        }
    }

    proptest! {
        // PROPTEST_CASES runs a longer campaign by hand.
        #![proptest_config(ProptestConfig {
            cases: if std::env::var_os("PROPTEST_CASES").is_some() { ProptestConfig::default().cases } else { 1024 },
            ..ProptestConfig::default()
        })]

        #[test]
        fn generated_bodies(body in body()) {
            check(&body)?;
        }

        #[test]
        fn generated_bodies_with_one_change(body in body(), at in any::<prop::sample::Index>(), what in any::<u8>()) {
            if let Some(changed) = mutate(&body, at, what) {
                check(&changed)?;
            }
        }

        #[test]
        fn fixtures_with_changes(n in any::<prop::sample::Index>(), changes in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
            let fixtures = fixtures();
            let mut body = fixtures[n.index(fixtures.len())].clone();
            for (at, what) in changes {
                if let Some(changed) = mutate(&body, at, what) {
                    body = changed;
                }
            }
            check(&body)?;
        }
    }
}
