"""``capview verify``'s host script: list a release's entries and hash them, next to its
manifest and the record of the release as built (engine/verify.py compares); and the
deploy's check after the build (issue 13; build_check.py reads its frames back), which
records that release as built with the same LIST_FUNCTIONS."""

from __future__ import annotations

import re

from capview.engine.layout import BUILT_LIST, BUILT_SHA, MANIFEST, HostPaths, validate_version
from capview.engine.scripts.shell import Frames, q
from capview.engine.scripts.upload import SHARED_STAT


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
            f"  (cd \"$cv_prev\" && xargs -0 stat -c '{SHARED_STAT}' -- < \"$cv_meta/shared.nul\") > \"$cv_meta/shared.now\" 2>/dev/null || true",
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
if [ ! -f "$r/{MANIFEST}" ]; then sec nomanifest; sec end; exit 0; fi
sec manifest; cat "$r/{MANIFEST}"
if [ -f "$r/{BUILT_LIST}" ] && [ -f "$r/{BUILT_SHA}" ]; then
  sec built_list; cat "$r/{BUILT_LIST}"; sec built_sha; cat "$r/{BUILT_SHA}"
fi
sec list; cv_list "$r"
sec sha; cv_hash "$r"
sec end
"""
