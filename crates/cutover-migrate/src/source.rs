//! Migrations and where they come from: a directory, files embedded at compile time, or code.
//!
//! File names follow sqlx: `<version>_<name>.up.sql` with an optional `<version>_<name>.down.sql`
//! (a plain `<version>_<name>.sql` is an up migration without a down). Header comments carry
//! directives:
//!
//! ```sql
//! -- cutover:phase expand               -- expand (default) | backfill | contract
//! -- cutover:transaction auto           -- auto (default) | on | off; sqlx's `-- no-transaction` = off
//! -- cutover:lock-timeout 2s            -- per statement (default 1s)
//! -- cutover:allow adding-field-with-default, ban-drop-column
//! -- cutover:backfill table=users key=id batch=1000 pause=100ms
//! ```
//!
//! Any other `-- cutover:` line, or a malformed value, stops the run with the file and line.

use std::{fmt, future::Future, path::Path, sync::Arc, time::Duration};

use crate::{
    MigrateError, Phase, checksum, lint,
    naming::{self, FileName, read_tree},
};

/// Whether a migration runs in one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TransactionMode {
    /// In one transaction with its ledger row, unless a statement cannot run in one (then
    /// one statement per round-trip, with progress recorded per statement).
    Auto,
    /// Always in one transaction; a statement that cannot be is an error before anything runs.
    On,
    /// One statement per round-trip, progress recorded per statement.
    Off,
}

/// A batched backfill: the migration's statement runs once per batch of keys, each batch in its
/// own short transaction with the checkpoint committed alongside.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BackfillSpec {
    /// The table walked.
    pub table: String,
    /// Its integer key column, walked in order.
    pub key: String,
    /// Rows per batch (default 1,000, as in the brief).
    pub batch_size: u32,
    /// Pause between batches (default 100 ms, as in the brief).
    #[serde(serialize_with = "crate::ledger::serialize_duration")]
    pub pause: Duration,
}

/// Data changes SQL cannot express, written in Rust.
pub trait RustMigration: Send + Sync + 'static {
    /// Apply the migration through `connection`, inside the migration's transaction.
    fn up<'a>(
        &'a self,
        connection: &'a mut crate::Connection<'_>,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), crate::BoxError>> + Send + 'a>>;
}

/// What a migration does.
#[derive(Clone)]
pub enum Body {
    /// SQL text.
    Sql(String),
    /// Rust code.
    Rust(Arc<dyn RustMigration>),
}

impl fmt::Debug for Body {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sql(sql) => f.debug_tuple("Sql").field(&sql.len()).finish(),
            Self::Rust(_) => f.write_str("Rust"),
        }
    }
}

/// One migration.
#[derive(Debug, Clone)]
pub struct Migration {
    /// Version; migrations apply in ascending order.
    pub version: i64,
    /// Name, from the file name.
    pub name: String,
    /// When it may run.
    pub phase: Phase,
    /// Transaction mode.
    pub transaction: TransactionMode,
    /// `lock_timeout` per statement, if not the default.
    pub lock_timeout: Option<Duration>,
    /// Lint rules this migration is allowed to break.
    pub allow: Vec<String>,
    /// The up migration.
    pub up: Body,
    /// The down migration, if any.
    pub down: Option<String>,
    /// Normalized checksum of the up migration (`v1:sha256:...`).
    pub checksum: String,
    /// Where it came from, for messages.
    pub origin: String,
    /// Set for batched backfills.
    pub backfill: Option<BackfillSpec>,
}

impl Migration {
    /// `4 (backfill_notification_settings)`.
    pub fn label(&self) -> String {
        format!("{} ({})", self.version, self.name)
    }

    /// The up SQL, when the migration is SQL.
    pub fn sql(&self) -> Option<&str> {
        match &self.up {
            Body::Sql(sql) => Some(sql),
            Body::Rust(_) => None,
        }
    }

    /// A migration written in Rust. Its checksum covers the version, name and `fingerprint`
    /// (change the fingerprint when the code changes meaning).
    pub fn rust(version: i64, name: &str, phase: Phase, fingerprint: &str, migration: impl RustMigration) -> Self {
        Self {
            version,
            name: name.to_owned(),
            phase,
            transaction: TransactionMode::On,
            lock_timeout: None,
            allow: Vec::new(),
            up: Body::Rust(Arc::new(migration)),
            down: None,
            checksum: checksum(&format!("rust:{version}:{name}:{fingerprint}")),
            origin: format!("rust:{name}"),
            backfill: None,
        }
    }
}

/// An ordered, validated set of migrations.
#[derive(Debug, Clone, Default)]
pub struct MigrationSet {
    migrations: Vec<Migration>,
}

struct Pending {
    version: i64,
    name: String,
    up: Option<(String, String)>,
    down: Option<(String, String)>,
}

impl MigrationSet {
    /// Read every migration in `dir`, in any of the layouts in [the crate docs](crate#migration-files):
    /// `<version>_<name>.up.sql` files, `<version>_<name>/up.sql` directories (diesel) or
    /// `V<version>__<name>.sql` files (Flyway, refinery). Other files are ignored.
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Self, MigrateError> {
        Self::from_files(read_tree(dir.as_ref(), "sql")?)
    }

    /// Migrations from `(path, contents)` pairs, named as [`from_dir`](Self::from_dir) reads them
    /// (a diesel `up.sql` is known by its directory: pass `dir/2024-01-31-101500_name/up.sql`).
    pub fn from_files(files: impl IntoIterator<Item = (String, String)>) -> Result<Self, MigrateError> {
        let mut pending: Vec<Pending> = Vec::new();
        let mut outside_transaction: Vec<String> = Vec::new();
        for (origin, text) in files {
            if let Some(dir) = origin.strip_suffix("metadata.toml") {
                // diesel's per-migration settings: only `run_in_transaction = false` matters.
                let off = text
                    .lines()
                    .any(|line| line.replace(' ', "").trim() == "run_in_transaction=false");
                if off {
                    outside_transaction.push(dir.to_owned());
                }
                continue;
            }
            let Some(FileName { version, name, down }) = naming::classify(&origin, "sql")? else {
                continue;
            };
            let entry = match pending.iter_mut().find(|p| p.version == version) {
                Some(entry) => entry,
                None => {
                    pending.push(Pending {
                        version,
                        name: name.clone(),
                        up: None,
                        down: None,
                    });
                    pending.last_mut().expect("just pushed")
                }
            };
            if entry.name != name {
                let other = entry
                    .up
                    .as_ref()
                    .or(entry.down.as_ref())
                    .map_or("", |(o, _)| o.as_str())
                    .to_owned();
                return Err(MigrateError::DuplicateVersion {
                    version,
                    first: other,
                    second: origin,
                });
            }
            let slot = if down { &mut entry.down } else { &mut entry.up };
            if let Some((first, _)) = slot {
                return Err(MigrateError::DuplicateVersion {
                    version,
                    first: first.clone(),
                    second: origin,
                });
            }
            *slot = Some((origin, text));
        }
        let mut migrations = Vec::new();
        for entry in pending {
            let Some((origin, text)) = entry.up else {
                let (origin, _) = entry.down.unwrap_or_default();
                return Err(MigrateError::Source {
                    origin,
                    line: None,
                    message: "a down migration without its up migration".to_owned(),
                });
            };
            let in_diesel_dir_without_transaction = outside_transaction
                .iter()
                .any(|dir| origin.strip_prefix(dir.as_str()) == Some("up.sql"));
            let mut migration = parse_migration(entry.version, entry.name, origin, text, entry.down.map(|(_, t)| t))?;
            if in_diesel_dir_without_transaction {
                migration.transaction = TransactionMode::Off;
            }
            migrations.push(migration);
        }
        migrations.sort_by_key(|m| m.version);
        Ok(Self { migrations })
    }

    /// Add a migration written in Rust.
    pub fn with(mut self, migration: Migration) -> Result<Self, MigrateError> {
        crate::engine::insert_unique(&mut self.migrations, migration)?;
        Ok(self)
    }

    /// Every migration, in version order.
    pub fn migrations(&self) -> &[Migration] {
        &self.migrations
    }

    /// The migration with `version`.
    pub fn get(&self, version: i64) -> Option<&Migration> {
        self.migrations.iter().find(|m| m.version == version)
    }
}

fn parse_migration(
    version: i64,
    name: String,
    origin: String,
    text: String,
    down: Option<String>,
) -> Result<Migration, MigrateError> {
    let mut migration = Migration {
        version,
        name,
        phase: Phase::Expand,
        transaction: TransactionMode::Auto,
        lock_timeout: None,
        allow: Vec::new(),
        checksum: checksum(&text),
        up: Body::Sql(String::new()),
        down,
        origin,
        backfill: None,
    };
    for (index, line) in text.lines().enumerate() {
        let line_number = index + 1;
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        let Some(comment) = trimmed.strip_prefix("--") else {
            // Directives only live in the header.
            break;
        };
        let comment = comment.trim();
        let error = |message: String| MigrateError::Source {
            origin: migration.origin.clone(),
            line: Some(line_number),
            message,
        };
        if comment == "no-transaction" {
            migration.transaction = TransactionMode::Off;
            continue;
        }
        let Some(directive) = comment.strip_prefix("cutover:") else {
            continue;
        };
        let (key, value) = directive.split_once(char::is_whitespace).unwrap_or((directive, ""));
        let value = value.trim();
        match key {
            "phase" => {
                migration.phase = Phase::parse(value)
                    .ok_or_else(|| error(format!("unknown phase `{value}`; use expand, backfill or contract")))?;
            }
            "transaction" => {
                migration.transaction = match value {
                    "auto" => TransactionMode::Auto,
                    "on" | "always" => TransactionMode::On,
                    "off" | "never" => TransactionMode::Off,
                    _ => {
                        return Err(error(format!(
                            "unknown transaction mode `{value}`; use auto, on or off"
                        )));
                    }
                };
            }
            "lock-timeout" => {
                let timeout = humantime::parse_duration(value)
                    .map_err(|e| error(format!("`{value}` is not a duration ({e}); use e.g. `1s` or `500ms`")))?;
                if timeout.is_zero() {
                    return Err(error(
                        "a zero lock timeout would wait forever; use e.g. `1s`".to_owned(),
                    ));
                }
                migration.lock_timeout = Some(timeout);
            }
            "allow" => {
                for rule in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
                    if !lint::is_known_rule(rule) {
                        return Err(error(format!(
                            "unknown lint rule `{rule}`; see `cutover-migrate lint --rules` for the names"
                        )));
                    }
                    migration.allow.push(rule.to_owned());
                }
            }
            "backfill" => migration.backfill = Some(parse_backfill(value).map_err(error)?),
            other => {
                return Err(error(format!(
                    "unknown directive `cutover:{other}`; known: phase, transaction, lock-timeout, allow, backfill"
                )));
            }
        }
    }
    if migration.backfill.is_some() && migration.transaction == TransactionMode::Off {
        return Err(MigrateError::Source {
            origin: migration.origin,
            line: None,
            message: "a backfill runs each batch in its own transaction; drop `transaction off`".to_owned(),
        });
    }
    migration.up = Body::Sql(text);
    Ok(migration)
}

fn parse_backfill(value: &str) -> Result<BackfillSpec, String> {
    let mut spec = BackfillSpec {
        table: String::new(),
        key: "id".to_owned(),
        batch_size: 1000,
        pause: Duration::from_millis(100),
    };
    for pair in value.split_whitespace() {
        let (key, val) = pair
            .split_once('=')
            .ok_or_else(|| format!("expected key=value in the backfill directive, got `{pair}`"))?;
        match key {
            "table" => spec.table = val.to_owned(),
            "key" => spec.key = val.to_owned(),
            "batch" => {
                spec.batch_size = val
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("batch must be a positive number, got `{val}`"))?;
            }
            "pause" => {
                spec.pause = humantime::parse_duration(val).map_err(|e| format!("pause `{val}`: {e}"))?;
            }
            other => {
                return Err(format!(
                    "unknown backfill setting `{other}`; known: table, key, batch, pause"
                ));
            }
        }
    }
    let identifier = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !identifier(&spec.table) {
        return Err("the backfill directive needs `table=<name>`".to_owned());
    }
    if !identifier(&spec.key) {
        return Err(format!("`{}` is not a column name", spec.key));
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(p, t)| ((*p).to_owned(), (*t).to_owned())).collect()
    }

    #[test]
    fn checksums_ignore_line_endings_bom_and_trailing_whitespace() {
        let base = checksum("CREATE TABLE a (id int);\nSELECT 1;");
        assert!(base.starts_with("v1:sha256:"));
        assert_eq!(
            checksum("\u{feff}CREATE TABLE a (id int);  \r\nSELECT 1;\r\n\r\n"),
            base
        );
        assert_ne!(checksum("CREATE TABLE a (id bigint);\nSELECT 1;"), base);
    }

    #[test]
    fn a_version_too_wide_names_the_limit() {
        let error = MigrationSet::from_files(files(&[("m/12345678901234567890_init.up.sql", "SELECT 1;")]))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(
                "version 12345678901234567890 is too large: versions go up to 9223372036854775807 (19 digits"
            ),
            "{error}"
        );
        // The widest that fits still parses.
        let set = MigrationSet::from_files(files(&[("m/9223372036854775807_last.up.sql", "SELECT 1;")])).unwrap();
        assert_eq!(set.migrations()[0].version, i64::MAX);
    }

    #[test]
    fn parses_names_directives_and_pairs_up_with_down() {
        let set = MigrationSet::from_files(files(&[
            ("m/0002_add_index.up.sql", "-- cutover:transaction off\n-- cutover:lock-timeout 500ms\nCREATE INDEX CONCURRENTLY i ON t (a);"),
            ("m/0002_add_index.down.sql", "DROP INDEX CONCURRENTLY i;"),
            ("m/0001_init.sql", "-- a comment\n-- no-transaction\nCREATE TABLE t (a int);"),
            ("m/0003_fill.up.sql", "-- cutover:phase backfill\n-- cutover:backfill table=t key=a batch=50 pause=10ms\nUPDATE t SET a = a WHERE a > $1 AND a <= $2;"),
            ("m/README.md", "ignored"),
        ]))
        .unwrap();
        let versions: Vec<i64> = set.migrations().iter().map(|m| m.version).collect();
        assert_eq!(versions, [1, 2, 3]);
        let init = set.get(1).unwrap();
        assert_eq!(init.transaction, TransactionMode::Off);
        assert!(init.down.is_none());
        let index = set.get(2).unwrap();
        assert_eq!(index.lock_timeout, Some(Duration::from_millis(500)));
        assert_eq!(index.down.as_deref(), Some("DROP INDEX CONCURRENTLY i;"));
        let fill = set.get(3).unwrap();
        assert_eq!(fill.phase, Phase::Backfill);
        assert_eq!(
            fill.backfill,
            Some(BackfillSpec {
                table: "t".into(),
                key: "a".into(),
                batch_size: 50,
                pause: Duration::from_millis(10)
            })
        );
    }

    #[test]
    fn every_mistake_names_the_file_and_line() {
        let error = |list: &[(&str, &str)]| MigrationSet::from_files(files(list)).unwrap_err().to_string();
        assert_eq!(
            error(&[("m/0001_a.up.sql", "-- intro\n-- cutover:phaze expand\nSELECT 1;")]),
            "m/0001_a.up.sql:2: unknown directive `cutover:phaze`; known: phase, transaction, lock-timeout, allow, backfill"
        );
        assert!(
            error(&[("m/0001_a.up.sql", "-- cutover:lock-timeout soon\nSELECT 1;")])
                .starts_with("m/0001_a.up.sql:1: `soon` is not a duration")
        );
        assert!(
            error(&[("m/0001_a.up.sql", "-- cutover:allow no-such-rule\nSELECT 1;")])
                .contains("unknown lint rule `no-such-rule`")
        );
        assert!(error(&[("m/x_a.up.sql", "SELECT 1;")]).starts_with("m/x_a.up.sql: expected a name like"));
        assert_eq!(
            error(&[("m/0001_a.up.sql", "SELECT 1;"), ("m/0001_b.up.sql", "SELECT 2;")]),
            "version 1 is defined twice: m/0001_a.up.sql and m/0001_b.up.sql"
        );
        assert!(error(&[("m/0004_x.down.sql", "SELECT 1;")]).contains("a down migration without its up migration"));
        assert!(
            error(&[("m/0001_a.up.sql", "-- cutover:backfill key=id\nSELECT 1;")]).contains("needs `table=<name>`")
        );
    }

    #[test]
    fn reads_diesel_and_flyway_layouts_from_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let diesel = dir.path().join("2024-01-31-101500_create_users");
        std::fs::create_dir(&diesel).unwrap();
        std::fs::write(diesel.join("up.sql"), "CREATE TABLE users (id bigint);").unwrap();
        std::fs::write(diesel.join("down.sql"), "DROP TABLE users;").unwrap();
        let index = dir.path().join("2024-02-01-000000_index_users");
        std::fs::create_dir(&index).unwrap();
        std::fs::write(index.join("up.sql"), "CREATE INDEX CONCURRENTLY i ON users (id);").unwrap();
        std::fs::write(index.join("metadata.toml"), "run_in_transaction = false\n").unwrap();
        std::fs::write(
            dir.path().join("V20240301000000__add_email.sql"),
            "ALTER TABLE users ADD email text;",
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
        let set = MigrationSet::from_dir(dir.path()).unwrap();
        let found: Vec<(i64, &str, bool)> = set
            .migrations()
            .iter()
            .map(|m| (m.version, m.name.as_str(), m.down.is_some()))
            .collect();
        assert_eq!(
            found,
            [
                (20_240_131_101_500, "create_users", true),
                (20_240_201_000_000, "index_users", false),
                (20_240_301_000_000, "add_email", false)
            ]
        );
        assert_eq!(set.migrations()[0].transaction, TransactionMode::Auto);
        assert_eq!(set.migrations()[1].transaction, TransactionMode::Off);
    }

    #[test]
    fn directives_after_the_header_are_ordinary_comments() {
        let set = MigrationSet::from_files(files(&[("m/0001_a.up.sql", "SELECT 1;\n-- cutover:whatever\n")])).unwrap();
        assert_eq!(set.get(1).unwrap().phase, Phase::Expand);
    }
}
