use std::sync::Arc;

use tower_layer::Layer;

use super::{LayerState, VersionService};
use crate::{VersionChanges, VersionSet};

/// Negotiates versions and transforms versioned bodies. See the [module docs](super).
///
/// ```
/// use axum::{Router, routing::get};
/// use cutover_versioning::{VersionLayer, VersionSet};
/// use tower::Layer;
///
/// let versions = VersionSet::builder().supported(["1.0", "1.1"]).build().unwrap();
/// let api: Router = Router::new().route("/api/users", get(|| async { "[]" }));
/// // Around the whole router: `/api/v1.0/users` is routed as `/api/users`.
/// let service = VersionLayer::new(versions).layer(api);
/// # drop(service);
/// ```
#[derive(Debug, Clone)]
pub struct VersionLayer {
    state: Arc<LayerState>,
}

impl VersionLayer {
    /// Negotiate among `versions`; bodies are not transformed until [`changes`](Self::changes)
    /// are given.
    pub fn new(versions: VersionSet) -> Self {
        Self {
            state: Arc::new(LayerState {
                set: versions,
                changes: None,
            }),
        }
    }

    /// Transform `Versioned` responses and `VersionedJson` requests with `changes`.
    pub fn changes(self, changes: VersionChanges) -> Self {
        Self {
            state: Arc::new(LayerState {
                set: self.state.set.clone(),
                changes: Some(changes),
            }),
        }
    }
}

impl<S> Layer<S> for VersionLayer {
    type Service = VersionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        VersionService::new(inner, Arc::clone(&self.state))
    }
}
