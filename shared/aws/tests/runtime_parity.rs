//! The AWS runtime and the local mode answer alike. The same generated call sequences (those of
//! `functions/local/tests/api_properties.rs`: valid requests, near misses, junk) go to the
//! functions' router on DynamoDB and SQS in moto and to the local mode's router on SQLite, each
//! from an empty store. Every answer must match: the status, the body and the paging headers,
//! once what legitimately differs is masked (tokens and generated keys, dates, durations, the
//! time in a cursor). This reaches what the conformance tool does not: odd sequences of
//! creations, patches, deletions, duplicates, pings and listings on both stores. Neither writes a
//! secret to its logs.
//!
//! The second property adds delivery: between calls, one delivery pass on each runtime (the
//! delivery function on what SQS hands it, the local worker's claim and attempt on SQLite) to a
//! loopback receiver answering as generated (2xx, 4xx, 5xx, 429 with or without `Retry-After`,
//! 410, a redirect, too slow). The receiver must get the same notifications from both, and the
//! events each runtime then lists (statuses, series, attempts with their status codes, errors
//! and response excerpts) must match, through redeliveries, patched callbacks, disabled and
//! deleted instances and dead letters.

#[path = "../../../functions/local/tests/harness/calls.rs"]
mod calls;
mod harness;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use calls::{Auth, Body, Call, EventRef, FIXTURES, Known, Logs, Route, Signature, Target};
use calls::{call, cases, local_router, policy, send};
use harness::{Aws, ORG, USER, provision};
use http::{Method, Request, Response};
use proptest::prelude::*;
use relay_aws::Delivery;
use relay_callback::HttpCallback;
use relay_core::api::Api;
use relay_core::delivery::{self, DeliveryConfig};
use relay_core::ports::{Callback, Clock, SystemClock};
use relay_sqlite::SqliteStore;
use serde_json::{Value, json};

/// One runtime: its router, what the test knows of it, and the store behind the router.
struct Side {
    api: Api,
    known: Known,
    serial: u64,
    store: Store,
}

enum Store {
    Local(SqliteStore, #[allow(dead_code)] tempfile::TempDir),
    Aws(Aws),
}

impl Side {
    fn send(&mut self, rt: &tokio::runtime::Runtime, req: Request<Bytes>) -> Response<Bytes> {
        send(rt, &self.api, &mut self.serial, req)
    }

    fn setup(mut self, rt: &tokio::runtime::Runtime, callback: &str) -> Side {
        let Side { api, known, serial, .. } = &mut self;
        known.callback = callback.to_owned();
        known.setup(|req| send(rt, api, serial, req));
        self
    }

    /// One delivery pass with retry delays scaled to nothing (so every failed notification is
    /// due again at the next pass): on the local mode, the worker's claim of what is due and an
    /// attempt of each; on AWS, the delivery function on what SQS hands it, after which the
    /// messages it does not report as failures are deleted, as the event source mapping does.
    fn deliver(&self, rt: &tokio::runtime::Runtime, callback: &Arc<dyn Callback>) -> Result<usize, TestCaseError> {
        let config = DeliveryConfig { time_scale: 0.0 };
        rt.block_on(async {
            match &self.store {
                Store::Local(store, _) => {
                    let clock = SystemClock;
                    let due = store.claim_due(clock.now_ms(), 100, HashSet::new(), HashMap::new(), 100).await.unwrap();
                    let attempts =
                        due.iter().map(|e| delivery::deliver(store, store, callback.as_ref(), &clock, config, e));
                    for result in futures_util::future::join_all(attempts).await {
                        result.map_err(|e| TestCaseError::fail(format!("local attempt not recorded: {e}")))?;
                    }
                    Ok(due.len())
                }
                Store::Aws(aws) => {
                    let event = aws.receive(0).await;
                    let function = Delivery::new(aws.store(), callback.clone(), config.time_scale);
                    let response = function.handle_batch(event.clone()).await;
                    aws.finish(&event, &response).await;
                    Ok(event.records.len())
                }
            }
        })
    }
}

/// The local mode's router on a fresh SQLite file.
fn local() -> Side {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("relay.db")).unwrap();
    let api = local_router(store.clone(), USER, ORG);
    Side { api, known: Known::new(USER, ORG), serial: 0, store: Store::Local(store, dir) }
}

/// The functions' router on a fresh table and queue in moto, configured as the local one.
async fn aws() -> Side {
    let aws = provision().await;
    let mut env = aws.env();
    env.policy = policy();
    env.public_base_url = Some("http://relay.test".into());
    let callback = Arc::new(env.callback().unwrap());
    let api = relay_aws::lambda::api(&env, aws.store(), callback);
    Side { api, known: Known::new(USER, ORG), serial: 0, store: Store::Aws(aws) }
}

/// An answer with what may differ between the runtimes masked: each runtime's own secrets (by
/// their place in what the test learnt, the same on both) and those a creation returns, RFC 3339
/// dates, attempt durations, and the time in a cursor.
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

/// RFC 3339 dates and the duration of attempts, which differ from run to run.
fn mask_dates(v: &mut Value) {
    match v {
        Value::String(s) if time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).is_ok() => {
            *s = "<date>".into();
        }
        Value::Array(a) => a.iter_mut().for_each(mask_dates),
        Value::Object(o) => {
            if let Some(ms) = o.get_mut("durationMs").filter(|ms| ms.is_u64()) {
                *ms = "<ms>".into();
            }
            o.values_mut().for_each(mask_dates)
        }
        _ => {}
    }
}

/// Sends `calls` to both runtimes, checking that they answer alike; returns the statuses.
fn run(calls: &[Call]) -> Result<Vec<u16>, TestCaseError> {
    let answers = run_steps(&calls.iter().cloned().map(Step::Call).collect::<Vec<_>>())?;
    Ok(answers.into_iter().map(|(status, _)| status).collect())
}

/// A call to both routers, or a delivery pass on both runtimes with the receiver answering so.
#[derive(Debug, Clone)]
enum Step {
    Call(Call),
    Deliver(Answer),
}

/// Runs `steps` on both runtimes, checking that they answer and deliver alike; returns the local
/// mode's answers to the calls (status and JSON).
fn run_steps(steps: &[Step]) -> Result<Vec<(u16, Value)>, TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    // Our crates at every level, the SDK and the rest at the functions' default.
    let logs = Logs::default();
    let _capture = logs.install("info,relay_core=trace,relay_aws=trace,relay_sqlite=trace,relay_callback=trace");
    let receiver = rt.block_on(Receiver::start());
    // One timeout for both, short enough that a slow receiver costs a second.
    let callback: Arc<dyn Callback> = Arc::new(HttpCallback::new(policy(), Duration::from_secs(1)).unwrap());
    let mut local = local().setup(&rt, &receiver.url);
    let mut aws = rt.block_on(aws()).setup(&rt, &receiver.url);
    prop_assert_eq!(&local.known.instances.iter().map(|i| i.0).collect::<Vec<_>>(), &[1, 2]);
    prop_assert_eq!(&aws.known.instances.iter().map(|i| i.0).collect::<Vec<_>>(), &[1, 2]);
    prop_assert_eq!(&local.known.events, &aws.known.events);
    let mut answers = vec![];
    logs.take_clean(local.known.secrets.iter().chain(&aws.known.secrets))
        .map_err(|e| TestCaseError::fail(format!("the setup: {e}")))?;
    for (n, step) in steps.iter().enumerate() {
        match step {
            Step::Call(call) => {
                let call = receiver.resolve(call);
                answers.extend(exchange(&rt, &logs, &mut local, &mut aws, &call, &format!("call {n}"))?);
            }
            Step::Deliver(answer) => {
                pass(&rt, &logs, &receiver, &callback, [&mut local, &mut aws], answer, &format!("step {n}"))?;
            }
        }
    }
    // Then the receiver answers 200 until neither runtime has anything due: every notification
    // ends delivered or failed on both (a refused attempt, to a disabled instance or a closed
    // port, fails until dead-lettered; one to a deleted instance ends at once), none is left
    // pending, none is lost.
    if steps.iter().any(|s| matches!(s, Step::Deliver(_))) {
        let ok = Answer::Status(200, 0);
        let mut passes = 0;
        while pass(&rt, &logs, &receiver, &callback, [&mut local, &mut aws], &ok, "draining")? != (0, 0) {
            passes += 1;
            prop_assert!(passes <= 9, "still delivering after 9 passes: a notification is attempted forever");
        }
        // Nothing left pending on either (both answer alike, so the local answer speaks for both).
        for i in 0..local.known.instances.len() {
            let pending = Call {
                method: Method::GET,
                route: Route::Events(Target::Known(i)),
                query: Some("status=pending".into()),
                auth: Auth::Admin,
                body: Body::None,
            };
            if let Some((status, list)) = exchange(&rt, &logs, &mut local, &mut aws, &pending, "drained")? {
                prop_assert!(status == 404 || list == json!([]), "left pending on instance {}: {}", i, list);
            }
        }
    }
    Ok(answers)
}

/// One delivery pass on each runtime with the receiver answering `answer`: the receiver must get
/// the same requests from both, and both must then list every instance's notifications alike,
/// whole and by status (on AWS, an index kept by each attempt's update). Returns how many
/// notifications each attempted.
fn pass(
    rt: &tokio::runtime::Runtime,
    logs: &Logs,
    receiver: &Receiver,
    callback: &Arc<dyn Callback>,
    [local, aws]: [&mut Side; 2],
    answer: &Answer,
    at: &str,
) -> Result<(usize, usize), TestCaseError> {
    *receiver.answer.lock().unwrap() = answer.clone();
    let attempted_local = local.deliver(rt, callback)?;
    let heard_local = receiver.take();
    let attempted_aws = aws.deliver(rt, callback)?;
    let heard_aws = receiver.take();
    prop_assert_eq!(
        &heard_local,
        &heard_aws,
        "{} ({:?}): the receiver got other requests (left: local mode, right: AWS)",
        at,
        answer
    );
    logs.take_clean(local.known.secrets.iter().chain(&aws.known.secrets))
        .map_err(|e| TestCaseError::fail(format!("{at}, delivering: {e}")))?;
    for i in 0..local.known.instances.len() {
        for query in [None, Some("status=pending"), Some("status=failed"), Some("status=delivered")] {
            let list = Call {
                method: Method::GET,
                route: Route::Events(Target::Known(i)),
                query: query.map(str::to_owned),
                auth: Auth::Admin,
                body: Body::None,
            };
            exchange(rt, logs, local, aws, &list, &format!("{at}, after delivering"))?;
        }
    }
    Ok((attempted_local, attempted_aws))
}

/// Sends `call` to both routers and checks that they answer alike and log no secret; returns
/// the local mode's status and JSON (`None` when the call is no HTTP request).
fn exchange(
    rt: &tokio::runtime::Runtime,
    logs: &Logs,
    local: &mut Side,
    aws: &mut Side,
    call: &Call,
    at: &str,
) -> Result<Option<(u16, Value)>, TestCaseError> {
    let (l, a) = match (local.known.request(call), aws.known.request(call)) {
        (Some(l), Some(a)) => (l, a),
        (None, None) => return Ok(None),
        _ => return Err(TestCaseError::fail(format!("{at} is an HTTP request on one runtime only"))),
    };
    let what = format!("{at}: {} {}", l.method(), l.uri());
    let (l, a) = (local.send(rt, l), aws.send(rt, a));
    let (ln, an) = (normalize(&local.known, &l), normalize(&aws.known, &a));
    prop_assert_eq!(&ln, &an, "{} answered differently (left: local mode, right: AWS)", what);
    let (la, aa): (Value, Value) =
        (serde_json::from_slice(l.body()).unwrap_or_default(), serde_json::from_slice(a.body()).unwrap_or_default());
    // Neither runtime logs a secret, the ones a creation returns included.
    let returned = [Known::returned_secrets(call, ln.0, &la), Known::returned_secrets(call, an.0, &aa)].concat();
    logs.take_clean(local.known.secrets.iter().chain(&aws.known.secrets).chain(&returned))
        .map_err(|e| TestCaseError::fail(format!("{what}: {e}")))?;
    local.known.observe(call, ln.0, &la);
    aws.known.observe(call, an.0, &aa);
    // Notifications list newest first by the millisecond they were accepted: two accepted in one
    // millisecond on one runtime and not on the other would list in another order.
    std::thread::sleep(Duration::from_millis(2));
    Ok(Some((ln.0, la)))
}

/// How the receiver answers during one delivery pass.
#[derive(Debug, Clone, PartialEq)]
enum Answer {
    /// This status, with a body of this many `€` (three bytes each: 1,500 of them go past the
    /// 4 KiB kept of a response, and not on a character boundary).
    Status(u16, usize),
    /// 429, with this `Retry-After` if any.
    TooMany(Option<&'static str>),
    /// 307 to a closed port: redirects are not followed.
    Redirect,
    /// 200, after the callback timeout.
    Slow,
}

impl Answer {
    async fn respond(self) -> http::Response<axum::body::Body> {
        let r = http::Response::builder();
        let r = match self {
            Answer::Status(status, chars) => r.status(status).body("€".repeat(chars).into()),
            Answer::TooMany(retry_after) => {
                let r = r.status(429);
                let r = match retry_after {
                    Some(v) => r.header("retry-after", v),
                    None => r,
                };
                r.body(axum::body::Body::empty())
            }
            Answer::Redirect => r.status(307).header("location", "http://127.0.0.1:9/moved").body("moved".into()),
            Answer::Slow => {
                tokio::time::sleep(Duration::from_millis(1500)).await;
                r.status(200).body(axum::body::Body::empty())
            }
        };
        r.unwrap()
    }
}

/// What the receiver got of one notification, with what may differ masked: dates (so also the
/// signatures, which cover them), and the attempt's timestamp.
type Heard = (String, String, Value, Vec<String>);

/// A callback receiver on loopback for both runtimes, answering every request as told.
struct Receiver {
    url: String,
    answer: Arc<Mutex<Answer>>,
    got: Arc<Mutex<Vec<Heard>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let answer = Arc::new(Mutex::new(Answer::Status(200, 0)));
        let got: Arc<Mutex<Vec<Heard>>> = Arc::default();
        let (a, g) = (answer.clone(), got.clone());
        let app = axum::Router::new().fallback(move |headers: http::HeaderMap, body: Bytes| {
            let (a, g) = (a.clone(), g.clone());
            async move {
                let header = |h: &str| headers.get(h).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let mut notification: Value = serde_json::from_slice(&body).unwrap_or_default();
                mask_dates(&mut notification);
                let mut names: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
                names.retain(|n| !matches!(n.as_str(), "host" | "content-length"));
                names.sort();
                g.lock().unwrap().push((header("elements-webhook-id"), header("webhook-id"), notification, names));
                let answer = a.lock().unwrap().clone();
                answer.respond().await
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, answer, got }
    }

    /// What it got since the last call, in a fixed order (each runtime attempts its due
    /// notifications concurrently).
    fn take(&self) -> Vec<Heard> {
        let mut got = std::mem::take(&mut *self.got.lock().unwrap());
        got.sort_by(|a, b| (&a.0, a.2.to_string()).cmp(&(&b.0, b.2.to_string())));
        got
    }

    /// `call` with `RECEIVER` in its body replaced by the receiver's URL.
    fn resolve(&self, call: &Call) -> Call {
        let mut call = call.clone();
        if let Body::Json(v) = &mut call.body {
            *v = serde_json::from_str(&v.to_string().replace(RECEIVER, &self.url)).unwrap();
        }
        call
    }
}

/// Stands for the receiver's URL in generated bodies.
const RECEIVER: &str = "<receiver>";

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        5 => Just(Answer::Status(200, 0)),
        1 => Just(Answer::Status(204, 0)),
        1 => Just(Answer::Status(202, 7)),
        4 => (prop::sample::select(vec![400u16, 404, 500, 502, 503]), prop::sample::select(vec![0usize, 7, 1500]))
            .prop_map(|(status, chars)| Answer::Status(status, chars)),
        2 => prop::option::of(prop::sample::select(vec!["1", "120", "Wed, 21 Oct 2015 07:28:00 GMT", "soon"]))
            .prop_map(Answer::TooMany),
        1 => Just(Answer::Status(410, 0)),
        1 => Just(Answer::Redirect),
        1 => Just(Answer::Slow),
    ]
}

/// Calls of the notifications' life: signed webhooks to the two instances (duplicates among
/// them), redeliveries one by one and in bulk, changes to the instance that matter to delivery,
/// its deletion, and reads.
fn life_call() -> impl Strategy<Value = Call> {
    let c = |method, route, auth, body| Call { method, route, query: None, auth, body };
    let configuration = prop_oneof![
        Just(json!({"event.notification.callback.url": "http://127.0.0.1:9/hooks"})),
        Just(json!({"event.notification.callback.url": RECEIVER})),
        Just(json!({"event.notification.enabled": false})),
        Just(json!({"event.notification.enabled": true})),
        Just(json!({"event.notification.signature.key": calls::POOL[0]})),
    ];
    prop_oneof![
        6 => (0..2usize, 0..FIXTURES.len(), prop::option::of(prop::sample::select(vec!["gh-1", "gh-2", "gh-3"])))
            .prop_map(move |(i, fixture, event_id)| {
                let body = Body::Webhook { fixture, signature: Signature::Right, flip: None, event_id };
                c(Method::POST, Route::Ingest(Target::Known(i)), Auth::Missing, body)
            }),
        3 => (0..2usize, 0..8usize, prop::bool::ANY).prop_map(move |(i, e, admin)| {
            let auth = if admin { Auth::Admin } else { Auth::Element(i) };
            c(Method::POST, Route::Redeliver(Target::Known(i), EventRef::Known(e)), auth, Body::None)
        }),
        1 => (0..2usize, prop::option::of(Just("status=failed"))).prop_map(move |(i, query)| Call {
            query: query.map(str::to_owned),
            ..c(Method::POST, Route::RedeliverMany(Target::Known(i)), Auth::Admin, Body::None)
        }),
        2 => (0..2usize, configuration).prop_map(move |(i, configuration)| {
            let body = Body::Json(json!({"configuration": configuration}));
            c(Method::PATCH, Route::Instance(Target::Known(i)), Auth::Admin, body)
        }),
        1 => (0..2usize).prop_map(move |i| c(Method::DELETE, Route::Instance(Target::Known(i)), Auth::Admin, Body::None)),
        1 => (0..2usize, prop::bool::ANY).prop_map(move |(i, admin)| {
            let auth = if admin { Auth::Admin } else { Auth::Element(i) };
            c(Method::POST, Route::Test(Target::Known(i)), auth, Body::None)
        }),
        1 => (0..2usize, 0..8usize).prop_map(move |(i, e)| {
            c(Method::GET, Route::Event(Target::Known(i), EventRef::Known(e)), Auth::Admin, Body::None)
        }),
    ]
}

/// Steps of a notification's life; at most 8 webhooks and test notifications, so that what is
/// due never exceeds one receive from SQS (ten messages) and a pass covers the same
/// notifications on both runtimes.
fn life() -> impl Strategy<Value = Vec<Step>> {
    let step = prop_oneof![3 => life_call().prop_map(Step::Call), 2 => answer().prop_map(Step::Deliver)];
    proptest::collection::vec(step, 1..16).prop_filter("at most 8 new notifications", |steps| {
        let new = |s: &&Step| matches!(s, Step::Call(Call { route: Route::Ingest(_) | Route::Test(_), .. }));
        steps.iter().filter(new).count() <= 8
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(24), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_aws_runtime_answers_every_call_as_the_local_mode(calls in proptest::collection::vec(call(), 1..14)) {
        run(&calls)?;
    }
}

proptest! {
    // About 1.3 s a case: a delivery pass waits for a slow receiver.
    #![proptest_config(ProptestConfig { cases: cases(16), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_aws_runtime_delivers_and_records_as_the_local_mode(steps in life()) {
        run_steps(&steps)?;
    }
}

/// A `Greenhouse-Event-ID` longer than a DynamoDB key may be: accepted once and deduplicated on
/// both runtimes (the AWS one answered 503 before such ids were keyed by their hash).
#[test]
fn a_long_greenhouse_event_id_is_accepted_once_on_both() {
    use calls::LONG_EVENT_ID;
    let webhook = Call {
        method: Method::POST,
        route: Route::Ingest(Target::Known(0)),
        query: None,
        auth: Auth::Missing,
        body: Body::Webhook { fixture: 1, signature: Signature::Right, flip: None, event_id: Some(LONG_EVENT_ID) },
    };
    let list = Call {
        method: Method::GET,
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
    let create = |body: serde_json::Value| Call {
        method: Method::POST,
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
    (patch.method, patch.route) = (Method::PATCH, Route::Instance(Target::Known(0)));
    for calls in [vec![create(big_config)], vec![create(big_tags)], vec![patch]] {
        assert_eq!(run(&calls).unwrap(), [400]);
    }
}

/// A notification too big for a DynamoDB item (kept in chunks on AWS) reads back alike: in the
/// list and by id.
#[test]
fn a_notification_kept_in_chunks_reads_back_alike() {
    use calls::BIG_WEBHOOK;
    let big = FIXTURES.iter().position(|f| *f == BIG_WEBHOOK).unwrap();
    let call = |method, route, auth, body| Call { method, route, query: None, auth, body };
    let webhook = Body::Webhook { fixture: big, signature: Signature::Right, flip: None, event_id: Some("gh-1") };
    let calls = [
        call(Method::POST, Route::Ingest(Target::Known(0)), Auth::Missing, webhook),
        call(Method::GET, Route::Events(Target::Known(0)), Auth::Admin, Body::None),
        // The second notification known: the one just queued (the setup queued the first).
        call(Method::GET, Route::Event(Target::Known(0), EventRef::Known(1)), Auth::Element(0), Body::None),
    ];
    assert_eq!(run(&calls).unwrap(), [200, 200, 200]);
}

/// A new token answers alike: refused to the instance's own token, then made, then the new one
/// read with; none for an unknown or a deleted instance.
#[test]
fn a_new_token_answers_alike() {
    let call = |method, route, auth| Call { method, route, query: None, auth, body: Body::None };
    let calls = [
        call(Method::POST, Route::Token(Target::Known(0)), Auth::Element(0)),
        call(Method::POST, Route::Token(Target::Known(0)), Auth::Admin),
        call(Method::GET, Route::Instance(Target::Known(0)), Auth::Element(0)),
        call(Method::GET, Route::Token(Target::Known(0)), Auth::Admin),
        call(Method::POST, Route::Token(Target::Literal("999")), Auth::Admin),
        call(Method::DELETE, Route::Instance(Target::Known(1)), Auth::Admin),
        call(Method::POST, Route::Token(Target::Known(1)), Auth::Admin),
    ];
    assert_eq!(run(&calls).unwrap(), [401, 200, 200, 405, 404, 200, 404]);
}

/// Test notifications, alike on both runtimes: queued for the instance's token or an admin
/// (with the same id: the request's), refused for another instance's token, an unknown instance
/// and while events are disabled, then delivered to the receiver alike, failed and retried
/// alike, and listed alike.
#[test]
fn a_test_notification_answers_and_is_delivered_alike() {
    let c = |method, route, auth, body| Step::Call(Call { method, route, query: None, auth, body });
    let test = |i, auth| c(Method::POST, Route::Test(Target::Known(i)), auth, Body::None);
    let patch = |i, enabled| {
        let body = Body::Json(json!({"configuration": {"event.notification.enabled": enabled}}));
        c(Method::PATCH, Route::Instance(Target::Known(i)), Auth::Admin, body)
    };
    let steps = [
        test(0, Auth::Element(0)),
        test(1, Auth::Admin),
        test(0, Auth::Element(1)),
        c(Method::POST, Route::Test(Target::Literal("999")), Auth::Admin, Body::None),
        c(Method::GET, Route::Test(Target::Known(0)), Auth::Admin, Body::None),
        Step::Deliver(Answer::Status(500, 7)),
        patch(1, false),
        test(1, Auth::Admin),
        patch(1, true),
        Step::Deliver(Answer::Status(200, 0)),
        c(Method::GET, Route::Events(Target::Known(0)), Auth::Admin, Body::None),
        c(Method::GET, Route::Events(Target::Known(1)), Auth::Admin, Body::None),
    ];
    let answers = run_steps(&steps).unwrap();
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [200, 200, 401, 404, 405, 200, 409, 200, 200, 200]);
    let (queued, listed) = (&answers[0].1["eventId"], &answers[8].1);
    let test = listed.as_array().unwrap().iter().find(|e| &e["eventId"] == queued).unwrap();
    assert_eq!((test["action"].as_str(), test["status"].as_str()), (Some("greenhouse_relay.test"), Some("delivered")));
    let codes: Vec<&Value> = test["attempts"].as_array().unwrap().iter().map(|a| &a["statusCode"]).collect();
    assert_eq!(codes, [&json!(500), &json!(200)]);
    assert_eq!(test["notification"]["message"]["events"], json!([]));
}

/// One notification through its whole life, alike on both runtimes: eight failed attempts of
/// every kind (a 5xx with a long body, 429 with and without `Retry-After`, too slow, a redirect,
/// 4xx), dead-lettered, redelivered and delivered; another ended by a 410; an attempt while the
/// instance's events are disabled; attempts after its deletion.
#[test]
fn a_notification_dead_lettered_then_redelivered_reads_alike() {
    let c = |method, route, auth, body| Step::Call(Call { method, route, query: None, auth, body });
    let get = |i, e| c(Method::GET, Route::Event(Target::Known(i), EventRef::Known(e)), Auth::Admin, Body::None);
    let redeliver =
        |i, e| c(Method::POST, Route::Redeliver(Target::Known(i), EventRef::Known(e)), Auth::Admin, Body::None);
    let patch = |i, configuration| {
        let body = Body::Json(json!({"configuration": configuration}));
        c(Method::PATCH, Route::Instance(Target::Known(i)), Auth::Admin, body)
    };
    let deliver = Step::Deliver;
    let interview = FIXTURES.iter().position(|f| *f == "interview_deleted.json").unwrap();
    let webhook = Body::Webhook { fixture: interview, signature: Signature::Right, flip: None, event_id: Some("gh-1") };
    let steps = [
        deliver(Answer::Status(500, 1500)),
        deliver(Answer::TooMany(Some("1"))),
        deliver(Answer::Slow),
        deliver(Answer::Redirect),
        deliver(Answer::TooMany(None)),
        deliver(Answer::Status(503, 7)),
        deliver(Answer::Status(404, 0)),
        deliver(Answer::Status(502, 0)),
        get(0, 0),
        redeliver(0, 0),
        deliver(Answer::Status(200, 0)),
        get(0, 0),
        c(Method::POST, Route::Ingest(Target::Known(1)), Auth::Missing, webhook),
        deliver(Answer::Status(410, 0)),
        get(1, 1),
        patch(0, json!({"event.notification.enabled": false})),
        redeliver(0, 0),
        deliver(Answer::Status(200, 0)),
        get(0, 0),
        c(Method::DELETE, Route::Instance(Target::Known(1)), Auth::Admin, Body::None),
        redeliver(1, 1),
    ];
    let answers = run_steps(&steps).unwrap();
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 200, 200, 200, 404]);
    let attempt = |a: &Value, n: usize, field: &str| a["attempts"][n][field].clone();
    // Dead-lettered after the eighth failure, each attempt recorded as it went.
    let dead = &answers[0].1;
    assert_eq!((dead["status"].as_str(), dead["attemptCount"].as_u64()), (Some("failed"), Some(8)), "{dead}");
    assert_eq!(attempt(dead, 0, "statusCode"), 500);
    assert_eq!(attempt(dead, 0, "responseBody"), "€".repeat(1365), "4 KiB, cut at a character boundary");
    assert!(attempt(dead, 2, "error").as_str().unwrap().contains("timed out"), "{dead}");
    assert_eq!(attempt(dead, 3, "statusCode"), 307);
    // Redelivered: a second series, delivered at its first attempt.
    let delivered = &answers[2].1;
    assert_eq!((delivered["status"].as_str(), delivered["series"].as_u64()), (Some("delivered"), Some(1)));
    // A 410 ends the other at once.
    let gone = &answers[4].1;
    assert_eq!((gone["status"].as_str(), gone["attemptCount"].as_u64()), (Some("failed"), Some(1)), "{gone}");
    // Disabled: the attempt is made against nothing and fails, to be retried.
    let disabled = &answers[7].1;
    assert_eq!(disabled["status"], "pending", "{disabled}");
    assert_eq!(
        disabled["attempts"].as_array().unwrap().last().unwrap()["error"],
        "events are disabled for this instance"
    );
}
