//! `on_change`: tell consumers that a new token is in place, after the files are durable.
//!
//! A signal goes to the pid read from `pid_file` at that moment (consumers restart; a pid
//! cached at start-up would hit the wrong process); a command runs without a shell, with a
//! timeout, and learns which cluster and generation changed from its environment. Failures
//! are returned for the keeper to log and count; nothing here can delay the next refresh,
//! because the keeper runs hooks on tasks of their own.
//!
//! Another user may control a pid file, so reading it and acting on it are guarded:
//! - It is read on the blocking pool, opened non-blocking and without following a symlink,
//!   and only if it is a regular file with one link, of at most [`PID_FILE_MAX`] bytes: a FIFO
//!   cannot stall the daemon, nor a device fill its memory.
//! - The process it names is signalled only if the file's owner may name it (`may_signal`):
//!   a file of root or of the daemon's own user may name any process; another user's file
//!   only a process of that user.
//! - The signal goes through a handle on `/proc/<pid>` opened before the owner check, so a
//!   process that exits in between is not replaced by another that gets the signal.
//!
//! A command runs in a process group of its own; on timeout, and at shutdown, the whole group
//! is killed, so nothing it started outlives it.

use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rustix::io::Errno;
use rustix::process::{kill_process, kill_process_group, pidfd_send_signal, Pid, Signal};
use tokio_util::sync::CancellationToken;

use crate::config::OnChange;

/// The largest pid file read: a pid and a newline are a few bytes.
pub(crate) const PID_FILE_MAX: u64 = 64;

/// The most of `/proc/<pid>/status` read (it is about 1.5 KiB).
const STATUS_MAX: u64 = 16 * 1024;

/// Runs `hook` for `cluster`'s new token `generation`; returns what failed, if anything. A
/// command still running when `shutdown` is cancelled is killed, with its process group.
pub(crate) async fn run(
    cluster: &str,
    generation: u64,
    hook: &OnChange,
    shutdown: &CancellationToken,
) -> Vec<String> {
    let mut errors = Vec::new();
    if let Some((signal, pid_file)) = &hook.signal {
        let (signal, pid_file) = (*signal, pid_file.clone());
        // File and /proc reads block (a pid file on a hung NFS mount): not on the async thread.
        let sent = tokio::task::spawn_blocking(move || send_signal(signal, &pid_file))
            .await
            .unwrap_or_else(|e| Err(format!("signal task failed: {e}")));
        if let Err(e) = sent {
            errors.push(e);
        }
    }
    if let Some(argv) = &hook.command {
        if let Err(e) = run_command(cluster, generation, argv, hook.timeout, shutdown).await {
            errors.push(e);
        }
    }
    errors
}

/// Reads the pid from `pid_file`, checks that the file's owner may name that process, and
/// signals it.
fn send_signal(signal: i32, pid_file: &Path) -> Result<(), String> {
    let shown = pid_file.display();
    let (pid, owner) = read_pid_file(pid_file)?;
    let process = Process::open(pid)
        .map_err(|e| format!("pid {pid} (from pid_file {shown}): cannot inspect the process: {e}"))?;
    let uids = process.uids().map_err(|e| format!("pid {pid} (from pid_file {shown}): {e}"))?;
    if !may_signal(owner, euid(), uids) {
        return Err(format!(
            "pid_file {shown} belongs to uid {owner}, but pid {pid} is a process of uid {}: not \
             signalled, a pid file may only name a process of its owner (unless it belongs to \
             root or to this daemon's user)",
            uids.real
        ));
    }
    process.signal(signal).map_err(|e| format!("signal {signal} to pid {pid} (from {shown}): {e}"))
}

/// The pid in `path` and the file's owner. Only a regular file with a single link is read (a
/// symlink is not followed), opened non-blocking, and at most [`PID_FILE_MAX`] bytes of it.
fn read_pid_file(path: &Path) -> Result<(i32, u32), String> {
    let shown = path.display();
    let refuse = |why: &str| format!("pid_file {shown} {why}, so it is not read");
    // lstat first, so a device or FIFO is not even opened; fstat after opening, in case the
    // file was swapped in between.
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("reading pid_file {shown}: {e}"))?;
    if meta.file_type().is_symlink() {
        return Err(refuse("is a symlink (not followed: point pid_file at the file itself)"));
    }
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| format!("reading pid_file {shown}: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("reading pid_file {shown}: {e}"))?;
    if !meta.file_type().is_file() {
        return Err(refuse("is not a regular file (a FIFO, a device or a directory)"));
    }
    if meta.nlink() != 1 {
        return Err(refuse("has more than one hard link"));
    }
    let mut bytes = Vec::new();
    file.take(PID_FILE_MAX + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("reading pid_file {shown}: {e}"))?;
    if bytes.len() as u64 > PID_FILE_MAX {
        return Err(refuse(&format!("is longer than {PID_FILE_MAX} bytes")));
    }
    let pid = parse_pid(&bytes).ok_or_else(|| {
        format!("pid_file {shown} does not hold a process id: {:?}", String::from_utf8_lossy(&bytes).trim())
    })?;
    Ok((pid, meta.uid()))
}

/// A process id above 1 (0, 1 and negative numbers would signal groups, or init).
fn parse_pid(bytes: &[u8]) -> Option<i32> {
    std::str::from_utf8(bytes).ok()?.trim().parse::<i32>().ok().filter(|&p| p > 1)
}

/// A process's user ids, from `/proc/<pid>/status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Uids {
    real: u32,
    effective: u32,
    saved: u32,
}

/// The `Uid:` line of a `/proc/<pid>/status` text.
fn parse_uids(status: &str) -> Option<Uids> {
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    let mut ids = line.split_whitespace().map(|v| v.parse::<u32>().ok());
    Some(Uids { real: ids.next()??, effective: ids.next()??, saved: ids.next()?? })
}

/// Whether a pid file that belongs to `owner` may name a process with `uids`, for a daemon
/// running as `euid`. Root's and the daemon's own files are trusted (the kernel still limits
/// what a daemon that is not root can signal). Another user's file may name only a process
/// that user could signal itself: one whose real or saved uid is theirs (kill(2)'s rule).
fn may_signal(owner: u32, euid: u32, uids: Uids) -> bool {
    owner == 0 || owner == euid || uids.real == owner || uids.saved == owner
}

fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// A process, held by its `/proc/<pid>` directory: the handle keeps naming that process
/// after it exits, even when its pid is reused.
struct Process {
    pid: Pid,
    dir: File,
}

impl Process {
    fn open(pid: i32) -> io::Result<Process> {
        let gone = || io::Error::new(io::ErrorKind::NotFound, "no such process");
        // Only a positive pid names one process (`parse_pid` gives only pids above 1).
        let pid_of = Some(pid).filter(|&p| p > 0).and_then(Pid::from_raw).ok_or_else(gone)?;
        let dir =
            File::options().read(true).custom_flags(libc::O_DIRECTORY).open(format!("/proc/{pid}")).map_err(
                |e| match e.kind() {
                    io::ErrorKind::NotFound => gone(),
                    _ => e,
                },
            )?;
        Ok(Process { pid: pid_of, dir })
    }

    /// Its user ids, read through the handle (an exited process has none).
    fn uids(&self) -> Result<Uids, String> {
        let path = format!("/proc/self/fd/{}/status", self.dir.as_raw_fd());
        let mut text = String::new();
        File::open(&path)
            .and_then(|f| f.take(STATUS_MAX).read_to_string(&mut text))
            .map_err(|e| format!("cannot read the process's status: {e}"))?;
        parse_uids(&text).ok_or_else(|| "the process's status has no Uid line".to_owned())
    }

    /// Sends `signal` through the handle (`pidfd_send_signal` accepts a `/proc/<pid>` directory):
    /// if the process has exited since it was checked, nobody gets it. Kernels before 5.1 lack
    /// that call; there, `kill` is used.
    fn signal(&self, signal: i32) -> io::Result<()> {
        // `on_change` accepts only named signals (config::on_change); any other number is
        // refused as the kernel would refuse it.
        let signal = Signal::from_named_raw(signal).ok_or(Errno::INVAL)?;
        match pidfd_send_signal(&self.dir, signal) {
            Err(Errno::NOSYS) => {}
            sent => return sent.map_err(io::Error::from),
        }
        // The pid is above 1 (parse_pid).
        kill_process(self.pid, signal).map_err(io::Error::from)
    }
}

/// Kills a hook's process group when dropped, unless disarmed: also when the task running
/// the hook is dropped without finishing (the runtime shutting down).
struct GroupKiller(Option<Pid>);

impl GroupKiller {
    /// Kills the group now (its leader must not have been reaped yet, so its id is still
    /// the group's), and disarms.
    fn kill(&mut self) {
        if let Some(group) = self.0.take() {
            // `group` is the id of a group whose leader is our child, not reaped yet (above 1:
            // from Child::id). Failure means the group is gone already.
            let _ = kill_process_group(group, Signal::KILL);
        }
    }
}

impl Drop for GroupKiller {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn run_command(
    cluster: &str,
    generation: u64,
    argv: &[String],
    timeout: Duration,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let shown = argv.join(" ");
    let (program, args) = argv.split_first().ok_or("the on_change command is empty")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .env("TOKEN_KEEPER_CLUSTER", cluster)
        .env("TOKEN_KEEPER_GENERATION", generation.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // A group of its own (its id is the child's pid), so that what it starts can be
        // killed with it.
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("starting `{shown}`: {e}"))?;
    let mut group = GroupKiller(
        child.id().and_then(|id| i32::try_from(id).ok()).filter(|&g| g > 1).and_then(Pid::from_raw),
    );
    let waited = tokio::select! {
        w = tokio::time::timeout(timeout, child.wait()) => w,
        () = shutdown.cancelled() => {
            group.kill();
            let _ = child.kill().await;
            return Err(format!("`{shown}` was still running at shutdown; killed"));
        }
    };
    match waited {
        Ok(result) => {
            // The leader is reaped: its id may be reused, so the group is not killed after this.
            group.0 = None;
            match result {
                Ok(status) if status.success() => Ok(()),
                Ok(status) => Err(format!("`{shown}` failed: {status}")),
                Err(e) => Err(format!("waiting for `{shown}`: {e}")),
            }
        }
        Err(_) => {
            group.kill();
            let _ = child.kill().await;
            Err(format!(
                "`{shown}` did not finish within {}; killed with its process group",
                crate::time::human(timeout)
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pids() {
        assert_eq!(parse_pid(b"1234\n"), Some(1234));
        assert_eq!(parse_pid(b"  42  "), Some(42));
        for bad in [&b""[..], b"1", b"0", b"-1", b"-42", b"abc", b"12 34", b"99999999999", b"\xff1"] {
            assert_eq!(parse_pid(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn uids_from_proc_status() {
        let status = "Name:\tsleep\nUmask:\t0022\nUid:\t1000\t0\t1001\t0\nGid:\t1000\t1000\t1000\t1000\n";
        assert_eq!(parse_uids(status), Some(Uids { real: 1000, effective: 0, saved: 1001 }));
        assert_eq!(parse_uids("Name:\tx\n"), None);
        assert_eq!(parse_uids("Uid:\t1000\t-1\t0\t0\n"), None);
        assert_eq!(parse_uids("Uid:\t1000\n"), None);
        let own = parse_uids(&std::fs::read_to_string("/proc/self/status").unwrap()).unwrap();
        assert_eq!(own.effective, euid());
    }

    #[test]
    fn who_may_name_which_process() {
        let of = |real, saved| Uids { real, effective: real, saved };
        // (file owner, daemon euid, process, allowed)
        let cases = [
            (1000, 0, of(1000, 1000), true),  // a user's file naming their own process
            (1000, 0, of(0, 0), false),       // ... naming root's process
            (1000, 0, of(2000, 2000), false), // ... naming another user's process
            (1000, 0, of(2000, 1000), true),  // ... a process whose saved uid is theirs
            (1000, 0, Uids { real: 0, effective: 1000, saved: 0 }, false), // euid alone is not enough
            (0, 0, of(2000, 2000), true),     // root's file may name anyone
            (500, 500, of(2000, 2000), true), // the daemon's own file (the kernel limits it)
            (1000, 500, of(500, 500), false), // another user's file naming the daemon's process
        ];
        for (owner, euid, uids, allowed) in cases {
            assert_eq!(may_signal(owner, euid, uids), allowed, "{owner} {euid} {uids:?}");
        }
    }

    #[test]
    fn pid_files_that_are_not_small_regular_files_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.pid");
        crate::sink::write_atomic(&good, b"4321\n", 0o600).unwrap();
        assert_eq!(read_pid_file(&good).map(|(pid, _)| pid), Ok(4321));
        let link = dir.path().join("link.pid");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        assert!(read_pid_file(&link).unwrap_err().contains("is a symlink"));
        let hard = dir.path().join("hard.pid");
        std::fs::hard_link(&good, &hard).unwrap();
        assert!(read_pid_file(&hard).unwrap_err().contains("more than one hard link"));
        std::fs::remove_file(&hard).unwrap();
        let big = dir.path().join("big.pid");
        crate::sink::write_atomic(&big, format!("{}1\n", " ".repeat(100)).as_bytes(), 0o600).unwrap();
        assert!(read_pid_file(&big).unwrap_err().contains("longer than 64 bytes"));
        for special in ["/dev/zero", "/dev/null"] {
            let err = read_pid_file(Path::new(special)).unwrap_err();
            assert!(err.contains("not a regular file"), "{err}");
        }
        assert!(read_pid_file(dir.path()).unwrap_err().contains("not a regular file"));
        let fifo = dir.path().join("fifo.pid");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        // Returns at once instead of waiting for a writer.
        assert!(read_pid_file(&fifo).unwrap_err().contains("not a regular file"));
    }
}
