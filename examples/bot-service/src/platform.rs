//! How the bot and the chat platform trust each other across RabbitMQ.
//!
//! The bot never talks to the chat platform itself: a gateway turns the platform's updates into
//! messages on the commands queue and posts what arrives on the replies queue back to the
//! platform. The gateway and the bot share one secret, the platform token (`BOT_TOKEN`), and
//! every message in either direction carries its body's signature in the
//! [`x-bot-signature`](SIGNATURE_HEADER) header:
//!
//! ```text
//! x-bot-signature: v1=<lowercase hex of HMAC-SHA256(key = BOT_TOKEN, message = body)>
//! ```
//!
//! - The bot answers only commands whose signature verifies (compared in constant time). A
//!   command without one, or with a wrong one, is rejected without requeue (dead-lettered when
//!   the queue has a dead-letter exchange) and logged without its text: whoever can publish on
//!   the broker cannot make the bot act, or call the API, in the platform's name.
//! - The bot signs every reply the same way, so the gateway posts only what the bot wrote.
//!
//! The token itself never travels, is never logged, and never appears in health output. This is
//! the scheme chat platforms use for their own webhooks (Slack's signing secret, Telegram's
//! `secret_token`); the `v1=` prefix leaves room to change the algorithm. There is no timestamp
//! in the signature on purpose: a command may wait in the queue for as long as the bot is being
//! redeployed, and a stale-message window would turn that wait into lost commands. Replaying a
//! captured command only repeats a read-only answer.
//!
//! ```
//! use bot_service::platform::Signer;
//!
//! let signer = Signer::new("the platform token");
//! let body = br#"{"chat_id":1,"text":"/help"}"#;
//! let signature = signer.sign(body);
//! assert!(signature.starts_with("v1="));
//! assert!(signer.verify(body, Some(&signature)).is_ok());
//! assert!(signer.verify(br#"{"chat_id":2,"text":"/help"}"#, Some(&signature)).is_err());
//! assert!(signer.verify(body, None).is_err());
//! ```

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The message header that carries a body's signature, both ways.
pub const SIGNATURE_HEADER: &str = "x-bot-signature";

const SCHEME: &str = "v1=";

/// Signs and verifies message bodies with the platform token. Cheap to clone; its `Debug`
/// never shows the key.
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
}

impl Signer {
    /// A signer keyed with the platform token.
    pub fn new(token: &str) -> Self {
        Self {
            mac: Hmac::new_from_slice(token.as_bytes()).expect("HMAC accepts keys of any length"),
        }
    }

    /// The header value for `body`: `v1=` and 64 lowercase hex digits.
    pub fn sign(&self, body: &[u8]) -> String {
        let digest = self.mac.clone().chain_update(body).finalize().into_bytes();
        let mut signature = String::with_capacity(SCHEME.len() + 2 * digest.len());
        signature.push_str(SCHEME);
        signature.push_str(&hex::encode(digest));
        signature
    }

    /// Whether `signature` (the header value, if the message had one) was made for `body`
    /// with this token.
    pub fn verify(&self, body: &[u8], signature: Option<&str>) -> Result<(), Unauthenticated> {
        let signature = signature.ok_or(Unauthenticated::Missing)?;
        let digest = signature
            .strip_prefix(SCHEME)
            .and_then(|hex_digits| hex::decode(hex_digits).ok())
            .ok_or(Unauthenticated::Malformed)?;
        self.mac
            .clone()
            .chain_update(body)
            .verify_slice(&digest)
            .map_err(|_| Unauthenticated::Mismatch)
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

/// Why a message's signature was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unauthenticated {
    /// The message has no `x-bot-signature` header (or it is not text).
    Missing,
    /// The header is not `v1=` followed by hex digits.
    Malformed,
    /// The signature was not made for this body with this token.
    Mismatch,
}

impl fmt::Display for Unauthenticated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Missing => "the message is not signed (no x-bot-signature header)",
            Self::Malformed => "the x-bot-signature header is not `v1=` followed by hex digits",
            Self::Mismatch => "the signature does not match the body and the platform token",
        })
    }
}

impl std::error::Error for Unauthenticated {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_published_algorithm() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            Signer::new("Jefe").sign(b"what do ya want for nothing?"),
            "v1=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn only_the_right_token_and_body_verify() {
        let signer = Signer::new("token");
        let signature = signer.sign(b"body");
        assert_eq!(signer.verify(b"body", Some(&signature)), Ok(()));
        assert_eq!(signer.verify(b"bodY", Some(&signature)), Err(Unauthenticated::Mismatch));
        assert_eq!(
            Signer::new("other").verify(b"body", Some(&signature)),
            Err(Unauthenticated::Mismatch)
        );
        assert_eq!(signer.verify(b"body", None), Err(Unauthenticated::Missing));
        for malformed in ["", "v1=", "v1=zz", "v2=00", &signature[3..]] {
            let outcome = signer.verify(b"body", Some(malformed));
            assert!(outcome.is_err(), "{malformed:?} was accepted");
        }
        assert_eq!(signer.verify(b"body", Some("v1=zz")), Err(Unauthenticated::Malformed));
        // A truncated signature is not a shorter valid one.
        assert_eq!(
            signer.verify(b"body", Some(&signature[..41])),
            Err(Unauthenticated::Mismatch)
        );
        assert!(!format!("{signer:?}").contains("token"));
    }
}
