//! The AWS runtime against DynamoDB and SQS in moto, through the real SDK: ingest puts a message
//! on the queue, the delivery handler fed with the received messages as an SQS event reaches a
//! loopback receiver; failures change visibility; the last attempt dead-letters; a down
//! emulator makes the ingest answer 503; what the queue refuses is left failed and redeliverable,
//! and a pending notification whose message was lost can be redelivered. Plus every sample in
//! `events/` through its handler.

mod harness;

use std::sync::Arc;
use std::time::Duration;

use harness::*;
use relay_aws::{Delivery, QueueMessage};
use relay_callback::HttpCallback;
use serde_json::{Value, json};

const VENDOR_KEY: &str = "sample-greenhouse-secret";
const SIGNING_KEY: &str = "receiver-key";

async fn instance(api: &relay_core::api::Api, callback: &str) -> Value {
    let body = json!({"element": {"key": "greenhouse"}, "name": "aws", "tags": ["t"], "configuration": {
        "event.notification.callback.url": callback, "event.notification.signature.key": SIGNING_KEY,
        "event.vendor.signature.key": VENDOR_KEY}});
    let (status, v) = call(
        api,
        "POST",
        "/instances",
        &[admin(), ("content-type", "application/json".into())],
        serde_json::to_vec(&body).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    v
}

async fn webhook(api: &relay_core::api::Api, id: i64, body: &str, event_id: &str) -> (u16, Value) {
    call(
        api,
        "POST",
        &format!("/events/greenhouse/{id}"),
        &[("signature", greenhouse_signature(VENDOR_KEY, body.as_bytes())), ("greenhouse-event-id", event_id.into())],
        body.as_bytes().to_vec(),
    )
    .await
}

fn delivery(aws: &Aws) -> Delivery {
    Delivery::new(aws.store(), Arc::new(HttpCallback::new(loopback_policy(), Duration::from_secs(5)).unwrap()), 1.0)
}

/// An API Gateway (HTTP API, payload 2.0) event as the function receives it.
fn http_event(text: &str) -> lambda_runtime::LambdaEvent<aws_lambda_events::apigw::ApiGatewayV2httpRequest> {
    let payload = serde_json::from_str(text).expect("an API Gateway v2 event");
    lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default())
}

async fn events_of(api: &relay_core::api::Api, id: i64) -> Vec<Value> {
    let (status, v) = call(api, "GET", &format!("/instances/{id}/events"), &[admin()], vec![]).await;
    assert_eq!(status, 200, "{v}");
    v.as_array().cloned().unwrap()
}

/// Takes the one message on the queue, checks that it is series `series` of `event_id`, hands
/// it to the delivery handler, and returns the instance's events (the newest now delivered).
async fn deliver_the_queued_one(
    aws: &Aws,
    api: &relay_core::api::Api,
    id: i64,
    event_id: &str,
    series: u32,
) -> Vec<Value> {
    let event = aws.receive_event().await;
    assert_eq!(event.records.len(), 1);
    let message = QueueMessage::decode(event.records[0].body.as_deref().unwrap()).unwrap();
    assert_eq!((message.event_id.as_str(), message.series), (event_id, series));
    assert!(delivery(aws).handle_batch(event).await.batch_item_failures.is_empty());
    let events = events_of(api, id).await;
    assert_eq!(events[0]["status"], "delivered");
    events
}

#[tokio::test]
async fn ingest_queue_delivery_reaches_the_receiver_signed() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    let inst = instance(&api, &rx.url).await;
    let id = inst["id"].as_i64().unwrap();
    assert_eq!(id, 1, "ids start at 1 in a new table");
    let body = r#"{"action":"offer_updated","payload":{"id":123456789012345678901,"note":"\u003cb\u003e"}}"#;
    let (status, v) = webhook(&api, id, body, "gh-1").await;
    assert_eq!(status, 200, "{v}");
    let event_id = v["eventId"].as_str().unwrap().to_owned();
    // A duplicate is answered with the same id and queues nothing.
    let (status, dup) = webhook(&api, id, body, "gh-1").await;
    assert_eq!((status, dup["eventId"].as_str()), (200, Some(event_id.as_str())));

    let event = aws.receive_event().await;
    assert_eq!(event.records.len(), 1, "exactly one message queued");
    // The instance is the message's tenant for SQS fair queues.
    assert_eq!(event.records[0].attributes.get("MessageGroupId").map(String::as_str), Some("1"));
    let response = delivery(&aws).handle_batch(event).await;
    assert!(response.batch_item_failures.is_empty());
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (headers, sent) = &got[0];
    assert_eq!(headers["webhook-id"], event_id.as_str());
    let text = std::str::from_utf8(sent).unwrap();
    assert!(text.contains(body), "raw is spliced byte for byte");
    {
        use base64::Engine;
        use hmac::{Hmac, KeyInit, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SIGNING_KEY.as_bytes()).unwrap();
        mac.update(sent);
        let want = format!("sha256={}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
        assert_eq!(headers["elements-webhook-signature"], want.as_str());
    }
    let events = events_of(&api, id).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["status"], "delivered");
    assert_eq!(events[0]["attempts"][0]["statusCode"], 200);
    assert!(aws.receive_event().await.records.is_empty(), "nothing left on the queue");
}

#[tokio::test]
async fn a_failed_attempt_changes_visibility_and_is_a_batch_item_failure() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    rx.script.lock().unwrap().push(500);
    let inst = instance(&api, &rx.url).await;
    let id = inst["id"].as_i64().unwrap();
    webhook(&api, id, r#"{"action":"job_created","payload":{"job":{"id":5}}}"#, "f-1").await;
    let event = aws.receive_event().await;
    let message_id = event.records[0].message_id.clone().unwrap();
    let response = delivery(&aws).handle_batch(event).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert_eq!(response.batch_item_failures[0].item_identifier, message_id);
    // Visibility is now the first retry delay (5 s ± 20 %): invisible at once, back within ~6 s.
    assert!(aws.receive_event().await.records.is_empty(), "visible again too early");
    let events = events_of(&api, id).await;
    assert_eq!(events[0]["status"], "pending");
    assert_eq!(events[0]["attempts"][0]["statusCode"], 500);
    assert!(events[0]["nextAttemptDate"].is_string());
    let mut again = aws.receive_event().await;
    for _ in 0..8 {
        if !again.records.is_empty() {
            break;
        }
        again = aws.receive_event().await;
    }
    assert_eq!(again.records.len(), 1, "the message comes back after its delay");
    let receives: u32 = again.records[0].attributes["ApproximateReceiveCount"].parse().unwrap();
    assert_eq!(receives, 2);
    assert!(delivery(&aws).handle_batch(again).await.batch_item_failures.is_empty());
    let events = events_of(&api, id).await;
    assert_eq!(events[0]["status"], "delivered");
    assert_eq!(events[0]["attempts"].as_array().unwrap().len(), 2);
}

/// Attempts are counted in the table, as the local worker counts them, not from SQS's receive
/// count: receives that made no attempt (functions stopped before it, store errors) do not end
/// the schedule early. An attempt whose record was cut after its log item leaves its number to
/// the next one, and the log keeps both.
#[tokio::test]
async fn attempts_are_numbered_from_the_table_not_from_sqs_receives() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    rx.script.lock().unwrap().extend([500, 503, 200]);
    let id = instance(&api, &rx.url).await["id"].as_i64().unwrap();
    let (_, v) = webhook(&api, id, r#"{"action":"job_created","payload":{"job":{"id":8}}}"#, "n-1").await;
    let event_id = v["eventId"].as_str().unwrap().to_owned();
    let first = aws.receive_event().await;
    for (receives, status) in [("9", 500), ("12", 503)] {
        // SQS's count says 8 or more receives: by it, this would be the schedule's last attempt.
        // (Its retry delay is over: a message back before its attempt is due waits for it.)
        age_pending(&aws, &event_id).await;
        let mut event = first.clone();
        event.records[0].attributes.insert("ApproximateReceiveCount".into(), receives.into());
        let response = delivery(&aws).handle_batch(event).await;
        assert_eq!(response.batch_item_failures.len(), 1, "the {status} is retried, not dead-lettered");
    }
    let events = events_of(&api, id).await;
    assert_eq!(events[0]["status"], "pending");
    // The second attempt's record cut after its log item: the row still counts one. And its
    // retry delay (5 min) is over.
    set_attempts(&aws, &event_id, 1).await;
    age_pending(&aws, &event_id).await;
    assert!(delivery(&aws).handle_batch(first).await.batch_item_failures.is_empty());
    let events = events_of(&api, id).await;
    assert_eq!(events[0]["status"], "delivered");
    let attempts: Vec<(u64, u64)> = events[0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["attempt"].as_u64().unwrap(), a["statusCode"].as_u64().unwrap()))
        .collect();
    assert_eq!(attempts, [(1, 500), (2, 503), (2, 200)], "both attempts numbered 2 are logged, in order");
    assert_eq!(rx.got.lock().unwrap().len(), 3);
}

#[tokio::test]
async fn the_last_attempt_records_a_dead_letter_and_redelivery_requeues_it() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    rx.script.lock().unwrap().push(503);
    let inst = instance(&api, &rx.url).await;
    let id = inst["id"].as_i64().unwrap();
    let (_, v) = webhook(&api, id, r#"{"action":"job_deleted","payload":{"job":{"id":9}}}"#, "dl-1").await;
    let event_id = v["eventId"].as_str().unwrap().to_owned();
    let event = aws.receive_event().await;
    // As if seven attempts had failed: this one is the last of the schedule.
    set_attempts(&aws, &event_id, 7).await;
    let response = delivery(&aws).handle_batch(event).await;
    assert!(response.batch_item_failures.is_empty(), "a dead letter is recorded, not retried");
    let events = events_of(&api, id).await;
    assert_eq!(events[0]["status"], "failed");
    assert_eq!(events[0]["deadLetterReason"], "all attempts failed");
    assert_eq!(events[0]["attempts"][0]["attempt"], 8);

    let (status, v) =
        call(&api, "POST", &format!("/instances/{id}/events/{event_id}/redeliver"), &[admin()], vec![]).await;
    assert_eq!(status, 200, "{v}");
    // Again while pending: a no-op (200), and no second message.
    let (status, v) =
        call(&api, "POST", &format!("/instances/{id}/events/{event_id}/redeliver"), &[admin()], vec![]).await;
    assert_eq!(status, 200, "{v}");
    let (status, _) =
        call(&api, "POST", &format!("/instances/{id}/events/no-such-event/redeliver"), &[admin()], vec![]).await;
    assert_eq!(status, 404);
    let events = deliver_the_queued_one(&aws, &api, id, &event_id, 1).await;
    let series: Vec<Value> = events[0]["attempts"].as_array().unwrap().iter().map(|a| a["series"].clone()).collect();
    assert_eq!(series, vec![json!(0), json!(1)]);
    // Bulk redelivery of failed ones finds none now.
    let (_, v) =
        call(&api, "POST", &format!("/instances/{id}/events/redeliver?status=failed"), &[admin()], vec![]).await;
    assert_eq!(v["redelivered"], 0);
}

#[tokio::test]
async fn ingest_answers_503_when_the_emulator_is_down() {
    let aws = provision().await;
    let rx = Receiver::start().await;
    let inst = instance(&aws.api(), &rx.url).await;
    let id = inst["id"].as_i64().unwrap();
    // Same table and queue names, an endpoint where nothing listens.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = sdk_config(&format!("http://127.0.0.1:{port}")).await;
    let down = relay_aws::DynamoStore::new(
        aws_sdk_dynamodb::Client::new(&conf),
        aws.table.clone(),
        relay_aws::Queue::new(aws_sdk_sqs::Client::new(&conf), aws.queue_url.clone()),
    );
    let env = aws.env();
    let api = relay_aws::lambda::api(
        &env,
        down,
        Arc::new(HttpCallback::new(loopback_policy(), Duration::from_secs(1)).unwrap()),
    );
    let (status, v) = webhook(&api, id, r#"{"action":"job_created","payload":{"job":{"id":1}}}"#, "down").await;
    assert_eq!(status, 503, "{v}");
    assert!(v["message"].is_string() && v["requestId"].is_string());
    // The calls that write the instance's item under a condition: 503 as well, not a 404 saying
    // the instance is gone (an outage is no failed condition).
    for (method, path) in [("DELETE", format!("/instances/{id}")), ("POST", format!("/instances/{id}/token"))] {
        let (status, v) = call(&api, method, &path, &[admin()], vec![]).await;
        assert_eq!(status, 503, "{method} {path}: {v}");
    }
    // DynamoDB up, SQS down: still 503, and nothing is marked as seen, so Greenhouse's retry is
    // queued (a duplicate at worst, never a loss).
    let half = relay_aws::DynamoStore::new(
        aws.dynamo.clone(),
        aws.table.clone(),
        relay_aws::Queue::new(aws_sdk_sqs::Client::new(&conf), aws.queue_url.clone()),
    );
    let api = relay_aws::lambda::api(
        &env,
        half,
        Arc::new(HttpCallback::new(loopback_policy(), Duration::from_secs(1)).unwrap()),
    );
    let (status, _) = webhook(&api, id, r#"{"action":"job_created","payload":{"job":{"id":2}}}"#, "half").await;
    assert_eq!(status, 503);
    // Not left pending with nothing queued: failed, with the reason, hence listed and redeliverable.
    let events = events_of(&aws.api(), id).await;
    assert_eq!(events.len(), 1);
    let event_id = events[0]["eventId"].as_str().unwrap().to_owned();
    assert_eq!(
        (&events[0]["status"], &events[0]["deadLetterReason"]),
        (&json!("failed"), &json!(relay_aws::dynamo::NOT_QUEUED))
    );
    let (status, v) = webhook(&aws.api(), id, r#"{"action":"job_created","payload":{"job":{"id":2}}}"#, "half").await;
    assert_eq!(status, 200);
    assert!(v.get("duplicate").is_none(), "the retry after a 503 is queued, not deduped: {v}");
    assert_eq!(v["eventId"], event_id.as_str());
    assert_eq!(events_of(&aws.api(), id).await[0]["status"], "pending");
    assert_eq!(aws.receive_event().await.records.len(), 1);

    // A redelivery the queue refuses: 503, and the notification is failed again, not stuck pending.
    let refused = relay_aws::DynamoStore::new(
        aws.dynamo.clone(),
        aws.table.clone(),
        relay_aws::Queue::new(aws_sdk_sqs::Client::new(&conf), aws.queue_url.clone()),
    );
    let (status, _) =
        call(&aws.api(), "POST", &format!("/instances/{id}/events/{event_id}/redeliver"), &[admin()], vec![]).await;
    assert_eq!(status, 200, "pending and not overdue: nothing to do");
    age_pending(&aws, &event_id).await;
    let api = relay_aws::lambda::api(
        &env,
        refused,
        Arc::new(HttpCallback::new(loopback_policy(), Duration::from_secs(1)).unwrap()),
    );
    let (status, v) =
        call(&api, "POST", &format!("/instances/{id}/events/{event_id}/redeliver"), &[admin()], vec![]).await;
    assert_eq!(status, 503, "{v}");
    let events = events_of(&aws.api(), id).await;
    assert_eq!(
        (&events[0]["status"], &events[0]["deadLetterReason"]),
        (&json!("failed"), &json!(relay_aws::dynamo::NOT_QUEUED))
    );
    let (status, v) =
        call(&aws.api(), "POST", &format!("/instances/{id}/events/redeliver?status=failed"), &[admin()], vec![]).await;
    assert_eq!((status, &v["redelivered"]), (200, &json!(1)), "{v}");
    let event = aws.receive_event().await;
    let message = QueueMessage::decode(event.records[0].body.as_deref().unwrap()).unwrap();
    assert_eq!((message.event_id.as_str(), message.series), (event_id.as_str(), 3));
}

/// On the schedule's 10 h steps a `Retry-After` may ask for up to 24 h, and SQS hides a message
/// for 12 h at most: a message back before its attempt is due is hidden again for the rest,
/// without an attempt (`Deferred`), and attempted once it is due.
#[tokio::test]
async fn a_message_back_before_its_attempt_is_due_waits_for_the_rest() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    rx.script.lock().unwrap().push(503);
    *rx.retry_after.lock().unwrap() = Some("86400".into());
    let id = instance(&api, &rx.url).await["id"].as_i64().unwrap();
    let (_, v) = webhook(&api, id, r#"{"action":"job_created","payload":{"job":{"id":6}}}"#, "ra-1").await;
    let event_id = v["eventId"].as_str().unwrap().to_owned();
    // Five attempts failed before: this is the 6th, whose next step is 10 h (±20 %).
    set_attempts(&aws, &event_id, 5).await;
    let event = aws.receive_event().await;
    assert_eq!(delivery(&aws).handle_batch(event.clone()).await.batch_item_failures.len(), 1);
    let row = row_of(&aws, &event_id).await;
    let due: i64 = row["next_attempt_at"].as_n().unwrap().parse().unwrap();
    let now = now_ms();
    let hours = (due - now) as f64 / 3_600_000.0;
    assert!((15.9..=24.0).contains(&hours), "Retry-After 24 h within [delay, 2 x delay]: {hours} h");

    // Back early (SQS could hold it 12 h; here at once): no attempt, hidden again, kept.
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let metrics = relay_aws::metrics::Metrics::to("relay-Delivery", move |line| sink.lock().unwrap().push(line));
    let response = delivery(&aws).with_metrics(metrics).handle_batch(event.clone()).await;
    assert_eq!(response.batch_item_failures.len(), 1, "the message stays on the queue");
    let v: Value = serde_json::from_str(&lines.lock().unwrap()[0]).unwrap();
    assert_eq!((v["Deferred"].as_u64(), v["Retried"].as_u64(), v["Unprocessed"].as_u64()), (Some(1), Some(0), Some(0)));
    assert_eq!(rx.got.lock().unwrap().len(), 1, "no attempt before its due time");
    assert!(aws.receive(0).await.records.is_empty(), "hidden again");
    let events = events_of(&api, id).await;
    assert_eq!((events[0]["status"].as_str(), events[0]["attempts"].as_array().unwrap().len()), (Some("pending"), 1));

    // Due: attempted, as the 7th.
    age_pending(&aws, &event_id).await;
    assert!(delivery(&aws).handle_batch(event).await.batch_item_failures.is_empty());
    let events = events_of(&api, id).await;
    assert_eq!(events[0]["status"], "delivered");
    let numbers: Vec<u64> =
        events[0]["attempts"].as_array().unwrap().iter().map(|a| a["attempt"].as_u64().unwrap()).collect();
    assert_eq!(numbers, [6, 7]);
}

type Item = std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>;

/// An item of the table, by key, as the table holds it.
async fn item_of(aws: &Aws, pk: String, sk: &str) -> Option<Item> {
    use aws_sdk_dynamodb::types::AttributeValue as Av;
    let out = aws
        .dynamo
        .get_item()
        .table_name(&aws.table)
        .key("pk", Av::S(pk))
        .key("sk", Av::S(sk.to_owned()))
        .send()
        .await
        .unwrap();
    out.item
}

/// The notification's row, as the table holds it.
async fn row_of(aws: &Aws, event_id: &str) -> Item {
    item_of(aws, format!("EVENT#{event_id}"), "EVENT").await.unwrap()
}

/// Sets a number of the notification's row, as a function stopped at the right moment leaves it.
async fn set_row_number(aws: &Aws, event_id: &str, attribute: &str, value: i64) {
    set_item_number(aws, event_id, "EVENT", attribute, value).await;
}

/// Sets a number of one item of a notification (`sk`: its row, an attempt, a chunk).
async fn set_item_number(aws: &Aws, event_id: &str, sk: &str, attribute: &str, value: i64) {
    use aws_sdk_dynamodb::types::AttributeValue as Av;
    aws.dynamo
        .update_item()
        .table_name(&aws.table)
        .key("pk", Av::S(format!("EVENT#{event_id}")))
        .key("sk", Av::S(sk.to_owned()))
        .update_expression("SET #a = :v")
        .expression_attribute_names("#a", attribute)
        .expression_attribute_values(":v", Av::N(value.to_string()))
        .send()
        .await
        .unwrap();
}

/// Sets the attempts the notification's row counts in its series, as if `n` had been recorded.
async fn set_attempts(aws: &Aws, event_id: &str, n: u32) {
    set_row_number(aws, event_id, "attempts", n.into()).await;
}

/// Moves the notification's due time 16 minutes back, as if its attempt never came: the state a
/// function stopped between the row and the queue leaves.
async fn age_pending(aws: &Aws, event_id: &str) {
    set_due_minutes_ago(aws, event_id, 16).await;
}

async fn set_due_minutes_ago(aws: &Aws, event_id: &str, minutes: i64) {
    set_row_number(aws, event_id, "next_attempt_at", now_ms() - minutes * 60 * 1000).await;
}

#[tokio::test]
async fn a_pending_notification_whose_message_was_lost_can_be_redelivered() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    let id = instance(&api, &rx.url).await["id"].as_i64().unwrap();
    let (_, v) = webhook(&api, id, r#"{"action":"job_deleted","payload":{"job":{"id":4}}}"#, "lost-1").await;
    let event_id = v["eventId"].as_str().unwrap().to_owned();
    // The message is gone (as if never sent); the row still says pending.
    aws.sqs.purge_queue().queue_url(&aws.queue_url).send().await.unwrap();
    let redeliver = format!("/instances/{id}/events/{event_id}/redeliver");
    let (status, _) = call(&api, "POST", &redeliver, &[admin()], vec![]).await;
    assert_eq!(status, 200);
    assert!(aws.receive_event().await.records.is_empty(), "due just now: its message is presumed on the queue");
    // Overdue, but less than 15 minutes: an attempt may still be on its way.
    set_due_minutes_ago(&aws, &event_id, 14).await;
    let (status, v) = call(&api, "POST", &redeliver, &[admin()], vec![]).await;
    assert_eq!(status, 200, "{v}");
    assert!(aws.receive_event().await.records.is_empty(), "14 minutes overdue: still presumed on the queue");
    age_pending(&aws, &event_id).await;
    let (status, v) = call(&api, "POST", &redeliver, &[admin()], vec![]).await;
    assert_eq!(status, 200, "{v}");
    deliver_the_queued_one(&aws, &api, id, &event_id, 1).await;
    assert_eq!(rx.got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn every_sample_event_works_with_its_handler() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    let inst = instance(&api, &rx.url).await;
    assert_eq!(inst["id"], 1, "the samples address instance 1");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../events");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.ends_with(".json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        seen += 1;
        match name.as_str() {
            "ingest-apigw-v2.json" => {
                let resp = relay_aws::lambda::handle_http(&api, http_event(&text)).await;
                assert_eq!(resp.status_code, 200, "{name}: {:?}", resp.body);
                assert_eq!(aws.receive_event().await.records.len(), 1, "{name} queued one notification");
            }
            "instances-apigw-v2.json" => {
                let resp = relay_aws::lambda::handle_http(&api, http_event(&text)).await;
                assert_eq!(resp.status_code, 200, "{name}");
                let Some(aws_lambda_events::encodings::Body::Text(body)) = &resp.body else {
                    panic!("{name}: not a text body")
                };
                let v: Value = serde_json::from_str(body).unwrap();
                assert_eq!(v["webhookUrl"], "https://abc123.execute-api.us-east-1.amazonaws.com/events/greenhouse/1");
                assert!(!body.contains(VENDOR_KEY) && !body.contains(SIGNING_KEY));
            }
            "delivery-sqs.json" => {
                let event: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_str(&text).expect("an SQS event");
                let response = delivery(&aws).handle_batch(event).await;
                assert!(response.batch_item_failures.is_empty(), "{name}");
                let got = rx.got.lock().unwrap().clone();
                let last: Value = serde_json::from_slice(&got.last().unwrap().1).unwrap();
                assert_eq!(last["message"]["events"][0]["objectId"], "4181030002");
            }
            other => panic!("no handler test for events/{other}: add one"),
        }
    }
    assert_eq!(seen, 3);
}

#[tokio::test]
async fn bulk_redelivery_takes_at_most_limit_and_says_when_more_match() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    rx.script.lock().unwrap().extend([410, 410, 410]);
    let id = instance(&api, &rx.url).await["id"].as_i64().unwrap();
    let mut ids = vec![];
    for (n, key) in ["b1", "b2", "b3"].iter().enumerate() {
        let (_, v) =
            webhook(&api, id, &format!(r#"{{"action":"job_deleted","payload":{{"job":{{"id":{n}}}}}}}"#), key).await;
        ids.push(v["eventId"].as_str().unwrap().to_owned());
    }
    let event = aws.receive_event().await;
    assert_eq!(event.records.len(), 3);
    assert!(delivery(&aws).handle_batch(event).await.batch_item_failures.is_empty());
    assert!(events_of(&api, id).await.iter().all(|e| e["status"] == "failed"));

    let bulk = format!("/instances/{id}/events/redeliver");
    let (status, first) = call(&api, "POST", &format!("{bulk}?limit=2"), &[admin()], vec![]).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!((&first["redelivered"], &first["more"]), (&json!(2), &json!(true)), "{first}");
    let (_, rest) = call(&api, "POST", &bulk, &[admin()], vec![]).await;
    assert_eq!((&rest["redelivered"], &rest["more"]), (&json!(1), &json!(false)), "{rest}");
    let mut all: Vec<String> = first["eventIds"]
        .as_array()
        .unwrap()
        .iter()
        .chain(rest["eventIds"].as_array().unwrap())
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    all.sort();
    ids.sort();
    assert_eq!(all, ids);
    // Each one is on the queue once, in its new series, with its whole notification.
    let event = aws.receive_event().await;
    let mut queued: Vec<(String, u32)> = event
        .records
        .iter()
        .map(|r| QueueMessage::decode(r.body.as_deref().unwrap()).unwrap())
        .map(|m| {
            assert!(m.notification.as_ref().is_some_and(|n| !n.is_empty()));
            (m.event_id, m.series)
        })
        .collect();
    queued.sort();
    assert_eq!(queued, ids.iter().map(|e| (e.clone(), 1)).collect::<Vec<_>>());
    assert!(delivery(&aws).handle_batch(event).await.batch_item_failures.is_empty());
    assert!(events_of(&api, id).await.iter().all(|e| e["status"] == "delivered"));
    assert_eq!(rx.got.lock().unwrap().len(), 6);
}

/// A `delete_candidate` body with `apps` deleted applications (a notification per 20 events,
/// each carrying the whole body) and `notes` (a JSON string's contents) to make it large.
fn delete_candidate(apps: usize, notes: &str) -> String {
    let ids: Vec<String> = (1..=apps).map(|n| n.to_string()).collect();
    format!(
        r#"{{"action":"delete_candidate","payload":{{"person":{{"id":77,"deleted_application_ids":[{}],"notes":"{notes}"}}}}}}"#,
        ids.join(",")
    )
}

/// Checks that `sent` is signed with the instance's key and carries `raw` exactly.
fn assert_signed_with_raw(headers: &axum::http::HeaderMap, sent: &[u8], raw: &str) {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(SIGNING_KEY.as_bytes()).unwrap();
    mac.update(sent);
    let want = format!("sha256={}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()));
    assert_eq!(headers["elements-webhook-signature"], want.as_str());
    let text = std::str::from_utf8(sent).unwrap();
    assert!(text.contains(raw), "raw is spliced byte for byte");
    let v: Value = serde_json::from_str(text).unwrap();
    assert!(v["message"]["raw"] == serde_json::from_str::<Value>(raw).unwrap(), "raw is the received JSON");
}

/// The contract takes bodies up to 1 MiB; a DynamoDB item holds 400 KB and a message 256 KiB
/// (this test's queue has the smallest limit SQS has had). Such a notification is kept in
/// chunks, its message carries its id only, and it is delivered (and redelivered) exactly.
#[tokio::test]
async fn a_body_of_almost_1_mib_is_kept_in_chunks_and_delivered_exactly() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    let id = instance(&api, &rx.url).await["id"].as_i64().unwrap();
    // 25 deleted applications: two notifications, each carrying the whole body.
    let body = delete_candidate(25, &"\\u00e9x".repeat(145_000));
    assert!(body.len() > 1_000_000 && body.len() <= 1024 * 1024, "{}", body.len());
    let (status, v) = webhook(&api, id, &body, "big-1").await;
    assert_eq!(status, 200, "{v}");

    let event = aws.receive_event().await;
    assert_eq!(event.records.len(), 2);
    let mut ids = vec![];
    for r in &event.records {
        let m = QueueMessage::decode(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(m.notification, None, "too large for a message: the id only");
        ids.push(m.event_id);
    }
    assert!(delivery(&aws).handle_batch(event).await.batch_item_failures.is_empty());
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    for (headers, sent) in &got {
        assert!(sent.len() > body.len());
        assert_signed_with_raw(headers, sent, &body);
    }
    let events = events_of(&api, id).await;
    assert!(events.iter().all(|e| e["status"] == "delivered"), "{events:?}");
    // The management API shows the whole notification, as sent.
    let first = got.iter().find(|(h, _)| h["webhook-id"] == ids[0].as_str()).unwrap();
    let (status, v) = call(&api, "GET", &format!("/instances/{id}/events/{}", ids[0]), &[admin()], vec![]).await;
    assert_eq!(status, 200);
    assert!(v["notification"] == serde_json::from_slice::<Value>(&first.1).unwrap(), "the notification as sent");

    // Redelivered: a new series, the id only on the queue, the same bytes at the receiver.
    let (status, v) =
        call(&api, "POST", &format!("/instances/{id}/events/{}/redeliver", ids[0]), &[admin()], vec![]).await;
    assert_eq!(status, 200, "{v}");
    deliver_the_queued_one(&aws, &api, id, &ids[0], 1).await;
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 3);
    assert!(got[2].1 == first.1, "the same bytes again");

    // A list stops reading once the bodies pass `max_bytes` (the one that passes it included),
    // through either index.
    let store = aws.store();
    for status in [None, Some(relay_core::ports::EventStatus::Delivered)] {
        let q = relay_core::ports::EventQuery { status, limit: 10, max_bytes: Some(500_000), ..Default::default() };
        let listed = relay_core::ports::Events::list(&store, id, &q).await.unwrap();
        assert_eq!(listed.len(), 1, "{status:?}");
        assert!(listed[0].body.len() > 1_000_000);
        let all = relay_core::ports::Events::list(&store, id, &relay_core::ports::EventQuery { max_bytes: None, ..q })
            .await
            .unwrap();
        assert_eq!(all.len(), 2, "{status:?}");
    }

    // The same Greenhouse-Event-ID again, even with other bytes: a duplicate, nothing changes.
    let other = body.replacen("x", "y", 1);
    let (status, v) = webhook(&api, id, &other, "big-1").await;
    assert_eq!(status, 200, "{v}");
    let (_, v) = call(&api, "GET", &format!("/instances/{id}/events/{}", ids[0]), &[admin()], vec![]).await;
    assert!(
        v["notification"]["message"]["raw"] == serde_json::from_str::<Value>(&body).unwrap(),
        "a duplicate changes nothing"
    );
}

/// Chunks are named by a hash of their bytes. A Greenhouse retry after a 503 may carry other
/// bytes under the same `Greenhouse-Event-ID` (so the same notification id): its chunks go
/// beside the first body's, never over them, and the row names only its own. (Over the first
/// body's three, the retry's two would have left a third that is not its own.)
#[tokio::test]
async fn a_retry_with_other_bytes_keeps_its_chunks_apart_from_the_first_bodys() {
    let aws = provision().await;
    let rx = Receiver::start().await;
    let id = instance(&aws.api(), &rx.url).await["id"].as_i64().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let conf = sdk_config(&format!("http://127.0.0.1:{port}")).await;
    let sqs_down = relay_aws::DynamoStore::new(
        aws.dynamo.clone(),
        aws.table.clone(),
        relay_aws::Queue::new(aws_sdk_sqs::Client::new(&conf), aws.queue_url.clone()),
    );
    let callback = Arc::new(HttpCallback::new(loopback_policy(), Duration::from_secs(1)).unwrap());
    let first = delete_candidate(1, &"\\u00e9x".repeat(100_000));
    let (status, _) = webhook(&relay_aws::lambda::api(&aws.env(), sqs_down, callback), id, &first, "gh-7").await;
    assert_eq!(status, 503, "the queue refused it: Greenhouse retries");
    let retry = delete_candidate(1, &"\\u00e9y".repeat(60_000));
    let (status, v) = webhook(&aws.api(), id, &retry, "gh-7").await;
    assert_eq!(status, 200, "{v}");
    let event = aws.receive_event().await;
    assert_eq!(event.records.len(), 1);
    assert!(delivery(&aws).handle_batch(event).await.batch_item_failures.is_empty());
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let sent: Value = serde_json::from_slice(&got[0].1).unwrap();
    assert!(sent["message"]["raw"] == serde_json::from_str::<Value>(&retry).unwrap(), "the retry's bytes");
}

/// Eight notifications of 150 KB from one delivery: each fits in a message, together they
/// exceed a batch (256 KiB, and moto's 1 MiB); they go in several batches, all queued.
#[tokio::test]
async fn large_notifications_of_one_delivery_are_queued_in_batches_within_the_size_limit() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    let id = instance(&api, &rx.url).await["id"].as_i64().unwrap();
    let body = delete_candidate(150, &"n".repeat(150_000));
    let (status, v) = webhook(&api, id, &body, "wide-1").await;
    assert_eq!(status, 200, "{v}");
    let mut records = vec![];
    while records.len() < 8 {
        let event = aws.receive_event().await;
        assert!(!event.records.is_empty(), "{} of 8 queued", records.len());
        records.extend(event.records);
    }
    let mut parts = vec![];
    for r in &records {
        let m = QueueMessage::decode(r.body.as_deref().unwrap()).unwrap();
        assert!(m.notification.as_ref().is_some_and(|n| n.len() > 150_000), "small enough to ride in its message");
        parts.push(m.event_id);
    }
    parts.sort();
    parts.dedup();
    assert_eq!(parts.len(), 8);
    let mut event = aws_lambda_events::event::sqs::SqsEvent::default();
    event.records = records;
    assert!(delivery(&aws).handle_batch(event).await.batch_item_failures.is_empty());
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got.len(), 8);
    for (headers, sent) in &got {
        assert_signed_with_raw(headers, sent, &body);
    }
}

/// Every item of a notification (row, attempts, chunks) by sort key, with its `expires_at`.
async fn expiries(aws: &Aws, event_id: &str) -> std::collections::BTreeMap<String, Option<i64>> {
    use aws_sdk_dynamodb::types::AttributeValue as Av;
    let out = aws
        .dynamo
        .query()
        .table_name(&aws.table)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(":pk", Av::S(format!("EVENT#{event_id}")))
        .send()
        .await
        .unwrap();
    out.items()
        .iter()
        .map(|i| {
            let sk = i["sk"].as_s().unwrap().clone();
            (sk, i.get("expires_at").map(|v| v.as_n().unwrap().parse().unwrap()))
        })
        .collect()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn now_s() -> i64 {
    now_ms() / 1000
}

/// A delivered notification expires (DynamoDB TTL) 30 days after delivery: its row, every
/// attempt and its chunks (a week later). A failed one is kept. A redelivered one is kept again,
/// chunks and attempts included, until it is delivered again.
#[tokio::test]
async fn a_delivered_notification_expires_after_the_retention_and_a_redelivered_one_is_kept() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    rx.script.lock().unwrap().extend([500, 200, 410]);
    let id = instance(&api, &rx.url).await["id"].as_i64().unwrap();
    let body =
        format!(r#"{{"action":"job_created","payload":{{"job":{{"id":3,"notes":"{}"}}}}}}"#, "j".repeat(400_000));
    let (_, v) = webhook(&api, id, &body, "ttl-1").await;
    let event_id = v["eventId"].as_str().unwrap().to_owned();

    // A 500, then delivered on the second receive.
    let mut event = aws.receive_event().await;
    let again = event.clone();
    assert_eq!(delivery(&aws).handle_batch(event).await.batch_item_failures.len(), 1);
    assert!(expiries(&aws, &event_id).await.values().all(Option::is_none), "nothing expires before delivery");
    event = again;
    age_pending(&aws, &event_id).await;
    assert!(delivery(&aws).handle_batch(event).await.batch_item_failures.is_empty());
    let items = expiries(&aws, &event_id).await;
    let sks: Vec<&str> = items.keys().map(String::as_str).collect();
    assert_eq!(sks.len(), 5, "row, two attempts, two chunks: {sks:?}");
    let row = items["EVENT"].unwrap();
    let month = 30 * 24 * 3600;
    assert!((row - (now_s() + month)).abs() < 120, "{row}");
    for (sk, at) in &items {
        let want = if sk.starts_with("BODY#") { row + 7 * 24 * 3600 } else { row };
        assert_eq!(*at, Some(want), "{sk}");
    }

    // Redelivered: kept again, all of it; a 410 leaves it failed, and failed ones are kept.
    let (status, v) =
        call(&api, "POST", &format!("/instances/{id}/events/{event_id}/redeliver"), &[admin()], vec![]).await;
    assert_eq!(status, 200, "{v}");
    assert!(expiries(&aws, &event_id).await.values().all(Option::is_none));
    assert!(delivery(&aws).handle_batch(aws.receive_event().await).await.batch_item_failures.is_empty());
    assert_eq!(events_of(&api, id).await[0]["status"], "failed");
    let items = expiries(&aws, &event_id).await;
    assert_eq!(items.len(), 6);
    assert!(items.values().all(Option::is_none), "{items:?}");

    // A redelivery cut after its chunks were set to expire (the row failed, no expiry of its
    // own): the next one clears them too.
    for sk in items.keys().filter(|sk| sk.starts_with("BODY#")) {
        set_item_number(&aws, &event_id, sk, "expires_at", now_s() + 60).await;
    }
    // Redelivered and delivered: every item expires again, the row 30 days from now.
    call(&api, "POST", &format!("/instances/{id}/events/{event_id}/redeliver"), &[admin()], vec![]).await;
    let items = expiries(&aws, &event_id).await;
    assert!(items.values().all(Option::is_none), "{items:?}");
    let events = deliver_the_queued_one(&aws, &api, id, &event_id, 2).await;
    assert_eq!(events[0]["attempts"].as_array().unwrap().len(), 4);
    let items = expiries(&aws, &event_id).await;
    let row = items["EVENT"].unwrap();
    assert!((row - (now_s() + month)).abs() < 120, "{row}");
    assert_eq!(items.values().filter(|at| **at == Some(row)).count(), 5, "{items:?}");
    assert_eq!(items.values().filter(|at| **at == Some(row + 7 * 24 * 3600)).count(), 2, "{items:?}");
    assert_eq!(rx.got.lock().unwrap().len(), 4);

    // A small notification (no chunks): its row and attempt expire once delivered, and are both
    // kept again when it is redelivered.
    let (_, v) = webhook(&api, id, r#"{"action":"job_created","payload":{"job":{"id":4}}}"#, "ttl-2").await;
    let small = v["eventId"].as_str().unwrap().to_owned();
    deliver_the_queued_one(&aws, &api, id, &small, 0).await;
    let items = expiries(&aws, &small).await;
    assert_eq!(items.len(), 2, "row and attempt: {items:?}");
    assert!(items.values().all(Option::is_some), "{items:?}");
    call(&api, "POST", &format!("/instances/{id}/events/{small}/redeliver"), &[admin()], vec![]).await;
    let items = expiries(&aws, &small).await;
    assert!(items.values().all(Option::is_none), "{items:?}");
}

/// A dedupe key makes a repeat a duplicate until the millisecond it expires, not at it (as in
/// the local mode), and carries DynamoDB's TTL attribute in seconds.
#[tokio::test]
async fn a_dedupe_key_holds_until_it_expires_and_carries_the_ttl_in_seconds() {
    use relay_core::notification::Notification;
    use relay_core::ports::{AcceptOutcome, Accepted, Events};
    let aws = provision().await;
    let store = aws.store();
    let until = 1_800_000_000_999;
    let accepted = |at: i64, event_id: &str| Accepted {
        instance_id: 9,
        delivery_key: "gh-key".into(),
        action: "job_created".into(),
        notifications: vec![Notification { event_id: event_id.into(), part: 0, body: br#"{"a":1}"#.to_vec() }],
        accepted_at_ms: at,
        dedupe_until_ms: until,
    };
    assert_eq!(store.accept(accepted(until - 86_400_000, "e1")).await.unwrap(), AcceptOutcome::Queued);
    let key = item_of(&aws, "DEDUPE#9#gh-key".into(), "DEDUPE").await.unwrap();
    assert_eq!(key["expires_at"].as_n().unwrap(), "1800000000", "seconds, for DynamoDB's TTL");
    assert_eq!(key["expires_at_ms"].as_n().unwrap(), "1800000000999");
    let repeat = store.accept(accepted(until - 1, "e2")).await.unwrap();
    assert_eq!(repeat, AcceptOutcome::Duplicate { event_id: "e1".into() });
    assert_eq!(store.accept(accepted(until, "e3")).await.unwrap(), AcceptOutcome::Queued, "expired at `until`");
}

/// The events list through the store: `limit` is a bound, and a `since` newer than the cursor
/// of the page before finds nothing (DynamoDB would refuse the key condition such a query
/// needs, a `BETWEEN` whose bounds are reversed; moto does not, so that half is not shown here).
#[tokio::test]
async fn the_events_list_takes_at_most_limit_and_nothing_newer_than_since_before_a_cursor() {
    use relay_core::ports::{EventQuery, Events};
    let aws = provision().await;
    let api = aws.api();
    let id = instance(&api, "http://127.0.0.1:9/hooks").await["id"].as_i64().unwrap();
    for n in 1..=3 {
        let body = format!(r#"{{"action":"job_created","payload":{{"job":{{"id":{n}}}}}}}"#);
        assert_eq!(webhook(&api, id, &body, &format!("list-{n}")).await.0, 200);
    }
    let store = aws.store();
    let page = store.list(id, &EventQuery { limit: 2, ..Default::default() }).await.unwrap();
    assert_eq!(page.len(), 2);
    let all = store.list(id, &EventQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.len(), 3);
    let last = &page[1];
    let later = EventQuery {
        limit: 10,
        since_ms: Some(last.created_at_ms + 1),
        before: Some((last.created_at_ms, last.event_id.clone())),
        ..Default::default()
    };
    assert_eq!(store.list(id, &later).await.unwrap().len(), 0);
    // `max_bytes` stops the reading once the bodies pass it, not once they reach it: at exactly
    // one body's size, the second is read too. Through either index.
    let one = all[0].body.len();
    assert!(all.iter().all(|e| e.body.len() == one), "three bodies of one size");
    for status in [None, Some(relay_core::ports::EventStatus::Pending)] {
        let q = EventQuery { status, limit: 10, max_bytes: Some(one), ..Default::default() };
        assert_eq!(store.list(id, &q).await.unwrap().len(), 2, "{status:?}");
    }
}

/// One EMF line per batch: what was delivered, retried, gone (a 410), dead-lettered (the last
/// attempt failed; neither reaches the SQS dead-letter queue), settled (a message handed over
/// again for a notification already delivered) and left unprocessed (an unreadable message).
#[tokio::test]
async fn each_batch_reports_its_outcomes_as_cloudwatch_metrics() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    rx.script.lock().unwrap().extend([410, 500]);
    let id = instance(&api, &rx.url).await["id"].as_i64().unwrap();
    for (n, key) in ["m1", "m2", "m3"].iter().enumerate() {
        webhook(&api, id, &format!(r#"{{"action":"job_deleted","payload":{{"job":{{"id":{n}}}}}}}"#), key).await;
    }
    let mut event = aws.receive_event().await;
    assert_eq!(event.records.len(), 3);
    let retry_event = event.clone();
    let mut garbage = event.records[0].clone();
    garbage.message_id = Some("not-ours".into());
    garbage.body = Some("{not a queue message".into());
    event.records.push(garbage);
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let metrics = relay_aws::metrics::Metrics::to("relay-Delivery", move |line| sink.lock().unwrap().push(line));
    let response = delivery(&aws).with_metrics(metrics).handle_batch(event).await;
    assert_eq!(response.batch_item_failures.len(), 2, "the 500 and the unreadable one stay on the queue");
    let lines = lines.lock().unwrap().clone();
    assert_eq!(lines.len(), 1, "one line per batch");
    let v: Value = serde_json::from_str(&lines[0]).unwrap();
    assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "GreenhouseRelay");
    assert_eq!(v["Function"], "relay-Delivery");
    let names = ["Delivered", "Retried", "DeadLettered", "Gone", "Settled", "Unprocessed"];
    let counts = |v: &Value| names.iter().map(|k| v[k].as_u64().unwrap()).collect::<Vec<_>>();
    assert_eq!(counts(&v), [1, 1, 0, 1, 0, 1], "the 410 is Gone, not alarmed as DeadLettered");
    assert!(!lines[0].contains(SIGNING_KEY) && !lines[0].contains(VENDOR_KEY));
    // The retried one, handed over again as its last attempt and failing: DeadLettered.
    let events = events_of(&api, id).await;
    let id_of = |status: &str| events.iter().find(|e| e["status"] == status).unwrap()["eventId"].as_str().unwrap();
    let record_of = |status: &str| {
        let id = id_of(status);
        retry_event.records.iter().find(|r| QueueMessage::decode(r.body.as_deref().unwrap()).unwrap().event_id == id)
    };
    let last = record_of("pending").unwrap().clone();
    set_attempts(&aws, id_of("pending"), 7).await;
    age_pending(&aws, id_of("pending")).await;
    // And the delivered one's message, as SQS hands it again when it could not be deleted.
    let again = record_of("delivered").unwrap().clone();
    rx.script.lock().unwrap().push(500);
    let lines_after = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines_after.clone();
    let metrics = relay_aws::metrics::Metrics::to("relay-Delivery", move |line| sink.lock().unwrap().push(line));
    let mut batch = aws_lambda_events::event::sqs::SqsEvent::default();
    batch.records = vec![last, again];
    let response = delivery(&aws).with_metrics(metrics).handle_batch(batch).await;
    assert!(response.batch_item_failures.is_empty());
    let v: Value = serde_json::from_str(&lines_after.lock().unwrap()[0]).unwrap();
    assert_eq!(counts(&v), [0, 0, 1, 0, 1, 0]);
    assert_eq!(rx.got.lock().unwrap().len(), 4, "the delivered one is not sent again");
}

/// GETs a page of the events list through the router: its event ids and its `next` link.
async fn page(api: &relay_core::api::Api, path: &str) -> (Vec<String>, Option<String>) {
    let (k, v) = admin();
    let req = http::Request::builder().method("GET").uri(path).header(k, v).body(bytes::Bytes::new()).unwrap();
    let resp = api.handle(req, "test").await;
    assert_eq!(resp.status(), 200, "{path}");
    // The link is absolute, on the request's Host (no public base URL is configured here).
    let next = resp.headers().get("link").map(|l| {
        let url = l.to_str().unwrap().trim_start_matches('<').split('>').next().unwrap();
        url.strip_prefix("http://localhost").unwrap_or_else(|| panic!("{url}")).to_owned()
    });
    let events: Vec<Value> = serde_json::from_slice(resp.body()).unwrap();
    (events.iter().map(|e| e["eventId"].as_str().unwrap().to_owned()).collect(), next)
}

/// Pages of the events list on DynamoDB: `before` ends the index query at the cursor (alone, or
/// with `since` as BETWEEN, the cursor itself skipped); every notification once, in order.
#[tokio::test]
async fn the_events_list_pages_through_the_index() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    let id = instance(&api, &rx.url).await["id"].as_i64().unwrap();
    for n in 0..5 {
        webhook(
            &api,
            id,
            &format!(r#"{{"action":"job_deleted","payload":{{"job":{{"id":{n}}}}}}}"#),
            &format!("pg{n}"),
        )
        .await;
    }
    let (all, next) = page(&api, &format!("/instances/{id}/events")).await;
    assert_eq!((all.len(), next), (5, None));
    for query in ["limit=2", "limit=2&since=2000-01-01T00:00:00Z"] {
        let (mut path, mut seen, mut pages) = (format!("/instances/{id}/events?{query}"), vec![], 0);
        loop {
            let (ids, next) = page(&api, &path).await;
            pages += 1;
            assert!(ids.len() <= 2 && pages <= 3, "{path}");
            seen.extend(ids);
            match next {
                Some(n) => path = n,
                None => break,
            }
        }
        assert_eq!(seen, all, "{query}");
        assert_eq!(pages, 3, "{query}");
    }
    // A cursor older than `since`: nothing (and no query DynamoDB would refuse).
    let (ids, next) = page(&api, &format!("/instances/{id}/events?since=2999-01-01T00:00:00Z&before=1_abc")).await;
    assert_eq!((ids.len(), next), (0, None));
}

/// The event ids in index `gsi2`'s partition of one status, newest first.
async fn in_status(aws: &Aws, instance: i64, status: &str) -> Vec<String> {
    use aws_sdk_dynamodb::types::AttributeValue as Av;
    let out = aws
        .dynamo
        .query()
        .table_name(&aws.table)
        .index_name("gsi2")
        .key_condition_expression("gsi2pk = :p")
        .expression_attribute_values(":p", Av::S(format!("EVENTS#{instance}#{status}")))
        .scan_index_forward(false)
        .send()
        .await
        .unwrap();
    out.items().iter().map(|i| i["pk"].as_s().unwrap().trim_start_matches("EVENT#").to_owned()).collect()
}

/// Lists by status read that status's partition of `gsi2`, which every status change moves the
/// row to. A row the index still shows under an old status (it lags the table by a moment) is
/// neither listed nor bulk redelivered under it.
#[tokio::test]
async fn lists_by_status_read_only_that_status_and_never_act_on_a_lagging_index() {
    use aws_sdk_dynamodb::types::AttributeValue as Av;
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    let id = instance(&api, &rx.url).await["id"].as_i64().unwrap();
    // Twelve delivered, then two that get a 410.
    for n in 0..14 {
        webhook(
            &api,
            id,
            &format!(r#"{{"action":"job_deleted","payload":{{"job":{{"id":{n}}}}}}}"#),
            &format!("st{n}"),
        )
        .await;
        if n == 11 {
            loop {
                let event = aws.receive_event().await;
                if event.records.is_empty() {
                    break;
                }
                assert!(delivery(&aws).handle_batch(event).await.batch_item_failures.is_empty());
            }
            rx.script.lock().unwrap().extend([410, 410]);
        }
    }
    assert_eq!(in_status(&aws, id, "pending").await.len(), 2);
    let event = aws.receive_event().await;
    assert!(delivery(&aws).handle_batch(event).await.batch_item_failures.is_empty());
    let failed = in_status(&aws, id, "failed").await;
    assert_eq!((failed.len(), in_status(&aws, id, "delivered").await.len()), (2, 12));
    assert!(in_status(&aws, id, "pending").await.is_empty());
    let (listed, _) = page(&api, &format!("/instances/{id}/events?status=failed")).await;
    assert_eq!(listed, failed);

    // A delivered row the index still shows as failed: listed and redelivered as failed? No.
    let delivered = in_status(&aws, id, "delivered").await;
    aws.dynamo
        .update_item()
        .table_name(&aws.table)
        .key("pk", Av::S(format!("EVENT#{}", delivered[0])))
        .key("sk", Av::S("EVENT".into()))
        .update_expression("SET gsi2pk = :p")
        .expression_attribute_values(":p", Av::S(format!("EVENTS#{id}#failed")))
        .send()
        .await
        .unwrap();
    assert_eq!(in_status(&aws, id, "failed").await.len(), 3);
    let (listed, _) = page(&api, &format!("/instances/{id}/events?status=failed")).await;
    assert_eq!(listed, failed, "the row says delivered");
    let (status, v) = call(&api, "POST", &format!("/instances/{id}/events/redeliver"), &[admin()], vec![]).await;
    assert_eq!(status, 200, "{v}");
    let mut redelivered: Vec<String> =
        v["eventIds"].as_array().unwrap().iter().map(|e| e.as_str().unwrap().to_owned()).collect();
    redelivered.sort();
    let mut want = failed.clone();
    want.sort();
    assert_eq!(redelivered, want, "the delivered one is not sent again");
    // Redelivered: pending again, in that partition; then delivered.
    assert_eq!(in_status(&aws, id, "pending").await.len(), 2);
    let event = aws.receive_event().await;
    assert_eq!(event.records.len(), 2);
    assert!(delivery(&aws).handle_batch(event).await.batch_item_failures.is_empty());
    assert_eq!(in_status(&aws, id, "delivered").await.len(), 13);
    assert_eq!(rx.got.lock().unwrap().len(), 16);
}

/// `GET /instances` on DynamoDB: pages by id through `gsi1` (`gsi1sk > :after`), deleted
/// instances skipped, the next page named by `Elements-Next-Page-Token`.
#[tokio::test]
async fn the_instances_list_pages_by_id_and_skips_deleted_ones() {
    use relay_core::ports::Instances;
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    let mut ids = vec![];
    for _ in 0..5 {
        ids.push(instance(&api, &rx.url).await["id"].as_i64().unwrap());
    }
    let (status, _) = call(&api, "DELETE", &format!("/instances/{}", ids[1]), &[admin()], vec![]).await;
    assert_eq!(status, 200);
    let live: Vec<i64> = ids.iter().copied().filter(|i| *i != ids[1]).collect();
    let store = aws.store();
    let listed = |v: Vec<relay_core::ports::Instance>| v.iter().map(|i| i.id).collect::<Vec<_>>();
    assert_eq!(listed(store.list(None, 10).await.unwrap()), live);
    assert_eq!(
        listed(store.list(Some(ids[0]), 2).await.unwrap()),
        live[1..3],
        "after the first, the deleted one skipped"
    );
    assert_eq!(listed(store.list(Some(ids[4]), 2).await.unwrap()), Vec::<i64>::new());
    let (mut path, mut seen, mut pages) = ("/instances?pageSize=2".to_owned(), vec![], 0);
    loop {
        let (k, v) = admin();
        let req = http::Request::builder().method("GET").uri(&path).header(k, v).body(bytes::Bytes::new()).unwrap();
        let resp = api.handle(req, "test").await;
        assert_eq!(resp.status(), 200, "{path}");
        pages += 1;
        let page: Vec<Value> = serde_json::from_slice(resp.body()).unwrap();
        assert!(page.len() <= 2 && pages <= 2, "{path}");
        seen.extend(page.iter().map(|i| i["id"].as_i64().unwrap()));
        match resp.headers().get("elements-next-page-token") {
            Some(token) => path = format!("/instances?pageSize=2&nextPage={}", token.to_str().unwrap()),
            None => break,
        }
    }
    assert_eq!(seen, live);
}

/// A delivery function stopped at any point of a batch (its timeout, a crash) loses nothing: its
/// messages come back once their visibility ends, and every notification ends delivered, with
/// no more attempts logged than requests sent (one sent again after a cut between its attempt's
/// log item and its row shares number 1 with the first, as the row had counted none). Cut after 0 to 130 ms, which lands before, during
/// and after the callbacks and the table writes, or not at all (5 s). The receiver gets a
/// notification twice only when the cut fell between its attempt and the record of it (at
/// least once; receivers drop repeats by `webhook-id`): a message handed over again for a
/// settled notification is not attempted.
#[tokio::test]
async fn a_delivery_function_stopped_mid_batch_loses_nothing() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    let id = instance(&api, &rx.url).await["id"].as_i64().unwrap();
    let function = delivery(&aws);
    let mut accepted = std::collections::BTreeSet::new();
    let mut cut_mid_batch = 0;
    for (round, cut_ms) in [0u64, 1, 2, 3, 5, 8, 12, 17, 25, 40, 60, 90, 130, 5000].into_iter().enumerate() {
        for n in 0..3 {
            let body = format!(r#"{{"action":"job_updated","payload":{{"job":{{"id":{}}}}}}}"#, round * 10 + n + 1);
            let (status, v) = webhook(&api, id, &body, &format!("cut-{round}-{n}")).await;
            assert_eq!(status, 200, "{v}");
            accepted.insert(v["eventId"].as_str().unwrap().to_owned());
        }
        let event = aws.receive(1).await;
        assert_eq!(event.records.len(), 3, "round {round}");
        let heard_before = rx.got.lock().unwrap().len();
        let cut = tokio::time::timeout(Duration::from_millis(cut_ms), function.handle_batch(event.clone())).await;
        if cut.is_err() {
            cut_mid_batch += 1;
        }
        // Whatever happened, SQS deletes nothing of a batch whose function did not return (and
        // here, not of one that did either: the drain below handles what comes back). The test
        // ends their visibility at once instead of waiting for the queue's timeout.
        for record in &event.records {
            aws.sqs
                .change_message_visibility()
                .queue_url(&aws.queue_url)
                .receipt_handle(record.receipt_handle.as_deref().unwrap())
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
        // Then the function runs to its end on what comes back, as the event source would make it.
        loop {
            let event = aws.receive(0).await;
            if event.records.is_empty() {
                break;
            }
            let response = function.handle_batch(event.clone()).await;
            assert!(response.batch_item_failures.is_empty(), "round {round}: {response:?}");
            aws.finish(&event, &response).await;
        }
        // A notification is sent again only if the cut fell between its attempt and the record
        // of it; a batch that ran to its end sends nothing twice (its messages, handed over
        // again, are settled).
        let sent = rx.got.lock().unwrap().len() - heard_before;
        match cut {
            Ok(_) => assert_eq!(sent, 3, "round {round}: a finished batch's messages were attempted again"),
            Err(_) => assert!((3..=6).contains(&sent), "round {round}: {sent} requests"),
        }
    }
    assert!(cut_mid_batch >= 3, "only {cut_mid_batch} rounds were cut before the batch ended");
    assert!(cut_mid_batch < 14, "no batch ran to its end");
    let events = events_of(&api, id).await;
    let listed: std::collections::BTreeSet<String> =
        events.iter().map(|e| e["eventId"].as_str().unwrap().to_owned()).collect();
    assert_eq!(listed, accepted);
    for e in &events {
        assert_eq!(e["status"], "delivered", "{e}");
        // Every attempt answered 200, so the table never counted one before an attempt: a
        // notification sent again after a cut between its attempt's log item and its row is
        // logged twice, both as attempt 1.
        let numbers: Vec<u64> =
            e["attempts"].as_array().unwrap().iter().map(|a| a["attempt"].as_u64().unwrap()).collect();
        assert!(matches!(numbers.as_slice(), [1] | [1, 1]), "{e}");
        assert_eq!(e["attempts"].as_array().unwrap().last().unwrap()["statusCode"], 200, "{e}");
    }
    let logged: usize = events.iter().map(|e| e["attempts"].as_array().unwrap().len()).sum();
    assert!(logged <= rx.got.lock().unwrap().len(), "{logged} attempts logged, more than were sent");
    let heard: std::collections::BTreeSet<String> =
        rx.got.lock().unwrap().iter().map(|(h, _)| h["webhook-id"].to_str().unwrap().to_owned()).collect();
    assert_eq!(heard, accepted, "the receiver got every notification");
}

/// A message of an instance deleted meanwhile: recorded as failed at once with the reason,
/// counted as `InstanceDeleted` (not alarmed as `DeadLettered`), nothing sent, the message done.
#[tokio::test]
async fn a_deleted_instances_message_ends_at_once_and_is_not_alarmed() {
    let aws = provision().await;
    let api = aws.api();
    let rx = Receiver::start().await;
    let id = instance(&api, &rx.url).await["id"].as_i64().unwrap();
    let (_, v) = webhook(&api, id, r#"{"action":"job_deleted","payload":{"job":{"id":4}}}"#, "del-1").await;
    let event_id = v["eventId"].as_str().unwrap().to_owned();
    let (status, v) = call(&api, "DELETE", &format!("/instances/{id}"), &[admin()], vec![]).await;
    assert_eq!(status, 200, "{v}");
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = lines.clone();
    let metrics = relay_aws::metrics::Metrics::to("relay-Delivery", move |line| sink.lock().unwrap().push(line));
    let response = delivery(&aws).with_metrics(metrics).handle_batch(aws.receive_event().await).await;
    assert!(response.batch_item_failures.is_empty(), "done with: SQS may delete it");
    let v: Value = serde_json::from_str(&lines.lock().unwrap()[0]).unwrap();
    assert_eq!((v["InstanceDeleted"].as_u64(), v["DeadLettered"].as_u64()), (Some(1), Some(0)));
    assert!(rx.got.lock().unwrap().is_empty());
    let row = row_of(&aws, &event_id).await;
    assert_eq!(row["status"].as_s().unwrap(), "failed");
    assert_eq!(row["dead_letter_reason"].as_s().unwrap(), "the instance was deleted");
}

/// Sequential: moto does not make a conditional write atomic against concurrent requests (six
/// PATCHes at once all succeeded there with the item's revision at 5), so concurrent PATCHes
/// are tested on the local mode (`functions/local/tests/concurrent_patch.rs`), and here what
/// the condition decides.
#[tokio::test]
async fn an_instance_update_is_a_compare_and_set_on_what_was_read() {
    use relay_core::ports::{Instances, SpecUpdate};
    let aws = provision().await;
    let store = aws.store();
    let id = instance(&aws.api(), "http://127.0.0.1:9/hooks").await["id"].as_i64().unwrap();
    let read = store.get(id).await.unwrap().unwrap().spec;
    let renamed = |name: &str| relay_core::instance::InstanceSpec { name: name.into(), ..read.clone() };
    // The item has no revision yet (as every item written before there was one).
    let first = store.update(id, &read, renamed("first")).await.unwrap();
    assert!(matches!(&first, SpecUpdate::Done(i) if i.spec.name == "first"), "{first:?}");
    // Based on the spec before "first": refused, and "first" stays.
    let stale = store.update(id, &read, renamed("stale")).await.unwrap();
    assert!(matches!(stale, SpecUpdate::Changed), "{stale:?}");
    assert_eq!(store.get(id).await.unwrap().unwrap().spec.name, "first");
    let current = store.get(id).await.unwrap().unwrap().spec;
    let second = store.update(id, &current, renamed("second")).await.unwrap();
    assert!(matches!(&second, SpecUpdate::Done(i) if i.spec.name == "second"), "{second:?}");
    // Each update raised the revision the next one compares against.
    let revision = instance_revision(&aws, id).await;
    assert_eq!(revision, Some(2), "two updates");
    assert!(store.delete(id).await.unwrap());
    let gone = store.update(id, &current, renamed("gone")).await.unwrap();
    assert!(matches!(gone, SpecUpdate::Gone), "{gone:?}");
}

async fn instance_revision(aws: &Aws, id: i64) -> Option<i64> {
    let item = item_of(aws, format!("INSTANCE#{id}"), "INSTANCE").await.unwrap();
    item.get("revision").map(|r| r.as_n().unwrap().parse().unwrap())
}

/// `POST /instances/{id}/token` on DynamoDB: the item's token hash is replaced and nothing else
/// (its spec and its revision stay, so a PATCH read before it still lands, and keeps the new
/// token); the old token is refused at once; a cached reader drops what it held.
#[tokio::test]
async fn a_new_token_replaces_the_items_token_hash_and_nothing_else() {
    use relay_core::ports::{Instances, SpecUpdate};
    let aws = provision().await;
    let (api, store) = (aws.api(), aws.store());
    let created = instance(&api, "http://127.0.0.1:9/hooks").await;
    let id = created["id"].as_i64().unwrap();
    let old = ("authorization", format!("Element {}", created["token"].as_str().unwrap()));
    let read = store.get(id).await.unwrap().unwrap();
    let cached = relay_aws::CachedInstances::new(aws.store(), Duration::from_secs(3600));
    assert_eq!(cached.get(id).await.unwrap().unwrap().token_hash, read.token_hash);
    let revision_before = instance_revision(&aws, id).await;

    let (status, renewed) =
        call(&api, "POST", &format!("/instances/{id}/token"), std::slice::from_ref(&old), vec![]).await;
    assert_eq!(status, 401, "the instance's own token may not: {renewed}");
    let (status, renewed) = call(&api, "POST", &format!("/instances/{id}/token"), &[admin()], vec![]).await;
    assert_eq!(status, 200, "{renewed}");
    let new = ("authorization", format!("Element {}", renewed["token"].as_str().unwrap()));
    assert_ne!(new, old);
    assert_eq!((renewed["id"].as_i64(), &renewed["configuration"]), (Some(id), &created["configuration"]));
    assert_eq!(call(&api, "GET", &format!("/instances/{id}"), std::slice::from_ref(&old), vec![]).await.0, 401);
    assert_eq!(call(&api, "GET", &format!("/instances/{id}/events"), std::slice::from_ref(&new), vec![]).await.0, 200);
    let now = store.get(id).await.unwrap().unwrap();
    assert_eq!(now.token_hash, relay_core::instance::token_hash(renewed["token"].as_str().unwrap()));
    assert_eq!(now.spec, read.spec);
    assert_eq!(instance_revision(&aws, id).await, revision_before, "the spec's compare-and-set is not disturbed");

    // A PATCH's compare-and-set on the spec read before the new token lands, and keeps it.
    let renamed = relay_core::instance::InstanceSpec { name: "renamed".into(), ..read.spec.clone() };
    assert!(matches!(store.update(id, &read.spec, renamed).await.unwrap(), SpecUpdate::Done(_)));
    assert_eq!(call(&api, "GET", &format!("/instances/{id}"), std::slice::from_ref(&new), vec![]).await.0, 200);

    // Through the cache: its entry goes with the change.
    let third = relay_core::instance::token_hash("third");
    assert_eq!(cached.replace_token(id, third.clone()).await.unwrap().unwrap().token_hash, third);
    assert_eq!(cached.get(id).await.unwrap().unwrap().token_hash, third);
    // A deleted instance gets none.
    assert!(store.delete(id).await.unwrap());
    assert!(store.replace_token(id, relay_core::instance::token_hash("x")).await.unwrap().is_none());
    assert_eq!(call(&api, "POST", &format!("/instances/{id}/token"), &[admin()], vec![]).await.0, 404);
    assert_eq!(call(&api, "POST", "/instances/987654/token", &[admin()], vec![]).await.0, 404);
}

/// The delivery function's instance cache serves what it read for its time to live (a batch of
/// ten costs one read), then reads again; its list is the store's.
#[tokio::test]
async fn the_instance_cache_serves_what_it_read_until_its_time_to_live_is_spent() {
    use relay_core::ports::{Instances, SpecUpdate};
    let aws = provision().await;
    let store = aws.store();
    let id = instance(&aws.api(), "http://127.0.0.1:9/hooks").await["id"].as_i64().unwrap();
    let ttl = Duration::from_millis(1500);
    let cached = relay_aws::CachedInstances::new(aws.store(), ttl);
    let read = cached.get(id).await.unwrap().unwrap();
    let renamed = relay_core::instance::InstanceSpec { name: "renamed".into(), ..read.spec.clone() };
    let started = std::time::Instant::now();
    assert!(matches!(store.update(id, &read.spec, renamed).await.unwrap(), SpecUpdate::Done(_)));
    let served = cached.get(id).await.unwrap().unwrap().spec.name;
    // Only if the machine was too slow to look within the time to live is the answer not shown.
    if started.elapsed() < ttl {
        assert_eq!(served, read.spec.name, "served from the cache");
    }
    tokio::time::sleep(ttl).await;
    assert_eq!(cached.get(id).await.unwrap().unwrap().spec.name, "renamed", "read again");
    let listed: Vec<i64> = cached.list(None, 10).await.unwrap().iter().map(|i| i.id).collect();
    assert_eq!(listed, vec![id]);
    // A ping recorded through it is the store's.
    let ping: serde_json::Map<String, Value> = json!({"web_hook_id": 9}).as_object().unwrap().clone();
    cached.record_ping(id, ping.clone()).await.unwrap();
    assert_eq!(store.get(id).await.unwrap().unwrap().last_ping, Some(ping));
    // Deleted through it: its entry goes at once; a second delete finds nothing.
    assert!(cached.delete(id).await.unwrap());
    assert!(cached.get(id).await.unwrap().is_none());
    assert!(!cached.delete(id).await.unwrap());
}

/// Failures between a read and a write of one call, injected into the store's DynamoDB requests
/// (`Faults`): a failed condition (the item changed meanwhile) and an outage are told apart at
/// each conditional write, and neither is taken for the other.
#[tokio::test]
async fn an_outage_between_a_read_and_a_write_is_no_failed_condition_nor_the_reverse() {
    use relay_core::ports::{AttemptLog, Events, Instances, NextStep, QueuedEvent, SpecUpdate, StoreError};
    let aws = provision().await;
    let faults = Faults::default();
    let store = faults.store(&aws).await;
    let api = aws.api();
    let id = instance(&api, "http://127.0.0.1:9/hooks").await["id"].as_i64().unwrap();

    // An instance update: its compare-and-set refused means changed meanwhile (read again); its
    // write failing is an outage, not a change to retry.
    let read = Instances::get(&store, id).await.unwrap().unwrap().spec;
    let renamed = |name: &str| relay_core::instance::InstanceSpec { name: name.into(), ..read.clone() };
    faults.arm(Fault::ConditionFails, "revision");
    let changed = store.update(id, &read, renamed("a")).await;
    assert!(matches!(changed, Ok(SpecUpdate::Changed)), "{changed:?}");
    faults.arm(Fault::Outage, "revision");
    let down = store.update(id, &read, renamed("b")).await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    faults.disarm();
    assert!(matches!(store.update(id, &read, renamed("c")).await, Ok(SpecUpdate::Done(_))));

    // A redelivery whose new series cannot be written: an error (503), not "nothing to redeliver".
    let (_, v) = webhook(&api, id, r#"{"action":"job_created","payload":{"job":{"id":5}}}"#, "faults-1").await;
    let event_id = v["eventId"].as_str().unwrap().to_owned();
    age_pending(&aws, &event_id).await;
    let now_ms = now_ms();
    faults.arm(Fault::Outage, ":stale");
    let down = store.redeliver(id, std::slice::from_ref(&event_id), None, now_ms).await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    faults.disarm();
    assert_eq!(
        store.redeliver(id, std::slice::from_ref(&event_id), None, now_ms).await.unwrap(),
        vec![event_id.clone()]
    );

    // An attempt's record: its row update failing is an error (the message stays, SQS retries
    // it); refused because a redelivery started a new series meanwhile, the attempt is logged
    // and the row stays the new series'.
    let queued =
        QueuedEvent { event_id: event_id.clone(), instance_id: id, series: 1, attempts: 0, body: b"{}".to_vec() };
    let log = |attempt| AttemptLog {
        at_ms: now_ms,
        series: 1,
        attempt,
        status_code: Some(200),
        error: None,
        duration_ms: 3,
        response_body: String::new(),
    };
    faults.arm(Fault::Outage, ":u");
    let down = store.record_attempt(&queued, log(1), NextStep::Delivered).await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    faults.arm(Fault::ConditionFails, ":u");
    store.record_attempt(&queued, log(2), NextStep::Delivered).await.unwrap();
    faults.disarm();
    let row = row_of(&aws, &event_id).await;
    assert_eq!(row["status"].as_s().unwrap(), "pending", "the row is not the refused write's");
    let attempts = Events::get(&store, id, &event_id).await.unwrap().unwrap().attempts;
    assert_eq!(attempts.len(), 2, "both attempts are logged: {attempts:?}");

    // A redelivery of a delivered notification keeps its attempts again (their expiry removed):
    // one of those updates failing fails the redelivery (503, the notification marked failed,
    // not queued); one refused because its item went meanwhile is no reason to.
    let delivered = |series| {
        let queued = QueuedEvent { series, ..queued.clone() };
        let store = &store;
        async move { store.record_attempt(&queued, AttemptLog { series, ..log(1) }, NextStep::Delivered).await.unwrap() }
    };
    delivered(1).await;
    faults.arm(Fault::Outage, "REMOVE expires_at");
    let down = store.redeliver(id, std::slice::from_ref(&event_id), None, now_ms).await;
    assert!(matches!(down, Err(StoreError::Unavailable(_))), "{down:?}");
    faults.disarm();
    assert_eq!(row_of(&aws, &event_id).await["dead_letter_reason"].as_s().unwrap(), relay_aws::dynamo::NOT_QUEUED);
    delivered(2).await;
    faults.arm(Fault::ConditionFails, "REMOVE expires_at");
    let redelivered = store.redeliver(id, std::slice::from_ref(&event_id), None, now_ms).await;
    faults.disarm();
    assert_eq!(redelivered.unwrap(), vec![event_id.clone()]);
}
