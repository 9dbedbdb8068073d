//! Paths in the config: `~` expansion, the config file's own lookup, and the rule for keys
//! that name a secret's file.
//!
//! The rule for `password_file`, `cookie_file`, `token_file` and `password_credential`: their
//! values are never quoted in an error, because the commonest mistake with them is pasting
//! the secret itself (`password_file = "hunter2"`). A `*_file` value must be an absolute path
//! or start with `~/`, which a pasted password, cookie or token almost never does, so such a
//! value is refused before it reaches the HTTP client (whose errors name the file). A file
//! that does not exist yet is fine (it may be provisioned later); printing its path is left
//! to [`crate::secret::shown_path`], which shows it only once it exists. A
//! `password_credential` must be a short systemd credential name that is present in
//! `$CREDENTIALS_DIRECTORY`: systemd fills that directory before the unit starts and never
//! later, so a name missing from it is a mistake, not a file still to come.

use std::path::{Path, PathBuf};

use super::limits::MAX_CREDENTIAL_NAME;
use super::Env;

/// Why a secret key's value is not quoted in its error.
const NOT_QUOTED: &str = "the value is not shown: it may be a secret pasted into the wrong key";

/// Finds the config file: `-c`, else `$TOKEN_KEEPER_CONFIG` (both handled by clap and passed
/// in as `explicit`), else `$XDG_CONFIG_HOME/token-keeper/config.toml` (or
/// `~/.config/token-keeper/config.toml`) if it exists, else `/etc/token-keeper/config.toml`.
pub fn resolve_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_owned();
    }
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(user) = xdg.map(|d| d.join("token-keeper/config.toml")) {
        if user.exists() {
            return user;
        }
    }
    PathBuf::from("/etc/token-keeper/config.toml")
}

/// An absolute path, or `~/...` under `$HOME`. For keys whose values are not secrets (outputs,
/// `ca_file`, `pid_file`, `metrics_textfile`), so the value is quoted in errors.
pub(super) fn expand_path(ctx: &str, key: &str, value: &str, env: &Env) -> Result<PathBuf, String> {
    match expand(value, env) {
        Ok(path) => Ok(path),
        Err(Unusable::NoHome) => {
            Err(format!("{ctx}: {key}: {value:?} starts with ~ but $HOME is not set; use an absolute path"))
        }
        Err(Unusable::Relative) => {
            Err(format!("{ctx}: {key}: {value:?} must be an absolute path (or start with ~/)"))
        }
    }
}

/// The path of a secret's file (`password_file`, `cookie_file`, `token_file`): the same rule
/// as [`expand_path`], and the value is never quoted.
pub(super) fn secret_file(ctx: &str, key: &str, value: &str, env: &Env) -> Result<PathBuf, String> {
    let shape = "the path of a file holding the secret, absolute or starting with ~/";
    match expand(value, env) {
        Ok(_) if value.contains(['\n', '\r']) => {
            Err(format!("{ctx}: {key}: must be {shape}, on one line ({NOT_QUOTED})"))
        }
        Ok(path) => Ok(path),
        Err(Unusable::NoHome) => Err(format!(
            "{ctx}: {key}: starts with ~ but $HOME is not set; use an absolute path ({NOT_QUOTED})"
        )),
        Err(Unusable::Relative) => Err(format!(
            "{ctx}: {key}: must be {shape} ({NOT_QUOTED}; put the secret in a file readable only by \
             token-keeper and name the file here)"
        )),
    }
}

/// `$CREDENTIALS_DIRECTORY/<name>`: a credential systemd passed with `LoadCredential=`. The
/// name is never quoted: a password pasted here looks like a name.
pub(super) fn credential_path(ctx: &str, name: &str, env: &Env) -> Result<PathBuf, String> {
    let key = "password_credential";
    let valid = !name.is_empty()
        && name.len() <= MAX_CREDENTIAL_NAME
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    if !valid {
        return Err(format!(
            "{ctx}: {key}: is not a systemd credential name ([A-Za-z0-9._-], at most \
             {MAX_CREDENTIAL_NAME} characters, the NAME of LoadCredential=NAME:...); {NOT_QUOTED}"
        ));
    }
    let dir = env.credentials_dir.as_ref().ok_or_else(|| {
        format!(
            "{ctx}: {key}: needs $CREDENTIALS_DIRECTORY, which systemd sets for units with \
             LoadCredential=; outside systemd use password_file ({NOT_QUOTED})"
        )
    })?;
    let path = dir.join(name);
    if path.symlink_metadata().is_err() {
        return Err(format!(
            "{ctx}: {key}: $CREDENTIALS_DIRECTORY ({}) holds no credential of that name; systemd \
             fills it only at start, so add LoadCredential=NAME:... to the unit and restart it \
             ({NOT_QUOTED})",
            dir.display()
        ));
    }
    Ok(path)
}

/// Why a path value cannot be used.
enum Unusable {
    NoHome,
    Relative,
}

fn expand(value: &str, env: &Env) -> Result<PathBuf, Unusable> {
    let path = if value == "~" || value.starts_with("~/") {
        let home = env.home.as_ref().ok_or(Unusable::NoHome)?;
        home.join(value.trim_start_matches('~').trim_start_matches('/'))
    } else {
        PathBuf::from(value)
    };
    if path.is_absolute() {
        Ok(path)
    } else {
        Err(Unusable::Relative)
    }
}
