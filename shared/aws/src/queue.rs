//! The SQS queue of notifications. Retries ride the queue: a failed attempt sets the message's
//! visibility to the next delay of the schedule.

use std::time::Duration;

use aws_sdk_sqs::Client as Sqs;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use relay_core::ports::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// SQS caps a visibility timeout at 12 hours; the longest step of the schedule is 10 hours.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

/// A notification up to this size rides in its message; a larger one stays in the table and the
/// message carries its id only (the delivery function reads it there). Below SQS's 256 KiB, the
/// message limit of queues created before SQS allowed 1 MiB, so any queue takes it.
pub const INLINE_NOTIFICATION_MAX: usize = 200 * 1024;

/// What one `SendMessageBatch` may carry in total (the sum of its bodies), with the same
/// reasoning: the smaller of the two limits SQS has had.
pub const BATCH_BYTES_MAX: usize = 256 * 1024;

/// One message: which notification, which attempt series, and the exact bytes to send (`None`
/// when they are too large for a message: the delivery function reads them from the table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub event_id: String,
    pub instance_id: i64,
    pub series: u32,
    pub notification: Option<Vec<u8>>,
}

#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    #[serde(rename = "eventId")]
    event_id: String,
    #[serde(rename = "instanceId")]
    instance_id: i64,
    series: u32,
    /// Embedded as JSON, not as an escaped string: `get()` returns the exact bytes back.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    notification: Option<&'a RawValue>,
}

impl QueueMessage {
    /// The message of a notification: with its bytes when they fit in one, else its id only.
    pub fn of(event_id: &str, instance_id: i64, series: u32, notification: &[u8]) -> Self {
        QueueMessage {
            event_id: event_id.to_owned(),
            instance_id,
            series,
            notification: (notification.len() <= INLINE_NOTIFICATION_MAX).then(|| notification.to_vec()),
        }
    }

    pub fn encode(&self) -> Result<String, StoreError> {
        let raw: Option<&RawValue> = match &self.notification {
            Some(bytes) => {
                let text = std::str::from_utf8(bytes).map_err(|e| StoreError::Unavailable(e.to_string()))?;
                Some(serde_json::from_str(text).map_err(|e| StoreError::Unavailable(e.to_string()))?)
            }
            None => None,
        };
        serde_json::to_string(&Wire {
            event_id: self.event_id.clone(),
            instance_id: self.instance_id,
            series: self.series,
            notification: raw,
        })
        .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    pub fn decode(body: &str) -> Result<Self, serde_json::Error> {
        let w: Wire<'_> = serde_json::from_str(body)?;
        Ok(QueueMessage {
            event_id: w.event_id,
            instance_id: w.instance_id,
            series: w.series,
            notification: w.notification.map(|n| n.get().as_bytes().to_vec()),
        })
    }
}

/// How many of the messages of these sizes go in each `SendMessageBatch`, in order: at most ten,
/// and at most `BATCH_BYTES_MAX` bytes together (one larger message goes alone: SQS says why).
fn batch_sizes(sizes: &[usize]) -> Vec<usize> {
    let mut out = vec![];
    let (mut count, mut bytes) = (0, 0);
    for &size in sizes {
        if count > 0 && (count == 10 || bytes + size > BATCH_BYTES_MAX) {
            out.push(count);
            (count, bytes) = (0, 0);
        }
        count += 1;
        bytes += size;
    }
    if count > 0 {
        out.push(count);
    }
    out
}

/// SQS's visibility for a delay: whole seconds, rounded up (a message must not come back before
/// its attempt is due), at most 12 h.
fn visibility_secs(delay: Duration) -> i32 {
    delay.min(MAX_VISIBILITY).as_millis().div_ceil(1000) as i32
}

#[derive(Clone)]
pub struct Queue {
    sqs: Sqs,
    url: String,
}

impl Queue {
    pub fn new(sqs: Sqs, url: impl Into<String>) -> Self {
        Queue { sqs, url: url.into() }
    }

    /// Sends every message (batches of at most ten and `BATCH_BYTES_MAX` bytes); fails unless all
    /// were accepted by SQS.
    ///
    /// Each message carries its instance as `MessageGroupId`, which makes the standard queue an
    /// SQS fair queue: an instance whose backlog or slow callback takes a disproportionate share
    /// of the delivery function's capacity is served after the quiet ones, so one customer's
    /// outage does not delay everyone's notifications. (On a standard queue the group id sets
    /// no order and no deduplication.)
    pub async fn send(&self, messages: &[QueueMessage]) -> Result<(), StoreError> {
        let bodies = messages.iter().map(QueueMessage::encode).collect::<Result<Vec<_>, _>>()?;
        let sizes: Vec<usize> = bodies.iter().map(String::len).collect();
        let mut each = messages.iter().zip(bodies);
        for size in batch_sizes(&sizes) {
            let mut batch = self.sqs.send_message_batch().queue_url(&self.url);
            for (i, (m, body)) in each.by_ref().take(size).enumerate() {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_group_id(m.instance_id.to_string())
                    .message_body(body)
                    .build()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                batch = batch.entries(entry);
            }
            let out = batch.send().await.map_err(|e| StoreError::Unavailable(DisplayErrorContext(e).to_string()))?;
            if !out.failed.is_empty() {
                let why: Vec<String> = out
                    .failed
                    .iter()
                    .map(|f| format!("{}: {}", f.code, f.message.clone().unwrap_or_default()))
                    .collect();
                return Err(StoreError::Unavailable(format!("SQS refused messages: {}", why.join(", "))));
            }
        }
        Ok(())
    }

    /// Makes a received message visible again after `delay` (capped at 12 h).
    pub async fn retry_after(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError> {
        let secs = visibility_secs(delay);
        self.sqs
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| StoreError::Unavailable(DisplayErrorContext(e).to_string()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_hold_ten_messages_and_256_kib_at_most() {
        assert_eq!(batch_sizes(&[]), Vec::<usize>::new());
        assert_eq!(batch_sizes(&[100; 25]), vec![10, 10, 5]);
        let kib = 1024;
        // 100 KiB each: two fit (200 KiB), a third would make 300.
        assert_eq!(batch_sizes(&[100 * kib; 5]), vec![2, 2, 1]);
        // Exactly the limit fits; one byte more starts a new batch.
        assert_eq!(batch_sizes(&[128 * kib, 128 * kib, 1]), vec![2, 1]);
        // A message over the limit goes alone (SQS refuses it with its own reason), first too:
        // no empty batch before it.
        assert_eq!(batch_sizes(&[1, 300 * kib, 1]), vec![1, 1, 1]);
        assert_eq!(batch_sizes(&[300 * kib, 1]), vec![1, 1]);
    }

    #[test]
    fn a_delay_becomes_whole_seconds_rounded_up_and_at_most_12_hours() {
        let ms = Duration::from_millis;
        assert_eq!(visibility_secs(ms(0)), 0);
        assert_eq!(visibility_secs(ms(1)), 1);
        assert_eq!(visibility_secs(ms(4_000)), 4);
        assert_eq!(visibility_secs(ms(4_001)), 5);
        assert_eq!(visibility_secs(ms(5_999)), 6);
        assert_eq!(visibility_secs(Duration::from_secs(12 * 3600)), 43_200);
        assert_eq!(visibility_secs(Duration::from_secs(30 * 3600)), 43_200);
    }

    #[test]
    fn a_notification_rides_in_its_message_only_when_it_fits() {
        let small = br#"{"a":1}"#;
        let m = QueueMessage::of("e", 7, 2, small);
        let back = QueueMessage::decode(&m.encode().unwrap()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.notification.as_deref(), Some(&small[..]));

        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(INLINE_NOTIFICATION_MAX));
        let m = QueueMessage::of("e", 7, 2, big.as_bytes());
        assert_eq!(m.notification, None);
        let wire = m.encode().unwrap();
        assert!(wire.len() < 100, "the id only: {wire}");
        assert_eq!(QueueMessage::decode(&wire).unwrap(), m);
    }
}
