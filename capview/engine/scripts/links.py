"""Links from a release to shared/, and the rule that keeps them from resolving
through a symlink.

A shared path may be nested (``shared.dirs: [var/uploads]``). Every parent of it
inside the release (``var``) must then be a real directory: if the uploaded tree
had ``var -> ../../shared/var`` or ``var -> /srv/elsewhere``, replacing
``var/uploads`` by a link would ``rm -rf`` shared data, or files outside
deploy_path, through that symlink. The link script refuses instead (one line, exit
``REFUSED``; the deploy then removes the release and leaves ``current`` alone).
It never runs ``rm`` on a path whose parent it has not checked. ``init`` and
``migrate-data`` use :func:`refuse_symlinked_parents` for shared/ and the old tree.
"""

from __future__ import annotations

from capview.config import Settings
from capview.engine.scripts.shell import Frames, q

REFUSED = 9  # link script exit: a parent of a shared path is a symlink or not a directory


def shared_paths(settings: Settings) -> tuple[str, ...]:
    return tuple(settings.shared.dirs) + tuple(settings.shared.files)


def link_target(path: str) -> str:
    """The relative link from ``releases/<v>/<path>`` to ``shared/<path>``."""
    return "../" * (path.count("/") + 2) + "shared/" + path


def refuse_symlinked_parents(base_label: str, path: str, *, create: bool, fail: str) -> list[str]:
    """sh lines (run with the base dir as cwd) checking each parent of ``path``: a
    symlink or a non-directory runs ``fail MESSAGE``; a missing one is created when
    ``create``. The message names ``base_label/<parent>`` and the shared path."""
    parts = path.split("/")[:-1]
    out = []
    for n in range(1, len(parts) + 1):
        sub = "/".join(parts[:n])
        where = f"{base_label}/{sub}"
        link_msg = (f"shared path {path}: {where} is a symlink; refusing to go through it - make {sub} "
                    f"a real directory, or list {sub} itself in shared.dirs")
        file_msg = f"shared path {path}: {where} is not a directory; refusing - remove it or list {sub} in shared"
        out.append(f"if [ -L {q(sub)} ]; then {fail} {q(link_msg)}; "
                   f"elif [ -e {q(sub)} ] && [ ! -d {q(sub)} ]; then {fail} {q(file_msg)}; "
                   + (f"elif [ ! -e {q(sub)} ]; then mkdir -- {q(sub)}; " if create else "")
                   + "fi")
    return out


def link_shared_script(rel: str, version: str, settings: Settings, shared_dir: str, frames: Frames) -> str:
    """ln -s ../../shared/<p> <p> for every shared path; the release's own copy loses.
    Refuses (exit REFUSED, one line on stderr) when a parent is a symlink or a file."""
    lines = [f"cd {q(rel)}",
             f"refuse() {{ printf '%s\\n' \"$1\" >&2; exit {REFUSED}; }}"]
    for path in shared_paths(settings):
        lines += refuse_symlinked_parents(f"releases/{version}", path, create=True, fail="refuse")
        lines.append(
            # a symlink is unlinked (never followed); the parents are real dirs, so rm stays inside
            f"if [ -L {q(path)} ]; then rm -f -- {q(path)}; elif [ -e {q(path)} ]; then "
            f"printf '%s warn %s\\n' {frames.marker} {q(f'the uploaded {path} was replaced by a link to shared/{path}')}; "
            f"rm -rf -- {q(path)}; fi"
        )
        lines.append(f"ln -s {q(link_target(path))} {q(path)}")
    for f in settings.shared.files:
        if f.rsplit("/", 1)[-1].startswith(".env"):
            lines.append(f"chmod 600 {q(shared_dir + '/' + f)} 2>/dev/null || true")
    return "\n".join(lines) + "\n"
