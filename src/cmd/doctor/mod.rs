//! `token-keeper doctor`: checks each cluster end to end and prints one ✔/✘ table per cluster.
//!
//! The checks follow a request's path: DNS, TCP, TLS against the configured CA, the endpoint
//! answering as KNOXTOKEN (which API and verbs), the credentials, whether tokens are managed
//! (`getTssStatus`), renewal (only with `--renew-trial`), the per-user token limit
//! (`getUserTokens`), Knox's clock, and then each output: the directory rule of
//! `sink::check_output`, a trial temp file renamed in place, the filesystem, and what the
//! file's mode gives its owner, group and others.
//!
//! Doctor acquires one token to prove the credentials, and revokes it at the end (owners may
//! revoke their own, docs/knox.md §4.1) so that it does not eat into the user's quota. A refused
//! revocation is a ✘ row: the keeper's revocation of superseded tokens would fail the same way.
//!
//! The config is read with `config::load`, not `app::load_config`: a config that the daemon
//! refuses (an unsafe output directory, a bad `ca_file`) still gets its table, with the reason
//! in the row it belongs to. Nothing here prints a token or a password, nor the path of a
//! secret's file that does not exist (`secret::shown_path`): such a "path" may be the secret
//! itself, pasted into the wrong key.
//!
//! The parts: this file (the table, its rows and the verdict), `network` (DNS, TCP and the
//! proxy), `knox` (the probes that need HTTP: tls, knox, credentials, managed, renew,
//! token-limit, clock, cleanup), `outputs` (per directory and per file), and `sys` (the
//! effective user, access checks, user and group names, `/proc/self/mountinfo`).

use std::io::{self, Write as _};
use std::path::Path;
use std::process::ExitCode;

use url::Url;

use crate::config::{self, Cluster, Env};

mod knox;
mod network;
mod outputs;
mod sys;

use knox::{knox_checks, KnoxRows};
use network::reach;
use outputs::output_rows;

/// Runs every check on every cluster and prints the tables on stdout; exit 0 only if no row
/// failed (warnings and skipped rows pass), 1 otherwise.
pub(super) async fn run(config_path: &Path, renew_trial: bool) -> anyhow::Result<ExitCode> {
    let config = config::load(config_path, &Env::from_process())?;
    let mut all = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for (i, cluster) in config.clusters.iter().enumerate() {
        tracing::debug!(cluster = %cluster.name, "checking");
        let rows = check_cluster(cluster, renew_trial).await;
        let mut out = io::stdout().lock();
        if i > 0 {
            writeln!(out)?;
        }
        writeln!(out, "{}  {}", cluster.name, shown(&cluster.token_url))?;
        for r in &rows {
            writeln!(out, "  {} {:<12} {}", r.mark.symbol(), r.name, r.detail)?;
        }
        writeln!(out, "  {}: {}", cluster.name, tally(&rows))?;
        if rows.iter().any(|r| r.mark == Mark::Fail) {
            failed.push(cluster.name.clone());
        }
        all.extend(rows);
    }
    let clusters = config.clusters.len();
    let plural = if clusters == 1 { "" } else { "s" };
    let verdict = if failed.is_empty() {
        format!("{clusters} cluster{plural} checked, nothing failed")
    } else {
        format!("{clusters} cluster{plural} checked, failures in {}", failed.join(", "))
    };
    writeln!(io::stdout().lock(), "\ndoctor: {verdict} ({})", tally(&all))?;
    Ok(if failed.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// "14 passed (1 with a warning), 0 failed, 1 skipped".
fn tally(rows: &[Row]) -> String {
    let count = |m: Mark| rows.iter().filter(|r| r.mark == m).count();
    let (warn, fail, skip) = (count(Mark::Warn), count(Mark::Fail), count(Mark::Skip));
    let pass = count(Mark::Pass).saturating_add(warn);
    let warned = match warn {
        0 => String::new(),
        1 => " (1 with a warning)".to_owned(),
        n => format!(" ({n} with warnings)"),
    };
    format!("{pass} passed{warned}, {fail} failed, {skip} skipped")
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    Pass,
    /// Passes, but something deserves attention.
    Warn,
    Fail,
    /// Could not be checked, because an earlier check failed or it was not asked for.
    Skip,
}

impl Mark {
    fn symbol(self) -> &'static str {
        match self {
            Mark::Pass => "✔",
            Mark::Warn => "!",
            Mark::Fail => "✘",
            Mark::Skip => "-",
        }
    }
}

/// One line of the table: a check and what it found, naming its input.
#[derive(Debug, Clone)]
struct Row {
    mark: Mark,
    name: &'static str,
    detail: String,
}

impl Row {
    fn new(mark: Mark, name: &'static str, detail: impl Into<String>) -> Row {
        Row { mark, name, detail: detail.into() }
    }
}

async fn check_cluster(c: &Cluster, renew_trial: bool) -> Vec<Row> {
    let mut rows = Vec::new();
    let reachable = reach(c, &mut rows).await;
    if reachable {
        rows.extend(knox_checks(c, renew_trial).await);
    } else {
        rows.extend(KnoxRows::skipped("no connection to the gateway").into_rows());
    }
    rows.extend(output_rows(c));
    rows
}

/// The URL without its query string (which may hold `doAs` or metadata).
fn shown(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}
