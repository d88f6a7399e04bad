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

/// One message: which notification, which attempt series, and the exact bytes to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueMessage {
    pub event_id: String,
    pub instance_id: i64,
    pub series: u32,
    pub notification: Vec<u8>,
}

#[derive(Serialize, Deserialize)]
struct Wire<'a> {
    #[serde(rename = "eventId")]
    event_id: String,
    #[serde(rename = "instanceId")]
    instance_id: i64,
    series: u32,
    /// Embedded as JSON, not as an escaped string: `get()` returns the exact bytes back.
    #[serde(borrow)]
    notification: &'a RawValue,
}

impl QueueMessage {
    pub fn encode(&self) -> Result<String, StoreError> {
        let text = std::str::from_utf8(&self.notification).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let raw: &RawValue = serde_json::from_str(text).map_err(|e| StoreError::Unavailable(e.to_string()))?;
        serde_json::to_string(&Wire { event_id: self.event_id.clone(), instance_id: self.instance_id, series: self.series, notification: raw })
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    pub fn decode(body: &str) -> Result<Self, serde_json::Error> {
        let w: Wire<'_> = serde_json::from_str(body)?;
        Ok(QueueMessage { event_id: w.event_id, instance_id: w.instance_id, series: w.series, notification: w.notification.get().as_bytes().to_vec() })
    }
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

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends every message (batches of ten); fails unless all were accepted by SQS.
    ///
    /// Each message carries its instance as `MessageGroupId`, which makes the standard queue an
    /// SQS fair queue: an instance whose backlog or slow callback takes a disproportionate share
    /// of the delivery function's capacity is served after the quiet ones, so one customer's
    /// outage does not delay everyone's notifications. (On a standard queue the group id sets
    /// no order and no deduplication.)
    pub async fn send(&self, messages: &[QueueMessage]) -> Result<(), StoreError> {
        for chunk in messages.chunks(10) {
            let mut batch = self.sqs.send_message_batch().queue_url(&self.url);
            for (i, m) in chunk.iter().enumerate() {
                let entry = SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_group_id(m.instance_id.to_string())
                    .message_body(m.encode()?)
                    .build()
                    .map_err(|e| StoreError::Unavailable(e.to_string()))?;
                batch = batch.entries(entry);
            }
            let out = batch.send().await.map_err(|e| StoreError::Unavailable(DisplayErrorContext(e).to_string()))?;
            if !out.failed.is_empty() {
                let why: Vec<String> = out.failed.iter().map(|f| format!("{}: {}", f.code, f.message.clone().unwrap_or_default())).collect();
                return Err(StoreError::Unavailable(format!("SQS refused messages: {}", why.join(", "))));
            }
        }
        Ok(())
    }

    /// Makes a received message visible again after `delay` (capped at 12 h).
    pub async fn retry_after(&self, receipt_handle: &str, delay: Duration) -> Result<(), StoreError> {
        let secs = delay.min(MAX_VISIBILITY).as_secs() as i32;
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
