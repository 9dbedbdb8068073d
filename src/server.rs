//! The opt-in HTTP endpoint (`[server] listen`): `/healthz`, `/readyz` and `/metrics`.
//!
//! Plain HTTP/1.1 on the configured address, GET only. It reads [`Telemetry`] and never
//! touches tokens: no response body can hold one.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use http_body_util::Full;
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info};

use crate::telemetry::Telemetry;

/// Binds `addr` now (so a taken port is a start-up error) and returns the serving future.
pub async fn bind(
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
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    debug!("accept failed: {e}");
                    continue;
                }
            },
        };
        let telemetry = telemetry.clone();
        let shutdown = shutdown.clone();
        tracker.spawn(async move {
            let service = service_fn(move |req| {
                let telemetry = telemetry.clone();
                async move { Ok::<_, Infallible>(respond(&telemetry, &req)) }
            });
            let conn = http1::Builder::new().serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r { debug!("health connection: {e}") },
                () = shutdown.cancelled() => {}
            }
        });
    }
}

fn respond<B>(telemetry: &Telemetry, req: &Request<B>) -> Response<Full<Bytes>> {
    let text = |status: StatusCode, body: String| {
        Response::builder()
            .status(status)
            .header("content-type", "text/plain; charset=utf-8")
            .body(Full::new(Bytes::from(body)))
            .expect("static headers are valid")
    };
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
        "/metrics" => Response::builder()
            .header("content-type", "text/plain; version=0.0.4; charset=utf-8")
            .body(Full::new(Bytes::from(telemetry.render(now))))
            .expect("static headers are valid"),
        _ => text(StatusCode::NOT_FOUND, "not found: try /healthz, /readyz or /metrics\n".into()),
    }
}
