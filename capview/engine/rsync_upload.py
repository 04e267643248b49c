"""``upload: {method: rsync}``: rsync over OpenSSH with ``--link-dest`` to the previous release.

The tar stream (upload.py) is the default and is faster on slow links; rsync is
here for people who already trust it. Unchanged files become hard links only
when their content matches (``--checksum``); only what the source lists is sent
or linked (the release dir starts empty). Files arrive read-only (``--chmod=Fa-w``),
as with the tar upload; afterwards one script stores the manifest, gives each
``upload.writable`` file (a manifest mode with write bits) a private copy with its
mode, and records the shared files' stat lines for the check after the build.
"""

from __future__ import annotations

import asyncio
import os

from capview.config import HostConfig
from capview.engine.layout import HostPaths
from capview.engine.manifest import Scan, manifest_text
from capview.engine.scripts.shell import q


def ssh_command(host: HostConfig) -> list[str]:
    """The ``ssh`` argv rsync runs: same identity, known_hosts and checking as capview."""
    ssh = host.settings.ssh
    argv = ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
            "-o", f"ConnectTimeout={int(ssh.connect_timeout)}"]
    if ssh.config_file:
        argv += ["-F", os.path.expanduser(ssh.config_file)]
    if ssh.known_hosts:
        argv += ["-o", f"UserKnownHostsFile={os.path.expanduser(ssh.known_hosts)}"]
    if ssh.identity_file:
        argv += ["-i", os.path.expanduser(ssh.identity_file), "-o", "IdentitiesOnly=yes"]
    if host.port:
        argv += ["-p", str(host.port)]
    return argv


def rsync_argv(host: HostConfig, scan_root: str, version: str, previous: str | None,
               exclude: tuple[str, ...], reserved: tuple[str, ...]) -> list[str]:
    paths = HostPaths(host.settings.deploy_path)
    target = f"{host.user + '@' if host.user else ''}{host.host}:{paths.release(version)}/"
    # --checksum: rsync's quick check (size + mtime) would hard-link a changed file that
    # kept both (a build in the same second, restored mtimes): the release must match
    # its manifest, so content decides.
    # --chmod=Fa-w: uploaded files are read-only (issue 13), so --link-dest only ever
    # links a read-only inode; writable ones get their own copy afterwards.
    argv = ["rsync", "-a", "--checksum", "--chmod=Fa-w", "--delete", "--exclude=/.capview"]
    argv += [f"--exclude={p}" for p in exclude]
    argv += [f"--exclude=/{p}" for p in reserved]
    if previous:
        argv.append(f"--link-dest={paths.release(previous)}/")
    # rsync joins -e into one string and splits it on spaces: quote each word.
    argv += ["-e", " ".join(q(a) for a in ssh_command(host)), scan_root.rstrip("/") + "/", target]
    return argv


async def rsync_upload(host: HostConfig, scan_root: str, version: str, previous: str | None, *,
                       exclude: tuple[str, ...], reserved: tuple[str, ...]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        *rsync_argv(host, scan_root, version, previous, exclude, reserved),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )
    try:
        _, err = await proc.communicate()
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, err.decode("utf-8", "replace")


def manifest_bytes(scan: Scan) -> bytes:
    return manifest_text(scan.entries).encode("utf-8", "surrogateescape")
