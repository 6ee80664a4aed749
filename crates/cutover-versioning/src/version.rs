//! API version numbers, parsed leniently and shown briefly.

use std::{fmt, str::FromStr};

use semver::Version;

/// Longest version string accepted: anything longer is not a version, and parsing it would
/// only waste time on hostile input.
const MAX_LEN: usize = 32;

/// An API version such as `1.2`.
///
/// Parsing is lenient about form and strict about content: `1`, `1.2`, `v1.2`, `V1.2` and
/// `1.2.0` are all accepted; anything else (`1.2.3.4`, `1.x`, `latest`, `1.2-beta`, an empty
/// string) is an error, never silently replaced by a default.
///
/// ```
/// use cutover_versioning::ApiVersion;
///
/// let v: ApiVersion = "v1.2".parse().unwrap();
/// assert_eq!(v, "1.2.0".parse().unwrap());
/// assert_eq!(v.to_string(), "1.2");
/// assert!("1.2-beta".parse::<ApiVersion>().is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiVersion(Version);

impl ApiVersion {
    /// `major.minor.patch`.
    pub const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Self(Version::new(major, minor, patch))
    }

    /// The underlying semantic version.
    pub fn as_semver(&self) -> &Version {
        &self.0
    }
}

impl From<Version> for ApiVersion {
    fn from(version: Version) -> Self {
        Self(version)
    }
}

impl fmt::Display for ApiVersion {
    /// `1.2` for `1.2.0`, `1.2.3` when the patch is not zero.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.patch == 0 {
            write!(f, "{}.{}", self.0.major, self.0.minor)
        } else {
            write!(f, "{}.{}.{}", self.0.major, self.0.minor, self.0.patch)
        }
    }
}

/// A string that is not an API version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not an API version ({reason}); expected e.g. `1.2`, `v1.2` or `1.2.0`")]
pub struct ParseVersionError {
    input: String,
    reason: &'static str,
}

impl ParseVersionError {
    /// The rejected text (truncated to 32 characters).
    pub fn input(&self) -> &str {
        &self.input
    }
}

impl FromStr for ApiVersion {
    type Err = ParseVersionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let error = |reason| ParseVersionError {
            input: text.chars().take(MAX_LEN).collect(),
            reason,
        };
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(error("empty"));
        }
        if trimmed.len() > MAX_LEN {
            return Err(error("too long"));
        }
        let digits = trimmed.strip_prefix(['v', 'V']).unwrap_or(trimmed);
        let mut parts = [0u64; 3];
        for (count, part) in digits.split('.').enumerate() {
            if count == 3 {
                return Err(error("more than three numbers"));
            }
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(error("each part must be a number"));
            }
            if part.len() > 1 && part.starts_with('0') {
                return Err(error("numbers must not have leading zeros"));
            }
            parts[count] = part.parse().map_err(|_| error("number too large"))?;
        }
        Ok(Self::new(parts[0], parts[1], parts[2]))
    }
}

impl serde::Serialize for ApiVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Result<String, String> {
        text.parse::<ApiVersion>()
            .map(|v| v.to_string())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn accepts_the_usual_spellings() {
        for (input, expected) in [
            ("1", "1.0"),
            ("1.2", "1.2"),
            ("v1.2", "1.2"),
            ("V1.2", "1.2"),
            ("1.2.0", "1.2"),
            (" 1.3 ", "1.3"),
            ("2.0.1", "2.0.1"),
            ("10.20", "10.20"),
        ] {
            assert_eq!(v(input), Ok(expected.to_owned()), "{input}");
        }
    }

    #[test]
    fn rejects_everything_else_with_a_reason() {
        for input in [
            "", " ", "v", "1.", ".1", "1..2", "1.2.3.4", "1.x", "latest", "1.2-beta", "-1", "01.2", "1,2", "１.２",
        ] {
            let error = v(input).unwrap_err();
            assert!(error.contains("is not an API version"), "{input}: {error}");
        }
        assert!(v(&"9".repeat(40)).unwrap_err().contains("too long"));
        assert!(v("99999999999999999999").unwrap_err().contains("too large"));
    }

    #[test]
    fn orders_numerically() {
        let parse = |s: &str| s.parse::<ApiVersion>().unwrap();
        assert!(parse("1.10") > parse("1.9"));
        assert!(parse("2") > parse("1.99"));
    }
}
