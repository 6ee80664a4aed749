//! Verified backups with `pg_dump --format=custom`, kept N at a time, and an explicit restore.
//!
//! Restoring loses every write made after the dump: that is why `restore` is a command a person
//! runs, and automatic restore on failure is off unless asked for.

use std::path::{Path, PathBuf};

use tokio::process::Command;

use crate::{MigrateError, migrator::BackupPolicy};

/// The URL without its password, and the password (for `PGPASSWORD`, so it never shows up in
/// the process list).
fn split_password(url: &str) -> Result<(String, Option<String>), MigrateError> {
    let mut parsed = url::Url::parse(url).map_err(|_| MigrateError::UnsupportedUrl(crate::redact_url(url)))?;
    let password = parsed.password().map(|p| {
        url::form_urlencoded::parse(format!("p={p}").as_bytes())
            .next()
            .map_or_else(|| p.to_owned(), |(_, v)| v.into_owned())
    });
    let _ = parsed.set_password(None);
    Ok((parsed.to_string(), password))
}

async fn run(program: &str, args: &[&str], url: &str) -> Result<String, MigrateError> {
    let (url, password) = split_password(url)?;
    let mut command = Command::new(program);
    command.args(args).arg(format!("--dbname={url}"));
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let output = command.output().await.map_err(|error| {
        MigrateError::Backup(format!(
            "cannot run {program} ({error}); install the PostgreSQL client (apt-get install postgresql-client)"
        ))
    })?;
    if !output.status.success() {
        return Err(MigrateError::Backup(format!(
            "{program} failed ({}): {}",
            output.status,
            crate::redact_url(String::from_utf8_lossy(&output.stderr).trim())
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Refuse to start when the backup directory's filesystem is fuller than `max_percent`.
pub(crate) fn check_disk(dir: &Path, max_percent: f64) -> Result<(), MigrateError> {
    std::fs::create_dir_all(dir).map_err(|e| MigrateError::Backup(format!("cannot create {}: {e}", dir.display())))?;
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
pub async fn backup(url: &str, policy: &BackupPolicy, before_version: i64) -> Result<PathBuf, MigrateError> {
    std::fs::create_dir_all(&policy.dir)
        .map_err(|e| MigrateError::Backup(format!("cannot create {}: {e}", policy.dir.display())))?;
    let stamp = humantime::format_rfc3339_seconds(std::time::SystemTime::now())
        .to_string()
        .replace([':', '-'], "");
    let file = policy.dir.join(format!("cutover_{stamp}_before_{before_version}.dump"));
    let file_arg = format!("--file={}", file.display());
    run("pg_dump", &["--format=custom", "--no-owner", &file_arg], url).await?;
    // A dump pg_restore cannot list is not a backup.
    let listing = run_plain("pg_restore", &["--list", &file.display().to_string()]).await?;
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
            &dump.display().to_string(),
        ],
        url,
    )
    .await?;
    tracing::info!(file = %dump.display(), "database restored");
    Ok(())
}
