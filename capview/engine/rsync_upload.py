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
from capview.engine.upload import AWK_HELPERS, SHARED_STAT


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


# awk over the manifest: "MODE\0./PATH\0" for every valid regular-file line with a write bit.
WRITABLE_AWK = AWK_HELPERS + r"""
$1 == "f" { p = un($5); if (valid(p) && int(oct($2) / 2) % 2 + int(oct($2) / 16) % 2 + int(oct($2) / 128) % 2) printf "%s%c./%s%c", $2, 0, p, 0 }
"""


def write_manifest_script(paths: HostPaths, version: str, previous: str | None = None) -> str:
    """Store the manifest sent on stdin as the release's manifest.tsv (atomic rename),
    copy the writable files out of any hard link, record the shared files' stat."""
    rel = paths.release(version)
    path = f"{rel}/.capview/manifest.tsv"
    lines = [
        f"cat > {q(path + '.tmp')} && mv -f {q(path + '.tmp')} {q(path)}",
        "export LC_ALL=C",
        f"cd {q(rel)}",
        f"awk {q(WRITABLE_AWK)} {q(path)} | xargs -0 -r -n 2 sh -c "
        "'cp -p -- \"$2\" \"$2.cv-tmp\" && mv -f -- \"$2.cv-tmp\" \"$2\" && chmod -- \"$1\" \"$2\"' sh",
        ": > .capview/shared.nul; : > .capview/shared.stat",
    ]
    if previous:
        lines += [
            "find . -path ./.capview -prune -o \\( -type f -o -type l \\) -links +1 -print0 > .capview/shared.nul",
            f"(cd {q(paths.release(previous))} && xargs -0 -r stat -c '{SHARED_STAT}' -- < {q(rel + '/.capview/shared.nul')})"
            " > .capview/shared.stat 2>/dev/null || { : > .capview/shared.nul; : > .capview/shared.stat; }",
        ]
    return "\n".join(lines) + "\n"


def manifest_bytes(scan: Scan) -> bytes:
    return manifest_text(scan.entries).encode("utf-8", "surrogateescape")
