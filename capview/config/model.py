"""deploy.yaml's model: frozen dataclasses, fully resolved per host.

Settings resolve top-level -> environment -> host: any settings key may be
overridden per environment, and per host (e.g. a host's own deploy_path or
health URL). The loader (loader.py) builds them; every engine module takes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from capview.errors import ConfigError

ServiceManager = Literal["systemd-user", "command", "none"]
Strategy = Literal["rolling", "parallel"]
UploadMethod = Literal["tar", "rsync"]
Compression = Literal["auto", "never", "always"]
OnFailure = Literal["revert_all", "stop"]
TraefikMode = Literal["retry", "maintenance"]


@dataclass(frozen=True)
class SharedConfig:
    dirs: tuple[str, ...] = ("data",)
    files: tuple[str, ...] = (".env",)


@dataclass(frozen=True)
class BuildConfig:
    command: str  # may use {image}, {version}, {release_path}; values are shell-quoted
    image: str | None = None


@dataclass(frozen=True)
class ServiceConfig:
    manager: ServiceManager = "none"
    unit: str | None = None  # systemd-user
    start: str | None = None  # command
    stop: str | None = None
    status: str | None = None
    logs: str | None = None  # command printing recent logs (health.log on failure)


@dataclass(frozen=True)
class HealthConfig:
    url: str
    timeout: float = 30.0
    interval: float = 1.0
    expect_status: int = 200


@dataclass(frozen=True)
class UploadConfig:
    method: UploadMethod = "tar"
    writable: tuple[str, ...] = ()  # globs: files kept writable, sent every deploy, never hard-linked
    compress: Compression = "auto"  # compress the stream when the host can and the link is slow


HOOK_POINTS = ("after_upload", "before_start", "after_switch", "after_rollback", "on_failure")


@dataclass(frozen=True)
class HooksConfig:
    """Shell commands run on the host, in the release directory, at points of an operation.

    after_upload: old release still serving; before_start: the old release is stopped and
    the new one not started (schema migrations); after_switch / after_rollback: after a
    healthy switch; on_failure: never fails the operation. Each command gets ``timeout``."""

    after_upload: tuple[str, ...] = ()
    before_start: tuple[str, ...] = ()
    after_switch: tuple[str, ...] = ()
    after_rollback: tuple[str, ...] = ()
    on_failure: tuple[str, ...] = ()
    timeout: float = 300.0

    def at(self, point: str) -> tuple[str, ...]:
        return getattr(self, point)


@dataclass(frozen=True)
class DataConfig:
    """SQLite databases (paths relative to shared/) snapshotted in the switch window."""

    sqlite: tuple[str, ...] = ()
    snapshots: int = 5  # snapshots kept per database; 0 takes none


@dataclass(frozen=True)
class SshOptions:
    known_hosts: str | None = None  # None: ~/.ssh/known_hosts (checking is always on)
    identity_file: str | None = None
    config_file: str | None = None  # None: ~/.ssh/config when it exists
    connect_timeout: float = 10.0
    keepalive: float = 15.0


@dataclass(frozen=True)
class TraefikConfig:
    mode: TraefikMode = "retry"
    rule: str = "PathPrefix(`/`)"
    entry_points: tuple[str, ...] = ("web",)
    port: int = 8080
    maintenance_page: str | None = None  # local HTML file, relative to deploy.yaml
    maintenance_port: int = 8099
    dynamic_dir: str | None = None  # where --write puts the file on the host; default <deploy_path>/traefik


@dataclass(frozen=True)
class Settings:
    """Everything a host needs to deploy; fully resolved (top -> env -> host)."""

    app: str
    deploy_path: str
    source: Path  # absolute, resolved against deploy.yaml's directory
    keep_releases: int = 5
    exclude: tuple[str, ...] = (".git",)
    shared: SharedConfig = field(default_factory=SharedConfig)
    build: BuildConfig | None = None
    service: ServiceConfig = field(default_factory=ServiceConfig)
    health: HealthConfig | None = None
    upload: UploadConfig = field(default_factory=UploadConfig)
    hooks: HooksConfig = field(default_factory=HooksConfig)
    data: DataConfig = field(default_factory=DataConfig)
    ssh: SshOptions = field(default_factory=SshOptions)
    traefik: TraefikConfig | None = None


@dataclass(frozen=True)
class HostConfig:
    name: str  # display name, unique in the file
    host: str  # address or ~/.ssh/config alias
    settings: Settings
    user: str | None = None  # None: from ~/.ssh/config, else the local user
    port: int | None = None  # None: from ~/.ssh/config, else 22
    env: str = ""  # name of the environment it belongs to


@dataclass(frozen=True)
class Rollout:
    """How an environment's hosts switch once every host is ready (stage 2)."""

    batch_size: int | None = None  # hosts switched together; None: 1 (rolling) or all (parallel)
    batch_percent: int | None = None  # batch_size as a share of the hosts, rounded up
    canary: int = 0  # this many hosts first, then canary_wait of health checks, then the rest
    canary_wait: float = 30.0
    on_failure: OnFailure = "revert_all"  # stop: leave switched hosts switched (the env is split)


@dataclass(frozen=True)
class Environment:
    name: str
    hosts: tuple[HostConfig, ...]
    settings: Settings
    strategy: Strategy = "rolling"
    max_parallel: int = 10
    rollout: Rollout = field(default_factory=Rollout)

    def host(self, name: str) -> HostConfig:
        for h in self.hosts:
            if h.name == name:
                return h
        known = ", ".join(h.name for h in self.hosts)
        raise ConfigError(f"environment {self.name!r} has no host {name!r} (hosts: {known})")

    def select(self, host: str | None) -> tuple[HostConfig, ...]:
        return self.hosts if host is None else (self.host(host),)


@dataclass(frozen=True)
class Config:
    path: Path
    environments: tuple[Environment, ...]

    def env(self, name: str) -> Environment:
        for e in self.environments:
            if e.name == name:
                return e
        known = ", ".join(e.name for e in self.environments) or "none defined"
        raise ConfigError(f"{self.path}: unknown environment {name!r} (known: {known})")
