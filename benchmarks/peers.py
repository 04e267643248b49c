"""Issue 21's like-for-like scenarios: capview beside Capistrano 3 on the same host, the
same tree, the same link, alternating (capview first on even runs); plus the health phase
with an app that starts in 0.2 s.

Like for like = no restart and no health check in either tool: capview deploys the ``pv``
site with ``service: none`` and no ``health`` (``HostSpec.of(..., service=False)``),
Capistrano its stock ``deploy`` flow (no restart task defined) to ``cp``. capview's whole
deploy with a real ``systemctl --user`` restart and an HTTP health check (site ``pvs``)
is its own row. Every operation starts cold (its own SSH connect, as ``cap`` does), and
the sshd log (LogLevel VERBOSE) gives each one's connections and sessions.

Scenario functions take the running ``Bench`` (benchmarks/run.py) and one RTT.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from typing import TYPE_CHECKING, Any, Callable

from benchmarks import baselines as B
from benchmarks import capview_side as C
from benchmarks.hosts import SLOW_APP_START, latency
from benchmarks.report import ratio_le, value_le

if TYPE_CHECKING:
    from benchmarks.run import Bench

PEER = "Capistrano 3"
# row names the targets table looks up (scenario "peers" unless said)
SSH_TRUE = "ssh host true"
FIRST = "first deploy"
REDEPLOY = "redeploy, 20 files changed"
ROLLBACK = "rollback"
REDEPLOY_VS_SSH = "redeploy vs `ssh host true`"
ROLLBACK_VS_SSH = "rollback vs `ssh host true`"
WHOLE = "capview whole deploy (restart + health)"
SESSIONS = "SSH sessions: "  # + first deploy | redeploy | rollback | ssh host true
CONNS = "SSH connections: "
HEALTH = "health phase, app starts in 0.2 s"  # scenario "health"


def first_label(rate_mbit: float) -> str:
    return FIRST if not rate_mbit else f"{FIRST}, {rate_mbit:g} Mbit/s link"


def counted(h: Any, fn: Callable[[], Any]) -> tuple[Any, int, int]:
    """fn()'s result and the (connections, sessions) the host's sshd logged meanwhile."""
    mark = h.log_mark()
    res = fn()
    conns, sessions = h.sessions_since(mark)
    return res, conns, sessions


class Peers:
    """The peers scenario's state across RTTs: the chain of trees the sites are on."""

    def __init__(self, b: "Bench") -> None:
        self.b = b
        self.k = 0  # tree index of the git head (= what both tools deploy next)
        self.b.git.commit(self.b.trees.get(0), "t000")

    @property
    def h(self) -> Any:
        return self.b.h1

    def env(self, side: str, service: bool, *, direct: bool = False) -> Any:
        spec = C.HostSpec.of(self.h, side, service)
        return C.make_env([spec.direct(self.h) if direct else spec], self.b.trees.get(self.k))

    def cap(self, task: str, url: str, *, direct: bool = False) -> Any:
        h, site = self.h, self.h.sites["cp"]
        return self.b.cap.run(task, host=h, port=h.sshd_port if direct else h.port,
                              repo_url=self.b.git.url() if direct else url, deploy_to=site.path,
                              tmp_dir=str(h.th.base / "cap-tmp"))

    def release(self, env: Any, version: str) -> C.OpResult:
        return self.b.capview_ok("release", self.b.run_async(C.release(env, version, self.b.trees.get(self.k))))

    def advance(self) -> None:
        """Next tree: 20 files changed; committed as the new head of main (not timed)."""
        self.k += 1
        self.b.git.commit(self.b.trees.get(self.k), f"t{self.k:03d}")

    # -- first deploy ----------------------------------------------------------
    def first(self, rtt: int, url: str, rate_mbit: float = 0.0) -> None:
        rep, h = self.b.rep, self.h
        what = first_label(rate_mbit)
        limit = 0.5 if rate_mbit else 0.25
        t = rep.metric("peers", rtt, what, "s", f"≤ {limit}x {PEER}", ratio_le(limit, rtt=rtt), PEER)
        sess = rep.metric("peers", rtt, SESSIONS + what, "count", "(informational)", None, PEER)
        for i in range(self.b.runs):
            for side in self.b.order(i, "capview", "capistrano"):
                if side == "capview":
                    h.sites["pv"].reset()
                    r, _, n = counted(h, lambda: self.release(self.env("pv", False), "p-first"))
                    t.capview.append(r.seconds)
                    sess.capview.append(n)
                else:
                    h.sites["cp"].reset()
                    r, _, n = counted(h, lambda: self.cap("deploy", url))
                    t.baseline.append(r.seconds)
                    sess.baseline.append(n)

    # -- redeploy ----------------------------------------------------------------
    def redeploy(self, rtt: int, url: str) -> None:
        rep, h = self.b.rep, self.h
        t = rep.metric("peers", rtt, REDEPLOY, "s", f"≤ 0.12x {PEER}", ratio_le(0.12, rtt=rtt), PEER)
        whole = rep.metric("peers", rtt, WHOLE, "s", "(its own row)", None)
        sess = rep.metric("peers", rtt, SESSIONS + "redeploy", "count", "≤ 2", value_le(2), PEER)
        conns = rep.metric("peers", rtt, CONNS + "redeploy", "count", "(informational)", None, PEER)
        ssh = rep.metric("peers", rtt, SSH_TRUE, "s", "(the reference)", None)
        ssh_s = rep.metric("peers", rtt, SESSIONS + SSH_TRUE, "count", "1 (checks the count)",
                           lambda c, r: c == 1)
        # set-up, not measured, straight to sshd: a live release on each site
        for side, service in (("pv", False), ("pvs", True)):
            h.sites[side].reset()
            self.release(self.env(side, service, direct=True), f"p{self.k:03d}")
        h.sites["cp"].reset()
        self.cap("deploy", url, direct=True)
        for i in range(self.b.runs + 1):  # run 0 warms up (page cache, the proxy's first use)
            self.advance()
            ver = f"p{self.k:03d}"
            for side in self.b.order(i, "capview", "whole", "capistrano"):
                if side == "capview":
                    r, c, n = counted(h, lambda: self.release(self.env("pv", False), ver))
                    if i:
                        t.capview.append(r.seconds)
                        sess.capview.append(n)
                        conns.capview.append(c)
                elif side == "whole":
                    r = self.release(self.env("pvs", True), ver)
                    if i:
                        whole.capview.append(r.seconds)
                else:
                    r, c, n = counted(h, lambda: self.cap("deploy", url))
                    if i:
                        t.baseline.append(r.seconds)
                        sess.baseline.append(n)
                        conns.baseline.append(c)
            s, _, n = counted(h, lambda: B.ssh_true(h))
            if i:
                ssh.capview.append(s)
                ssh_s.capview.append(n)
        vs = rep.metric("peers", rtt, REDEPLOY_VS_SSH, "s", "≤ 1.4x", ratio_le(1.4, rtt=rtt), SSH_TRUE)
        vs.capview, vs.baseline = list(t.capview), list(ssh.capview)

    # -- rollback ------------------------------------------------------------------
    def rollback(self, rtt: int, url: str) -> None:
        rep, h = self.b.rep, self.h
        t = rep.metric("peers", rtt, ROLLBACK, "s", "(ratio: informational)", None, PEER)
        sess = rep.metric("peers", rtt, SESSIONS + "rollback", "count", "≤ 1", value_le(1), PEER)
        tar = rep.metric("peers", rtt, f"{PEER} rollback: its tar -czf of the rolled-back release",
                         "s", "(part of the rollback row)", None, PEER)
        ssh = rep.metric("peers", rtt, SSH_TRUE, "s", "(the reference)", None)
        newest, older = f"p{self.k:03d}", f"p{self.k - 1:03d}"
        cp = h.sites["cp"]
        for i in range(self.b.runs):
            for side in self.b.order(i, "capview", "capistrano"):
                if side == "capview":
                    to = older if i % 2 == 0 else newest
                    env = self.env("pv", False)
                    r, _, n = counted(h, lambda: self.b.capview_ok(
                        "rollback", self.b.run_async(C.rollback(env, to, warm=False))))
                    t.capview.append(r.seconds)
                    sess.capview.append(n)
                else:
                    if i:  # Capistrano deleted the release it rolled back from: deploy one again
                        self.cap("deploy", url, direct=True)
                    subprocess.run(f"rm -f {shlex.quote(cp.path)}/rolled-back-release-*.tar.gz",
                                   shell=True, check=False)
                    r, _, n = counted(h, lambda: self.cap("deploy:rollback", url))
                    t.baseline.append(r.seconds)
                    sess.baseline.append(n)
                    tar.baseline.append(step_seconds(r.output, "tar -czf"))
        vs = rep.metric("peers", rtt, ROLLBACK_VS_SSH, "s", "≤ 1.2x", ratio_le(1.2, rtt=rtt), SSH_TRUE)
        vs.capview, vs.baseline = list(t.capview), list(ssh.capview)


def step_seconds(output: str, command: str) -> float:
    """From Capistrano's (airbrussh) log: the time of the first step whose command line
    contains ``command`` (``01 tar -czf ...`` then ``✔ 01 user@host 3.000s``)."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*(\d+) (.*)", line)
        if m and command in m.group(2):
            for nxt in lines[i + 1:]:
                done = re.match(rf"\s*\S+ {m.group(1)} \S+ ([\d.]+)s\s*$", nxt)
                if done:
                    return float(done.group(1))
    return 0.0


def peers(b: "Bench", rtt: int) -> None:
    if b.peer_state is None:
        b.peer_state = Peers(b)
    p = b.peer_state
    url = b.git.url(b.lp.extra_ports[0])
    p.first(rtt, url)
    if rtt > 0 and b.args.rate_mbit:
        with latency(b.hosts.hosts[:1], rtt, rate_mbit=b.args.rate_mbit, extra=(b.git.port,)) as capped:
            p.first(rtt, b.git.url(capped.extra_ports[0]), b.args.rate_mbit)
    p.redeploy(rtt, url)
    p.rollback(rtt, url)
    if rtt == b.rtts[0]:
        b.rep.note("peers", f"{b.rep.info.get('capistrano')}: stock `cap bench deploy` / "
                   "`deploy:rollback` with the git SCM; the host clones/fetches a bare repository "
                   "from `git daemon` through its own latency-proxy listener (same delay, same "
                   "cap), then `git archive | tar -x` into the release. capview: `release` / "
                   "`rollback --to` with `service: none` and no health check. Both start cold "
                   "(connect included) and neither restarts anything.")
        b.rep.note("peers", f"{WHOLE}: `release` of the same tree to a site with a "
                   "`systemctl --user` unit (stop, switch, start) and an HTTP health check.")
        b.rep.note("peers", f"{PEER}'s rollback includes its default `deploy:cleanup_rollback`: "
                   "`tar -czf` of the release rolled back from, then `rm -rf` (its own row).")
        b.rep.note("peers", "SSH sessions and connections: counted in the host sshd's log "
                   "(LogLevel VERBOSE: one `Starting session:` per session channel, one "
                   "`Accepted publickey` per connection) around each operation.")


# ---------------------------------------------------------------------- health
def health(b: "Bench", rtt: int) -> None:
    """A redeploy of the ``hl`` site: its unit starts an app that answers 0.2 s after its
    process started (Type=exec: ``systemctl start`` returns at once), so the health phase
    is what finds out. capview's default health settings (only ``url``)."""
    rep, h = b.rep, b.h1
    site = h.sites["hl"]
    ph = rep.metric("health", rtt, HEALTH, "s", "≤ 0.35 s", value_le(0.35))
    sw = rep.metric("health", rtt, "switch phase (stop, swap, start)", "s", "(informational)", None)
    whole = rep.metric("health", rtt, "whole deploy", "s", "(informational)", None)
    app = rep.metric("health", rtt, "app start, measured on the host (restart → first answer)", "s",
                     f"{SLOW_APP_START} s by construction", None)
    spec = C.HostSpec.of(h, "hl", True)

    def env(direct: bool = False) -> Any:
        return C.make_env([spec.direct(h) if direct else spec], b.trees.get(b.hk), health_interval=None)

    site.reset()
    b.capview_ok("release", b.run_async(C.release(env(direct=True), f"h{b.hk:03d}", b.trees.get(b.hk))))
    for _ in range(b.runs):
        b.hk += 1
        r = b.capview_ok("release", b.run_async(C.release(env(), f"h{b.hk:03d}", b.trees.get(b.hk))))
        ph.capview.append(r.phases.get("health", 0.0))
        sw.capview.append(r.phases.get("switch", 0.0))
        whole.capview.append(r.seconds)
    for _ in range(3):
        app.capview.append(app_start(h, site))
    if rtt == b.rtts[0]:
        rep.note("health", "capview `release` (cold) to a site whose `systemd --user` unit (Type=exec) "
                 f"runs an app that answers {SLOW_APP_START} s after its process started; health: "
                 "`{url: ...}` only, i.e. capview's defaults (interval "
                 f"{_default_interval():g} s, timeout 30 s). The health phase is the client's "
                 "`PhaseFinished(health)` duration.")


def _default_interval() -> float:
    from capview.config import HealthConfig

    return HealthConfig(url="http://x/").interval


def app_start(h: Any, site: Any) -> float:
    """On the host, in one ssh session: restart the unit, poll its URL every 10 ms; the
    seconds from the restart to the first answer."""
    _, cp = B.timed([*h.ssh_base(), B.XDG +
                     f"s=$(date +%s.%N); systemctl --user restart {shlex.quote(site.unit)}; "
                     f"until curl -fs -o /dev/null {site.health_url}; do sleep 0.01; done; "
                     "e=$(date +%s.%N); echo \"$s $e\""])
    s, e = cp.stdout.split()
    return float(e) - float(s)
