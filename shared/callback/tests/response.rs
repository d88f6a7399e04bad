//! What an attempt keeps of a receiver's answer, over real HTTP on loopback, from a receiver that
//! writes its response byte for byte as scripted:
//! - the first 4 KiB of the body and no more: the rest is never read, so a body that never ends
//!   does not hold the attempt; where the cut falls inside a character, that character is dropped;
//! - a body that itself ends inside a character shows U+FFFD; `Retry-After` is read;
//! - a body the receiver cuts short keeps what came, and the error says why;
//! - a body that stops arriving times out, with the status already received.

use std::time::Duration;

use relay_callback::{HttpCallback, RESPONSE_EXCERPT_BYTES};
use relay_core::network::NetworkPolicy;
use relay_core::ports::{Callback, CallbackResponse};
use relay_core::retry::AttemptResult;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

#[derive(Clone)]
enum Step {
    /// Written and flushed.
    Send(Vec<u8>),
    /// 100 ms, so that what comes next reaches the client as a chunk of its own.
    Pause,
    /// Keeps the connection open without a byte more (for an hour).
    Hold,
}
use Step::*;

/// A receiver on loopback that reads each request (head and body), then plays `steps` and closes
/// the connection. Returns its URL.
async fn receiver(steps: Vec<Step>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let steps = steps.clone();
            tokio::spawn(async move {
                let mut seen = vec![];
                let mut buf = [0u8; 4096];
                let head_end = loop {
                    if let Some(at) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
                        break at + 4;
                    }
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                };
                let head = String::from_utf8_lossy(&seen[..head_end]).to_lowercase();
                let length: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().unwrap());
                while seen.len() < head_end + length {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                for step in steps {
                    match step {
                        Send(bytes) => {
                            if tcp.write_all(&bytes).await.is_err() || tcp.flush().await.is_err() {
                                return;
                            }
                        }
                        Pause => tokio::time::sleep(Duration::from_millis(100)).await,
                        Hold => tokio::time::sleep(Duration::from_secs(3600)).await,
                    }
                }
            });
        }
    });
    url
}

fn head(status: &str, headers: &str) -> Step {
    Send(format!("HTTP/1.1 {status}\r\n{headers}\r\n").into_bytes())
}

async fn post(steps: Vec<Step>, timeout: Duration) -> CallbackResponse {
    let url = receiver(steps).await;
    let policy = NetworkPolicy {
        allow: NetworkPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
        allow_http_to_allowed_nets: true,
    };
    HttpCallback::new(policy, timeout).unwrap().post(&url, &[("content-type", "application/json".into())], b"{}").await
}

#[tokio::test]
async fn the_excerpt_is_the_first_4_kib_cut_at_a_character_and_the_rest_is_never_read() {
    // 3,000 bytes, then 3,000 more in a chunk of their own: the excerpt takes 1,096 of the second
    // chunk, and does not wait for a third, which never comes. 4,096 bytes are 1,365 euro signs
    // and the first byte of the next one, which is dropped.
    let euros = "€".repeat(1000).into_bytes();
    let steps =
        vec![head("200 OK", "content-length: 1000000\r\n"), Pause, Send(euros.clone()), Pause, Send(euros), Hold];
    // Were the attempt to wait for more of the body, it would end at this timeout, timed out.
    let got = post(steps, Duration::from_secs(30)).await;
    assert_eq!(got.result, AttemptResult::Answered { status: 200, retry_after: None }, "{got:?}");
    assert_eq!((got.status_code, got.error), (Some(200), None));
    assert_eq!(RESPONSE_EXCERPT_BYTES, 4096);
    assert_eq!(got.body_excerpt, "€".repeat(1365));
}

#[tokio::test]
async fn a_body_that_ends_inside_a_character_shows_a_replacement_character() {
    let steps =
        vec![head("503 Service Unavailable", "content-length: 5\r\nretry-after: 7\r\n"), Send(b"ok \xE2\x82".to_vec())];
    let got = post(steps, Duration::from_secs(30)).await;
    let asked = Some(Duration::from_secs(7));
    assert_eq!(got.result, AttemptResult::Answered { status: 503, retry_after: asked }, "{got:?}");
    assert_eq!((got.status_code, got.error), (Some(503), None));
    assert_eq!(got.body_excerpt, "ok \u{FFFD}");
}

#[tokio::test]
async fn a_body_cut_short_by_the_receiver_keeps_what_came_and_says_why() {
    // 10 bytes of the 20 announced, the last two the start of a euro sign; then the receiver closes.
    let steps = vec![head("200 OK", "content-length: 20\r\n"), Send(b"partial \xE2\x82".to_vec())];
    let got = post(steps, Duration::from_secs(30)).await;
    // The receiver did answer 2xx: that decides the attempt.
    assert_eq!(got.result, AttemptResult::Answered { status: 200, retry_after: None }, "{got:?}");
    assert_eq!(got.status_code, Some(200));
    let error = got.error.unwrap();
    assert!(error.starts_with("reading the response: "), "{error}");
    // The body stopped inside a character: the character's first bytes are dropped.
    assert_eq!(got.body_excerpt, "partial ");
}

#[tokio::test]
async fn a_body_that_stops_arriving_times_out_with_the_status_received() {
    let steps = vec![head("200 OK", "content-length: 20\r\n"), Send(b"partial".to_vec()), Hold];
    let got = post(steps, Duration::from_secs(1)).await;
    assert_eq!(got.result, AttemptResult::TimedOut, "{got:?}");
    assert_eq!(got.status_code, Some(200));
    let error = got.error.unwrap();
    assert!(error.starts_with("reading the response: "), "{error}");
    assert_eq!(got.body_excerpt, "partial");
    assert!(got.duration >= Duration::from_secs(1), "{:?}", got.duration);
}
