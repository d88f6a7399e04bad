//! `METRICS_ADDR`: the local mode's Prometheus metrics, scraped over HTTP from a running server
//! while real webhooks go through it to real receivers on loopback.

mod harness;

use std::time::Duration;

use harness::*;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(20);

/// The value of the series `name{labels}` (as written, labels in their order), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.split(' ').next()?.parse().ok())
}

/// What Prometheus sends: OpenMetrics first, the classic text format after it.
const PROMETHEUS_ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
    version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// A scrape as Prometheus makes it.
async fn scrape(http: &reqwest::Client, base: &str) -> String {
    let r = http.get(format!("{base}/metrics")).header("accept", PROMETHEUS_ACCEPT).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/openmetrics-text"));
    r.text().await.unwrap()
}

/// Waits until `series` reads `value`.
async fn wait_for(http: &reqwest::Client, base: &str, series: &str, value: f64) -> String {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let text = scrape(http, base).await;
        if sample(&text, series) == Some(value) {
            return text;
        }
        assert!(std::time::Instant::now() < deadline, "{series} never reached {value}:\n{text}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_metrics_count_requests_attempts_by_outcome_and_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let (ok_then, gone, slow) = (Receiver::start().await, Receiver::start().await, Receiver::start().await);
    ok_then.script([Reply::status(500)]);
    gone.script([Reply::status(410)]);
    slow.script([Reply { delay: Duration::from_millis(1500), ..Reply::status(200) }]);
    let mut c = config(dir.path(), 0.00002);
    c.metrics_addr = Some("127.0.0.1:0".parse().unwrap());
    let server = Server::start(c).await;
    let metrics = format!("http://{}", server.running.as_ref().unwrap().metrics_addr.unwrap());
    let http = &server.http;
    let fresh = scrape(http, &metrics).await;
    assert_eq!(sample(&fresh, r#"greenhouse_relay_notifications{status="pending"}"#), Some(0.0), "{fresh}");
    assert_eq!(sample(&fresh, "greenhouse_relay_oldest_due_seconds"), Some(0.0), "{fresh}");
    assert!(fresh.trim_end().ends_with("# EOF"), "{fresh}");

    let body = fixture("job_created.json");
    let a = server.create_instance(&ok_then.url(), json!({})).await;
    let b = server.create_instance(&gone.url(), json!({})).await;
    let dead = server.create_instance("http://127.0.0.1:9/hooks", json!({})).await;
    for (instance, id) in [(&a, "m1"), (&b, "m2"), (&dead, "m3")] {
        assert_eq!(server.webhook(instance["id"].as_i64().unwrap(), &body, VENDOR_KEY, Some(id)).await.0, 200);
    }
    assert_eq!(server.webhook(a["id"].as_i64().unwrap(), &body, "not-the-key", None).await.0, 401);
    assert_eq!(server.call("GET", "/instances/999999", Some(&admin()), None).await.0, 404);

    // a: 500 then 200; b: 410 at once; dead: a closed port, 8 attempts (5 s ... 10 h, scaled).
    let text =
        wait_for(http, &metrics, r#"greenhouse_relay_delivery_attempts_total{outcome="dead_lettered"}"#, 1.0).await;
    let count = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(count(r#"greenhouse_relay_delivery_attempts_total{outcome="delivered"}"#), 1.0);
    assert_eq!(count(r#"greenhouse_relay_delivery_attempts_total{outcome="gone"}"#), 1.0);
    // One retry of a's, seven of dead's.
    assert_eq!(count(r#"greenhouse_relay_delivery_attempts_total{outcome="retried"}"#), 8.0);
    assert_eq!(count("greenhouse_relay_delivery_attempt_duration_seconds_count"), 11.0);
    let webhooks = |status: u16| {
        format!(r#"greenhouse_relay_http_requests_total{{route="/events/greenhouse/{{id}}",status="{status}"}}"#)
    };
    assert_eq!(count(&webhooks(200)), 3.0);
    assert_eq!(count(&webhooks(401)), 1.0);
    assert_eq!(count(r#"greenhouse_relay_http_requests_total{route="/instances",status="200"}"#), 3.0);
    assert_eq!(count(r#"greenhouse_relay_http_requests_total{route="/instances/{id}",status="404"}"#), 1.0);
    assert_eq!(count(r#"greenhouse_relay_http_request_duration_seconds_count{route="/events/greenhouse/{id}"}"#), 4.0);
    // The queue: b's and dead's are failed (redeliverable), nothing pending.
    assert_eq!(count(r#"greenhouse_relay_notifications{status="failed"}"#), 2.0);
    assert_eq!(count(r#"greenhouse_relay_notifications{status="pending"}"#), 0.0);
    // The scrapes themselves are not counted as API requests.
    assert!(!text.contains("/metrics"), "{text}");

    // A notification whose attempt is in flight is pending, and overdue while it lasts.
    let c = server.create_instance(&slow.url(), json!({})).await;
    let (_, queued) = server.webhook(c["id"].as_i64().unwrap(), &body, VENDOR_KEY, Some("m4")).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let text = scrape(http, &metrics).await;
    assert_eq!(sample(&text, r#"greenhouse_relay_notifications{status="pending"}"#), Some(1.0), "{text}");
    let overdue = sample(&text, "greenhouse_relay_oldest_due_seconds").unwrap();
    assert!((0.5..30.0).contains(&overdue), "{overdue}\n{text}");
    server.wait_status(c["id"].as_i64().unwrap(), queued["eventId"].as_str().unwrap(), "delivered", WAIT).await;
    let text = wait_for(http, &metrics, r#"greenhouse_relay_notifications{status="pending"}"#, 0.0).await;
    assert_eq!(sample(&text, "greenhouse_relay_oldest_due_seconds"), Some(0.0), "{text}");

    // Without `Accept` (curl, older agents): the classic text format, the same samples.
    let plain = http.get(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(plain.headers()["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    let plain = plain.text().await.unwrap();
    assert!(plain.contains("# TYPE greenhouse_relay_delivery_attempts_total counter"), "{plain}");
    assert!(!plain.contains("# EOF"), "{plain}");
    let gone = r#"greenhouse_relay_delivery_attempts_total{outcome="gone"}"#;
    assert_eq!(sample(&plain, gone), Some(1.0), "{plain}");

    // Only GET (or HEAD) /metrics.
    let head = http.head(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.headers()["content-length"].to_str().unwrap().parse::<usize>().unwrap() > 100);
    assert_eq!(http.get(format!("{metrics}/")).send().await.unwrap().status(), 404);
    let post = http.post(format!("{metrics}/metrics")).send().await.unwrap();
    assert_eq!((post.status().as_u16(), post.headers()["allow"].to_str().unwrap()), (405, "GET, HEAD"));
    // Nor are the metrics on the API's port.
    let (status, v): (u16, Value) = server.call("GET", "/metrics", None, None).await;
    assert_eq!(status, 404, "{v}");
    server.stop().await;
}

#[tokio::test]
async fn without_metrics_addr_nothing_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(config(dir.path(), 1.0)).await;
    assert_eq!(server.running.as_ref().unwrap().metrics_addr, None);
    server.stop().await;
}
