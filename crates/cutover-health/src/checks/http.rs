use reqwest::{Client, Url};

use crate::{Check, CheckContext, CheckResult, redact::redact};

/// `GET` an upstream's health URL with the application's shared `reqwest::Client`; any 2xx
/// passes. Not critical by default: an upstream being down should degrade this service, not
/// take it out of rotation (which would spread the outage).
#[derive(Debug, Clone)]
pub struct HttpCheck {
    client: Client,
    url: Url,
    shown: String,
}

impl HttpCheck {
    /// Check `url` (for example `http://api:8000/health/ready`) with `client`.
    pub fn new(client: Client, url: &str) -> Result<Self, url::ParseError> {
        let url = Url::parse(url)?;
        Ok(Self {
            client,
            shown: redact(url.as_str()).into_owned(),
            url,
        })
    }
}

impl Check for HttpCheck {
    async fn check(&self, ctx: CheckContext) -> CheckResult {
        let response = self
            .client
            .get(self.url.clone())
            .timeout(ctx.remaining())
            .send()
            .await
            // reqwest puts the full URL, credentials included, in its errors.
            .map_err(|error| {
                format!(
                    "GET {}: {}",
                    self.shown,
                    crate::check::error_chain(&error.without_url())
                )
            })?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("GET {} answered {status}", self.shown).into());
        }
        Ok(crate::Outcome::healthy().with_observed(status.as_u16(), "status"))
    }

    fn critical_by_default(&self) -> bool {
        false
    }
}
