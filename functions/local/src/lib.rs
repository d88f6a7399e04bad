//! Local mode: the whole pipeline in one process. The shared router on a hyper server, the
//! SQLite store and queue, and the delivery worker, wired together.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use relay_callback::HttpCallback;
use relay_core::api::{Api, ApiConfig, ApiError, route_of};
use relay_core::delivery::DeliveryConfig;
use relay_core::greenhouse::MAX_BODY_BYTES;
use relay_core::network::NetworkPolicy;
use relay_core::ports::{Clock, SystemClock};
use relay_sqlite::{SqliteStore, Worker, WorkerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;

pub mod listen;
pub mod metrics;

/// Bodies up to this size are read whole (and refused with 413 past 1 MiB) so the client sees
/// the 413; a larger one is cut off.
const READ_LIMIT: usize = 4 * MAX_BODY_BYTES;

/// How long a client may take to send a request's headers (an idle keep-alive connection is
/// closed after as long), and then its body: a client that trickles bytes cannot hold a
/// connection, or a graceful stop, for ever.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything the local server reads from its environment or flags.
#[derive(Clone)]
pub struct Config {
    pub listen_addr: SocketAddr,
    pub database_path: PathBuf,
    pub admin_user_secret: String,
    pub admin_org_secret: String,
    pub public_base_url: Option<String>,
    pub policy: NetworkPolicy,
    pub worker: WorkerConfig,
    pub attempt_timeout: Duration,
    /// See [`READ_TIMEOUT`].
    pub read_timeout: Duration,
    /// A PEM file of roots callbacks are also verified against (`CALLBACK_CA_BUNDLE`).
    pub callback_ca_bundle: Option<PathBuf>,
    /// Where `GET /metrics` is served (`METRICS_ADDR`); none without it.
    pub metrics_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen_addr", &self.listen_addr)
            .field("database_path", &self.database_path)
            .field("public_base_url", &self.public_base_url)
            .field("policy", &self.policy)
            .field("worker", &self.worker)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("read_timeout", &self.read_timeout)
            .field("callback_ca_bundle", &self.callback_ca_bundle)
            .field("metrics_addr", &self.metrics_addr)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Defaults for a laptop: loopback callbacks (and plain http to them) allowed.
    pub fn local(database_path: PathBuf, admin_user_secret: String, admin_org_secret: String) -> Self {
        Config {
            listen_addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
            database_path,
            admin_user_secret,
            admin_org_secret,
            public_base_url: None,
            policy: NetworkPolicy {
                allow: NetworkPolicy::parse_allow_list("127.0.0.0/8,::1/128").unwrap_or_default(),
                allow_http_to_allowed_nets: true,
            },
            worker: WorkerConfig::default(),
            attempt_timeout: relay_core::retry::ATTEMPT_TIMEOUT,
            read_timeout: READ_TIMEOUT,
            callback_ca_bundle: None,
            metrics_addr: None,
        }
    }
}

/// A started server: where it listens, and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    pub public_base_url: String,
    /// Where `GET /metrics` is served, when it is.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    server: JoinHandle<()>,
    worker: JoinHandle<()>,
    metrics_server: Option<JoinHandle<()>>,
}

impl Running {
    /// Graceful stop: no new requests, in-flight requests and deliveries finish.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        self.wait().await;
    }

    pub fn stopper(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    pub async fn wait(self) {
        let _ = self.server.await;
        let _ = self.worker.await;
        if let Some(metrics) = self.metrics_server {
            let _ = metrics.await;
        }
    }
}

pub async fn start(config: Config) -> Result<Running, String> {
    if config.admin_user_secret.is_empty() || config.admin_org_secret.is_empty() {
        return Err("ADMIN_USER_SECRET and ADMIN_ORG_SECRET must both be set".into());
    }
    let store = SqliteStore::open(&config.database_path)
        .map_err(|e| format!("database {}: {e}", config.database_path.display()))?;
    let mut callback = HttpCallback::new(config.policy.clone(), config.attempt_timeout)?;
    if let Some(path) = &config.callback_ca_bundle {
        callback = callback.with_ca_bundle_file(path)?;
    }
    callback.warm()?;
    let callback = Arc::new(callback);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let listener = tokio::net::TcpListener::bind(config.listen_addr)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen_addr))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let public_base_url = config.public_base_url.clone().unwrap_or_else(|| format!("http://{addr}"));
    let api = Api {
        instances: Arc::new(store.clone()),
        events: Arc::new(store.clone()),
        callback: callback.clone(),
        clock: clock.clone(),
        config: Arc::new(ApiConfig {
            admin_user_secret: config.admin_user_secret.clone(),
            admin_org_secret: config.admin_org_secret.clone(),
            public_base_url: Some(public_base_url.clone()),
            policy: config.policy.clone(),
        }),
    };
    let metrics_listener = match config.metrics_addr {
        Some(at) => Some(
            tokio::net::TcpListener::bind(at).await.map_err(|e| format!("cannot serve the metrics on {at}: {e}"))?,
        ),
        None => None,
    };
    let metrics_addr = metrics_listener.as_ref().map(|l| l.local_addr()).transpose().map_err(|e| e.to_string())?;
    let metrics = metrics_listener.as_ref().map(|_| Metrics::new());
    let (shutdown, rx) = watch::channel(false);
    let observer = metrics.clone().map(|m| {
        let observe: relay_sqlite::AttemptObserver = Arc::new(move |result, took| m.attempt(result, took));
        observe
    });
    let worker = Worker { store: store.clone(), callback, clock: clock.clone(), config: config.worker, observer };
    let worker = tokio::spawn(worker.run(rx.clone()));
    let (api, read_timeout) = (Arc::new(api), config.read_timeout);
    let counted = metrics.clone();
    let handler = move |req: Request<Incoming>| {
        let (api, metrics) = (api.clone(), counted.clone());
        async move {
            let Some(metrics) = metrics else { return handle(&api, req, read_timeout).await };
            let started = std::time::Instant::now();
            let route = route_of(req.uri().path());
            let response = handle(&api, req, read_timeout).await;
            metrics.request(route, response.status().as_u16(), started.elapsed());
            response
        }
    };
    let metrics_server = metrics_listener.zip(metrics).map(|(listener, metrics)| {
        let handler = move |req: Request<Incoming>| {
            let (metrics, store, clock) = (metrics.clone(), store.clone(), clock.clone());
            async move { scrape(&metrics, &store, clock.as_ref(), &req).await }
        };
        tracing::info!(addr = ?metrics_addr, "serving metrics at /metrics");
        tokio::spawn(serve(listener, read_timeout, rx.clone(), handler))
    });
    let server = tokio::spawn(serve(listener, read_timeout, rx, handler));
    tracing::info!(%addr, public_base_url, "listening");
    Ok(Running { addr, public_base_url, metrics_addr, shutdown, server, worker, metrics_server })
}

/// `GET /metrics` (or HEAD): the metrics as they are now, in the format `Accept` asks for.
/// Anything else is refused, plainly.
async fn scrape(
    metrics: &Metrics,
    store: &SqliteStore,
    clock: &dyn Clock,
    req: &Request<Incoming>,
) -> Response<Full<Bytes>> {
    use http::StatusCode;
    let answer = |status: StatusCode, content_type: &'static str, text: String| {
        let mut r = Response::new(Full::new(Bytes::from(text)));
        *r.status_mut() = status;
        r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
        r
    };
    if req.uri().path() != "/metrics" {
        return answer(StatusCode::NOT_FOUND, "text/plain; charset=utf-8", "metrics are at /metrics\n".into());
    }
    if !matches!(*req.method(), http::Method::GET | http::Method::HEAD) {
        let mut r = answer(StatusCode::METHOD_NOT_ALLOWED, "text/plain; charset=utf-8", "GET /metrics\n".into());
        r.headers_mut().insert(http::header::ALLOW, http::HeaderValue::from_static("GET, HEAD"));
        return r;
    }
    let format = metrics::Format::accepted(req.headers().get(http::header::ACCEPT).and_then(|v| v.to_str().ok()));
    match metrics.render(store, clock.now_ms(), format).await {
        Ok(text) if req.method() == http::Method::HEAD => {
            let mut r = answer(StatusCode::OK, format.content_type(), String::new());
            r.headers_mut().insert(http::header::CONTENT_LENGTH, http::HeaderValue::from(text.len()));
            r
        }
        Ok(text) => answer(StatusCode::OK, format.content_type(), text),
        Err(e) => {
            tracing::error!(error = %e, "metrics: the store cannot be read");
            answer(StatusCode::SERVICE_UNAVAILABLE, "text/plain; charset=utf-8", "the store cannot be read\n".into())
        }
    }
}

/// Accepts connections until `stop` turns true, then waits for the requests in flight (idle
/// connections are closed at once). Each request goes to `handler`; a client must send its
/// headers within `read_timeout`.
pub(crate) async fn serve<H, F>(
    listener: tokio::net::TcpListener,
    read_timeout: Duration,
    mut stop: watch::Receiver<bool>,
    handler: H,
) where
    H: Fn(Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(read_timeout);
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait for some to close.
                tracing::warn!(error = %e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let handler = handler.clone();
        let service = hyper::service::service_fn(move |req| {
            let response = handler(req);
            async move { Ok::<_, Infallible>(response.await) }
        });
        let connection = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Why a request body could not be read whole.
pub(crate) enum BodyError {
    /// Over the limit.
    TooLarge,
    /// Not all there within the read timeout.
    TimedOut,
    Unreadable(String),
}

/// A request body, read whole within `read_timeout`: at most `limit` bytes.
pub(crate) async fn read_body(body: Incoming, limit: usize, read_timeout: Duration) -> Result<Bytes, BodyError> {
    match tokio::time::timeout(read_timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.is::<LengthLimitError>() => Err(BodyError::TooLarge),
        Ok(Err(e)) => Err(BodyError::Unreadable(e.to_string())),
        Err(_) => Err(BodyError::TimedOut),
    }
}

async fn handle(api: &Api, req: Request<Incoming>, read_timeout: Duration) -> Response<Full<Bytes>> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let (parts, body) = req.into_parts();
    let refuse = |e: ApiError| e.into_response(&request_id).map(Full::new);
    let bytes = match read_body(body, READ_LIMIT, read_timeout).await {
        Ok(b) if b.len() <= MAX_BODY_BYTES => b,
        Ok(_) | Err(BodyError::TooLarge) => return refuse(ApiError::TooLarge),
        Err(BodyError::Unreadable(e)) => {
            return refuse(ApiError::BadRequest(format!("could not read the request body: {e}")));
        }
        Err(BodyError::TimedOut) => return refuse(ApiError::BodyTimeout(read_timeout)),
    };
    api.handle(Request::from_parts(parts, bytes), &request_id).await.map(Full::new)
}

/// Turns a delivery time scale into the worker settings (tests shrink hours to milliseconds).
pub fn scaled(worker: WorkerConfig, time_scale: f64) -> WorkerConfig {
    WorkerConfig { delivery: DeliveryConfig { time_scale }, ..worker }
}
