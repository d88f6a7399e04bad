//! The whole ingest core (verify + parse + map + build + sign) over every fixture, beside two
//! baselines on the same bytes, measured in the same run. "sign" is the notification's
//! signature (`Elements-Webhook-Signature`, HMAC of the exact bytes), the one HMAC over the
//! notification that the floor also has. The Standard Webhooks `webhook-signature` covers each
//! attempt's timestamp and is computed per attempt; `core_sw` adds it, reported beside.
//! Baselines:
//! - naive: `serde_json::from_slice::<Value>` alone;
//! - floor: one HMAC-SHA256 over the body + one validating `IgnoredAny` scan + one HMAC-SHA256
//!   over the notification;
//! - hmacs: the part of the floor no implementation can skip, the two HMAC-SHA256 passes alone
//!   (verifying the body, signing the notification). Its ratio to the naive parse is the lowest
//!   core/naive any implementation can reach with this HMAC on this machine.
//!
//! After the measurements it prints, per fixture and as medians, core/naive and core/floor.

use std::hint::black_box;
use std::path::PathBuf;

use criterion::Criterion;
use hmac::{Hmac, KeyInit, Mac};
use relay_core::ingest::{Prepared, prepare};
use relay_core::instance::{InstanceSpec, Settings};
use relay_core::notification;
use relay_core::ports::Instance;
use sha2::Sha256;

fn fixtures() -> (String, Vec<(String, Vec<u8>, String)>) {
    let dir = std::env::var("GREENHOUSE_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/fixtures/greenhouse"));
    let sigs: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("_signatures.json")).unwrap()).unwrap();
    let mut out = vec![];
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".json") && !name.starts_with('_') && name != "ping.json" {
            let sig = sigs["signatures"][&name].as_str().unwrap().to_owned();
            out.push((name.trim_end_matches(".json").to_owned(), std::fs::read(&p).unwrap(), sig));
        }
    }
    out.sort();
    (sigs["secret_key"].as_str().unwrap().to_owned(), out)
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
                signature_keys: vec!["conformance-signing-key-0f1e2d3c".into()],
                vendor_keys: vec![secret.into()],
            },
        },
        token_hash: String::new(),
        created_at_ms: 0,
        last_ping: None,
    }
}

fn notifications(inst: &Instance, sig: &str, body: &[u8]) -> Vec<notification::Notification> {
    let Ok(Prepared::Notifications { notifications, .. }) =
        prepare(inst, Some(sig.as_bytes()), Some("evt-1"), body, 1_772_473_211_000)
    else {
        panic!("fixture refused")
    };
    notifications
}

/// verify + parse + map + build + the notification's signature.
fn core(inst: &Instance, sig: &str, body: &[u8]) -> usize {
    let key = inst.settings().signature_keys.first().map(String::as_bytes).unwrap_or_default();
    notifications(inst, sig, body).iter().map(|n| notification::elements_signature(key, &n.body).len()).sum()
}

/// Everything the first attempt needs: the core plus every header, both signatures included.
fn core_sw(inst: &Instance, sig: &str, body: &[u8]) -> usize {
    let keys = &inst.settings().signature_keys;
    notifications(inst, sig, body)
        .iter()
        .map(|n| notification::headers(&n.body, &n.event_id, keys, 1_772_473_211).len())
        .sum()
}

fn floor(key: &[u8], body: &[u8], notification: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    let a = mac.finalize().into_bytes();
    serde_json::from_slice::<serde::de::IgnoredAny>(body).unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(notification);
    let mut out: [u8; 32] = mac.finalize().into_bytes().into();
    out[0] ^= a[0];
    out
}

/// The two HMAC passes the core cannot avoid: the body's and the notification's.
fn hmacs(key: &[u8], body: &[u8], notification: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(body);
    let a = mac.finalize().into_bytes();
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(notification);
    let mut out: [u8; 32] = mac.finalize().into_bytes().into();
    out[0] ^= a[0];
    out
}

fn main() {
    let (secret, fixtures) = fixtures();
    let inst = instance(&secret);
    let mut c = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_millis(800))
        .sample_size(30)
        .without_plots()
        .nresamples(20_000)
        .configure_from_args();
    for (name, body, sig) in &fixtures {
        let Ok(Prepared::Notifications { notifications, .. }) =
            prepare(&inst, Some(sig.as_bytes()), Some("evt-1"), body, 0)
        else {
            panic!("{name} refused")
        };
        let note = notifications[0].body.clone();
        let mut g = c.benchmark_group(format!("ingest/{name}"));
        g.bench_function("core", |b| b.iter(|| core(&inst, black_box(sig), black_box(body))));
        g.bench_function("core_sw", |b| b.iter(|| core_sw(&inst, black_box(sig), black_box(body))));
        g.bench_function("naive", |b| b.iter(|| serde_json::from_slice::<serde_json::Value>(black_box(body)).unwrap()));
        g.bench_function("floor", |b| b.iter(|| floor(secret.as_bytes(), black_box(body), black_box(&note))));
        g.bench_function("hmacs", |b| b.iter(|| hmacs(secret.as_bytes(), black_box(body), black_box(&note))));
        g.finish();
    }
    c.final_summary();
    summarize(&fixtures.iter().map(|f| (f.0.clone(), f.1.len())).collect::<Vec<_>>());
}

/// Reads criterion's medians back and prints the ratios the targets are stated in.
fn summarize(names: &[(String, usize)]) {
    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let median = |group: &str, f: &str| -> Option<f64> {
        let p = target.join("criterion").join(format!("ingest_{group}")).join(f).join("new/estimates.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
        v["median"]["point_estimate"].as_f64()
    };
    let (mut vs_naive, mut vs_floor, mut sw_vs_floor, mut floor_vs_naive, mut hmacs_vs_naive) =
        (vec![], vec![], vec![], vec![], vec![]);
    // core/naive on the bodies of 2 KB and more, where HMAC's fixed cost weighs less.
    let mut large_vs_naive = vec![];
    println!(
        "\n{:<28} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "fixture",
        "bytes",
        "core ns",
        "+sw ns",
        "naive ns",
        "floor ns",
        "hmacs ns",
        "c/naive",
        "c/floor",
        "+sw/floor",
        "fl/naive",
        "hm/naive"
    );
    for (name, len) in names {
        let (Some(c), Some(s), Some(n), Some(f), Some(h)) = (
            median(name, "core"),
            median(name, "core_sw"),
            median(name, "naive"),
            median(name, "floor"),
            median(name, "hmacs"),
        ) else {
            continue;
        };
        vs_naive.push(c / n);
        if *len >= 2048 {
            large_vs_naive.push(c / n);
        }
        vs_floor.push(c / f);
        sw_vs_floor.push(s / f);
        floor_vs_naive.push(f / n);
        hmacs_vs_naive.push(h / n);
        println!(
            "{name:<28} {len:>6} {c:>9.0} {s:>9.0} {n:>9.0} {f:>9.0} {h:>9.0} {:>8.3} {:>8.3} {:>9.3} {:>9.3} {:>9.3}",
            c / n,
            c / f,
            s / f,
            f / n,
            h / n
        );
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
    };
    println!(
        "\nmedian over {} fixtures: core/naive = {:.3} (target <= 0.5), core/floor = {:.3} (target <= 2.0)",
        vs_naive.len(),
        med(&mut vs_naive),
        med(&mut vs_floor)
    );
    println!(
        "with the per-attempt webhook-signature too: core+sw/floor = {:.3}; the floor alone is {:.3}x the naive parse",
        med(&mut sw_vs_floor),
        med(&mut floor_vs_naive)
    );
    println!(
        "on the {} fixtures of 2 KB and more: core/naive = {:.3} (median)",
        large_vs_naive.len(),
        med(&mut large_vs_naive)
    );
    let above_target = hmacs_vs_naive.iter().filter(|r| **r > 0.5).count();
    println!(
        "the two HMAC passes alone are {:.3}x the naive parse (median); above 0.5x on {above_target} of {} fixtures",
        med(&mut hmacs_vs_naive),
        hmacs_vs_naive.len()
    );
}
