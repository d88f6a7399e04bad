//! Generated calls to the API, for property tests that drive the router with sequences of
//! them: well-formed requests, near misses (a wrong key, a bad value in one field, a path one
//! segment off) and junk, and what the test knows of the service as it goes (ids, tokens, keys,
//! notification ids, secrets). Used by `functions/local/tests/api_properties.rs` (the local
//! mode's properties) and `shared/aws/tests/runtime_parity.rs` (the AWS runtime against it).
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{Method, Request, Response};
use proptest::prelude::*;
use relay_callback::HttpCallback;
use relay_core::api::{Api, ApiConfig};
use relay_core::network::NetworkPolicy;
use relay_core::ports::SystemClock;
use relay_sqlite::SqliteStore;
use serde_json::{Map, Value, json};

/// Secrets the generated bodies draw from: distinctive, so that any echo of one is seen.
pub const POOL: [&str; 4] =
    ["pool-secret-sig-7c1d0e", "pool-secret-vendor-93ab52", "pool-secret-vendor-e0f4c8", "pool-secret-api-5b27d1"];
pub const VENDOR_1: &str = "setup-vendor-key-61f0a9";
pub const SIGNATURE_1: &str = "setup-signature-key-2d8e44";
/// Stands for a `Greenhouse-Event-ID` of 3,000 characters (`long_event_id()`).
pub const LONG_EVENT_ID: &str = "<3,000 characters>";

pub fn long_event_id() -> String {
    "e".repeat(3000)
}

pub const FIXTURES: [&str; 5] =
    ["hire_candidate.json", "interview_deleted.json", "ping.json", "delete_candidate.json", BIG_WEBHOOK];
/// Stands for a `job_created` body of 400 KB (`big_webhook()`): its notification is bigger than a
/// DynamoDB item, so the AWS runtime keeps it in chunks.
pub const BIG_WEBHOOK: &str = "<job_created of 400 KB>";

pub fn big_webhook() -> Vec<u8> {
    format!(r#"{{"action":"job_created","payload":{{"job":{{"id":3,"notes":"{}"}}}}}}"#, "j".repeat(400_000))
        .into_bytes()
}

#[derive(Debug, Clone)]
pub enum Auth {
    Admin,
    WrongAdmin,
    /// The token of the n-th instance known to the test (mod their number).
    Element(usize),
    ElementGarbage,
    /// The admin secrets, but not as the header must carry them.
    UserOnly,
    Reversed,
    Lowercase,
    Raw(String),
    Missing,
}

#[derive(Debug, Clone)]
pub enum Target {
    /// The n-th instance known to the test (mod their number).
    Known(usize),
    Literal(&'static str),
    Random(String),
}

#[derive(Debug, Clone)]
pub enum EventRef {
    /// The n-th notification id known to the test (mod their number).
    Known(usize),
    Random(String),
}

#[derive(Debug, Clone)]
pub enum Signature {
    /// Signed with the target instance's first Greenhouse key.
    Right,
    WrongKey,
    Malformed(String),
    Missing,
}

#[derive(Debug, Clone)]
pub enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>),
    Webhook { fixture: usize, signature: Signature, flip: Option<usize>, event_id: Option<&'static str> },
}

#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub route: Route,
    pub query: Option<String>,
    pub auth: Auth,
    pub body: Body,
}

#[derive(Debug, Clone)]
pub enum Route {
    Instances,
    Instance(Target),
    /// `POST /instances/{id}/token`: a new token in place of the instance's.
    Token(Target),
    Events(Target),
    Event(Target, EventRef),
    Redeliver(Target, EventRef),
    RedeliverMany(Target),
    /// `POST /instances/{id}/events/test`: a test notification.
    Test(Target),
    Ingest(Target),
    Health,
    Other(String),
}

pub fn target() -> impl Strategy<Value = Target> {
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

pub fn event_ref() -> impl Strategy<Value = EventRef> {
    prop_oneof![3 => (0..4usize).prop_map(EventRef::Known), 1 => "[a-z0-9%-]{1,36}".prop_map(EventRef::Random)]
}

pub fn route() -> impl Strategy<Value = Route> {
    prop_oneof![
        3 => Just(Route::Instances),
        4 => target().prop_map(Route::Instance),
        1 => target().prop_map(Route::Token),
        2 => target().prop_map(Route::Events),
        2 => (target(), event_ref()).prop_map(|(t, e)| Route::Event(t, e)),
        2 => (target(), event_ref()).prop_map(|(t, e)| Route::Redeliver(t, e)),
        1 => target().prop_map(Route::RedeliverMany),
        1 => target().prop_map(Route::Test),
        4 => target().prop_map(Route::Ingest),
        1 => Just(Route::Health),
        1 => "(/[a-z%.]{0,8}){0,4}".prop_map(Route::Other),
    ]
}

pub fn method() -> impl Strategy<Value = Method> {
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

pub fn query() -> impl Strategy<Value = Option<String>> {
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

pub fn auth() -> impl Strategy<Value = Auth> {
    prop_oneof![
        12 => Just(Auth::Admin),
        1 => Just(Auth::WrongAdmin),
        4 => (0..4usize).prop_map(Auth::Element),
        1 => Just(Auth::ElementGarbage),
        1 => prop_oneof![Just(Auth::UserOnly), Just(Auth::Reversed), Just(Auth::Lowercase)],
        1 => prop_oneof![Just("Element ".to_owned()), Just("Bearer x".to_owned()), "[ -~]{0,20}"].prop_map(Auth::Raw),
        1 => Just(Auth::Missing),
    ]
}

pub fn pool() -> impl Strategy<Value = Value> {
    (0..POOL.len()).prop_map(|i| json!(POOL[i]))
}

/// A valid value for one configuration key.
pub fn valid_value(key: &'static str) -> BoxedStrategy<Value> {
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
        // One key, or several: Greenhouse's (one per webhook), the notifications' (a rotation).
        // A new key beside the mask keeps the stored ones in a PATCH (and is refused at creation).
        "event.vendor.signature.key" | "event.notification.signature.key" => prop_oneof![
            4 => pool(),
            2 => (0..POOL.len(), 0..POOL.len()).prop_map(|(a, b)| json!([POOL[a], POOL[b]])),
            1 => (0..POOL.len()).prop_map(|a| json!([POOL[a], relay_core::instance::MASK])),
        ]
        .boxed(),
        _ => pool().boxed(),
    }
}

/// A value one configuration key must refuse (or, for a URL, a network the policy refuses).
pub fn invalid_value(key: &'static str) -> BoxedStrategy<Value> {
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
        // At most four keys at once.
        "event.notification.signature.key" => prop_oneof![
            Just(json!("")),
            Just(json!([])),
            Just(json!([POOL[0], ""])),
            Just(json!(5)),
            Just(json!([POOL[0], POOL[1], POOL[2], POOL[0], POOL[1]])),
        ]
        .boxed(),
        _ => prop_oneof![Just(json!("")), Just(json!(5)), Just(json!({"a": 1}))].boxed(),
    }
}

pub const KEYS: [&str; 6] = [
    "event.vendor.type",
    "event.notification.enabled",
    "event.notification.callback.url",
    "event.notification.signature.key",
    "event.vendor.signature.key",
    "api.key",
];

/// A POST or PATCH body: a valid Cloud Elements instance body (optional keys present or not),
/// then, half the time, one near miss: one part of a wrong kind, missing or refused.
pub fn instance_body() -> impl Strategy<Value = Value> {
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
        // Bigger than a DynamoDB item (400 KB), within the 1 MiB a body may be.
        1 => Just(Some(("name", json!("n".repeat(450_000))))),
        1 => Just(Some(("tags", json!(vec!["t".repeat(1000); 450])))),
        1 => Just(Some(("tags", json!("acme")))),
        1 => Just(Some(("tags", json!([1])))),
        1 => Just(Some(("configuration", json!([])))),
    ];
    (
        configuration,
        proptest::option::weighted(
            0.3,
            prop_oneof![9 => Just(json!("kept as given")), 1 => Just(json!("v".repeat(450_000)))],
        ),
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
pub fn partial_body() -> impl Strategy<Value = Value> {
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

pub fn webhook() -> impl Strategy<Value = Body> {
    let signature = prop_oneof![
        5 => Just(Signature::Right),
        1 => Just(Signature::WrongKey),
        1 => prop_oneof![Just("sha256".to_owned()), Just("sha1 00".to_owned()), "[ -~]{0,70}"].prop_map(Signature::Malformed),
        1 => Just(Signature::Missing),
    ];
    (
        prop_oneof![19 => 0..FIXTURES.len() - 1, 1 => Just(FIXTURES.len() - 1)],
        signature,
        proptest::option::weighted(0.3, any::<usize>()),
        proptest::option::of(prop_oneof![
            4 => Just("gh-1"),
            4 => Just("gh-2"),
            1 => Just(" "),
            1 => Just(""),
            // Longer than a DynamoDB key may be (2,048 bytes); Greenhouse sends UUIDs.
            1 => Just(LONG_EVENT_ID),
        ]),
    )
        .prop_map(|(fixture, signature, flip, event_id)| Body::Webhook { fixture, signature, flip, event_id })
}

pub fn body() -> impl Strategy<Value = Body> {
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
pub fn methods_of(route: &Route) -> Vec<Method> {
    match route {
        Route::Instances => vec![Method::GET, Method::HEAD, Method::POST],
        Route::Instance(_) => vec![Method::GET, Method::HEAD, Method::PATCH, Method::PUT, Method::DELETE],
        Route::Events(_) | Route::Event(..) | Route::Health | Route::Other(_) => vec![Method::GET, Method::HEAD],
        Route::Token(_) | Route::Redeliver(..) | Route::RedeliverMany(_) | Route::Test(_) | Route::Ingest(_) => {
            vec![Method::POST]
        }
    }
}

pub fn call() -> impl Strategy<Value = Call> {
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
pub struct Known {
    pub user: String,
    pub org: String,
    /// Id, token and Greenhouse keys of every instance created.
    pub instances: Vec<(i64, String, Vec<String>)>,
    pub events: Vec<String>,
    /// Every secret the service was given or gave, none of which a response may show again.
    pub secrets: Vec<String>,
    /// The callback URL of the instances `setup` creates: a closed port unless a test has a
    /// receiver.
    pub callback: String,
}

impl Known {
    pub fn new(user: &str, org: &str) -> Known {
        let secrets = [user, org, VENDOR_1, SIGNATURE_1].iter().chain(&POOL).map(|s| s.to_string()).collect();
        let callback = "http://127.0.0.1:9/hooks".to_owned();
        Known { user: user.into(), org: org.into(), instances: vec![], events: vec![], secrets, callback }
    }

    pub fn admin(&self) -> String {
        format!("User {}, Organization {}", self.user, self.org)
    }

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

    /// Two instances (the first with its keys given, the second with its Greenhouse key
    /// generated) and one queued notification, through `send`, which must answer 200 each time.
    pub fn setup(&mut self, mut send: impl FnMut(Request<Bytes>) -> Response<Bytes>) {
        let admin = self.admin();
        for configuration in [
            json!({"event.vendor.signature.key": VENDOR_1, "event.notification.signature.key": SIGNATURE_1}),
            json!({}),
        ] {
            let mut c = json!({
                "event.vendor.type": "webhooks",
                "event.notification.enabled": true,
                "event.notification.callback.url": self.callback,
            });
            c.as_object_mut().unwrap().extend(configuration.as_object().unwrap().clone());
            let body = json!({"element": {"key": "greenhouse"}, "name": "setup", "configuration": c});
            let req = Request::post("/instances").header("authorization", &admin);
            let v = ok(send(req.body(Bytes::from(serde_json::to_vec(&body).unwrap())).unwrap()));
            let key = v["webhookSecret"].as_str().map(str::to_owned).unwrap_or(VENDOR_1.to_owned());
            let token = v["token"].as_str().unwrap().to_owned();
            self.secrets.extend([key.clone(), token.clone()]);
            self.instances.push((v["id"].as_i64().unwrap(), token, vec![key]));
        }
        let body = fixture("hire_candidate.json");
        let req = Request::post(format!("/events/greenhouse/{}", self.instances[0].0))
            .header("signature", greenhouse_signature(VENDOR_1, &body));
        let v = ok(send(req.body(Bytes::from(body)).unwrap()));
        self.events.push(v["eventId"].as_str().unwrap().to_owned());
    }

    /// The HTTP request a call stands for, as of what is known now; `None` when it is no HTTP
    /// request (its URI does not parse).
    pub fn request(&self, call: &Call) -> Option<Request<Bytes>> {
        let (path, ingest_target) = match &call.route {
            Route::Instances => ("/instances".to_owned(), None),
            Route::Instance(t) => (format!("/instances/{}", self.target(t)), None),
            Route::Token(t) => (format!("/instances/{}/token", self.target(t)), None),
            Route::Events(t) => (format!("/instances/{}/events", self.target(t)), None),
            Route::Event(t, e) => (format!("/instances/{}/events/{}", self.target(t), self.event(e)), None),
            Route::Redeliver(t, e) => {
                (format!("/instances/{}/events/{}/redeliver", self.target(t), self.event(e)), None)
            }
            Route::RedeliverMany(t) => (format!("/instances/{}/events/redeliver", self.target(t)), None),
            Route::Test(t) => (format!("/instances/{}/events/test", self.target(t)), None),
            Route::Ingest(t) => (format!("/events/greenhouse/{}", self.target(t)), Some(t)),
            Route::Health => ("/health".to_owned(), None),
            Route::Other(p) => (if p.is_empty() { "/".to_owned() } else { p.clone() }, None),
        };
        let uri = match &call.query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let uri = uri.parse::<http::Uri>().ok()?;
        let auth = match &call.auth {
            Auth::Admin => Some(self.admin()),
            Auth::WrongAdmin => Some(format!("User {}, Organization not-{}", self.user, self.org)),
            Auth::Element(i) => Some(format!("Element {}", self.instance(*i).1)),
            Auth::ElementGarbage => Some("Element not-a-token".to_owned()),
            Auth::UserOnly => Some(format!("User {}", self.user)),
            Auth::Reversed => Some(format!("Organization {}, User {}", self.org, self.user)),
            Auth::Lowercase => Some(format!("user {}, organization {}", self.user, self.org)),
            Auth::Raw(s) => Some(s.clone()),
            Auth::Missing => None,
        };
        let mut headers = vec![];
        headers.extend(auth.map(|a| ("authorization", a)));
        let body = match &call.body {
            Body::None => vec![],
            Body::Json(v) => serde_json::to_vec(v).unwrap(),
            Body::Bytes(b) => b.clone(),
            Body::Webhook { fixture: f, signature, flip, event_id } => {
                let mut body = if FIXTURES[*f] == BIG_WEBHOOK { big_webhook() } else { fixture(FIXTURES[*f]) };
                let key = match ingest_target {
                    Some(Target::Known(i)) => self.instance(*i).2.first().cloned().unwrap_or_default(),
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
                    let id = if *id == LONG_EVENT_ID { long_event_id() } else { (*id).to_owned() };
                    headers.push(("greenhouse-event-id", id));
                }
                body
            }
        };
        let mut req = Request::builder().method(call.method.clone()).uri(uri);
        for (k, v) in headers.into_iter().filter(|(_, v)| http::HeaderValue::from_str(v).is_ok()) {
            req = req.header(k, v);
        }
        Some(req.body(Bytes::from(body)).unwrap())
    }

    /// A 200 to `POST /instances`: the token and generated key it returns are shown this once.
    pub fn is_creation(call: &Call, status: u16) -> bool {
        status == 200 && call.method == Method::POST && matches!(call.route, Route::Instances)
    }

    /// A 200 to `POST /instances/{id}/token`: the new token it returns is shown this once.
    pub fn is_new_token(call: &Call, status: u16) -> bool {
        status == 200 && call.method == Method::POST && matches!(call.route, Route::Token(_))
    }

    /// The token and generated key a creation returned, the token a new token's answer
    /// returned (none for any other answer).
    pub fn returned_secrets(call: &Call, status: u16, answer: &Value) -> Vec<String> {
        let fields: &[&str] = if Self::is_creation(call, status) {
            &["token", "webhookSecret"]
        } else if Self::is_new_token(call, status) {
            &["token"]
        } else {
            &[]
        };
        fields.iter().filter_map(|f| answer[*f].as_str().map(str::to_owned)).collect()
    }

    /// A delivery answered with the id of an earlier one: a duplicate.
    pub fn is_duplicate(&self, call: &Call, status: u16, answer: &Value) -> bool {
        let repeated = answer["eventId"].as_str().is_some_and(|id| self.events.iter().any(|e| e == id));
        status == 200 && matches!(call.route, Route::Ingest(_)) && repeated
    }

    /// Learns what a response made known: a new instance, its token and keys; new keys of a
    /// patched one; a new notification id.
    pub fn observe(&mut self, call: &Call, status: u16, answer: &Value) {
        let vendor_keys = match &call.body {
            Body::Json(b) => match &b["configuration"]["event.vendor.signature.key"] {
                Value::String(s) => Some(vec![s.clone()]),
                Value::Array(a) => Some(a.iter().filter_map(|k| k.as_str().map(str::to_owned)).collect()),
                _ => None,
            },
            _ => None,
        };
        if status == 200
            && matches!(call.method, Method::PATCH | Method::PUT)
            && let Some(keys) = vendor_keys.clone()
            && let Some(known) = self.instances.iter_mut().find(|i| Some(i.0) == answer["id"].as_i64())
        {
            // The mask stands for the keys stored now (alone: unchanged).
            let mut merged: Vec<String> = vec![];
            for key in keys {
                let expanded = if key == relay_core::instance::MASK { known.2.clone() } else { vec![key] };
                for key in expanded {
                    if !merged.contains(&key) {
                        merged.push(key);
                    }
                }
            }
            known.2 = merged;
        }
        // The old token stays among the secrets: no answer may show it again either.
        if Self::is_new_token(call, status)
            && let Some(token) = answer["token"].as_str()
            && let Some(known) = self.instances.iter_mut().find(|i| Some(i.0) == answer["id"].as_i64())
        {
            self.secrets.push(token.to_owned());
            known.1 = token.to_owned();
        }
        if Self::is_creation(call, status) {
            let token = answer["token"].as_str().unwrap().to_owned();
            self.secrets.push(token.clone());
            let mut keys = vec![];
            if let Some(s) = answer["webhookSecret"].as_str() {
                self.secrets.push(s.to_owned());
                keys.push(s.to_owned());
            }
            keys.extend(vendor_keys.unwrap_or_default());
            self.instances.push((answer["id"].as_i64().unwrap(), token, keys));
        }
        if status == 200
            && let Some(id) = answer["eventId"].as_str()
            && !self.events.iter().any(|e| e == id)
        {
            self.events.push(id.to_owned());
        }
    }
}

/// The log lines written while a test runs, in the JSON the functions and `LOG_FORMAT=json` write.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    /// Captures this thread's events that pass `filter` (`RUST_LOG` syntax) until the guard is
    /// dropped.
    pub fn install(&self, filter: &str) -> tracing::subscriber::DefaultGuard {
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(self.clone())
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// What was written since the last call.
    pub fn take(&self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut *self.0.lock().unwrap())).into_owned()
    }

    /// Takes what was written; `Err` names the first of `secrets` found in it, with the lines.
    pub fn take_clean<'a>(&self, secrets: impl IntoIterator<Item = &'a String>) -> Result<(), String> {
        let lines = self.take();
        match secrets.into_iter().find(|s| lines.contains(s.as_str())) {
            Some(secret) => Err(format!("secret {secret:?} in the logs:\n{lines}")),
            None => Ok(()),
        }
    }
}

/// Sends `req` to `api` as request `req-<n>`, `n` counted in `serial`.
pub fn send(rt: &tokio::runtime::Runtime, api: &Api, serial: &mut u64, req: Request<Bytes>) -> Response<Bytes> {
    *serial += 1;
    rt.block_on(api.handle(req, &format!("req-{serial}")))
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}

/// Loopback callbacks (IPv4 and IPv6), plain http to them allowed: the local mode's defaults.
pub fn policy() -> NetworkPolicy {
    NetworkPolicy {
        allow: NetworkPolicy::parse_allow_list("127.0.0.0/8,::1/128").unwrap(),
        allow_http_to_allowed_nets: true,
    }
}

/// The local mode's router on `store`, as `greenhouse_relay::start` wires it, with `webhookUrl`s
/// under `http://relay.test`.
pub fn local_router(store: SqliteStore, user: &str, org: &str) -> Api {
    let policy = policy();
    Api {
        instances: Arc::new(store.clone()),
        events: Arc::new(store),
        callback: Arc::new(HttpCallback::new(policy.clone(), Duration::from_secs(5)).unwrap()),
        clock: Arc::new(SystemClock),
        config: Arc::new(ApiConfig {
            admin_user_secret: user.into(),
            admin_org_secret: org.into(),
            public_base_url: Some("http://relay.test".into()),
            policy,
        }),
    }
}

/// What a call is, for counting outcomes.
pub fn kind(call: &Call) -> &'static str {
    match (&call.route, &call.method) {
        (Route::Instances, &Method::POST) => "create",
        (Route::Instances, _) => "list",
        (Route::Instance(_), &Method::PATCH | &Method::PUT) => "patch",
        (Route::Instance(_), &Method::DELETE) => "delete",
        (Route::Instance(_), _) => "instance",
        (Route::Token(_), _) => "token",
        (Route::Events(_) | Route::Event(..), _) => "events",
        (Route::Redeliver(..) | Route::RedeliverMany(_), _) => "redeliver",
        (Route::Test(_), _) => "test",
        (Route::Ingest(_), _) => "ingest",
        (Route::Health | Route::Other(_), _) => "other",
    }
}

/// The JSON of a response that must be a 200 (the setup's calls).
pub fn ok(r: Response<Bytes>) -> Value {
    let v = serde_json::from_slice(r.body()).unwrap_or(Value::Null);
    assert_eq!(r.status(), 200, "{v}");
    v
}

/// `PROPTEST_CASES`, else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(default)
}

/// A Greenhouse fixture from `../shared/fixtures/greenhouse` (or `GREENHOUSE_FIXTURES`).
pub fn fixture(name: &str) -> Vec<u8> {
    let dir = std::env::var("GREENHOUSE_FIXTURES")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/greenhouse"));
    std::fs::read(dir.join(name)).unwrap()
}

/// The `Signature` header Greenhouse sends for `body` under `key`.
pub fn greenhouse_signature(key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256 {}", hex::encode(mac.finalize().into_bytes()))
}
