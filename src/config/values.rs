//! Parsing single values: durations (humantime and ISO-8601), URLs, modes, names, and TOML
//! errors turned into messages.
//!
//! Every function here names its key in its error and never quotes a line of the file. A
//! value is quoted only where it cannot be a secret (a duration that parsed, a mode, a
//! variable name); `token_url` is never quoted when it may hold a `user:password@` part.

use std::net::IpAddr;
use std::time::Duration;

use url::Url;

use super::limits::{self, Span};
use super::ConfigError;

/// Turns a serde/TOML error into "file:line:col: message" without quoting the line, and
/// without the offending value when serde quotes one (`invalid type: integer `1234``).
pub(super) fn toml_error(origin: &str, text: &str, err: &toml::de::Error) -> ConfigError {
    let location = match err.span() {
        Some(span) => {
            let before = text.get(..span.start).unwrap_or(text);
            let line = before.matches('\n').count().saturating_add(1);
            let line_start = before.rfind('\n').map_or(0, |i| i.saturating_add(1));
            let col = before.len().saturating_sub(line_start).saturating_add(1);
            format!(":{line}:{col}")
        }
        None => String::new(),
    };
    let mut message = redact_unexpected(err.message().trim_end_matches('.'));
    for key in ["password", "cookie", "token", "secret"] {
        if message.starts_with(&format!("unknown field `{key}`")) {
            let hint = if key == "secret" { "password" } else { key };
            message = format!(
                "unknown field `{key}`: secrets are never written inline; put the value in a \
                 file readable only by token-keeper and name it with `{hint}_file`"
            );
        }
    }
    ConfigError { origin: origin.to_owned(), location, message }
}

/// "invalid type: string \"hunter2\", expected a boolean" → "invalid type: a string,
/// expected a boolean". A value of the wrong type may be a secret in the wrong place.
fn redact_unexpected(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        let Some(rest) = message.strip_prefix(prefix) else { continue };
        let (unexpected, expected) = rest.split_once(", expected ").unwrap_or((rest, ""));
        let kind = unexpected.split(['`', '"', '\'']).next().unwrap_or("").trim();
        let expected = if expected.is_empty() { String::new() } else { format!(", expected {expected}") };
        return format!("{prefix}{kind} (value not shown){expected}");
    }
    message.to_owned()
}

/// A cluster name: `[A-Za-z0-9._-]+`, not `.` or `..` (it names directories).
pub(super) fn validate_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} must match [A-Za-z0-9._-]+ (it is used in file names)"))
    }
}

/// Parses a humantime duration ("90s", "200ms", "1h 30m").
pub(super) fn parse_duration(ctx: &str, key: &str, value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|e| format!("{ctx}: {key}: {value:?} is not a duration like \"90s\" or \"5m\": {e}"))
}

/// A humantime duration in `span`.
pub(super) fn parse_bounded(ctx: &str, key: &str, value: &str, span: Span) -> Result<Duration, String> {
    span.check(ctx, key, value, parse_duration(ctx, key, value)?)
}

/// Knox parses `lifespan` with `java.time.Duration.parse` (docs/knox.md §2.1). ISO-8601 text
/// is sent as written; a humantime string ("1h") is converted, so both spellings work. Either
/// must be in [`limits::MAX_LIFESPAN`].
pub(super) fn parse_lifespan(ctx: &str, value: &str) -> Result<String, String> {
    let text = value.trim();
    if !text.starts_with(['P', 'p']) {
        let d = parse_bounded(ctx, "lifespan", value, limits::LIFESPAN)?;
        return Ok(iso_seconds(d));
    }
    let seconds = iso_total_seconds(text)
        .ok_or_else(|| format!("{ctx}: lifespan: {value:?} is not an ISO-8601 duration like \"PT1H\""))?;
    // Compared as f64 before any conversion: `Duration::from_secs_f64` panics on overflow.
    let d = if seconds <= limits::MAX_LIFESPAN.as_secs_f64() {
        Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
    } else {
        Duration::MAX
    };
    limits::LIFESPAN.check(ctx, "lifespan", value, d)?;
    Ok(text.to_ascii_uppercase())
}

/// `PT<seconds>S`, with milliseconds when there are any.
pub(super) fn iso_seconds(d: Duration) -> String {
    let (secs, ms) = (d.as_secs(), d.subsec_millis());
    if ms == 0 {
        format!("PT{secs}S")
    } else {
        format!("PT{secs}.{ms:03}S")
    }
}

/// Parses the ISO-8601 durations `java.time.Duration.parse` accepts (`PnDTnHnMn.nS`, no
/// signs): days, then after `T` hours, minutes and (fractional) seconds. `None` for text
/// Java would refuse, and for a duration too long to represent.
pub(crate) fn iso_duration(text: &str) -> Option<Duration> {
    Duration::try_from_secs_f64(iso_total_seconds(text)?).ok()
}

/// The seconds an ISO-8601 duration spells, possibly too many for a `Duration` (or
/// infinite, for a thousand-digit number): callers compare before converting.
fn iso_total_seconds(text: &str) -> Option<f64> {
    let upper = text.to_ascii_uppercase();
    let body = upper.strip_prefix('P')?;
    let (date, time) = match body.split_once('T') {
        Some((d, t)) if !t.is_empty() => (d, Some(t)),
        Some(_) => return None,
        None => (body, None),
    };
    let mut total = 0f64;
    let mut any = false;
    let mut take = |part: &str, units: &[(char, f64)]| -> Option<()> {
        let mut rest = part;
        let mut allowed = units;
        while !rest.is_empty() {
            let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
            let (number, tail) = rest.split_at(end);
            let unit = tail.chars().next()?;
            let pos = allowed.iter().position(|&(u, _)| u == unit)?;
            let &(_, scale) = allowed.get(pos)?;
            if number.contains('.') && unit != 'S' {
                return None;
            }
            let n: f64 = number.parse().ok()?;
            total += n * scale;
            any = true;
            allowed = allowed.get(pos.saturating_add(1)..)?;
            rest = tail.get(unit.len_utf8()..)?;
        }
        Some(())
    };
    take(date, &[('D', 86_400.0)])?;
    if let Some(t) = time {
        take(t, &[('H', 3600.0), ('M', 60.0), ('S', 1.0)])?;
    }
    (any && !total.is_nan()).then_some(total)
}

/// `token_url`: http(s) only, https unless the host is loopback, and no `user:password@`.
/// A URL that has (or, unparsed, may have) a userinfo part is never quoted.
pub(super) fn parse_url(ctx: &str, value: &str) -> Result<Url, String> {
    let url = match Url::parse(value) {
        Ok(url) => url,
        Err(e) if value.contains('@') => {
            return Err(format!(
                "{ctx}: token_url: is not a URL: {e} (the value is not shown: with an '@' in it, it may \
                 hold a user:password@ part; remove that part too, credentials go in [cluster.auth])"
            ))
        }
        Err(e) => return Err(format!("{ctx}: token_url: {value:?} is not a URL: {e}")),
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{ctx}: token_url: remove the user:password@ part: credentials in the URL are not allowed, \
             put them in [cluster.auth] (the URL is not shown, as it holds them)"
        ));
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "{ctx}: token_url: {value:?} uses http:// with a non-loopback host; credentials and \
             tokens would cross the network in clear text, so https:// is required"
        )),
        other => Err(format!("{ctx}: token_url: scheme {other:?} is not http(s)")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// An octal file mode like "0600", at most 0777.
pub(super) fn parse_mode(ctx: &str, value: &str) -> Result<u32, String> {
    let digits = value.trim_start_matches("0o");
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o777 && !digits.is_empty() => Ok(m),
        _ => Err(format!("{ctx}: mode: {value:?} is not an octal file mode like \"0600\"")),
    }
}

/// A shell variable name for `env_var`.
pub(super) fn validate_env_var(ctx: &str, name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let ok = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("{ctx}: env_var: {name:?} is not a valid shell variable name"))
    }
}
