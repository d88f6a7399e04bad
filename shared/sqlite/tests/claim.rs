//! What the delivery worker claims, on a real SQLite file: the oldest due notifications, at most
//! `cap` in flight per instance; while one instance is at its cap, the others' due notifications
//! in due order (found without walking the capped instance's backlog).

use std::collections::{HashMap, HashSet};

use relay_sqlite::SqliteStore;

const NOW: i64 = 1_000_000;

/// Rows as the ingest leaves them: `(event id, instance, due at, status)`.
fn insert(path: &std::path::Path, rows: &[(String, i64, Option<i64>, &str)]) {
    let mut c = rusqlite::Connection::open(path).unwrap();
    let tx = c.transaction().unwrap();
    for (id, instance, due, status) in rows {
        tx.execute(
            "INSERT INTO events (event_id, instance_id, part, action, status, created_at, updated_at, next_attempt_at, body)
             VALUES (?1, ?2, 0, 'job_created', ?3, 0, 0, ?4, ?5)",
            rusqlite::params![id, instance, status, due, format!("{{\"id\":\"{id}\"}}").into_bytes()],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

fn ids(claimed: &[relay_core::ports::QueuedEvent]) -> Vec<&str> {
    claimed.iter().map(|e| e.event_id.as_str()).collect()
}

#[tokio::test]
async fn the_others_are_served_in_due_order_while_a_busy_instance_is_at_its_cap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = SqliteStore::open(&path).unwrap();
    let mut rows = vec![];
    // Instance 1: a backlog of 2,000 due, the oldest.
    rows.extend((0..2000).map(|i| (format!("a{i:04}"), 1, Some(i), "pending")));
    // Instance 2 and 5: a few due, interleaved in time; 3: pending but not due; 4: delivered.
    rows.extend((0..5).map(|i| (format!("b{i}"), 2, Some(5000 + 10 * i), "pending")));
    rows.extend((0..3).map(|i| (format!("e{i}"), 5, Some(5005 + 10 * i), "pending")));
    rows.extend((0..3).map(|i| (format!("c{i}"), 3, Some(NOW + 1000 + i), "pending")));
    rows.extend((0..3).map(|i| (format!("d{i}"), 4, None, "delivered")));
    insert(&path, &rows);

    // No instance at its cap: the oldest due, at most `cap` of one instance in one claim.
    let claimed = store.claim_due(NOW, 10, HashSet::new(), HashMap::new(), 48).await.unwrap();
    assert_eq!(ids(&claimed), (0..10).map(|i| format!("a{i:04}")).collect::<Vec<_>>());
    assert_eq!(claimed[3].body, br#"{"id":"a0003"}"#);
    let claimed = store.claim_due(NOW, 10, HashSet::new(), HashMap::new(), 4).await.unwrap();
    assert_eq!(ids(&claimed), ["a0000", "a0001", "a0002", "a0003"]);

    // Instance 1 at its cap (its oldest 48 in flight): the others, oldest due first.
    let busy: HashSet<String> = (0..48).map(|i| format!("a{i:04}")).collect();
    let counts = HashMap::from([(1, 48)]);
    let claimed = store.claim_due(NOW, 10, busy.clone(), counts, 48).await.unwrap();
    assert_eq!(ids(&claimed), ["b0", "e0", "b1", "e1", "b2", "e2", "b3", "b4"]);
    let claimed = store.claim_due(NOW, 3, busy.clone(), HashMap::from([(1, 48)]), 48).await.unwrap();
    assert_eq!(ids(&claimed), ["b0", "e0", "b1"], "at most `limit`");

    // Instance 2 has b0 in flight and a cap of 3 here: two more of its, never b0 again.
    let mut busy3: HashSet<String> = (0..3).map(|i| format!("a{i:04}")).collect();
    busy3.insert("b0".into());
    let claimed = store.claim_due(NOW, 10, busy3, HashMap::from([(1, 3), (2, 1)]), 3).await.unwrap();
    assert_eq!(ids(&claimed), ["e0", "b1", "e1", "b2", "e2"]);

    // Every instance with due work at its cap: nothing.
    let claimed = store.claim_due(NOW, 10, HashSet::new(), HashMap::from([(1, 2), (2, 2), (5, 2)]), 2).await.unwrap();
    assert!(claimed.is_empty(), "{:?}", ids(&claimed));
}
