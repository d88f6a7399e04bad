//! The HTTPS client under the DynamoDB and SQS clients.
//!
//! The SDK's default client trusts the operating system's roots: on every cold start it reads
//! the certificate directory and decodes each PEM file (about 7 ms on a Debian image, 2.5 ms
//! with one bundle, measured by `examples/init_breakdown.rs`), which was most of the functions'
//! init. This client is the same stack (hyper-util's pooled client, hyper-rustls, rustls on
//! aws-lc-rs) with Mozilla's root set compiled in as ready trust anchors (`webpki-roots`), so
//! building it costs microseconds. `AWS_CA_BUNDLE` (a PEM file, the variable the other AWS SDKs
//! read) adds roots, for endpoints behind a private CA.
//!
//! It honours the SDK's connect and read timeouts and classifies failures the way the SDK's own
//! connector does: timeouts as timeouts, connection and I/O failures as I/O (both retried by the
//! SDK's standard retry strategy), anything else as "other".

use std::collections::HashMap;
use std::error::Error as StdError;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector as TcpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

type BoxError = Box<dyn StdError + Send + Sync>;

/// The SDK HTTP client of the functions; see the module documentation.
/// Connect and read timeouts, as the SDK's `HttpConnectorSettings` carry them.
type Timeouts = (Option<Duration>, Option<Duration>);

#[derive(Clone)]
pub struct SdkHttpClient {
    tls: Arc<rustls::ClientConfig>,
    /// One connector (and connection pool) per distinct timeout setting, as the SDK expects.
    connectors: Arc<Mutex<HashMap<Timeouts, SharedHttpConnector>>>,
}

impl fmt::Debug for SdkHttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SdkHttpClient").finish_non_exhaustive()
    }
}

impl SdkHttpClient {
    /// Mozilla's roots plus `extra` (DER).
    pub fn with_extra_roots(extra: Vec<CertificateDer<'static>>) -> Result<Self, rustls::Error> {
        let mut roots = RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() };
        for cert in extra {
            roots.add(cert)?;
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(SdkHttpClient { tls: Arc::new(tls), connectors: Arc::default() })
    }

    /// Mozilla's roots, plus the PEM certificates of the file `AWS_CA_BUNDLE` names, if set.
    pub fn from_env() -> Result<Self, String> {
        let mut extra = vec![];
        if let Some(path) = std::env::var_os("AWS_CA_BUNDLE").filter(|p| !p.is_empty()) {
            let shown = path.to_string_lossy().into_owned();
            for cert in CertificateDer::pem_file_iter(&path).map_err(|e| format!("AWS_CA_BUNDLE {shown}: {e}"))? {
                extra.push(cert.map_err(|e| format!("AWS_CA_BUNDLE {shown}: {e}"))?);
            }
        }
        Self::with_extra_roots(extra).map_err(|e| format!("TLS configuration: {e}"))
    }

    pub fn shared(self) -> SharedHttpClient {
        SharedHttpClient::new(self)
    }

    fn connector(&self, settings: &HttpConnectorSettings) -> Connector {
        let mut tcp = TcpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(settings.connect_timeout());
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*self.tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(tcp);
        let client = Client::builder(TokioExecutor::new()).pool_timer(TokioTimer::new()).build(https);
        Connector { client, read_timeout: settings.read_timeout() }
    }
}

impl HttpClient for SdkHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, _: &RuntimeComponents) -> SharedHttpConnector {
        self.connector_for(settings)
    }
}

impl SdkHttpClient {
    /// The connector (and its connection pool) for these settings, built on first use.
    pub fn connector_for(&self, settings: &HttpConnectorSettings) -> SharedHttpConnector {
        let key = (settings.connect_timeout(), settings.read_timeout());
        let mut connectors = self.connectors.lock().unwrap_or_else(|e| e.into_inner());
        connectors.entry(key).or_insert_with(|| SharedHttpConnector::new(self.connector(settings))).clone()
    }
}

struct Connector {
    client: Client<HttpsConnector<TcpConnector>, SdkBody>,
    read_timeout: Option<Duration>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector").field("read_timeout", &self.read_timeout).finish_non_exhaustive()
    }
}

impl HttpConnector for Connector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let request = match request.try_into_http1x() {
            Ok(request) => request,
            Err(e) => return HttpConnectorFuture::ready(Err(ConnectorError::user(e.into()))),
        };
        let response = self.client.request(request);
        let read_timeout = self.read_timeout;
        HttpConnectorFuture::new(async move {
            let response = match read_timeout {
                Some(limit) => match tokio::time::timeout(limit, response).await {
                    Ok(response) => response,
                    Err(elapsed) => return Err(ConnectorError::timeout(elapsed.into())),
                },
                None => response.await,
            };
            match response {
                Ok(response) => HttpResponse::try_from(response.map(SdkBody::from_body_1_x))
                    .map_err(|e| ConnectorError::other(e.into(), None)),
                Err(e) => Err(classify(e.into())),
            }
        })
    }
}

/// Timeouts as timeouts; failures to connect and I/O failures (including a pooled connection
/// the server closed) as I/O, which the SDK retries; the rest as "other".
fn classify(err: BoxError) -> ConnectorError {
    let io_kind = find::<std::io::Error>(err.as_ref()).map(std::io::Error::kind);
    if io_kind == Some(std::io::ErrorKind::TimedOut) {
        return ConnectorError::timeout(err);
    }
    let connect = find::<hyper_util::client::legacy::Error>(err.as_ref()).is_some_and(|e| e.is_connect());
    let closed = find::<hyper::Error>(err.as_ref())
        .is_some_and(|e| e.is_closed() || e.is_incomplete_message() || e.is_canceled());
    if connect || closed || io_kind.is_some() { ConnectorError::io(err) } else { ConnectorError::other(err, None) }
}

fn find<'a, E: StdError + 'static>(mut err: &'a (dyn StdError + 'static)) -> Option<&'a E> {
    loop {
        if let Some(e) = err.downcast_ref::<E>() {
            return Some(e);
        }
        err = err.source()?;
    }
}
