//! Properties of the whole management and ingest API under arbitrary requests, on the real
//! router (`relay_core::api::Api`), the real SQLite store and the real callback client, as the
//! local mode wires them. Each case starts from a fresh database holding two instances and one
//! queued notification, then sends a sequence of generated requests: well-formed ones, near
//! misses (a wrong key, a bad value in one field, a path one segment off), and junk.
//!
//! After every response:
//! - the status is one the contract names, the body is JSON, and `x-request-id` is the request's;
//! - an error body is `{"message": <a sentence>, "requestId": <the id>}`;
//! - a refused request, or any GET, left the store exactly as it was (every row of every table,
//!   and the instances the store serves from memory);
//! - no secret (admin secrets, Greenhouse keys, signature keys, instance tokens) appears in the
//!   response, except the token and generated secret a creation returns, once.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use relay_callback::HttpCallback;
use relay_core::api::{Api, ApiConfig};
use relay_core::network::NetworkPolicy;
use relay_core::ports::{Instances, SystemClock};
use relay_sqlite::SqliteStore;
use rusqlite::types::ValueRef;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

mod common;
use common::{ORG, USER, admin, fixture, greenhouse_signature};

/// Secrets the generated bodies draw from: distinctive, so that any echo of one is seen.
const POOL: [&str; 4] =
    ["pool-secret-sig-7c1d0e", "pool-secret-vendor-93ab52", "pool-secret-vendor-e0f4c8", "pool-secret-api-5b27d1"];
const VENDOR_1: &str = "setup-vendor-key-61f0a9";
const SIGNATURE_1: &str = "setup-signature-key-2d8e44";
const FIXTURES: [&str; 4] = ["hire_candidate.json", "interview_deleted.json", "ping.json", "delete_candidate.json"];

#[derive(Debug, Clone)]
enum Auth {
    Admin,
    WrongAdmin,
    /// The token of the n-th instance known to the test (mod their number).
    Element(usize),
    ElementGarbage,
    Raw(String),
    Missing,
}

#[derive(Debug, Clone)]
enum Target {
    /// The n-th instance known to the test (mod their number).
    Known(usize),
    Literal(&'static str),
    Random(String),
}

#[derive(Debug, Clone)]
enum EventRef {
    /// The n-th notification id known to the test (mod their number).
    Known(usize),
    Random(String),
}

#[derive(Debug, Clone)]
enum Signature {
    /// Signed with the target instance's first Greenhouse key.
    Right,
    WrongKey,
    Malformed(String),
    Missing,
}

#[derive(Debug, Clone)]
enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
    Webhook { fixture: usize, signature: Signature, flip: Option<usize>, event_id: Option<&'static str> },
}

#[derive(Debug, Clone)]
struct Call {
    method: Method,
    route: Route,
    query: Option<String>,
    auth: Auth,
    body: Body,
}

#[derive(Debug, Clone)]
enum Route {
    Instances,
    Instance(Target),
    Events(Target),
    Event(Target, EventRef),
    Redeliver(Target, EventRef),
    RedeliverMany(Target),
    Ingest(Target),
    Health,
    Other(String),
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        4 => (0..4usize).prop_map(Target::Known),
        1 => prop_oneof![
            Just("0"), Just("-1"), Just("99999999999999999999"), Just("1.0"), Just("%31"), Just("1%2F2"),
            Just("abc"), Just("999"), Just(" 1"),
        ]
        .prop_map(Target::Literal),
        1 => "[a-z0-9%.~-]{1,8}".prop_map(Target::Random),
    ]
}

fn event_ref() -> impl Strategy<Value = EventRef> {
    prop_oneof![3 => (0..4usize).prop_map(EventRef::Known), 1 => "[a-z0-9%-]{1,36}".prop_map(EventRef::Random)]
}

fn route() -> impl Strategy<Value = Route> {
    prop_oneof![
        3 => Just(Route::Instances),
        4 => target().prop_map(Route::Instance),
        2 => target().prop_map(Route::Events),
        2 => (target(), event_ref()).prop_map(|(t, e)| Route::Event(t, e)),
        2 => (target(), event_ref()).prop_map(|(t, e)| Route::Redeliver(t, e)),
        1 => target().prop_map(Route::RedeliverMany),
        4 => target().prop_map(Route::Ingest),
        1 => Just(Route::Health),
        1 => "(/[a-z%.]{0,8}){0,4}".prop_map(Route::Other),
    ]
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        4 => Just(Method::GET),
        4 => Just(Method::POST),
        2 => Just(Method::PATCH),
        1 => Just(Method::PUT),
        2 => Just(Method::DELETE),
        1 => Just(Method::HEAD),
        1 => Just(Method::OPTIONS),
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    let part = prop_oneof![
        Just("status=failed".to_owned()),
        Just("status=delivered".to_owned()),
        Just("status=pending".to_owned()),
        Just("status=lost".to_owned()),
        Just("limit=1".to_owned()),
        Just("limit=0".to_owned()),
        Just("limit=-3".to_owned()),
        Just("limit=100000".to_owned()),
        Just("since=2020-01-01T00:00:00Z".to_owned()),
        Just("since=yesterday".to_owned()),
        Just("pageSize=1".to_owned()),
        Just("pageSize=0".to_owned()),
        Just("nextPage=1".to_owned()),
        Just("nextPage=x".to_owned()),
        Just("cursor=abc".to_owned()),
        "[a-zA-Z%=&]{0,12}",
    ];
    proptest::option::weighted(0.5, proptest::collection::vec(part, 1..4).prop_map(|p| p.join("&")))
}

fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        12 => Just(Auth::Admin),
        1 => Just(Auth::WrongAdmin),
        4 => (0..4usize).prop_map(Auth::Element),
        1 => Just(Auth::ElementGarbage),
        1 => prop_oneof![
            Just(format!("User {USER}")),
            Just(format!("Organization {ORG}, User {USER}")),
            Just(format!("user {USER}, organization {ORG}")),
            Just("Element ".to_owned()),
            Just("Bearer x".to_owned()),
            "[ -~]{0,20}",
        ]
        .prop_map(Auth::Raw),
        1 => Just(Auth::Missing),
    ]
}

fn pool() -> impl Strategy<Value = Value> {
    (0..POOL.len()).prop_map(|i| json!(POOL[i]))
}

/// A valid value for one configuration key.
fn valid_value(key: &'static str) -> BoxedStrategy<Value> {
    match key {
        "event.vendor.type" => prop_oneof![Just(json!("webhooks")), Just(json!("webhook"))].boxed(),
        "event.notification.enabled" => {
            prop_oneof![3 => Just(json!(true)), 1 => Just(json!("true")), 1 => Just(json!(false)), 1 => Just(json!("false"))]
                .boxed()
        }
        "event.notification.callback.url" => prop_oneof![
            3 => Just(json!("http://127.0.0.1:9/hooks")),
            1 => Just(json!("https://93.184.216.34/hooks")),
            1 => Just(json!("https://[::1]:9/hooks")),
        ]
        .boxed(),
        "event.vendor.signature.key" => prop_oneof![
            2 => pool(),
            1 => (0..POOL.len(), 0..POOL.len()).prop_map(|(a, b)| json!([POOL[a], POOL[b]])),
        ]
        .boxed(),
        _ => pool().boxed(),
    }
}

/// A value one configuration key must refuse (or, for a URL, a network the policy refuses).
fn invalid_value(key: &'static str) -> BoxedStrategy<Value> {
    match key {
        "event.vendor.type" => prop_oneof![Just(json!("polling")), Just(json!(true)), Just(json!(""))].boxed(),
        "event.notification.enabled" => prop_oneof![Just(json!("yes")), Just(json!(1)), Just(json!([]))].boxed(),
        "event.notification.callback.url" => prop_oneof![
            Just(json!("https://10.0.0.1/x")),
            Just(json!("https://169.254.169.254/latest/meta-data")),
            Just(json!("https://[::ffff:10.0.0.1]/x")),
            Just(json!("https://[64:ff9b::a9fe:a9fe]/x")),
            Just(json!("https://[fd00::1]/x")),
            Just(json!("https://0.0.0.0/x")),
            Just(json!("http://93.184.216.34/hooks")),
            Just(json!("ftp://127.0.0.1/x")),
            Just(json!("not a url")),
            Just(json!("")),
            Just(json!(7)),
        ]
        .boxed(),
        "event.vendor.signature.key" => {
            prop_oneof![Just(json!("")), Just(json!([])), Just(json!([5])), Just(json!(5))].boxed()
        }
        _ => prop_oneof![Just(json!("")), Just(json!(5)), Just(json!({"a": 1}))].boxed(),
    }
}

const KEYS: [&str; 6] = [
    "event.vendor.type",
    "event.notification.enabled",
    "event.notification.callback.url",
    "event.notification.signature.key",
    "event.vendor.signature.key",
    "api.key",
];

/// A POST or PATCH body: a valid Cloud Elements instance body (optional keys present or not),
/// then, half the time, one near miss: one part of a wrong kind, missing or refused.
fn instance_body() -> impl Strategy<Value = Value> {
    let configuration = KEYS
        .iter()
        .map(|&k| {
            let required =
                matches!(k, "event.vendor.type" | "event.notification.enabled" | "event.notification.callback.url");
            proptest::option::weighted(if required { 0.95 } else { 0.6 }, valid_value(k)).prop_map(move |v| (k, v))
        })
        .collect::<Vec<_>>();
    let miss = prop_oneof![
        4 => (0..KEYS.len()).prop_flat_map(|i| invalid_value(KEYS[i]).prop_map(move |v| Some((KEYS[i], v)))),
        1 => Just(Some(("element", json!({"key": "lever"})))),
        1 => Just(Some(("element", json!("greenhouse")))),
        1 => Just(Some(("name", json!(7)))),
        1 => Just(Some(("tags", json!("acme")))),
        1 => Just(Some(("tags", json!([1])))),
        1 => Just(Some(("configuration", json!([])))),
    ];
    (
        configuration,
        proptest::option::weighted(0.3, Just(json!("kept as given"))),
        prop_oneof![4 => Just(json!(["acme"])), 1 => Just(json!([]))],
        prop_oneof![1 => Just(None), 1 => miss],
    )
        .prop_map(|(configuration, unknown, tags, miss)| {
            let mut c = Map::new();
            for (k, v) in configuration.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))) {
                c.insert(k.to_owned(), v);
            }
            if let Some(u) = unknown {
                c.insert("x.custom.setting".to_owned(), u);
            }
            let mut body =
                json!({"element": {"key": "greenhouse"}, "name": "acme-prod", "tags": tags, "configuration": c});
            match miss {
                Some((k, v)) if KEYS.contains(&k) => body["configuration"][k] = v,
                Some((k, v)) => body[k] = v,
                None => {}
            }
            body
        })
}

/// A PATCH-style body: one or two configuration keys, each valid or not.
fn partial_body() -> impl Strategy<Value = Value> {
    // The callback URL thrice as often: its network check is the one that runs after validation.
    let key = prop_oneof![3 => Just(KEYS[2]), 6 => (0..KEYS.len()).prop_map(|i| KEYS[i])];
    let entry = (key, proptest::bool::weighted(0.5)).prop_flat_map(|(k, valid)| {
        let v = if valid { valid_value(k) } else { invalid_value(k) };
        v.prop_map(move |v| (k, v))
    });
    proptest::collection::vec(entry, 1..3).prop_map(|entries| {
        let c: Map<String, Value> = entries.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        json!({"configuration": c})
    })
}

fn webhook() -> impl Strategy<Value = Body> {
    let signature = prop_oneof![
        5 => Just(Signature::Right),
        1 => Just(Signature::WrongKey),
        1 => prop_oneof![Just("sha256".to_owned()), Just("sha1 00".to_owned()), "[ -~]{0,70}"].prop_map(Signature::Malformed),
        1 => Just(Signature::Missing),
    ];
    (
        0..FIXTURES.len(),
        signature,
        proptest::option::weighted(0.3, any::<usize>()),
        proptest::option::of(prop_oneof![Just("gh-1"), Just("gh-2"), Just(" "), Just("")]),
    )
        .prop_map(|(fixture, signature, flip, event_id)| Body::Webhook { fixture, signature, flip, event_id })
}

fn body() -> impl Strategy<Value = Body> {
    prop_oneof![
        2 => Just(Body::None),
        5 => instance_body().prop_map(Body::Json),
        3 => partial_body().prop_map(Body::Json),
        1 => prop_oneof![Just(json!([])), Just(json!(null)), Just(json!({"configuration": []})), Just(json!({"configuration": {"api.key": "x"}}))]
            .prop_map(Body::Json),
        1 => proptest::collection::vec(any::<u8>(), 0..40).prop_map(Body::Bytes),
        2 => webhook(),
    ]
}

/// The methods a route serves, so that most calls reach the handler behind the route.
fn methods_of(route: &Route) -> Vec<Method> {
    match route {
        Route::Instances => vec![Method::GET, Method::POST],
        Route::Instance(_) => vec![Method::GET, Method::PATCH, Method::PUT, Method::DELETE],
        Route::Events(_) | Route::Event(..) | Route::Health | Route::Other(_) => vec![Method::GET],
        Route::Redeliver(..) | Route::RedeliverMany(_) | Route::Ingest(_) => vec![Method::POST],
    }
}

fn call() -> impl Strategy<Value = Call> {
    let fitting = (proptest::bool::weighted(0.8), webhook(), body());
    (route(), any::<proptest::sample::Index>(), proptest::bool::weighted(0.8), method(), query(), auth(), fitting)
        .prop_map(|(route, pick, served, other, query, auth, (fits, webhook, body))| {
            let method = if served { pick.get(&methods_of(&route)).clone() } else { other };
            // Most webhooks go to the ingest route, most other bodies elsewhere.
            let body = if fits && matches!(route, Route::Ingest(_)) { webhook } else { body };
            Call { method, route, query, auth, body }
        })
}

/// What the test knows of the service's state: ids, tokens, keys, notification ids, secrets.
struct Known {
    instances: Vec<(i64, String, Vec<String>)>,
    events: Vec<String>,
    secrets: Vec<String>,
}

impl Known {
    fn instance(&self, i: usize) -> &(i64, String, Vec<String>) {
        &self.instances[i % self.instances.len()]
    }

    fn target(&self, t: &Target) -> String {
        match t {
            Target::Known(i) => self.instance(*i).0.to_string(),
            Target::Literal(s) => (*s).to_owned(),
            Target::Random(s) => s.clone(),
        }
    }

    fn event(&self, e: &EventRef) -> String {
        match e {
            EventRef::Known(i) if !self.events.is_empty() => self.events[i % self.events.len()].clone(),
            EventRef::Known(_) => "none-yet".to_owned(),
            EventRef::Random(s) => s.clone(),
        }
    }
}

/// Every row of every table, and the instances as the store serves them from memory.
fn snapshot(db: &Path, instances: &dyn Instances, rt: &tokio::runtime::Runtime) -> Vec<String> {
    let conn = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).unwrap();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let mut out = vec![];
    for t in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{t}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows: Vec<String> = stmt
            .query_map([], |r| {
                let cols: Vec<String> = (0..n)
                    .map(|i| match r.get_ref(i) {
                        Ok(ValueRef::Text(t)) => format!("{:?}", String::from_utf8_lossy(t)),
                        Ok(ValueRef::Blob(b)) => format!("blob {} {}", b.len(), hex::encode(Sha256::digest(b))),
                        v => format!("{v:?}"),
                    })
                    .collect();
                Ok(format!("{t}: {}", cols.join(" | ")))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        rows.sort();
        out.extend(rows);
    }
    let page = rt.block_on(instances.list(None, 500)).unwrap();
    out.extend(page.into_iter().map(|i| format!("{i:?}")));
    out
}

struct World {
    _dir: tempfile::TempDir,
    db: std::path::PathBuf,
    store: SqliteStore,
    api: Api,
    known: Known,
    serial: u64,
}

impl World {
    fn new(rt: &tokio::runtime::Runtime) -> World {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("relay.db");
        let store = SqliteStore::open(&db).unwrap();
        let policy = NetworkPolicy {
            allow: NetworkPolicy::parse_allow_list("127.0.0.0/8,::1/128").unwrap(),
            allow_http_to_allowed_nets: true,
        };
        let api = Api {
            instances: Arc::new(store.clone()),
            events: Arc::new(store.clone()),
            callback: Arc::new(HttpCallback::new(policy.clone(), Duration::from_secs(5)).unwrap()),
            clock: Arc::new(SystemClock),
            config: Arc::new(ApiConfig {
                admin_user_secret: USER.into(),
                admin_org_secret: ORG.into(),
                public_base_url: Some("http://relay.test".into()),
                policy,
            }),
        };
        let mut secrets: Vec<String> =
            [USER, ORG, VENDOR_1, SIGNATURE_1].iter().chain(&POOL).map(|s| s.to_string()).collect();
        let mut world = World {
            _dir: dir,
            db,
            store,
            api,
            known: Known { instances: vec![], events: vec![], secrets: vec![] },
            serial: 0,
        };
        // Instance 1: keys given. Instance 2: the Greenhouse key generated.
        for configuration in [
            json!({"event.vendor.signature.key": VENDOR_1, "event.notification.signature.key": SIGNATURE_1}),
            json!({}),
        ] {
            let mut c = json!({
                "event.vendor.type": "webhooks",
                "event.notification.enabled": true,
                "event.notification.callback.url": "http://127.0.0.1:9/hooks",
            });
            c.as_object_mut().unwrap().extend(configuration.as_object().unwrap().clone());
            let body = json!({"element": {"key": "greenhouse"}, "name": "setup", "configuration": c});
            let v = ok(world.request(
                rt,
                Method::POST,
                "/instances",
                Some(&admin()),
                vec![],
                serde_json::to_vec(&body).unwrap(),
            ));
            let key = v["webhookSecret"].as_str().map(str::to_owned).unwrap_or(VENDOR_1.to_owned());
            secrets.push(key.clone());
            secrets.push(v["token"].as_str().unwrap().to_owned());
            world.known.instances.push((v["id"].as_i64().unwrap(), v["token"].as_str().unwrap().to_owned(), vec![key]));
        }
        let body = fixture("hire_candidate.json");
        let sig = greenhouse_signature(VENDOR_1, &body);
        let id = world.known.instances[0].0;
        let v = ok(world.request(
            rt,
            Method::POST,
            &format!("/events/greenhouse/{id}"),
            None,
            vec![("signature", sig)],
            body,
        ));
        world.known.events.push(v["eventId"].as_str().unwrap().to_owned());
        world.known.secrets = secrets;
        world
    }

    fn request(
        &mut self,
        rt: &tokio::runtime::Runtime,
        method: Method,
        uri: &str,
        auth: Option<&str>,
        headers: Vec<(&'static str, String)>,
        body: Vec<u8>,
    ) -> Response<Bytes> {
        self.serial += 1;
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let req = req.body(Bytes::from(body)).unwrap();
        rt.block_on(self.api.handle(req, &format!("req-{}", self.serial)))
    }

    /// Sends one generated call and checks every property. Returns the status and whether it was
    /// a duplicate delivery, or `None` when the call is no HTTP request (an invalid URI).
    fn check(&mut self, rt: &tokio::runtime::Runtime, call: &Call) -> Result<Option<(u16, bool)>, TestCaseError> {
        let known = &self.known;
        let (path, ingest_target) = match &call.route {
            Route::Instances => ("/instances".to_owned(), None),
            Route::Instance(t) => (format!("/instances/{}", known.target(t)), None),
            Route::Events(t) => (format!("/instances/{}/events", known.target(t)), None),
            Route::Event(t, e) => (format!("/instances/{}/events/{}", known.target(t), known.event(e)), None),
            Route::Redeliver(t, e) => {
                (format!("/instances/{}/events/{}/redeliver", known.target(t), known.event(e)), None)
            }
            Route::RedeliverMany(t) => (format!("/instances/{}/events/redeliver", known.target(t)), None),
            Route::Ingest(t) => (format!("/events/greenhouse/{}", known.target(t)), Some(t)),
            Route::Health => ("/health".to_owned(), None),
            Route::Other(p) => (if p.is_empty() { "/".to_owned() } else { p.clone() }, None),
        };
        let uri = match &call.query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        if uri.parse::<http::Uri>().is_err() {
            return Ok(None);
        }
        let auth = match &call.auth {
            Auth::Admin => Some(admin()),
            Auth::WrongAdmin => Some(format!("User {USER}, Organization not-{ORG}")),
            Auth::Element(i) => Some(format!("Element {}", known.instance(*i).1)),
            Auth::ElementGarbage => Some("Element not-a-token".to_owned()),
            Auth::Raw(s) => Some(s.clone()),
            Auth::Missing => None,
        };
        let mut headers = vec![];
        let body = match &call.body {
            Body::None => vec![],
            Body::Json(v) => serde_json::to_vec(v).unwrap(),
            Body::Bytes(b) => b.clone(),
            Body::Webhook { fixture: f, signature, flip, event_id } => {
                let mut body = fixture(FIXTURES[*f]);
                let key = match ingest_target {
                    Some(Target::Known(i)) => known.instance(*i).2.first().cloned().unwrap_or_default(),
                    _ => VENDOR_1.to_owned(),
                };
                // Signed after the change: a body Greenhouse signed as it is, but not a webhook.
                if let Some(at) = flip {
                    let at = at % body.len();
                    body[at] ^= 0x20;
                }
                match signature {
                    Signature::Right => headers.push(("signature", greenhouse_signature(&key, &body))),
                    Signature::WrongKey => headers.push(("signature", greenhouse_signature("not-the-key", &body))),
                    Signature::Malformed(s) => headers.push(("signature", s.clone())),
                    Signature::Missing => {}
                }
                if let Some(id) = event_id {
                    headers.push(("greenhouse-event-id", (*id).to_owned()));
                }
                body
            }
        };
        let headers: Vec<_> = headers.into_iter().filter(|(_, v)| http::HeaderValue::from_str(v).is_ok()).collect();
        let auth = auth.filter(|a| http::HeaderValue::from_str(a).is_ok());
        let before = snapshot(&self.db, &self.store, rt);
        let request_id = format!("req-{}", self.serial + 1);
        let r = self.request(rt, call.method.clone(), &uri, auth.as_deref(), headers, body);
        let status = r.status().as_u16();
        let context = format!("{} {uri} -> {status}: {}", call.method, String::from_utf8_lossy(r.body()));

        prop_assert!([200, 400, 401, 404, 405].contains(&status), "unexpected status: {context}");
        prop_assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some(request_id.as_str()));
        prop_assert_eq!(
            r.headers().get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{}",
            context
        );
        let v: Value = serde_json::from_slice(r.body()).map_err(|e| TestCaseError::fail(format!("{e}: {context}")))?;
        if status >= 400 {
            let message = v["message"].as_str().unwrap_or_default();
            prop_assert!(message.len() > 10, "no message: {}", context);
            prop_assert_eq!(v["requestId"].as_str(), Some(request_id.as_str()), "{}", context);
            let o = v.as_object().map(|o| o.len()).unwrap_or(0);
            prop_assert_eq!(o, 2, "{}", context);
        }

        // Secrets: none in the response, but the token and generated secret of a creation.
        let created = status == 200 && call.method == Method::POST && uri.split('?').next() == Some("/instances");
        let mut text = String::from_utf8_lossy(r.body()).into_owned();
        for (k, v) in r.headers() {
            text.push_str(&format!("\n{k}: {}", String::from_utf8_lossy(v.as_bytes())));
        }
        if created {
            for field in ["token", "webhookSecret"] {
                if let Some(s) = v[field].as_str() {
                    prop_assert!(
                        !self.known.secrets.iter().any(|k| k == s),
                        "{field} reused a known secret: {context}"
                    );
                    text = text.replace(s, "<returned once>");
                }
            }
        }
        for secret in &self.known.secrets {
            prop_assert!(!text.contains(secret.as_str()), "secret {secret:?} in the response: {context}");
        }

        let after = snapshot(&self.db, &self.store, rt);
        if status >= 400 || call.method == Method::GET {
            prop_assert!(before == after, "{context}: the store changed:\n{}", diff(&before, &after));
        }
        // A delivery answered with the id of an earlier one is a duplicate: nothing new queued.
        let repeated = v["eventId"].as_str().is_some_and(|id| self.known.events.iter().any(|e| e == id));
        let duplicate = status == 200 && ingest_target.is_some() && repeated;
        if duplicate {
            prop_assert!(before == after, "{context}: a duplicate changed the store:\n{}", diff(&before, &after));
        }
        let vendor_keys = |call: &Call| match call {
            Call { body: Body::Json(b), .. } => match &b["configuration"]["event.vendor.signature.key"] {
                Value::String(s) => Some(vec![s.clone()]),
                Value::Array(a) => Some(a.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect()),
                _ => None,
            },
            _ => None,
        };
        if status == 200
            && matches!(call.method, Method::PATCH | Method::PUT)
            && let Some(keys) = vendor_keys(call)
            && let Some(known) = self.known.instances.iter_mut().find(|i| Some(i.0) == v["id"].as_i64())
        {
            known.2 = keys;
        }
        if created {
            let id = v["id"].as_i64().unwrap();
            let token = v["token"].as_str().unwrap().to_owned();
            self.known.secrets.push(token.clone());
            let mut keys = vec![];
            if let Some(s) = v["webhookSecret"].as_str() {
                self.known.secrets.push(s.to_owned());
                keys.push(s.to_owned());
            }
            keys.extend(vendor_keys(call).unwrap_or_default());
            self.known.instances.push((id, token, keys));
        }
        if status == 200
            && let Some(id) = v["eventId"].as_str()
            && !self.known.events.iter().any(|e| e == id)
        {
            self.known.events.push(id.to_owned());
        }
        Ok(Some((status, duplicate)))
    }
}

/// The JSON of a response that must be a 200 (the setup's calls).
fn ok(r: Response<Bytes>) -> Value {
    let v = serde_json::from_slice(r.body()).unwrap_or(Value::Null);
    assert_eq!(r.status(), 200, "{v}");
    v
}

fn diff(before: &[String], after: &[String]) -> String {
    let gone = before.iter().filter(|r| !after.contains(r)).map(|r| format!("- {r}"));
    let new = after.iter().filter(|r| !before.contains(r)).map(|r| format!("+ {r}"));
    gone.chain(new).collect::<Vec<_>>().join("\n")
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(128)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_request_gets_a_contract_answer_and_a_refusal_changes_nothing(calls in proptest::collection::vec(call(), 1..16)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let mut world = World::new(&rt);
        for call in &calls {
            world.check(&rt, call)?;
        }
    }
}

/// The generators reach what the properties are about: refusals of every kind, creations,
/// queued notifications, reads and redeliveries. Without this, generators that only made 404s
/// would pass the property above.
#[test]
fn the_generated_requests_reach_every_outcome() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut seen = std::collections::BTreeMap::<(&str, u16), usize>::new();
    let mut duplicates = 0;
    let mut world = World::new(&rt);
    for n in 0..800 {
        if n % 40 == 0 {
            world = World::new(&rt);
        }
        let call = call().new_tree(&mut runner).unwrap().current();
        let Some((status, duplicate)) = world.check(&rt, &call).unwrap() else { continue };
        duplicates += usize::from(duplicate);
        let kind = match (&call.route, &call.method) {
            (Route::Instances, &Method::POST) => "create",
            (Route::Instances, _) => "list",
            (Route::Instance(_), &Method::PATCH | &Method::PUT) => "patch",
            (Route::Instance(_), &Method::DELETE) => "delete",
            (Route::Instance(_), _) => "instance",
            (Route::Events(_) | Route::Event(..), _) => "events",
            (Route::Redeliver(..) | Route::RedeliverMany(_), _) => "redeliver",
            (Route::Ingest(_), _) => "ingest",
            (Route::Health | Route::Other(_), _) => "other",
        };
        *seen.entry((kind, status)).or_default() += 1;
    }
    for (kind, statuses) in [
        ("create", &[200, 400, 401][..]),
        ("list", &[200, 400, 401]),
        ("patch", &[200, 400, 401, 404]),
        ("delete", &[200, 401, 404]),
        ("instance", &[200, 401, 404, 405]),
        ("events", &[200, 400, 401, 404, 405]),
        ("redeliver", &[200, 401, 404]),
        ("ingest", &[200, 400, 401, 404, 405]),
        ("other", &[200, 404]),
    ] {
        for &status in statuses {
            assert!(seen.contains_key(&(kind, status)), "no {kind} request answered {status}: {seen:?}");
        }
    }
    assert!(duplicates > 0, "no duplicate delivery");
}
