"""deploy.yaml -> located YAML nodes -> per-level layers -> merged -> the model's dataclasses.

Every error is one line: ``file:line:column: key.path: what is wrong; what to do``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from capview.config.model import (
    BuildConfig, Config, DataConfig, Environment, HealthConfig, HooksConfig, HostConfig, Rollout, ServiceConfig,
    Settings, SharedConfig, SshOptions, TraefikConfig, UploadConfig,
)
from capview.config.schema import (
    EXAMPLE_PATH, MISSING, NULLABLE_SECTIONS, SCALAR_SETTINGS, SECTION_EXAMPLES, SECTIONS, WRONG_LEVEL, ENV_KEYS,
    ENV_NAME_RE, HOST_KEYS, HOST_NAME_RE, MAX_FILE_BYTES, ON_FAILURE, SERVICE_MANAGERS, STRATEGIES, TOP_KEYS, NodeError, fail_at,
    kind_of, suggest, v_batch_size, v_duration_or_zero, v_enum, v_host_addr, v_host_name, v_int, v_port, v_user,
)
from capview.config.yaml_nodes import Pos, YamlProblem, YMap, YNode, YScalar, YSeq, join, show
from capview.config.yaml_nodes import parse as parse_yaml
from capview.errors import ConfigError

@dataclass
class _F:
    """A validated value and the node it came from."""

    value: Any
    node: YNode


@dataclass
class _S:
    """A settings section at one level: its fields, or None when set to null."""

    node: YNode
    fields: dict[str, _F] | None


_Layer = dict[str, Any]  # key -> _F | _S


def _merge(*layers: _Layer) -> _Layer:
    out: _Layer = {}
    for layer in layers:
        for key, item in layer.items():
            prev = out.get(key)
            if isinstance(item, _S) and item.fields is not None and isinstance(prev, _S) and prev.fields is not None:
                new_mgr, old_mgr = item.fields.get("manager"), prev.fields.get("manager")
                if key == "service" and new_mgr is not None and old_mgr is not None and new_mgr.value != old_mgr.value:
                    out[key] = item  # switching manager: the other manager's keys do not carry over
                else:
                    out[key] = _S(item.node, {**prev.fields, **item.fields})
            else:
                out[key] = item
    return out


class _Loader:
    def __init__(self, base_dir: Path) -> None:
        self.base_dir = base_dir
        self.errors: list[NodeError] = []

    # -- helpers -----------------------------------------------------------------------

    def attempt(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except NodeError as exc:
            self.errors.append(exc)
            return MISSING

    def check_keys(self, node: YMap, allowed: tuple[str, ...], level: str) -> None:
        for key in node.items:
            if key in allowed:
                continue
            path = join(node.path, key)
            where = WRONG_LEVEL.get((level, key))
            if where:
                msg = f"not allowed here; {where}"
            else:
                near = suggest(key, allowed)
                msg = f"unknown key; did you mean {near!r}?" if near else f"unknown key; valid keys: {', '.join(allowed)}"
            self.errors.append(NodeError(node.key_pos[key], path, msg))

    @staticmethod
    def want_map(node: YNode, what: str) -> YMap:
        if not isinstance(node, YMap):
            raise fail_at(node, f"expected {what}, got {kind_of(node)}")
        return node

    def local_path(self, value: str) -> Path:
        return Path(os.path.abspath(self.base_dir / os.path.expanduser(value)))

    # -- levels ------------------------------------------------------------------------

    def section(self, key: str, node: YNode) -> _S:
        example = SECTION_EXAMPLES[key]
        if isinstance(node, YScalar) and node.value is None:
            if key not in NULLABLE_SECTIONS:
                raise fail_at(node, f"cannot be null; remove the key to use the defaults, or write e.g. {key}: {example}")
            return _S(node, None)
        if not isinstance(node, YMap):
            alt = " or null to disable it" if key in ("build", "health", "traefik") else ""
            raise fail_at(node, f"expected a mapping such as {example}{alt}, got {kind_of(node)}")
        validators = SECTIONS[key]
        self.check_keys(node, tuple(validators), key)
        fields: dict[str, _F] = {}
        for sub, sub_node in node.items.items():
            if sub in validators:
                v = self.attempt(validators[sub], sub_node)
                if v is not MISSING:
                    fields[sub] = _F(v, sub_node)
        return _S(node, fields)

    def settings_layer(self, node: YMap) -> _Layer:
        layer: _Layer = {}
        for key, sub in node.items.items():
            if key in SECTIONS:
                v = self.attempt(self.section, key, sub)
                if v is not MISSING:
                    layer[key] = v
            elif key in SCALAR_SETTINGS:
                v = self.attempt(SCALAR_SETTINGS[key], sub)
                if v is not MISSING:
                    layer[key] = _F(v, sub)
        return layer

    def env_options(self, node: YMap) -> _Layer:
        checks: dict[str, Callable[[YNode], Any]] = {
            "strategy": v_enum(STRATEGIES),
            "max_parallel": lambda n: v_int(n, 1, None, ""),
            "batch_size": v_batch_size,
            "canary": lambda n: v_int(n, 0, None, "hosts switched and checked first"),
            "canary_wait": v_duration_or_zero,
            "on_failure": v_enum(ON_FAILURE),
        }
        out: _Layer = {}
        for key, check in checks.items():
            if key in node.items:
                v = self.attempt(check, node.items[key])
                if v is not MISSING:
                    out[key] = _F(v, node.items[key])
        return out

    @staticmethod
    def rollout(opts: _Layer) -> Rollout:
        size, percent = opts["batch_size"].value if "batch_size" in opts else (None, None)
        kw: dict[str, Any] = {"batch_size": size, "batch_percent": percent}
        for key in ("canary", "canary_wait", "on_failure"):
            if key in opts:
                kw[key] = opts[key].value
        return Rollout(**kw)

    def host_entry(self, node: YNode) -> tuple[str, YNode, str, str | None, int | None, _Layer] | None:
        """(name, name_node, host, user, port, settings layer) or None if invalid."""
        if isinstance(node, YScalar) and isinstance(node.value, str):
            addr = v_host_addr(node)
            if not HOST_NAME_RE.match(addr):
                raise fail_at(node, f"cannot use {show(addr)} as the host's name; write {{name: prod-1, host: {addr}}}")
            return addr, node, addr, None, None, {}
        if not isinstance(node, YMap):
            raise fail_at(
                node,
                f"expected a host: a ~/.ssh/config alias (- vps2) or a mapping like "
                f"{{name: prod-1, host: vps1.example.com}}, got {kind_of(node)}",
            )
        n_before = len(self.errors)
        self.check_keys(node, HOST_KEYS, "host")
        items = node.items
        host = name = user = port = MISSING
        if "host" in items:
            host = self.attempt(v_host_addr, items["host"])
        else:
            what = "the address or ~/.ssh/config alias to connect to"
            self.errors.append(NodeError(node.pos, join(node.path, "host"), f"missing; add host: <{what}>", late=True))
        if "name" in items:
            name = self.attempt(v_host_name, items["name"])
        if "user" in items:
            user = self.attempt(v_user, items["user"])
        if "port" in items:
            port = self.attempt(v_port, items["port"])
        layer = self.settings_layer(node)
        if len(self.errors) > n_before:
            return None
        name_node = items.get("name") or items["host"]
        if name is MISSING:
            name = host
            if not HOST_NAME_RE.match(name):
                raise fail_at(items["host"], f"cannot use {show(name)} as the host's name; add name: (e.g. prod-1)")
        return (
            name,
            name_node,
            host,
            None if user is MISSING else user,
            None if port is MISSING else port,
            layer,
        )

    # -- building the dataclasses --------------------------------------------------------

    def build_settings(self, m: _Layer) -> Settings:
        """Cross-field checks on merged settings, then the Settings dataclass."""
        app = m["app"].value
        source = self.local_path(m["source"].value) if "source" in m else self.base_dir
        kwargs: dict[str, Any] = {}
        if "keep_releases" in m:
            kwargs["keep_releases"] = m["keep_releases"].value
        if "exclude" in m:
            kwargs["exclude"] = m["exclude"].value
        for key, builder in (
            ("shared", self.build_shared),
            ("build", self.build_build),
            ("service", self.build_service),
            ("health", self.build_health),
            ("upload", self.build_upload),
            ("hooks", self.build_hooks),
            ("data", self.build_data),
            ("ssh", self.build_ssh),
            ("traefik", self.build_traefik),
        ):
            if key in m:
                v = self.attempt(builder, m[key])
                if v is not MISSING:
                    kwargs[key] = v
        if "data" in m and "data" in kwargs:
            self.attempt(self.check_data_is_shared, m["data"], kwargs["data"], kwargs.get("shared", SharedConfig()))
        return Settings(app=app, deploy_path=m["deploy_path"].value, source=source, **kwargs)

    @staticmethod
    def check_data_is_shared(s: _S, data: DataConfig, shared: SharedConfig) -> None:
        """A snapshotted database must live in shared/ (a shared dir or a shared file)."""
        field_node = (s.fields or {}).get("sqlite")
        for i, db in enumerate(data.sqlite):
            if db in shared.files or any(db.startswith(d + "/") for d in shared.dirs):
                continue
            node: YNode = s.node
            if field_node is not None and isinstance(field_node.node, YSeq) and i < len(field_node.node.items):
                node = field_node.node.items[i]
            dirs = ", ".join(shared.dirs) or "none"
            raise fail_at(node, f"{show(db)} is not inside a shared path (shared.dirs: {dirs}); "
                                "list databases by their path in shared/, e.g. data/app.db")

    @staticmethod
    def _vals(s: _S) -> dict[str, Any]:
        return {k: f.value for k, f in (s.fields or {}).items()}

    def build_shared(self, s: _S) -> SharedConfig:
        if s.fields is None:
            return SharedConfig(dirs=(), files=())
        cfg = SharedConfig(**self._vals(s))
        seen: dict[str, str] = {}
        for kind, names in (("dirs", cfg.dirs), ("files", cfg.files)):
            field_node = s.fields.get(kind)
            for i, name in enumerate(names):
                node: YNode = s.node
                if field_node is not None and isinstance(field_node.node, YSeq) and i < len(field_node.node.items):
                    node = field_node.node.items[i]
                for other, other_kind in seen.items():
                    if other == name:
                        raise fail_at(node, f"{show(name)} is listed in both shared.dirs and shared.files; keep one")
                    if name.startswith(other + "/") or other.startswith(name + "/"):
                        raise fail_at(
                            node,
                            f"{show(name)} overlaps shared.{other_kind} entry {show(other)}; "
                            "a shared path may not contain another one",
                        )
                seen[name] = kind
        return cfg

    def build_build(self, s: _S) -> BuildConfig | None:
        if s.fields is None:
            return None
        if "command" not in s.fields:
            raise fail_at(
                s.node, "missing command; add build.command, or write build: null to skip the build", join(s.node.path, "command")
            )
        cmd = s.fields["command"]
        if "image" not in s.fields and "{image}" in cmd.value.replace("{{", ""):
            raise fail_at(cmd.node, "uses {image} but build.image is not set; add build.image (e.g. image: my-app)")
        return BuildConfig(**self._vals(s))

    def build_service(self, s: _S) -> ServiceConfig:
        if s.fields is None:
            return ServiceConfig(manager="none")
        f = s.fields
        if "manager" not in f:
            raise fail_at(
                s.node, f"missing; add service.manager: one of {', '.join(SERVICE_MANAGERS)}", join(s.node.path, "manager")
            )
        manager = f["manager"].value
        needs = {"systemd-user": ("unit",), "command": ("start", "stop"), "none": ()}[manager]
        # logs: any manager (an app that logs to files names the command that prints them)
        allowed = {"systemd-user": ("unit", "logs"), "command": ("start", "stop", "status", "logs"),
                   "none": ("logs",)}[manager]
        for key in needs:
            if key not in f:
                raise fail_at(
                    f["manager"].node,
                    f"manager {manager} needs service.{key}; add {key}:"
                    + (" (the systemd --user unit name, e.g. my-app)" if key == "unit" else " (a shell command)"),
                    join(s.node.path, "manager"),
                )
        for key, fld in f.items():
            if key != "manager" and key not in allowed:
                raise fail_at(
                    fld.node,
                    f"not used with manager {manager}; remove it"
                    + (" or use manager: command" if key in ("start", "stop", "status", "logs") else ""),
                )
        return ServiceConfig(**self._vals(s))

    def build_health(self, s: _S) -> HealthConfig | None:
        if s.fields is None:
            return None
        f = s.fields
        if "url" not in f:
            raise fail_at(
                s.node, "missing; add health.url (e.g. http://127.0.0.1:8080/health) or write health: null", join(s.node.path, "url")
            )
        cfg = HealthConfig(**self._vals(s))
        if cfg.interval > cfg.timeout:
            node = f["interval"].node if "interval" in f else f["timeout"].node
            raise fail_at(node, f"interval ({cfg.interval:g}s) is longer than timeout ({cfg.timeout:g}s); shorten it")
        return cfg

    def build_upload(self, s: _S) -> UploadConfig:
        return UploadConfig(**self._vals(s))

    def build_hooks(self, s: _S) -> HooksConfig:
        return HooksConfig() if s.fields is None else HooksConfig(**self._vals(s))

    def build_data(self, s: _S) -> DataConfig:
        return DataConfig() if s.fields is None else DataConfig(**self._vals(s))

    def build_ssh(self, s: _S) -> SshOptions:
        vals = self._vals(s)
        for key in ("known_hosts", "identity_file", "config_file"):
            if key in vals:
                vals[key] = str(self.local_path(vals[key]))
        return SshOptions(**vals)

    def build_traefik(self, s: _S) -> TraefikConfig | None:
        if s.fields is None:
            return None
        vals = self._vals(s)
        if "maintenance_page" in vals:
            vals["maintenance_page"] = str(self.local_path(vals["maintenance_page"]))
        cfg = TraefikConfig(**vals)
        if cfg.mode == "maintenance" and cfg.maintenance_port == cfg.port:
            node = s.fields["maintenance_port"].node if "maintenance_port" in s.fields else s.node
            raise fail_at(node, f"maintenance_port must differ from port ({cfg.port})")
        return cfg

    # -- the whole file ------------------------------------------------------------------

    def load(self, root: YNode, path: Path) -> Config:
        if not isinstance(root, YMap):
            raise NodeError(
                root.pos,
                "top level",
                f"expected a mapping with app, deploy_path and environments, got {kind_of(root)}",
            )
        self.check_keys(root, TOP_KEYS, "top")
        top = self.settings_layer(root)
        top_opts = self.env_options(root)
        for key, example in (("app", "app: my-app"), ("deploy_path", f"deploy_path: {EXAMPLE_PATH}")):
            if key not in root.items:
                self.errors.append(NodeError(root.pos, key, f"missing required key; add e.g. {example}", late=True))
        envs_node = root.items.get("environments")
        parsed_envs: list[tuple[str, _Layer, _Layer, list[tuple[Any, ...]]]] = []
        if envs_node is None:
            self.errors.append(
                NodeError(
                    root.pos,
                    "environments",
                    "missing required key; add environments: {prod: {hosts: [...]}}",
                    late=True,
                )
            )
        else:
            parsed = self.attempt(self.environments, envs_node)
            parsed_envs = [] if parsed is MISSING else parsed
        if self.errors:
            raise self.first_error()

        environments: list[Environment] = []
        for env_name, env_layer, env_opts, hosts in parsed_envs:
            opts = _merge(top_opts, env_opts)
            host_cfgs: list[HostConfig] = []
            for name, host, user, port, host_layer in hosts:
                settings = self.attempt(self.build_settings, _merge(top, env_layer, host_layer))
                if settings is MISSING:
                    continue
                host_cfgs.append(HostConfig(name=name, host=host, settings=settings, user=user, port=port, env=env_name))
            if self.errors or not host_cfgs:
                continue
            # The environment's own settings (top + env). Required values may be supplied
            # only per host (e.g. every host its own health.url): then use the first host's.
            side = _Loader(self.base_dir)
            env_settings = side.attempt(side.build_settings, _merge(top, env_layer))
            if env_settings is MISSING or side.errors:
                env_settings = host_cfgs[0].settings
            environments.append(
                Environment(
                    name=env_name,
                    hosts=tuple(host_cfgs),
                    settings=env_settings,
                    strategy=opts["strategy"].value if "strategy" in opts else "rolling",
                    max_parallel=opts["max_parallel"].value if "max_parallel" in opts else 10,
                    rollout=self.rollout(opts),
                )
            )
        if self.errors:
            raise self.first_error()
        return Config(path=path, environments=tuple(environments))

    def environments(self, node: YNode) -> list[tuple[str, _Layer, _Layer, list[tuple[Any, ...]]]]:
        envs = self.want_map(node, "a mapping of environment names to environments, e.g. {prod: {hosts: [vps1]}}")
        if not envs.items:
            raise fail_at(envs, "no environments defined; add at least one, e.g. prod: {hosts: [vps1]}")
        host_names: dict[str, YNode] = {}
        out = []
        for env_name, env_node in envs.items.items():
            if not ENV_NAME_RE.match(env_name):
                self.errors.append(
                    NodeError(
                        envs.key_pos[env_name],
                        env_node.path,
                        f"{show(env_name)} is not a valid environment name; use letters, digits, '.', '_', '-'",
                    )
                )
                continue
            if not isinstance(env_node, YMap):
                hint = "; add hosts: [...]" if isinstance(env_node, YScalar) and env_node.value is None else ""
                self.errors.append(fail_at(env_node, f"expected a mapping with hosts:, got {kind_of(env_node)}{hint}"))
                continue
            self.check_keys(env_node, ENV_KEYS, "env")
            layer = self.settings_layer(env_node)
            opts = self.env_options(env_node)
            hosts_node = env_node.items.get("hosts")
            hosts: list[tuple[Any, ...]] = []
            if hosts_node is None:
                self.errors.append(
                    NodeError(
                        env_node.pos,
                        join(env_node.path, "hosts"),
                        "missing; add hosts: [{name: ..., host: ...}]",
                        late=True,
                    )
                )
            elif not isinstance(hosts_node, YSeq) or not hosts_node.items:
                got = "an empty list" if isinstance(hosts_node, YSeq) else kind_of(hosts_node)
                self.errors.append(
                    fail_at(hosts_node, f"expected a non-empty list of hosts, got {got}; add e.g. - {{name: prod-1, host: vps1}}")
                )
            else:
                for item in hosts_node.items:
                    entry = self.attempt(self.host_entry, item)
                    if entry in (None, MISSING):
                        continue
                    name, name_node, host, user, port, host_layer = entry
                    if name in host_names:
                        first = host_names[name]
                        self.errors.append(
                            fail_at(
                                name_node,
                                f"duplicate host name {show(name)} (also {first.path} on line {first.pos.line}); "
                                "host names must be unique in the whole file; give one of them another name:",
                            )
                        )
                        continue
                    host_names[name] = name_node
                    hosts.append((name, host, user, port, host_layer))
            out.append((env_name, layer, opts, hosts))
        return out

    def first_error(self) -> NodeError:
        return min(self.errors, key=_order)


def _order(e: NodeError | YamlProblem) -> tuple[bool, int, int]:
    return (getattr(e, "late", False), e.pos.line, e.pos.column)


def _format(display: str, pos: Pos | None, path: str, message: str) -> str:
    where = f"{display}:{pos.line}:{pos.column}" if pos is not None else display
    if len(path) > 100:  # a runaway path (recursive alias, 500-character key): keep both ends
        path = f"{path[:45]}...{path[-45:]}"
    text = f"{where}: {path}: {message}" if path else f"{where}: {message}"
    return " ".join(text.splitlines())  # one line, whatever a value contained


def _config_error(display: str, errors: list[NodeError] | list[YamlProblem]) -> ConfigError:
    ordered = sorted(errors, key=_order)
    lines: list[str] = []
    for e in ordered:
        line = _format(display, e.pos, e.path, e.message)
        if line not in lines:
            lines.append(line)
    err = ConfigError(lines[0])
    err.errors = tuple(lines)  # type: ignore[attr-defined]  # every problem found, first one is str(err)
    return err


def _read(path: Path, display: str) -> str:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(
            f"{display}: file not found; create it (see the example deploy.yaml in the capview README) or pass -c FILE"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{display}: cannot read: {exc.strerror or exc}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{display}: is a directory; pass the deploy.yaml file itself with -c FILE")

    def too_big(size: int | None) -> ConfigError:
        what = f"is {size / (1024 * 1024):.1f} MB" if size else "is over 1 MB"
        return ConfigError(
            f"{display}:1:1: {path.name} {what}; refusing to parse files over 1 MB "
            "(a deploy.yaml is a few KB: check you passed the right file)"
        )

    if st.st_size > MAX_FILE_BYTES:
        raise too_big(st.st_size)
    try:
        with open(path, "rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"{display}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise too_big(None)  # grew since stat(), or a device like /dev/zero
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            f"{display}:{line}:{col}: not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None


def load_config(path: str | Path) -> Config:
    """Parse and validate deploy.yaml. Raises ConfigError with file:line:column.

    ``str(err)`` is the first problem (by position) as one line
    ``file:line:column: key.path: what is wrong; what to do``; ``err.errors`` holds
    every problem found, in file order.
    """
    display = " ".join(str(path).splitlines())
    p = Path(path)
    text = _read(p, display)
    try:
        root = parse_yaml(text)
    except YamlProblem as exc:
        raise _config_error(display, [exc]) from None
    if root is None:
        raise ConfigError(f"{display}:1:1: file is empty; it needs app, deploy_path and environments")
    abs_path = Path(os.path.abspath(p))
    loader = _Loader(abs_path.parent)
    try:
        return loader.load(root, abs_path)
    except NodeError as exc:
        raise _config_error(display, loader.errors or [exc]) from None
