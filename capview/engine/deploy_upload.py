"""HostDeploy's upload streams (deploy.py): one tar stream, or a big upload's parts over
a few channels, or rsync; and why an upload failed, in the operator's words."""

from __future__ import annotations

import asyncio

from capview.engine.compress import Packer
from capview.engine.hostrun import HostRun, PhaseFailed
from capview.engine.manifest import Delta
from capview.engine.rsync_upload import manifest_bytes, rsync_upload
from capview.engine.scripts.shell import last_line, parse_markers
from capview.engine.scripts.upload import part_script, upload_and_link, upload_script, write_manifest_script
from capview.engine.upload import split_delta, tar_stream
from capview.remote.transport import RunResult


class UploadStreams(HostRun):
    """Needs HostDeploy's ``state``, ``src``, ``version`` and ``upload_frames``."""

    def upload_failure(self, res: RunResult, total_files: int, total_bytes: int) -> str:
        """Why the upload failed, naming a full disk or a full inode table as such."""
        reason = cause_line(res.stderr) or f"exit {res.exit_status}"
        marks = parse_markers(res.stdout, self.upload_frames)
        free = marks.get("free_kb", [""])[-1].strip()
        inodes = marks.get("free_inodes", [""])[-1].split()
        if ("No space left" in reason and len(inodes) == 2 and all(x.isdigit() for x in inodes)
                and int(inodes[0]) > 0 and int(inodes[1]) < total_files + 16):
            return (f"no free inodes on {self.host.name}: {inodes[1]} of {inodes[0]} left for "
                    f"{self.settings.deploy_path} ({free or '?'} KiB of blocks free; this release "
                    f"creates {total_files} new files; see df -i): {reason}")
        if free.isdigit() and int(free) * 1024 < total_bytes and "No space left" not in reason:
            return (f"no space left on {self.host.name} ({free} KiB free for {self.settings.deploy_path}, "
                    f"this release sends {total_bytes} bytes): {reason}")
        return reason

    async def send_parts(self, delta: Delta, progress, previous: str | None | bool = True,
                         gzip: bool = False, then: str = "", on_frame=None, packer: Packer | None = None) -> RunResult:
        """One tar stream, or for a large upload a few in parallel channels (part 0's
        script waits for the others, then assembles the release). ``gzip``: compressed;
        ``packer``: packed piece by piece, one pace judged over every part (compress.Packer).
        ``then`` (issue 21): sh that the (first) stream's script runs once the upload succeeded
        (upload_and_link: the link and build; ``on_frame`` gets its frames as they come); in a
        split upload, part 0's script runs it once every part is in, so no trip of its own."""
        parts = split_delta(delta)
        previous = self.state.previous if previous is True else previous
        main_script = upload_script(self.paths, self.version, previous, self.upload_frames, parts=len(parts), gzip=gzip)
        if then:  # part 0 links once every part is in (it waits for them before assembling)
            main_script = upload_and_link(self.upload_frames, main_script, then)
        if len(parts) == 1:
            return await self.run(main_script, stdin=tar_stream(self.src.root, delta, progress, gzip=gzip, packer=packer),
                                  frames=self.upload_frames, on_frame=on_frame)
        done = [(0, 0)] * len(parts)

        def part_progress(i: int):
            def report(files: int, size: int) -> None:
                done[i] = (files, size)
                progress(sum(f for f, _ in done), sum(b for _, b in done))
            return report

        main = asyncio.ensure_future(self.run(
            main_script, stdin=tar_stream(self.src.root, delta, part_progress(0), entries=parts[0], gzip=gzip,
                                                 packer=packer),
            frames=self.upload_frames, on_frame=on_frame))
        extras = [self.run(part_script(self.paths, self.version, i, gzip=gzip),
                           stdin=tar_stream(self.src.root, delta, part_progress(i), entries=parts[i], meta=False,
                                            gzip=gzip, packer=packer))
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
        rc, err = await rsync_upload(self.host, str(self.src.root), self.version, self.state.previous,
                                     exclude=tuple(s.exclude), reserved=tuple(s.shared.dirs) + tuple(s.shared.files))
        if rc != 0:
            raise PhaseFailed(f"rsync failed (exit {rc}): {last_line(err)}")
        res = await self.run(write_manifest_script(self.paths, self.version, self.state.previous),
                             stdin=manifest_bytes(self.src.scan))
        if res.exit_status != 0:
            raise PhaseFailed(f"writing the manifest failed: {last_line(res.stderr)}")


async def cancel_and_wait(task: asyncio.Future) -> None:
    task.cancel()
    try:
        await task
    except BaseException:  # cancelled, or it failed first: either way it is over
        pass


def cause_line(text: str) -> str:
    """The line that says why (tar's last line is only "Exiting with failure status ...")."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    for line in lines:
        if "No space left on device" in line or "Disk quota exceeded" in line:
            return line
    causes = [line for line in lines if "Exiting with failure status" not in line]
    return (causes or lines or [""])[-1]
