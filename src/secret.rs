//! `Secret`: the one type that holds token, password and cookie bytes.
//!
//! Its `Debug` and `Display` print `<redacted>`, so a secret that reaches a log line or an
//! error message by accident shows nothing. Code that needs the bytes calls
//! [`Secret::expose`], which is easy to grep for.
//!
//! The config holds no secret, only the paths of the files that hold them (`password_file`,
//! `cookie_file`, `token_file`, `password_credential`). A secret pasted into one of those
//! keys by mistake is a "path" that names nothing, so [`shown_path`] prints such a path only
//! when something exists there, and [`NOT_SHOWN`] otherwise.

use std::fmt;
use std::path::Path;

/// A credential or token. Never printed; compare and fingerprint instead.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The secret bytes, for the HTTP client and the sink only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, stable fingerprint for logs: the first 8 hex digits of SHA-256.
    ///
    /// Operators can match a log line to a published file (`sha256sum`) without the log
    /// ever holding the token.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.0.as_bytes())
    }
}

/// The first 8 hex digits of the SHA-256 of `bytes`.
pub(crate) fn fingerprint(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    digest.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// What is printed instead of the path of a secret's file that does not exist.
pub(crate) const NOT_SHOWN: &str =
    "(not shown: the file does not exist, and the value may be a secret pasted into the wrong key)";

/// The path of a file that holds a secret, for messages and tables: the path itself when
/// something exists there (then it is a path, not a pasted secret), else [`NOT_SHOWN`].
pub(crate) fn shown_path(path: &Path) -> String {
    if path.symlink_metadata().is_ok() {
        path.display().to_string()
    } else {
        NOT_SHOWN.to_owned()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "<redacted>");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<redacted>)");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn secret_file_paths_are_shown_only_when_they_exist() {
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().join("password");
        std::fs::File::options().write(true).create_new(true).open(&here).unwrap();
        assert_eq!(shown_path(&here), here.display().to_string());
        let pasted = dir.path().join("hunter2-pasted");
        assert_eq!(shown_path(&pasted), NOT_SHOWN);
        assert!(!shown_path(&pasted).contains("hunter2"));
    }

    #[test]
    fn fingerprint_is_sha256_prefix() {
        // sha256("abc") = ba7816bf...
        assert_eq!(fingerprint(b"abc"), "ba7816bf");
        assert_eq!(Secret::new("abc").fingerprint(), "ba7816bf");
    }
}
