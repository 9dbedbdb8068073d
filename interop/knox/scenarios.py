"""The conformance scenarios. Each drives the real keeper through its user contract against a
`Target` (the real Knox or the simulator) and raises `Failed` when an expectation breaks.

Every scenario uses a user of its own (see targets.USERS), so Knox's per-user token limit
never couples two scenarios.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Callable

from keeper import Failed, Keeper, check, claims, wait_for
from targets import TOKEN_LIMIT, TOPOLOGIES, Target, http


@dataclass
class Ctx:
    target: Target
    binary: Path
    dir: Path

    def keeper(self, user: str, **kw) -> Keeper:
        return Keeper(self.binary, self.target, self.dir, user=user, **kw)


SCENARIOS: list[tuple[str, Callable[[Ctx], str]]] = []


def scenario(fn: Callable[[Ctx], str]) -> Callable[[Ctx], str]:
    SCENARIOS.append((fn.__name__, fn))
    return fn


def approx_now_ms() -> int:
    return int(time.time() * 1000)


def published_ok(k: Keeper, p: dict, topology: str, user: str) -> None:
    """What every fresh publish must satisfy, whatever the scenario."""
    jwt = p["access_token"]
    check(k.raw() == jwt, "the raw output holds the json's access_token")
    check((k.out / "token.header").read_text() == f"Authorization: Bearer {jwt}\n", "header output")
    c = claims(jwt)
    check(c.get("sub") == user, f"JWT sub is {user}, got {c.get('sub')!r}")
    check(c.get("knox.id") == p["token_id"], "token_id equals the knox.id claim")
    check(p["managed"] is True, "Knox says the token is managed")
    ttl = TOPOLOGIES[topology].ttl_ms
    left = p["expires_at_ms"] - approx_now_ms()
    check(0 < left <= ttl + 2000, f"expires within the topology's ttl ({ttl} ms), {left} ms left")
    for name in ("token", "token.header", "token.env", "token.sh", "token.json"):
        mode = os.stat(k.out / name).st_mode & 0o777
        check(mode == 0o600, f"{name} has mode 0600, got {mode:o}")


@scenario
def acquire_basic_v1(ctx: Ctx) -> str:
    k = ctx.keeper("alice")
    r = k.once()
    check(r.returncode == 0, f"once exits 0, got {r.returncode}: {r.stderr[-500:]}")
    p = k.published()
    check(p is not None, "token.json published")
    published_ok(k, p, "token", "alice")
    check(p["jwt_exp"] * 1000 >= p["expires_at_ms"] - 1000, "expires_at is the earlier of expires_in and exp")
    return f"token {p['token_id']} valid {(p['expires_at_ms'] - approx_now_ms()) // 1000}s"


@scenario
def acquire_v2(ctx: Ctx) -> str:
    k = ctx.keeper("carol", api="v2")
    r = k.once("--timeout", "5s")
    if ctx.target.has_v2:
        check(r.returncode == 0, f"once exits 0 on the v2 API, got {r.returncode}: {r.stderr[-500:]}")
        published_ok(k, k.published(), "token", "carol")
        return "v2 acquisition works"
    # Knox before 2.1 has no v2 API: the keeper must say so plainly, and publish nothing.
    check(r.returncode == 1, f"once exits 1 on a Knox without v2, got {r.returncode}")
    check("404" in r.stderr and "api/v1/token" in r.stderr,
          f"the error names the 404 and points at the v1 URL: {r.stderr[-400:]}")
    check(k.published() is None, "nothing published")
    return f"Knox {ctx.target.knox_version} answers 404 on v2; the keeper points at the v1 URL"


@scenario
def lifespan_capped(ctx: Ctx) -> str:
    k = ctx.keeper("dave", lifespan="PT2H")
    with k.running():
        p1 = k.wait_generation(1)
        published_ok(k, p1, "token", "dave")  # capped to the topology's 5 min ttl
        k.signal(signal.SIGUSR1)
        p2 = k.wait_generation(2)
        check(p2["token_id"] != p1["token_id"], "SIGUSR1 brought a new token")
        warned = k.messages("caps the requested lifespan")
        check(len(warned) == 1, f"the cap is said once over two tokens, said {len(warned)} times")
    return f"PT2H capped to {(p1['expires_at_ms'] - approx_now_ms()) // 1000 + 1}s, said once"


@scenario
def bearer_accepted(ctx: Ctx) -> str:
    k = ctx.keeper("erin")
    check(k.once().returncode == 0, "once exits 0")
    url, ca = ctx.target.bearer_url("token"), str(ctx.target.ca_file)
    curl = ["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca]
    ways = {
        "curl -H @token.header": curl + ["-H", f"@{k.out / 'token.header'}", url],
        "source token.sh": ["bash", "-c", f'source "$1" && {" ".join(curl)} -H "Authorization: Bearer $CDE_TOKEN" "$2"',
                            "_", str(k.out / "token.sh"), url],
        "token.env as an env file": ["bash", "-c", f'set -a && . "$1" && {" ".join(curl)} -H "Authorization: Bearer $CDE_TOKEN" "$2"',
                                     "_", str(k.out / "token.env"), url],
        "token-keeper exec": [str(ctx.binary), "-c", str(k.config), "exec", "--", "bash", "-c",
                              f'{" ".join(curl)} -H "Authorization: Bearer $CDE_TOKEN" "$0"', url],
        "token --format header | curl -H @-": ["bash", "-c",
                                              f'"$1" -c "$2" token --format header | {" ".join(curl)} -H @- "$3"',
                                              "_", str(ctx.binary), str(k.config), url],
    }
    for way, cmd in ways.items():
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        check(r.stdout.strip().endswith("200"), f"{way}: the Bearer topology answered {r.stdout!r} {r.stderr[-300:]}")
    check(k.bearer("not-a-token") == 401, "a bad token gets 401")
    return f"{len(ways)} consumer ways, each 200"


@scenario
def renew_gateway_mode(ctx: Ctx) -> str:
    k = ctx.keeper("frank", topology="fast", consumers_validate="gateway")
    with k.running():
        p1 = k.wait_generation(1)
        jwt, exp_ms = p1["access_token"], p1["jwt_exp"] * 1000
        # Past the JWT's own exp, Knox's server-side expiry (moved by renewal) is what counts.
        wait_for("the JWT's exp to pass", lambda: approx_now_ms() > exp_ms + 3000, 40)
        p = k.published()
        check(p["token_id"] == p1["token_id"], "still the same token: renewed, not re-acquired")
        check(p["jwt_exp"] == p1["jwt_exp"], "renewal leaves the JWT's exp alone")
        check(p["expires_at_ms"] > exp_ms, f"Knox's expiry moved past exp ({p['expires_at_ms']} > {exp_ms})")
        renewed = k.messages("token renewed")
        check(len(renewed) >= 1, "the log says the token was renewed")
        check(k.bearer(jwt) == 200, "the Bearer topology accepts the token past its JWT exp")
    return f"{len(renewed)} renewals; accepted {(approx_now_ms() - exp_ms) // 1000}s past exp"


@scenario
def renew_not_whitelisted(ctx: Ctx) -> str:
    k = ctx.keeper("bob", topology="fast", consumers_validate="gateway")
    with k.running():
        p1 = k.wait_generation(1)
        p3 = k.wait_generation(3, timeout=60)
        check(p3["token_id"] != p1["token_id"], "re-acquired instead of renewed")
        stopped = k.messages("renewal stopped for this cluster")
        check(len(stopped) == 1, f"Knox's refusal is logged once and renewal is not retried ({len(stopped)})")
        check(not k.messages("token renewed"), "nothing was renewed")
        check(k.bearer(p3["access_token"]) == 200, "the re-acquired token works")
    return "code 20 once, then re-acquisition every rotation"


@scenario
def renewal_limit_reacquire(ctx: Ctx) -> str:
    k = ctx.keeper("grace", topology="brief", consumers_validate="gateway")
    with k.running():
        p1 = k.wait_generation(1)
        p2 = wait_for("a re-acquired token after the renewal limit",
                      lambda: (p := k.published()) and p["token_id"] != p1["token_id"] and p, 60)
        check(len(k.messages("token renewed")) >= 1, "renewed before the limit")
        refused = k.messages("renewal refused")
        check(len(refused) >= 1, "the log says renewal was refused")
        check(k.bearer(p2["access_token"]) == 200, "the new token works")
    return f"renewed {len(k.messages('token renewed'))}x, then re-acquired ({refused[0]['message'][:60]})"


@scenario
def revoke_superseded(ctx: Ctx) -> str:
    k = ctx.keeper("heidi", revoke_superseded_after="2s")
    with k.running():
        old = k.wait_generation(1)
        check(k.bearer(old["access_token"]) == 200, "the first token works")
        k.signal(signal.SIGUSR1)
        new = k.wait_generation(2)
        t0 = time.monotonic()
        wait_for("the superseded token to be refused", lambda: k.bearer(old["access_token"]) == 401, 30, 0.5)
        took = time.monotonic() - t0
        check(k.bearer(new["access_token"]) == 200, "its successor still works")
        check(len(k.messages("superseded token revoked")) == 1, "the log says it was revoked")
    return f"old token refused {took:.1f}s after its successor"


@scenario
def revoke_on_exit(ctx: Ctx) -> str:
    k = ctx.keeper("ivan", revoke_on_exit=True)
    k.start()
    p = k.wait_generation(1)
    check(k.bearer(p["access_token"]) == 200, "the token works while the daemon runs")
    code = k.stop()
    check(code == 0, f"the daemon exits 0 on SIGTERM, got {code}")
    check(k.bearer(p["access_token"]) == 401, "after exit the token is refused")
    check(len(k.messages("token revoked at exit")) == 1, "the log says it was revoked")
    return "revoked at SIGTERM"


def list_tokens(k: Keeper) -> list[dict]:
    r = k.verb("tokens", "list", "--json")
    check(r.returncode == 0, f"tokens list --json exits 0, got {r.returncode}: {r.stderr[-300:]}")
    return json.loads(r.stdout)["tokens"]


def rotate(k: Keeper, rounds: int) -> int:
    """Waits for `rounds` rotations of a 4 s topology (the keeper replaces at half-life), checking
    each new token works; returns the most tokens the user held at once."""
    most = 0
    for _ in range(rounds):
        gen = k.published()["generation"]
        p = k.wait_generation(gen + 1, timeout=30)
        # The published token works (read afresh: it may have rotated since `p`).
        wait_for(f"the published token to work after generation {p['generation']}",
                 lambda: k.bearer(k.published()["access_token"]) == 200, 5, 0.1)
        most = max(most, len(list_tokens(k)))
    return most


@scenario
def token_limit(ctx: Ctx) -> str:
    rounds = 3 * TOKEN_LIMIT
    # RETURN_ERROR: the keeper's own rotations never reach the limit.
    a = Keeper(ctx.binary, ctx.target, ctx.dir / "return-error", user="judy", topology="rapid",
               revoke_superseded_after="1s")
    with a.running():
        a.wait_generation(1)
        most_a = rotate(a, rounds)
        check(not a.messages("limit"), "no token-limit error over the rotations")
    # REMOVE_OLDEST: the oldest token is never the published one.
    b = Keeper(ctx.binary, ctx.target, ctx.dir / "remove-oldest", user="ken", topology="evict",
               revoke_superseded_after="1s")
    with b.running():
        b.wait_generation(1)
        most_b = rotate(b, rounds)
    check(most_a < TOKEN_LIMIT and most_b < TOKEN_LIMIT, f"held at most {max(most_a, most_b)} tokens")
    return f"{rounds} rotations each (limit {TOKEN_LIMIT}): at most {most_a} / {most_b} live tokens"


@scenario
def disabled_token_rejected(ctx: Ctx) -> str:
    k = ctx.keeper("leo")
    check(k.once().returncode == 0, "once exits 0")
    p = k.published()
    jwt, tid = p["access_token"], p["token_id"]
    check(k.bearer(jwt) == 200, "enabled: 200")
    r = k.verb("tokens", "disable", tid)
    check(r.returncode == 0, f"tokens disable exits 0, got {r.returncode}: {r.stderr}")
    check(k.bearer(jwt) == 401, "disabled: 401")
    r = k.verb("tokens", "disable", tid)
    check(r.returncode == 5, f"disabling again exits 5 (already in that state), got {r.returncode}: {r.stderr}")
    r = k.verb("tokens", "enable", tid)
    check(r.returncode == 0, f"tokens enable exits 0, got {r.returncode}: {r.stderr}")
    check(k.bearer(jwt) == 200, "enabled again: 200")
    return "disable → 401, enable → 200, disable twice → exit 5"


@scenario
def admin_verbs(ctx: Ctx) -> str:
    k = ctx.keeper("mia")
    check(k.once().returncode == 0, "once exits 0")
    tid = k.published()["token_id"]
    r = k.verb("tokens", "list")
    check(r.returncode == 0 and tid in r.stdout, f"tokens list shows {tid}: {r.returncode} {r.stdout[-300:]}")
    listed = list_tokens(k)
    check([t["tokenId"] for t in listed] == [tid], f"tokens list --json is Knox's list: {listed}")
    # bob is neither the owner nor a whitelisted renewer: Knox refuses his revocation.
    other = Keeper(ctx.binary, ctx.target, ctx.dir / "bob", user="bob")
    r = other.verb("tokens", "revoke", tid)
    check(r.returncode == 4, f"revoking another user's token exits 4 (not authorized), got {r.returncode}: {r.stderr}")
    r = k.verb("tokens", "revoke", tid)
    check(r.returncode == 0, f"tokens revoke exits 0, got {r.returncode}: {r.stderr}")
    check(k.bearer(k.published()["access_token"]) == 401, "the revoked token is refused")
    r = k.verb("tokens", "revoke", tid)
    check(r.returncode == 3, f"revoking it again exits 3 (unknown token), got {r.returncode}: {r.stderr}")
    check("unknown" in r.stderr.lower(), f"and says the token is unknown: {r.stderr}")
    r = k.verb("tokens", "enable", "00000000-0000-0000-0000-000000000000")
    check(r.returncode == 3, f"enabling an unknown id exits 3, got {r.returncode}: {r.stderr}")
    check(list_tokens(k) == [], "the list is empty after the revocation")
    return "list, revoke (owner 0, other user 4, twice 3), enable unknown 3"


@scenario
def tls_ca_file(ctx: Ctx) -> str:
    k = ctx.keeper("nick")
    check(k.once().returncode == 0, "with ca_file: once exits 0")
    k2 = Keeper(ctx.binary, ctx.target, ctx.dir / "no-ca", user="nick", ca=False)
    t0 = time.monotonic()
    r = k2.once("--timeout", "5s")
    took = time.monotonic() - t0
    check(r.returncode == 1, f"without ca_file: once exits 1, got {r.returncode}")
    check("certificate" in r.stderr.lower(), f"the error is about the certificate: {r.stderr[-300:]}")
    check(took < 5, f"a certificate error is not retried as transient ({took:.1f}s)")
    check(k2.published() is None, "nothing published without trust")
    return f"trusted via ca_file; refused without it in {took:.1f}s"


@scenario
def doctor(ctx: Ctx) -> str:
    k = ctx.keeper("olga", consumers_validate="gateway")
    r = k.verb("doctor", "--renew-trial")
    check(r.returncode == 0, f"doctor exits 0 against a healthy Knox, got {r.returncode}:\n{r.stdout}")
    check("✘" not in r.stdout, f"no ✘ row:\n{r.stdout}")
    bad = Keeper(ctx.binary, ctx.target, ctx.dir / "bad-password", user="olga", password_override="wrong")
    r = bad.verb("doctor")
    check(r.returncode == 1, f"a wrong password fails doctor, got {r.returncode}")
    check(any("✘" in line and "credentials" in line for line in r.stdout.splitlines()),
          f"the credentials row fails:\n{r.stdout}")
    bob = Keeper(ctx.binary, ctx.target, ctx.dir / "not-renewer", user="bob", consumers_validate="gateway")
    r = bob.verb("doctor", "--renew-trial")
    check(r.returncode == 1, f"a user outside the renewer whitelist fails doctor, got {r.returncode}")
    check(any("✘" in line and "renew" in line for line in r.stdout.splitlines()), f"the renew row fails:\n{r.stdout}")
    return "healthy: all ✔; wrong password: credentials ✘; not whitelisted: renew ✘"


@scenario
def clock_offset(ctx: Ctx) -> str:
    k = ctx.keeper("pam")
    check(k.once().returncode == 0, "once exits 0")
    p = k.published()
    off = p["knox_clock_offset_ms"]
    # Knox runs on this host: its Date header (1 s resolution) agrees with our clock.
    check(abs(off) <= 1500, f"Knox's clock offset read as {off} ms; same host, so within 1.5 s")
    r = k.verb("status", "--json")
    check(r.returncode == 0, f"status --json exits 0, got {r.returncode}: {r.stderr}")
    return f"offset {off} ms"


@scenario
def restart_keeps_token(ctx: Ctx) -> str:
    k = ctx.keeper("quinn", topology="steady", consumers_validate="gateway")
    with k.running():
        p1 = k.wait_generation(1)
        before = len(list_tokens(k))
        # Knox restarts with its persistent token store; the keeper's token must still renew.
        time.sleep(1)
        ctx.target.restart()
        renewed = wait_for("a renewal after Knox's restart", lambda: k.messages("token renewed"), 60)
        p = k.published()
        check(p["token_id"] == p1["token_id"], "the same token renewed across Knox's restart")
        # Knox 2.0.0's AliasBased token store, just restarted, once answered the Bearer
        # topology "Unknown token" for a token it had renewed 80 ms earlier, and knew it again
        # once its alias persistence ran: Knox's window, not the keeper's, so poll.
        wait_for("the renewed token to be accepted", lambda: k.bearer(p["access_token"]) == 200, 30)
        # The keeper restarts: it takes over its published token instead of minting one.
        check(k.stop() == 0, "the daemon stops cleanly")
        k.start()
        wait_for("the restarted keeper to take over its token",
                 lambda: k.messages("kept the published token"), 30)
        check(k.published()["token_id"] == p1["token_id"], "still the same token")
        check(len(list_tokens(k)) == before, "no extra token minted by the restart")
    return f"renewed after Knox restart ({len(renewed)}x), taken over after keeper restart"


def host_label() -> str:
    """The host name as the keeper reduces it for its labels (config::installation::host_label)."""
    label = re.sub(r"[^A-Za-z0-9._-]", "_", socket.gethostname().strip()[:64])
    return label or "unknown"


def user_tokens(ctx: Ctx, user: str, **query: str) -> list[dict]:
    """Knox's own getUserTokens for `user`, with the user's credentials, as an operator calls it."""
    q = urllib.parse.urlencode({"userName": user, **query})
    status, body = http(f"{ctx.target.token_url('token')}/getUserTokens?{q}", ctx.target.ca_file, user=user)
    check(status == 200, f"getUserTokens?{q} answers 200, got {status}: {body[:300]!r}")
    return json.loads(body)["tokens"]


@scenario
def labels_visible(ctx: Ctx) -> str:
    k = ctx.keeper("rita")
    check(k.once().returncode == 0, "once exits 0")
    tid = k.published()["token_id"]
    r = k.verb("status", "--json")
    ours = json.loads(r.stdout)[0]["installation_id"]
    host = host_label()
    # A second installation of the same user, with an id of its own.
    other = Keeper(ctx.binary, ctx.target, ctx.dir / "other", user="rita", top={"installation_id": "interop-other"})
    check(other.once().returncode == 0, "the other installation's once exits 0")
    other_tid = other.published()["token_id"]

    # Knox's own list, filtered by Knox on md_tk_install (2.0+; older releases ignore md_).
    listed = user_tokens(ctx, "rita", md_tk_install=ours)
    (ctx.dir / "getUserTokens.json").write_text(json.dumps(listed, indent=1) + "\n")
    filters = tuple(int(x) for x in ctx.target.knox_version.split(".")[:2]) >= (2, 0)
    want_ids = [tid] if filters else sorted([tid, other_tid])
    check(sorted(t["tokenId"] for t in listed) == want_ids,
          f"getUserTokens?md_tk_install={ours} lists {want_ids}: {[t['tokenId'] for t in listed]}")
    entry = next(t for t in listed if t["tokenId"] == tid)
    meta = entry["metadata"]
    comment = f"token-keeper {ours} on {host} for c"
    check(meta.get("comment") == comment, f"Knox kept the comment {comment!r}: {meta}")
    labels = {"tk_install": ours, "tk_host": host, "tk_cluster": "c", "tk_generation": "1"}
    if filters:
        check(meta.get("customMetadataMap") == labels, f"Knox kept the md_ labels {labels}: {meta}")
    everyone = {t["tokenId"] for t in user_tokens(ctx, "rita")}
    check({tid, other_tid} <= everyone, f"unfiltered, both installations' tokens: {everyone}")

    # The keeper finds its own token among the user's, and only it.
    r = k.verb("tokens", "list", "--mine")
    check(r.returncode == 0, f"tokens list --mine exits 0, got {r.returncode}: {r.stderr[-300:]}")
    check(tid in r.stdout and other_tid not in r.stdout,
          f"tokens list --mine shows {tid} and not {other_tid}: {r.stdout[-500:]}")
    r = k.verb("tokens", "list")
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:] if line.strip()}
    check(" yes " in rows.get(tid, "") and " no " in rows.get(other_tid, ""),
          f"tokens list marks whose token is whose: {r.stdout[-500:]}")
    r = k.verb("tokens", "list", "--mine", "--json")
    mine = [t["tokenId"] for t in json.loads(r.stdout)["tokens"]]
    check(mine == [tid], f"tokens list --mine --json is Knox's list of ours: {mine}")
    shown = {"comment": meta.get("comment"), "customMetadataMap": meta.get("customMetadataMap")}
    return f"Knox {ctx.target.knox_version} kept {json.dumps(shown)}; --mine lists 1 of {len(everyone)}"


def listed(ctx: Ctx, user: str, topology: str) -> dict[str, bool]:
    """Knox's getUserTokens for `user` through `topology`: token id → enabled."""
    q = urllib.parse.urlencode({"userName": user})
    status, body = http(f"{ctx.target.token_url(topology)}/getUserTokens?{q}", ctx.target.ca_file, user=user)
    check(status == 200, f"getUserTokens through {topology} answers 200, got {status}: {body[:300]!r}")
    return {t["tokenId"]: t.get("metadata", {}).get("enabled", True) in (True, "true")
            for t in json.loads(body)["tokens"]}


def knox_at_least(ctx: Ctx, major: int, minor: int) -> bool:
    return tuple(int(x) for x in ctx.target.knox_version.split(".")[:2]) >= (major, minor)


@scenario
def eviction_guard(ctx: Ctx) -> str:
    user, topology, interval = "tina", "evict_long", 30
    textfile = ctx.dir / "metrics.prom"
    k = ctx.keeper(user, topology=topology, revoke_superseded_after="1s",
                   top={"eviction_check_interval": f"{interval}s", "server": {"metrics_textfile": str(textfile)}})
    with k.running():
        p1 = k.wait_generation(1)
        old = p1["token_id"]
        check(listed(ctx, user, topology).get(old) is True, f"Knox lists {old} enabled")
        if knox_at_least(ctx, 2, 0):
            # Another client of the same user (plain HTTP, the user's Basic credentials) mints
            # until REMOVE_OLDEST evicts the keeper's token.
            how, minted = "REMOVE_OLDEST evicted it", 0
            while old in listed(ctx, user, topology):
                check(minted < 2 * TOKEN_LIMIT, f"Knox should have evicted {old} after {minted} tokens")
                status, body = http(ctx.target.token_url(topology), ctx.target.ca_file, user=user)
                check(status == 200, f"the other client's acquisition answers 200, got {status}: {body[:200]!r}")
                minted += 1
            reason, how = "removed", f"{how} after {minted} tokens of another client"
        else:
            # Knox 1.6 has no REMOVE_OLDEST (it came with 2.0): an administrator's disable instead.
            r = k.verb("tokens", "disable", old)
            check(r.returncode == 0, f"tokens disable exits 0, got {r.returncode}: {r.stderr[-300:]}")
            reason, how = "disabled", "no REMOVE_OLDEST before 2.0: disabled through the API"
        gone_at = time.monotonic()
        check(k.bearer(p1["access_token"]) == 401, f"the {reason} token answers 401 on the Bearer topology")
        p2 = wait_for("a new token after the eviction",
                      lambda: (p := k.published()) and p["token_id"] != old and p, interval + 30)
        took = time.monotonic() - gone_at
        check(took <= interval + 30, f"republished within the interval plus slack: {took:.1f}s")
        new = p2["token_id"]
        check(listed(ctx, user, topology).get(new) is True, f"Knox lists the new token {new} enabled")
        check(k.bearer(p2["access_token"]) == 200, "the Bearer topology accepts the new token")
        said = k.messages("published token revoked on the server, replacing it")
        check(len(said) == 1 and said[0].get("token_id") == old and said[0].get("reason") == reason,
              f"one WARN line for {old} with reason={reason}: {said}")
        row = json.loads(k.verb("status", "--json").stdout)[0]
        check((row.get("last_eviction") or {}).get("reason") == reason and row["last_eviction"]["token_id"] == old,
              f"status --json says why: {row.get('last_eviction')}")
        want = 'token_keeper_token_evicted_total{cluster="c"} 1'
        wait_for("the evicted counter", lambda: textfile.exists() and want in textfile.read_text(), 10)
        # From the WARN line to the new token's publish, by the log's own timestamps.
        published = [m for m in k.messages("token published") if m.get("token_id") == new]
        check(len(published) == 1, f"one publish line for {new}: {published}")
        stamp = lambda m: datetime.fromisoformat(m["timestamp"].replace("Z", "+00:00"))  # noqa: E731
        replace_ms = (stamp(published[0]) - stamp(said[0])).total_seconds() * 1000
    return f"Knox {ctx.target.knox_version}: {how}; republished {took:.1f}s later (interval {interval}s; " \
           f"{replace_ms:.0f} ms from noticing to the new publish), new token enabled and accepted, " \
           f"status and metric say {reason}"


@scenario
def orphan_sweep(ctx: Ctx) -> str:
    user, install = "uma", "interop-sweep"
    # A previous run of this installation leaves a token behind, and its files are deleted.
    before = Keeper(ctx.binary, ctx.target, ctx.dir / "before", user=user, top={"installation_id": install})
    check(before.once().returncode == 0, "the earlier run's once exits 0")
    leftover = before.published()["token_id"]
    for f in before.out.iterdir():
        f.unlink()
    # Another installation's token of the same user, on the same host.
    other = Keeper(ctx.binary, ctx.target, ctx.dir / "other", user=user, top={"installation_id": "interop-other"})
    check(other.once().returncode == 0, "the other installation's once exits 0")
    theirs = other.published()["token_id"]
    check({leftover, theirs} <= set(listed(ctx, user, "token")), "Knox lists both before the sweep")
    if ctx.target.name.startswith("knox-"):
        # Knox's token state is the gateway's: another topology lists the same tokens (the
        # simulator runs one process per topology, each with a store of its own).
        check({leftover, theirs} <= set(listed(ctx, user, "fast")), "another topology lists them too")

    k = Keeper(ctx.binary, ctx.target, ctx.dir / "main", user=user,
               top={"installation_id": install, "eviction_check_interval": "0s"})
    with k.running():
        mine = k.wait_generation(1)["token_id"]
        said = wait_for("the orphan sweep", lambda: k.messages("orphan token revoked"), 60)
    check(len(said) == 1 and said[0].get("token_id") == leftover and said[0].get("cluster") == "c",
          f"one line for the leftover {leftover} of cluster c: {said}")
    now = listed(ctx, user, "token")
    check(leftover not in now, f"the leftover {leftover} is gone from getUserTokens")
    check(theirs in now and mine in now, f"the other installation's {theirs} and the keeper's own {mine} stay")
    by = "tk_install/tk_host metadata" if knox_at_least(ctx, 2, 0) else "the comment (1.6 keeps no md_)"
    return f"Knox {ctx.target.knox_version}: leftover revoked at start, matched by {by}; " \
           f"another installation's token untouched"


@scenario
def revoke_mine(ctx: Ctx) -> str:
    # One installation on two keepers, a daemon and a `once` (whose token comes after the
    # daemon's start-up sweep, and the next sweep is an hour away), and another installation.
    # All of user wendy.
    user, interval = "wendy", 30
    mine = {"installation_id": "interop-mine"}
    other = Keeper(ctx.binary, ctx.target, ctx.dir / "other", user=user, top={"installation_id": "interop-other"})
    check(other.once().returncode == 0, "the other installation's once exits 0")
    a = Keeper(ctx.binary, ctx.target, ctx.dir / "a", user=user, top={**mine, "eviction_check_interval": f"{interval}s"})
    b = Keeper(ctx.binary, ctx.target, ctx.dir / "b", user=user, top=mine)
    with a.running():
        old = a.wait_generation(1)
        check(b.once().returncode == 0, "b's once exits 0")
        ids = {"a": old["token_id"], "b": b.published()["token_id"], "other": other.published()["token_id"]}
        check(set(ids.values()) <= {t["tokenId"] for t in user_tokens(ctx, user)}, f"Knox lists {ids}")

        r = b.verb("tokens", "revoke", "--mine")
        b.append_log("tokens revoke --mine", r)
        check(r.returncode == 0, f"tokens revoke --mine exits 0, got {r.returncode}: {r.stderr[-300:]}")
        check("revoked 2 token(s) of installation interop-mine; 0 already gone, 0 failed" in r.stdout,
              f"it revoked both keepers' tokens: {r.stdout[-500:]}")
        revoked_at = time.monotonic()
        listed_now = {t["tokenId"] for t in user_tokens(ctx, user)}
        check(ids["a"] not in listed_now and ids["b"] not in listed_now,
              f"Knox no longer lists {ids['a']}, {ids['b']}: {listed_now}")
        check(ids["other"] in listed_now, f"the other installation's {ids['other']} is untouched: {listed_now}")
        check(a.bearer(old["access_token"]) == 401, "a revoked token is refused (401)")
        check(other.bearer(other.published()["access_token"]) == 200, "the other installation's still works")

        # The daemon notices within its eviction_check_interval and publishes a fresh token.
        fresh = wait_for("the daemon's fresh token",
                         lambda: (p := a.published()) and p["token_id"] != ids["a"] and p, interval + 30)
        took = time.monotonic() - revoked_at
        check(a.bearer(fresh["access_token"]) == 200, "the fresh token is accepted")
        r = b.verb("tokens", "revoke", "--mine")
        check(r.returncode == 0 and r.stdout.startswith(f"revoked {fresh['token_id']} "),
              f"a second run finds only the daemon's fresh token: {r.stdout}")
    return f"revoked the installation's 2 tokens, kept the other installation's; the daemon published " \
           f"a fresh one {took:.1f}s later (eviction_check_interval {interval}s)"


def jwks_answer(ctx: Ctx, user: str | None) -> tuple[int, bytes]:
    """Knox's JWKS next to the token URL, with the user's credentials (docs/knox.md §8.3)."""
    url = ctx.target.token_url("token").rsplit("/token", 1)[0] + "/jwks.json"
    return http(url, ctx.target.ca_file, user=user)


@scenario
def verify_rejects_foreign_key(ctx: Ctx) -> str:
    k = ctx.keeper("sam")
    r = k.once()
    check(r.returncode == 0, f"once exits 0 with verify = auto, got {r.returncode}: {r.stderr[-500:]}")
    p = k.published()
    how = p.get("verified")
    kid = json.loads(base64url(p["access_token"].split(".")[0])).get("kid")
    # What this release's JWKS answers, for docs/knox.md §8.3.
    status, body = jwks_answer(ctx, "sam")
    (ctx.dir / "jwks.txt").write_bytes(body)
    try:
        doc = json.loads(body)
        jwks = f"{status} JSON, kids {[key.get('kid') for key in doc.get('keys', [])]}"
        check(status != 200 or how == "jwks", f"a JSON JWKS is what verified the token, not {how!r}")
        check(status != 200 or kid in [key.get("kid") for key in doc["keys"]],
              f"the token's kid {kid} is in the JWKS")
    except ValueError:
        jwks = f"{status} not JSON ({body[:40]!r}...)"
        check(how == "endpoint_cert", f"without a JSON JWKS the answer's certificate verified it, not {how!r}")
    check(how in ("jwks", "endpoint_cert"), f"the token was verified, not {how!r}")
    anon = jwks_answer(ctx, None)[0]
    check(anon == 401, f"without credentials the JWKS of a Shiro topology answers 401, got {anon}")
    # The answer's endpoint_public_cert: the key the auto mode falls back to (docs/knox.md §2.2).
    status, body = http(ctx.target.token_url("token"), ctx.target.ca_file, user="sam")
    check(status == 200, f"a direct acquisition answers 200, got {status}")
    answer = json.loads(body)
    cert_kid = cert_thumbprint(answer["endpoint_public_cert"])
    token_kid = json.loads(base64url(answer["access_token"].split(".")[0])).get("kid")
    cert = "the signing key's" if cert_kid == token_kid else f"another key's ({cert_kid})"
    r = k.verb("tokens", "revoke", answer["token_id"])
    check(r.returncode == 0, f"the harness's own token is revoked, got {r.returncode}: {r.stderr[-300:]}")
    if ctx.target.name != "sim":
        # A default gateway signs with its TLS identity, so the cert is the signing key's.
        check(cert_kid == token_kid, f"endpoint_public_cert is the signing key's cert: {cert_kid} != {token_kid}")

    # Pin a key Knox does not sign with: the keeper must refuse Knox's next token.
    foreign = Path(__file__).resolve().parents[2] / "crates/knox-sim/src/foreign_cert.pem"
    k.write_config(public_cert_file=str(foreign))
    with k.running():
        wait_for("the daemon to take over the published token", lambda: k.messages("kept the published token"), 30)
        k.signal(signal.SIGUSR1)
        failed = wait_for("the refused refresh", lambda: k.messages("refresh failed"), 60)
        msg = failed[0]["message"]
        check("failed the kid check" in msg and "not published" in msg, f"the error names the check: {msg}")
        check(k.published()["token_id"] == p["token_id"], "the previously published token stays")
        check(k.raw() == p["access_token"], "the raw output is untouched")
        # The refused tokens were revoked: only the published one is left in Knox's store.
        wait_for("the refused token to be revoked", lambda: k.messages("revoked the refused token"), 30)
        wait_for("only the published token to be left",
                 lambda: [t["tokenId"] for t in list_tokens(k)] == [p["token_id"]], 30, 0.5)
    return f"verified by {how} (JWKS {jwks}, {anon} without credentials; endpoint_public_cert is {cert} cert); pinned foreign key refused: kid check, refused token revoked"


def cert_thumbprint(b64_der: str) -> str:
    """The RFC 7638 thumbprint of a Base64 DER certificate's RSA key, with openssl."""
    import base64
    import hashlib
    der = base64.b64decode(b64_der)
    mod = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-modulus"], input=der,
                         capture_output=True, check=True).stdout.decode().strip().split("=", 1)[1]
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-text"], input=der,
                          capture_output=True, check=True).stdout.decode()
    e = int(re.search(r"Exponent: (\d+)", text).group(1))
    b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
    n = bytes.fromhex(mod)
    e_bytes = e.to_bytes((e.bit_length() + 7) // 8, "big")
    jwk = f'{{"e":"{b64(e_bytes)}","kty":"RSA","n":"{b64(n)}"}}'
    return b64(hashlib.sha256(jwk.encode()).digest())


def base64url(seg: str) -> bytes:
    import base64
    return base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))
