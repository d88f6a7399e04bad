//! End to end through the local mode: real HTTP on loopback, a real SQLite file, a real
//! receiver. One server per test, each with the delivery time scale it needs.

mod harness;

use std::time::Duration;

use base64::Engine;
use harness::*;
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const WAIT: Duration = Duration::from_secs(20);

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn id_of(instance: &Value) -> i64 {
    instance["id"].as_i64().unwrap()
}

#[tokio::test]
async fn a_fixture_is_delivered_once_signed_with_both_schemes() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 1.0)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let body = fixture("hire_candidate.json");
    let (status, resp) = server.webhook(id_of(&inst), &body, VENDOR_KEY, Some("gh-1")).await;
    assert_eq!(status, 200, "{resp}");
    let got = rx.wait_for(1, WAIT).await;
    let n = &got[0];
    assert_signed(n, SIGNING_KEY);
    let v = n.json();
    assert_eq!(v["message"]["eventId"], resp["eventId"]);
    assert_eq!(v["message"]["raw"], serde_json::from_slice::<Value>(&body).unwrap());
    assert_eq!(v["message"]["instanceId"], inst["id"]);
    assert_eq!(v["message"]["instanceName"], "acme-prod");
    assert_eq!(v["message"]["instanceTags"], json!(["acme"]));
    assert_eq!(v["topic"], format!("instance-{}-greenhouse-events", inst["id"]));
    assert_eq!(v["message"]["events"][0]["objectType"], "applications");
    assert_eq!(v["message"]["events"][0]["eventType"], "UPDATED");
    assert_eq!(n.header("content-type"), "application/json");
    assert!(n.header("user-agent").starts_with("greenhouse-relay/"));
    // The exact bytes Greenhouse sent are inside the notification (escapes kept).
    let text = String::from_utf8(n.body.clone()).unwrap();
    assert!(text.contains(std::str::from_utf8(&body).unwrap().trim()));
    let e = server.wait_status(id_of(&inst), resp["eventId"].as_str().unwrap(), "delivered", WAIT).await;
    assert_eq!(e["attempts"][0]["statusCode"], 200);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(rx.received().len(), 1);
    // The events API shows the notification as sent, byte for byte: a big integer and the
    // escapes of `raw` included (not rounded or rewritten on the way through a JSON value).
    let big = br#"{"action":"job_created","payload":{"job":{"id":123456789012345678901234567890,"name":"R\u0026D \/ \ud83d\ude00"}}}"#;
    let (status, resp) = server.webhook(id_of(&inst), big, VENDOR_KEY, Some("gh-big")).await;
    assert_eq!(status, 200, "{resp}");
    let sent = rx.wait_for(2, WAIT).await[1].body.clone();
    let event_id = resp["eventId"].as_str().unwrap();
    server.wait_status(id_of(&inst), event_id, "delivered", WAIT).await;
    for path in [
        format!("/instances/{}/events/{event_id}", id_of(&inst)),
        format!("/instances/{}/events?limit=1", id_of(&inst)),
    ] {
        let shown =
            server.http.get(format!("{}{path}", server.base)).header("authorization", admin()).send().await.unwrap();
        let shown = shown.bytes().await.unwrap();
        assert!(shown.windows(sent.len()).any(|w| w == sent.as_slice()), "{path}: {}", String::from_utf8_lossy(&shown));
    }
    server.stop().await;
}

/// A receiver's Standard Webhooks library (the reference `standardwebhooks` crate), given the
/// signature key as the spec has it: `whsec_` + base64 of its bytes.
fn standard_verifier(key: &str) -> standardwebhooks::Webhook {
    standardwebhooks::Webhook::new(&format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(key))).unwrap()
}

#[tokio::test]
async fn a_signature_key_rotation_signs_with_both_keys_until_the_old_one_is_dropped() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 1.0)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let id = id_of(&inst);
    const NEW_KEY: &str = "rotated-signing-key";
    let (old, new) = (standard_verifier(SIGNING_KEY), standard_verifier(NEW_KEY));
    let (admin, path) = (admin(), format!("/instances/{id}"));
    let rotate = |keys: Value| {
        let body = json!({"configuration": {"event.notification.signature.key": keys}});
        server.call("PATCH", &path, Some(admin.as_str()), Some(body))
    };
    // Before: the old key's receivers verify, the new key's do not.
    server.webhook(id, &fixture("hire_candidate.json"), VENDOR_KEY, Some("gh-rot-0")).await;
    let n = &rx.wait_for(1, WAIT).await[0];
    assert!(old.verify(&n.body, &n.headers).is_ok());
    assert!(new.verify(&n.body, &n.headers).is_err());
    // During: both keys, the new one first. Receivers on either key verify.
    let (status, v) = rotate(json!([NEW_KEY, SIGNING_KEY])).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["configuration"]["event.notification.signature.key"], json!(["********", "********"]), "one per key");
    server.webhook(id, &fixture("hire_candidate.json"), VENDOR_KEY, Some("gh-rot-1")).await;
    let n = &rx.wait_for(2, WAIT).await[1];
    old.verify(&n.body, &n.headers).expect("a receiver still on the old key");
    new.verify(&n.body, &n.headers).expect("a receiver already on the new key");
    assert_eq!(n.header("webhook-signature").split(' ').count(), 2);
    let mut mac = Hmac::<Sha256>::new_from_slice(NEW_KEY.as_bytes()).unwrap();
    mac.update(&n.body);
    let elements = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    assert_eq!(n.header("elements-webhook-signature"), format!("sha256={elements}"), "the first key signs it");
    // After: the new key alone.
    let (status, v) = rotate(json!(NEW_KEY)).await;
    assert_eq!(status, 200, "{v}");
    server.webhook(id, &fixture("hire_candidate.json"), VENDOR_KEY, Some("gh-rot-2")).await;
    let n = &rx.wait_for(3, WAIT).await[2];
    assert_signed(n, NEW_KEY);
    assert!(old.verify(&n.body, &n.headers).is_err(), "the old key no longer signs");
    // More keys than a rotation needs: a 400 naming the field, and nothing changed.
    let (status, v) = rotate(json!(["a", "b", "c", "d", "e"])).await;
    assert_eq!(status, 400, "{v}");
    assert!(v["message"].as_str().unwrap().contains("event.notification.signature.key"), "{v}");
    server.webhook(id, &fixture("hire_candidate.json"), VENDOR_KEY, Some("gh-rot-3")).await;
    assert_signed(&rx.wait_for(4, WAIT).await[3], NEW_KEY);
    server.stop().await;
}

/// A key is added beside the stored ones by sending the mask in their place, so a generated
/// Greenhouse key (shown once) or a signing key rotates without being sent again; at creation the
/// mask is refused.
#[tokio::test]
async fn keys_rotate_by_adding_one_beside_the_mask_and_the_mask_is_never_a_key() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 1.0)).await;
    let inst = server.create_instance(&rx.url(), json!({"event.vendor.signature.key": null})).await;
    let (id, generated) = (id_of(&inst), inst["webhookSecret"].as_str().unwrap().to_owned());
    let (admin, path) = (admin(), format!("/instances/{id}"));
    let patch = |key: &str, v: Value| {
        server.call("PATCH", &path, Some(admin.as_str()), Some(json!({"configuration": {key: v}})))
    };
    let body = fixture("job_created.json");
    // Greenhouse: the new key beside the generated one; webhooks signed with either verify.
    let (status, v) = patch("event.vendor.signature.key", json!(["gh-new-key", "********"])).await;
    assert_eq!(
        (status, &v["configuration"]["event.vendor.signature.key"]),
        (200, &json!(["********", "********"])),
        "{v}"
    );
    assert_eq!(server.webhook(id, &body, &generated, Some("gh-k1")).await.0, 200, "the generated key, still");
    assert_eq!(server.webhook(id, &body, "gh-new-key", Some("gh-k2")).await.0, 200, "the new key, already");
    assert_eq!(server.webhook(id, &body, "gh-other", Some("gh-k3")).await.0, 401);
    // Once every Greenhouse webhook has the new key: it alone.
    assert_eq!(patch("event.vendor.signature.key", json!("gh-new-key")).await.0, 200);
    assert_eq!(server.webhook(id, &body, &generated, Some("gh-k4")).await.0, 401);
    assert_eq!(server.webhook(id, &body, "gh-new-key", Some("gh-k5")).await.0, 200);
    // The signing key the same way: the new one first, the stored one kept.
    assert_eq!(patch("event.notification.signature.key", json!(["signing-new", "********"])).await.0, 200);
    let (old, new) = (standard_verifier(SIGNING_KEY), standard_verifier("signing-new"));
    assert_eq!(server.webhook(id, &body, "gh-new-key", Some("gh-k6")).await.0, 200);
    let got = rx.wait_for(4, WAIT).await;
    let n = got.iter().find(|n| n.header("webhook-signature").contains(' ')).expect("a notification signed twice");
    old.verify(&n.body, &n.headers).expect("a receiver still on the old key");
    new.verify(&n.body, &n.headers).expect("a receiver already on the new key");
    // At creation there is nothing to keep: the mask would be a key anyone can guess.
    let before = server.call("GET", "/instances", Some(&admin), None).await.1;
    for (key, v) in [
        ("event.vendor.signature.key", json!("********")),
        ("event.notification.signature.key", json!(["k", "********"])),
    ] {
        let configuration = json!({"event.notification.callback.url": rx.url(), key: v});
        let body = json!({"element": {"key": "greenhouse"}, "name": "copy", "configuration": configuration});
        let (status, v) = server.call("POST", "/instances", Some(&admin), Some(body)).await;
        assert_eq!(status, 400, "{v}");
        assert!(v["message"].as_str().unwrap().contains(key), "{v}");
    }
    assert_eq!(server.call("GET", "/instances", Some(&admin), None).await.1, before, "nothing created");
    server.stop().await;
}

#[tokio::test]
async fn a_repeated_greenhouse_event_id_is_queued_once_with_the_same_event_id() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 1.0)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let body = br#"{"action":"update_candidate","payload":{"candidate":{"id":1}}}"#;
    let (s1, r1) = server.webhook(id_of(&inst), body, VENDOR_KEY, Some("same")).await;
    let (s2, r2) = server.webhook(id_of(&inst), body, VENDOR_KEY, Some("same")).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(r1["eventId"], r2["eventId"]);
    assert_eq!(r2["duplicate"], true);
    // Without the header, the body hash is the key.
    let (_, r3) = server.webhook(id_of(&inst), body, VENDOR_KEY, None).await;
    let (_, r4) = server.webhook(id_of(&inst), body, VENDOR_KEY, None).await;
    assert_eq!(r3["eventId"], r4["eventId"]);
    assert_ne!(r3["eventId"], r1["eventId"]);
    rx.wait_for(2, WAIT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 2);
    assert_eq!(server.events(id_of(&inst), "").await.len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_retry_is_attempted_when_it_falls_due_not_at_the_next_idle_poll() {
    let dir = tmp();
    let rx = Receiver::start().await;
    rx.script([Reply::status(500), Reply::status(200)]);
    // The first retry comes 5 s x 0.01 after the first attempt. The worker looks at the queue
    // once a minute here, unless woken by a webhook or a finished delivery: it must sleep until
    // the retry falls due (the store says when), not until its next look.
    let mut c = config(dir.path(), 0.01);
    c.worker.idle_poll = Duration::from_secs(60);
    let server = Server::start(c).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let (_, r) = server.webhook(id_of(&inst), &fixture("job_created.json"), VENDOR_KEY, Some("due")).await;
    let e = server.wait_status(id_of(&inst), r["eventId"].as_str().unwrap(), "delivered", WAIT).await;
    let codes: Vec<Value> = e["attempts"].as_array().unwrap().iter().map(|a| a["statusCode"].clone()).collect();
    assert_eq!(codes, vec![json!(500), json!(200)]);
    server.stop().await;
}

#[tokio::test]
async fn a_failing_receiver_gets_retries_until_it_answers_2xx() {
    let dir = tmp();
    let rx = Receiver::start().await;
    rx.script([Reply { body: "x".repeat(10_000), ..Reply::status(500) }, Reply::status(503), Reply::status(202)]);
    let server = Server::start(config(dir.path(), 0.01)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let (_, r) = server.webhook(id_of(&inst), &fixture("job_created.json"), VENDOR_KEY, Some("r1")).await;
    let event_id = r["eventId"].as_str().unwrap();
    let e = server.wait_status(id_of(&inst), event_id, "delivered", WAIT).await;
    let codes: Vec<Value> = e["attempts"].as_array().unwrap().iter().map(|a| a["statusCode"].clone()).collect();
    assert_eq!(codes, vec![json!(500), json!(503), json!(202)]);
    // The log keeps the first 4 KiB of a response body.
    assert_eq!(e["attempts"][0]["responseBody"].as_str().unwrap().len(), 4096);
    let got = rx.received();
    assert_eq!(got.len(), 3);
    let ids: std::collections::HashSet<String> = got.iter().map(|r| r.header("webhook-id")).collect();
    assert_eq!(ids.len(), 1, "every attempt carries the same eventId");
    // 5 s and 5 min, scaled by 0.01, with ±20 % jitter.
    let gap1 = got[1].at - got[0].at;
    let gap2 = got[2].at - got[1].at;
    assert!(gap1 >= Duration::from_millis(35), "{gap1:?}");
    assert!(gap2 >= Duration::from_millis(2400), "{gap2:?}");
    server.stop().await;
}

#[tokio::test]
async fn a_429_waits_at_least_the_floor_and_honours_retry_after() {
    let dir = tmp();
    let rx = Receiver::start().await;
    rx.script([
        Reply { retry_after: Some("100".into()), ..Reply::status(429) },
        Reply { retry_after: Some("1".into()), ..Reply::status(503) },
    ]);
    let server = Server::start(config(dir.path(), 0.001)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let (_, r) = server.webhook(id_of(&inst), &fixture("job_created.json"), VENDOR_KEY, Some("ra")).await;
    server.wait_status(id_of(&inst), r["eventId"].as_str().unwrap(), "delivered", WAIT).await;
    let got = rx.received();
    assert_eq!(got.len(), 3);
    // Retry-After 100 s lies within [60 s floor, 120 s]: 100 ms at this scale.
    assert!(got[1].at - got[0].at >= Duration::from_millis(95), "{:?}", got[1].at - got[0].at);
    // Retry-After 1 s is below the 5 min step: clamped up to the step (300 ms, -20 % jitter).
    assert!(got[2].at - got[1].at >= Duration::from_millis(235), "{:?}", got[2].at - got[1].at);
    server.stop().await;
}

#[tokio::test]
async fn a_410_dead_letters_at_once_and_redelivery_starts_a_new_series() {
    let dir = tmp();
    let rx = Receiver::start().await;
    rx.script([Reply::status(410)]);
    let server = Server::start(config(dir.path(), 0.001)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let id = id_of(&inst);
    let (_, r) = server.webhook(id, &fixture("offer_created.json"), VENDOR_KEY, Some("g1")).await;
    let event_id = r["eventId"].as_str().unwrap().to_owned();
    let e = server.wait_status(id, &event_id, "failed", WAIT).await;
    assert_eq!(e["attempts"].as_array().unwrap().len(), 1);
    assert!(e["deadLetterReason"].as_str().unwrap().contains("410"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 1, "no retry after 410");
    assert_eq!(server.events(id, "?status=failed").await.len(), 1);
    assert_eq!(server.events(id, "?status=delivered").await.len(), 0);

    let (status, body) =
        server.call("POST", &format!("/instances/{id}/events/{event_id}/redeliver"), Some(&admin()), None).await;
    assert_eq!(status, 200, "{body}");
    let e = server.wait_status(id, &event_id, "delivered", WAIT).await;
    let series: Vec<Value> = e["attempts"].as_array().unwrap().iter().map(|a| a["series"].clone()).collect();
    assert_eq!(series, vec![json!(0), json!(1)]);
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].header("webhook-id"), got[1].header("webhook-id"));
    assert_eq!(got[0].body, got[1].body, "a redelivery sends the same notification");
    // One notification by its id: its attempts and the notification as sent.
    let (status, one) = server.call("GET", &format!("/instances/{id}/events/{event_id}"), Some(&admin()), None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!((&one["eventId"], &one["status"]), (&json!(event_id), &json!("delivered")));
    assert_eq!(one["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(one["notification"], serde_json::from_slice::<Value>(&got[1].body).unwrap());
    // Unknown event ids are 404.
    let (status, _) =
        server.call("POST", &format!("/instances/{id}/events/nope/redeliver"), Some(&admin()), None).await;
    assert_eq!(status, 404);
    let (status, body) = server.call("GET", &format!("/instances/{id}/events/nope"), Some(&admin()), None).await;
    assert_eq!(status, 404, "{body}");
    assert!(body["message"].as_str().unwrap().contains("nope"), "{body}");
    server.stop().await;
}

/// A pending notification of an instance deleted meanwhile ends at its next attempt: failed,
/// with the reason, instead of being refused at every attempt for 27.5 hours.
#[tokio::test]
async fn a_deleted_instances_notification_ends_at_its_next_attempt() {
    let dir = tmp();
    let rx = Receiver::start().await;
    // A 429 puts the next attempt at least 60 s on, 3 s at this scale: time to delete.
    rx.script([Reply::status(429)]);
    let server = Server::start(config(dir.path(), 0.05)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let (_, r) = server.webhook(id_of(&inst), &fixture("job_created.json"), VENDOR_KEY, Some("del-1")).await;
    let event_id = r["eventId"].as_str().unwrap().to_owned();
    rx.wait_for(1, WAIT).await;
    let (status, v) = server.call("DELETE", &format!("/instances/{}", id_of(&inst)), Some(&admin()), None).await;
    assert_eq!(status, 200, "{v}");
    let row = |conn: &rusqlite::Connection| -> (String, Option<String>, i64) {
        conn.query_row(
            "SELECT status, dead_letter_reason, attempts FROM events WHERE event_id = ?1",
            [&event_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap()
    };
    let conn = rusqlite::Connection::open(dir.path().join("relay.db")).unwrap();
    let deadline = std::time::Instant::now() + WAIT;
    while row(&conn).0 == "pending" && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(row(&conn), ("failed".to_owned(), Some("the instance was deleted".to_owned()), 2));
    assert_eq!(rx.received().len(), 1, "nothing is sent for a deleted instance");
    server.stop().await;
}

/// Events disabled while a notification waits for its retry: the attempt sends nothing and
/// counts as failed, but the notification stays pending (not dead-lettered as for a deleted
/// instance), so that once events are enabled again the next retry delivers it.
#[tokio::test]
async fn a_notification_waits_out_its_instances_events_being_disabled() {
    let dir = tmp();
    let rx = Receiver::start().await;
    // Retry-After 120 s puts the second attempt 2.4 s on at this scale: time to disable.
    rx.script([Reply { retry_after: Some("120".into()), ..Reply::status(429) }]);
    let server = Server::start(config(dir.path(), 0.02)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let id = id_of(&inst);
    let (_, r) = server.webhook(id, &fixture("job_created.json"), VENDOR_KEY, Some("off-1")).await;
    let event_id = r["eventId"].as_str().unwrap().to_owned();
    rx.wait_for(1, WAIT).await;
    let enabled = |on: bool| json!({"configuration": {"event.notification.enabled": on}});
    let (status, v) = server.call("PATCH", &format!("/instances/{id}"), Some(&admin()), Some(enabled(false))).await;
    assert_eq!(status, 200, "{v}");

    let deadline = std::time::Instant::now() + WAIT;
    let e = loop {
        let events = server.events(id, "").await;
        let e = events.iter().find(|e| e["eventId"] == event_id).unwrap().clone();
        if e["attempts"].as_array().unwrap().len() >= 2 {
            break e;
        }
        assert!(std::time::Instant::now() < deadline, "no second attempt: {e}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(e["status"], "pending", "{e}");
    assert!(e["deadLetterReason"].is_null(), "{e}");
    assert!(e["nextAttemptDate"].is_string(), "{e}");
    let refused = &e["attempts"][1];
    assert_eq!(refused["error"], "events are disabled for this instance", "{e}");
    assert!(refused["statusCode"].is_null(), "{e}");
    assert_eq!(rx.received().len(), 1, "nothing is sent while events are disabled");
    // Listed as pending, and only there.
    let ids = |events: Vec<Value>| events.iter().map(|e| e["eventId"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(ids(server.events(id, "?status=pending").await), vec![event_id.clone()]);
    assert_eq!(ids(server.events(id, "?status=failed").await), Vec::<String>::new());

    // Enabled again: the next retry (5 min, 6 s at this scale) delivers it, same eventId.
    let (status, v) = server.call("PATCH", &format!("/instances/{id}"), Some(&admin()), Some(enabled(true))).await;
    assert_eq!(status, 200, "{v}");
    let e = server.wait_status(id, &event_id, "delivered", WAIT).await;
    assert_eq!(e["attempts"].as_array().unwrap().len(), 3, "{e}");
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].header("webhook-id"), event_id);
    assert_eq!(got[0].body, got[1].body);
    server.stop().await;
}

/// Every attempt leaves one log line an operator can alert on: `delivered` (info) or `delivery
/// attempt failed` (warn) with the status and what follows. No secret is in any line the
/// delivery writes (the signing key signs the notification; the vendor key verified it).
#[tokio::test]
async fn each_attempt_is_logged_with_its_outcome_and_no_secret() {
    let logs = harness::calls::Logs::default();
    // The production level for everything else; all our own crates' lines.
    let _capture = logs.install("info,relay_core=trace,relay_sqlite=trace,relay_callback=trace,greenhouse_relay=trace");
    let dir = tmp();
    let rx = Receiver::start().await;
    rx.script([Reply::status(503)]);
    let server = Server::start(config(dir.path(), 0.001)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let token = inst["token"].as_str().unwrap().to_owned();
    let id = id_of(&inst);
    let (_, r) = server.webhook(id, &fixture("job_created.json"), VENDOR_KEY, Some("log-1")).await;
    let event_id = r["eventId"].as_str().unwrap().to_owned();
    server.wait_status(id, &event_id, "delivered", WAIT).await;
    server.stop().await;

    let text = logs.take();
    for secret in [SIGNING_KEY, VENDOR_KEY, USER, ORG, token.as_str()] {
        assert!(!text.contains(secret), "{secret} in the logs:\n{text}");
    }
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let attempts: Vec<&Value> = lines
        .iter()
        .filter(|l| l["fields"]["event_id"] == event_id.as_str() && l["fields"]["attempt"].is_number())
        .collect();
    assert_eq!(attempts.len(), 2, "{text}");
    let (failed, delivered) = (&attempts[0], &attempts[1]);
    assert_eq!((&failed["level"], &failed["fields"]["message"]), (&json!("WARN"), &json!("delivery attempt failed")));
    assert_eq!((&failed["fields"]["attempt"], &failed["fields"]["status"]), (&json!(1), &json!("Some(503)")));
    assert!(failed["fields"]["next"].as_str().unwrap().starts_with("RetryAt"), "{failed}");
    assert_eq!((&delivered["level"], &delivered["fields"]["message"]), (&json!("INFO"), &json!("delivered")));
    assert_eq!((&delivered["fields"]["attempt"], &delivered["fields"]["status"]), (&json!(2), &json!("Some(200)")));
    assert_eq!(delivered["fields"]["instance_id"], id);
}

#[tokio::test]
async fn a_timeout_is_a_failed_attempt_retried_after_the_floor() {
    let dir = tmp();
    let rx = Receiver::start().await;
    rx.script([Reply { delay: Duration::from_secs(2), ..Reply::status(200) }]);
    let mut c = config(dir.path(), 0.001);
    c.attempt_timeout = Duration::from_millis(300);
    let server = Server::start(c).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let (_, r) = server.webhook(id_of(&inst), &fixture("job_created.json"), VENDOR_KEY, Some("t")).await;
    let e = server.wait_status(id_of(&inst), r["eventId"].as_str().unwrap(), "delivered", WAIT).await;
    let attempts = e["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert!(attempts[0]["error"].as_str().unwrap().contains("timed out"), "{e}");
    assert!(attempts[0]["statusCode"].is_null());
    let got = rx.received();
    // Sent at t0, timed out at t0+300 ms, retried at least 60 s x 0.001 later.
    assert!(got[1].at - got[0].at >= Duration::from_millis(355), "{:?}", got[1].at - got[0].at);
    server.stop().await;
}

#[tokio::test]
async fn after_the_last_attempt_it_is_dead_lettered_and_bulk_redelivery_brings_it_back() {
    let dir = tmp();
    let rx = Receiver::start().await;
    rx.script((0..8).map(|_| Reply::status(500)));
    // The whole 27.5 h schedule in about 2 s.
    let server = Server::start(config(dir.path(), 0.00002)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let id = id_of(&inst);
    let (_, r) = server.webhook(id, &fixture("job_deleted.json"), VENDOR_KEY, Some("d")).await;
    let event_id = r["eventId"].as_str().unwrap().to_owned();
    let e = server.wait_status(id, &event_id, "failed", Duration::from_secs(30)).await;
    let attempts: Vec<u64> = e["attempts"].as_array().unwrap().iter().map(|a| a["attempt"].as_u64().unwrap()).collect();
    assert_eq!(attempts, (1..=8).collect::<Vec<_>>());
    assert_eq!(e["deadLetterReason"], "all attempts failed");
    assert!(e["notification"]["message"]["raw"].is_object(), "the dead letter keeps its notification");
    let since = "2000-01-01T00:00:00Z";
    let (status, body) = server
        .call("POST", &format!("/instances/{id}/events/redeliver?status=failed&since={since}"), Some(&admin()), None)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["redelivered"], 1);
    server.wait_status(id, &event_id, "delivered", WAIT).await;
    assert_eq!(rx.received().len(), 9);
    // A `since` in the future selects nothing; a bad one is a 400 naming the parameter.
    let (_, body) = server
        .call("POST", &format!("/instances/{id}/events/redeliver?since=2999-01-01T00:00:00Z"), Some(&admin()), None)
        .await;
    assert_eq!(body["redelivered"], 0);
    let (status, body) =
        server.call("POST", &format!("/instances/{id}/events/redeliver?since=yesterday"), Some(&admin()), None).await;
    assert_eq!(status, 400);
    assert!(body["message"].as_str().unwrap().contains("since"));
    server.stop().await;
}

#[tokio::test]
async fn bulk_redelivery_takes_at_most_limit_and_says_when_more_match() {
    let dir = tmp();
    let rx = Receiver::start().await;
    rx.script([Reply::status(410), Reply::status(410), Reply::status(410)]);
    let server = Server::start(config(dir.path(), 0.001)).await;
    let id = id_of(&server.create_instance(&rx.url(), json!({})).await);
    let mut ids = vec![];
    for key in ["b1", "b2", "b3"] {
        let (_, r) = server.webhook(id, &fixture("job_created.json"), VENDOR_KEY, Some(key)).await;
        ids.push(r["eventId"].as_str().unwrap().to_owned());
    }
    for e in &ids {
        server.wait_status(id, e, "failed", WAIT).await;
    }
    let bulk = format!("/instances/{id}/events/redeliver");
    let (status, body) = server.call("POST", &format!("{bulk}?limit=2"), Some(&admin()), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((&body["redelivered"], &body["more"]), (&json!(2), &json!(true)), "{body}");
    // The redelivered ones are no longer failed: the next call takes the rest, exactly its
    // limit, and no more follow.
    let (_, again) = server.call("POST", &format!("{bulk}?limit=1"), Some(&admin()), None).await;
    assert_eq!((&again["redelivered"], &again["more"]), (&json!(1), &json!(false)), "{again}");
    let mut all: Vec<Value> =
        body["eventIds"].as_array().unwrap().iter().chain(again["eventIds"].as_array().unwrap()).cloned().collect();
    all.sort_by_key(|v| v.as_str().unwrap().to_owned());
    let mut expected: Vec<Value> = ids.iter().map(|e| json!(e)).collect();
    expected.sort_by_key(|v| v.as_str().unwrap().to_owned());
    assert_eq!(all, expected);
    for e in &ids {
        server.wait_status(id, e, "delivered", WAIT).await;
    }
    assert_eq!(rx.received().len(), 6);
    let (_, none) = server.call("POST", &bulk, Some(&admin()), None).await;
    assert_eq!((&none["redelivered"], &none["more"]), (&json!(0), &json!(false)));
    for bad in ["0", "501", "x"] {
        let (status, body) = server.call("POST", &format!("{bulk}?limit={bad}"), Some(&admin()), None).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["message"].as_str().unwrap().contains("limit"), "{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn a_hanging_callback_takes_at_most_its_share_of_the_delivery_capacity() {
    let dir = tmp();
    let (slow, fast) = (Receiver::start().await, Receiver::start().await);
    slow.script((0..10).map(|_| Reply { delay: Duration::from_secs(60), ..Reply::status(200) }));
    let mut c = config(dir.path(), 1.0);
    c.worker.concurrency = 4;
    c.worker.per_instance = 2;
    c.attempt_timeout = Duration::from_secs(120);
    c.worker.drain_timeout = Duration::from_millis(100);
    let server = Server::start(c).await;
    let a = id_of(&server.create_instance(&slow.url(), json!({})).await);
    let b = id_of(&server.create_instance(&fast.url(), json!({})).await);
    for n in 0..10 {
        let (status, _) = server.webhook(a, &fixture("job_created.json"), VENDOR_KEY, Some(&format!("slow-{n}"))).await;
        assert_eq!(status, 200);
    }
    slow.wait_for(2, WAIT).await;
    // Instance a's ten notifications came first and its callback holds every request for a
    // minute; b's is delivered anyway, because a may hold only 2 of the 4 delivery slots.
    let (status, r) = server.webhook(b, &fixture("job_created.json"), VENDOR_KEY, Some("fast")).await;
    assert_eq!(status, 200);
    fast.wait_for(1, WAIT).await;
    server.wait_status(b, r["eventId"].as_str().unwrap(), "delivered", WAIT).await;
    assert_eq!(slow.received().len(), 2, "a's requests in flight never exceed its cap");
    server.stop().await;
}

/// The contract's limit is inclusive: a body of exactly 1 MiB is taken and delivered as received,
/// one byte more is a 413 that queues nothing.
#[tokio::test]
async fn a_body_of_exactly_1_mib_is_delivered_and_one_byte_more_is_refused() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 0.001)).await;
    let id = id_of(&server.create_instance(&rx.url(), json!({})).await);
    let body = |len: usize| {
        let (head, tail) = (r#"{"action":"job_created","payload":{"job":{"id":1,"notes":""#, r#""}}}"#);
        format!("{head}{}{tail}", "a".repeat(len - head.len() - tail.len())).into_bytes()
    };
    let (status, v) = server.webhook(id, &body(1024 * 1024 + 1), VENDOR_KEY, Some("mib+1")).await;
    assert_eq!(status, 413, "{v}");
    let exact = body(1024 * 1024);
    let (status, v) = server.webhook(id, &exact, VENDOR_KEY, Some("mib")).await;
    assert_eq!(status, 200, "{v}");
    server.wait_status(id, v["eventId"].as_str().unwrap(), "delivered", WAIT).await;
    let got = rx.received();
    assert_eq!(got.len(), 1, "the 413 queued nothing");
    assert_eq!(got[0].json()["message"]["raw"], serde_json::from_slice::<Value>(&exact).unwrap());
    assert_signed(&got[0], SIGNING_KEY);
    server.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_json_error_and_changes_nothing() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 1.0)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let id = id_of(&inst);
    let good = fixture("job_created.json");
    let big =
        format!(r#"{{"action":"job_created","payload":{{"job":{{"id":1,"notes":"{}"}}}}}}"#, "a".repeat(1024 * 1024));
    let deep = format!(r#"{{"action":"x","payload":{}1{}}}"#, "{\"a\":".repeat(10_000), "}".repeat(10_000));
    let cases: Vec<(&str, Vec<u8>, Option<String>, u16)> = vec![
        ("wrong signature", good.clone(), Some(format!("sha256 {}", "0".repeat(64))), 401),
        ("missing signature", good.clone(), None, 401),
        ("other key", good.clone(), Some(greenhouse_signature("other", &good)), 401),
        ("not json", b"nope{".to_vec(), Some(greenhouse_signature(VENDOR_KEY, b"nope{")), 400),
        ("no action", br#"{"payload":{}}"#.to_vec(), Some(greenhouse_signature(VENDOR_KEY, br#"{"payload":{}}"#)), 400),
        ("too deep", deep.clone().into_bytes(), Some(greenhouse_signature(VENDOR_KEY, deep.as_bytes())), 400),
        ("too big", big.clone().into_bytes(), Some(greenhouse_signature(VENDOR_KEY, big.as_bytes())), 413),
    ];
    for (name, body, sig, want) in cases {
        let mut req = server.http.post(format!("{}/events/greenhouse/{id}", server.base)).body(body);
        if let Some(s) = sig {
            req = req.header("signature", s);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), want, "{name}");
        let v: Value = resp.json_body().await;
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {v}");
        assert!(v["requestId"].as_str().is_some_and(|m| !m.is_empty()), "{name}: {v}");
    }
    let (status, v) = server.webhook(999_999, &good, VENDOR_KEY, None).await;
    assert_eq!(status, 404, "{v}");
    let (status, _) = server.webhook(0, &good, VENDOR_KEY, None).await;
    assert_eq!(status, 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.received().is_empty());
    assert!(server.events(id, "").await.is_empty());
    let (status, v) = server.call("GET", "/nowhere", None, None).await;
    assert_eq!(status, 404);
    assert!(v["message"].is_string());
    // A method a path does not serve: 405, naming those it does in `Allow` (RFC 9110).
    for (method, path, allow) in [
        ("GET", format!("/events/greenhouse/{id}"), "POST"),
        ("DELETE", "/instances".to_owned(), "GET, HEAD, POST"),
        ("POST", format!("/instances/{id}"), "GET, HEAD, PATCH, PUT, DELETE"),
        ("TRACE", format!("/instances/{id}/events/abc"), "GET, HEAD"),
        ("GET", format!("/instances/{id}/events/redeliver"), "POST"),
        ("HEAD", format!("/events/greenhouse/{id}"), "POST"),
    ] {
        let resp = server.http.request(method.parse().unwrap(), format!("{}{path}", server.base)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 405, "{method} {path}");
        assert_eq!(resp.headers().get("allow").and_then(|v| v.to_str().ok()), Some(allow), "{method} {path}");
        if method == "HEAD" {
            assert_eq!(resp.bytes().await.unwrap().len(), 0, "content in the answer to a HEAD");
            continue;
        }
        let v: Value = resp.json_body().await;
        assert!(v["message"].as_str().is_some_and(|m| m.contains(allow)), "{v}");
    }
    let (status, _) = server.call("PUT", &format!("/instances/{id}/events/abc/redeliver/x"), None, None).await;
    assert_eq!(status, 404, "a path no route has is 404 whatever the method");
    server.stop().await;
}

#[tokio::test]
async fn admin_and_instance_token_authorization() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 1.0)).await;
    let a = server.create_instance(&rx.url(), json!({})).await;
    let b = server.create_instance(&rx.url(), json!({})).await;
    let token_a = format!("Element {}", a["token"].as_str().unwrap());
    for (auth, want) in [
        (None, 401),
        (Some("User test-user-secret, Organization wrong"), 401),
        (Some("Organization test-org-secret"), 401),
        (Some(token_a.as_str()), 401),
    ] {
        let (status, v) = server.call("GET", "/instances", auth, None).await;
        assert_eq!(status, want, "{auth:?}");
        assert!(v["message"].is_string());
    }
    let (status, _) = server.call("GET", &format!("/instances/{}/events", a["id"]), Some(&token_a), None).await;
    assert_eq!(status, 200);
    let (status, _) = server.call("GET", &format!("/instances/{}", a["id"]), Some(&token_a), None).await;
    assert_eq!(status, 200);
    let (status, _) = server.call("GET", &format!("/instances/{}/events", b["id"]), Some(&token_a), None).await;
    assert_eq!(status, 401, "a token is scoped to its instance");
    let (status, _) = server.call("DELETE", &format!("/instances/{}", a["id"]), Some(&token_a), None).await;
    assert_eq!(status, 401, "a token cannot manage instances");
    // Order and spacing of the admin header parts do not matter.
    let (status, _) =
        server.call("GET", "/instances", Some("Organization test-org-secret,User test-user-secret"), None).await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn a_new_token_replaces_the_instances_token_at_once_and_for_good() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 1.0)).await;
    let a = server.create_instance(&rx.url(), json!({})).await;
    let b = server.create_instance(&rx.url(), json!({})).await;
    let (id, old) = (id_of(&a), format!("Element {}", a["token"].as_str().unwrap()));
    let token_b = format!("Element {}", b["token"].as_str().unwrap());
    let path = format!("/instances/{id}/token");
    // Only an admin may: not the instance's own token (a leaked one could lock its owner out).
    for auth in [None, Some(old.as_str()), Some(token_b.as_str())] {
        assert_eq!(server.call("POST", &path, auth, None).await.0, 401, "{auth:?}");
    }
    let (status, v) = server.call("POST", "/instances/999999/token", Some(&admin()), None).await;
    assert_eq!(status, 404, "{v}");
    let resp = server.http.get(format!("{}{path}", server.base)).header("authorization", admin()).send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["allow"].to_str().unwrap()), (405, "POST"));
    assert_eq!(
        server.call("GET", &format!("/instances/{id}"), Some(&old), None).await.0,
        200,
        "refusals change nothing"
    );

    let resp =
        server.http.post(format!("{}{path}", server.base)).header("authorization", admin()).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store", "the answer holds a token");
    let renewed = resp.json_body().await;
    let new = format!("Element {}", renewed["token"].as_str().unwrap());
    assert_ne!(new, old);
    assert!(renewed["token"].as_str().unwrap().len() >= 43, "256 random bits: {renewed}");
    // The instance is otherwise as it was: same id, webhook URL, masked configuration.
    for field in ["id", "name", "webhookUrl", "configuration", "createdDate", "eventsNotificationCallbackUrl"] {
        assert_eq!(renewed[field], a[field], "{field}");
    }
    assert!(renewed.get("webhookSecret").is_none(), "the Greenhouse key is not shown again");
    assert_eq!(server.call("GET", &format!("/instances/{id}/events"), Some(&old), None).await.0, 401);
    assert_eq!(server.call("GET", &format!("/instances/{id}/events"), Some(&new), None).await.0, 200);
    assert_eq!(server.call("GET", &format!("/instances/{}", id_of(&b)), Some(&token_b), None).await.0, 200);
    let (_, shown) = server.call("GET", &format!("/instances/{id}"), Some(&admin()), None).await;
    assert_eq!(shown["token"], "********");
    // Greenhouse's side is untouched: its webhooks are still verified and delivered.
    let (status, r) = server.webhook(id, &fixture("job_created.json"), VENDOR_KEY, None).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(rx.wait_for(1, WAIT).await.len(), 1);
    server.stop().await;

    // And for good: after a restart, the new token still works and the old one still does not.
    let server = Server::start(config(dir.path(), 1.0)).await;
    assert_eq!(server.call("GET", &format!("/instances/{id}"), Some(&new), None).await.0, 200);
    assert_eq!(server.call("GET", &format!("/instances/{id}"), Some(&old), None).await.0, 401);
    // A deleted instance gets no new token.
    assert_eq!(server.call("DELETE", &format!("/instances/{id}"), Some(&admin()), None).await.0, 200);
    assert_eq!(server.call("POST", &path, Some(&admin()), None).await.0, 404);
    server.stop().await;
}

/// `POST /instances/{id}/events/test`: a notification with no events reaches the receiver on
/// the path of every other one (signed both ways, retried, listed, redeliverable), for the
/// instance's token or an admin; refused for anyone else, an unknown instance, and while events
/// are disabled, changing nothing.
#[tokio::test]
async fn a_test_notification_reaches_the_receiver_as_any_other_would() {
    let dir = tmp();
    let rx = Receiver::start().await;
    rx.script([Reply::status(500)]);
    let server = Server::start(config(dir.path(), 0.01)).await;
    let a = server.create_instance(&rx.url(), json!({})).await;
    let b = server.create_instance(&rx.url(), json!({})).await;
    let (id, token) = (id_of(&a), format!("Element {}", a["token"].as_str().unwrap()));
    let path = format!("/instances/{id}/events/test");
    for auth in [None, Some(format!("Element {}", b["token"].as_str().unwrap()))] {
        assert_eq!(server.call("POST", &path, auth.as_deref(), None).await.0, 401, "{auth:?}");
    }
    assert_eq!(server.call("POST", "/instances/999999/events/test", Some(&admin()), None).await.0, 404);
    let resp = server.http.get(format!("{}{path}", server.base)).header("authorization", admin()).send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["allow"].to_str().unwrap()), (405, "POST"));
    assert!(server.events(id, "").await.is_empty(), "refusals queue nothing");

    let (status, queued) = server.call("POST", &path, Some(&token), None).await;
    assert_eq!(status, 200, "{queued}");
    let event_id = queued["eventId"].as_str().unwrap();
    assert_eq!(queued["status"], "pending");
    // The receiver's first answer (500) is retried, as for any notification.
    let e = server.wait_status(id, event_id, "delivered", WAIT).await;
    let codes: Vec<&Value> = e["attempts"].as_array().unwrap().iter().map(|a| &a["statusCode"]).collect();
    assert_eq!(codes, [&json!(500), &json!(200)]);
    assert_eq!(e["action"], "greenhouse_relay.test");
    let got = rx.received();
    assert_eq!(got.len(), 2);
    assert_signed(&got[1], SIGNING_KEY);
    let (msg_id, ts) = (got[1].header("webhook-id"), got[1].header("webhook-timestamp"));
    let mut headers = http::HeaderMap::new();
    headers.insert("webhook-id", msg_id.parse().unwrap());
    headers.insert("webhook-timestamp", ts.parse().unwrap());
    headers.insert("webhook-signature", got[1].header("webhook-signature").parse().unwrap());
    standard_verifier(SIGNING_KEY).verify(&got[1].body, &headers).expect("a Standard Webhooks library verifies it");
    let v = got[1].json();
    assert_eq!(msg_id, event_id);
    assert_eq!(v["message"]["events"], json!([]), "nothing for a receiver to act on");
    assert_eq!(v["message"]["raw"]["action"], "greenhouse_relay.test");
    assert!(v["message"]["raw"]["payload"]["message"].as_str().unwrap().contains("test notification"));
    assert_eq!(
        (v["message"]["instanceId"].as_i64(), v["message"]["instanceName"].as_str()),
        (Some(id), Some("acme-prod"))
    );
    assert_eq!(v["topic"], format!("instance-{id}-greenhouse-events"));
    // Each request is a test of its own; an admin may ask too.
    let (status, again) = server.call("POST", &path, Some(&admin()), None).await;
    assert_eq!(status, 200, "{again}");
    assert_ne!(again["eventId"], queued["eventId"]);
    server.wait_status(id, again["eventId"].as_str().unwrap(), "delivered", WAIT).await;
    // Redeliverable like any other.
    let (status, r) =
        server.call("POST", &format!("/instances/{id}/events/{event_id}/redeliver"), Some(&token), None).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(rx.wait_for(4, WAIT).await[3].header("webhook-id"), event_id);

    // While events are disabled nothing would be sent: a 409 that queues nothing.
    let off = json!({"configuration": {"event.notification.enabled": false}});
    assert_eq!(server.call("PATCH", &format!("/instances/{id}"), Some(&admin()), Some(off)).await.0, 200);
    let before = server.events(id, "").await.len();
    let (status, refused) = server.call("POST", &path, Some(&token), None).await;
    assert_eq!(status, 409, "{refused}");
    assert!(refused["message"].as_str().unwrap().contains("event.notification.enabled"), "{refused}");
    assert!(refused["requestId"].is_string());
    assert_eq!(server.events(id, "").await.len(), before);
    server.stop().await;
}

#[tokio::test]
async fn a_head_is_answered_as_the_get_without_its_content() {
    let dir = tmp();
    let server = Server::start(config(dir.path(), 1.0)).await;
    let a = server.create_instance("http://127.0.0.1:9/hooks", json!({})).await;
    let admin = "User test-user-secret, Organization test-org-secret";
    for (path, auth, status) in [
        ("/instances".to_owned(), Some(admin), 200),
        (format!("/instances/{}", a["id"]), Some(admin), 200),
        (format!("/instances/{}/events?limit=5", a["id"]), Some(admin), 200),
        ("/health".to_owned(), None, 200),
        (format!("/instances/{}", a["id"]), None, 401),
        ("/instances/999999".to_owned(), Some(admin), 404),
    ] {
        let send = |method: reqwest::Method| {
            let mut req = server.http.request(method, format!("{}{path}", server.base));
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            req.send()
        };
        let head = send(reqwest::Method::HEAD).await.unwrap();
        let get = send(reqwest::Method::GET).await.unwrap();
        assert_eq!((head.status().as_u16(), get.status().as_u16()), (status, status), "{path}");
        assert_eq!(get.headers()["cache-control"], "no-store", "{path}");
        assert_eq!(get.headers()["x-content-type-options"], "nosniff", "{path}");
        for name in
            ["content-type", "link", "elements-next-page-token", "allow", "cache-control", "x-content-type-options"]
        {
            assert_eq!(head.headers().get(name), get.headers().get(name), "{path}: {name}");
        }
        let length =
            |r: &reqwest::Response| r.headers().get("content-length").and_then(|v| v.to_str().ok()?.parse().ok());
        let head_length: Option<usize> = length(&head);
        assert!(head.bytes().await.unwrap().is_empty(), "{path}: content in the answer to a HEAD");
        let get_body = get.bytes().await.unwrap();
        if status == 200 {
            assert_eq!(head_length, Some(get_body.len()), "{path}");
        } else {
            assert!(head_length.is_some_and(|l| l > 0), "{path}: {head_length:?}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn instances_crud_masks_secrets_and_validates() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 1.0)).await;
    // Generated vendor secret, returned once.
    let (status, created) = server
        .call(
            "POST",
            "/instances",
            Some(&admin()),
            Some(json!({"element": {"key": "greenhouse"}, "name": "gen", "configuration": {
            "event.notification.enabled": "true", "event.notification.callback.url": rx.url(),
            "event.notification.signature.key": SIGNING_KEY, "api.key": "harvest-key", "custom": "kept"}})),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let secret = created["webhookSecret"].as_str().unwrap().to_owned();
    let id = id_of(&created);
    assert_eq!(created["webhookUrl"], format!("{}/events/greenhouse/{id}", server.base));
    assert_eq!(created["configuration"]["custom"], "kept");
    assert_eq!(created["configuration"]["event.notification.enabled"], true);
    assert_eq!(created["eventsEnabled"], true);
    let (_, got) = server.call("GET", &format!("/instances/{id}"), Some(&admin()), None).await;
    let (_, list) = server.call("GET", "/instances", Some(&admin()), None).await;
    for shown in [&created, &got, &list] {
        let text = shown.to_string();
        for s in [SIGNING_KEY, "harvest-key"] {
            assert!(!text.contains(s), "{s} leaked in {text}");
        }
    }
    for shown in [&got, &list] {
        let text = shown.to_string();
        assert!(
            !text.contains(&secret) && !text.contains(created["token"].as_str().unwrap()),
            "secret shown after creation"
        );
    }
    // The generated secret verifies Greenhouse deliveries.
    let (status, _) = server.webhook(id, &fixture("job_created.json"), &secret, None).await;
    assert_eq!(status, 200);
    rx.wait_for(1, WAIT).await;

    // Validation names the field and changes nothing.
    for (body, field) in [
        (json!({"element": {"key": "bamboohr"}, "name": "x", "configuration": {}}), "element.key"),
        (
            json!({"element": {"key": "greenhouse"}, "name": "x", "configuration": {"event.notification.callback.url": "http://169.254.169.254/latest/meta-data"}}),
            "event.notification.callback.url",
        ),
        (
            json!({"element": {"key": "greenhouse"}, "name": "x", "configuration": {"event.notification.callback.url": "https://10.0.0.8/hooks"}}),
            "event.notification.callback.url",
        ),
        (
            json!({"element": {"key": "greenhouse"}, "name": "x", "configuration": {"event.notification.callback.url": "https://192.168.1.10/hooks"}}),
            "event.notification.callback.url",
        ),
        (
            json!({"element": {"key": "greenhouse"}, "name": "x", "configuration": {"event.notification.enabled": "maybe"}}),
            "event.notification.enabled",
        ),
    ] {
        let (status, v) = server.call("POST", "/instances", Some(&admin()), Some(body)).await;
        assert_eq!(status, 400, "{v}");
        assert!(v["message"].as_str().unwrap().contains(field), "{v}");
    }
    let (_, list) = server.call("GET", "/instances", Some(&admin()), None).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // PATCH merges; masked values echoed back mean "unchanged".
    let (status, patched) = server
        .call("PATCH", &format!("/instances/{id}"), Some(&admin()), Some(json!({"name": "renamed", "configuration": {"event.notification.signature.key": "********", "custom": null}})))
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["name"], "renamed");
    assert!(patched["configuration"].get("custom").is_none());
    let (status, v) = server
        .call(
            "PATCH",
            &format!("/instances/{id}"),
            Some(&admin()),
            Some(json!({"configuration": {"event.notification.callback.url": "ftp://x"}})),
        )
        .await;
    assert_eq!(status, 400, "{v}");
    let (_, still) = server.call("GET", &format!("/instances/{id}"), Some(&admin()), None).await;
    assert_eq!(still["eventsNotificationCallbackUrl"], rx.url());
    // The signature key survived the masked echo: notifications still verify with it.
    server.webhook(id, &fixture("job_updated.json"), &secret, None).await;
    let got = rx.wait_for(2, WAIT).await;
    assert_signed(&got[1], SIGNING_KEY);

    // Disabled instances and deleted ones refuse deliveries with 404.
    server
        .call(
            "PATCH",
            &format!("/instances/{id}"),
            Some(&admin()),
            Some(json!({"configuration": {"event.notification.enabled": false}})),
        )
        .await;
    assert_eq!(server.webhook(id, &fixture("job_created.json"), &secret, None).await.0, 404);
    let (status, _) = server.call("DELETE", &format!("/instances/{id}"), Some(&admin()), None).await;
    assert_eq!(status, 200);
    assert_eq!(server.call("GET", &format!("/instances/{id}"), Some(&admin()), None).await.0, 404);
    assert_eq!(server.call("DELETE", &format!("/instances/{id}"), Some(&admin()), None).await.0, 404);
    assert_eq!(server.webhook(id, &fixture("job_created.json"), &secret, None).await.0, 404);
    // Ids are never reused.
    let again = server.create_instance(&rx.url(), json!({})).await;
    assert!(id_of(&again) > id);
    server.stop().await;
}

#[tokio::test]
async fn a_ping_is_recorded_and_not_forwarded() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 1.0)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let (status, v) = server.webhook(id_of(&inst), &fixture("ping.json"), VENDOR_KEY, None).await;
    assert_eq!(status, 200, "{v}");
    let (_, got) = server.call("GET", &format!("/instances/{}", inst["id"]), Some(&admin()), None).await;
    assert_eq!(got["lastPing"]["webHookId"], "48213");
    // A ping with a bad signature is refused like anything else.
    assert_eq!(server.webhook(id_of(&inst), &fixture("ping.json"), "wrong", None).await.0, 401);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(rx.received().is_empty());
    server.stop().await;
}

/// A fan-out over a big body would multiply it (every part carries `raw`): refused with a 413
/// before anything is stored, while one of a real size is delivered in parts.
#[tokio::test]
async fn a_fan_out_past_the_limits_of_a_delivery_is_refused_and_stores_nothing() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 1.0)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let id = id_of(&inst);
    let body = |n: u64| {
        let ids: Vec<String> = (0..n).map(|i| (10_000_000 + i).to_string()).collect();
        format!(
            r#"{{"action":"delete_candidate","payload":{{"person":{{"id":1,"deleted_application_ids":[{}]}}}}}}"#,
            ids.join(",")
        )
    };
    // 12,000 ids in 108 KB: 600 parts, 65 MB before there was a limit.
    let (status, r) = server.webhook(id, body(12_000).as_bytes(), VENDOR_KEY, Some("fan-big")).await;
    assert_eq!(status, 413, "{r}");
    assert!(r["message"].as_str().unwrap().contains("601 notifications"), "{r}");
    assert!(r["requestId"].is_string(), "{r}");
    assert!(server.events(id, "").await.is_empty());
    // 45 ids (the candidate itself makes the 46th event): three parts, all delivered.
    let (status, r) = server.webhook(id, body(45).as_bytes(), VENDOR_KEY, Some("fan-ok")).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(rx.wait_for(3, WAIT).await.len(), 3);
    server.stop().await;
}

/// Reads until the server closes the connection; `None` if it has not within `limit` (so a
/// server that never closes fails the test instead of hanging it).
async fn read_until_closed(stream: &mut tokio::net::TcpStream, limit: Duration) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut got = vec![];
    match tokio::time::timeout(limit, stream.read_to_end(&mut got)).await {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => None,
    }
}

#[tokio::test]
async fn slow_and_idle_clients_are_cut_off_and_do_not_hold_a_stop() {
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;
    let dir = tmp();
    let rx = Receiver::start().await;
    let mut c = config(dir.path(), 1.0);
    c.read_timeout = Duration::from_millis(300);
    let server = Server::start(c).await;
    let addr = server.running.as_ref().unwrap().addr;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let id = id_of(&inst);
    let body = fixture("job_created.json");
    let head = format!(
        "POST /events/greenhouse/{id} HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
         Signature: {}\r\nContent-Length: {}\r\n",
        greenhouse_signature(VENDOR_KEY, &body),
        body.len()
    );

    // Headers never finished: the connection is closed, without an answer.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    assert_eq!(read_until_closed(&mut s, WAIT).await.as_deref(), Some(""), "headers never finished");

    // A body that stops halfway: a JSON 408, the connection closed, nothing queued.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\n").as_bytes()).await.unwrap();
    s.write_all(&body[..body.len() / 2]).await.unwrap();
    let answer = read_until_closed(&mut s, WAIT).await.expect("a body that stops halfway");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    let json: Value = serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(json["message"].as_str().unwrap().contains("did not arrive"), "{json}");
    assert!(json["requestId"].is_string(), "{json}");
    assert!(server.events(id, "").await.is_empty());

    // An idle keep-alive connection, after a complete request, is closed as well.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\n").as_bytes()).await.unwrap();
    s.write_all(&body).await.unwrap();
    let answer = read_until_closed(&mut s, WAIT).await.expect("an idle connection");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(server.events(id, "").await.len(), 1);
    rx.wait_for(1, WAIT).await;

    // A stop waits for a client in the middle of a body only until the read timeout, and
    // what was answered 200 stays delivered.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("{head}\r\n").as_bytes()).await.unwrap();
    s.write_all(&body[..10]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    tokio::time::timeout(WAIT, server.stop()).await.expect("the stop waited for a stalled client");
    assert!(read_until_closed(&mut s, WAIT).await.is_some());
    assert_eq!(rx.received().len(), 1);
}

#[tokio::test]
async fn the_network_policy_is_enforced_again_at_delivery_time() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 0.001)).await;
    let callback = format!("http://localhost:{}/hooks", rx.addr.port());
    let inst = server.create_instance(&callback, json!({})).await;
    server.stop().await;
    // Same database, a deployment that no longer allows loopback: the stored URL now resolves
    // to a refused address, and the attempt is logged as blocked, never sent.
    let mut c = config(dir.path(), 0.001);
    c.policy = relay_core::network::NetworkPolicy::default();
    let server = Server::start(c).await;
    let (status, r) = server.webhook(id_of(&inst), &fixture("job_created.json"), VENDOR_KEY, None).await;
    assert_eq!(status, 200);
    let event_id = r["eventId"].as_str().unwrap();
    let a = server.first_attempt(id_of(&inst), event_id, WAIT).await;
    assert!(a["error"].as_str().unwrap().starts_with("blocked"), "{a}");
    assert!(rx.received().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_receiver_behind_a_private_ca_is_delivered_to_once_its_root_is_configured() {
    let dir = tmp();
    let (rx, pem) = Receiver::start_tls().await;
    assert!(rx.url().starts_with("https://localhost:"));
    // The system's roots do not vouch for the receiver: the attempt fails on its certificate.
    let server = Server::start(config(dir.path(), 0.001)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let (status, r) = server.webhook(id_of(&inst), &fixture("job_created.json"), VENDOR_KEY, None).await;
    assert_eq!(status, 200);
    let refused = r["eventId"].as_str().unwrap();
    let error = server.first_attempt(id_of(&inst), refused, WAIT).await["error"].as_str().unwrap().to_owned();
    assert!(error.to_lowercase().contains("certificate"), "{error}");
    assert!(rx.received().is_empty());
    server.stop().await;

    // `CALLBACK_CA_BUNDLE` names its root: delivered, signed as ever.
    let bundle = dir.path().join("private-ca.pem");
    std::fs::write(&bundle, pem).unwrap();
    let mut c = config(dir.path(), 0.001);
    c.callback_ca_bundle = Some(bundle);
    let server = Server::start(c).await;
    let (status, r) = server.webhook(id_of(&inst), &fixture("offer_created.json"), VENDOR_KEY, None).await;
    assert_eq!(status, 200);
    let delivered = r["eventId"].as_str().unwrap();
    server.wait_status(id_of(&inst), delivered, "delivered", WAIT).await;
    // (The refused one's next attempt may arrive too, now that its receiver is trusted.)
    let got = rx.received();
    let received = got.iter().find(|g| g.json()["message"]["eventId"] == delivered).expect("received");
    assert_signed(received, SIGNING_KEY);
    server.stop().await;
}

#[tokio::test]
async fn delivered_notifications_are_purged_after_the_retention_and_failed_ones_kept() {
    let logs = harness::calls::Logs::default();
    let _capture = logs.install("info");
    let dir = tmp();
    let rx = Receiver::start().await;
    // The first delivery is dead-lettered at once (410), the second delivered.
    rx.script([Reply::status(410)]);
    let mut c = config(dir.path(), 0.001);
    c.worker.retention = Duration::from_millis(500);
    c.worker.purge_every = Duration::from_millis(100);
    let server = Server::start(c).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let id = id_of(&inst);
    let (_, r) = server.webhook(id, &fixture("offer_created.json"), VENDOR_KEY, Some("g-failed")).await;
    let failed = r["eventId"].as_str().unwrap().to_owned();
    server.wait_status(id, &failed, "failed", WAIT).await;
    let (_, r) = server.webhook(id, &fixture("job_created.json"), VENDOR_KEY, Some("g-delivered")).await;
    let delivered = r["eventId"].as_str().unwrap().to_owned();
    server.wait_status(id, &delivered, "delivered", WAIT).await;

    // Gone with its attempts once past the retention; the failed one stays.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let ids: Vec<String> =
            server.events(id, "").await.iter().map(|e| e["eventId"].as_str().unwrap().to_owned()).collect();
        if ids == [failed.clone()] {
            break;
        }
        assert!(ids.contains(&failed), "{ids:?}");
        assert!(std::time::Instant::now() < deadline, "not purged: {ids:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = server.call("GET", &format!("/instances/{id}/events/{delivered}"), Some(&admin()), None).await;
    assert_eq!(status, 404);
    // Its dedupe key outlives it (72 h): Greenhouse's retry is still answered, not queued again.
    let (status, r) = server.webhook(id, &fixture("job_created.json"), VENDOR_KEY, Some("g-delivered")).await;
    assert_eq!((status, r["eventId"].as_str()), (200, Some(delivered.as_str())));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.received().len(), 2);
    assert_eq!(server.events(id, "").await.len(), 1);
    // The key expires 72 hours after the delivery was accepted, a few moments ago.
    let conn = rusqlite::Connection::open(dir.path().join("relay.db")).unwrap();
    let expires_at: i64 =
        conn.query_row("SELECT expires_at FROM dedupe WHERE event_id = ?1", [&delivered], |r| r.get(0)).unwrap();
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let left = Duration::from_millis((expires_at - now_ms).max(0) as u64);
    assert!(left > Duration::from_secs(71 * 3600) && left <= Duration::from_secs(72 * 3600), "{left:?} left");
    server.stop().await;
    // A purge that deleted something says so, once, with the count; the many that found
    // nothing (one every 100 ms here) say nothing.
    let text = logs.take();
    let purges: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|l| l["fields"]["message"].as_str().is_some_and(|m| m.starts_with("purged")))
        .collect();
    assert_eq!(purges.len(), 1, "{text}");
    assert_eq!((&purges[0]["level"], &purges[0]["fields"]["rows"]), (&json!("INFO"), &json!(1)));
}

#[tokio::test]
async fn accepted_events_survive_a_restart() {
    let dir = tmp();
    // No receiver yet: attempts fail (connection refused) and stay pending.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = Server::start(config(dir.path(), 0.001)).await;
    let inst = server.create_instance(&format!("http://127.0.0.1:{port}/hooks"), json!({})).await;
    let mut ids = vec![];
    for i in 0..20 {
        let body = format!(r#"{{"action":"job_created","payload":{{"job":{{"id":{i}}}}}}}"#);
        let (status, r) = server.webhook(id_of(&inst), body.as_bytes(), VENDOR_KEY, None).await;
        assert_eq!(status, 200);
        ids.push(r["eventId"].as_str().unwrap().to_owned());
    }
    // Redelivering a notification that is still pending is a no-op, not a 404.
    let (status, v) = server
        .call("POST", &format!("/instances/{}/events/{}/redeliver", inst["id"], ids[0]), Some(&admin()), None)
        .await;
    assert_eq!(status, 200, "{v}");
    server.stop().await;
    let rx = Receiver::start_on(&format!("127.0.0.1:{port}")).await;
    let server = Server::start(config(dir.path(), 0.001)).await;
    let got = rx.wait_for(20, WAIT).await;
    let mut seen: Vec<String> = got.iter().map(|r| r.header("webhook-id")).collect();
    seen.sort();
    seen.dedup();
    ids.sort();
    assert_eq!(seen, ids);
    server.stop().await;
}

trait JsonBody {
    async fn json_body(self) -> Value;
}

impl JsonBody for reqwest::Response {
    async fn json_body(self) -> Value {
        serde_json::from_slice(&self.bytes().await.unwrap()).unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn a_store_that_cannot_write_answers_503_and_acknowledges_nothing() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 1.0)).await;
    let inst = server.create_instance(&rx.url(), json!({})).await;
    let body = br#"{"action":"job_created","payload":{"job":{"id":77}}}"#;
    // Another process holds the database's write lock: the writer's transaction cannot begin
    // and gives up after its busy timeout.
    let path = dir.path().join("relay.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let holder = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(path).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        locked_tx.send(()).unwrap();
        release_rx.recv().unwrap();
        conn.execute_batch("ROLLBACK").unwrap();
    });
    locked_rx.recv().unwrap();
    let (status, v) = server.webhook(id_of(&inst), body, VENDOR_KEY, Some("busy-1")).await;
    assert_eq!(status, 503, "{v}");
    assert!(v["message"].is_string() && v["requestId"].is_string());
    release_tx.send(()).unwrap();
    holder.join().unwrap();
    // Nothing was acknowledged: Greenhouse's retry is queued (not a duplicate) and delivered.
    let (status, v) = server.webhook(id_of(&inst), body, VENDOR_KEY, Some("busy-1")).await;
    assert_eq!(status, 200, "{v}");
    assert!(v.get("duplicate").is_none(), "{v}");
    rx.wait_for(1, WAIT).await;
    server.stop().await;
}

/// GETs a page of the events list: its notifications and its `next` link, if any.
async fn page(server: &Server, path: &str) -> (Vec<Value>, Option<String>, usize) {
    // A path of ours, or a `next` link (absolute, on the server's base URL).
    let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", server.base) };
    let resp = server.http.get(url).header("authorization", admin()).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let next = resp.headers().get("link").map(|l| {
        let l = l.to_str().unwrap();
        assert!(l.ends_with(r#">; rel="next""#), "{l}");
        let url = l.trim_start_matches('<').split('>').next().unwrap();
        assert!(url.starts_with(&server.base), "{url} is on {}", server.base);
        url.to_owned()
    });
    let bytes = resp.bytes().await.unwrap();
    (serde_json::from_slice::<Vec<Value>>(&bytes).unwrap(), next, bytes.len())
}

/// The length of each item of a list as the server wrote it (not re-serialised).
async fn raw_items(server: &Server, path: &str) -> Vec<usize> {
    let url = if path.starts_with("http") { path.to_owned() } else { format!("{}{path}", server.base) };
    let resp = server.http.get(url).header("authorization", admin()).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let bytes = resp.bytes().await.unwrap();
    let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&bytes).unwrap();
    items.iter().map(|i| i.get().len()).collect()
}

#[tokio::test]
async fn the_events_list_pages_with_a_next_link_and_stays_under_4_mib() {
    let dir = tmp();
    let rx = Receiver::start().await;
    rx.script((0..5).map(|_| Reply::status(410)));
    let server = Server::start(config(dir.path(), 0.001)).await;
    let id = id_of(&server.create_instance(&rx.url(), json!({})).await);
    let mut ids = vec![];
    for n in 0..5 {
        let body = format!(r#"{{"action":"job_deleted","payload":{{"job":{{"id":{n}}}}}}}"#);
        let (_, r) = server.webhook(id, body.as_bytes(), VENDOR_KEY, Some(&format!("p{n}"))).await;
        ids.push(r["eventId"].as_str().unwrap().to_owned());
    }
    for e in &ids {
        server.wait_status(id, e, "failed", WAIT).await;
    }
    // Pages of two, newest first, the filter kept in the link (without the empty parameter, and
    // with one `before`, the new one); together every one, once.
    let mut path = format!("/instances/{id}/events?status=failed&&limit=2");
    let mut seen: Vec<Value> = vec![];
    let mut pages = 0;
    loop {
        let (events, next, _) = page(&server, &path).await;
        pages += 1;
        assert!(events.len() <= 2 && pages <= 3, "page {pages}: {path}");
        seen.extend(events);
        match next {
            Some(n) => {
                assert!(n.contains("?status=failed&limit=2&before="), "{n}");
                assert_eq!(n.matches("before=").count(), 1, "{n}");
                path = n;
            }
            None => break,
        }
    }
    assert_eq!(pages, 3, "2 + 2 + 1, and no link after the last");
    assert_eq!(seen.len(), 5);
    let mut got: Vec<String> = seen.iter().map(|e| e["eventId"].as_str().unwrap().to_owned()).collect();
    let order = got.clone();
    got.sort();
    got.dedup();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(got, want);
    let (all, next, _) = page(&server, &format!("/instances/{id}/events")).await;
    assert!(next.is_none());
    let all: Vec<String> = all.iter().map(|e| e["eventId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(all, order, "the pages follow the list's order");
    // A cursor that is not one is a 400 naming the parameter.
    for bad in ["x", "12_", "_abc", "-1_abc", "1_a%20b"] {
        let (status, body) =
            server.call("GET", &format!("/instances/{id}/events?before={bad}"), Some(&admin()), None).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert!(body["message"].as_str().unwrap().starts_with("before:"), "{body}");
    }

    // Five notifications of about 1 MB: the page ends before 4 MiB, with a link to the rest.
    let mut big = vec![];
    for n in 0..5 {
        let body = format!(
            r#"{{"action":"job_created","payload":{{"job":{{"id":{n},"notes":"{}"}}}}}}"#,
            "b".repeat(1_000_000)
        );
        let (status, r) = server.webhook(id, body.as_bytes(), VENDOR_KEY, Some(&format!("big{n}"))).await;
        assert_eq!(status, 200, "{r}");
        big.push(r["eventId"].as_str().unwrap().to_owned());
    }
    // Delivered first, so that nothing in them changes between the reads below.
    for e in &big {
        server.wait_status(id, e, "delivered", WAIT).await;
    }
    let (first, next, bytes) = page(&server, &format!("/instances/{id}/events?limit=10")).await;
    assert!(bytes <= 4 * 1024 * 1024, "{bytes}");
    assert!((1..5).contains(&first.len()), "{}", first.len());
    let next = next.expect("a next link");
    let (rest, _, _) = page(&server, &next).await;
    // The page ends only because the next one would take it past 4 MiB (`,` + it).
    let following = raw_items(&server, &next).await[0];
    assert!(bytes + 1 + following > 4 * 1024 * 1024, "{bytes} + 1 + {following}: the page could hold one more");
    let firsts: Vec<&str> = first.iter().chain(&rest).take(5).map(|e| e["eventId"].as_str().unwrap()).collect();
    let mut firsts_sorted = firsts.clone();
    firsts_sorted.sort();
    let mut big_sorted: Vec<&str> = big.iter().map(String::as_str).collect();
    big_sorted.sort();
    assert_eq!(firsts_sorted, big_sorted, "the newest five are the large ones, none skipped or repeated");
    server.stop().await;
}

#[tokio::test]
async fn the_instances_list_pages_with_cloud_elements_tokens_and_stays_under_4_mib() {
    let dir = tmp();
    let rx = Receiver::start().await;
    let server = Server::start(config(dir.path(), 1.0)).await;
    let get = |path: String| {
        let req = server.http.get(if path.starts_with("http") { path } else { format!("{}{path}", server.base) });
        async move {
            let resp = req.header("authorization", admin()).send().await.unwrap();
            assert_eq!(resp.status(), 200);
            let token = resp.headers().get("elements-next-page-token").map(|t| t.to_str().unwrap().to_owned());
            let link = resp
                .headers()
                .get("link")
                .map(|l| l.to_str().unwrap().trim_start_matches('<').split('>').next().unwrap().to_owned());
            assert_eq!(token.is_some(), link.is_some());
            let bytes = resp.bytes().await.unwrap();
            let ids: Vec<i64> = serde_json::from_slice::<Vec<Value>>(&bytes).unwrap().iter().map(id_of).collect();
            (ids, token, link, bytes.len())
        }
    };
    // Five instances, the third deleted: pages of two skip it, in id order.
    let mut ids = vec![];
    for _ in 0..5 {
        ids.push(id_of(&server.create_instance(&rx.url(), json!({})).await));
    }
    let (status, _) = server.call("DELETE", &format!("/instances/{}", ids[2]), Some(&admin()), None).await;
    assert_eq!(status, 200);
    let live: Vec<i64> = ids.iter().copied().filter(|i| *i != ids[2]).collect();
    let (first, token, link, _) = get("/instances?pageSize=2".into()).await;
    assert_eq!(first, live[..2]);
    assert_eq!(token.as_deref(), Some(live[1].to_string().as_str()));
    assert_eq!(link.as_deref(), Some(format!("{}/instances?pageSize=2&nextPage={}", server.base, live[1]).as_str()));
    let (second, token, link, _) = get(format!("/instances?pageSize=2&nextPage={}", token.unwrap())).await;
    assert_eq!(second, live[2..]);
    assert_eq!((token, link), (None, None), "nothing after the last page");
    let (via_link, _, _, _) = get(format!("{}/instances?pageSize=2&nextPage={}", server.base, live[1])).await;
    assert_eq!(via_link, live[2..]);
    // Without pageSize: every one, as before, with no token.
    let (all, token, _, _) = get("/instances".into()).await;
    assert_eq!((all, token), (live.clone(), None));
    // Parameters that are not ones are a 400 naming them.
    for (query, name) in [
        ("pageSize=0", "pageSize:"),
        ("pageSize=501", "pageSize:"),
        ("pageSize=x", "pageSize:"),
        ("nextPage=abc", "nextPage:"),
        ("nextPage=-3", "nextPage:"),
        ("nextPage=0", "nextPage:"),
    ] {
        let (status, body) = server.call("GET", &format!("/instances?{query}"), Some(&admin()), None).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert!(body["message"].as_str().unwrap().starts_with(name), "{body}");
    }
    // Instances whose JSON passes 4 MiB together (each near the 64 KiB a configuration may
    // hold): the list without pageSize ends early, with a token, and the next page has the rest.
    let big = "x".repeat(60_000);
    let mut heavy = vec![];
    for _ in 0..72 {
        heavy.push(id_of(&server.create_instance(&rx.url(), json!({"notes": big})).await));
    }
    let (page, token, _, bytes) = get("/instances".into()).await;
    assert!(bytes <= 4 * 1024 * 1024, "{bytes}");
    assert!(page.len() < live.len() + heavy.len());
    let rest_path = format!("/instances?nextPage={}", token.expect("a token after the cut"));
    let (rest, token, _, _) = get(rest_path.clone()).await;
    assert_eq!(token, None);
    let following = raw_items(&server, &rest_path).await[0];
    assert!(bytes + 1 + following > 4 * 1024 * 1024, "{bytes} + 1 + {following}: the page could hold one more");
    assert_eq!([page, rest].concat(), [live, heavy].concat());
    server.stop().await;
}

#[tokio::test]
async fn a_second_server_on_the_same_database_is_refused_until_the_first_stops() {
    let dir = tmp();
    let first = Server::start(config(dir.path(), 1.0)).await;
    let refused = greenhouse_relay::start(config(dir.path(), 1.0)).await.err().expect("a second server started");
    assert!(refused.contains("in use by another process"), "{refused}");
    first.stop().await;
    // Stopped: the database is free again (the same process may open it at once).
    let again = Server::start(config(dir.path(), 1.0)).await;
    again.stop().await;
}
