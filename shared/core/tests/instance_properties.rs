//! Property tests of instance configuration (`POST /instances`, `PATCH`/`PUT /instances/{id}`):
//! any body gives a spec or an error that names a field; no secret survives masking; and an
//! instance as the API shows it, sent back as it is, changes nothing (each mask stands for the
//! secret it hides).

use proptest::prelude::*;
use relay_core::instance::{
    API_KEY, CALLBACK_URL, EVENTS_ENABLED, InstanceSpec, MASK, SIGNATURE_KEY, VENDOR_SIGNATURE_KEY, VENDOR_TYPE,
    apply_patch, is_secret_key, masked, parse_create,
};
use serde_json::{Map, Value, json};

/// Every secret the strategies make starts with this, so finding it in an answer is a leak.
const SECRET_MARK: &str = "S3CRET-";

/// Few distinct ones, so that lists repeat keys and a rotation re-sends a stored one.
fn secret() -> impl Strategy<Value = Value> {
    "[a-c]{1,2}".prop_map(|s| Value::String(format!("{SECRET_MARK}{s}")))
}

/// Any JSON value, with no secret in it (strings of a few characters, the mask among them).
fn plain() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        "[a-zA-Z0-9 ]{0,8}".prop_map(Value::String),
        Just(Value::String(MASK.to_owned())),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,4}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for a secret-named key: secrets alone, in lists, or deep in any value.
fn secret_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => secret(),
        2 => prop::collection::vec(secret(), 0..6).prop_map(Value::Array),
        1 => (plain(), secret()).prop_map(|(p, s)| json!({"nested": [p, s]})),
        1 => plain(),
        1 => Just(Value::String(String::new())),
    ]
}

/// A value for one of the keys the service reads: mostly a valid one (one key, a list of a
/// few), sometimes not (an empty list, too many keys, an empty string, anything).
fn key_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        10 => secret(),
        4 => prop::collection::vec(secret(), 1..=4).prop_map(Value::Array),
        1 => prop::collection::vec(secret(), 0..8).prop_map(Value::Array),
        1 => plain(),
        1 => Just(Value::String(String::new())),
    ]
}

/// A configuration: each key the service reads, absent or with a valid or invalid value, and
/// unknown keys, some named like secrets.
fn configuration() -> impl Strategy<Value = Map<String, Value>> {
    let maybe = |s: BoxedStrategy<Value>| prop::option::weighted(0.7, s);
    (
        maybe(
            prop_oneof![5 => Just(json!("webhooks")), 5 => Just(json!("webhook")), 1 => Just(json!("webhookz")), 1 => Just(json!(3))]
                .boxed(),
        ),
        maybe(
            prop_oneof![
                6 => any::<bool>().prop_map(Value::Bool),
                2 => Just(json!("true")),
                2 => Just(json!("FALSE")),
                1 => Just(json!("maybe")),
                1 => Just(Value::Null)
            ]
            .boxed(),
        ),
        prop::option::weighted(
            0.9,
            prop_oneof![
                12 => Just(json!("https://receiver.example/hooks")),
                1 => Just(json!("  ")),
                1 => Just(json!(5)),
                1 => Just(Value::Null)
            ]
            .boxed(),
        ),
        maybe(key_value().boxed()),
        maybe(prop_oneof![6 => key_value(), 1 => Just(Value::Null)].boxed()),
        maybe(prop_oneof![8 => secret(), 1 => key_value(), 1 => Just(Value::Null)].boxed()),
        prop::collection::btree_map("[a-z]{1,5}", plain(), 0..4),
        prop::collection::btree_map("[a-z]{1,5}\\.(key|apiKey|secret|password|token)", secret_value(), 0..3),
    )
        .prop_map(|(vendor_type, enabled, url, signature, vendor, api, unknown, secret_named)| {
            let mut c = Map::new();
            for (k, v) in [
                (VENDOR_TYPE, vendor_type),
                (EVENTS_ENABLED, enabled),
                (CALLBACK_URL, url),
                (SIGNATURE_KEY, signature),
                (VENDOR_SIGNATURE_KEY, vendor),
                (API_KEY, api),
            ] {
                if let Some(v) = v {
                    c.insert(k.to_owned(), v);
                }
            }
            c.extend(unknown);
            c.extend(secret_named);
            c
        })
}

/// A configuration for a `PATCH`, where a secret key may also be the mask (unchanged) or a new
/// key beside the mask (a rotation: the new key and the stored ones).
fn patch_configuration() -> impl Strategy<Value = Map<String, Value>> {
    let masked = prop_oneof![
        Just(None),
        Just(Some(Value::String(MASK.to_owned()))),
        secret().prop_map(|s| Some(json!([s, MASK]))),
    ];
    (configuration(), masked.clone(), masked.clone(), masked).prop_map(|(mut c, signature, vendor, api)| {
        for (k, v) in [(SIGNATURE_KEY, signature), (VENDOR_SIGNATURE_KEY, vendor), (API_KEY, api)] {
            if let Some(v) = v {
                c.insert(k.to_owned(), v);
            }
        }
        c
    })
}

fn create_body() -> impl Strategy<Value = Value> {
    (
        prop_oneof![18 => Just(json!({"key": "greenhouse"})), 1 => Just(json!({"key": "x"})), 1 => Just(json!("greenhouse"))],
        prop_oneof![18 => "[a-z ]{0,11}[a-z]".prop_map(Value::String), 1 => Just(json!("  ")), 1 => Just(json!(7))],
        prop::option::of(prop::collection::vec("[a-z]{0,6}", 0..4)),
        configuration(),
    )
        .prop_map(|(element, name, tags, configuration)| {
            let mut body = json!({"element": element, "name": name, "configuration": configuration});
            if let Some(tags) = tags {
                body["tags"] = json!(tags);
            }
            body
        })
}

/// Every string in `v`, keys included.
fn strings(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::String(s) => out.push(s.clone()),
        Value::Array(a) => a.iter().for_each(|i| strings(i, out)),
        Value::Object(m) => m.iter().for_each(|(k, i)| {
            out.push(k.clone());
            strings(i, out)
        }),
        _ => {}
    }
}

/// What a client sees of an instance (the API's `name`, `tags`, `element`, masked
/// `configuration`), as the body of a `PATCH` or `PUT`.
fn shown(spec: &InstanceSpec) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "element": {"key": "greenhouse"},
        "name": spec.name,
        "tags": spec.tags,
        "configuration": masked(&spec.configuration),
    }))
    .unwrap()
}

/// A key set to null is a key removed (a merge patch); as stored, they are the same thing.
fn without_nulls(mut spec: InstanceSpec) -> InstanceSpec {
    spec.configuration.retain(|_, v| !v.is_null());
    spec
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_body_gives_a_spec_or_an_error_that_names_a_field(body in create_body()) {
        match parse_create(&serde_json::to_vec(&body).unwrap()) {
            Ok((spec, generated)) => {
                prop_assert_eq!(&body["element"]["key"], "greenhouse");
                prop_assert!(!spec.settings.vendor_keys.is_empty(), "Greenhouse deliveries need a key");
                prop_assert_eq!(
                    generated.is_some(),
                    body["configuration"].get(VENDOR_SIGNATURE_KEY).is_none_or(Value::is_null)
                );
                if spec.settings.events_enabled {
                    prop_assert!(spec.settings.callback_url.is_some());
                }
            }
            Err(e) => {
                prop_assert!(!e.field.is_empty() && !e.message.is_empty(), "{e:?}");
                let top = e.field.split('.').next().unwrap();
                prop_assert!(["element", "name", "tags", "configuration"].contains(&top), "{e:?}");
            }
        }
    }

    #[test]
    fn no_secret_survives_masking(body in create_body()) {
        let Ok((spec, generated)) = parse_create(&serde_json::to_vec(&body).unwrap()) else {
            return Ok(());
        };
        let shown = Value::Object(masked(&spec.configuration));
        let mut seen = vec![];
        strings(&shown, &mut seen);
        for s in &seen {
            prop_assert!(!s.contains(SECRET_MARK), "a secret in {shown}");
            prop_assert!(generated.as_deref() != Some(s.as_str()), "the generated key in {shown}");
        }
        // Every secret-named key shows as the mask, a list of masks (one per key), or null.
        for (k, v) in shown.as_object().unwrap() {
            if is_secret_key(k) {
                let ok = match v {
                    Value::Null => true,
                    Value::String(s) => s == MASK,
                    Value::Array(a) => {
                        a.iter().all(|m| m == MASK) && Some(a.len()) == spec.configuration[k].as_array().map(Vec::len)
                    }
                    _ => false,
                };
                prop_assert!(ok, "{k}: {v}");
            }
        }
        // Nor does one in what a log line or a panic would print of the instance.
        let debug = format!("{spec:?}");
        prop_assert!(!debug.contains(SECRET_MARK), "{debug}");
        prop_assert!(generated.is_none_or(|g| !debug.contains(&g)), "{debug}");
    }

    #[test]
    fn an_instance_sent_back_as_it_is_shown_changes_nothing(body in create_body()) {
        let Ok((spec, _)) = parse_create(&serde_json::to_vec(&body).unwrap()) else {
            return Ok(());
        };
        let again = apply_patch(&spec, &shown(&spec));
        prop_assert_eq!(again.map(without_nulls), Ok(without_nulls(spec)));
    }

    #[test]
    fn a_patch_of_any_configuration_gives_a_spec_that_keeps_a_vendor_key_or_an_error(
        body in create_body(),
        patch in patch_configuration(),
    ) {
        let Ok((spec, _)) = parse_create(&serde_json::to_vec(&body).unwrap()) else {
            return Ok(());
        };
        match apply_patch(&spec, &serde_json::to_vec(&json!({"configuration": patch})).unwrap()) {
            Ok(next) => {
                prop_assert!(!next.settings.vendor_keys.is_empty());
                prop_assert_eq!(&next.name, &spec.name);
                prop_assert_eq!(&next.tags, &spec.tags);
                for (k, v) in &patch {
                    if !is_secret_key(k) {
                        continue;
                    }
                    // A masked value sent for a secret key keeps what was stored.
                    if v.as_str() == Some(MASK) {
                        prop_assert_eq!(next.configuration.get(k), spec.configuration.get(k), "{}", k);
                    }
                    // `[<new>, "********"]`: the new key first, then those stored now.
                    if let Some([new, mask]) = v.as_array().map(Vec::as_slice)
                        && mask == MASK
                    {
                        let stored = match spec.configuration.get(k) {
                            Some(Value::Array(stored)) => stored.clone(),
                            Some(stored) if !stored.is_null() => vec![stored.clone()],
                            _ => vec![],
                        };
                        let mut keys: Vec<Value> = vec![];
                        for key in std::iter::once(new).chain(&stored) {
                            if !keys.contains(key) {
                                keys.push(key.clone());
                            }
                        }
                        prop_assert_eq!(next.configuration.get(k), Some(&Value::Array(keys)), "{}", k);
                    }
                }
            }
            Err(e) => prop_assert!(e.field.starts_with("configuration"), "{e:?}"),
        }
    }
}
