//! Bodies that keep a connection's watch informed: a request body that
//! fails once its deadline passes, and a response body that marks the
//! connection idle once hyper is done with it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use super::watch::{Phase, Watch};

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTooSlow(Duration);

/// A request body that must arrive whole within `allowed` of its head.
pub struct DeadlineBody<B> {
    inner: B,
    allowed: Duration,
    deadline: Option<Pin<Box<Sleep>>>,
}

impl<B> DeadlineBody<B> {
    pub fn new(inner: B, allowed: Option<Duration>) -> Self {
        DeadlineBody {
            inner,
            allowed: allowed.unwrap_or_default(),
            deadline: allowed
                .map(|allowed| Box::pin(tokio::time::sleep_until(Instant::now() + allowed))),
        }
    }
}

impl<B> Body for DeadlineBody<B>
where
    B: Body + Unpin,
    B::Error: Into<axum::BoxError>,
{
    type Data = B::Data;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if let Some(deadline) = &mut this.deadline {
            if deadline.as_mut().poll(cx).is_ready() {
                metrics::counter!("meshi_http_deadline_closed_total", "deadline" => "body")
                    .increment(1);
                return Poll::Ready(Some(Err(BodyTooSlow(this.allowed).into())));
            }
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that, once hyper drops it (written or abandoned),
/// puts the connection in its idle phase. A `101` leaves the phase alone:
/// the upgrade deadline runs until the connection is handed over.
pub struct Finished<B> {
    inner: B,
    watch: Option<Arc<Watch>>,
}

impl<B> Finished<B> {
    pub fn new(inner: B, watch: Arc<Watch>, upgrading: bool) -> Self {
        Finished {
            inner,
            watch: (!upgrading).then_some(watch),
        }
    }
}

impl<B> Drop for Finished<B> {
    fn drop(&mut self) {
        if let Some(watch) = &self.watch {
            watch.enter(Phase::Idle);
        }
    }
}

impl<B: Body + Unpin> Body for Finished<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
