//! The purge on a real SQLite file: delivered notifications past the retention go with their
//! attempts, expired dedupe keys go, and everything else stays (failed and pending notifications
//! never expire); a backlog larger than one batch is purged whole, in batches. (That what is due
//! is found through indexes is a unit test in `lib.rs`, on the store's own SQL.)

use relay_sqlite::{PURGE_BATCH, SqliteStore};
use rusqlite::Connection;

const NOW: i64 = 100_000_000;
const CUTOFF: i64 = NOW - 1_000_000;

/// `(event id, status, updated at)`, each with two attempts, and `(key, expires at)` dedupe keys.
fn insert(path: &std::path::Path, events: &[(String, &str, i64)], keys: &[(String, i64)]) {
    let mut c = Connection::open(path).unwrap();
    let tx = c.transaction().unwrap();
    for (id, status, updated) in events {
        tx.execute(
            "INSERT INTO events (event_id, instance_id, part, action, status, created_at, updated_at, body)
             VALUES (?1, 1, 0, 'job_created', ?2, ?3, ?3, x'7b7d')",
            rusqlite::params![id, status, updated],
        )
        .unwrap();
        for attempt in 1..=2 {
            tx.execute(
                "INSERT INTO attempts (event_id, at, series, attempt, status_code, duration_ms, response_body)
                 VALUES (?1, ?2, 0, ?3, 200, 5, 'ok')",
                rusqlite::params![id, updated, attempt],
            )
            .unwrap();
        }
    }
    for (key, expires) in keys {
        tx.execute(
            "INSERT INTO dedupe (instance_id, delivery_key, event_id, expires_at) VALUES (1, ?1, 'x', ?2)",
            rusqlite::params![key, expires],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn strings(c: &Connection, sql: &str) -> Vec<String> {
    let mut stmt = c.prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

#[tokio::test]
async fn delivered_notifications_past_the_retention_and_expired_keys_go_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = SqliteStore::open(&path).unwrap();
    insert(
        &path,
        &[
            ("old-delivered".into(), "delivered", CUTOFF - 1),
            ("new-delivered".into(), "delivered", CUTOFF),
            ("old-failed".into(), "failed", 0),
            ("old-pending".into(), "pending", 0),
        ],
        &[("expired".into(), NOW), ("live".into(), NOW + 1)],
    );
    assert_eq!(store.purge(NOW, CUTOFF).await.unwrap(), 2);
    let c = Connection::open(&path).unwrap();
    assert_eq!(
        strings(&c, "SELECT event_id FROM events ORDER BY event_id"),
        ["new-delivered", "old-failed", "old-pending"]
    );
    assert_eq!(
        strings(&c, "SELECT DISTINCT event_id FROM attempts ORDER BY event_id"),
        ["new-delivered", "old-failed", "old-pending"]
    );
    assert_eq!(strings(&c, "SELECT delivery_key FROM dedupe"), ["live"]);
    // Again: nothing left to purge.
    assert_eq!(store.purge(NOW, CUTOFF).await.unwrap(), 0);
}

#[tokio::test]
async fn a_backlog_larger_than_a_batch_is_purged_whole() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = SqliteStore::open(&path).unwrap();
    let old = 2 * PURGE_BATCH + 37;
    let events: Vec<(String, &str, i64)> = (0..old)
        .map(|i| (format!("old{i:05}"), "delivered", i as i64))
        .chain((0..3).map(|i| (format!("kept{i}"), "delivered", NOW)))
        .collect();
    let keys: Vec<(String, i64)> = (0..PURGE_BATCH + 1).map(|i| (format!("k{i}"), i as i64)).collect();
    insert(&path, &events, &keys);
    assert_eq!(store.purge(NOW, CUTOFF).await.unwrap(), old + PURGE_BATCH + 1);
    let c = Connection::open(&path).unwrap();
    assert_eq!(strings(&c, "SELECT event_id FROM events ORDER BY event_id"), ["kept0", "kept1", "kept2"]);
    assert_eq!(c.query_row("SELECT COUNT(*) FROM attempts", [], |r| r.get::<_, i64>(0)).unwrap(), 6);
    assert_eq!(c.query_row("SELECT COUNT(*) FROM dedupe", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
}

#[tokio::test]
async fn a_backlog_of_expired_keys_larger_than_a_batch_is_purged_whole_beside_few_notifications() {
    // The purge goes on while either search filled its batch: here only the keys' does.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = SqliteStore::open(&path).unwrap();
    let events: Vec<(String, &str, i64)> = (0..3).map(|i| (format!("old{i}"), "delivered", i)).collect();
    let keys: Vec<(String, i64)> = (0..2 * PURGE_BATCH).map(|i| (format!("k{i}"), i as i64)).collect();
    insert(&path, &events, &keys);
    assert_eq!(store.purge(NOW, CUTOFF).await.unwrap(), 3 + 2 * PURGE_BATCH);
    let c = Connection::open(&path).unwrap();
    assert_eq!(c.query_row("SELECT COUNT(*) FROM events", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
    assert_eq!(c.query_row("SELECT COUNT(*) FROM dedupe", [], |r| r.get::<_, i64>(0)).unwrap(), 0);
}
