//! Secrets from files, the Docker and Kubernetes way: a setting `NAME` may instead be given as
//! `NAME_FILE`, the path of a file holding the value (`/run/secrets/database_url`), so the value
//! never sits in the environment, where `docker inspect` and every child process see it.
//!
//! [`args_with_files`] turns each such file into a command-line argument for the parser the
//! service already has (clap reads `--database-url` before `DATABASE_URL`), without touching
//! the process environment:
//!
//! ```
//! use cutover::secrets::{self, Secret};
//!
//! const SECRETS: &[Secret] = &[Secret::new("DATABASE_URL", "--database-url")];
//! # let dir = std::env::temp_dir().join(format!("cutover-secrets-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! # let file = dir.join("database_url");
//! # std::fs::write(&file, "postgres://app:secret@db/app\n").unwrap();
//! let env = |name: &str| (name == "DATABASE_URL_FILE").then(|| file.clone().into_os_string());
//! let args = secrets::args_with_files(["api-service", "migrate"], SECRETS, env).unwrap();
//! assert_eq!(args, ["api-service", "--database-url", "postgres://app:secret@db/app", "migrate"]);
//! // In a service: `Config::parse_from(secrets::args(SECRETS)?)`
//! ```
//!
//! The values go right after the program name, so the flags must be the top-level command's
//! (or `global`). A file's single trailing newline is dropped (`echo value > file` writes one);
//! anything else is the value as written.

use std::{ffi::OsString, io, path::PathBuf};

/// A setting that may come from a file: `env` (`DATABASE_URL`) is read from the file named by
/// `env` + `_FILE` and handed to the parser as `flag` (`--database-url`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Secret {
    env: &'static str,
    flag: &'static str,
}

impl Secret {
    /// `env`'s value may come from the file `env_FILE` names, and is passed on as `flag`.
    pub const fn new(env: &'static str, flag: &'static str) -> Self {
        Self { env, flag }
    }
}

/// A secret file that cannot be used. The message names the variable and the path, never the
/// contents.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SecretFileError {
    /// Both `NAME` and `NAME_FILE` are set: which one is meant is unclear.
    #[error("{env}_FILE and {env} are both set: set one of them")]
    Both {
        /// The setting.
        env: &'static str,
    },
    /// The file cannot be read.
    #[error("cannot read {env}_FILE ({}): {source}", path.display())]
    Read {
        /// The setting.
        env: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The file holds nothing (or only a newline): a mount that went wrong, not a value.
    #[error("{env}_FILE ({}) is empty", path.display())]
    Empty {
        /// The setting.
        env: &'static str,
        /// The file.
        path: PathBuf,
    },
}

/// The process's own arguments with every secret file of `secrets` read, through its own
/// environment: what a service hands its parser (`Config::parse_from(secrets::args(SECRETS)?)`).
pub fn args(secrets: &[Secret]) -> Result<Vec<OsString>, SecretFileError> {
    args_with_files(std::env::args_os(), secrets, |name| std::env::var_os(name))
}

/// `args` with `flag value` inserted after the program name for every secret whose `NAME_FILE`
/// is set (read through `env`, usually [`std::env::var_os`]).
pub fn args_with_files<I, A, E>(args: I, secrets: &[Secret], env: E) -> Result<Vec<OsString>, SecretFileError>
where
    I: IntoIterator<Item = A>,
    A: Into<OsString>,
    E: Fn(&str) -> Option<OsString>,
{
    let mut args = args.into_iter().map(Into::into);
    let mut out: Vec<OsString> = args.next().into_iter().collect();
    for secret in secrets {
        let Some(path) = env(&format!("{}_FILE", secret.env)).filter(|p| !p.is_empty()) else {
            continue;
        };
        if env(secret.env).is_some() {
            return Err(SecretFileError::Both { env: secret.env });
        }
        let path = PathBuf::from(path);
        let mut value = std::fs::read(&path).map_err(|source| SecretFileError::Read {
            env: secret.env,
            path: path.clone(),
            source,
        })?;
        if value.last() == Some(&b'\n') {
            value.pop();
            if value.last() == Some(&b'\r') {
                value.pop();
            }
        }
        if value.is_empty() {
            return Err(SecretFileError::Empty { env: secret.env, path });
        }
        out.push(secret.flag.into());
        out.push(os_string(value));
    }
    out.extend(args);
    Ok(out)
}

#[cfg(unix)]
fn os_string(bytes: Vec<u8>) -> OsString {
    use std::os::unix::ffi::OsStringExt;
    OsString::from_vec(bytes)
}

#[cfg(not(unix))]
fn os_string(bytes: Vec<u8>) -> OsString {
    String::from_utf8_lossy(&bytes).into_owned().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRETS: &[Secret] = &[
        Secret::new("DATABASE_URL", "--database-url"),
        Secret::new("BOT_TOKEN", "--bot-token"),
    ];

    fn file(name: &str, contents: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cutover-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    fn env(vars: &[(&str, &PathBuf)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_os_str().to_owned()))
            .collect();
        move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn files_become_arguments_and_nothing_else_changes() {
        let db = file("db", "postgres://u:p@db/app\r\n");
        let token = file("token", "  spaced token  ");
        let args = args_with_files(
            ["svc", "--port", "1"],
            SECRETS,
            env(&[("DATABASE_URL_FILE", &db), ("BOT_TOKEN_FILE", &token)]),
        )
        .unwrap();
        assert_eq!(
            args,
            [
                "svc",
                "--database-url",
                "postgres://u:p@db/app",
                "--bot-token",
                "  spaced token  ",
                "--port",
                "1"
            ]
        );
        assert_eq!(args_with_files(["svc"], SECRETS, |_| None).unwrap(), ["svc"]);
    }

    #[test]
    fn unusable_files_are_named_without_their_contents() {
        let db = file("db-both", "secret-value");
        let both = args_with_files(
            ["svc"],
            SECRETS,
            env(&[("DATABASE_URL_FILE", &db), ("DATABASE_URL", &db)]),
        )
        .unwrap_err();
        assert_eq!(
            both.to_string(),
            "DATABASE_URL_FILE and DATABASE_URL are both set: set one of them"
        );

        let missing = PathBuf::from("/nonexistent/cutover/secret");
        let read = args_with_files(["svc"], SECRETS, env(&[("BOT_TOKEN_FILE", &missing)]))
            .unwrap_err()
            .to_string();
        assert!(
            read.starts_with("cannot read BOT_TOKEN_FILE (/nonexistent/cutover/secret): "),
            "{read}"
        );

        let empty = file("empty", "\n");
        let empty = args_with_files(["svc"], SECRETS, env(&[("BOT_TOKEN_FILE", &empty)])).unwrap_err();
        assert!(empty.to_string().ends_with("is empty"), "{empty}");
        assert!(!format!("{both:?}{read}{empty}").contains("secret-value"));
    }
}
