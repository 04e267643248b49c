"""The conventional ways, measured against the same hosts in the same run.

* ``rsync_first``   -- ``rsync -a`` of the tree over OpenSSH into an empty release dir.
* ``rsync_redeploy``-- ``rsync -a --link-dest=../PREV`` (unchanged files hard-linked).
* ``shell_deploy``  -- the seed's steps as one ``ssh`` per step, each a new connection,
                       exactly like a deploy shell script (9 connections, see STEPS).
* ``shell_rollback``-- stop; ``ln -sfn``; start; health: 4 ssh invocations.
* ``shell_releases``-- one ``ssh`` per host (all hosts at once) listing the releases.

Every function returns wall times (seconds) measured around the client processes, plus
what is useful to compare (bytes sent by rsync, per-step times).
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.hosts import BenchHost, Site, timed

XDG = 'XDG_RUNTIME_DIR=/run/user/$(id -u); export XDG_RUNTIME_DIR; '


@dataclass
class RsyncResult:
    seconds: float
    bytes_sent: int  # rsync --stats "Total bytes sent" (protocol + file data)


@dataclass
class ShellDeployResult:
    seconds: float
    ssh_invocations: int
    steps: list[tuple[str, float]] = field(default_factory=list)
    upload_bytes: int = 0  # rsync --stats "Total bytes sent" of the upload step

    def step(self, name: str) -> float:
        return sum(t for n, t in self.steps if n == name)


def _bytes_sent(stats: str) -> int:
    m = re.search(r"Total bytes sent:\s*([\d,.]+)", stats)
    return int(re.sub(r"[,.]", "", m.group(1))) if m else 0


def _rsync_argv(h: BenchHost, src: Path, dest: str, link_dest: str | None) -> list[str]:
    argv = ["rsync", "-a", "--stats", "-e", h.rsync_rsh()]
    if link_dest:
        argv.append(f"--link-dest={link_dest}")
    return [*argv, f"{src}/", f"{h.th.target}:{dest}/"]


def rsync_first(h: BenchHost, site: Site, src: Path, version: str) -> RsyncResult:
    """First upload: ``rsync -a`` into ``releases/<version>`` (rsync creates the one
    missing directory level itself; releases/ exists)."""
    dest = f"{site.path}/releases/{version}"
    dt, cp = timed(_rsync_argv(h, src, dest, None))
    return RsyncResult(dt, _bytes_sent(cp.stdout))


def rsync_redeploy(h: BenchHost, site: Site, src: Path, version: str, previous: str) -> RsyncResult:
    """Redeploy: ``rsync -a --link-dest=../<previous>`` (relative to the destination)."""
    dest = f"{site.path}/releases/{version}"
    dt, cp = timed(_rsync_argv(h, src, dest, f"../{previous}"))
    return RsyncResult(dt, _bytes_sent(cp.stdout))


def _ssh(h: BenchHost, cmd: str) -> float:
    dt, _ = timed([*h.ssh_base(), cmd])
    return dt


def shell_deploy(h: BenchHost, site: Site, src: Path, version: str, previous: str | None,
                 keep: int = 5) -> ShellDeployResult:
    """The classic deploy script, one ssh (new connection) per step::

        ssh  mkdir -p releases/V
        rsync -a [--link-dest=../PREV] src/ host:releases/V/
        ssh  ln -s ../../shared/.env releases/V/.env
        ssh  ln -s ../../shared/data releases/V/data
        ssh  systemctl --user stop UNIT
        ssh  ln -sfn releases/V current
        ssh  systemctl --user start UNIT
        ssh  curl health (polling until healthy)
        ssh  prune releases beyond KEEP
    """
    dp = shlex.quote(site.path)
    rel = f"{dp}/releases/{shlex.quote(version)}"
    steps: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    steps.append(("mkdir", _ssh(h, f"mkdir -p {rel}")))
    dest = f"{site.path}/releases/{version}"
    dt, cp = timed(_rsync_argv(h, src, dest, f"../{previous}" if previous else None))
    steps.append(("upload", dt))
    steps.append(("link", _ssh(h, f"ln -s ../../shared/.env {rel}/.env")))
    steps.append(("link", _ssh(h, f"ln -s ../../shared/data {rel}/data")))
    steps.append(("stop", _ssh(h, XDG + f"systemctl --user stop {shlex.quote(site.unit)}")))
    steps.append(("switch", _ssh(h, f"ln -sfn releases/{shlex.quote(version)} {dp}/current")))
    steps.append(("start", _ssh(h, XDG + f"systemctl --user start {shlex.quote(site.unit)}")))
    steps.append(("health", _ssh(h, _health_loop(site))))
    steps.append(("prune", _ssh(
        h, f"cd {dp}/releases && ls -1 | sort | head -n -{keep} | xargs -r rm -rf --")))
    total = time.perf_counter() - t0
    return ShellDeployResult(total, len(steps), steps, _bytes_sent(cp.stdout))


def shell_rollback(h: BenchHost, site: Site, to_version: str) -> ShellDeployResult:
    """stop; ln -sfn releases/TO current; start; health -- 4 ssh invocations."""
    dp = shlex.quote(site.path)
    steps: list[tuple[str, float]] = []
    t0 = time.perf_counter()
    steps.append(("stop", _ssh(h, XDG + f"systemctl --user stop {shlex.quote(site.unit)}")))
    steps.append(("switch", _ssh(h, f"ln -sfn releases/{shlex.quote(to_version)} {dp}/current")))
    steps.append(("start", _ssh(h, XDG + f"systemctl --user start {shlex.quote(site.unit)}")))
    steps.append(("health", _ssh(h, _health_loop(site))))
    return ShellDeployResult(time.perf_counter() - t0, len(steps), steps)


def shell_releases(hosts: list[BenchHost], side: str = "sh") -> float:
    """What people do for "which releases are on my hosts": one ssh per host, all at
    once (``for h in ...; do ssh $h ... & done; wait``). Returns the wall time."""
    t0 = time.perf_counter()
    procs = []
    for h in hosts:
        dp = shlex.quote(h.sites[side].path)
        cmd = f"readlink {dp}/current; ls -1 {dp}/releases; du -sh {dp}/releases/* 2>/dev/null | tail -n 5"
        procs.append(subprocess.Popen([*h.ssh_base(), cmd], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, stdin=subprocess.DEVNULL))
    bad = []
    for p in procs:
        _, err = p.communicate(timeout=120)
        if p.returncode not in (0, 1):
            bad.append(err.decode(errors="replace"))
    if bad:
        raise RuntimeError("shell_releases: ssh failed: " + bad[0])
    return time.perf_counter() - t0


def ssh_true(h: BenchHost) -> float:
    """One ``ssh host true``: the cost of a new connection at this RTT."""
    return _ssh(h, "true")


def app_restart(h: BenchHost, site: Site) -> float:
    """The app's own restart cost, measured on the host in one ssh session:
    ``systemctl --user restart`` (which returns once the app answers) timed remotely."""
    _, cp = timed([*h.ssh_base(), XDG +
                   f"s=$(date +%s.%N); systemctl --user restart {shlex.quote(site.unit)}; "
                   "e=$(date +%s.%N); echo \"$s $e\""])
    s, e = cp.stdout.split()
    return float(e) - float(s)


def _health_loop(site: Site) -> str:
    return (f"for i in $(seq 100); do curl -fsS -o /dev/null {site.health_url} && exit 0; "
            "sleep 0.1; done; exit 1")
