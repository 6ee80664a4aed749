//! The brief's versioning example end to end, on the real binary: one set of handlers serves
//! versions 1.0 to 1.3 through the header, the path and the query; an old client's request body
//! is brought forward and stored correctly; errors are problem documents.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

mod common;

use std::time::Duration;

use common::Service;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

async fn started() -> (Service, Client) {
    let service = Service::start(&[]);
    service.wait_until("/health/ready", 200, Duration::from_secs(20)).await;
    (service, Client::new())
}

/// GETs `url` and reads the body as JSON, whatever the status.
async fn get_json(client: &Client, url: String) -> Value {
    client.get(url).send().await.unwrap().json().await.unwrap()
}

fn keys(value: &Value) -> Vec<String> {
    let mut keys: Vec<String> = value.as_object().unwrap().keys().cloned().collect();
    keys.sort();
    keys
}

#[tokio::test]
async fn every_version_sees_its_own_shape_single_and_in_a_page() {
    let (service, client) = started().await;
    let created = client
        .post(format!("{}/api/users", service.base))
        .json(&json!({
            "username": "ada", "email": "ada@example.com", "is_active": true,
            "profile": {"first_name": "Ada", "last_name": "Lovelace", "avatar_url": null},
            "preferences": {"theme": "dark"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.headers()["location"], "/api/users/1");
    assert_eq!(created.headers()["api-version"], "1.3");

    let expected_keys = [
        ("1.0", vec!["active", "email", "id", "name"]),
        ("1.1", vec!["created_at", "email", "id", "is_active", "username"]),
        (
            "1.2",
            vec![
                "created_at",
                "email",
                "id",
                "is_active",
                "profile",
                "updated_at",
                "username",
            ],
        ),
        (
            "1.3",
            vec![
                "created_at",
                "email",
                "id",
                "is_active",
                "preferences",
                "profile",
                "updated_at",
                "username",
            ],
        ),
    ];
    for (version, expected) in &expected_keys {
        // The same version three ways: header, path, query.
        for url in [
            format!("{}/api/users/1", service.base),
            format!("{}/api/v{version}/users/1", service.base),
            format!("{}/api/users/1?version={version}", service.base),
        ] {
            let mut request = client.get(&url);
            if !url.contains("version") {
                request = request.header("accept-version", *version);
            }
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK, "{url}");
            assert_eq!(response.headers()["api-version"], *version);
            assert!(response.headers()["vary"].to_str().unwrap().contains("accept-version"));
            let user: Value = response.json().await.unwrap();
            assert_eq!(keys(&user), *expected, "{url}");
        }
        let page: Value = get_json(&client, format!("{}/api/v{version}/users", service.base)).await;
        assert_eq!(keys(&page["items"][0]), *expected, "page item in {version}");
    }

    let v1_0: Value = get_json(&client, format!("{}/api/v1.0/users/1", service.base)).await;
    assert_eq!(
        v1_0,
        json!({"id": 1, "name": "ada", "email": "ada@example.com", "active": true})
    );
    let v1_2: Value = get_json(&client, format!("{}/api/v1.2/users/1", service.base)).await;
    assert_eq!(
        v1_2["profile"],
        json!({"first_name": "Ada", "last_name": "Lovelace", "avatar_url": null})
    );
}

#[tokio::test]
async fn a_1_0_client_creates_a_user_that_newer_clients_read_correctly() {
    let (service, client) = started().await;
    let response = client
        .post(format!("{}/api/v1.0/users", service.base))
        .json(&json!({"name": "grace", "email": "grace@example.com", "active": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::CREATED);
    assert_eq!(response.headers()["warning"], "299 - \"API version 1.0 is deprecated\"");
    assert!(response.headers().contains_key("deprecation"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"id": 1, "name": "grace", "email": "grace@example.com", "active": false})
    );

    let newest: Value = get_json(&client, format!("{}/api/users/1", service.base)).await;
    assert_eq!(newest["username"], "grace");
    assert_eq!(newest["is_active"], false);
    assert_eq!(
        newest["preferences"],
        json!({}),
        "the default for clients that cannot send it"
    );
}

/// POSTs `body` to `path` with `version` and returns the status and the JSON body.
async fn send(
    client: &Client,
    method: reqwest::Method,
    url: String,
    version: &str,
    body: Value,
) -> (StatusCode, Value) {
    let response = client
        .request(method, url)
        .header("accept-version", version)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn old_clients_write_only_what_their_version_can_see() {
    use reqwest::Method;
    let (service, client) = started().await;
    let users = format!("{}/api/users", service.base);
    let (status, created) = send(
        &client,
        Method::POST,
        users.clone(),
        "1.3",
        json!({
            "username": "ada", "email": "ada@example.com",
            "profile": {"first_name": "Ada", "last_name": "Lovelace", "avatar_url": null},
            "preferences": {"theme": "dark", "beta": true},
        }),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    let one = format!("{users}/{}", created["id"]);

    // A 1.0 client replaces the user as 1.0 knows it: profile and preferences are not its to reset.
    let (status, body) = send(
        &client,
        Method::PUT,
        one.clone(),
        "1.0",
        json!({"name": "ada.l", "email": "ada@example.com", "active": true}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let newest = get_json(&client, one.clone()).await;
    assert_eq!(newest["username"], "ada.l");
    assert_eq!(newest["preferences"], json!({"theme": "dark", "beta": true}));
    assert_eq!(newest["profile"]["first_name"], "Ada");

    // A PATCH changes exactly what it names.
    let (status, _) = send(&client, Method::PATCH, one.clone(), "1.0", json!({"active": false})).await;
    assert_eq!(status, StatusCode::OK);
    let patched = get_json(&client, one.clone()).await;
    assert_eq!(patched["is_active"], false);
    assert_eq!(patched["username"], "ada.l");
    assert_eq!(patched["preferences"], newest["preferences"]);
    let (status, _) = send(
        &client,
        Method::PATCH,
        one.clone(),
        "1.3",
        json!({"preferences": {"beta": null}}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        get_json(&client, one.clone()).await["preferences"],
        json!({"theme": "dark"})
    );

    // A field the version does not have is refused, not stored.
    let (status, problem) = send(
        &client,
        Method::POST,
        users.clone(),
        "1.1",
        json!({"username": "eve", "email": "eve@example.com", "preferences": {"admin": true}}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(problem["type"], "urn:cutover:problem:unknown-fields");
    assert_eq!(problem["fields"], json!(["preferences"]));
    let (status, _) = send(
        &client,
        Method::PUT,
        one.clone(),
        "1.0",
        json!({"name": "x", "email": "x@y", "is_active": true}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "`is_active` is 1.1's name, not 1.0's");

    // A field added with a default is optional in every version that has it.
    let (status, created) = send(
        &client,
        Method::POST,
        users.clone(),
        "1.3",
        json!({"username": "grace", "email": "grace@example.com"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["preferences"], json!({}));

    // Errors name fields as the client's version does.
    let (status, problem) = send(
        &client,
        Method::POST,
        users.clone(),
        "1.0",
        json!({"email": "z@example.com"}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(problem["detail"], "missing field `name`");
}

#[tokio::test]
async fn bodies_preferences_and_pages_are_bounded() {
    use reqwest::Method;
    let (service, client) = started().await;
    let users = format!("{}/api/users", service.base);
    // 64 KiB per request on /api/users, whatever the service-wide limit.
    let huge = json!({"username": "big", "email": "big@example.com", "preferences": {"blob": "x".repeat(70_000)}});
    let (status, problem) = send(&client, Method::POST, users.clone(), "1.3", huge).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(problem["status"], 413);
    // Preferences: an object, 16 KiB, 8 levels.
    let big = json!({"username": "big", "email": "big@example.com", "preferences": {"blob": "x".repeat(20_000)}});
    let (status, problem) = send(&client, Method::POST, users.clone(), "1.3", big).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["detail"].as_str().unwrap().contains("at most 16384"),
        "{problem}"
    );
    let mut deep = json!("bottom");
    for _ in 0..9 {
        deep = json!({ "level": deep });
    }
    let (status, problem) = send(
        &client,
        Method::POST,
        users.clone(),
        "1.3",
        json!({"username": "deep", "email": "deep@example.com", "preferences": deep}),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        problem["detail"].as_str().unwrap().contains("more than 8 levels"),
        "{problem}"
    );

    // A page stops once its users hold 256 KiB of preferences; the cursor goes on from there.
    for i in 0..40 {
        let body = json!({"username": format!("p{i}"), "email": format!("p{i}@example.com"), "preferences": {"blob": "y".repeat(15_000)}});
        let (status, _) = send(&client, Method::POST, users.clone(), "1.3", body).await;
        assert_eq!(status, StatusCode::CREATED);
    }
    let first = get_json(&client, format!("{users}?limit=100")).await;
    let served = first["items"].as_array().unwrap().len();
    assert!((17..=19).contains(&served), "{served} users of 15 KB in a page");
    let mut total = served;
    let mut cursor = first["next_cursor"].as_str().map(ToOwned::to_owned);
    while let Some(next) = cursor {
        let page = get_json(&client, format!("{users}?limit=100&cursor={next}")).await;
        total += page["items"].as_array().unwrap().len();
        cursor = page["next_cursor"].as_str().map(ToOwned::to_owned);
    }
    assert_eq!(total, 40, "every user is reachable page by page");
}

#[tokio::test]
async fn pages_follow_their_cursor() {
    let (service, client) = started().await;
    for i in 0..5 {
        let response = client
            .post(format!("{}/api/users", service.base))
            .json(&json!({"username": format!("user{i}"), "email": format!("u{i}@example.com"), "preferences": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut url = format!("{}/api/users?limit=2", service.base);
    loop {
        let page: Value = get_json(&client, url.clone()).await;
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|u| u["username"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(cursor) => url = format!("{}/api/users?limit=2&cursor={cursor}", service.base),
            None => break,
        }
    }
    assert_eq!(seen, ["user0", "user1", "user2", "user3", "user4"]);
    let bad = client
        .get(format!("{}/api/users?limit=500", service.base))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn errors_are_problem_documents() {
    let (service, client) = started().await;
    for (url, version) in [
        ("/api/users", "1.4"),
        ("/api/users", "7"),
        ("/api/users", "9.9"),
        ("/api/users", "latest"),
    ] {
        let response = client
            .get(format!("{}{url}", service.base))
            .header("accept-version", version)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{version}");
        assert_eq!(response.headers()["content-type"], "application/problem+json");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["supported"], json!(["1.0", "1.1", "1.2", "1.3"]), "{version}");
    }
    let missing = client
        .get(format!("{}/api/users/999", service.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.headers()["content-type"], "application/problem+json");
    let problem: Value = missing.json().await.unwrap();
    assert_eq!(problem["detail"], "no user with id 999");

    let invalid = client
        .post(format!("{}/api/users", service.base))
        .json(&json!({"username": "x", "email": "not-an-email", "preferences": {}}))
        .send()
        .await
        .unwrap();
    assert_eq!(invalid.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let twice = |name: &str| {
        client
            .post(format!("{}/api/users", service.base))
            .json(&json!({"username": name, "email": format!("{name}@example.com"), "preferences": {}}))
            .send()
    };
    assert_eq!(twice("dup").await.unwrap().status(), StatusCode::CREATED);
    assert_eq!(twice("dup").await.unwrap().status(), StatusCode::CONFLICT);
}

#[tokio::test]
async fn hostile_input_is_refused_precisely_and_echoed_briefly() {
    let (service, client) = started().await;
    let users = format!("{}/api/users", service.base);
    let post_raw = |body: String| {
        client
            .post(&users)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let problem = |response: reqwest::Response| async move {
        let status = response.status();
        (status, response.json::<Value>().await.unwrap())
    };

    // Control characters and invisible bidi overrides in a name: 422.
    for username in ["nul\u{0}byte", "admin\u{202E}nimda", "tab\tname", "zero\u{200B}width"] {
        let body = json!({"username": username, "email": "x@example.com", "preferences": {}});
        let (status, body) = problem(post_raw(body.to_string()).await.unwrap()).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{username:?}: {body}");
        assert!(body["detail"].as_str().unwrap().contains("username"), "{body}");
    }

    // A key given twice: the body says two things, 400.
    let (status, body) = problem(
        post_raw(r#"{"username":"a","username":"b","email":"a@example.com","preferences":{}}"#.to_owned())
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["detail"].as_str().unwrap().contains("duplicate key `username`"),
        "{body}"
    );

    // Errors name no Rust type and echo only a short prefix of what was sent.
    let long = "y".repeat(5000);
    for body in [
        json!(format!("{long}")).to_string(),
        json!({"username": 5, "email": "a@example.com", "preferences": {}}).to_string(),
        json!({"username": "z", "email": long, "preferences": {}}).to_string(),
    ] {
        let (status, problem) = problem(post_raw(body).await.unwrap()).await;
        assert!(status.is_client_error(), "{status}");
        let detail = problem["detail"].as_str().unwrap();
        assert!(!detail.contains("struct") && !detail.contains("NewUser"), "{detail}");
        assert!(detail.len() < 200, "{} bytes echoed: {detail}", detail.len());
    }

    // Server-set fields cannot be written.
    let (status, body) = problem(
        post_raw(
            json!({"id": 7, "created_at": "2020-01-01", "username": "ro", "email": "ro@example.com", "preferences": {}})
                .to_string(),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(
        body["detail"],
        "`id`, `created_at` are set by the server and cannot be written"
    );
    let created: Value = post_raw(json!({"username": "ro", "email": "ro@example.com", "preferences": {}}).to_string())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();
    // A PUT of what was read is accepted (the read-only fields repeated unchanged)...
    let mut round_trip = created.clone();
    round_trip["email"] = json!("ro2@example.com");
    let put = client
        .put(format!("{users}/{id}"))
        .json(&round_trip)
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), StatusCode::OK);
    // ...one that changes them is not.
    round_trip["id"] = json!(id + 1000);
    let (status, body) = problem(
        client
            .put(format!("{users}/{id}"))
            .json(&round_trip)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["detail"], "`id` is set by the server and cannot be written");

    // One user, one URL: `+1`, ` 1`, `01`-like spellings of an id name no user.
    for path in ["+1", "%201", "1e0", "-1", "0x1", "99999999999999999999"] {
        let response = client.get(format!("{users}/{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "/api/users/{path}");
    }
    assert_eq!(
        client.get(format!("{users}/{id}")).send().await.unwrap().status(),
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_postgres_race_for_the_migrations_and_share_the_users() {
    let admin_url = cutover_tests::service_url("DATABASE_URL");
    let admin = sqlx::PgPool::connect(&admin_url).await.unwrap();
    let name = cutover_tests::unique("api_pg");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .unwrap();
    let url = format!("{}/{name}", admin_url.rsplit_once('/').unwrap().0);

    let replicas: Vec<Service> = (0..3)
        .map(|_| Service::start(&[("DATABASE_URL", url.clone())]))
        .collect();
    for replica in &replicas {
        replica.wait_until("/health/ready", 200, Duration::from_secs(30)).await;
    }
    let client = Client::new();
    let created = client
        .post(format!("{}/api/v1.0/users", replicas[0].base))
        .json(&json!({"name": "grace", "email": "grace@example.com", "active": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), StatusCode::CREATED);
    let seen: Value = get_json(&client, format!("{}/api/users/1", replicas[2].base)).await;
    assert_eq!(seen["username"], "grace", "another replica reads the same PostgreSQL");

    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let ledger: Vec<(i64, String)> = sqlx::query_as("SELECT version, state FROM _cutover_migrations ORDER BY version")
        .fetch_all(&pool)
        .await
        .unwrap();
    let expected: Vec<(i64, String)> = (1..=5).map(|v| (v, "applied".to_owned())).collect();
    assert_eq!(
        ledger, expected,
        "expand migrations once each; the backfill is left to the deployment"
    );
    let preferences: String = sqlx::query_scalar("SELECT preferences::text FROM user_preferences WHERE user_id = 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(preferences, "{}");
    pool.close().await;
    drop(replicas);
    let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await;
}

#[tokio::test]
async fn single_user_reads_go_through_the_redis_cache() {
    use redis::AsyncCommands as _;

    let redis_url = cutover_tests::service_url("REDIS_URL");
    let service = Service::start(&[("REDIS_URL", redis_url.clone())]);
    service.wait_until("/health/ready", 200, Duration::from_secs(20)).await;
    let client = Client::new();
    let username = cutover_tests::unique("cached");
    let created: Value = client
        .post(format!("{}/api/users", service.base))
        .json(&json!({ "username": username, "email": format!("{username}@example.com"), "preferences": {} }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_i64().unwrap();
    let url = format!("{}/api/users/{id}", service.base);
    assert_eq!(get_json(&client, url.clone()).await["username"], username.as_str());

    // The first read stored the user for 60 s...
    let mut redis = redis::Client::open(redis_url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let key = api_service::cache::key(id);
    let ttl: i64 = redis.ttl(&key).await.unwrap();
    assert!((1..=60).contains(&ttl), "ttl {ttl}");
    // ...and the next read is served from it (changed behind the API's back to prove it), in
    // every version's shape.
    let mut cached: Value = serde_json::from_str(&redis.get::<_, String>(&key).await.unwrap()).unwrap();
    cached["username"] = json!("from-the-cache");
    let _: () = redis.set_ex(&key, cached.to_string(), 60).await.unwrap();
    assert_eq!(get_json(&client, url.clone()).await["username"], "from-the-cache");
    let old: Value = client
        .get(&url)
        .header("Accept-Version", "1.0")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(old["name"], "from-the-cache", "1.0 calls it `name`: {old}");

    // A change drops the cached copy: the next read sees it.
    let renamed = cutover_tests::unique("renamed");
    let replaced = client
        .put(&url)
        .json(&json!({ "username": renamed, "email": format!("{renamed}@example.com"), "is_active": false, "preferences": { "theme": "dark" } }))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), StatusCode::OK);
    let exists: bool = redis.exists(&key).await.unwrap();
    assert!(!exists, "the cached copy is gone");
    let read = get_json(&client, url.clone()).await;
    assert_eq!(read["username"], renamed.as_str());
    assert_eq!(read["is_active"], false);
    assert_eq!(read["preferences"]["theme"], "dark");
    let missing = client
        .put(format!("{}/api/users/999999999", service.base))
        .json(&json!({ "username": "x", "email": "x@example.com", "preferences": {} }))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let _: () = redis.del(&key).await.unwrap();
}
