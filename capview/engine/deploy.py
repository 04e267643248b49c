"""``capview release``: the lifecycle of DESIGN.md, top to bottom, per host.

lock -> setup -> upload -> link -> build -> switch -> health -> cleanup. Each
phase is one remote script (lock+preflight and setup share one; link and build
share one), so a deploy without a build costs 7 round trips whatever the link.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from pathlib import Path

from capview.config import Environment, HostConfig, Settings
from capview.engine import switch as sw
from capview.engine.context import Context, OperationResult
from capview.engine.events import (
    DowntimeMeasured, DryRunScript, HostFinished, OperationFinished, OperationStarted, UploadProgress, HostWarning,
)
from capview.engine.cleanup import cleanup_script, finish_trash_script
from capview.engine.frames import Frames
from capview.engine.prune import parse_prune
from capview.engine.hostrun import HostRun, PhaseFailed, await_through_cancel
from capview.engine.layout import default_version, git_commit, git_dirty, is_version, validate_version
from capview.engine.lock import (
    LockOwner, acquire_script, describe_holder, heartbeat_script, parse_owner, release_script, stale_hint,
)
from capview.engine.manifest import Delta, Scan, diff, parse_manifest, safe_relpath, scan_tree
from capview.engine.preflight import build_tool, parse_preflight, preflight_script
from capview.engine.rsync_upload import manifest_bytes, rsync_upload, write_manifest_script
from capview.engine.releases_meta import ReleaseMeta, release_listing_script, parse_release_listing
from capview.engine.script import MARK, append_line, parse_markers, q, write_json
from capview.engine.usage_cache import refresh_script
from capview.engine.upload import DRIFT, drift_warning, part_script, readonly_hint, split_delta, tar_stream, upload_script
from capview.engine.shared_links import link_shared_script
from capview.engine.verify import after_build_script, inherited_references, judge_after_build, parse_after_build
from capview.remote.transport import RunResult
from capview.units import plural
from capview.errors import EXIT_LOCKED, EXIT_UNREACHABLE, HostUnreachable, UsageError

HEARTBEAT_EVERY = 30.0
LOCK_POLL = 2.0


@dataclass(frozen=True)
class Source:
    """The local tree, scanned once per deploy and shared by every host."""

    root: Path
    scan: Scan
    commit: str | None
    dirty: bool | None = None  # uncommitted changes in the git tree (recorded as "dirty")


def scan_source(settings: Settings, root: Path | None = None) -> Source:
    root = (root or settings.source).resolve()
    if not root.is_dir():
        raise PhaseFailed(f"source {root} is not a directory - set 'source' in deploy.yaml or build it first", code=2)
    reserved = tuple(settings.shared.dirs) + tuple(settings.shared.files)
    for path in reserved:  # deploy.yaml checks these too; Settings may come from code
        if not safe_relpath(path) or path.split("/")[0] == ".capview":
            raise UsageError(f"shared path {path!r} must be relative and stay inside shared/ (not .capview)")
    try:
        scan = scan_tree(root, tuple(settings.exclude), reserved, tuple(settings.upload.writable))  # issue 13: read-only files
    except OSError as exc:  # an unreadable file or directory: one line naming it, nothing sent
        raise UsageError(f"cannot read {exc.filename or root}: {exc.strerror or exc} - "
                         "fix its permissions or leave it out with 'exclude' in deploy.yaml") from None
    if not scan.entries:
        raise PhaseFailed(f"source {root} has nothing to upload after 'exclude' - check the exclude patterns", code=2)
    commit = git_commit(root)
    return Source(root, scan, commit, git_dirty(root) if commit else None)


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
    src_root = source or env.settings.source
    version = validate_version(version) if version is not None else default_version(src_root, ctx.clock())
    src = scan_source(env.settings, source)
    ctx.event(OperationStarted, None, operation="release", env=env.name,
              hosts=tuple(h.name for h in hosts), version=version, dry_run=dry_run)

    async def one(h: HostConfig) -> tuple[HostFinished, int]:
        return await HostDeploy(ctx, h, version, src, dry_run=dry_run, wait_lock=wait_lock).execute()

    results = await run_hosts(ctx, env, hosts, one, version=version)
    finished = tuple(r for r, _ in results)
    out = OperationResult.from_hosts(finished, tuple(c for _, c in results))
    ctx.event(OperationFinished, None, operation="release", ok=out.ok, results=finished)
    return out


async def run_hosts(ctx: Context, env: Environment, hosts, one, *, version: str | None = None):
    """parallel: all at once (bounded); rolling: one by one, stop at the first failure."""
    if env.strategy == "parallel" and len(hosts) > 1:
        gate = asyncio.Semaphore(env.max_parallel)

        async def bounded(h):
            async with gate:
                return await one(h)

        return list(await asyncio.gather(*(bounded(h) for h in hosts)))
    results = []
    for i, h in enumerate(hosts):
        res = await one(h)
        results.append(res)
        if res[0].outcome not in ("ok", "skipped"):
            for rest in hosts[i + 1:]:
                skipped = HostFinished(host=rest.name, at=ctx.clock(), outcome="skipped",
                                       message=f"not started: {h.name} failed (strategy rolling)", version=version)
                ctx.emit(skipped)
                results.append((skipped, 0))
            break
    return results


class HostDeploy(HostRun):
    def __init__(self, ctx: Context, host: HostConfig, version: str, src: Source, *, dry_run: bool, wait_lock: float) -> None:
        super().__init__(ctx, host)
        self.version = version
        self.src = src
        self.dry_run = dry_run
        self.wait_lock = wait_lock
        self.owner = LockOwner.new(ctx.operator, "release", version, ctx.clock())
        self.locked = False
        self.lock_tried = False
        self.created = False  # releases/<version> exists because of us
        self.uploaded = False  # the release tree is complete (until then a failure removes it)
        self.switched = False
        self.previous: str | None = None
        self.listing: list[ReleaseMeta] = []
        self.history_tail = ""
        self.meta: dict = {}
        self.downtime: float | None = None
        self.stop_begun: str | None = None  # host clock when the service stop began

    # ---- the lifecycle ---------------------------------------------------
    async def execute(self) -> tuple[HostFinished, int]:
        heartbeat: asyncio.Task | None = None
        switching: asyncio.Task | None = None
        try:
            await self.lock_phase()
            heartbeat = asyncio.create_task(self.heartbeat_loop())
            await self.setup_phase()
            await self.upload_phase()
            await self.link_build_phase()
            if self.dry_run:
                return self.finish("ok", f"dry run: nothing changed on {self.host.name}", self.version), 0
            # From the switch on, a Ctrl-C must not leave the host half-switched:
            # the rest runs shielded, and the cancellation is re-raised afterwards.
            switching = asyncio.ensure_future(self.switch_and_health())
            outcome, message = await asyncio.shield(switching)
            return self.finish(outcome, message, self.version), 0 if outcome == "ok" else 1
        except PhaseFailed as exc:
            await self.abort(str(exc))
            return self.finish("failed", str(exc), self.version), exc.code
        except HostUnreachable as exc:
            await self.abort(str(exc))
            return self.finish("failed", str(exc), self.version), EXIT_UNREACHABLE
        except asyncio.CancelledError:
            if switching is not None:
                # Cancelled after the switch began: let it finish (it reverts on its own if
                # unhealthy) rather than abort beside it; then pass the cancellation on.
                result = await await_through_cancel(switching)
                if result is not None:
                    outcome, message = result
                    self.finish(outcome, message + " (interrupted: the switch was finished first)", self.version)
                    raise
            await asyncio.shield(self.abort("cancelled by the user"))
            raise
        except Exception as exc:  # a bug or an unexpected host answer: fail this host, keep the rest
            reason = f"unexpected error: {type(exc).__name__}: {exc}"
            await self.abort(reason)
            return self.finish("failed", reason, self.version), 1
        finally:
            if heartbeat:
                heartbeat.cancel()

    async def switch_and_health(self) -> tuple[str, str]:
        try:
            await self.switch_phase()
            healthy = await self.health_phase()
        except HostUnreachable as exc:
            # The connection dropped mid-switch or mid-health: the host finishes (or never
            # began) the switch on its own, unchecked. Reconnect, wait for that switch, and
            # go back to the release known to be good.
            self.log(f"{exc}; reconnecting to revert to {self.previous or 'nothing'}")
            return await self.revert(f"connection lost during the {self.phase} phase")
        if not healthy:
            return await self.revert()
        try:
            await self.cleanup_phase()
        except HostUnreachable as exc:
            # Already live and healthy: only the prune (retried next time) and the unlock were lost.
            try:
                await self.run(release_script(self.paths, self.owner), quiet=True, timeout=30)
                self.locked = False
            except Exception:
                pass
            self.ctx.event(HostWarning, self.host.name, message=f"cleanup interrupted: {exc}")
        return "ok", f"{self.version} is live" + (f" (downtime {self.downtime:.2f}s)" if self.downtime is not None else "")

    async def lock_phase(self) -> None:
        async with self.timed("lock") as info:
            if self.dry_run:
                res = await self.run(preflight_script(self.host), quiet=True)
                self.check_preflight(res.stdout, res.exit_status)
                info["detail"] = "dry run: preflight only, lock not taken"
                return
            deadline = self.ctx.clock() + self.wait_lock
            while True:
                script = preflight_script(self.host) + acquire_script(self.paths, self.owner, self.ctx.clock())
                self.lock_tried = True  # from here the lock may be ours even if the answer is lost
                res = await self.run(script, quiet=True)
                self.lock_tried = False  # the answer arrived: we know whether it is ours
                self.check_preflight(res.stdout, res.exit_status)
                if res.exit_status == 0:
                    self.locked = True
                    return
                if res.exit_status != 3:
                    raise PhaseFailed(f"taking the lock failed: {res.stderr.strip() or res.exit_status}")
                info = parse_owner(res.stdout)
                holder = describe_holder(info, self.ctx.clock())
                if self.ctx.clock() >= deadline:
                    hint = stale_hint(info, self.host.env, self.host.name, "wait for it (--wait-lock 2m), or ")
                    raise PhaseFailed(holder, code=EXIT_LOCKED, hint=hint)
                self.log(f"{holder}; waiting")
                await asyncio.sleep(LOCK_POLL)

    def check_preflight(self, stdout: str, status: int) -> None:
        report = parse_preflight(stdout)
        for w in report.warnings:
            self.ctx.event(HostWarning, self.host.name, message=w)
        if report.failures:
            raise PhaseFailed("preflight failed: " + "; ".join(report.failures), code=EXIT_UNREACHABLE)

    async def setup_phase(self) -> None:
        async with self.timed("setup") as info:
            p = self.paths
            rel = p.release(self.version)
            self.meta = {
                "version": self.version, "state": "uploading", "operator": self.ctx.operator,
                "started_at": self.ctx.clock(), "deployed_at": None, "finished_at": None,
                "commit": self.src.commit, "dirty": self.src.dirty, "image": self.image_tag(), "files": self.src.scan.files,
                "bytes": self.src.scan.bytes, "bytes_sent": None, "phases": {}, "downtime": None,
                "health": None, "error": None, "previous": None,
            }
            probe = release_listing_script(p, manifest_of_current=True)
            if self.dry_run:
                res = await self.run(f"if [ -e {q(rel)} ] || [ -L {q(rel)} ]; then exit 5; fi\n" + probe, quiet=True)
            else:
                shared_dirs = " ".join(q(f"{p.shared}/{d}") for d in self.settings.shared.dirs)
                create = (
                    f"mkdir -p {q(p.releases)} {q(p.shared)} {shared_dirs}\n"
                    f"if [ -e {q(rel)} ] || [ -L {q(rel)} ]; then exit 5; fi\n"
                    f"mkdir {q(rel)} {q(rel + '/.capview')} {q(rel + '/.capview/incoming')}\n"
                    + write_json(rel + "/.capview/release.json", self.meta)
                )
                res = await self.run(create + probe, quiet=True)
            if res.exit_status == 5:
                raise PhaseFailed(
                    f"release {self.version} already exists (releases are immutable)",
                    hint=f"pick a new version, or switch to it with: capview rollback {self.host.env or 'ENV'} --to {self.version}",
                )
            if res.exit_status != 0:
                raise PhaseFailed(f"setup failed: {res.stderr.strip() or 'exit ' + str(res.exit_status)}")
            self.created = not self.dry_run
            listing = parse_release_listing(res.stdout)
            self.previous = listing.current
            self.listing = list(listing.releases)
            self.history_tail = listing.history
            self.prev_manifest = parse_manifest(listing.current_manifest)
            self.meta["previous"] = self.previous
            info["detail"] = f"previous release: {self.previous or 'none (first deploy)'}"

    async def upload_phase(self) -> None:
        async with self.timed("upload") as info:
            delta: Delta = diff(self.src.scan.entries, self.prev_manifest if self.previous else {})
            total_files, total_bytes = delta.send_files, delta.send_bytes
            for note in self.src.scan.skipped:
                self.ctx.event(HostWarning, self.host.name, message=note)
            script = upload_script(self.paths, self.version, self.previous)
            if self.dry_run:
                self.ctx.event(DryRunScript, self.host.name, phase="upload", script=script)
                info["detail"] = f"would send {plural(total_files, 'changed file')} ({total_bytes} bytes), hard-link the rest"
                return
            self.ctx.event(UploadProgress, self.host.name, files_done=0, files_total=total_files,
                           bytes_done=0, bytes_total=total_bytes)

            def progress(files: int, size: int) -> None:
                self.ctx.event(UploadProgress, self.host.name, files_done=files, files_total=total_files,
                               bytes_done=size, bytes_total=total_bytes)

            before = self.bytes_sent
            if self.settings.upload.method == "rsync":
                await self.rsync_upload()
                self.uploaded = True
                info["detail"] = f"rsync --link-dest {self.previous or '(first release)'}"
                return
            res = await self.send_parts(delta, progress)
            if res.exit_status == DRIFT:  # issue 13: the previous release changed in place: link nothing, send all
                self.ctx.event(HostWarning, self.host.name, message=drift_warning(res.stdout, delta, self.previous, self.host.env or "ENV"))
                delta = diff(self.src.scan.entries, {})
                total_files, total_bytes = delta.send_files, delta.send_bytes
                res = await self.send_parts(delta, progress, previous=None)
            if res.exit_status != 0:
                reason = cause_line(res.stderr) or f"exit {res.exit_status}"
                marks = parse_markers(res.stdout)
                free = marks.get("free_kb", [""])[-1].strip()
                inodes = marks.get("free_inodes", [""])[-1].split()
                if ("No space left" in reason and len(inodes) == 2 and all(x.isdigit() for x in inodes)
                        and int(inodes[0]) > 0 and int(inodes[1]) < total_files + 16):
                    reason = (f"no free inodes on {self.host.name}: {inodes[1]} of {inodes[0]} left for "
                              f"{self.settings.deploy_path} ({free or '?'} KiB of blocks free; this release "
                              f"creates {total_files} new files; see df -i): {reason}")
                elif free.isdigit() and int(free) * 1024 < total_bytes and "No space left" not in reason:
                    reason = (f"no space left on {self.host.name} ({free} KiB free for {self.settings.deploy_path}, "
                              f"this release sends {total_bytes} bytes): {reason}")
                raise PhaseFailed(f"upload failed: {reason}")
            self.meta["bytes_sent"] = self.bytes_sent - before
            self.uploaded = True
            linked = self.src.scan.files - total_files
            info["detail"] = f"{plural(total_files, 'file')} sent ({self.bytes_sent - before} bytes), {linked} hard-linked"

    async def send_parts(self, delta: Delta, progress, previous: str | None | bool = True) -> RunResult:
        """One tar stream, or for a large upload a few in parallel channels (part 0's
        script waits for the others, then assembles the release)."""
        parts = split_delta(delta)
        previous = self.previous if previous is True else previous
        main_script = upload_script(self.paths, self.version, previous, parts=len(parts))
        if len(parts) == 1:
            return await self.run(main_script, stdin=tar_stream(self.src.root, delta, progress))
        done = [(0, 0)] * len(parts)

        def part_progress(i: int):
            def report(files: int, size: int) -> None:
                done[i] = (files, size)
                progress(sum(f for f, _ in done), sum(b for _, b in done))
            return report

        main = asyncio.ensure_future(self.run(
            main_script, stdin=tar_stream(self.src.root, delta, part_progress(0), entries=parts[0])))
        extras = [self.run(part_script(self.paths, self.version, i),
                           stdin=tar_stream(self.src.root, delta, part_progress(i), entries=parts[i], meta=False))
                  for i in range(1, len(parts))]
        try:
            results = await asyncio.gather(*extras)
            failed = next((r for r in results if r.exit_status != 0), None)
        except BaseException:
            await cancel_and_wait(main)
            raise
        if failed is not None:
            await cancel_and_wait(main)  # its remote process is killed with the channel
            return failed
        return await main

    async def rsync_upload(self) -> None:
        s = self.settings
        rc, err = await rsync_upload(self.host, str(self.src.root), self.version, self.previous,
                                     exclude=tuple(s.exclude), reserved=tuple(s.shared.dirs) + tuple(s.shared.files))
        if rc != 0:
            raise PhaseFailed(f"rsync failed (exit {rc}): {last_line(err)}")
        res = await self.run(write_manifest_script(self.paths, self.version, self.previous), stdin=manifest_bytes(self.src.scan))
        if res.exit_status != 0:
            raise PhaseFailed(f"writing the manifest failed: {last_line(res.stderr)}")

    async def link_build_phase(self) -> None:
        rel = self.paths.release(self.version)
        link = self.link_script(rel)
        build = self.build_script(rel)
        # issue 13: after the build, in the same script: the previous release's shared files
        # unchanged, the release as built recorded (for verify), references to other releases
        after = after_build_script(self.paths, self.version, self.previous, record=build is not None)
        if self.dry_run:
            for phase, script in (("link", link), ("build", build or "# no build configured\n")):
                async with self.timed(phase) as info:
                    self.ctx.event(DryRunScript, self.host.name, phase=phase, script=script)
                    info["detail"] = "dry run"
            self.emit_later_dry_scripts()
            return
        if build is None:
            async with self.timed("link"):
                res = await self.run(link + after + self.state_script("ready"), on_marker=self.on_link_marker)
                if res.exit_status != 0:
                    self.uploaded = False  # issue 13: a refused link removes the release
                    raise PhaseFailed(f"linking shared paths failed: {last_line(res.stderr)}")
                self.check_after_build(res.stdout)
            async with self.timed("build") as info:
                info["detail"] = "no build configured"
            return
        # One round trip for both: the '@@cv linked' marker ends the link phase.
        self.phase_start("link")

        def on_marker(name: str, value: str) -> None:
            self.on_link_marker(name, value)
            if name == "linked":
                self.phase_end("link", True)
                self.phase_start("build")

        try:
            res = await self.run(link + f"printf '%s linked\\n' {MARK}\n" + self.state_script("building") + build + after,
                                 on_marker=on_marker)
        except BaseException as exc:
            self.phase_end(self.phase or "link", False, f"{type(exc).__name__}: {exc}")
            raise
        if self.phase == "link":  # never saw the marker: linking failed
            reason = f"linking shared paths failed: {last_line(res.stderr)}"
            self.phase_end("link", False, reason)
            self.uploaded = False  # issue 13: a refused link removes the release
            raise PhaseFailed(reason)
        rc = parse_markers(res.stdout).get("build_rc", ["1"])[-1].strip()
        try:
            self.check_after_build(res.stdout)
        except PhaseFailed as exc:
            self.phase_end("build", False, str(exc))
            raise
        if res.exit_status != 0 or rc != "0":
            reason = f"build failed (exit {rc}); see releases/{self.version}/.capview/build.log"
            self.phase_end("build", False, reason)
            raise PhaseFailed(reason, hint=readonly_hint(res.stdout))
        tag = self.image_tag() if build_tool(self.settings) in ("podman", "docker", "buildah") else None
        self.phase_end("build", True, f"image {tag} built" if tag else "build command succeeded")

    def check_after_build(self, stdout: str) -> None:
        """issue 13: fail when the build wrote into the previous release's files; warn
        (and record in release.json and history) when this release names another one."""
        prev_meta = next((m.raw for m in self.listing if m.version == self.previous), None)
        kept = {p for p, e in self.src.scan.entries.items() if self.prev_manifest.get(p) == e}
        found = parse_after_build(parse_markers(stdout), self.src.scan.entries,
                                  inherited_references(prev_meta, kept, self.version))
        if found.references:
            self.meta["references"] = [{"release": o, "path": p} for o, p in found.references]
        warnings, failure = judge_after_build(found, self.version, self.previous, self.host.env or "ENV", self.host.name)
        for w in warnings:
            self.ctx.event(HostWarning, self.host.name, message=w)
        if failure:
            raise PhaseFailed(failure[0], hint=failure[1])

    def on_link_marker(self, name: str, value: str) -> None:
        if name == "warn":
            self.ctx.event(HostWarning, self.host.name, message=value)

    def link_script(self, rel: str) -> str:
        """ln -s ../../shared/<p> <p> for every shared path (shared_links.py: never through a symlink)."""
        return link_shared_script(rel, self.version, self.settings, self.paths.shared)

    def build_script(self, rel: str) -> str | None:
        b = self.settings.build
        if b is None:
            return None
        cmd = b.command.format(image=q(b.image or ""), version=q(self.version), release_path=q(rel))
        log = f"{rel}/.capview/build.log"
        # The exit status leaves the pipeline on fd 3 (POSIX sh has no pipefail), so build.log
        # holds only the build's output; the marker then starts a line of its own even
        # when the output does not end with a newline.
        return (
            f"{{ cv_rc=$( {{ {{ ( cd {q(rel)} && {cmd} ) 2>&1 3>&- 4>&- && rc=0 || rc=$?; printf '%s' \"$rc\" >&3; }}"
            f" | tee {q(log)} >&4 3>&-; }} 3>&1 ); }} 4>&1\n"
            f"[ -z \"$(tail -c 1 {q(log)} 2>/dev/null)\" ] || echo\n"
            f"printf '%s build_rc %s\\n' {MARK} \"${{cv_rc:-1}}\"\n"
        )

    def state_script(self, state: str, **extra) -> str:
        """Rewrite this release's release.json (atomically) in ``state``; self.meta is left as is."""
        doc = {**self.meta, "state": state, "phases": dict(self.phases), **extra}
        return write_json(self.paths.release(self.version) + "/.capview/release.json", doc)

    def image_tag(self) -> str | None:
        b = self.settings.build
        return f"{b.image}:{self.version}" if b and b.image else None

    def emit_later_dry_scripts(self) -> None:
        for phase, script in (("switch", sw.switch_script(self.settings, self.version)),
                              ("health", sw.health_script(self.settings))):
            self.ctx.event(DryRunScript, self.host.name, phase=phase, script=script)

    async def switch_phase(self) -> None:
        async with self.timed("switch") as info:
            marks: dict[str, str] = {}

            def on_marker(name: str, value: str) -> None:
                marks[name] = value

            res = await self.run(sw.switch_script(self.settings, self.version), on_marker=on_marker)
            self.switched = "switched" in marks
            if "downtime" in marks:
                self.downtime = float(marks["downtime"])
                self.ctx.event(DowntimeMeasured, self.host.name, seconds=self.downtime)
            self.stop_begun = marks.get("stop_begun")
            if res.exit_status != 0 and not self.switched:
                # stop (or the swap) failed: current still names the old release; bring it back up.
                await self.run(sw.service_start(self.settings), quiet=True)
                raise PhaseFailed(f"switch failed before current moved: {last_line(res.stderr)}")
            info["detail"] = f"current -> releases/{self.version}" + (
                f", downtime {self.downtime:.2f}s" if self.downtime is not None else "") + sw.held_note(marks)
            if res.exit_status != 0:
                info["detail"] += f"; service start failed: {last_line(res.stderr)}"
                info["ok"] = False
                self.start_failed = True

    async def health_phase(self) -> bool:
        async with self.timed("health") as info:
            if getattr(self, "start_failed", False):
                info["detail"] = "service did not start"
                info["ok"] = False
                return False
            now = self.ctx.clock()
            live = self.state_script("live", deployed_at=now, downtime=self.downtime, health="ok",
                                     finished_at=now)
            superseded = ""
            prev_meta = next((m for m in self.listing if m.version == self.previous), None)
            if prev_meta is not None and prev_meta.raw is not None:
                superseded = write_json(self.paths.release(self.previous) + "/.capview/release.json",
                                        {**prev_meta.raw, "state": "superseded"})
            record = self.history_record("release", "ok", to=self.version)
            measure, numbers = sw.unavailable_since(self.stop_begun)
            on_ok = live + superseded + measure + append_line(self.paths.history, record, numbers)
            res = await self.run(wrap_health(sw.health_script(self.settings), on_ok), quiet=True)
            detail = parse_markers(res.stdout).get("health", [""])[-1]
            healthy = res.exit_status == 0
            info["detail"] = ("healthy " if healthy else "unhealthy: last status ") + detail
            info["ok"] = healthy
            return healthy

    async def revert(self, reason: str = "health check failed") -> tuple[str, str]:
        """Health failed: switch back to the previous release, restart, mark this one failed."""
        rel = self.paths.release(self.version)
        capture = (sw.wait_for_switch(self.paths)
                   + f"{{ {sw.service_logs(self.settings).strip()} ; }} > {q(rel + '/.capview/health.log')} 2>&1 || true\n")
        failed = self.state_script("failed", health="failed", downtime=self.downtime, finished_at=self.ctx.clock(),
                                   error=reason)
        if self.previous:
            record = self.history_record("release", "rolled_back", to=self.previous, error=reason)
            # Each step in a subshell: whatever happens, history and unlock still run.
            script = (capture + failed
                      + f"( {sw.switch_script(self.settings, self.previous)} ) || printf '%s warn %s\\n' {MARK} 'restarting the previous release failed'\n"
                      + f"( {sw.health_script(self.settings)} ) || printf '%s warn %s\\n' {MARK} 'the previous release is not healthy either'\n"
                      + append_line(self.paths.history, record) + release_script(self.paths, self.owner))
            what = f"{reason}; rolled back to {self.previous}"
        else:
            record = self.history_record("release", "failed", error=f"{reason} (first release; nothing to roll back to)")
            script = (capture + failed + sw.service_stop(self.settings) + f"rm -f {q(self.paths.current)}\n"
                      + append_line(self.paths.history, record) + release_script(self.paths, self.owner))
            what = f"{reason}; first release, service stopped and current removed"
        self.log(f"{reason}; capturing service logs and reverting to {self.previous or 'nothing'}")
        res = await self.run(script, quiet=True)
        self.locked = False
        for w in parse_markers(res.stdout).get("warn", []):
            self.ctx.event(HostWarning, self.host.name, message=w)
            what += f" ({w})"
        if res.exit_status != 0:
            return "failed", what + f" - but the revert itself failed: {last_line(res.stderr)}; check the host"
        return "rolled_back", what

    async def cleanup_phase(self) -> None:
        async with self.timed("cleanup") as info:
            frames = Frames.new()
            record = {"at": self.ctx.clock(), "op": "prune", "host": self.host.name, "operator": self.ctx.operator,
                      "reason": f"after release {self.version}", "outcome": "ok"}
            script, deleting = cleanup_script(self.host, self.listing, self.version, self.previous,
                                              record=record, frames=frames)
            if not deleting:
                script = finish_trash_script(self.settings.deploy_path)
            # after the lock is released: warm the usage cache so the next listing is cheap
            res = await self.run(script + release_script(self.paths, self.owner) + "cv_rc=$?\n"
                                 + refresh_script(self.paths.root) + 'exit "$cv_rc"\n', quiet=True)
            self.locked = False
            run = parse_prune(res.stdout, frames) if deleting else None
            # Never fail a deploy whose switch already happened: problems are warnings.
            if res.exit_status != 0:
                self.ctx.event(HostWarning, self.host.name, message=f"cleanup: {last_line(res.stderr) or res.exit_status}")
            for w in (run.warnings if run else ()):
                self.ctx.event(HostWarning, self.host.name, message=f"cleanup: {w}")
            if run and run.deleted:
                info["detail"] = f"pruned {', '.join(run.deleted)}, freed {run.freed} bytes"
            else:
                info["detail"] = "nothing to prune"

    # ---- failure paths ---------------------------------------------------
    async def abort(self, reason: str) -> None:
        """Before the switch: mark the release failed (or remove it if never filled), unlock."""
        if self.dry_run:
            return
        parts = []
        if self.created:
            parts.append(self.state_script("failed", error=reason, finished_at=self.ctx.clock()))
            # A release cut short during upload is removed: it was never whole.
            if not self.uploaded:
                parts = [f"rm -rf {q(self.paths.release(self.version))}\n"]
        if self.locked:
            parts.append(append_line(self.paths.history, self.history_record("release", "failed", error=reason)))
        if self.locked or self.lock_tried:
            # Removes the lock only if owner.json carries our token: safe when we do not
            # know whether the lock script ran (the connection dropped, or Ctrl-C, mid-phase).
            parts.append(release_script(self.paths, self.owner))
        if not parts:
            return
        try:
            await self.run("".join(parts), quiet=True, timeout=30)
            self.locked = False
        except Exception as exc:  # the host went away: the lock stays, say how to clear it
            self.log(f"could not clean up after failure ({exc}); if the lock remains: capview unlock {self.host.env or 'ENV'} --host {self.host.name} --force")

    async def heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_EVERY)
            if self.locked:
                try:
                    await self.ctx.transport.run(self.host, heartbeat_script(self.paths, self.owner, self.ctx.clock()))
                except Exception:
                    pass  # a missed heartbeat only makes the lock look older

    def history_record(self, op: str, outcome: str, **extra) -> dict:
        return {
            "at": self.ctx.clock(), "op": op, "host": self.host.name, "operator": self.ctx.operator,
            "version": self.version, "from": self.previous, "outcome": outcome, "downtime": self.downtime,
            "phases": dict(self.phases), **extra,
            **({"references": self.meta["references"]} if self.meta.get("references") else {}),  # issue 13
        }


async def cancel_and_wait(task: asyncio.Future) -> None:
    task.cancel()
    try:
        await task
    except BaseException:  # cancelled, or it failed first: either way it is over
        pass


def wrap_health(health: str, on_ok: str) -> str:
    """Run the health poll in a subshell; on success run ``on_ok`` (mark live, history)."""
    return f"if ( {health} ); then\n{on_ok}else exit 1; fi\n"


def cause_line(text: str) -> str:
    """The line that says why (tar's last line is only "Exiting with failure status ...")."""
    lines = [l.strip() for l in text.strip().splitlines() if l.strip()]
    for l in lines:
        if "No space left on device" in l or "Disk quota exceeded" in l:
            return l
    causes = [l for l in lines if "Exiting with failure status" not in l]
    return (causes or lines or [""])[-1]


def last_line(text: str) -> str:
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1].strip() if lines else ""
