//! The token handlers and workers watch to learn that the service is stopping.

use std::sync::Arc;

use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// Fires when the service enters [`Phase::Stopping`](cutover_core::Phase::Stopping): new
/// requests are being refused and in-flight work should wrap up.
///
/// Long-lived responses (server-sent events, streaming bodies, WebSocket tasks) should end
/// when it fires; whatever is still running when the shutdown timeout passes is cut.
///
/// The [`DrainLayer`](crate::DrainLayer) puts one in every request's extensions; with the
/// `axum` feature it is also an extractor:
///
/// ```
/// use axum::{Router, routing::get};
/// use cutover_shutdown::ShutdownToken;
///
/// async fn events(stop: ShutdownToken) -> &'static str {
///     // e.g. `stream.take_until(stop.cancelled_owned())` for an SSE stream
///     stop.cancelled().await;
///     "bye"
/// }
/// let app: Router = Router::new().route("/events", get(events));
/// # drop(app);
/// ```
#[derive(Debug, Clone)]
pub struct ShutdownToken {
    // Behind an `Arc`: cloning a `CancellationToken` takes a lock, and the drain layer hands
    // a token to every request.
    token: Arc<CancellationToken>,
}

impl ShutdownToken {
    pub(crate) fn new(token: CancellationToken) -> Self {
        Self { token: Arc::new(token) }
    }

    /// Wait until the service is stopping.
    pub fn cancelled(&self) -> WaitForCancellationFuture<'_> {
        self.token.cancelled()
    }

    /// An owned future that completes when the service is stopping, e.g. for
    /// `StreamExt::take_until`.
    pub fn cancelled_owned(self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        CancellationToken::clone(&self.token).cancelled_owned()
    }

    /// Whether the service is stopping.
    pub fn is_cancelled(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The underlying `tokio_util` token, for APIs that take one.
    pub fn as_cancellation_token(&self) -> &CancellationToken {
        &self.token
    }

    pub(crate) fn cancel(&self) {
        self.token.cancel();
    }
}

#[cfg(feature = "axum")]
mod extract {
    use axum_core::{
        extract::FromRequestParts,
        response::{IntoResponse, Response},
    };
    use http::{StatusCode, request::Parts};

    use super::ShutdownToken;

    /// Rejection when a handler asks for a [`ShutdownToken`] but the request did not pass
    /// through a [`DrainLayer`](crate::DrainLayer).
    #[derive(Debug, Clone, Copy, thiserror::Error)]
    #[error("ShutdownToken requires the DrainLayer around the router (Shutdown::drain_layer)")]
    pub struct MissingDrainLayer;

    impl IntoResponse for MissingDrainLayer {
        fn into_response(self) -> Response {
            (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
        }
    }

    impl<S: Send + Sync> FromRequestParts<S> for ShutdownToken {
        type Rejection = MissingDrainLayer;

        async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
            parts
                .extensions
                .get::<ShutdownToken>()
                .cloned()
                .ok_or(MissingDrainLayer)
        }
    }
}

#[cfg(feature = "axum")]
pub use extract::MissingDrainLayer;
