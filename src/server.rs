//! The opt-in HTTP endpoint (`[server] listen`): `/healthz`, `/readyz` and `/metrics`.
//!
//! Plain HTTP/1.1 on the configured address, GET only. It reads [`Telemetry`] and never
//! touches tokens: no response body can hold one.
//!
//! Whatever clients do, the keeper keeps its file descriptors and its thread:
//! - At most [`MAX_CONNECTIONS`] connections are open. One more closes the oldest, so a
//!   client holding many idle connections cannot lock out a health check, nor push the
//!   daemon to its descriptor limit (refreshing needs descriptors too).
//! - A client has [`HEADER_READ_TIMEOUT`] to send a request's headers, also between requests
//!   on a kept-alive connection, and a connection lasts [`MAX_CONNECTION_AGE`] at most.
//! - An accept that fails for lack of descriptors or memory is retried after
//!   [`ACCEPT_BACKOFF`], not in a loop at full CPU.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

use crate::telemetry::Telemetry;

/// Connections open at once, at most. Prometheus and a health checker need one or two.
pub(crate) const MAX_CONNECTIONS: usize = 64;

/// How long a client has to send a request's headers, from the connection's start or the
/// previous response: an idle kept-alive connection is closed after this too.
pub(crate) const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The longest a connection lasts, whatever it does (a client that never reads its answer).
pub(crate) const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// How long a connection past its age may take to finish the request it is answering.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The wait before accepting again after running out of descriptors or memory.
pub(crate) const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Read buffer per connection: a GET with a few headers needs far less (hyper's floor is 8 KiB).
const MAX_BUF: usize = 16 * 1024;

/// Accept failures are logged at warn level at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Binds `addr` now (so a taken port is a start-up error) and returns the serving future.
pub(crate) async fn bind(
    addr: SocketAddr,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) -> anyhow::Result<(SocketAddr, impl std::future::Future<Output = ()>)> {
    let listener =
        TcpListener::bind(addr).await.with_context(|| format!("[server] listen: binding {addr}"))?;
    let local = listener.local_addr()?;
    info!(listen = %local, "serving /healthz, /readyz and /metrics");
    Ok((local, serve(listener, telemetry, shutdown, tracker)))
}

async fn serve(
    listener: TcpListener,
    telemetry: Arc<Telemetry>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let mut open = Open::new();
    let mut warned: Option<Instant> = None;
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) if out_of_resources(&e) => {
                    if warned.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                        warned = Some(Instant::now());
                        warn!("accepting a health connection failed: {e}; retrying in {}ms", ACCEPT_BACKOFF.as_millis());
                    }
                    tokio::select! {
                        () = shutdown.cancelled() => return,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                    }
                }
                Err(e) => {
                    debug!("accept failed: {e}");
                    continue;
                }
            },
        };
        let Some((permit, cancel)) = open.admit(&shutdown).await else { return };
        tracker.spawn(connection(stream, telemetry.clone(), permit, cancel));
    }
}

/// Accept errors that say the process or the host is out of something: retrying at once
/// would fail the same way, in a loop.
fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM))
}

/// The open connections, oldest first, and the permits that cap their number.
struct Open {
    permits: Arc<Semaphore>,
    /// Cancelled when the connection ends (or is closed to make room).
    live: VecDeque<CancellationToken>,
}

impl Open {
    fn new() -> Open {
        Open { permits: Arc::new(Semaphore::new(MAX_CONNECTIONS)), live: VecDeque::new() }
    }

    /// A permit and a cancellation token for a new connection. At the cap, the oldest open
    /// connection is closed and its permit awaited. `None` at shutdown.
    async fn admit(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Option<(OwnedSemaphorePermit, CancellationToken)> {
        self.live.retain(|c| !c.is_cancelled());
        let permit = match self.permits.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if let Some(oldest) = self.live.pop_front() {
                    debug!("{MAX_CONNECTIONS} health connections open: closing the oldest");
                    oldest.cancel();
                }
                tokio::select! {
                    p = self.permits.clone().acquire_owned() => p.ok()?,
                    () = shutdown.cancelled() => return None,
                }
            }
        };
        let cancel = shutdown.child_token();
        self.live.push_back(cancel.clone());
        Some((permit, cancel))
    }
}

/// Serves one connection until it ends, is closed to make room (`cancel`), or reaches its
/// age limit.
async fn connection(
    stream: TcpStream,
    telemetry: Arc<Telemetry>,
    permit: OwnedSemaphorePermit,
    cancel: CancellationToken,
) {
    let _permit = permit;
    // Marks the connection as ended, whichever way it ends.
    let _ended = cancel.clone().drop_guard();
    let service = service_fn(move |req| {
        let telemetry = telemetry.clone();
        async move { Ok::<_, Infallible>(respond(&telemetry, &req)) }
    });
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(HEADER_READ_TIMEOUT).max_buf_size(MAX_BUF);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => if let Err(e) = r { debug!("health connection: {e}") },
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(MAX_CONNECTION_AGE) => {
            // Finishes the answer in progress, if any, then closes.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = tokio::time::timeout(CLOSE_GRACE, conn) => {}
                () = cancel.cancelled() => {}
            }
        }
    }
}

/// A response with a body of `content_type`.
fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn respond<B>(telemetry: &Telemetry, req: &Request<B>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| answer(status, "text/plain; charset=utf-8", body);
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    let now = SystemTime::now();
    match req.uri().path() {
        "/healthz" => match telemetry.healthy() {
            Ok(since) => {
                text(StatusCode::OK, format!("ok: the keeper loop ran {}ms ago\n", since.as_millis()))
            }
            Err(since) => text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("unhealthy: the keeper loop has not run for {}s\n", since.as_secs()),
            ),
        },
        "/readyz" => {
            let not = telemetry.not_ready(now);
            if not.is_empty() {
                text(StatusCode::OK, "ready: every cluster has a fresh token\n".into())
            } else {
                let body: String = not.iter().map(|n| format!("{}: {}\n", n.cluster, n.reason)).collect();
                text(StatusCode::SERVICE_UNAVAILABLE, format!("not ready:\n{body}"))
            }
        }
        "/metrics" => {
            answer(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", telemetry.render(now))
        }
        _ => text(StatusCode::NOT_FOUND, "not found: try /healthz, /readyz or /metrics\n".into()),
    }
}
