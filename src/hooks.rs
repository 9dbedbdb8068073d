//! `on_change`: tell consumers that a new token is in place, after the files are durable.
//!
//! A signal goes to the pid read from `pid_file` at that moment (consumers restart; a pid
//! cached at start-up would hit the wrong process); a command runs without a shell, with a
//! timeout, and learns which cluster and generation changed from its environment. Failures
//! are returned for the keeper to log and count; nothing here can delay the next refresh,
//! because the keeper runs hooks on tasks of their own.

use std::path::Path;
use std::process::Stdio;

use crate::config::OnChange;

/// Runs `hook` for `cluster`'s new token `generation`; returns what failed, if anything.
pub async fn run(cluster: &str, generation: u64, hook: &OnChange) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some((signal, pid_file)) = &hook.signal {
        if let Err(e) = send_signal(*signal, pid_file) {
            errors.push(e);
        }
    }
    if let Some(argv) = &hook.command {
        if let Err(e) = run_command(cluster, generation, argv, hook.timeout).await {
            errors.push(e);
        }
    }
    errors
}

fn send_signal(signal: i32, pid_file: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| format!("reading pid_file {}: {e}", pid_file.display()))?;
    let pid: i32 = text.trim().parse().ok().filter(|&p| p > 1).ok_or_else(|| {
        format!("pid_file {} does not hold a process id: {:?}", pid_file.display(), text.trim())
    })?;
    // SAFETY: kill has no memory-safety preconditions; pid > 1 excludes process groups and init.
    if unsafe { libc::kill(pid, signal) } != 0 {
        let err = std::io::Error::last_os_error();
        return Err(format!("signal {signal} to pid {pid} (from {}): {err}", pid_file.display()));
    }
    Ok(())
}

async fn run_command(
    cluster: &str,
    generation: u64,
    argv: &[String],
    timeout: std::time::Duration,
) -> Result<(), String> {
    let shown = argv.join(" ");
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .env("TOKEN_KEEPER_CLUSTER", cluster)
        .env("TOKEN_KEEPER_GENERATION", generation.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting `{shown}`: {e}"))?;
    match tokio::time::timeout(timeout, child.wait()).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("`{shown}` failed: {status}")),
        Ok(Err(e)) => Err(format!("waiting for `{shown}`: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Err(format!("`{shown}` did not finish within {}; killed", crate::keeper::human(timeout)))
        }
    }
}
