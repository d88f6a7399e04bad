//! The binary refuses a setting it cannot use, naming it, instead of starting on a default or
//! on a value that would misbehave later (a webhookUrl Greenhouse cannot call, retries with no
//! delay, a retention that overflows).

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GOOD: [(&str, &str); 4] =
    [("LISTEN_ADDR", "127.0.0.1:0"), ("ADMIN_USER_SECRET", "u"), ("ADMIN_ORG_SECRET", "o"), ("RUST_LOG", "off")];

#[test]
fn a_setting_that_cannot_be_used_stops_the_start_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let no_certificate = dir.path().join("no-certificate.pem");
    std::fs::write(&no_certificate, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    let missing = dir.path().join("missing.pem");
    for (name, bad) in [
        ("PUBLIC_BASE_URL", "relay.example.com"),
        ("PUBLIC_BASE_URL", "https://user:hunter2@relay.example.com"),
        ("PUBLIC_BASE_URL", "https://relay.example.com/?x=1"),
        ("DELIVERY_TIME_SCALE", "0"),
        ("DELIVERY_TIME_SCALE", "-1"),
        ("DELIVERY_TIME_SCALE", "NaN"),
        ("DELIVERY_TIMEOUT_MS", "0"),
        ("EVENT_RETENTION_DAYS", "0"),
        ("EVENT_RETENTION_DAYS", "300000000000000"),
        ("HTTP_READ_TIMEOUT_MS", "0"),
        ("CALLBACK_ALLOW_NETS", "10.0.0.0/33"),
        ("CALLBACK_CA_BUNDLE", no_certificate.to_str().unwrap()),
        ("CALLBACK_CA_BUNDLE", missing.to_str().unwrap()),
        ("METRICS_ADDR", "localhost"),
        ("METRICS_ADDR", "9464"),
    ] {
        let mut child = Command::new(env!("CARGO_BIN_EXE_greenhouse-relay"))
            .arg("serve")
            .envs(GOOD)
            .env("DATABASE_PATH", dir.path().join("relay.db"))
            .env(name, bad)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A refusal comes before the server listens. One that accepted the value serves until
        // stopped: fail instead of waiting on it forever.
        let status = wait_at_most(&mut child, Duration::from_secs(30));
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        let status = status.unwrap_or_else(|| panic!("{name}={bad} started: still serving after 30 s"));
        assert!(!status.success(), "{name}={bad} started");
        assert!(stderr.contains(name), "{name}={bad}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{name}={bad}: {stderr}");
    }
}

/// The child's exit status, or None (and the child killed) if it runs past `limit`.
fn wait_at_most(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    None
}
