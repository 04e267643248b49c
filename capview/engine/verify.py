"""Verified, not assumed: a release on the host against its manifest.

``capview verify ENV [VERSION]``: one script per host lists every entry of the
release (type, mode, size, link target, NUL-separated, so no file name can break
the parsing) and its sha256s, next to its ``manifest.tsv`` and, when the deploy
ran a build, the record of the release as built (``.capview/built.list`` and
``built.sha``, written right after the build). The client compares: an entry
that differs from what was deployed is *changed*, one that is gone *missing*,
one nobody deployed *extra* (a file the app wrote at run time, or tampering).
What the build itself added or replaced is not drift: it is counted as *built*.

The deploy's own, cheaper check after the build is build_check.py's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from capview.config import Environment, HostConfig
from capview.engine.context import Context
from capview.engine.scripts.shell import Frames, one_line
from capview.engine.layout import MANIFEST, HostPaths, is_version, validate_version
from capview.engine.manifest import Entry, parse_manifest
from capview.engine.scripts.verify import verify_script
from capview.engine.scripts.links import link_target, shared_paths
from capview.engine.hosts import each_host
from capview.errors import RemoteError
from capview.remote.transport import RunResult

# ---------------------------------------------------------------- capview verify

@dataclass(frozen=True)
class Difference:
    path: str
    kind: str  # "changed" | "missing" | "extra"
    detail: str = ""  # what differs, e.g. "sha256 differs", "mode 644, deployed 444"


@dataclass(frozen=True)
class Verification:
    """One release on one host, checked against what was deployed (plain data for every front)."""

    host: str
    version: str | None
    reachable: bool = True
    error: str | None = None  # no such release, no manifest, unreadable output
    checked: int = 0  # entries compared
    built: int = 0  # entries the build added or replaced (recorded then: not drift)
    differences: tuple[Difference, ...] = field(default_factory=tuple)

    @property
    def ok(self) -> bool:
        return self.reachable and self.error is None and not self.differences

    def of_kind(self, kind: str) -> tuple[Difference, ...]:
        return tuple(d for d in self.differences if d.kind == kind)


def _norm(path: str) -> str:
    """A manifest path as the host output shows it (decoded with 'replace')."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def parse_listing(listing: str, hashes: str) -> dict[str, Entry]:
    """cv_list + cv_hash output -> path -> Entry (digest: sha256 | link target | '-')."""
    sums: dict[str, str] = {}
    for rec in hashes.split("\0"):
        if len(rec) > 67 and re.fullmatch(r"[0-9a-f]{64}", rec[:64]) and rec[64:67] in ("  .", " *."):
            path = rec[67:]
            sums[path[1:] if path.startswith("/") else path] = rec[:64]
    out: dict[str, Entry] = {}
    fields = listing.split("\0")
    for i in range(0, len(fields) - 4, 5):
        typ, mode, size, target, path = fields[i:i + 5]
        typ = typ.lstrip("\n")
        if not path or not re.fullmatch(r"[0-7]+", mode) or not size.isdigit():
            continue
        if typ == "f":
            out[path] = Entry(path, "f", int(mode, 8), int(size), sums.get(path, "unreadable"))
        elif typ == "l":
            out[path] = Entry(path, "l", 0o777, 0, target)
        elif typ == "d":
            out[path] = Entry(path, "d", int(mode, 8), 0, "-")
        else:
            out[path] = Entry(path, typ or "?", int(mode, 8), int(size), "special file")
    return out


def _what_differs(want: Entry, got: Entry) -> str | None:
    if want.type != got.type:
        names = {"f": "file", "d": "directory", "l": "symlink"}
        return f"a {names.get(got.type, 'special file')}, deployed as a {names.get(want.type, want.type)}"
    if want.type == "l":
        return None if want.digest == got.digest else f"link target {got.digest!r}, deployed {want.digest!r}"
    if want.mode != got.mode:
        return f"mode {got.mode:o}, deployed {want.mode:o}"
    if want.type == "f":
        if want.size != got.size:
            return f"size {got.size}, deployed {want.size}"
        if want.digest != got.digest:
            return "unreadable" if got.digest == "unreadable" else "sha256 differs"
    return None


def compare(manifest: dict[str, Entry], built: dict[str, Entry] | None, disk: dict[str, Entry],
            shared: tuple[str, ...]) -> tuple[int, int, tuple[Difference, ...]]:
    """(entries checked, entries the build added or replaced, differences)."""
    deployed = {_norm(p): e for p, e in manifest.items()}
    want = dict(deployed) if built is None else dict(built)
    links = {p: link_target(p) for p in shared}
    parents = {"/".join(p.split("/")[:n]) for p in shared for n in range(1, p.count("/") + 1)}
    built_n = 0 if built is None else (
        sum(1 for p, e in built.items() if p not in links and p not in parents and deployed.get(p) != e)
        + sum(1 for p in deployed if p not in built))
    diffs: list[Difference] = []
    for path in sorted(set(want) | set(disk) | set(links)):
        got = disk.get(path)
        if path in links:
            if got is None:
                diffs.append(Difference(path, "missing", f"the link to shared/{path}"))
            elif got.type != "l" or got.digest != links[path]:
                diffs.append(Difference(path, "changed", f"not the link to shared/{path}"))
            continue
        w = want.get(path)
        if w is None:
            if got is not None and not (path in parents and got.type == "d"):
                diffs.append(Difference(path, "extra", {"d": "directory", "l": "symlink"}.get(got.type, "file")))
            continue
        if got is None:
            diffs.append(Difference(path, "missing"))
            continue
        why = _what_differs(w, got)
        if why:
            diffs.append(Difference(path, "changed", why))
    return len(want) + len(links), built_n, tuple(diffs)


def parse_verify(host: HostConfig, version: str | None, stdout: str, frames: Frames) -> Verification:
    parts = {kind: (arg, body) for kind, arg, body in frames.parse(stdout)}
    if "end" not in parts:
        return Verification(host.name, version, error="verify output was cut short")
    shown = parts.get("version", ("", ""))[0]
    v = shown if is_version(shown) else version
    if "nocurrent" in parts:
        return Verification(host.name, None, error="no current release (current is missing or not a release link)")
    if "missing" in parts:
        return Verification(host.name, v, error=f"no release {v} on {host.name}")
    if "nomanifest" in parts:
        return Verification(host.name, v, error=f"releases/{v} has no {MANIFEST} (not deployed by capview)")
    manifest = parse_manifest(parts.get("manifest", ("", ""))[1])
    built = None
    if "built_list" in parts:
        built = parse_listing(parts["built_list"][1], parts.get("built_sha", ("", ""))[1])
    disk = parse_listing(parts.get("list", ("", ""))[1], parts.get("sha", ("", ""))[1])
    checked, built_n, diffs = compare(manifest, built, disk, shared_paths(host.settings))
    return Verification(host.name, v, checked=checked, built=built_n, differences=diffs)


async def verify_release(ctx: Context, host: HostConfig, version: str | None = None) -> Verification:
    """Re-hash one release (default: current) on one host. Never raises for the host's
    answer; an unreachable host is ``reachable=False``."""
    if version is not None:
        validate_version(version)
    frames = Frames.new()
    try:
        res: RunResult = await ctx.transport.run(host, verify_script(HostPaths(host.settings.deploy_path), version, frames))
    except Exception as exc:  # one bad host never fails the others
        return Verification(host.name, version, reachable=False, error=one_line(str(exc) or type(exc).__name__))
    if not res.ok:
        err = RemoteError(one_line(res.stderr or f"verify script exited {res.exit_status}"))
        return Verification(host.name, version, error=str(err))
    return parse_verify(host, version, res.stdout, frames)


async def verify(ctx: Context, env: Environment, version: str | None = None, *,
                 host: str | None = None) -> list[Verification]:
    """``capview verify``: every selected host, concurrently, in config order."""
    if version is not None:
        validate_version(version)
    return await each_host(env, host, lambda h: verify_release(ctx, h, version))
