//! What the bot understands, and how it asks the API.

use serde::{Deserialize, Serialize};

/// The API version the bot was written against. The API serves newer versions by default;
/// the bot keeps getting the 1.2 representation it knows.
pub const API_VERSION: &str = "1.2";

/// A chat message, as it arrives on the commands queue.
#[derive(Debug, Clone, Deserialize)]
pub struct Incoming {
    /// Where to answer.
    pub chat_id: i64,
    /// What the user typed, e.g. `/user 42`.
    pub text: String,
}

/// A reply, as the bot publishes it on the replies queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply {
    /// Where it goes.
    pub chat_id: i64,
    /// What it says.
    pub text: String,
}

/// A user in API version 1.2 (no `preferences`: they arrived in 1.3).
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    /// Identifier.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Email address.
    pub email: String,
    /// Whether the account is active.
    pub is_active: bool,
}

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `/user <id>`
    User(i64),
    /// `/help` or `/start`
    Help,
    /// Anything else, with why.
    Unknown(String),
}

impl Command {
    /// Parse what the user typed.
    pub fn parse(text: &str) -> Self {
        let mut words = text.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("/help" | "/start"), None, _) => Self::Help,
            (Some("/user"), Some(id), None) => match id.parse() {
                Ok(id) => Self::User(id),
                Err(_) => Self::Unknown(format!("`{id}` is not a user id; try /user 42")),
            },
            (Some("/user"), _, _) => Self::Unknown("usage: /user <id>".to_owned()),
            _ => Self::Unknown(format!("unknown command {:?}; try /help", text.trim())),
        }
    }
}

/// Answer `command`, calling the API at `api` when needed.
pub async fn answer(client: &reqwest::Client, api: &url::Url, command: &Command) -> String {
    match command {
        Command::Help => "/user <id>: show a user".to_owned(),
        Command::Unknown(why) => why.clone(),
        Command::User(id) => match fetch_user(client, api, *id).await {
            Ok(Some(user)) => format!(
                "#{} {} <{}>, {}",
                user.id,
                user.username,
                user.email,
                if user.is_active { "active" } else { "inactive" }
            ),
            Ok(None) => format!("no user #{id}"),
            Err(error) => {
                tracing::warn!(%error, "the API did not answer");
                "the API is not answering right now; try again in a moment".to_owned()
            }
        },
    }
}

async fn fetch_user(client: &reqwest::Client, api: &url::Url, id: i64) -> Result<Option<User>, String> {
    let url = api.join(&format!("api/users/{id}")).map_err(|e| e.to_string())?;
    let mut request = client.get(url).header("Accept-Version", API_VERSION);
    // The API's request span becomes a child of this command's.
    for (name, value) in cutover::telemetry::trace_context() {
        request = request.header(name, value);
    }
    let response = request.send().await.map_err(|e| e.to_string())?;
    match response.status().as_u16() {
        200 => response.json().await.map(Some).map_err(|e| e.to_string()),
        404 => Ok(None),
        status => Err(format!("GET /api/users/{id} answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_strictly() {
        assert_eq!(Command::parse("/user 42"), Command::User(42));
        assert_eq!(Command::parse("  /help "), Command::Help);
        assert!(matches!(Command::parse("/user abc"), Command::Unknown(m) if m.contains("not a user id")));
        assert!(matches!(Command::parse("/user 1 2"), Command::Unknown(m) if m.contains("usage")));
        assert!(matches!(Command::parse("hello"), Command::Unknown(m) if m.contains("unknown command")));
        assert!(matches!(Command::parse(""), Command::Unknown(_)));
    }
}
