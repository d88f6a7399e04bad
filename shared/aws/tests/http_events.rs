//! The HTTP functions' own API Gateway event conversion (`relay_aws::lambda::request`), held to
//! `lambda_http`'s: on any event where `lambda_http` builds a request, ours reaches the router with
//! the same method, path segments, query pairs, headers and body. Where `lambda_http` panics (a
//! raw query string with a byte `http::Uri` refuses, aws-lambda-rust-runtime#515), ours still
//! builds the request the client meant. Neither the conversion nor the handler ever panics.

mod harness;

use std::panic::{AssertUnwindSafe, catch_unwind};

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::encodings::Body;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use harness::*;
use proptest::prelude::*;
use relay_aws::lambda::{handle_http, request};
use relay_core::api::PublicBaseUrl;
use serde_json::{Value, json};

const SAMPLE: &str = include_str!("../../../events/instances-apigw-v2.json");

/// An event like the sample, with this method, raw path and query, headers and body.
fn event(method: &str, path: &str, query: &str, headers: &[(&str, &str)], body: Option<&[u8]>, binary: bool) -> Value {
    let mut v: Value = serde_json::from_str(SAMPLE).unwrap();
    v["rawPath"] = json!(path);
    v["rawQueryString"] = json!(query);
    v["requestContext"]["http"]["method"] = json!(method);
    v["requestContext"]["http"]["path"] = json!(path);
    for (k, val) in headers {
        v["headers"][*k] = json!(val);
    }
    match body {
        Some(b) if binary => {
            v["body"] = json!(BASE64.encode(b));
            v["isBase64Encoded"] = json!(true);
        }
        Some(b) => v["body"] = json!(String::from_utf8_lossy(b)),
        None => {}
    }
    v
}

/// What the router reads of a request: the method, the decoded path segments, the decoded
/// query pairs, the headers and the body.
type View = (String, Vec<String>, Vec<(String, String)>, Vec<(String, String)>, Vec<u8>);

fn view(method: &http::Method, uri: &http::Uri, headers: &http::HeaderMap, body: &[u8]) -> View {
    let segments = uri
        .path()
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let query = url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()).into_owned().collect();
    let mut headers: Vec<_> = headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    headers.sort();
    (method.to_string(), segments, query, headers, body.to_vec())
}

fn ours(v: &Value) -> Result<http::Request<Bytes>, String> {
    let event: ApiGatewayV2httpRequest = serde_json::from_value(v.clone()).unwrap();
    request(event)
}

/// `lambda_http`'s request for the same event, or `None` where it panics.
fn theirs(v: &Value) -> Option<View> {
    let text = v.to_string();
    let r = catch_unwind(AssertUnwindSafe(|| lambda_http::request::from_str(&text).unwrap())).ok()?;
    let body = match r.body() {
        lambda_http::Body::Text(t) => t.as_bytes().to_vec(),
        lambda_http::Body::Binary(b) => b.clone(),
        _ => vec![],
    };
    Some(view(r.method(), r.uri(), r.headers(), &body))
}

/// What `url` (under `lambda_http`) rewrites rather than carries: dot segments, `%2E` too
/// (resolved; our conversion keeps them, and no route has one, so they are a 404), `\` (a
/// separator to it) and a space ending the URL (trimmed; API Gateway sends it encoded).
fn carried_as_is(s: &str) -> bool {
    let decoded = percent_encoding::percent_decode_str(s).decode_utf8_lossy();
    decoded != "." && decoded != ".." && !s.contains(['\\', '/', '?', '#']) && !s.ends_with(' ')
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z0-9_-]{1,8}",
        1 => "[ -~]{1,6}".prop_filter("url rewrites it", |s| carried_as_is(s)),
        1 => "[a-z%0-9A-F]{1,6}".prop_filter("url rewrites it", |s| carried_as_is(s)),
        1 => "\\PC{1,4}".prop_filter("url rewrites it", |s| carried_as_is(s)),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        2 => Just(String::new()),
        3 => proptest::collection::vec(("[a-zA-Z]{1,6}", "[a-z0-9%+]{0,6}"), 1..4)
            .prop_map(|p| p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&")),
        2 => "[ -~]{0,16}".prop_map(|s| s.replace('#', "")),
        1 => "\\PC{0,8}".prop_map(|s| s.replace('#', "")),
    ]
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(512)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn the_router_sees_what_lambda_http_would_have_shown_it_and_odd_urls_still_convert(
        method in prop_oneof![Just("GET"), Just("POST"), Just("PATCH"), Just("DELETE")],
        segments in proptest::collection::vec(segment(), 0..4),
        query in query(),
        header in proptest::option::of(("x-[a-z]{1,6}", "[ -~&&[^\\\\]]{0,10}")),
        body in proptest::option::of(proptest::collection::vec(any::<u8>(), 0..64)),
        binary in any::<bool>(),
        cookies in proptest::option::of(proptest::collection::vec("[a-z]{1,5}=[a-zA-Z0-9]{0,6}", 1..3)),
    ) {
        let path = format!("/{}", segments.join("/"));
        let headers: Vec<(&str, &str)> = header.iter().map(|(k, v)| (k.as_str(), v.trim())).collect();
        // A text body is what API Gateway sends for UTF-8; anything else comes base64-encoded.
        let binary = binary || body.as_ref().is_some_and(|b| std::str::from_utf8(b).is_err());
        let mut v = event(method, &path, &query, &headers, body.as_deref(), binary);
        // API Gateway moves the `Cookie` header into a list: both put it back as one header.
        match cookies {
            Some(c) => v["cookies"] = json!(c),
            None => _ = v.as_object_mut().unwrap().remove("cookies"),
        }
        let req = ours(&v).map_err(|e| TestCaseError::fail(format!("{e}: {v}")))?;
        let mine = view(req.method(), req.uri(), req.headers(), req.body());
        match theirs(&v) {
            Some(expected) => prop_assert_eq!(mine, expected, "{}", v),
            None => {
                // lambda_http panicked: ours carries the same text, percent-encoded where needed.
                let (_, segs, pairs, _, body_seen) = mine;
                let want_segs: Vec<String> = path.split('/').filter(|s| !s.is_empty())
                    .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned()).collect();
                prop_assert_eq!(segs, want_segs);
                let want_pairs: Vec<(String, String)> = url::form_urlencoded::parse(query.as_bytes()).into_owned().collect();
                prop_assert_eq!(pairs, want_pairs);
                prop_assert_eq!(body_seen, body.unwrap_or_default());
            }
        }
    }
}

#[test]
fn queries_that_make_lambda_http_panic_convert_to_what_the_client_meant() {
    for (query, key, value) in [
        ("status=\"failed\"", "status", "\"failed\""),
        ("q=a b", "q", "a b"),
        ("x={}|^`<>", "x", "{}|^`<>"),
        ("since=2026-11-01T00:00:00Z&limit=5", "limit", "5"),
    ] {
        let v = event("GET", "/instances/1/events", query, &[], None, false);
        let req = ours(&v).unwrap();
        let pairs: Vec<(String, String)> =
            url::form_urlencoded::parse(req.uri().query().unwrap().as_bytes()).into_owned().collect();
        assert!(pairs.contains(&(key.to_owned(), value.to_owned())), "{query}: {pairs:?}");
        assert_eq!(req.uri().path(), "/instances/1/events");
    }
    // Why the conversion is ours: if this starts to pass, lambda_http may be used again.
    assert!(theirs(&event("GET", "/instances", "q=a b", &[], None, false)).is_none(), "lambda_http still panics here");
}

#[test]
fn a_base64_body_is_decoded_and_a_bad_one_is_a_400_not_a_crash() {
    let bytes = [0u8, 159, 146, 150, b'{'];
    let req = ours(&event("POST", "/events/greenhouse/1", "", &[], Some(&bytes), true)).unwrap();
    assert_eq!(req.body().as_ref(), bytes);
    let mut v = event("POST", "/events/greenhouse/1", "", &[], None, false);
    v["body"] = json!("not base64!");
    v["isBase64Encoded"] = json!(true);
    assert!(ours(&v).unwrap_err().contains("base64"));
}

/// Refused before the router (a body API Gateway encoded badly): still the router's error
/// answer, with the request id, and no store touched.
#[tokio::test]
async fn a_bad_base64_body_gets_the_json_error_answer() {
    let aws = provision().await;
    let mut v = event("POST", "/events/greenhouse/1", "", &[], None, false);
    v["body"] = json!("not base64!");
    v["isBase64Encoded"] = json!(true);
    let payload: ApiGatewayV2httpRequest = serde_json::from_value(v).unwrap();
    let resp =
        handle_http(&aws.api(), lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default())).await;
    assert_eq!(resp.status_code, 400);
    assert_eq!(resp.headers["x-request-id"], "sample-request-id");
    let Some(Body::Text(text)) = &resp.body else { panic!("not a text body") };
    let v: Value = serde_json::from_str(text).unwrap();
    assert!(v["message"].as_str().unwrap().contains("base64"), "{v}");
    assert_eq!(v["requestId"], "sample-request-id");
}

#[test]
fn the_stage_is_not_part_of_the_route_but_is_part_of_the_public_url() {
    let mut v = event("GET", "/prod/instances/1", "", &[], None, false);
    v["requestContext"]["stage"] = json!("prod");
    let req = ours(&v).unwrap();
    assert_eq!(req.uri().path(), "/instances/1");
    let base = req.extensions().get::<PublicBaseUrl>().unwrap().0.clone();
    assert_eq!(base, "https://abc123.execute-api.us-east-1.amazonaws.com/prod");
    // `$default`: the path as sent.
    let req = ours(&event("GET", "/instances/1", "", &[], None, false)).unwrap();
    assert_eq!(req.uri().path(), "/instances/1");
    assert_eq!(
        req.extensions().get::<PublicBaseUrl>().unwrap().0,
        "https://abc123.execute-api.us-east-1.amazonaws.com"
    );
    // A path that only starts with the stage's name keeps it.
    let mut v = event("GET", "/production/x", "", &[], None, false);
    v["requestContext"]["stage"] = json!("prod");
    assert_eq!(ours(&v).unwrap().uri().path(), "/production/x");
}

/// Through the handler, on DynamoDB and SQS in moto: an odd URL is answered by the router (a
/// listing, a 400 naming the parameter), as JSON with the request id, instead of failing the
/// invocation.
#[tokio::test]
async fn odd_urls_are_answered_as_json_by_the_router() {
    let aws = provision().await;
    let api = aws.api();
    let (auth_name, auth) = admin();
    let headers = [(auth_name, auth.as_str())];
    let call = |query: &str| {
        let v = event("GET", "/instances", query, &headers, None, false);
        let payload: ApiGatewayV2httpRequest = serde_json::from_value(v).unwrap();
        let mut context = lambda_runtime::Context::default();
        context.request_id = "lambda-request-id".into();
        handle_http(&api, lambda_runtime::LambdaEvent::new(payload, context))
    };
    for (query, status) in [("q=a b", 200), ("pageSize=\"2\"", 400), ("pageSize=2&x={}", 200)] {
        let resp = call(query).await;
        assert_eq!(resp.status_code, status, "{query}: {:?}", resp.body);
        assert_eq!(resp.headers["content-type"], "application/json");
        assert_eq!(resp.headers["cache-control"], "no-store");
        assert_eq!(resp.headers["x-content-type-options"], "nosniff");
        assert_eq!(resp.headers["x-request-id"], "sample-request-id", "API Gateway's request id");
        let Some(Body::Text(text)) = &resp.body else { panic!("{query}: not a text body") };
        let v: Value = serde_json::from_str(text).unwrap();
        if status == 400 {
            assert!(v["message"].as_str().unwrap().contains("pageSize"), "{v}");
            assert_eq!(v["requestId"], "sample-request-id");
        } else {
            assert!(v.is_array(), "{v}");
        }
    }
}

/// Through the handler, on DynamoDB and SQS in moto (the template routes every method of a path
/// to the function): a HEAD gets the GET's status and headers and no body, and a method the path
/// does not serve gets 405 with `Allow`, as in the local mode.
#[tokio::test]
async fn a_head_is_the_get_without_a_body_and_other_methods_get_405_with_allow() {
    let aws = provision().await;
    let api = aws.api();
    let (auth_name, auth) = admin();
    let call = |method: &str, path: &str| {
        let v = event(method, path, "", &[(auth_name, auth.as_str())], None, false);
        let payload: ApiGatewayV2httpRequest = serde_json::from_value(v).unwrap();
        handle_http(&api, lambda_runtime::LambdaEvent::new(payload, lambda_runtime::Context::default()))
    };
    for path in ["/instances", "/instances/424242"] {
        let (head, get) = (call("HEAD", path).await, call("GET", path).await);
        assert_eq!(head.status_code, get.status_code, "{path}");
        assert_eq!(head.body, None, "{path}: a body in the answer to a HEAD");
        let Some(Body::Text(text)) = &get.body else { panic!("{path}: not a text body") };
        if get.status_code == 200 {
            assert_eq!(head.headers["content-length"], text.len().to_string().as_str(), "{path}");
        }
        assert_eq!(head.headers["content-type"], get.headers["content-type"], "{path}");
    }
    for (method, path, allow) in [
        ("DELETE", "/instances", "GET, HEAD, POST"),
        ("GET", "/events/greenhouse/1", "POST"),
        ("GET", "/instances/1/token", "POST"),
        ("GET", "/instances/1/events/test", "POST"),
        ("OPTIONS", "/instances/1/events/x", "GET, HEAD"),
    ] {
        let resp = call(method, path).await;
        assert_eq!(resp.status_code, 405, "{method} {path}");
        assert_eq!(resp.headers["allow"], allow, "{method} {path}");
    }
}
