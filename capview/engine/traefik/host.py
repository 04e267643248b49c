"""On the host: the maintenance page server, reading recorded windows, writing the config."""

from __future__ import annotations

import io
import tarfile
import time
from dataclasses import dataclass

import yaml

from capview.config import HostConfig, TraefikConfig
from capview.engine.layout import HostPaths
from capview.engine.scripts import traefik as traefik_sh
from capview.engine.scripts.traefik import maintenance_dir, maintenance_server_script
from capview.errors import ConfigError, RemoteError, UsageError
from capview.engine.traefik.document import check_app_name, render_dynamic_config, to_yaml
from capview.engine.traefik.retry import HISTORY_WINDOW, MAINTENANCE_FILE, RetryPlan, downtimes_from_history, retry_plan
from capview.engine.traefik.validate import validate_dynamic_config


# --------------------------------------------------------------------------- maintenance server


def maintenance_unit_name(app: str) -> str:
    return f"capview-{check_app_name(app)}-maintenance.service"


def systemd_quote(arg: str) -> str:
    """Quote one ExecStart word for systemd: double quotes, ``\\`` and ``"`` escaped,
    ``$`` as ``$$`` (no variable expansion) and ``%`` as ``%%`` (no specifiers)."""
    if any(c in arg for c in "\n\r\0"):
        raise ConfigError("a newline or NUL cannot go into a systemd unit")
    esc = arg.replace("\\", "\\\\").replace('"', '\\"').replace("$", "$$").replace("%", "%%")
    return f'"{esc}"'


def maintenance_unit(app: str, deploy_path: str, port: int) -> str:
    """A ``systemd --user`` unit that keeps the maintenance page served (always on: it
    only answers when Traefik's errors middleware asks, i.e. while the app is down).

    Install as ``~/.config/systemd/user/capview-<app>-maintenance.service`` then
    ``systemctl --user daemon-reload && systemctl --user enable --now <unit>`` (done by
    :func:`write_traefik_config` with ``install_unit=True``). ExecStart runs
    :func:`maintenance_server_script` under ``/bin/sh -c``.
    """
    script = maintenance_server_script(deploy_path, port)
    return (
        "[Unit]\n"
        f"Description=capview maintenance page for {check_app_name(app)} on 127.0.0.1:{int(port)}\n"
        "\n"
        "[Service]\n"
        f"ExecStart=/bin/sh -c {systemd_quote(script)}\n"
        "Restart=always\n"
        "RestartSec=2\n"
        "\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


# --------------------------------------------------------------------------- host I/O


def _traefik_of(host_cfg: HostConfig) -> tuple[TraefikConfig, list[str]]:
    t = host_cfg.settings.traefik
    if t is None:
        return TraefikConfig(), ["deploy.yaml has no traefik: section; capview's defaults were used"]
    return t, []


def dynamic_file_path(host_cfg: HostConfig) -> str:
    """Where the file goes on the host: ``<dynamic_dir>/<app>.yml``; dynamic_dir defaults
    to ``<deploy_path>/traefik`` and a relative one is taken under deploy_path."""
    s = host_cfg.settings
    t, _ = _traefik_of(host_cfg)
    d = t.dynamic_dir or "traefik"
    if not d.startswith("/"):
        d = f"{s.deploy_path.rstrip('/')}/{d}"
    return f"{d.rstrip('/')}/{check_app_name(s.app)}.yml"


async def read_downtimes(transport, host_cfg: HostConfig, *, limit: int = HISTORY_WINDOW) -> list[float]:
    """The recorded switch windows of one host (one round trip)."""
    hist = HostPaths(host_cfg.settings.deploy_path).history
    res = await transport.run(host_cfg, traefik_sh.history_tail(hist))
    if not res.ok:
        raise RemoteError(f"{host_cfg.name}: could not read {hist}", exit_status=res.exit_status,
                          stderr=res.stderr)
    return downtimes_from_history(res.stdout.splitlines(), limit=limit)


async def traefik_config(transport, host_cfg: HostConfig, **plan_kw) -> tuple[str, RetryPlan]:
    """Read the host's history, size the retry, render + validate the YAML document.

    Returns ``(yaml_text, plan)``; ``plan.warning`` says when retries cannot hide the
    window. Raises UsageError if the generated document fails validation (a bug or a
    bad deploy.yaml value such as a rule with an unknown matcher).
    """
    s = host_cfg.settings
    t, notes = _traefik_of(host_cfg)
    downtimes = await read_downtimes(transport, host_cfg)
    plan = retry_plan(downtimes, **plan_kw)
    doc = render_dynamic_config(s.app, t, plan)
    problems = validate_dynamic_config(doc)
    if problems:
        raise UsageError(f"generated Traefik configuration is invalid: {problems[0]}",
                         hint="; ".join(problems[1:4]) or None)
    if t.mode == "maintenance" and not plan.hideable:
        notes = notes + ["retry omitted: the window is too long to hide, the page shows at once"]
    if t.mode == "maintenance":
        notes = notes + [
            f"maintenance page: {maintenance_dir(s.deploy_path)}/{MAINTENANCE_FILE}, served on "
            f"127.0.0.1:{t.maintenance_port} by {maintenance_unit_name(s.app)}",
            "while the app is down clients get the page with the original 502/503/504 status",
        ]
    return to_yaml(doc, plan, app=s.app, mode=t.mode, notes=notes), plan


@dataclass(frozen=True)
class WrittenFiles:
    config: str
    page: str | None = None
    unit: str | None = None


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size = len(data)
            ti.mode = 0o644
            ti.mtime = int(time.time())
            tf.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


async def write_traefik_config(
    transport,
    host_cfg: HostConfig,
    yaml_text: str,
    maintenance_html: bytes | None,
    *,
    install_unit: bool = False,
) -> WrittenFiles:
    """Write the dynamic config (and the maintenance page) on the host, atomically.

    One round trip: the files travel as a tar on stdin into a staging directory created
    next to each target, then ``mv -f`` renames them into place, so Traefik's file
    watcher never reads a half-written file (staging names start with ``.`` and end in
    neither ``.yml`` nor ``.toml``). ``yaml_text`` is re-validated first.
    ``install_unit`` (maintenance page only) also writes
    ``~/.config/systemd/user/capview-<app>-maintenance.service`` and runs
    ``systemctl --user daemon-reload`` + ``enable --now`` + ``restart``.
    """
    try:
        doc = yaml.safe_load(yaml_text)
    except yaml.YAMLError as e:
        raise UsageError(f"not YAML: {e}") from None
    problems = validate_dynamic_config(doc)
    if problems:
        raise UsageError(f"refusing to write an invalid Traefik configuration: {problems[0]}")
    s = host_cfg.settings
    t, _ = _traefik_of(host_cfg)
    cfg_path = dynamic_file_path(host_cfg)
    cfg_dir, cfg_name = cfg_path.rsplit("/", 1)
    files = {"config.yml": yaml_text.encode()}
    page_path = unit_path = None
    if maintenance_html is not None:
        files["page.html"] = bytes(maintenance_html)
        page_path = f"{maintenance_dir(s.deploy_path)}/{MAINTENANCE_FILE}"
    unit_name = maintenance_unit_name(s.app)
    if install_unit:
        if maintenance_html is None:
            raise UsageError("install_unit needs the maintenance page")
        files["unit"] = maintenance_unit(s.app, s.deploy_path, t.maintenance_port).encode()
        unit_path = f"~/.config/systemd/user/{unit_name}"

    script = traefik_sh.write_config(cfg_dir, cfg_name, page_path, unit_name if install_unit else None)
    res = await transport.run(host_cfg, script, stdin=_tar(files))
    if not res.ok:
        raise RemoteError(f"{host_cfg.name}: writing the Traefik configuration failed",
                          exit_status=res.exit_status, stderr=res.stderr)
    return WrittenFiles(config=cfg_path, page=page_path, unit=unit_path)
