//! The events list stops reading once the bodies it has read pass `max_bytes` (the notification
//! that passes it included), so a page of large notifications is not read whole to be cut.

use relay_core::ports::{EventQuery, EventStatus, Events};
use relay_sqlite::SqliteStore;

/// A store in a fresh file, and a second connection to that file for writing rows directly.
fn open() -> (tempfile::TempDir, SqliteStore, rusqlite::Connection) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let store = SqliteStore::open(&path).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    (dir, store, c)
}

#[tokio::test]
async fn a_list_stops_after_the_notification_that_passes_max_bytes() {
    let (_dir, store, c) = open();
    for n in 0..5i64 {
        c.execute(
            "INSERT INTO events (event_id, instance_id, part, action, status, created_at, updated_at, body)
             VALUES (?1, 1, 0, 'job_created', 'failed', ?2, ?2, ?3)",
            rusqlite::params![format!("e{n}"), n, vec![b'x'; 1_000_000]],
        )
        .unwrap();
    }
    let q = |status, max_bytes| EventQuery { status, limit: 10, max_bytes, ..EventQuery::default() };
    let ids = |events: Vec<relay_core::ports::EventRecord>| events.into_iter().map(|e| e.event_id).collect::<Vec<_>>();
    assert_eq!(ids(store.list(1, &q(None, None)).await.unwrap()), ["e4", "e3", "e2", "e1", "e0"]);
    assert_eq!(ids(store.list(1, &q(None, Some(2_500_000))).await.unwrap()), ["e4", "e3", "e2"]);
    // Reaching `max_bytes` is not passing it.
    assert_eq!(ids(store.list(1, &q(None, Some(2_000_000))).await.unwrap()), ["e4", "e3", "e2"]);
    assert_eq!(ids(store.list(1, &q(None, Some(1_999_999))).await.unwrap()), ["e4", "e3"]);
    assert_eq!(
        ids(store.list(1, &q(Some(EventStatus::Failed), Some(1))).await.unwrap()),
        ["e4"],
        "always at least one"
    );
}

/// The table admits three statuses; a row with another (a damaged or hand-edited file) is an
/// error, never read as pending or as any other status.
#[tokio::test]
async fn a_row_with_a_status_the_table_does_not_admit_is_an_error_not_a_status() {
    let (_dir, store, c) = open();
    c.execute_batch("PRAGMA ignore_check_constraints = ON").unwrap();
    c.execute(
        "INSERT INTO events (event_id, instance_id, part, action, status, created_at, updated_at, body)
         VALUES ('e0', 1, 0, 'job_created', 'lost', 0, 0, x'')",
        [],
    )
    .unwrap();
    let err = store.list(1, &EventQuery { limit: 10, ..EventQuery::default() }).await.unwrap_err();
    assert!(err.to_string().contains("unknown status \"lost\""), "{err}");
    assert!(store.get(1, "e0").await.is_err(), "one event read alone is refused too");
}
