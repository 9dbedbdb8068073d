//! The tables no other file resolves: the `[[cluster]]` list (unique names, at most one
//! default, no output path twice), each cluster with its outputs (or the default ones), and
//! `[server]`.

use std::collections::HashSet;
use std::sync::Arc;

use super::installation::Identity;
use super::knobs::Knobs;
use super::paths::expand_path;
use super::values::{parse_mode, parse_url, validate_env_var, validate_name};
use super::{
    Cluster, Env, Format, Output, RawCluster, RawKnobs, RawOutput, RawServer, Server, DEFAULT_ENV_VAR,
};

/// Resolves every `[[cluster]]`: unique names, at most one default, no output path twice.
pub(super) fn resolve_clusters(
    raw: Vec<RawCluster>,
    defaults: &Knobs,
    identity: &Identity,
    env: &Env,
) -> Result<Vec<Arc<Cluster>>, String> {
    let single = raw.len() == 1;
    let mut names = HashSet::new();
    let mut paths = HashSet::new();
    let mut default_cluster: Option<String> = None;
    let mut clusters = Vec::with_capacity(raw.len());
    for rc in raw {
        let ctx = format!("cluster {:?}", rc.name);
        validate_name(&rc.name).map_err(|m| format!("{ctx}: name: {m}"))?;
        if !names.insert(rc.name.clone()) {
            return Err(format!("{ctx}: name: used by two clusters"));
        }
        let is_default = rc.default.unwrap_or(false);
        if is_default {
            if let Some(other) = default_cluster.replace(rc.name.clone()) {
                return Err(format!("{ctx}: default: cluster {other:?} is already the default"));
            }
        }
        let cluster = rc.resolve(&ctx, defaults, identity, env, is_default || single)?;
        for out in &cluster.outputs {
            if !paths.insert(out.path.clone()) {
                return Err(format!("{ctx}: output {}: path is published twice", out.path.display()));
            }
        }
        clusters.push(Arc::new(cluster));
    }
    Ok(clusters)
}

impl RawServer {
    /// `listen` as a socket address, `metrics_textfile` as an absolute path.
    pub(super) fn resolve(self, env: &Env) -> Result<Server, String> {
        let listen = self
            .listen
            .map(|l| {
                l.parse().map_err(|e| {
                    format!("[server]: listen: {l:?} is not an address like \"127.0.0.1:9464\": {e}")
                })
            })
            .transpose()?;
        let metrics_textfile = self
            .metrics_textfile
            .map(|p| expand_path("[server]", "metrics_textfile", &p, env))
            .transpose()?;
        Ok(Server { listen, metrics_textfile })
    }
}

impl RawCluster {
    /// This cluster's knobs over `defaults`, its URL, credentials, outputs and labels.
    fn resolve(
        self,
        ctx: &str,
        defaults: &Knobs,
        identity: &Identity,
        env: &Env,
        owns_default_paths: bool,
    ) -> Result<Cluster, String> {
        let knobs = RawKnobs {
            refresh_fraction: self.refresh_fraction,
            min_remaining: self.min_remaining,
            jitter: self.jitter,
            lifespan: self.lifespan,
            ca_file: self.ca_file,
            insecure_skip_tls_verify: self.insecure_skip_tls_verify,
            timeout: self.timeout,
            consumers_validate: self.consumers_validate,
            revoke_superseded_after: self.revoke_superseded_after,
            revoke_on_exit: self.revoke_on_exit,
            min_valid: self.min_valid,
            remove_expired: self.remove_expired,
            on_change: self.on_change,
            labels: self.labels,
            verify: self.verify,
            issuer: self.issuer,
            public_cert_file: self.public_cert_file,
            jwks_file: self.jwks_file,
        }
        .resolve(ctx, defaults, env)?;
        let token_url = parse_url(ctx, &self.token_url)?;
        let mut transport = knobs.transport;
        transport.https = token_url.scheme() == "https";
        let auth = self.auth.resolve(ctx, env)?;
        let outputs = if self.output.is_empty() {
            default_outputs(ctx, &self.name, owns_default_paths, env)?
        } else {
            self.output.into_iter().map(|o| o.resolve(ctx, env)).collect::<Result<Vec<_>, _>>()?
        };
        Ok(Cluster {
            name: self.name,
            token_url,
            is_default: self.default.unwrap_or(false) || owns_default_paths,
            lifespan: knobs.lifespan,
            transport,
            auth,
            outputs,
            policy: knobs.policy,
            lifecycle: knobs.lifecycle,
            on_change: knobs.on_change,
            labels: knobs.labels.then(|| identity.clone()),
            verify: knobs.verify,
        })
    }
}

impl RawOutput {
    /// The path (absolute, naming a file), format, mode and variable name of one output.
    fn resolve(self, ctx: &str, env: &Env) -> Result<Output, String> {
        let ctx = format!("{ctx}: output {:?}", self.path);
        let path = expand_path(&ctx, "path", &self.path, env)?;
        if path.file_name().is_none() {
            return Err(format!("{ctx}: path: names a directory, not a file"));
        }
        let format = self.format.unwrap_or(Format::Raw);
        let mode = match &self.mode {
            Some(m) => parse_mode(&ctx, m)?,
            None => 0o600,
        };
        let env_var = self.env_var.unwrap_or_else(|| DEFAULT_ENV_VAR.to_owned());
        validate_env_var(&ctx, &env_var)?;
        Ok(Output { path, format, mode, env_var })
    }
}

/// `~/.cde/<name>/{token,token.sh,token.env,token.json}`, plus `~/.cde/token` and
/// `~/.cde/token.sh` for the default cluster: the paths CDE's docs have users create by hand.
fn default_outputs(ctx: &str, name: &str, is_default: bool, env: &Env) -> Result<Vec<Output>, String> {
    let mut files = vec![
        (format!("~/.cde/{name}/token"), Format::Raw),
        (format!("~/.cde/{name}/token.sh"), Format::Shell),
        (format!("~/.cde/{name}/token.env"), Format::Env),
        (format!("~/.cde/{name}/token.json"), Format::Json),
    ];
    if is_default {
        files.push(("~/.cde/token".to_owned(), Format::Raw));
        files.push(("~/.cde/token.sh".to_owned(), Format::Shell));
    }
    files
        .into_iter()
        .map(|(p, format)| {
            let path = expand_path(&format!("{ctx}: default output"), "path", &p, env)?;
            Ok(Output { path, format, mode: 0o600, env_var: DEFAULT_ENV_VAR.to_owned() })
        })
        .collect()
}
