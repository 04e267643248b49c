"""Helpers for tests that deploy the sample app to the real testbed hosts.

``App`` ties a TestHost to a deploy_path, a free port, a real systemd --user
unit that runs ``current/app.py``, and capview's HostConfig/Environment for it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import json
import secrets
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from capview.config import (
    BuildConfig, Environment, HealthConfig, HostConfig, ServiceConfig, Settings, SharedConfig, SshOptions,
)

APP_SRC = Path(__file__).parent / "apps" / "webapp" / "app.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_source(root: Path, version: str, *, broken: bool = False, files: int = 20,
                containerfile: str | None = None, extra: dict[str, str] | None = None) -> Path:
    """A release tree: app.py, VERSION, templates, static assets, a Containerfile."""
    d = root / f"src-{version}"
    if d.exists():
        shutil.rmtree(d)
    (d / "templates").mkdir(parents=True)
    (d / "static" / "img").mkdir(parents=True)
    shutil.copy(APP_SRC, d / "app.py")
    (d / "VERSION").write_text(version + "\n")
    for i in range(files):
        (d / "templates" / f"page{i}.html").write_text(f"<h1>page {i}</h1>\n" * 50)
        (d / "static" / f"style{i}.css").write_text(f".c{i} {{ color: red; }}\n" * 100)
    (d / "static" / "img" / "logo.bin").write_bytes(bytes(range(256)) * 400)
    (d / "static" / "latest.css").symlink_to("style0.css")
    (d / "bin").mkdir()
    (d / "bin" / "run.sh").write_text("#!/bin/sh\nexec python3 app.py \"$@\"\n")
    (d / "bin" / "run.sh").chmod(0o755)
    (d / "Containerfile").write_text(containerfile or "FROM scratch\nCOPY app.py VERSION /app/\n")
    if broken:
        (d / "BROKEN").write_text("health answers 500\n")
    for name, text in (extra or {}).items():
        (d / name).write_text(text)
    return d


@dataclass
class App:
    host: object  # testbed.TestHost
    name: str
    deploy_path: str
    port: int
    unit: str
    image: str | None

    def settings(self, source: Path, **over) -> Settings:
        s = Settings(
            app=self.name,
            deploy_path=self.deploy_path,
            source=source,
            keep_releases=over.pop("keep_releases", 5),
            exclude=(".git", "*.pyc"),
            shared=SharedConfig(dirs=("data",), files=(".env",)),
            build=(BuildConfig(command=f"podman build -q --label capview.test.app={self.name} -t {{image}}:{{version}} .",
                               image=self.image)
                   if self.image else None),
            service=ServiceConfig(manager="systemd-user", unit=self.unit),
            health=HealthConfig(url=f"http://127.0.0.1:{self.port}/health", timeout=10, interval=0.2),
            ssh=SshOptions(known_hosts=str(self.host.known_hosts), identity_file=str(self.host.identity_file),
                           connect_timeout=10),
        )
        return dataclasses.replace(s, **over)

    def host_config(self, source: Path, **over) -> HostConfig:
        return HostConfig(name=self.host.name, host=self.host.host, port=self.host.port, user=self.host.user,
                          settings=self.settings(source, **over), env="test")

    def env(self, source: Path, strategy: str = "rolling", **over) -> Environment:
        h = self.host_config(source, **over)
        return Environment(name="test", hosts=(h,), settings=h.settings, strategy=strategy)

    # ---- looking at the host ------------------------------------------------
    def sh(self, cmd: str, check: bool = True) -> str:
        return self.host.run_as_user(cmd, check=check).stdout

    def get(self, path: str = "/health", timeout: float = 3) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()

    def release_json(self, version: str) -> dict:
        return json.loads(self.sh(f"cat {self.deploy_path}/releases/{version}/.capview/release.json"))

    def history(self) -> list[dict]:
        text = self.sh(f"cat {self.deploy_path}/.capview/history.jsonl 2>/dev/null || true")
        return [json.loads(l) for l in text.splitlines() if l.strip()]

    def current(self) -> str:
        return self.sh(f"readlink {self.deploy_path}/current").strip()

    def main_pid(self) -> str:
        return self.host.systemctl("show", "-p", "MainPID", "--value", self.unit).stdout.strip()

    def tree_hash(self) -> str:
        """Hash of every path, type, mode, size, link target, mtime and content under deploy_path."""
        out = self.sh(
            f"cd {self.deploy_path} && find . -printf '%p %y %m %s %l %T@\\n' | LC_ALL=C sort && "
            f"find . -type f -exec sha256sum {{}} + | LC_ALL=C sort"
        )
        return hashlib.sha256(out.encode()).hexdigest()


def new_app(host, *, build: bool = True, tag: str | None = None, graceful: bool = False,
            socket_activated: bool = False) -> App:
    """Prepare a deploy_path with shared/.env and a real systemd --user unit for the app.

    socket_activated: a ``<name>.socket`` unit owns the listening port (systemd socket
    activation) and hands it to the app, which then serves from fd 3."""
    tag = tag or secrets.token_hex(3)
    name = f"cvapp-{tag}"
    dp = f"{host.base}/web/{name}"
    port = free_port()
    host.run_as_user(f"mkdir -p {dp}/shared/data && printf 'SECRET=s3cr3t-{tag}\\n' > {dp}/shared/.env && chmod 600 {dp}/shared/.env")
    host.install_unit(name, (
        "[Unit]\nDescription=capview test app\n\n"
        f"[Service]\nExecStart=/usr/bin/python3 -u {dp}/current/app.py {port}{' --graceful' if graceful else ''}\n"
        f"WorkingDirectory={dp}/current\nRestart=no\n"
    ))
    if socket_activated:
        host.install_unit(f"{name}.socket", (
            "[Unit]\nDescription=capview test app socket\n\n"
            f"[Socket]\nListenStream=127.0.0.1:{port}\nBacklog=1024\n\n[Install]\nWantedBy=sockets.target\n"
        ))
        # enabled, as docs/traefik.md tells users: systemd then always knows the socket
        # triggers the app (TriggeredBy=), even while both are stopped
        host.systemctl("enable", f"{name}.socket", check=True)
    return App(host, name, dp, port, name, f"localhost/{name}" if build else None)


@contextlib.contextmanager
def app_on_tmpfs(host, options: str, tag: str):
    """An app (no build) whose deploy_path's parent is a tmpfs mounted with ``options``
    (a small disk, few inodes...); the service is stopped and the tmpfs unmounted afterwards."""
    web = host.base / "web"
    web.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"{options},mode=755", f"cv-{tag}", str(web)], check=True)
    os.chown(web, host.uid, host.pw.pw_gid)
    app = new_app(host, build=False, tag=tag)
    try:
        yield app
    finally:
        host.systemctl("stop", app.unit)
        if subprocess.run(["umount", str(web)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(web)], check=False)
