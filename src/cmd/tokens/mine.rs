//! `tokens revoke --mine [--cluster NAME]`: the switch an operator pulls after a leak.
//!
//! It revokes every token of this installation that Knox lists for the user of each cluster
//! (or of `--cluster` only), on whichever host the installation runs: Knox's own list
//! (`getUserTokens`, docs/knox.md §4.3) and the labels every acquisition sends
//! (`knox::labels`) say which tokens those are. Tokens are revoked by id (§4.1), each once,
//! even when two clusters share a gateway and so list the same tokens. A running keeper
//! notices within its `eviction_check_interval` that its published tokens are gone and
//! acquires fresh ones, or at once when sent SIGUSR1.

use std::collections::BTreeSet;
use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use super::{explain, owner, refusal, user_tokens};
use crate::config::{Cluster, Config};
use crate::knox::answer::{self, Revocation};
use crate::knox::labels::{cluster_of, is_mine};
use crate::knox::{wire, Flavor, KnoxClient, Op};
use crate::secret::Secret;
use crate::text;

/// Revokes this installation's tokens for every cluster of `config` (read from `origin`), or
/// for `only`.
pub(super) async fn revoke_all(
    config: &Config,
    origin: &Path,
    only: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let ours = config.identity.installation_id.as_str();
    // An unknown --cluster fails as it does for every verb that takes one.
    let clusters: Vec<&Cluster> = match only {
        Some(_) => vec![config.pick(origin, only).map_err(anyhow::Error::msg)?],
        None => config.clusters.iter().map(|c| &**c).collect(),
    };
    let mut tally = Tally::default();
    for cluster in clusters {
        if let Err(e) = revoke_for(cluster, ours, only, &mut tally).await {
            tally.fail(1, &format!("cluster {:?}: {e:#}", cluster.name));
        }
    }
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "revoked {} token(s) of installation {ours}; {} already gone, {} failed",
        tally.revoked.len(),
        tally.gone,
        tally.failed
    )?;
    if !tally.revoked.is_empty() {
        writeln!(
            out,
            "a running token-keeper replaces the tokens it published within its eviction_check_interval, \
             or at once on SIGUSR1 (systemctl kill -s USR1 token-keeper)"
        )?;
    }
    Ok(tally.code.map_or(ExitCode::SUCCESS, ExitCode::from))
}

/// What the run did so far, across clusters.
#[derive(Default)]
struct Tally {
    /// The ids revoked, or found gone, so far: none is tried twice.
    revoked: BTreeSet<String>,
    /// Knox did not know them any more (code 50): revoked or evicted since it listed them.
    gone: usize,
    failed: usize,
    /// The exit code of the first failure (1 for one that is not Knox's refusal).
    code: Option<u8>,
}

impl Tally {
    fn fail(&mut self, code: u8, message: &str) {
        self.failed += 1;
        self.code.get_or_insert(code);
        let _ = refusal(code, message);
    }
}

/// Lists the tokens of `cluster`'s user and revokes those `select` picks.
async fn revoke_for(
    cluster: &Cluster,
    ours: &str,
    only: Option<&str>,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let client = KnoxClient::new(&cluster.transport)?;
    let user = owner(cluster, None)?;
    let listed = match user_tokens(cluster, &client, &user).await? {
        Ok((listed, _)) => listed,
        Err((code, message)) => {
            tally.fail(code, &format!("cluster {:?}: {message}", cluster.name));
            return Ok(());
        }
    };
    let mut flavor = Flavor::default();
    for id in select(&listed.tokens, ours, only, &tally.revoked) {
        let (status, body) =
            client.token_op(cluster, Op::Revoke, &Secret::new(id.as_str()), &mut flavor).await?;
        let parsed = answer::parse(&body);
        let shown = text::quote(&id, 128);
        match answer::revocation(status.as_u16(), &parsed) {
            Revocation::Revoked => {
                let user = text::quote(&user, 64);
                writeln!(
                    std::io::stdout().lock(),
                    "revoked {shown} (cluster {:?}, user {user})",
                    cluster.name
                )?;
                tally.revoked.insert(id);
            }
            Revocation::AlreadyGone => {
                tally.gone += 1;
                tally.revoked.insert(id);
            }
            Revocation::NotAuthorized | Revocation::NotConfigured | Revocation::Refused => {
                let (code, message) = explain(Op::Revoke, status.as_u16(), &parsed);
                tally.fail(code, &format!("token {shown}: {message}"));
            }
        }
    }
    Ok(())
}

/// The ids of the tokens in Knox's list that this installation (`ours`) acquired, for
/// `only` when it is given, that are not among `done`.
fn select(
    tokens: &[wire::UserToken],
    ours: &str,
    only: Option<&str>,
    done: &BTreeSet<String>,
) -> Vec<String> {
    tokens
        .iter()
        .filter(|t| is_mine(t.metadata.as_ref(), ours))
        .filter(|t| only.is_none() || cluster_of(t.metadata.as_ref()).as_deref() == only)
        .filter(|t| !done.contains(&t.token_id))
        .map(|t| t.token_id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_installations_tokens_of_the_cluster_asked_for_and_each_once() {
        let listed: wire::UserTokens = serde_json::from_value(serde_json::json!({"tokens": [
            {"tokenId": "a", "metadata": {"customMetadataMap": {"tk_install": "me", "tk_cluster": "vc1"}}},
            {"tokenId": "b", "metadata": {"customMetadataMap": {"tk_install": "me", "tk_cluster": "vc2"}}},
            {"tokenId": "c", "metadata": {"comment": "token-keeper me on h for vc1"}},
            {"tokenId": "d", "metadata": {"customMetadataMap": {"tk_install": "other", "tk_cluster": "vc1"}}},
            {"tokenId": "e", "metadata": {"comment": "a token of someone else"}},
            {"tokenId": "f"},
        ]}))
        .unwrap();
        let none = BTreeSet::new();
        let done: BTreeSet<String> = ["a".to_owned()].into();
        // (only, done, expected)
        let cases = [
            (None, &none, vec!["a", "b", "c"]),
            (Some("vc1"), &none, vec!["a", "c"]),
            (Some("vc2"), &none, vec!["b"]),
            (Some("vc3"), &none, vec![]),
            (None, &done, vec!["b", "c"]),
        ];
        for (only, done, want) in cases {
            assert_eq!(select(&listed.tokens, "me", only, done), want, "{only:?} {done:?}");
        }
    }
}
