//! DynamoDB and SQS in moto server (started by `make test`, address in MOTO_ENDPOINT), reached
//! through the real AWS SDK; a loopback callback receiver. Every test gets its own table and
//! queues, so tests run in parallel against one emulator.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::QueueAttributeName;
use relay_aws::{DynamoStore, Env, Queue};
use relay_core::api::Api;
use relay_core::network::NetworkPolicy;

pub const USER: &str = "sample-user-secret";
pub const ORG: &str = "sample-org-secret";

pub fn endpoint() -> String {
    std::env::var("MOTO_ENDPOINT").unwrap_or_else(|_| {
        panic!("MOTO_ENDPOINT is not set: these tests need moto server (`make test` installs and starts it)")
    })
}

pub async fn sdk_config(endpoint: &str) -> aws_config::SdkConfig {
    // The functions' HTTP client (compiled-in roots), so every test goes through it.
    let http = relay_aws::http::SdkHttpClient::from_env().expect("TLS configuration");
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(http)
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "static"))
        .load()
        .await
}

pub struct Aws {
    pub dynamo: aws_sdk_dynamodb::Client,
    pub sqs: aws_sdk_sqs::Client,
    pub table: String,
    pub queue_url: String,
    pub dlq_url: String,
}

/// Creates the table (as `infra/template.yaml` declares it) and the queue with its DLQ.
pub async fn provision() -> Aws {
    let conf = sdk_config(&endpoint()).await;
    let dynamo = aws_sdk_dynamodb::Client::new(&conf);
    let sqs = aws_sdk_sqs::Client::new(&conf);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let table = format!("relay-{suffix}");
    let attr = |n: &str| {
        AttributeDefinition::builder().attribute_name(n).attribute_type(ScalarAttributeType::S).build().unwrap()
    };
    let key = |n: &str, t: KeyType| KeySchemaElement::builder().attribute_name(n).key_type(t).build().unwrap();
    dynamo
        .create_table()
        .table_name(&table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attr("pk"))
        .attribute_definitions(attr("sk"))
        .attribute_definitions(attr("gsi1pk"))
        .attribute_definitions(attr("gsi1sk"))
        .attribute_definitions(attr("gsi2pk"))
        .attribute_definitions(attr("gsi2sk"))
        .key_schema(key("pk", KeyType::Hash))
        .key_schema(key("sk", KeyType::Range))
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("gsi1")
                .key_schema(key("gsi1pk", KeyType::Hash))
                .key_schema(key("gsi1sk", KeyType::Range))
                .projection(Projection::builder().projection_type(ProjectionType::All).build())
                .build()
                .unwrap(),
        )
        .global_secondary_indexes(
            GlobalSecondaryIndex::builder()
                .index_name("gsi2")
                .key_schema(key("gsi2pk", KeyType::Hash))
                .key_schema(key("gsi2sk", KeyType::Range))
                .projection(Projection::builder().projection_type(ProjectionType::KeysOnly).build())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .expect("create table");
    dynamo
        .update_time_to_live()
        .table_name(&table)
        .time_to_live_specification(
            TimeToLiveSpecification::builder().attribute_name("expires_at").enabled(true).build().unwrap(),
        )
        .send()
        .await
        .expect("ttl");
    let dlq_url = sqs.create_queue().queue_name(format!("dlq-{suffix}")).send().await.unwrap().queue_url.unwrap();
    let dlq_arn = sqs
        .get_queue_attributes()
        .queue_url(&dlq_url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes
        .unwrap()[&QueueAttributeName::QueueArn]
        .clone();
    let queue_url = sqs
        .create_queue()
        .queue_name(format!("q-{suffix}"))
        .attributes(QueueAttributeName::VisibilityTimeout, "60")
        // The smallest limit SQS has had (queues created before 1 MiB became possible).
        .attributes(QueueAttributeName::MaximumMessageSize, "262144")
        .attributes(
            QueueAttributeName::RedrivePolicy,
            format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":"16"}}"#),
        )
        .send()
        .await
        .unwrap()
        .queue_url
        .unwrap();
    Aws { dynamo, sqs, table, queue_url, dlq_url }
}

impl Aws {
    pub fn store(&self) -> DynamoStore {
        DynamoStore::new(self.dynamo.clone(), self.table.clone(), Queue::new(self.sqs.clone(), self.queue_url.clone()))
    }

    pub fn env(&self) -> Env {
        Env {
            table_name: self.table.clone(),
            queue_url: self.queue_url.clone(),
            admin_user_secret: USER.into(),
            admin_org_secret: ORG.into(),
            public_base_url: None,
            policy: loopback_policy(),
            time_scale: 1.0,
            attempt_timeout: Duration::from_secs(5),
            event_retention: relay_aws::dynamo::DEFAULT_RETENTION,
            callback_ca_bundle: None,
        }
    }

    pub fn api(&self) -> Api {
        let env = self.env();
        relay_aws::lambda::api(&env, self.store(), Arc::new(env.callback().unwrap()))
    }

    /// Receives what is visible on the queue, as the SQS event source would hand it to Lambda
    /// (waiting up to a second for a message).
    pub async fn receive_event(&self) -> aws_lambda_events::event::sqs::SqsEvent {
        self.receive(1).await
    }

    /// Up to ten visible messages as an SQS event, waiting up to `wait_seconds` for one.
    pub async fn receive(&self, wait_seconds: i32) -> aws_lambda_events::event::sqs::SqsEvent {
        let out = self
            .sqs
            .receive_message()
            .queue_url(&self.queue_url)
            .max_number_of_messages(10)
            .wait_time_seconds(wait_seconds)
            .message_system_attribute_names(aws_sdk_sqs::types::MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap();
        let records: Vec<serde_json::Value> = out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let attrs: serde_json::Map<String, serde_json::Value> = m
                    .attributes
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k.as_str().to_owned(), serde_json::Value::String(v)))
                    .collect();
                serde_json::json!({"messageId": m.message_id, "receiptHandle": m.receipt_handle, "body": m.body,
                    "attributes": attrs, "messageAttributes": {}, "eventSource": "aws:sqs"})
            })
            .collect();
        serde_json::from_value(serde_json::json!({"Records": records})).unwrap()
    }
}

impl Aws {
    /// What the event source mapping does once the function returns: deletes the messages of
    /// `event` that `response` does not report as failures.
    pub async fn finish(
        &self,
        event: &aws_lambda_events::event::sqs::SqsEvent,
        response: &aws_lambda_events::event::sqs::SqsBatchResponse,
    ) {
        let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        for record in &event.records {
            if !failed.contains(&record.message_id.as_deref().unwrap_or_default()) {
                let handle = record.receipt_handle.as_deref().unwrap_or_default();
                self.sqs.delete_message().queue_url(&self.queue_url).receipt_handle(handle).send().await.unwrap();
            }
        }
    }
}

pub fn loopback_policy() -> NetworkPolicy {
    NetworkPolicy { allow: NetworkPolicy::parse_allow_list("127.0.0.0/8").unwrap(), allow_http_to_allowed_nets: true }
}

type Requests = Arc<Mutex<Vec<(axum::http::HeaderMap, Vec<u8>)>>>;

/// A callback receiver answering the scripted statuses in order, then 200; with `retry_after`
/// set, its answers that are not 2xx carry that `Retry-After`.
pub struct Receiver {
    pub url: String,
    pub got: Requests,
    pub script: Arc<Mutex<Vec<u16>>>,
    pub retry_after: Arc<Mutex<Option<String>>>,
}

impl Receiver {
    pub async fn start() -> Self {
        let got: Requests = Arc::default();
        let script: Arc<Mutex<Vec<u16>>> = Arc::default();
        let retry_after: Arc<Mutex<Option<String>>> = Arc::default();
        let (g, s, r) = (got.clone(), script.clone(), retry_after.clone());
        let app = axum::Router::new().fallback(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (g, s, r) = (g.clone(), s.clone(), r.clone());
            async move {
                g.lock().unwrap().push((headers, body.to_vec()));
                let mut s = s.lock().unwrap();
                let status = axum::http::StatusCode::from_u16(if s.is_empty() { 200 } else { s.remove(0) }).unwrap();
                let mut answer = axum::response::IntoResponse::into_response(status);
                if let Some(after) = r.lock().unwrap().clone().filter(|_| !status.is_success()) {
                    answer.headers_mut().insert("retry-after", after.parse().unwrap());
                }
                answer
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Receiver { url, got, script, retry_after }
    }
}

pub fn greenhouse_signature(key: &str, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256 {}", hex::encode(mac.finalize().into_bytes()))
}

pub async fn call(
    api: &Api,
    method: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
) -> (u16, serde_json::Value) {
    let mut req = http::Request::builder().method(method).uri(path);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = api.handle(req.body(bytes::Bytes::from(body)).unwrap(), "test").await;
    (resp.status().as_u16(), serde_json::from_slice(resp.body()).unwrap_or(serde_json::Value::Null))
}

pub fn admin() -> (&'static str, String) {
    ("authorization", format!("User {USER}, Organization {ORG}"))
}

/// What a [`Faults`] does to the DynamoDB requests it matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The request's condition becomes one the item fails (`attribute_not_exists(pk)`): what the
    /// caller sees when the item changed between its read and this write.
    ConditionFails,
    /// The request goes to an operation DynamoDB does not have: an error that is no failed
    /// condition, as an outage between two calls of one operation would be.
    Outage,
}

/// Faults injected into one DynamoDB client's requests (an SDK interceptor, before each is sent):
/// while armed, every `UpdateItem` whose JSON body contains `marker` gets `fault`. This reaches
/// what moto alone cannot show: a write refused, or failing, between a read and a write that
/// succeed, at a chosen step of one call.
#[derive(Debug, Clone, Default)]
pub struct Faults(Arc<Mutex<Option<(Fault, String)>>>);

impl Faults {
    pub fn arm(&self, fault: Fault, marker: &str) {
        *self.0.lock().unwrap() = Some((fault, marker.to_owned()));
    }

    pub fn disarm(&self) {
        *self.0.lock().unwrap() = None;
    }

    /// A DynamoDB store on `aws`'s table and queue whose DynamoDB requests go through these faults.
    pub async fn store(&self, aws: &Aws) -> DynamoStore {
        let conf = sdk_config(&endpoint()).await;
        let dynamo = aws_sdk_dynamodb::config::Builder::from(&conf).interceptor(self.clone()).build();
        DynamoStore::new(
            aws_sdk_dynamodb::Client::from_conf(dynamo),
            aws.table.clone(),
            Queue::new(aws.sqs.clone(), aws.queue_url.clone()),
        )
    }
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for Faults {
    fn name(&self) -> &'static str {
        "Faults"
    }

    fn modify_before_transmit(
        &self,
        context: &mut aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextMut<'_>,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        _: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let Some((fault, marker)) = self.0.lock().unwrap().clone() else { return Ok(()) };
        let request = context.request_mut();
        let update = request.headers().get("x-amz-target").is_some_and(|t| t.ends_with(".UpdateItem"));
        let body = request.body().bytes().map(<[u8]>::to_vec).unwrap_or_default();
        if !update || !String::from_utf8_lossy(&body).contains(&marker) {
            return Ok(());
        }
        match fault {
            Fault::ConditionFails => {
                let mut v: serde_json::Value = serde_json::from_slice(&body)?;
                // ANDed with the request's own condition, so that its values stay in use.
                v["ConditionExpression"] = match v["ConditionExpression"].as_str() {
                    Some(c) => format!("({c}) AND attribute_not_exists(pk)").into(),
                    None => "attribute_not_exists(pk)".into(),
                };
                let body = serde_json::to_vec(&v)?;
                request.headers_mut().insert("content-length", body.len().to_string());
                *request.body_mut() = aws_smithy_types::body::SdkBody::from(body);
            }
            Fault::Outage => {
                request.headers_mut().insert("x-amz-target", "DynamoDB_20120810.NoSuchOperation");
            }
        }
        Ok(())
    }
}
