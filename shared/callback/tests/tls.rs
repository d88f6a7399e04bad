//! Callback receivers behind a private CA: `CALLBACK_CA_BUNDLE` adds its roots to the system's.
//! A TLS receiver on loopback (allow-listed here) with a certificate of its own is refused until
//! its certificate is trusted, then reached; a bundle that holds no usable certificate is refused
//! when it is given, not at the first delivery.

use std::sync::Arc;

use relay_callback::HttpCallback;
use relay_core::network::NetworkPolicy;
use relay_core::ports::Callback;
use relay_core::retry::AttemptResult;
use rustls::pki_types::PrivateKeyDer;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A TLS server for `localhost` with a self-signed certificate, answering every request with
/// `200 hello`; returns its port and the certificate's PEM.
async fn receiver() -> (u16, String) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let pem = cert.cert.pem();
    let key = PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let mut buf = vec![0u8; 8192];
                let mut seen = vec![];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nconnection: close\r\n\r\nhello").await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, pem)
}

fn loopback_policy() -> NetworkPolicy {
    NetworkPolicy { allow: NetworkPolicy::parse_allow_list("127.0.0.0/8").unwrap(), allow_http_to_allowed_nets: false }
}

fn callback() -> HttpCallback {
    HttpCallback::new(loopback_policy(), Duration::from_secs(5)).unwrap()
}

#[tokio::test]
async fn a_receiver_behind_a_private_ca_is_reached_once_its_root_is_trusted() {
    let (port, pem) = receiver().await;
    let url = format!("https://localhost:{port}/hooks");

    let untrusted = callback().post(&url, &[], b"{}").await;
    assert_eq!(untrusted.result, AttemptResult::Failed, "{untrusted:?}");
    let error = untrusted.error.unwrap_or_default();
    assert!(error.to_lowercase().contains("certificate"), "{error}");

    // Another CA's root does not vouch for it either.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap().cert.pem();
    let wrong = callback().with_extra_roots(other.as_bytes()).unwrap().post(&url, &[], b"{}").await;
    assert_eq!(wrong.result, AttemptResult::Failed, "{wrong:?}");

    // Its own, alone or in a bundle with others: reached.
    for bundle in [pem.clone(), format!("{other}{pem}")] {
        let trusted = callback().with_extra_roots(bundle.as_bytes()).unwrap();
        trusted.warm().unwrap();
        let sent = trusted.post(&url, &[], b"{}").await;
        assert_eq!(sent.status_code, Some(200), "{sent:?}");
        assert_eq!(sent.body_excerpt, "hello");
    }
}

#[test]
fn a_bundle_without_a_usable_certificate_is_refused_when_given() {
    let empty = callback().with_extra_roots(b"").err().unwrap();
    assert_eq!(empty, "holds no PEM certificate");
    let text = callback().with_extra_roots(b"not a certificate\n").err().unwrap();
    assert_eq!(text, "holds no PEM certificate");
    let garbage = b"-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";
    let bad = callback().with_extra_roots(garbage).err().unwrap();
    assert!(bad.starts_with("holds a certificate that cannot be a root"), "{bad}");
}
