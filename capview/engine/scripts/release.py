"""A release's own scripts: setup (create it, read what is there), its release.json
writes, linking shared paths into it, and the build."""

from __future__ import annotations

from capview.config import Settings
from capview.engine.layout import MANIFEST, PINNED, RELEASE_JSON, HostPaths
from capview.engine.scripts.shell import LEGACY_MARK as MARK
from capview.engine.scripts.shell import Frames, Script, q, write_json

EXISTS = 5  # exit status of setup when the release already exists
HISTORY_TAIL = 500


def listing(paths: HostPaths, frames: Frames, *, manifest_of_current: bool) -> str:
    """sh printing where ``current`` points, (optionally) the current release's manifest,
    every release's release.json and pin marker, and the tail of history.jsonl.
    Only names that pass the host-side filter are framed (no newline reaches a frame)."""
    s = Script(frames).line(f"cd {q(paths.root)}", "cur=$(readlink current 2>/dev/null || true)",
                            'sec current; printf "%s" "$cur"')
    if manifest_of_current:
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
        f'  sec release "$n"; cat "$d/"{q(RELEASE_JSON)} 2>/dev/null || true',
        f'  if [ -e "$d/"{q(PINNED)} ]; then sec pinned "$n"; fi',
        "done",
        f"sec history; tail -n {HISTORY_TAIL} {q(HostPaths('').history)} 2>/dev/null || true",
        "sec end",
    ).text()


def setup(paths: HostPaths, settings: Settings, version: str, meta: dict, frames: Frames, *,
          dry_run: bool = False) -> str:
    """Create releases/<version> (exit 5 if it exists: releases are immutable) with its
    release.json, then print the listing the deploy needs. Dry run: only the check."""
    rel = paths.release(version)
    s = Script()
    if not dry_run:
        shared = " ".join(q(f"{paths.shared}/{d}") for d in settings.shared.dirs)
        s.line(f"mkdir -p {q(paths.releases)} {q(paths.shared)} {shared}".rstrip())
    s.line(f"if [ -e {q(rel)} ] || [ -L {q(rel)} ]; then exit {EXISTS}; fi")
    if not dry_run:
        s.line(f"mkdir {q(rel)} {q(paths.release_meta(version))} {q(paths.incoming(version))}")
        s.raw(write_json(paths.release_json(version), meta))
    return s.text() + listing(paths, frames, manifest_of_current=True)


def state_write(paths: HostPaths, version: str, doc: dict) -> str:
    """Rewrite the release's release.json (temp file + rename, never in place)."""
    return write_json(paths.release_json(version), doc)


def link_script(settings: Settings, paths: HostPaths, rel: str) -> str:
    """ln -s ../../shared/<p> <p> for every shared path; the release's own copy loses."""
    lines = [f"cd {q(rel)}"]
    for path in tuple(settings.shared.dirs) + tuple(settings.shared.files):
        depth = path.count("/")
        target = "../" * (depth + 2) + "shared/" + path
        parent = path.rsplit("/", 1)[0] if "/" in path else ""
        if parent:
            lines.append(f"mkdir -p {q(parent)}")
        lines.append(
            f"if [ -L {q(path)} ]; then rm -f {q(path)}; elif [ -e {q(path)} ]; then "
            f"printf '%s warn %s\\n' {MARK} {q(f'the uploaded {path} was replaced by a link to shared/{path}')}; rm -rf {q(path)}; fi"
        )
        lines.append(f"ln -s {q(target)} {q(path)}")
    for f in settings.shared.files:
        if f.rsplit("/", 1)[-1].startswith(".env"):
            lines.append(f"chmod 600 {q(paths.shared + '/' + f)} 2>/dev/null || true")
    return "\n".join(lines) + "\n"


def build_script(settings: Settings, paths: HostPaths, version: str) -> str | None:
    """The build in the release dir, its output kept in build.log; frame ``build_rc``."""
    b = settings.build
    if b is None:
        return None
    rel = paths.release(version)
    cmd = b.command.format(image=q(b.image or ""), version=q(version), release_path=q(rel))
    return (f'{{ rc=0; ( cd {q(rel)} && {cmd} ) || rc=$?; mark build_rc "$rc"; }} 2>&1 '
            f"| tee {q(paths.build_log(version))}\n")


def link_and_build(settings: Settings, paths: HostPaths, version: str, frames: Frames,
                   ready: str, building: str) -> str:
    """One script for both phases: the link, then (with a build) frame ``linked``, the
    release marked building, the build. ``ready``/``building``: the state writes."""
    link = link_script(settings, paths, paths.release(version))
    build = build_script(settings, paths, version)
    if build is None:
        return link + ready
    return frames.prelude() + link + "mark linked\n" + building + build
