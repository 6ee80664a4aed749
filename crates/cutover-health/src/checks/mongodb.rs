use mongodb::{Client, bson::doc};

use crate::{Check, CheckContext, CheckResult};

/// `ping` against the `admin` database through the application's `mongodb::Client`.
///
/// The client keeps its own connection pool and monitors the deployment; `ping` goes through
/// server selection, so it fails when no suitable server is reachable.
#[derive(Debug, Clone)]
pub struct MongoCheck {
    client: Client,
}

impl MongoCheck {
    /// Check through `client` (a clone shares the application's pool).
    pub fn new(client: Client) -> Self {
        Self { client }
    }
}

impl Check for MongoCheck {
    async fn check(&self, _ctx: CheckContext) -> CheckResult {
        let reply = self.client.database("admin").run_command(doc! { "ping": 1 }).await?;
        let ok = reply
            .get("ok")
            .and_then(|ok| ok.as_f64().or_else(|| ok.as_i32().map(f64::from)));
        if ok != Some(1.0) {
            return Err(format!("ping answered {reply}").into());
        }
        Ok(crate::Outcome::healthy())
    }
}
