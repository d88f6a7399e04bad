//! Test harness: a scriptable callback receiver on loopback, a client for the local server, and
//! Greenhouse-style signing.
#![allow(dead_code)]

pub mod calls;
#[allow(unused_imports)]
pub use calls::{fixture, greenhouse_signature};

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use greenhouse_relay::{Config, Running, scaled, start};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

pub const USER: &str = "test-user-secret";
pub const ORG: &str = "test-org-secret";
pub const SIGNING_KEY: &str = "receiver-signing-key";
pub const VENDOR_KEY: &str = "greenhouse-secret-key";

pub fn admin() -> String {
    format!("User {USER}, Organization {ORG}")
}

#[derive(Clone, Debug)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    pub at: Instant,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("notification is JSON")
    }
    pub fn header(&self, name: &str) -> String {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }
}

#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub delay: Duration,
    pub body: String,
}

impl Reply {
    pub fn status(status: u16) -> Self {
        Reply { status, retry_after: None, delay: Duration::ZERO, body: String::new() }
    }
}

#[derive(Default)]
struct ReceiverState {
    log: Mutex<Vec<Received>>,
    script: Mutex<VecDeque<Reply>>,
}

/// Answers each request with the next scripted reply, 200 when the script is empty.
pub struct Receiver {
    pub addr: SocketAddr,
    state: Arc<ReceiverState>,
    tls: bool,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> Self {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new().fallback(receive).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { addr, state, tls: false }
    }

    /// The same receiver over TLS on 127.0.0.1, with a self-signed certificate for `localhost`
    /// (a receiver behind a private CA); also returns the certificate's PEM.
    pub async fn start_tls() -> (Self, String) {
        let state = Arc::new(ReceiverState::default());
        let app = axum::Router::new().fallback(receive).with_state(state.clone());
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, app) = (acceptor.clone(), app.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(tcp).await else { return };
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
                });
            }
        });
        (Receiver { addr, state, tls: true }, cert.cert.pem())
    }

    pub fn url(&self) -> String {
        match self.tls {
            true => format!("https://localhost:{}/hooks", self.addr.port()),
            false => format!("http://{}/hooks", self.addr),
        }
    }

    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.script.lock().unwrap().extend(replies);
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.log.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived (or panics after `within`).
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Received> {
        let deadline = Instant::now() + within;
        loop {
            let got = self.received();
            if got.len() >= n {
                return got;
            }
            assert!(Instant::now() < deadline, "expected {n} requests, got {} within {within:?}", got.len());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn receive(
    State(state): State<Arc<ReceiverState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let at = Instant::now();
    let reply = state.script.lock().unwrap().pop_front().unwrap_or(Reply::status(200));
    state.log.lock().unwrap().push(Received { headers, body: body.to_vec(), at });
    if !reply.delay.is_zero() {
        tokio::time::sleep(reply.delay).await;
    }
    let status = StatusCode::from_u16(reply.status).unwrap();
    match reply.retry_after {
        Some(ra) => (status, [("retry-after", ra)], reply.body).into_response(),
        None => (status, reply.body).into_response(),
    }
}

pub struct Server {
    pub running: Option<Running>,
    pub base: String,
    pub http: reqwest::Client,
}

pub fn config(db: &Path, time_scale: f64) -> Config {
    let mut c = Config::local(db.join("relay.db"), USER.into(), ORG.into());
    c.listen_addr = "127.0.0.1:0".parse().unwrap();
    c.worker = scaled(c.worker, time_scale);
    c.worker.idle_poll = Duration::from_millis(50);
    c
}

impl Server {
    pub async fn start(config: Config) -> Self {
        let running = start(config).await.expect("server starts");
        let base = format!("http://{}", running.addr);
        Server { running: Some(running), base, http: reqwest::Client::new() }
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    pub async fn call(&self, method: &str, path: &str, auth: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(serde_json::to_vec(&b).unwrap());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn create_instance(&self, callback: &str, extra: Value) -> Value {
        let mut conf = json!({
            "event.vendor.type": "webhooks",
            "event.notification.enabled": true,
            "event.notification.callback.url": callback,
            "event.notification.signature.key": SIGNING_KEY,
            "event.vendor.signature.key": VENDOR_KEY,
        });
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            conf[k] = v;
        }
        let (status, body) = self
            .call("POST", "/instances", Some(&admin()), Some(json!({"element": {"key": "greenhouse"}, "name": "acme-prod", "tags": ["acme"], "configuration": conf})))
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    /// POSTs a Greenhouse delivery signed with `key`.
    pub async fn webhook(&self, instance_id: i64, body: &[u8], key: &str, event_id: Option<&str>) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/events/greenhouse/{instance_id}", self.base))
            .header("content-type", "application/json")
            .header("signature", greenhouse_signature(key, body))
            .body(body.to_vec());
        if let Some(id) = event_id {
            req = req.header("greenhouse-event-id", id);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap_or(Value::Null))
    }

    pub async fn events(&self, instance_id: i64, query: &str) -> Vec<Value> {
        let (status, body) =
            self.call("GET", &format!("/instances/{instance_id}/events{query}"), Some(&admin()), None).await;
        assert_eq!(status, 200, "{body}");
        body.as_array().cloned().unwrap()
    }

    /// Waits until the events API shows `event_id` with `status`.
    pub async fn wait_status(&self, instance_id: i64, event_id: &str, status: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        let path = format!("/instances/{instance_id}/events/{event_id}");
        loop {
            let (code, event) = self.call("GET", &path, Some(&admin()), None).await;
            if code == 200 && event["status"] == status {
                return event;
            }
            let (now, attempts) = (&event["status"], &event["attempts"]);
            assert!(Instant::now() < deadline, "{event_id} never reached {status}: {code}, {now}, {attempts}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits for a notification's first attempt to be logged, and returns it.
    pub async fn first_attempt(&self, instance_id: i64, event_id: &str, within: Duration) -> Value {
        let deadline = Instant::now() + within;
        loop {
            let events = self.events(instance_id, "?limit=500").await;
            let event = events.iter().find(|e| e["eventId"] == event_id);
            if let Some(a) = event.and_then(|e| e["attempts"].as_array()).and_then(|a| a.first()) {
                return a.clone();
            }
            assert!(Instant::now() < deadline, "no attempt for {event_id}: {events:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Checks both signature schemes of a received notification with the receiver's key.
pub fn assert_signed(r: &Received, key: &str) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(&r.body);
    assert_eq!(r.header("elements-webhook-signature"), format!("sha256={}", b64.encode(mac.finalize().into_bytes())));
    let (id, ts) = (r.header("webhook-id"), r.header("webhook-timestamp"));
    let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(format!("{id}.{ts}.").as_bytes());
    mac.update(&r.body);
    assert_eq!(r.header("webhook-signature"), format!("v1,{}", b64.encode(mac.finalize().into_bytes())));
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((ts.parse::<i64>().unwrap() - now).abs() < 300, "stale webhook-timestamp");
    assert_eq!(r.header("elements-webhook-id"), id);
    assert_eq!(r.json()["message"]["eventId"], id.as_str());
}
