use std::sync::Arc;

use tower_layer::Layer;

use super::{DrainService, DrainState};

/// Applies the drain behaviour to a service. Get one from
/// [`Shutdown::drain_layer`](crate::Shutdown::drain_layer); every clone shares the same state.
///
/// With axum, `Router::layer` applies it to every route and the fallback. Any other
/// `http` service is wrapped with `tower::Layer::layer`.
///
/// ```
/// use axum::{Router, routing::get};
/// use cutover_shutdown::Shutdown;
/// use tower::Layer;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let shutdown = Shutdown::builder().build().unwrap();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hi" }))
///     .layer(shutdown.drain_layer());
///
/// // Or around any tower service:
/// let svc = shutdown.drain_layer().layer(tower::service_fn(|_req: http::Request<String>| async {
///     Ok::<_, std::convert::Infallible>(http::Response::new(String::from("hi")))
/// }));
/// # drop((app, svc));
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct DrainLayer {
    state: Arc<DrainState>,
}

impl DrainLayer {
    pub(crate) fn new(state: Arc<DrainState>) -> Self {
        Self { state }
    }
}

impl<S> Layer<S> for DrainLayer {
    type Service = DrainService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DrainService::new(inner, Arc::clone(&self.state))
    }
}
