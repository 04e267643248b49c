"""Issue 21's scale rows (opt-in: ``--only files200k,releases10k``; they take minutes).

* ``files200k`` -- a 200,000-file tree (benchmarks/tree.py ``make_many_tree``): redeploys
  with 20 files changed (each in a child process, so its peak RSS is measured too), then
  ``releases`` with the usage cache cold over the 5 retained 200,000-file releases, then
  the client's peak RSS scanning the tree (``capview_side scan``), then the floors any
  tool keeping full releases pays: the host's link() of every file into a new tree, timed
  alone, and the client's stat of every file (``find``).
* ``releases10k`` -- 10,000 retained releases on one host, generated on the host directly
  (``make_retained``): two real capview deploys of a small tree, then 9,998 copies of the
  second one's release (files hard-linked, own ``.capview/release.json`` and
  ``manifest.tsv``, its ``history.jsonl`` record), ``current`` on the newest. Then
  ``releases`` cold and warm, and ``prune --keep 5``, which must delete ~9,995 releases
  (checked on disk); the releases are generated again before each run (not timed).

Set-up deploys go straight to sshd; measured operations go through the latency proxy at
the largest RTT of the run. Runs: ``--scale-runs`` (default 3).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmarks import capview_side as C
from benchmarks.childproc import child_rss
from benchmarks.hosts import latency
from benchmarks.report import value_le
from benchmarks.tree import make_many_tree, small_change, tree_stats

if TYPE_CHECKING:
    from benchmarks.run import Bench

MANY = 200_000
RETAINED = 10_000
REDEPLOY_200K = "redeploy of a 200,000-file release, 20 files changed"
RSS_200K_REDEPLOY = "client peak RSS, 200,000-file redeploy"
RELEASES_COLD_200K = "`releases` cold, 5 x 200,000 files"
RELEASES_WARM_200K = "`releases` warm, 5 x 200,000 files"
RSS_SCAN = "client peak RSS, 200,000-file scan"
LINK_FLOOR_200K = "floor: hard-link 200,000 files on the host (parallel cp -l, dirs made)"
LINK_CPU_200K = "floor: CPU time of those links (user + system, all cp processes)"
STAT_FLOOR_200K = "floor: stat 200,000 files on the client (find -printf)"
RELEASES_10K_COLD = "`releases` cold, 10,000 retained releases"
RELEASES_10K_WARM = "`releases` warm, 10,000 retained releases"
PRUNE_10K = "`prune --keep 5`, 10,000 retained releases"


class ManyTrees:
    """M0 = make_many_tree(); M(k) = M(k-1) (hard-link copy) with 20 files rewritten."""

    def __init__(self, root: Path, files: int) -> None:
        self.root, self.files = root, files

    def get(self, k: int) -> Path:
        p, done = self.root / f"m{k:03d}", self.root / f"m{k:03d}.done"
        if p.exists() and done.exists():
            return p
        shutil.rmtree(p, ignore_errors=True)
        self.root.mkdir(parents=True, exist_ok=True)
        if k == 0:
            make_many_tree(p, self.files)
        else:
            subprocess.run(["cp", "-al", str(self.get(k - 1)), str(p)], check=True)
            small_change(p, n=20, seed=500 + k)
        done.touch()  # beside the tree, not in it: a tree cut short is made again
        return p

    def work(self, k: int) -> Path:
        """One working copy brought to M(k) in place (the same 20-file changes, by rename),
        as a build directory is: what a developer redeploys from, and what capview's local
        scan cache is for (a hard-link copy per version would change every inode's ctime,
        so nothing in it could be trusted from the cache)."""
        w, state = self.root / "mwork", self.root / "mwork.state"
        at = int(state.read_text()) if w.exists() and state.exists() else -1
        if at > k or at < 0:
            shutil.rmtree(w, ignore_errors=True)
            state.unlink(missing_ok=True)
            subprocess.run(["cp", "-al", str(self.get(0)), str(w)], check=True)
            at = 0
        while at < k:
            at += 1
            small_change(w, n=20, seed=500 + at)  # the same change M(at) got
            state.write_text(str(at))
        state.write_text(str(at))
        return w


def _child_release(spec: C.HostSpec, src: Path, version: str) -> tuple[dict, float]:
    arg = {"host": spec.__dict__, "source": str(src), "version": version}
    _, rss, out = child_rss([sys.executable, "-m", "benchmarks.capview_side", "release",
                             "--spec", json.dumps(arg)])
    res = json.loads(out.strip().splitlines()[-1])
    if not res.get("ok"):
        raise RuntimeError(f"capview release {version} failed: {res.get('message')}")
    return res, rss


def files200k(b: "Bench") -> None:
    rep, h, rtt = b.rep, b.h1, b.scale_rtt
    runs = b.args.scale_runs
    site = h.sites["many"]
    trees = ManyTrees(b.work / "many", MANY)
    t0 = time.perf_counter()
    m0 = trees.get(0)
    made = time.perf_counter() - t0
    b.log(f"files200k: {MANY:,}-file tree ready in {made:.0f} s")
    st = tree_stats(m0)
    red = rep.metric("files200k", rtt, REDEPLOY_200K, "s", "≤ 3 s", value_le(3.0))
    rss = rep.metric("files200k", rtt, RSS_200K_REDEPLOY, "MB", "(informational)", None)
    cold = rep.metric("files200k", rtt, RELEASES_COLD_200K, "s", "≤ 2 s", value_le(2.0))
    warm = rep.metric("files200k", rtt, RELEASES_WARM_200K, "s", "(informational)", None)
    scan = rep.metric("files200k", 0, RSS_SCAN, "MB", "≤ 300 MB", value_le(300.0))
    spec = C.HostSpec.of(h, "many", service=False)
    env_direct = C.make_env([spec.direct(h)], m0)
    site.reset()
    # set-up (straight to sshd): the first release, and enough redeploys that the
    # measured ones leave 5 retained releases
    k = 0
    first = b.capview_ok("release", b.run_async(C.release(env_direct, "m000", trees.work(0))))
    rep.note("files200k", f"set-up, not timed: the {st.files:,}-file tree ({st.bytes / 1e6:,.0f} MB) "
             f"written locally in {made:.0f} s (0 if kept from an earlier run with --keep); its first "
             f"deploy straight to sshd took {first.seconds:.1f} s.")
    while k < 4 - runs:
        k += 1
        b.capview_ok("release", b.run_async(C.release(env_direct, f"m{k:03d}", trees.work(k))))
    since = time.time()
    with latency([h], rtt):
        spec = C.HostSpec.of(h, "many", service=False)
        phases: dict[str, list[float]] = {}
        waited: list[float] = []
        for _ in range(runs):
            k += 1
            src = trees.work(k)
            waited.append(_wait_for_refresh(site, since))
            res, peak = _child_release(spec, src, f"m{k:03d}")
            since = time.time()
            red.capview.append(res["seconds"])
            rss.capview.append(peak)
            for ph, secs in (res.get("phases") or {}).items():
                phases.setdefault(ph, []).append(secs)
        env = C.make_env([spec], m0)
        filled: list[float] = []
        for _ in range(runs):
            Path(site.path, ".capview", "usage.cache").unlink(missing_ok=True)
            r = b.capview_ok("status", b.run_async(C.status(env)))
            _expect_releases(r, 5)
            cold.capview.append(r.seconds)
            filled.append(_wait_for_cache(site))
            warm.capview.append(b.capview_ok("status", b.run_async(C.status(env))).seconds)
    link_floor = rep.metric("files200k", 0, LINK_FLOOR_200K, "s", "(informational: a floor)", None)
    link_cpu = rep.metric("files200k", 0, LINK_CPU_200K, "s", "(informational: a floor)", None)
    stat_floor = rep.metric("files200k", 0, STAT_FLOOR_200K, "s", "(informational: a floor)", None)
    for _ in range(runs):
        wall, cpu = _link_floor(site)
        link_floor.capview.append(wall)
        link_cpu.capview.append(cpu)
        stat_floor.capview.append(_stat_floor(trees.work(k)))
    rep.note("files200k", "floors (what any release of 200,000 files as a full tree of hard links costs on this "
             "machine, whatever the tool): the host's link() of every file into a new tree, timed alone "
             "with its directories made first, as the upload script does it (`xargs -P 4 cp -l`; "
             f"{statistics.median(link_floor.capview):.2f} s wall, {statistics.median(link_cpu.capview):.2f} s "
             "of CPU on the 2 cores the client shares); the client's stat of every file to find the 20 "
             f"changed ones, in C ({statistics.median(stat_floor.capview):.2f} s).")
    for _ in range(runs):
        _, peak, out = child_rss([sys.executable, "-m", "benchmarks.capview_side", "scan",
                                  "--source", str(trees.work(k))])
        scan.capview.append(peak)
        res = json.loads(out.strip().splitlines()[-1])
    rep.note("files200k", "where the 200,000-file redeploy's time goes (median per phase, client "
             "clock; the rest is the local scan and connect): " + ", ".join(
                 f"{ph} {statistics.median(v):.1f} s" for ph, v in phases.items()))
    rep.note("files200k", "before each measured redeploy the host is left to finish the previous deploy's "
             "usage refresh (O(all retained files), started after its unlock; untimed, "
             f"{max(waited):.1f} s at most here), as a redeploy minutes after the last finds it.")
    rep.note("files200k", f"redeploys in a child process (`capview_side release`: its own "
             f"timing of the operation, connect included, and its VmHWM); the scan: "
             f"{res['files']:,} files hashed in {res['seconds']:.1f} s. `releases` = "
             "`status` of the host with `.capview/usage.cache` deleted first (cold: it waits 0.4 s "
             "at most for the sums, the releases not summed by then are `usage_pending`) and again once "
             f"the host's job has written the cache (warm; it took {max(filled):.1f} s after the cold "
             "listing, untimed).")


def _link_floor(site: Any) -> tuple[float, float]:
    """(wall, CPU) seconds of hard-linking the live release's files into a fresh tree on
    the host, alone (its directories made first, untimed); the tree goes to the graveyard."""
    time.sleep(2)  # let the last operation's background work on the host finish
    scratch = f"{site.path}/.floor-{time.time_ns()}"
    cur = f"{site.path}/current"
    out = site.host.th.run_as_user(
        f"set -e; cd {cur}/ && mkdir {scratch} && find . -path ./.capview -prune -o -type d -print0 > {scratch}.dirs "
        f"&& find . -path ./.capview -prune -o ! -type d -print0 > {scratch}.files "
        f"&& (cd {scratch} && xargs -0 mkdir -p -- < {scratch}.dirs) && sync && "
        f"TIMEFORMAT='%R %U %S'; {{ time (xargs -0 -P 4 -n 8192 cp -P -l --parents -t {scratch} -- < {scratch}.files); }} 2>&1; "
        f"rm -f {scratch}.dirs {scratch}.files; n=$(find {scratch} -type f | wc -l); echo files $n").stdout
    timing = next(line for line in out.splitlines() if line and line[0].isdigit())
    files = int(out.split("files ")[-1])
    if files < MANY:
        raise RuntimeError(f"link floor: only {files} files linked")
    grave = site.host.th.base / ".graveyard"
    grave.mkdir(exist_ok=True)
    os.rename(scratch, grave / f"floor-{time.time_ns()}")
    real, user, system = (float(x) for x in timing.split())
    return real, user + system


def _stat_floor(src: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(["find", str(src), "-printf", "%s %T@ %C@ %i\n"], stdout=subprocess.DEVNULL, check=True)
    return time.perf_counter() - t0


def _wait_for_refresh(site: Any, since: float, timeout: float = 120.0) -> float:
    """Wait (untimed) until the host's usage cache was written after ``since`` (the last
    deploy's refresh is done, so it does not share the host's CPU with the next one)."""
    t0 = time.perf_counter()
    cache = Path(site.path, ".capview", "usage.cache")
    while time.perf_counter() - t0 < timeout:
        try:
            if cache.stat().st_mtime >= since:
                break
        except OSError:
            pass
        time.sleep(0.1)
    return time.perf_counter() - t0


def _wait_for_cache(site: Any, timeout: float = 300.0) -> float:
    """A cold listing leaves its sums to a job on the host (scripts/usage.py cold_sums):
    wait (untimed) until it has written the usage cache, so "warm" is warm. Seconds waited."""
    t0 = time.perf_counter()
    cache = Path(site.path, ".capview", "usage.cache")
    while not cache.exists() and time.perf_counter() - t0 < timeout:
        time.sleep(0.1)
    return time.perf_counter() - t0


def _expect_releases(r: C.OpResult, n: int) -> None:
    if f", {n} releases" not in r.message:
        raise RuntimeError(f"listing did not return {n} releases: {r.message}")


# --------------------------------------------------------- 10,000 releases
def make_retained(b: "Bench", site: Any, n: int = RETAINED) -> float:
    """``n`` valid retained releases ``g00001``..``g<n>`` on ``site``; returns seconds."""
    t0 = time.perf_counter()
    h = b.h1
    site.reset()
    small = b.work / "small-tree"
    if not small.exists():
        (small / "templates").mkdir(parents=True)
        for i in range(8):
            (small / "templates" / f"t{i}.html").write_text(f"<p>template {i}</p>\n" * 20)
        (small / "app.py").write_text("print('hello')\n")
    spec = C.HostSpec.of(h, "tenk", service=False).direct(h)
    env = C.make_env([spec], small, keep=n + 10)  # no pruning while it is built
    for v in ("g00001", "g00002"):
        b.capview_ok("release", b.run_async(C.release(env, v, small)))
    rel = Path(site.path, "releases")
    tpl = rel / "g00002"
    meta = json.loads((tpl / ".capview" / "release.json").read_text())
    manifest = (tpl / ".capview" / "manifest.tsv").read_bytes()
    pw = pwd.getpwnam(h.user)
    uid, gid = pw.pw_uid, pw.pw_gid
    base_t = meta["deployed_at"] - n * 60.0  # one deploy a minute, the two real ones last
    history = []
    prev = "g00002"
    for i in range(3, n + 1):
        v = f"g{i:05d}"
        at = base_t + i * 60.0
        _copy_release(tpl, rel / v, uid, gid)
        m = dict(meta, version=v, previous=prev, deployed_at=at, started_at=at - 2, finished_at=at,
                 state="live" if i == n else "superseded")
        cv = rel / v / ".capview"
        (cv / "release.json").write_text(json.dumps(m, sort_keys=True, separators=(",", ":")))
        (cv / "manifest.tsv").write_bytes(manifest)
        for f in ("release.json", "manifest.tsv"):
            os.chown(cv / f, uid, gid)
        history.append(json.dumps({"at": at, "downtime": 0.005, "from": prev, "host": h.name,
                                   "op": "release", "operator": C.OPERATOR, "outcome": "ok",
                                   "phases": meta.get("phases", {}), "to": v, "unavailable": 0.02,
                                   "version": v}, sort_keys=True, separators=(",", ":")))
        prev = v
    m2 = dict(meta, state="superseded")
    (tpl / ".capview" / "release.json").write_text(json.dumps(m2, sort_keys=True, separators=(",", ":")))
    with open(Path(site.path, ".capview", "history.jsonl"), "a") as f:
        f.write("\n".join(history) + "\n")
    tmp = Path(site.path, "current.tmp.bench")
    tmp.unlink(missing_ok=True)
    os.symlink(f"releases/g{n:05d}", tmp)
    os.lchown(tmp, uid, gid)
    os.replace(tmp, Path(site.path, "current"))
    Path(site.path, ".capview", "usage.cache").unlink(missing_ok=True)
    return time.perf_counter() - t0


def _copy_release(src: Path, dst: Path, uid: int, gid: int, top: bool = True) -> None:
    """A hard-link copy of a release's payload (directories new, files shared, symlinks
    made again); its ``.capview`` is a new empty directory the caller fills."""
    dst.mkdir()
    os.chown(dst, uid, gid)
    with os.scandir(src) as it:
        for e in it:
            d = dst / e.name
            if top and e.name == ".capview":
                d.mkdir()
                os.chown(d, uid, gid)
            elif e.is_symlink():
                os.symlink(os.readlink(e.path), d)
                os.lchown(d, uid, gid)
            elif e.is_dir():
                _copy_release(Path(e.path), d, uid, gid, top=False)
            else:
                os.link(e.path, d)


def releases10k(b: "Bench") -> None:
    rep, h, rtt = b.rep, b.h1, b.scale_rtt
    runs = b.args.scale_runs
    site = h.sites["tenk"]
    cold = rep.metric("releases10k", rtt, RELEASES_10K_COLD, "s", "≤ 3 s", value_le(3.0))
    warm = rep.metric("releases10k", rtt, RELEASES_10K_WARM, "s", "≤ 3 s", value_le(3.0))
    pr = rep.metric("releases10k", rtt, PRUNE_10K, "s", "≤ 15 s", value_le(15.0))
    deleted = rep.metric("releases10k", rtt, "releases deleted by that prune", "count",
                         f"≥ {RETAINED - 7:,}", lambda c, r: c >= RETAINED - 7)
    gen, filled = [], []
    for i in range(runs):
        gen.append(make_retained(b, site))
        rel = Path(site.path, "releases")
        before = sum(1 for _ in rel.iterdir())
        with latency([h], rtt):
            env = C.make_env([C.HostSpec.of(h, "tenk", service=False)], b.work / "small-tree")
            r = b.capview_ok("status", b.run_async(C.status(env)))
            _expect_releases(r, RETAINED)
            cold.capview.append(r.seconds)
            filled.append(_wait_for_cache(site))
            warm.capview.append(b.capview_ok("status", b.run_async(C.status(env))).seconds)
            r = b.run_async(C.prune(env, keep=5))
            after = sum(1 for p in rel.iterdir() if not p.name.startswith(".trash-"))
            if not r.ok:
                raise RuntimeError(f"capview prune failed on {RETAINED:,} releases after "
                                   f"{r.seconds:.1f} s ({before - after} deleted): {r.message}")
            pr.capview.append(r.seconds)
            deleted.capview.append(before - after)
    rep.note("releases10k", f"{RETAINED:,} releases generated on the host (2 real capview deploys of "
             f"a 9-file tree, then hard-link copies with their own release.json, manifest.tsv and "
             f"history record; `current` on the newest) in {min(gen):.0f}-{max(gen):.0f} s per run, "
             "not timed. `releases` cold = no usage cache (as generated; it waits 0.4 s at most for the "
             "sums, the rest are `usage_pending`), warm = once the host's job has written the cache "
             f"({max(filled):.1f} s after, untimed); `prune --keep 5` must leave only the 5 newest (plus "
             "previous/current); its removal of the trash is waited on 4 s at most, then finishes on the host.")
