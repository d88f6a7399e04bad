//! The SDK HTTP client of the functions (`relay_aws::http`) against real TLS servers on
//! loopback: it refuses a certificate no trusted root vouches for, accepts one whose root is
//! added, keeps the SDK's timeouts and classifies failures as the SDK's retry strategy expects.
//! (Plain HTTP through the same client is what every moto-backed test in `runtime.rs` uses.)

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{HttpConnector, HttpConnectorSettings};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use relay_aws::http::SdkHttpClient;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A self-signed certificate for `localhost`, and a TLS server with it that answers every
/// request with `200 hello` (or, with `answer == false`, accepts and never answers).
async fn server(answer: bool) -> (u16, CertificateDer<'static>) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let der = cert.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 4096];
                let mut seen = vec![];
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                if !answer {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    return;
                }
                let _ = tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello").await;
                let _ = tls.flush().await;
            });
        }
    });
    (port, der)
}

/// One GET through `client`'s connector for these timeouts (3 s connect, optional read).
async fn get(
    client: &SdkHttpClient,
    url: &str,
    read_timeout: Option<Duration>,
) -> Result<HttpResponse, ConnectorError> {
    let mut settings = HttpConnectorSettings::builder().connect_timeout(Duration::from_secs(3));
    if let Some(t) = read_timeout {
        settings = settings.read_timeout(t);
    }
    client.connector_for(&settings.build()).call(HttpRequest::get(url).unwrap()).await
}

#[tokio::test]
async fn a_certificate_no_trusted_root_vouches_for_is_refused() {
    let (port, _) = server(true).await;
    let client = SdkHttpClient::with_extra_roots(vec![]).unwrap();
    let err = get(&client, &format!("https://localhost:{port}/"), None).await.unwrap_err();
    let text = format!("{err:?}");
    assert!(text.to_lowercase().contains("certificate"), "not a certificate error: {text}");
    assert!(!err.is_timeout());
}

#[tokio::test]
async fn an_added_root_is_trusted_and_the_response_comes_back() {
    let (port, der) = server(true).await;
    let client = SdkHttpClient::with_extra_roots(vec![der]).unwrap();
    let resp = get(&client, &format!("https://localhost:{port}/"), None).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body()).await.unwrap().to_bytes();
    assert_eq!(&body[..], b"hello");
    // A second request, through the connector cached for the same settings.
    let resp = get(&client, &format!("https://localhost:{port}/"), None).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

#[tokio::test]
async fn the_bundle_named_by_aws_ca_bundle_is_trusted() {
    let (port, der) = server(true).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bundle.pem");
    std::fs::write(&path, pem_of(&der)).unwrap();
    // SAFETY: only this test in this binary touches AWS_CA_BUNDLE.
    unsafe { std::env::set_var("AWS_CA_BUNDLE", &path) };
    let client = SdkHttpClient::from_env();
    unsafe { std::env::remove_var("AWS_CA_BUNDLE") };
    let client = client.unwrap();
    let resp = get(&client, &format!("https://localhost:{port}/"), None).await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);

    std::fs::write(&path, "not a certificate").unwrap();
    unsafe { std::env::set_var("AWS_CA_BUNDLE", &path) };
    let client = SdkHttpClient::from_env();
    unsafe { std::env::remove_var("AWS_CA_BUNDLE") };
    assert!(client.is_ok(), "a file without certificates adds none");
    unsafe { std::env::set_var("AWS_CA_BUNDLE", dir.path().join("missing.pem")) };
    let client = SdkHttpClient::from_env();
    unsafe { std::env::remove_var("AWS_CA_BUNDLE") };
    assert!(client.unwrap_err().contains("AWS_CA_BUNDLE"));
}

fn pem_of(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der.as_ref());
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    format!("-----BEGIN CERTIFICATE-----\n{}\n-----END CERTIFICATE-----\n", lines.join("\n"))
}

#[tokio::test]
async fn a_silent_server_is_a_read_timeout() {
    let (port, der) = server(false).await;
    let client = SdkHttpClient::with_extra_roots(vec![der]).unwrap();
    let started = Instant::now();
    let err = get(&client, &format!("https://localhost:{port}/"), Some(Duration::from_millis(300))).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn a_refused_connection_is_an_io_error_the_sdk_retries() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let client = SdkHttpClient::with_extra_roots(vec![]).unwrap();
    let err = get(&client, &format!("http://127.0.0.1:{port}/"), None).await.unwrap_err();
    assert!(err.is_io(), "{err:?}");
}

/// A plain-HTTP server on loopback that reads one request's head and then writes `answer` (raw
/// bytes, maybe none) and closes the connection.
async fn closing_server(answer: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut buf, mut seen) = (vec![0u8; 4096], vec![]);
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tcp.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = tcp.write_all(answer).await;
                let _ = tcp.shutdown().await;
            });
        }
    });
    port
}

/// A connection the server closes before its answer is complete (a pooled connection DynamoDB
/// closed, a proxy giving up) is no connect error and carries no I/O error, only hyper's: still
/// an I/O failure, which the SDK retries.
#[tokio::test]
async fn a_connection_closed_before_the_answer_is_an_io_error_the_sdk_retries() {
    let client = SdkHttpClient::with_extra_roots(vec![]).unwrap();
    for answer in [&b""[..], b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n"] {
        let port = closing_server(answer).await;
        let err = get(&client, &format!("http://127.0.0.1:{port}/"), None).await.unwrap_err();
        assert!(err.is_io(), "{err:?}");
    }
}

/// An answer that is not HTTP is neither a timeout nor an I/O failure: "other", which the SDK
/// does not retry as a transient error.
#[tokio::test]
async fn an_answer_that_is_not_http_is_another_error() {
    let client = SdkHttpClient::with_extra_roots(vec![]).unwrap();
    let port = closing_server(b"SSH-2.0-OpenSSH_9.2\r\n\r\n").await;
    let err = get(&client, &format!("http://127.0.0.1:{port}/"), None).await.unwrap_err();
    assert!(err.is_other() && !err.is_io() && !err.is_timeout(), "{err:?}");
}

/// A DynamoDB that accepts connections and never answers: the store's call fails with
/// `Unavailable` once the operation timeout is spent (attempts retried meanwhile), rather than
/// hang until the function's own timeout.
#[tokio::test]
async fn a_hung_dynamodb_is_an_error_once_the_operation_timeout_is_spent() {
    use relay_core::ports::{Instances, StoreError};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(SdkHttpClient::with_extra_roots(vec![]).unwrap())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "static"))
        .timeout_config(relay_aws::lambda::timeouts(Duration::from_millis(200), Duration::from_millis(700)))
        .load()
        .await;
    let queue = relay_aws::Queue::new(aws_sdk_sqs::Client::new(&conf), "http://127.0.0.1:1/q");
    let store = relay_aws::DynamoStore::new(aws_sdk_dynamodb::Client::new(&conf), "t", queue);
    let result = tokio::time::timeout(Duration::from_secs(60), store.get(1)).await.expect("no hang");
    assert!(matches!(result, Err(StoreError::Unavailable(_))), "{result:?}");
}

/// The functions' own SDK configuration carries those timeouts.
#[tokio::test]
async fn the_functions_sdk_configuration_has_attempt_and_operation_timeouts() {
    let conf = relay_aws::lambda::sdk_config().await.unwrap();
    let t = conf.timeout_config().unwrap();
    assert_eq!(t.operation_attempt_timeout(), Some(relay_aws::lambda::ATTEMPT_TIMEOUT));
    assert_eq!(t.operation_timeout(), Some(relay_aws::lambda::OPERATION_TIMEOUT));
    assert!(relay_aws::lambda::OPERATION_TIMEOUT < Duration::from_secs(10), "under the HTTP functions' timeout");
}
