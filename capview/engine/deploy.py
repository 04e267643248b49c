"""``capview release``: the lifecycle of DESIGN.md, top to bottom, per host.

lock -> setup -> upload -> link -> build, then the switch transaction (switching.py:
switch -> health -> record -> cleanup -> unlock, or the revert) as one host-side
script. Three round trips after connect for a redeploy (issue 21): preflight+lock+
setup+listing, upload+link(+build) (one tar stream, or a big upload's parts in parallel
channels: part 0 links once all are in), the transaction; rsync links in a trip of its own.

Before the switch, any failure (or Ctrl-C) aborts: the release is marked failed (or
removed when it was never whole) and the lock released. Once the switch began, only
the host's result counts (switching.py).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

from capview.config import Environment, HostConfig
from capview.engine import switching
from capview.engine.context import Context, OperationResult
from capview.engine.events import DryRunScript, HostWarning, UploadProgress
from capview.engine.history import history_record
from capview.engine.fleet import rollout
from capview.engine.fleet_host import FleetMember
from capview.engine.hooks import HookContext, dry_run_listing, failure_words, hook_failure, hook_function, release_pieces
from capview.engine.hostrun import PhaseFailed, failure, phase_reason
from capview.engine.hosts import HostResult, operation
from capview.engine.layout import BUILD_LOG, validate_version
from capview.engine.lock import (
    HostLock, LockOwner, describe_holder, keep_alive, parse_owner, stale_hint, switch_running, take_over, unlock_hint,
)
from capview.engine import compress
from capview.engine import manifest_cache
from capview.engine.manifest import Delta, diff, diff_text
from capview.engine.preflight import parse_preflight
from capview.engine.releases_meta import ReleaseListing, parse_release_listing
from capview.engine.retention import after_deploy
from capview.engine.deploy_upload import UploadStreams
from capview.engine.source import Source, scan_and_connect
from capview.engine.scripts import release as release_sh
from capview.engine.scripts.cleanup import finish_trash, prune_body, stdin_list
from capview.engine.scripts.service import health_function
from capview.engine.scripts.lock import LOCKED
from capview.engine.scripts.shell import Frames, append_line, kinds, last_line, parse_markers
from capview.engine.scripts.status import build_tool, preflight
from capview.engine.scripts.switch import SwitchPlan, transaction
from capview.engine.scripts.upload import DRIFT, NO_GZIP, upload_script
from capview.engine.scripts.verify import after_build_script
from capview.engine.scripts.usage import refresh_script
from capview.engine.upload import drift_warning, readonly_hint
from capview.engine.build_check import inherited_references, judge_after_build, parse_after_build
from capview.units import plural
from capview.errors import EXIT_LOCKED, EXIT_UNREACHABLE
from capview.remote.transport import RunResult, unpacks

LOCK_POLL = 2.0
BIG_LISTING = 50_000  # files in the retained releases beyond which the usage refresh is not waited on


def usage_wait(retained_files: int) -> float | None:
    """How long the switch script waits for the usage refresh after the unlock (None: to its
    end). It takes ~10 us a retained file on the host: up to BIG_LISTING it is waited on,
    up to twice that for 1 s at most; beyond, it cannot end in a second, so waiting only
    delays the client (1 s of a 200,000-file redeploy, issue 21) and it is left to finish."""
    if retained_files <= BIG_LISTING:
        return None
    return 1.0 if retained_files <= 2 * BIG_LISTING else 0.0


async def release(
    ctx: Context,
    env: Environment,
    version: str | None = None,
    *,
    host: str | None = None,
    source: Path | None = None,
    dry_run: bool = False,
    wait_lock: float = 0.0,
) -> OperationResult:
    """Deploy ``version`` to the environment's hosts (or one host). Never raises for a host's failure."""
    hosts = env.select(host)
    version = validate_version(version) if version is not None else None
    # issue 21: the connections open while the source is scanned (source.py)
    version, src, warm = await scan_and_connect(ctx.transport, env.settings, hosts, version, source, ctx.clock())

    fleet = len(hosts) > 1  # issue 17: every lock is kept until every host is settled
    members = [HostDeploy(ctx, h, version, src, dry_run=dry_run, wait_lock=wait_lock, fleet=fleet,
                          connecting=warm.get(h.name)) for h in hosts]

    async def run_all(_hosts) -> list[HostResult]:
        return await rollout(ctx, env, members) if fleet else [await members[0].execute()]

    return await operation(ctx, env, host, "release", None, version=version, dry_run=dry_run, hosts=hosts,
                           run_all=run_all)


@dataclass
class DeployState:
    """What one host's deploy has learnt and done so far."""

    meta: dict = field(default_factory=dict)  # release.json as the deploy writes it
    created: bool = False  # releases/<version> exists because of us
    uploaded: bool = False  # the release tree is complete (until then a failure removes it)
    listing: ReleaseListing = field(default_factory=lambda: ReleaseListing(None, "", (), ""))
    prev_manifest: str = ""  # the previous release's manifest.tsv (its text: diff_text)
    kept: frozenset[str] = frozenset()  # the paths the upload took over from the previous release
    deleting: list[str] = field(default_factory=list)  # what the cleanup after the switch deletes

    @property
    def previous(self) -> str | None:
        return self.listing.current


class HostDeploy(UploadStreams, FleetMember):
    """One host's deploy, in the stages fleet.rollout drives (a single host runs them in a row)."""

    def __init__(self, ctx: Context, host: HostConfig, version: str, src: Source, *, dry_run: bool,
                 wait_lock: float, fleet: bool = False, connecting: asyncio.Task | None = None) -> None:
        super().__init__(ctx, host)
        self.connecting = connecting  # connect_early's task for this host
        self.version = version
        self.src = src
        self.dry_run = dry_run
        self.wait_lock = wait_lock
        self.fleet = fleet  # issue 17: keep the lock through the switch; report at the very end
        self.lock = HostLock(self.paths, LockOwner.new(ctx.operator, "release", version, ctx.clock()))
        self.state = DeployState()
        self.upload_frames = Frames.new()  # the upload script's one-line frames (drift, free space)
        self.heartbeat: asyncio.Task | None = None
        self.reported = False
        self.manifests = manifest_cache.for_host(host)  # issue 21: the manifests this client wrote there

    @property
    def previous(self) -> str | None:
        return self.state.previous

    # ---- the lifecycle ---------------------------------------------------
    async def execute(self) -> HostResult:
        """All stages on this one host (a one-host environment, or --host)."""
        try:
            return await self.stage_lock() or await self.stage_prepare() or await self.stage_switch()
        finally:
            self.stop_heartbeat()

    async def stage_lock(self) -> HostResult | None:
        """Stage 1a: the lock (with the preflight, and setup in the same trip). None when taken."""
        try:
            await self.lock_phase()
        except BaseException as exc:
            return await self.before_switch_failed(exc)
        if not self.dry_run:
            self.heartbeat = asyncio.create_task(keep_alive(self.ctx.transport, self.host, self.lock, self.ctx.clock))
        return None

    async def stage_prepare(self) -> HostResult | None:
        """Stage 1b: upload -> link -> build. None when ready to switch."""
        try:
            if not await self.upload_phase():  # a redeploy's single stream links and builds too
                await self.link_build_phase()
        except BaseException as exc:
            return await self.before_switch_failed(exc)
        if self.dry_run:
            return HostResult(self.finish("ok", f"dry run: nothing changed on {self.host.name}", self.version), 0)
        return None

    async def stage_switch(self) -> HostResult:
        """Stage 2: the switch transaction (keeping the lock in a fleet)."""
        plan = self.switch_plan()
        return await switching.switch_and_conclude(
            self, plan, self.words, self.version, stdin=stdin_list(self.state.deleting),
            not_begun=lambda r: self.before_switch_failed(PhaseFailed(not_switched(r))))

    async def before_switch_failed(self, exc: BaseException) -> HostResult:
        """Nothing switched yet: mark the release failed (or remove it), unlock, report."""
        self.stop_heartbeat()
        if isinstance(exc, asyncio.CancelledError):
            await asyncio.shield(self.abort("cancelled by the user"))
            raise exc
        if not isinstance(exc, Exception):
            raise exc
        reason, code = failure(exc)
        await self.abort(reason)
        return HostResult(self.finish("failed", reason, self.version), code)

    def words(self, r: switching.SwitchResult) -> tuple[str, str] | None:
        prev = self.state.previous
        snap = r.values.get("snapshot_seconds", "")  # issue 18: the data snapshot's share of the window
        snap_note = f", data snapshot {float(snap):.2f}s" if snap.replace(".", "", 1).isdigit() else ""
        if r.outcome == "ok":
            return "ok", f"{self.version} is live" + switching.downtime_words(r, note=snap_note)
        # issue 13: the app's log shows a write refused: say why uploaded files are read-only
        why = f" - its log says 'Permission denied': {readonly_hint('Permission denied')}" if r.values.get("readonly") else ""
        if r.outcome == "rolled_back":
            return "rolled_back", (f"{r.reason}; rolled back to {prev}" + switching.downtime_words(r, prev)
                                   + "".join(f" ({w})" for w in r.warnings) + why)
        if r.outcome != "failed":
            return None
        if "switched" not in r.values:
            return "failed", f"switch failed before current moved; {prev or 'nothing'} restarted"
        if prev is None:
            back = "the current it found was put back" if "restored" in r.values else "service stopped and current removed"
            return "failed", f"{r.reason}; first release, {back}{why}"
        return "failed", f"{r.reason} - but the revert itself failed ({'; '.join(r.warnings)}); check the host"

    # ---- phases before the switch ----------------------------------------
    async def lock_phase(self) -> None:
        """Preflight + lock + setup + listing: one exchange (issue 21). The host goes on to
        setup only once the lock is ours: its ``locked`` frame ends the "lock" phase and
        starts "setup", ``created`` says releases/<version> is ours. Exit 3: held by
        another, 4: preflight failed, EXISTS: the release exists (releases are immutable)."""
        self.phase_start("lock")
        try:
            if self.connecting is not None:
                await self.connecting  # an unreachable host fails here, as its first script would
            frames = Frames.new()
            res = await self.take_lock(frames)
            if self.phase == "lock":  # a dry run: nothing to lock
                self.phase_end("lock", True, "dry run: preflight only, lock not taken")
                self.phase_start("setup")
            self.setup_done(res, frames)
        except BaseException as exc:
            self.phase_end(self.phase or "lock", False, phase_reason(exc))
            raise

    async def take_lock(self, frames: Frames) -> RunResult:
        """The start exchange, sent again while the lock is held (``wait_lock``), and the
        takeover of a dead holder's lock (issue 17) with setup in the same trip."""
        def on_frame(kind: str, _arg: str) -> None:
            if kind == "locked" and self.phase == "lock":
                self.phase_end("lock", True)
                self.phase_start("setup")
            elif kind == "created":
                self.state.created = True

        deadline = self.ctx.clock() + self.wait_lock
        while True:
            setup = self.setup_script(frames)
            take = "" if self.dry_run else self.lock.acquire_script(self.ctx.clock(), frames)
            if not self.dry_run:
                self.lock.trying()  # from here the lock may be ours even if the answer is lost
            res = await self.run(release_sh.lock_and_setup(frames, preflight(self.host), take, setup),
                                 quiet=True, frames=frames, on_frame=on_frame)
            parts = frames.parse(res.stdout)
            if not self.dry_run:
                self.lock.answered("locked" in kinds(parts))
            self.check_preflight(parts)
            if self.dry_run or self.lock.held:
                return res
            if res.exit_status != LOCKED:
                raise PhaseFailed(f"taking the lock failed: {res.stderr.strip() or res.exit_status}")
            took = await take_over(self, self.lock, parts, frames, then=setup)  # issue 17: a provably dead holder
            if took is not None:
                res, parts = took
                for kind, arg, _ in parts:  # that trip's frames were not streamed
                    on_frame(kind, arg)
                if self.lock.held:
                    return res
            holder_info = parse_owner(parts)
            holder = describe_holder(holder_info, self.ctx.clock(), self.host.env, self.host.name)
            if self.ctx.clock() >= deadline:
                hint = stale_hint(holder_info, self.host.env, self.host.name, now=self.ctx.clock(),
                                  running=switch_running(parts))
                raise PhaseFailed(holder, code=EXIT_LOCKED, hint=hint)
            self.log(f"{holder}; waiting")
            await asyncio.sleep(LOCK_POLL)

    def check_preflight(self, parts: list[tuple[str, str, str]]) -> None:
        report = parse_preflight(parts)
        for w in report.warnings:
            self.ctx.event(HostWarning, self.host.name, message=w)
        if report.failures:
            raise PhaseFailed("preflight failed: " + "; ".join(report.failures), code=EXIT_UNREACHABLE)

    def setup_script(self, frames: Frames) -> str:
        """Setup (run by the start exchange once the lock is ours): release.json as
        "uploading", then the listing the deploy needs."""
        self.state.meta = {
            "version": self.version, "state": "uploading", "operator": self.ctx.operator,
            "started_at": self.ctx.clock(), "deployed_at": None, "finished_at": None,
            "commit": self.src.commit, "dirty": self.src.dirty, "image": self.image_tag(), "files": self.src.scan.files,
            "bytes": self.src.scan.bytes, "bytes_sent": None, "phases": {}, "downtime": None,
            "health": None, "error": None, "previous": None,
        }
        offered = self.manifests.offered() if self.manifests else ()
        return release_sh.setup(self.paths, self.settings, self.version, self.state.meta, frames, dry_run=self.dry_run,
                                offered=offered)

    def setup_done(self, res: RunResult, frames: Frames) -> None:
        """The "setup" phase's end, from the start exchange's answer."""
        st = self.state
        if res.exit_status == release_sh.EXISTS:
            raise PhaseFailed(
                f"release {self.version} already exists (releases are immutable)",
                hint=f"pick a new version, or switch to it with: capview rollback {self.host.env or 'ENV'} --to {self.version}",
            )
        if res.exit_status != 0:
            raise PhaseFailed(f"setup failed: {res.stderr.strip() or 'exit ' + str(res.exit_status)}")
        st.listing = parse_release_listing(res.stdout, frames, self.paths.root)
        st.prev_manifest = st.listing.current_manifest
        if st.listing.current_manifest_sha:  # issue 21: the host's manifest is one this client holds
            held = self.manifests.get(st.listing.current_manifest_sha) if self.manifests else None
            if held is None:
                self.log("the previous release's manifest is no longer in the local cache: every file is sent")
            st.prev_manifest = held or ""
        st.meta["previous"] = st.previous
        if st.previous is None and st.listing.current_link:
            self.ctx.event(HostWarning, self.host.name, message=(
                f"current points to {st.listing.current_link!r}, not a release of this app: it is kept "
                "and put back if this first release fails"))
        self.phase_end("setup", True, f"previous release: {st.previous or 'none (first deploy)'}")

    async def upload_phase(self) -> bool:
        """The upload. The tar stream (or a split upload's part 0) carries the link and the
        build in the same script (issue 21: upload_and_link; its ``uploaded`` frame ends
        this phase and starts "link"): True, nothing left for link_build_phase. rsync, a
        dry run: False."""
        st = self.state
        self.phase_start("upload")
        try:
            delta: Delta = diff_text(self.src.scan, st.prev_manifest) if st.previous else diff(self.src.scan.entries, {})
            st.kept = delta.kept
            st.prev_manifest = ""  # not needed past the diff (22 MB for 200,000 files: client peak RSS)
            total_files, total_bytes = delta.send_files, delta.send_bytes
            for note in self.src.scan.skipped:
                self.ctx.event(HostWarning, self.host.name, message=note)
            # issue 21: piece by piece through a session loop that inflates them, else one gzip stream or none
            packer = compress.packer(self.settings.upload.compress, delta, unpacks(self.ctx.transport, self.host))
            gz = packer is None and compress.wanted(self.settings.upload.compress, self.src.root, delta)
            if self.dry_run:
                script = upload_script(self.paths, self.version, st.previous, self.upload_frames, gzip=gz)
                self.ctx.event(DryRunScript, self.host.name, phase="upload", script=script)
                self.phase_end("upload", True, f"would send {plural(total_files, 'changed file')} ({total_bytes} bytes), "
                               "hard-link the rest")
                return False
            self.ctx.event(UploadProgress, self.host.name, files_done=0, files_total=total_files,
                           bytes_done=0, bytes_total=total_bytes)

            def progress(files: int, size: int) -> None:
                self.ctx.event(UploadProgress, self.host.name, files_done=files, files_total=total_files,
                               bytes_done=size, bytes_total=total_bytes)

            before = self.bytes_sent
            if self.settings.upload.method == "rsync":
                await self.rsync_upload()
                st.uploaded = True
                self.phase_end("upload", True, f"rsync --link-dest {st.previous or '(first release)'}")
                return False
            link, framed, hooked = self.link_build_script(self.upload_frames)
            seen: list[tuple[str, str]] = []
            on_link_frame = self.link_frames(seen)

            def uploaded(link_follows: bool) -> None:
                st.meta["bytes_sent"] = self.bytes_sent - before
                st.uploaded = True
                st.kept = delta.kept
                if self.manifests is not None:  # the host has just checked it against our sha256
                    asyncio.get_running_loop().run_in_executor(None, self.manifests.put, delta.manifest,
                                                               delta.sha256)
                linked = self.src.scan.files - total_files
                how = ", gzip" if gz else f", {packer.share:.0%} gzip" if packer is not None and packer.packed_bytes else ""
                self.phase_end("upload", True, f"{plural(total_files, 'file')} sent ({self.bytes_sent - before} bytes"
                                               f"{how}), {linked} hard-linked")
                if link_follows:
                    self.phase_start("link")

            def on_frame(kind: str, arg: str) -> None:
                if self.phase != "upload":
                    on_link_frame(kind, arg)
                elif kind == "uploaded":
                    uploaded(link_follows=True)

            send = dict(then=link, on_frame=on_frame, packer=packer)
            res = await self.send_parts(delta, progress, gzip=gz, **send)
            if res.exit_status == NO_GZIP and self.phase == "upload":
                if self.settings.upload.compress == "always":
                    raise PhaseFailed(f"upload.compress is 'always' but {self.host.name} has no gzip - "
                                      "install gzip there, or set upload.compress to auto or never in deploy.yaml")
                self.log("no gzip on the host: the upload is sent uncompressed")
                gz = False
                res = await self.send_parts(delta, progress, **send)
            if res.exit_status == DRIFT and self.phase == "upload":  # issue 13: the previous release changed in place
                self.ctx.event(HostWarning, self.host.name,
                               message=drift_warning(res.stdout, self.upload_frames, delta, st.previous, self.host.env or "ENV"))
                delta = diff(self.src.scan.entries, {})
                st.kept = frozenset()
                total_files, total_bytes = delta.send_files, delta.send_bytes
                res = await self.send_parts(delta, progress, previous=None, gzip=gz, **send)  # link nothing, send all
            if self.phase == "upload":  # never saw "uploaded": it failed
                if res.exit_status != 0:
                    raise PhaseFailed(f"upload failed: {self.upload_failure(res, total_files, total_bytes)}")
                uploaded(link_follows=False)  # (not expected: the link then runs in a trip of its own)
                return False
        except BaseException as exc:
            self.phase_end(self.phase or "upload", False,
                           phase_reason(exc) if self.phase == "upload" else f"{type(exc).__name__}: {exc}")
            raise
        self.link_build_done(res, self.upload_frames, framed, hooked, seen)
        return True

    def link_build_script(self, frames: Frames) -> tuple[str, bool, bool]:
        """The link(+build, +after_upload hooks) script; whether it has a "build" phase of
        its own (a build or hooks: frame ``linked`` between the two); whether hooks run."""
        st = self.state
        # issue 13: after the build, in the same script: the previous release's shared files
        # unchanged, the release as built recorded (for verify), references to other releases
        after = after_build_script(self.paths, self.version, st.previous, frames, record=self.settings.build is not None)
        after_upload = hook_function("cv_hooks_after_upload", self.settings, self.paths, "after_upload",
                                     HookContext.of(self.host, "release", self.version, st.previous))
        script = release_sh.link_and_build(self.settings, self.paths, self.version, frames, after=after,
                                           ready=self.state_script("ready"), building=self.state_script("building"),
                                           after_upload=after_upload)
        return script, self.settings.build is not None or bool(after_upload), bool(after_upload)

    def link_frames(self, seen: list[tuple[str, str]]):
        """on_frame for the link/build part: warnings as they come, "linked" starts "build"."""
        def on_frame(kind: str, arg: str) -> None:
            seen.append((kind, arg))
            if kind == "warn":
                self.ctx.event(HostWarning, self.host.name, message=arg)
            elif kind == "linked":
                self.phase_end("link", True)
                self.phase_start("build")
        return on_frame

    async def link_build_phase(self) -> None:
        """The link(+build) trip of its own: after rsync; a dry run's listing."""
        frames = Frames.new()
        if self.dry_run:
            for line in dry_run_listing(self.settings, ("after_upload", "before_start", "after_switch", "on_failure")):
                self.log(f"would run {line}")
            link = release_sh.link_script(self.settings, self.paths, self.version, frames)
            build = release_sh.build_script(self.settings, self.paths, self.version)
            for phase, text in (("link", link), ("build", build or "# no build configured\n")):
                async with self.timed(phase) as info:
                    self.ctx.event(DryRunScript, self.host.name, phase=phase, script=text)
                    info["detail"] = "dry run"
            plan = self.switch_plan()
            self.ctx.event(DryRunScript, self.host.name, phase="switch", script=transaction(plan, frames))
            self.ctx.event(DryRunScript, self.host.name, phase="health", script=health_function(self.settings))
            return
        script, framed, hooked = self.link_build_script(frames)
        seen: list[tuple[str, str]] = []
        self.phase_start("link")
        try:
            res = await self.run(script, frames=frames, on_frame=self.link_frames(seen))
        except BaseException as exc:
            self.phase_end(self.phase or "link", False, f"{type(exc).__name__}: {exc}")
            raise
        self.link_build_done(res, frames, framed, hooked, seen)

    def link_build_done(self, res: RunResult, frames: Frames, framed: bool, hooked: bool,
                        seen: list[tuple[str, str]]) -> None:
        """The link and build phases' ends from the script's answer (PhaseFailed: they failed)."""
        st = self.state
        if self.phase == "link" and (framed or res.exit_status != 0):
            reason = f"linking shared paths failed: {last_line(res.stderr)}"  # never saw "linked"
            self.phase_end("link", False, reason)
            st.uploaded = False  # issue 13: a refused link removes the release
            raise PhaseFailed(reason)
        if not framed:
            self.check_after_build(res.stdout, frames, "link")
            self.phase_end("link", True)
            self.phase_start("build")
            self.phase_end("build", True, "no build configured")
            return
        rc = dict(seen).get("build_rc", "1").strip()
        self.check_after_build(res.stdout, frames, "build")
        hook = hook_failure(seen)
        if hook is not None:  # issue 18: an after_upload hook failed; the old release still serves
            reason = failure_words(hook, self.version)
            self.phase_end("build", False, reason)
            raise PhaseFailed(reason)
        if res.exit_status != 0 or rc != "0":
            reason = f"build failed (exit {rc}); see releases/{self.version}/{BUILD_LOG}"
            self.phase_end("build", False, reason)
            raise PhaseFailed(reason, hint=readonly_hint(res.stdout))
        tag = self.image_tag() if build_tool(self.settings) in ("podman", "docker", "buildah") else None
        hooks = f", {plural(len(self.settings.hooks.after_upload), 'after_upload hook')} ran" if hooked else ""
        built = (f"image {tag} built" if tag else "build command succeeded") if self.settings.build else "no build configured"
        self.phase_end("build", True, built + hooks)

    def check_after_build(self, stdout: str, frames: Frames, phase: str) -> None:
        """issue 13: fail when the build wrote into the previous release's files; warn
        (and record in release.json and history) when this release names another one."""
        st = self.state
        prev_meta = st.listing.meta(st.previous)
        found = parse_after_build(parse_markers(stdout, frames), self.src.scan.entries,
                                  inherited_references(prev_meta.raw if prev_meta else None, st.kept, self.version))
        if found.references:
            st.meta["references"] = [{"release": o, "path": p} for o, p in found.references]
        warnings, failure = judge_after_build(found, self.version, st.previous, self.host.env or "ENV", self.host.name)
        for w in warnings:
            self.ctx.event(HostWarning, self.host.name, message=w)
        if failure:
            self.phase_end(phase, False, failure[0])
            raise PhaseFailed(failure[0], hint=failure[1])

    # ---- the switch --------------------------------------------------------
    def switch_plan(self) -> SwitchPlan:
        st, now, v = self.state, self.ctx.clock(), self.version
        prev = st.previous
        meta = {**st.meta, "phases": dict(self.phases)}
        prev_meta = st.listing.meta(prev)
        record = history_record("release", self.host.name, self.ctx.operator, now, version=v,
                                phases=dict(self.phases), **{"from": prev}, **self.references())
        return SwitchPlan(
            op="release", settings=self.settings, token=self.lock.token, target=v, previous=prev,
            revert="previous" if prev else "first",
            live_doc={**meta, "state": "live", "deployed_at": now, "health": "ok", "finished_at": now},
            superseded_doc=({**prev_meta.raw, "state": "superseded"}
                            if prev_meta is not None and prev_meta.raw is not None else None),
            failed_doc={**meta, "state": "failed", "health": "failed", "finished_at": now},
            record=record, cleanup=self.cleanup_script(now),
            after_unlock=refresh_script(self.paths.root),  # warm the usage cache for the next listing
            keep_lock=self.fleet,
            **release_pieces(self.host, v, prev, now),  # issue 18: snapshot, hooks
            # ... but a huge tree's refresh (O(files), issue 21) finishes after the client is done
            after_unlock_wait=usage_wait(self.src.scan.files * max(1, self.settings.keep_releases)),
        )

    def cleanup_script(self, now: float) -> str:
        self.state.deleting = after_deploy(self.state.listing.releases, self.version, self.state.previous,
                                     self.settings.keep_releases, now)
        if not self.state.deleting:
            return finish_trash(self.paths)
        rec = history_record("prune", self.host.name, self.ctx.operator, now,
                             reason=f"after release {self.version}", outcome="ok")
        b = self.settings.build
        return prune_body(self.paths, [b.image] if b and b.image else [], record=rec)

    # ---- failure before the switch ---------------------------------------------
    async def abort(self, reason: str) -> None:
        """Mark the release failed (or remove it if never filled), record it, unlock."""
        if self.dry_run:
            return
        st = self.state
        parts = []
        if st.created:
            parts.append(self.state_script("failed", error=reason, finished_at=self.ctx.clock()))
            # A release cut short during upload is removed: it was never whole.
            if not st.uploaded:
                parts = [release_sh.remove(self.paths, self.version)]
        if self.lock.held:
            record = history_record("release", self.host.name, self.ctx.operator, self.ctx.clock(),
                                    version=self.version, outcome="failed", downtime=None,
                                    phases=dict(self.phases), error=reason, **{"from": st.previous},
                                    **self.references())
            parts.append(append_line(self.paths.history, record))
        if self.lock.maybe_held:
            # Removes the lock only if owner.json carries our token: safe when we do not
            # know whether the lock script ran (the connection dropped, or Ctrl-C, mid-phase).
            parts.append(self.lock.release_script())
        if not parts:
            return
        try:
            await self.run("".join(parts), quiet=True, timeout=30)
            self.lock.released()
        except Exception as exc:  # the host went away: the lock stays, say how to clear it
            self.log(f"could not clean up after failure ({exc}); {unlock_hint(self.host.env, self.host.name)}")

    def state_script(self, state: str, **extra) -> str:
        """This release's release.json in ``state`` (atomically); state.meta is left as is."""
        return release_sh.state_write(self.paths, self.version,
                                      {**self.state.meta, "state": state, "phases": dict(self.phases), **extra})

    def references(self) -> dict:
        """issue 13: the releases this one names by absolute path, for the history record."""
        refs = self.state.meta.get("references")
        return {"references": refs} if refs else {}

    def image_tag(self) -> str | None:
        b = self.settings.build
        return f"{b.image}:{self.version}" if b and b.image else None


def not_switched(result: switching.SwitchResult) -> str:
    if result.outcome == "notstarted":
        return "the connection was lost before the switch began; nothing was switched"
    return f"the switch was refused: {result.reason or 'unknown reason'}"
