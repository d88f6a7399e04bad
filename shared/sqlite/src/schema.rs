//! Tables, connection settings and the row mappings.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use relay_core::instance::{self, InstanceSpec};
use relay_core::ports::{AttemptLog, EventQuery, EventRecord, EventStatus, Instance};
use rusqlite::{Connection, OptionalExtension, Row, params_from_iter, types::Value as Sql};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS instances (
    id            INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: an old webhook URL must not reach a new instance
    name          TEXT NOT NULL,
    tags          TEXT NOT NULL,
    configuration TEXT NOT NULL,                     -- JSON, secrets in clear: this file is the secret store
    token_hash    TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    deleted_at    INTEGER,
    last_ping     TEXT
);
CREATE TABLE IF NOT EXISTS dedupe (
    instance_id  INTEGER NOT NULL,
    delivery_key TEXT NOT NULL,
    event_id     TEXT NOT NULL,
    expires_at   INTEGER NOT NULL,
    PRIMARY KEY (instance_id, delivery_key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    event_id           TEXT PRIMARY KEY,
    instance_id        INTEGER NOT NULL,
    part               INTEGER NOT NULL,
    action             TEXT NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    created_at         INTEGER NOT NULL,
    updated_at         INTEGER NOT NULL,
    next_attempt_at    INTEGER,
    series             INTEGER NOT NULL DEFAULT 0,
    attempts           INTEGER NOT NULL DEFAULT 0,
    dead_letter_reason TEXT,
    body               BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_due ON events (next_attempt_at) WHERE status = 'pending';
CREATE INDEX IF NOT EXISTS events_due_by_instance ON events (instance_id, next_attempt_at) WHERE status = 'pending';
-- The events list's order (newest first, ties by id) and its pages (`before`).
DROP INDEX IF EXISTS events_by_instance;
CREATE INDEX IF NOT EXISTS events_by_instance_page ON events (instance_id, created_at, event_id);
-- The failed ones of an instance (few) without reading its delivered ones (many): lists by
-- status=failed and bulk redelivery. Partial, so only failures pay for it.
CREATE INDEX IF NOT EXISTS events_failed ON events (instance_id, created_at, event_id) WHERE status = 'failed';
CREATE TABLE IF NOT EXISTS attempts (
    id            INTEGER PRIMARY KEY,
    event_id      TEXT NOT NULL,
    at            INTEGER NOT NULL,
    series        INTEGER NOT NULL,
    attempt       INTEGER NOT NULL,
    status_code   INTEGER,
    error         TEXT,
    duration_ms   INTEGER NOT NULL,
    response_body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS attempts_by_event ON attempts (event_id, id);
-- The purge finds what expired without reading the tables (their bodies) whole.
CREATE INDEX IF NOT EXISTS dedupe_expiry ON dedupe (expires_at);
CREATE INDEX IF NOT EXISTS events_delivered ON events (updated_at) WHERE status = 'delivered';
";

pub fn open(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    // FULL: a commit is on disk (WAL fsynced) before any caller hears "accepted".
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON; PRAGMA journal_size_limit = 67108864;")?;
    Ok(conn)
}

pub fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(SCHEMA)
}

fn instance_from_row(r: &Row<'_>) -> rusqlite::Result<Instance> {
    let bad = |i: usize, e: String| rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into());
    let id: i64 = r.get(0)?;
    let tags: Vec<String> = serde_json::from_str(&r.get::<_, String>(2)?).map_err(|e| bad(2, e.to_string()))?;
    let configuration = serde_json::from_str(&r.get::<_, String>(3)?).map_err(|e| bad(3, e.to_string()))?;
    let (configuration, settings) = instance::normalize(configuration).map_err(|e| bad(3, e.to_string()))?;
    let last_ping = r.get::<_, Option<String>>(6)?.and_then(|s| serde_json::from_str(&s).ok());
    Ok(Instance {
        id,
        spec: InstanceSpec { name: r.get(1)?, tags, configuration, settings },
        token_hash: r.get(4)?,
        created_at_ms: r.get(5)?,
        last_ping,
    })
}

const INSTANCE_COLUMNS: &str = "id, name, tags, configuration, token_hash, created_at, last_ping";

pub fn load_instances(conn: &Connection) -> rusqlite::Result<BTreeMap<i64, Instance>> {
    let mut stmt = conn.prepare(&format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE deleted_at IS NULL"))?;
    let rows = stmt.query_map([], instance_from_row)?;
    rows.map(|r| r.map(|i| (i.id, i))).collect()
}

pub fn load_instance(conn: &Connection, id: i64) -> rusqlite::Result<Option<Instance>> {
    conn.query_row(
        &format!("SELECT {INSTANCE_COLUMNS} FROM instances WHERE id = ?1 AND deleted_at IS NULL"),
        [id],
        instance_from_row,
    )
    .optional()
}

/// The instance's notifications matching `q` (or just `only`, when given), newest first.
pub fn list_events(
    conn: &Connection,
    instance_id: i64,
    q: &EventQuery,
    only: Option<&str>,
) -> rusqlite::Result<Vec<EventRecord>> {
    let mut sql = format!(
        "SELECT event_id, instance_id, part, action, status, created_at, updated_at, next_attempt_at,
                dead_letter_reason, series, {}
         FROM events WHERE instance_id = ?",
        if q.ids_only { "x''" } else { "body" }
    );
    let mut args: Vec<Sql> = vec![Sql::Integer(instance_id)];
    if let Some(id) = only {
        sql.push_str(" AND event_id = ?");
        args.push(Sql::Text(id.to_owned()));
    }
    if let Some(s) = q.status {
        // A literal, not a parameter: the planner can then use the partial index `events_failed`
        // (the value is one of three fixed words).
        sql.push_str(&format!(" AND status = '{}'", s.as_str()));
    }
    if let Some(since) = q.since_ms {
        sql.push_str(" AND created_at >= ?");
        args.push(Sql::Integer(since));
    }
    if let Some((ms, id)) = &q.before {
        sql.push_str(" AND (created_at < ? OR (created_at = ? AND event_id < ?))");
        args.extend([Sql::Integer(*ms), Sql::Integer(*ms), Sql::Text(id.clone())]);
    }
    sql.push_str(" ORDER BY created_at DESC, event_id DESC LIMIT ?");
    args.push(Sql::Integer(q.limit.min(i64::MAX as usize) as i64));
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params_from_iter(args), |r| {
        let status: String = r.get(4)?;
        // The table's CHECK admits only the three words; anything else is a damaged file,
        // reported as such rather than read as some status.
        let status = EventStatus::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                4,
                rusqlite::types::Type::Text,
                format!("unknown status {status:?}").into(),
            )
        })?;
        Ok(EventRecord {
            event_id: r.get(0)?,
            instance_id: r.get(1)?,
            part: r.get(2)?,
            action: r.get(3)?,
            status,
            created_at_ms: r.get(5)?,
            updated_at_ms: r.get(6)?,
            next_attempt_at_ms: r.get(7)?,
            dead_letter_reason: r.get(8)?,
            series: r.get(9)?,
            attempts: vec![],
            body: r.get(10)?,
        })
    })?;
    let (mut events, mut bytes) = (Vec::<EventRecord>::new(), 0);
    for row in rows {
        let e = row?;
        bytes += e.body.len();
        events.push(e);
        if q.max_bytes.is_some_and(|max| bytes > max) {
            break;
        }
    }
    if q.ids_only {
        return Ok(events);
    }
    let mut attempts = conn.prepare_cached(
        "SELECT at, series, attempt, status_code, error, duration_ms, response_body FROM attempts WHERE event_id = ?1 ORDER BY id",
    )?;
    for e in &mut events {
        e.attempts = attempts
            .query_map([&e.event_id], |r| {
                Ok(AttemptLog {
                    at_ms: r.get(0)?,
                    series: r.get(1)?,
                    attempt: r.get(2)?,
                    status_code: r.get(3)?,
                    error: r.get(4)?,
                    duration_ms: r.get::<_, i64>(5)? as u64,
                    response_body: r.get(6)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(events)
}
