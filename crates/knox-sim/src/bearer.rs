//! The Bearer topology: Knox's JWTProvider federation provider, with
//! `knox.token.exp.server-managed=true`, in front of the HEALTH service, as a client uses a
//! KNOXTOKEN token against a protected service. Only `GET`/`POST .../v1/ping` is served.
//!
//! Observed on Knox 2.0.0: a token the token topology issued gets `200` and `OK\n` as
//! `text/plain`; a missing, malformed, foreign, revoked, disabled or expired one gets `401` with an
//! empty body. For a managed token Knox ignores the JWT's own `exp` and asks the token state
//! service instead, so a renewed token keeps working past its `exp`.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

use super::http::{jetty_error, reply, Body, Req};
use super::jwt;
use super::shared::State;
use super::SimOptions;

/// `PingResource`'s methods; Jersey answers others with 405.
const PING_METHODS: [&str; 2] = ["GET", "POST"];

/// Whether `path` is the Bearer topology's ping endpoint, `/gateway/<bearer_topology>/v1/ping`.
pub(super) fn is_ping(opts: &SimOptions, path: &str) -> bool {
    path.strip_prefix("/gateway/")
        .and_then(|rest| rest.strip_prefix(opts.bearer_topology.as_str()))
        .is_some_and(|rest| rest == "/v1/ping")
}

/// JWTProvider's check of `Authorization: Bearer <JWT>`: the user (`sub`) if Knox would let the
/// request through, else `None` (401).
///
/// The signature must verify against the simulator's key. Then a managed token (claim
/// `managed.token` "true") in a managed sim must be known to the token store (not revoked or
/// evicted), enabled, and before its server-side expiry, which renewal moves; its `exp` claim does
/// not count. Any other token must be before its `exp` claim, if it has one. Every time is
/// Knox's clock.
pub(super) fn accepted_user(state: &mut State, headers: &HeaderMap) -> Option<String> {
    let claims = jwt::verified_claims(state.opts.signing_key, bearer_token(headers)?)?;
    let now = state.now_ms();
    let managed = claims.get("managed.token").and_then(Value::as_str) == Some("true");
    if managed && state.opts.managed {
        let id = claims.get("knox.id").and_then(Value::as_str)?;
        state.sweep();
        let token = state.store.get(id)?;
        let expired = token.expiry_ms != -1 && token.expiry_ms <= now;
        if !token.enabled || expired {
            return None;
        }
    } else if jwt_expired(&claims, now)? {
        return None;
    }
    claims.get("sub").and_then(Value::as_str).map(str::to_owned)
}

/// Whether the `exp` claim (epoch seconds) has passed at `now_ms`; `Some(false)` without one,
/// `None` if it is not a whole number.
fn jwt_expired(claims: &Map<String, Value>, now_ms: i64) -> Option<bool> {
    match claims.get("exp") {
        None => Some(false),
        Some(exp) => Some(exp.as_i64()?.saturating_mul(1000) <= now_ms),
    }
}

/// The token of an `Authorization: Bearer` header; the scheme is case-insensitive.
fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// The answer to an authenticated ping (`PingResource.getPingResponse`): `OK` and a newline,
/// `text/plain`, not cacheable. The provider runs first, so a wrong method is 405 only for
/// requests that passed it.
pub(super) fn ping(req: &Req<'_>) -> Response<Body> {
    if !PING_METHODS.contains(&req.method) {
        let mut resp = jetty_error(StatusCode::METHOD_NOT_ALLOWED, req.path);
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET,POST"));
        return resp;
    }
    let mut resp = reply(StatusCode::OK, Some("text/plain"), "OK\n");
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("must-revalidate,no-cache,no-store"));
    resp
}
