//! Element instances: the Cloud Elements `POST /instances` body, its validation, and the rule
//! that secrets leave the service only once, at creation.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngExt;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

pub const ELEMENT_KEY: &str = "greenhouse";
pub const MASK: &str = "********";

pub const API_KEY: &str = "api.key";
pub const VENDOR_TYPE: &str = "event.vendor.type";
pub const EVENTS_ENABLED: &str = "event.notification.enabled";
pub const CALLBACK_URL: &str = "event.notification.callback.url";
pub const SIGNATURE_KEY: &str = "event.notification.signature.key";
pub const VENDOR_SIGNATURE_KEY: &str = "event.vendor.signature.key";

const MAX_NAME_CHARS: usize = 256;
const MAX_TAGS: usize = 50;
const MAX_TAG_CHARS: usize = 256;
/// The configuration as JSON, at most. Unknown keys are kept and echoed, so without a bound a
/// client could store any amount; this keeps an instance well within a DynamoDB item (400 KB).
pub const MAX_CONFIGURATION_BYTES: usize = 64 * 1024;
/// Signature keys at once: a rotation needs two (the new one, then the one going out). Each
/// signs every attempt again, so they are few.
pub const MAX_SIGNATURE_KEYS: usize = 4;

/// A validation failure, naming the field so a person can fix the request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: String,
    pub message: String,
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { field: field.to_owned(), message: message.into() }
}

/// What the service itself reads from an instance's configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct Settings {
    pub events_enabled: bool,
    pub callback_url: Option<String>,
    /// `event.notification.signature.key`: none (notifications go unsigned), one, or during a
    /// rotation several, the first the current one (see `notification::headers`).
    pub signature_keys: Vec<String>,
    pub vendor_keys: Vec<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("events_enabled", &self.events_enabled)
            .field("callback_url", &self.callback_url)
            .field("signature_keys", &self.signature_keys.len())
            .field("vendor_keys", &self.vendor_keys.len())
            .finish()
    }
}

/// A validated instance body (create) or the validated result of a merge (patch).
#[derive(Clone, PartialEq)]
pub struct InstanceSpec {
    pub name: String,
    pub tags: Vec<String>,
    /// Normalised (booleans as JSON booleans), unknown keys kept, secrets in clear.
    pub configuration: Map<String, Value>,
    pub settings: Settings,
}

/// Prints the configuration as the API shows it: a stray `{:?}` in a log line or a panic
/// message cannot print a secret.
impl std::fmt::Debug for InstanceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InstanceSpec")
            .field("name", &self.name)
            .field("tags", &self.tags)
            .field("configuration", &masked(&self.configuration))
            .field("settings", &self.settings)
            .finish()
    }
}

/// `POST /instances`. A missing vendor signature key is generated and returned as `Some`.
pub fn parse_create(body: &[u8]) -> Result<(InstanceSpec, Option<String>), ConfigError> {
    let doc = parse_object(body)?;
    check_element(&doc)?;
    let name = match doc.get("name") {
        Some(v) => parse_name(v)?,
        None => return Err(invalid("name", "is required")),
    };
    let tags = doc.get("tags").map(parse_tags).transpose()?.unwrap_or_default();
    let mut configuration = match doc.get("configuration") {
        Some(Value::Object(m)) => m.clone(),
        Some(_) => return Err(invalid("configuration", "must be an object")),
        None => return Err(invalid("configuration", "is required")),
    };
    // A body copied from an answer would otherwise make the mask itself a key, one anybody can
    // guess.
    if let Some((k, _)) = configuration.iter().find(|(k, v)| is_secret_key(k) && holds_mask(v)) {
        return Err(invalid(
            &format!("configuration.{k}"),
            format!("`{MASK}` is how answers show a secret: send the secret itself"),
        ));
    }
    let generated = if configuration.get(VENDOR_SIGNATURE_KEY).is_none_or(Value::is_null) {
        let secret = generate_secret();
        configuration.insert(VENDOR_SIGNATURE_KEY.to_owned(), Value::String(secret.clone()));
        Some(secret)
    } else {
        None
    };
    let (configuration, settings) = normalize(configuration)?;
    check_size(&configuration)?;
    Ok((InstanceSpec { name, tags, configuration, settings }, generated))
}

/// `PATCH /instances/{id}`: `name`, `tags` and a partial `configuration` (a key set to null
/// is removed), validated as a whole after the merge.
pub fn apply_patch(current: &InstanceSpec, body: &[u8]) -> Result<InstanceSpec, ConfigError> {
    let doc = parse_object(body)?;
    // Optional here, but when given it is checked as at creation (`{}` or `"x"` is no element).
    if doc.contains_key("element") {
        check_element(&doc)?;
    }
    let name = doc.get("name").map(parse_name).transpose()?.unwrap_or_else(|| current.name.clone());
    let tags = doc.get("tags").map(parse_tags).transpose()?.unwrap_or_else(|| current.tags.clone());
    let mut configuration = current.configuration.clone();
    match doc.get("configuration") {
        None | Some(Value::Null) => {}
        Some(Value::Object(patch)) => {
            for (k, v) in patch {
                if v.is_null() {
                    configuration.remove(k);
                } else if is_secret_key(k) && v.as_str() == Some(MASK) {
                    // A client echoing a masked value back means "unchanged".
                } else if is_secret_key(k)
                    && let Value::Array(items) = v
                    && holds_mask(v)
                {
                    // Among keys, the mask stands for those stored now: `["<new>", "********"]`
                    // adds a key beside them (a rotation) without sending them again.
                    if let Some(keys) = with_stored(items, configuration.get(k)) {
                        configuration.insert(k.clone(), keys);
                    }
                } else {
                    configuration.insert(k.clone(), v.clone());
                }
            }
        }
        Some(_) => return Err(invalid("configuration", "must be an object")),
    }
    if configuration.get(VENDOR_SIGNATURE_KEY).is_none() {
        return Err(invalid(
            &format!("configuration.{VENDOR_SIGNATURE_KEY}"),
            "cannot be removed: Greenhouse deliveries are verified with it",
        ));
    }
    let (configuration, settings) = normalize(configuration)?;
    check_size(&configuration)?;
    Ok(InstanceSpec { name, tags, configuration, settings })
}

/// The mask, or a list holding it.
fn holds_mask(v: &Value) -> bool {
    match v {
        Value::String(s) => s == MASK,
        Value::Array(items) => items.iter().any(|i| i.as_str() == Some(MASK)),
        _ => false,
    }
}

/// `items` with each mask replaced by the stored value (one key or a list of them), each key once,
/// in order; `None` (left as stored) when all are masks, or when that leaves none.
fn with_stored(items: &[Value], stored: Option<&Value>) -> Option<Value> {
    if items.iter().all(|i| i.as_str() == Some(MASK)) {
        return None;
    }
    let stored = match stored {
        Some(Value::Array(keys)) => keys.clone(),
        Some(v) if !v.is_null() => vec![v.clone()],
        _ => vec![],
    };
    let mut keys: Vec<Value> = vec![];
    for item in items {
        let expanded = if item.as_str() == Some(MASK) { stored.clone() } else { vec![item.clone()] };
        for key in expanded {
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    (!keys.is_empty()).then_some(Value::Array(keys))
}

fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ConfigError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(invalid("body", "must be a JSON object")),
        Err(e) => Err(invalid("body", format!("is not valid JSON: {e}"))),
    }
}

/// `element` must be `{"key": "greenhouse", ...}`.
fn check_element(doc: &Map<String, Value>) -> Result<(), ConfigError> {
    match doc.get("element").and_then(|e| e.get("key")).and_then(Value::as_str) {
        Some(ELEMENT_KEY) => Ok(()),
        _ => Err(invalid("element.key", format!("must be \"{ELEMENT_KEY}\""))),
    }
}

/// Not blank, and at most `MAX_NAME_CHARS` as sent (it is kept trimmed).
fn parse_name(v: &Value) -> Result<String, ConfigError> {
    match v.as_str() {
        Some(n) if !n.trim().is_empty() && n.chars().count() <= MAX_NAME_CHARS => Ok(n.trim().to_owned()),
        _ => Err(invalid("name", format!("must be a non-empty string of at most {MAX_NAME_CHARS} characters"))),
    }
}

fn parse_tags(v: &Value) -> Result<Vec<String>, ConfigError> {
    let err = || {
        invalid("tags", format!("must be an array of at most {MAX_TAGS} strings of at most {MAX_TAG_CHARS} characters"))
    };
    let items = v.as_array().ok_or_else(err)?;
    if items.len() > MAX_TAGS {
        return Err(err());
    }
    items
        .iter()
        .map(|t| t.as_str().filter(|t| t.chars().count() <= MAX_TAG_CHARS).map(str::to_owned).ok_or_else(err))
        .collect()
}

/// A configuration of at most `MAX_CONFIGURATION_BYTES` of JSON.
fn check_size(configuration: &Map<String, Value>) -> Result<(), ConfigError> {
    let size = serde_json::to_vec(configuration).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_CONFIGURATION_BYTES {
        return Err(invalid(
            "configuration",
            format!("must be at most {MAX_CONFIGURATION_BYTES} bytes of JSON, not {size}"),
        ));
    }
    Ok(())
}

fn parse_bool(field: &str, v: &Value) -> Result<bool, ConfigError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        _ => Err(invalid(&format!("configuration.{field}"), "must be true or false")),
    }
}

fn parse_secret(field: &str, v: &Value) -> Result<String, ConfigError> {
    match v.as_str() {
        Some(s) if !s.is_empty() => Ok(s.to_owned()),
        _ => Err(invalid(&format!("configuration.{field}"), "must be a non-empty string")),
    }
}

/// Validates the keys the service reads and normalises booleans. The callback URL's network
/// rules need DNS and are checked by the caller (`network::NetworkPolicy`).
pub fn normalize(mut configuration: Map<String, Value>) -> Result<(Map<String, Value>, Settings), ConfigError> {
    if let Some(v) = configuration.get(VENDOR_TYPE)
        && !matches!(v.as_str(), Some("webhooks" | "webhook"))
    {
        return Err(invalid(&format!("configuration.{VENDOR_TYPE}"), "must be \"webhooks\""));
    }
    let callback_url = match configuration.get(CALLBACK_URL) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Some(_) => return Err(invalid(&format!("configuration.{CALLBACK_URL}"), "must be a URL string")),
    };
    let events_enabled = match configuration.get(EVENTS_ENABLED) {
        None | Some(Value::Null) => callback_url.is_some(),
        Some(v) => parse_bool(EVENTS_ENABLED, v)?,
    };
    configuration.insert(EVENTS_ENABLED.to_owned(), Value::Bool(events_enabled));
    if events_enabled && callback_url.is_none() {
        return Err(invalid(&format!("configuration.{CALLBACK_URL}"), "is required when events are enabled"));
    }
    let signature_keys = parse_secrets(&configuration, SIGNATURE_KEY, MAX_SIGNATURE_KEYS)?;
    let vendor_keys = parse_secrets(&configuration, VENDOR_SIGNATURE_KEY, usize::MAX)?;
    if let Some(v) = configuration.get(API_KEY)
        && !v.is_null()
    {
        parse_secret(API_KEY, v)?;
    }
    Ok((configuration, Settings { events_enabled, callback_url, signature_keys, vendor_keys }))
}

/// A key given as one non-empty string or as an array of 1 to `max` of them; none when absent.
fn parse_secrets(configuration: &Map<String, Value>, field: &str, max: usize) -> Result<Vec<String>, ConfigError> {
    match configuration.get(field) {
        None | Some(Value::Null) => Ok(vec![]),
        Some(Value::Array(items)) if items.is_empty() => {
            Err(invalid(&format!("configuration.{field}"), "must hold at least one key"))
        }
        Some(Value::Array(items)) if items.len() > max => {
            Err(invalid(&format!("configuration.{field}"), format!("must hold at most {max} keys")))
        }
        Some(Value::Array(items)) => items.iter().map(|v| parse_secret(field, v)).collect(),
        Some(v) => Ok(vec![parse_secret(field, v)?]),
    }
}

/// Configuration keys whose values are secrets: the documented ones and anything named like one.
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [API_KEY, SIGNATURE_KEY, VENDOR_SIGNATURE_KEY].contains(&key)
        || k.ends_with("key")
        || k.contains("secret")
        || k.contains("password")
        || k.ends_with("token")
}

/// The configuration as responses show it: every secret replaced by the mask, a list of keys by
/// a list of masks, one per key (so that a rotation in progress shows, and the list sent back as
/// it is shown keeps the keys: each mask stands for them).
pub fn masked(configuration: &Map<String, Value>) -> Map<String, Value> {
    let mask = || Value::String(MASK.to_owned());
    configuration
        .iter()
        .map(|(k, v)| {
            let v = match v {
                _ if !is_secret_key(k) => v.clone(),
                Value::Null => Value::Null,
                Value::Array(keys) => Value::Array(keys.iter().map(|_| mask()).collect()),
                _ => mask(),
            };
            (k.clone(), v)
        })
        .collect()
}

/// 256 random bits, URL-safe, prefixed so that a leaked one is recognisable in a scan.
pub fn generate_secret() -> String {
    format!("whsec_{}", random_token())
}

/// The instance token (`Authorization: Element <token>`), 256 random bits.
pub fn generate_token() -> String {
    random_token()
}

fn random_token() -> String {
    let bytes: [u8; 32] = rand::rng().random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Tokens are stored hashed: a leaked database does not hand out API access.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(conf: Value) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"element": {"key": "greenhouse"}, "configuration": conf, "tags": ["acme"], "name": "acme-prod"}),
        )
        .unwrap()
    }

    #[test]
    fn cloud_elements_body_is_accepted_with_string_booleans_and_unknown_keys() {
        let (spec, generated) = parse_create(&body(json!({
            "event.vendor.type": "webhook",
            "event.notification.enabled": "true",
            "event.notification.callback.url": "https://r.example/hooks",
            "event.notification.signature.key": "sig",
            "event.vendor.signature.key": ["a", "b"],
            "custom.thing": 42,
        })))
        .unwrap();
        assert!(generated.is_none());
        assert_eq!(spec.name, "acme-prod");
        assert_eq!(spec.tags, vec!["acme"]);
        assert!(spec.settings.events_enabled);
        assert_eq!(spec.settings.vendor_keys, vec!["a", "b"]);
        assert_eq!(spec.settings.signature_keys, ["sig"]);
        assert_eq!(spec.configuration["custom.thing"], 42);
        assert_eq!(spec.configuration[EVENTS_ENABLED], true);
    }

    #[test]
    fn a_missing_vendor_key_is_generated_once() {
        let (spec, generated) =
            parse_create(&body(json!({"event.notification.callback.url": "https://r.example/"}))).unwrap();
        let secret = generated.unwrap();
        assert!(secret.starts_with("whsec_") && secret.len() > 40);
        assert_eq!(spec.settings.vendor_keys, vec![secret.clone()]);
        assert!(spec.settings.events_enabled);
        let (_, other) = parse_create(&body(json!({"event.notification.callback.url": "https://r.example/"}))).unwrap();
        assert_ne!(other.unwrap(), secret);
    }

    #[test]
    fn errors_name_the_field() {
        let field = |b: Vec<u8>| parse_create(&b).unwrap_err().field;
        assert_eq!(field(b"[]".to_vec()), "body");
        assert_eq!(field(b"{".to_vec()), "body");
        assert_eq!(
            field(
                serde_json::to_vec(&json!({"element": {"key": "bamboohr"}, "name": "x", "configuration": {}})).unwrap()
            ),
            "element.key"
        );
        assert_eq!(
            field(serde_json::to_vec(&json!({"element": {"key": "greenhouse"}, "configuration": {}})).unwrap()),
            "name"
        );
        assert_eq!(field(body(json!({"event.vendor.type": "polling"}))), "configuration.event.vendor.type");
        assert_eq!(
            field(body(json!({"event.notification.enabled": "yes"}))),
            "configuration.event.notification.enabled"
        );
        assert_eq!(
            field(body(json!({"event.notification.enabled": true}))),
            "configuration.event.notification.callback.url"
        );
        assert_eq!(
            field(body(json!({"event.notification.callback.url": 5}))),
            "configuration.event.notification.callback.url"
        );
        assert_eq!(
            field(body(json!({"event.notification.callback.url": "https://x/", "event.vendor.signature.key": []}))),
            "configuration.event.vendor.signature.key"
        );
        assert_eq!(
            field(body(
                json!({"event.notification.callback.url": "https://x/", "event.notification.signature.key": ""})
            )),
            "configuration.event.notification.signature.key"
        );
        // A blank callback URL is no URL.
        assert_eq!(
            field(body(json!({"event.notification.callback.url": "  "}))),
            "configuration.event.notification.callback.url"
        );
        // The Harvest API key is checked as a secret when given; null is none.
        assert_eq!(
            field(body(json!({"event.notification.callback.url": "https://x/", "api.key": 5}))),
            "configuration.api.key"
        );
        assert!(parse_create(&body(json!({"event.notification.callback.url": "https://x/", "api.key": null}))).is_ok());
    }

    #[test]
    fn signature_keys_rotate_through_an_array_of_a_few() {
        let spec = |keys: Value| {
            parse_create(&body(
                json!({"event.notification.callback.url": "https://x/", "event.notification.signature.key": keys}),
            ))
        };
        assert_eq!(spec(json!("a")).unwrap().0.settings.signature_keys, ["a"]);
        assert_eq!(spec(json!(["new", "old"])).unwrap().0.settings.signature_keys, ["new", "old"]);
        assert_eq!(spec(Value::Null).unwrap().0.settings.signature_keys, Vec::<String>::new());
        let four = json!(["a", "b", "c", "d"]);
        assert_eq!(spec(four).unwrap().0.settings.signature_keys.len(), MAX_SIGNATURE_KEYS);
        for bad in [json!([]), json!(["a", "b", "c", "d", "e"]), json!(["a", ""]), json!(["a", 1]), json!({"k": "a"})] {
            let err = spec(bad.clone()).unwrap_err();
            assert_eq!(err.field, "configuration.event.notification.signature.key", "{bad}");
        }
        assert!(spec(json!([])).unwrap_err().message.contains("at least one"));
        assert!(spec(json!(["a", "b", "c", "d", "e"])).unwrap_err().message.contains("at most 4"));
        // A rotation by PATCH: both keys, the new one first; the mask echoed back keeps them;
        // then the new one alone.
        let (one, _) = spec(json!("old")).unwrap();
        let rotating =
            apply_patch(&one, br#"{"configuration":{"event.notification.signature.key":["new","old"]}}"#).unwrap();
        assert_eq!(rotating.settings.signature_keys, ["new", "old"]);
        let kept =
            apply_patch(&rotating, br#"{"configuration":{"event.notification.signature.key":"********"}}"#).unwrap();
        assert_eq!(kept.settings.signature_keys, ["new", "old"]);
        let done = apply_patch(&kept, br#"{"configuration":{"event.notification.signature.key":"new"}}"#).unwrap();
        assert_eq!(done.settings.signature_keys, ["new"]);
        let shown = serde_json::to_string(&masked(&rotating.configuration)).unwrap();
        assert!(shown.contains(r#""event.notification.signature.key":["********","********"]"#), "{shown}");
        assert!(!shown.contains("old") && !shown.contains("new"), "{shown}");
        assert!(!format!("{:?}", rotating.settings).contains("old"));
    }

    #[test]
    fn among_keys_the_mask_stands_for_the_stored_ones_and_at_creation_it_is_refused() {
        let cb = "https://x/";
        let (one, _) =
            parse_create(&body(json!({"event.notification.callback.url": cb, "event.vendor.signature.key": "gh-old"})))
                .unwrap();
        let patch = |spec: &InstanceSpec, key: &str, v: Value| {
            apply_patch(spec, serde_json::to_vec(&json!({"configuration": {key: v}})).unwrap().as_slice())
        };
        // A Greenhouse key added beside the stored one, without sending it again; then alone.
        let both = patch(&one, VENDOR_SIGNATURE_KEY, json!(["gh-new", MASK])).unwrap();
        assert_eq!(both.settings.vendor_keys, ["gh-new", "gh-old"]);
        let three = patch(&both, VENDOR_SIGNATURE_KEY, json!([MASK, "gh-3"])).unwrap();
        assert_eq!(three.settings.vendor_keys, ["gh-new", "gh-old", "gh-3"]);
        // Each key once: one sent again beside the mask is not doubled.
        let again = patch(&both, VENDOR_SIGNATURE_KEY, json!(["gh-old", MASK, MASK])).unwrap();
        assert_eq!(again.settings.vendor_keys, ["gh-old", "gh-new"]);
        assert_eq!(patch(&both, VENDOR_SIGNATURE_KEY, json!([MASK])).unwrap(), both);
        // Masks alone leave the keys as stored, a single key as a string.
        assert_eq!(patch(&one, VENDOR_SIGNATURE_KEY, json!([MASK, MASK])).unwrap(), one);
        assert_eq!(one.configuration[VENDOR_SIGNATURE_KEY], json!("gh-old"));
        // The notification key: none stored, so the mask adds nothing; within the limit of four.
        let signing = patch(&one, SIGNATURE_KEY, json!(["s-new", MASK])).unwrap();
        assert_eq!(signing.settings.signature_keys, ["s-new"]);
        assert_eq!(patch(&one, SIGNATURE_KEY, json!([MASK])).unwrap(), one, "nothing stored, nothing added");
        // A key stored as null is none either: the mask does not make it a key.
        let (null_key, _) =
            parse_create(&body(json!({"event.notification.callback.url": cb, SIGNATURE_KEY: null}))).unwrap();
        let from_null = patch(&null_key, SIGNATURE_KEY, json!(["s-new", MASK])).unwrap();
        assert_eq!(from_null.settings.signature_keys, ["s-new"]);
        assert_eq!(from_null.configuration[SIGNATURE_KEY], json!(["s-new"]));
        let full = patch(&signing, SIGNATURE_KEY, json!(["a", "b", "c", MASK])).unwrap();
        assert_eq!(full.settings.signature_keys, ["a", "b", "c", "s-new"]);
        let over = patch(&full, SIGNATURE_KEY, json!(["e", MASK])).unwrap_err();
        assert_eq!(
            (over.field.as_str(), over.message.contains("at most 4")),
            (format!("configuration.{SIGNATURE_KEY}").as_str(), true)
        );
        // Shown masked, whatever the list.
        let shown = masked(&three.configuration);
        assert_eq!(shown[VENDOR_SIGNATURE_KEY], json!([MASK, MASK, MASK]), "one mask per key");
        assert!(!serde_json::to_string(&shown).unwrap().contains("gh-"), "{shown:?}");
        // Sent back as shown, the list keeps the keys.
        let echoed = patch(&three, VENDOR_SIGNATURE_KEY, shown[VENDOR_SIGNATURE_KEY].clone()).unwrap();
        assert_eq!(echoed, three);
        // At creation nothing is stored: the mask would become a key anyone can guess (a body
        // copied from an answer), so it is refused, naming the field.
        for (key, v) in [
            (VENDOR_SIGNATURE_KEY, json!(MASK)),
            (VENDOR_SIGNATURE_KEY, json!(["k", MASK])),
            (SIGNATURE_KEY, json!(MASK)),
            (API_KEY, json!(MASK)),
            ("oauth.client.secret", json!(MASK)),
        ] {
            let err = parse_create(&body(json!({"event.notification.callback.url": cb, key: v}))).unwrap_err();
            assert_eq!(err.field, format!("configuration.{key}"), "{v}");
            assert!(err.message.contains("send the secret itself"), "{err}");
        }
        // Not a secret's field: a value like any other.
        assert!(parse_create(&body(json!({"event.notification.callback.url": cb, "x.note": MASK}))).is_ok());
    }

    #[test]
    fn masking_hides_every_secret() {
        let (spec, _) = parse_create(&body(json!({
            "event.notification.callback.url": "https://r.example/",
            "event.notification.signature.key": "s1",
            "event.vendor.signature.key": ["s2"],
            "api.key": "s3",
            "oauth.client.secret": "s4",
            "some.password": "s5",
            "refresh_token": "s6",
            "x.private_key": "s7",
            "x.other.secret": null,
        })))
        .unwrap();
        let shown = masked(&spec.configuration);
        assert_eq!(shown["x.other.secret"], Value::Null, "no secret, no mask");
        let shown = serde_json::to_string(&shown).unwrap();
        for s in ["s1", "s2", "s3", "s4", "s5", "s6", "s7"] {
            assert!(!shown.contains(&format!("\"{s}\"")), "{s} leaked: {shown}");
        }
        assert!(shown.contains("https://r.example/"));
        // Debug (logs, panics) shows what helps and counts the keys.
        let debug = format!("{:?}", spec.settings);
        assert!(!debug.contains("s1") && !debug.contains("s2"), "{debug}");
        for part in ["events_enabled: true", "https://r.example/", "signature_keys: 1", "vendor_keys: 1"] {
            assert!(debug.contains(part), "{part} not in {debug}");
        }
        // The whole spec shows its configuration as the API does.
        let debug = format!("{spec:?}");
        for s in ["s1", "s2", "s3", "s4", "s5", "s6", "s7"] {
            assert!(!debug.contains(&format!("\"{s}\"")), "{s} leaked: {debug}");
        }
        for part in ["name: \"acme-prod\"", "\"api.key\": String(\"********\")", "signature_keys: 1"] {
            assert!(debug.contains(part), "{part} not in {debug}");
        }
    }

    #[test]
    fn patch_merges_and_revalidates() {
        let (spec, _) = parse_create(&body(
            json!({"event.notification.callback.url": "https://r.example/", "event.vendor.signature.key": "v"}),
        ))
        .unwrap();
        let patched = apply_patch(&spec, br#"{"configuration":{"event.notification.enabled":"false","event.vendor.signature.key":"********"},"name":"renamed"}"#).unwrap();
        assert!(!patched.settings.events_enabled);
        assert_eq!(patched.settings.vendor_keys, vec!["v"]);
        assert_eq!(patched.name, "renamed");
        assert_eq!(patched.tags, vec!["acme"]);
        let err = apply_patch(&spec, br#"{"configuration":{"event.vendor.signature.key":null}}"#).unwrap_err();
        assert_eq!(err.field, "configuration.event.vendor.signature.key");
        let err = apply_patch(
            &spec,
            br#"{"configuration":{"event.notification.callback.url":null,"event.notification.enabled":true}}"#,
        )
        .unwrap_err();
        assert_eq!(err.field, "configuration.event.notification.callback.url");
        // `element` may be left out of a patch; given, it is held to the creation's rule.
        assert!(apply_patch(&spec, br#"{"element":{"key":"greenhouse","id":7}}"#).is_ok());
        for element in [r#"{}"#, r#"{"key":"bamboohr"}"#, r#"{"key":null}"#, r#""greenhouse""#, "null", "[]"] {
            let err = apply_patch(&spec, format!(r#"{{"element":{element},"name":"x"}}"#).as_bytes()).unwrap_err();
            assert_eq!(err.field, "element.key", "{element}");
        }
    }

    #[test]
    fn a_name_is_not_blank_and_at_most_256_characters_as_sent() {
        let named = |name: &str| {
            parse_create(
                &serde_json::to_vec(&json!({"element": {"key": "greenhouse"}, "name": name, "configuration": {}}))
                    .unwrap(),
            )
        };
        assert_eq!(named("  acme  ").unwrap().0.name, "acme");
        assert_eq!(named(&"é".repeat(MAX_NAME_CHARS)).unwrap().0.name.chars().count(), MAX_NAME_CHARS);
        for bad in [String::new(), " \t\n".to_owned(), "n".repeat(MAX_NAME_CHARS + 1), format!(" {} ", "n".repeat(255))]
        {
            assert_eq!(named(&bad).unwrap_err().field, "name", "{bad:?}");
        }
    }

    #[test]
    fn tokens_are_random_and_hashed() {
        let t = generate_token();
        assert_ne!(t, generate_token());
        assert_eq!(token_hash(&t), token_hash(&t));
        assert_ne!(token_hash(&t), t);
        assert_ne!(token_hash(&t), token_hash(&generate_token()));
        // Stores keep the hash, so it must not change between versions: SHA-256, in hex (the
        // FIPS 180-2 vector for "abc").
        assert_eq!(token_hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn tags_and_configuration_are_bounded_so_an_instance_fits_any_store() {
        let create = |extra: serde_json::Value| {
            let mut body = serde_json::json!({"element": {"key": "greenhouse"}, "name": "n", "configuration": {
                "event.notification.enabled": false}});
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            parse_create(&serde_json::to_vec(&body).unwrap())
        };
        let tags = |n: usize| serde_json::json!({"tags": vec!["t"; n]});
        assert!(create(tags(MAX_TAGS)).is_ok());
        assert_eq!(create(tags(MAX_TAGS + 1)).unwrap_err().field, "tags");
        let long_tag = create(serde_json::json!({"tags": ["t".repeat(MAX_TAG_CHARS + 1)]})).unwrap_err();
        assert_eq!(long_tag.field, "tags");
        assert!(create(serde_json::json!({"tags": ["t".repeat(MAX_TAG_CHARS)]})).is_ok());
        let big = serde_json::json!({"configuration": {"event.notification.enabled": false,
            "x.custom": "v".repeat(MAX_CONFIGURATION_BYTES)}});
        let err = create(big).unwrap_err();
        assert_eq!(err.field, "configuration");
        // The bound is the documented 64 KiB, itself included.
        let custom = |n: usize| serde_json::json!({"configuration": {"event.notification.enabled": false, "x.custom": "v".repeat(n)}});
        let (empty, _) = create(custom(0)).unwrap();
        let at_bound = 64 * 1024 - serde_json::to_vec(&empty.configuration).unwrap().len();
        let (spec, _) = create(custom(at_bound)).unwrap();
        assert_eq!(serde_json::to_vec(&spec.configuration).unwrap().len(), 64 * 1024);
        assert_eq!(create(custom(at_bound + 1)).unwrap_err().field, "configuration");
        assert!(err.message.contains(&MAX_CONFIGURATION_BYTES.to_string()), "{err}");
        // A patch is held to the same bound, after the merge.
        let (spec, _) = create(serde_json::json!({})).unwrap();
        let half = "v".repeat(MAX_CONFIGURATION_BYTES / 2);
        let spec =
            apply_patch(&spec, &serde_json::to_vec(&serde_json::json!({"configuration": {"x.a": half}})).unwrap())
                .unwrap();
        let more = serde_json::json!({"configuration": {"x.b": "v".repeat(MAX_CONFIGURATION_BYTES / 2)}});
        assert_eq!(apply_patch(&spec, &serde_json::to_vec(&more).unwrap()).unwrap_err().field, "configuration");
    }
}
