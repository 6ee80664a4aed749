//! Which findings a project accepts, decided outside the migration files: rules allowed
//! everywhere, in a range of versions or in one migration, and a baseline at or below which
//! migrations are history (applied years ago, somewhere) and are not linted at all.

use std::{fmt, path::Path, str::FromStr};

use serde::Deserialize;

use crate::MigrateError;

/// The name of the policy file `cutover-migrate` reads from the migrations directory.
pub const POLICY_FILE: &str = "cutover-migrate.toml";

/// Which lint findings a project accepts, beyond each file's `-- cutover:allow`.
///
/// Read from a TOML file (`cutover-migrate.toml` in the migrations directory, which the
/// command-line tool reads on its own):
///
/// ```
/// use cutover_migrate::LintPolicy;
///
/// let policy = LintPolicy::from_toml(r#"
///     baseline = 135                    # applied before cutover-migrate: never linted
///
///     [lint]
///     allow = ["renaming-column"]       # accepted in every migration
///
///     [[lint.allow-in]]
///     versions = "136..=140"        # or "142", "150..", "..=160"
///     rules = ["ban-drop-column"]
///     reason = "the columns have been unused since the 2.0 release"
/// "#)?;
/// assert!(policy.is_history(135) && !policy.is_history(136));
/// assert!(policy.allows("ban-drop-column", 138));
/// assert!(!policy.allows("ban-drop-column", 141));
/// assert!(policy.allows("renaming-column", 500));
/// # Ok::<(), cutover_migrate::MigrateError>(())
/// ```
///
/// or built in code, with the same meaning:
///
/// ```
/// use cutover_migrate::{LintPolicy, VersionRange};
///
/// let policy = LintPolicy::default()
///     .baseline(135)
///     .allow("renaming-column")
///     .allow_in("136..=140".parse::<VersionRange>().unwrap(), "ban-drop-column");
/// assert!(policy.allows("ban-drop-column", 136));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LintPolicy {
    baseline: Option<i64>,
    allow: Vec<String>,
    allow_in: Vec<(VersionRange, String)>,
}

impl LintPolicy {
    /// Parse a policy file's text. Unknown keys and unknown rule names are errors.
    pub fn from_toml(text: &str) -> Result<Self, MigrateError> {
        Self::parse(text, "lint policy")
    }

    /// Read a policy file.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, MigrateError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| MigrateError::Source {
            origin: path.display().to_string(),
            line: None,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    fn parse(text: &str, origin: &str) -> Result<Self, MigrateError> {
        let error = |line: Option<usize>, message: String| MigrateError::Source {
            origin: origin.to_owned(),
            line,
            message,
        };
        let file: File = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|span| text[..span.start.min(text.len())].matches('\n').count() + 1);
            error(line, e.message().to_owned())
        })?;
        let mut policy = Self {
            baseline: file.baseline,
            ..Self::default()
        };
        for rule in file.lint.allow {
            check_rule(&rule).map_err(|m| error(None, m))?;
            policy.allow.push(rule);
        }
        for entry in file.lint.allow_in {
            let range = entry
                .versions
                .parse::<VersionRange>()
                .map_err(|m| error(None, format!("[[lint.allow-in]] versions: {m}")))?;
            for rule in entry.rules {
                check_rule(&rule).map_err(|m| error(None, m))?;
                policy.allow_in.push((range, rule));
            }
        }
        Ok(policy)
    }

    /// Migrations at or below `version` ran before this project adopted cutover-migrate: they are
    /// history, and are not linted.
    pub fn baseline(mut self, version: i64) -> Self {
        self.baseline = Some(version);
        self
    }

    /// Accept `rule` in every migration.
    pub fn allow(mut self, rule: impl Into<String>) -> Self {
        self.allow.push(rule.into());
        self
    }

    /// Accept `rule` in the migrations of `versions`.
    pub fn allow_in(mut self, versions: VersionRange, rule: impl Into<String>) -> Self {
        self.allow_in.push((versions, rule.into()));
        self
    }

    /// Add an allowance written as on the command line: `rule` (everywhere) or
    /// `rule@versions` (`ban-drop-column@136..=140`, `renaming-column@142`).
    pub fn allow_spec(self, spec: &str) -> Result<Self, MigrateError> {
        let error = |message: String| MigrateError::Source {
            origin: "--allow".to_owned(),
            line: None,
            message,
        };
        let (rule, versions) = match spec.split_once('@') {
            Some((rule, versions)) => (rule, Some(versions.parse::<VersionRange>().map_err(error)?)),
            None => (spec, None),
        };
        check_rule(rule).map_err(error)?;
        Ok(match versions {
            Some(range) => self.allow_in(range, rule),
            None => self.allow(rule),
        })
    }

    /// The baseline, if any.
    pub fn baseline_version(&self) -> Option<i64> {
        self.baseline
    }

    /// Whether migration `version` is history (at or below the baseline), which is not linted.
    pub fn is_history(&self, version: i64) -> bool {
        self.baseline.is_some_and(|baseline| version <= baseline)
    }

    /// Whether the policy accepts `rule` in migration `version`.
    pub fn allows(&self, rule: &str, version: i64) -> bool {
        self.allow.iter().any(|r| r == rule)
            || self
                .allow_in
                .iter()
                .any(|(range, r)| r == rule && range.contains(version))
    }

    /// The policy with `other`'s allowances added, and `other`'s baseline when it has one.
    pub fn merge(mut self, other: Self) -> Self {
        self.baseline = other.baseline.or(self.baseline);
        self.allow.extend(other.allow);
        self.allow_in.extend(other.allow_in);
        self
    }
}

fn check_rule(rule: &str) -> Result<(), String> {
    if super::is_known_rule(rule) {
        Ok(())
    } else {
        Err(format!(
            "unknown lint rule `{rule}`; see `cutover-migrate lint --rules` for the names"
        ))
    }
}

/// Versions `from..=to`, either end open: written `42`, `10..=20`, `10..` or `..=20`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VersionRange {
    /// The first version included.
    pub from: Option<i64>,
    /// The last version included.
    pub to: Option<i64>,
}

impl VersionRange {
    /// Whether `version` is in the range.
    pub fn contains(&self, version: i64) -> bool {
        self.from.is_none_or(|from| version >= from) && self.to.is_none_or(|to| version <= to)
    }
}

impl FromStr for VersionRange {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let number = |part: &str| -> Result<Option<i64>, String> {
            let part = part.trim();
            if part.is_empty() {
                return Ok(None);
            }
            if !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "`{text}` is not a version range; write `42`, `10..=20`, `10..` or `..=20`"
                ));
            }
            crate::naming::parse_version(part).map(Some)
        };
        let range = match text.split_once("..") {
            None => {
                let version = number(text)?.ok_or_else(|| "an empty version range".to_owned())?;
                Self {
                    from: Some(version),
                    to: Some(version),
                }
            }
            Some((from, to)) => {
                let Some(to) = to.strip_prefix('=').or(to.is_empty().then_some("")) else {
                    return Err(format!(
                        "`{text}`: ranges include their end, write `..=` (as in `10..=20`)"
                    ));
                };
                Self {
                    from: number(from)?,
                    to: number(to)?,
                }
            }
        };
        if let (Some(from), Some(to)) = (range.from, range.to)
            && from > to
        {
            return Err(format!("`{text}` is empty: {from} is above {to}"));
        }
        Ok(range)
    }
}

impl fmt::Display for VersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.from, self.to) {
            (Some(from), Some(to)) if from == to => write!(f, "{from}"),
            (from, to) => {
                if let Some(from) = from {
                    write!(f, "{from}")?;
                }
                f.write_str("..")?;
                if let Some(to) = to {
                    write!(f, "={to}")?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    baseline: Option<i64>,
    #[serde(default)]
    lint: LintSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LintSection {
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default, rename = "allow-in")]
    allow_in: Vec<AllowIn>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowIn {
    versions: String,
    rules: Vec<String>,
    #[allow(dead_code)] // documentation for the people reading the file
    reason: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_print_back() {
        for text in ["42", "10..=20", "10..", "..=20", ".."] {
            assert_eq!(text.parse::<VersionRange>().unwrap().to_string(), text);
        }
        assert!("10..20".parse::<VersionRange>().unwrap_err().contains("write `..=`"));
        assert!("20..=10".parse::<VersionRange>().unwrap_err().contains("is empty"));
        assert!(
            "a..=3"
                .parse::<VersionRange>()
                .unwrap_err()
                .contains("not a version range")
        );
        assert!(
            "99999999999999999999"
                .parse::<VersionRange>()
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn bad_files_and_flags_are_refused_with_where_and_why() {
        let error = |text: &str| LintPolicy::from_toml(text).unwrap_err().to_string();
        assert!(
            error("baseline = \"x\"").starts_with("lint policy:1: "),
            "{}",
            error("baseline = \"x\"")
        );
        assert!(
            error("[lint]\nalow = []").contains("unknown field `alow`"),
            "{}",
            error("[lint]\nalow = []")
        );
        assert!(error("[lint]\nallow = [\"no-such-rule\"]").contains("unknown lint rule `no-such-rule`"));
        let flag = LintPolicy::default()
            .allow_spec("ban-drop-column@x")
            .unwrap_err()
            .to_string();
        assert!(flag.starts_with("--allow: `x` is not a version range"), "{flag}");
        let policy = LintPolicy::default().allow_spec("ban-drop-column@3..=4").unwrap();
        assert!(policy.allows("ban-drop-column", 4) && !policy.allows("ban-drop-column", 5));
    }
}
