"""The Traefik maintenance page's server, as the one shell line its systemd unit runs
(engine/traefik/host.py writes the unit)."""

from __future__ import annotations

from capview.engine.layout import HostPaths
from capview.engine.scripts.shell import q
from capview.errors import ConfigError


def maintenance_dir(deploy_path: str) -> str:
    return f"{HostPaths(deploy_path).shared}/maintenance"


def maintenance_server_script(deploy_path: str, port: int) -> str:
    """One POSIX sh line that serves ``<deploy_path>/shared/maintenance`` on 127.0.0.1:<port>.

    No runtime is assumed: it execs the first of ``python3 -m http.server`` (present on
    most VPS images, and on any host running a Python app) or ``busybox httpd -f``; with
    neither it exits 127 saying so. It binds loopback only: Traefik reaches it through
    the ``<app>-maintenance`` service, no router exposes it directly. The errors
    middleware asks it for ``/maintenance.html``.
    """
    port = int(port)
    if not 1 <= port <= 65535:
        raise ConfigError(f"traefik.maintenance_port {port} is not a TCP port")
    d = q(maintenance_dir(deploy_path))
    return (
        "if command -v python3 >/dev/null 2>&1; then "
        f"exec python3 -m http.server --bind 127.0.0.1 --directory {d} {port}; "
        "elif command -v busybox >/dev/null 2>&1; then "
        f"exec busybox httpd -f -p 127.0.0.1:{port} -h {d}; "
        "else echo 'capview maintenance page: neither python3 nor busybox is installed' >&2; exit 127; fi"
    )


def history_tail(history: str) -> str:
    """sh: the last 5,000 lines of the history (the recorded switch windows), if any."""
    return f"f={q(history)}\nif [ -f \"$f\" ]; then tail -n 5000 \"$f\"; fi\n"


def write_config(cfg_dir: str, cfg_name: str, page_path: str | None, unit_name: str | None) -> str:
    """sh: stdin is a tar of ``config.yml`` (and ``page.html``, ``unit``); each file is
    staged next to its target, then renamed into place, so Traefik's file watcher never
    reads a half-written file (staging names start with ``.`` and end in neither ``.yml``
    nor ``.toml``). With ``unit_name``: the maintenance unit installed and (re)started."""
    lines = [
        f"cfg_dir={q(cfg_dir)}",
        'mkdir -p "$cfg_dir"',
        'st="$cfg_dir"/.capview-stage.$$',
        'trap \'rm -rf "$st"\' EXIT',
        'mkdir "$st"',
        'tar -x -f - -C "$st"',
        f'mv -f "$st/config.yml" "$cfg_dir"/{q(cfg_name)}',
    ]
    if page_path is not None:
        page_dir, page = page_path.rsplit("/", 1)
        lines += [
            f"mdir={q(page_dir)}",
            'mkdir -p "$mdir"',
            # cross-filesystem safe: copy to a temp name in the target dir, then rename
            f'cp "$st/page.html" "$mdir"/{q("." + page + ".tmp.")}$$',
            f'mv -f "$mdir"/{q("." + page + ".tmp.")}$$ "$mdir"/{q(page)}',
        ]
    if unit_name is not None:
        unit = q(unit_name)
        lines += [
            'udir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"',
            'mkdir -p "$udir"',
            f'cp "$st/unit" "$udir"/{q("." + unit_name + ".tmp.")}$$',
            f'mv -f "$udir"/{q("." + unit_name + ".tmp.")}$$ "$udir"/{unit}',
            "systemctl --user daemon-reload",
            f"systemctl --user enable --now {unit}",
            f"systemctl --user restart {unit}",
        ]
    return "\n".join(lines) + "\n"
