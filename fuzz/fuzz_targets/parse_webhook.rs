//! `parse_webhook` on any bytes: it never panics, never accepts what `serde_json::Value` refuses,
//! and calls `NotJson` only what `Value` refuses (or what nests deeper than `MAX_DEPTH`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use relay_core::greenhouse::{MAX_DEPTH, WebhookError, parse_webhook};
use serde_json::Value;

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

fuzz_target!(|body: &[u8]| {
    let result = parse_webhook(body);
    let Ok(text) = std::str::from_utf8(body) else {
        assert!(matches!(result, Err(WebhookError::NotUtf8 | WebhookError::TooLarge)));
        return;
    };
    let value = serde_json::from_str::<Value>(text);
    match (&result, &value) {
        (Ok(w), Ok(v)) => {
            assert!(depth(v) <= MAX_DEPTH);
            assert_eq!(serde_json::from_str::<Value>(w.raw).ok().as_ref(), Some(v));
            assert_eq!(v["action"].as_str(), Some(w.action.as_ref()));
            assert!(v["payload"].is_object());
        }
        (Ok(_), Err(e)) => panic!("accepted what Value refuses ({e}): {text:?}"),
        (Err(WebhookError::NotJson(m)), Ok(v)) => {
            panic!("NotJson ({m}) for valid JSON of depth {}: {text:?}", depth(v))
        }
        (Err(WebhookError::TooDeep), Ok(v)) => assert!(depth(v) > MAX_DEPTH, "{text:?}"),
        _ => {}
    }
});
