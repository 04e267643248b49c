"""``capview verify``'s host script: list a release's entries and hash them, next to its
manifest and the record of the release as built (engine/verify.py compares)."""

from __future__ import annotations

from capview.engine.build_check import LIST_FUNCTIONS
from capview.engine.layout import BUILT_LIST, BUILT_SHA, MANIFEST, HostPaths, validate_version
from capview.engine.scripts.shell import Frames, q


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
