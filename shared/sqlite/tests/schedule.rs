//! How the delivery worker knows when to look at the queue, and what keeps the database file
//! whole, on a real SQLite file:
//! - `work_queued` resolves once notifications are queued (accepted, or queued again by a
//!   redelivery), once per queueing, and not for a duplicate nor for a redelivery that queued none;
//! - `next_due_after` says when the next pending notification not yet due falls due (failed and
//!   delivered ones never do);
//! - with SQLite's own checkpoints off, the store's checkpoint thread copies the WAL into the
//!   database file while it runs;
//! - opening a database creates its directories.

use std::time::{Duration, Instant};

use relay_core::notification::Notification;
use relay_core::ports::{AcceptOutcome, Accepted, EventStatus, Events};
use relay_sqlite::SqliteStore;

const NOW: i64 = 1_000_000;

/// A webhook with one notification of `body_len` bytes, for instance 1.
fn accepted(key: &str, event_id: &str, body_len: usize) -> Accepted {
    Accepted {
        instance_id: 1,
        delivery_key: key.into(),
        action: "job_created".into(),
        notifications: vec![Notification { event_id: event_id.into(), part: 0, body: vec![b'x'; body_len] }],
        accepted_at_ms: NOW,
        dedupe_until_ms: NOW + 60_000,
    }
}

/// Whether `work_queued` resolves within 200 ms. A wake is kept until the worker waits for it,
/// so where one was given this answers at once.
async fn woken(store: &SqliteStore) -> bool {
    tokio::time::timeout(Duration::from_millis(200), store.work_queued()).await.is_ok()
}

#[tokio::test]
async fn the_worker_is_woken_once_per_queueing_and_for_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = SqliteStore::open(&path).unwrap();
    assert!(!woken(&store).await, "nothing is queued yet");

    assert_eq!(store.accept(accepted("k1", "e1", 2)).await.unwrap(), AcceptOutcome::Queued);
    assert!(woken(&store).await, "a webhook was queued");
    assert!(!woken(&store).await, "one wake per queueing");

    let again = store.accept(accepted("k1", "e1", 2)).await.unwrap();
    assert_eq!(again, AcceptOutcome::Duplicate { event_id: "e1".into() });
    assert!(!woken(&store).await, "a duplicate queues nothing");

    // e1 is pending: a redelivery skips it and queues nothing.
    let ids = ["e1".to_owned()];
    assert!(store.redeliver(1, &ids, None, NOW).await.unwrap().is_empty());
    assert!(!woken(&store).await, "a redelivery that queued nothing");
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute("UPDATE events SET status = 'failed' WHERE event_id = 'e1'", []).unwrap();
    assert_eq!(store.redeliver(1, &ids, Some(EventStatus::Failed), NOW).await.unwrap(), ids);
    assert!(woken(&store).await, "a failed notification was queued again");
}

#[tokio::test]
async fn the_worker_is_told_when_the_next_pending_notification_falls_due() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.next_due_after(NOW).await.unwrap(), None, "an empty queue");
    let c = rusqlite::Connection::open(&path).unwrap();
    for (id, status, due) in [
        ("overdue", "pending", NOW - 5),
        ("due-now", "pending", NOW),
        ("failed", "failed", NOW + 10),
        ("delivered", "delivered", NOW + 20),
        ("later", "pending", NOW + 700),
        ("sooner", "pending", NOW + 300),
    ] {
        c.execute(
            "INSERT INTO events (event_id, instance_id, part, action, status, created_at, updated_at, next_attempt_at, body)
             VALUES (?1, 1, 0, 'job_created', ?2, 0, 0, ?3, x'7b7d')",
            rusqlite::params![id, status, due],
        )
        .unwrap();
    }
    // Those due already are claimed, not waited for: the next one due after now.
    assert_eq!(store.next_due_after(NOW).await.unwrap(), Some(NOW + 300));
    assert_eq!(store.next_due_after(NOW + 299).await.unwrap(), Some(NOW + 300));
    assert_eq!(store.next_due_after(NOW + 300).await.unwrap(), Some(NOW + 700));
    assert_eq!(store.next_due_after(NOW + 700).await.unwrap(), None);
}

#[tokio::test]
async fn the_wal_is_copied_into_the_database_file_while_the_store_runs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = SqliteStore::open(&path).unwrap();
    let before = std::fs::metadata(&path).unwrap().len();
    for i in 0..200 {
        store.accept(accepted(&format!("k{i}"), &format!("e{i}"), 4000)).await.unwrap();
    }
    // 800 KB went to the WAL. Only a checkpoint moves them into the database file, and the
    // writer's automatic ones are off: the store's checkpoint thread runs every 500 ms.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let size = std::fs::metadata(&path).unwrap().len();
        if size > before + 800_000 {
            break;
        }
        assert!(Instant::now() < deadline, "the database file is still {size} bytes ({before} at first)");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.next_due_after(0).await.unwrap(), Some(NOW));
}

#[tokio::test]
async fn opening_a_database_creates_its_directories() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not").join("yet").join("relay.db");
    let store = SqliteStore::open(&path).unwrap();
    store.accept(accepted("k1", "e1", 2)).await.unwrap();
    assert!(path.is_file() && path.with_extension("db.lock").is_file());
}
