//! Every file in `../shared/fixtures/greenhouse` (a new fixture is tested without new code):
//! it verifies with its recorded signature and no other, maps exactly per the table of
//! `greenhouse-webhooks.md`, and its notification carries the body unchanged.

use std::path::PathBuf;

use relay_core::greenhouse::{self, Mapping, SignatureError};
use relay_core::ingest::{Prepared, prepare};
use relay_core::instance::{InstanceSpec, Settings};
use relay_core::ports::Instance;
use serde_json::Value;

fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("GREENHOUSE_FIXTURES") {
        return dir.into();
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/greenhouse")
}

struct Fixture {
    name: String,
    bytes: Vec<u8>,
    signature: String,
}

fn load() -> (String, Vec<Fixture>) {
    let dir = fixtures_dir();
    let sigs: Value =
        serde_json::from_slice(&std::fs::read(dir.join("_signatures.json")).expect("fixtures present")).unwrap();
    let secret = sigs["secret_key"].as_str().unwrap().to_owned();
    let mut out = vec![];
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".json") || name.starts_with('_') {
            continue;
        }
        let signature =
            sigs["signatures"][&name].as_str().unwrap_or_else(|| panic!("no signature for {name}")).to_owned();
        out.push(Fixture { bytes: std::fs::read(&path).unwrap(), name, signature });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    assert!(out.len() >= 30, "expected the 29 actions and ping, found {}", out.len());
    (secret, out)
}

/// The table, written independently of the implementation: (objectType, eventType, id path).
fn table(action: &str) -> Option<(&'static str, &'static str, &'static [&'static str])> {
    Some(match action {
        "new_candidate_application" | "new_prospect_application" => ("applications", "CREATED", &["application", "id"]),
        "application_updated"
        | "candidate_stage_change"
        | "hire_candidate"
        | "unhire_candidate"
        | "reject_candidate"
        | "unreject_candidate" => ("applications", "UPDATED", &["application", "id"]),
        "delete_application" => ("applications", "DELETED", &["application", "id"]),
        "update_candidate" => ("candidates", "UPDATED", &["candidate", "id"]),
        "candidate_anonymized" => ("candidates", "UPDATED", &["candidate_id"]),
        "delete_candidate" | "merge_candidate" => ("candidates", "DELETED", &["person", "id"]),
        "offer_created" => ("offers", "CREATED", &["id"]),
        "offer_approved" | "offer_updated" => ("offers", "UPDATED", &["id"]),
        "offer_deleted" => ("offers", "DELETED", &["offer", "id"]),
        "job_created" => ("jobs", "CREATED", &["job", "id"]),
        "job_updated" | "job_approved" => ("jobs", "UPDATED", &["job", "id"]),
        "job_deleted" => ("jobs", "DELETED", &["job", "id"]),
        "job_post_created" => ("job-posts", "CREATED", &["id"]),
        "job_post_updated" => ("job-posts", "UPDATED", &["id"]),
        "job_post_deleted" => ("job-posts", "DELETED", &["job_post", "id"]),
        "job_interview_stage_deleted" => ("job-stages", "DELETED", &["job_interview_stage", "id"]),
        "interview_deleted" => ("scheduled-interviews", "DELETED", &["interview", "id"]),
        "scorecard_deleted" => ("scorecards", "DELETED", &["scorecard", "id"]),
        "department_deleted" => ("departments", "DELETED", &["department", "id"]),
        "office_deleted" => ("offices", "DELETED", &["office", "id"]),
        _ => return None,
    })
}

fn expected(body: &Value) -> Vec<(String, String, String)> {
    let action = body["action"].as_str().unwrap();
    let payload = &body["payload"];
    let id = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let (object_type, event_type, path) =
        table(action).unwrap_or_else(|| panic!("fixture with unknown action {action}"));
    let at = path.iter().fold(payload, |v, k| &v[*k]);
    let mut out = vec![(object_type.to_owned(), id(at), event_type.to_owned())];
    if action == "delete_candidate" {
        for a in payload["person"]["deleted_application_ids"].as_array().into_iter().flatten() {
            out.push(("applications".into(), id(a), "DELETED".into()));
        }
    }
    if action == "merge_candidate" && !payload["person"]["new_candidate_id"].is_null() {
        out.push(("candidates".into(), id(&payload["person"]["new_candidate_id"]), "UPDATED".into()));
    }
    out
}

fn instance(secret: &str) -> Instance {
    Instance {
        id: 476120,
        spec: InstanceSpec {
            name: "acme-prod".into(),
            tags: vec!["acme".into()],
            configuration: Default::default(),
            settings: Settings {
                events_enabled: true,
                callback_url: Some("https://r.example/".into()),
                signature_keys: vec!["sig".into()],
                vendor_keys: vec!["another-key".into(), secret.into()],
            },
        },
        token_hash: String::new(),
        created_at_ms: 0,
        last_ping: None,
    }
}

#[test]
fn every_fixture_verifies_only_with_its_key_and_exact_bytes() {
    let (secret, fixtures) = load();
    for f in &fixtures {
        let sig = Some(f.signature.as_bytes());
        assert_eq!(greenhouse::verify_signature(sig, &f.bytes, &[&secret]), Ok(()), "{}", f.name);
        assert_eq!(
            greenhouse::verify_signature(sig, &f.bytes, &["gh_fixture_secret_not_rea1"]),
            Err(SignatureError::Mismatch),
            "{}",
            f.name
        );
        // Any one byte changed breaks it; re-serialising (what a careless verifier does) too.
        let stride = (f.bytes.len() / 64).max(1);
        for i in (0..f.bytes.len()).step_by(stride).chain([f.bytes.len() - 1]) {
            let mut changed = f.bytes.clone();
            changed[i] ^= 0x01;
            assert_eq!(
                greenhouse::verify_signature(sig, &changed, &[&secret]),
                Err(SignatureError::Mismatch),
                "{} byte {i}",
                f.name
            );
        }
        let reserialised = serde_json::to_vec(&serde_json::from_slice::<Value>(&f.bytes).unwrap()).unwrap();
        assert!(greenhouse::verify_signature(sig, &reserialised, &[&secret]).is_err(), "{}", f.name);
    }
}

#[test]
fn every_fixture_maps_per_the_table_and_keeps_raw() {
    let (secret, fixtures) = load();
    let inst = instance(&secret);
    for f in &fixtures {
        let body: Value = serde_json::from_slice(&f.bytes).unwrap();
        let prepared =
            prepare(&inst, Some(f.signature.as_bytes()), Some("evt-1"), &f.bytes, 1_772_473_211_000).unwrap();
        if body["action"] == "ping" {
            let Prepared::Ping { web_hook_id } = prepared else { panic!("ping not recognised") };
            assert_eq!(web_hook_id.as_deref(), Some(body["payload"]["web_hook_id"].to_string().as_str()));
            let w = greenhouse::parse_webhook(&f.bytes).unwrap();
            assert!(matches!(w.mapping, Mapping::Ping { .. }));
            continue;
        }
        let Prepared::Notifications { notifications, action, .. } = prepared else {
            panic!("{} not forwarded", f.name)
        };
        assert_eq!(action, body["action"].as_str().unwrap());
        let mut got = vec![];
        for n in &notifications {
            let v: Value = serde_json::from_slice(&n.body).unwrap();
            let m = &v["message"];
            assert_eq!(m["raw"], body, "{}: raw differs", f.name);
            assert_eq!(m["eventId"], n.event_id.as_str());
            assert_eq!(m["instanceId"], 476120);
            assert_eq!(v["createdDate"], "2026-03-02T17:40:11Z");
            for e in m["events"].as_array().unwrap() {
                assert_eq!(e["elementKey"], "greenhouse");
                assert_eq!(e["date"], "2026-03-02T17:40:11Z");
                got.push((
                    e["objectType"].as_str().unwrap().to_owned(),
                    e["objectId"].as_str().unwrap().to_owned(),
                    e["eventType"].as_str().unwrap().to_owned(),
                ));
            }
            // The escapes Greenhouse used are still there, byte for byte.
            let text = std::str::from_utf8(&n.body).unwrap();
            assert!(text.contains(std::str::from_utf8(&f.bytes).unwrap().trim()), "{}: raw not verbatim", f.name);
        }
        assert_eq!(got, expected(&body), "{}", f.name);
    }
}

#[test]
fn every_documented_action_has_a_fixture() {
    let (_, fixtures) = load();
    let actions: Vec<String> = fixtures
        .iter()
        .map(|f| serde_json::from_slice::<Value>(&f.bytes).unwrap()["action"].as_str().unwrap().to_owned())
        .collect();
    for known in greenhouse::known_actions() {
        assert!(actions.iter().any(|a| a == known), "no fixture for {known}");
    }
}
