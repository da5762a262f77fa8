//! One client connection: HTTP/1.1 served by hyper over a socket whose
//! reads and writes run under the deadline of the connection's phase.
//!
//! | phase | from | deadline | then |
//! |---|---|---|---|
//! | head | accept, or the first byte after an idle wait | `header_timeout_ms` from its start | closed, no answer |
//! | busy | the request's headers are complete | none here: the handler bounds the body (`body_timeout_ms`, 408) and the pipeline answers | the answer |
//! | idle | the answer is produced | `idle_timeout_ms` | closed |
//!
//! The header deadline is for the whole head, not per read, so a client
//! trickling one byte a second (slowloris) is cut like a silent one. The
//! idle deadline also covers writing the answer, so a client that never
//! reads cannot hold a connection either. A busy socket has no deadline,
//! so its task may park with no timer; the end of the request wakes it, and
//! the idle deadline is armed even if the client then says nothing.
//!
//! hyper's own `header_read_timeout` is not used: it also starts while a
//! kept-alive connection waits for its next request, so the idle wait
//! could not be longer than the header timeout.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, watch};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;

use super::tally::Event;
use super::{Peer, Shared};

/// hyper's read buffer per connection, which bounds a request's head (a
/// larger one is answered 431): 64 KiB instead of hyper's ~400 KiB, so
/// `max_connections` slow clients hold at most that much each.
const MAX_BUFFER_BYTES: usize = 64 << 10;

/// Where a connection is in its request cycle.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request's headers, until the deadline.
    Head(Instant),
    /// A request is being handled; its handler bounds it.
    Busy,
    /// Answered; waiting for the next request until the deadline.
    Idle(Instant),
}

/// A connection's phase, shared by its socket (which reads deadlines) and
/// its request handler (which marks the start and end of a request).
pub struct Clock {
    state: Mutex<State>,
    header: Duration,
    idle: Duration,
}

/// A [`Clock`]'s mutable part.
struct State {
    phase: Phase,
    /// The connection's task, parked on its socket while busy (no
    /// deadline, so no timer to wake it): woken when the request ends so
    /// the idle deadline is armed even if the client stays silent.
    parked: Option<Waker>,
}

impl Clock {
    /// A clock for a connection accepted now: its headers are due within
    /// `header`.
    pub fn new(header: Duration, idle: Duration) -> Arc<Clock> {
        Arc::new(Clock {
            state: Mutex::new(State {
                phase: Phase::Head(Instant::now() + header),
                parked: None,
            }),
            header,
            idle,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        f(&mut self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// The request's headers are complete: no deadline from the socket
    /// until the returned guard drops (the answer is produced).
    pub fn begin_request(self: &Arc<Self>) -> RequestGuard {
        self.with(|s| s.phase = Phase::Busy);
        RequestGuard(self.clone())
    }

    /// Bytes arrived: an idle connection starts its next head.
    fn on_bytes(&self) {
        self.with(|s| {
            if let Phase::Idle(_) = s.phase {
                s.phase = Phase::Head(Instant::now() + self.header);
            }
        });
    }

    /// The deadline now in force, and which timeout it is; with none (a
    /// request in progress), `waker` is kept to be woken when it ends.
    fn deadline(&self, waker: &Waker) -> Option<(Instant, Expired)> {
        self.with(|s| match s.phase {
            Phase::Head(at) => Some((at, Expired::Header)),
            Phase::Busy => {
                if !s.parked.as_ref().is_some_and(|w| w.will_wake(waker)) {
                    s.parked = Some(waker.clone());
                }
                None
            }
            Phase::Idle(at) => Some((at, Expired::Idle)),
        })
    }
}

/// Marks a request as done (idle from then) when dropped, whether it was
/// answered or its connection went away.
pub struct RequestGuard(Arc<Clock>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let idle = self.0.idle;
        let parked = self.0.with(|s| {
            s.phase = Phase::Idle(Instant::now() + idle);
            s.parked.take()
        });
        if let Some(task) = parked {
            task.wake();
        }
    }
}

/// Which timeout closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// `header_timeout_ms`.
    Header,
    /// `idle_timeout_ms`.
    Idle,
}

/// The socket under the deadline of its connection's phase: a read or
/// write that would wait past it fails with `TimedOut` instead.
pub struct TimedIo<S> {
    inner: S,
    clock: Arc<Clock>,
    sleep: Pin<Box<Sleep>>,
    /// The deadline `sleep` is set to.
    armed: Option<Instant>,
    /// Set once a deadline expired (for the connection's log line).
    expired: Arc<Mutex<Option<Expired>>>,
}

impl<S> TimedIo<S> {
    fn new(inner: S, clock: Arc<Clock>, expired: Arc<Mutex<Option<Expired>>>) -> TimedIo<S> {
        TimedIo {
            inner,
            clock,
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
            armed: None,
            expired,
        }
    }

    /// Called when the socket would wait: `Pending` until the phase's
    /// deadline, then a `TimedOut` error. The sleep registers the waker, so
    /// the connection's task wakes at the deadline even if the peer is
    /// silent.
    fn wait<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        let Some((deadline, which)) = self.clock.deadline(cx.waker()) else {
            return Poll::Pending;
        };
        if self.armed != Some(deadline) {
            self.sleep.as_mut().reset(deadline);
            self.armed = Some(deadline);
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                *self.expired.lock().unwrap_or_else(PoisonError::into_inner) = Some(which);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    match which {
                        Expired::Header => "request headers not complete in time",
                        Expired::Idle => "connection idle too long",
                    },
                )))
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.clock.on_bytes();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => this.wait(cx),
            ready => ready,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            Poll::Pending => this.wait(cx),
            ready => ready,
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            Poll::Pending => this.wait(cx),
            ready => ready,
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Serves one connection until the client closes it, a deadline cuts it,
/// or the input stops: on `stop` the request in progress is finished and
/// the connection closed; on `abort` (after the shutdown grace) it is
/// dropped. `_slot` is the connection's place under `max_connections`,
/// given back when this returns.
pub async fn serve<S>(
    stream: S,
    peer: Peer,
    _slot: OwnedSemaphorePermit,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
    abort: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let clock = Clock::new(shared.limits.header_timeout, shared.limits.idle_timeout);
    let expired = Arc::new(Mutex::new(None));
    let io = TokioIo::new(TimedIo::new(stream, clock.clone(), expired.clone()));
    let tally = shared.clone();
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let guard = clock.begin_request();
        let shared = shared.clone();
        async move {
            let response: Response<Body> = super::handler::handle(&shared, &peer, request).await;
            drop(guard);
            Ok::<_, std::convert::Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // Deadlines are the socket's (above), not hyper's timer.
        .header_read_timeout(None)
        .max_buf_size(MAX_BUFFER_BYTES)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let result = tokio::select! {
        result = conn.as_mut() => result,
        () = super::stopped(&mut stop) => {
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                result = conn.as_mut() => result,
                () = abort.cancelled() => Ok(()),
            }
        }
    };
    let expired = *expired.lock().unwrap_or_else(PoisonError::into_inner);
    match (result, expired) {
        (_, Some(Expired::Header)) => {
            tally.tally.note(Event::HeaderTimeout, &peer);
        }
        (_, Some(Expired::Idle)) => {
            tracing::debug!(%peer, "http input: idle connection closed");
        }
        (Err(err), None) => {
            tracing::debug!(%peer, error = %err, "http input: connection ended with an error");
        }
        (Ok(()), None) => {}
    }
}
