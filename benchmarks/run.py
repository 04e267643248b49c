"""The benchmark runner: capview against the conventional tools and Capistrano 3, same
hosts, same run.

    python -m benchmarks.run                    # RTT 0 and 100 ms, 5 runs each
    python -m benchmarks.run --quick            # 1 run each
    python -m benchmarks.run --rtt 100 --runs 3 --only peers,health
    python -m benchmarks.run --only all         # + the scale scenarios (files200k, releases10k)
    python -m benchmarks.run --update --only peers   # re-measure peers, keep the other rows

Prints one markdown table per scenario and issue 21's targets table, and writes
``benchmarks/results/latest.md`` and ``latest.json`` (every sample, the machine, the
load, the commit). Needs root and the testbed (``bash scripts/testbed.sh up`` is run for
you); the peers scenario needs Debian's ``capistrano``. See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from benchmarks import baselines as B
from benchmarks import capview_side as C
from benchmarks import peers as P
from benchmarks import scale as S
from benchmarks.capistrano import CapProject, GitServer, cap_missing, cap_version
from benchmarks.childproc import child_rss
from benchmarks.hosts import REPO, BenchHost, Hosts, latency
from benchmarks.report import KB, MB, Report, fmt, loadavg, machine_info, ratio_le, value_le
from benchmarks.targets import footnotes, targets_table
from benchmarks.tree import make_big_tree, make_tree, small_change, tree_stats

RESULTS = REPO / "benchmarks" / "results"
# table order; the per-RTT ones run inside one proxy per RTT, the others once
SCENARIOS = ("peers", "health", "first", "redeploy", "rollback", "releases", "fanout", "rss",
             "files200k", "releases10k")
PER_RTT = ("peers", "health", "first", "redeploy", "rollback", "fanout", "releases")
DEFAULT = ("peers", "health", "first", "redeploy", "rollback", "releases", "fanout", "rss")
SCALE = ("files200k", "releases10k")  # opt-in: --only files200k,releases10k (or all)



def run_async(coro: Any) -> Any:
    return asyncio.run(coro)


class Trees:
    """T0 = make_tree(seed 1); T(k) = T(k-1) with 20 files rewritten (hard-link copies, so
    each costs only the changed files on local disk)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.changed: dict[int, int] = {}
        self.root.mkdir(parents=True, exist_ok=True)

    def get(self, k: int) -> Path:
        p = self.root / f"t{k:03d}"
        if p.exists() and (k == 0 or k in self.changed):
            return p
        if p.exists():
            shutil.rmtree(p)
        if k == 0:
            make_tree(p, seed=1)
        else:
            prev = self.get(k - 1)
            subprocess.run(["cp", "-al", str(prev), str(p)], check=True)
            self.changed[k] = small_change(p, n=20, seed=100 + k)
        return p



# ------------------------------------------------------------------ scenarios
class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.runs: int = args.runs
        self.rep = Report(SCENARIOS)
        self.work = Path(args.workdir)
        self.trees = Trees(self.work / "trees")
        self.hosts: Hosts | None = None
        self.k = 0  # next tree index for the cap/sh redeploy chain
        self.fan_k = 0
        self.fan_seeded = False
        self.hk = 0  # tree index of the health site's chain
        self.peer_state: P.Peers | None = None
        self.git: GitServer | None = None
        self.cap: CapProject | None = None
        self.lp: Any = None  # the current RTT's proxy (its extra_ports[0]: the git daemon)
        self.rtts: list[int] = []
        self.scale_rtt = 0
        self.missing = C.engine_missing()
        self.rep.titles.update({
            "peers": "capview beside Capistrano 3: same host, tree and link, no restart or health in either",
            "health": "Health phase with an app that starts in 0.2 s",
            "files200k": "200,000-file releases",
            "releases10k": "10,000 retained releases",
            "first": "First deploy upload of the 2,000-file tree",
            "redeploy": "Redeploy with 20 files changed; whole deploy (no build, app healthy after start)",
            "rollback": "Rollback",
            "releases": "`capview releases` on 20 hosts",
            "fanout": "Parallel deploy of the redeploy case to 20 hosts",
            "rss": "Client peak RSS uploading a 500 MB tree",
        })

    def order(self, i: int, *sides: str) -> tuple[str, ...]:
        """Alternation: capview's side(s) first on even runs, the peer first on odd ones."""
        return sides if i % 2 == 0 else tuple(reversed(sides))

    def run_async(self, coro: Any) -> Any:
        return asyncio.run(coro)

    def log(self, msg: str) -> None:
        print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)

    @property
    def h1(self) -> BenchHost:
        assert self.hosts is not None
        return self.hosts.hosts[0]

    def spec(self, h: BenchHost, side: str, service: bool = True) -> C.HostSpec:
        return C.HostSpec.of(h, side, service)

    def capview_ok(self, what: str, res: C.OpResult) -> C.OpResult:
        if not res.ok:
            raise RuntimeError(f"capview {what} failed: {res.message}")
        return res

    # -- first upload ------------------------------------------------------
    def first(self, rtt: int) -> None:
        t0 = self.trees.get(0)
        st = tree_stats(t0)
        self.rep.titles["first"] = (f"First deploy upload of the {st.files:,}-file tree "
                                    f"({st.bytes / 1e6:.1f} MB)")
        up = self.rep.metric("first", rtt, "first upload", "s", "≤ 0.75x rsync -a",
                             ratio_le(0.75, rtt=rtt), "rsync -a")
        cap, sh = self.h1.sites["cap"], self.h1.sites["sh"]
        env = C.make_env([self.spec(self.h1, "cap", service=False)], t0)
        for i in range(self.runs):
            order = ("cap", "sh") if i % 2 == 0 else ("sh", "cap")
            for side in order:
                if side == "cap":
                    cap.reset()
                    if self.missing:
                        continue
                    r = self.capview_ok("release", run_async(C.release(env, "r001", t0)))
                    up.capview.append(r.phases.get("upload", r.seconds))
                else:
                    sh.reset()
                    up.baseline.append(B.rsync_first(self.h1, sh, t0, "r001").seconds)
        if rtt != self.rtts[0]:
            return
        self.rep.note("first", "capview: its `upload` phase (the connection is already open from "
                      "the lock phase); rsync: wall time of the `rsync -a` command, which includes "
                      "opening its ssh connection (cost in the header).")

    # -- redeploy + whole deploy ---------------------------------------------
    def redeploy(self, rtt: int) -> None:
        cap, sh = self.h1.sites["cap"], self.h1.sites["sh"]
        t_up = self.rep.metric("redeploy", rtt, "redeploy: upload", "s", "≤ 0.35x rsync --link-dest",
                               ratio_le(0.35, rtt=rtt), "rsync --link-dest")
        by = self.rep.metric("redeploy", rtt, "redeploy: bytes sent", "B", "≤ changed + 64 KB",
                             None, "rsync")
        disk = self.rep.metric("redeploy", rtt, "redeploy: host disk growth", "B", "≤ changed + 1 MB",
                               None, "rsync --link-dest")
        whole = self.rep.metric("redeploy", rtt, "whole deploy", "s", "≤ 0.3x shell deploy",
                                ratio_le(0.3, rtt=rtt), "ssh per step")
        rts = self.rep.metric("redeploy", rtt, "whole deploy: round trips", "count", "≤ 8 after connect",
                              value_le(8), "ssh connections")
        changed: list[int] = []
        # A fresh start with a release live on both sites (not measured).
        cap.reset()
        sh.reset()
        base = self.trees.get(self.k)
        env = C.make_env([self.spec(self.h1, "cap")], base)
        prev = f"r{self.k:03d}"
        if not self.missing:
            self.capview_ok("release", run_async(C.release(env, prev, base)))
        B.shell_deploy(self.h1, sh, base, prev, None)
        for i in range(self.runs + 1):  # run 0 warms up (first use of this proxy / page cache)
            self.k += 1
            src = self.trees.get(self.k)
            ver = f"r{self.k:03d}"
            order = ("cap", "sh") if i % 2 == 0 else ("sh", "cap")
            for side in order:
                if side == "cap":
                    if self.missing:
                        continue
                    r = self.capview_ok("release", run_async(C.release(env, ver, src)))
                    grow = cap.release_growth(prev, ver)
                    if i:
                        t_up.capview.append(r.phases.get("upload", 0.0))
                        by.capview.append(r.bytes_sent)
                        disk.capview.append(grow)
                        whole.capview.append(r.seconds)
                        rts.capview.append(r.round_trips)
                else:
                    sd = B.shell_deploy(self.h1, sh, src, ver, prev)
                    grow = sh.release_growth(prev, ver)
                    if i:
                        t_up.baseline.append(sd.step("upload"))
                        by.baseline.append(sd.upload_bytes)
                        disk.baseline.append(grow)
                        whole.baseline.append(sd.seconds)
                        rts.baseline.append(sd.ssh_invocations)
            if i:
                changed.append(self.trees.changed[self.k])
            prev = ver
        ch = statistics.median(changed) if changed else 0
        by.check = (lambda c, r, ch=ch: c <= ch + 64 * KB)
        disk.check = (lambda c, r, ch=ch: c <= ch + 1 * MB)
        by.target = f"≤ changed + 64 KB = {fmt(ch + 64 * KB, 'B')}"
        disk.target = f"≤ changed + 1 MB = {fmt(ch + MB, 'B')}"
        if rtt == self.rtts[0]:
            self.rep.note("redeploy", f"changed bytes per redeploy (median): {fmt(ch, 'B')} in 20 files.")
            self.rep.note("redeploy", "whole deploy: capview `release` from a cold start (connect "
                          "included) with a systemd --user service stop/start and an HTTP health "
                          "check; shell deploy: 9 ssh invocations (mkdir, rsync --link-dest, 2x ln -s, "
                          "stop, ln -sfn, start, curl, prune), each a new connection. capview upload: "
                          "its `upload` phase; baseline upload: the rsync step of the shell deploy.")

    # -- rollback ------------------------------------------------------------
    def rollback(self, rtt: int) -> None:
        cap, sh = self.h1.sites["cap"], self.h1.sites["sh"]
        app = [B.app_restart(self.h1, sh) for _ in range(3)]
        app_s = statistics.median(app)
        t = self.rep.metric("rollback", rtt, "rollback (after connect)", "s",
                            f"< 1 s + app start ({app_s:.2f} s)",
                            (lambda c, r, lim=1.0 + app_s, rtt=rtt: c < lim if rtt >= 100 else None),
                            "ssh per step")
        rts = self.rep.metric("rollback", rtt, "rollback: round trips", "count", "≤ 4 after connect",
                              value_le(4), "ssh connections")
        if self.k < 2:
            raise RuntimeError("rollback needs the redeploy scenario first (two releases)")
        newest, older = f"r{self.k:03d}", f"r{self.k - 1:03d}"
        miss = C.engine_missing("capview.engine.rollback") or self.missing
        env = C.make_env([self.spec(self.h1, "cap")], self.trees.get(0))
        for i in range(self.runs):
            to = older if i % 2 == 0 else newest
            if not miss:
                r = self.capview_ok("rollback", run_async(C.rollback(env, to, warm=True)))
                t.capview.append(r.seconds)
                rts.capview.append(r.round_trips)
            sr = B.shell_rollback(self.h1, sh, to)
            t.baseline.append(sr.seconds)
            rts.baseline.append(sr.ssh_invocations)
        if miss and rtt == self.rtts[0]:
            self.rep.note("rollback", f"capview side not run: {miss}")
        if rtt == self.rtts[0]:
            self.rep.note("rollback", "capview: `rollback --to` with its connection already open "
                          "(issue 7 counts round trips after connect); shell: stop, ln -sfn, start, "
                          "curl = 4 ssh connections. App start = `systemctl --user restart` of the "
                          "app, timed on the host.")

    # -- fan-out -------------------------------------------------------------
    def seed_fan(self) -> None:
        """Every host's `fan` site gets a first release (RTT 0, not measured)."""
        if self.fan_seeded or self.missing:
            return
        assert self.hosts is not None
        self.log(f"seeding {len(self.hosts.hosts)} hosts with a first release (not measured)")
        t0 = self.trees.get(0)
        env = C.make_env([self.spec(h, "fan", service=False) for h in self.hosts.hosts], t0)
        self.capview_ok("release", run_async(C.release(env, "f000", t0)))
        self.fan_seeded = True

    def fanout(self, rtt: int) -> None:
        assert self.hosts is not None
        n = len(self.hosts.hosts)
        m = self.rep.metric("fanout", rtt, f"deploy to {n} hosts", "s", "≤ 2x one host",
                            ratio_le(2.0, rtt=rtt), "capview, 1 host")
        if self.missing:
            self.rep.note("fanout", f"not run: {self.missing}")
            return
        specs = [self.spec(h, "fan", service=False) for h in self.hosts.hosts]
        one = C.make_env(specs[:1], self.trees.get(0))
        allh = C.make_env(specs, self.trees.get(0), max_parallel=max(20, n))
        for i in range(self.runs):
            self.fan_k += 1
            src = self.trees.get(self.fan_k)
            r1 = self.capview_ok("release", run_async(C.release(one, f"f{self.fan_k:03d}a", src)))
            self.fan_k += 1
            src = self.trees.get(self.fan_k)
            rn = self.capview_ok("release", run_async(C.release(allh, f"f{self.fan_k:03d}", src)))
            m.baseline.append(r1.seconds)
            m.capview.append(rn.seconds)
        if rtt == self.rtts[0]:
            self.rep.note("fanout", f"capview `release` (strategy parallel, no service) of a 20-file "
                          f"change to {n} hosts at once vs to one of them, cold start each time; "
                          "each host is its own sshd on loopback, all sharing this machine's 2 cores.")

    # -- releases on 20 hosts ------------------------------------------------
    def releases(self, rtt: int) -> None:
        """Warm: the host's usage cache is valid (every deploy and listing leaves it so);
        cold: the cache removed first, so each host sums every release again."""
        assert self.hosts is not None
        n = len(self.hosts.hosts)
        warm = self.rep.metric("releases", rtt, f"releases on {n} hosts", "s", "≤ 1.5 s total",
                               value_le(1.5, min_rtt=100, rtt=rtt), f"{n} x ssh, parallel")
        cold = self.rep.metric("releases", rtt, f"releases on {n} hosts, usage cache cold", "s",
                               "(≤ 1.5 s: informational)", None, f"{n} x ssh, parallel")
        miss = self.missing or C.engine_missing("capview.engine.status")
        specs = [self.spec(h, "fan", service=False) for h in self.hosts.hosts]
        env = C.make_env(specs, self.trees.get(0), max_parallel=max(20, n))
        sites = [h.sites["fan"] for h in self.hosts.hosts]
        for i in range(self.runs):
            if not miss:
                for site in sites:  # as root: the deploy user owns the file, root may remove it
                    Path(site.path, ".capview", "usage.cache").unlink(missing_ok=True)
                cold.capview.append(self.capview_ok("status", run_async(C.status(env))).seconds)
                warm.capview.append(self.capview_ok("status", run_async(C.status(env))).seconds)
            base = B.shell_releases(self.hosts.hosts, "fan")
            warm.baseline.append(base)
            cold.baseline.append(base)
        if rtt == self.rtts[0]:
            self.rep.note("releases", "capview `status` (what `capview releases` shows: releases, "
                          "sizes, current, lock) from a cold start: connects included. Baseline: "
                          "one `ssh host 'readlink current; ls releases; du -sh ...'` per host, all "
                          "started at once. Warm = the hosts' usage cache is valid, which is the normal "
                          "state (each deploy and each listing leaves it valid); cold = the cache was "
                          "deleted first, so every host sums every release again (after a change "
                          "capview did not make).")

    # -- client RSS ----------------------------------------------------------
    def rss(self) -> None:
        big_mb = self.args.big_mb
        m = self.rep.metric("rss", 0, f"peak RSS, {big_mb} MB upload", "MB", "≤ 150 MB",
                            (lambda c, r: c <= 150), "rsync -a client")
        self.rep.titles["rss"] = f"Client peak RSS uploading a {big_mb} MB tree"
        src = self.work / f"big-{big_mb}"
        if not src.exists():
            self.log(f"writing a {big_mb} MB tree")
            make_big_tree(src, big_mb)
        st = tree_stats(src)
        site = self.h1.sites["big"]
        try:
            if not self.missing:
                site.reset()
                spec = {"host": self.spec(self.h1, "big", service=False).__dict__,
                        "source": str(src), "version": "big001"}
                argv = [sys.executable, "-m", "benchmarks.capview_side", "release", "--spec", json.dumps(spec)]
                secs, rss, out = child_rss(argv)
                res = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
                if not res.get("ok"):
                    raise RuntimeError(f"capview big upload failed: {res.get('message') or out[-500:]}")
                m.capview.append(rss)
                self.rep.note("rss", f"capview: {st.bytes / 1e6:,.0f} MB, {st.files:,} files uploaded "
                              f"in {secs:.1f} s at RTT 0 (child process; peak RSS = its VmHWM).")
            site.reset()
            argv = ["rsync", "-a", "-e", self.h1.rsync_rsh(), f"{src}/",
                    f"{self.h1.th.target}:{site.path}/releases/big001/"]
            secs, rss, _ = child_rss(argv)
            m.baseline.append(rss)
            self.rep.note("rss", f"rsync -a of the same tree: {secs:.1f} s.")
        finally:
            site.reset()

    # -- issue 21 (benchmarks/peers.py, benchmarks/scale.py) ---------------------
    def peers(self, rtt: int) -> None:
        P.peers(self, rtt)

    def health(self, rtt: int) -> None:
        P.health(self, rtt)

    def files200k(self) -> None:
        S.files200k(self)

    def releases10k(self) -> None:
        S.releases10k(self)

    # -- driver --------------------------------------------------------------
    def connect_cost(self, rtt: int) -> None:
        xs = sorted(B.ssh_true(self.h1) for _ in range(3))
        self.rep.info.setdefault("ssh_true_seconds", {})[str(rtt)] = xs

    def guarded(self, name: str, fn: Callable, *a: Any) -> None:
        t0 = time.perf_counter()
        load = loadavg()
        self.log(f"{name} {' '.join(map(str, a))} ... (load {load})")
        try:
            fn(*a)
        except Exception as exc:
            self.rep.errors.append(f"{name} {' '.join(f'{x} ms' for x in a)}: {type(exc).__name__}: {exc}")
            traceback.print_exc()
        took = time.perf_counter() - t0
        self.log(f"{name} done in {took:.1f} s")
        self.rep.info.setdefault("scenario_seconds", {})[" ".join([name, *(f"{x} ms" for x in a)])] = {
            "seconds": round(took, 1), "load_at_start": load, "load_at_end": loadavg()}

    def start_peers(self) -> bool:
        miss = cap_missing()
        if miss:
            self.rep.errors.append(f"peers: not run: {miss}")
            return False
        self.rep.info["capistrano"] = cap_version()
        self.git = GitServer(self.work / "git").start()
        self.cap = CapProject(self.work / "cap").write()
        return True

    def run(self) -> Report:
        args = self.args
        self.rtts = args.rtt
        self.scale_rtt = 100 if 100 in self.rtts else max(self.rtts)
        only = set(args.only)
        need_n = args.hosts if only & {"releases", "fanout"} else 1
        self.rep.info.update(machine_info())
        self.rep.info.update({"runs": self.runs, "rtts_ms": self.rtts, "hosts": need_n,
                              "scale_runs": args.scale_runs, "scale_rtt_ms": self.scale_rtt,
                              "rate_mbit": args.rate_mbit if "peers" in only else 0, "only": sorted(only),
                              "command": " ".join(["python -m benchmarks.run", *sys.argv[1:]]),
                              "engine_missing": self.missing})
        if self.missing:
            self.log(f"capview side disabled: {self.missing}")
        self.log(f"starting {need_n} sshd hosts")
        self.hosts = Hosts(need_n)
        try:
            self.trees.get(0)
            if "peers" in only and not self.start_peers():
                only.discard("peers")
            if only & {"releases", "fanout"}:
                self.guarded("seed", self.seed_fan)
            extra = (self.git.port,) if self.git else ()
            for rtt in self.rtts:
                with latency(self.hosts.hosts, rtt, extra=extra) as self.lp:
                    self.connect_cost(rtt)
                    for sc in PER_RTT:
                        if sc in only and not (sc == "rollback" and "redeploy" not in only):
                            self.guarded(sc, getattr(self, sc), rtt)
                self.lp = None
            if "rss" in only:
                self.guarded("rss", self.rss)
            for sc in SCALE:
                if sc in only:
                    self.guarded(sc, getattr(self, sc))
        finally:
            if self.git:
                self.git.stop()
            self.hosts.close()
            if not args.keep:
                shutil.rmtree(self.work, ignore_errors=True)
        return self.rep


def render(rep: Report) -> str:
    i = rep.info
    head = [
        "# capview benchmarks — latest run\n",
        f"* when: {i.get('date')}; commit `{i.get('commit')}`; command: `{i.get('command')}`",
        f"* machine: {i.get('cpu')}, {i.get('cores')} cores, {i.get('memory')} RAM; "
        f"{i.get('os')}, kernel {i.get('kernel')}; load average at start {i.get('load_at_start')}, "
        f"at end {i.get('load_at_end', '?')} (a 2-core machine shared with other work: "
        "per-scenario load and time are listed at the end)",
        f"* tools: {i.get('openssh')}; {i.get('rsync')}; Python {i.get('python')}, asyncssh {i.get('asyncssh')}"
        + (f"; peer: {i['capistrano']}, {i.get('git')}" if i.get("capistrano") else ""),
        f"* hosts: {i.get('hosts')} sshd instances on 127.0.0.1 (user cvdeploy, LogLevel VERBOSE), "
        "latency added by benchmarks/latency_proxy.py (RTT = 2 x one-way; new connections pay the "
        "TCP handshake's RTT)" + (f"; capped rows: {i['rate_mbit']:g} Mbit/s per direction"
                                   if i.get("rate_mbit") else ""),
        f"* medians of {i.get('runs')} run(s) per cell (scale scenarios: {i.get('scale_runs')} at "
        f"{i.get('scale_rtt_ms')} ms; a row with another sample count says n=); targets apply at "
        "100 ms RTT unless they are counts or absolute; '—' in met? = not applicable at that RTT",
    ]
    conn = i.get("ssh_true_seconds") or {}
    if conn:
        head.append("* a new OpenSSH connection (`ssh host true`, median of 3) costs "
                    + ", ".join(f"{sorted(v)[len(v) // 2]:.2f} s at {k} ms" for k, v in conn.items()))
    for u in i.get("updates") or []:
        head.append(f"* updated {u['date']}: `{u['command']}` re-measured {', '.join(u['only'])} "
                    f"(commit `{u['commit']}`, load {u['load_at_start']} → {u['load_at_end']})")
    head.append("")
    if i.get("engine_missing"):
        head.append(f"**capview side not run: {i['engine_missing']}**\n")
    rtt = 100 if 100 in (i.get("rtts_ms") or []) else max(i.get("rtts_ms") or [0])
    table, rows = targets_table(rep, rtt, float(i.get("rate_mbit") or 50))
    i["targets"] = rows
    tail = [f"### Targets (issue 21; {rtt} ms RTT)\n", table, ""] + footnotes(rep, rtt) + [""]
    secs = i.get("scenario_seconds") or {}
    if secs:
        tail.append("### Time and load per scenario\n")
        tail.append("| scenario | took | load average (1, 5, 15 min) at start → end |")
        tail.append("|---|---:|---|")
        tail += [f"| {k} | {v['seconds']:.0f} s | {v['load_at_start']} → {v['load_at_end']} |"
                 for k, v in secs.items()]
        tail.append("")
    return "\n".join(head) + "\n" + rep.tables() + "\n" + "\n".join(tail)



def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM ends a run like Ctrl-C: every ``finally`` stops what it started."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--rtt", default="0,100", help="comma-separated RTTs in ms (default 0,100)")
    ap.add_argument("--runs", type=int, default=None, help="runs per cell (default 5; --quick: 1)")
    ap.add_argument("--quick", action="store_true", help="one run per cell (< 5 min)")
    ap.add_argument("--only", default=",".join(DEFAULT),
                    help=f"scenarios (default {','.join(DEFAULT)}; 'all' adds {','.join(SCALE)})")
    ap.add_argument("--rate-mbit", type=float, default=50.0,
                    help="link cap of the capped first-deploy rows (default 50; 0: skip them)")
    ap.add_argument("--scale-runs", type=int, default=3, help="runs of the scale scenarios (default 3)")
    ap.add_argument("--update", action="store_true",
                    help="keep the rows of OUT.json that --only does not re-measure")
    ap.add_argument("--hosts", type=int, default=20, help="hosts for releases/fanout (default 20)")
    ap.add_argument("--big-mb", type=int, default=500, help="tree size for the RSS scenario (default 500)")
    ap.add_argument("--workdir", default="/tmp/capview-bench", help="local scratch (trees)")
    ap.add_argument("--keep", action="store_true", help="keep the workdir (trees) afterwards")
    ap.add_argument("--out", default=str(RESULTS / "latest"), help="results path without suffix")
    args = ap.parse_args(argv)
    args.rtt = [int(x) for x in args.rtt.split(",") if x.strip()]
    args.only = [x.strip() for x in args.only.split(",") if x.strip()]
    if "all" in args.only:
        args.only = [x for x in args.only if x != "all"] + list(SCENARIOS)
    bad = set(args.only) - set(SCENARIOS)
    if bad:
        ap.error(f"unknown scenario(s): {', '.join(sorted(bad))}")
    if args.runs is None:
        args.runs = 1 if args.quick else 5
    if os.geteuid() != 0:
        ap.error("needs root (starts sshd instances and uses the testbed's users)")
    out = Path(args.out)
    old = None
    if args.update:
        try:
            old = Report.load(json.loads(out.with_suffix(".json").read_text()), SCENARIOS)
        except (OSError, ValueError, KeyError) as exc:
            ap.error(f"--update: cannot read {out.with_suffix('.json')}: {exc}")
    signal.signal(signal.SIGTERM, _interrupt)
    t0 = time.perf_counter()
    bench = Bench(args)
    rep = bench.run()
    elapsed = round(time.perf_counter() - t0, 1)
    if old is not None:  # this run's rows replace the old ones of the same scenarios
        ran = set(args.only)
        old.drop_scenarios(ran)
        old.metrics += rep.metrics
        old.notes.update(rep.notes)
        old.errors += rep.errors
        old.titles.update(rep.titles)
        old.info.setdefault("scenario_seconds", {}).update(rep.info.get("scenario_seconds", {}))
        for k in ("capistrano", "git"):
            old.info.setdefault(k, rep.info.get(k))
        old.info.setdefault("updates", []).append({
            "date": rep.info["date"], "command": rep.info["command"], "only": sorted(ran),
            "commit": rep.info["commit"], "load_at_start": rep.info["load_at_start"],
            "load_at_end": loadavg(), "elapsed_seconds": elapsed})
        rep = old
    else:
        rep.info["elapsed_seconds"] = elapsed
        rep.info["load_at_end"] = loadavg()
    text = render(rep) + f"\n_total benchmark time: {rep.info['elapsed_seconds']} s" + (
        f" (+ updates: {', '.join(str(u['elapsed_seconds']) + ' s' for u in rep.info['updates'])})"
        if rep.info.get("updates") else "") + "_\n"
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(text)
    out.with_suffix(".json").write_text(json.dumps(rep.to_json(), indent=2))
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}", file=sys.stderr)
    return 1 if rep.errors else 0


if __name__ == "__main__":
    sys.exit(main())
