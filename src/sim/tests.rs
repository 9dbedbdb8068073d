//! Tests of the simulator over real loopback HTTP, plus table tests of its pure Knox logic.
//!
//! Requests go through a minimal HTTP/1.1 client on a `TcpStream` rather than reqwest: this
//! crate's reqwest uses `rustls-no-provider`, whose `Client` builder panics unless a rustls crypto
//! provider is installed, and rustls is not a dependency here. The raw client also shows bytes
//! reqwest would hide, such as `Content-Length: 0` and a single `Date`.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::server::{get_expiry, parse_java_duration, ttl_text};
use super::*;

/// `Authorization` for the default user, alice:alice-password.
const ALICE: (&str, &str) = ("Authorization", "Basic YWxpY2U6YWxpY2UtcGFzc3dvcmQ=");
const HTML: &str = "text/html;charset=iso-8859-1";

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        let mut values = self.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
        values.next().map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// Claims of the `access_token` in a successful acquisition.
    fn claims(&self) -> Map<String, Value> {
        claims(self.json()["access_token"].as_str().unwrap_or_default())
    }
}

/// A keep-alive HTTP/1.1 connection; enough for the sim, which always sends `Content-Length`.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: SocketAddr) -> std::io::Result<Conn> {
        Ok(Conn { stream: TcpStream::connect(addr).await?, buf: Vec::new() })
    }

    /// Sends a request to the `http://` URL `url` and reads the response.
    async fn send(
        &mut self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> std::io::Result<Reply> {
        let authority = url.strip_prefix("http://").expect("an http:// URL");
        let (host, target) = authority.split_at(authority.find('/').unwrap_or(authority.len()));
        let len = body.len().to_string();
        let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\n");
        for (name, value) in [("Content-Length", len.as_str())].iter().chain(headers) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        self.stream.write_all(format!("{head}\r\n{body}").as_bytes()).await?;

        let head_len = loop {
            match self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                Some(i) => break i + 4,
                None => self.fill().await?,
            }
        };
        let head = String::from_utf8_lossy(&self.buf[..head_len]).into_owned();
        let mut lines = head.lines();
        let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok());
        let headers = lines.filter_map(|l| l.split_once(':'));
        let headers = headers.map(|(n, v)| (n.to_owned(), v.trim().to_owned())).collect();
        let mut reply = Reply { status: status.unwrap_or(0), headers, body: String::new() };
        let len = reply.header("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
        while self.buf.len() < head_len + len {
            self.fill().await?;
        }
        let body: Vec<u8> = self.buf.drain(..head_len + len).skip(head_len).collect();
        reply.body = String::from_utf8_lossy(&body).into_owned();
        Ok(reply)
    }

    async fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = [0_u8; 4096];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// Starts a sim on a free loopback port with the default options changed by `configure`.
async fn start(configure: impl FnOnce(&mut SimOptions)) -> Sim {
    let mut opts = SimOptions::default();
    configure(&mut opts);
    let listen = SocketAddr::from(([127, 0, 0, 1], 0));
    Sim::start(listen, opts).await.expect("binding a free loopback port")
}

async fn send(sim: &Sim, method: &str, url: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut conn = Conn::open(sim.addr()).await.expect("connecting to the sim");
    conn.send(method, url, headers, body).await.expect("a complete response")
}

/// `GET <token url>?<query>` as alice.
async fn acquire(sim: &Sim, v: ApiVersion, query: &str) -> Reply {
    let url = format!("{}?{query}", sim.token_url(v));
    send(sim, "GET", &url, &[ALICE], "").await
}

fn claims(jwt: &str) -> Map<String, Value> {
    jwt::unverified_claims(jwt).expect("the sim issues well-formed JWTs")
}

fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Asserts that acquiring with `query` grants `expected_ms` of lifetime on a clock `offset` ms
/// ahead of ours: `expires_in` must fall in the window the request was in flight.
async fn assert_lifetime(sim: &Sim, query: &str, offset: i64, expected_ms: i64) {
    let before = now_ms();
    let reply = acquire(sim, ApiVersion::V1, query).await;
    let window = before + offset + expected_ms..=now_ms() + offset + expected_ms;
    let expires_in = reply.json()["expires_in"].as_i64().expect("expires_in is a JSON number");
    assert!(window.contains(&expires_in), "{query}: {expires_in} not in {window:?}");
}

#[tokio::test]
async fn acquires_on_v1_and_v2_with_basic_auth() {
    let sim = start(|_| ()).await;
    for v in [ApiVersion::V1, ApiVersion::V2] {
        let reply = acquire(&sim, v, "").await;
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("content-type"), Some("application/json"));
        let body = reply.json();
        assert_eq!((&body["token_type"], &body["managed"]), (&"Bearer".into(), &"true".into()));
        assert!(body["endpoint_public_cert"].is_string() && body.get("target_url").is_none());
        let token_id = body["token_id"].as_str().expect("token_id is a string");
        assert_eq!((token_id.len(), &token_id[14..15]), (36, "4"), "a v4 UUID: {token_id}");

        let jwt = body["access_token"].as_str().expect("access_token is a string");
        let header = jsonwebtoken::decode_header(jwt).expect("a JWT header");
        assert_eq!((header.alg, header.typ.as_deref()), (Algorithm::RS256, Some("JWT")));
        let claims = claims(jwt);
        let jku = sim.token_url(v).replace("/token", "/jwks.json");
        assert_eq!((&claims["sub"], &claims["iss"]), (&"alice".into(), &"KNOXSSO".into()));
        assert_eq!((&claims["managed.token"], &claims["knox.id"]), (&"true".into(), &token_id.into()));
        // For v2 this is a JWKS URL nothing serves, as in Knox (§8).
        assert_eq!((header.jku.as_deref(), &claims["jku"]), (Some(&*jku), &jku.clone().into()));
        assert_eq!(header.kid.as_deref(), claims["kid"].as_str());
        assert_eq!(sim.issued().last().map(|i| i.jwt.as_str()), Some(jwt));
    }
    assert_eq!(sim.acquisitions(), 2);
    let record = sim.requests().pop().expect("requests were logged");
    assert_eq!(record.path, "/gateway/sandbox/knoxtoken/api/v2/token");
    assert_eq!((record.status, record.auth, record.user.as_deref()), (200, "basic", Some("alice")));

    let headers = [ALICE, ("X-XSRF-Header", "true")];
    let reply = send(&sim, "POST", &sim.token_url(ApiVersion::V1), &headers, "").await;
    assert_eq!(reply.status, 200);
    assert!(sim.requests().last().is_some_and(|r| r.has_xsrf_header && r.method == "POST"));
}

#[tokio::test]
async fn expires_in_is_epoch_ms_and_exp_its_seconds() {
    let sim = start(|o| o.target_url = Some("proxy-token/".into())).await;
    assert_lifetime(&sim, "", 0, 30_000).await;
    let issued = sim.issued().pop().expect("a token was issued");
    assert_eq!(claims(&issued.jwt)["exp"].as_i64(), Some(issued.expires_in / 1000));
    assert_eq!(acquire(&sim, ApiVersion::V1, "").await.json()["target_url"], "proxy-token/");
}

#[tokio::test]
async fn lifespan_is_capped_by_the_ttl_and_garbage_is_ignored() {
    let sim = start(|o| o.ttl = Some(Duration::from_secs(3600))).await;
    for (query, expected) in [
        ("lifespan=PT10M", 600_000),
        ("lifespan=P1D", 3_600_000),
        ("lifespan=garbage", 3_600_000),
        ("lifespan=", 3_600_000),
        ("lifespan=PT0.5S", 500),
        ("lifespan=pt1h", 3_600_000),
    ] {
        assert_lifetime(&sim, query, 0, expected).await;
    }

    // A form body counts on POST, but the query string wins (getParameter, §1.3).
    let headers = [ALICE, ("Content-Type", "application/x-www-form-urlencoded")];
    let url = sim.token_url(ApiVersion::V1);
    for (url, expected) in [(url.clone(), 60_000), (format!("{url}?lifespan=PT2M"), 120_000)] {
        let before = now_ms();
        let reply = send(&sim, "POST", &url, &headers, "comment=x&lifespan=PT1M").await;
        let lifetime = reply.json()["expires_in"].as_i64().unwrap_or_default() - before;
        assert!((expected..expected + 5_000).contains(&lifetime), "{url}: {lifetime}");
    }
}

#[tokio::test]
async fn ttl_none_never_expires_unless_a_lifespan_is_asked() {
    let sim = start(|o| o.ttl = None).await;
    assert_eq!(acquire(&sim, ApiVersion::V2, "").await.json()["expires_in"], -1);
    let issued = sim.issued().pop().expect("a token was issued");
    assert_eq!(issued.expires_in, -1);
    assert!(!claims(&issued.jwt).contains_key("exp"), "a never-expiring JWT has no exp");

    assert_lifetime(&sim, "lifespan=P2D", 0, 2 * 86_400_000).await;
    // Knox keeps the TTL, -1, for a garbage lifespan: a token that expired 1 ms ago.
    assert_lifetime(&sim, "lifespan=forever", 0, -1).await;
}

#[tokio::test]
async fn clock_offset_shows_in_expires_in_and_date() {
    let sim = start(|o| o.clock_offset = 2 * 86_400_000).await;
    assert_lifetime(&sim, "", 2 * 86_400_000, 30_000).await;

    sim.set_clock_offset(-3_600_000);
    sim.set_ttl(Some(Duration::from_secs(60)));
    assert_lifetime(&sim, "", -3_600_000, 60_000).await;

    // Every response carries Knox's clock, even a 404 that never reached the token service.
    for url in [sim.token_url(ApiVersion::V1), format!("{}/nothing-here", sim.base_url())] {
        let expected = now_ms() - 3_600_000;
        let reply = send(&sim, "GET", &url, &[ALICE], "").await;
        let dates = reply.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("date"));
        let dates: Vec<_> = dates.map(|(_, d)| httpdate::parse_http_date(d)).collect();
        let [Ok(date)] = dates[..] else { panic!("one valid Date header: {reply:?}") };
        let date_ms = date.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        let date_ms = i64::try_from(date_ms).unwrap_or_default();
        assert!((expected - 1_000..expected + 5_000).contains(&date_ms), "{url}: {date_ms}");
    }
}

#[tokio::test]
async fn missing_or_bad_basic_credentials_get_shiros_challenge() {
    let sim = start(|_| ()).await;
    let wrong = ("Authorization", "Basic YWxpY2U6d3JvbmctcGFzc3dvcmQ="); // alice:wrong-password
    for headers in [&[][..], &[wrong]] {
        let reply = send(&sim, "GET", &sim.token_url(ApiVersion::V1), headers, "").await;
        assert_eq!(reply.status, 401);
        assert_eq!(reply.header("www-authenticate"), Some(r#"BASIC realm="application""#));
        assert_eq!((reply.header("content-length"), &*reply.body), (Some("0"), ""));
    }
    let records = sim.requests();
    let summary: Vec<_> = records.iter().map(|r| (r.auth, r.user.clone(), r.status)).collect();
    assert_eq!(summary, [("none", None, 401), ("basic", None, 401)]);
    assert!(!format!("{records:?}").contains("wrong-password"), "passwords never reach the log");
    assert_eq!(sim.acquisitions(), 0);
}

#[tokio::test]
async fn sso_topology_redirects_without_a_good_cookie() {
    let sim = start(|o| o.cookies = vec![("good-cookie".into(), "bob".into())]).await;
    let url = format!("{}?lifespan=PT1M", sim.token_url(ApiVersion::V1));
    let login = format!("http://{}/gateway/knoxsso/api/v1/websso?originalUrl={url}", sim.addr());
    for headers in [&[][..], &[("Cookie", "a=b; hadoop-jwt=stale")]] {
        let reply = send(&sim, "GET", &url, headers, "").await;
        assert_eq!((reply.status, reply.header("location")), (302, Some(&*login)));
    }
    let good = ("Cookie", "hadoop-jwt=good-cookie");
    assert_eq!(send(&sim, "GET", &url, &[good], "").await.claims()["sub"], "bob");
    let kinds: Vec<_> = sim.requests().into_iter().map(|r| (r.auth, r.user)).collect();
    assert_eq!(kinds, [("none", None), ("cookie", None), ("cookie", Some("bob".to_owned()))]);
}

#[tokio::test]
async fn bearer_tokens_are_checked() {
    let sim = start(|o| o.bearer_tokens = vec![("good-bearer".into(), "carol".into())]).await;
    let url = sim.token_url(ApiVersion::V2);
    let (good, expired) = (("Authorization", "Bearer good-bearer"), ("Authorization", "Bearer x"));
    assert_eq!(send(&sim, "GET", &url, &[good], "").await.claims()["sub"], "carol");
    let reply = send(&sim, "GET", &url, &[expired], "").await;
    assert_eq!((reply.status, &*reply.body), (401, "Token has expired"));
    assert_eq!(reply.header("content-type"), Some("text/plain"));
    assert!(sim.requests().iter().all(|r| r.auth == "bearer"));
}

#[tokio::test]
async fn scripted_presets_answer_one_authenticated_request_each() {
    let sim = start(|_| ()).await;
    let token_url = sim.token_url(ApiVersion::V1);
    let login = format!("http://{}/gateway/knoxsso/api/v1/websso?originalUrl={token_url}", sim.addr());
    let json = ("content-type", "application/json");
    let limit = r#"{ "Unable to get token - token limit exceeded." }"#;
    let no_token = r#"{"token_type":"Bearer","managed":"false"}"#;
    let challenge = ("www-authenticate", r#"BASIC realm="application""#);
    let teapot = Scripted::new(418, "teapot").header("X-Why", "test");
    let presets = [
        (Scripted::token_limit_exceeded(), 403, limit, json),
        (Scripted::unable_to_acquire_200(), 200, r#"{ "Unable to acquire token." }"#, json),
        (Scripted::unauthorized(), 401, "", challenge),
        (Scripted::sso_redirect(&sim), 302, "", ("location", &*login)),
        (Scripted::ok_without_access_token(), 200, no_token, json),
        (teapot, 418, "teapot", ("x-why", "test")),
        (Scripted::server_error_html(), 500, "", ("content-type", HTML)),
        (Scripted::service_unavailable(), 503, "", ("content-type", HTML)),
    ];
    for (preset, status, body, (name, value)) in presets {
        sim.push_reply(preset);
        // Authentication comes first: an unauthenticated request leaves the reply queued.
        assert_eq!(send(&sim, "GET", &token_url, &[], "").await.status, 401);
        let reply = acquire(&sim, ApiVersion::V1, "").await;
        assert_eq!((reply.status, reply.header(name)), (status, Some(value)), "{body}");
        if value == HTML {
            assert!(reply.body.contains(&format!("<h2>HTTP ERROR {status} ")), "{}", reply.body);
        } else {
            assert_eq!(reply.body, body);
        }
    }
    assert_eq!(sim.acquisitions(), 0, "scripted replies issue nothing");
    assert_eq!(acquire(&sim, ApiVersion::V1, "").await.status, 200, "the queue is empty again");
}

#[tokio::test]
async fn delayed_replies_hold_the_answer() {
    let sim = start(|_| ()).await;
    sim.push_reply(Scripted::new(200, "late").delayed(Duration::from_millis(300)));
    let started = Instant::now();
    assert_eq!(acquire(&sim, ApiVersion::V1, "").await.body, "late");
    assert!(started.elapsed() >= Duration::from_millis(300));

    // A client that gives up first sees nothing, and the log shows the answer as pending.
    sim.push_reply(Scripted::new(200, "too late").delayed(Duration::from_secs(60)));
    let slow = tokio::time::timeout(Duration::from_millis(200), acquire(&sim, ApiVersion::V1, ""));
    assert!(slow.await.is_err(), "the reply must not arrive within 200 ms");
    assert_eq!(sim.requests().last().map(|r| r.status), Some(0));
    assert_eq!(acquire(&sim, ApiVersion::V1, "").await.status, 200, "the delayed reply is used up");
}

#[tokio::test]
async fn unknown_paths_are_404_and_wrong_methods_405() {
    let sim = start(|_| ()).await;
    let api = format!("{}/knoxtoken/api", sim.base_url());
    let other_topology = format!("http://{}/gateway/other/knoxtoken/api/v1/token", sim.addr());
    let (anonymous, alice) = (&[][..], &[ALICE][..]);
    let cases = [
        ("GET", other_topology, anonymous, 404, None),
        ("GET", format!("{api}/v1/nope"), anonymous, 401, None),
        ("GET", format!("{api}/v1/nope"), alice, 404, None),
        ("GET", format!("{api}/v3/token"), alice, 404, None),
        ("GET", format!("{api}/v2/jwks.json"), anonymous, 404, None),
        ("DELETE", format!("{api}/v1/token"), alice, 405, Some("GET,POST")),
        ("POST", format!("{api}/v2/token/renew"), alice, 405, Some("PUT")),
        ("PUT", format!("{api}/v1/token/revoke"), alice, 405, Some("POST")),
        ("PUT", format!("{api}/v1/jwks.json"), anonymous, 405, Some("GET")),
    ];
    for (method, url, headers, status, allow) in cases {
        let reply = send(&sim, method, &url, headers, "").await;
        assert_eq!((reply.status, reply.header("allow")), (status, allow), "{method} {url}");
        if status != 401 {
            assert_eq!(reply.header("content-type"), Some(HTML), "{url}");
            assert!(reply.body.contains(&format!("HTTP ERROR {status}")), "{}", reply.body);
        }
    }
}

#[tokio::test]
async fn jwks_verifies_issued_tokens() {
    let sim = start(|_| ()).await;
    let url = format!("{}/knoxtoken/api/v1/jwks.json", sim.base_url());
    let jwks = send(&sim, "GET", &url, &[], "").await.json();
    let key = &jwks["keys"][0];
    assert_eq!([&key["kty"], &key["e"], &key["use"], &key["alg"]], ["RSA", "AQAB", "sig", "RS256"]);
    let n = key["n"].as_str().unwrap_or_default();
    let decoding = DecodingKey::from_rsa_components(n, "AQAB").expect("n and e decode");

    let jwt = |reply: Reply| reply.json()["access_token"].as_str().unwrap_or_default().to_owned();
    let first = jwt(acquire(&sim, ApiVersion::V1, "").await);
    let kid = jsonwebtoken::decode_header(&first).ok().and_then(|h| h.kid);
    assert_eq!(kid.as_deref(), key["kid"].as_str());
    let validation = Validation::new(Algorithm::RS256);
    let verified = jsonwebtoken::decode::<Value>(&first, &decoding, &validation);
    assert_eq!(verified.expect("the signature verifies").claims["sub"], "alice");

    // Another token's payload under the first signature must fail, so the check above means something.
    let second = jwt(acquire(&sim, ApiVersion::V1, "").await);
    let (first, second): (Vec<_>, Vec<_>) = (first.split('.').collect(), second.split('.').collect());
    let forged = format!("{}.{}.{}", first[0], second[1], first[2]);
    assert!(jsonwebtoken::decode::<Value>(&forged, &decoding, &validation).is_err());
}

#[tokio::test]
async fn tss_status_reflects_managed_and_ttl() {
    let sim = start(|_| ()).await;
    let url = format!("{}/getTssStatus", sim.token_url(ApiVersion::V1));
    let reply = send(&sim, "GET", &url, &[ALICE], "").await;
    let expected = r#"{
  "tokenManagementEnabled" : "true",
  "configuredTssBackend" : "DefaultTokenStateService",
  "actualTssBackend" : "DefaultTokenStateService",
  "allowedTssForTokengen" : "false",
  "maximumLifetimeSeconds" : "30",
  "maximumLifetimeText" : "30 seconds",
  "lifespanInputEnabled" : "true",
  "impersonationEnabled" : "false"
}"#;
    assert_eq!((reply.status, &*reply.body), (200, expected));

    let sim = start(|o| {
        o.managed = false;
        o.ttl = None;
    })
    .await;
    let url = format!("{}/getTssStatus", sim.token_url(ApiVersion::V2));
    let status = send(&sim, "GET", &url, &[ALICE], "").await.json();
    assert_eq!(status["tokenManagementEnabled"], "false");
    assert!(status.get("maximumLifetimeSeconds").is_none());
    let reply = acquire(&sim, ApiVersion::V1, "").await;
    assert_eq!(
        (&reply.json()["managed"], &reply.claims()["managed.token"]),
        (&"false".into(), &"false".into())
    );
}

#[tokio::test]
async fn renew_echoes_exp_and_revoke_is_not_configured() {
    let sim = start(|_| ()).await;
    acquire(&sim, ApiVersion::V1, "").await;
    let issued = sim.issued().pop().expect("a token was issued");
    let headers = [ALICE, ("Content-Type", "text/plain"), ("X-XSRF-Header", "true")];
    let api = format!("{}/knoxtoken/api", sim.base_url());
    let expires = issued.expires_in / 1000 * 1000;
    let renewed = format!("{{\n  \"renewed\": \"true\",\n  \"expires\": \"{expires}\"\n}}\n");
    for (method, version) in [("POST", "v1"), ("PUT", "v2")] {
        let url = format!("{api}/{version}/token/renew");
        let reply = send(&sim, method, &url, &headers, &issued.jwt).await;
        assert_eq!((reply.status, &*reply.body), (200, &*renewed), "{method} {version}");
    }
    let renew_url = format!("{api}/v2/token/renew");
    let reply = send(&sim, "PUT", &renew_url, &headers, &issued.token_id).await;
    let invalid = r#"{
  "renewed": "false",
  "error": "Invalid serialized unsecured/JWS/JWE object: Missing part delimiters",
  "code": 40
}
"#;
    assert_eq!((reply.status, &*reply.body), (400, invalid));

    sim.set_ttl(None);
    acquire(&sim, ApiVersion::V1, "").await;
    let never = sim.issued().pop().expect("a token was issued").jwt;
    let reply = send(&sim, "PUT", &renew_url, &headers, &never).await;
    assert!(reply.status == 400 && reply.body.contains("\"code\": 30\n"), "{}", reply.body);

    let not_configured = r#"{
  "revoked": "false",
  "error": "Token revocation support is not configured",
  "code": 10
}
"#;
    for (method, version) in [("POST", "v1"), ("DELETE", "v2")] {
        let url = format!("{api}/{version}/token/revoke");
        let reply = send(&sim, method, &url, &headers, &issued.token_id).await;
        assert_eq!((reply.status, &*reply.body), (400, not_configured), "{method} {version}");
    }
}

#[tokio::test]
async fn concurrent_acquisitions_get_distinct_tokens_and_wake_waiters() {
    let sim = start(|_| ()).await;
    assert!(!sim.wait_for_acquisitions(1, Duration::from_millis(50)).await, "nothing issued yet");
    let (reached, a, b) = tokio::join!(
        sim.wait_for_acquisitions(2, Duration::from_secs(10)),
        acquire(&sim, ApiVersion::V1, ""),
        acquire(&sim, ApiVersion::V2, ""),
    );
    assert!(reached, "the waiter saw both acquisitions");
    let (a, b) = (a.json(), b.json());
    assert_ne!(a["access_token"], b["access_token"]);
    assert_ne!(a["token_id"], b["token_id"]);
    assert!(!sim.wait_for_acquisitions(3, Duration::from_millis(50)).await);
}

#[tokio::test]
async fn connections_are_kept_alive_until_stop_then_refused() {
    let sim = start(|_| ()).await;
    let (addr, url) = (sim.addr(), sim.token_url(ApiVersion::V1));
    let mut conn = Conn::open(addr).await.expect("connecting to the sim");
    for _ in 0..2 {
        let reply = conn.send("GET", &url, &[ALICE], "").await;
        assert_eq!(reply.expect("the connection is reused").status, 200);
    }
    sim.stop().await;
    let after_stop = conn.send("GET", &url, &[ALICE], "").await;
    assert!(after_stop.is_err(), "the open connection was dropped: {after_stop:?}");
    let refused = TcpStream::connect(addr).await.map(drop).map_err(|e| e.kind());
    assert_eq!(refused, Err(std::io::ErrorKind::ConnectionRefused));
}

#[test]
fn parse_java_duration_matches_java() {
    let check = |text, expected| assert_eq!(parse_java_duration(text), expected, "{text}");
    check("PT1H", Some(3_600_000));
    check("PT1H30M15S", Some(5_415_000));
    check("PT0.5S", Some(500));
    check("PT1,25S", Some(1_250));
    check("PT0.0009S", Some(0));
    check("P1DT0H0M", Some(86_400_000));
    check("p2dt1h", Some(2 * 86_400_000 + 3_600_000));
    check("-PT1M", Some(-60_000));
    check("PT-0.5S", Some(-500));
    check("+PT+1S", Some(1_000));
    for bad in ["", "P", "PT", "P1DT", "1H", "PT1.5M", "PT1M1H", "P1W", "P1Y", "PT.5S", "P1D2D"] {
        check(bad, None);
    }
    check("PT0.1234567891S", None);
    check("PT9223372036854775807H", None);
}

#[test]
fn get_expiry_matches_knox() {
    let check = |ttl: i64, lifespan: Option<&str>, expected: i64| {
        assert_eq!(get_expiry(1_000_000, ttl, lifespan), expected, "{ttl} {lifespan:?}");
    };
    check(30_000, None, 1_030_000);
    check(30_000, Some(""), 1_030_000);
    check(30_000, Some("PT10S"), 1_010_000);
    check(30_000, Some("PT30S"), 1_030_000);
    check(30_000, Some("PT31S"), 1_030_000);
    check(30_000, Some("soon"), 1_030_000);
    check(-1, None, -1);
    check(-1, Some(""), -1);
    check(-1, Some("PT1H"), 4_600_000);
    check(-1, Some("soon"), 999_999);
}

#[test]
fn ttl_text_matches_knox() {
    let check = |ttl, text| assert_eq!(ttl_text(ttl), text, "{ttl}");
    check(-1, "Unlimited lifetime");
    check(30_000, "30 seconds");
    check(3_600_000, "1 hours ");
    check(90_061_000, "1 days 1 hours 1 minutes 1 seconds");
    check(10_368_000_000, "120 days ");
}
