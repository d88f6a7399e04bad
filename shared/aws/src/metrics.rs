//! The delivery function's CloudWatch metrics, as Embedded Metric Format log lines: CloudWatch
//! Logs turns each line into datapoints, with no API call, no extra permission and no latency on
//! the delivery. One line per SQS batch.
//!
//! Why: a notification that exhausts its attempts (or gets a 410) is recorded as failed and its
//! message deleted, so it never reaches the SQS dead-letter queue and that queue's alarm stays
//! quiet. `DeadLettered` (attempts exhausted, or no attempt possible) is what the template's
//! `DeadLetteredAlarm` watches; `Gone` (the receiver answered 410, asking to be left alone) and
//! `InstanceDeleted` (its owner deleted the instance) are counted apart, so that a deliberate
//! choice does not page anyone.

use std::sync::Arc;

use serde_json::json;

/// The CloudWatch namespace of the metrics.
pub const NAMESPACE: &str = "GreenhouseRelay";

/// What became of the records of one batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Outcomes {
    /// The callback answered 2xx.
    pub delivered: u32,
    /// The attempt failed and a later one is scheduled.
    pub retried: u32,
    /// No attempt left: recorded as failed.
    pub dead_lettered: u32,
    /// The receiver answered 410: recorded as failed, not alarmed.
    pub gone: u32,
    /// The instance was deleted: recorded as failed at the first attempt, not alarmed (its
    /// owner deleted it).
    pub instance_deleted: u32,
    /// A message SQS delivered again for a notification already delivered or failed (or of an
    /// earlier series): acknowledged without an attempt.
    pub settled: u32,
    /// A message back before its notification's next attempt is due (SQS hides a message 12 h
    /// at most; a longer `Retry-After` asks more): hidden again for the rest, no attempt.
    pub deferred: u32,
    /// Not attempted or not recorded (unreadable message, store unavailable): SQS retries it.
    pub unprocessed: u32,
}

/// The EMF document for `outcomes`, dimension `Function` = the function's name.
pub fn emf(function: &str, at_ms: i64, o: &Outcomes) -> String {
    let metric = |name: &str| json!({"Name": name, "Unit": "Count"});
    json!({
        "_aws": {
            "Timestamp": at_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [["Function"]],
                "Metrics": [metric("Delivered"), metric("Retried"), metric("DeadLettered"), metric("Gone"), metric("InstanceDeleted"), metric("Settled"), metric("Deferred"), metric("Unprocessed")],
            }],
        },
        "Function": function,
        "Delivered": o.delivered,
        "Retried": o.retried,
        "DeadLettered": o.dead_lettered,
        "Gone": o.gone,
        "InstanceDeleted": o.instance_deleted,
        "Settled": o.settled,
        "Deferred": o.deferred,
        "Unprocessed": o.unprocessed,
    })
    .to_string()
}

/// Where the lines go: stdout on Lambda (its log stream), anything in tests.
#[derive(Clone)]
pub struct Metrics {
    pub function: String,
    sink: Arc<dyn Fn(String) + Send + Sync>,
}

impl Metrics {
    /// Lines on stdout, which Lambda sends to the function's log group.
    pub fn stdout(function: impl Into<String>) -> Self {
        Metrics { function: function.into(), sink: Arc::new(|line| println!("{line}")) }
    }

    pub fn to(function: impl Into<String>, sink: impl Fn(String) + Send + Sync + 'static) -> Self {
        Metrics { function: function.into(), sink: Arc::new(sink) }
    }

    pub fn record(&self, at_ms: i64, outcomes: &Outcomes) {
        (self.sink)(emf(&self.function, at_ms, outcomes));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_named_in_the_directive_is_a_number_at_the_root() {
        let o = Outcomes {
            delivered: 7,
            retried: 2,
            dead_lettered: 1,
            gone: 3,
            instance_deleted: 5,
            settled: 4,
            deferred: 6,
            unprocessed: 0,
        };
        let v: serde_json::Value =
            serde_json::from_str(&emf("relay-DeliveryFunction-x", 1_772_473_211_000, &o)).unwrap();
        let directive = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(v["_aws"]["Timestamp"], 1_772_473_211_000i64);
        assert_eq!(directive["Namespace"], NAMESPACE);
        for dimensions in directive["Dimensions"].as_array().unwrap() {
            for d in dimensions.as_array().unwrap() {
                assert!(v[d.as_str().unwrap()].is_string(), "dimension {d} at the root");
            }
        }
        let names: Vec<&str> =
            directive["Metrics"].as_array().unwrap().iter().map(|m| m["Name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            ["Delivered", "Retried", "DeadLettered", "Gone", "InstanceDeleted", "Settled", "Deferred", "Unprocessed"]
        );
        let values: Vec<u64> = names.iter().map(|n| v[n].as_u64().unwrap()).collect();
        assert_eq!(values, [7, 2, 1, 3, 5, 4, 6, 0]);
    }
}
