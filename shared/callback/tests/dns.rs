//! What a callback host resolves to is decided by whoever runs its DNS, and can change between
//! two lookups. These tests script the answers (the `Lookup` port) and check that:
//! - the check of a callback URL at `POST`/`PATCH /instances` ends at its deadline when DNS hangs;
//! - plain `http` never connects outside the allow-list, even when the name resolves to an
//!   allow-listed address when checked and to a public one at connection (or did not resolve
//!   when checked);
//! - https never connects to a refused address, whatever the name resolves to.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

mod common;

use async_trait::async_trait;
use common::receiver;
use relay_callback::{HttpCallback, Lookup};
use relay_core::network::NetworkPolicy;
use relay_core::ports::Callback;
use relay_core::retry::AttemptResult;

#[derive(Clone)]
enum Answer {
    Addrs(Vec<IpAddr>),
    Fail,
    Hang,
}

/// Answers lookups in the order scripted; the last answer repeats. Keeps the names asked.
struct Scripted {
    answers: Mutex<VecDeque<Answer>>,
    asked: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(answers: impl IntoIterator<Item = Answer>) -> Arc<Self> {
        Arc::new(Scripted { answers: Mutex::new(answers.into_iter().collect()), asked: Mutex::new(vec![]) })
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait]
impl Lookup for Scripted {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        self.asked.lock().unwrap().push(host.to_owned());
        let answer = {
            let mut answers = self.answers.lock().unwrap();
            if answers.len() > 1 { answers.pop_front() } else { answers.front().cloned() }
        };
        match answer.unwrap_or(Answer::Fail) {
            Answer::Addrs(ips) => Ok(ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect()),
            Answer::Fail => Err(std::io::Error::other("no such host")),
            Answer::Hang => std::future::pending().await,
        }
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn loopback_http_policy() -> NetworkPolicy {
    NetworkPolicy { allow: NetworkPolicy::parse_allow_list("127.0.0.0/8").unwrap(), allow_http_to_allowed_nets: true }
}

#[tokio::test]
async fn the_check_of_a_callback_host_ends_at_its_deadline_when_dns_hangs() {
    let dns = Scripted::new([Answer::Hang]);
    let cb = HttpCallback::with_lookup(
        NetworkPolicy::default(),
        Duration::from_secs(5),
        dns.clone(),
        Duration::from_millis(200),
    );
    // The guard only catches a hang; the deadline under test is 200 ms.
    let addrs = tokio::time::timeout(Duration::from_secs(60), cb.resolve("hangs.example", 443))
        .await
        .expect("resolve waited past its deadline");
    assert_eq!(addrs, Vec::<IpAddr>::new());
    assert_eq!(dns.asked(), ["hangs.example"]);

    // An answer in time is returned as it is.
    let dns = Scripted::new([Answer::Addrs(vec![ip("8.8.8.8"), ip("2001:4860:4860::8888")])]);
    let cb = HttpCallback::with_lookup(NetworkPolicy::default(), Duration::from_secs(5), dns, Duration::from_secs(30));
    assert_eq!(cb.resolve("dns.example", 443).await, [ip("8.8.8.8"), ip("2001:4860:4860::8888")]);
}

#[tokio::test]
async fn plain_http_reaches_only_allow_listed_addresses_whatever_the_name_resolves_to_next() {
    let (rx, bodies) = receiver().await;
    let url = format!("http://receiver.example:{}/hooks", rx.port());
    let short = Duration::from_secs(2);

    // Every lookup gives loopback: delivered.
    let dns = Scripted::new([Answer::Addrs(vec![ip("127.0.0.1")])]);
    let cb = HttpCallback::with_lookup(loopback_http_policy(), short, dns.clone(), short);
    let sent = cb.post(&url, &[], br#"{"n":1}"#).await;
    assert_eq!(sent.status_code, Some(200), "{sent:?}");
    assert_eq!(bodies.lock().unwrap().len(), 1);
    assert!(dns.asked().len() >= 2, "checked, then resolved at connection: {:?}", dns.asked());

    // Loopback when checked, a public address at connection (a DNS rebinding, or a record that
    // changed): refused at connection, because plain http may leave the allow-list never.
    // The check's lookup failing outright must not open the door either.
    for first in [Answer::Addrs(vec![ip("127.0.0.1")]), Answer::Fail] {
        let dns = Scripted::new([first, Answer::Addrs(vec![ip("8.8.8.8")])]);
        let cb = HttpCallback::with_lookup(loopback_http_policy(), short, dns.clone(), short);
        let sent = cb.post(&url, &[], br#"{"n":2}"#).await;
        assert_eq!(sent.result, AttemptResult::Blocked, "{sent:?}");
        assert_eq!(sent.status_code, None);
        let error = sent.error.unwrap_or_default();
        assert!(error.contains("plain http reaches only allow-listed networks"), "{error}");
        assert_eq!(dns.asked(), ["receiver.example", "receiver.example"]);
    }

    // An answer mixing both: only the allow-listed address is used.
    let dns =
        Scripted::new([Answer::Addrs(vec![ip("127.0.0.1")]), Answer::Addrs(vec![ip("8.8.8.8"), ip("127.0.0.1")])]);
    let cb = HttpCallback::with_lookup(loopback_http_policy(), short, dns, short);
    let sent = cb.post(&url, &[], br#"{"n":3}"#).await;
    assert_eq!(sent.status_code, Some(200), "{sent:?}");

    let got: Vec<Vec<u8>> = bodies.lock().unwrap().clone();
    assert_eq!(got, [br#"{"n":1}"#.to_vec(), br#"{"n":3}"#.to_vec()]);
}

#[tokio::test]
async fn https_never_connects_to_a_refused_address_whatever_the_name_resolves_to() {
    // A listener on loopback that counts connections: https here is refused loopback (the
    // default policy), so nothing may arrive.
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let connections = Arc::new(Mutex::new(0usize));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            *count.lock().unwrap() += 1;
            drop(socket);
        }
    });
    for addrs in [vec![ip("127.0.0.1")], vec![ip("169.254.169.254"), ip("::ffff:127.0.0.1")], vec![ip("::1")]] {
        let dns = Scripted::new([Answer::Addrs(addrs.clone())]);
        let cb =
            HttpCallback::with_lookup(NetworkPolicy::default(), Duration::from_secs(2), dns, Duration::from_secs(2));
        let sent = cb.post(&format!("https://rebind.example:{port}/hooks"), &[], b"{}").await;
        assert_eq!(sent.result, AttemptResult::Blocked, "{addrs:?}: {sent:?}");
        assert_eq!(sent.error.as_deref(), Some("blocked: the callback host resolves only to refused addresses"));
    }
    assert_eq!(*connections.lock().unwrap(), 0);
}
