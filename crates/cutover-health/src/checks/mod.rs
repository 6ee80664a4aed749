//! Built-in checks, one cargo feature each.
//!
//! Every check borrows a client or pool the application already has (a clone of a pool is a
//! handle to the same pool) and never opens a connection of its own per run. A probe storm
//! therefore costs a dependency nothing: probes read the registry's snapshot, and the
//! snapshot is refreshed by one round at a time.
//!
//! | check | feature | what it does | critical by default |
//! | --- | --- | --- | --- |
//! | [`PostgresCheck`] | `postgres` | `SELECT 1` on a sqlx `PgPool`; reports pool size and idle connections | yes |
//! | [`SqliteCheck`] | `sqlite` | `SELECT 1` on a sqlx `SqlitePool` | yes |
//! | [`MongoCheck`] | `mongodb` | `ping` on a `mongodb::Client` | yes |
//! | [`RedisCheck`] | `redis` | `PING` on a `ConnectionManager`, expects `PONG` | yes |
//! | [`RabbitMqCheck`] | `rabbitmq` | connection status, then opens and closes a channel | yes |
//! | [`HttpCheck`] | `http` | `GET` an upstream health URL with a shared `reqwest::Client` | no |
//! | [`MemoryCheck`] | `memory` | memory used against the cgroup limit or the machine; warn 80 %, fail 90 % | no |
//! | [`DiskCheck`] | `disk` | used space of the filesystem holding a path; fail above 90 % | no |

#[cfg(feature = "disk")]
mod disk;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "memory")]
mod memory;
#[cfg(feature = "mongodb")]
mod mongodb;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "rabbitmq")]
mod rabbitmq;
#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "sqlite")]
mod sqlite;
#[cfg(any(feature = "memory", feature = "disk"))]
mod usage;

#[cfg(feature = "disk")]
pub use disk::DiskCheck;
#[cfg(feature = "http")]
pub use http::HttpCheck;
#[cfg(feature = "memory")]
pub use memory::MemoryCheck;
#[cfg(feature = "mongodb")]
pub use mongodb::MongoCheck;
#[cfg(feature = "postgres")]
pub use postgres::PostgresCheck;
#[cfg(feature = "rabbitmq")]
pub use rabbitmq::RabbitMqCheck;
#[cfg(feature = "redis")]
pub use redis::RedisCheck;
#[cfg(feature = "sqlite")]
pub use sqlite::SqliteCheck;
#[cfg(any(feature = "memory", feature = "disk"))]
pub use usage::{InvalidThresholds, Thresholds};

#[cfg(any(feature = "postgres", feature = "sqlite"))]
fn pool_outcome(size: u32, idle: usize) -> crate::Outcome {
    crate::Outcome::healthy().with_observed(serde_json::json!({ "size": size, "idle": idle }), "connections")
}
