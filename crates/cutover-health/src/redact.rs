//! Removing secrets from error text before it reaches a response body or a log line.
//!
//! Client libraries happily put connection strings in their errors
//! (`error connecting to postgres://app:hunter2@db/app`). Every error a check returns passes
//! through a [`Redactor`] once, when it is recorded, so nothing downstream (the JSON report,
//! `tracing` events, metrics labels) can leak what it never saw.

use std::{borrow::Cow, sync::LazyLock};

use regex::Regex;

const MASK: &str = "***";

/// `scheme://user:password@` and `scheme://token@`.
static URL_USERINFO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*://)(?P<userinfo>[^@\s/?#]+)@").expect("valid regex")
});

/// `password=...`, `token: ...` and friends, in URLs' query strings, DSNs and messages.
static KEY_VALUE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)(?P<key>\b(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|client[_-]?secret|auth)\b\s*[=:]\s*)(?P<value>[^\s&;,'"]+)"#,
    )
    .expect("valid regex")
});

/// `Bearer abc...` / `Basic abc...` credentials.
static AUTH_SCHEME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"(?i)(?P<scheme>\b(?:bearer|basic)\s+)[A-Za-z0-9._~+/=\-]{8,}").expect("valid regex"));

/// Replaces credentials in `text` with `***`: passwords and tokens in URLs, `key=value`
/// secrets (`password`, `token`, `secret`, `api_key`, ...), and `Bearer`/`Basic` credentials.
///
/// ```
/// use cutover_health::redact::redact;
///
/// assert_eq!(
///     redact("cannot reach postgres://app:hunter2@db:5432/app"),
///     "cannot reach postgres://app:***@db:5432/app",
/// );
/// assert_eq!(redact("GET /x?token=abc123&page=2"), "GET /x?token=***&page=2");
/// ```
pub fn redact(text: &str) -> Cow<'_, str> {
    let mut out = Cow::Borrowed(text);
    if URL_USERINFO.is_match(&out) {
        out = Cow::Owned(
            URL_USERINFO
                .replace_all(&out, |caps: &regex::Captures<'_>| {
                    let userinfo = &caps["userinfo"];
                    match userinfo.split_once(':') {
                        // Keep the user name, which helps debugging and is not a secret.
                        Some((user, _password)) => format!("{}{user}:{MASK}@", &caps["scheme"]),
                        // A lone userinfo is usually a token (`https://<token>@host`).
                        None => format!("{}{MASK}@", &caps["scheme"]),
                    }
                })
                .into_owned(),
        );
    }
    if KEY_VALUE.is_match(&out) {
        out = Cow::Owned(KEY_VALUE.replace_all(&out, format!("${{key}}{MASK}")).into_owned());
    }
    if AUTH_SCHEME.is_match(&out) {
        out = Cow::Owned(AUTH_SCHEME.replace_all(&out, format!("${{scheme}}{MASK}")).into_owned());
    }
    out
}

/// [`redact`] plus exact secrets the application registered (a bot token, an API key read
/// from the environment) that no pattern could recognise.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    /// A redactor that only applies the built-in patterns.
    pub fn new() -> Self {
        Self::default()
    }

    /// Also mask every occurrence of `secret`. Values shorter than 4 characters are ignored:
    /// masking them would garble ordinary words and hide nothing worth hiding.
    pub fn secret(mut self, secret: impl Into<String>) -> Self {
        self.add_secret(secret);
        self
    }

    pub(crate) fn add_secret(&mut self, secret: impl Into<String>) {
        let secret = secret.into();
        if secret.len() >= 4 && !self.secrets.contains(&secret) {
            self.secrets.push(secret);
            // Longest first, so a secret that contains another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// Mask credentials in `text`.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let mut out = redact(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = Cow::Owned(out.replace(secret.as_str(), MASK));
            }
        }
        out
    }
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secrets themselves.
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_passwords_in_connection_urls() {
        for (input, expected) in [
            ("postgres://app:s3cr3t@db:5432/app", "postgres://app:***@db:5432/app"),
            (
                "amqp://guest:guest@127.0.0.1:5672/%2f",
                "amqp://guest:***@127.0.0.1:5672/%2f",
            ),
            ("redis://:p%40ss@cache:6379/0", "redis://:***@cache:6379/0"),
            (
                "mongodb+srv://u:pw@cluster0.example.net/db",
                "mongodb+srv://u:***@cluster0.example.net/db",
            ),
            ("https://ghp_abcdef123456@github.com/x", "https://***@github.com/x"),
        ] {
            assert_eq!(redact(input), expected, "input: {input}");
        }
    }

    #[test]
    fn masks_key_value_secrets_and_auth_headers() {
        assert_eq!(
            redact("host=db user=app password=hunter2 dbname=app"),
            "host=db user=app password=*** dbname=app"
        );
        assert_eq!(redact("api_key: abc-123"), "api_key: ***");
        assert_eq!(
            redact("Authorization: Bearer eyJhbGciOi.J9"),
            "Authorization: Bearer ***"
        );
    }

    #[test]
    fn leaves_ordinary_text_alone_without_allocating() {
        let text = "connection refused (os error 111) at http://db:8000/health";
        assert!(matches!(redact(text), Cow::Borrowed(_)));
    }

    #[test]
    fn registered_secrets_are_masked_and_not_printed_by_debug() {
        let redactor = Redactor::new().secret("1234567:AAE-bot-token").secret("ab");
        assert_eq!(
            redactor.redact("bot 1234567:AAE-bot-token rejected (ab)"),
            "bot *** rejected (ab)"
        );
        assert!(!format!("{redactor:?}").contains("AAE"));
    }
}
