//! The per-cluster knobs (refresh policy, lifespan, transport, lifecycle, `on_change`,
//! `labels`): a
//! cluster's own keys over `[defaults]` over the built-in values, each checked against its
//! range in [`limits`].

use std::time::Duration;

use super::limits;
use super::paths::expand_path;
use super::values::{parse_bounded, parse_lifespan};
use super::verify::{RawVerify, Verify};
use super::{Env, Lifecycle, OnChange, RawKnobs, Transport};
use crate::scheduler::Policy;

/// Per-request timeout towards Knox. A gateway that has not answered in 30 s is down for our
/// purposes; the backoff takes over.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The per-cluster knobs after merging cluster over `[defaults]` over built-in values.
#[derive(Clone)]
pub(super) struct Knobs {
    pub(super) policy: Policy,
    pub(super) lifespan: Option<String>,
    pub(super) transport: Transport,
    pub(super) lifecycle: Lifecycle,
    pub(super) on_change: Option<OnChange>,
    /// `labels`: send this installation's labels with each acquisition.
    pub(super) labels: bool,
    /// `verify`, `issuer`, `public_cert_file`, `jwks_file`.
    pub(super) verify: Verify,
}

impl Knobs {
    /// The values of every key that neither `[defaults]` nor the cluster sets.
    pub(super) fn builtin() -> Knobs {
        Knobs {
            policy: Policy::default(),
            lifespan: None,
            transport: Transport {
                ca_file: None,
                insecure_skip_tls_verify: false,
                timeout: DEFAULT_TIMEOUT,
                https: true,
            },
            lifecycle: Lifecycle::default(),
            on_change: None,
            labels: true,
            verify: Verify::default(),
        }
    }
}

impl RawKnobs {
    /// Applies these keys over `base`, validating each against its range ([`limits`]).
    pub(super) fn resolve(&self, ctx: &str, base: &Knobs, env: &Env) -> Result<Knobs, String> {
        let mut k = base.clone();
        self.resolve_policy(ctx, &mut k.policy)?;
        if let Some(v) = &self.lifespan {
            k.lifespan = Some(parse_lifespan(ctx, v)?);
        }
        if let Some(v) = &self.ca_file {
            k.transport.ca_file = Some(expand_path(ctx, "ca_file", v, env)?);
        }
        if let Some(v) = self.insecure_skip_tls_verify {
            k.transport.insecure_skip_tls_verify = v;
        }
        if let Some(v) = &self.timeout {
            k.transport.timeout = parse_bounded(ctx, "timeout", v, limits::TIMEOUT)?;
        }
        self.resolve_lifecycle(ctx, &mut k.lifecycle)?;
        if let Some(v) = &self.on_change {
            k.on_change = Some(v.resolve(&format!("{ctx}: on_change"), env)?);
        }
        if let Some(v) = self.labels {
            k.labels = v;
        }
        k.verify = RawVerify {
            verify: self.verify,
            issuer: self.issuer.as_deref(),
            public_cert_file: self.public_cert_file.as_deref(),
            jwks_file: self.jwks_file.as_deref(),
        }
        .resolve(ctx, &k.verify, env)?;
        Ok(k)
    }

    /// `refresh_fraction`, `min_remaining` and `jitter`, and how they combine.
    fn resolve_policy(&self, ctx: &str, policy: &mut Policy) -> Result<(), String> {
        if let Some(f) = self.refresh_fraction {
            if !(f > 0.0 && f <= 1.0) {
                return Err(format!("{ctx}: refresh_fraction: {f} must be in (0, 1]"));
            }
            policy.refresh_fraction = f;
        }
        if let Some(v) = &self.min_remaining {
            policy.min_remaining = parse_bounded(ctx, "min_remaining", v, limits::MIN_REMAINING)?;
        }
        if let Some(j) = self.jitter {
            if !(0.0..=0.5).contains(&j) {
                return Err(format!("{ctx}: jitter: {j} must be in [0, 0.5] (a share of the lifetime)"));
            }
            policy.jitter = j;
        }
        if policy.jitter >= policy.refresh_fraction {
            return Err(format!(
                "{ctx}: jitter: {} must be smaller than refresh_fraction ({}), or tokens would be \
                 replaced as soon as they arrive",
                policy.jitter, policy.refresh_fraction
            ));
        }
        Ok(())
    }

    /// `consumers_validate`, `revoke_superseded_after`, `revoke_on_exit`, `min_valid`,
    /// `remove_expired`.
    fn resolve_lifecycle(&self, ctx: &str, l: &mut Lifecycle) -> Result<(), String> {
        if let Some(v) = self.consumers_validate {
            l.consumers_validate = v;
        }
        if let Some(v) = &self.revoke_superseded_after {
            l.revoke_superseded_after =
                parse_bounded(ctx, "revoke_superseded_after", v, limits::REVOKE_SUPERSEDED_AFTER)?;
        }
        if let Some(v) = self.revoke_on_exit {
            l.revoke_on_exit = v;
        }
        if let Some(v) = &self.min_valid {
            let d = parse_bounded(ctx, "min_valid", v, limits::MIN_VALID)?;
            l.min_valid = (!d.is_zero()).then_some(d);
        }
        if let Some(v) = self.remove_expired {
            l.remove_expired = v;
        }
        Ok(())
    }
}
