//! Other local users and hostile local clients: directories another user can swap, pid files
//! that are FIFOs, devices or someone else's, hooks that leave processes behind, idle HTTP
//! connections by the hundred, SIGUSR1 in a loop, and wake-ups that used to delay the
//! watchdog. Each test failed on the code before the fix it is named after.
//!
//! "Another user" is uid 65534 (nobody): files are given to it with `chown`, processes run as
//! it with `CommandExt::uid`. That needs root, which is how these tests run (CI and the dev
//! container); as another user they return early.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;

const NOBODY: u32 = 65534;

/// Whether this runs as root (needed to act as another user).
fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// `cmd` run as nobody.
fn as_nobody(cmd: &mut Command) -> &mut Command {
    cmd.uid(NOBODY).gid(NOBODY)
}

/// A cluster of `fx` whose five outputs are in `dir` instead of `out/<name>/`.
fn cluster_in(fx: &Fixture, name: &str, url: &str, dir: &Path, extra: &str) -> String {
    let default = fx.path().join("out").join(name);
    fx.cluster(name, url, extra).replace(&default.display().to_string(), &dir.display().to_string())
}

/// A cluster with an `[cluster.on_change]` table holding `hook`.
fn cluster_with_hook(fx: &Fixture, name: &str, url: &str, hook: &str) -> String {
    fx.cluster(name, url, "")
        .replace("[cluster.auth]", &format!("[cluster.on_change]\n{hook}\n[cluster.auth]"))
}

/// The daemon for `fx`, started by `sh` after `ulimit <limits>`.
fn run_limited(fx: &Fixture, limits: &str) -> Daemon {
    let script = format!("ulimit {limits} && exec \"$0\" \"$@\"");
    let mut cmd = Command::new("sh");
    cmd.args(["-c", &script, env!("CARGO_BIN_EXE_token-keeper"), "-c", fx.config.to_str().unwrap(), "run"])
        .stdin(std::process::Stdio::null())
        .env_remove("TOKEN_KEEPER_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUST_LOG");
    Daemon::spawn_cmd(cmd)
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.chars().next());
    state.is_some_and(|s| s != 'Z' && s != 'X')
}

/// Kills `pid` if it is still there (cleanup after a test that found it alive).
fn kill(pid: i32) {
    // SAFETY: kill has no memory-safety preconditions; the pid was read from a test's file.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}

/// Kills and reaps a child on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `sleep 1000`, as root or as nobody.
fn sleeper(nobody: bool) -> Reaped {
    let mut cmd = Command::new("sleep");
    cmd.arg("1000");
    if nobody {
        as_nobody(&mut cmd);
    }
    Reaped(cmd.spawn().unwrap())
}

// ---- 1. Output directories ----

#[test]
fn a_directory_another_user_made_in_a_shared_directory_is_refused_at_start() {
    if !as_root() {
        return;
    }
    let fx = Fixture::new();
    chmod(fx.path(), 0o755);
    let shared = fx.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    chmod(&shared, 0o1777);
    // Another user gets there first, with a directory that only they can write to.
    let theirs = shared.join("cde");
    assert!(as_nobody(Command::new("mkdir").args(["-m", "0755"]).arg(&theirs)).status().unwrap().success());
    fx.write_config("", &[cluster_in(&fx, "vc", "http://127.0.0.1:9/t", &theirs, "")]);
    for verb in ["check-config", "run", "once"] {
        let r = fx.cmd(&[verb]);
        let stderr = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{verb}: {stderr}");
        let expected = format!("output directory {} belongs to uid 65534 (mode 0755)", theirs.display());
        assert!(stderr.contains(&expected), "{verb}: {stderr}");
    }
    assert_eq!(std::fs::read_dir(&theirs).unwrap().count(), 0, "nothing was written there");
    // Under a directory of our own in the same shared place, it is fine: the sticky bit keeps
    // others from renaming it.
    let ours = shared.join("mine/cde");
    fx.write_config("", &[cluster_in(&fx, "vc", "http://127.0.0.1:9/t", &ours, "")]);
    let r = fx.cmd(&["check-config"]);
    assert_eq!(r.status.code(), Some(0), "{}", String::from_utf8_lossy(&r.stderr));
}

#[test]
fn a_shared_volume_is_accepted_as_an_ancestor_only_when_listed() {
    // A Kubernetes emptyDir: its root is 0777 and not sticky, and no non-root container can
    // change that. Publishing into our own subdirectory of it needs the explicit opt-in.
    let fx = Fixture::new();
    chmod(fx.path(), 0o755);
    let volume = fx.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    chmod(&volume, 0o777);
    let check = |dir: &Path, shared: Option<&Path>| {
        fx.write_config("", &[cluster_in(&fx, "vc", "http://127.0.0.1:9/t", dir, "")]);
        let mut cmd = command(&["-c", fx.config.to_str().unwrap(), "check-config"]);
        if let Some(s) = shared {
            cmd.env("TOKEN_KEEPER_SHARED_DIRS", format!("/nonexistent:{}", s.display()));
        }
        let r = cmd.output().unwrap();
        (r.status.code(), String::from_utf8_lossy(&r.stderr).into_owned())
    };
    let (code, err) = check(&volume.join("token"), None);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("not sticky") && err.contains("TOKEN_KEEPER_SHARED_DIRS"), "{err}");
    let (code, err) = check(&volume.join("token"), Some(&volume));
    assert_eq!(code, Some(0), "listed, the volume is accepted as an ancestor: {err}");
    // Never as the output directory itself: anyone could replace the files in it.
    let (code, err) = check(&volume, Some(&volume));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains(&format!("output directory {} is writable", volume.display())), "{err}");
}

#[test]
fn a_path_another_user_swapped_is_refused_before_publishing() {
    if !as_root() {
        return;
    }
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    chmod(fx.path(), 0o755);
    let parent = fx.path().join("parent");
    let out = parent.join("out");
    std::fs::create_dir(&parent).unwrap();
    fx.write_config(FAST, &[cluster_in(&fx, "vc", &sim.url(), &out, "")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    let first = std::fs::read_to_string(out.join("token")).unwrap();

    // The parent becomes world-writable (not sticky), and another user swaps the whole path:
    // our directory goes aside, theirs takes its place.
    chmod(&parent, 0o777);
    let swap = format!("mv {0}/out {0}/old && mkdir -m 0755 {0}/out", parent.display());
    assert!(as_nobody(Command::new("sh").args(["-c", &swap])).status().unwrap().success());
    d.signal(libc::SIGUSR1);
    d.wait_log("output skipped", 5);
    d.wait_log("refresh failed", 1);
    let line = d.log().lines().find(|l| l.contains("output skipped")).unwrap().to_owned();
    assert!(
        line.contains(&format!("its ancestor {} is writable by group or others", parent.display())),
        "{line}"
    );
    assert!(line.contains("mode 0777") && line.contains("chmod go-w"), "{line}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0, "nothing was written into their directory");
    assert_eq!(std::fs::read_to_string(parent.join("old/token")).unwrap(), first);
}

// ---- 2 and 3. Pid files ----

#[test]
fn a_fifo_pid_file_neither_blocks_the_daemon_nor_is_read() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let fifo = fx.path().join("consumer.pid");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let hook = format!("signal = \"HUP\"\npid_file = \"{}\"", fifo.display());
    fx.write_config(FAST, &[cluster_with_hook(&fx, "vc", &sim.url(), &hook)]);
    let mut d = Daemon::run(&fx);
    d.wait_log("on_change failed", 1);
    let line = d.log().lines().find(|l| l.contains("on_change failed")).unwrap().to_owned();
    assert!(line.contains("is not a regular file"), "{line}");
    // The loop is free: a refresh still happens, and SIGTERM still stops it.
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 2);
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit().success());
}

#[test]
fn a_device_pid_file_is_not_read() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let hook = "signal = \"HUP\"\npid_file = \"/dev/zero\"";
    fx.write_config(FAST, &[cluster_with_hook(&fx, "vc", &sim.url(), hook)]);
    // Reading /dev/zero to the end used to take all the memory there was: bound it, so that
    // the old behaviour ends in an allocation failure rather than in the host's OOM killer.
    let d = run_limited(&fx, "-v 2000000");
    d.wait_log("on_change failed", 1);
    let line = d.log().lines().find(|l| l.contains("on_change failed")).unwrap().to_owned();
    assert!(line.contains("/dev/zero is not a regular file"), "{line}");
    d.signal(libc::SIGUSR1);
    d.wait_log("on_change failed", 2);
    d.wait_log("token published", 2);
}

#[test]
fn a_pid_file_names_only_processes_of_its_owner() {
    if !as_root() {
        return;
    }
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let (mut victim, mut consumer, mut linked) = (sleeper(false), sleeper(true), sleeper(false));
    let write_pid = |name: &str, child: &Reaped, owner: Option<u32>| -> PathBuf {
        let path = fx.path().join(name);
        std::fs::write(&path, format!("{}\n", child.0.id())).unwrap();
        if let Some(uid) = owner {
            std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
        }
        path
    };
    // Another user's pid file naming root's process; the same user's file naming their own
    // process; another user's symlink to root's pid file.
    let theirs = write_pid("theirs.pid", &victim, Some(NOBODY));
    let own = write_pid("own.pid", &consumer, Some(NOBODY));
    let roots = write_pid("roots.pid", &linked, None);
    let link = fx.path().join("link.pid");
    std::os::unix::fs::symlink(&roots, &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(NOBODY), Some(NOBODY)).unwrap();
    let hook = |p: &Path| format!("signal = \"TERM\"\npid_file = \"{}\"", p.display());
    fx.write_config(
        FAST,
        &[
            cluster_with_hook(&fx, "theirs", &sim.url(), &hook(&theirs)),
            cluster_with_hook(&fx, "own", &sim.url(), &hook(&own)),
            cluster_with_hook(&fx, "link", &sim.url(), &hook(&link)),
        ],
    );
    let d = Daemon::run(&fx);
    d.wait_log("on_change failed", 2);
    let failed = |cluster: &str| {
        let tag = format!("cluster={cluster}");
        d.log().lines().find(|l| l.contains("on_change failed") && l.contains(&tag)).map(str::to_owned)
    };
    let line = failed("theirs").expect("the victim's signal is refused");
    assert!(line.contains("belongs to uid 65534, but pid") && line.contains("a process of uid 0"), "{line}");
    let line = failed("link").expect("the symlink is refused");
    assert!(line.contains("link.pid is a symlink"), "{line}");
    // Nobody's own consumer got its signal.
    assert!(wait_until(WAIT, || consumer.0.try_wait().unwrap().is_some()), "{}", d.log());
    assert!(failed("own").is_none(), "{}", d.log());
    assert!(victim.0.try_wait().unwrap().is_none(), "root's process was signalled");
    assert!(linked.0.try_wait().unwrap().is_none(), "the symlink was followed");
}

// ---- 4. Hook processes ----

/// A hook that starts `sleep 1000` in the background, writes its pid to `child_pid`, and
/// waits for it.
fn leaving_hook(child_pid: &Path, timeout: &str) -> String {
    format!(
        "command = [\"sh\", \"-c\", \"sleep 1000 & echo $! > {0}.tmp; mv {0}.tmp {0}; wait\"]\ntimeout = \"{timeout}\"",
        child_pid.display()
    )
}

fn read_pid(path: &Path) -> i32 {
    let mut pid = None;
    assert!(wait_until(WAIT, || {
        pid = std::fs::read_to_string(path).ok().and_then(|t| t.trim().parse().ok());
        pid.is_some()
    }));
    pid.unwrap()
}

#[test]
fn a_timed_out_hook_is_killed_with_what_it_started() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let child_pid = fx.path().join("child.pid");
    fx.write_config(FAST, &[cluster_with_hook(&fx, "vc", &sim.url(), &leaving_hook(&child_pid, "1s"))]);
    let d = Daemon::run(&fx);
    let child = read_pid(&child_pid);
    d.wait_log("on_change failed", 1);
    assert!(d.log().contains("did not finish within 1s; killed"), "{}", d.log());
    let gone = wait_until(WAIT, || !alive(child));
    kill(child);
    assert!(gone, "the hook's background process outlived it");
}

#[test]
fn a_hook_still_running_at_shutdown_is_killed_with_what_it_started() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    let child_pid = fx.path().join("child.pid");
    fx.write_config(FAST, &[cluster_with_hook(&fx, "vc", &sim.url(), &leaving_hook(&child_pid, "1h"))]);
    let mut d = Daemon::run(&fx);
    let child = read_pid(&child_pid);
    let stopping = Instant::now();
    d.signal(libc::SIGTERM);
    assert!(d.wait_exit().success());
    let gone = wait_until(WAIT, || !alive(child));
    kill(child);
    assert!(gone, "the hook's background process outlived the daemon");
    // Shutdown did not wait out its 10 s grace for the hook.
    assert!(stopping.elapsed() < Duration::from_secs(8), "{:?}", stopping.elapsed());
}

// ---- 5. Local HTTP clients ----

/// The address the daemon serves on, from its log.
fn server_addr(d: &Daemon) -> String {
    d.wait_log("serving /healthz", 1);
    let line = d.log().lines().find(|l| l.contains("serving /healthz")).unwrap().to_owned();
    line.split("listen=").nth(1).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// The status of `GET path`, or `None` if there is no complete answer within 2 s.
fn try_get(addr: &str, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    text.split(' ').nth(1)?.parse().ok()
}

fn server_config(fx: &Fixture, url: &str) {
    let text = format!("[server]\nlisten = \"127.0.0.1:0\"\n[defaults]\n{FAST}{}", fx.cluster("vc", url, ""));
    std::fs::write(&fx.config, text).unwrap();
}

#[test]
fn idle_connections_starve_neither_health_checks_nor_refreshing() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    server_config(&fx, &sim.url());
    // A descriptor limit well below the number of connections: without a cap the daemon ran
    // out, then /healthz went silent and refreshing failed with "Too many open files".
    let d = run_limited(&fx, "-n 256");
    let addr = server_addr(&d);
    d.wait_log("token published", 1);
    // Connections the daemon cannot take stay in the kernel's queue, or time out: keep those
    // that connect.
    let to: std::net::SocketAddr = addr.parse().unwrap();
    let idle: Vec<TcpStream> =
        (0..400).filter_map(|_| TcpStream::connect_timeout(&to, Duration::from_secs(1)).ok()).collect();
    assert!(wait_until(WAIT, || try_get(&addr, "/healthz") == Some(200)), "/healthz never answered");
    d.signal(libc::SIGUSR1);
    d.wait_log("token published", 2);
    assert!(!d.log().contains("Too many open files"), "{}", d.log());
    // The daemon holds at most the cap of connections, plus its own few descriptors.
    let fds = std::fs::read_dir(format!("/proc/{}/fd", d.pid())).unwrap().count();
    assert!(fds <= 64 + 32, "{fds} descriptors open");
    assert_eq!(try_get(&addr, "/healthz"), Some(200));
    drop(idle);
}

#[test]
fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    server_config(&fx, &sim.url());
    let d = Daemon::run(&fx);
    let addr = server_addr(&d);
    let mut slow = TcpStream::connect(&addr).unwrap();
    slow.set_read_timeout(Some(WAIT)).unwrap();
    write!(slow, "GET /healthz HTTP/1.1\r\nHost: x\r\n").unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    // EOF (perhaps after a 408) well before WAIT; an error here means it was still open.
    slow.read_to_end(&mut rest).expect("the server closes the connection");
    assert!(started.elapsed() < Duration::from_secs(15), "{:?}", started.elapsed());
    // An idle kept-alive connection is closed the same way.
    let mut idle = TcpStream::connect(&addr).unwrap();
    idle.set_read_timeout(Some(WAIT)).unwrap();
    write!(idle, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut text = Vec::new();
    idle.read_to_end(&mut text).expect("the server closes the idle connection");
    assert!(String::from_utf8_lossy(&text).starts_with("HTTP/1.1 200"));
}

// ---- 6. SIGUSR1 ----

#[test]
fn a_sigusr1_flood_costs_one_token_per_cluster_per_ten_seconds() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let d = Daemon::run(&fx);
    d.wait_log("token published", 1);
    // One signal every 10 ms for 3 s.
    let flood = Instant::now();
    wait_until(Duration::from_secs(3), || {
        d.signal(libc::SIGUSR1);
        false
    });
    assert_eq!(sim.acquisitions(), 2, "the first request refreshes, the rest wait\n{}", d.log());
    // The requests inside the gap were deferred to its end, not dropped: exactly one more.
    assert!(wait_until(WAIT, || sim.acquisitions() >= 3), "{}", d.log());
    let third = Instant::now();
    assert!(third - flood >= Duration::from_millis(9_500), "{:?}", third - flood);
    assert_eq!(sim.acquisitions(), 3);
    // After the next gap, one signal refreshes at once again.
    assert!(wait_until(WAIT, || third.elapsed() >= Duration::from_millis(10_500)));
    d.signal(libc::SIGUSR1);
    assert!(wait_until(Duration::from_secs(3), || sim.acquisitions() == 4), "{}", d.log());
    d.wait_log("token published", 4);
}

// ---- 7. The systemd watchdog ----

#[test]
fn watchdog_pings_are_not_postponed_by_other_wake_ups() {
    let sim = SimServer::with_ttl(Duration::from_secs(3600));
    let fx = Fixture::new();
    fx.write_config(FAST, &[fx.cluster("vc", &sim.url(), "")]);
    let (socket, socket_path) = notify_socket(&fx);
    let mut cmd = command(&["-c", fx.config.to_str().unwrap(), "run"]);
    cmd.env("NOTIFY_SOCKET", &socket_path).env("WATCHDOG_USEC", "2000000");
    let d = Daemon::spawn_cmd(cmd);
    let pings: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let seen = pings.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = socket.recv(&mut buf) {
            if String::from_utf8_lossy(&buf[..n]).contains("WATCHDOG=1") {
                seen.lock().unwrap().push(Instant::now());
            }
        }
    });
    let count = || pings.lock().unwrap().len();
    // Wake the loop 0.7 s after each ping (with SIGUSR1), short of the half interval: that
    // wake-up used to push the next ping a whole half interval later (1.7 s after the last).
    for round in 1..=5 {
        assert!(wait_until(WAIT, || count() >= round), "ping {round}\n{}", d.log());
        let last = pings.lock().unwrap()[round - 1];
        wait_until(WAIT, || last.elapsed() >= Duration::from_millis(700));
        d.signal(libc::SIGUSR1);
    }
    assert!(wait_until(WAIT, || count() >= 7), "{}", d.log());
    let pings = pings.lock().unwrap().clone();
    let gaps: Vec<Duration> = pings.windows(2).map(|w| w[1] - w[0]).collect();
    let worst = gaps.iter().max().copied().unwrap_or_default();
    // Half of 2 s, with room for a loaded machine; the old schedule made 1.7 s.
    assert!(worst <= Duration::from_millis(1_200), "gaps {gaps:?}");
}
