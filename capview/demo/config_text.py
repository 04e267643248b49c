"""The sandbox's deploy.yaml: a real config capview loads like any other."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from capview.demo.server import HOST

if TYPE_CHECKING:
    from capview.demo.sandbox import DemoHost, Sandbox

APP_NAME = "demo-app"
HEALTH_TIMEOUT = 2.5  # the demo app starts in ~0.3 s; a short timeout keeps the broken seed quick
HEALTH_INTERVAL = 0.2
KEEP_RELEASES = 5


def _yaml_str(value: str) -> str:
    return json.dumps(value)  # a JSON string is a valid YAML double-quoted scalar


def _service_yaml(sb: Sandbox, h: DemoHost, indent: str) -> str:
    ctl = shlex.quote(str(sb.appctl))
    dp = shlex.quote(str(h.deploy_path))
    log = shlex.quote(str(h.log_file))
    return (
        f"{indent}service:\n"
        f"{indent}  manager: command\n"
        f"{indent}  start: {_yaml_str(f'sh {ctl} start {dp} {h.app_port}')}\n"
        f"{indent}  stop: {_yaml_str(f'sh {ctl} stop {dp}')}\n"
        f"{indent}  status: {_yaml_str(f'sh {ctl} status {dp}')}\n"
        f"{indent}  logs: {_yaml_str(f'tail -n 200 {log}')}\n"
    )


def _host_yaml(sb: Sandbox, h: DemoHost) -> str:
    i = "        "
    return (
        f"      - name: {h.name}\n"
        f"{i}host: {HOST}\n"
        f"{i}port: {sb.ssh_port}\n"
        f"{i}deploy_path: {_yaml_str(str(h.deploy_path))}\n"
        f"{i}health:\n"
        f"{i}  url: {_yaml_str(h.health_url)}\n"
        f"{i}  timeout: {HEALTH_TIMEOUT:g}\n"
        f"{i}  interval: {HEALTH_INTERVAL:g}\n"
        f"{i}  expect_status: 200\n"
        + _service_yaml(sb, h, i)
    )


def cli_command() -> str:
    """How a shell runs this capview, as printed in the demo's hints: ``capview`` when that
    is what PATH finds, else this installation's script by its path (``make demo`` does not
    put .venv/bin on PATH), else ``python -m capview`` with this Python."""
    here = Path(sys.executable).parent / "capview"
    found = shutil.which("capview")
    try:
        if found and here.exists() and os.path.samefile(found, here):
            return "capview"
    except OSError:
        pass
    if here.is_file() and os.access(here, os.X_OK):
        return shlex.quote(str(here))
    return f"{shlex.quote(sys.executable)} -m capview"


def serve_command(where: Sandbox | Path) -> str:
    """The command that keeps a sandbox's hosts up (``where``: the sandbox or its directory)."""
    d = where if isinstance(where, Path) else where.dir
    return f"{cli_command()} demo --serve --dir {shlex.quote(str(d))}"


def cli_hints(sb: Sandbox) -> list[str]:
    """Commands that use the sandbox from a shell, exactly as they must be typed."""
    cli, cfg = cli_command(), shlex.quote(str(sb.config_path))
    return [f"{cli} -c {cfg} {cmd}" for cmd in (
        "releases prod", "release v2.0.0 prod", "rollback prod", "migrate-data legacy --dry-run", "ui")]


def render_config(sb: Sandbox) -> str:
    hint = f"#   {serve_command(sb)}\n# and then, in another terminal:\n" + "".join(f"#   {c}\n" for c in cli_hints(sb))
    prod = "".join(_host_yaml(sb, h) for h in sb.env_hosts("prod"))
    legacy = "".join(_host_yaml(sb, h) for h in sb.env_hosts("legacy"))
    first = sb.env_hosts("prod")[0]
    return f"""\
# capview demo sandbox: written by `capview demo` ({sb.dir}).
# Every "host" is a directory under hosts/, reached over a real SSH connection to
# the demo's embedded SSH server on {HOST}:{sb.ssh_port} (host key pinned in known_hosts).
# That server runs only while a `capview demo` runs. To use the CLI on the sandbox,
# keep its hosts up (no dashboard; Ctrl-C stops them) with
{hint}app: {APP_NAME}
# default deploy_path; every demo host sets its own below
deploy_path: {_yaml_str(str(first.deploy_path))}
# what `capview release NAME prod` uploads (the demo seeds src/v1.0.0 ... with source=)
source: src/next
keep_releases: {KEEP_RELEASES}
exclude: [".git", "*.pyc", "__pycache__"]
shared:
  dirs: [data]
  files: [.env]
build: null
ssh:
  known_hosts: {_yaml_str(str(sb.known_hosts))}
  identity_file: {_yaml_str(str(sb.client_key))}
  config_file: {_yaml_str(str(sb.ssh_config))}
environments:
  prod:
    strategy: parallel
    hosts:
{prod}  legacy:
    hosts:
{legacy}"""
