//! The users API of the original brief, versioned Stripe-style.
//!
//! Handlers only know the newest (1.3) representation. Each version that broke compatibility
//! says once, in [`changes`], what it changed; the version layer shapes every response for the
//! version the client asked for, and brings old clients' request bodies forward:
//!
//! | version | a user looks like |
//! | --- | --- |
//! | 1.0 (deprecated) | `{id, name, email, active}` |
//! | 1.1 | `{id, username, email, is_active, created_at}` |
//! | 1.2 | 1.1 + `updated_at`, `profile{first_name, last_name, avatar_url}` |
//! | 1.3 (default) | 1.2 + `preferences` |
//!
//! Versions are read from `Accept-Version`, `/api/v1.2/users`, or `?version=1.2`. An
//! unsupported version is a 400 problem; see [`versions`] for how compatible resolution
//! (`1.4` served as `1.3`) would be switched on instead.
//!
//! Writes follow the library's write contract in every version: `POST` (a new user) refuses
//! fields the client's version does not have; `PUT` (a whole user, as the client's version
//! sees it) and `PATCH` (a JSON merge patch) are applied **onto the stored user**, so a 1.0
//! client that has never seen `preferences` cannot reset them.
//!
//! Bounds, so no client can make a replica run out of memory: request bodies up to
//! [`MAX_BODY`], `preferences` an object of at most [`MAX_PREFERENCES`] bytes and
//! [`MAX_DEPTH`] levels, stored and served as raw JSON (never parsed on a read in the newest
//! version), and a page stops early once its users hold [`PAGE_BYTES`] of preferences.

use axum::{
    Router,
    extract::{FromRef, Path, Query, State, rejection::PathRejection},
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
    routing::get,
};
use cutover::{
    Problem,
    versioning::{
        Shape, VersionChanges, VersionLayer, VersionSet, Versioned, VersionedJson, VersionedJsonRejection,
        VersionedShape, VersionedUpdate,
    },
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json, value::RawValue};
use sqlx::{PgPool, SqlitePool};
use tower_http::limit::RequestBodyLimitLayer;

use self::queries::Queries;
use crate::{
    cache::UserCache,
    events::{Events, UserEvent},
};

/// Largest request body on `/api/users` routes: a user is small.
pub const MAX_BODY: usize = 64 * 1024;
/// Largest `preferences` object, serialized.
pub const MAX_PREFERENCES: usize = 16 * 1024;
/// Deepest `preferences` nesting (the object itself is level 1).
pub const MAX_DEPTH: usize = 8;
/// A page ends early once its users' preferences add up to this many bytes (at least one user
/// is always served), so a page costs bounded memory whatever is stored.
pub const PAGE_BYTES: usize = 256 * 1024;

/// The supported versions, as in the brief: 1.0 to 1.3, default 1.3, 1.0 deprecated, and an
/// unsupported version rejected.
///
/// Compatible resolution is one line away, for APIs that prefer it:
///
/// ```
/// use cutover::versioning::{Resolution, VersionSet};
/// let lenient = VersionSet::builder()
///     .supported(["1.0", "1.1", "1.2", "1.3"])
///     .resolution(Resolution::Compatible) // `1.4` is served as `1.3`; `2.0` is still a 400
///     .build()
///     .unwrap();
/// assert_eq!(lenient.compatible(&"1.4".parse().unwrap()).unwrap().to_string(), "1.3");
/// ```
pub fn versions() -> VersionSet {
    VersionSet::builder()
        .supported(["1.0", "1.1", "1.2", "1.3"])
        .default_version("1.3")
        .deprecated_on("1.0", "2025-01-01")
        .build()
        .expect("the version set is valid")
}

/// Each version's breaking changes to a user, declared once by the version that made them.
pub fn changes(versions: &VersionSet) -> VersionChanges {
    let changes = VersionChanges::builder(versions)
        .resource(
            "user",
            [
                "id",
                "username",
                "email",
                "is_active",
                "created_at",
                "updated_at",
                "profile",
                "preferences",
            ],
            |user| {
                // One resource for reads and writes: `NewUser` names it too, and a write may
                // not set what the server does.
                user.read_only(["id", "created_at", "updated_at"])
                    .version("1.3", |v| v.added_with_default("preferences", json!({})))
                    .version("1.2", |v| v.added("updated_at").added("profile"))
                    .version("1.1", |v| {
                        v.added("created_at")
                            .renamed("name", "username")
                            .renamed("active", "is_active")
                    })
            },
        )
        .build()
        .expect("the version changes are valid");
    // Validated here, at start-up, rather than on the first request.
    changes.register::<User>().expect("User matches the declared changes");
    changes
        .register::<Page<User>>()
        .expect("Page<User> matches the declared changes");
    changes
        .register::<NewUser>()
        .expect("NewUser matches the declared changes");
    changes
}

/// The layer to put around the users router.
pub fn version_layer() -> VersionLayer {
    let versions = versions();
    let changes = changes(&versions);
    VersionLayer::new(versions).changes(changes)
}

/// A user's optional profile.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    /// Given name.
    pub first_name: Option<String>,
    /// Family name.
    pub last_name: Option<String>,
    /// Picture.
    pub avatar_url: Option<String>,
}

/// A user in the newest (1.3) representation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    /// Identifier.
    pub id: i64,
    /// Login name (`name` in 1.0).
    pub username: String,
    /// Email address.
    pub email: String,
    /// Whether the account is active (`active` in 1.0).
    pub is_active: bool,
    /// Creation time, RFC 3339 (since 1.1).
    pub created_at: String,
    /// Last update time, RFC 3339 (since 1.2).
    pub updated_at: String,
    /// Profile (since 1.2).
    pub profile: Profile,
    /// Free-form preferences (since 1.3), as stored.
    pub preferences: Preferences,
}

/// A user's preferences as the database holds them: JSON text, checked once when written and
/// served as it is, never parsed into a tree on a read.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Preferences(Box<RawValue>);

impl Preferences {
    /// `{}`.
    pub fn empty() -> Self {
        Self(RawValue::from_string("{}".to_owned()).expect("`{}` is JSON"))
    }

    /// Stored text, or `{}` when it is missing or not JSON.
    fn from_stored(text: Option<String>) -> Self {
        text.and_then(|text| RawValue::from_string(text).ok())
            .map_or_else(Self::empty, Self)
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for Preferences {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl From<&Value> for Preferences {
    fn from(value: &Value) -> Self {
        Self(RawValue::from_string(value.to_string()).expect("a Value serializes to JSON"))
    }
}

impl VersionedShape for User {
    fn shape() -> Shape {
        Shape::resource("user")
    }
}

/// The body of `POST /api/users` and `PUT`/`PATCH /api/users/{id}`, newest representation: the
/// `user` resource without what the server sets (declared read-only in [`changes`]), so every
/// version change of a user applies to it with nothing declared twice.
#[derive(Debug, Clone, Deserialize)]
pub struct NewUser {
    /// Login name.
    pub username: String,
    /// Email address.
    pub email: String,
    /// Active unless said otherwise.
    #[serde(default = "active_by_default")]
    pub is_active: bool,
    /// Optional profile.
    #[serde(default)]
    pub profile: Option<Profile>,
    /// Preferences (old clients get `{}`).
    pub preferences: Value,
}

fn active_by_default() -> bool {
    true
}

impl VersionedShape for NewUser {
    fn shape() -> Shape {
        Shape::resource("user")
    }
}

/// A page of results with a cursor to the next one.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    /// This page.
    pub items: Vec<T>,
    /// Pass as `?cursor=` for the next page; `null` on the last one.
    pub next_cursor: Option<String>,
}

impl<T: VersionedShape> VersionedShape for Page<T> {
    fn shape() -> Shape {
        Shape::object([("items", Vec::<T>::shape())])
    }
}

/// Where users are kept: PostgreSQL when `DATABASE_URL` is set, the embedded SQLite database
/// otherwise. The schema comes from the migrations in `migrations/` (applied at start-up).
#[derive(Debug, Clone)]
pub enum UserStore {
    /// The embedded database.
    Sqlite(SqlitePool),
    /// PostgreSQL.
    Postgres(PgPool),
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: i64,
    username: String,
    email: String,
    is_active: bool,
    created_at: String,
    updated_at: String,
    first_name: Option<String>,
    last_name: Option<String>,
    avatar_url: Option<String>,
    preferences: Option<String>,
}

impl From<UserRow> for User {
    fn from(row: UserRow) -> Self {
        Self {
            id: row.id,
            username: row.username,
            email: row.email,
            is_active: row.is_active,
            created_at: row.created_at,
            updated_at: row.updated_at,
            profile: Profile {
                first_name: row.first_name,
                last_name: row.last_name,
                avatar_url: row.avatar_url,
            },
            preferences: Preferences::from_stored(row.preferences),
        }
    }
}

/// The SQL that differs between the two databases; the queries around it are shared.
struct Dialect {
    /// A user joined with their preferences, timestamps as RFC 3339 text.
    select: &'static str,
    /// Stores `$2` (JSON text) as user `$1`'s preferences.
    insert_preferences: &'static str,
    /// Replaces user `$1`'s preferences with `$2` (JSON text).
    upsert_preferences: &'static str,
    /// The current time, as the `updated_at` column stores it.
    now: &'static str,
}

const SQLITE: Dialect = Dialect {
    select: "SELECT u.id, u.username, u.email, u.is_active, u.created_at, u.updated_at,
            u.first_name, u.last_name, u.avatar_url, p.preferences
         FROM users u LEFT JOIN user_preferences p ON p.user_id = u.id",
    insert_preferences: "INSERT INTO user_preferences (user_id, preferences) VALUES ($1, $2)",
    upsert_preferences: "INSERT INTO user_preferences (user_id, preferences) VALUES ($1, $2)
         ON CONFLICT (user_id) DO UPDATE SET preferences = excluded.preferences,
         updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
    now: "strftime('%Y-%m-%dT%H:%M:%SZ', 'now')",
};

const POSTGRES: Dialect = Dialect {
    select: "SELECT u.id, u.username, u.email, u.is_active,
            to_char(u.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at,
            to_char(u.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS updated_at,
            u.first_name, u.last_name, u.avatar_url, p.preferences::text AS preferences
         FROM users u LEFT JOIN user_preferences p ON p.user_id = u.id",
    insert_preferences: "INSERT INTO user_preferences (user_id, preferences) VALUES ($1, $2::jsonb)",
    upsert_preferences: "INSERT INTO user_preferences (user_id, preferences) VALUES ($1, $2::jsonb)
         ON CONFLICT (user_id) DO UPDATE SET preferences = excluded.preferences, updated_at = now()",
    now: "now()",
};

fn conflict_or_internal(error: sqlx::Error, new: &NewUser) -> ApiError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => ApiError::Conflict(format!(
            "a user with username `{}` or email `{}` already exists",
            new.username, new.email
        )),
        _ => ApiError::Internal(error),
    }
}

impl UserStore {
    async fn insert(&self, new: NewUser) -> Result<User, ApiError> {
        let id = match self {
            Self::Sqlite(pool) => Queries { pool, dialect: &SQLITE }.insert(&new).await,
            Self::Postgres(pool) => {
                Queries {
                    pool,
                    dialect: &POSTGRES,
                }
                .insert(&new)
                .await
            }
        }?;
        self.get(id)
            .await?
            .ok_or_else(|| ApiError::NotFound(format!("user {id} vanished after it was created")))
    }

    async fn update(&self, id: i64, new: NewUser) -> Result<Option<User>, ApiError> {
        let found = match self {
            Self::Sqlite(pool) => Queries { pool, dialect: &SQLITE }.update(id, &new).await,
            Self::Postgres(pool) => {
                Queries {
                    pool,
                    dialect: &POSTGRES,
                }
                .update(id, &new)
                .await
            }
        }?;
        if !found {
            return Ok(None);
        }
        self.get(id).await
    }

    async fn get(&self, id: i64) -> Result<Option<User>, ApiError> {
        let row = match self {
            Self::Sqlite(pool) => Queries { pool, dialect: &SQLITE }.get(id).await,
            Self::Postgres(pool) => {
                Queries {
                    pool,
                    dialect: &POSTGRES,
                }
                .get(id)
                .await
            }
        }
        .map_err(ApiError::Internal)?;
        Ok(row.map(User::from))
    }

    async fn page(&self, after: i64, limit: u32) -> Result<Page<User>, ApiError> {
        // Keyset pagination: stable under inserts, no OFFSET scans.
        let fetch = i64::from(limit) + 1;
        let (rows, cut) = match self {
            Self::Sqlite(pool) => Queries { pool, dialect: &SQLITE }.after(after, fetch).await,
            Self::Postgres(pool) => {
                Queries {
                    pool,
                    dialect: &POSTGRES,
                }
                .after(after, fetch)
                .await
            }
        }
        .map_err(ApiError::Internal)?;
        let mut items: Vec<User> = rows.into_iter().map(User::from).collect();
        let next_cursor = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|user| user.id.to_string())
        } else if cut {
            items.last().map(|user| user.id.to_string())
        } else {
            None
        };
        Ok(Page { items, next_cursor })
    }
}

/// The queries, written once for any database that can store a user (`$N` placeholders work
/// in both SQLite and PostgreSQL).
mod queries {
    use futures_util::TryStreamExt as _;
    use sqlx::{AssertSqlSafe, ColumnIndex, Database, Decode, Encode, Executor, FromRow, IntoArguments, Pool, Type};

    use super::{ApiError, Dialect, NewUser, UserRow, conflict_or_internal};

    pub(super) struct Queries<'a, DB: Database> {
        pub(super) pool: &'a Pool<DB>,
        pub(super) dialect: &'a Dialect,
    }

    impl<DB> Queries<'_, DB>
    where
        DB: Database,
        for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
        for<'c> &'c Pool<DB>: Executor<'c, Database = DB>,
        DB::Arguments: IntoArguments<DB>,
        for<'q> String: Encode<'q, DB> + Type<DB>,
        for<'q> Option<String>: Encode<'q, DB> + Type<DB>,
        for<'q> bool: Encode<'q, DB> + Type<DB>,
        for<'q> i64: Encode<'q, DB> + Decode<'q, DB> + Type<DB>,
        for<'r> UserRow: FromRow<'r, DB::Row>,
        usize: ColumnIndex<DB::Row>,
    {
        /// Inserts the user and their preferences in one transaction; returns the new id.
        pub(super) async fn insert(&self, new: &NewUser) -> Result<i64, ApiError> {
            let profile = new.profile.clone().unwrap_or_default();
            let mut tx = self.pool.begin().await.map_err(ApiError::Internal)?;
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO users (username, email, is_active, first_name, last_name, avatar_url)
                 VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
            )
            .bind(new.username.clone())
            .bind(new.email.clone())
            .bind(new.is_active)
            .bind(profile.first_name)
            .bind(profile.last_name)
            .bind(profile.avatar_url)
            .fetch_one(&mut *tx)
            .await
            .map_err(|error| conflict_or_internal(error, new))?;
            sqlx::query(self.dialect.insert_preferences)
                .bind(id)
                .bind(new.preferences.to_string())
                .execute(&mut *tx)
                .await
                .map_err(ApiError::Internal)?;
            tx.commit().await.map_err(ApiError::Internal)?;
            Ok(id)
        }

        /// Replaces user `id` and their preferences in one transaction; false when there is no
        /// such user.
        pub(super) async fn update(&self, id: i64, new: &NewUser) -> Result<bool, ApiError> {
            let profile = new.profile.clone().unwrap_or_default();
            let mut tx = self.pool.begin().await.map_err(ApiError::Internal)?;
            let updated: Option<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
                "UPDATE users SET username = $1, email = $2, is_active = $3, first_name = $4,
                 last_name = $5, avatar_url = $6, updated_at = {} WHERE id = $7 RETURNING id",
                self.dialect.now
            )))
            .bind(new.username.clone())
            .bind(new.email.clone())
            .bind(new.is_active)
            .bind(profile.first_name)
            .bind(profile.last_name)
            .bind(profile.avatar_url)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(|error| conflict_or_internal(error, new))?;
            if updated.is_none() {
                return Ok(false);
            }
            sqlx::query(self.dialect.upsert_preferences)
                .bind(id)
                .bind(new.preferences.to_string())
                .execute(&mut *tx)
                .await
                .map_err(ApiError::Internal)?;
            tx.commit().await.map_err(ApiError::Internal)?;
            Ok(true)
        }

        pub(super) async fn get(&self, id: i64) -> Result<Option<UserRow>, sqlx::Error> {
            sqlx::query_as(AssertSqlSafe(format!("{} WHERE u.id = $1", self.dialect.select)))
                .bind(id)
                .fetch_optional(self.pool)
                .await
        }

        /// Up to `limit` users with ids above `after`, in id order, read one by one until
        /// their preferences reach [`PAGE_BYTES`](super::PAGE_BYTES); `true` when it stopped
        /// there.
        pub(super) async fn after(&self, after: i64, limit: i64) -> Result<(Vec<UserRow>, bool), sqlx::Error> {
            let query = format!("{} WHERE u.id > $1 ORDER BY u.id LIMIT $2", self.dialect.select);
            let mut rows = sqlx::query_as::<_, UserRow>(AssertSqlSafe(query))
                .bind(after)
                .bind(limit)
                .fetch(self.pool);
            let mut page = Vec::new();
            let mut bytes = 0;
            while let Some(row) = rows.try_next().await? {
                bytes += row.preferences.as_ref().map_or(0, String::len);
                page.push(row);
                if bytes >= super::PAGE_BYTES {
                    return Ok((page, true));
                }
            }
            Ok((page, false))
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
struct Shared {
    store: UserStore,
    events: Option<Events>,
    cache: Option<UserCache>,
}

impl FromRef<Shared> for Option<UserCache> {
    fn from_ref(shared: &Shared) -> Self {
        shared.cache.clone()
    }
}

impl FromRef<Shared> for UserStore {
    fn from_ref(shared: &Shared) -> Self {
        shared.store.clone()
    }
}

impl FromRef<Shared> for Option<Events> {
    fn from_ref(shared: &Shared) -> Self {
        shared.events.clone()
    }
}

/// The users routes (`/api/users`, `/api/users/{id}`), declared once for every version.
/// With `events`, each user created is announced (`user.created`); with `cache`, single-user
/// reads go through Redis.
pub fn router(store: UserStore, events: Option<Events>, cache: Option<UserCache>) -> Router {
    Router::new()
        .route("/api/users", get(list).post(create))
        .route("/api/users/{id}", get(get_one).put(update).patch(update))
        // Tighter than the service-wide limit: a user is small.
        .route_layer(RequestBodyLimitLayer::new(MAX_BODY))
        .with_state(Shared { store, events, cache })
}

async fn create(
    State(store): State<UserStore>,
    State(events): State<Option<Events>>,
    headers: HeaderMap,
    VersionedJson(new): VersionedJson<NewUser>,
) -> Result<Response, ApiError> {
    validate(&new)?;
    let user = store.insert(new).await?;
    if let Some(events) = events {
        let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
        if let Err(error) = events.publish(&UserEvent::created(&user, user_agent)).await {
            tracing::warn!(user = user.id, %error, "user created, but its event was not published");
        }
    }
    let location = format!("/api/users/{}", user.id);
    Ok(([(header::LOCATION, location)], Versioned::created(user)).into_response())
}

/// `PUT /api/users/{id}` (the whole user, as the client's version sees it) and `PATCH` (a
/// JSON merge patch): applied onto the stored user, so fields the client's version cannot see
/// keep their values. Announces `user.updated` and drops the cached copy.
async fn update(
    State(store): State<UserStore>,
    State(events): State<Option<Events>>,
    State(cache): State<Option<UserCache>>,
    headers: HeaderMap,
    id: Result<Path<String>, PathRejection>,
    update: VersionedUpdate<NewUser>,
) -> Result<Versioned<User>, ApiError> {
    let id = user_id(id)?;
    let stored = store
        .get(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user with id {id}")))?;
    let new = update.onto(&stored)?;
    validate(&new)?;
    let user = store
        .update(id, new)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no user with id {id}")))?;
    if let Some(cache) = &cache {
        cache.forget(id).await;
    }
    if let Some(events) = events {
        let user_agent = headers.get(header::USER_AGENT).and_then(|v| v.to_str().ok());
        if let Err(error) = events.publish(&UserEvent::updated(&user, user_agent)).await {
            tracing::warn!(user = user.id, %error, "user updated, but its event was not published");
        }
    }
    Ok(Versioned::ok(user))
}

/// A user id as the path spells it: decimal digits only (`+1`, ` 1`, `01e0` name no user), so
/// one user has one URL.
fn user_id(id: Result<Path<String>, PathRejection>) -> Result<i64, ApiError> {
    let not_found = || ApiError::NotFound("user ids are positive whole numbers".to_owned());
    let Ok(Path(id)) = id else {
        return Err(not_found());
    };
    if id.is_empty() || !id.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(not_found());
    }
    id.parse().map_err(|_| not_found())
}

/// Characters a name must not hold: control characters (NUL, escapes, newlines) and the
/// invisible formatting ones that make text display differently from what it is (bidi
/// overrides and isolates, zero-width joiners).
fn is_hostile(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{061C}' | '\u{FEFF}')
}

fn validate(new: &NewUser) -> Result<(), ApiError> {
    if new.username.trim().is_empty() {
        return Err(ApiError::Invalid("username must not be empty".to_owned()));
    }
    for (field, value) in [("username", &new.username), ("email", &new.email)] {
        if value.chars().any(is_hostile) {
            return Err(ApiError::Invalid(format!(
                "{field} must not contain control or invisible formatting characters"
            )));
        }
    }
    if !new.email.contains('@') {
        return Err(ApiError::Invalid(format!(
            "`{}` is not an email address",
            short(&new.email)
        )));
    }
    if !new.preferences.is_object() {
        return Err(ApiError::Invalid("preferences must be a JSON object".to_owned()));
    }
    let size = new.preferences.to_string().len();
    if size > MAX_PREFERENCES {
        return Err(ApiError::Invalid(format!(
            "preferences take {size} bytes; at most {MAX_PREFERENCES} are accepted"
        )));
    }
    if depth(&new.preferences) > MAX_DEPTH {
        return Err(ApiError::Invalid(format!(
            "preferences are nested more than {MAX_DEPTH} levels deep"
        )));
    }
    Ok(())
}

/// A client's text cut to a short prefix for an error message.
fn short(text: &str) -> String {
    const ECHO: usize = 32;
    let mut out: String = text.chars().take(ECHO).collect();
    if text.chars().nth(ECHO).is_some() {
        out.push('…');
    }
    out
}

/// Nesting depth of a JSON value: a scalar is 0, `{}` and `[]` are 1.
fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

async fn get_one(
    State(store): State<UserStore>,
    State(cache): State<Option<UserCache>>,
    id: Result<Path<String>, PathRejection>,
) -> Result<Versioned<User>, ApiError> {
    let id = user_id(id)?;
    if let Some(cache) = &cache
        && let Some(user) = cache.get(id).await
    {
        return Ok(Versioned::ok(user));
    }
    match store.get(id).await? {
        Some(user) => {
            if let Some(cache) = &cache {
                cache.put(&user).await;
            }
            Ok(Versioned::ok(user))
        }
        None => Err(ApiError::NotFound(format!("no user with id {id}"))),
    }
}

/// `?limit=` (1 to 100, default 20) and `?cursor=` (from the previous page).
#[derive(Debug, Deserialize)]
struct PageParams {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn list(
    State(store): State<UserStore>,
    params: Result<Query<PageParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Versioned<Page<User>>, ApiError> {
    let Query(params) = params.map_err(|rejection| ApiError::BadRequest(rejection.body_text()))?;
    let limit = params.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadRequest("limit must be between 1 and 100".to_owned()));
    }
    let after = match params.cursor.as_deref() {
        None | Some("") => 0,
        Some(cursor) => cursor
            .parse()
            .map_err(|_| ApiError::BadRequest(format!("`{cursor}` is not a cursor from this API")))?,
    };
    Ok(Versioned::ok(store.page(after, limit).await?))
}

/// Errors the users API answers with, as RFC 9457 problem documents.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400.
    #[error("{0}")]
    BadRequest(String),
    /// 404.
    #[error("{0}")]
    NotFound(String),
    /// 409.
    #[error("{0}")]
    Conflict(String),
    /// 422.
    #[error("{0}")]
    Invalid(String),
    /// A request body the versioning layer refused (its own problem).
    #[error("{}", .0.problem())]
    Rejected(VersionedJsonRejection),
    /// 500; the details are logged, not sent.
    #[error("internal error")]
    Internal(#[source] sqlx::Error),
}

impl From<VersionedJsonRejection> for ApiError {
    fn from(rejection: VersionedJsonRejection) -> Self {
        Self::Rejected(rejection)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let problem = match self {
            Self::BadRequest(detail) => Problem::bad_request(detail),
            Self::NotFound(detail) => Problem::not_found(detail),
            Self::Conflict(detail) => Problem::conflict(detail),
            Self::Invalid(detail) => Problem::unprocessable(detail).with_title("Invalid user"),
            Self::Rejected(rejection) => return rejection.into_response(),
            Self::Internal(error) => {
                tracing::error!(%error, "users API failed");
                Problem::internal()
            }
        };
        problem.into_response()
    }
}
