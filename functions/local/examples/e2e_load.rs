//! End-to-end latency at a fixed rate: signed webhooks sent open-loop at RATE/s for SECONDS to
//! the local mode; a loopback receiver notes when each notification arrives. Then the same
//! schedule against a bare server (round trip only), as the baseline measured in the same run.
//! Usage: e2e_load <relay base url> <admin Authorization> <bare base url> [rate] [seconds]
use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::Sha256;

const VENDOR_KEY: &str = "bench-vendor-key";

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[((v.len() as f64 - 1.0) * p).round() as usize] }
}

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(VENDOR_KEY.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256 {}", hex::encode(mac.finalize().into_bytes()))
}

/// Sends `rate`/s for `seconds` to `url`; returns (send instant, response instant, eventId).
async fn drive(
    client: &reqwest::Client,
    url: &str,
    rate: u64,
    seconds: u64,
) -> Vec<(Instant, Option<Instant>, String)> {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut tasks = vec![];
    for i in 0..rate * seconds {
        tick.tick().await;
        let (client, url) = (client.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let body = format!(r#"{{"action":"job_created","payload":{{"job":{{"id":{i},"name":"Load test"}}}}}}"#);
            let sent = Instant::now();
            let resp = client
                .post(&url)
                .header("signature", sign(body.as_bytes()))
                .header("greenhouse-event-id", format!("load-{i}-{}", std::process::id()))
                .body(body)
                .send()
                .await;
            match resp {
                Ok(r) if r.status() == 200 => {
                    let bytes = r.bytes().await.unwrap_or_default();
                    let done = Instant::now();
                    let id = serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| v["eventId"].as_str().map(str::to_owned))
                        .unwrap_or_default();
                    (sent, Some(done), id)
                }
                _ => (sent, None, String::new()),
            }
        }));
    }
    let mut out = vec![];
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (relay, auth, bare) = (&args[1], &args[2], &args[3]);
    let rate: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let seconds: u64 = args.get(5).and_then(|s| s.parse().ok()).unwrap_or(10);

    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let rx_addr = listener.local_addr().unwrap();
    let rx_arrivals = arrivals.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let arrivals = rx_arrivals.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let arrivals = arrivals.clone();
                    async move {
                        let at = Instant::now();
                        let id = req
                            .headers()
                            .get("webhook-id")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned();
                        let _ = req.into_body().collect().await;
                        arrivals.lock().unwrap().insert(id, at);
                        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::new())))
                    }
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });

    let client = reqwest::Client::builder().pool_max_idle_per_host(256).build().unwrap();
    let inst: Value = serde_json::from_slice(
        &client
            .post(format!("{relay}/instances"))
            .header("authorization", auth)
            .header("content-type", "application/json")
            .body(
                json!({"element": {"key": "greenhouse"}, "name": "bench", "configuration": {
                    "event.notification.callback.url": format!("http://{rx_addr}/hooks"),
                    "event.notification.signature.key": "bench-signing-key", "event.vendor.signature.key": VENDOR_KEY}})
                .to_string(),
            )
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let url = format!("{relay}/events/greenhouse/{}", inst["id"]);

    let sent = drive(&client, &url, rate, seconds).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let accepted: Vec<_> = sent.iter().filter(|s| s.1.is_some()).collect();
    while arrivals.lock().unwrap().len() < accepted.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let got = arrivals.lock().unwrap().clone();
    let mut e2e: Vec<f64> =
        accepted.iter().filter_map(|(s, _, id)| got.get(id).map(|a| (*a - *s).as_secs_f64() * 1000.0)).collect();
    let mut ingest: Vec<f64> = accepted.iter().map(|(s, d, _)| (d.unwrap() - *s).as_secs_f64() * 1000.0).collect();

    let bare_sent = drive(&client, &format!("{bare}/events"), rate, seconds).await;
    let mut bare_rt: Vec<f64> =
        bare_sent.iter().filter_map(|(s, d, _)| d.map(|d| (d - *s).as_secs_f64() * 1000.0)).collect();

    let (e50, e99) = (percentile(&mut e2e, 0.5), percentile(&mut e2e, 0.99));
    let (i50, i99) = (percentile(&mut ingest, 0.5), percentile(&mut ingest, 0.99));
    let (b50, b99) = (percentile(&mut bare_rt, 0.5), percentile(&mut bare_rt, 0.99));
    println!(
        "e2e_load rate={rate}/s seconds={seconds} sent={} accepted={} delivered={}",
        sent.len(),
        accepted.len(),
        e2e.len()
    );
    println!("E2E    sent->received   p50 {e50:.2} ms  p99 {e99:.2} ms   (target p99 < 100 ms)");
    println!("INGEST sent->200        p50 {i50:.2} ms  p99 {i99:.2} ms");
    println!("BARE   round trip       p50 {b50:.2} ms  p99 {b99:.2} ms   (baseline, same schedule)");
    println!("RATIO  e2e p99 / bare p99 = {:.1}", e99 / b99);
}
