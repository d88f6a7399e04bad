//! The AWS runtime's adapters: DynamoDB (instances, dedupe keys, event log) and SQS (the queue),
//! plus the Lambda glue the three functions share. AWS SDK crates live here and only here.

pub mod dynamo;
pub mod http;
pub mod lambda;
pub mod metrics;
pub mod queue;

pub use dynamo::{CachedInstances, DynamoStore};
pub use lambda::{Delivery, Env};
pub use queue::{Queue, QueueMessage};
