//! The router in process, on the real SQLite store: what only a runtime hands it, which no
//! request over the local server can carry. The Lambda derives the public base URL from API
//! Gateway's domain and stage (a `PublicBaseUrl` extension); `webhookUrl` and the lists' `next`
//! links must start with it, or Greenhouse would be given a URL without the stage.

use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response};
use relay_core::api::{Api, ApiConfig, PublicBaseUrl};
use relay_sqlite::SqliteStore;
use serde_json::{Value, json};

mod harness;
use harness::calls::local_router;
use harness::{ORG, USER, admin};

const STAGE: &str = "https://abc123.execute-api.us-east-1.amazonaws.com/prod";

/// The local mode's router on a fresh database, `PUBLIC_BASE_URL` as given.
fn router(dir: &tempfile::TempDir, public_base_url: Option<&str>) -> Api {
    let store = SqliteStore::open(dir.path().join("relay.db")).unwrap();
    let mut api = local_router(store, USER, ORG);
    api.config = Arc::new(ApiConfig { public_base_url: public_base_url.map(str::to_owned), ..(*api.config).clone() });
    api
}

/// Sends `req` with the admin's credentials, the extension a runtime would add, and `headers`.
fn send(
    api: &Api,
    mut req: Request<Bytes>,
    extension: Option<&str>,
    headers: &[(&'static str, &str)],
) -> Response<Bytes> {
    req.headers_mut().insert("authorization", admin().parse().unwrap());
    for (name, value) in headers {
        req.headers_mut().insert(http::HeaderName::from_static(name), value.parse().unwrap());
    }
    if let Some(base) = extension {
        req.extensions_mut().insert(PublicBaseUrl(base.to_owned()));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(api.handle(req, "req-1"))
}

fn create(api: &Api, extension: Option<&str>, headers: &[(&'static str, &str)]) -> Value {
    let body = json!({
        "element": {"key": "greenhouse"},
        "name": "acme-prod",
        "configuration": {
            "event.vendor.type": "webhooks",
            "event.notification.enabled": true,
            "event.notification.callback.url": "http://127.0.0.1:9/hooks",
        },
    });
    let req = Request::post("/instances").body(Bytes::from(body.to_string())).unwrap();
    let r = send(api, req, extension, headers);
    let v: Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(r.status(), 200, "{v}");
    v
}

fn webhook_url(v: &Value) -> String {
    v["webhookUrl"].as_str().unwrap().to_owned()
}

#[test]
fn webhook_urls_start_with_the_runtimes_public_base_url_stage_included() {
    let dir = tempfile::tempdir().unwrap();
    let api = router(&dir, None);
    // What the Lambda hands over (with a trailing slash, which is dropped), over the Host header.
    let host = [("host", "abc123.execute-api.us-east-1.amazonaws.com"), ("x-forwarded-proto", "https")];
    let first = create(&api, Some(&format!("{STAGE}/")), &host);
    assert_eq!(webhook_url(&first), format!("{STAGE}/events/greenhouse/{}", first["id"]));
    // The list's next link too.
    create(&api, Some(STAGE), &host);
    let r = send(&api, Request::get("/instances?pageSize=1").body(Bytes::new()).unwrap(), Some(STAGE), &host);
    assert_eq!(r.status(), 200);
    let link = r.headers()["link"].to_str().unwrap();
    assert_eq!(link, format!("<{STAGE}/instances?pageSize=1&nextPage={}>; rel=\"next\"", first["id"]));
    // A read of the instance names the same URL.
    let path = format!("/instances/{}", first["id"]);
    let r = send(&api, Request::get(path.as_str()).body(Bytes::new()).unwrap(), Some(STAGE), &host);
    let read: Value = serde_json::from_slice(r.body()).unwrap();
    assert_eq!(webhook_url(&read), webhook_url(&first));
}

#[test]
fn without_one_the_host_and_forwarded_protocol_name_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let api = router(&dir, None);
    let v = create(&api, None, &[("host", "relay.example.com:8443"), ("x-forwarded-proto", "https")]);
    assert_eq!(webhook_url(&v), format!("https://relay.example.com:8443/events/greenhouse/{}", v["id"]));
    let v = create(&api, None, &[("host", "127.0.0.1:3000")]);
    assert_eq!(webhook_url(&v), format!("http://127.0.0.1:3000/events/greenhouse/{}", v["id"]));
    let v = create(&api, None, &[]);
    assert_eq!(webhook_url(&v), format!("http://localhost/events/greenhouse/{}", v["id"]));
}

#[test]
fn a_configured_public_base_url_wins_over_the_runtimes() {
    let dir = tempfile::tempdir().unwrap();
    let api = router(&dir, Some("https://relay.example.com/greenhouse/"));
    let v = create(&api, Some(STAGE), &[("host", "abc123.execute-api.us-east-1.amazonaws.com")]);
    assert_eq!(webhook_url(&v), format!("https://relay.example.com/greenhouse/events/greenhouse/{}", v["id"]));
}
