//! The callback client goes straight to the callback's own addresses, whatever proxy the
//! environment names. Through a proxy, the proxy would resolve the callback's host and connect,
//! and the network policy would judge only the proxy's address: a name resolving to
//! 169.254.169.254 would be reached. So `HTTP_PROXY`, `HTTPS_PROXY` and `ALL_PROXY` are ignored.
//!
//! This file holds one test: it sets process-wide environment variables, which no other test of
//! this binary may read at the same time.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

mod common;

use common::receiver;
use relay_callback::HttpCallback;
use relay_core::network::NetworkPolicy;
use relay_core::ports::Callback;
use relay_core::retry::AttemptResult;

const PROXY_VARIABLES: [&str; 6] = ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"];

/// A proxy that counts the connections made to it and answers none of them.
async fn proxy() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let count = connections.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (addr, connections)
}

#[test]
fn proxy_variables_do_not_route_callbacks_around_the_network_policy() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (proxy_addr, proxied) = rt.block_on(proxy());
    // SAFETY: set before any client exists, and no other thread of this test binary reads the
    // environment (this file's only test; the runtime above is single-threaded and idle).
    unsafe {
        for name in PROXY_VARIABLES {
            std::env::set_var(name, format!("http://{proxy_addr}"));
        }
        std::env::remove_var("NO_PROXY");
        std::env::remove_var("no_proxy");
    }
    rt.block_on(async {
        // A deployment that refuses loopback: `localhost` resolves to a refused address, and the
        // proxy must not be asked to reach it instead.
        let strict = HttpCallback::new(NetworkPolicy::default(), Duration::from_secs(5)).unwrap();
        let sent = strict.post("https://localhost:9/hooks", &[], b"{}").await;
        assert_eq!(sent.result, AttemptResult::Blocked, "{sent:?}");
        assert_eq!(proxied.load(Ordering::SeqCst), 0, "the proxy was asked to reach a refused address");

        // A deployment that allows plain http to loopback (the local mode): the notification
        // goes to the receiver itself.
        let (rx, bodies) = receiver().await;
        let policy = NetworkPolicy {
            allow: NetworkPolicy::parse_allow_list("127.0.0.0/8").unwrap(),
            allow_http_to_allowed_nets: true,
        };
        let local = HttpCallback::new(policy, Duration::from_secs(5)).unwrap();
        for url in [format!("http://{rx}/hooks"), format!("http://localhost:{}/hooks", rx.port())] {
            let sent = local.post(&url, &[], br#"{"n":1}"#).await;
            assert_eq!(sent.status_code, Some(200), "{url}: {sent:?}");
        }
        assert_eq!(bodies.lock().unwrap().len(), 2);
        assert_eq!(proxied.load(Ordering::SeqCst), 0, "a callback went through the proxy");
    });
}
