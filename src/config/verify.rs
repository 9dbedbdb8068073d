//! `verify`, `issuer`, `public_cert_file` and `jwks_file`: how an issued token is checked
//! before it is published (`knox::verify`, docs/knox.md §8). A pinned key file is read and
//! parsed here, when the config is loaded, so a bad one is a config error naming the file.

use std::path::PathBuf;

use serde::Deserialize;

use super::paths::expand_path;
use super::{read_regular_file, Env};
use crate::keys::{self, RsaKey, MAX_KEY_BYTES};

/// `verify`: what is checked before a token is published.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifyMode {
    /// Check with whatever key there is (pinned, JWKS, the answer's certificate); with none at
    /// all, publish with a warning. A key that does not verify is always a failure.
    #[default]
    Auto,
    /// As `auto`, but no key is a failure too.
    Require,
    /// No checks beyond the token's shape and expiry.
    Off,
}

impl VerifyMode {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyMode::Auto => "auto",
            VerifyMode::Require => "require",
            VerifyMode::Off => "off",
        }
    }
}

/// A cluster's verification settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Verify {
    /// `verify`.
    pub mode: VerifyMode,
    /// `issuer`: the `iss` claim required, if set (Knox's default is `KNOXSSO`).
    pub issuer: Option<String>,
    /// The key pinned with `public_cert_file` or `jwks_file`, if any.
    pub pinned: Option<PinnedKeys>,
}

/// The keys of a pinned key file, read at config load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinnedKeys {
    /// The file.
    pub path: PathBuf,
    /// `public_cert_file` or `jwks_file`.
    pub key: &'static str,
    /// `"<key> <path>"`, for messages.
    pub source: String,
    /// Its RSA keys (at least one).
    pub keys: Vec<RsaKey>,
}

/// The raw values of the four keys at one level (`[defaults]` or a cluster).
pub(super) struct RawVerify<'a> {
    pub(super) verify: Option<VerifyMode>,
    pub(super) issuer: Option<&'a str>,
    pub(super) public_cert_file: Option<&'a str>,
    pub(super) jwks_file: Option<&'a str>,
}

impl RawVerify<'_> {
    /// Applies these keys over `base`; a key file set here replaces one set in `[defaults]`.
    pub(super) fn resolve(&self, ctx: &str, base: &Verify, env: &Env) -> Result<Verify, String> {
        let mut v = base.clone();
        if let Some(m) = self.verify {
            v.mode = m;
        }
        if let Some(i) = self.issuer {
            if i.is_empty() || i.len() > 256 || !crate::text::is_plain(i) {
                return Err(format!("{ctx}: issuer: must be 1 to 256 characters without control characters"));
            }
            v.issuer = Some(i.to_owned());
        }
        let file = match (self.public_cert_file, self.jwks_file) {
            (Some(_), Some(_)) => {
                return Err(format!("{ctx}: public_cert_file and jwks_file are mutually exclusive: pin one"))
            }
            (Some(p), None) => Some(("public_cert_file", p)),
            (None, Some(p)) => Some(("jwks_file", p)),
            (None, None) => None,
        };
        if let Some((key, value)) = file {
            v.pinned = Some(load(ctx, key, value, env)?);
        }
        Ok(v)
    }
}

/// Reads and parses a pinned key file; the error names the key and the file.
fn load(ctx: &str, key: &'static str, value: &str, env: &Env) -> Result<PinnedKeys, String> {
    let path = expand_path(ctx, key, value, env)?;
    let source = format!("{key} {}", path.display());
    let bytes =
        read_regular_file(&path, MAX_KEY_BYTES as u64).map_err(|e| format!("{ctx}: {source}: {e}"))?;
    let keys = if key == "jwks_file" {
        let text = String::from_utf8(bytes).map_err(|_| format!("{ctx}: {source}: not UTF-8 text"))?;
        keys::from_jwks(&text, &source)
    } else {
        keys::from_file_bytes(&bytes, &source)
    }
    .map_err(|e| format!("{ctx}: {e}"))?;
    Ok(PinnedKeys { path, key, source, keys })
}
