use std::{
    future::Future,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use cutover_core::Phase;
use http::{Response, Version};
use pin_project_lite::pin_project;
use tokio_util::task::task_tracker::TaskTrackerToken;

use http_body::Body;

use super::{CutWait, DrainBody, DrainState, close_connection, unavailable};

/// Bodies of known size up to this many bytes are written at once, so the request stops
/// counting as in flight when its response is ready (and the body is not wrapped).
const SMALL_BODY: u64 = 64 * 1024;

pin_project! {
    /// Response future of [`DrainService`](super::DrainService).
    pub struct ResponseFuture<F, B> {
        #[pin]
        kind: Kind<F, B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, B> {
        Called {
            #[pin]
            future: F,
            cut_wait: Option<CutWait>,
            in_flight: Option<TaskTrackerToken>,
            state: Arc<DrainState>,
            version: Version,
        },
        // Boxed: refusals are rare, and a smaller future is cheaper to move on every request.
        Rejected {
            response: Option<Box<Response<DrainBody<B>>>>,
        },
    }
}

impl<F, B> ResponseFuture<F, B> {
    pub(super) fn new(
        future: F,
        in_flight: Option<TaskTrackerToken>,
        state: Arc<DrainState>,
        version: Version,
    ) -> Self {
        Self {
            kind: Kind::Called {
                future,
                cut_wait: None,
                in_flight,
                state,
                version,
            },
        }
    }

    pub(super) fn rejected(response: Response<DrainBody<B>>) -> Self {
        Self {
            kind: Kind::Rejected {
                response: Some(Box::new(response)),
            },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<DrainBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Rejected { response } => {
                Poll::Ready(Ok(*response.take().expect("ResponseFuture polled after completion")))
            }
            KindProj::Called {
                future,
                cut_wait,
                in_flight,
                state,
                version,
            } => {
                if let Poll::Ready(result) = future.poll(cx) {
                    let mut response = result?;
                    if state.lifecycle.phase() >= Phase::Draining {
                        close_connection(response.headers_mut(), *version);
                    }
                    let small = response
                        .body()
                        .size_hint()
                        .exact()
                        .is_some_and(|size| size <= SMALL_BODY);
                    let tracked = match in_flight.take() {
                        Some(token) if !small => Some((token, Arc::clone(state))),
                        _ => None,
                    };
                    return Poll::Ready(Ok(response.map(|body| DrainBody::tracked(body, tracked))));
                }
                if in_flight.is_none() {
                    // Not tracked (a probe): never cut.
                    return Poll::Pending;
                }
                // The handler is still working: if the deadline passes first, answer for it.
                let cut = cut_wait.get_or_insert_with(|| state.cut_wait());
                if state.is_cut() || cut.as_mut().poll(cx).is_ready() {
                    in_flight.take();
                    return Poll::Ready(Ok(unavailable(*version, &state.retry_after, &state.refusals.cut)));
                }
                Poll::Pending
            }
        }
    }
}

impl<F, B> std::fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}
