"""The release inspector's reads: one directory level, a text file, the logs, a diff.

Every path is checked twice: locally (relative, no ``..``) and on the host,
where the directory is resolved with ``cd -P`` and must still be inside the
release, so a symlink such as ``data -> ../../shared/data`` is shown but never
entered or read through (shared/ holds secrets).
"""

from __future__ import annotations

from dataclasses import dataclass

from capview.config import HostConfig
from capview.engine.context import Context
from capview.engine.layout import validate_version
from capview.engine.manifest import Entry as ManifestEntry
from capview.engine.manifest import parse_manifest, safe_relpath
from capview.engine.scripts import inspect as sh
from capview.engine.scripts.inspect import LOG_LIMIT
from capview.engine.scripts.shell import Frames, bodies, kinds, one_line
from capview.errors import CapviewError, RemoteError

_TYPES = {"f": "file", "d": "dir", "l": "link"}


class InspectError(CapviewError):
    """A path that is missing, not text, or outside the release."""


@dataclass(frozen=True)
class DirEntry:
    name: str
    type: str  # file | dir | link | other
    size: int
    mode: int
    link_target: str | None = None


@dataclass(frozen=True)
class Change:
    path: str
    old: ManifestEntry
    new: ManifestEntry


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    added: tuple[ManifestEntry, ...]  # in b only
    removed: tuple[ManifestEntry, ...]  # in a only
    changed: tuple[Change, ...]  # content, type, mode or link target differ
    unchanged: int = 0


def _relpath(relpath: str) -> str:
    rel = relpath.strip("/")
    if rel in ("", "."):
        return ""
    if not safe_relpath(rel):
        raise InspectError(f"path {relpath!r} must stay inside the release")
    return rel


def _check(kinds: set[str], version: str, relpath: str) -> None:
    if "missing" in kinds:
        raise InspectError(f"no release {version}")
    if "notfound" in kinds:
        raise InspectError(f"{relpath or '/'}: no such path in {version}")
    if "escapes" in kinds:
        raise InspectError(f"{relpath}: leads outside the release (a symlink); not followed")
    if "notfile" in kinds:
        raise InspectError(f"{relpath}: not a regular file (links are shown, not read through)")
    if "binary" in kinds:
        raise InspectError(f"{relpath}: binary file, not shown")


async def _run(ctx: Context, host: HostConfig, script: str, frames: Frames) -> list[tuple[str, str, str]]:
    res = await ctx.transport.run(host, frames.prelude() + "export LC_ALL=C\n" + script)
    if not res.ok:
        raise RemoteError(one_line(res.stderr or f"inspector script exited {res.exit_status}"))
    return frames.parse(res.stdout)


def parse_entries(body: str) -> list[DirEntry]:
    """``%y\\0%s\\0%m\\0%P\\0%l\\0`` records: NUL-separated, so any name parses."""
    fields = body.split("\0")
    out: list[DirEntry] = []
    for i in range(0, len(fields) - 4, 5):
        y, size, mode, name, link = fields[i: i + 5]
        try:
            out.append(DirEntry(name, _TYPES.get(y, "other"), int(size), int(mode, 8), link if y == "l" else None))
        except ValueError:
            continue
    return sorted(out, key=lambda e: (e.type != "dir", e.name))


async def list_dir(ctx: Context, host: HostConfig, version: str, relpath: str = "") -> list[DirEntry]:
    """One directory level of a release (dirs first). Links are listed, not followed."""
    validate_version(version)
    rel = _relpath(relpath)
    frames = Frames.new()
    script = sh.list_dir(host.settings.deploy_path, version, rel)
    parts = await _run(ctx, host, script, frames)
    _check(kinds(parts), version, rel)
    return next((parse_entries(b) for k, _, b in parts if k == "list"), [])


async def read_text(ctx: Context, host: HostConfig, version: str, relpath: str, limit: int = LOG_LIMIT) -> str:
    """A text file of a release (first ``limit`` bytes, with a note when cut).
    Refuses binary files, symlinks and paths leaving the release."""
    validate_version(version)
    rel = _relpath(relpath)
    if not rel:
        raise InspectError("a file path is required")
    frames = Frames.new()
    script = sh.read_text(host.settings.deploy_path, version, rel, limit)
    parts = await _run(ctx, host, script, frames)
    _check(kinds(parts), version, rel)
    got = bodies(parts)
    size = int(got.get("size", "0").strip() or 0)
    text = got.get("text", "")  # the framing consumes its own newlines: this is the content
    if size > limit:
        text += f"\n[... cut: showing the first {limit} of {size} bytes]"
    return text


@dataclass(frozen=True)
class FilePair:
    """One file as it is in two releases, for a diff: None where it does not exist."""

    path: str
    a: str
    b: str
    old: str | None
    new: str | None


async def read_pair(ctx: Context, host: HostConfig, a: str, b: str, relpath: str,
                    limit: int = LOG_LIMIT) -> FilePair:
    """A text file of release ``a`` and of release ``b`` in one round trip (the compare
    view's per-file diff). Each side gets read_text's checks; a side where the file does
    not exist is None (added or removed)."""
    validate_version(a)
    validate_version(b)
    rel = _relpath(relpath)
    if not rel:
        raise InspectError("a file path is required")
    frames = Frames.new()
    script = sh.read_pair(host.settings.deploy_path, a, b, rel, limit)
    sides: list[dict[str, str]] = [{}, {}]
    current: dict[str, str] | None = None
    for kind, arg, body in await _run(ctx, host, script, frames):
        if kind == "side" and arg in ("0", "1"):
            current = sides[int(arg)]
        elif current is not None and kind != "end":
            current[kind] = body
    texts: list[str | None] = []
    for version, got in zip((a, b), sides):
        gone = {"absent", "notfound"}  # no such file, or no such directory, on this side
        _check(set(got) - gone, version, rel)
        if gone & set(got) or "text" not in got:
            texts.append(None)
            continue
        text, size = got["text"], int(got.get("size", "0").strip() or 0)
        if size > limit:
            text += f"\n[... cut: showing the first {limit} of {size} bytes]"
        texts.append(text)
    return FilePair(rel, a, b, texts[0], texts[1])


async def release_logs(ctx: Context, host: HostConfig, version: str) -> dict[str, str | None]:
    """{"build": ..., "health": ...} from the release's .capview (None when absent; tails of 256 KB)."""
    frames = Frames.new()
    script = sh.release_logs(host.settings.deploy_path, version)
    got = bodies(await _run(ctx, host, script, frames))
    return {n: got.get(n) for n in ("build", "health")}


def diff_manifests(a: str, ma: dict[str, ManifestEntry], b: str, mb: dict[str, ManifestEntry]) -> Comparison:
    added = tuple(mb[p] for p in sorted(mb.keys() - ma.keys()))
    removed = tuple(ma[p] for p in sorted(ma.keys() - mb.keys()))
    both = sorted(ma.keys() & mb.keys())
    changed = tuple(Change(p, ma[p], mb[p]) for p in both if ma[p] != mb[p])
    return Comparison(a, b, added, removed, changed, len(both) - len(changed))


async def compare(ctx: Context, host: HostConfig, a: str, b: str) -> Comparison:
    """What changed from release ``a`` to ``b``, from their manifest.tsv files (one round trip)."""
    frames = Frames.new()
    got = bodies(await _run(ctx, host, sh.manifests(host.settings.deploy_path, a, b), frames))
    for i, v in enumerate((a, b)):
        if f"m{i}" not in got:
            raise InspectError(f"release {v} has no manifest (missing, or not deployed by capview)")
    return diff_manifests(a, parse_manifest(got["m0"]), b, parse_manifest(got["m1"]))
