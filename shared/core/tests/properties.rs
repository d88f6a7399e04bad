//! Property tests of the ingest core.

use proptest::prelude::*;
use relay_core::greenhouse::{self, SignatureError, WebhookError};
use relay_core::ingest::{Prepared, prepare};
use relay_core::instance::{InstanceSpec, Settings};
use relay_core::notification::MAX_EVENTS_PER_NOTIFICATION;
use relay_core::ports::Instance;
use serde_json::Value;
use serde_json::value::RawValue;

const KEY: &str = "prop-secret";

fn instance() -> Instance {
    Instance {
        id: 7,
        spec: InstanceSpec {
            name: "p".into(),
            tags: vec![],
            configuration: Default::default(),
            settings: Settings {
                events_enabled: true,
                callback_url: None,
                signature_keys: vec![],
                vendor_keys: vec![KEY.into()],
            },
        },
        token_hash: String::new(),
        created_at_ms: 0,
        last_ping: None,
    }
}

/// JSON text, built as text so that it can hold what `serde_json::Value` cannot: integers far
/// beyond 2^64, and the escapes Greenhouse uses (`\u003c`, `\/`, surrogate pairs).
fn json_text() -> impl Strategy<Value = String> {
    let string = prop::collection::vec(
        prop_oneof![
            "[a-zA-Z0-9 ]{1,6}",
            Just("\\u003c".to_owned()),
            Just("\\u0026".to_owned()),
            Just("\\/".to_owned()),
            Just("\\ud83d\\ude00".to_owned()),
            Just("\\\"".to_owned()),
            Just("é".to_owned()),
            Just("{[".to_owned()),
        ],
        0..5,
    )
    .prop_map(|parts| format!("\"{}\"", parts.concat()));
    let leaf = prop_oneof![
        Just("null".to_owned()),
        Just("true".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        "[1-9][0-9]{15,40}",
        Just("1.5e300".to_owned()),
        string.clone(),
    ];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(","))),
            prop::collection::vec(("[a-z_]{1,8}", inner), 0..5).prop_map(|kv| {
                let mut seen = std::collections::HashSet::new();
                let fields: Vec<String> = kv
                    .into_iter()
                    .filter(|(k, _)| seen.insert(k.clone()))
                    .map(|(k, v)| format!("\"{k}\": {v}"))
                    .collect();
                format!("{{{}}}", fields.join(", "))
            }),
        ]
    })
}

fn raw_of(notification: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Outer<'a> {
        #[serde(borrow)]
        message: Message<'a>,
    }
    #[derive(serde::Deserialize)]
    struct Message<'a> {
        #[serde(borrow)]
        raw: &'a RawValue,
    }
    serde_json::from_slice::<Outer>(notification).unwrap().message.raw.get().to_owned()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn timestamps_are_rfc3339_as_time_writes_them(secs in -62_167_219_200i64..253_402_300_800i64, ms in 0i64..1000) {
        let t = time::OffsetDateTime::from_unix_timestamp(secs).unwrap();
        let expected = t.format(&time::format_description::well_known::Rfc3339).unwrap();
        let got = relay_core::ports::rfc3339(secs * 1000 + ms);
        prop_assert_eq!(&got, &expected);
        prop_assert_eq!(relay_core::ports::parse_rfc3339(&got), Some(secs * 1000));
    }

    #[test]
    fn signature_round_trip(key in prop::collection::vec(any::<u8>(), 0..80), body in prop::collection::vec(any::<u8>(), 0..600), flip in any::<prop::sample::Index>()) {
        let header = greenhouse::sign(&key, &body);
        prop_assert_eq!(greenhouse::verify_signature(Some(header.as_bytes()), &body, &[&key]), Ok(()));
        let mut other = key.clone();
        other.push(1);
        prop_assert_eq!(greenhouse::verify_signature(Some(header.as_bytes()), &body, &[&other]), Err(SignatureError::Mismatch));
        if !body.is_empty() {
            let mut changed = body.clone();
            changed[flip.index(body.len())] ^= 0x80;
            prop_assert_eq!(greenhouse::verify_signature(Some(header.as_bytes()), &changed, &[&key]), Err(SignatureError::Mismatch));
        }
    }

    #[test]
    fn arbitrary_bytes_give_a_typed_answer(body in prop::collection::vec(any::<u8>(), 0..300)) {
        if let Ok(w) = greenhouse::parse_webhook(&body) {
            let v: Value = serde_json::from_str(w.raw).unwrap();
            prop_assert!(v["action"].is_string() && v["payload"].is_object());
            let _ = &w.mapping;
        }
    }

    #[test]
    fn only_an_object_with_string_action_and_object_payload_is_a_webhook(doc in json_text(), action in json_text(), payload in json_text()) {
        for body in [doc.clone(), format!("{{\"action\": {action}, \"payload\": {payload}}}"), format!("{{\"payload\": {payload}, \"action\": {action}}}")] {
            let v: Value = serde_json::from_str(&body).unwrap();
            let shaped = v.get("action").is_some_and(Value::is_string) && v.get("payload").is_some_and(Value::is_object);
            match greenhouse::parse_webhook(body.as_bytes()) {
                Ok(w) => {
                    prop_assert!(shaped, "accepted {}", body);
                    let _ = &w.mapping;
                }
                Err(e) => {
                    prop_assert!(!shaped, "refused {}: {}", body, e);
                    prop_assert!(matches!(e, WebhookError::NotAWebhook | WebhookError::NotJson(_)));
                }
            }
        }
    }

    #[test]
    fn raw_survives_exactly(action in "[a-z_]{1,20}", payload in json_text(), id in "[1-9][0-9]{0,40}") {
        let payload = if payload.starts_with('{') { payload } else { format!("{{\"value\": {payload}}}") };
        // Put a big id where the mapping reads it, whatever the action.
        let payload = format!("{{\"job\": {{\"id\": {id}}}, \"rest\": {payload}}}");
        let body = format!("  {{\"action\": \"{action}\", \"payload\": {payload}}}\n");
        let sig = greenhouse::sign(KEY.as_bytes(), body.as_bytes());
        let prepared = prepare(&instance(), Some(sig.as_bytes()), None, body.as_bytes(), 0).unwrap();
        let Prepared::Notifications { notifications, .. } = prepared else { return Ok(()) };
        for n in &notifications {
            let raw = raw_of(&n.body);
            prop_assert_eq!(raw.as_str(), body.trim());
            let a: Value = serde_json::from_str(&raw).unwrap();
            let b: Value = serde_json::from_str(&body).unwrap();
            prop_assert_eq!(a, b);
        }
        if action == "job_created" {
            let v: Value = serde_json::from_slice(&notifications[0].body).unwrap();
            prop_assert_eq!(v["message"]["events"][0]["objectId"].as_str(), Some(id.as_str()));
        }
    }

    #[test]
    fn notifications_hold_at_most_twenty_events_and_all_of_them(ids in prop::collection::vec(1u64..u64::MAX, 0..120)) {
        let body = serde_json::json!({"action": "delete_candidate", "payload": {"person": {"id": 1, "deleted_application_ids": ids}}}).to_string();
        let sig = greenhouse::sign(KEY.as_bytes(), body.as_bytes());
        let Prepared::Notifications { notifications, .. } = prepare(&instance(), Some(sig.as_bytes()), Some("x"), body.as_bytes(), 0).unwrap() else {
            panic!("not forwarded")
        };
        let mut seen = vec![];
        let mut event_ids = std::collections::HashSet::new();
        for n in &notifications {
            let v: Value = serde_json::from_slice(&n.body).unwrap();
            let events = v["message"]["events"].as_array().unwrap();
            prop_assert!(!events.is_empty() && events.len() <= MAX_EVENTS_PER_NOTIFICATION);
            prop_assert!(event_ids.insert(n.event_id.clone()));
            seen.extend(events.iter().map(|e| e["objectId"].as_str().unwrap().to_owned()));
        }
        let mut want = vec!["1".to_owned()];
        want.extend(ids.iter().map(u64::to_string));
        prop_assert_eq!(seen, want);
        prop_assert_eq!(notifications.len(), (ids.len() + 1).div_ceil(MAX_EVENTS_PER_NOTIFICATION));
    }
}

/// The deepest body accepted still makes a notification, and an events-API page holding it, that
/// serde_json (whose limit of 128 levels is the strictest common one) reads back.
#[test]
fn the_deepest_accepted_body_stays_readable_downstream() {
    let around = 2; // the body's object and its payload
    let nest = greenhouse::MAX_DEPTH - around;
    let body = format!(
        r#"{{"action":"job_created","payload":{{"job":{{"id":1}},"deep":{}1{}}}}}"#,
        "[".repeat(nest),
        "]".repeat(nest)
    );
    let sig = greenhouse::sign(KEY.as_bytes(), body.as_bytes());
    let Prepared::Notifications { notifications, .. } =
        prepare(&instance(), Some(sig.as_bytes()), None, body.as_bytes(), 0).unwrap()
    else {
        panic!("not forwarded")
    };
    let n = &notifications[0];
    assert!(serde_json::from_slice::<Value>(&n.body).is_ok());
    let mut record =
        relay_core::ports::EventRecord::listed(n.event_id.clone(), 7, relay_core::ports::EventStatus::Pending);
    record.body = n.body.clone();
    let page = [b"[".as_slice(), &relay_core::manage::event_json(&record), b"]"].concat();
    let v: Value = serde_json::from_slice(&page).unwrap();
    assert_eq!(v[0]["notification"]["message"]["raw"], serde_json::from_str::<Value>(&body).unwrap());
    let deeper = body.replacen('[', "[[", 1).replacen(']', "]]", 1);
    assert_eq!(greenhouse::parse_webhook(deeper.as_bytes()).unwrap_err(), WebhookError::TooDeep);
}
