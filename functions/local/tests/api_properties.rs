//! Properties of the whole management and ingest API under arbitrary requests, on the real
//! router (`relay_core::api::Api`), the real SQLite store and the real callback client, as the
//! local mode wires them. Each case starts from a fresh database holding two instances and one
//! queued notification, then sends a sequence of generated requests: well-formed ones, near
//! misses (a wrong key, a bad value in one field, a path one segment off), and junk.
//!
//! After every response:
//! - the status is one the contract names, the body is JSON, and `x-request-id` is the request's;
//! - `Cache-Control: no-store` and `X-Content-Type-Options: nosniff` on every answer;
//! - an error body is `{"message": <a sentence>, "requestId": <the id>}`;
//! - a HEAD gets the answer of the same GET, without its content;
//! - after a new token, the instance's previous token is refused and the new one accepted;
//! - a refused request, or any GET or HEAD, left the store exactly as it was (every row of every
//!   table, and the instances the store serves from memory);
//! - no secret (admin secrets, Greenhouse keys, signature keys, instance tokens) appears in the
//!   response, except the token and generated secret a creation returns, and the token a new
//!   token's answer returns, once;
//! - no secret at all appears in the log lines written meanwhile, at any level.

use std::path::Path;

use bytes::Bytes;
use http::{Method, Response};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use relay_core::api::Api;
use relay_core::ports::Instances;
use relay_sqlite::SqliteStore;
use rusqlite::types::ValueRef;
use serde_json::Value;
use sha2::{Digest, Sha256};

mod harness;
use harness::calls::{Call, Known, Logs, Route, call, cases, kind, local_router, methods_of, send};
use harness::{ORG, USER};

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
    logs: Logs,
    db: std::path::PathBuf,
    store: SqliteStore,
    api: Api,
    known: Known,
    serial: u64,
}

impl World {
    fn new(rt: &tokio::runtime::Runtime, logs: &Logs) -> World {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("relay.db");
        let store = SqliteStore::open(&db).unwrap();
        let api = local_router(store.clone(), USER, ORG);
        let mut world =
            World { _dir: dir, logs: logs.clone(), db, store, api, known: Known::new(USER, ORG), serial: 0 };
        let World { api, known, serial, .. } = &mut world;
        known.setup(|req| send(rt, api, serial, req));
        world.logs.take_clean(&world.known.secrets).expect("the setup logged a secret");
        world
    }

    /// Sends one generated call and checks every property. Returns the status and whether it was
    /// a duplicate delivery, or `None` when the call is no HTTP request (an invalid URI).
    fn check(&mut self, rt: &tokio::runtime::Runtime, call: &Call) -> Result<Option<(u16, bool)>, TestCaseError> {
        let Some(req) = self.known.request(call) else { return Ok(None) };
        let uri = req.uri().to_string();
        self.logs.take();
        let before = snapshot(&self.db, &self.store, rt);
        let mut r = send(rt, &self.api, &mut self.serial, req);
        if call.method == Method::HEAD {
            r = self.same_as_get(rt, call, r)?;
        }
        let request_id = format!("req-{}", self.serial);
        let status = r.status().as_u16();
        let context = format!("{} {uri} -> {status}: {}", call.method, String::from_utf8_lossy(r.body()));

        prop_assert!([200, 400, 401, 404, 405, 409].contains(&status), "unexpected status: {context}");
        prop_assert_eq!(r.headers().get("x-request-id").and_then(|v| v.to_str().ok()), Some(request_id.as_str()));
        prop_assert_eq!(
            r.headers().get("content-type").and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{}",
            context
        );
        // No answer is cached or sniffed: some hold a token and a secret, all hold customer data.
        let header = |name: &str| r.headers().get(name).and_then(|v| v.to_str().ok());
        prop_assert_eq!(header("cache-control"), Some("no-store"), "{}", context);
        prop_assert_eq!(header("x-content-type-options"), Some("nosniff"), "{}", context);
        // 405 exactly for the methods a path does not serve, with those it serves in `Allow`.
        let allow = r.headers().get("allow").and_then(|v| v.to_str().ok());
        let known_path = !matches!(call.route, Route::Other(_));
        let served: Vec<String> = methods_of(&call.route).iter().map(ToString::to_string).collect();
        if status == 405 {
            let allow: Vec<&str> = allow.unwrap_or_default().split(", ").collect();
            prop_assert!(!allow.contains(&call.method.as_str()), "Allow names the refused method: {}", context);
            prop_assert!(!known_path || allow == served, "Allow {:?} is not {:?}: {}", allow, served, context);
        } else {
            prop_assert_eq!(allow, None, "{}", context);
            prop_assert!(!known_path || served.contains(&call.method.to_string()), "not 405: {}", context);
        }
        let v: Value = serde_json::from_slice(r.body()).map_err(|e| TestCaseError::fail(format!("{e}: {context}")))?;
        if status >= 400 {
            let message = v["message"].as_str().unwrap_or_default();
            prop_assert!(message.len() > 10, "no message: {}", context);
            prop_assert_eq!(v["requestId"].as_str(), Some(request_id.as_str()), "{}", context);
            let o = v.as_object().map(|o| o.len()).unwrap_or(0);
            prop_assert_eq!(o, 2, "{}", context);
        }

        // Secrets: none in the response, but the token and generated secret of a creation, or
        // the token of a new token's answer.
        let returned = Known::returned_secrets(call, status, &v);
        let mut text = String::from_utf8_lossy(r.body()).into_owned();
        for (k, v) in r.headers() {
            text.push_str(&format!("\n{k}: {}", String::from_utf8_lossy(v.as_bytes())));
        }
        for s in &returned {
            prop_assert!(!self.known.secrets.contains(s), "an answer returned a known secret: {}", context);
            text = text.replace(s.as_str(), "<returned once>");
        }
        for secret in &self.known.secrets {
            prop_assert!(!text.contains(secret.as_str()), "secret {secret:?} in the response: {context}");
        }
        // Nor in a log line, the creation's own ones included.
        self.logs
            .take_clean(self.known.secrets.iter().chain(&returned))
            .map_err(|e| TestCaseError::fail(format!("{context}: {e}")))?;

        let after = snapshot(&self.db, &self.store, rt);
        if status >= 400 || matches!(call.method, Method::GET | Method::HEAD) {
            prop_assert!(before == after, "{context}: the store changed:\n{}", diff(&before, &after));
        }
        // A duplicate delivery queues nothing new.
        let duplicate = self.known.is_duplicate(call, status, &v);
        if duplicate {
            prop_assert!(before == after, "{context}: a duplicate changed the store:\n{}", diff(&before, &after));
        }
        let old_token = self.known.instances.iter().find(|i| Some(i.0) == v["id"].as_i64()).map(|i| i.1.clone());
        self.known.observe(call, status, &v);
        // A new token works at once, and the one it replaced no longer does.
        if Known::is_new_token(call, status) {
            let id = v["id"].as_i64().unwrap_or_default();
            for (token, expected) in [(old_token, 401), (v["token"].as_str().map(str::to_owned), 200)] {
                let token = token.ok_or_else(|| TestCaseError::fail(format!("an unknown token: {context}")))?;
                let req = http::Request::get(format!("/instances/{id}"))
                    .header("authorization", format!("Element {token}"))
                    .body(Bytes::new())
                    .unwrap();
                let got = send(rt, &self.api, &mut self.serial, req).status().as_u16();
                prop_assert_eq!(got, expected, "after {}", context);
            }
        }
        Ok(Some((status, duplicate)))
    }

    /// A HEAD is answered as the same GET, without content: the same status and headers (but
    /// the request id), and a `content-length` that is the GET's. Sends that GET and answers
    /// its response, for the properties every answer has.
    fn same_as_get(
        &mut self,
        rt: &tokio::runtime::Runtime,
        call: &Call,
        head: Response<Bytes>,
    ) -> Result<Response<Bytes>, TestCaseError> {
        let head_id = format!("req-{}", self.serial);
        let get = Call { method: Method::GET, ..call.clone() };
        let Some(req) = self.known.request(&get) else { return Err(TestCaseError::fail("no GET for a HEAD")) };
        let r = send(rt, &self.api, &mut self.serial, req);
        let context = format!("HEAD {:?} -> {} (GET -> {})", call.route, head.status(), r.status());
        prop_assert!(head.body().is_empty(), "content in the answer to a HEAD: {}", context);
        prop_assert_eq!(head.status(), r.status(), "{}", context);
        let header =
            |r: &Response<Bytes>, name: &str| r.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        prop_assert_eq!(header(&head, "x-request-id"), Some(head_id), "{}", context);
        let others = |r: &Response<Bytes>| {
            let mut h: Vec<(String, Vec<u8>)> = r
                .headers()
                .iter()
                .filter(|(k, _)| !matches!(k.as_str(), "x-request-id" | "content-length"))
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect();
            h.sort();
            h
        };
        prop_assert_eq!(others(&head), others(&r), "{}", context);
        // An error's content holds the request id and the method, so only a 200's length is the
        // GET's to the byte.
        let length = header(&head, "content-length").and_then(|l| l.parse::<usize>().ok());
        prop_assert!(length.is_some_and(|l| l > 0), "no content-length: {}", context);
        if r.status() == 200 {
            prop_assert_eq!(length, Some(r.body().len()), "{}", context);
        }
        Ok(r)
    }
}

fn diff(before: &[String], after: &[String]) -> String {
    let gone = before.iter().filter(|r| !after.contains(r)).map(|r| format!("- {r}"));
    let new = after.iter().filter(|r| !before.contains(r)).map(|r| format!("+ {r}"));
    gone.chain(new).collect::<Vec<_>>().join("\n")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(128), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn any_request_gets_a_contract_answer_and_a_refusal_changes_nothing(calls in proptest::collection::vec(call(), 1..16)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let logs = Logs::default();
        let _capture = logs.install("trace");
        let mut world = World::new(&rt, &logs);
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
    let logs = Logs::default();
    let _capture = logs.install("trace");
    let mut world = World::new(&rt, &logs);
    for n in 0..1500 {
        if n % 40 == 0 {
            world = World::new(&rt, &logs);
        }
        let call = call().new_tree(&mut runner).unwrap().current();
        let Some((status, duplicate)) = world.check(&rt, &call).unwrap() else { continue };
        duplicates += usize::from(duplicate);
        let kind = kind(&call);
        *seen.entry((kind, status)).or_default() += 1;
    }
    for (kind, statuses) in [
        ("create", &[200, 400, 401][..]),
        ("list", &[200, 400, 401]),
        ("patch", &[200, 400, 401, 404]),
        ("delete", &[200, 401, 404]),
        ("token", &[200, 401, 404, 405]),
        ("instance", &[200, 401, 404, 405]),
        ("events", &[200, 400, 401, 404, 405]),
        ("redeliver", &[200, 401, 404]),
        ("test", &[200, 401, 404, 405]),
        ("ingest", &[200, 400, 401, 404, 405]),
        ("other", &[200, 404]),
    ] {
        for &status in statuses {
            assert!(seen.contains_key(&(kind, status)), "no {kind} request answered {status}: {seen:?}");
        }
    }
    assert!(duplicates > 0, "no duplicate delivery");
    // The log capture sees the router's lines (so "no secret in the logs" is not vacuous).
    logs.take();
    let refused = http::Request::get("/instances").body(bytes::Bytes::new()).unwrap();
    assert_eq!(rt.block_on(world.api.handle(refused, "req-x")).status(), 401);
    let line = logs.take();
    assert!(line.contains("request refused") && line.contains("req-x"), "{line}");
}
