//! Negotiation through the layer, in-process: every source, precedence, conflicts, path
//! stripping, compatible resolution, retirement, endpoint ranges, every header, every error
//! body; and a property test that no input panics or slips past as an unsupported version.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use std::time::{Duration, SystemTime};

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::{HeaderMap, HeaderValue, StatusCode, Uri},
    routing::get,
};
use cutover_versioning::{Conflict, Negotiated, Resolution, Source, VersionLayer, VersionRange, VersionSet};
use http_body_util::BodyExt;
use proptest::{prelude::*, test_runner::FileFailurePersistence};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

const DEPRECATED_ON: u64 = 1_735_689_600; // 2025-01-01T00:00:00Z, as the `Deprecation` header gives it

fn versions() -> cutover_versioning::VersionSetBuilder {
    VersionSet::builder()
        .supported(["1.0", "1.1", "1.2", "1.3"])
        .default_version("1.3")
        .deprecated_on("1.0", "2025-01-01")
        .sunset_on("1.0", "2100-01-01T00:00:00Z")
        .successor_link("1.0", "https://api.example.com/docs/migrate-to-1.3")
}

/// Every route echoes what it saw: the path after the layer, and the negotiated version.
fn api() -> Router {
    let echo = |negotiated: Negotiated, request: Request| async move {
        axum::Json(json!({
            "path": request.uri().path(),
            "query": request.uri().query(),
            "version": negotiated.version().to_string(),
            "requested": negotiated.requested().map(ToString::to_string),
            "source": negotiated.source().map(Source::as_str),
        }))
    };
    Router::new()
        .route("/api/users", get(echo))
        .route("/api/users/{id}", get(echo))
        .route("/api/vendors", get(echo))
        .route("/api", get(echo))
        .route(
            "/api/users/search",
            get(echo).route_layer(VersionRange::since("1.2").unwrap()),
        )
        .route(
            "/api/legacy",
            get(echo).route_layer(VersionRange::until("1.1").unwrap()),
        )
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    json: Value,
}

async fn call(set: VersionSet, request: Request) -> Answer {
    let service = VersionLayer::new(set).layer(api());
    let response = service.oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        json: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    }
}

fn get_req(uri: &str, headers: &[(&str, &str)]) -> Request {
    let mut builder = Request::get(uri);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

async fn ask(uri: &str, headers: &[(&str, &str)]) -> Answer {
    call(versions().build().unwrap(), get_req(uri, headers)).await
}

#[tokio::test]
async fn each_source_is_read_and_the_path_segment_is_stripped_before_routing() {
    let by_header = ask("/api/users/7", &[("accept-version", "1.1")]).await;
    assert_eq!(by_header.status, StatusCode::OK);
    assert_eq!(by_header.json["version"], "1.1");
    assert_eq!(by_header.json["source"], "header");
    assert_eq!(by_header.headers["api-version"], "1.1");

    let by_path = ask("/api/v1.2/users/7?page=2", &[]).await;
    assert_eq!(
        by_path.status,
        StatusCode::OK,
        "the route is declared once, as /api/users/{{id}}"
    );
    assert_eq!(by_path.json["path"], "/api/users/7");
    assert_eq!(by_path.json["query"], "page=2");
    assert_eq!(by_path.json["version"], "1.2");
    assert_eq!(by_path.json["source"], "path");

    let by_query = ask("/api/users?version=v1.1", &[]).await;
    assert_eq!(by_query.json["version"], "1.1");
    assert_eq!(by_query.json["source"], "query");

    let default = ask("/api/users", &[]).await;
    assert_eq!(default.json["version"], "1.3");
    assert_eq!(default.json["source"], Value::Null);

    // The version segment alone, and a route that merely starts with `v`.
    assert_eq!(ask("/api/v1.1", &[]).await.json["path"], "/api");
    let vendors = ask("/api/vendors", &[]).await;
    assert_eq!(
        (vendors.status, vendors.json["path"].clone()),
        (StatusCode::OK, json!("/api/vendors"))
    );
}

#[tokio::test]
async fn the_media_type_parameter_is_a_source_when_enabled() {
    let set = versions()
        .sources([Source::Header, Source::Path, Source::Query, Source::MediaType])
        .build()
        .unwrap();
    let answer = call(
        set,
        get_req("/api/users", &[("accept", "application/json; version=1.2")]),
    )
    .await;
    assert_eq!(answer.json["version"], "1.2");
    assert_eq!(answer.json["source"], "media type");
    assert_eq!(answer.headers["vary"], "accept-version, accept");
    // Off by default: ignored.
    let ignored = ask("/api/users", &[("accept", "application/json; version=1.2")]).await;
    assert_eq!(ignored.json["version"], "1.3");
}

#[tokio::test]
async fn precedence_is_header_then_path_then_query_and_conflicts_can_be_rejected() {
    let answer = ask("/api/v1.1/users?version=1.0", &[("accept-version", "1.2")]).await;
    assert_eq!(answer.json["version"], "1.2");
    assert_eq!(answer.json["source"], "header");
    let answer = ask("/api/v1.1/users?version=1.0", &[]).await;
    assert_eq!(answer.json["source"], "path");

    // The same version named twice is not a conflict.
    let set = versions().on_conflict(Conflict::Reject).build().unwrap();
    let same = call(set.clone(), get_req("/api/v1.2/users", &[("accept-version", "1.2.0")])).await;
    assert_eq!(same.status, StatusCode::OK);

    let rejected = call(
        set,
        get_req("/api/v1.1/users?version=1.0", &[("accept-version", "1.2")]),
    )
    .await;
    assert_eq!(rejected.status, StatusCode::BAD_REQUEST);
    assert_eq!(rejected.headers["content-type"], "application/problem+json");
    assert_eq!(rejected.json["type"], "urn:cutover:problem:ambiguous-api-version");
    assert_eq!(
        rejected.json["candidates"],
        json!([
            {"source": "header", "version": "1.2"},
            {"source": "path", "version": "1.1"},
            {"source": "query", "version": "1.0"},
        ])
    );
}

#[tokio::test]
async fn malformed_and_unsupported_versions_are_400_problems_never_a_fallback() {
    for (uri, headers, kind, requested) in [
        ("/api/users", vec![("accept-version", "latest")], "malformed", "latest"),
        ("/api/v1.x/users", vec![], "malformed", "v1.x"),
        ("/api/users?version=1..2", vec![], "malformed", "1..2"),
        ("/api/users", vec![("accept-version", "1.4")], "unsupported", "1.4"),
        ("/api/v7/users", vec![], "unsupported", "7.0"),
        ("/api/users?version=9.9", vec![], "unsupported", "9.9"),
    ] {
        let answer = ask(uri, &headers).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{uri} {headers:?}");
        assert_eq!(answer.headers["content-type"], "application/problem+json");
        assert_eq!(
            answer.json["type"],
            format!("urn:cutover:problem:{kind}-api-version"),
            "{uri}"
        );
        assert_eq!(answer.json["status"], 400);
        assert_eq!(answer.json["requested"], requested, "{uri}");
        assert_eq!(answer.json["supported"], json!(["1.0", "1.1", "1.2", "1.3"]));
        assert!(
            answer.json["detail"].as_str().unwrap().contains(requested),
            "{}",
            answer.json
        );
        assert_eq!(
            answer.headers["api-supported-versions"], "1.0, 1.1, 1.2, 1.3",
            "errors carry the list too"
        );
    }
}

#[tokio::test]
async fn compatible_resolution_is_opt_in_and_stays_within_the_major_version() {
    let set = versions().resolution(Resolution::Compatible).build().unwrap();
    let answer = call(set.clone(), get_req("/api/users", &[("accept-version", "1.4")])).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json["version"], "1.3");
    assert_eq!(answer.json["requested"], "1.4");
    assert_eq!(answer.headers["api-version"], "1.3");
    let answer = call(set, get_req("/api/users", &[("accept-version", "2.0")])).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn every_response_carries_the_version_headers_and_deprecated_ones_say_so() {
    let current = ask("/api/users", &[("accept-version", "1.2")]).await;
    assert_eq!(current.headers["api-version"], "1.2");
    assert_eq!(current.headers["api-supported-versions"], "1.0, 1.1, 1.2, 1.3");
    assert_eq!(current.headers["api-deprecated-versions"], "1.0");
    assert_eq!(current.headers["vary"], "accept-version");
    assert!(current.headers.get("deprecation").is_none());
    assert!(current.headers.get("warning").is_none());

    let old = ask("/api/v1.0/users", &[]).await;
    assert_eq!(old.status, StatusCode::OK);
    assert_eq!(old.headers["deprecation"], format!("@{DEPRECATED_ON}"));
    assert_eq!(old.headers["sunset"], "Fri, 01 Jan 2100 00:00:00 GMT");
    assert_eq!(
        old.headers["link"],
        "<https://api.example.com/docs/migrate-to-1.3>; rel=\"successor-version\""
    );
    assert_eq!(old.headers["warning"], "299 - \"API version 1.0 is deprecated\"");
}

#[tokio::test]
async fn a_version_past_its_sunset_is_retired() {
    let past = SystemTime::now() - Duration::from_secs(86_400);
    let set = VersionSet::builder()
        .supported(["1.0", "1.1"])
        .deprecated("1.0", past - Duration::from_secs(86_400))
        .sunset("1.0", past)
        .build()
        .unwrap();
    let answer = call(set, get_req("/api/v1.0/users", &[])).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json["type"], "urn:cutover:problem:retired-api-version");
    assert!(
        answer.json["detail"]
            .as_str()
            .unwrap()
            .starts_with("API version 1.0 was retired on ")
    );
}

#[tokio::test]
async fn endpoints_declare_their_version_range() {
    assert_eq!(ask("/api/v1.2/users/search", &[]).await.status, StatusCode::OK);
    let early = ask("/api/v1.1/users/search", &[]).await;
    assert_eq!(early.status, StatusCode::BAD_REQUEST);
    assert_eq!(early.json["type"], "urn:cutover:problem:api-version-out-of-range");
    assert_eq!(
        early.json["detail"],
        "this endpoint exists from API version 1.2 on; the request uses 1.1"
    );
    assert_eq!(early.json["supported"], json!(["1.0", "1.1", "1.2", "1.3"]));
    assert_eq!(ask("/api/v1.0/legacy", &[]).await.status, StatusCode::OK);
    let late = ask("/api/legacy", &[]).await;
    assert_eq!(
        late.json["detail"],
        "this endpoint exists up to API version 1.1; the request uses 1.3"
    );
}

#[tokio::test]
async fn applying_the_layer_inside_the_router_is_caught() {
    let misplaced = api().layer(VersionLayer::new(versions().build().unwrap()));
    let response = misplaced.oneshot(get_req("/api/users", &[])).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("must wrap the whole router"));
}

#[tokio::test]
async fn the_extractor_explains_a_missing_layer() {
    let response = api().oneshot(get_req("/api/users", &[])).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
}

#[tokio::test]
async fn oversized_and_overlong_version_requests_are_refused_unread() {
    // A megabyte of versions: refused on its length, before any of it is parsed.
    let huge = vec!["1.0"; 250_000].join(",");
    let answer = call(
        versions().build().unwrap(),
        get_req("/api/users", &[("accept-version", &huge)]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(answer.json["type"], "urn:cutover:problem:api-version-request-too-large");
    assert_eq!(
        answer.json["detail"],
        "the header holds more than 256 bytes; an API version is a few characters, e.g. `1.2`"
    );
    assert!(answer.json["supported"].is_array());

    // Short enough, but too many entries: refused on the count (8 by default).
    let nine = ["1.2"; 9].join(",");
    let answer = call(
        versions().build().unwrap(),
        get_req("/api/users", &[("accept-version", &nine)]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        answer.json["detail"],
        "the request names more than 8 API versions; name one"
    );
    let eight = ["1.2"; 8].join(",");
    let answer = call(
        versions().build().unwrap(),
        get_req("/api/users", &[("accept-version", &eight)]),
    )
    .await;
    assert_eq!(answer.status, StatusCode::OK);

    // Repeated query parameters count too, and each value is bounded.
    let repeated = format!("/api/users?{}", ["version=1.2"; 9].join("&"));
    let answer = call(versions().build().unwrap(), get_req(&repeated, &[])).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let long = format!("/api/users?version={}", "1".repeat(300));
    let answer = call(versions().build().unwrap(), get_req(&long, &[])).await;
    assert_eq!(
        answer.json["detail"],
        "the query holds more than 256 bytes; an API version is a few characters, e.g. `1.2`"
    );

    // Both limits can be changed.
    let relaxed = versions()
        .max_source_length(1024)
        .max_versions_per_request(16)
        .build()
        .unwrap();
    let answer = call(relaxed, get_req("/api/users", &[("accept-version", &nine)])).await;
    assert_eq!(answer.status, StatusCode::OK);
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 300,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// Whatever arrives in the header, the path and the query, the answer is a supported
    /// version or a 400 problem, and nothing panics.
    #[test]
    fn arbitrary_input_yields_a_supported_version_or_a_400(
        header in proptest::option::of("[ -~]{0,12}|v?[0-9]{1,3}(\\.[0-9]{1,3}){0,3}"),
        segment in "[ -~&&[^/?#%]]{0,10}|v[0-9]{1,2}(\\.[0-9x]{1,2}){0,2}",
        query in proptest::option::of("[ -~&&[^#&]]{0,10}"),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let uri = match &query {
            Some(q) => format!("/api/{segment}/users?version={}", form_encode(q)),
            None => format!("/api/{segment}/users"),
        };
        if Uri::try_from(uri.as_str()).is_err() {
            return Ok(());
        }
        let mut headers = Vec::new();
        if let Some(h) = &header
            && HeaderValue::from_str(h).is_ok()
        {
            headers.push(("accept-version", h.as_str()));
        }
        let answer = runtime.block_on(ask(&uri, &headers));
        let supported = ["1.0", "1.1", "1.2", "1.3"];
        match answer.status {
            StatusCode::BAD_REQUEST => {
                prop_assert_eq!(answer.headers["content-type"].to_str().unwrap(), "application/problem+json");
                prop_assert!(answer.json["type"].as_str().unwrap().starts_with("urn:cutover:problem:"));
            }
            // Not every segment is a version (`/api/abc/users` is just an unknown route).
            StatusCode::OK | StatusCode::NOT_FOUND => {
                let served = answer.headers["api-version"].to_str().unwrap().to_owned();
                prop_assert!(supported.contains(&served.as_str()), "served {}", served);
            }
            other => prop_assert!(false, "unexpected status {other} for {uri} {headers:?}"),
        }
    }
}

fn form_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b == b'.' {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
