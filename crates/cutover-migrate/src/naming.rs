//! Which files are migrations, in the layouts other tools already use:
//!
//! | layout | up | down |
//! | --- | --- | --- |
//! | sqlx | `<version>_<name>.up.sql` or `<version>_<name>.sql` | `<version>_<name>.down.sql` |
//! | diesel | `<version>_<name>/up.sql` (a version may hold dashes: `2024-01-31-101500`) | `<version>_<name>/down.sql` |
//! | Flyway, refinery | `V<version>__<name>.sql` | `U<version>__<name>.sql` (Flyway's undo) |
//!
//! The same rules hold for `.json` (MongoDB) files.

use std::path::Path;

use crate::MigrateError;

/// The `(path, contents)` of every file in `dir` ending in `.{extension}`, and of the `up`,
/// `down` and `metadata.toml` files of its subdirectories (diesel's layout), sorted by path.
pub(crate) fn read_tree(dir: &Path, extension: &str) -> Result<Vec<(String, String)>, MigrateError> {
    let error = |path: &Path, message: String| MigrateError::Source {
        origin: path.display().to_string(),
        line: None,
        message,
    };
    let list = |dir: &Path| -> Result<Vec<std::path::PathBuf>, MigrateError> {
        let entries =
            std::fs::read_dir(dir).map_err(|e| error(dir, format!("cannot read the migrations directory: {e}")))?;
        entries
            .map(|entry| entry.map(|e| e.path()).map_err(|e| error(dir, e.to_string())))
            .collect()
    };
    let mut paths = Vec::new();
    for path in list(dir)? {
        if path.is_dir() {
            let wanted = [
                format!("up.{extension}"),
                format!("down.{extension}"),
                "metadata.toml".to_owned(),
            ];
            paths.extend(list(&path)?.into_iter().filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| wanted.iter().any(|w| w == n))
            }));
        } else if path.extension().and_then(|e| e.to_str()) == Some(extension) {
            paths.push(path);
        }
    }
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).map_err(|e| error(&path, format!("cannot read: {e}")))?;
            Ok((path.display().to_string(), text))
        })
        .collect()
}

/// What a file name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileName {
    pub(crate) version: i64,
    pub(crate) name: String,
    pub(crate) down: bool,
}

/// Classify `origin` (a path, `/` or `\` separated) for files ending in `.{extension}`:
/// `Ok(None)` for a file that is not a migration of that kind (other extensions, `README.md`),
/// an error naming the file for one that looks like a migration but is malformed.
pub(crate) fn classify(origin: &str, extension: &str) -> Result<Option<FileName>, MigrateError> {
    let mut parts = origin.rsplit(['/', '\\']);
    let file_name = parts.next().unwrap_or(origin);
    let parent = parts.next().unwrap_or("");
    let error = |message: String| MigrateError::Source {
        origin: origin.to_owned(),
        line: None,
        message,
    };
    let suffix = format!(".{extension}");
    let Some(base) = file_name.strip_suffix(&suffix) else {
        return Ok(None);
    };

    // diesel: `<version>_<name>/up.sql`.
    if base == "up" || base == "down" {
        let (version, name) = parent
            .split_once('_')
            .filter(|(version, name)| !name.is_empty() && is_diesel_version(version))
            .ok_or_else(|| {
                error(format!(
                    "`{file_name}` must be in a directory named like `<version>_<name>` (diesel's layout, e.g. `2024-01-31-101500_create_users/{file_name}`)"
                ))
            })?;
        return Ok(Some(FileName {
            version: parse_version(&version.replace('-', "")).map_err(error)?,
            name: name.to_owned(),
            down: base == "down",
        }));
    }

    // Flyway and refinery: `V<version>__<name>.sql`, Flyway's undo `U<version>__<name>.sql`.
    if let Some((prefix, name)) = base.split_once("__")
        && let Some(kind) = prefix.chars().next().filter(|c| matches!(c, 'V' | 'U' | 'R'))
    {
        let version = &prefix[1..];
        if kind == 'R' && version.is_empty() {
            return Err(error(
                "repeatable migrations (`R__`) rerun whenever they change and cutover-migrate has none; \
                 give the statements a version of their own (`V<n>__<name>`), written with `CREATE OR REPLACE`"
                    .to_owned(),
            ));
        }
        if !version.is_empty() && version.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'_') {
            if !version.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error(format!(
                    "version `{version}` has parts; cutover-migrate versions are one integer: rename it to `{kind}<n>__{name}.{extension}` with n above the versions before it"
                )));
            }
            if name.is_empty() {
                return Err(error(format!("expected a name after `{prefix}__`")));
            }
            return Ok(Some(FileName {
                version: parse_version(version).map_err(error)?,
                name: name.to_owned(),
                down: kind == 'U',
            }));
        }
    }

    // sqlx: `<version>_<name>.up.sql`, `.down.sql`, or a plain `.sql`.
    let (stem, down) = if let Some(stem) = base.strip_suffix(".up") {
        (stem, false)
    } else if let Some(stem) = base.strip_suffix(".down") {
        (stem, true)
    } else {
        (base, false)
    };
    let expected = || {
        error(format!(
            "expected a name like `<version>_<name>.up.{extension}` (for example `0003_add_preferences.up.{extension}`), \
             `<version>_<name>/up.{extension}` (diesel) or `V<version>__<name>.{extension}` (Flyway)"
        ))
    };
    let (version, name) = stem.split_once('_').ok_or_else(expected)?;
    if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
        return Err(expected());
    }
    Ok(Some(FileName {
        version: parse_version(version).map_err(error)?,
        name: name.to_owned(),
        down,
    }))
}

/// diesel's versions: digits, optionally separated by dashes (`2024-01-31-101500`).
fn is_diesel_version(text: &str) -> bool {
    text.bytes().any(|b| b.is_ascii_digit()) && text.bytes().all(|b| b.is_ascii_digit() || b == b'-')
}

/// Digits to a version, or a message naming the limit.
pub(crate) fn parse_version(digits: &str) -> Result<i64, String> {
    digits.parse::<i64>().map_err(|_| {
        format!(
            "version {digits} is too large: versions go up to {} ({} digits; a timestamp like 20261130154500 fits)",
            i64::MAX,
            i64::MAX.to_string().len()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(origin: &str) -> Result<Option<(i64, String, bool)>, String> {
        classify(origin, "sql")
            .map(|n| n.map(|n| (n.version, n.name, n.down)))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_the_layouts_of_sqlx_diesel_and_flyway() {
        assert_eq!(name("m/0003_add_x.up.sql"), Ok(Some((3, "add_x".into(), false))));
        assert_eq!(name("m/0003_add_x.down.sql"), Ok(Some((3, "add_x".into(), true))));
        assert_eq!(
            name("m/20240101_init.sql"),
            Ok(Some((20_240_101, "init".into(), false)))
        );
        assert_eq!(
            name("m/2016-12-04-212254_create_users/up.sql"),
            Ok(Some((20_161_204_212_254, "create_users".into(), false)))
        );
        assert_eq!(
            name("m\\00000000000000_diesel_initial_setup\\down.sql"),
            Ok(Some((0, "diesel_initial_setup".into(), true)))
        );
        assert_eq!(name("m/V12__add_users.sql"), Ok(Some((12, "add_users".into(), false))));
        assert_eq!(name("m/U12__add_users.sql"), Ok(Some((12, "add_users".into(), true))));
        assert_eq!(name("m/README.md"), Ok(None));
        assert_eq!(classify("m/0001_a.up.json", "sql").unwrap(), None);
    }

    #[test]
    fn malformed_names_say_what_is_expected() {
        let error = |origin: &str| name(origin).unwrap_err();
        assert!(
            error("m/x_a.up.sql").contains("expected a name like"),
            "{}",
            error("m/x_a.up.sql")
        );
        assert!(error("m/up.sql").contains("diesel's layout"));
        assert!(error("m/V1.1__x.sql").contains("version `1.1` has parts"));
        assert!(error("m/R__views.sql").contains("repeatable migrations"));
        assert!(error("m/12345678901234567890_x.sql").contains("versions go up to 9223372036854775807"));
    }
}
