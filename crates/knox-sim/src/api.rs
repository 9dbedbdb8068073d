//! The KNOXTOKEN handlers (`TokenResource`, docs/knox.md §2-§5): acquisition with the per-user
//! limit, renew, revoke, enable/disable, `getUserTokens`, `getTssStatus` and JWKS, answering byte
//! for byte as Knox does, including its hand-concatenated and sometimes invalid JSON.
//!
//! Handlers that only touch state run under the state lock from start to finish, so each Knox
//! operation is atomic; acquisition releases it while signing.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{json, Map, Value};
use tracing::{debug, warn};

use super::http::{form_pairs, jetty_error, reply, Body, Req, JSON};
use super::shared::{Shared, State};
use super::store::{id_display, knox_date, StoredToken};
use super::{jwt, Issued, KnoxVersion, LimitAction, Scripted, SimOptions};

/// The 403 body for the per-user limit; not valid JSON (docs/knox.md §2.4).
pub(super) const TOKEN_LIMIT_EXCEEDED: &str = r#"{ "Unable to get token - token limit exceeded." }"#;

/// The non-JSON body of a signing failure (§2.4).
const UNABLE_TO_ACQUIRE: &str = r#"{ "Unable to acquire token." }"#;

/// `DefaultTokenStateService.hasRemainingRenewals`' safety buffer (§3.3).
const RENEWAL_BUFFER_MS: i64 = 30_000;

/// Token acquisition (docs/knox.md §2): a scripted reply if one is queued, else the per-user
/// limit (managed only) and a fresh token.
pub(super) async fn acquire(shared: &Shared, req: &Req<'_>, user: &str) -> Response<Body> {
    // A separate statement, so the state lock is released before the scripted delay.
    let scripted = shared.state().scripted.pop_front();
    if let Some(scripted) = scripted {
        tokio::time::sleep(scripted.delay).await;
        return scripted_response(scripted);
    }

    let token_id = uuid_v4();
    // One lock for the limit check and storing the token, so that concurrent acquisitions
    // cannot both take the last slot.
    let (expires_in, opts) = {
        let mut state = shared.state();
        let now = state.now_ms();
        let expires_in = get_expiry(now, ttl_ms(state.opts.ttl), req.param("lifespan").as_deref());
        if state.opts.managed {
            if let Some(refusal) = enforce_limit(&mut state, req, user) {
                return refusal;
            }
            let max_lifetime = max_lifetime_deadline(&state.opts, now);
            let mut token =
                StoredToken::new(token_id.clone(), user.to_owned(), now, expires_in, max_lifetime);
            store_labels(&mut token, req, state.opts.version);
            state.store.add(token);
        }
        (expires_in, state.opts.clone())
    };

    // TokenResource.getJku: the request URL up to its last '/', plus "/jwks.json" (§8).
    let url = req.url();
    let jku = format!("{}/jwks.json", url.rsplit_once('/').map_or(url.as_str(), |(head, _)| head));
    let signer = if opts.sign_with_foreign_key { crate::SimKey::Foreign } else { opts.signing_key };
    let access_token = match jwt::issue(signer, user, &token_id, expires_in, opts.managed, &jku) {
        Ok(token) => token,
        Err(err) => {
            warn!(cause = %err, "simulator failed to sign a token");
            shared.state().store.remove(&token_id);
            // A signing failure is 500 at ≥2.1.0 and 200 before, with the same non-JSON body
            // (§2.4).
            let status = if opts.version >= KnoxVersion::V2_1 {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::OK
            };
            return reply(status, Some(JSON), UNABLE_TO_ACQUIRE);
        }
    };

    // TokenResource.buildResponseMap (§2.2): `managed` is a string, `expires_in` a number.
    let mut body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": expires_in,
        // The signing key's certificate, Base64 DER without armour (§2.2): on a default Knox the
        // TLS certificate is the `gateway-identity` key's, which also signs tokens.
        "endpoint_public_cert": jwt::endpoint_public_cert(opts.signing_key),
    });
    // §2.2 history: 1.6.0 added `token_id`, `managed` and `passcode`. The 2.1 profile models the
    // in-memory DefaultTokenStateService, which is not persistent, hence no `passcode`; the 2.0
    // profile models its default AliasBased service, which is.
    if opts.version >= KnoxVersion::V1_6 {
        body["token_id"] = Value::from(token_id.as_str());
        body["managed"] = Value::from(opts.managed.to_string());
    }
    // 1.6 sent `passcode` even for unmanaged tokens; KNOX-2734 (2.0.0) made it conditional.
    if opts.version == KnoxVersion::V1_6 || opts.version == KnoxVersion::V2_0 && opts.managed {
        body["passcode"] = Value::from(passcode(&token_id));
    }
    if let Some(target_url) = &opts.target_url {
        body["target_url"] = Value::from(target_url.as_str());
    }
    shared.state().issued.push(Issued { jwt: access_token, token_id, user: user.to_owned(), expires_in });
    shared.issued_changed.notify_waiters();
    reply(StatusCode::OK, Some(JSON), body.to_string())
}

/// The metadata an acquisition gives a managed token (docs/knox.md §2.1, §4.3): the `comment`
/// (a blank one is stored as null) from 1.6.0 on (KNOX-2624), and `md_<name>` parameters as
/// custom metadata from 2.0.0 on (KNOX-2712). Older releases ignore both, as they ignore every
/// parameter they do not know.
fn store_labels(token: &mut StoredToken, req: &Req<'_>, version: KnoxVersion) {
    if version >= KnoxVersion::V1_6 {
        token.comment = req.param("comment").filter(|c| !c.trim().is_empty());
    }
    if version >= KnoxVersion::V2_0 {
        let custom = req.params().into_iter();
        token.custom = custom.filter_map(|(n, v)| Some((n.strip_prefix("md_")?.to_owned(), v))).collect();
    }
}

/// The per-user limit (docs/knox.md §2.4, §6; `TokenResource.getAuthenticationToken`): the user's
/// stored tokens, expired but not evicted ones included, against `knox.token.limit.per.user`.
/// Returns the answer that replaces the token, if the request is refused.
fn enforce_limit(state: &mut State, req: &Req<'_>, user: &str) -> Option<Response<Body>> {
    let limit = state.opts.token_limit?;
    state.sweep();
    let tokens = state.store.user_tokens(user);
    if tokens.len() < limit {
        return None;
    }
    let oldest = tokens.first().map(|t| t.id.clone());
    debug!(user, stored = tokens.len(), limit, "simulator: token limit reached");
    match (state.opts.limit_action, oldest) {
        (LimitAction::ReturnError, _) => {
            state.limit_errors += 1;
            Some(reply(StatusCode::FORBIDDEN, Some(JSON), TOKEN_LIMIT_EXCEEDED))
        }
        // Knox calls its own revoke as the caller, who owns the token, so this cannot fail.
        (LimitAction::RemoveOldest, Some(id)) => {
            state.store.revoke(&id);
            state.revocations.push(id);
            None
        }
        // A limit of 0 leaves no oldest token: `iterator().next()` throws and Jersey answers 500.
        (LimitAction::RemoveOldest, None) => Some(jetty_error(StatusCode::INTERNAL_SERVER_ERROR, req.path)),
    }
}

/// The stored max-lifetime deadline: issue time plus `knox.token.exp.max-lifetime` (§3.3).
fn max_lifetime_deadline(opts: &SimOptions, issue_ms: i64) -> Option<i64> {
    match opts.max_lifetime {
        Some(max) => Some(issue_ms.saturating_add(millis(max))),
        // KNOX-3019 (2.1.0) made -1 unbounded; before, -1 was added like any duration, so the
        // deadline passed before the first renewal.
        None if opts.version >= KnoxVersion::V2_1 => None,
        None => Some(issue_ms - 1),
    }
}

/// Why a renew, revoke or enable/disable failed.
enum Failure {
    /// Knox's hand-concatenated error body with this status, message and code.
    Knox { status: StatusCode, error: String, code: u16 },
    /// An exception TokenResource does not catch, which Jersey answers with a 500 page.
    Uncaught,
}

impl Failure {
    /// 400, the status of every failure except authorization.
    fn bad(error: impl Into<String>, code: u16) -> Failure {
        Failure::Knox { status: StatusCode::BAD_REQUEST, error: error.into(), code }
    }

    /// 403 code 20 (UNAUTHORIZED).
    fn forbidden(error: String) -> Failure {
        Failure::Knox { status: StatusCode::FORBIDDEN, error, code: 20 }
    }

    /// `UnknownTokenException.getMessage()` (§3.4), with the given code: 30 for renew (the
    /// generic catch), 50 for revoke and enable/disable.
    fn unknown(id: &str, code: u16) -> Failure {
        Failure::bad(format!("Unknown token: {}", id_display(id)), code)
    }

    /// The response, where `field` is "renewed", "revoked" or "setEnabledFlag".
    fn response(self, version: KnoxVersion, field: &str, req: &Req<'_>) -> Response<Body> {
        match self {
            Failure::Knox { status, error, code } => knox_error(version, status, field, &error, code),
            Failure::Uncaught => jetty_error(StatusCode::INTERNAL_SERVER_ERROR, req.path),
        }
    }
}

/// Knox's hand-concatenated error body (docs/knox.md §5.1), unescaped like the
/// original. Before 1.6.0 (KNOX-2396) there was no `code` (§5); the reference does not show
/// those bodies, so the same layout without the `code` line is assumed.
fn knox_error(
    version: KnoxVersion,
    status: StatusCode,
    field: &str,
    error: &str,
    code: u16,
) -> Response<Body> {
    let body = if version == KnoxVersion::V1_5 {
        format!("{{\n  \"{field}\": \"false\",\n  \"error\": \"{error}\"\n}}\n")
    } else {
        format!("{{\n  \"{field}\": \"false\",\n  \"error\": \"{error}\",\n  \"code\": {code}\n}}\n")
    };
    reply(status, Some(JSON), body)
}

/// `allowedRenewers.contains(caller)`: the whitelist, trimmed as Knox trims the comma list (§6).
fn is_renewer(opts: &SimOptions, caller: &str) -> bool {
    opts.renewers.iter().any(|renewer| renewer.trim() == caller)
}

/// Parses a JWT as `new JWTToken(token)` does; a failure is code 40 INVALID_TOKEN.
fn parse_jwt(token: &str) -> Result<Map<String, Value>, Failure> {
    jwt::unverified_claims(token.trim()).map_err(|message| Failure::bad(message, 40))
}

/// `TokenUtils.getTokenId`: the `knox.id` claim.
fn knox_id(claims: &Map<String, Value>) -> Option<&str> {
    claims.get("knox.id").and_then(Value::as_str)
}

/// `POST|PUT .../token/renew` (docs/knox.md §3). The body is the full JWT.
pub(super) fn renew(state: &mut State, req: &Req<'_>, caller: &str) -> Response<Body> {
    let token = String::from_utf8_lossy(req.body);
    let outcome =
        if state.opts.managed { renew_managed(state, caller, &token) } else { renew_unmanaged(&token) };
    match outcome {
        Ok(expires) => {
            let body = format!("{{\n  \"renewed\": \"true\",\n  \"expires\": \"{expires}\"\n}}\n");
            reply(StatusCode::OK, Some(JSON), body)
        }
        Err(failure) => failure.response(state.opts.version, "renewed", req),
    }
}

/// Without a token state service: no whitelist check, just the JWT's own `exp` echoed in
/// milliseconds (KNOX-2384, §3.4).
fn renew_unmanaged(token: &str) -> Result<i64, Failure> {
    let claims = parse_jwt(token)?;
    match claims.get("exp").and_then(Value::as_i64) {
        Some(exp) => Ok(exp.saturating_mul(1000)),
        // Long.parseLong(null) on a JWT without `exp`.
        None => Err(Failure::bad("Cannot parse null string: null", 30)),
    }
}

/// With a token state service: whitelist, parse, expiry (≥2.1.0), max lifetime, then the new
/// server-side expiry `now + renew_interval`. The JWT is not re-issued (§3.2).
fn renew_managed(state: &mut State, caller: &str, token: &str) -> Result<i64, Failure> {
    if !is_renewer(&state.opts, caller) {
        return Err(Failure::forbidden(format!("Caller ({caller}) not authorized to renew tokens.")));
    }
    let claims = parse_jwt(token)?;
    // DefaultTokenStateService.validateTokenIdentifier, caught by the generic catch.
    let id = knox_id(&claims)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| Failure::bad("Token identifier cannot be null or empty.", 30))?;
    state.sweep();
    let now = state.now_ms();
    let stored = state.store.get(id).ok_or_else(|| Failure::unknown(id, 30))?;
    // KNOX-3019 (2.1.0): `isExpired` is `expiry <= now`, true for a never-expiring -1 as well.
    if state.opts.version >= KnoxVersion::V2_1 && stored.expiry_ms <= now {
        return Err(Failure::bad("Expired tokens must not be renewed.", 90));
    }
    let interval = millis(state.opts.renew_interval);
    let has_remaining_renewals =
        stored.max_lifetime_ms.is_none_or(|max| now.saturating_add(RENEWAL_BUFFER_MS + interval) < max);
    if !has_remaining_renewals {
        return Err(Failure::bad("The renewal limit for the token has been exceeded", 30));
    }
    let expires = now.saturating_add(interval);
    state.store.set_expiry(id, expires);
    state.renewals += 1;
    Ok(expires)
}

/// `POST|DELETE .../token/revoke` (docs/knox.md §4.1). The body is a token id or the full JWT.
pub(super) fn revoke(state: &mut State, req: &Req<'_>, caller: &str) -> Response<Body> {
    let token = String::from_utf8_lossy(req.body);
    match revoke_one(state, caller, &token) {
        Ok(()) => reply(StatusCode::OK, Some(JSON), "{\n  \"revoked\": \"true\"\n}\n"),
        Err(failure) => failure.response(state.opts.version, "revoked", req),
    }
}

fn revoke_one(state: &mut State, caller: &str, token: &str) -> Result<(), Failure> {
    if !state.opts.managed {
        return Err(Failure::bad("Token revocation support is not configured", 10));
    }
    let whitelisted = is_renewer(&state.opts, caller);
    let not_authorized = || Failure::forbidden(format!("Caller ({caller}) not authorized to revoke tokens."));
    state.sweep();
    let id = if state.opts.version == KnoxVersion::V1_5 {
        // ≤1.5.0: whitelisted callers only, and only by the full JWT; KNOX-2664 (1.6.0) added
        // owners and token ids.
        if !whitelisted {
            return Err(not_authorized());
        }
        knox_id(&parse_jwt(token)?).map(str::to_owned)
    } else if is_java_uuid(token) {
        Some(token.to_owned())
    } else {
        knox_id(&parse_jwt(token)?).map(str::to_owned)
    };
    // A JWT without `knox.id` reaches `ConcurrentHashMap.containsKey(null)`, which throws.
    let id = id.ok_or(Failure::Uncaught)?;
    let owner = &state.store.get(&id).ok_or_else(|| Failure::unknown(&id, 50))?.user;
    if owner != caller && !whitelisted {
        return Err(not_authorized());
    }
    state.store.revoke(&id);
    state.revocations.push(id);
    Ok(())
}

/// `DELETE .../token/revokeTokens` with a JSON array of ids (§4.1): each id revoked in turn; the
/// answer is the last failure if any, else the last success; an empty array is 204.
pub(super) fn revoke_tokens(state: &mut State, req: &Req<'_>, caller: &str) -> Response<Body> {
    batch(state, req, "revoked", |state, id| revoke_one(state, caller, id), "{\n  \"revoked\": \"true\"\n}\n")
}

/// `PUT .../token/enable|disable` (docs/knox.md §4.2). The body is a token id.
pub(super) fn set_enabled(state: &mut State, req: &Req<'_>, enable: bool) -> Response<Body> {
    let id = String::from_utf8_lossy(req.body);
    match set_enabled_one(state, &id, enable, false) {
        Ok(()) => reply(StatusCode::OK, Some(JSON), enabled_body(enable)),
        Err(failure) => failure.response(state.opts.version, "setEnabledFlag", req),
    }
}

/// `PUT .../token/enableTokens|disableTokens` (§4.2): like `revokeTokens`, without the
/// already-enabled/disabled checks, and only with a JSON Content-Type (else 415).
pub(super) fn set_enabled_batch(state: &mut State, req: &Req<'_>, enable: bool) -> Response<Body> {
    if !req.is_json() {
        return jetty_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, req.path);
    }
    let set = |state: &mut State, id: &str| set_enabled_one(state, id, enable, true);
    batch(state, req, "setEnabledFlag", set, &enabled_body(enable))
}

fn enabled_body(enable: bool) -> String {
    format!("{{\n  \"setEnabledFlag\": \"true\",\n  \"isEnabled\": \"{enable}\"\n}}\n")
}

/// `TokenResource.setTokenEnabledFlag`; no caller authorization in the snapshot (§4.2).
fn set_enabled_one(state: &mut State, id: &str, enable: bool, batch: bool) -> Result<(), Failure> {
    if !state.opts.managed {
        let verb = if enable { "enable" } else { "disable" };
        return Err(Failure::bad(
            format!("Unable to {verb} tokens because token management is not configured"),
            10,
        ));
    }
    state.sweep();
    let enabled = state.store.get(id).ok_or_else(|| Failure::unknown(id, 50))?.enabled;
    match (batch, enable, enabled) {
        (false, true, true) => Err(Failure::bad("Token is already enabled", 70)),
        (false, false, false) => Err(Failure::bad("Token is already disabled", 60)),
        _ => {
            state.store.set_enabled(id, enable);
            Ok(())
        }
    }
}

/// Knox's batch pattern (`revokeTokens`, `setTokenEnabledFlags`): GSON reads a list of ids, each
/// is handled in turn, and the last failure wins over the last success. A body GSON cannot read
/// as a list of strings (or `null`) throws, which Jersey answers with 500; an empty list leaves
/// the response `null`, which JAX-RS sends as 204.
fn batch(
    state: &mut State,
    req: &Req<'_>,
    field: &str,
    mut each: impl FnMut(&mut State, &str) -> Result<(), Failure>,
    success: &str,
) -> Response<Body> {
    let Ok(ids) = serde_json::from_slice::<Vec<String>>(req.body) else {
        return jetty_error(StatusCode::INTERNAL_SERVER_ERROR, req.path);
    };
    let mut last = None;
    let mut failure = None;
    for id in &ids {
        match each(state, id) {
            Ok(()) => last = Some(()),
            Err(f) => failure = Some(f),
        }
    }
    match (failure, last) {
        (Some(failure), _) => failure.response(state.opts.version, field, req),
        (None, Some(())) => reply(StatusCode::OK, Some(JSON), success.to_owned()),
        (None, None) => reply(StatusCode::NO_CONTENT, None, ""),
    }
}

/// `GET .../token/getUserTokens` (docs/knox.md §4.3): the selected tokens, expired but not
/// evicted ones included, sorted by issue time then id, rendered compactly by Jackson.
pub(super) fn user_tokens(state: &mut State, req: &Req<'_>) -> Response<Body> {
    if !state.opts.managed {
        let body = "{\n  \"error\": \"Token management is not configured\"\n}\n";
        return reply(StatusCode::SERVICE_UNAVAILABLE, Some(JSON), body);
    }
    state.sweep();
    // `uriInfo.getQueryParameters()`: the query string only, first value of each name.
    let params = form_pairs(req.query);
    let first = |name: &str| params.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
    let all = first("allTokens").is_some_and(|v| v.eq_ignore_ascii_case("true"));
    // The sim has no impersonation, so no token has a `createdBy`: `createdBy=X` selects nothing
    // and `userNameOrCreatedBy=X` is `userName=X`. Without any selector Knox's `getTokens(null)`
    // returns every token.
    let select = |token: &StoredToken| match (
        all,
        first("userNameOrCreatedBy"),
        first("createdBy"),
        first("userName"),
    ) {
        (true, ..) => true,
        (false, Some(user), ..) => token.user == user,
        (false, None, Some(_), _) => false,
        (false, None, None, Some(user)) => token.user == user,
        (false, None, None, None) => true,
    };
    // `md_<name>=<value>` filters, OR across names; `*` only asks for the name to be present.
    // They came with custom metadata in 2.0.0 (KNOX-2712, KNOX-2805): 1.6 ignores them.
    let mut filters: Vec<(&str, Vec<&str>)> = Vec::new();
    let filtering = state.opts.version >= KnoxVersion::V2_0;
    for (name, value) in params.iter().filter(|_| filtering) {
        if let Some(name) = name.strip_prefix("md_") {
            match filters.iter_mut().find(|(n, _)| *n == name) {
                Some((_, values)) => values.push(value),
                None => filters.push((name, vec![value])),
            }
        }
    }
    let matches = |token: &StoredToken| {
        filters.is_empty()
            || filters.iter().any(|(name, values)| match token.metadata_value(name) {
                Some(_) if values.contains(&"*") => true,
                Some(value) => values.contains(&value),
                None => false,
            })
    };
    let tokens = state.store.sorted();
    let version = state.opts.version;
    let rendered: Vec<String> =
        tokens.into_iter().filter(|t| select(t) && matches(t)).map(|t| knox_token_json(t, version)).collect();
    reply(StatusCode::OK, Some(JSON), format!("{{\"tokens\":[{}]}}", rendered.join(",")))
}

/// One `KnoxToken` as Jackson renders it: bean properties in field order, then the getter-only
/// `*Long` ones (§4.3). The metadata fields beyond `userName`, `comment`, `enabled`,
/// `createdBy` and `customMetadataMap` follow the reference's field list; their values are the
/// sim's best guess for a never-used KNOXTOKEN token. Knox 1.6's metadata had only `userName`,
/// `comment` and `enabled` (KNOX-2624's example; `createdBy` and `customMetadataMap` came with
/// 2.0.0).
fn knox_token_json(token: &StoredToken, version: KnoxVersion) -> String {
    let text = |s: &str| Value::from(s).to_string();
    let expiration = if token.expiry_ms < 0 { "Never".to_owned() } else { knox_date(token.expiry_ms) };
    let (max_lifetime, max_lifetime_long) = match token.max_lifetime_ms {
        Some(max) => (knox_date(max), max),
        None => ("Unbounded".to_owned(), -1),
    };
    let custom: Vec<String> = token.custom.iter().map(|(n, v)| format!("{}:{}", text(n), text(v))).collect();
    let metadata = if version < KnoxVersion::V2_0 {
        format!(
            "{{\"userName\":{},\"comment\":{},\"enabled\":{}}}",
            text(&token.user),
            Value::from(token.comment.as_deref()),
            token.enabled
        )
    } else {
        format!(
        "{{\"userName\":{},\"comment\":{},\"enabled\":{},\"createdBy\":null,\"customMetadataMap\":{{{}}},\
         \"lastUsedAt\":null,\"type\":\"JWT\",\"thirdPartyApp\":false}}",
        text(&token.user),
        Value::from(token.comment.as_deref()),
        token.enabled,
        custom.join(","),
    )
    };
    format!(
        "{{\"tokenId\":{},\"issueTime\":{},\"expiration\":{},\"maxLifetime\":{},\"metadata\":{metadata},\
         \"issueTimeLong\":{},\"expirationLong\":{},\"maxLifetimeLong\":{max_lifetime_long}}}",
        text(&token.id),
        text(&knox_date(token.issue_ms)),
        text(&expiration),
        text(&max_lifetime),
        token.issue_ms,
        token.expiry_ms,
    )
}

/// `GET .../token/getTssStatus` (docs/knox.md §4.4): string values, rendered by Jackson's default
/// pretty printer. The 2.1 profile models the in-memory `DefaultTokenStateService`, earlier
/// profiles the then-default `AliasBasedTokenStateService` (§6), which the tokengen app allows.
pub(super) fn tss_status(state: &State) -> Response<Body> {
    let (backend, tokengen) = if state.opts.version >= KnoxVersion::V2_1 {
        ("DefaultTokenStateService", "false")
    } else {
        ("AliasBasedTokenStateService", "true")
    };
    let managed = state.opts.managed.to_string();
    let ttl_ms = ttl_ms(state.opts.ttl);
    let (seconds, text) = ((if ttl_ms == -1 { -1 } else { ttl_ms / 1000 }).to_string(), ttl_text(ttl_ms));
    let mut fields = vec![("tokenManagementEnabled", managed.as_str())];
    if state.opts.managed {
        fields.extend([("configuredTssBackend", backend), ("actualTssBackend", backend)]);
        fields.extend([("allowedTssForTokengen", tokengen), ("maximumLifetimeSeconds", &seconds)]);
        fields.push(("maximumLifetimeText", &text));
    }
    fields.extend([("lifespanInputEnabled", "true"), ("impersonationEnabled", "false")]);
    let lines: Vec<String> = fields
        .into_iter()
        .map(|(name, value)| format!("  {} : {}", Value::from(name), Value::from(value)))
        .collect();
    reply(StatusCode::OK, Some(JSON), format!("{{\n{}\n}}", lines.join(",\n")))
}

/// `GET .../knoxtoken/api/v1/jwks.json` (§8.3) publishing the signing key: JSON from 1.6 on
/// (observed on 1.6.1 and 2.0.0 with credentials), a Java `Map.toString()` before (as Knox's
/// sources before KNOX-2938 suggest; unverified); 500 when
/// [`crate::SimOptions::jwks_unavailable`].
pub(super) fn jwks(opts: &crate::SimOptions) -> Response<Body> {
    if opts.jwks_unavailable {
        return reply(
            StatusCode::INTERNAL_SERVER_ERROR,
            Some(JSON),
            r#"{"error": "Unable to get the JWKS"}"#,
        );
    }
    let key = opts.signing_key;
    let body =
        if opts.version >= KnoxVersion::V1_6 { jwt::jwks_json(key) } else { jwt::jwks_map_string(key) };
    reply(StatusCode::OK, Some(JSON), body)
}

pub(super) fn scripted_response(scripted: Scripted) -> Response<Body> {
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

/// A duration in Knox's milliseconds.
fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// `knox.token.ttl` in Knox's terms: milliseconds, -1 for never.
fn ttl_ms(ttl: Option<Duration>) -> i64 {
    ttl.map_or(-1, millis)
}

/// `TokenResource.getExpiry` (docs/knox.md §2.3): epoch ms on Knox's clock, or -1 for never.
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
/// `None` where Java throws; Knox then keeps the TTL (docs/knox.md §2.1).
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

/// Whether `java.util.UUID.fromString` accepts `text`: at most 36 characters, five dash-separated
/// groups, each a non-empty hex number. It is lenient about group lengths, and so is this.
pub(super) fn is_java_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    text.len() <= 36
        && groups.len() == 5
        && groups.iter().all(|g| !g.is_empty() && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `TokenResource.generatePasscodeField` (§8): `base64(base64(tokenId) + "::" + base64(uuid))`.
fn passcode(token_id: &str) -> String {
    STANDARD.encode(format!("{}::{}", STANDARD.encode(token_id), STANDARD.encode(uuid_v4())))
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
