//! Shared test machinery: the simulator on its own runtime (`knox_sim::blocking::SimServer`,
//! which the bench uses too), a temp directory with a config, the spawned daemon with its
//! captured log, and polling with a timeout (never fixed sleeps as synchronisation).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use knox_sim::SimOptions;

/// The simulator on a runtime of its own, so tests can block freely while it serves.
pub use knox_sim::blocking::SimServer;

/// Generous: these machines are small and noisy.
pub const WAIT: Duration = Duration::from_secs(20);

pub const PASSWORD: &str = "alice-password";

/// This host's clock in epoch milliseconds, as the json output writes `expires_at_ms`.
pub fn now_ms() -> i64 {
    let since =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("the clock is after 1970");
    i64::try_from(since.as_millis()).expect("before the year 292 million")
}

/// Polls `cond` every 10 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A simulator serving HTTPS with the test certificate for 127.0.0.1 (tests/data/tls).
pub fn tls_sim(opts: SimOptions) -> SimServer {
    let cert = std::fs::read(tls_file("server.pem")).unwrap();
    let key = std::fs::read(tls_file("server.key")).unwrap();
    SimServer::start_tls(opts, &cert, &key)
}

/// A file of the test PKI (a CA, a second unrelated CA, and a server certificate for
/// 127.0.0.1 signed by the first).
pub fn tls_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls").join(name)
}

/// A temp directory holding the password file, configs and published outputs.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub password_file: PathBuf,
    pub config: PathBuf,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let password_file = dir.path().join("password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let config = dir.path().join("config.toml");
        Fixture { dir, password_file, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The output file `file` of cluster `name` (see [`Fixture::cluster`]).
    pub fn out(&self, name: &str, file: &str) -> PathBuf {
        self.path().join("out").join(name).join(file)
    }

    /// A `[[cluster]]` block against `url` with all five formats published under
    /// `out/<name>/`, and `extra` keys after `token_url`.
    pub fn cluster(&self, name: &str, url: &str, extra: &str) -> String {
        let d = self.path().join("out").join(name);
        let d = d.display();
        format!(
            r#"
[[cluster]]
name = "{name}"
token_url = "{url}"
{extra}
[cluster.auth]
method = "basic"
user = "alice"
password_file = "{pw}"
[[cluster.output]]
path = "{d}/token"
format = "raw"
[[cluster.output]]
path = "{d}/token.header"
format = "header"
[[cluster.output]]
path = "{d}/token.env"
format = "env"
[[cluster.output]]
path = "{d}/token.sh"
format = "shell"
[[cluster.output]]
path = "{d}/token.json"
format = "json"
"#,
            pw = self.password_file.display()
        )
    }

    /// Writes the config file (atomically, as an editor that saves by rename would).
    pub fn write_config(&self, defaults: &str, clusters: &[String]) {
        let text = format!("[defaults]\n{defaults}\n{}", clusters.concat());
        let tmp = self.path().join(".config.toml.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.config).unwrap();
    }

    /// The raw token currently published for `name`, if any.
    pub fn token(&self, name: &str) -> Option<String> {
        std::fs::read_to_string(self.out(name, "token")).ok()
    }

    /// The published json of `name`, parsed.
    pub fn json(&self, name: &str) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.out(name, "token.json")).ok()?;
        Some(serde_json::from_str(&text).expect("json output parses"))
    }

    /// Runs a one-shot verb with this fixture's config.
    pub fn cmd(&self, args: &[&str]) -> Output {
        let mut all = vec!["-c", self.config.to_str().unwrap()];
        all.extend_from_slice(args);
        command(&all).output().unwrap()
    }
}

/// Defaults that make a short-TTL simulator rotate quickly and predictably.
pub const FAST: &str = "min_remaining = \"1s\"\nrefresh_fraction = 0.5\njitter = 0.0\n";

/// The binary under test, quiet on stdin, with a clean environment for what it reads.
pub fn command(args: &[&str]) -> Command {
    program(Path::new(env!("CARGO_BIN_EXE_token-keeper")), args)
}

/// `bin` (the daemon, or the demo example that embeds it), quiet on stdin, with a clean
/// environment for what the daemon reads.
pub fn program(bin: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .env_remove("TOKEN_KEEPER_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("RUST_LOG")
        .env_remove("TOKEN_KEEPER_SHARED_DIRS");
    cmd
}

/// A spawned daemon whose stderr is collected; killed (and its log printed) on drop.
pub struct Daemon {
    child: Child,
    log: Arc<Mutex<String>>,
    status: Option<ExitStatus>,
}

impl Daemon {
    pub fn spawn(args: &[&str]) -> Daemon {
        Daemon::spawn_cmd(command(args))
    }

    /// Spawns `token-keeper -c <config> run`.
    pub fn run(fx: &Fixture) -> Daemon {
        Daemon::spawn(&["-c", fx.config.to_str().unwrap(), "run"])
    }

    pub fn spawn_cmd(mut cmd: Command) -> Daemon {
        let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let log = collect(child.stderr.take().unwrap());
        Daemon { child, log, status: None }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// How many log lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.log().lines().filter(|l| l.contains(needle)).count()
    }

    /// Waits until `count` log lines contain `needle`; panics with the log otherwise.
    pub fn wait_log(&self, needle: &str, count: usize) {
        if !wait_until(WAIT, || self.count(needle) >= count) {
            panic!("timed out waiting for {count} × {needle:?}; log:\n{}", self.log());
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our live child.
        let rc = unsafe { libc::kill(self.pid(), sig) };
        assert_eq!(rc, 0, "kill({}, {sig})", self.pid());
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let mut status = None;
        let done = wait_until(WAIT, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        assert!(done, "daemon did not exit; log:\n{}", self.log());
        self.status = status;
        status.unwrap()
    }
}

// The test harness shows stderr of failed tests only, and the daemon's log is the most
// useful thing a failure can print.
#[allow(clippy::print_stderr)]
fn print_log(log: &str) {
    eprintln!("--- daemon log ---\n{log}--- end ---");
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            // The test harness shows stderr of failed tests only: the daemon's log is the
            // most useful thing a failure can print.
            print_log(&self.log());
        }
    }
}

/// Asserts that `log` holds none of the JWTs (nor their signatures) or the password.
pub fn assert_no_secrets(log: &str, jwts: &[String]) {
    assert!(!log.contains(PASSWORD), "the password leaked into the log");
    for jwt in jwts {
        let signature = jwt.rsplit('.').next().unwrap();
        assert!(!log.contains(jwt.as_str()), "a JWT leaked into the log");
        assert!(!log.contains(signature), "a JWT signature leaked into the log");
    }
}

/// Decodes a JWT's payload without checking the signature.
pub fn claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let payload = jwt.split('.').nth(1).expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).expect("base64url");
    serde_json::from_slice(&bytes).expect("json claims")
}

/// The repository's root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `.rs` file under `dir`, recursively.
pub fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Collects what `pipe` yields, line by line, on a thread of its own.
pub fn collect(pipe: impl std::io::Read + Send + 'static) -> Arc<Mutex<String>> {
    let text = Arc::new(Mutex::new(String::new()));
    let sink = text.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            let mut s = sink.lock().unwrap();
            s.push_str(&line);
            s.push('\n');
        }
    });
    text
}

/// A datagram socket in `fx`'s directory to pass as `NOTIFY_SOCKET`, reads timing out after
/// [`WAIT`].
pub fn notify_socket(fx: &Fixture) -> (std::os::unix::net::UnixDatagram, PathBuf) {
    let path = fx.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket.set_read_timeout(Some(WAIT)).unwrap();
    (socket, path)
}
