//! Sends notifications to callback URLs: reqwest + rustls, keep-alive, no redirects, no proxy,
//! and a DNS resolver that drops every address the network policy refuses, so a name that
//! resolves to 169.254.169.254 (or starts to, after the URL was accepted) is never connected to.
//! Plain `http` callbacks go through a second client whose resolver keeps only allow-listed
//! addresses, so plain http never reaches a public address, whatever the name resolves to when.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use relay_core::network::{CallbackUrlError, NetworkPolicy};
use relay_core::ports::{Callback, CallbackResponse};
use relay_core::retry::{self, AttemptResult};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Host;

/// What the attempt log keeps of a response body.
pub const RESPONSE_EXCERPT_BYTES: usize = 4096;

/// How long the check of a callback URL's host (at `POST` or `PATCH /instances`) waits for DNS.
/// The system resolver's own retries can take far longer, and the management function has 10 s.
pub const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// Name resolution, a port so that tests can script what a name resolves to, and when.
#[async_trait]
pub trait Lookup: Send + Sync + 'static {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system's resolver (`getaddrinfo`, on tokio's blocking pool).
pub struct SystemLookup;

#[async_trait]
impl Lookup for SystemLookup {
    async fn lookup(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

#[derive(Debug, thiserror::Error)]
#[error("every address of this host is refused by the callback network policy")]
struct Blocked;

struct PolicyResolver {
    policy: Arc<NetworkPolicy>,
    lookup: Arc<dyn Lookup>,
    /// For the plain-http client: only allow-listed addresses.
    plain_http: bool,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let lookup = self.lookup.clone();
        let plain_http = self.plain_http;
        Box::pin(async move {
            let addrs = lookup.lookup(name.as_str(), 0).await?;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| if plain_http { policy.allows_plain_http(a.ip()) } else { policy.is_allowed(a.ip()) })
                .collect();
            if allowed.is_empty() {
                return Err(Box::new(Blocked) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

type Client = OnceLock<Result<reqwest::Client, String>>;

pub struct HttpCallback {
    /// Built on first use: loading the TLS trust roots costs milliseconds, and the ingest and
    /// management functions (which only resolve names) never need it.
    https: Client,
    /// For plain `http` callbacks (only where the deployment allows them).
    http: Client,
    policy: Arc<NetworkPolicy>,
    lookup: Arc<dyn Lookup>,
    timeout: Duration,
    resolve_timeout: Duration,
    /// Trusted besides the system's roots (receivers behind a private CA).
    extra_roots: Vec<reqwest::Certificate>,
}

impl HttpCallback {
    pub fn new(policy: NetworkPolicy, timeout: Duration) -> Result<Self, String> {
        Ok(Self::with_lookup(policy, timeout, Arc::new(SystemLookup), RESOLVE_TIMEOUT))
    }

    /// With another resolver, and another deadline for [`Callback::resolve`].
    pub fn with_lookup(
        policy: NetworkPolicy,
        timeout: Duration,
        lookup: Arc<dyn Lookup>,
        resolve_timeout: Duration,
    ) -> Self {
        HttpCallback {
            https: OnceLock::new(),
            http: OnceLock::new(),
            policy: Arc::new(policy),
            lookup,
            timeout,
            resolve_timeout,
            extra_roots: vec![],
        }
    }

    /// [`with_extra_roots`](Self::with_extra_roots) from the file `CALLBACK_CA_BUNDLE` names;
    /// errors name the variable and the file.
    pub fn with_ca_bundle_file(self, path: &std::path::Path) -> Result<Self, String> {
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|e| format!("CALLBACK_CA_BUNDLE {shown}: {e}"))?;
        self.with_extra_roots(&pem).map_err(|e| format!("CALLBACK_CA_BUNDLE {shown} {e}"))
    }

    /// Also trusts the certificates of a PEM bundle (`CALLBACK_CA_BUNDLE`), for receivers behind
    /// a private CA; the system's roots stay trusted. The bundle must hold at least one
    /// certificate, and each must be usable as a root.
    pub fn with_extra_roots(mut self, pem: &[u8]) -> Result<Self, String> {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("is not a PEM bundle: {e}"))?;
        if certs.is_empty() {
            return Err("holds no PEM certificate".to_owned());
        }
        // Checked now rather than at the first delivery: a client trusting these alone is cheap
        // (no system roots loaded) and refuses what is not a certificate.
        reqwest::Client::builder()
            .tls_certs_only(certs.clone())
            .build()
            .map_err(|e| format!("holds a certificate that cannot be a root: {}", error_chain(&e)))?;
        self.extra_roots = certs;
        Ok(self)
    }

    /// Builds the HTTP clients now (where they should be ready before the first delivery).
    pub fn warm(&self) -> Result<(), String> {
        self.client(false)?;
        if self.policy.allow_http_to_allowed_nets {
            self.client(true)?;
        }
        Ok(())
    }

    fn client(&self, plain_http: bool) -> Result<&reqwest::Client, String> {
        let cell = if plain_http { &self.http } else { &self.https };
        cell.get_or_init(|| {
            let resolver = PolicyResolver { policy: self.policy.clone(), lookup: self.lookup.clone(), plain_http };
            reqwest::Client::builder()
                .user_agent(relay_core::notification::USER_AGENT)
                .redirect(reqwest::redirect::Policy::none())
                // Never through the environment's proxy (`HTTPS_PROXY` and the like): the
                // proxy would resolve the callback's host itself, and the resolver below
                // would judge the proxy's address instead of the callback's.
                .no_proxy()
                .dns_resolver(Arc::new(resolver))
                .connect_timeout(self.timeout)
                .pool_idle_timeout(Duration::from_secs(60))
                .pool_max_idle_per_host(64)
                .tls_certs_merge(self.extra_roots.iter().cloned())
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
    }

    fn blocked(&self, e: CallbackUrlError, started: Instant) -> CallbackResponse {
        CallbackResponse {
            result: AttemptResult::Blocked,
            status_code: None,
            error: Some(format!("blocked: the callback URL {e}")),
            body_excerpt: String::new(),
            duration: started.elapsed(),
        }
    }
}

fn is_blocked(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if err.is::<Blocked>() {
            return true;
        }
        cur = err.source();
    }
    false
}

#[async_trait]
impl Callback for HttpCallback {
    /// The host's addresses, or none when it does not resolve within the deadline.
    async fn resolve(&self, host: &str, port: u16) -> Vec<IpAddr> {
        match tokio::time::timeout(self.resolve_timeout, self.lookup.lookup(host, port)).await {
            Ok(Ok(addrs)) => addrs.into_iter().map(|a| a.ip()).collect(),
            Ok(Err(_)) => vec![],
            Err(_) => {
                tracing::warn!(host, timeout = ?self.resolve_timeout, "the callback host did not resolve in time");
                vec![]
            }
        }
    }

    async fn post(&self, url: &str, headers: &[(&'static str, String)], body: &[u8]) -> CallbackResponse {
        let started = Instant::now();
        let parsed = match self.policy.check_url(url) {
            Ok(u) => u,
            Err(e) => return self.blocked(e, started),
        };
        let plain_http = parsed.scheme() == "http";
        if plain_http {
            // Plain http only to allow-listed networks: judge the name's addresses now, for a
            // clear error (the plain-http client's resolver holds the line at connection).
            if let Some(Host::Domain(name)) = parsed.host() {
                let addrs = self.resolve(name, parsed.port_or_known_default().unwrap_or(80)).await;
                if let Err(e) = self.policy.check_resolved(&parsed, &addrs) {
                    return self.blocked(e, started);
                }
            }
        }
        let client = match self.client(plain_http) {
            Ok(c) => c,
            Err(e) => {
                return CallbackResponse {
                    result: AttemptResult::Failed,
                    status_code: None,
                    error: Some(format!("no HTTP client: {e}")),
                    body_excerpt: String::new(),
                    duration: started.elapsed(),
                };
            }
        };
        let mut req = client.post(parsed).timeout(self.timeout).body(body.to_vec());
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let response = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                // The URL may carry a receiver's token in its query: never put it in a log.
                let e = e.without_url();
                let result = if e.is_timeout() {
                    AttemptResult::TimedOut
                } else if is_blocked(&e) {
                    AttemptResult::Blocked
                } else {
                    AttemptResult::Failed
                };
                let error = match result {
                    AttemptResult::Blocked if plain_http => {
                        "blocked: plain http reaches only allow-listed networks, and the callback host resolves to none"
                            .to_owned()
                    }
                    AttemptResult::Blocked => {
                        "blocked: the callback host resolves only to refused addresses".to_owned()
                    }
                    AttemptResult::TimedOut => format!("timed out after {:?}", self.timeout),
                    _ => error_chain(&e),
                };
                return CallbackResponse {
                    result,
                    status_code: None,
                    error: Some(error),
                    body_excerpt: String::new(),
                    duration: started.elapsed(),
                };
            }
        };
        let status = response.status().as_u16();
        let now_unix =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| retry::parse_retry_after(v, now_unix));
        let (excerpt, body_error) = read_excerpt(response).await;
        let cut = excerpt.len() == RESPONSE_EXCERPT_BYTES || body_error.is_some();
        let timed_out = body_error.as_ref().is_some_and(|e| e.is_timeout());
        let result = if timed_out { AttemptResult::TimedOut } else { AttemptResult::Answered { status, retry_after } };
        CallbackResponse {
            result,
            status_code: Some(status),
            error: body_error.map(|e| format!("reading the response: {}", error_chain(&e.without_url()))),
            body_excerpt: excerpt_text(excerpt, cut),
            duration: started.elapsed(),
        }
    }
}

/// Reads at most [`RESPONSE_EXCERPT_BYTES`] of the body; the rest is not downloaded.
async fn read_excerpt(mut response: reqwest::Response) -> (Vec<u8>, Option<reqwest::Error>) {
    let mut out = Vec::new();
    while out.len() < RESPONSE_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let take = (RESPONSE_EXCERPT_BYTES - out.len()).min(chunk.len());
                out.extend_from_slice(&chunk[..take]);
            }
            Ok(None) => break,
            Err(e) => return (out, Some(e)),
        }
    }
    (out, None)
}

/// The excerpt as text. Where it was cut inside a character (the body goes on, or stopped with
/// an error), that character's first bytes are dropped rather than shown as U+FFFD; anything
/// else that is not UTF-8 is shown with U+FFFD.
fn excerpt_text(mut excerpt: Vec<u8>, cut: bool) -> String {
    match std::str::from_utf8(&excerpt) {
        Err(e) if cut && e.error_len().is_none() => {
            excerpt.truncate(e.valid_up_to());
            String::from_utf8(excerpt).unwrap_or_default()
        }
        Ok(_) => String::from_utf8(excerpt).unwrap_or_default(),
        Err(_) => String::from_utf8_lossy(&excerpt).into_owned(),
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::{HttpCallback, excerpt_text};
    use relay_core::network::NetworkPolicy;
    use std::time::Duration;

    #[test]
    fn warm_builds_the_clients_the_policy_needs_before_the_first_delivery() {
        for plain_http in [false, true] {
            let policy = NetworkPolicy { allow: vec![], allow_http_to_allowed_nets: plain_http };
            let callback = HttpCallback::new(policy, Duration::from_secs(1)).unwrap();
            assert!(callback.https.get().is_none() && callback.http.get().is_none());
            callback.warm().unwrap();
            assert!(matches!(callback.https.get(), Some(Ok(_))));
            assert_eq!(matches!(callback.http.get(), Some(Ok(_))), plain_http);
        }
    }

    #[test]
    fn an_excerpt_cut_inside_a_character_ends_at_the_character_before() {
        let euros = "€".repeat(1500).into_bytes();
        let cut = excerpt_text(euros[..4096].to_vec(), true);
        assert_eq!(cut, "€".repeat(1365));
        let emoji = "a🦀".repeat(1000).into_bytes();
        for len in 4093..=4096 {
            let text = excerpt_text(emoji[..len].to_vec(), true);
            assert!(emoji.starts_with(text.as_bytes()) && len - text.len() < 4, "{len}: {}", text.len());
        }
        assert_eq!(excerpt_text(b"plain".to_vec(), true), "plain");
    }

    #[test]
    fn what_is_not_utf8_for_another_reason_is_shown_with_replacement_characters() {
        // Not cut: the body itself ends inside a character.
        assert_eq!(excerpt_text(vec![b'a', 0xE2, 0x82], false), "a\u{FFFD}");
        // Cut, but an invalid byte comes first.
        assert_eq!(excerpt_text(vec![0xFF, b'a', 0xE2, 0x82], true), "\u{FFFD}a\u{FFFD}");
    }
}
