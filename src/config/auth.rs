//! `[cluster.auth]`: which keys each method takes, resolved into [`Auth`].
//!
//! The secret-bearing keys go through [`secret_file`] and [`credential_path`], whose errors
//! never quote the value (see `paths.rs` for the rule).

use super::limits::MAX_COOKIE_NAME;
use super::paths::{credential_path, secret_file};
use super::{Auth, Env, RawAuth, RawMethod};

impl RawAuth {
    /// Checks that exactly the keys of `method` are given, and resolves them.
    pub(super) fn resolve(self, ctx: &str, env: &Env) -> Result<Auth, String> {
        let ctx = format!("{ctx}: auth");
        let name = self.method.as_str();
        let allowed: &[&str] = match self.method {
            RawMethod::Basic => &["user", "password_file", "password_credential"],
            RawMethod::Cookie => &["cookie_file", "cookie_name"],
            RawMethod::Bearer => &["token_file"],
        };
        let given = [
            ("user", self.user.is_some()),
            ("password_file", self.password_file.is_some()),
            ("cookie_file", self.cookie_file.is_some()),
            ("cookie_name", self.cookie_name.is_some()),
            ("token_file", self.token_file.is_some()),
            ("password_credential", self.password_credential.is_some()),
        ];
        if let Some((key, _)) = given.iter().find(|(key, present)| *present && !allowed.contains(key)) {
            return Err(format!("{ctx}: {key}: not used by method {name:?}"));
        }
        let need = |key: &str, v: Option<String>| {
            v.ok_or_else(|| format!("{ctx}: {key}: required by method {name:?}"))
        };
        match self.method {
            RawMethod::Basic => {
                let user = need("user", self.user)?;
                if user.is_empty() || user.contains(':') {
                    return Err(format!("{ctx}: user: must be non-empty and contain no ':'"));
                }
                let password_file = match (self.password_file, self.password_credential) {
                    (Some(pf), None) => secret_file(&ctx, "password_file", &pf, env)?,
                    (None, Some(name)) => credential_path(&ctx, &name, env)?,
                    (Some(_), Some(_)) => {
                        return Err(format!(
                            "{ctx}: password_credential: give either password_file or password_credential"
                        ))
                    }
                    (None, None) => {
                        return Err(format!(
                            "{ctx}: password_file: required by method \"basic\" (or password_credential)"
                        ))
                    }
                };
                Ok(Auth::Basic { user, password_file })
            }
            RawMethod::Cookie => {
                let cookie_file =
                    secret_file(&ctx, "cookie_file", &need("cookie_file", self.cookie_file)?, env)?;
                let cookie_name = self.cookie_name.unwrap_or_else(|| "hadoop-jwt".to_owned());
                validate_cookie_name(&ctx, &cookie_name)?;
                Ok(Auth::Cookie { cookie_file, cookie_name })
            }
            RawMethod::Bearer => {
                let tf = need("token_file", self.token_file)?;
                Ok(Auth::Bearer { token_file: secret_file(&ctx, "token_file", &tf, env)? })
            }
        }
    }
}

impl RawMethod {
    fn as_str(self) -> &'static str {
        match self {
            RawMethod::Basic => "basic",
            RawMethod::Cookie => "cookie",
            RawMethod::Bearer => "bearer",
        }
    }
}

/// A cookie name is an RFC 6265 token, and short. Not quoted when refused: a long or odd
/// "name" is likely the cookie value itself.
fn validate_cookie_name(ctx: &str, name: &str) -> Result<(), String> {
    let token_byte = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if !name.is_empty() && name.len() <= MAX_COOKIE_NAME && name.bytes().all(token_byte) {
        Ok(())
    } else {
        Err(format!(
            "{ctx}: cookie_name: is not a cookie name (letters, digits and !#$%&'*+-.^_`|~, at most \
             {MAX_COOKIE_NAME} characters, like \"hadoop-jwt\"; the value is not shown: it may be the \
             cookie itself, which belongs in the file cookie_file names)"
        ))
    }
}
