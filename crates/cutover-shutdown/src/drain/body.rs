use std::{
    error::Error,
    fmt,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::{Cut, CutWait, DrainState};

type BoxError = Box<dyn Error + Send + Sync>;

pin_project! {
    /// Response body of [`DrainService`](super::DrainService): the inner body, which counts as
    /// in flight until it ends and is cut at the shutdown deadline; or the problem document of
    /// a 503.
    pub struct DrainBody<B> {
        #[pin]
        kind: BodyKind<B>,
    }
}

/// What keeps a request in flight: its tracker token, and the state that can cut it.
type Tracking = (TaskTrackerToken, Arc<DrainState>);

pin_project! {
    #[project = BodyKindProj]
    enum BodyKind<B> {
        Problem { document: Option<Bytes> },
        Inner {
            #[pin]
            inner: B,
            tracked: Option<Tracking>,
            // Armed on the first `Pending`: bodies that are ready at once never pay for it.
            cut_wait: Option<CutWait>,
        },
    }
}

impl<B> DrainBody<B> {
    /// A 503's problem document, written at once.
    pub(crate) fn problem(document: Bytes) -> Self {
        Self {
            kind: BodyKind::Problem {
                document: Some(document),
            },
        }
    }

    /// The inner body, when this one is not tracked (probe responses and small bodies of known
    /// size, which are written at once). Lets a server that needs its own body type unwrap it
    /// instead of boxing it; `Err` gives the body back when it must stay wrapped.
    pub fn into_untracked(self) -> Result<B, Self> {
        match self.kind {
            BodyKind::Inner {
                inner,
                tracked: None,
                cut_wait: None,
            } => Ok(inner),
            kind => Err(Self { kind }),
        }
    }

    pub(crate) fn tracked(inner: B, tracked: Option<Tracking>) -> Self {
        Self {
            kind: BodyKind::Inner {
                inner,
                tracked,
                cut_wait: None,
            },
        }
    }
}

impl<B> Body for DrainBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let (inner, tracked, cut_wait) = match self.project().kind.project() {
            BodyKindProj::Inner {
                inner,
                tracked,
                cut_wait,
            } => (inner, tracked, cut_wait),
            BodyKindProj::Problem { document } => {
                return Poll::Ready(document.take().map(|bytes| Ok(Frame::data(bytes.into()))));
            }
        };
        // A body that streams without ever pausing must be cut too.
        if tracked.as_ref().is_some_and(|(_, state)| state.is_cut()) {
            tracked.take();
            return Poll::Ready(Some(Err(Cut.into())));
        }
        match inner.poll_frame(cx) {
            Poll::Ready(None) => {
                tracked.take();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(error))) => {
                tracked.take();
                Poll::Ready(Some(Err(error.into())))
            }
            Poll::Ready(Some(Ok(frame))) => Poll::Ready(Some(Ok(frame))),
            Poll::Pending => {
                let Some((_, state)) = tracked.as_ref() else {
                    // Not tracked (a probe, or already finished): nothing to cut.
                    return Poll::Pending;
                };
                let cut = cut_wait.get_or_insert_with(|| state.cut_wait());
                if cut.as_mut().poll(cx).is_ready() {
                    tracked.take();
                    return Poll::Ready(Some(Err(Cut.into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            BodyKind::Problem { document } => document.is_none(),
            BodyKind::Inner { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            BodyKind::Problem { document } => SizeHint::with_exact(document.as_ref().map_or(0, |d| d.len() as u64)),
            BodyKind::Inner { inner, .. } => inner.size_hint(),
        }
    }
}

impl<B> fmt::Debug for DrainBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            BodyKind::Problem { .. } => "problem",
            BodyKind::Inner { .. } => "inner",
        };
        f.debug_tuple("DrainBody").field(&kind).finish()
    }
}
