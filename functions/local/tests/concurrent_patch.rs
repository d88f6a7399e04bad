//! PATCHes of one instance at once, on the router and the SQLite store: each merge lands,
//! whatever the interleaving (none is lost to a write based on what another already replaced).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use relay_core::api::Api;
use relay_core::ports::{Callback, CallbackResponse};
use relay_core::retry::AttemptResult;
use relay_sqlite::SqliteStore;
use serde_json::{Value, json};
use tokio::sync::Notify;

mod harness;
use harness::calls::local_router;
use harness::{ORG, USER};

/// DNS for the configuration-time check of a callback URL, held at its first lookup until the
/// test lets it go: a PATCH that changes the callback URL waits there, between its read and its
/// write, while another PATCH runs.
#[derive(Default)]
struct HeldDns {
    held: AtomicBool,
    reached: Notify,
    release: Notify,
}

#[async_trait]
impl Callback for HeldDns {
    async fn resolve(&self, _host: &str, _port: u16) -> Vec<IpAddr> {
        if !self.held.swap(true, Ordering::SeqCst) {
            self.reached.notify_one();
            self.release.notified().await;
        }
        vec!["93.184.215.14".parse().unwrap()]
    }

    async fn post(&self, _url: &str, _headers: &[(&'static str, String)], _body: &[u8]) -> CallbackResponse {
        CallbackResponse {
            result: AttemptResult::Failed,
            status_code: None,
            error: Some("no deliveries in this test".into()),
            body_excerpt: String::new(),
            duration: std::time::Duration::ZERO,
        }
    }
}

async fn call(api: &Api, method: &str, path: &str, body: Value) -> (u16, Value) {
    call_text(api, method, path, &body.to_string()).await
}

/// A call whose body is this text, as a client wrote it (numbers in any of their forms).
async fn call_text(api: &Api, method: &str, path: &str, body: &str) -> (u16, Value) {
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("User {USER}, Organization {ORG}"))
        .header("content-type", "application/json")
        .body(bytes::Bytes::from(body.to_owned()))
        .unwrap();
    let resp = api.handle(req, "test").await;
    (resp.status().as_u16(), serde_json::from_slice(resp.body()).unwrap())
}

async fn instance(api: &Api) -> i64 {
    let body = json!({"element": {"key": "greenhouse"}, "name": "n", "configuration": {
        "event.notification.callback.url": "http://127.0.0.1:9/hooks"}});
    let (status, v) = call(api, "POST", "/instances", body).await;
    assert_eq!(status, 200, "{v}");
    v["id"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_patch_that_read_before_another_wrote_merges_again_and_loses_neither() {
    let dir = tempfile::tempdir().unwrap();
    let dns = Arc::new(HeldDns::default());
    let api = Arc::new(Api {
        callback: dns.clone(),
        ..local_router(SqliteStore::open(dir.path().join("relay.db")).unwrap(), USER, ORG)
    });
    let id = instance(&api).await;
    let path = format!("/instances/{id}");

    // A reads the instance, then waits in the callback URL's DNS check.
    let a = tokio::spawn({
        let (api, path) = (api.clone(), path.clone());
        async move {
            let body =
                json!({"configuration": {"event.notification.callback.url": "https://hooks.example.com/a", "a": "1"}});
            call(&api, "PATCH", &path, body).await
        }
    });
    // (A PATCH that skipped the check would never get there: fail rather than wait forever.)
    tokio::time::timeout(Duration::from_secs(30), dns.reached.notified())
        .await
        .expect("A's PATCH of the callback URL never checked its DNS");
    // B reads and writes meanwhile.
    let (status, b) = call(&api, "PATCH", &path, json!({"name": "renamed", "configuration": {"b": "2"}})).await;
    assert_eq!(status, 200, "{b}");
    dns.release.notify_one();
    let (status, a) = a.await.unwrap();
    assert_eq!(status, 200, "{a}");

    let (_, now) = call(&api, "GET", &path, Value::Null).await;
    assert_eq!(now["name"], "renamed", "{now}");
    assert_eq!(now["configuration"]["a"], "1", "{now}");
    assert_eq!(now["configuration"]["b"], "2", "{now}");
    assert_eq!(now["configuration"]["event.notification.callback.url"], "https://hooks.example.com/a");
    assert_eq!(a["configuration"], now["configuration"], "A answers what is stored");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_sent_at_once_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let api = Arc::new(local_router(SqliteStore::open(dir.path().join("relay.db")).unwrap(), USER, ORG));
    let id = instance(&api).await;
    // More than the tries an earlier version allowed (8): the last to land may lose 15 races.
    let patches = (0..16).map(|i| {
        let (api, path) = (api.clone(), format!("/instances/{id}"));
        tokio::spawn(async move { call(&api, "PATCH", &path, json!({"configuration": {format!("k{i}"): i}})).await })
    });
    for patch in patches.collect::<Vec<_>>() {
        let (status, v) = patch.await.unwrap();
        assert_eq!(status, 200, "{v}");
    }
    let (_, now) = call(&api, "GET", &format!("/instances/{id}"), Value::Null).await;
    for i in 0..16 {
        assert_eq!(now["configuration"][format!("k{i}")], i, "{now}");
    }
}

/// The compare-and-set compares what the store holds with what the merge read: a configuration
/// whose values change on their way through the store (numbers, escapes, booleans given as
/// strings, a list of vendor keys) must still compare equal, or every PATCH would merge again
/// until it gave up.
#[tokio::test]
async fn a_patch_lands_at_once_whatever_the_configuration_holds() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("relay.db");
    let api = local_router(SqliteStore::open(&db).unwrap(), USER, ORG);
    let body = json!({"element": {"key": "greenhouse"}, "name": "n \"q\" \u{e9}", "tags": ["a", "\u{1f980}"],
        "configuration": {
            "event.notification.callback.url": "http://127.0.0.1:9/hooks",
            "event.notification.enabled": "true",
            "event.vendor.signature.key": ["k1", "k2"],
            "f": 0.1, "g": 1e300, "h": -0.0, "i": 18446744073709551615u64, "j": -9223372036854775808i64,
            "k": 123456789012345678901234567890.0, "l": {"m": [1, "x\n\u{2028}", null, false]}, "\u{e9}": "\u{0}"}});
    // Decimals as a client may write them, not in the shortest form the store writes back: each
    // must read back as the same f64 (schemathesis found 5.960464477539063e-08 did not).
    let decimals = r#""p": 5.960464477539063e-08, "q": 2.225073858507e-311, "r": 4.9e-324, "s": 1.7976931348623157e308,
        "t": 0.1000000000000000055511151231257827021181583404541015625, "u": 9007199254740993.0, "v": 2.5e-08"#;
    let body = body.to_string().replacen(r#""f":"#, &format!("{decimals}, \"f\":"), 1);
    let (status, v) = call_text(&api, "POST", "/instances", &body).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["configuration"]["p"], json!(5.960464477539063e-8), "{v}");
    let path = format!("/instances/{}", v["id"]);
    let (status, v) = call(&api, "PATCH", &path, json!({"configuration": {"n": 1}})).await;
    assert_eq!(status, 200, "{v}");
    // And after a restart, from what the file holds.
    drop(api);
    let api = local_router(SqliteStore::open(&db).unwrap(), USER, ORG);
    let (status, v) = call(&api, "PATCH", &path, json!({"configuration": {"o": 2}})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!((v["configuration"]["n"].clone(), v["configuration"]["o"].clone()), (json!(1), json!(2)));
}
