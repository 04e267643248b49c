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
