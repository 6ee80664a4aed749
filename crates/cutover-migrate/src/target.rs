//! What to migrate: a URL, or a pool or connection the application already holds.

/// The database a [`Migrator`](crate::Migrator) works on: a URL (`postgres://...`,
/// `sqlite://...`), or a pool or connection the application already has, whatever way it was
/// configured (an in-memory SQLite pool included).
///
/// From a PostgreSQL pool the runner opens connections of its own with the pool's options, so
/// the advisory lock and the `lock_timeout` it sets never go back into the pool with a
/// connection. From a SQLite pool it borrows one connection for the run (an in-memory database
/// exists only through the pool), and leaves no session setting behind on it.
///
/// A connection (`&mut PgConnection`, `&mut SqliteConnection`) is used for everything, the
/// PostgreSQL advisory lock included (released when the run ends); it must not be inside a
/// transaction, since each migration commits its own.
///
/// ```no_run
/// use cutover_migrate::{MigrationSet, Migrator, UpOptions};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let pool = sqlx::SqlitePool::connect("sqlite::memory:").await?;
/// let migrator = Migrator::new(MigrationSet::from_dir("migrations")?);
/// migrator.up(&pool, &UpOptions::default()).await?;
/// migrator.up("sqlite://app.db", &UpOptions::default()).await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Target<'a> {
    /// A database URL.
    Url(&'a str),
    /// A PostgreSQL pool.
    #[cfg(feature = "postgres")]
    Postgres(&'a sqlx::PgPool),
    /// A PostgreSQL connection, outside any transaction.
    #[cfg(feature = "postgres")]
    PostgresConnection(&'a mut sqlx::PgConnection),
    /// A SQLite pool.
    #[cfg(feature = "sqlite")]
    Sqlite(&'a sqlx::SqlitePool),
    /// A SQLite connection, outside any transaction.
    #[cfg(feature = "sqlite")]
    SqliteConnection(&'a mut sqlx::SqliteConnection),
}

impl Target<'_> {
    /// The URL, when the target is one.
    pub fn url(&self) -> Option<&str> {
        match self {
            Self::Url(url) => Some(url),
            #[cfg(any(feature = "postgres", feature = "sqlite"))]
            _ => None,
        }
    }
}

impl<'a> From<&'a str> for Target<'a> {
    fn from(url: &'a str) -> Self {
        Self::Url(url)
    }
}

impl<'a> From<&'a String> for Target<'a> {
    fn from(url: &'a String) -> Self {
        Self::Url(url)
    }
}

#[cfg(feature = "postgres")]
impl<'a> From<&'a sqlx::PgPool> for Target<'a> {
    fn from(pool: &'a sqlx::PgPool) -> Self {
        Self::Postgres(pool)
    }
}

#[cfg(feature = "sqlite")]
impl<'a> From<&'a sqlx::SqlitePool> for Target<'a> {
    fn from(pool: &'a sqlx::SqlitePool) -> Self {
        Self::Sqlite(pool)
    }
}

#[cfg(feature = "postgres")]
impl<'a> From<&'a mut sqlx::PgConnection> for Target<'a> {
    fn from(connection: &'a mut sqlx::PgConnection) -> Self {
        Self::PostgresConnection(connection)
    }
}

#[cfg(feature = "sqlite")]
impl<'a> From<&'a mut sqlx::SqliteConnection> for Target<'a> {
    fn from(connection: &'a mut sqlx::SqliteConnection) -> Self {
        Self::SqliteConnection(connection)
    }
}
