"""The gateways a conformance run talks to: the real Apache Knox, or the project's simulator.

Both expose the same topologies (see TOPOLOGIES) on 127.0.0.1 over HTTPS with a self-signed
identity, the same users, and a Bearer topology that plays a consumer of the issued tokens.
Scenarios only see the `Target` interface: URLs, the CA file, passwords, restart.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

# Every scenario has a user of its own, so Knox's per-user token limit of one scenario never
# touches another. Everyone but bob may renew (knox.token.renewer.whitelist).
USERS = [
    "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
    "ken", "leo", "mia", "nick", "olga", "pam", "quinn", "rita", "sam", "sue",
    "tina", "uma", "vic", "wendy",
]
NOT_RENEWERS = {"bob"}
TOKEN_LIMIT = 4  # gateway.knox.token.limit.per.user: small, so leaks show


def password(user: str) -> str:
    return f"{user}-password"


@dataclass(frozen=True)
class Topology:
    """One KNOXTOKEN topology: knox.token.ttl, renew interval, max lifetime (all ms)."""

    ttl_ms: int
    renew_ms: int
    max_lifetime_ms: int
    limit_action: str = "RETURN_ERROR"


TOPOLOGIES = {
    # Ordinary tokens: 5 min, renewal to now + 2 min, at most 15 min.
    "token": Topology(300_000, 120_000, 900_000),
    # Short tokens, for renewal and rotation: 15 s, renewed to now + 15 s, 1 h at most.
    "fast": Topology(15_000, 15_000, 3_600_000),
    # Slower renewal for restarts: 60 s tokens renewed to now + 60 s, so a slow gateway
    # restart (tens of seconds on a loaded machine) does not outlive the token.
    "steady": Topology(60_000, 60_000, 3_600_000),
    # Rotation without SIGUSR1 (the keeper spaces requested refreshes 10 s apart): 4 s tokens,
    # replaced at half-life.
    "rapid": Topology(4_000, 4_000, 3_600_000),
    # Renewal refused soon: Knox refuses once now + 30 s + 5 s reaches issue + 50 s.
    "brief": Topology(10_000, 5_000, 50_000),
    # The per-user limit evicts the oldest token instead of refusing (Knox 2.0+); rapid too.
    "evict": Topology(4_000, 4_000, 3_600_000, "REMOVE_OLDEST"),
    # REMOVE_OLDEST with tokens that outlive the scenario, so only the eviction guard replaces
    # the keeper's token after another client's acquisitions evict it (Knox 2.0+).
    "evict_long": Topology(300_000, 300_000, 3_600_000, "REMOVE_OLDEST"),
}
BEARER = "bearer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(url: str, ca_file: Path, *, method: str = "GET", user: str | None = None,
         bearer: str | None = None, body: bytes | None = None, xsrf: bool = False,
         timeout: float = 10.0) -> tuple[int, bytes]:
    """One HTTPS request; returns (status, body) for any status."""
    req = urllib.request.Request(url, data=body, method=method)
    if user:
        import base64
        cred = base64.b64encode(f"{user}:{password(user)}".encode()).decode()
        req.add_header("Authorization", f"Basic {cred}")
    if bearer:
        req.add_header("Authorization", f"Bearer {bearer}")
    if xsrf:
        req.add_header("X-XSRF-Header", "interop")
    ctx = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def self_signed(dir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (IP SAN, as rustls requires) and its key.
    CA:FALSE like keytool's: rustls refuses a CA certificate as a server's own."""
    cert, key = dir / "identity.pem", dir / "identity-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-subj", "/CN=127.0.0.1/O=token-keeper interop", "-addext",
         "subjectAltName=IP:127.0.0.1,DNS:localhost", "-addext", "basicConstraints=critical,CA:FALSE", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True)
    return cert, key


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class Target:
    """What scenarios need of a gateway."""

    name: str
    knox_version: str  # the release line the target behaves as, e.g. "2.0.0"
    ca_file: Path
    base: str  # https://127.0.0.1:PORT/gateway

    def token_url(self, topology: str, api: str = "v1") -> str:
        return f"{self.base_for(topology)}/{topology}/knoxtoken/api/{api}/token"

    def bearer_url(self, topology: str) -> str:
        return f"{self.base_for(topology)}/{BEARER}/v1/ping"

    def base_for(self, topology: str) -> str:
        return self.base

    @property
    def has_v2(self) -> bool:
        return tuple(int(x) for x in self.knox_version.split(".")[:2]) >= (2, 1)

    def start(self) -> None: ...
    def stop(self) -> None: ...
    def restart(self) -> None: ...
    def figures(self) -> dict: return {}


class Knox(Target):
    """The real gateway: Maven resolves it, we lay out a home under target/ and run its main."""

    JAVA_OPTS = [
        "-Xms128m", "-Xmx768m",
        # What Knox's own scripts add on JDK 17 (reflection into the JDK's X.509 classes).
        "--add-exports", "java.base/sun.security.x509=ALL-UNNAMED",
        "--add-exports", "java.base/sun.security.pkcs=ALL-UNNAMED",
        "--add-exports", "java.naming/com.sun.jndi.ldap=ALL-UNNAMED",
        "--add-opens", "java.base/sun.security.util=ALL-UNNAMED",
        "--add-exports", "java.base/jdk.internal.misc=ALL-UNNAMED",
        "--add-opens", "java.base/java.lang=ALL-UNNAMED",
        "--add-exports", "java.base/sun.net.util=ALL-UNNAMED",
        "--add-exports", "java.base/sun.net.dns=ALL-UNNAMED",
    ]
    TSS = "org.apache.knox.gateway.services.token.impl.AliasBasedTokenStateService"

    def __init__(self, version: str, work: Path, log) -> None:
        self.name = f"knox-{version}"
        self.knox_version = version
        self.home = work / "home"
        self.log = log
        self.java = os.environ.get("KNOX_JAVA", "java")
        self.proc: subprocess.Popen | None = None
        self.master = secrets.token_hex(16)
        self.port = free_port()
        self.base = f"https://127.0.0.1:{self.port}/gateway"
        self.ca_file = self.home / "gateway-identity.pem"
        self.timings: dict[str, float] = {}
        self.rss: list[float] = []

    # -- setup -------------------------------------------------------------------------------
    def resolve(self) -> str:
        """The runtime classpath, resolved from Maven Central into ~/.m2 (cached there)."""
        out = self.home.parent / "classpath.txt"
        t0 = time.monotonic()
        cmd = ["mvn", "-B", "-q", "-f", str(HERE / "pom.xml"), f"-Dknox.version={self.knox_version}",
               "org.apache.maven.plugins:maven-dependency-plugin:3.6.1:build-classpath",
               "-Dmdep.includeScope=runtime", f"-Dmdep.outputFile={out}"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        self.timings["resolve_s"] = round(time.monotonic() - t0, 1)
        if r.returncode != 0:
            raise RuntimeError(
                f"Maven could not resolve Knox {self.knox_version} from Maven Central "
                f"(exit {r.returncode}):\n{(r.stdout + r.stderr)[-3000:]}")
        self.log(f"resolved Knox {self.knox_version}'s classpath in {self.timings['resolve_s']}s")
        return out.read_text().strip()

    def layout(self) -> None:
        import shutil
        if self.home.exists():
            shutil.rmtree(self.home)
        for d in ["conf/topologies", "conf/descriptors", "conf/shared-providers", "data/deployments",
                  "data/security/keystores", "logs", "spi/META-INF/services"]:
            (self.home / d).mkdir(parents=True)
        # The one line that gateway-release.jar would carry: which GatewayServices to load.
        (self.home / "spi/META-INF/services/org.apache.knox.gateway.services.GatewayServices").write_text(
            "org.apache.knox.gateway.services.DefaultGatewayServices\n")
        site = (HERE / "conf/gateway-site.xml").read_text()
        for k, v in {"KNOX_PORT": self.port, "SSL_ENABLED": "true", "TSS_IMPL": self.TSS,
                     "TOKEN_LIMIT": TOKEN_LIMIT}.items():
            site = site.replace(f"@{k}@", str(v))
        (self.home / "conf/gateway-site.xml").write_text(site)
        (self.home / "conf/gateway-log4j2.xml").write_text((HERE / "conf/gateway-log4j2.xml").read_text())
        users = "\n".join(
            f"      <param><name>users.{u}</name><value>{password(u)}</value></param>" for u in USERS)
        renewers = ",".join(u for u in USERS if u not in NOT_RENEWERS)
        template = (HERE / "conf/topologies/token.xml").read_text()
        for name, t in TOPOLOGIES.items():
            xml = template
            for k, v in {"SHIRO_USERS": users, "RENEWERS": renewers, "TTL_MS": t.ttl_ms,
                         "RENEW_INTERVAL_MS": t.renew_ms, "MAX_LIFETIME_MS": t.max_lifetime_ms,
                         "LIMIT_ACTION": t.limit_action, "BEARER_URL": f"{self.base}/{BEARER}"}.items():
                xml = xml.replace(f"@{k}@", str(v))
            (self.home / f"conf/topologies/{name}.xml").write_text(xml)
        (self.home / f"conf/topologies/{BEARER}.xml").write_text(
            (HERE / "conf/topologies/bearer.xml").read_text())

    def identity(self) -> None:
        """Knox 2.0's own self-signed certificate generator fails on JDK 17 (it reflects into
        sun.security.x509 fields that no longer exist), so the identity is made with keytool,
        as an operator with a real certificate would import one."""
        ks = self.home / "data/security/keystores/gateway.jks"
        subprocess.run(
            ["keytool", "-genkeypair", "-alias", "gateway-identity", "-keyalg", "RSA", "-keysize", "2048",
             "-validity", "30", "-dname", "CN=127.0.0.1,OU=token-keeper interop,O=Test",
             "-ext", "SAN=IP:127.0.0.1,DNS:localhost", "-storetype", "PKCS12", "-keystore", str(ks),
             "-storepass", self.master, "-keypass", self.master],
            check=True, capture_output=True)
        pem = subprocess.run(
            ["keytool", "-exportcert", "-rfc", "-alias", "gateway-identity", "-keystore", str(ks),
             "-storepass", self.master], check=True, capture_output=True, text=True).stdout
        self.ca_file.write_text(pem)

    def java_cmd(self, main: str, *args: str) -> list[str]:
        return [self.java, *self.JAVA_OPTS, f"-DGATEWAY_HOME={self.home}",
                f"-Dlog4j.configurationFile={self.home}/conf/gateway-log4j2.xml",
                "-cp", f"{self.home}/spi:{self.classpath}", main, *args]

    def knoxcli(self, *args: str) -> None:
        r = subprocess.run(self.java_cmd("org.apache.knox.gateway.util.KnoxCLI", *args),
                           cwd=self.home, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"KnoxCLI {args[0]} failed (exit {r.returncode}):\n{r.stdout[-2000:]}{r.stderr[-2000:]}")

    def start(self) -> None:
        self.classpath = self.resolve()
        self.layout()
        t0 = time.monotonic()
        self.knoxcli("create-master", "--master", self.master, "--force")
        # Managed tokens are MACed with this alias; without it KNOXTOKEN answers 500.
        self.knoxcli("create-alias", "knox.token.hash.key", "--value", secrets.token_hex(32))
        self.timings["knoxcli_s"] = round(time.monotonic() - t0, 1)
        self.identity()
        self.launch()

    def launch(self) -> None:
        t0 = time.monotonic()
        out = open(self.home / "logs/gateway.out", "a")
        self.proc = subprocess.Popen(self.java_cmd("org.apache.knox.gateway.GatewayServer"),
                                     cwd=self.home, stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        (self.home / "gateway.pid").write_text(f"{self.proc.pid}\n")
        self.wait_ready()
        took = round(time.monotonic() - t0, 1)
        self.timings.setdefault("start_s", took)
        self.timings["last_start_s"] = took
        self.log(f"Knox {self.knox_version} ready at {self.base} in {took}s (pid {self.proc.pid})")

    def wait_ready(self, timeout: float = 180) -> None:
        """Ready = every token topology answers getTssStatus and the Bearer topology says 401."""
        deadline = time.monotonic() + timeout
        pending = list(TOPOLOGIES)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Knox exited with {self.proc.returncode} while starting:\n{self.tail()}")
            try:
                while pending:
                    status, _ = http(f"{self.token_url(pending[0])}/getTssStatus", self.ca_file, user="alice",
                                     timeout=5)
                    if status != 200:
                        break
                    pending.pop(0)
                if not pending and http(self.bearer_url("token"), self.ca_file, timeout=5)[0] == 401:
                    return
            except (OSError, ssl.SSLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Knox not ready after {timeout}s (waiting for {pending or ['bearer']}):\n{self.tail()}")
            time.sleep(0.25)

    def tail(self, n: int = 60) -> str:
        try:
            return "\n".join((self.home / "logs/gateway.out").read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no gateway log)"

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            rss = rss_mib(self.proc.pid)
            if rss:
                self.rss.append(rss)
            self.proc.send_signal(signal.SIGTERM)  # by pid: Knox's shutdown hook runs
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.launch()

    def figures(self) -> dict:
        f = dict(self.timings)
        if self.proc:
            rss = rss_mib(self.proc.pid)
            if rss:
                self.rss.append(rss)
        if self.rss:
            f["rss_mib_max"] = round(max(self.rss), 1)
        f["classpath_jars"] = len(self.classpath.split(":"))
        return f


class Sim(Target):
    """The project's simulator: one `knox-sim` process (crates/knox-sim) per topology, answering
    as Knox 2.0 does, each with the Bearer topology in front of its own tokens."""

    def __init__(self, sim_bin: Path, work: Path, log) -> None:
        self.name = "sim"
        self.knox_version = "2.0.0"
        self.bin = sim_bin
        self.work = work
        self.log = log
        self.procs: dict[str, subprocess.Popen] = {}
        self.bases: dict[str, str] = {}
        self.ports: dict[str, int] = {}
        self.timings: dict[str, float] = {}
        self.base = ""

    def base_for(self, topology: str) -> str:
        return self.bases[topology]

    def bearer_url(self, topology: str) -> str:
        return f"{self.bases[topology]}/{BEARER}/v1/ping"

    def start(self) -> None:
        import shutil
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        self.cert, self.key = self_signed(self.work)
        self.ca_file = self.cert
        t0 = time.monotonic()
        for name in TOPOLOGIES:
            self.launch(name)
        self.timings["start_s"] = round(time.monotonic() - t0, 2)
        self.log(f"simulator ready ({len(TOPOLOGIES)} topologies) in {self.timings['start_s']}s")

    def launch(self, name: str) -> None:
        t = TOPOLOGIES[name]
        port = self.ports.get(name, 0)
        args = [str(self.bin), "--listen", f"127.0.0.1:{port}", "--knox-version", "2.0",
                "--topology", name, "--tls-cert", str(self.cert), "--tls-key", str(self.key),
                "--ttl", f"{t.ttl_ms}ms", "--renew-interval", f"{t.renew_ms}ms",
                "--max-lifetime", f"{t.max_lifetime_ms}ms", "--token-limit", str(TOKEN_LIMIT),
                "--limit-action", t.limit_action, "--eviction-grace", "600s",
                "--state-file", str(self.work / f"{name}.state.json"),
                # conf/topologies/token.xml has no anon rule for the JWKS: it wants credentials.
                "--jwks-auth"]
        for u in USERS:
            args += ["--user", f"{u}:{password(u)}"]
            if u not in NOT_RENEWERS:
                args += ["--renewer", u]
        err = open(self.work / f"{name}.log", "a")
        p = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True)
        line = p.stdout.readline()
        if "listening on" not in line:
            raise RuntimeError(f"simulator for {name} did not start: {line!r} "
                               f"{(self.work / f'{name}.log').read_text()[-2000:]}")
        addr = line.rsplit(" ", 1)[1].strip()
        self.ports[name] = int(addr.rsplit(":", 1)[1])
        self.bases[name] = f"https://{addr}/gateway"
        self.procs[name] = p

    def stop(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
        self.procs.clear()

    def restart(self) -> None:
        self.stop()
        for name in TOPOLOGIES:
            self.launch(name)

    def figures(self) -> dict:
        return dict(self.timings)


def write_report(path: Path, target: str, results: list[dict], figures: dict) -> dict:
    passed = sum(1 for r in results if r["ok"])
    report = {"target": target, "scenarios": results, "passed": passed,
              "failed": len(results) - passed, "figures": figures}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return report
