"""The real token-keeper binary, driven only through its user contract: a config file, its
verbs, the files it publishes, its log on stderr and signals."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from targets import Target, password

FORMATS = {"token": "raw", "token.header": "header", "token.env": "env", "token.sh": "shell",
           "token.json": "json"}


class Failed(Exception):
    """A scenario's expectation did not hold."""


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failed(what)


def wait_for(what: str, predicate, timeout: float, interval: float = 0.2):
    """Polls `predicate` until it returns something truthy; fails naming `what` on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise Failed(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def claims(jwt: str) -> dict:
    body = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, dict):  # an inline table, e.g. server = {metrics_textfile = "..."}
        return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(str(v))  # a TOML basic string for everything we write


class Keeper:
    """One scenario's keeper: its own directory, config, password file and outputs."""

    # Every daemon started, so the runner can stop what a failed scenario left running.
    started: list["Keeper"] = []

    def __init__(self, binary: Path, target: Target, dir: Path, *, user: str, topology: str = "token",
                 api: str = "v1", ca: bool = True, password_override: str | None = None,
                 top: dict | None = None, **policy) -> None:
        self.binary, self.target, self.dir, self.user = binary, target, dir, user
        self.out = dir / "out"
        self.out.mkdir(parents=True, exist_ok=True)
        os.chmod(self.out, 0o700)
        self.config = dir / "config.toml"
        self.pw_file = dir / "password"
        self.pw_file.write_text((password_override or password(user)) + "\n")
        os.chmod(self.pw_file, 0o600)
        self.topology = topology
        self.proc: subprocess.Popen | None = None
        self.log_path = dir / "keeper.log"
        self.top = top or {}
        self.write_config(api=api, ca=ca, **policy)

    def write_config(self, *, api: str = "v1", ca: bool = True, **policy) -> None:
        # Top-level keys (installation_id) come before the first table.
        lines = [f"{k} = {toml_value(v)}" for k, v in self.top.items()]
        lines += ["[[cluster]]", 'name = "c"',
                 f"token_url = {toml_value(self.target.token_url(self.topology, api))}"]
        if ca:
            lines.append(f"ca_file = {toml_value(self.target.ca_file)}")
        for k, v in policy.items():
            lines.append(f"{k} = {toml_value(v)}")
        lines += ["[cluster.auth]", 'method = "basic"', f"user = {toml_value(self.user)}",
                  f"password_file = {toml_value(self.pw_file)}"]
        for name, fmt in FORMATS.items():
            lines += ["[[cluster.output]]", f"path = {toml_value(self.out / name)}", f'format = "{fmt}"']
        self.config.write_text("\n".join(lines) + "\n")

    # -- verbs -------------------------------------------------------------------------------
    def verb(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(self.binary), "-c", str(self.config), *args], capture_output=True,
                              text=True, timeout=timeout, stdin=subprocess.DEVNULL)

    def once(self, *extra: str) -> subprocess.CompletedProcess:
        r = self.verb("once", *extra)
        self.append_log("once", r)
        return r

    def append_log(self, what: str, r: subprocess.CompletedProcess) -> None:
        with open(self.dir / "verbs.log", "a") as f:
            f.write(f"$ {what} -> {r.returncode}\n{r.stdout}{r.stderr}\n")

    # -- the daemon --------------------------------------------------------------------------
    def start(self) -> None:
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [str(self.binary), "-c", str(self.config), "--log-format", "json", "run"],
            stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        Keeper.started.append(self)

    @classmethod
    def reap(cls) -> None:
        """Kills every daemon a scenario left running (it failed before stopping it)."""
        for k in cls.started:
            if k.proc and k.proc.poll() is None:
                k.proc.kill()
                k.proc.wait()
        cls.started.clear()

    @contextlib.contextmanager
    def running(self):
        """The daemon for the duration of a `with` block, stopped by SIGTERM at its end (even
        when an expectation inside fails)."""
        self.start()
        try:
            yield self
        finally:
            self.stop()

    def signal(self, sig: int) -> None:
        check(self.proc is not None and self.proc.poll() is None, "the daemon is running")
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 30) -> int:
        if not self.proc:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise Failed(f"the daemon did not stop within {timeout}s of SIGTERM")
        self.proc = None
        return code

    def logs(self) -> list[dict]:
        """The daemon's log lines (json), oldest first."""
        out = []
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return out
        for line in text.splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append({"message": line, "level": "RAW"})
        return out

    def messages(self, needle: str) -> list[dict]:
        return [line for line in self.logs() if needle in str(line.get("message", ""))]

    # -- what consumers see ------------------------------------------------------------------
    def published(self) -> dict | None:
        try:
            return json.loads((self.out / "token.json").read_text())
        except (OSError, ValueError):
            return None

    def wait_generation(self, generation: int, timeout: float = 60) -> dict:
        def reached():
            p = self.published()
            if self.proc is not None and self.proc.poll() is not None:
                raise Failed(f"the daemon exited with {self.proc.returncode}: {self.tail()}")
            return p if p and p["generation"] >= generation else None
        return wait_for(f"generation {generation} to be published", reached, timeout)

    def raw(self) -> str:
        return (self.out / "token").read_text()

    def tail(self, n: int = 15) -> str:
        try:
            return " | ".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "(no log)"

    def bearer(self, jwt: str) -> int:
        """What the Bearer topology answers to this token: 200 or 401."""
        from targets import http
        return http(self.target.bearer_url(self.topology), self.target.ca_file, bearer=jwt)[0]
