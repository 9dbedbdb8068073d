//! An Apache Knox KNOXTOKEN simulator for developing and testing token-keeper: the `knox-sim`
//! binary, the demo, and token-keeper's tests and bench run against it. It is a small
//! HTTP/1.1 server that answers like Knox's token service, quirks included (`docs/knox.md`), with
//! scripted replies, a request log and a clock that can run ahead of or behind the local one.
//!
//! It is faithful to Knox, not convenient: `expires_in` is epoch milliseconds, `managed` is a JSON
//! string, and many error bodies are not JSON at all.
//!
//! In managed mode it keeps Knox's server-side token state (docs/knox.md §3-§6): renewal against a
//! renewer whitelist, renew interval and max lifetime, revocation, enable/disable, the per-user
//! token limit with eviction grace, and `getUserTokens`. [`KnoxVersion`] picks the verbs, fields
//! and error bodies of a Knox release line (§1.2, §2.2, §5, §10).
//!
//! With [`SimOptions::state_file`] the managed token state survives a restart, as with Knox's
//! persistent `AliasBasedTokenStateService`.
//!
//! A second topology stands for a protected service: `GET /gateway/<bearer_topology>/v1/ping`
//! behind Knox's JWTProvider accepts the tokens the simulator issued while they are valid, so
//! clients can check that a kept token actually works ([`Sim::bearer_url`]).
//!
//! It signs with a public, development-only key (`dev_key.pem`), so its tokens prove nothing.
//!
//! # Layout
//! - [`blocking`]: [`blocking::SimServer`], a simulator on a runtime of its own for tests and the
//!   benchmark, which block while it serves;
//! - [`cli`]: the `knox-sim` command line and its mapping to [`SimOptions`];
//! - `server`: accept loop, routing per version, authentication and the shared state;
//! - `api`: the KNOXTOKEN handlers and Knox's exact response bodies;
//! - `bearer`: the Bearer topology (JWTProvider in front of the HEALTH service's ping);
//! - `store`: the managed token state (`DefaultTokenStateService`);
//! - `persist`: that state in a file across restarts (`AliasBasedTokenStateService`);
//! - `jwt`: the public dev signing key, token signing and the JWKS document;
//! - `tests`: real HTTP over loopback.

mod api;
mod bearer;
pub mod blocking;
pub mod cli;
mod http;
mod jwt;
mod persist;
mod server;
mod shared;
mod store;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// How the simulated topology is configured. Every field can also be changed while the sim runs,
/// with [`Sim::set_options`].
// No `Debug`: it holds passwords, cookies and bearer tokens, which must not reach logs.
#[derive(Clone)]
pub struct SimOptions {
    /// Topology name in `/gateway/<topology>/knoxtoken/...`.
    pub topology: String,
    /// `knox.token.ttl`; `None` is Knox's `-1`: tokens never expire (`expires_in` -1, no `exp`).
    pub ttl: Option<Duration>,
    /// Accepted HTTP Basic `(user, password)` pairs, as a Shiro `authcBasic` topology would.
    pub users: Vec<(String, String)>,
    /// Accepted `hadoop-jwt` cookie values and the user each one stands for (SSOCookieProvider).
    pub cookies: Vec<(String, String)>,
    /// Accepted `Authorization: Bearer` values and their users (JWTProvider).
    pub bearer_tokens: Vec<(String, String)>,
    /// Server-managed token state (`knox.token.exp.server-managed`): the `managed` field, the
    /// `managed.token` claim, and whether Knox has a token state service at all. Without one,
    /// renew echoes the JWT's own expiry, revoke and enable/disable answer code 10,
    /// `getUserTokens` answers 503 and no limit applies (docs/knox.md §3.4, §4).
    pub managed: bool,
    /// Milliseconds added to the local clock to get Knox's clock, so clients can be tested
    /// against a server whose clock is wrong. Every time-based rule (expiry, renewal, max
    /// lifetime, eviction) runs on Knox's clock.
    pub clock_offset: i64,
    /// `knox.token.target.url`, echoed as `target_url`.
    pub target_url: Option<String>,
    /// `knox.token.exp.renew-interval`: a renewal sets the server-side expiry to now plus this,
    /// however early it comes (§3.2). Knox's default is 24 h.
    pub renew_interval: Duration,
    /// `knox.token.exp.max-lifetime`, counted from issue: renewal is refused once
    /// `now + 30 s + renew_interval` reaches it (§3.3). `None` is Knox's -1, unbounded, which
    /// only Knox ≥2.1.0 honours: earlier versions store issue time - 1 and refuse every renewal.
    /// Knox's default is 7 days.
    pub max_lifetime: Option<Duration>,
    /// `knox.token.renewer.whitelist`: the users who may renew any token and revoke any token.
    /// Entries are trimmed as Knox trims the comma list. Empty (the default) means nobody may
    /// renew; owners may still revoke their own tokens from Knox 1.6.0 on (§4.1, §6).
    pub renewers: Vec<String>,
    /// `knox.token.limit.per.user`: how many stored tokens a user may hold in managed mode;
    /// `None` is Knox's -1, unlimited. Knox's default is 10 (§6).
    pub token_limit: Option<usize>,
    /// `knox.token.user.limit.exceeded.action`: what an acquisition at the limit gets.
    pub limit_action: LimitAction,
    /// `gateway.knox.token.eviction.grace.period`: expired tokens stay stored, and count toward
    /// the limit, until their server-side expiry plus this (§6, §9.3). Knox's default is
    /// 24 h.
    pub eviction_grace: Duration,
    /// Which Knox release line to answer as: verbs, fields and error bodies.
    pub version: KnoxVersion,
    /// Topology name of the Bearer topology in `/gateway/<bearer_topology>/v1/ping`: Knox's
    /// JWTProvider with `knox.token.exp.server-managed=true` in front of the HEALTH service. It
    /// accepts `Authorization: Bearer <JWT>` for tokens this simulator issued while they are valid
    /// (see [`Sim::bearer_url`]) and needs no Basic credentials.
    pub bearer_topology: String,
    /// Keep the managed token store in this file, as a gateway with the persistent
    /// `AliasBasedTokenStateService` keeps it across restarts: [`Sim::start`] loads the file if
    /// it exists (a missing file is an empty store, an unreadable or malformed one an error
    /// naming it) and writes it back at once, then every change (issue, renewal, revocation,
    /// enable/disable, eviction) rewrites it atomically. Every stored token's id, user, issue
    /// time, server-side expiry, max-lifetime deadline, enabled flag, comment and metadata are
    /// kept; counters, the request log and [`Sim::issued`] are not. The file is read only at
    /// start; setting this while the sim runs only changes where later changes are written.
    /// `None` (the default) keeps the store in memory only, like `DefaultTokenStateService`.
    pub state_file: Option<PathBuf>,
    /// The topology's signing key (the keystore's `gateway-identity`): it signs tokens, names
    /// them in `kid`, and is what the JWKS and `endpoint_public_cert` publish (docs/knox.md §8).
    /// Setting it to [`SimKey::Rotated`] while the sim runs is Knox rotating its key.
    pub signing_key: SimKey,
    /// Sign tokens with [`SimKey::Foreign`], a key the topology never publishes, as a man in
    /// the middle or a mixed-up gateway would: a verifying client must refuse them.
    pub sign_with_foreign_key: bool,
    /// Answer the JWKS with 500, as a Shiro topology whose JWKS path is anonymous does
    /// (observed on 2.0.0, docs/knox.md §8.3).
    pub jwks_unavailable: bool,
    /// Serve the JWKS without credentials, as topologies that mark
    /// `urls./knoxtoken/api/v1/jwks.json = anon` do (Knox's shipped sandbox). `false` is a
    /// Shiro topology without that rule: the JWKS wants the same credentials as the token
    /// endpoint (observed on 1.6.1 and 2.0.0: 401 without them).
    pub jwks_anonymous: bool,
}

/// The simulator's bundled RSA key pairs (public, dev only; see `jwt.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum SimKey {
    /// `dev_key.pem`, the key the simulator starts with.
    #[default]
    Dev,
    /// `rotated_key.pem`: the key after a rotation.
    Rotated,
    /// `foreign_key.pem`: never published by the topology.
    Foreign,
}

impl SimKey {
    /// The `kid` Knox would put in tokens signed with this key (its RFC 7638 thumbprint).
    pub fn kid(self) -> String {
        jwt::kid(self)
    }

    /// A JWT of `claims` signed with this key (RS256), with `kid` in its header if given.
    pub fn sign(self, kid: Option<&str>, claims: &serde_json::Value) -> String {
        jwt::sign(self, kid, claims)
    }

    /// The key's self-signed certificate as PEM (for pinning it in a client's config).
    pub fn cert_pem(self) -> &'static str {
        match self {
            SimKey::Dev => include_str!("dev_cert.pem"),
            SimKey::Rotated => include_str!("rotated_cert.pem"),
            SimKey::Foreign => include_str!("foreign_cert.pem"),
        }
    }
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            topology: "sandbox".to_owned(),
            // Knox's TOKEN_TTL_DEFAULT is 30000 ms (docs/knox.md §6.1).
            ttl: Some(Duration::from_secs(30)),
            users: vec![("alice".to_owned(), "alice-password".to_owned())],
            cookies: Vec::new(),
            bearer_tokens: Vec::new(),
            managed: true,
            clock_offset: 0,
            target_url: None,
            // DefaultTokenStateService.DEFAULT_RENEWAL_INTERVAL and DEFAULT_MAX_LIFETIME (§3.2, §3.3).
            renew_interval: Duration::from_secs(DAY_SECS),
            max_lifetime: Some(Duration::from_secs(7 * DAY_SECS)),
            renewers: Vec::new(),
            // GatewayConfigImpl's KNOX_TOKEN_USER_LIMIT_DEFAULT and eviction grace (§6).
            token_limit: Some(10),
            limit_action: LimitAction::ReturnError,
            eviction_grace: Duration::from_secs(DAY_SECS),
            version: KnoxVersion::V2_1,
            bearer_topology: "bearer".to_owned(),
            state_file: None,
            signing_key: SimKey::Dev,
            sign_with_foreign_key: false,
            jwks_unavailable: false,
            jwks_anonymous: true,
        }
    }
}

const DAY_SECS: u64 = 86_400;

/// A stored token's `comment` and its custom `md_<name>` pairs in request order
/// ([`Sim::stored_metadata`]).
pub type StoredMetadata = (Option<String>, Vec<(String, String)>);

/// A Knox release line, for the behaviour that changed between releases (docs/knox.md §10,
/// §1.2, §2.2, §3.4, §4.1, §5, §8). Ordered oldest first.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum KnoxVersion {
    /// Knox 1.4.0-1.5.0: no v2 API; v1 renew and revoke by `POST`; revocation only by
    /// whitelisted callers and only by full JWT; acquisition without `token_id`, `managed` and
    /// `passcode`; error bodies without `code`; no enable/disable or `getUserTokens`.
    V1_5,
    /// Knox 1.6.x: as [`KnoxVersion::V2_0`], except that token metadata has no custom part
    /// (KNOX-2712 came with 2.0.0): `md_<name>` parameters are ignored at acquisition and as
    /// `getUserTokens` filters, only the `comment` is kept, and `passcode` is sent with every
    /// token, managed or not (docs/knox.md §2.2).
    V1_6,
    /// Knox 2.0.0: no v2 API; v1 renew by `PUT`, revoke by `DELETE` (JWT or token id,
    /// owners may revoke); error codes; `passcode` with the AliasBased token state service;
    /// expired but not yet evicted tokens can still be renewed; `comment` and `md_<name>`
    /// metadata (§2.1, §4.3).
    V2_0,
    /// Knox ≥2.1.0: v2 renew `PUT` and revoke `DELETE`, deprecated v1 `POST`; expired and
    /// never-expiring tokens are not renewed (code 90); unbounded max lifetime.
    #[default]
    V2_1,
}

impl std::str::FromStr for KnoxVersion {
    type Err = String;

    /// Accepts a release ("1.4.0", "1.6.1", "2.0", "2.1.0") or a profile name ("1.4-1.5",
    /// "1.6-2.0" (its newest release, 2.0), "2.1+"), for the `sim` command line.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let release = s.trim().trim_start_matches(['v', 'V']).trim_end_matches('+');
        let release = release.rsplit_once('-').map_or(release, |(_, newest)| newest);
        let mut parts = release.split('.').map(str::parse::<u32>);
        match (parts.next(), parts.next()) {
            (Some(Ok(1)), Some(Ok(4 | 5))) => Ok(KnoxVersion::V1_5),
            (Some(Ok(1)), Some(Ok(6))) => Ok(KnoxVersion::V1_6),
            (Some(Ok(1)), Some(Ok(7..))) | (Some(Ok(2)), Some(Ok(0))) => Ok(KnoxVersion::V2_0),
            (Some(Ok(2)), Some(Ok(1..))) | (Some(Ok(3..)), _) => Ok(KnoxVersion::V2_1),
            _ => Err(format!("unknown Knox version {s:?}: expected e.g. 1.5, 2.0 or 2.1")),
        }
    }
}

/// `knox.token.user.limit.exceeded.action` (docs/knox.md §2.4, §6.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LimitAction {
    /// `RETURN_ERROR`: 403 with the non-JSON body `{ "Unable to get token - token limit exceeded." }`.
    #[default]
    ReturnError,
    /// `REMOVE_OLDEST`: revoke the user's oldest stored token, then issue.
    RemoveOldest,
}

impl std::str::FromStr for LimitAction {
    type Err = String;

    /// Accepts Knox's names, `RETURN_ERROR` and `REMOVE_OLDEST`, in any case and with `-` for `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().replace('-', "_").as_str() {
            "RETURN_ERROR" => Ok(LimitAction::ReturnError),
            "REMOVE_OLDEST" => Ok(LimitAction::RemoveOldest),
            _ => Err(format!("unknown limit action {s:?}: expected RETURN_ERROR or REMOVE_OLDEST")),
        }
    }
}

/// Which KNOXTOKEN API a URL points at (docs/knox.md §1.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiVersion {
    /// `knoxtoken/api/v1`, present in every Knox release.
    V1,
    /// `knoxtoken/api/v2`, Knox ≥2.1.0.
    V2,
}

impl ApiVersion {
    fn segment(self) -> &'static str {
        match self {
            ApiVersion::V1 => "v1",
            ApiVersion::V2 => "v2",
        }
    }
}

/// A canned reply that answers one token acquisition instead of the normal logic.
#[derive(Clone, Debug)]
pub struct Scripted {
    /// HTTP status; a value hyper cannot send is answered as 500.
    pub status: u16,
    /// Extra headers; the sim still adds `Date` unless one is given here.
    pub headers: Vec<(String, String)>,
    /// Body bytes, sent exactly as given.
    pub body: String,
    /// How long to wait before answering, for client-timeout tests.
    pub delay: Duration,
}

impl Scripted {
    /// A reply with no extra headers and no delay.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Scripted { status, headers: Vec::new(), body: body.into(), delay: Duration::ZERO }
    }

    /// Waits `d` before answering.
    pub fn delayed(mut self, d: Duration) -> Self {
        self.delay = d;
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    fn json(status: u16, body: &str) -> Self {
        Scripted::new(status, body).header("Content-Type", "application/json")
    }

    /// 403 for the per-user token limit; the body is not valid JSON (docs/knox.md §2.4).
    pub fn token_limit_exceeded() -> Self {
        Scripted::json(403, api::TOKEN_LIMIT_EXCEEDED)
    }

    /// Knox ≤2.0.0's answer to a signing failure: 200 with no `access_token`, and not JSON
    /// (docs/knox.md §2.4).
    pub fn unable_to_acquire_200() -> Self {
        Scripted::json(200, r#"{ "Unable to acquire token." }"#)
    }

    /// Shiro's Basic challenge, e.g. after an LDAP outage (docs/knox.md §7.1).
    pub fn unauthorized() -> Self {
        Scripted::new(401, "").header("WWW-Authenticate", http::BASIC_CHALLENGE)
    }

    /// SSOCookieProvider's redirect to the KnoxSSO login page (docs/knox.md §7.3), for the v1 token
    /// URL of `sim`.
    pub fn sso_redirect(sim: &Sim) -> Self {
        let location = server::sso_login_url(&sim.origin(), &sim.token_url(ApiVersion::V1));
        Scripted::new(302, "").header("Location", location)
    }

    /// A Jetty 500 error page, as when Knox itself fails.
    pub fn server_error_html() -> Self {
        Scripted::html(500, "Server Error")
    }

    /// A Jetty 503 page, as while Knox (re)deploys the topology.
    pub fn service_unavailable() -> Self {
        Scripted::html(503, "Service Unavailable")
    }

    /// 200 with a well-formed JSON object that lacks `access_token` (docs/knox.md §2.4: clients
    /// must check for it even on 200).
    pub fn ok_without_access_token() -> Self {
        Scripted::json(200, r#"{"token_type":"Bearer","managed":"false"}"#)
    }

    fn html(status: u16, reason: &str) -> Self {
        // The URI in a canned page cannot know the request; the default topology's token URL
        // is what such a page most often shows.
        let page = http::jetty_error_page(status, reason, "/gateway/sandbox/knoxtoken/api/v1/token");
        Scripted::new(status, page).header("Content-Type", http::HTML)
    }
}

/// One request the simulator saw. Credentials are never stored, only their kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestRecord {
    /// HTTP method.
    pub method: String,
    /// Request path, without the query.
    pub path: String,
    /// Raw query string, empty when there is none.
    pub query: String,
    /// Status answered; 0 while the answer is still pending (e.g. a delayed scripted reply).
    pub status: u16,
    /// The authenticated user, if the credentials were valid.
    pub user: Option<String>,
    /// Kind of credentials presented: "basic", "cookie", "bearer" or "none".
    pub auth: &'static str,
    /// Whether the CSRF header `X-XSRF-Header` was sent (docs/knox.md §7.2).
    pub has_xsrf_header: bool,
}

/// One token the simulator issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issued {
    /// The serialized JWT (`access_token`).
    pub jwt: String,
    /// `token_id`, equal to the `knox.id` claim.
    pub token_id: String,
    /// The token's subject.
    pub user: String,
    /// `expires_in` as answered: epoch milliseconds on Knox's clock, or -1 for never.
    pub expires_in: i64,
}

/// A running simulator. Dropping it stops it too, but without waiting; use [`Sim::stop`] when
/// the caller needs the port closed.
pub struct Sim {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<shared::Shared>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
}

impl Sim {
    /// Binds `listen` (port 0 picks a free port) and serves plain HTTP on a spawned task. With a
    /// [`SimOptions::state_file`], first loads the token store from it; errors name the file.
    pub async fn start(listen: SocketAddr, opts: SimOptions) -> std::io::Result<Sim> {
        Sim::serve(listen, opts, None).await
    }

    /// Like [`Sim::start`], but serves HTTPS with the PEM certificate chain `cert_pem` and the PEM
    /// private key `key_pem` (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE
    /// KEY`), as a real gateway does (for `ca_file` and TLS-failure tests).
    pub async fn start_tls(
        listen: SocketAddr,
        opts: SimOptions,
        cert_pem: &[u8],
        key_pem: &[u8],
    ) -> std::io::Result<Sim> {
        use rustls::pki_types::pem::PemObject as _;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let invalid = |what: &str, e: &dyn std::fmt::Display| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"))
        };
        let certs = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid("TLS certificate", &e))?;
        if certs.is_empty() {
            return Err(invalid("TLS certificate", &"no PEM CERTIFICATE block found"));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("TLS key", &e))?;
        let config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid("TLS versions", &e))?
                .with_no_client_auth()
                .with_single_cert(certs, key)
                .map_err(|e| invalid("TLS certificate", &e))?;
        Sim::serve(listen, opts, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    /// Like [`Sim::start_tls`], reading the certificate chain and key from the PEM files `cert`
    /// and `key`, as `knox-sim --tls-cert FILE --tls-key FILE` does. Errors name the file.
    pub async fn start_tls_files(
        listen: SocketAddr,
        opts: SimOptions,
        cert: &Path,
        key: &Path,
    ) -> std::io::Result<Sim> {
        let read = |what: &str, path: &Path| {
            std::fs::read(path).map_err(|e| {
                std::io::Error::new(e.kind(), format!("reading the TLS {what} {}: {e}", path.display()))
            })
        };
        let (cert_pem, key_pem) = (read("certificate", cert)?, read("key", key)?);
        Sim::start_tls(listen, opts, &cert_pem, &key_pem).await
    }

    async fn serve(
        listen: SocketAddr,
        opts: SimOptions,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<Sim> {
        // Before binding, so that a bad state file fails the start without holding the port;
        // saving at once also shows that later changes can be saved.
        let store = match &opts.state_file {
            Some(path) => {
                let store = persist::load(path)?;
                persist::save(path, &store)?;
                store
            }
            None => store::TokenStore::default(),
        };
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(shared::Shared::new(opts, store));
        let shutdown = CancellationToken::new();
        let tracker = TaskTracker::new();
        let is_tls = tls.is_some();
        tracker.spawn(server::accept_loop(
            listener,
            tls,
            Arc::clone(&shared),
            shutdown.clone(),
            tracker.clone(),
        ));
        Ok(Sim { addr, tls: is_tls, shared, shutdown, tracker })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http(s)://HOST:PORT/gateway/<topology>`.
    pub fn base_url(&self) -> String {
        format!("{}/gateway/{}", self.origin(), self.shared.state().opts.topology)
    }

    /// The acquisition URL of API `v`: `<base_url>/knoxtoken/api/v1/token` (or v2).
    pub fn token_url(&self, v: ApiVersion) -> String {
        format!("{}/knoxtoken/api/{}/token", self.base_url(), v.segment())
    }

    /// The Bearer topology's ping URL, `http(s)://HOST:PORT/gateway/<bearer_topology>/v1/ping`:
    /// `200` `OK\n` for `Authorization: Bearer <JWT>` with a token the simulator issued that Knox
    /// would still accept, else `401` with an empty body. See [`SimOptions::bearer_topology`].
    pub fn bearer_url(&self) -> String {
        format!("{}/gateway/{}/v1/ping", self.origin(), self.shared.state().opts.bearer_topology)
    }

    /// Queues `r` to answer one later token acquisition (FIFO), after authentication.
    pub fn push_reply(&self, r: Scripted) {
        self.shared.state().scripted.push_back(r);
    }

    /// Changes `knox.token.ttl` for later acquisitions.
    pub fn set_ttl(&self, ttl: Option<Duration>) {
        self.set_options(|o| o.ttl = ttl);
    }

    /// Sets Knox's clock to local time plus `ms` milliseconds. Moving it forward is how tests
    /// let tokens expire, reach their max lifetime or get evicted without waiting.
    pub fn set_clock_offset(&self, ms: i64) {
        self.set_options(|o| o.clock_offset = ms);
    }

    /// The options in effect now.
    pub fn options(&self) -> SimOptions {
        self.shared.state().opts.clone()
    }

    /// Changes any options for later requests. Tokens already stored keep the max-lifetime
    /// deadline they were issued with, as in Knox; everything else applies at once.
    pub fn set_options(&self, change: impl FnOnce(&mut SimOptions)) {
        change(&mut self.shared.state().opts);
    }

    /// Turns server-managed token state on or off; see [`SimOptions::managed`].
    pub fn set_managed(&self, managed: bool) {
        self.set_options(|o| o.managed = managed);
    }

    /// Sets `knox.token.renewer.whitelist`; see [`SimOptions::renewers`].
    pub fn set_renewers<S: Into<String>>(&self, renewers: impl IntoIterator<Item = S>) {
        let renewers = renewers.into_iter().map(Into::into).collect();
        self.set_options(|o| o.renewers = renewers);
    }

    /// Switches the Knox release line; see [`KnoxVersion`].
    pub fn set_version(&self, version: KnoxVersion) {
        self.set_options(|o| o.version = version);
    }

    /// Sets the per-user token limit (`None`: unlimited); it applies to the next acquisition,
    /// also for users already above it.
    pub fn set_token_limit(&self, limit: Option<usize>) {
        self.set_options(|o| o.token_limit = limit);
    }

    /// Sets `knox.token.exp.renew-interval` for later renewals.
    pub fn set_renew_interval(&self, interval: Duration) {
        self.set_options(|o| o.renew_interval = interval);
    }

    /// Sets `knox.token.exp.max-lifetime` for tokens issued from now on.
    pub fn set_max_lifetime(&self, max_lifetime: Option<Duration>) {
        self.set_options(|o| o.max_lifetime = max_lifetime);
    }

    /// Number of successful managed renewals (unmanaged echoes do not count).
    pub fn renewals(&self) -> usize {
        self.shared.state().renewals
    }

    /// Ids of the tokens revoked so far, oldest first: by revoke requests, batch revocations and
    /// `REMOVE_OLDEST`.
    pub fn revocations(&self) -> Vec<String> {
        self.shared.state().revocations.clone()
    }

    /// How many tokens count toward `user`'s limit right now: stored, not revoked and not
    /// evicted, expired ones included. Always 0 while unmanaged, when no limit applies.
    pub fn stored_tokens(&self, user: &str) -> usize {
        let mut state = self.shared.state();
        if !state.opts.managed {
            return 0;
        }
        state.sweep();
        state.store.user_tokens(user).len()
    }

    /// Number of acquisitions answered with the token-limit 403 (scripted replies do not count).
    pub fn limit_errors(&self) -> usize {
        self.shared.state().limit_errors
    }

    /// The server-side expiry of a token Knox still knows, in epoch milliseconds on Knox's clock
    /// (-1 for never); `None` for a token that is unknown, revoked or evicted, was issued while
    /// unmanaged, or for any token while unmanaged. Renewal moves this, never the JWT's `exp`.
    pub fn server_expiry(&self, token_id: &str) -> Option<i64> {
        let mut state = self.shared.state();
        if !state.opts.managed {
            return None;
        }
        state.sweep();
        state.store.get(token_id).map(|t| t.expiry_ms)
    }

    /// The metadata Knox stored with a token it still knows: its `comment` and its custom
    /// `md_<name>` pairs in request order (docs/knox.md §2.1), as the release line keeps them
    /// (none before 1.6, no custom pairs in 1.6). `None` for a token that is unknown, revoked or
    /// evicted, or was issued while unmanaged.
    pub fn stored_metadata(&self, token_id: &str) -> Option<StoredMetadata> {
        let mut state = self.shared.state();
        if !state.opts.managed {
            return None;
        }
        state.sweep();
        state.store.get(token_id).map(|t| (t.comment.clone(), t.custom.clone()))
    }

    /// Every request seen so far, oldest first.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.state().requests.clone()
    }

    /// Every token issued so far, oldest first.
    pub fn issued(&self) -> Vec<Issued> {
        self.shared.state().issued.clone()
    }

    /// Number of tokens issued (scripted replies do not count).
    pub fn acquisitions(&self) -> usize {
        self.shared.state().issued.len()
    }

    /// Waits until at least `n` tokens were issued; false if `timeout` passed first.
    pub async fn wait_for_acquisitions(&self, n: usize, timeout: Duration) -> bool {
        let reached = async {
            loop {
                // Register for the wakeup before checking, so an issue in between is not missed.
                let notified = self.shared.issued_changed.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.acquisitions() >= n {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, reached).await.is_ok()
    }

    /// Stops accepting and drops open connections; when this returns, the port is closed. The
    /// handle stays usable for what the simulator recorded ([`Sim::issued`], [`Sim::requests`]).
    pub async fn stop(&self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// `http(s)://HOST:PORT`, with a wildcard bind address replaced by loopback.
    fn origin(&self) -> String {
        let mut addr = self.addr;
        if addr.ip().is_unspecified() {
            addr.set_ip(match addr {
                SocketAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
            });
        }
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{addr}")
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
