//! The HTTP listener: accepts connections and drives each with hyper's HTTP/1
//! server under [`HttpLimits`], because every byte a client sends is hostile
//! until parsed. `axum::serve` exposes none of these limits.
//!
//! ```text
//! accept ──(a permit of max_connections, or wait in the listen backlog)──▶ connection task
//!   request head: within header_read_timeout, at most max_header_bytes (else 431)
//!   request body: none taken (413, see `super::refuse_bodies`)
//!   response: as long as it lasts (an SSE stream lasts until the view or the
//!             server goes), but bytes the peer does not accept for
//!             write_timeout end the connection
//! ```
//!
//! Shutdown: when the `watch` flips, no more connections are accepted, each
//! open one finishes its response and closes (SSE streams end when the
//! registry closes), and one that has not within [`SHUTDOWN_GRACE`] is dropped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::time::Sleep;
use tracing::{debug, warn, Instrument};

use crate::config::HttpLimits;

/// How long an open connection may take to finish its response after
/// shutdown began: long enough for a snapshot in flight, short enough that a
/// stalled client cannot hold up a restart.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// How long to pause accepting after an error that is not about one
/// connection (out of file descriptors, most likely): retrying at once would
/// spin, and connections that close meanwhile free descriptors.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Serves `app` on `listener` until `shutdown` becomes true (or its sender
/// is dropped), then waits for open connections as described in the module
/// docs.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: HttpLimits,
    mut shutdown: watch::Receiver<bool>,
) {
    let max = limits.max_connections.clamp(1, u32::MAX as usize);
    let slots = Arc::new(Semaphore::new(max));
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes);
    loop {
        // At the cap, stop accepting: further clients wait in the kernel's
        // listen backlog (and past it, retry their SYN) until one leaves.
        let slot = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    warn!(error = %e, "accepting connections failed; pausing");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(WriteTimeout::new(stream, limits.write_timeout));
        // Upgrades: GET /ws becomes a websocket on the same connection.
        let conn = http
            .serve_connection(io, TowerToHyperService::new(app.clone()))
            .with_upgrades();
        let mut stop = shutdown.clone();
        tokio::spawn(
            async move {
                let mut conn = std::pin::pin!(conn);
                let result = tokio::select! {
                    r = conn.as_mut() => r,
                    _ = stopped(&mut stop) => {
                        conn.as_mut().graceful_shutdown();
                        tokio::time::timeout(SHUTDOWN_GRACE, conn.as_mut())
                            .await
                            .unwrap_or(Ok(()))
                    }
                };
                if let Err(e) = result {
                    debug!(error = %e, "connection ended");
                }
                drop(slot);
            }
            .instrument(tracing::debug_span!("http_connection", %peer)),
        );
    }
    // Every connection returns its slot when it ends.
    let _ = tokio::time::timeout(SHUTDOWN_GRACE * 2, slots.acquire_many(max as u32)).await;
}

/// Completes once shutdown has begun (or nobody can begin it any more).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Errors about one connection that went away before it was accepted:
/// nothing is wrong with the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// A socket whose writes fail with `TimedOut` once the peer has accepted no
/// bytes for `limit` while some were waiting. Reads are untouched: an SSE
/// client never sends anything after its request.
struct WriteTimeout {
    inner: TcpStream,
    limit: Duration,
    /// Running while a write or flush is pending.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl WriteTimeout {
    fn new(inner: TcpStream, limit: Duration) -> WriteTimeout {
        WriteTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    /// Passes a ready result through (and forgets any stall); on pending,
    /// starts or checks the stall timer.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.stalled = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the peer accepted no bytes for {limit:?}"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for WriteTimeout {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for WriteTimeout {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, poll)
    }
}
