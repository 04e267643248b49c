"""A release's own scripts: setup (create it, read what is there), its release.json
writes, linking shared paths into it, and the build."""

from __future__ import annotations

import re

from capview.config import Settings
from capview.engine.layout import MANIFEST, PINNED, RELEASE_JSON, HostPaths, validate_version
from capview.engine.scripts.shell import Frames, Script, q, write_json
from capview.engine.scripts.status import HISTORY_LINE_BYTES, HISTORY_TAIL, META_BYTES
from capview.engine.scripts.links import link_shared_script

EXISTS = 5  # exit status of setup when the release already exists


def listing(paths: HostPaths, frames: Frames, *, manifest_of_current: bool, offered: tuple[str, ...] = ()) -> str:
    """sh printing where ``current`` points, (optionally) the current release's manifest,
    every release's release.json and pin marker, and the tail of history.jsonl.
    Only names that pass the host-side filter are framed (no newline reaches a frame).

    ``offered``: sha256s of manifests the client holds (manifest_cache.py): when the current
    manifest hashes to one of them, only frame ``manifest_sha SHA`` is sent, not its text."""
    s = Script(frames).line(f"cd {q(paths.root)}", "cur=$(readlink current 2>/dev/null || true)",
                            'sec current; printf "%s" "$cur"')
    offered = tuple(sha for sha in offered if re.fullmatch(r"[0-9a-f]{64}", sha))
    if manifest_of_current and offered:
        # issue 21: a manifest the client holds is named by its sha256 (200,000 lines stay home)
        s.line('cv_cur=${cur%/}; cv_cur=${cv_cur##*/}; cv_sum=',
               'case "$cv_cur" in ""|.|..) ;; *) [ -L "releases/$cv_cur" ] || '
               f'cv_sum=$(sha256sum 2>/dev/null < "releases/$cv_cur/"{q(MANIFEST)}) || cv_sum=;; esac',
               'cv_sum=${cv_sum%% *}',
               f'case "$cv_sum" in {"|".join(offered)}) sec manifest_sha "$cv_sum";;',
               '*) sec manifest; case "$cv_cur" in ""|.|..) ;; *) [ -L "releases/$cv_cur" ] || '
               f'cat "releases/$cv_cur/"{q(MANIFEST)} 2>/dev/null || true;; esac;; esac')
    elif manifest_of_current:
        # the release current names, relative or absolute (Capistrano), trailing slash or not
        s.line('cv_cur=${cur%/}; cv_cur=${cv_cur##*/}',
               'sec manifest; case "$cv_cur" in ""|.|..) ;; *) [ -L "releases/$cv_cur" ] || '
               f'cat "releases/$cv_cur/"{q(MANIFEST)} 2>/dev/null || true;; esac')
    return s.line(
        "for d in releases/*; do",
        '  [ -d "$d" ] && [ ! -L "$d" ] || continue',
        "  n=${d#releases/}",
        '  case "$n" in [A-Za-z0-9]*) ;; *) continue;; esac',
        '  case "$n" in *[!A-Za-z0-9._+-]*) continue;; esac',
        f'  sec release "$n"; head -c {META_BYTES} "$d/"{q(RELEASE_JSON)} 2>/dev/null || true',
        f'  if [ -e "$d/"{q(PINNED)} ]; then sec pinned "$n"; fi',
        "done",
        f"sec history; tail -n {HISTORY_TAIL} {q(HostPaths('').history)} 2>/dev/null | cut -b 1-{HISTORY_LINE_BYTES} || true",
        "sec end",
    ).text()


def setup(paths: HostPaths, settings: Settings, version: str, meta: dict, frames: Frames, *,
          dry_run: bool = False, offered: tuple[str, ...] = ()) -> str:
    """Create releases/<version> (exit 5 if it exists: releases are immutable; frame
    ``created`` once it is ours) with its release.json, then print the listing the deploy
    needs. Dry run: only the check."""
    rel = paths.release(version)
    s = Script(frames)
    if not dry_run:
        shared = " ".join(q(f"{paths.shared}/{d}") for d in settings.shared.dirs)
        s.line(f"mkdir -p {q(paths.releases)} {q(paths.shared)} {shared}".rstrip())
    s.line(f"if [ -e {q(rel)} ] || [ -L {q(rel)} ]; then exit {EXISTS}; fi")
    if not dry_run:
        s.line(f"mkdir {q(rel)}").marker("created")
        s.line(f"mkdir {q(paths.release_meta(version))} {q(paths.incoming(version))}")
        s.raw(write_json(paths.release_json(version), meta))
    return s.text() + listing(paths, frames, manifest_of_current=True, offered=offered)


def lock_and_setup(frames: Frames, preflight: str, lock: str, setup_script: str) -> str:
    """A deploy's first exchange (issue 21): the preflight (exit 4), the lock (exit 3 when
    held; frame ``locked`` when ours; empty in a dry run), and only then ``setup_script``."""
    return frames.prelude() + preflight + lock + setup_script


def state_write(paths: HostPaths, version: str, doc: dict) -> str:
    """Rewrite the release's release.json (temp file + rename, never in place)."""
    return write_json(paths.release_json(version), doc)


def remove(paths: HostPaths, version: str) -> str:
    """Remove a release that never became whole (a deploy cut short during its upload)."""
    return f"rm -rf {q(paths.release(validate_version(version)))}\n"


def link_script(settings: Settings, paths: HostPaths, version: str, frames: Frames) -> str:
    """ln -s ../../shared/<p> <p> for every shared path (scripts/links.py, issue 13's: never
    through a symlinked parent; exit REFUSED, and the deploy removes the release)."""
    return link_shared_script(paths.release(version), version, settings, paths.shared, frames)


def build_script(settings: Settings, paths: HostPaths, version: str) -> str | None:
    """The build in the release dir, its output kept in build.log; frame ``build_rc``.

    The exit status leaves the pipeline on fd 3 (POSIX sh has no pipefail), so build.log
    holds only the build's output; the frame then starts a line of its own even when
    the output does not end with a newline."""
    b = settings.build
    if b is None:
        return None
    rel = paths.release(version)
    cmd = b.command.format(image=q(b.image or ""), version=q(version), release_path=q(rel))
    log = q(paths.build_log(version))
    return (
        f"{{ cv_rc=$( {{ {{ ( cd {q(rel)} && {cmd} ) 2>&1 3>&- 4>&- && rc=0 || rc=$?; printf '%s' \"$rc\" >&3; }}"
        f" | tee {log} >&4 3>&-; }} 3>&1 ); }} 4>&1\n"
        f"[ -z \"$(tail -c 1 {log} 2>/dev/null)\" ] || echo\n"
        'mark build_rc "${cv_rc:-1}"\n'
    )


def link_and_build(settings: Settings, paths: HostPaths, version: str, frames: Frames,
                   ready: str, building: str, after: str = "", after_upload: str = "") -> str:
    """One script for both phases: the link, then (with a build) frame ``linked``, the
    release marked building, the build. ``ready``/``building``: the state writes;
    ``after``: the check after the build (scripts/verify.py after_build_script, issue 13);
    ``after_upload``: the ``cv_hooks_after_upload`` function (engine/scripts/hooks.py, issue 18),
    run after a successful build (frame ``hook_rc`` when it fails)."""
    link = link_script(settings, paths, version, frames)
    build = build_script(settings, paths, version)
    if build is None and not after_upload:
        return frames.prelude() + link + after + ready
    hooks = ""
    if after_upload:
        hooks = (after_upload + '[ "${cv_rc:-1}" != 0 ] || cv_hooks_after_upload '
                 '|| { cv_hook_rc=$?; mark hook_rc "$cv_hook_rc"; }\n')
    if build is None:  # hooks only: the "build" phase is theirs
        return (frames.prelude() + link + "mark linked\ncv_rc=0\nmark build_rc 0\n" + hooks + after
                + 'if [ -z "${cv_hook_rc:-}" ]; then\n  :\n' + ready + "fi\n")
    return frames.prelude() + link + "mark linked\n" + building + build + hooks + after
