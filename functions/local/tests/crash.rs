//! `kill -9` during a load of several thousand webhooks, restart: every webhook that got a 200
//! is delivered (duplicates only with the same eventId).

mod harness;

use std::collections::HashSet;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use harness::*;
use serde_json::{Value, json};
use tokio::sync::Mutex;

/// `greenhouse-relay serve` on `<db>/relay.db`, quiet.
fn command(db: &std::path::Path, port: u16) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_greenhouse-relay"));
    c.arg("serve")
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("DATABASE_PATH", db.join("relay.db"))
        .env("ADMIN_USER_SECRET", USER)
        .env("ADMIN_ORG_SECRET", ORG)
        .env("DELIVERY_TIME_SCALE", "0.001")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

fn spawn(db: &std::path::Path, port: u16) -> Child {
    command(db, port).spawn().expect("binary starts")
}

async fn wait_ready(http: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while http.get(format!("{base}/health")).send().await.is_err() {
        assert!(Instant::now() < deadline, "server did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_accepted_webhook() {
    const TOTAL: usize = 4000;
    const KILL_AFTER: usize = 1500;
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let rx = Receiver::start().await;
    let http = reqwest::Client::new();

    let mut child = spawn(dir.path(), port);
    wait_ready(&http, &base).await;
    let body = json!({"element": {"key": "greenhouse"}, "name": "crash", "configuration": {
        "event.notification.callback.url": rx.url(), "event.notification.signature.key": SIGNING_KEY,
        "event.vendor.signature.key": VENDOR_KEY}});
    let resp =
        http.post(format!("{base}/instances")).header("authorization", admin()).json_body(&body).send().await.unwrap();
    let inst: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let id = inst["id"].as_i64().unwrap();

    let accepted = Arc::new(Mutex::new(HashSet::<String>::new()));
    let ok = Arc::new(AtomicUsize::new(0));
    let next = Arc::new(AtomicUsize::new(0));
    let mut load = vec![];
    for _ in 0..32 {
        let (http, accepted, ok, next) = (http.clone(), accepted.clone(), ok.clone(), next.clone());
        let url = format!("{base}/events/greenhouse/{id}");
        load.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= TOTAL {
                    break;
                }
                let body = format!(r#"{{"action":"job_created","payload":{{"job":{{"id":{i}}}}}}}"#);
                let sent = http
                    .post(&url)
                    .header("signature", greenhouse_signature(VENDOR_KEY, body.as_bytes()))
                    .header("greenhouse-event-id", format!("crash-{i}"))
                    .body(body)
                    .send()
                    .await;
                let Ok(resp) = sent else { continue };
                if resp.status() != 200 {
                    continue;
                }
                let Ok(bytes) = resp.bytes().await else { continue };
                let v: Value = serde_json::from_slice(&bytes).unwrap();
                accepted.lock().await.insert(v["eventId"].as_str().unwrap().to_owned());
                ok.fetch_add(1, Ordering::SeqCst);
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    while ok.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(Instant::now() < deadline, "load too slow: {} accepted", ok.load(Ordering::SeqCst));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap(); // SIGKILL: no shutdown path runs
    child.wait().unwrap();
    for t in load {
        t.await.unwrap();
    }
    let accepted: HashSet<String> = accepted.lock().await.clone();
    assert!(accepted.len() >= KILL_AFTER);

    let mut child = spawn(dir.path(), port);
    wait_ready(&http, &base).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let missing = loop {
        let got: HashSet<String> = rx.received().iter().map(|r| r.header("webhook-id")).collect();
        let missing: Vec<&String> = accepted.iter().filter(|id| !got.contains(*id)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing.len();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let received = rx.received();
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(missing, 0, "{missing} of {} accepted webhooks never arrived", accepted.len());
    // Whatever arrived twice carried the same eventId and body: receivers can drop it.
    let mut by_id = std::collections::HashMap::<String, Vec<u8>>::new();
    for r in &received {
        let prev = by_id.insert(r.header("webhook-id"), r.body.clone());
        if let Some(prev) = prev {
            assert_eq!(prev, r.body);
        }
    }
    println!(
        "accepted {} before kill -9, received {} notifications ({} distinct)",
        accepted.len(),
        received.len(),
        by_id.len()
    );
}

trait JsonBodyExt {
    fn json_body(self, v: &Value) -> Self;
}

impl JsonBodyExt for reqwest::RequestBuilder {
    fn json_body(self, v: &Value) -> Self {
        self.header("content-type", "application/json").body(serde_json::to_vec(v).unwrap())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_delivery_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let rx = Receiver::start().await;
    rx.script([Reply { delay: Duration::from_millis(1500), ..Reply::status(200) }]);
    let http = reqwest::Client::new();
    let mut child = spawn(dir.path(), port);
    wait_ready(&http, &base).await;
    let body = json!({"element": {"key": "greenhouse"}, "name": "term", "configuration": {
        "event.notification.callback.url": rx.url(), "event.vendor.signature.key": VENDOR_KEY}});
    let resp =
        http.post(format!("{base}/instances")).header("authorization", admin()).json_body(&body).send().await.unwrap();
    let inst: Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    let id = inst["id"].as_i64().unwrap();
    let hook = br#"{"action":"job_created","payload":{"job":{"id":1}}}"#;
    let resp = http
        .post(format!("{base}/events/greenhouse/{id}"))
        .header("signature", greenhouse_signature(VENDOR_KEY, hook))
        .body(hook.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    rx.wait_for(1, Duration::from_secs(20)).await; // the receiver is now holding the request
    let term = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(term.success());
    let started = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(started.elapsed() < Duration::from_secs(25), "no exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() >= Duration::from_millis(800), "exited before the delivery finished");
    // After a restart the notification is recorded as delivered, and not sent again.
    let mut child = spawn(dir.path(), port);
    wait_ready(&http, &base).await;
    let events: Value = serde_json::from_slice(
        &http
            .get(format!("{base}/instances/{id}/events"))
            .header("authorization", admin())
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(events[0]["status"], "delivered", "{events}");
    assert_eq!(events[0]["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(rx.received().len(), 1);
}

/// A second process on the same database would claim the same notifications (claims live in
/// memory) and serve from a cache of instances it does not keep up to date: it is refused, with
/// the file named, until the first one is gone, even by `kill -9`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_database_is_refused_until_the_first_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let free_port = || std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let (port, other_port) = (free_port(), free_port());
    let http = reqwest::Client::new();
    let mut first = spawn(dir.path(), port);
    wait_ready(&http, &format!("http://127.0.0.1:{port}")).await;

    let db = dir.path().join("relay.db");
    let mut second = command(dir.path(), other_port).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = second.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            second.kill().unwrap();
            second.wait().unwrap();
            first.kill().unwrap();
            panic!("a second process is running on the same database");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut second.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success(), "{stderr}");
    assert!(stderr.contains("in use by another process") && stderr.contains(db.to_str().unwrap()), "{stderr}");
    assert!(http.get(format!("http://127.0.0.1:{other_port}/health")).send().await.is_err());

    // The first one is killed without a chance to clean up: the lock goes with it.
    first.kill().unwrap();
    first.wait().unwrap();
    let mut third = spawn(dir.path(), other_port);
    wait_ready(&http, &format!("http://127.0.0.1:{other_port}")).await;
    third.kill().unwrap();
    third.wait().unwrap();
}
