"""The deploy's own check after the build (issue 13), folded into the link+build script:
the previous release's shared files still have the inode, size, mode and mtime recorded
at upload; and no file of the new release names another release by absolute path
(``<deploy_path>/releases/<v>/``). With a build, the release as built is recorded for
``capview verify`` (verify.py), which shares LIST_FUNCTIONS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from capview.engine.layout import HostPaths, is_version
from capview.engine.manifest import Entry
from capview.engine.scripts.shell import Frames, q

# sh: NUL records of every entry under DIR (its .capview left out), and their sha256s.
LIST_FUNCTIONS = r"""cv_list() ( cd "$1" && find . -mindepth 1 \( -path ./.capview -prune \) -o -printf '%y\0%m\0%s\0%l\0%P\0' )
cv_hash() ( cd "$1" && { find . -path ./.capview -prune -o -type f -print0 | xargs -0 -r sha256sum -z -- 2>/dev/null || true; } )
"""
# (inside a single-quoted sh -c script) a host file name printed in a marker line stays one line
CTRL_TO_QMARK = r'tr "\001-\037\177" "[?*]"'


# ---------------------------------------------------------------- the check after the build

def _bre(text: str) -> str:
    return re.sub(r"([.\[\]\\*^$])", r"\\\1", text)


def after_build_script(paths: HostPaths, version: str, previous: str | None, frames: Frames, *, record: bool) -> str:
    """sh run after the build (or the link, without one), in the same script.

    Markers: ``shared_changed KIND HASH PATH`` per previous-release file whose stat
    changed since the upload (KIND ``c``: size/mode/inode, ``m``: only the mtime; HASH
    is its sha256 now), ``shared_count N``, and ``xref OTHER PATH`` per file naming
    another release. With ``record``, the release as built is written for verify."""
    MARK = frames.marker  # noqa: N806 -- spliced: [@a-z0-9-] only
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
