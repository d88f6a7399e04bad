//! `greenhouse-relay listen`: a callback receiver for trying the relay without writing one. It
//! checks each notification as a receiver should, with the Standard Webhooks reference library
//! (`standardwebhooks`: a signature by any of the keys, a timestamp within 5 minutes), writes one
//! JSON line per notification, and answers 200, or 401 when that check fails (the relay then
//! retries, as it would with a real receiver). The line also says whether
//! `Elements-Webhook-Signature` (the Cloud Elements scheme, by the relay's first key only)
//! verifies with one of the keys.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// More than any notification: a 1 MiB Greenhouse body, escaped, in the envelope.
const BODY_LIMIT: usize = 8 * 1024 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the lines go (stdout for the command, a buffer in tests).
pub type Output = Arc<Mutex<dyn Write + Send>>;

/// A started receiver: where it listens, and how to stop it.
pub struct Listening {
    pub addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Listening {
    /// Graceful stop: no new requests, those in flight answered.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

/// Listens on `addr` and checks every notification with `keys` (none: accepted unchecked).
pub async fn start(addr: SocketAddr, keys: Vec<String>, out: Output) -> Result<Listening, String> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let keys = Arc::new(keys);
    let handler = move |req| {
        let (keys, out) = (keys.clone(), out.clone());
        async move { receive(req, &keys, &out).await }
    };
    let (shutdown, stop) = watch::channel(false);
    let task = tokio::spawn(crate::serve(listener, READ_TIMEOUT, stop, handler));
    Ok(Listening { addr, shutdown, task })
}

fn answer(status: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

async fn receive(req: Request<Incoming>, keys: &[String], out: &Output) -> Response<Full<Bytes>> {
    if req.method() != Method::POST {
        let mut r = answer(StatusCode::METHOD_NOT_ALLOWED, &json!({"message": "notifications are POSTed"}));
        r.headers_mut().insert(header::ALLOW, header::HeaderValue::from_static("POST"));
        return r;
    }
    let (parts, body) = req.into_parts();
    let Ok(body) = crate::read_body(body, BODY_LIMIT, READ_TIMEOUT).await else {
        return answer(StatusCode::BAD_REQUEST, &json!({"message": "the body could not be read whole"}));
    };
    let verdict = standard(&parts.headers, &body, keys);
    let notification: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let message = &notification["message"];
    let events: Vec<Value> = message["events"]
        .as_array()
        .map(|events| {
            let fields = ["objectType", "eventType", "objectId"];
            events.iter().map(|e| fields.iter().map(|f| (f.to_string(), e[*f].clone())).collect()).collect()
        })
        .unwrap_or_default();
    let checked = |ok: bool| if keys.is_empty() { Value::Null } else { Value::Bool(ok) };
    let line = json!({
        "path": parts.uri.path(),
        "eventId": message["eventId"],
        "instanceId": message["instanceId"],
        "action": message["raw"]["action"],
        "events": events,
        "verified": checked(verdict.is_ok()),
        "elementsSignature": checked(elements(&parts.headers, &body, keys)),
        "refused": verdict.as_ref().err(),
    });
    if let Ok(mut out) = out.lock() {
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
    match verdict {
        Ok(()) => answer(StatusCode::OK, &json!({"received": true})),
        Err(reason) => answer(StatusCode::UNAUTHORIZED, &json!({"message": reason})),
    }
}

/// The Standard Webhooks check, by any of the keys (no keys: nothing to check).
fn standard(headers: &HeaderMap, body: &[u8], keys: &[String]) -> Result<(), String> {
    let by_any_key = keys.iter().any(|key| {
        standardwebhooks::Webhook::from_bytes(key.as_bytes().to_vec()).is_ok_and(|w| w.verify(body, headers).is_ok())
    });
    if keys.is_empty() || by_any_key {
        Ok(())
    } else {
        Err("webhook-signature verifies with none of the keys, or webhook-timestamp is not within 5 minutes".into())
    }
}

/// `Elements-Webhook-Signature` (`sha256=` + base64 HMAC-SHA256 of the body) by any of the keys.
fn elements(headers: &HeaderMap, body: &[u8], keys: &[String]) -> bool {
    let signature = headers
        .get("elements-webhook-signature")
        .and_then(|v| v.to_str().ok()?.strip_prefix("sha256="))
        .and_then(|b64| BASE64.decode(b64).ok());
    signature.is_some_and(|signature| {
        keys.iter().any(|key| {
            Hmac::<Sha256>::new_from_slice(key.as_bytes()).is_ok_and(|mut mac| {
                mac.update(body);
                mac.verify_slice(&signature).is_ok()
            })
        })
    })
}
