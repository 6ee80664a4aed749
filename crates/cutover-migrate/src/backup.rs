//! Verified backups with `pg_dump --format=custom`, kept N at a time, and an explicit restore.
//!
//! Restoring loses every write made after the dump: that is why `restore` is a command a person
//! runs, and automatic restore on failure is off unless asked for.

use std::{
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

use tokio::process::Command;

use crate::{MigrateError, migrator::BackupPolicy};

/// A connection URL with every password taken out, and the password.
struct Credentials {
    /// Safe to pass as an argument: no password in the user information or the query.
    url: String,
    password: Option<String>,
}

impl Credentials {
    /// Take the password out of the user information (percent-decoded; a raw `@` in it is
    /// read the way URL parsers read it) and out of a `password=` query parameter.
    fn from_url(url: &str) -> Result<Self, MigrateError> {
        let mut parsed = url::Url::parse(url).map_err(|_| MigrateError::UnsupportedUrl(crate::redact_url(url)))?;
        let mut password = parsed
            .password()
            .map(|p| percent_encoding::percent_decode_str(p).decode_utf8_lossy().into_owned());
        let _ = parsed.set_password(None);
        let pairs: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        if pairs.iter().any(|(key, _)| key.eq_ignore_ascii_case("password")) {
            let mut kept = url::form_urlencoded::Serializer::new(String::new());
            for (key, value) in pairs {
                if key.eq_ignore_ascii_case("password") {
                    password.get_or_insert(value);
                } else {
                    kept.append_pair(&key, &value);
                }
            }
            let kept = kept.finish();
            parsed.set_query((!kept.is_empty()).then_some(kept.as_str()));
        }
        Ok(Self {
            url: parsed.to_string(),
            password,
        })
    }
}

/// The password in a private (0600) temporary password file, for `PGPASSFILE`: never in the
/// arguments (readable by every user in `/proc/<pid>/cmdline`) nor in the environment.
/// Removed when dropped.
fn password_file(password: &str) -> Result<tempfile::NamedTempFile, MigrateError> {
    let mut file = tempfile::Builder::new()
        .prefix("cutover-pgpass-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile()
        .map_err(|e| MigrateError::Backup(format!("cannot create a private password file: {e}")))?;
    // `hostname:port:database:username:password`, with `:` and `\` escaped; any connection.
    let escaped = password.replace('\\', "\\\\").replace(':', "\\:");
    writeln!(file, "*:*:*:*:{escaped}")
        .and_then(|()| file.flush())
        .map_err(|e| MigrateError::Backup(format!("cannot write the private password file: {e}")))?;
    Ok(file)
}

async fn run(program: &str, args: &[&str], url: &str) -> Result<String, MigrateError> {
    let credentials = Credentials::from_url(url)?;
    let password_file = credentials.password.as_deref().map(password_file).transpose()?;
    let mut command = Command::new(program);
    command
        .arg(format!("--dbname={}", credentials.url))
        .args(args)
        // What the child inherits must not hold the password either.
        .env_remove("PGPASSWORD")
        .env_remove("DATABASE_URL");
    if let Some(file) = &password_file {
        command.env("PGPASSFILE", file.path());
    }
    let output = command.output().await.map_err(|error| {
        MigrateError::Backup(format!(
            "cannot run {program} ({error}); install the PostgreSQL client (apt-get install postgresql-client)"
        ))
    })?;
    drop(password_file);
    if !output.status.success() {
        return Err(MigrateError::Backup(format!(
            "{program} failed ({}): {}",
            output.status,
            crate::redact_url(String::from_utf8_lossy(&output.stderr).trim())
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Create `dir` readable by its owner only (0700). An existing directory keeps its mode, with
/// a warning when others can read it (each dump is 0600 anyway).
fn private_dir(dir: &Path) -> Result<(), MigrateError> {
    match std::fs::metadata(dir) {
        Ok(metadata) => {
            let mode = metadata.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(dir = %dir.display(), mode = %format!("{mode:o}"), "the backup directory is open to other users; each dump is still private (0600)");
            }
            Ok(())
        }
        Err(_) => std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| MigrateError::Backup(format!("cannot create {}: {e}", dir.display()))),
    }
}

/// An empty file only its owner can read (0600), for a dump to be written into.
fn private_file(path: &Path) -> Result<(), MigrateError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|e| MigrateError::Backup(format!("cannot create {}: {e}", path.display())))
}

/// Refuse to start when the backup directory's filesystem is fuller than `max_percent`.
pub(crate) fn check_disk(dir: &Path, max_percent: f64) -> Result<(), MigrateError> {
    private_dir(dir)?;
    let stat =
        rustix::fs::statvfs(dir).map_err(|e| MigrateError::Preflight(format!("statvfs {}: {e}", dir.display())))?;
    let used = stat.f_blocks.saturating_sub(stat.f_bfree);
    let usable = used + stat.f_bavail;
    if usable > 0 {
        #[allow(clippy::cast_precision_loss)]
        let percent = used as f64 / usable as f64 * 100.0;
        if percent > max_percent {
            return Err(MigrateError::Preflight(format!(
                "the disk holding {} is {percent:.1}% full (limit {max_percent}%): free space before migrating",
                dir.display()
            )));
        }
    }
    Ok(())
}

/// Dump the database, verify the dump, and keep only the newest `policy.keep` dumps.
///
/// The directory is created 0700 and the dump 0600; the password reaches `pg_dump` through a
/// private temporary password file, never its arguments or environment.
pub async fn backup(url: &str, policy: &BackupPolicy, before_version: i64) -> Result<PathBuf, MigrateError> {
    private_dir(&policy.dir)?;
    // Milliseconds, and a counter on the rare collision: two backups never share a file.
    let stamp = humantime::format_rfc3339_millis(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    let mut file = policy.dir.join(format!("cutover_{stamp}_before_{before_version}.dump"));
    let mut attempt = 1;
    while let Err(error) = private_file(&file) {
        if attempt >= 10 || !file.exists() {
            return Err(error);
        }
        attempt += 1;
        file = policy
            .dir
            .join(format!("cutover_{stamp}_before_{before_version}_{attempt}.dump"));
    }
    let file_arg = format!("--file={}", file.display());
    run("pg_dump", &["--format=custom", "--no-owner", &file_arg], url).await?;
    // pg_dump keeps the mode of the file it writes into; make sure of it anyway.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| MigrateError::Backup(format!("cannot make {} private: {e}", file.display())))?;
    // A dump pg_restore cannot list is not a backup.
    let listing = run_plain("pg_restore", &["--list", "--", &file.display().to_string()]).await?;
    if !listing.contains("TABLE") && !listing.contains("SCHEMA") {
        return Err(MigrateError::Backup(format!(
            "{} lists no objects: the dump is not usable",
            file.display()
        )));
    }
    prune(&policy.dir, policy.keep)?;
    tracing::info!(file = %file.display(), "backup written and verified");
    Ok(file)
}

async fn run_plain(program: &str, args: &[&str]) -> Result<String, MigrateError> {
    let output = Command::new(program)
        .args(args)
        .output()
        .await
        .map_err(|error| MigrateError::Backup(format!("cannot run {program}: {error}")))?;
    if !output.status.success() {
        return Err(MigrateError::Backup(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn prune(dir: &Path, keep: usize) -> Result<(), MigrateError> {
    let mut dumps: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| MigrateError::Backup(format!("cannot list {}: {e}", dir.display())))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("cutover_") && n.ends_with(".dump"))
        })
        .collect();
    dumps.sort();
    let excess = dumps.len().saturating_sub(keep.max(1));
    for old in dumps.into_iter().take(excess) {
        std::fs::remove_file(&old)
            .map_err(|e| MigrateError::Backup(format!("cannot remove {}: {e}", old.display())))?;
    }
    Ok(())
}

/// Restore `dump` into the database (objects in the dump are dropped and recreated). Loses
/// every write made since the dump.
pub async fn restore(url: &str, dump: &Path) -> Result<(), MigrateError> {
    if !dump.is_file() {
        return Err(MigrateError::Backup(format!("{} does not exist", dump.display())));
    }
    run(
        "pg_restore",
        &[
            "--clean",
            "--if-exists",
            "--no-owner",
            "--single-transaction",
            "--",
            &dump.display().to_string(),
        ],
        url,
    )
    .await?;
    tracing::info!(file = %dump.display(), "database restored");
    Ok(())
}
