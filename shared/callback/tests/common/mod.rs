//! Shared by the test binaries of this crate.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

/// A callback receiver on loopback that keeps the bodies it is sent.
pub async fn receiver() -> (SocketAddr, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(vec![]));
    let kept = bodies.clone();
    let app = axum::Router::new().route(
        "/hooks",
        axum::routing::post(move |body: bytes::Bytes| async move {
            kept.lock().unwrap().push(body.to_vec());
            "ok"
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, bodies)
}
