//! Middleware that negotiates the version of every request and shapes every versioned
//! response for it.
//!
//! Wrap the **whole** router (`VersionLayer::layer(router)`), not `Router::layer`: the
//! `/api/v1.2/...` segment is removed before routing, so each route is declared once (as
//! `/api/...`) and serves the header, path and query forms alike. Used inside an axum router
//! instead, routing would already have failed on the version segment; the layer detects that
//! and answers 500 with an explanation rather than silently mis-serving.

mod body;
mod future;
#[allow(clippy::module_inception)]
mod layer;

use std::{
    sync::Arc,
    task::{Context, Poll},
    time::SystemTime,
};

use http::{Request, Response};
use tower_service::Service;

pub use body::VersionBody;
pub use future::ResponseFuture;
pub use layer::VersionLayer;

use crate::{VersionChanges, VersionSet, negotiate::negotiate};

#[derive(Debug)]
pub(crate) struct LayerState {
    pub(crate) set: VersionSet,
    pub(crate) changes: Option<VersionChanges>,
}

/// The versions and changes in effect, in every request's extensions (for extractors).
#[derive(Debug, Clone)]
pub struct Versioning(pub(crate) Arc<LayerState>);

impl Versioning {
    /// The supported versions.
    pub fn versions(&self) -> &VersionSet {
        &self.0.set
    }

    /// The declared changes, if any.
    pub fn changes(&self) -> Option<&VersionChanges> {
        self.0.changes.as_ref()
    }
}

/// What the layer is serving while it polls the service, for `Versioned::into_response`,
/// which runs inside that poll: the newest version is serialized on the spot, as `Json` would,
/// and only older versions go through the response extensions to the layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Serving {
    /// No version layer around this poll (or the handler runs on another task).
    Unknown,
    /// The newest version.
    Head,
    /// An older version: the layer needs the typed value.
    Older,
}

thread_local! {
    static SERVING: std::cell::Cell<Serving> = const { std::cell::Cell::new(Serving::Unknown) };
}

/// Run `poll` with `serving` visible to `Versioned::into_response`.
pub(crate) fn while_serving<T>(serving: Serving, poll: impl FnOnce() -> T) -> T {
    let previous = SERVING.with(|cell| cell.replace(serving));
    let output = poll();
    SERVING.with(|cell| cell.set(previous));
    output
}

/// What the enclosing version layer is serving, if any.
pub(crate) fn serving() -> Serving {
    SERVING.with(std::cell::Cell::get)
}

/// The service made by [`VersionLayer`].
#[derive(Debug, Clone)]
pub struct VersionService<S> {
    inner: S,
    state: Arc<LayerState>,
}

impl<S> VersionService<S> {
    pub(crate) fn new(inner: S, state: Arc<LayerState>) -> Self {
        Self { inner, state }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for VersionService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<VersionBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        #[cfg(feature = "axum")]
        if request.extensions().get::<axum::extract::MatchedPath>().is_some()
            && self.state.set.sources().contains(&crate::Source::Path)
        {
            return ResponseFuture::misplaced();
        }
        let set = &self.state.set;
        match negotiate(set, request.headers(), request.uri(), SystemTime::now) {
            Err(error) => ResponseFuture::rejected(error, Arc::clone(&self.state)),
            Ok((mut negotiated, stripped)) => {
                if let Some(uri) = stripped {
                    *request.uri_mut() = uri;
                }
                negotiated.context = Some(Versioning(Arc::clone(&self.state)));
                let serving = if negotiated.head { Serving::Head } else { Serving::Older };
                let index = negotiated.index;
                request.extensions_mut().insert(negotiated);
                ResponseFuture::called(self.inner.call(request), index, serving, Arc::clone(&self.state))
            }
        }
    }
}
