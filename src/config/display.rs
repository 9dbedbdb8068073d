//! The resolved config as TOML, for `check-config`: every default spelled out.
//!
//! There are no secret values to redact (only the paths of the files that hold them), and
//! those paths are printed only when the file exists ([`crate::secret::shown_path`]): a path
//! that names nothing may be a secret pasted into the wrong key. Such a key is printed as a
//! comment, so the output stays valid TOML.

use std::fmt::{self, Write as _};
use std::path::Path;

use super::on_change::signal_name;
use super::{Auth, Cluster, Config, Format, OnChange, Server};
use crate::secret::{shown_path, NOT_SHOWN};

impl fmt::Display for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::new();
        if let Some(src) = &self.source {
            let _ = writeln!(s, "# resolved from {}", src.display());
        }
        let _ = writeln!(s, "max_concurrent_requests = {}", self.max_concurrent_requests);
        let off_or = |d: Option<std::time::Duration>| {
            d.map_or_else(|| "0s".to_owned(), |d| humantime::format_duration(d).to_string())
        };
        let _ = writeln!(s, "eviction_check_interval = \"{}\"", off_or(self.eviction_check_interval));
        let _ = writeln!(s, "orphan_sweep_interval = \"{}\"", off_or(self.orphan_sweep_interval));
        let derived = if self.installation_id_derived {
            "  # derived from the machine id, the uid and the config path"
        } else {
            ""
        };
        let _ = writeln!(s, "installation_id = {:?}{derived}", self.identity.installation_id);
        if self.server != Server::default() {
            let _ = writeln!(s, "\n[server]");
            if let Some(l) = self.server.listen {
                let _ = writeln!(s, "listen = \"{l}\"");
            }
            if let Some(p) = &self.server.metrics_textfile {
                let _ = writeln!(s, "metrics_textfile = {}", quoted_path(p));
            }
        }
        for c in &self.clusters {
            write_cluster(&mut s, c);
        }
        f.write_str(&s)
    }
}

fn write_cluster(s: &mut String, c: &Cluster) {
    let _ = writeln!(s, "\n[[cluster]]");
    let _ = writeln!(s, "name = {:?}", c.name);
    let _ = writeln!(s, "token_url = {:?}", c.token_url.as_str());
    let _ = writeln!(s, "default = {}", c.is_default);
    if let Some(l) = &c.lifespan {
        let _ = writeln!(s, "lifespan = {l:?}");
    }
    if let Some(ca) = &c.transport.ca_file {
        let _ = writeln!(s, "ca_file = {}", quoted_path(ca));
    }
    let _ = writeln!(s, "insecure_skip_tls_verify = {}", c.transport.insecure_skip_tls_verify);
    let _ = writeln!(s, "timeout = {}", duration(c.transport.timeout));
    let p = &c.policy;
    let _ = writeln!(s, "refresh_fraction = {}", p.refresh_fraction);
    let _ = writeln!(s, "min_remaining = {}", duration(p.min_remaining));
    let _ = writeln!(s, "jitter = {}", p.jitter);
    let l = &c.lifecycle;
    let _ = writeln!(s, "consumers_validate = {:?}", l.consumers_validate.as_str());
    let _ = writeln!(s, "revoke_superseded_after = {}", duration(l.revoke_superseded_after));
    let _ = writeln!(s, "revoke_on_exit = {}", l.revoke_on_exit);
    if let Some(v) = l.min_valid {
        let _ = writeln!(s, "min_valid = {}", duration(v));
    }
    let _ = writeln!(s, "remove_expired = {}", l.remove_expired);
    let _ = writeln!(s, "labels = {}", c.labels.is_some());
    let _ = writeln!(s, "verify = {:?}", c.verify.mode.as_str());
    if let Some(i) = &c.verify.issuer {
        let _ = writeln!(s, "issuer = {i:?}");
    }
    if let Some(p) = &c.verify.pinned {
        let _ = writeln!(s, "{} = {}", p.key, quoted_path(&p.path));
    }
    write_auth(s, &c.auth);
    if let Some(oc) = &c.on_change {
        write_on_change(s, oc);
    }
    for o in &c.outputs {
        let _ = writeln!(s, "[[cluster.output]]");
        let _ = writeln!(s, "path = {}", quoted_path(&o.path));
        let _ = writeln!(s, "format = {:?}", o.format.as_str());
        let _ = writeln!(s, "mode = \"{:04o}\"", o.mode);
        if matches!(o.format, Format::Env | Format::Shell) {
            let _ = writeln!(s, "env_var = {:?}", o.env_var);
        }
    }
}

fn write_auth(s: &mut String, auth: &Auth) {
    let _ = writeln!(s, "[cluster.auth]\nmethod = {:?}", auth.method());
    match auth {
        Auth::Basic { user, password_file } => {
            let _ = writeln!(s, "user = {user:?}");
            write_secret_file(s, "password_file", password_file);
        }
        Auth::Cookie { cookie_file, cookie_name } => {
            write_secret_file(s, "cookie_file", cookie_file);
            let _ = writeln!(s, "cookie_name = {cookie_name:?}");
        }
        Auth::Bearer { token_file } => write_secret_file(s, "token_file", token_file),
    }
}

/// `key = "path"  # contents redacted`, or a comment when nothing exists at the path.
fn write_secret_file(s: &mut String, key: &str, path: &Path) {
    let shown = shown_path(path);
    if shown == NOT_SHOWN {
        let _ = writeln!(s, "# {key} = {NOT_SHOWN}");
    } else {
        let _ = writeln!(s, "{key} = {shown:?}  # contents redacted");
    }
}

fn write_on_change(s: &mut String, oc: &OnChange) {
    let _ = writeln!(s, "[cluster.on_change]");
    if let Some((sig, pid_file)) = &oc.signal {
        let _ = writeln!(s, "signal = \"{}\"", signal_name(*sig));
        let _ = writeln!(s, "pid_file = {}", quoted_path(pid_file));
    }
    if let Some(argv) = &oc.command {
        let quoted: Vec<String> = argv.iter().map(|a| format!("{a:?}")).collect();
        let _ = writeln!(s, "command = [{}]", quoted.join(", "));
    }
    let _ = writeln!(s, "timeout = {}", duration(oc.timeout));
}

fn quoted_path(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

fn duration(d: std::time::Duration) -> String {
    format!("{:?}", humantime::format_duration(d).to_string())
}
