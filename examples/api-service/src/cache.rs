//! A read-through cache of users in Redis, when `REDIS_URL` is set.
//!
//! `GET /api/users/{id}` looks in Redis first (`api-service:user:{id}`, the newest
//! representation as JSON, 60 s) and falls back to the database; whatever the database returns
//! is stored for the next read. The cache is an optimization, never a dependency of a request:
//! if Redis fails, the read goes to the database and the failure is logged (the health check
//! reports Redis separately).

use std::time::Duration;

use redis::{AsyncCommands, aio::ConnectionManager};

use crate::users::User;

/// How long a cached user lives.
pub const TTL: Duration = Duration::from_secs(60);

/// The cache key of user `id`.
pub fn key(id: i64) -> String {
    format!("api-service:user:{id}")
}

/// Users cached in Redis.
#[derive(Clone)]
pub struct UserCache {
    redis: ConnectionManager,
}

impl std::fmt::Debug for UserCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserCache").finish_non_exhaustive()
    }
}

impl UserCache {
    /// Cache through `redis`.
    pub fn new(redis: ConnectionManager) -> Self {
        Self { redis }
    }

    /// The cached user, if any (`None` on a miss or when Redis fails).
    pub async fn get(&self, id: i64) -> Option<User> {
        let mut redis = self.redis.clone();
        match redis.get::<_, Option<String>>(key(id)).await {
            Ok(Some(json)) => serde_json::from_str(&json).ok(),
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, "user cache read failed; reading the database");
                None
            }
        }
    }

    /// Drop user `id` (after a change), so the next read goes to the database.
    pub async fn forget(&self, id: i64) {
        let mut redis = self.redis.clone();
        if let Err(error) = redis.del::<_, ()>(key(id)).await {
            tracing::warn!(%error, expires_in_s = TTL.as_secs(), "user cache delete failed; the cached copy expires on its own");
        }
    }

    /// Remember `user` for [`TTL`].
    pub async fn put(&self, user: &User) {
        let Ok(json) = serde_json::to_string(user) else { return };
        let mut redis = self.redis.clone();
        if let Err(error) = redis.set_ex::<_, _, ()>(key(user.id), json, TTL.as_secs()).await {
            tracing::warn!(%error, "user cache write failed");
        }
    }
}
