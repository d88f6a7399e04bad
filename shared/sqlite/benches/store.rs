//! Two store queries that must not grow with an instance's history, each on a file of 100,000
//! notifications of one instance (2 KB each), with baselines in the same run:
//!
//! `claim`: the delivery worker's claim, 100,000 due notifications of instance 1 and 50 of
//! instance 2:
//! - `none_at_cap`: instance 1 below its cap (one walk of the due index, stops early): the
//!   baseline;
//! - `busy_at_cap`: instance 1 at its cap, so the claim must find instance 2's work;
//! - `busy_at_cap_one_walk`: the same claim as one walk of the due index that leaves the capped
//!   instance out (the query used before), run directly on a connection.
//!
//! `list`: the events list, 100,000 delivered notifications of instance 1 and 5 failed ones:
//! - `newest_5`: the newest five, no filter: the baseline;
//! - `failed`: `status=failed` (the partial index `events_failed`);
//! - `failed_without_index`: the same query made to walk the instance's index (as before).
//!
//! `purge`: the retention purge on the same file, nothing past the retention:
//! - `nothing_due`: the purge (indexes `dedupe_expiry` and `events_delivered`): the baseline;
//! - `nothing_due_before`: the statements it ran before, which read both tables whole.
//!
//! Prints each median and its ratio to its group's baseline.

use std::collections::{HashMap, HashSet};
use std::hint::black_box;
use std::path::{Path, PathBuf};

use criterion::Criterion;
use relay_core::ports::{EventQuery, EventStatus, Events};
use relay_sqlite::SqliteStore;

const NOW: i64 = 10_000_000;
const HISTORY: i64 = 100_000;

/// A store on a new file holding `rows`: (event id, instance, status, due at).
fn store_with(dir: &Path, rows: impl Iterator<Item = (String, i64, &'static str, Option<i64>)>) -> SqliteStore {
    let path = dir.join("relay.db");
    let store = SqliteStore::open(&path).unwrap();
    let mut c = rusqlite::Connection::open(&path).unwrap();
    let tx = c.transaction().unwrap();
    let body = vec![b'x'; 2048];
    for (n, (id, instance, status, due)) in rows.enumerate() {
        tx.execute(
            "INSERT INTO events (event_id, instance_id, part, action, status, created_at, updated_at, next_attempt_at, body)
             VALUES (?1, ?2, 0, 'job_created', ?3, ?4, ?4, ?5, ?6)",
            rusqlite::params![id, instance, status, n as i64, due, body],
        )
        .unwrap();
    }
    tx.commit().unwrap();
    store
}

/// Runs `sql` directly on a connection, reads column `body` of every row, and counts them: a
/// query as the store ran it before, for comparison.
fn rows_read(conn: &rusqlite::Connection, sql: &str, params: impl rusqlite::Params, body: usize) -> usize {
    let mut stmt = conn.prepare_cached(sql).unwrap();
    stmt.query_map(params, |r| r.get::<_, Vec<u8>>(body)).unwrap().count()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let mut c = Criterion::default()
        .warm_up_time(std::time::Duration::from_millis(300))
        .measurement_time(std::time::Duration::from_secs(2))
        .sample_size(20)
        .without_plots()
        .configure_from_args();

    let claim_dir = tempfile::tempdir().unwrap();
    let store = store_with(
        claim_dir.path(),
        (0..HISTORY)
            .map(|i| (format!("a{i}"), 1, "pending", Some(i)))
            .chain((0..50).map(|i| (format!("b{i}"), 2, "pending", Some(HISTORY + i)))),
    );
    let cap = 48;
    let busy: HashSet<String> = (0..cap as i64).map(|i| format!("a{i}")).collect();
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
    let conn = rusqlite::Connection::open(claim_dir.path().join("relay.db")).unwrap();
    g.bench_function("busy_at_cap_one_walk", |b| {
        b.iter(|| {
            let n = rows_read(
                &conn,
                "SELECT event_id, instance_id, series, attempts, body FROM events
                 WHERE status = 'pending' AND next_attempt_at <= ?1
                   AND instance_id NOT IN (SELECT value FROM json_each(?3))
                 ORDER BY next_attempt_at LIMIT ?2",
                rusqlite::params![NOW, 16 + busy.len() as i64, "[1]"],
                4,
            );
            assert_eq!(n, 50);
            black_box(n)
        })
    });
    g.finish();

    let list_dir = tempfile::tempdir().unwrap();
    let store = store_with(
        list_dir.path(),
        (0..HISTORY)
            .map(|i| (format!("d{i:06}"), 1, "delivered", None))
            .chain((0..5).map(|i| (format!("f{i}"), 1, "failed", None))),
    );
    let mut g = c.benchmark_group("list");
    let query = |status, limit| EventQuery { status, limit, ..EventQuery::default() };
    g.bench_function("newest_5", |b| {
        b.iter(|| {
            let got = rt.block_on(store.list(1, &query(None, 5))).unwrap();
            assert_eq!(got.len(), 5);
            black_box(got)
        })
    });
    g.bench_function("failed", |b| {
        b.iter(|| {
            let got = rt.block_on(store.list(1, &query(Some(EventStatus::Failed), 51))).unwrap();
            assert_eq!(got.len(), 5);
            black_box(got)
        })
    });
    let conn = rusqlite::Connection::open(list_dir.path().join("relay.db")).unwrap();
    g.bench_function("failed_without_index", |b| {
        b.iter(|| {
            let n = rows_read(
                &conn,
                "SELECT event_id, body FROM events INDEXED BY events_by_instance_page
                 WHERE instance_id = 1 AND status = 'failed' ORDER BY created_at DESC, event_id DESC LIMIT 51",
                [],
                1,
            );
            assert_eq!(n, 5);
            black_box(n)
        })
    });
    g.finish();

    // The same file: nothing is past the retention, so the purge deletes nothing; what it costs
    // is the search, which holds the one writer (every ingest waits) while it runs.
    let mut g = c.benchmark_group("purge");
    g.bench_function("nothing_due", |b| {
        b.iter(|| {
            let n = rt.block_on(store.purge(0, 0)).unwrap();
            assert_eq!(n, 0);
            black_box(n)
        })
    });
    g.bench_function("nothing_due_before", |b| {
        b.iter(|| {
            // The purge's statements before the indexes `dedupe_expiry` and `events_delivered`.
            let keys = conn.execute("DELETE FROM dedupe NOT INDEXED WHERE expires_at <= 0", []).unwrap();
            conn.execute(
                "DELETE FROM attempts WHERE event_id IN
                 (SELECT event_id FROM events NOT INDEXED WHERE status = 'delivered' AND updated_at < 0)",
                [],
            )
            .unwrap();
            let events = conn
                .execute("DELETE FROM events NOT INDEXED WHERE status = 'delivered' AND updated_at < 0", [])
                .unwrap();
            assert_eq!(keys + events, 0);
            black_box(events)
        })
    });
    g.finish();
    c.final_summary();

    let target = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let median = |group: &str, f: &str| -> Option<f64> {
        let p = target.join("criterion").join(group).join(f).join("new/estimates.json");
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).ok()?).ok()?;
        v["median"]["point_estimate"].as_f64()
    };
    for (group, title, cases) in [
        (
            "claim",
            "claim on a backlog of 100000 due notifications of one instance",
            &["none_at_cap", "busy_at_cap", "busy_at_cap_one_walk"][..],
        ),
        (
            "list",
            "events list of an instance with 100000 delivered and 5 failed",
            &["newest_5", "failed", "failed_without_index"],
        ),
        ("purge", "purge with nothing due, 100000 delivered", &["nothing_due", "nothing_due_before"]),
    ] {
        let Some(base) = median(group, cases[0]) else { continue };
        println!("\n{title} (median, ratio to {}):", cases[0]);
        for f in cases {
            if let Some(m) = median(group, f) {
                println!("  {f:<22} {:>10.1} us  {:>8.2}x", m / 1000.0, m / base);
            }
        }
    }
}
