"""Helpers for the CLI tests: write a deploy.yaml for testbed hosts, run the real CLI.

``write_config`` turns ``realhost.App`` objects (one per host) into a deploy.yaml where
every host entry overrides what differs per host: ssh (known_hosts, identity_file),
deploy_path, the unit, the health URL and the image. ``run_cli`` runs
``python -m capview`` in a subprocess (stdin/stdout not a TTY) and fails the test if
any output contains a Python traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
ENV_NAME = "test"


def host_entry(app, *, port: int | None = None, name: str | None = None) -> dict:
    h = app.host
    entry = {
        "name": name or h.name,
        "host": h.host,
        "user": h.user,
        "port": port if port is not None else h.port,
        "ssh": {"known_hosts": str(h.known_hosts), "identity_file": str(h.identity_file),
                "connect_timeout": "5s"},
        "deploy_path": app.deploy_path,
        "service": {"unit": app.unit},
        "health": {"url": f"http://127.0.0.1:{app.port}/health"},
    }
    if app.image:
        # The testbed's "hosts" (and concurrent test sessions) share one podman storage (same
        # user): concurrent builds of identical content there lose tags ("image not known").
        # A label per app makes the images distinct, as they are on real separate hosts.
        entry["build"] = {"image": app.image,
                          "command": f"podman build -q --layers=false --label capview.test.app={app.name} -t {{image}}:{{version}} ."}
    return entry


def write_config(path: Path, apps, *, source: Path | str = "./src", strategy: str = "rolling",
                 build: bool = True, entries: list[dict] | None = None, **top) -> Path:
    """A deploy.yaml at ``path`` with one environment ``test`` holding every app's host."""
    first = apps[0]
    doc = {
        "app": "cvapp",
        "deploy_path": first.deploy_path,
        "keep_releases": 5,
        "source": str(source),
        "exclude": [".git", "*.pyc"],
        "shared": {"dirs": ["data"], "files": [".env"]},
        "build": ({"command": "podman build -q --layers=false -t {image}:{version} .", "image": first.image or "localhost/cvapp"}
                  if build else None),
        "service": {"manager": "systemd-user", "unit": first.unit},
        "health": {"url": f"http://127.0.0.1:{first.port}/health", "timeout": "10s", "interval": "200ms",
                   "expect_status": 200},
        "environments": {ENV_NAME: {"strategy": strategy,
                                    "hosts": entries if entries is not None else [host_entry(a) for a in apps]}},
    }
    doc.update(top)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def cli_argv(*args: str) -> list[str]:
    return [PYTHON, "-m", "capview", *args]


def cli_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CAPVIEW_CONFIG", None)
    env["PYTHONPATH"] = str(REPO) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["COLUMNS"] = "200"
    return env


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    cp = subprocess.run(cli_argv(*args), capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO,
                        env=cli_env(), stdin=subprocess.DEVNULL)
    assert_no_traceback(cp)
    return cp


def assert_no_traceback(cp) -> None:
    out = (cp.stdout or "") + (cp.stderr or "")
    assert "Traceback" not in out, f"traceback in output of {cp.args}:\n{out}"


def show(cp) -> str:
    return f"exit {cp.returncode}\n--- stdout ---\n{cp.stdout}\n--- stderr ---\n{cp.stderr}"


def lines(text: str) -> list[str]:
    return [l for l in text.splitlines() if l.strip()]
