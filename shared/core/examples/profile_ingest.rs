//! Times each stage of the ingest core natively over one fixture (valgrind hides SHA-NI, so
//! instruction counts mislead for this code).
use std::time::Instant;

use relay_core::greenhouse;
use relay_core::ingest::{Prepared, prepare};
use relay_core::instance::{InstanceSpec, Settings};
use relay_core::notification;
use relay_core::ports::Instance;

fn time<T>(label: &str, n: u32, mut f: impl FnMut() -> T) {
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(f());
    }
    println!("{label:<28} {:>8.0} ns", t.elapsed().as_nanos() as f64 / n as f64);
}

fn main() {
    let path = std::env::args().nth(1).expect("fixture path");
    let sig = std::env::args().nth(2).expect("signature");
    let secret = std::env::args().nth(3).expect("secret");
    let body = std::fs::read(path).unwrap();
    let inst = Instance {
        id: 1,
        spec: InstanceSpec {
            name: "n".into(),
            tags: vec![],
            configuration: Default::default(),
            settings: Settings {
                events_enabled: true,
                callback_url: None,
                signature_keys: vec!["k".into()],
                vendor_keys: vec![secret.clone()],
            },
        },
        token_hash: String::new(),
        created_at_ms: 0,
        last_ping: None,
    };
    let n = 20_000;
    time("verify", n, || greenhouse::verify_signature(Some(sig.as_bytes()), &body, &[&secret]));
    time("parse_webhook", n, || greenhouse::parse_webhook(&body).is_ok());
    time("from_utf8", n, || std::str::from_utf8(&body).is_ok());
    time("rfc3339", n, || relay_core::ports::rfc3339(1_772_473_211_000));
    time("event_id", n, || notification::event_id(1, "gh:e", 0));
    time("prepare (all)", n, || prepare(&inst, Some(sig.as_bytes()), Some("e"), &body, 0).is_ok());
    let Ok(Prepared::Notifications { notifications, .. }) = prepare(&inst, Some(sig.as_bytes()), Some("e"), &body, 0)
    else {
        panic!()
    };
    time("headers (sign)", n, || notification::headers(&notifications[0].body, "e", &["k"], 0).len());
    time("headers, 2 keys (rotation)", n, || notification::headers(&notifications[0].body, "e", &["k", "j"], 0).len());
    time("naive Value", n, || serde_json::from_slice::<serde_json::Value>(&body).is_ok());
    time("IgnoredAny", n, || serde_json::from_slice::<serde::de::IgnoredAny>(&body).is_ok());
}
