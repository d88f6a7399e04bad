//! Instances, dedupe keys and the event log in one DynamoDB table; the queue is SQS.
//! The table design is documented in `infra/TABLE.md`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as Dynamo;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{AttributeValue as Av, ReturnValue};
use futures_util::StreamExt;
use relay_core::instance::{self, InstanceSpec};
use relay_core::ports::{
    AcceptOutcome, Accepted, AttemptLog, Clock, EventQuery, EventRecord, EventStatus, Events, Instance, Instances,
    NextStep, QueuedEvent, SpecUpdate, StoreError, SystemClock,
};
use serde_json::{Map, Value};
use tokio::sync::RwLock;

use crate::queue::{Queue, QueueMessage};
use sha2::{Digest, Sha256};

type Item = HashMap<String, Av>;

/// A pending notification whose attempt is this overdue has no message on the queue any more:
/// redelivery may start a new series for it. Attempts start seconds after they are due.
pub const STALE_PENDING: Duration = Duration::from_secs(15 * 60);

/// Requests in flight at once for one management call: redeliveries (each one UpdateItem and one
/// SendMessageBatch) and the attempt queries of a listed page.
const MANAGEMENT_CONCURRENCY: usize = 16;

/// A notification up to this size is kept in its row's `body`. A larger one (the contract takes
/// Greenhouse bodies up to 1 MiB, a DynamoDB item holds 400 KB) is kept in chunks of this size,
/// items `BODY#<hash>#<n>` beside its row, which names them (`body_ref`, `body_parts`).
pub const BODY_CHUNK: usize = 300_000;

/// How long a delivered notification is kept, as in the local mode (`EVENT_RETENTION_DAYS`): its
/// row and attempts get `expires_at` (the table's TTL attribute) this long after delivery, and
/// DynamoDB deletes them. Failed and pending ones are kept.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// The chunks of a delivered notification expire this much after its row: TTL deletes in no set
/// order, and a row still readable must find its chunks.
const CHUNK_GRACE: Duration = Duration::from_secs(7 * 24 * 3600);

/// `deadLetterReason` of a notification the queue refused (SQS unavailable or refusing).
pub const NOT_QUEUED: &str = "the queue refused it (SQS unavailable); redeliver it";

fn unavailable<E, R>(e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + 'static,
    R: std::fmt::Debug,
{
    StoreError::Unavailable(DisplayErrorContext(e).to_string())
}

/// A condition expression said no: an expected outcome, not an outage.
fn condition_failed<E, R>(e: &SdkError<E, R>) -> bool
where
    E: ProvideErrorMetadata,
{
    e.as_service_error().and_then(|se| se.code()) == Some("ConditionalCheckFailedException")
}

fn s(v: impl Into<String>) -> Av {
    Av::S(v.into())
}

fn n(v: impl ToString) -> Av {
    Av::N(v.to_string())
}

fn get_s(item: &Item, k: &str) -> Option<String> {
    item.get(k).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n<T: std::str::FromStr>(item: &Item, k: &str) -> Option<T> {
    item.get(k).and_then(|v| v.as_n().ok()).and_then(|v| v.parse().ok())
}

/// Whether a notification is kept in chunks (rather than in its row): the one rule that both
/// writes them and later sets them to expire.
fn in_chunks(body: &[u8]) -> bool {
    body.len() > BODY_CHUNK
}

/// The name of the chunks of a notification kept in chunks (`BODY_CHUNK`).
fn chunks_ref(body: &[u8]) -> String {
    hex::encode(&Sha256::digest(body)[..8])
}

fn chunk_sk(body_ref: &str, i: usize) -> String {
    format!("BODY#{body_ref}#{i:02}")
}

/// About how many bytes a row's notification takes (its body, or its chunks).
fn stored_size(item: &Item) -> usize {
    match item.get("body").and_then(|b| b.as_b().ok()) {
        Some(body) => body.as_ref().len(),
        None => get_n::<usize>(item, "body_parts").unwrap_or(0) * BODY_CHUNK,
    }
}

/// The sort keys of the chunks a row names.
fn chunk_sks(item: &Item) -> Vec<String> {
    match (get_s(item, "body_ref"), get_n::<usize>(item, "body_parts")) {
        (Some(body_ref), Some(parts)) => (0..parts).map(|i| chunk_sk(&body_ref, i)).collect(),
        _ => vec![],
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Unavailable(format!("malformed item in the table: {what}"))
}

fn instance_key(id: i64) -> (Av, Av) {
    (s(format!("INSTANCE#{id}")), s("INSTANCE"))
}

fn event_pk(event_id: &str) -> Av {
    s(format!("EVENT#{event_id}"))
}

/// The partition of index `gsi2` that holds an instance's notifications of one status, so that
/// listing the failed ones reads those, not every delivered one.
fn status_pk(instance_id: i64, status: &str) -> Av {
    s(format!("EVENTS#{instance_id}#{status}"))
}

/// Sortable: zero-padded milliseconds, then the id (unique).
fn event_sort(created_at_ms: i64, event_id: &str) -> String {
    format!("{created_at_ms:015}#{event_id}")
}

/// Whether `since_ms` is newer than the sort key `before` (`event_sort`), so that nothing lies
/// between them. (A query for that range would be a `BETWEEN` with reversed bounds, which
/// DynamoDB refuses.)
fn since_after(since_ms: i64, before: &str) -> bool {
    format!("{since_ms:015}").as_str() > before
}

/// A notification's row as the delivery function sees it before an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowState {
    pub status: EventStatus,
    pub series: u32,
    /// The attempts recorded in `series`.
    pub attempts: u32,
    /// When the next attempt of `series` is due, while pending.
    pub next_attempt_at_ms: Option<i64>,
    /// The bytes, when asked for.
    pub body: Option<Vec<u8>>,
}

impl RowState {
    /// Nothing is left to attempt for a message of `series`: the row is on a later series (a
    /// redelivery started one), or on this one and delivered or failed. SQS delivers a message
    /// again when the function that processed it could not have it deleted (a timeout after the
    /// attempt was recorded, or a standard queue's occasional second copy).
    pub fn settled_for(&self, series: u32) -> bool {
        self.series > series || (self.series == series && self.status != EventStatus::Pending)
    }

    /// The attempts already made for a message of `series`, which numbers the next one: counted
    /// from the row, as the local worker counts them, not from SQS's receive count, which also
    /// counts receives that made no attempt (a function stopped before it, a DynamoDB error)
    /// and would end the schedule early. A row still on an earlier series is a stale read of
    /// one a redelivery just restarted: none yet.
    pub fn attempts_for(&self, series: u32) -> u32 {
        if self.series == series { self.attempts } else { 0 }
    }

    /// How long a message of `series` must still wait for its attempt, if it came back more than
    /// `slack_ms` before the attempt is due. SQS hides a message at most 12 h, a `Retry-After`
    /// may ask for up to 24 h, and when setting the delay failed the queue's own visibility
    /// timeout (minutes) applied. A row on another series says nothing of this message's due
    /// time.
    pub fn wait_for(&self, series: u32, now_ms: i64, slack_ms: i64) -> Option<Duration> {
        let due = self.next_attempt_at_ms.filter(|_| self.series == series && self.status == EventStatus::Pending)?;
        (due - now_ms > slack_ms).then(|| Duration::from_millis((due - now_ms) as u64))
    }
}

/// When an attempt ended (ms): the row's `updated_at`, and where a delivered one's retention
/// starts.
fn ended_at(log: &AttemptLog) -> i64 {
    log.at_ms + log.duration_ms as i64
}

/// A new attempt's sort key: by series, then number, then start time, then a random tag. Two
/// attempts may share a number, and the log keeps both: an attempt whose record was cut after
/// its log item (the row still counts one fewer, so the next attempt takes its number), or two
/// copies of one message attempted at once (the tag keeps those apart within a millisecond).
fn attempt_sk(log: &AttemptLog) -> String {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    format!("ATTEMPT#{:05}#{:03}#{:015}#{}", log.series, log.attempt, log.at_ms, &tag[..8])
}

#[derive(Clone)]
pub struct DynamoStore {
    dynamo: Dynamo,
    table: String,
    queue: Queue,
    clock: std::sync::Arc<dyn Clock>,
    retention: Duration,
}

impl DynamoStore {
    pub fn new(dynamo: Dynamo, table: impl Into<String>, queue: Queue) -> Self {
        DynamoStore {
            dynamo,
            table: table.into(),
            queue,
            clock: std::sync::Arc::new(SystemClock),
            retention: DEFAULT_RETENTION,
        }
    }

    /// How long delivered notifications are kept (default `DEFAULT_RETENTION`).
    pub fn with_retention(mut self, retention: Duration) -> Self {
        self.retention = retention;
        self
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    fn instance_from_item(item: &Item) -> Result<Instance, StoreError> {
        let id = get_n::<i64>(item, "instance_id").ok_or_else(|| corrupt("instance_id"))?;
        let tags =
            serde_json::from_str(&get_s(item, "tags").unwrap_or_else(|| "[]".into())).map_err(|_| corrupt("tags"))?;
        let configuration =
            serde_json::from_str(&get_s(item, "configuration").ok_or_else(|| corrupt("configuration"))?)
                .map_err(|_| corrupt("configuration"))?;
        let (configuration, settings) = instance::normalize(configuration).map_err(|e| corrupt(&e.to_string()))?;
        Ok(Instance {
            id,
            spec: InstanceSpec { name: get_s(item, "name").unwrap_or_default(), tags, configuration, settings },
            token_hash: get_s(item, "token_hash").unwrap_or_default(),
            created_at_ms: get_n(item, "created_at").unwrap_or(0),
            last_ping: get_s(item, "last_ping").and_then(|p| serde_json::from_str(&p).ok()),
        })
    }

    /// An UpdateItem of an instance's item.
    fn update_instance(&self, id: i64) -> UpdateItemFluentBuilder {
        let (pk, sk) = instance_key(id);
        self.dynamo.update_item().table_name(&self.table).key("pk", pk).key("sk", sk)
    }

    /// A live (not deleted) instance's item, read consistently.
    async fn live_instance_item(&self, id: i64) -> Result<Option<Item>, StoreError> {
        let (pk, sk) = instance_key(id);
        let request = self.dynamo.get_item().table_name(&self.table).key("pk", pk).key("sk", sk);
        let out = request.consistent_read(true).send().await.map_err(unavailable)?;
        Ok(out.item.filter(|item| !item.contains_key("deleted_at")))
    }

    /// Sets one attribute of a live (not deleted) instance's item; answers the item as it now is,
    /// or `None` when no live instance has this id.
    async fn set_on_live_instance(&self, id: i64, attribute: &str, value: Av) -> Result<Option<Item>, StoreError> {
        let result = self
            .update_instance(id)
            .update_expression("SET #a = :v")
            .condition_expression("attribute_exists(pk) AND attribute_not_exists(deleted_at)")
            .expression_attribute_names("#a", attribute)
            .expression_attribute_values(":v", value)
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => out.attributes.map(Some).ok_or_else(|| corrupt("an updated instance with no attributes")),
            Err(e) if condition_failed(&e) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// The chunks of a large notification, before the row that names them: the key is a hash of
    /// the bytes, so a row never names chunks of other bytes (a Greenhouse retry of the delivery
    /// may carry other bytes while a delivery reads the old ones).
    async fn put_chunks(&self, event_id: &str, body: &[u8]) -> Result<(String, usize), StoreError> {
        let body_ref = chunks_ref(body);
        let puts: Vec<_> = body
            .chunks(BODY_CHUNK)
            .enumerate()
            .map(|(i, chunk)| {
                self.dynamo
                    .put_item()
                    .table_name(&self.table)
                    .item("pk", event_pk(event_id))
                    .item("sk", s(chunk_sk(&body_ref, i)))
                    .item("data", Av::B(Blob::new(chunk)))
                    .send()
            })
            .collect();
        let parts = puts.len();
        let results: Vec<_> = futures_util::stream::iter(puts).buffered(4).collect().await;
        for r in results {
            r.map_err(unavailable)?;
        }
        Ok((body_ref, parts))
    }

    /// The notification bytes of a row: its `body`, or its chunks put together.
    async fn body_of(&self, event_id: &str, item: &Item) -> Result<Vec<u8>, StoreError> {
        let Some(body_ref) = get_s(item, "body_ref") else {
            return Ok(item.get("body").and_then(|b| b.as_b().ok()).map(|b| b.as_ref().to_vec()).unwrap_or_default());
        };
        let parts: usize = get_n(item, "body_parts").ok_or_else(|| corrupt("body_parts"))?;
        let chunks = self.items_under(event_id, &format!("BODY#{body_ref}#"), None, true).await?;
        let mut body = Vec::with_capacity(parts * BODY_CHUNK);
        for chunk in &chunks {
            body.extend_from_slice(
                chunk.get("data").and_then(|d| d.as_b().ok()).ok_or_else(|| corrupt("body chunk"))?.as_ref(),
            );
        }
        let found = chunks.len();
        if found != parts {
            if item.contains_key("expires_at") {
                // Delivered and past its retention: TTL is deleting it, chunks first this time.
                return Ok(vec![]);
            }
            return Err(corrupt(&format!("{found} of the {parts} chunks of {event_id}'s notification")));
        }
        Ok(body)
    }

    /// What the delivery function reads of a notification's row before an attempt: its status,
    /// series and attempts, and its bytes when `with_body` (a message too large to carry them).
    /// `None` when there is no row.
    ///
    /// Without the bytes the read is eventually consistent (half the cost), which is safe for
    /// every use of the answer. Skipping a message whose notification is settled: within a
    /// series a row only goes from pending to delivered or failed, and a new series has a higher
    /// number, so a stale row can only make a settled notification look pending (an attempt
    /// too many), never a pending one look settled. Numbering the attempt: a stale count is
    /// lower, never higher, so it can only cost one attempt more than the schedule's 8, logged
    /// beside the earlier one of its number (`attempt_sk`). Waiting for the due time: within a
    /// series it only moves later, so a stale one is earlier, and at worst the attempt comes
    /// early, as without this read. Attempts are seconds to hours apart, and DynamoDB's reads
    /// converge within about a second.
    pub async fn delivery_state(&self, event_id: &str, with_body: bool) -> Result<Option<RowState>, StoreError> {
        let mut get = self
            .dynamo
            .get_item()
            .table_name(&self.table)
            .key("pk", event_pk(event_id))
            .key("sk", s("EVENT"))
            .expression_attribute_names("#st", "status")
            .consistent_read(with_body);
        get = if with_body {
            get.projection_expression("#st, series, attempts, next_attempt_at, body, body_ref, body_parts, expires_at")
        } else {
            get.projection_expression("#st, series, attempts, next_attempt_at")
        };
        let Some(item) = get.send().await.map_err(unavailable)?.item else { return Ok(None) };
        let status = get_s(&item, "status").and_then(|s| EventStatus::parse(&s)).ok_or_else(|| corrupt("status"))?;
        let body = if with_body { Some(self.body_of(event_id, &item).await?) } else { None };
        Ok(Some(RowState {
            status,
            series: get_n(&item, "series").unwrap_or(0),
            attempts: get_n(&item, "attempts").unwrap_or(0),
            next_attempt_at_ms: get_n(&item, "next_attempt_at"),
            body,
        }))
    }

    fn event_from_item(item: &Item) -> Result<EventRecord, StoreError> {
        let status = get_s(item, "status").and_then(|s| EventStatus::parse(&s)).ok_or_else(|| corrupt("status"))?;
        Ok(EventRecord {
            event_id: get_s(item, "event_id").ok_or_else(|| corrupt("event_id"))?,
            instance_id: get_n(item, "instance_id").ok_or_else(|| corrupt("instance_id"))?,
            part: get_n(item, "part").unwrap_or(0),
            action: get_s(item, "action").unwrap_or_default(),
            status,
            created_at_ms: get_n(item, "created_at").unwrap_or(0),
            updated_at_ms: get_n(item, "updated_at").unwrap_or(0),
            next_attempt_at_ms: get_n(item, "next_attempt_at"),
            dead_letter_reason: get_s(item, "dead_letter_reason"),
            series: get_n(item, "series").unwrap_or(0),
            attempts: vec![],
            body: item.get("body").and_then(|b| b.as_b().ok()).map(|b| b.as_ref().to_vec()).unwrap_or_default(),
        })
    }

    /// A notification's row (consistent read).
    async fn event_row(&self, event_id: &str) -> Result<Option<Item>, StoreError> {
        let out = self
            .dynamo
            .get_item()
            .table_name(&self.table)
            .key("pk", event_pk(event_id))
            .key("sk", s("EVENT"))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(out.item)
    }

    /// The items of a notification whose sort key starts with `prefix` (its attempts, its
    /// chunks), in key order.
    async fn items_under(
        &self,
        event_id: &str,
        prefix: &str,
        projection: Option<&str>,
        consistent: bool,
    ) -> Result<Vec<Item>, StoreError> {
        let mut pages = self
            .dynamo
            .query()
            .table_name(&self.table)
            .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
            .expression_attribute_values(":pk", event_pk(event_id))
            .expression_attribute_values(":prefix", s(prefix))
            .set_projection_expression(projection.map(str::to_owned))
            .consistent_read(consistent)
            .into_paginator()
            .items()
            .send();
        let mut out = vec![];
        while let Some(item) = pages.next().await {
            out.push(item.map_err(unavailable)?);
        }
        Ok(out)
    }

    async fn attempts_of(&self, event_id: &str) -> Result<Vec<AttemptLog>, StoreError> {
        let mut out = vec![];
        for item in self.items_under(event_id, "ATTEMPT#", None, false).await? {
            out.push(AttemptLog {
                at_ms: get_n(&item, "at").unwrap_or(0),
                series: get_n(&item, "series").unwrap_or(0),
                attempt: get_n(&item, "attempt").unwrap_or(0),
                status_code: get_n(&item, "status_code"),
                error: get_s(&item, "error"),
                duration_ms: get_n(&item, "duration_ms").unwrap_or(0),
                response_body: get_s(&item, "response_body").unwrap_or_default(),
            });
        }
        Ok(out)
    }

    /// The rows of these notifications by id (consistent reads, 100 per `BatchGetItem`, what
    /// DynamoDB leaves unprocessed asked again).
    async fn rows(&self, ids: &[String]) -> Result<HashMap<String, Item>, StoreError> {
        let mut out = HashMap::with_capacity(ids.len());
        for chunk in ids.chunks(100) {
            let mut keys: Vec<Item> = chunk
                .iter()
                .map(|id| HashMap::from([("pk".to_owned(), event_pk(id)), ("sk".to_owned(), s("EVENT"))]))
                .collect();
            for round in 0.. {
                if keys.is_empty() {
                    break;
                }
                if round == 8 {
                    return Err(StoreError::Unavailable("DynamoDB left keys unprocessed (throttled)".into()));
                }
                if round > 0 {
                    tokio::time::sleep(Duration::from_millis(25 << round)).await;
                }
                let request = aws_sdk_dynamodb::types::KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut keys)))
                    .consistent_read(true)
                    .build()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                let got = self
                    .dynamo
                    .batch_get_item()
                    .request_items(&self.table, request)
                    .send()
                    .await
                    .map_err(unavailable)?;
                for item in got.responses.and_then(|mut r| r.remove(&self.table)).unwrap_or_default() {
                    if let Some(id) = get_s(&item, "event_id") {
                        out.insert(id, item);
                    }
                }
                keys = got.unprocessed_keys.and_then(|mut u| u.remove(&self.table)).map(|k| k.keys).unwrap_or_default();
            }
        }
        Ok(out)
    }

    /// The sort keys of a notification's attempts.
    async fn attempt_sks(&self, event_id: &str) -> Result<Vec<String>, StoreError> {
        Ok(self
            .items_under(event_id, "ATTEMPT#", Some("sk"), false)
            .await?
            .iter()
            .filter_map(|i| get_s(i, "sk"))
            .collect())
    }

    /// Sets (`Some`, epoch seconds) or removes (`None`) the TTL of items of a notification, by
    /// sort key, `MANAGEMENT_CONCURRENCY` at a time. An item gone meanwhile is not recreated.
    async fn set_expiry(&self, event_id: &str, sks: Vec<String>, expires_at: Option<i64>) -> Result<(), StoreError> {
        let each: Vec<_> = sks
            .into_iter()
            .map(|sk| {
                let req = self
                    .dynamo
                    .update_item()
                    .table_name(&self.table)
                    .key("pk", event_pk(event_id))
                    .key("sk", s(sk))
                    .condition_expression("attribute_exists(pk)");
                match expires_at {
                    Some(at) => req.update_expression("SET expires_at = :t").expression_attribute_values(":t", n(at)),
                    None => req.update_expression("REMOVE expires_at"),
                }
                .send()
            })
            .collect();
        let results: Vec<_> = futures_util::stream::iter(each).buffered(MANAGEMENT_CONCURRENCY).collect().await;
        for r in results {
            match r {
                Ok(_) => {}
                Err(e) if condition_failed(&e) => {}
                Err(e) => return Err(unavailable(e)),
            }
        }
        Ok(())
    }

    /// A delivered notification's older attempts and its chunks expire with it (the attempt just
    /// recorded and the row already carry `expires_at`). Best effort: what fails here is kept
    /// longer, which is no reason to deliver the notification again. A first attempt delivered
    /// in its series skips the query for older ones, so the log item of an earlier attempt 1
    /// whose record was cut (a function stopped between its two writes) keeps no expiry: rare,
    /// and one small item.
    async fn expire_the_rest(&self, event: &QueuedEvent, log: &AttemptLog, this: &str, expires_at: i64) {
        let result = async {
            if log.series > 0 || log.attempt > 1 {
                let older = self.attempt_sks(&event.event_id).await?.into_iter().filter(|sk| sk != this).collect();
                self.set_expiry(&event.event_id, older, Some(expires_at)).await?;
            }
            if in_chunks(&event.body) {
                let body_ref = chunks_ref(&event.body);
                let parts = event.body.len().div_ceil(BODY_CHUNK);
                let sks = (0..parts).map(|i| chunk_sk(&body_ref, i)).collect();
                self.set_expiry(&event.event_id, sks, Some(expires_at + CHUNK_GRACE.as_secs() as i64)).await?;
            }
            Ok::<_, StoreError>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(event_id = %event.event_id, error = %e, "delivered, but some of its items keep no expiry");
        }
    }

    /// An `UpdateItem` of a notification's row (`EVENT#<id>` / `EVENT`).
    fn update_event(
        &self,
        event_id: &str,
    ) -> aws_sdk_dynamodb::operation::update_item::builders::UpdateItemFluentBuilder {
        self.dynamo.update_item().table_name(&self.table).key("pk", event_pk(event_id)).key("sk", s("EVENT"))
    }

    /// A new series for one notification and its message; `None` when it is not this
    /// instance's or is pending (and not overdue).
    async fn redeliver_event(
        &self,
        instance_id: i64,
        id: &str,
        only: Option<EventStatus>,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        let Some(item) = self.start_series(id, now_ms, None, Some((instance_id, only))).await? else { return Ok(None) };
        let series = get_n(&item, "series").unwrap_or(0);
        let message = match item.get("body").and_then(|b| b.as_b().ok()) {
            Some(body) => QueueMessage::of(id, instance_id, series, body.as_ref()),
            // In chunks: far too large for a message.
            None => QueueMessage { event_id: id.to_owned(), instance_id, series, notification: None },
        };
        // Delivered before, it was set to expire (the row's TTL is gone with the update): its
        // chunks and attempts are kept again, or the row would outlive its bytes and history.
        // Chunks are cleared whatever the row says: a redelivery that failed halfway may have
        // left some set to expire under a row that no longer is.
        let (chunks, expired) = (chunk_sks(&item), item.contains_key("expires_at"));
        if !chunks.is_empty() || expired {
            let kept = async {
                self.set_expiry(id, chunks, None).await?;
                if expired {
                    self.set_expiry(id, self.attempt_sks(id).await?, None).await?;
                }
                Ok(())
            };
            if let Err(e) = kept.await {
                self.not_queued(std::slice::from_ref(&message), now_ms, &e).await;
                return Err(e);
            }
        }
        if let Err(e) = self.queue.send(std::slice::from_ref(&message)).await {
            self.not_queued(std::slice::from_ref(&message), now_ms, &e).await;
            return Err(e);
        }
        Ok(Some(message.event_id))
    }

    /// The queue refused `messages` after `start_series` marked their rows pending. Left so, a
    /// row would say pending forever with nothing queued, and `redeliver` (which leaves pending
    /// notifications alone) could not recover it. Failed, it is listed and redeliverable; a
    /// Greenhouse retry of the delivery starts a new series anyway. Only the series just started
    /// is touched. Best effort: the caller's error goes back either way.
    async fn not_queued(&self, messages: &[QueueMessage], now_ms: i64, why: &StoreError) {
        for m in messages {
            let result = self
                .update_event(&m.event_id)
                .condition_expression("series = :series AND #st = :pending")
                .update_expression("SET #st = :failed, gsi2pk = :g2pk, updated_at = :now, dead_letter_reason = :r REMOVE next_attempt_at")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":g2pk", status_pk(m.instance_id, "failed"))
                .expression_attribute_values(":series", n(m.series))
                .expression_attribute_values(":pending", s("pending"))
                .expression_attribute_values(":failed", s("failed"))
                .expression_attribute_values(":now", n(now_ms))
                .expression_attribute_values(":r", s(NOT_QUEUED))
                .send()
                .await;
            if let Err(e) = result
                && !condition_failed(&e)
            {
                tracing::error!(
                    event_id = %m.event_id,
                    queue_error = %why,
                    error = %DisplayErrorContext(&e),
                    "notification not queued and still marked pending: a Greenhouse retry queues it, or a redelivery once it is 15 minutes overdue"
                );
            }
        }
    }

    /// Marks the event pending in a new series (or the first one) and returns its row: as it is now
    /// for an ingest (`fields`), as it was before (but with the new `series`) for a redelivery.
    async fn start_series(
        &self,
        event_id: &str,
        now_ms: i64,
        fields: Option<(&Accepted, u32, &[u8])>,
        only_if_not_pending: Option<(i64, Option<EventStatus>)>,
    ) -> Result<Option<Item>, StoreError> {
        let chunks = match fields {
            Some((_, _, body)) if in_chunks(body) => Some(self.put_chunks(event_id, body).await?),
            _ => None,
        };
        let mut req = self
            .update_event(event_id)
            .update_expression(match (fields, &chunks) {
                (Some(_), None) => {
                    "SET series = if_not_exists(series, :neg) + :one, #st = :pending, attempts = :zero, next_attempt_at = :now, \
                     updated_at = :now, event_id = :id, instance_id = :inst, part = :part, #ac = :action, created_at = if_not_exists(created_at, :now), \
                     body = :body, gsi1pk = :g1pk, gsi1sk = if_not_exists(gsi1sk, :g1sk), gsi2pk = :g2pk, gsi2sk = if_not_exists(gsi1sk, :g1sk) \
                     REMOVE dead_letter_reason, expires_at, body_ref, body_parts"
                }
                (Some(_), Some(_)) => {
                    "SET series = if_not_exists(series, :neg) + :one, #st = :pending, attempts = :zero, next_attempt_at = :now, \
                     updated_at = :now, event_id = :id, instance_id = :inst, part = :part, #ac = :action, created_at = if_not_exists(created_at, :now), \
                     body_ref = :ref, body_parts = :parts, gsi1pk = :g1pk, gsi1sk = if_not_exists(gsi1sk, :g1sk), gsi2pk = :g2pk, \
                     gsi2sk = if_not_exists(gsi1sk, :g1sk) REMOVE dead_letter_reason, expires_at, body"
                }
                (None, _) => {
                    "SET series = series + :one, #st = :pending, gsi2pk = :g2pk, gsi2sk = if_not_exists(gsi2sk, gsi1sk), attempts = :zero, \
                     next_attempt_at = :now, updated_at = :now REMOVE dead_letter_reason, expires_at"
                }
            })
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":pending", s("pending"))
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":now", n(now_ms))
            // A redelivery needs to know whether the row was set to expire (see `redeliver_event`).
            .return_values(if fields.is_some() { ReturnValue::AllNew } else { ReturnValue::AllOld });
        if let Some((a, part, body)) = fields {
            req = req
                .expression_attribute_names("#ac", "action")
                .expression_attribute_values(":neg", n(-1))
                .expression_attribute_values(":id", s(event_id))
                .expression_attribute_values(":inst", n(a.instance_id))
                .expression_attribute_values(":part", n(part))
                .expression_attribute_values(":action", s(&a.action))
                .expression_attribute_values(":g1pk", s(format!("EVENTS#{}", a.instance_id)))
                .expression_attribute_values(":g1sk", s(event_sort(a.accepted_at_ms, event_id)));
            req = match &chunks {
                None => req.expression_attribute_values(":body", Av::B(Blob::new(body))),
                Some((body_ref, parts)) => {
                    req.expression_attribute_values(":ref", s(body_ref)).expression_attribute_values(":parts", n(parts))
                }
            };
        }
        if let Some(instance_id) = fields.map(|(a, _, _)| a.instance_id).or(only_if_not_pending.map(|o| o.0)) {
            req = req.expression_attribute_values(":g2pk", status_pk(instance_id, "pending"));
        }
        if let Some((instance_id, only)) = only_if_not_pending {
            // A pending notification is left alone (its message is on the queue), unless its
            // attempt is overdue by STALE_PENDING: then its message was lost (a function stopped
            // between the row and the queue), and a new series is the way to deliver it.
            // With `only`, the row must still have the status it was listed under.
            let condition = "instance_id = :inst AND (#st <> :pending OR next_attempt_at < :stale)";
            req = req
                .condition_expression(if only.is_some() {
                    format!("{condition} AND #st = :only")
                } else {
                    condition.to_owned()
                })
                .expression_attribute_values(":inst", n(instance_id))
                .expression_attribute_values(":stale", n(now_ms - STALE_PENDING.as_millis() as i64));
            if let Some(status) = only {
                req = req.expression_attribute_values(":only", s(status.as_str()));
            }
        }
        match req.send().await {
            Ok(out) => {
                let mut item = out.attributes;
                if fields.is_none()
                    && let Some(item) = &mut item
                {
                    let series = get_n::<u32>(item, "series").ok_or_else(|| corrupt("series"))?;
                    item.insert("series".into(), n(series + 1));
                }
                Ok(item)
            }
            Err(e) if condition_failed(&e) => Ok(None),
            Err(e) => Err(unavailable(e)),
        }
    }
}

#[async_trait]
impl Instances for DynamoStore {
    async fn create(&self, spec: InstanceSpec, token_hash: String, created_at_ms: i64) -> Result<Instance, StoreError> {
        let counter = self
            .dynamo
            .update_item()
            .table_name(&self.table)
            .key("pk", s("COUNTER"))
            .key("sk", s("INSTANCE_ID"))
            .update_expression("ADD n :one")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable)?;
        let id: i64 = counter.attributes.as_ref().and_then(|a| get_n(a, "n")).ok_or_else(|| corrupt("counter"))?;
        let (pk, sk) = instance_key(id);
        self.dynamo
            .put_item()
            .table_name(&self.table)
            .item("pk", pk)
            .item("sk", sk)
            .item("instance_id", n(id))
            .item("name", s(&spec.name))
            .item("tags", s(serde_json::to_string(&spec.tags).unwrap_or_default()))
            .item("configuration", s(serde_json::to_string(&spec.configuration).unwrap_or_default()))
            .item("token_hash", s(&token_hash))
            .item("created_at", n(created_at_ms))
            .item("gsi1pk", s("INSTANCES"))
            .item("gsi1sk", s(format!("{id:020}")))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await
            .map_err(unavailable)?;
        Ok(Instance { id, spec, token_hash, created_at_ms, last_ping: None })
    }

    async fn get(&self, id: i64) -> Result<Option<Instance>, StoreError> {
        self.live_instance_item(id).await?.as_ref().map(Self::instance_from_item).transpose()
    }

    async fn list(&self, after: Option<i64>, limit: usize) -> Result<Vec<Instance>, StoreError> {
        // Deleted instances stay in the index (their ids are never reused): skipped here.
        let mut pages = self
            .dynamo
            .query()
            .table_name(&self.table)
            .index_name("gsi1")
            .key_condition_expression("gsi1pk = :p AND gsi1sk > :after")
            .expression_attribute_values(":p", s("INSTANCES"))
            .expression_attribute_values(":after", s(format!("{:020}", after.unwrap_or(0).max(0))))
            // Pages of the size asked for: a short page (deleted ones skipped) reads on.
            .limit(i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000))
            .into_paginator()
            .items()
            .send();
        let mut out = vec![];
        while out.len() < limit
            && let Some(item) = pages.next().await
        {
            let item = item.map_err(unavailable)?;
            if !item.contains_key("deleted_at") {
                out.push(Self::instance_from_item(&item)?);
            }
        }
        Ok(out)
    }

    /// A compare-and-set on the item's `revision` (absent: 0), which every update raises: the
    /// spec is compared with `expected` at the revision read, and written only while the item
    /// is still at that revision.
    async fn update(&self, id: i64, expected: &InstanceSpec, spec: InstanceSpec) -> Result<SpecUpdate, StoreError> {
        let Some(item) = self.live_instance_item(id).await? else { return Ok(SpecUpdate::Gone) };
        if Self::instance_from_item(&item)?.spec != *expected {
            return Ok(SpecUpdate::Changed);
        }
        let revision = get_n::<i64>(&item, "revision").unwrap_or(0);
        let result = self
            .update_instance(id)
            .update_expression("SET #n = :n, tags = :t, configuration = :c, revision = :next")
            .condition_expression(
                "attribute_exists(pk) AND attribute_not_exists(deleted_at) \
                 AND (attribute_not_exists(revision) OR revision = :r)",
            )
            .expression_attribute_names("#n", "name")
            .expression_attribute_values(":n", s(&spec.name))
            .expression_attribute_values(":t", s(serde_json::to_string(&spec.tags).unwrap_or_default()))
            .expression_attribute_values(":c", s(serde_json::to_string(&spec.configuration).unwrap_or_default()))
            .expression_attribute_values(":r", n(revision))
            .expression_attribute_values(":next", n(revision + 1))
            .return_values(ReturnValue::AllNew)
            .send()
            .await;
        match result {
            Ok(out) => match out.attributes.as_ref().map(Self::instance_from_item).transpose()? {
                Some(instance) => Ok(SpecUpdate::Done(Box::new(instance))),
                None => Err(corrupt("an updated instance with no attributes")),
            },
            // Updated or deleted since the read: the caller reads again.
            Err(e) if condition_failed(&e) => Ok(SpecUpdate::Changed),
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn delete(&self, id: i64) -> Result<bool, StoreError> {
        Ok(self.set_on_live_instance(id, "deleted_at", n(self.clock.now_ms())).await?.is_some())
    }

    async fn replace_token(&self, id: i64, token_hash: String) -> Result<Option<Instance>, StoreError> {
        self.set_on_live_instance(id, "token_hash", s(&token_hash))
            .await?
            .as_ref()
            .map(Self::instance_from_item)
            .transpose()
    }

    async fn record_ping(&self, id: i64, ping: Map<String, Value>) -> Result<(), StoreError> {
        self.update_instance(id)
            .update_expression("SET last_ping = :p")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":p", s(serde_json::to_string(&ping).unwrap_or_default()))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl Events for DynamoStore {
    /// Order: check the dedupe key, write the log, send to SQS, then write the dedupe key. A
    /// failure anywhere before the last step makes Greenhouse retry (503), and the retry is
    /// queued again with the same eventId: a possible duplicate, never a loss.
    async fn accept(&self, a: Accepted) -> Result<AcceptOutcome, StoreError> {
        let dedupe_pk = s(format!("DEDUPE#{}#{}", a.instance_id, a.delivery_key));
        let earlier = self
            .dynamo
            .get_item()
            .table_name(&self.table)
            .key("pk", dedupe_pk.clone())
            .key("sk", s("DEDUPE"))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?
            .item;
        if let Some(item) = earlier
            && get_n::<i64>(&item, "expires_at_ms").unwrap_or(0) > a.accepted_at_ms
        {
            return Ok(AcceptOutcome::Duplicate { event_id: get_s(&item, "event_id").unwrap_or_default() });
        }
        let mut messages = vec![];
        for note in &a.notifications {
            let item = self
                .start_series(&note.event_id, a.accepted_at_ms, Some((&a, note.part, &note.body)), None)
                .await?
                .ok_or_else(|| corrupt("event update returned nothing"))?;
            messages.push(QueueMessage::of(
                &note.event_id,
                a.instance_id,
                get_n(&item, "series").unwrap_or(0),
                &note.body,
            ));
        }
        if let Err(e) = self.queue.send(&messages).await {
            self.not_queued(&messages, a.accepted_at_ms, &e).await;
            return Err(e);
        }
        let first = a.notifications.first().map(|n| n.event_id.clone()).unwrap_or_default();
        self.dynamo
            .put_item()
            .table_name(&self.table)
            .item("pk", dedupe_pk)
            .item("sk", s("DEDUPE"))
            .item("event_id", s(first))
            .item("expires_at_ms", n(a.dedupe_until_ms))
            // DynamoDB's TTL attribute: seconds since the epoch.
            .item("expires_at", n(a.dedupe_until_ms / 1000))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(AcceptOutcome::Queued)
    }

    /// Newest first from an index: `gsi1` (all of the instance's notifications) or, for one
    /// status, `gsi2` (that status's partition, keys only; the rows are then read by key). Either
    /// way an instance with a million delivered notifications lists its few failed ones by
    /// reading those.
    async fn list(&self, instance_id: i64, q: &EventQuery) -> Result<Vec<EventRecord>, StoreError> {
        let (index, hash, range, partition) = match q.status {
            Some(st) => ("gsi2", "gsi2pk", "gsi2sk", status_pk(instance_id, st.as_str())),
            None => ("gsi1", "gsi1pk", "gsi1sk", s(format!("EVENTS#{instance_id}"))),
        };
        let mut req = self
            .dynamo
            .query()
            .table_name(&self.table)
            .index_name(index)
            .scan_index_forward(false)
            .expression_attribute_values(":p", partition);
        // A page after `before` ends at its sort key (inclusive: BETWEEN is; it is skipped below).
        let before = q.before.as_ref().map(|(ms, id)| event_sort(*ms, id));
        if let (Some(since), Some(b)) = (q.since_ms, &before)
            && since_after(since, b)
        {
            // Nothing is both that new and older than the cursor (and BETWEEN would refuse it).
            return Ok(vec![]);
        }
        req = match (q.since_ms, &before) {
            (Some(since), None) => req
                .key_condition_expression(format!("{hash} = :p AND {range} >= :since"))
                .expression_attribute_values(":since", s(format!("{since:015}"))),
            (Some(since), Some(b)) => req
                .key_condition_expression(format!("{hash} = :p AND {range} BETWEEN :since AND :before"))
                .expression_attribute_values(":since", s(format!("{since:015}")))
                .expression_attribute_values(":before", s(b)),
            (None, Some(b)) => req
                .key_condition_expression(format!("{hash} = :p AND {range} < :before"))
                .expression_attribute_values(":before", s(b)),
            (None, None) => req.key_condition_expression(format!("{hash} = :p")),
        };
        if q.status.is_none() && q.ids_only {
            // What `event_from_item` requires, without the body (up to 400 KB per item).
            req = req
                .projection_expression("event_id, instance_id, #st, gsi1sk")
                .expression_attribute_names("#st", "status");
        }
        let mut pages = req.into_paginator().items().send();
        let (mut items, mut bytes) = (vec![], 0);
        while items.len() < q.limit && q.max_bytes.is_none_or(|max| bytes <= max) {
            let Some(item) = pages.next().await else { break };
            let item = item.map_err(unavailable)?;
            if before.is_some() && get_s(&item, range) == before {
                continue;
            }
            bytes += stored_size(&item);
            items.push(item);
        }
        if let Some(status) = q.status {
            let ids: Vec<String> = items
                .iter()
                .filter_map(|i| get_s(i, "pk").and_then(|pk| pk.strip_prefix("EVENT#").map(str::to_owned)))
                .collect();
            if q.ids_only {
                return Ok(ids
                    .into_iter()
                    .map(|event_id| EventRecord::listed(event_id, instance_id, status))
                    .collect());
            }
            // The index lags the table by a moment: a row that has just changed status is left
            // out here (it is listed under its new one). Read 50 at a time, to stop at
            // `max_bytes` without reading the rest.
            (items, bytes) = (vec![], 0);
            'read: for chunk in ids.chunks(50) {
                let mut rows = self.rows(chunk).await?;
                for row in chunk.iter().filter_map(|id| rows.remove(id)) {
                    if get_s(&row, "status").as_deref() != Some(status.as_str()) {
                        continue;
                    }
                    bytes += stored_size(&row);
                    items.push(row);
                    if q.max_bytes.is_some_and(|max| bytes > max) {
                        break 'read;
                    }
                }
            }
        }
        let mut out = items.iter().map(Self::event_from_item).collect::<Result<Vec<_>, _>>()?;
        if !q.ids_only {
            // One query per notification, `MANAGEMENT_CONCURRENCY` at a time: a page of 500
            // waits for about 32 round trips, not 500.
            let each: Vec<_> = out.iter().map(|e| self.attempts_of(&e.event_id)).collect();
            let attempts: Vec<Result<Vec<AttemptLog>, StoreError>> =
                futures_util::stream::iter(each).buffered(MANAGEMENT_CONCURRENCY).collect().await;
            for (e, a) in out.iter_mut().zip(attempts) {
                e.attempts = a?;
            }
            for (e, item) in out.iter_mut().zip(&items) {
                if item.contains_key("body_ref") {
                    e.body = self.body_of(&e.event_id, item).await?;
                }
            }
        }
        Ok(out)
    }

    async fn get(&self, instance_id: i64, event_id: &str) -> Result<Option<EventRecord>, StoreError> {
        let Some(item) = self.event_row(event_id).await? else { return Ok(None) };
        let mut event = Self::event_from_item(&item)?;
        if event.instance_id != instance_id {
            return Ok(None);
        }
        event.body = self.body_of(event_id, &item).await?;
        event.attempts = self.attempts_of(event_id).await?;
        Ok(Some(event))
    }

    async fn record_attempt(&self, event: &QueuedEvent, log: AttemptLog, next: NextStep) -> Result<(), StoreError> {
        // Delivered: the row and its attempts expire `retention` after (DynamoDB TTL, seconds).
        let expires_at =
            matches!(next, NextStep::Delivered).then(|| (ended_at(&log) + self.retention.as_millis() as i64) / 1000);
        let sk = attempt_sk(&log);
        let mut put = self
            .dynamo
            .put_item()
            .table_name(&self.table)
            .item("pk", event_pk(&event.event_id))
            .item("sk", s(&sk))
            .item("at", n(log.at_ms))
            .item("series", n(log.series))
            .item("attempt", n(log.attempt))
            .item("duration_ms", n(log.duration_ms))
            .item("response_body", s(&log.response_body));
        if let Some(code) = log.status_code {
            put = put.item("status_code", n(code));
        }
        if let Some(err) = &log.error {
            put = put.item("error", s(err));
        }
        if let Some(at) = expires_at {
            put = put.item("expires_at", n(at));
        }
        put.send().await.map_err(unavailable)?;
        let status = match next {
            NextStep::Delivered => "delivered",
            NextStep::RetryAt { .. } => "pending",
            NextStep::DeadLettered(_) => "failed",
        };
        let mut update = self
            .update_event(&event.event_id)
            .condition_expression("series = :series")
            .expression_attribute_names("#st", "status")
            .expression_attribute_values(":series", n(event.series))
            .expression_attribute_values(":st", s(status))
            .expression_attribute_values(":g2pk", status_pk(event.instance_id, status))
            .expression_attribute_values(":a", n(log.attempt))
            .expression_attribute_values(":u", n(ended_at(&log)));
        update = match &next {
            NextStep::RetryAt { at_ms } => update
                .update_expression("SET #st = :st, gsi2pk = :g2pk, attempts = :a, updated_at = :u, next_attempt_at = :next")
                .expression_attribute_values(":next", n(*at_ms)),
            NextStep::Delivered => update
                .update_expression("SET #st = :st, gsi2pk = :g2pk, attempts = :a, updated_at = :u, expires_at = :exp REMOVE next_attempt_at")
                .expression_attribute_values(":exp", n(expires_at.unwrap_or_default())),
            NextStep::DeadLettered(reason) => update
                .update_expression("SET #st = :st, gsi2pk = :g2pk, attempts = :a, updated_at = :u, dead_letter_reason = :r REMOVE next_attempt_at")
                .expression_attribute_values(":r", s(reason.as_str())),
        };
        match update.send().await {
            Ok(_) => {
                if let Some(at) = expires_at {
                    self.expire_the_rest(event, &log, &sk, at).await;
                }
                Ok(())
            }
            // A redelivery started a new series meanwhile: the attempt is logged, the row is its.
            Err(e) if condition_failed(&e) => Ok(()),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Up to `MANAGEMENT_CONCURRENCY` at once: a bulk redelivery of 500 waits for about 32
    /// round trips of UpdateItem + SendMessageBatch instead of 500 (the function has 10 s). Each
    /// one runs to its end (none is cut between its row and its message); then the first error,
    /// if any, is returned.
    async fn redeliver(
        &self,
        instance_id: i64,
        event_ids: &[String],
        only: Option<EventStatus>,
        now_ms: i64,
    ) -> Result<Vec<String>, StoreError> {
        let each: Vec<_> = event_ids.iter().map(|id| self.redeliver_event(instance_id, id, only, now_ms)).collect();
        let results: Vec<Result<Option<String>, StoreError>> =
            futures_util::stream::iter(each).buffered(MANAGEMENT_CONCURRENCY).collect().await;
        let mut done = vec![];
        for r in results {
            done.extend(r?);
        }
        Ok(done)
    }
}

/// Instances for the delivery function: a warm Lambda reuses what it read for `ttl`, so a
/// batch of ten notifications costs one read, and a configuration change lands within `ttl`.
pub struct CachedInstances<I> {
    inner: I,
    ttl: Duration,
    cache: RwLock<HashMap<i64, (Instant, Option<Instance>)>>,
}

impl<I> CachedInstances<I> {
    pub fn new(inner: I, ttl: Duration) -> Self {
        CachedInstances { inner, ttl, cache: RwLock::default() }
    }
}

#[async_trait]
impl<I: Instances> Instances for CachedInstances<I> {
    async fn create(&self, spec: InstanceSpec, token_hash: String, created_at_ms: i64) -> Result<Instance, StoreError> {
        self.inner.create(spec, token_hash, created_at_ms).await
    }
    async fn get(&self, id: i64) -> Result<Option<Instance>, StoreError> {
        if let Some((at, i)) = self.cache.read().await.get(&id)
            && at.elapsed() < self.ttl
        {
            return Ok(i.clone());
        }
        let fresh = self.inner.get(id).await?;
        self.cache.write().await.insert(id, (Instant::now(), fresh.clone()));
        Ok(fresh)
    }
    async fn list(&self, after: Option<i64>, limit: usize) -> Result<Vec<Instance>, StoreError> {
        self.inner.list(after, limit).await
    }
    async fn update(&self, id: i64, expected: &InstanceSpec, spec: InstanceSpec) -> Result<SpecUpdate, StoreError> {
        self.cache.write().await.remove(&id);
        self.inner.update(id, expected, spec).await
    }
    async fn delete(&self, id: i64) -> Result<bool, StoreError> {
        self.cache.write().await.remove(&id);
        self.inner.delete(id).await
    }
    async fn replace_token(&self, id: i64, token_hash: String) -> Result<Option<Instance>, StoreError> {
        self.cache.write().await.remove(&id);
        self.inner.replace_token(id, token_hash).await
    }
    async fn record_ping(&self, id: i64, ping: Map<String, Value>) -> Result<(), StoreError> {
        self.inner.record_ping(id, ping).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(status: EventStatus, series: u32, attempts: u32) -> RowState {
        RowState { status, series, attempts, next_attempt_at_ms: None, body: None }
    }

    #[test]
    fn a_message_of_the_rows_series_continues_its_count_and_a_settled_one_is_skipped() {
        let pending = row(EventStatus::Pending, 2, 3);
        assert!(!pending.settled_for(2));
        assert_eq!(pending.attempts_for(2), 3);
        // An older series' message: the redelivery's series owns the row.
        assert!(pending.settled_for(1));
        // A stale read of a row a redelivery just restarted: no attempt of series 3 yet.
        assert!(!pending.settled_for(3));
        assert_eq!(pending.attempts_for(3), 0);
        for status in [EventStatus::Delivered, EventStatus::Failed] {
            assert!(row(status, 2, 3).settled_for(2));
            assert!(!row(status, 2, 3).settled_for(3), "a redelivered notification's new series");
        }
    }

    #[test]
    fn a_message_back_before_its_due_time_waits_for_the_rest() {
        let due = RowState { next_attempt_at_ms: Some(100_000_000), ..row(EventStatus::Pending, 1, 6) };
        let wait = |series, now| due.wait_for(series, now, 60_000);
        // Back after 12 h of a 22 h wait: 10 h more.
        assert_eq!(wait(1, 100_000_000 - 36_000_000), Some(Duration::from_secs(36_000)));
        // Within the slack (SQS's whole seconds, clocks), or late: attempt now.
        assert_eq!(wait(1, 100_000_000 - 60_000), None);
        assert_eq!(wait(1, 100_000_000 + 5), None);
        // A message of another series, or a row no longer pending: not this rule's business.
        assert_eq!(wait(2, 0), None);
        assert_eq!(wait(0, 0), None);
        let delivered = RowState { status: EventStatus::Delivered, ..due.clone() };
        assert_eq!(delivered.wait_for(1, 0, 60_000), None);
        // With the delivery function's slack, a second copy of a message back 1.5 s before the
        // first retry is due waits for it; one back within the clocks' slack goes now.
        let slack = crate::lambda::EARLY_SLACK_MS;
        assert_eq!(due.wait_for(1, 100_000_000 - 1_500, slack), Some(Duration::from_millis(1_500)));
        assert_eq!(due.wait_for(1, 100_000_000 - slack, slack), None);
    }

    fn log(series: u32, attempt: u32, at_ms: i64) -> AttemptLog {
        AttemptLog {
            at_ms,
            series,
            attempt,
            status_code: None,
            error: None,
            duration_ms: 0,
            response_body: String::new(),
        }
    }

    #[test]
    fn a_since_is_after_a_cursor_only_when_newer_than_its_millisecond() {
        let cursor = event_sort(1_700_000_000_123, "e");
        assert!(since_after(1_700_000_000_124, &cursor));
        // The cursor's own millisecond may hold older notifications (smaller ids): between.
        assert!(!since_after(1_700_000_000_123, &cursor));
        assert!(!since_after(1_700_000_000_122, &cursor));
        assert!(!since_after(5, &event_sort(5, "")), "a key equal to the bound is not after it");
        assert!(!since_after(5, &format!("{:015}", 5)));
    }

    #[test]
    fn a_notification_is_kept_in_chunks_only_when_larger_than_one() {
        assert!(!in_chunks(&vec![b'x'; BODY_CHUNK]), "exactly one chunk's size fits in the row");
        assert!(in_chunks(&vec![b'x'; BODY_CHUNK + 1]));
    }

    #[test]
    fn attempt_keys_sort_by_series_number_and_time_and_never_collide() {
        let keys = [
            // The format before start times were added: first among its number's keys.
            "ATTEMPT#00000#002".to_owned(),
            attempt_sk(&log(0, 2, 1_000)),
            attempt_sk(&log(0, 2, 2_000)),
            attempt_sk(&log(0, 10, 500)),
            attempt_sk(&log(1, 1, 100)),
        ];
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "{keys:?}");
        assert!(keys.iter().all(|k| k.starts_with("ATTEMPT#")));
        assert_ne!(attempt_sk(&log(0, 1, 7)), attempt_sk(&log(0, 1, 7)), "two attempts in one millisecond");
    }
}
