//! The simulator's HTTP side: the accept loop, the route and verb table of each Knox version
//! (docs/knox.md §1.1, §1.2) and authentication (§7). The KNOXTOKEN handlers themselves are in
//! `api`, the Bearer topology's ping in `bearer`; the request and reply types all three use are
//! in `http`, the state every connection shares in `shared`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http_body_util::{BodyExt as _, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::http::{jetty_error, reply, Body, Req, BASIC_CHALLENGE};
use super::shared::Shared;
use super::{api, bearer, ApiVersion, KnoxVersion, RequestRecord, SimOptions};

/// Knox bodies are one JWT or a short form; anything bigger is not a KNOXTOKEN request.
const MAX_BODY: usize = 64 * 1024;

/// Accepts connections until `shutdown`; each connection is served on its own tracked task and
/// dropped (closing the socket) on shutdown, so a stopped sim refuses and resets like a dead Knox.
pub(super) async fn accept_loop(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
) {
    let local = listener.local_addr().ok();
    let scheme = if tls.is_some() { "https" } else { "http" };
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    // Usually per-connection (ECONNABORTED) or fd exhaustion; pause briefly so
                    // the latter does not become a busy loop.
                    warn!(cause = %err, "simulator failed to accept");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let shared = Arc::clone(&shared);
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tracker.spawn(async move {
            let served = async {
                match tls {
                    None => serve(stream, shared, local, scheme).await,
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => serve(stream, shared, local, scheme).await,
                        // A client that rejects our certificate hangs up here.
                        Err(err) => debug!(cause = %err, "simulator TLS handshake failed"),
                    },
                }
            };
            tokio::select! {
                () = served => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

/// Serves HTTP/1.1 on one connection, plain or TLS; `scheme` is "http" or "https" accordingly.
async fn serve<S>(stream: S, shared: Arc<Shared>, local: Option<SocketAddr>, scheme: &'static str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(Arc::clone(&shared), local, scheme, req));
    // The sim sets `Date` itself, from Knox's clock; keep-alive stays on because the daemon
    // reuses connections.
    let conn = http1::Builder::new()
        .auto_date_header(false)
        .keep_alive(true)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(err) = conn.await {
        debug!(cause = %err, "simulator connection ended with an error");
    }
}

async fn handle(
    shared: Arc<Shared>,
    local: Option<SocketAddr>,
    scheme: &'static str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let (parts, body) = req.into_parts();
    // A body that is too large or cut off reads as empty; the handlers then fail as Knox would.
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let host = parts.headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin = match (host, local) {
        (Some(host), _) => format!("{scheme}://{host}"),
        (None, Some(local)) => format!("{scheme}://{local}"),
        (None, None) => format!("{scheme}://localhost"),
    };
    let req = Req {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
        body: &body,
        origin,
    };
    // The Bearer topology's JWTProvider replaces the token topology's providers on its path.
    let (ping, auth_kind, caller) = {
        let mut state = shared.state();
        let (auth_kind, caller) = authenticate(&state.opts, req.headers);
        if bearer::is_ping(&state.opts, req.path) {
            (true, auth_kind, bearer::accepted_user(&mut state, req.headers).ok_or(Rejection::JwtRejected))
        } else {
            (false, auth_kind, caller)
        }
    };
    let record = RequestRecord {
        method: req.method.to_owned(),
        path: req.path.to_owned(),
        query: req.query.to_owned(),
        status: 0,
        user: caller.as_ref().ok().cloned(),
        auth: auth_kind,
        has_xsrf_header: req.headers.contains_key("x-xsrf-header"),
    };
    let index = {
        let mut state = shared.state();
        state.requests.push(record);
        state.requests.len() - 1
    };

    let mut resp = match caller {
        Ok(_) if ping => bearer::ping(&req),
        Err(rejection) if ping => rejection.response(&req),
        caller => route(&shared, &req, caller).await,
    };

    if !resp.headers().contains_key(header::DATE) {
        let knox_now = UNIX_EPOCH + Duration::from_millis(shared.state().now_ms().max(0).unsigned_abs());
        if let Ok(date) = HeaderValue::from_str(&httpdate::fmt_http_date(knox_now)) {
            resp.headers_mut().insert(header::DATE, date);
        }
    }
    debug!(method = req.method, path = req.path, status = resp.status().as_u16(), "simulator answered");
    if let Some(record) = shared.state().requests.get_mut(index) {
        record.status = resp.status().as_u16();
    }
    Ok(resp)
}

/// What a handler serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Resource {
    Token,
    TssStatus,
    Renew,
    Revoke,
    RevokeTokens,
    /// `enable` (true) or `disable` (false).
    SetEnabled(bool),
    /// `enableTokens` (true) or `disableTokens` (false).
    SetEnabledBatch(bool),
    UserTokens,
    Jwks,
}

/// The KNOXTOKEN resources of each Knox version and the methods each accepts (docs/knox.md §1.1,
/// §1.2). `None` is a path Jersey does not know (404); a known path with another method is 405.
///
/// The reference gives the history of renew and revoke only. The rest is assumed: enable,
/// disable and `getUserTokens` arrive with the error codes 50-70 in 1.6.0 (§5), the batch
/// endpoints with 2.1.0, and `getTssStatus` and the JWKS path exist in every profile.
fn resource(knox: KnoxVersion, api: ApiVersion, tail: &str) -> Option<(Resource, &'static [&'static str])> {
    use KnoxVersion::{V1_6, V2_1};
    // v2 (TokenResourceV2) exists since 2.1.0 only.
    if api == ApiVersion::V2 && knox < V2_1 {
        return None;
    }
    // KNOX-2661 (1.6.0) moved v1 renew/revoke to PUT/DELETE; KNOX-2985 (2.1.0) moved them back
    // to POST on v1 and put PUT/DELETE on v2.
    let modern = (V1_6..V2_1).contains(&knox) || api == ApiVersion::V2;
    let (renew, revoke): (&[&str], &[&str]) =
        if modern { (&["PUT"], &["DELETE"]) } else { (&["POST"], &["POST"]) };
    Some(match tail {
        "token" => (Resource::Token, &["GET", "POST"]),
        "token/getTssStatus" => (Resource::TssStatus, &["GET"]),
        "token/renew" => (Resource::Renew, renew),
        "token/revoke" => (Resource::Revoke, revoke),
        "token/enable" if knox >= V1_6 => (Resource::SetEnabled(true), &["PUT"]),
        "token/disable" if knox >= V1_6 => (Resource::SetEnabled(false), &["PUT"]),
        "token/getUserTokens" if knox >= V1_6 => (Resource::UserTokens, &["GET"]),
        "token/revokeTokens" if knox >= V2_1 => (Resource::RevokeTokens, &["DELETE"]),
        "token/enableTokens" if knox >= V2_1 => (Resource::SetEnabledBatch(true), &["PUT"]),
        "token/disableTokens" if knox >= V2_1 => (Resource::SetEnabledBatch(false), &["PUT"]),
        "jwks.json" if api == ApiVersion::V1 => (Resource::Jwks, &["GET"]),
        _ => return None,
    })
}

async fn route(shared: &Shared, req: &Req<'_>, caller: Result<String, Rejection>) -> Response<Body> {
    let (topology, knox) = {
        let state = shared.state();
        (state.opts.topology.clone(), state.opts.version)
    };
    let prefix = format!("/gateway/{topology}/knoxtoken/api/");
    let Some(rest) = req.path.strip_prefix(&prefix) else {
        return jetty_error(StatusCode::NOT_FOUND, req.path);
    };
    let (version, tail) = match rest.split_once('/') {
        Some(("v1", tail)) => (ApiVersion::V1, tail),
        Some(("v2", tail)) => (ApiVersion::V2, tail),
        _ => return jetty_error(StatusCode::NOT_FOUND, req.path),
    };
    // The authentication provider runs before Jersey, so 401/302 win over 404/405. Topologies
    // may mark the JWKS paths anonymous, even the v2 one that nothing serves (docs/knox.md
    // §8.2, §8.3).
    let jwks_anonymous = shared.state().opts.jwks_anonymous;
    let user = match caller {
        _ if tail == "jwks.json" && jwks_anonymous => String::new(),
        Ok(user) => user,
        Err(rejection) => return rejection.response(req),
    };
    let Some((resource, methods)) = resource(knox, version, tail) else {
        return jetty_error(StatusCode::NOT_FOUND, req.path);
    };
    if !methods.contains(&req.method) {
        let mut resp = jetty_error(StatusCode::METHOD_NOT_ALLOWED, req.path);
        if let Ok(allow) = HeaderValue::from_str(&methods.join(",")) {
            resp.headers_mut().insert(header::ALLOW, allow);
        }
        return resp;
    }
    match resource {
        Resource::Token => api::acquire(shared, req, &user).await,
        Resource::TssStatus => api::tss_status(&shared.state()),
        Resource::Renew => api::renew(&mut shared.state(), req, &user),
        Resource::Revoke => api::revoke(&mut shared.state(), req, &user),
        Resource::RevokeTokens => api::revoke_tokens(&mut shared.state(), req, &user),
        Resource::SetEnabled(enable) => api::set_enabled(&mut shared.state(), req, enable),
        Resource::SetEnabledBatch(enable) => api::set_enabled_batch(&mut shared.state(), req, enable),
        Resource::UserTokens => api::user_tokens(&mut shared.state(), req),
        Resource::Jwks => api::jwks(&shared.state().opts),
    }
}

/// Why authentication failed, i.e. which provider's failure response to send.
#[derive(Debug)]
enum Rejection {
    /// Shiro `authcBasic`: missing or wrong Basic credentials.
    BasicChallenge,
    /// SSOCookieProvider: no or bad `hadoop-jwt` cookie.
    SsoRedirect,
    /// JWTProvider: a bearer token it does not accept.
    BearerRejected,
    /// The Bearer topology's JWTProvider: no token, or one Knox does not accept. Knox 2.0.0
    /// answers 401 with an empty body.
    JwtRejected,
}

impl Rejection {
    fn response(&self, req: &Req<'_>) -> Response<Body> {
        match self {
            Rejection::BasicChallenge => {
                let mut resp = reply(StatusCode::UNAUTHORIZED, None, "");
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(BASIC_CHALLENGE));
                resp
            }
            Rejection::SsoRedirect => {
                // SSOCookieFederationFilter appends the query unencoded (docs/knox.md §7.3).
                let mut original = req.url();
                if !req.query.is_empty() {
                    original = format!("{original}?{}", req.query);
                }
                let mut resp = reply(StatusCode::FOUND, None, "");
                if let Ok(location) = HeaderValue::from_str(&sso_login_url(&req.origin, &original)) {
                    resp.headers_mut().insert(header::LOCATION, location);
                }
                resp
            }
            Rejection::BearerRejected => {
                reply(StatusCode::UNAUTHORIZED, Some("text/plain"), "Token has expired")
            }
            Rejection::JwtRejected => reply(StatusCode::UNAUTHORIZED, None, ""),
        }
    }
}

/// The KnoxSSO login URL SSOCookieProvider redirects to (docs/knox.md §7.3).
pub(super) fn sso_login_url(origin: &str, original_url: &str) -> String {
    format!("{origin}/gateway/knoxsso/api/v1/websso?originalUrl={original_url}")
}

/// Checks the credentials a request presents, in the order Basic, `hadoop-jwt` cookie, Bearer,
/// and returns their kind for the request log along with the user or the failure.
fn authenticate(opts: &SimOptions, headers: &HeaderMap) -> (&'static str, Result<String, Rejection>) {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (scheme, credentials) = authorization.split_once(' ').unwrap_or((authorization, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(credentials.trim()).ok().and_then(|b| String::from_utf8(b).ok());
        let user = decoded.as_deref().and_then(|d| d.split_once(':')).and_then(|(user, password)| {
            let valid = opts.users.iter().any(|(u, p)| u == user && p == password);
            valid.then(|| user.to_owned())
        });
        return ("basic", user.ok_or(Rejection::BasicChallenge));
    }
    if let Some(cookie) = hadoop_jwt_cookie(headers) {
        return ("cookie", lookup(&opts.cookies, cookie).ok_or(Rejection::SsoRedirect));
    }
    if scheme.eq_ignore_ascii_case("bearer") {
        return ("bearer", lookup(&opts.bearer_tokens, credentials.trim()).ok_or(Rejection::BearerRejected));
    }
    // No credentials: an SSO topology redirects to its login page, a Basic one challenges.
    let rejection = if opts.cookies.is_empty() { Rejection::BasicChallenge } else { Rejection::SsoRedirect };
    ("none", Err(rejection))
}

fn lookup(accepted: &[(String, String)], presented: &str) -> Option<String> {
    accepted.iter().find(|(value, _)| value == presented).map(|(_, user)| user.clone())
}

fn hadoop_jwt_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| pair.trim().strip_prefix("hadoop-jwt="))
}
