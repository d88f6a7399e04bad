//! The one HTTP router every runtime serves (`http::Request` in, `http::Response` out), so
//! routes, status codes and error bodies cannot drift between Lambda and the local server.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::greenhouse::MAX_BODY_BYTES;
use crate::ingest::{self, IngestError, IngestOutcome};
use crate::instance::{ConfigError, token_hash};
use crate::manage::{
    INSTANCES_PAGE_MAX, InstanceQuery, LIST_BYTES_MAX, Manage, ManageError, event_json, instance_json, instance_query,
    page_cursor,
};
use crate::network::NetworkPolicy;
use crate::ports::{Callback, Clock, Events, Instances};

/// Deployment configuration the router needs. Debug never prints the secrets.
#[derive(Clone)]
pub struct ApiConfig {
    pub admin_user_secret: String,
    pub admin_org_secret: String,
    /// What `webhookUrl` starts with; when absent it is derived from the request's Host.
    pub public_base_url: Option<String>,
    pub policy: NetworkPolicy,
}

impl std::fmt::Debug for ApiConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiConfig")
            .field("admin_user_secret", &"********")
            .field("admin_org_secret", &"********")
            .field("public_base_url", &self.public_base_url)
            .field("policy", &self.policy)
            .finish()
    }
}

/// A request extension: the public base URL a runtime derived for this request (API Gateway's
/// domain and stage). `ApiConfig::public_base_url` still wins when set.
#[derive(Debug, Clone)]
pub struct PublicBaseUrl(pub String);

/// Checks a configured public base URL (`PUBLIC_BASE_URL`): `webhookUrl` is it followed by
/// `/events/greenhouse/{id}`, so it must be an absolute http(s) URL with a host and nothing
/// after its path. Answered without a trailing slash. The errors never repeat the text (it
/// could hold credentials).
pub fn public_base_url(text: &str) -> Result<String, String> {
    let text = text.trim();
    let url = url::Url::parse(text).map_err(|e| format!("is not an absolute URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err("must be an http or https URL with a host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or a fragment".into());
    }
    Ok(text.trim_end_matches('/').to_owned())
}

#[derive(Clone)]
pub struct Api {
    pub instances: Arc<dyn Instances>,
    pub events: Arc<dyn Events>,
    pub callback: Arc<dyn Callback>,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ApiConfig>,
}

/// Every error the API answers with, mapped to a status and the JSON body in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// A method the path does not serve; the answer's `Allow` lists those it does.
    #[error("method {} is not allowed here; this path serves {}", .0, .1.join(", "))]
    MethodNotAllowed(Method, &'static [&'static str]),
    #[error("the body is larger than {MAX_BODY_BYTES} bytes")]
    TooLarge,
    /// A delivery whose notifications would be too many or too big (a fan-out over a big body).
    #[error("{0}")]
    TooMuch(String),
    /// The local server's read timeout (API Gateway buffers whole requests before the Lambda).
    #[error("the body did not arrive within {} s of the headers", .0.as_secs_f64())]
    BodyTimeout(std::time::Duration),
    #[error("the service cannot store this right now, retry later")]
    Unavailable,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(..) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge | ApiError::TooMuch(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn into_response(self, request_id: &str) -> Response<Bytes> {
        if let ApiError::Unavailable = self {
            tracing::error!(request_id, "answered 503: storage unavailable");
        }
        let mut r = json_response(self.status(), &json!({"message": self.to_string(), "requestId": request_id}));
        if let ApiError::MethodNotAllowed(_, served) = self
            && let Ok(v) = header::HeaderValue::from_str(&served.join(", "))
        {
            r.headers_mut().insert(header::ALLOW, v);
        }
        finish(r, request_id)
    }
}

/// Every answer names its request in `x-request-id`, as error bodies do in `requestId`.
/// What every answer carries: its request id, and (as OWASP's REST security guidance asks of
/// APIs) no caching, since answers hold instance settings, notifications and, once, an instance's
/// token and secret, and no content sniffing.
fn finish(mut r: Response<Bytes>, request_id: &str) -> Response<Bytes> {
    let headers = r.headers_mut();
    if let Ok(v) = header::HeaderValue::from_str(request_id) {
        headers.insert("x-request-id", v);
    }
    headers.insert(header::CACHE_CONTROL, header::HeaderValue::from_static("no-store"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    r
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::TooLarge => ApiError::TooLarge,
            IngestError::UnknownInstance => ApiError::NotFound(e.to_string()),
            IngestError::Signature(e) => ApiError::Unauthorized(e.to_string()),
            IngestError::Malformed(e) => ApiError::BadRequest(e.to_string()),
            IngestError::TooMuch(e) => ApiError::TooMuch(e.to_string()),
            IngestError::Unavailable(e) => {
                tracing::error!(error = %e, "ingest storage failure");
                ApiError::Unavailable
            }
        }
    }
}

impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        match e {
            ManageError::Invalid(ConfigError { field, message }) => ApiError::BadRequest(format!("{field}: {message}")),
            ManageError::BadQuery(m) => ApiError::BadRequest(m),
            ManageError::NotFound(m) => ApiError::NotFound(m),
            ManageError::Conflict(m) => ApiError::Conflict(m),
            ManageError::Unavailable(e) => {
                tracing::error!(error = %e, "management storage failure");
                ApiError::Unavailable
            }
        }
    }
}

/// The JSON array of a page, cut at `LIST_BYTES_MAX`, and when others follow a
/// `Link: <{base}/instances/{id}/events?...&before=<cursor>>; rel="next"` (the request's other
/// parameters kept; `base` as in `webhookUrl`, so a path in the public base URL is kept too).
fn events_page(base: &str, id: i64, query: Option<&str>, page: &crate::manage::EventPage) -> Response<Bytes> {
    let mut array = BoundedArray::new(LIST_BYTES_MAX);
    let mut last = None;
    for (i, e) in page.events.iter().enumerate() {
        if !array.push(&event_json(e)) {
            break;
        }
        last = Some(i);
    }
    let cut = last.is_some_and(|i| i + 1 < page.events.len());
    let mut r = Response::new(Bytes::from(array.finish()));
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    if let Some(i) = last.filter(|_| cut || page.more) {
        let mut params: Vec<&str> =
            query.unwrap_or("").split('&').filter(|p| !p.is_empty() && !p.starts_with("before=")).collect();
        let before = format!("before={}", page_cursor(&page.events[i]));
        params.push(&before);
        let link = format!("<{base}/instances/{id}/events?{}>; rel=\"next\"", params.join("&"));
        if let Ok(v) = header::HeaderValue::from_str(&link) {
            r.headers_mut().insert(header::LINK, v);
        }
    }
    r
}

/// A JSON array of serialised items that stays within `max` bytes once closed: an item that
/// would take it past is refused, except the first, so a page always carries one.
struct BoundedArray {
    body: Vec<u8>,
    max: usize,
    items: usize,
}

impl BoundedArray {
    fn new(max: usize) -> Self {
        BoundedArray { body: vec![b'['], max, items: 0 }
    }

    /// Adds `item` (with its comma) unless the closed array would pass `max`; says whether it did.
    fn push(&mut self, item: &[u8]) -> bool {
        if self.items > 0 {
            // `[` and the items so far, then `,`, this item and `]`.
            if self.body.len() + 1 + item.len() + 1 > self.max {
                return false;
            }
            self.body.push(b',');
        }
        self.body.extend_from_slice(item);
        self.items += 1;
        true
    }

    fn finish(mut self) -> Vec<u8> {
        self.body.push(b']');
        self.body
    }
}

pub fn json_response(status: StatusCode, value: &Value) -> Response<Bytes> {
    json_bytes_response(status, serde_json::to_vec(value).unwrap_or_default())
}

/// The answer to a HEAD: the GET's status and headers, the length of the content the GET would
/// send (RFC 9110, 9.3.2 and 8.6), and no content.
fn without_content(mut r: Response<Bytes>) -> Response<Bytes> {
    let length = r.body().len();
    r.headers_mut().insert(header::CONTENT_LENGTH, header::HeaderValue::from(length));
    *r.body_mut() = Bytes::new();
    r
}

fn json_bytes_response(status: StatusCode, body: Vec<u8>) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static("application/json"));
    r
}

impl Api {
    /// Routes one request. `request_id` goes into every error body and log line.
    pub async fn handle(&self, req: Request<Bytes>, request_id: &str) -> Response<Bytes> {
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let response = match self.route(req, request_id).await {
            Ok(r) => finish(r, request_id),
            Err(e) => {
                tracing::info!(request_id, %method, path, status = e.status().as_u16(), reason = %e, "request refused");
                e.into_response(request_id)
            }
        };
        if method == Method::HEAD { without_content(response) } else { response }
    }

    fn manage(&self) -> Manage<'_> {
        Manage {
            instances: self.instances.as_ref(),
            events: self.events.as_ref(),
            callback: self.callback.as_ref(),
            clock: self.clock.as_ref(),
            policy: &self.config.policy,
        }
    }

    async fn route(&self, req: Request<Bytes>, request_id: &str) -> Result<Response<Bytes>, ApiError> {
        let segments: Vec<String> = req.uri().path().split('/').filter(|s| !s.is_empty()).map(percent_decode).collect();
        let segs: Vec<&str> = segments.iter().map(String::as_str).collect();
        let method = req.method().clone();
        // Only the management routes need these; the webhook hot path skips them.
        let query = || parse_query(req.uri().query());
        let base = || match (&self.config.public_base_url, req.extensions().get::<PublicBaseUrl>()) {
            (None, Some(PublicBaseUrl(b))) => b.trim_end_matches('/').to_owned(),
            _ => self.public_base_url(req.headers()),
        };
        let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
        let no_route = || ApiError::NotFound(format!("no route for {method} {}", req.uri().path()));
        let served = served_methods(&segs).ok_or_else(no_route)?;
        if !served.contains(&method.as_str()) {
            return Err(ApiError::MethodNotAllowed(method.clone(), served));
        }
        // HEAD is served wherever GET is, as GET: `handle` keeps the answer's status and headers
        // and drops its content.
        let method = if method == Method::HEAD { Method::GET } else { method.clone() };
        match (segs.as_slice(), &method) {
            (["events", "greenhouse", id], &Method::POST) => self.ingest(parse_id(id)?, &req).await,
            (["health"], &Method::GET) => ok(json!({"status": "ok"})),
            (["instances"], &Method::POST) => {
                self.authorize(req.headers(), None).await?;
                let (instance, token, secret) = self.manage().create(req.body()).await?;
                ok(instance_json(&instance, &base(), Some(&token), secret.as_deref()))
            }
            (["instances"], &Method::GET) => {
                self.authorize(req.headers(), None).await?;
                let q = instance_query(&query())?;
                self.instances_page(&base(), &q).await
            }
            (["instances", id], &Method::GET) => {
                let id = parse_id(id)?;
                self.authorize(req.headers(), Some(id)).await?;
                ok(instance_json(&self.manage().get(id).await?, &base(), None, None))
            }
            (["instances", id], &Method::PATCH | &Method::PUT) => {
                let id = parse_id(id)?;
                self.authorize(req.headers(), None).await?;
                ok(instance_json(&self.manage().patch(id, req.body()).await?, &base(), None, None))
            }
            (["instances", id], &Method::DELETE) => {
                let id = parse_id(id)?;
                self.authorize(req.headers(), None).await?;
                self.manage().delete(id).await?;
                ok(json!({"id": id, "deleted": true}))
            }
            (["instances", id, "token"], &Method::POST) => {
                let id = parse_id(id)?;
                self.authorize(req.headers(), None).await?;
                let (instance, token) = self.manage().new_token(id).await?;
                ok(instance_json(&instance, &base(), Some(&token), None))
            }
            (["instances", id, "events"], &Method::GET) => {
                let id = parse_id(id)?;
                self.authorize(req.headers(), Some(id)).await?;
                let page = self.manage().list_events(id, &query()).await?;
                Ok(events_page(&base(), id, req.uri().query(), &page))
            }
            (["instances", id, "events", "redeliver"], &Method::POST) => {
                let id = parse_id(id)?;
                self.authorize(req.headers(), Some(id)).await?;
                let done = self.manage().redeliver_many(id, &query()).await?;
                ok(json!({"redelivered": done.event_ids.len(), "eventIds": done.event_ids, "more": done.more}))
            }
            (["instances", id, "events", "test"], &Method::POST) => {
                let id = parse_id(id)?;
                self.authorize(req.headers(), Some(id)).await?;
                let event_id = self.manage().send_test(id, request_id).await?;
                ok(json!({"eventId": event_id, "status": "pending"}))
            }
            (["instances", id, "events", event_id], &Method::GET) => {
                let id = parse_id(id)?;
                self.authorize(req.headers(), Some(id)).await?;
                Ok(json_bytes_response(StatusCode::OK, event_json(&self.manage().get_event(id, event_id).await?)))
            }
            (["instances", id, "events", event_id, "redeliver"], &Method::POST) => {
                let id = parse_id(id)?;
                self.authorize(req.headers(), Some(id)).await?;
                self.manage().redeliver_one(id, event_id).await?;
                ok(json!({"eventId": event_id, "status": "pending"}))
            }
            _ => Err(no_route()),
        }
    }

    async fn ingest(&self, id: i64, req: &Request<Bytes>) -> Result<Response<Bytes>, ApiError> {
        let headers = req.headers();
        let signature = headers.get("signature").map(|v| v.as_bytes());
        let gh_event_id = headers.get("greenhouse-event-id").and_then(|v| v.to_str().ok());
        let outcome = ingest::accept_webhook(
            self.instances.as_ref(),
            self.events.as_ref(),
            self.clock.as_ref(),
            id,
            signature,
            gh_event_id,
            req.body(),
        )
        .await?;
        let body = match outcome {
            IngestOutcome::Queued { event_id } => json!({"eventId": event_id}),
            IngestOutcome::Duplicate { event_id } => json!({"eventId": event_id, "duplicate": true}),
            IngestOutcome::Ping => json!({"ping": true}),
        };
        Ok(json_response(StatusCode::OK, &body))
    }

    fn public_base_url(&self, headers: &HeaderMap) -> String {
        if let Some(base) = &self.config.public_base_url {
            return base.trim_end_matches('/').to_owned();
        }
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("localhost");
        let proto = headers.get("x-forwarded-proto").and_then(|h| h.to_str().ok()).unwrap_or("http");
        format!("{proto}://{host}")
    }

    /// Admin credentials, or (where `scope` names an instance) that instance's token.
    async fn authorize(&self, headers: &HeaderMap, scope: Option<i64>) -> Result<(), ApiError> {
        let denied = || ApiError::Unauthorized("missing or wrong Authorization header".into());
        let value = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).ok_or_else(denied)?;
        if let Some(token) = value.trim().strip_prefix("Element ") {
            let Some(id) = scope else { return Err(denied()) };
            let instance = self.instances.get(id).await.map_err(|e| {
                tracing::error!(error = %e, "instance lookup failed during authorization");
                ApiError::Unavailable
            })?;
            let hash = token_hash(token.trim());
            return match instance {
                Some(i) if same_secret(&hash, &i.token_hash) => Ok(()),
                _ => Err(denied()),
            };
        }
        let (mut user, mut org) = (None, None);
        for part in value.split(',') {
            let part = part.trim();
            if let Some(u) = part.strip_prefix("User ") {
                user = Some(u.trim());
            } else if let Some(o) = part.strip_prefix("Organization ") {
                org = Some(o.trim());
            }
        }
        match (user, org) {
            (Some(u), Some(o))
                if same_secret(u, &self.config.admin_user_secret) & same_secret(o, &self.config.admin_org_secret) =>
            {
                Ok(())
            }
            _ => Err(denied()),
        }
    }
}

/// Compares digests, so the time taken says nothing about the secret.
fn same_secret(given: &str, expected: &str) -> bool {
    !expected.is_empty() && Sha256::digest(given.as_bytes()) == Sha256::digest(expected.as_bytes())
}

impl Api {
    /// The JSON array of live instances by id: one page of `pageSize`, or without it all of them
    /// (read `INSTANCES_PAGE_MAX` at a time), cut before `LIST_BYTES_MAX`. When others follow:
    /// `Elements-Next-Page-Token: <token>` (Cloud Elements' header; pass it as `nextPage`) and
    /// `Link: <{base}/instances?...&nextPage=<token>>; rel="next"`.
    async fn instances_page(&self, base: &str, q: &InstanceQuery) -> Result<Response<Bytes>, ApiError> {
        let mut array = BoundedArray::new(LIST_BYTES_MAX);
        let mut after = q.after;
        let more = 'pages: loop {
            let page = self.manage().list(after, q.page_size.unwrap_or(INSTANCES_PAGE_MAX)).await?;
            for instance in &page.instances {
                let item = serde_json::to_vec(&instance_json(instance, base, None, None)).unwrap_or_default();
                if !array.push(&item) {
                    break 'pages true;
                }
                after = Some(instance.id);
            }
            if q.page_size.is_some() || !page.more {
                break page.more;
            }
        };
        let mut r = json_bytes_response(StatusCode::OK, array.finish());
        if let (true, Some(last)) = (more, after) {
            let size = q.page_size.map(|n| format!("pageSize={n}&")).unwrap_or_default();
            let link = format!("<{base}/instances?{size}nextPage={last}>; rel=\"next\"");
            let headers = r.headers_mut();
            headers.insert("elements-next-page-token", header::HeaderValue::from(last));
            if let Ok(v) = header::HeaderValue::from_str(&link) {
                headers.insert(header::LINK, v);
            }
        }
        Ok(r)
    }
}

/// The methods a path serves, by its shape (`None`: no such path). Any other method gets 405,
/// with these in `Allow` (RFC 9110 asks for it), before anything else is looked at. HEAD goes
/// wherever GET does (RFC 9110 asks servers for both).
fn served_methods(segs: &[&str]) -> Option<&'static [&'static str]> {
    route_shape(segs).map(|(_, methods)| methods)
}

/// The route a path takes, as the router names it (`/instances/{id}/events/{eventId}`), or
/// `other` when none does: a label for metrics that does not grow with ids.
pub fn route_of(path: &str) -> &'static str {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    route_shape(&segs).map_or("other", |(route, _)| route)
}

/// Each path shape: its route and the methods it serves.
/// `/instances/{id}/events/redeliver` is the bulk redelivery's (POST), and
/// `/instances/{id}/events/test` the test notification's (POST), never a notification's (event
/// ids are UUIDs).
fn route_shape(segs: &[&str]) -> Option<(&'static str, &'static [&'static str])> {
    Some(match segs {
        ["health"] => ("/health", &["GET", "HEAD"]),
        ["instances"] => ("/instances", &["GET", "HEAD", "POST"]),
        ["instances", _] => ("/instances/{id}", &["GET", "HEAD", "PATCH", "PUT", "DELETE"]),
        ["instances", _, "token"] => ("/instances/{id}/token", &["POST"]),
        ["instances", _, "events"] => ("/instances/{id}/events", &["GET", "HEAD"]),
        ["instances", _, "events", "redeliver"] => ("/instances/{id}/events/redeliver", &["POST"]),
        ["instances", _, "events", "test"] => ("/instances/{id}/events/test", &["POST"]),
        ["instances", _, "events", _] => ("/instances/{id}/events/{eventId}", &["GET", "HEAD"]),
        ["instances", _, "events", _, "redeliver"] => ("/instances/{id}/events/{eventId}/redeliver", &["POST"]),
        ["events", "greenhouse", _] => ("/events/greenhouse/{id}", &["POST"]),
        _ => return None,
    })
}

fn parse_id(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>().ok().filter(|id| *id > 0).ok_or_else(|| ApiError::NotFound(format!("`{s}` is not an instance id")))
}

fn parse_query(q: Option<&str>) -> Map<String, Value> {
    url::form_urlencoded::parse(q.unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::{ApiConfig, BoundedArray, public_base_url};
    use crate::network::NetworkPolicy;

    #[test]
    fn a_bounded_array_takes_items_while_the_closed_array_fits_and_always_its_first() {
        let empty = BoundedArray::new(10);
        assert_eq!(empty.finish(), b"[]");

        // `[1234,567]` is exactly 10 bytes: it fits; `[1234,5678]` (11) does not, nor `[1234,567,8]`.
        let mut a = BoundedArray::new(10);
        assert!(a.push(b"1234"));
        assert!(!a.push(b"5678"));
        assert!(a.push(b"567"));
        assert!(!a.push(b"8"));
        assert_eq!(a.finish(), b"[1234,567]");

        // An item bigger than the bound alone still goes in first: a page always carries one.
        let mut big = BoundedArray::new(4);
        assert!(big.push(b"\"0123456789\""));
        assert!(!big.push(b"1"));
        assert_eq!(big.finish(), br#"["0123456789"]"#);
    }

    #[test]
    fn the_config_debugs_everything_but_the_admin_secrets() {
        let config = ApiConfig {
            admin_user_secret: "user-secret-1".into(),
            admin_org_secret: "org-secret-2".into(),
            public_base_url: Some("https://relay.example.com".into()),
            policy: NetworkPolicy::default(),
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("user-secret-1") && !shown.contains("org-secret-2"), "{shown}");
        assert!(shown.contains(r#"admin_user_secret: "********""#), "{shown}");
        assert!(shown.contains(r#"admin_org_secret: "********""#), "{shown}");
        assert!(shown.contains("https://relay.example.com") && shown.contains("NetworkPolicy"), "{shown}");
    }

    #[test]
    fn a_public_base_url_is_an_http_url_with_a_host_and_nothing_after_its_path() {
        for (given, kept) in [
            ("https://relay.example.com", "https://relay.example.com"),
            ("https://relay.example.com/", "https://relay.example.com"),
            (" https://abc.ngrok.app/relay/ ", "https://abc.ngrok.app/relay"),
            ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
            ("https://[::1]:8443/x", "https://[::1]:8443/x"),
        ] {
            assert_eq!(public_base_url(given).as_deref(), Ok(kept), "{given}");
        }
        for bad in [
            "",
            "relay.example.com",
            "/relay",
            "ftp://relay.example.com",
            "mailto:ops@example.com",
            "file:///tmp",
            "https://user:secret@relay.example.com",
            "https://secret@relay.example.com",
            "https://:secret@relay.example.com",
            "https://relay.example.com/?a=1",
            "https://relay.example.com/#x",
        ] {
            let e = public_base_url(bad).unwrap_err();
            assert!(!e.contains("secret"), "{bad}: {e}");
        }
    }
}
