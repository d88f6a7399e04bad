//! The delivery worker's claim on a backlog: 100,000 due notifications of one instance (2 KB
//! each) and 50 of another. Three cases, same file, same run:
//! - `none_at_cap`: the busy instance below its cap (one walk of the due index, stops early);
//!   the baseline;
//! - `busy_at_cap`: the busy instance at its cap, so the claim must find the other's work;
//! - `busy_at_cap_one_walk`: the same claim as one walk of the due index that leaves the capped
//!   instance out (the query used before), run directly on a connection.
//!
//! Prints each median and its ratio to the baseline.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::path::PathBuf;

use criterion::Criterion;
use relay_sqlite::SqliteStore;

const NOW: i64 = 10_000_000;
const BACKLOG: i64 = 100_000;

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = SqliteStore::open(&path).unwrap();
    {
        let mut c = rusqlite::Connection::open(&path).unwrap();
        let tx = c.transaction().unwrap();
        let body = vec![b'x'; 2048];
        let add = |id: String, instance: i64, due: i64| {
            tx.execute(
                "INSERT INTO events (event_id, instance_id, part, action, status, created_at, updated_at, next_attempt_at, body)
                 VALUES (?1, ?2, 0, 'job_created', 'pending', 0, 0, ?3, ?4)",
                rusqlite::params![id, instance, due, body],
            )
            .unwrap();
        };
        (0..BACKLOG).for_each(|i| add(format!("a{i}"), 1, i));
        (0..50).for_each(|i| add(format!("b{i}"), 2, BACKLOG + i));
        tx.commit().unwrap();
    }
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let cap = 48;
    let busy: HashSet<String> = (0..cap as i64).map(|i| format!("a{i}")).collect();
    let mut c = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(20)
        .without_plots()
        .configure_from_args();
    let mut g = c.benchmark_group("claim");
    g.bench_function("none_at_cap", |b| {
        b.iter(|| {
            let got = rt.block_on(store.claim_due(NOW, 16, busy.clone(), HashMap::from([(1, cap - 1)]), cap)).unwrap();
            assert_eq!(got.len(), 1);
            black_box(got)
        })
    });
    g.bench_function("busy_at_cap", |b| {
        b.iter(|| {
            let got = rt.block_on(store.claim_due(NOW, 16, busy.clone(), HashMap::from([(1, cap)]), cap)).unwrap();
            assert_eq!(got.len(), 16);
            black_box(got)
        })
    });
    let conn = rusqlite::Connection::open(&path).unwrap();
    g.bench_function("busy_at_cap_one_walk", |b| {
        b.iter(|| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT event_id, instance_id, series, attempts, body FROM events
                     WHERE status = 'pending' AND next_attempt_at <= ?1
                       AND instance_id NOT IN (SELECT value FROM json_each(?3))
                     ORDER BY next_attempt_at LIMIT ?2",
                )
                .unwrap();
            let n = stmt
                .query_map(rusqlite::params![NOW, 16 + busy.len() as i64, "[1]"], |r| r.get::<_, Vec<u8>>(4))
                .unwrap()
                .count();
            assert_eq!(n, 50);
            black_box(n)
        })
    });
    g.finish();
    c.final_summary();

    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let median = |f: &str| -> Option<f64> {
        let p = target.join("criterion/claim").join(f).join("new/estimates.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
        v["median"]["point_estimate"].as_f64()
    };
    let Some(base) = median("none_at_cap") else { return };
    println!("\nclaim on a backlog of {BACKLOG} due notifications of one instance (median, ratio to none_at_cap):");
    for f in ["none_at_cap", "busy_at_cap", "busy_at_cap_one_walk"] {
        if let Some(m) = median(f) {
            println!("  {f:<22} {:>10.1} us  {:>8.2}x", m / 1000.0, m / base);
        }
    }
}
