//! The simulator's HTTP side: the accept loop, routing, authentication (knox-api.md §7) and the
//! KNOXTOKEN handlers, answering byte for byte as Knox does wherever the reference says how.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::{jwt, ApiVersion, Issued, RequestRecord, Scripted, SimOptions};

type Body = Full<Bytes>;

const JSON: &str = "application/json";
/// Jetty's error pages are Latin-1 HTML.
pub(super) const HTML: &str = "text/html;charset=iso-8859-1";
/// Shiro's `BasicHttpAuthenticationFilter` challenge, upper-case scheme included (knox-api.md §7).
pub(super) const BASIC_CHALLENGE: &str = r#"BASIC realm="application""#;
/// Knox bodies are one JWT or a short form; anything bigger is not a KNOXTOKEN request.
const MAX_BODY: usize = 64 * 1024;

/// State shared by the [`super::Sim`] handle and every connection.
pub(super) struct Shared {
    /// The options as started; `ttl` and `clock_offset` live in [`State`] because they change.
    pub(super) opts: SimOptions,
    state: Mutex<State>,
    /// Woken whenever a token is issued, for `wait_for_acquisitions`.
    pub(super) issued_changed: Notify,
}

pub(super) struct State {
    pub(super) ttl: Option<Duration>,
    pub(super) clock_offset: i64,
    pub(super) scripted: VecDeque<Scripted>,
    pub(super) requests: Vec<RequestRecord>,
    pub(super) issued: Vec<Issued>,
}

impl Shared {
    pub(super) fn new(opts: SimOptions) -> Shared {
        let state = State {
            ttl: opts.ttl,
            clock_offset: opts.clock_offset,
            scripted: VecDeque::new(),
            requests: Vec::new(),
            issued: Vec::new(),
        };
        Shared { opts, state: Mutex::new(state), issued_changed: Notify::new() }
    }

    /// Locks the state. The lock is never held across an await, and a panic while holding it
    /// leaves the data consistent (every update is a single push or assignment), so poisoning
    /// is ignored rather than spread to every later request.
    pub(super) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Knox's `System.currentTimeMillis()`: local time plus the configured offset.
    fn knox_now_ms(&self) -> i64 {
        local_now_ms().saturating_add(self.state().clock_offset)
    }
}

fn local_now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

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
                    None => serve(stream, shared, local).await,
                    Some(acceptor) => match acceptor.accept(stream).await {
                        Ok(stream) => serve(stream, shared, local).await,
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

/// Serves HTTP/1.1 on one connection, plain or TLS.
async fn serve<S>(stream: S, shared: Arc<Shared>, local: Option<SocketAddr>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| handle(Arc::clone(&shared), local, req));
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

/// The parts of a request the handlers look at.
struct Req<'a> {
    method: &'a str,
    path: &'a str,
    query: &'a str,
    headers: &'a HeaderMap,
    body: &'a [u8],
    /// `http://host:port`, from the `Host` header as Jetty does.
    origin: String,
}

impl Req<'_> {
    /// `HttpServletRequest.getRequestURL()`: the URL without its query.
    fn url(&self) -> String {
        format!("{}{}", self.origin, self.path)
    }

    /// `request.getParameter(name)`: the query string first, then a form body on POST
    /// (knox-api.md §1.3).
    fn param(&self, name: &str) -> Option<String> {
        find_param(self.query, name).or_else(|| {
            let content_type = self.headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
            let is_form =
                self.method == "POST" && content_type.starts_with("application/x-www-form-urlencoded");
            is_form.then(|| find_param(std::str::from_utf8(self.body).ok()?, name)).flatten()
        })
    }
}

async fn handle(
    shared: Arc<Shared>,
    local: Option<SocketAddr>,
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
        (Some(host), _) => format!("http://{host}"),
        (None, Some(local)) => format!("http://{local}"),
        (None, None) => "http://localhost".to_owned(),
    };
    let req = Req {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or_default(),
        headers: &parts.headers,
        body: &body,
        origin,
    };
    let (auth_kind, caller) = authenticate(&shared.opts, req.headers);
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

    let mut resp = route(&shared, &req, caller).await;

    if !resp.headers().contains_key(header::DATE) {
        let knox_now = UNIX_EPOCH + Duration::from_millis(shared.knox_now_ms().max(0).unsigned_abs());
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
enum Resource {
    Token,
    TssStatus,
    Renew,
    Revoke,
    Jwks,
}

/// The KNOXTOKEN resources of Knox ≥2.1.0 and the methods each accepts (knox-api.md §1.1, §1.2).
/// A new endpoint (enable, disable, getUserTokens) is one row here and one arm in `route`.
fn resource(version: ApiVersion, tail: &str) -> Option<(Resource, &'static [&'static str])> {
    use ApiVersion::{V1, V2};
    Some(match (version, tail) {
        (_, "token") => (Resource::Token, &["GET", "POST"]),
        (_, "token/getTssStatus") => (Resource::TssStatus, &["GET"]),
        (V1, "token/renew") => (Resource::Renew, &["POST"]),
        (V2, "token/renew") => (Resource::Renew, &["PUT"]),
        (V1, "token/revoke") => (Resource::Revoke, &["POST"]),
        (V2, "token/revoke") => (Resource::Revoke, &["DELETE"]),
        (V1, "jwks.json") => (Resource::Jwks, &["GET"]),
        _ => return None,
    })
}

async fn route(shared: &Shared, req: &Req<'_>, caller: Result<String, Rejection>) -> Response<Body> {
    let prefix = format!("/gateway/{}/knoxtoken/api/", shared.opts.topology);
    let Some(rest) = req.path.strip_prefix(&prefix) else {
        return jetty_error(StatusCode::NOT_FOUND, req.path);
    };
    let (version, tail) = match rest.split_once('/') {
        Some(("v1", tail)) => (ApiVersion::V1, tail),
        Some(("v2", tail)) => (ApiVersion::V2, tail),
        _ => return jetty_error(StatusCode::NOT_FOUND, req.path),
    };
    // The authentication provider runs before Jersey, so 401/302 win over 404/405. Topologies
    // mark the JWKS paths anonymous, even the v2 one that nothing serves (knox-api.md §8).
    let user = match caller {
        _ if tail == "jwks.json" => String::new(),
        Ok(user) => user,
        Err(rejection) => return rejection.response(req),
    };
    let Some((resource, methods)) = resource(version, tail) else {
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
        Resource::Token => acquire(shared, req, &user).await,
        Resource::TssStatus => tss_status(shared),
        Resource::Renew => renew(req.body),
        // knox-api.md §4.1: revocation without a token state service. The sim does not store
        // tokens yet, so it always answers as an unmanaged topology does.
        Resource::Revoke => knox_error("revoked", "Token revocation support is not configured", 10),
        Resource::Jwks => reply(StatusCode::OK, Some(JSON), jwt::jwks_json()),
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
                // SSOCookieFederationFilter appends the query unencoded (knox-api.md §7).
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
        }
    }
}

/// The KnoxSSO login URL SSOCookieProvider redirects to (knox-api.md §7).
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

/// Token acquisition (knox-api.md §2): a scripted reply if one is queued, else a fresh token.
async fn acquire(shared: &Shared, req: &Req<'_>, user: &str) -> Response<Body> {
    // A separate statement, so the state lock is released before the scripted delay.
    let scripted = shared.state().scripted.pop_front();
    if let Some(scripted) = scripted {
        tokio::time::sleep(scripted.delay).await;
        return scripted_response(scripted);
    }

    let ttl_ms = ttl_ms(shared.state().ttl);
    let expires_in = get_expiry(shared.knox_now_ms(), ttl_ms, req.param("lifespan").as_deref());
    let token_id = uuid_v4();
    // TokenResource.getJku: the request URL up to its last '/', plus "/jwks.json" (§8).
    let url = req.url();
    let jku = format!("{}/jwks.json", url.rsplit_once('/').map_or(url.as_str(), |(head, _)| head));
    let managed = shared.opts.managed;
    let access_token = match jwt::issue(user, &token_id, expires_in, managed, &jku) {
        Ok(token) => token,
        Err(err) => {
            // Knox ≥2.1.0 answers a signing failure with 500 and this non-JSON body (§2.3).
            warn!(cause = %err, "simulator failed to sign a token");
            return reply(StatusCode::INTERNAL_SERVER_ERROR, Some(JSON), r#"{ "Unable to acquire token." }"#);
        }
    };

    // TokenResource.buildResponseMap (§2.1): `managed` is a string, `expires_in` a number.
    let mut body = json!({
        "access_token": access_token,
        "token_id": token_id,
        "managed": managed.to_string(),
        "token_type": "Bearer",
        "expires_in": expires_in,
        "endpoint_public_cert": STANDARD.encode("token-keeper simulator: plain HTTP, no certificate"),
    });
    if let Some(target_url) = &shared.opts.target_url {
        body["target_url"] = Value::from(target_url.as_str());
    }
    shared.state().issued.push(Issued { jwt: access_token, token_id, user: user.to_owned(), expires_in });
    shared.issued_changed.notify_waiters();
    reply(StatusCode::OK, Some(JSON), body.to_string())
}

fn scripted_response(scripted: Scripted) -> Response<Body> {
    let status = StatusCode::from_u16(scripted.status).unwrap_or_else(|_| {
        warn!(status = scripted.status, "scripted status is not a valid HTTP status, answering 500");
        StatusCode::INTERNAL_SERVER_ERROR
    });
    let mut resp = reply(status, None, scripted.body);
    for (name, value) in scripted.headers {
        match (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            (Ok(name), Ok(value)) => {
                resp.headers_mut().append(name, value);
            }
            _ => warn!(header = %name, "skipping an invalid scripted header"),
        }
    }
    resp
}

/// `knox.token.ttl` in Knox's terms: milliseconds, -1 for never.
fn ttl_ms(ttl: Option<Duration>) -> i64 {
    ttl.map_or(-1, |ttl| i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX))
}

/// `TokenResource.getExpiry` (knox-api.md §2.2): epoch ms on Knox's clock, or -1 for never.
pub(super) fn get_expiry(now_ms: i64, ttl_ms: i64, lifespan: Option<&str>) -> i64 {
    let mut millis = ttl_ms;
    match lifespan.filter(|l| !l.is_empty()) {
        None if ttl_ms == -1 => return -1,
        None => {}
        Some(text) => {
            // An unparsable lifespan is only logged and the TTL kept, even a TTL of -1: then
            // Knox issues a token that expired a millisecond ago. Faithfully reproduced.
            if let Some(lifetime) = parse_java_duration(text) {
                if ttl_ms == -1 || lifetime <= ttl_ms {
                    millis = lifetime;
                }
            }
        }
    }
    now_ms.saturating_add(millis)
}

/// `java.time.Duration.parse(text).toMillis()`: the grammar `[-+]P[nD][T[nH][nM][n[.f]S]]`,
/// case-insensitive, every number optionally signed, at least one part, and no empty `T`.
/// `None` where Java throws; Knox then keeps the TTL (knox-api.md §1.3).
pub(super) fn parse_java_duration(text: &str) -> Option<i64> {
    const SECOND: i128 = 1_000_000_000;
    let upper = text.to_ascii_uppercase();
    let (negative, rest) = match upper.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, upper.strip_prefix('+').unwrap_or(&upper)),
    };
    let rest = rest.strip_prefix('P')?;
    // "P" has no part at all, "PT" and "P1DT" an empty time section.
    if rest.is_empty() || rest.ends_with('T') {
        return None;
    }
    let (mut date, mut time) = rest.split_once('T').unwrap_or((rest, ""));
    let mut nanos = 0_i128;
    if let Some((days, _)) = take_unit(&mut date, 'D')? {
        nanos += days * 86_400 * SECOND;
    }
    for (unit, scale) in [('H', 3_600 * SECOND), ('M', 60 * SECOND), ('S', SECOND)] {
        if let Some((whole, fraction_nanos)) = take_unit(&mut time, unit)? {
            nanos += whole * scale + fraction_nanos;
        }
    }
    if !date.is_empty() || !time.is_empty() {
        return None;
    }
    if negative {
        nanos = -nanos;
    }
    // Java keeps whole seconds in a long, and toMillis floors.
    i64::try_from(nanos.div_euclid(SECOND)).ok()?;
    i64::try_from(nanos.div_euclid(1_000_000)).ok()
}

/// Consumes `<signed integer><unit>` from the front of `text`: `Some(None)` when `unit` does
/// not occur, `None` when what precedes it is not a number. Only 'S' may have a `.`/`,`
/// fraction of up to 9 digits, returned in nanoseconds with the sign of the whole part.
fn take_unit(text: &mut &str, unit: char) -> Option<Option<(i128, i128)>> {
    let Some((number, rest)) = text.split_once(unit) else {
        return Some(None);
    };
    *text = rest;
    let (whole, fraction) = match number.split_once(['.', ',']) {
        Some((whole, fraction)) if unit == 'S' => (whole, fraction),
        Some(_) => return None,
        None => (number, ""),
    };
    let digits = whole.strip_prefix(['-', '+']).unwrap_or(whole);
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if digits.is_empty() || !all_digits(digits) || fraction.len() > 9 || !all_digits(fraction) {
        return None;
    }
    let whole = i128::from(whole.parse::<i64>().ok()?);
    let fraction_nanos = format!("{fraction:0<9}").parse::<i128>().ok()?;
    let sign = if number.starts_with('-') { -1 } else { 1 };
    Some(Some((whole, sign * fraction_nanos)))
}

/// Knox's `getTokenTTLAsText`, trailing spaces and all.
pub(super) fn ttl_text(ttl_ms: i64) -> String {
    if ttl_ms == -1 {
        return "Unlimited lifetime".to_owned();
    }
    let s = ttl_ms / 1000;
    let parts =
        [(s / 86_400, "days "), (s / 3_600 % 24, "hours "), (s / 60 % 60, "minutes "), (s % 60, "seconds")];
    let shown = parts.into_iter().filter(|(value, _)| *value > 0);
    shown.map(|(value, unit)| format!("{value} {unit}")).collect()
}

/// `GET .../token/getTssStatus` (knox-api.md §4.4): string values, rendered by Jackson's default
/// pretty printer. The sim models an in-memory, non-persistent store, hence no `passcode` field.
fn tss_status(shared: &Shared) -> Response<Body> {
    const BACKEND: &str = "DefaultTokenStateService";
    let managed = shared.opts.managed.to_string();
    let ttl_ms = ttl_ms(shared.state().ttl);
    let (seconds, text) = ((if ttl_ms == -1 { -1 } else { ttl_ms / 1000 }).to_string(), ttl_text(ttl_ms));
    let mut fields = vec![("tokenManagementEnabled", managed.as_str())];
    if shared.opts.managed {
        fields.extend([("configuredTssBackend", BACKEND), ("actualTssBackend", BACKEND)]);
        fields.extend([("allowedTssForTokengen", "false"), ("maximumLifetimeSeconds", &seconds)]);
        fields.push(("maximumLifetimeText", &text));
    }
    fields.extend([("lifespanInputEnabled", "true"), ("impersonationEnabled", "false")]);
    let lines: Vec<String> = fields
        .into_iter()
        .map(|(name, value)| format!("  {} : {}", Value::from(name), Value::from(value)))
        .collect();
    reply(StatusCode::OK, Some(JSON), format!("{{\n{}\n}}", lines.join(",\n")))
}

/// Renewal as an unmanaged topology answers it (knox-api.md §3.1, §3.2): no whitelist check,
/// just the JWT's own `exp` echoed in milliseconds.
fn renew(body: &[u8]) -> Response<Body> {
    let token = String::from_utf8_lossy(body);
    match jwt::unverified_claims(token.trim()) {
        Err(message) => knox_error("renewed", message, 40),
        Ok(claims) => match claims.get("exp").and_then(Value::as_i64) {
            Some(exp) => {
                let expires = exp.saturating_mul(1000);
                let body = format!("{{\n  \"renewed\": \"true\",\n  \"expires\": \"{expires}\"\n}}\n");
                reply(StatusCode::OK, Some(JSON), body)
            }
            // Long.parseLong(null) on a JWT without `exp`.
            None => knox_error("renewed", "Cannot parse null string: null", 30),
        },
    }
}

/// Knox's hand-concatenated error body for renew/revoke (knox-api.md §3.1, §4.1), unescaped
/// like the original; `field` is "renewed" or "revoked".
fn knox_error(field: &str, error: &str, code: u16) -> Response<Body> {
    let body = format!("{{\n  \"{field}\": \"false\",\n  \"error\": \"{error}\",\n  \"code\": {code}\n}}\n");
    reply(StatusCode::BAD_REQUEST, Some(JSON), body)
}

fn reply(status: StatusCode, content_type: Option<&'static str>, body: impl Into<Bytes>) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Some(content_type) = content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    resp
}

/// Jetty's HTML error response, which Knox sends for unknown paths and wrong methods.
fn jetty_error(status: StatusCode, uri: &str) -> Response<Body> {
    let page = jetty_error_page(status.as_u16(), status.canonical_reason().unwrap_or(""), uri);
    let mut resp = reply(status, Some(HTML), page);
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("must-revalidate,no-cache,no-store"));
    resp
}

/// The body of a Jetty 9.4 error page.
pub(super) fn jetty_error_page(status: u16, reason: &str, uri: &str) -> String {
    let uri = uri.replace('&', "&amp;").replace('<', "&lt;");
    format!(
        "<html>\n<head>\n<meta http-equiv=\"Content-Type\" content=\"text/html;charset=ISO-8859-1\"/>\n\
         <title>Error {status} {reason}</title>\n</head>\n<body><h2>HTTP ERROR {status} {reason}</h2>\n\
         <table>\n<tr><th>URI:</th><td>{uri}</td></tr>\n<tr><th>STATUS:</th><td>{status}</td></tr>\n\
         <tr><th>MESSAGE:</th><td>{reason}</td></tr>\n<tr><th>SERVLET:</th><td>-</td></tr>\n</table>\n\
         <hr/><a href=\"https://eclipse.org/jetty\">Powered by Jetty:// 9.4.53.v20231009</a><hr/>\n\n\
         </body>\n</html>\n"
    )
}

/// The first value of `name` in a form-encoded string, decoded as Jetty does.
fn find_param(encoded: &str, name: &str) -> Option<String> {
    encoded.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

/// `application/x-www-form-urlencoded` decoding; malformed escapes are kept literally.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&byte) = bytes.get(i) {
        let hex = text.get(i + 1..i + 3).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
        match (byte, hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(decoded)) => {
                out.push(decoded);
                i += 2;
            }
            _ => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A random (version 4) UUID, as `java.util.UUID.randomUUID()` gives Knox its token ids.
fn uuid_v4() -> String {
    let mut bytes = [0_u8; 16];
    fastrand::fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let dash = |i| if matches!(i, 4 | 6 | 8 | 10) { "-" } else { "" };
    bytes.iter().enumerate().map(|(i, byte)| format!("{}{byte:02x}", dash(i))).collect()
}
