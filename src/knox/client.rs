//! The HTTP client for KNOXTOKEN: acquisition, with status checked before the body is read.
//!
//! One `reqwest::Client` per distinct TLS/timeout setting ([`Clients`]), so clusters behind
//! the same gateway share a connection pool. Redirects are never followed (docs/knox.md §7.3:
//! a 302 means "go to browser SSO"), every request has a timeout, and certificate checks are
//! on unless the cluster turned them off.
//!
//! Every body is read by `KnoxClient::read_body`, which stops at [`MAX_BODY`], and every answer
//! is checked where it is parsed (`parse_token`): the token's bytes, the strings that
//! reach logs, and the times (see the `knox` module docs).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, COOKIE, DATE, LOCATION, WWW_AUTHENTICATE};
use reqwest::{StatusCode, Url};
use serde_json::Value;

use super::answer::{self, Revocation};
use super::error::snippet;
use super::labels::{self, Purpose};
use super::{is_token_id, wire, Expiry, Jwt, KnoxError, Token};
use crate::config::{Auth, Cluster, Transport, Validation};
use crate::secret::Secret;
use crate::text;
use crate::time::{epoch_ms, MAX_EPOCH_MS};

/// Knox answers in well under a second; connecting should not take longer than this even
/// when the request timeout is generous.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The most of any body read from Knox: its answers are a few KiB (a token list of a few
/// hundred tokens stays well below). Reading stops as soon as a body passes it.
pub const MAX_BODY: usize = 1 << 20;

/// [`MAX_BODY`] for messages.
const MAX_BODY_TEXT: &str = "1 MiB";

/// A `Date` header further than this from our clock is a broken clock or a broken proxy, not
/// a measurement: it is ignored, with a warning.
pub const MAX_CLOCK_SKEW_MS: i64 = 365 * 86_400_000;

/// A client for one [`Transport`]. Cheap to clone (the pool is shared).
#[derive(Clone, Debug)]
pub struct KnoxClient {
    http: reqwest::Client,
    transport: Transport,
    /// Knox's JWKS per URL, shared by the clones (docs/knox.md §8.3).
    pub(super) keys: super::verify::KeyCache,
}

/// The clients in use, one per distinct [`Transport`].
#[derive(Default, Debug)]
pub struct Clients {
    by_transport: Mutex<HashMap<Transport, KnoxClient>>,
}

impl Clients {
    /// The client for `transport`, built on first use.
    pub fn get(&self, transport: &Transport) -> anyhow::Result<KnoxClient> {
        let mut map = self.by_transport.lock().expect("no code panics while holding this lock");
        if let Some(c) = map.get(transport) {
            return Ok(c.clone());
        }
        let client = KnoxClient::new(transport)?;
        map.insert(transport.clone(), client.clone());
        Ok(client)
    }

    /// Drops clients no cluster uses any more (after a reload).
    pub fn retain(&self, in_use: &[&Transport]) {
        let mut map = self.by_transport.lock().expect("no code panics while holding this lock");
        map.retain(|t, _| in_use.contains(&t));
    }
}

impl KnoxClient {
    /// Builds a client; fails if `ca_file` cannot be read or holds no certificate.
    pub fn new(transport: &Transport) -> anyhow::Result<KnoxClient> {
        // reqwest is built without a crypto provider (aws-lc-rs compiles C for minutes);
        // ring is installed as the process default once. A second call is a harmless no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(transport.timeout)
            .connect_timeout(CONNECT_TIMEOUT.min(transport.timeout))
            .user_agent(concat!("token-keeper/", env!("CARGO_PKG_VERSION")));
        if !transport.https {
            // Plain HTTP (the loopback simulator): TLS is never used, so do not load roots.
            builder = builder.tls_certs_only(Vec::new());
        } else if let Some(ca) = &transport.ca_file {
            builder = builder.tls_certs_merge(load_ca_file(ca)?);
        }
        if transport.insecure_skip_tls_verify {
            builder = builder.tls_danger_accept_invalid_certs(true);
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(KnoxClient { http, transport: transport.clone(), keys: Default::default() })
    }

    /// Acquires a new token for `cluster` (docs/knox.md §2), labelled for `purpose` unless the
    /// cluster has `labels = false` (§2.1).
    #[tracing::instrument(skip_all, fields(cluster = %cluster.name))]
    pub async fn acquire_for(&self, cluster: &Cluster, purpose: Purpose) -> Result<Token, KnoxError> {
        let mut url = cluster.token_url.clone();
        if let Some(lifespan) = cluster.requested_lifespan() {
            url.query_pairs_mut().append_pair("lifespan", &lifespan);
        }
        if let Some(identity) = &cluster.labels {
            labels::add_labels(&mut url, identity, &cluster.name, purpose);
        }
        let shown = display_url(&url);
        let request = with_auth(self.http.get(url).header(ACCEPT, "application/json"), &cluster.auth)?;
        let started = Instant::now();
        let response = request.send().await.map_err(|e| self.transport_error(&shown, &e))?;
        let received = Instant::now();
        let acquired_at = SystemTime::now();
        let status = response.status();
        let headers = response.headers().clone();
        let body = self.read_body(response, &shown).await?;
        tracing::debug!(
            cluster = %cluster.name,
            url = %shown,
            status = status.as_u16(),
            latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "knox answered"
        );
        let knox_now_ms = knox_clock(headers.get(DATE).and_then(|v| v.to_str().ok()), acquired_at);
        check_status(&shown, status, &headers, &body)?;
        let mut token = parse_token(&body, knox_now_ms, received, acquired_at).map_err(|reason| {
            KnoxError::UnexpectedBody {
                url: shown.clone(),
                status,
                snippet: if body.contains("access_token") {
                    "(body not shown: it carries a token)".to_owned()
                } else {
                    snippet(&body)
                },
                reason,
            }
        })?;
        // Before the token leaves this function, so nothing publishes an unverified one.
        match super::verify::verify(self, cluster, &token, &body, &shown).await {
            Ok(how) => token.verified = how,
            Err(e) => {
                self.revoke_refused(cluster, &token).await;
                return Err(e);
            }
        }
        Ok(token)
    }

    /// Revokes a managed token that failed verification, by its id, so that refusing tokens
    /// (and retrying) does not fill the user's per-user token limit (docs/knox.md §4.1, §9.3).
    /// Best effort: the outcome is logged.
    async fn revoke_refused(&self, cluster: &Cluster, token: &Token) {
        let Some(id) = token.token_id.as_deref().filter(|_| token.managed && !token.legacy) else {
            return;
        };
        let mut flavor = Flavor::default();
        match self.token_op(cluster, Op::Revoke, &Secret::new(id), &mut flavor).await {
            Ok((status, body))
                if answer::revocation(status.as_u16(), &answer::parse(&body)) == Revocation::Revoked =>
            {
                tracing::info!(cluster = %cluster.name, token_id = id, "revoked the refused token");
            }
            Ok((status, body)) => tracing::warn!(
                cluster = %cluster.name,
                token_id = id,
                status = status.as_u16(),
                "could not revoke the refused token: {}",
                snippet(&body)
            ),
            Err(e) => {
                tracing::warn!(cluster = %cluster.name, token_id = id, "could not revoke the refused token: {e}")
            }
        }
    }

    /// `GET` Knox's JWKS at `url` with the cluster's credentials (docs/knox.md §8.3): the body
    /// of a 200, or why there is none.
    pub(super) async fn get_jwks(&self, cluster: &Cluster, url: &Url) -> Result<String, String> {
        let shown = display_url(url);
        let request = with_auth(self.http.get(url.clone()).header(ACCEPT, "application/json"), &cluster.auth)
            .map_err(|e| e.to_string())?;
        let response = request.send().await.map_err(|e| self.transport_error(&shown, &e).to_string())?;
        let status = response.status();
        let body = self.read_body(response, &shown).await.map_err(|e| e.to_string())?;
        tracing::debug!(cluster = %cluster.name, url = %shown, status = status.as_u16(), "knox answered");
        if !status.is_success() {
            return Err(format!("{shown} answered {status}: {}", snippet(&body)));
        }
        Ok(body)
    }

    /// Reads `response`'s body chunk by chunk, and gives up as soon as it passes
    /// [`MAX_BODY`] (announced or not), so an endless body costs at most that much memory.
    async fn read_body(&self, mut response: reqwest::Response, url: &str) -> Result<String, KnoxError> {
        let too_large = |status| KnoxError::UnexpectedBody {
            url: url.to_owned(),
            status,
            reason: format!("its body is larger than the {MAX_BODY_TEXT} limit (reading stopped there)"),
            snippet: "(body not shown)".to_owned(),
        };
        let status = response.status();
        if response.content_length().is_some_and(|n| n > MAX_BODY as u64) {
            return Err(too_large(status));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.transport_error(url, &e))? {
            if chunk.len() > MAX_BODY.saturating_sub(body.len()) {
                return Err(too_large(status));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Sends `body` to the `op` endpoint, trying the API flavours from `flavor` on (404 →
    /// v1 with PUT/DELETE, 405 → v1 with POST, docs/knox.md §1.2) and leaving in `flavor` the
    /// one that answered. Returns Knox's status and body for any answer that is Knox's own
    /// (2xx, 400, 403, 404 from the final flavour...); redirects, 401, 5xx and network
    /// failures are errors.
    pub async fn token_op(
        &self,
        cluster: &Cluster,
        op: Op,
        body: &Secret,
        flavor: &mut Flavor,
    ) -> Result<(StatusCode, String), KnoxError> {
        loop {
            let url = api_url(&cluster.token_url, *flavor == Flavor::V2, op.path());
            let shown = display_url(&url);
            let request = self
                .http
                .request(op.method(*flavor), url)
                .header(ACCEPT, "application/json")
                .header(CONTENT_TYPE, "text/plain")
                // Required on non-GET requests by topologies with CSRF protection (docs/knox.md §7.2).
                .header("X-XSRF-Header", "true")
                .body(body.expose().to_owned());
            let response = with_auth(request, &cluster.auth)?
                .send()
                .await
                .map_err(|e| self.transport_error(&shown, &e))?;
            let status = response.status();
            let headers = response.headers().clone();
            let text = self.read_body(response, &shown).await?;
            tracing::debug!(cluster = %cluster.name, url = %shown, op = op.path(), status = status.as_u16(), "knox answered");
            let next = match (status, *flavor) {
                (StatusCode::NOT_FOUND, Flavor::V2) => Some(Flavor::V1Put),
                (StatusCode::METHOD_NOT_ALLOWED, Flavor::V2 | Flavor::V1Put)
                    if op.method(Flavor::V1Post) != op.method(*flavor) =>
                {
                    Some(Flavor::V1Post)
                }
                _ => None,
            };
            if let Some(next) = next {
                *flavor = next;
                continue;
            }
            if status.is_redirection()
                || status == StatusCode::UNAUTHORIZED
                || status.is_server_error()
                || status == StatusCode::TOO_MANY_REQUESTS
            {
                check_status(&shown, status, &headers, &text)?;
            }
            return Ok((status, text));
        }
    }

    /// `GET .../token/getUserTokens?userName=<user>` (docs/knox.md §4.3): Knox's status and body.
    pub async fn user_tokens(
        &self,
        cluster: &Cluster,
        user: &str,
    ) -> Result<(StatusCode, String), KnoxError> {
        let mut url = api_url(&cluster.token_url, false, "getUserTokens");
        url.query_pairs_mut().append_pair("userName", user);
        let shown = display_url(&url);
        let request = with_auth(self.http.get(url).header(ACCEPT, "application/json"), &cluster.auth)?;
        let response = request.send().await.map_err(|e| self.transport_error(&shown, &e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let text = self.read_body(response, &shown).await?;
        if status.is_redirection()
            || status == StatusCode::UNAUTHORIZED
            || status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE
        {
            check_status(&shown, status, &headers, &text)?;
        }
        Ok((status, text))
    }

    /// `GET .../token/getTssStatus` (docs/knox.md §4.4) on the v1 or v2 API: Knox's status and
    /// body. A 404 from v2 means Knox before 2.1 (no v2 API, §1.2).
    pub async fn tss_status(&self, cluster: &Cluster, v2: bool) -> Result<(StatusCode, String), KnoxError> {
        let url = api_url(&cluster.token_url, v2, "getTssStatus");
        let shown = display_url(&url);
        let request = with_auth(self.http.get(url).header(ACCEPT, "application/json"), &cluster.auth)?;
        let response = request.send().await.map_err(|e| self.transport_error(&shown, &e))?;
        let status = response.status();
        let text = self.read_body(response, &shown).await?;
        tracing::debug!(cluster = %cluster.name, url = %shown, status = status.as_u16(), "knox answered");
        Ok((status, text))
    }

    fn transport_error(&self, url: &str, e: &reqwest::Error) -> KnoxError {
        if e.is_timeout() {
            return KnoxError::Timeout { url: url.to_owned(), after: self.transport.timeout };
        }
        // The error chain carries the useful part ("connection refused", a TLS reason).
        let mut detail = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            detail.push_str(": ");
            detail.push_str(&s.to_string());
            source = s.source();
        }
        // The chain may quote what the peer sent (a malformed header): shown escaped.
        let detail = text::escape(&detail).into_owned();
        if detail.contains("certificate") {
            return KnoxError::Tls { url: url.to_owned(), detail };
        }
        KnoxError::Transport { url: url.to_owned(), detail }
    }
}

/// Adds the cluster's credentials (read from their files now, so rotations are picked up).
fn with_auth(request: reqwest::RequestBuilder, auth: &Auth) -> Result<reqwest::RequestBuilder, KnoxError> {
    Ok(match auth {
        Auth::Basic { user, password_file } => {
            let password = read_secret(password_file, "password_file", SecretKind::Password)?;
            request.basic_auth(user, Some(password.expose()))
        }
        Auth::Cookie { cookie_file, cookie_name } => {
            let value = read_secret(cookie_file, "cookie_file", SecretKind::Token)?;
            request.header(COOKIE, format!("{cookie_name}={}", value.expose()))
        }
        Auth::Bearer { token_file } => {
            let value = read_secret(token_file, "token_file", SecretKind::Token)?;
            request.header(AUTHORIZATION, format!("Bearer {}", value.expose()))
        }
    })
}

/// Which KNOXTOKEN API and verbs a gateway takes for renew and revoke (docs/knox.md §1.2).
/// Learned per cluster: start with v2, fall back on 404 and 405, remember what worked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// Knox ≥ 2.1: `PUT v2/token/renew`, `DELETE v2/token/revoke`.
    #[default]
    V2,
    /// Knox 1.6 to 2.0: v1 with `PUT`/`DELETE` (v2 answers 404).
    V1Put,
    /// Knox 1.4/1.5, or ≥ 2.1's deprecated v1: `POST` (the others answer 405).
    V1Post,
}

/// The token operations that take a body and change state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `/token/renew`, body the full JWT.
    Renew,
    /// `/token/revoke`, body a token id or the full JWT.
    Revoke,
    /// `/token/enable`, body a token id (`PUT` in every version).
    Enable,
    /// `/token/disable`, body a token id (`PUT` in every version).
    Disable,
}

impl Op {
    fn path(self) -> &'static str {
        match self {
            Op::Renew => "renew",
            Op::Revoke => "revoke",
            Op::Enable => "enable",
            Op::Disable => "disable",
        }
    }

    fn method(self, flavor: Flavor) -> reqwest::Method {
        use reqwest::Method;
        match (self, flavor) {
            (Op::Enable | Op::Disable, _) => Method::PUT,
            (_, Flavor::V1Post) => Method::POST,
            (Op::Renew, _) => Method::PUT,
            (Op::Revoke, _) => Method::DELETE,
        }
    }
}

/// `token_url` without its query, and the part of its path before `/api/v1/token` or
/// `/api/v2/token` (the KNOXTOKEN service's root, docs/knox.md §1.1); or, for a URL that ends
/// otherwise, its whole path as `Err`.
pub fn service_root(token_url: &Url) -> (Url, Result<String, String>) {
    let mut url = token_url.clone();
    url.set_query(None);
    let path = url.path().trim_end_matches('/').to_owned();
    let root = ["/api/v1/token", "/api/v2/token"].iter().find_map(|suffix| path.strip_suffix(suffix));
    let root = root.map(str::to_owned).ok_or(path);
    (url, root)
}

/// The URL of `.../knoxtoken/api/<v1|v2>/token/<tail>` for the gateway of `token_url`. A
/// `token_url` that does not end in `/api/v1/token` or `/api/v2/token` is used as the base
/// as it is.
pub fn api_url(token_url: &Url, v2: bool, tail: &str) -> Url {
    let (mut url, root) = service_root(token_url);
    let base = match root {
        Ok(root) => format!("{root}/api/{}/token", if v2 { "v2" } else { "v1" }),
        Err(path) => path,
    };
    url.set_path(&format!("{base}/{tail}"));
    url
}

/// Reads the extra CA certificates of `ca_file`; fails if there is none.
pub fn load_ca_file(ca: &Path) -> anyhow::Result<Vec<reqwest::Certificate>> {
    // Read on the async thread at every reload: a regular file only, never blocking, bounded.
    let pem = crate::config::read_regular_file(ca, 1 << 20)
        .with_context(|| format!("reading ca_file {}", ca.display()))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .with_context(|| format!("ca_file {} is not a PEM certificate bundle", ca.display()))?;
    if certs.is_empty() {
        anyhow::bail!("ca_file {} holds no PEM certificate", ca.display());
    }
    Ok(certs)
}

/// The URL for messages: no query string (it may hold `doAs` or metadata).
fn display_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

/// Maps a non-2xx answer to its error class. Status first, body second (docs/knox.md §9.5).
fn check_status(
    url: &str,
    status: StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> Result<(), KnoxError> {
    let url = url.to_owned();
    if status.is_success() {
        return Ok(());
    }
    if status.is_redirection() {
        let location = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| text::quote(l.split('?').next().unwrap_or(l), 300))
            .unwrap_or_else(|| "(no Location)".to_owned());
        return Err(KnoxError::Redirect { url, status, location });
    }
    if status == StatusCode::UNAUTHORIZED {
        let challenge = headers
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_whitespace().next())
            .map(|scheme| text::quote(scheme, 40));
        return Err(KnoxError::Unauthorized { url, challenge });
    }
    // The limit answer is not JSON: `{ "Unable to get token - token limit exceeded." }`.
    if status == StatusCode::FORBIDDEN && body.contains("token limit exceeded") {
        return Err(KnoxError::TokenLimitExceeded { url });
    }
    if status == StatusCode::NOT_FOUND && url.contains("/knoxtoken/api/v2/") {
        let v1 = url.replacen("/knoxtoken/api/v2/", "/knoxtoken/api/v1/", 1);
        return Err(KnoxError::NoV2Api { url, v1 });
    }
    let snippet = snippet(body);
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(KnoxError::Server { url, status, snippet });
    }
    Err(KnoxError::Rejected { url, status, snippet })
}

/// Knox's clock at the answer, in epoch ms. The `Date` header has one-second resolution: when
/// it agrees with our clock to within that, our clock (ms precision) is the better estimate;
/// otherwise Knox's clock is off and the middle of the `Date` second is used. A `Date` more
/// than [`MAX_CLOCK_SKEW_MS`] away from our clock is ignored, with a warning: a token's
/// lifetime measured against it would be decades off.
pub(crate) fn knox_clock(date: Option<&str>, local: SystemTime) -> i64 {
    let local_ms = epoch_ms(local);
    let Some(date_ms) = date.and_then(|d| httpdate::parse_http_date(d).ok()).map(epoch_ms) else {
        return local_ms;
    };
    let skew = date_ms.saturating_sub(local_ms);
    if skew.unsigned_abs() > MAX_CLOCK_SKEW_MS.unsigned_abs() {
        tracing::warn!(
            "Knox's Date header ({}) is more than a year away from this host's clock: it is ignored, \
             and lifetimes are measured on this host's clock",
            text::quote(date.unwrap_or_default(), 64)
        );
        return local_ms;
    }
    if (0..1000).contains(&local_ms.saturating_sub(date_ms)) {
        local_ms
    } else {
        date_ms.saturating_add(500)
    }
}

/// Builds a [`Token`] from a 2xx body, or says what is wrong with it (never quoting the
/// token). Oddities that do not make the token unusable are logged as warnings.
pub(crate) fn parse_token(
    body: &str,
    knox_now_ms: i64,
    received: Instant,
    acquired_at: SystemTime,
) -> Result<Token, String> {
    let wire: wire::TokenResponse = match serde_json::from_str(body) {
        Ok(w) => w,
        // Knox ≤ 2.0 answers a signing failure with 200 `{ "Unable to acquire token." }`
        // (docs/knox.md §2.4).
        Err(_) if body.contains("Unable to acquire token") => {
            return Err("Knox could not issue a token (\"Unable to acquire token\")".into())
        }
        Err(_) => return Err("the body is not JSON".into()),
    };
    let jwt = match wire.access_token.as_deref().filter(|t| !t.is_empty()) {
        None => return Err("the JSON has no access_token".to_owned()),
        Some(t) => Jwt::parse(t).map_err(|e| format!("access_token is not a usable JWT: {e}"))?,
    };
    let claims = jwt.claims();
    for note in &claims.notes {
        tracing::warn!("{note}");
    }
    let jwt_exp = claims.exp;
    let expires_in = match &wire.expires_in {
        Some(v) => parse_expires_in(v, knox_now_ms)?,
        // Knox always sends it; without it the JWT's exp is all we have.
        None => jwt_exp.map_or(Expiry::Never, |s| Expiry::At(s.saturating_mul(1000))),
    };
    let legacy = wire.token_id.is_none() && wire.managed.is_none();
    let managed = match &wire.managed {
        Some(Value::String(s)) => s.trim().eq_ignore_ascii_case("true"),
        Some(Value::Bool(b)) => *b,
        _ => false,
    };
    let token = Token {
        token_id: token_id(wire.token_id.as_deref(), claims.knox_id.as_deref()),
        token_type: token_type(wire.token_type.as_deref()),
        target_url: target_url(wire.target_url),
        subject: claims.sub.clone(),
        jwt: jwt.secret().clone(),
        expires_in,
        jwt_exp,
        managed,
        legacy,
        renewed_at: None,
        acquired_at,
        received,
        knox_now_ms,
        clock_offset_ms: knox_now_ms.saturating_sub(epoch_ms(acquired_at)),
        verified: super::Verified::Off,
    };
    if token.lifetime(Validation::Jwt) == Some(std::time::Duration::ZERO) {
        return Err(format!(
            "the token is already expired (expires {} ms before Knox's clock)",
            knox_now_ms.saturating_sub(token.expiry_ms(Validation::Jwt).unwrap_or(knox_now_ms))
        ));
    }
    Ok(token)
}

/// Knox's `token_id` if it is a plausible id, else the JWT's `knox.id` (itself checked), with
/// a warning: an odd id would otherwise reach every log line about the token.
fn token_id(sent: Option<&str>, knox_id: Option<&str>) -> Option<String> {
    match sent.filter(|id| !id.is_empty()) {
        Some(id) if is_token_id(id) => Some(id.to_owned()),
        Some(id) => {
            tracing::warn!(
                len = id.len(),
                "Knox's token_id is not a plausible token id ([A-Za-z0-9._-], at most {} characters): \
                 ignored, and the JWT's knox.id used instead{}",
                super::MAX_TOKEN_ID,
                if knox_id.is_some() { "" } else { " (it has none)" }
            );
            knox_id.map(str::to_owned)
        }
        None => knox_id.map(str::to_owned),
    }
}

/// `token_type`, trimmed; "Bearer" if absent or not one short word.
fn token_type(sent: Option<&str>) -> String {
    let Some(t) = sent.map(str::trim) else { return "Bearer".to_owned() };
    if !t.is_empty()
        && t.len() <= 32
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return t.to_owned();
    }
    tracing::warn!("Knox's token_type ({}) is not one short word: \"Bearer\" is used", text::quote(t, 40));
    "Bearer".to_owned()
}

/// `target_url`, unless it holds something to escape or is absurdly long.
fn target_url(sent: Option<String>) -> Option<String> {
    let url = sent?;
    if url.len() <= 2048 && text::is_plain(&url) {
        return Some(url);
    }
    tracing::warn!(
        "Knox's target_url ({}) holds control characters or is too long: ignored",
        text::quote(&url, 80)
    );
    None
}

/// Reads `expires_in` (docs/knox.md §2.3): epoch **ms** on KNOXTOKEN, -1 (or ≤ 0) for never.
/// Other Knox resources send relative or epoch seconds, so small values are read that way
/// rather than as a date in 1970. A fraction is floored; a time after 9999 is clamped to
/// [`MAX_EPOCH_MS`], with a warning.
fn parse_expires_in(v: &Value, knox_now_ms: i64) -> Result<Expiry, String> {
    // `as` saturates: a float past i64 becomes i64::MAX, clamped below.
    let float = |f: f64| f.is_finite().then(|| f.floor() as i64);
    let n = match v {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().and_then(float)),
        Value::String(s) => s.trim().parse::<i64>().ok().or_else(|| s.trim().parse().ok().and_then(float)),
        _ => None,
    }
    .ok_or_else(|| format!("expires_in ({}) is not a number", text::quote(&v.to_string(), 40)))?;
    let ms = match n {
        n if n <= 0 => return Ok(Expiry::Never),
        // Relative seconds (OAuth-style resources, KnoxIDF).
        n if n < 1_000_000_000 => knox_now_ms.saturating_add(n.saturating_mul(1000)),
        // Epoch seconds (2001 to 5138).
        n if n < 100_000_000_000 => n.saturating_mul(1000),
        n => n,
    };
    if ms > MAX_EPOCH_MS {
        tracing::warn!("Knox's expires_in ({n}) is after 9999-12-31: clamped to 9999-12-31T23:59:59Z");
        return Ok(Expiry::At(MAX_EPOCH_MS));
    }
    Ok(Expiry::At(ms))
}

#[derive(Clone, Copy)]
enum SecretKind {
    /// Only the trailing newline is stripped: a password may end in spaces.
    Password,
    /// Surrounding whitespace is stripped.
    Token,
}

/// The largest credential file read: a password, cookie or token is far smaller.
const MAX_SECRET_FILE: u64 = 64 * 1024;

fn read_secret(path: &Path, what: &'static str, kind: SecretKind) -> Result<Secret, KnoxError> {
    // The path is named only when something exists there: a value that names nothing may be
    // the secret itself, pasted into the wrong key (crate::secret::shown_path).
    let fail =
        |detail: String| KnoxError::Credentials { what, path: crate::secret::shown_path(path), detail };
    // A regular file only, never blocking (a FIFO would stall the daemon's one async thread),
    // and bounded: a secret is a line, not a stream.
    let bytes = crate::config::read_regular_file(path, MAX_SECRET_FILE).map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| fail("the file is not UTF-8".into()))?;
    let value = match kind {
        SecretKind::Password => {
            text.strip_suffix('\n').map(|t| t.strip_suffix('\r').unwrap_or(t)).unwrap_or(&text)
        }
        SecretKind::Token => text.trim(),
    };
    if value.is_empty() {
        return Err(fail("the file is empty".into()));
    }
    if value.contains(['\n', '\r']) {
        return Err(fail("the value spans several lines".into()));
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod url_tests {
    use super::*;

    #[test]
    fn api_urls_follow_the_token_url() {
        let check = |token_url: &str, v2: bool, tail: &str, want: &str| {
            let u = Url::parse(token_url).unwrap();
            assert_eq!(api_url(&u, v2, tail).as_str(), want, "{token_url} v2={v2} {tail}");
        };
        let v1 = "https://h:8443/gateway/sandbox/knoxtoken/api/v1/token";
        check(v1, true, "renew", "https://h:8443/gateway/sandbox/knoxtoken/api/v2/token/renew");
        check(v1, false, "revoke", "https://h:8443/gateway/sandbox/knoxtoken/api/v1/token/revoke");
        check(
            "https://h/gateway/authtkn/knoxtoken/api/v2/token/?lifespan=PT1H",
            false,
            "getUserTokens",
            "https://h/gateway/authtkn/knoxtoken/api/v1/token/getUserTokens",
        );
        check("https://h/custom/token", true, "renew", "https://h/custom/token/renew");
    }
}
