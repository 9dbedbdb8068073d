//! The HTTP vocabulary every handler speaks: the request as the handlers see it ([`Req`],
//! with the servlet's parameter rules), Jetty's replies and error pages, and form decoding.
//! `server` routes to `api` and `bearer`; all three use this, and it uses none of them.

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};

pub(super) type Body = Full<Bytes>;

pub(super) const JSON: &str = "application/json";
/// Jetty's error pages are Latin-1 HTML.
pub(super) const HTML: &str = "text/html;charset=iso-8859-1";
/// Shiro's `BasicHttpAuthenticationFilter` challenge, upper-case scheme included (docs/knox.md §7.1).
pub(super) const BASIC_CHALLENGE: &str = r#"BASIC realm="application""#;
/// The media type batch enable/disable insist on (`@Consumes(APPLICATION_JSON)`, docs/knox.md §1.3).
pub(super) const JSON_MEDIA_TYPE: &str = "application/json";

/// The parts of a request the handlers look at.
pub(super) struct Req<'a> {
    pub(super) method: &'a str,
    pub(super) path: &'a str,
    pub(super) query: &'a str,
    pub(super) headers: &'a HeaderMap,
    pub(super) body: &'a [u8],
    /// `http(s)://host:port`, from the `Host` header as Jetty does.
    pub(super) origin: String,
}

impl Req<'_> {
    /// `HttpServletRequest.getRequestURL()`: the URL without its query.
    pub(super) fn url(&self) -> String {
        format!("{}{}", self.origin, self.path)
    }

    /// `request.getParameter(name)`: the query string first, then a form body on POST
    /// (docs/knox.md §2.1).
    pub(super) fn param(&self, name: &str) -> Option<String> {
        self.params().into_iter().find(|(key, _)| key == name).map(|(_, value)| value)
    }

    /// Every parameter `request.getParameterNames()` sees, query string first, decoded.
    pub(super) fn params(&self) -> Vec<(String, String)> {
        let mut params = form_pairs(self.query);
        if let Some(form) = self.form_body() {
            params.extend(form_pairs(form));
        }
        params
    }

    /// The body of a POST with a form Content-Type, which the servlet parses into parameters.
    fn form_body(&self) -> Option<&str> {
        let content_type = self.headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
        let is_form = self.method == "POST" && content_type.starts_with("application/x-www-form-urlencoded");
        is_form.then(|| std::str::from_utf8(self.body).ok()).flatten()
    }

    /// Whether the Content-Type is JSON, as a JAX-RS `@Consumes(APPLICATION_JSON)` requires.
    pub(super) fn is_json(&self) -> bool {
        let content_type = self.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
        content_type.is_some_and(|ct| ct.to_ascii_lowercase().starts_with(JSON_MEDIA_TYPE))
    }
}

pub(super) fn reply(
    status: StatusCode,
    content_type: Option<&'static str>,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut resp = Response::new(Full::new(body.into()));
    *resp.status_mut() = status;
    if let Some(content_type) = content_type {
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    resp
}

/// Jetty's HTML error response, which Knox sends for unknown paths and wrong methods.
pub(super) fn jetty_error(status: StatusCode, uri: &str) -> Response<Body> {
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

/// Every `name=value` pair of a form-encoded string, decoded as Jetty does; empty pieces (as in
/// `a=1&&b=2`) are skipped.
pub(super) fn form_pairs(encoded: &str) -> Vec<(String, String)> {
    let pairs = encoded.split('&').filter(|pair| !pair.is_empty());
    pairs
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(key), percent_decode(value))
        })
        .collect()
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
