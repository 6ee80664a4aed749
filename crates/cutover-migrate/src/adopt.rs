//! Adopting a database that was migrated before cutover-migrate: by hand (`baseline`), or by
//! another tool whose ledger is still there (`import`: sqlx, diesel, refinery, Flyway).
//!
//! Either way the adopted migrations get ledger rows marked `applied` without running, with
//! their files' checksums (so later edits are caught as usual), their down SQL, and
//! `adopted_from` saying where the record came from. Nothing is adopted unless everything is:
//! a version the other tool applied that no file has, a failed entry in its ledger, or a file
//! changed since the other tool ran it (where it stored a comparable checksum) stops the import
//! before any row is written.

use std::{collections::BTreeMap, fmt};

use serde::Serialize;
use sha2::{Digest, Sha384};

use crate::{
    MigrateError, Migration, Migrator,
    engine::{Backend, locked},
    migrator::Dialect,
    sql::{SqlBackend, SqlSession, with_sql_session},
};

/// A migration tool whose ledger [`Migrator::import`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum ForeignTool {
    /// sqlx (`_sqlx_migrations`; its SHA-384 checksums are verified).
    Sqlx,
    /// diesel (`__diesel_schema_migrations`; no checksums kept).
    Diesel,
    /// refinery (`refinery_schema_history`; its checksums hash Rust values and cannot be compared).
    Refinery,
    /// Flyway (`flyway_schema_history`; its CRC32 checksums are verified).
    Flyway,
}

impl ForeignTool {
    const ALL: [Self; 4] = [Self::Sqlx, Self::Diesel, Self::Refinery, Self::Flyway];

    /// The ledger table the tool keeps.
    pub const fn table(self) -> &'static str {
        match self {
            Self::Sqlx => "_sqlx_migrations",
            Self::Diesel => "__diesel_schema_migrations",
            Self::Refinery => "refinery_schema_history",
            Self::Flyway => "flyway_schema_history",
        }
    }

    /// `"sqlx"`, `"diesel"`, `"refinery"` or `"flyway"`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Sqlx => "sqlx",
            Self::Diesel => "diesel",
            Self::Refinery => "refinery",
            Self::Flyway => "flyway",
        }
    }

    /// Its rows, read as [`ForeignRow`]s.
    fn query(self, dialect: Dialect) -> String {
        let (text, int, boolean, bytes) = match dialect {
            Dialect::Postgres => ("text", "bigint", "boolean", "bytea"),
            Dialect::Sqlite => ("TEXT", "INTEGER", "BOOLEAN", "BLOB"),
        };
        let table = self.table();
        match self {
            Self::Sqlx => format!(
                "SELECT CAST(version AS {text}) AS version, description AS name, success, checksum AS sha384, \
                 CAST(NULL AS {int}) AS crc32, CAST(NULL AS {text}) AS kind FROM {table}"
            ),
            Self::Diesel => format!(
                "SELECT CAST(version AS {text}) AS version, CAST(NULL AS {text}) AS name, CAST(NULL AS {boolean}) AS success, \
                 CAST(NULL AS {bytes}) AS sha384, CAST(NULL AS {int}) AS crc32, CAST(NULL AS {text}) AS kind FROM {table}"
            ),
            Self::Refinery => format!(
                "SELECT CAST(version AS {text}) AS version, name, CAST(NULL AS {boolean}) AS success, \
                 CAST(NULL AS {bytes}) AS sha384, CAST(NULL AS {int}) AS crc32, CAST(NULL AS {text}) AS kind FROM {table}"
            ),
            Self::Flyway => format!(
                "SELECT version, description AS name, success, CAST(NULL AS {bytes}) AS sha384, \
                 CAST(checksum AS {int}) AS crc32, type AS kind FROM {table} ORDER BY installed_rank"
            ),
        }
    }
}

impl fmt::Display for ForeignTool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of another tool's ledger, in the shape every tool's query returns.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ForeignRow {
    version: Option<String>,
    name: Option<String>,
    success: Option<bool>,
    sha384: Option<Vec<u8>>,
    crc32: Option<i64>,
    kind: Option<String>,
}

/// What an adoption did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Adoption {
    /// `baseline`, or the tool whose ledger was imported.
    pub source: String,
    /// Versions now recorded as applied without having been run by cutover-migrate.
    pub adopted: Vec<i64>,
    /// Versions the ledger already had (left as they were).
    pub already_recorded: Vec<i64>,
    /// How many adopted migrations had their checksum compared with the other tool's.
    pub checksums_verified: usize,
    /// Things worth knowing that did not stop the adoption.
    pub warnings: Vec<String>,
}

impl fmt::Display for Adoption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.adopted.as_slice() {
            [] => write!(f, "nothing to adopt ({})", self.source)?,
            adopted => {
                write!(f, "recorded {} migration(s) as applied ({}", adopted.len(), self.source)?;
                if let (Some(first), Some(last)) = (adopted.first(), adopted.last()) {
                    write!(f, "; versions {first} to {last}")?;
                }
                if self.checksums_verified > 0 {
                    write!(f, "; {} checksum(s) verified", self.checksums_verified)?;
                }
                f.write_str(")")?;
            }
        }
        if !self.already_recorded.is_empty() {
            write!(f, "; {} already in the ledger", self.already_recorded.len())?;
        }
        self.warnings
            .iter()
            .try_for_each(|warning| write!(f, "\nnote: {warning}"))
    }
}

/// How [`Migrator::import`] treats what it finds.
#[derive(Debug, Clone, Copy, Default)]
pub struct ImportOptions {
    /// Which tool's ledger to read (default: the one present; an error when there are several).
    pub from: Option<ForeignTool>,
    /// Adopt migrations whose file changed since the other tool applied it (the other tool's
    /// checksum differs) instead of refusing. The ledger notes each one.
    pub accept_changed: bool,
}

impl Migrator {
    /// Record every migration up to `version` as applied without running it, for a database
    /// migrated by hand (or by a tool whose ledger is gone). Their checksums and down SQL are
    /// recorded as `up` would; `note` says why. Versions already in the ledger are left alone.
    ///
    /// ```no_run
    /// # async fn run(migrator: cutover_migrate::Migrator) -> Result<(), cutover_migrate::MigrateError> {
    /// let adoption = migrator.baseline("postgres://app@db/app", 135, "migrated with psql until 2026-11").await?;
    /// println!("{adoption}"); // recorded 135 migration(s) as applied (baseline; versions 1 to 135)
    /// # Ok(()) }
    /// ```
    pub async fn baseline(
        &self,
        target: impl Into<crate::Target<'_>>,
        version: i64,
        note: &str,
    ) -> Result<Adoption, MigrateError> {
        let chosen: Vec<&Migration> = self.set.migrations().iter().filter(|m| m.version <= version).collect();
        if chosen.is_empty() {
            return Err(MigrateError::Adoption(format!(
                "no migration has a version at or below {version}; the first is {}",
                self.set
                    .migrations()
                    .first()
                    .map_or_else(|| "(none: the directory is empty)".to_owned(), |m| m.label())
            )));
        }
        let note = format!("baseline: {note}");
        let chosen: Vec<(&Migration, String)> = chosen.into_iter().map(|m| (m, note.clone())).collect();
        with_sql_session!(SqlSession::open(self, target.into(), true).await?, |session| {
            locked(&mut session, async |backend| {
                backend.ensure_ledger().await?;
                let mut adoption = Adoption {
                    source: "baseline".to_owned(),
                    ..Adoption::default()
                };
                record(backend, &chosen, "baseline", &mut adoption).await?;
                Ok(adoption)
            })
            .await
        })
    }

    /// Adopt what another tool applied, from its ledger in the same database: sqlx, diesel,
    /// refinery or Flyway ([`ForeignTool`]). Each version it applied successfully is recorded as
    /// applied here, with the file's checksum, after comparing the file with the other tool's
    /// checksum where it kept a comparable one. Refused before writing anything when the other
    /// tool applied a version no file has, recorded a failure, or (without
    /// [`ImportOptions::accept_changed`]) ran a different text than the file holds now.
    pub async fn import(
        &self,
        target: impl Into<crate::Target<'_>>,
        options: ImportOptions,
    ) -> Result<Adoption, MigrateError> {
        with_sql_session!(SqlSession::open(self, target.into(), true).await?, |session| {
            locked(&mut session, async |backend| self.import_locked(backend, options).await).await
        })
    }

    async fn import_locked<B: SqlBackend>(
        &self,
        backend: &mut B,
        options: ImportOptions,
    ) -> Result<Adoption, MigrateError> {
        let tool = match options.from {
            Some(tool) => {
                if !backend.table_exists(tool.table()).await? {
                    return Err(MigrateError::Adoption(format!(
                        "no {tool} ledger here: the table {} does not exist",
                        tool.table()
                    )));
                }
                tool
            }
            None => detect(backend).await?,
        };
        let rows = backend.foreign_rows(&tool.query(backend.dialect())).await?;
        let plan = plan_import(self, tool, &rows, options.accept_changed)?;
        backend.ensure_ledger().await?;
        let mut adoption = Adoption {
            source: tool.as_str().to_owned(),
            checksums_verified: plan.verified,
            warnings: plan.warnings,
            ..Adoption::default()
        };
        record(backend, &plan.adopt, tool.as_str(), &mut adoption).await?;
        Ok(adoption)
    }
}

/// Write the ledger rows, noting in `adoption` which versions were there already.
async fn record<B: SqlBackend>(
    backend: &mut B,
    migrations: &[(&Migration, String)],
    source: &str,
    adoption: &mut Adoption,
) -> Result<(), MigrateError> {
    for (migration, note) in migrations {
        if backend.adopt(migration, source, note).await? {
            adoption.adopted.push(migration.version);
        } else {
            adoption.already_recorded.push(migration.version);
        }
    }
    Ok(())
}

/// The one tool whose ledger is present.
async fn detect<B: SqlBackend>(backend: &mut B) -> Result<ForeignTool, MigrateError> {
    let mut present = Vec::new();
    for tool in ForeignTool::ALL {
        if backend.table_exists(tool.table()).await? {
            present.push(tool);
        }
    }
    match present.as_slice() {
        [tool] => Ok(*tool),
        [] => Err(MigrateError::Adoption(
            "no ledger of sqlx (_sqlx_migrations), diesel (__diesel_schema_migrations), refinery \
             (refinery_schema_history) or Flyway (flyway_schema_history) here; for a database migrated \
             by hand, record what it has with `baseline --to <version>`"
                .to_owned(),
        )),
        several => Err(MigrateError::Adoption(format!(
            "several tools' ledgers are here ({}); choose one with --from",
            several.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

struct ImportPlan<'a> {
    adopt: Vec<(&'a Migration, String)>,
    verified: usize,
    warnings: Vec<String>,
}

/// Map the other tool's rows onto the migrations, checking everything before anything is written.
fn plan_import<'a>(
    migrator: &'a Migrator,
    tool: ForeignTool,
    rows: &[ForeignRow],
    accept_changed: bool,
) -> Result<ImportPlan<'a>, MigrateError> {
    let mut applied: BTreeMap<i64, &ForeignRow> = BTreeMap::new();
    let mut baseline: Option<i64> = None;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for row in rows {
        let name = row.name.as_deref().unwrap_or("");
        let Some(text) = row.version.as_deref().map(str::trim).filter(|v| !v.is_empty()) else {
            // Flyway's repeatable migrations have no version.
            warnings.push(format!(
                "{tool}'s repeatable migration `{name}` has no version and was not imported; it is not in this ledger's care"
            ));
            continue;
        };
        let digits = text.replace('-', "");
        let version = match crate::naming::parse_version(&digits) {
            Ok(version) if digits.bytes().all(|b| b.is_ascii_digit()) => version,
            Ok(_) => {
                problems.push(format!(
                    "{tool} version `{text}` ({name}) is not one integer; rename the file to a whole version first"
                ));
                continue;
            }
            Err(message) => {
                problems.push(format!("{tool} version `{text}` ({name}): {message}"));
                continue;
            }
        };
        match row.kind.as_deref() {
            Some("BASELINE") => {
                baseline = Some(baseline.map_or(version, |b: i64| b.max(version)));
                continue;
            }
            Some("SCHEMA" | "DELETE") => continue,
            Some("UNDO_SQL" | "UNDO_JDBC") => {
                applied.remove(&version);
                continue;
            }
            _ => {}
        }
        if row.success == Some(false) {
            problems.push(format!(
                "{tool}'s ledger records version {version} ({name}) as failed: the database may hold part of it; \
                 finish or undo it with {tool} (or by hand, then delete that row) first"
            ));
            continue;
        }
        applied.insert(version, row);
    }

    let mut adopt = Vec::new();
    let mut verified = 0;
    if let Some(baseline) = baseline {
        for migration in migrator.set.migrations().iter().filter(|m| m.version <= baseline) {
            adopt.push((migration, format!("below {tool}'s baseline {baseline}")));
        }
    }
    for (version, row) in &applied {
        let Some(migration) = migrator.set.get(*version) else {
            problems.push(format!(
                "{tool} applied version {version} ({}) but no migration file has that version; restore the file first",
                row.name.as_deref().unwrap_or("")
            ));
            continue;
        };
        let matches = match (tool, migration.sql()) {
            (ForeignTool::Sqlx, Some(sql)) => row
                .sha384
                .as_deref()
                .map(|stored| Sha384::digest(sql.as_bytes()).as_slice() == stored),
            (ForeignTool::Flyway, Some(sql)) => row.crc32.map(|stored| i64::from(flyway_checksum(sql)) == stored),
            _ => None,
        };
        let note = match matches {
            Some(true) => {
                verified += 1;
                format!("imported from {tool} (checksum verified)")
            }
            Some(false) if accept_changed => {
                warnings.push(format!(
                    "{} changed since {tool} applied it; adopted anyway (--accept-changed)",
                    migration.label()
                ));
                format!("imported from {tool}; the file differs from what {tool} applied (accepted)")
            }
            Some(false) => {
                problems.push(format!(
                    "{} changed since {tool} applied it (its checksum differs): the database may not match the file; \
                     restore the file, or pass --accept-changed to adopt it as it is now",
                    migration.label()
                ));
                continue;
            }
            None => format!("imported from {tool} (no comparable checksum)"),
        };
        adopt.push((migration, note));
    }
    if !problems.is_empty() {
        return Err(MigrateError::Adoption(format!(
            "nothing was imported:\n  {}",
            problems.join("\n  ")
        )));
    }
    adopt.sort_by_key(|(m, _)| m.version);
    adopt.dedup_by_key(|(m, _)| m.version);
    Ok(ImportPlan {
        adopt,
        verified,
        warnings,
    })
}

/// Flyway's checksum: CRC-32 of the file's lines without their line breaks (and without a
/// byte-order mark), as a signed 32-bit integer.
pub(crate) fn flyway_checksum(text: &str) -> i32 {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut hasher = crc32fast::Hasher::new();
    for line in text.split('\n') {
        hasher.update(line.strip_suffix('\r').unwrap_or(line).as_bytes());
    }
    i32::from_ne_bytes(hasher.finalize().to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flyway_checksums_ignore_line_breaks_and_the_bom() {
        let unix = flyway_checksum("CREATE TABLE a (id int);\nSELECT 1;\n");
        assert_eq!(
            flyway_checksum("\u{feff}CREATE TABLE a (id int);\r\nSELECT 1;\r\n"),
            unix
        );
        assert_ne!(flyway_checksum("CREATE TABLE a (id bigint);\nSELECT 1;\n"), unix);
        // CRC-32 of "CREATE TABLE a (id int);SELECT 1;", computed independently.
        assert_eq!(unix as u32, crc32fast::hash(b"CREATE TABLE a (id int);SELECT 1;"));
    }

    #[test]
    fn flyway_checksums_match_what_flyway_itself_recorded() {
        // Each file applied by Flyway 13.12.1 (flyway-core, PostgreSQL 15); the checksums are
        // the ones it wrote in flyway_schema_history.
        let recorded = [
            (
                "CREATE TABLE fw_plain (id int);\nINSERT INTO fw_plain VALUES (1);\n",
                2_017_082_075,
            ),
            (
                "CREATE TABLE fw_crlf (id int);\r\nINSERT INTO fw_crlf VALUES (2);\r\n",
                815_838_113,
            ),
            ("\u{feff}CREATE TABLE fw_bom (id int);\n", -2_143_092_877),
            (
                "-- café ✓\nCREATE TABLE fw_unicode (name text DEFAULT 'naïve');\n",
                465_727_684,
            ),
            ("CREATE TABLE fw_nonl (id int);", 1_669_349_969),
            ("CREATE TABLE fw_ws (id int);   \n\n\t\nSELECT 1;\t\n", 84_625_203),
        ];
        for (text, flyway) in recorded {
            assert_eq!(flyway_checksum(text), flyway, "{text:?}");
        }
    }
}
