//! Version changes on the original brief's user resource: each version's exact shape, single
//! and inside pages and other resources, requests from old clients upgraded, the ordering
//! rules, every kind of change, and a round-trip property.
#![allow(clippy::unwrap_used)] // tests fail loudly by design

use axum::{
    Router,
    body::Body,
    extract::Request,
    http::{HeaderMap, StatusCode, header},
    routing::get,
};
use std::sync::{Arc, Mutex};

use cutover_versioning::{
    ApiVersion, Shape, VersionChanges, VersionLayer, VersionSet, Versioned, VersionedJson, VersionedShape,
    VersionedUpdate,
};
use http_body_util::BodyExt;
use proptest::{prelude::*, test_runner::FileFailurePersistence};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Profile {
    first_name: Option<String>,
    last_name: Option<String>,
    avatar_url: Option<String>,
}

/// The newest (1.3) representation, the only one handlers know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: i64,
    username: String,
    email: String,
    is_active: bool,
    created_at: String,
    updated_at: String,
    profile: Profile,
    preferences: Value,
}

impl VersionedShape for User {
    fn shape() -> Shape {
        Shape::resource("user")
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct NewUser {
    username: String,
    email: String,
    #[serde(default = "yes")]
    is_active: bool,
    profile: Option<Profile>,
    preferences: Value,
}

fn yes() -> bool {
    true
}

impl VersionedShape for NewUser {
    fn shape() -> Shape {
        Shape::resource("user")
    }
}

#[derive(Debug, Serialize)]
struct Page<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

impl<T: VersionedShape> VersionedShape for Page<T> {
    fn shape() -> Shape {
        Shape::object([("items", Vec::<T>::shape())])
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Team {
    name: String,
    lead: User,
    members: Vec<User>,
}

impl VersionedShape for Team {
    fn shape() -> Shape {
        Shape::resource_with("team", [("lead", User::shape()), ("members", Vec::<User>::shape())])
    }
}

fn versions() -> VersionSet {
    VersionSet::builder()
        .supported(["1.0", "1.1", "1.2", "1.3"])
        .build()
        .unwrap()
}

/// The user's fields in the newest version.
const USER_FIELDS: [&str; 8] = [
    "id",
    "username",
    "email",
    "is_active",
    "created_at",
    "updated_at",
    "profile",
    "preferences",
];

/// The brief's history, declared once per version that introduced it.
fn changes() -> VersionChanges {
    VersionChanges::builder(&versions())
        .resource("user", USER_FIELDS, |user| {
            user.version("1.3", |v| v.added_with_default("preferences", json!({})))
                .version("1.2", |v| v.added("updated_at").added("profile"))
                .version("1.1", |v| {
                    v.added("created_at")
                        .renamed("name", "username")
                        .renamed("active", "is_active")
                })
        })
        .resource("team", ["name", "lead", "members"], |team| team)
        .build()
        .unwrap()
}

fn ada() -> User {
    User {
        id: 1,
        username: "ada".into(),
        email: "ada@example.com".into(),
        is_active: true,
        created_at: "2024-01-02T03:04:05Z".into(),
        updated_at: "2024-06-07T08:09:10Z".into(),
        profile: Profile {
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            avatar_url: None,
        },
        preferences: json!({"theme": "dark"}),
    }
}

fn v(text: &str) -> ApiVersion {
    text.parse().unwrap()
}

fn shape_at(version: &str) -> Value {
    match version {
        "1.0" => json!({"id": 1, "name": "ada", "email": "ada@example.com", "active": true}),
        "1.1" => {
            json!({"id": 1, "username": "ada", "email": "ada@example.com", "is_active": true, "created_at": "2024-01-02T03:04:05Z"})
        }
        "1.2" => json!({
            "id": 1, "username": "ada", "email": "ada@example.com", "is_active": true,
            "created_at": "2024-01-02T03:04:05Z", "updated_at": "2024-06-07T08:09:10Z",
            "profile": {"first_name": "Ada", "last_name": "Lovelace", "avatar_url": null},
        }),
        _ => serde_json::to_value(ada()).unwrap(),
    }
}

#[test]
fn each_version_has_exactly_the_briefs_shape() {
    let changes = changes();
    changes.register::<User>().unwrap();
    for version in ["1.0", "1.1", "1.2", "1.3"] {
        assert_eq!(
            changes.downgrade(&ada(), &v(version)).unwrap(),
            shape_at(version),
            "version {version}"
        );
    }
}

#[test]
fn resources_are_transformed_wherever_they_appear() {
    let changes = changes();
    let page = Page {
        items: vec![ada(), ada()],
        next_cursor: Some("abc".into()),
    };
    let old = changes.downgrade(&page, &v("1.0")).unwrap();
    assert_eq!(
        old,
        json!({"items": [shape_at("1.0"), shape_at("1.0")], "next_cursor": "abc"})
    );

    let team = Team {
        name: "engines".into(),
        lead: ada(),
        members: vec![ada()],
    };
    let old = changes.downgrade(&team, &v("1.1")).unwrap();
    assert_eq!(
        old,
        json!({"name": "engines", "lead": shape_at("1.1"), "members": [shape_at("1.1")]})
    );
    assert!(changes.register::<Team>().is_ok());
}

#[test]
fn requests_from_old_clients_are_brought_forward() {
    let changes = changes();
    let from_1_0: NewUser = changes
        .upgrade(
            json!({"name": "grace", "email": "grace@example.com", "active": false}),
            &v("1.0"),
        )
        .unwrap();
    assert_eq!(
        from_1_0,
        NewUser {
            username: "grace".into(),
            email: "grace@example.com".into(),
            is_active: false,
            profile: None,
            preferences: json!({}),
        }
    );
    // A field added with a default is optional in every version that has it, the newest too
    // (the brief's `user_data.get("preferences", {})`).
    let from_1_3: NewUser = changes
        .upgrade(json!({"username": "x", "email": "y@z"}), &v("1.3"))
        .unwrap();
    assert_eq!(from_1_3.preferences, json!({}));
    // Errors use the client's own names: a 1.0 client has never heard of `username`.
    let error = changes
        .upgrade::<NewUser>(json!({"email": "y@z"}), &v("1.0"))
        .unwrap_err();
    assert_eq!(error.to_string(), "missing field `name`");
    let error = changes
        .upgrade::<NewUser>(json!({"email": "y@z"}), &v("1.1"))
        .unwrap_err();
    assert_eq!(error.to_string(), "missing field `username`");
    // Fields the version does not have are refused, in every version.
    for (version, body) in [
        ("1.1", json!({"username": "x", "email": "y@z", "preferences": {}})),
        ("1.0", json!({"username": "x", "email": "y@z"})),
        ("1.3", json!({"username": "x", "email": "y@z", "nickname": "z"})),
    ] {
        let error = changes.upgrade::<NewUser>(body, &v(version)).unwrap_err();
        assert!(
            matches!(error, cutover_versioning::TransformError::UnknownFields(_)),
            "{version}: {error}"
        );
    }
}

#[test]
fn children_are_downgraded_before_their_parent_and_upgraded_after_it() {
    let versions = versions();
    // In 1.2 the team gained `lead_name`, computed by older clients from the lead itself,
    // which at that point must already be in its older shape (with `name`).
    let changes = VersionChanges::builder(&versions)
        .resource("user", USER_FIELDS, |user| {
            user.version("1.3", |v| v.added("preferences"))
                .version("1.2", |v| v.added("updated_at").added("profile"))
                .version("1.1", |v| {
                    v.added("created_at")
                        .renamed("name", "username")
                        .renamed("active", "is_active")
                })
        })
        .resource("team", ["name", "lead", "members"], |team| {
            team.version("1.1", |v| {
                v.custom(
                    |team| {
                        let name = team["lead"]["name"].clone();
                        team.insert("lead_name".into(), name);
                    },
                    |team| {
                        team.remove("lead_name");
                    },
                )
            })
        })
        .build()
        .unwrap();
    let team = Team {
        name: "engines".into(),
        lead: ada(),
        members: vec![],
    };
    let old = changes.downgrade(&team, &v("1.0")).unwrap();
    assert_eq!(old["lead_name"], "ada", "the parent saw the child's 1.0 shape: {old}");
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Order {
    id: i64,
    status: String,
    shipping: Value,
    total_cents: i64,
    tags: Vec<String>,
}

impl VersionedShape for Order {
    fn shape() -> Shape {
        Shape::resource("order")
    }
}

fn order_like() -> Order {
    Order {
        id: 9,
        status: "pending".into(),
        shipping: json!({"street": "1 Main St", "city": "Springfield"}),
        total_cents: 1999,
        tags: vec!["gift".into()],
    }
}

/// An order whose history uses every kind of change: nesting, a removed field rebuilt by old
/// clients (with a custom step bringing it forward), enum values renamed and added.
fn order_changes() -> VersionChanges {
    VersionChanges::builder(&versions())
        .resource("order", ["id", "status", "shipping", "total_cents", "tags"], |order| {
            order
                // 1.3: the shipping address moved into an object.
                .version("1.3", |v| v.nested(&["street", "city"], "shipping"))
                // 1.2: `total` (a decimal string) was removed in favour of `total_cents`; an
                // older client's `total` becomes cents on the way up.
                .version("1.2", |v| {
                    v.custom(
                        |_| {},
                        |order| {
                            let cents = order
                                .get("total")
                                .and_then(Value::as_str)
                                .and_then(|total| total.replace('.', "").parse::<i64>().ok());
                            if let Some(cents) = cents {
                                order.insert("total_cents".into(), json!(cents));
                            }
                        },
                    )
                    .added("total_cents")
                    .removed("total", |order| {
                        let cents = order.get("total_cents").and_then(Value::as_i64).unwrap_or(0);
                        json!(format!("{}.{:02}", cents / 100, cents % 100))
                    })
                })
                // 1.1: status `new` became `pending`, and `archived` appeared.
                .version("1.1", |v| {
                    v.enum_renamed("status", &[("new", "pending")])
                        .enum_added("status", "archived", "closed")
                })
        })
        .build()
        .unwrap()
}

#[test]
fn nest_flatten_enum_removed_and_custom_changes_go_both_ways() {
    let changes = order_changes();
    changes.register::<Order>().unwrap();
    let order = Order {
        id: 9,
        status: "pending".into(),
        shipping: json!({"street": "1 Main St", "city": "Springfield"}),
        total_cents: 1999,
        tags: vec![],
    };
    assert_eq!(
        changes.downgrade(&order, &v("1.2")).unwrap(),
        json!({"id": 9, "status": "pending", "street": "1 Main St", "city": "Springfield", "total_cents": 1999, "tags": []})
    );
    assert_eq!(
        changes.downgrade(&order, &v("1.0")).unwrap(),
        json!({"id": 9, "status": "new", "street": "1 Main St", "city": "Springfield", "total": "19.99", "tags": []})
    );
    let archived = Order {
        status: "archived".into(),
        ..order
    };
    assert_eq!(changes.downgrade(&archived, &v("1.0")).unwrap()["status"], "closed");

    // Forward: a 1.0 client's order.
    let upgraded: Order = changes
        .upgrade(
            json!({"id": 3, "status": "new", "street": "2 Elm St", "city": "Shelbyville", "total": "5.00", "tags": []}),
            &v("1.0"),
        )
        .unwrap();
    assert_eq!(upgraded.status, "pending");
    assert_eq!(upgraded.total_cents, 500);
    assert_eq!(upgraded.shipping, json!({"street": "2 Elm St", "city": "Shelbyville"}));
    // 1.0 has no `total_cents`: a 1.0 client cannot set it behind the server's back.
    let error = changes
        .upgrade::<Order>(
            json!({"id": 3, "status": "new", "street": "2 Elm St", "city": "Shelbyville", "total": "5.00", "total_cents": 1, "tags": []}),
            &v("1.0"),
        )
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("`total_cents` is not a field of the order resource in API version 1.0"),
        "{error}"
    );

    // Onto a stored order: a 1.0 client that sends back what it read changes nothing, even
    // the `archived` status it only ever saw as `closed`.
    let stored = Order {
        status: "archived".into(),
        shipping: json!({"street": "1 Main St", "city": "Springfield", "zip": "49007"}),
        ..order_like()
    };
    let read = changes.downgrade(&stored, &v("1.0")).unwrap();
    let written: Order = changes.upgrade_onto(read.clone(), &v("1.0"), &stored).unwrap();
    assert_eq!(written, stored);
    // Changing one field changes that field only: the status it saw as `closed` stays
    // `archived`, and the `zip` it never saw is kept.
    let mut moved = read;
    moved["city"] = json!("Shelbyville");
    let written: Order = changes.upgrade_onto(moved, &v("1.0"), &stored).unwrap();
    assert_eq!(written.status, "archived");
    assert_eq!(
        written.shipping,
        json!({"street": "1 Main St", "city": "Shelbyville", "zip": "49007"})
    );
    assert_eq!(written.total_cents, stored.total_cents);
}

/// The example API, in-process, to see the layer serialize `Versioned` responses and upgrade
/// `VersionedJson` requests.
fn app() -> Router {
    let api = Router::new()
        .route("/api/users/1", get(|| async { Versioned::ok(ada()) }))
        .route(
            "/api/users",
            get(|| async {
                Versioned::ok(Page {
                    items: vec![ada()],
                    next_cursor: None,
                })
            })
            .post(|VersionedJson(new): VersionedJson<NewUser>| async move {
                let mut user = ada();
                user.username = new.username;
                user.email = new.email;
                user.is_active = new.is_active;
                user.preferences = new.preferences;
                Versioned::created(user)
            }),
        )
        .route(
            "/api/error",
            get(|| async { (StatusCode::NOT_FOUND, axum::Json(json!({"name": "not renamed"}))) }),
        );
    Router::new().fallback_service(VersionLayer::new(versions()).changes(changes()).layer(api))
}

async fn send(request: Request) -> (StatusCode, HeaderMap, Value) {
    let response = app().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn get_req(uri: &str) -> Request {
    Request::get(uri).body(Body::empty()).unwrap()
}

#[tokio::test]
async fn the_layer_serves_every_version_from_one_handler() {
    for version in ["1.0", "1.1", "1.2", "1.3"] {
        let (status, headers, body) = send(get_req(&format!("/api/v{version}/users/1"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, shape_at(version), "{version}");
        assert_eq!(
            headers[header::CONTENT_LENGTH],
            serde_json::to_vec(&body).unwrap().len().to_string()
        );
        let (_, _, page) = send(get_req(&format!("/api/users?version={version}"))).await;
        assert_eq!(
            page,
            json!({"items": [shape_at(version)], "next_cursor": null}),
            "{version}"
        );
    }
}

#[tokio::test]
async fn a_1_0_client_creates_a_user_with_its_own_field_names() {
    let request = Request::post("/api/v1.0/users")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            r#"{"name": "grace", "email": "grace@example.com", "active": false}"#,
        ))
        .unwrap();
    let (status, _, body) = send(request).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(
        body,
        json!({"id": 1, "name": "grace", "email": "grace@example.com", "active": false})
    );

    let not_json = Request::post("/api/users").body(Body::from("name=grace")).unwrap();
    assert_eq!(send(not_json).await.0, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    let broken = Request::post("/api/users")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from("{"))
        .unwrap();
    let (status, headers, body) = send(broken).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(headers[header::CONTENT_TYPE], "application/problem+json");
    assert_eq!(body["title"], "Invalid JSON");
    let wrong_shape = Request::post("/api/v1.3/users")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(r#"{"username": 5}"#))
        .unwrap();
    assert_eq!(send(wrong_shape).await.0, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn error_responses_are_left_alone() {
    let (status, _, body) = send(get_req("/api/v1.0/error")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body, json!({"name": "not renamed"}));
}

#[tokio::test]
async fn without_the_layer_a_versioned_response_is_served_in_the_newest_shape() {
    let bare = Router::new().route("/u", get(|| async { Versioned::ok(ada()) }));
    let response = bare.oneshot(get_req("/u")).await.unwrap();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), shape_at("1.3"));
}

/// A one-user store behind the layer: `GET` reads it, `PUT` and `PATCH` write onto it with
/// `VersionedUpdate`, `POST` creates with `VersionedJson`.
fn store_app(stored: User) -> (Router, Arc<Mutex<User>>) {
    let store = Arc::new(Mutex::new(stored));
    let reader = Arc::clone(&store);
    let writer = Arc::clone(&store);
    let api = Router::new().route(
        "/api/users/1",
        get(move || {
            let user = reader.lock().unwrap().clone();
            async move { Versioned::ok(user) }
        })
        .put({
            let writer = Arc::clone(&writer);
            move |update: VersionedUpdate<User>| write_user(Arc::clone(&writer), update)
        })
        .patch(move |update: VersionedUpdate<User>| write_user(Arc::clone(&writer), update)),
    );
    let app = Router::new().fallback_service(VersionLayer::new(versions()).changes(changes()).layer(api));
    (app, store)
}

async fn write_user(
    store: Arc<Mutex<User>>,
    update: VersionedUpdate<User>,
) -> Result<Versioned<User>, cutover_versioning::VersionedJsonRejection> {
    let stored = store.lock().unwrap().clone();
    let mut updated = update.onto(&stored)?;
    // Read-only fields stay the server's.
    updated.id = stored.id;
    updated.created_at = stored.created_at;
    *store.lock().unwrap() = updated.clone();
    Ok(Versioned::ok(updated))
}

async fn call(app: &Router, method: &str, version: &str, body: Option<Value>) -> (StatusCode, Value) {
    let builder = Request::builder()
        .method(method)
        .uri("/api/users/1")
        .header("accept-version", version);
    let request = match body {
        Some(body) => builder
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body.to_string())),
        None => builder.body(Body::empty()),
    }
    .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().build().unwrap()
}

fn any_user() -> impl Strategy<Value = User> {
    (
        "[a-z]{1,12}",
        "[a-z]{1,8}@[a-z]{1,8}\\.com",
        any::<bool>(),
        proptest::option::of("[A-Z][a-z]{0,8}"),
        proptest::option::of("https://[a-z]{1,8}\\.png"),
        proptest::option::of("light|dark"),
    )
        .prop_map(|(username, email, is_active, first_name, avatar_url, theme)| User {
            username,
            email,
            is_active,
            profile: Profile {
                first_name,
                last_name: Some("Lovelace".into()),
                avatar_url,
            },
            preferences: theme.map_or(json!({}), |t| json!({"theme": t, "beta": true})),
            ..ada()
        })
}

/// `target` with the object `patch` merged in, as RFC 7396 does for one level of members.
fn merged(target: &Value, patch: &Value) -> Value {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            let mut out = target.clone();
            for (key, value) in patch {
                if value.is_null() {
                    out.remove(key);
                } else {
                    out.insert(key.clone(), value.clone());
                }
            }
            Value::Object(out)
        }
        _ => patch.clone(),
    }
}

/// New values a client of `version` could send for each field it can write, in its own names.
fn edits(version: &str) -> Vec<(&'static str, Value)> {
    let mut fields = match version {
        "1.0" => vec![
            ("name", json!("grace")),
            ("email", json!("grace@example.com")),
            ("active", json!(false)),
        ],
        _ => vec![
            ("username", json!("grace")),
            ("email", json!("grace@example.com")),
            ("is_active", json!(false)),
        ],
    };
    if version >= "1.2" {
        fields.push((
            "profile",
            json!({"first_name": "Grace", "last_name": "Hopper", "avatar_url": "https://h.png"}),
        ));
    }
    if version == "1.3" {
        fields.push(("preferences", json!({"theme": "solarized"})));
    }
    fields
}

proptest! {
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("regressions"))),
        ..ProptestConfig::default()
    })]

    /// The write contract, through the layer: read a user as any version, write it back
    /// unchanged with `PUT` as that version, and the stored user is exactly what it was.
    #[test]
    fn a_write_of_what_was_read_changes_nothing(
        user in any_user(),
        version in prop::sample::select(vec!["1.0", "1.1", "1.2", "1.3"]),
    ) {
        runtime().block_on(async {
            let (app, store) = store_app(user.clone());
            let (status, read) = call(&app, "GET", version, None).await;
            prop_assert_eq!(status, StatusCode::OK);
            let (status, written) = call(&app, "PUT", version, Some(read.clone())).await;
            prop_assert_eq!(status, StatusCode::OK, "{}", written);
            prop_assert_eq!(&written, &read);
            prop_assert_eq!(&*store.lock().unwrap(), &user);
            let (_, newest) = call(&app, "GET", "1.3", None).await;
            prop_assert_eq!(newest, serde_json::to_value(&user).unwrap());
            Ok(())
        })?;
    }

    /// A write as a version changes exactly the fields it names: a `PATCH` of some fields, or a
    /// `PUT` of what was read with those fields edited. Every other field, those the version
    /// cannot see included, keeps its value.
    #[test]
    fn a_write_changes_exactly_the_fields_it_names(
        user in any_user(),
        version in prop::sample::select(vec!["1.0", "1.1", "1.2", "1.3"]),
        chosen in prop::collection::vec(any::<bool>(), 5),
        method in prop::sample::select(vec!["PUT", "PATCH"]),
    ) {
        runtime().block_on(async {
            let (app, _store) = store_app(user.clone());
            let (_, before) = call(&app, "GET", version, None).await;
            let (_, newest_before) = call(&app, "GET", "1.3", None).await;
            let named: Vec<(&str, Value)> = edits(version)
                .into_iter()
                .zip(&chosen)
                .filter(|(_, chosen)| **chosen)
                .map(|(edit, _)| edit)
                .collect();
            let mut body = if method == "PUT" { before.clone() } else { json!({}) };
            for (field, value) in &named {
                body[*field] = value.clone();
            }
            let (status, _) = call(&app, method, version, Some(body)).await;
            prop_assert_eq!(status, StatusCode::OK);
            let (_, after) = call(&app, "GET", version, None).await;
            for (field, value) in after.as_object().unwrap() {
                let expected = match named.iter().find(|(name, _)| name == field) {
                    None => before[field.as_str()].clone(),
                    // A merge patch merges objects member by member (RFC 7396).
                    Some((_, sent)) if method == "PATCH" => merged(&before[field.as_str()], sent),
                    Some((_, sent)) => sent.clone(),
                };
                prop_assert_eq!(value, &expected, "{} as {} ({})", field, version, method);
            }
            // What the version cannot see is untouched.
            let (_, newest_after) = call(&app, "GET", "1.3", None).await;
            let hidden: &[&str] = match version {
                "1.0" => &["created_at", "updated_at", "profile", "preferences"],
                "1.1" => &["updated_at", "profile", "preferences"],
                "1.2" => &["preferences"],
                _ => &[],
            };
            for field in hidden {
                prop_assert_eq!(&newest_after[*field], &newest_before[*field], "{} as {}", field, version);
            }
            Ok(())
        })?;
    }

    /// The same contract on every kind of change (nested, removed and rebuilt, custom, enum
    /// values renamed and added), through the library: what a version read, written back as
    /// that version onto the stored order, is the stored order.
    #[test]
    fn every_kind_of_change_survives_a_write_of_what_was_read(
        status in prop::sample::select(vec!["pending", "archived", "closed", "shipped"]),
        street in "[A-Z][a-z]{1,8} St",
        zip in proptest::option::of("[0-9]{5}"),
        total_cents in 0i64..1_000_000,
        tags in prop::collection::vec("[a-z]{1,6}", 0..3),
        version in prop::sample::select(vec!["1.0", "1.1", "1.2", "1.3"]),
    ) {
        let changes = order_changes();
        let mut shipping = json!({"street": street, "city": "Springfield"});
        if let Some(zip) = zip {
            shipping["zip"] = json!(zip);
        }
        let stored = Order { id: 4, status: status.to_owned(), shipping, total_cents, tags };
        let read = changes.downgrade(&stored, &v(version)).unwrap();
        let written: Order = changes.upgrade_onto(read.clone(), &v(version), &stored).unwrap();
        prop_assert_eq!(&written, &stored);
        // And a change of one field, the city, changes that field only.
        let mut moved = read;
        match version {
            "1.3" => moved["shipping"]["city"] = json!("Shelbyville"),
            _ => moved["city"] = json!("Shelbyville"),
        }
        let written: Order = changes.upgrade_onto(moved, &v(version), &stored).unwrap();
        let mut expected = stored;
        expected.shipping["city"] = json!("Shelbyville");
        prop_assert_eq!(written, expected);
    }

    /// Resources inside other resources and lists: a team and its members, read as any version
    /// and written back, stays what it was.
    #[test]
    fn nested_resources_survive_a_write_of_what_was_read(
        members in prop::collection::vec(any_user(), 0..4),
        version in prop::sample::select(vec!["1.0", "1.1", "1.2", "1.3"]),
    ) {
        let changes = changes();
        let stored = Team { name: "engines".into(), lead: ada(), members };
        let read = changes.downgrade(&stored, &v(version)).unwrap();
        let written: Team = changes.upgrade_onto(read, &v(version), &stored).unwrap();
        prop_assert_eq!(written, stored);
    }

    /// Going back to a version and forward again returns the original, except for what that
    /// version cannot express (fields added later come back as their request defaults).
    #[test]
    fn downgrade_then_upgrade_round_trips(
        username in "[a-z]{1,12}",
        email in "[a-z]{1,8}@[a-z]{1,8}\\.com",
        is_active: bool,
        first in proptest::option::of("[A-Z][a-z]{0,8}"),
        theme in proptest::option::of("light|dark"),
        version in prop::sample::select(vec!["1.0", "1.1", "1.2", "1.3"]),
    ) {
        let changes = changes();
        let profile = Profile { first_name: first, last_name: None, avatar_url: None };
        let preferences = theme.map_or(json!({}), |t| json!({"theme": t}));
        let user = User { username, email, is_active, profile: profile.clone(), preferences: preferences.clone(), ..ada() };
        let old = changes.downgrade(&user, &v(version)).unwrap();
        let back: NewUser = changes.upgrade(old, &v(version)).unwrap();
        prop_assert_eq!(&back.username, &user.username);
        prop_assert_eq!(&back.email, &user.email);
        prop_assert_eq!(back.is_active, user.is_active);
        let (expected_profile, expected_preferences) = match version {
            "1.0" | "1.1" => (None, json!({})),
            "1.2" => (Some(profile), json!({})),
            _ => (Some(profile), preferences),
        };
        prop_assert_eq!(back.profile, expected_profile);
        prop_assert_eq!(back.preferences, expected_preferences);
    }
}

/// The user resource with its server-set fields declared read-only: `NewUser` is its create
/// and update body, with nothing declared twice.
fn read_only_changes() -> VersionChanges {
    let versions = VersionSet::builder()
        .supported(["1.0", "1.1"])
        .default_version("1.1")
        .build()
        .unwrap();
    VersionChanges::builder(&versions)
        .resource("user", USER_FIELDS, |user| {
            user.read_only(["id", "created_at", "updated_at"]).version("1.1", |v| {
                v.added("created_at")
                    .added("updated_at")
                    .renamed("name", "username")
                    .renamed("active", "is_active")
            })
        })
        .build()
        .unwrap()
}

#[test]
fn read_only_fields_are_refused_on_create_and_may_be_repeated_on_update() {
    let changes = read_only_changes();
    let v10: ApiVersion = "1.0".parse().unwrap();
    let v11: ApiVersion = "1.1".parse().unwrap();
    let body = |extra: Value| {
        let mut body = json!({"username": "ada", "email": "a@example.com", "preferences": {}});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        body
    };
    // A create that leaves them out is fine; one that sets them is refused, naming them.
    assert!(changes.upgrade::<NewUser>(body(json!({})), &v11).is_ok());
    let error = changes
        .upgrade::<NewUser>(body(json!({"id": 7, "created_at": "2020-01-01"})), &v11)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "`id`, `created_at` are set by the server and cannot be written"
    );
    // In 1.0's vocabulary too; `created_at` does not exist there at all.
    let old = json!({"name": "ada", "email": "a@example.com", "id": 1});
    let error = changes.upgrade::<NewUser>(old, &v10).unwrap_err();
    assert_eq!(error.to_string(), "`id` is set by the server and cannot be written");
    let error = changes
        .upgrade::<NewUser>(
            json!({"name": "ada", "email": "a@example.com", "created_at": "x"}),
            &v10,
        )
        .unwrap_err();
    assert!(error.to_string().contains("is not a field"), "{error}");

    // An update may send back what it read, unchanged; not change it.
    let stored = User {
        id: 1,
        username: "ada".into(),
        email: "a@example.com".into(),
        is_active: true,
        created_at: "2026-01-01".into(),
        updated_at: "2026-01-02".into(),
        profile: Profile {
            first_name: None,
            last_name: None,
            avatar_url: None,
        },
        preferences: json!({}),
    };
    let mut read_back = serde_json::to_value(&stored).unwrap();
    read_back["email"] = json!("b@example.com");
    let updated: NewUser = changes.upgrade_onto(read_back.clone(), &v11, &stored).unwrap();
    assert_eq!(updated.email, "b@example.com");
    read_back["id"] = json!(2);
    let error = changes
        .upgrade_onto::<NewUser, _>(read_back, &v11, &stored)
        .unwrap_err();
    assert_eq!(error.to_string(), "`id` is set by the server and cannot be written");
    let error = changes
        .patch_onto::<NewUser, _>(json!({"updated_at": "now"}), &v11, &stored)
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "`updated_at` is set by the server and cannot be written"
    );
    assert!(
        changes
            .patch_onto::<NewUser, _>(json!({"id": 1}), &v11, &stored)
            .is_ok()
    );
}

#[test]
fn a_read_only_field_the_resource_does_not_have_is_a_build_error() {
    let versions = VersionSet::builder().supported(["1.0"]).build().unwrap();
    let error = VersionChanges::builder(&versions)
        .resource("user", ["id", "name"], |user| user.read_only(["id", "crated_at"]))
        .build()
        .unwrap_err();
    assert_eq!(
        error.problems(),
        ["resource `user`: read-only field `crated_at` is not one of its fields"]
    );
}
