"""Fault injection on the real testbed: break a deploy on purpose at every phase, then prove
nothing was lost and nothing is half-switched.

Faults: the SSH connection cut (a TCP proxy in front of sshd, severed), the capview CLI
killed with SIGKILL or interrupted with SIGINT (Ctrl-C), the disk filling up during the
upload, a failing build, a service that does not start, a health check that fails or hangs,
two deploys (and a deploy and a prune) started at the same moment from two processes.

When a phase's fault fires: on ``PhaseStarted(phase)`` the test waits for evidence on the
host that the phase's remote script is running (the lock dir holds our owner.json, the
release dir exists, ``.capview/incoming`` exists while a 16 MB upload streams, the shared
links exist, build.log exists, ``current`` has just flipped -- i.e. the service is stopped
and not yet restarted), then strikes. Health and cleanup have no on-disk evidence; they are
struck a few ms after the phase starts.

After every fault (``after_fault``):
* ``current`` is a relative link to a complete release: every manifest line matches the
  file (sha256, size, mode, link target), nothing unlisted, and the manifest is that
  version's source tree;
* the running service answers /health with the version ``current`` names;
* shared/data is intact: SQLite integrity_check ok, and no row lost that a background
  loop wrote through the app (GET /hit) during the deploy;
then the next deploy succeeds -- after ``capview unlock --force`` only when a SIGKILLed
process left its lock, and then the refusal said exactly that -- and leaves no temp link,
half-extracted or unfinished release, trash, temp file or lock behind.

One app on one host serves the whole module (the next deploy of each case is the
precondition of the next case), so the module costs ~1 deploy per fault, not 3.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import time
from pathlib import Path

import pytest

from faultkit import (
    CliRun, Hitter, SIGNALS, cli, db_state, env_via, known_hosts_for, leftovers, settle, verify_host,
    write_config,
)
from benchmarks.latency_proxy import LatencyProxy  # noqa: E402  (faultkit puts the repo on sys.path)
from capview.config import HealthConfig
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import PhaseStarted
from capview.engine.rollback import rollback
from capview.errors import EXIT_LOCKED
from capview.remote.ssh import SshTransport
from realhost import app_on_tmpfs, make_source, new_app

pytestmark = [pytest.mark.testbed, pytest.mark.slow]

PHASES = ("lock", "setup", "upload", "link", "build", "switch", "health", "cleanup")
BIG = 16 * 1024 * 1024  # the upload-phase release carries this much new data


class Site:
    """The module's one app, the sources of every version deployed, a version counter."""

    def __init__(self, app, root: Path) -> None:
        self.app = app
        self.root = root
        self.sources: dict[str, Path] = {}
        self.n = 0
        self.config = root / "deploy.yaml"

    def version(self, tag: str = "") -> str:
        self.n += 1
        return f"r{self.n:03d}{'-' + tag if tag else ''}"

    def source(self, version: str, *, big: bool = False, **kw) -> Path:
        src = make_source(self.root, version, **kw)
        if big:
            (src / "static" / "blob.bin").write_bytes(os.urandom(BIG))
        self.sources[version] = src
        return src

    def env(self, src: Path, **over):
        over.setdefault("keep_releases", 3)
        return self.app.env(src, **over)

    @property
    def dp(self) -> Path:
        return Path(self.app.deploy_path)


def ctx(transport, events=None) -> Context:
    return Context(transport=transport, emit=(events.append if events is not None else (lambda e: None)),
                   operator="tester@ci")


@pytest.fixture(scope="module")
def site(module_host, tmp_path_factory):
    app = new_app(module_host, tag="flt" + secrets.token_hex(2))
    s = Site(app, tmp_path_factory.mktemp("faults"))
    v = s.version()

    async def first():
        async with SshTransport() as t:
            return await release(ctx(t), s.env(s.source(v)), v)

    r = asyncio.run(first())
    assert r.ok, r
    write_config(s.config, app, s.root, keep=3)
    return s


async def ensure_good(site: Site) -> None:
    """Precondition of every case; if an earlier case broke the host, repair it (so one
    failure does not cascade) -- and fail that earlier case's promise loudly here."""
    try:
        verify_host(site.app, site.sources)
        assert not leftovers(site.dp), leftovers(site.dp)
    except AssertionError:
        cli("unlock", "test", "--force", "-c", str(site.config))
        await next_deploy(site, allow_lock=True)
        pytest.fail("the previous case left the host broken (repaired before this one)")


def history_live(dp: Path) -> str | None:
    """The release the history says is live: the ``to`` of the last record that switched."""
    live = None
    for line in (dp / ".capview" / "history.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("op") in ("release", "rollback") and rec.get("outcome") in ("ok", "rolled_back") and rec.get("to"):
            live = rec["to"]
    return live


def after_fault(site: Site, rows_before: int, hits: Hitter, *, history: bool = False) -> str:
    """The promises after a fault (see the module doc). ``history``: capview was alive to
    finish (Ctrl-C, a cut), so the history must also name the release current names."""
    settle(str(site.dp))
    v = verify_host(site.app, site.sources)
    if history:
        assert history_live(site.dp) == v, f"history says {history_live(site.dp)} is live, current is {v}"
    state = json.loads((site.dp / "releases" / v / ".capview" / "release.json").read_text()).get("state")
    assert state != "failed", f"current names {v}, whose release.json says failed"
    acked = hits.ok  # read before the rows: every acknowledged hit was committed first
    integrity, rows = db_state(site.app)
    assert integrity == "ok"
    assert rows - rows_before >= acked, f"rows lost: {rows - rows_before} new rows, {acked} acknowledged"
    return v


async def next_deploy(site: Site, *, allow_lock: bool) -> str | None:
    """The next deploy succeeds (after ``capview unlock --force`` if a killed process left
    the lock, which the refusal must say). Returns the refusal message, if any."""
    v = site.version("next")
    src = site.source(v)
    refusal = None
    async with SshTransport() as t:
        r = await release(ctx(t), site.env(src), v)
        if r.exit_code == EXIT_LOCKED:
            refusal = r.hosts[0].message
            assert allow_lock, f"lock left behind by a process that was not killed: {refusal}"
            assert "capview unlock test" in refusal and "--force" in refusal, refusal
            # a rollback (the usual next step after a failed deploy) is refused the same way
            rb = await rollback(ctx(t), site.env(src))
            assert rb.exit_code == EXIT_LOCKED and "--force" in rb.hosts[0].message, rb
            u = cli("unlock", "test", "--force", "-c", str(site.config))
            assert u.returncode == 0, u.stderr + u.stdout
            r = await release(ctx(t), site.env(src), v)
        assert r.ok, r
    assert verify_host(site.app, site.sources) == v
    assert leftovers(site.dp) == []
    return refusal


def evidence(site: Site, phase: str, version: str):
    """A check that the phase's remote script is running for ``version`` (None: no evidence)."""
    dp, rel = site.dp, site.dp / "releases" / version

    def lock():
        try:
            return f'"version":"{version}"' in (dp / ".capview/lock/owner.json").read_text()
        except OSError:
            return False

    def switched():
        try:
            return os.readlink(dp / "current") == f"releases/{version}"
        except OSError:
            return False

    return {
        "lock": lock,
        "setup": lambda: (rel / ".capview/release.json").exists(),
        "upload": lambda: (rel / ".capview/incoming").exists(),
        "link": lambda: (rel / ".env").is_symlink(),
        "build": lambda: (rel / ".capview/build.log").exists(),
        "switch": switched,
    }.get(phase)


async def strike_at(site: Site, phase: str, version: str, started: asyncio.Event, strike) -> None:
    await started.wait()
    check = evidence(site, phase, version)
    if check is None:
        await asyncio.sleep(0.02)
    else:
        deadline = time.monotonic() + 20
        while not check() and time.monotonic() < deadline:
            await asyncio.sleep(0.001)
    strike()


# --------------------------------------------------------------------------- per phase

@pytest.mark.parametrize("phase", PHASES)
async def test_connection_cut(site, phase, tmp_path):
    """The SSH connection is severed mid-phase (capview keeps running and reconnects)."""
    await cut_case(site, phase, tmp_path, broken=False)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_connection_cut_inside_a_packed_upload(site, tmp_path, monkeypatch, seed):
    """issue 21: through a thin link the upload goes packed (gzip members the host's
    session loop inflates); a cut at a random moment of that stream, inside a packed chunk
    or between two, must leave the host as any cut does: nothing half-extracted goes live."""
    import random

    from capview.engine import compress
    from capview.remote.transport import Packed

    packed = []
    pack = compress.Packer.pack

    def spy(self, data):
        piece = pack(self, data)
        packed.append(isinstance(piece, Packed))
        return piece

    monkeypatch.setattr(compress.Packer, "pack", spy)
    await ensure_good(site)
    v = site.version("cutz")
    src = site.source(v)
    rng = random.Random(seed)
    words = [w.encode() for w in "deploy release shared current build health lock switch prune".split()]
    (src / "static" / "text.js").write_bytes(b" ".join(rng.choice(words) for _ in range(1_600_000)))  # ~11 MB
    _, rows0 = db_state(site.app)
    async with LatencyProxy(site.app.host.port, one_way=0.005, rate=3e6) as proxy:
        env = env_via(site.env(src), proxy.port, known_hosts_for(site.app.host, proxy.port, tmp_path / "kh"))
        started = asyncio.Event()

        def emit(e):
            if isinstance(e, PhaseStarted) and e.phase == "upload":
                started.set()

        async def strike():
            await started.wait()
            check = evidence(site, "upload", v)
            while not check():
                await asyncio.sleep(0.005)
            await asyncio.sleep(rng.uniform(0.05, 0.8))  # ~3.5 MB packed: over 1 s at 3 MB/s
            proxy.sever()

        with Hitter(site.app) as hits:
            async with SshTransport() as t:
                striker = asyncio.ensure_future(strike())
                r = await asyncio.wait_for(release(Context(transport=t, emit=emit, operator="tester@ci"), env, v), 120)
                striker.cancel()
            after_fault(site, rows0, hits, history=True)
            assert any(packed), "the stream was not packed: the test would not strike a packed upload"
            assert proxy.severed >= 1 and not r.ok, "the cut came after the upload: it struck nothing"
            await next_deploy(site, allow_lock=False)
        after_fault(site, rows0, hits)


@pytest.mark.parametrize("phase", ["switch", "health"])
async def test_connection_cut_with_an_unhealthy_release(site, phase, tmp_path):
    """Cut while an unhealthy release is being switched to or checked: the host finishes
    the switch on its own, so capview must reconnect and roll back, not leave it live."""
    await cut_case(site, phase, tmp_path, broken=True, **quick_health(site))


async def cut_case(site, phase, tmp_path, *, broken: bool, **over) -> None:
    await ensure_good(site)
    v = site.version("cut")
    src = site.source(v, big=(phase == "upload"), broken=broken)
    _, rows0 = db_state(site.app)
    async with LatencyProxy(site.app.host.port, one_way=0.005) as proxy:
        env = env_via(site.env(src, **over), proxy.port, known_hosts_for(site.app.host, proxy.port, tmp_path / "kh"))
        started = asyncio.Event()

        def emit(e):
            if isinstance(e, PhaseStarted) and e.phase == phase:
                started.set()

        with Hitter(site.app) as hits:
            async with SshTransport() as t:
                striker = asyncio.ensure_future(strike_at(site, phase, v, started, proxy.sever))
                r = await asyncio.wait_for(release(Context(transport=t, emit=emit, operator="tester@ci"), env, v), 120)
                striker.cancel()
            after_fault(site, rows0, hits, history=True)
            assert proxy.severed >= 1 or r.ok
            await next_deploy(site, allow_lock=False)
        after_fault(site, rows0, hits)


@pytest.mark.parametrize("how", ["kill", "int"])
@pytest.mark.parametrize("phase", PHASES)
async def test_cli_killed_or_interrupted(site, phase, how):
    """``capview release --json`` in a subprocess gets SIGKILL (no cleanup possible) or
    SIGINT (Ctrl-C: capview must clean up itself; no unlock needed afterwards)."""
    await ensure_good(site)
    v = site.version(how)
    src = site.source(v, big=(phase == "upload"))
    _, rows0 = db_state(site.app)
    with Hitter(site.app) as hits:
        run = await CliRun("release", v, "test", "--json", "--source", str(src), "-c", str(site.config)).start()
        striker = asyncio.ensure_future(
            strike_at(site, phase, v, run.phase(phase), lambda: run.signal(SIGNALS[how])))
        rc = await run.wait()
        striker.cancel()
        assert "Traceback" not in run.stderr, run.stderr
        assert rc == (-signal.SIGKILL if how == "kill" else 130), (rc, run.stderr)  # it struck mid-deploy
        after_fault(site, rows0, hits, history=(how == "int"))
        await next_deploy(site, allow_lock=(how == "kill"))
    after_fault(site, rows0, hits)


async def test_rollback_interrupted_mid_switch_finishes_it(site):
    """Ctrl-C (SIGINT to ``capview rollback``) just after the rollback stopped the service and
    flipped ``current``: the switch and its health check are finished, the lock released."""
    await ensure_good(site)
    dp = site.dp
    target = verify_host(site.app, site.sources)
    await next_deploy(site, allow_lock=False)
    before = verify_host(site.app, site.sources)
    _, rows0 = db_state(site.app)
    with Hitter(site.app) as hits:
        run = await CliRun("rollback", "test", "--to", target, "--yes", "--json", "-c", str(site.config)).start()
        striker = asyncio.ensure_future(
            strike_at(site, "switch", target, run.phase("switch"), lambda: run.signal(signal.SIGINT)))
        rc = await run.wait()
        striker.cancel()
        assert "Traceback" not in run.stderr, run.stderr
        assert rc == 130, (rc, run.stderr)
        assert after_fault(site, rows0, hits, history=True) in (target, before)
    assert not (dp / ".capview" / "lock").exists()
    await next_deploy(site, allow_lock=False)


# --------------------------------------------------------------------------- other faults

async def bad_deploy(site: Site, src: Path, v: str, **over):
    _, rows0 = db_state(site.app)
    good = verify_host(site.app, site.sources)
    with Hitter(site.app) as hits:
        async with SshTransport() as t:
            r = await release(ctx(t), site.env(src, **over), v)
        assert not r.ok and r.exit_code == 1, r
        assert after_fault(site, rows0, hits) == good
        assert (site.dp / "releases" / v).exists()  # kept, marked failed, for inspection
        await next_deploy(site, allow_lock=False)
    after_fault(site, rows0, hits)
    return r


async def test_build_failing(site):
    await ensure_good(site)
    v = site.version("badbuild")
    src = site.source(v, containerfile="FROM scratch\nCOPY no-such-file /\n")
    r = await bad_deploy(site, src, v)
    assert "build failed" in r.hosts[0].message


QUICK_HEALTH = {"timeout": 3, "interval": 0.2}


def quick_health(site: Site) -> dict:
    return {"health": HealthConfig(url=f"http://127.0.0.1:{site.app.port}/health", **QUICK_HEALTH)}


async def test_service_failing_to_start(site):
    await ensure_good(site)
    v = site.version("nostart")
    src = site.source(v)
    (src / "app.py").write_text("import sys\nsys.exit('this release cannot start')\n")
    r = await bad_deploy(site, src, v, **quick_health(site))
    assert "rolled back" in r.hosts[0].message


async def test_health_failing(site):
    await ensure_good(site)
    v = site.version("unhealthy")
    r = await bad_deploy(site, site.source(v, broken=True), v, **quick_health(site))
    assert "rolled back" in r.hosts[0].message


async def test_health_hanging(site):
    """/health accepts the connection and never answers: the check times out, rolls back."""
    await ensure_good(site)
    v = site.version("hang")
    src = site.source(v)
    code = (src / "app.py").read_text()
    code = code.replace('        if self.path == "/health":\n',
                        '        if self.path == "/health":\n            time.sleep(3600)\n', 1)
    assert "time.sleep(3600)" in code
    (src / "app.py").write_text(code)
    t0 = time.monotonic()
    r = await bad_deploy(site, src, v, **quick_health(site))
    assert "rolled back" in r.hosts[0].message
    assert time.monotonic() - t0 < 60


async def test_two_deploys_from_two_processes(site):
    await ensure_good(site)
    _, rows0 = db_state(site.app)
    va, vb = site.version("twin-a"), site.version("twin-b")
    sa, sb = site.source(va), site.source(vb)
    with Hitter(site.app) as hits:
        runs = [CliRun("release", v, "test", "--json", "--source", str(s), "-c", str(site.config))
                for v, s in ((va, sa), (vb, sb))]
        await asyncio.gather(*(r.start() for r in runs))
        rcs = sorted([await r.wait() for r in runs])
        assert rcs == [0, EXIT_LOCKED], [(r.events[-3:], r.stderr) for r in runs]
        loser = next(r for r in runs if r.proc.returncode == EXIT_LOCKED)
        msg = loser.finished()[0]["message"]
        assert "locked by" in msg and "pid" in msg
        assert after_fault(site, rows0, hits) in (va, vb)
        await next_deploy(site, allow_lock=False)


async def test_deploy_and_prune_from_two_processes(site):
    await ensure_good(site)
    _, rows0 = db_state(site.app)
    v = site.version("vs-prune")
    src = site.source(v)
    with Hitter(site.app) as hits:
        runs = [CliRun("release", v, "test", "--json", "--source", str(src), "-c", str(site.config)),
                CliRun("prune", "test", "--keep", "2", "--yes", "--json", "-c", str(site.config))]
        await asyncio.gather(*(r.start() for r in runs))
        rcs = [await r.wait() for r in runs]
        for r in runs:
            assert "Traceback" not in r.stderr, r.stderr
        assert set(rcs) <= {0, EXIT_LOCKED}, [(rc, r.stderr, r.events[-2:]) for rc, r in zip(rcs, runs)]
        assert after_fault(site, rows0, hits) in (v, *site.sources)
        await next_deploy(site, allow_lock=False)


# --------------------------------------------------------------------------- disk full

@pytest.fixture
def small_disk(host):
    """The app's deploy_path parent is a 6 MB tmpfs (unmounted at teardown)."""
    with app_on_tmpfs(host, "size=6m", "full") as app:
        yield app


async def test_disk_full_during_upload(small_disk, tmp_path):
    app = small_disk
    s = Site(app, tmp_path)
    v1 = s.version()
    async with SshTransport() as t:
        assert (await release(ctx(t), s.env(s.source(v1)), v1)).ok
        _, rows0 = db_state(app)
        with Hitter(app) as hits:
            v2 = s.version("huge")
            r = await release(ctx(t), s.env(s.source(v2, big=True)), v2)
            assert not r.ok and r.exit_code == 1, r
            assert "upload failed" in r.hosts[0].message and "no space left" in r.hosts[0].message.lower(), r
            assert after_fault(s, rows0, hits) == v1
            assert not (s.dp / "releases" / v2).exists()  # never whole: removed, space given back
            v3 = s.version("next")
            assert (await release(ctx(t), s.env(s.source(v3)), v3)).ok
        assert after_fault(s, rows0, hits) == v3
    assert leftovers(s.dp) == []


async def test_trash_of_an_interrupted_prune_is_finished_by_the_next_deploy(site):
    """A prune (or a deploy's cleanup) killed mid-delete leaves ``releases/.trash-<v>``
    (renamed first, so it is never listed as a release); the next deploy finishes it."""
    await ensure_good(site)
    dp = site.dp
    cur = verify_host(site.app, site.sources)
    site.app.sh(f"mkdir -p {dp}/releases/.trash-r000-old/static && cp -al {dp}/releases/{cur}/static "
                f"{dp}/releases/.trash-r000-old/static/x")
    await next_deploy(site, allow_lock=False)


async def test_rsync_upload_never_links_a_changed_file(host, tmp_path):
    """upload.method rsync: a file whose content changed but whose size and mtime did not
    (a build that writes in the same second, or restores mtimes) must not be hard-linked
    from the previous release: the release must match its manifest."""
    from capview.config import UploadConfig

    app = new_app(host, build=False)
    rs = dict(upload=UploadConfig(method="rsync"))
    s = Site(app, tmp_path)
    async with SshTransport() as t:
        assert (await release(ctx(t), s.env(s.source("v1"), **rs), "v1")).ok
        src2 = s.source("v2")
        st = (s.sources["v1"] / "VERSION").stat()
        os.utime(src2 / "VERSION", ns=(st.st_atime_ns, st.st_mtime_ns))  # same size ("v2\n"), same mtime
        assert (await release(ctx(t), s.env(src2, **rs), "v2")).ok
    assert verify_host(app, s.sources) == "v2"
