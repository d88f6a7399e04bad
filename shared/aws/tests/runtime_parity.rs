//! The AWS runtime and the local mode answer alike. The same generated call sequences (those of
//! `functions/local/tests/api_properties.rs`: valid requests, near misses, junk) go to the
//! functions' router on DynamoDB and SQS in moto and to the local mode's router on SQLite, each
//! from an empty store. Every answer must match: the status, the body and the paging headers,
//! once what legitimately differs is masked (tokens and generated keys, dates, the time in a
//! cursor). This reaches what the conformance tool does not: odd sequences of creations, patches,
//! deletions, duplicates, pings and listings on both stores. Neither writes a secret to its logs.

#[path = "../../../functions/local/tests/common/calls.rs"]
mod calls;
mod common;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use calls::{Call, Known, Logs, call, cases, local_router, policy, send};
use common::{ORG, USER, provision};
use http::{Request, Response};
use proptest::prelude::*;
use relay_callback::HttpCallback;
use relay_core::api::Api;
use relay_sqlite::SqliteStore;
use serde_json::Value;

/// One runtime: its router, what the test knows of it, and the database it keeps.
struct Side {
    api: Api,
    known: Known,
    serial: u64,
    _db: Option<tempfile::TempDir>,
}

impl Side {
    fn send(&mut self, rt: &tokio::runtime::Runtime, req: Request<Bytes>) -> Response<Bytes> {
        send(rt, &self.api, &mut self.serial, req)
    }

    fn setup(mut self, rt: &tokio::runtime::Runtime) -> Side {
        let Side { api, known, serial, .. } = &mut self;
        known.setup(|req| send(rt, api, serial, req));
        self
    }
}

/// The local mode's router on a fresh SQLite file.
fn local() -> Side {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("relay.db")).unwrap();
    Side { api: local_router(store, USER, ORG), known: Known::new(USER, ORG), serial: 0, _db: Some(dir) }
}

/// The functions' router on a fresh table and queue in moto, configured as the local one.
async fn aws() -> Side {
    let aws = provision().await;
    let mut env = aws.env();
    env.policy = policy();
    env.public_base_url = Some("http://relay.test".into());
    let callback = Arc::new(HttpCallback::new(env.policy.clone(), env.attempt_timeout).unwrap());
    let api = relay_aws::lambda::api(&env, aws.store(), callback);
    Side { api, known: Known::new(USER, ORG), serial: 0, _db: None }
}

/// An answer with what may differ between the runtimes masked: each runtime's own secrets (by
/// their place in what the test learnt, the same on both) and those a creation returns, RFC 3339
/// dates, and the time in a cursor.
fn normalize(known: &Known, r: &Response<Bytes>) -> (u16, Value, Vec<(String, String)>) {
    let mut text = String::from_utf8_lossy(r.body()).into_owned();
    let mut headers: Vec<(String, String)> = ["content-type", "x-request-id", "link", "elements-next-page-token"]
        .iter()
        .filter_map(|h| {
            r.headers().get(*h).map(|v| (h.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        })
        .collect();
    let mut secrets: Vec<(usize, &String)> = known.secrets.iter().enumerate().collect();
    secrets.sort_by_key(|(_, s)| std::cmp::Reverse(s.len()));
    for (i, secret) in secrets {
        text = text.replace(secret.as_str(), &format!("<secret {i}>"));
    }
    for (_, v) in &mut headers {
        if let Some(at) = v.find("before=") {
            let digits = v[at + 7..].bytes().take_while(u8::is_ascii_digit).count();
            v.replace_range(at + 7..at + 7 + digits, "<ms>");
        }
    }
    let mut body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    mask_dates(&mut body);
    // A creation's own token and generated key: new to the test until it observes the answer.
    for field in ["token", "webhookSecret"] {
        if let Some(v) = body.get_mut(field).filter(|v| v.as_str().is_some_and(|s| !s.starts_with("<secret")))
            && *v != "********"
        {
            *v = "<returned once>".into();
        }
    }
    (r.status().as_u16(), body, headers)
}

fn mask_dates(v: &mut Value) {
    match v {
        Value::String(s) if time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok() => {
            *s = "<date>".into();
        }
        Value::Array(a) => a.iter_mut().for_each(mask_dates),
        Value::Object(o) => o.values_mut().for_each(mask_dates),
        _ => {}
    }
}

/// Sends `calls` to both runtimes, checking that they answer alike; returns the statuses.
fn run(calls: &[Call]) -> Result<Vec<u16>, TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Our crates at every level, the SDK and the rest at the functions' default.
    let logs = Logs::default();
    let _capture = logs.install("info,relay_core=trace,relay_aws=trace,relay_sqlite=trace,relay_callback=trace");
    let mut local = local().setup(&rt);
    let mut aws = rt.block_on(aws()).setup(&rt);
    prop_assert_eq!(&local.known.instances.iter().map(|i| i.0).collect::<Vec<_>>(), &[1, 2]);
    prop_assert_eq!(&aws.known.instances.iter().map(|i| i.0).collect::<Vec<_>>(), &[1, 2]);
    prop_assert_eq!(&local.known.events, &aws.known.events);
    let mut statuses = vec![];
    logs.take_clean(local.known.secrets.iter().chain(&aws.known.secrets))
        .map_err(|e| TestCaseError::fail(format!("the setup: {e}")))?;
    for (n, call) in calls.iter().enumerate() {
        let (l, a) = match (local.known.request(call), aws.known.request(call)) {
            (Some(l), Some(a)) => (l, a),
            (None, None) => continue,
            _ => return Err(TestCaseError::fail(format!("call {n} is an HTTP request on one runtime only"))),
        };
        let what = format!("call {n}: {} {}", l.method(), l.uri());
        let (l, a) = (local.send(&rt, l), aws.send(&rt, a));
        statuses.push(l.status().as_u16());
        let (ln, an) = (normalize(&local.known, &l), normalize(&aws.known, &a));
        prop_assert_eq!(&ln, &an, "{} answered differently (left: local mode, right: AWS)", what);
        let (la, aa): (Value, Value) = (
            serde_json::from_slice(l.body()).unwrap_or_default(),
            serde_json::from_slice(a.body()).unwrap_or_default(),
        );
        // Neither runtime logs a secret, the ones a creation returns included.
        let returned = [Known::returned_secrets(call, ln.0, &la), Known::returned_secrets(call, an.0, &aa)].concat();
        logs.take_clean(local.known.secrets.iter().chain(&aws.known.secrets).chain(&returned))
            .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
        local.known.observe(call, ln.0, &la);
        aws.known.observe(call, an.0, &aa);
        // Notifications list newest first by the millisecond they were accepted: two accepted
        // in one millisecond on one runtime and not on the other would list in another order.
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(statuses)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(24), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_aws_runtime_answers_every_call_as_the_local_mode(calls in proptest::collection::vec(call(), 1..14)) {
        run(&calls)?;
    }
}

/// A `Greenhouse-Event-ID` longer than a DynamoDB key may be: accepted once and deduplicated on
/// both runtimes (the AWS one answered 503 before such ids were keyed by their hash).
#[test]
fn a_long_greenhouse_event_id_is_accepted_once_on_both() {
    use calls::{Auth, Body, LONG_EVENT_ID, Route, Signature, Target};
    let webhook = Call {
        method: http::Method::POST,
        route: Route::Ingest(Target::Known(0)),
        query: None,
        auth: Auth::Missing,
        body: Body::Webhook { fixture: 1, signature: Signature::Right, flip: None, event_id: Some(LONG_EVENT_ID) },
    };
    let list = Call {
        method: http::Method::GET,
        route: Route::Events(Target::Known(0)),
        query: None,
        auth: Auth::Admin,
        body: Body::None,
    };
    assert_eq!(run(&[webhook.clone(), webhook, list]).unwrap(), [200, 200, 200]);
}

/// Instances too big for a DynamoDB item (400 KB) are refused as such on both runtimes, with
/// the field named (the AWS one answered 503, "retry later", before they were bounded).
#[test]
fn an_instance_too_big_to_store_is_a_400_on_both() {
    use calls::{Auth, Body, Route};
    let create = |body: serde_json::Value| Call {
        method: http::Method::POST,
        route: Route::Instances,
        query: None,
        auth: Auth::Admin,
        body: Body::Json(body),
    };
    let base = serde_json::json!({"element": {"key": "greenhouse"}, "name": "n", "configuration": {
        "event.vendor.type": "webhooks", "event.notification.enabled": false}});
    let mut big_config = base.clone();
    big_config["configuration"]["x.custom"] = serde_json::json!("v".repeat(450_000));
    let mut big_tags = base.clone();
    big_tags["tags"] = serde_json::json!(vec!["t".repeat(9_000); 50]);
    let mut patch = create(serde_json::json!({"configuration": {"x.custom": "v".repeat(450_000)}}));
    (patch.method, patch.route) = (http::Method::PATCH, Route::Instance(calls::Target::Known(0)));
    for calls in [vec![create(big_config)], vec![create(big_tags)], vec![patch]] {
        assert_eq!(run(&calls).unwrap(), [400]);
    }
}

/// A notification too big for a DynamoDB item (kept in chunks on AWS) reads back alike: in the
/// list and by id.
#[test]
fn a_notification_kept_in_chunks_reads_back_alike() {
    use calls::{Auth, BIG_WEBHOOK, Body, EventRef, FIXTURES, Route, Signature, Target};
    let big = FIXTURES.iter().position(|f| *f == BIG_WEBHOOK).unwrap();
    let call = |method, route, auth, body| Call { method, route, query: None, auth, body };
    let webhook = Body::Webhook { fixture: big, signature: Signature::Right, flip: None, event_id: Some("gh-1") };
    let calls = [
        call(http::Method::POST, Route::Ingest(Target::Known(0)), Auth::Missing, webhook),
        call(http::Method::GET, Route::Events(Target::Known(0)), Auth::Admin, Body::None),
        // The second notification known: the one just queued (the setup queued the first).
        call(http::Method::GET, Route::Event(Target::Known(0), EventRef::Known(1)), Auth::Element(0), Body::None),
    ];
    assert_eq!(run(&calls).unwrap(), [200, 200, 200]);
}
