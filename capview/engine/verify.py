"""Verified, not assumed: a release on the host against its manifest.

``capview verify ENV [VERSION]``: one script per host lists every entry of the
release (type, mode, size, link target, NUL-separated, so no file name can break
the parsing) and its sha256s, next to its ``manifest.tsv`` and, when the deploy
ran a build, the record of the release as built (``.capview/built.list`` and
``built.sha``, written right after the build). The client compares: an entry
that differs from what was deployed is *changed*, one that is gone *missing*,
one nobody deployed *extra* (a file the app wrote at run time, or tampering).
What the build itself added or replaced is not drift: it is counted as *built*.

The deploy's own check after the build (``after_build_script``, folded into the
link+build script) is the cheap one: the previous release's shared files still
have the inode, size, mode and mtime recorded at upload; and no file of the new
release names another release by absolute path (``<deploy_path>/releases/<v>/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from capview.config import Environment, HostConfig
from capview.engine.context import Context
from capview.engine.frames import Frames, one_line
from capview.engine.layout import HostPaths, is_version, validate_version
from capview.engine.manifest import Entry, parse_manifest
from capview.engine.script import MARK, q
from capview.engine.shared_links import link_target, shared_paths
from capview.engine.status import each_host
from capview.errors import RemoteError
from capview.remote.transport import RunResult

# sh: NUL records of every entry under DIR (its .capview left out), and their sha256s.
LIST_FUNCTIONS = r"""cv_list() ( cd "$1" && find . -mindepth 1 \( -path ./.capview -prune \) -o -printf '%y\0%m\0%s\0%l\0%P\0' )
cv_hash() ( cd "$1" && { find . -path ./.capview -prune -o -type f -print0 | xargs -0 -r sha256sum -z -- 2>/dev/null || true; } )
"""
# (inside a single-quoted sh -c script) a host file name printed in a marker line stays one line
CTRL_TO_QMARK = r'tr "\001-\037\177" "[?*]"'


# ---------------------------------------------------------------- the check after the build

def _bre(text: str) -> str:
    return re.sub(r"([.\[\]\\*^$])", r"\\\1", text)


def after_build_script(paths: HostPaths, version: str, previous: str | None, *, record: bool) -> str:
    """sh run after the build (or the link, without one), in the same script.

    Markers: ``shared_changed KIND HASH PATH`` per previous-release file whose stat
    changed since the upload (KIND ``c``: size/mode/inode, ``m``: only the mtime; HASH
    is its sha256 now), ``shared_count N``, and ``xref OTHER PATH`` per file naming
    another release. With ``record``, the release as built is written for verify."""
    rel = paths.release(version)
    meta = f"{rel}/.capview"
    lines = ["(", f"cv_rel={q(rel)}; cv_meta={q(meta)}", "export LC_ALL=C"]
    if previous:
        lines += [
            f"cv_prev={q(paths.release(previous))}",
            'if [ -s "$cv_meta/shared.nul" ] && [ -d "$cv_prev" ]; then',
            f"  (cd \"$cv_prev\" && xargs -0 stat -c '%f %s %i %.9Y' -- < \"$cv_meta/shared.nul\") > \"$cv_meta/shared.now\" 2>/dev/null || true",
            # mismatching lines: "INDEX:KIND" (c = type/size/inode, m = mtime only), at most 20
            "  cv_bad=$(awk 'NR == FNR { w[FNR] = $0; n = FNR; next }"
            " $0 != w[FNR] { k = ($1 != wf(w[FNR], 1) || $2 != wf(w[FNR], 2) || $3 != wf(w[FNR], 3)) ? \"c\" : \"m\";"
            " c++; if (c <= 20) printf \"%d:%s \", FNR, k }"
            " END { if (FNR < n) { c++; printf \"%d:c \", FNR + 1 } if (c) printf \"#%d\", c }"
            " function wf(s, i,  a) { split(s, a, \" \"); return a[i] }'"
            ' "$cv_meta/shared.stat" "$cv_meta/shared.now")',
            '  rm -f "$cv_meta/shared.now"',
            '  if [ -n "$cv_bad" ]; then',
            f"    printf '%s shared_count %s\\n' {MARK} \"${{cv_bad##*#}}\"",
            "    awk -v want=\"${cv_bad%#*}\" 'BEGIN { RS = \"\\0\"; n = split(want, a, \" \");"
            " for (i = 1; i <= n; i++) { split(a[i], p, \":\"); k[p[1]] = p[2] } }"
            " NR in k { printf \"%s%c%s%c\", k[NR], 0, $0, 0 }' \"$cv_meta/shared.nul\" |"
            " xargs -0 -r -n 2 sh -c 'h=$(sha256sum < \"$1/$3\" 2>/dev/null || echo -); "
            f"printf \"%s shared_changed %s %s %s\\n\" {MARK} \"$2\" \"${{h%% *}}\" \"$(printf %s \"${{3#./}}\" | {CTRL_TO_QMARK})\"' sh \"$cv_prev\"",
            "  fi",
            "fi",
        ]
    if record:
        lines += [LIST_FUNCTIONS.rstrip("\n"),
                  'cv_list "$cv_rel" > "$cv_meta/built.list.tmp" && mv -f "$cv_meta/built.list.tmp" "$cv_meta/built.list"',
                  'cv_hash "$cv_rel" > "$cv_meta/built.sha.tmp" && mv -f "$cv_meta/built.sha.tmp" "$cv_meta/built.sha"']
    needle = f"{paths.releases}/"
    lines += [
        # files naming another release by absolute path (text or binary: a shebang, an rpath);
        # only this release's own inodes: the shared ones were read when they were new
        # (their findings are carried over from the previous release.json: inherited_references)
        f"(cd \"$cv_rel\" && find . -path ./.capview -prune -o -type f -links 1 -print0 | xargs -0 -r grep -laZF -e {q(needle)} -- 2>/dev/null || true) |"
        " xargs -0 -r sh -c 're=$1; v=$2; shift 2; for f; do grep -ao -e \"$re\" -- \"$f\" 2>/dev/null | sort -u |"
        " while read -r m; do o=${m%/}; o=${o##*/}; [ \"$o\" = \"$v\" ] ||"
        f" printf \"%s xref %s %s\\n\" {MARK} \"$o\" \"$(printf %s \"${{f#./}}\" | {CTRL_TO_QMARK})\"; done; done'"
        f" sh {q(_bre(needle) + '[A-Za-z0-9][A-Za-z0-9._+-]*/')} {q(version)} | head -n 200",
        # never fails the phase: a check that could not run is a warning
        f") || printf '%s warn %s\\n' {MARK} 'the check after the build could not run completely'",
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class AfterBuild:
    """What the check after the build found (deploy.py turns it into failure / warnings)."""

    changed: tuple[str, ...] = ()  # previous-release files written in place (content differs)
    changed_count: int = 0
    touched: tuple[str, ...] = ()  # only their mtime moved, content identical: a warning
    references: tuple[tuple[str, str], ...] = ()  # (other release, path in this release)


def parse_after_build(markers: dict[str, list[str]], entries: dict[str, Entry],
                      inherited: tuple[tuple[str, str], ...] = ()) -> AfterBuild:
    """Host text is untrusted: names failing is_version are dropped; a "touched" claim
    only stands when the hash equals the manifest's."""
    changed, touched = [], []
    for value in markers.get("shared_changed", []):
        parts = value.split(" ", 2)
        if len(parts) != 3:
            continue
        kind, digest, path = parts
        e = entries.get(path)
        if kind == "m" and e is not None and e.type == "f" and digest == e.digest:
            touched.append(path)
        else:
            changed.append(path)
    counts = [int(v) for v in markers.get("shared_count", []) if v.strip().isdigit()]
    count = max((counts[-1] if counts else 0) - len(touched), len(changed)) if changed else 0
    refs: list[tuple[str, str]] = list(inherited)
    for value in markers.get("xref", []):
        other, _, path = value.partition(" ")
        if is_version(other) and path and (other, path) not in refs:
            refs.append((other, path))
    return AfterBuild(tuple(changed), count, tuple(touched), tuple(refs))


def inherited_references(prev_meta: dict | None, kept: set[str], version: str) -> tuple[tuple[str, str], ...]:
    """The previous release's recorded references whose file this release shares."""
    refs = prev_meta.get("references") if isinstance(prev_meta, dict) else None
    out = []
    for r in refs if isinstance(refs, list) else ():
        if isinstance(r, dict) and is_version(str(r.get("release"))) and r.get("path") in kept \
                and r["release"] != version:
            out.append((r["release"], r["path"]))
    return tuple(out)


def references_by_release(refs: tuple[tuple[str, str], ...]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for other, path in refs:
        out.setdefault(other, []).append(path)
    return out


def judge_after_build(found: AfterBuild, version: str, previous: str | None, env: str,
                      host: str) -> tuple[list[str], tuple[str, str] | None]:
    """(warnings, (failure, hint) or None) for the deploy."""
    warnings = [references_warning(version, found.references)] if found.references else []
    if found.touched:
        warnings.append(f"the build touched {len(found.touched)} file(s) shared with releases/{previous} "
                        f"(mtime only, content unchanged), e.g. {found.touched[0]}")
    if not found.changed:
        return warnings, None
    return warnings, (
        f"the build changed {found.changed_count} file(s) of releases/{previous} in place "
        f"(e.g. {found.changed[0]}): {previous} no longer matches its manifest",
        f"check it with capview verify {env} {previous} --host {host} and redeploy it; a build must write "
        "new files (or replace one by rename), or list the file in upload.writable")


def references_warning(version: str, refs: tuple[tuple[str, str], ...]) -> str:
    parts = []
    for other, files in references_by_release(refs).items():
        more = f" and {len(files) - 1} more" if len(files) > 1 else ""
        parts.append(f"releases/{other}/ (in {files[0]}{more})")
    return (f"{version} references another release by absolute path: {'; '.join(parts)} - it breaks when that "
            "release is pruned (prune keeps it while this one is retained); build with paths inside the release "
            "or under current/")


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


def verify_script(paths: HostPaths, version: str | None, frames: Frames) -> str:
    if version is not None:
        pick = f"n={q(validate_version(version))}"
    else:  # the current release; only a valid name is framed
        pick = ('cur=$(readlink current 2>/dev/null || true); n=${cur#releases/}\n'
                'case $cur in releases/*) ;; *) sec nocurrent; sec end; exit 0 ;; esac\n'
                'case $n in ""|.|..|*/*|*[!A-Za-z0-9._+-]*|[!A-Za-z0-9]*) sec nocurrent; sec end; exit 0 ;; esac')
    return frames.prelude() + LIST_FUNCTIONS + f"""export LC_ALL=C
cd {q(paths.root)}
{pick}
r=releases/$n
sec version "$n"
if [ -L "$r" ] || [ ! -d "$r" ]; then sec missing; sec end; exit 0; fi
if [ ! -f "$r/.capview/manifest.tsv" ]; then sec nomanifest; sec end; exit 0; fi
sec manifest; cat "$r/.capview/manifest.tsv"
if [ -f "$r/.capview/built.list" ] && [ -f "$r/.capview/built.sha" ]; then
  sec built_list; cat "$r/.capview/built.list"; sec built_sha; cat "$r/.capview/built.sha"
fi
sec list; cv_list "$r"
sec sha; cv_hash "$r"
sec end
"""


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
        return Verification(host.name, v, error=f"releases/{v} has no .capview/manifest.tsv (not deployed by capview)")
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
