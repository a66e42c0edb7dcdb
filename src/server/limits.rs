//! What one client may hold on either listener: a bounded number of connections per port,
//! and no connection that waits on its client for long.
//!
//! Each step of a connection has its own bound, all of them well below what a legitimate
//! client needs (the API server connects, handshakes and sends its whole review at once):
//!
//! | step | bound | enforced by |
//! |---|---|---|
//! | TLS handshake (HTTPS) | [`TLS_HANDSHAKE_TIMEOUT`] | axum-server's rustls acceptor |
//! | request head, and the wait for the next one on a kept-alive connection | [`HEADER_READ_TIMEOUT`] | hyper's `header_read_timeout` |
//! | body, queue for room and answer (`/mutate`) | [`crate::server::REQUEST_TIMEOUT`], or sooner by the API server's deadline ([`crate::server::answer_within`]) | the router |
//! | a response the client does not read | [`WRITE_STALL_TIMEOUT`] | [`Held`] |
//! | connections at once | [`MAX_TLS_CONNECTIONS`], [`MAX_METRICS_CONNECTIONS`] | [`Limited`] |

use std::future::Ready;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::accept::Accept;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{info, warn};

use crate::metrics::{ListenerLabels, Metrics};

/// A TLS handshake takes one round trip and about a millisecond of CPU. The API server's
/// webhook deadline (the chart's `timeoutSeconds`, 5 s) includes its handshake, so a
/// handshake still going after 5 s serves nobody. axum-server's default is 10 s.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// From the connection's start (after the handshake), or from the end of the previous
/// response, to the end of the next request head. hyper uses one timer for both, so this is
/// also the keep-alive idle timeout. The API server writes head and body together; Go's
/// client notices the close of an idle connection and drops it from its pool before reusing
/// it, so closing idle connections after 5 s costs it a new handshake, not a failed review.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// A write that makes no progress this long (the client stopped reading, its window is
/// full) closes the connection. Answers are a few KiB and fit in the socket buffers of any
/// client that reads them.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections at once on the HTTPS port, handshakes included. The API server keeps up to
/// 25 idle connections per webhook host and opens one more per review in flight (HTTP/1.1);
/// three API servers with full pools, split over two replicas, hold under 40 here, and even
/// each API server's whole mutating in-flight limit (200 by default) fits. One connection
/// costs 20-40 KiB (rustls and hyper buffers), so 512 of them fit well inside the chart's
/// 128 Mi memory limit next to the reviews themselves (README, Limits).
pub const MAX_TLS_CONNECTIONS: usize = 512;

/// Connections at once on the plain-HTTP port. Its clients are the kubelet's probes (a new
/// connection per probe, every few seconds) and one or two Prometheus servers; a separate
/// pool from the HTTPS port's, so connections held there never starve the probes, and the
/// other way round. Plain connections cost about 10 KiB.
pub const MAX_METRICS_CONNECTIONS: usize = 256;

/// Largest read buffer per connection (hyper's default grows to about 400 KiB). A body is
/// read in pieces of at most this size, each keeping its buffer alive until the body is
/// whole; request heads must fit (the API server's are well under 1 KiB).
pub const READ_BUFFER: usize = 32 * 1024;

/// Counts a connection against its port's cap before anything is read from it, and refuses
/// it at once when the port is full: the stream is dropped in the accept hook, so the client
/// sees its connection closed straight away instead of waiting in the accept backlog, and a
/// refused connection costs neither a handshake nor a buffer. A minimal 503 was not chosen:
/// on the HTTPS port it would need a handshake (the CPU the cap exists to save), and on the
/// plain port it would be written before the request is read, which clients see as a reset
/// about as often as an answer.
#[derive(Clone)]
pub struct Limited {
    slots: Arc<Semaphore>,
    max: usize,
    listener: &'static str,
    open: Gauge,
    refused: Counter,
    /// Set from the first refusal until a tenth of the slots are free again, so a flood that
    /// keeps the port full logs one line rather than two per connection that ends.
    full: Arc<AtomicBool>,
}

impl Limited {
    /// A cap of `max` connections on the port called `listener` in metrics and logs.
    pub fn new(listener: &'static str, max: usize, metrics: &Metrics) -> Limited {
        let labels = ListenerLabels { listener };
        Limited {
            slots: Arc::new(Semaphore::new(max)),
            max,
            listener,
            open: metrics.connections.get_or_create(&labels).clone(),
            refused: metrics.connections_refused.get_or_create(&labels).clone(),
            full: Arc::new(AtomicBool::new(false)),
        }
    }

    fn admit(&self) -> Option<OwnedSemaphorePermit> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => {
                if self.full.load(Ordering::Relaxed)
                    && self.slots.available_permits() >= self.max / 10
                    && self.full.swap(false, Ordering::Relaxed)
                {
                    info!(listener = self.listener, "accepting connections again");
                }
                self.open.inc();
                Some(permit)
            }
            Err(_) => {
                self.refused.inc();
                if !self.full.swap(true, Ordering::Relaxed) {
                    warn!(
                        listener = self.listener,
                        "connection limit reached; closing new connections until some end"
                    );
                }
                None
            }
        }
    }
}

impl<S> Accept<TcpStream, S> for Limited {
    type Stream = Held<TcpStream>;
    type Service = S;
    type Future = Ready<io::Result<(Held<TcpStream>, S)>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        std::future::ready(match self.admit() {
            Some(permit) => Ok((
                Held {
                    inner: stream,
                    stall: None,
                    _permit: permit,
                    open: self.open.clone(),
                },
                service,
            )),
            // `stream` is dropped here: the connection is closed at once.
            None => Err(io::Error::other("connection limit reached")),
        })
    }
}

/// An accepted connection holding its slot until it is dropped, whose writes fail once they
/// have made no progress for [`WRITE_STALL_TIMEOUT`] (hyper has no write timeout).
pub struct Held<S> {
    inner: S,
    stall: Option<Pin<Box<tokio::time::Sleep>>>,
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl<S> Held<S> {
    /// Called when a write returned Pending: starts the stall clock, or reports that it ran
    /// out (the waker is registered either way).
    fn stalled(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let sleep = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_STALL_TIMEOUT)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
            Poll::Pending => Poll::Pending,
        }
    }

    fn track<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Pending => self.stalled(cx).map(Err),
            ready => {
                self.stall = None;
                ready
            }
        }
    }
}

impl<S> Drop for Held<S> {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Held<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Held<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.track(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.track(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.track(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.track(cx, polled)
    }
}
