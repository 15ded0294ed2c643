//! A request body that takes what it holds from the request's memory reservation as its
//! frames come off the wire, so that bodies being read count against the memory budget.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use tonic::codegen::StdError;

use crate::error::Error;
use crate::inflight::RequestMemory;

pub(super) struct Metered<B> {
    inner: Pin<Box<B>>,
    memory: RequestMemory,
    read: u64,
    /// Why the body stopped short, for the answer (tonic sees only a failed body).
    refused: Arc<Mutex<Option<Error>>>,
}

impl<B> Metered<B> {
    pub(super) fn new(inner: B, memory: RequestMemory, refused: Arc<Mutex<Option<Error>>>) -> Self {
        Self {
            inner: Box::pin(inner),
            memory,
            read: 0,
            refused,
        }
    }
}

impl<B> Body for Metered<B>
where
    B: Body,
    B::Error: Into<StdError>,
{
    type Data = B::Data;
    type Error = StdError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let frame = match self.inner.as_mut().poll_frame(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => frame,
        };
        if let Some(data) = frame.data_ref() {
            self.read += data.remaining() as u64;
            if let Err(e) = self.memory.grow_to(self.read) {
                let message = e.to_string();
                *self.refused.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                return Poll::Ready(Some(Err(message.into())));
            }
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
