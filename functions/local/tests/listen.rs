//! `greenhouse-relay listen`, the receiver for trying the relay: on what the local mode really
//! sends over HTTP, it accepts and prints what its key signed, refuses (401) what it did not, so
//! that the relay records the refusal and retries, and accepts anything without a key. The binary
//! itself: its key from the environment, a stale timestamp refused, only POST served.

mod harness;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use greenhouse_relay::listen;
use harness::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// What a receiver printed: the lines written to a `Logs` buffer, kept as they are read.
#[derive(Default)]
struct Lines {
    written: harness::calls::Logs,
    read: String,
}

impl Lines {
    fn output(&self) -> listen::Output {
        Arc::new(Mutex::new(self.written.clone()))
    }

    /// Waits for the first line printed for `event_id`.
    async fn wait_for(&mut self, event_id: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            self.read.push_str(&self.written.take());
            let lines: Vec<Value> = self.read.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
            if let Some(line) = lines.iter().find(|l| l["eventId"] == event_id) {
                return line.clone();
            }
            assert!(Instant::now() < deadline, "no line for {event_id}: {}", self.read);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn the_receiver_accepts_what_its_key_signed_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), 1.0)).await;
    let any = "127.0.0.1:0".parse().unwrap();
    let (mut right, mut wrong, mut open) = (Lines::default(), Lines::default(), Lines::default());
    let receivers = [
        listen::start(any, vec!["an-older-key".into(), SIGNING_KEY.into()], right.output()).await.unwrap(),
        listen::start(any, vec!["not-the-key".into()], wrong.output()).await.unwrap(),
        listen::start(any, vec![], open.output()).await.unwrap(),
    ];
    let body = fixture("hire_candidate.json");
    let mut sent = vec![];
    for receiver in &receivers {
        let instance = server.create_instance(&format!("http://{}/hooks", receiver.addr), json!({})).await;
        let id = instance["id"].as_i64().unwrap();
        let (status, r) = server.webhook(id, &body, VENDOR_KEY, Some("gh-listen")).await;
        assert_eq!(status, 200, "{r}");
        sent.push((id, r["eventId"].as_str().unwrap().to_owned()));
    }

    // Signed with one of its keys: accepted, and printed as the relay sent it.
    let (id, event_id) = &sent[0];
    let line = right.wait_for(event_id).await;
    let delivered = server.wait_status(*id, event_id, "delivered", WAIT).await;
    let notification = &delivered["notification"]["message"];
    assert_eq!(line["verified"], true, "{line}");
    assert_eq!(line["elementsSignature"], true, "{line}");
    assert_eq!(line["refused"], Value::Null, "{line}");
    assert_eq!((&line["instanceId"], line["action"].as_str()), (&json!(id), Some("hire_candidate")));
    assert_eq!(line["path"], "/hooks");
    let events = notification["events"].as_array().unwrap();
    assert_eq!(line["events"].as_array().unwrap().len(), events.len());
    for (printed, sent) in line["events"].as_array().unwrap().iter().zip(events) {
        for field in ["objectType", "eventType", "objectId"] {
            assert_eq!(printed[field], sent[field], "{field}");
        }
    }

    // Not signed with its key: refused with 401, which the relay records, then retries.
    let (id, event_id) = &sent[1];
    let line = wrong.wait_for(event_id).await;
    assert_eq!((&line["verified"], &line["elementsSignature"]), (&json!(false), &json!(false)), "{line}");
    assert!(line["refused"].as_str().unwrap().contains("webhook-signature"), "{line}");
    let attempt = server.first_attempt(*id, event_id, WAIT).await;
    assert_eq!(attempt["statusCode"], 401, "{attempt}");
    assert!(attempt["responseBody"].as_str().unwrap().contains("none of the keys"), "{attempt}");
    assert_eq!(server.wait_status(*id, event_id, "pending", WAIT).await["attemptCount"], 1);

    // No key: accepted unchecked.
    let (id, event_id) = &sent[2];
    let line = open.wait_for(event_id).await;
    assert_eq!((&line["verified"], &line["elementsSignature"]), (&Value::Null, &Value::Null), "{line}");
    server.wait_status(*id, event_id, "delivered", WAIT).await;
    for receiver in receivers {
        receiver.stop().await;
    }
    server.stop().await;
}

/// The command: `--addr`, its key from `SIGNATURE_KEY`, the address on stderr, the lines on stdout.
#[tokio::test]
async fn the_command_checks_with_the_key_from_its_environment() {
    /// Killed however the test ends, a failed assertion included.
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let child = Command::new(env!("CARGO_BIN_EXE_greenhouse-relay"))
        .args(["listen", "--addr", "127.0.0.1:0"])
        .env("SIGNATURE_KEY", "env-key")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = Killed(child);
    let child = &mut child.0;
    let mut banner = String::new();
    BufReader::new(child.stderr.take().unwrap()).read_line(&mut banner).unwrap();
    assert!(banner.contains("checking signatures with 1 key(s)") && !banner.contains("env-key"), "{banner}");
    let url = banner.split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches(',').to_owned();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());

    let http = reqwest::Client::new();
    let body = br#"{"id":"n","message":{"eventId":"ev-1","instanceId":7,"raw":{"action":"job_created"},"events":[]}}"#;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    for (key, timestamp, status) in [("env-key", now, 200), ("env-key", now - 3600, 401), ("other-key", now, 401)] {
        let mut req = http.post(format!("{url}/hooks")).body(body.to_vec());
        for (name, value) in relay_core::notification::headers(body, "ev-1", &[key], timestamp) {
            req = req.header(name, value);
        }
        let answer = req.send().await.unwrap();
        assert_eq!(answer.status().as_u16(), status, "{key} at {timestamp}");
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let line: Value = serde_json::from_str(&line).unwrap();
        assert_eq!((&line["eventId"], &line["verified"]), (&json!("ev-1"), &json!(status == 200)), "{line}");
    }
    let answer = http.get(format!("{url}/hooks")).send().await.unwrap();
    assert_eq!((answer.status().as_u16(), answer.headers()["allow"].to_str().unwrap()), (405, "POST"));
}
