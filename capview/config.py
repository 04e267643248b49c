"""deploy.yaml -> frozen dataclasses.

Settings resolve top-level -> environment -> host: any settings key may be
overridden per environment, and per host (e.g. a host's own deploy_path or
health URL). Every error is one line: ``file:line:column: key.path: what is wrong``.
"""

from __future__ import annotations

import difflib
import math
import os
import posixpath
import re
import stat
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from capview.config_yaml import Pos, YamlProblem, YMap, YNode, YScalar, YSeq, join, show
from capview.config_yaml import parse as parse_yaml
from capview.errors import ConfigError

ServiceManager = Literal["systemd-user", "command", "none"]
Strategy = Literal["rolling", "parallel"]
UploadMethod = Literal["tar", "rsync"]
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
class Environment:
    name: str
    hosts: tuple[HostConfig, ...]
    settings: Settings
    strategy: Strategy = "rolling"
    max_parallel: int = 10

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


# --------------------------------------------------------------------------------------
# Loading: deploy.yaml -> located YAML nodes -> per-level "layers" -> merged -> dataclasses
# --------------------------------------------------------------------------------------

MAX_FILE_BYTES = 1024 * 1024

SETTINGS_KEYS = (
    "app", "deploy_path", "source", "keep_releases", "exclude", "shared",
    "build", "service", "health", "upload", "ssh", "traefik",
)  # fmt: skip
ENV_OPTION_KEYS = ("strategy", "max_parallel")
HOST_OWN_KEYS = ("name", "host", "user", "port")
TOP_KEYS = SETTINGS_KEYS + ENV_OPTION_KEYS + ("environments",)
ENV_KEYS = SETTINGS_KEYS + ENV_OPTION_KEYS + ("hosts",)
HOST_KEYS = HOST_OWN_KEYS + SETTINGS_KEYS

BUILD_PLACEHOLDERS = ("image", "version", "release_path")
SERVICE_MANAGERS = ("systemd-user", "command", "none")
STRATEGIES = ("rolling", "parallel")
UPLOAD_METHODS = ("tar", "rsync")
TRAEFIK_MODES = ("retry", "maintenance")

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")  # app, service.unit
IMAGE_RE = re.compile(r"^[a-z0-9][a-z0-9._/:-]{0,127}$")
USER_RE = re.compile(r"^[a-z_][a-z0-9_.-]{0,31}$")
ENV_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
HOST_NAME_RE = re.compile(r"^[A-Za-z0-9_:\[][A-Za-z0-9._@:%\[\]-]{0,63}$")
HOST_ADDR_RE = re.compile(r"^[A-Za-z0-9_:\[][A-Za-z0-9._:%\[\]-]{0,252}$")
ENTRY_POINT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
REMOTE_PATH_CHARS_RE = re.compile(r"[^A-Za-z0-9._@+=,:/-]")
DURATION_RE = re.compile(r"^(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h)?$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

_EXAMPLE_PATH = "/home/deploy_user/web/my-app"
_MISSING = object()

# A key valid at another level: say where it belongs instead of "unknown key".
_WRONG_LEVEL = {
    ("top", "hosts"): "hosts belong to an environment: environments.<name>.hosts",
    ("top", "name"): "name is set per host, inside environments.<name>.hosts",
    ("top", "host"): "host is set per host, inside environments.<name>.hosts",
    ("top", "user"): "user is set per host, inside environments.<name>.hosts",
    ("top", "port"): "port is set per host, inside environments.<name>.hosts (traefik.port is the app's port)",
    ("env", "name"): "name is set per host, inside hosts:",
    ("env", "host"): "host is set per host, inside hosts:",
    ("env", "user"): "user is set per host, inside hosts:",
    ("env", "port"): "port is set per host, inside hosts:",
    ("env", "environments"): "environments may only be defined at the top level",
    ("host", "strategy"): "strategy is set per environment, not per host",
    ("host", "max_parallel"): "max_parallel is set per environment, not per host",
    ("host", "hosts"): "hosts may not be nested",
    ("host", "environments"): "environments may only be defined at the top level",
}


class _Err(Exception):
    """One problem at a position; turned into a ConfigError line by load_config."""

    def __init__(self, pos: Pos, path: str, message: str, *, late: bool = False) -> None:
        super().__init__(message)
        self.pos, self.path, self.message = pos, path, message
        self.late = late  # "missing key" errors: reported after the others (a typo'd key explains them)


def _fail(node: YNode, message: str, path: str | None = None) -> _Err:
    return _Err(node.pos, node.path if path is None else path, message)


def _kind(node: YNode) -> str:
    if isinstance(node, YMap):
        return "a mapping"
    if isinstance(node, YSeq):
        return "a list"
    assert isinstance(node, YScalar)
    v = node.value
    if v is None:
        return "nothing (null)"
    if isinstance(v, bool):
        return f"a boolean ({node.raw})"
    if isinstance(v, int):
        return f"an integer ({node.raw})"
    if isinstance(v, float):
        return f"a number ({node.raw})"
    if isinstance(v, str):
        return f"a string ({show(v)})"
    if isinstance(v, bytes):
        return "binary data"
    return f"a {type(v).__name__} ({show(node.raw)})"


def _bad_char(s: str, multiline: bool = False) -> str | None:
    """Describe the first control character in s (None if there is none)."""
    names = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL byte"}
    for ch in s:
        if multiline and ch in "\n\t":
            continue
        o = ord(ch)
        if o < 32 or 0x7F <= o < 0xA0 or ch in "\u2028\u2029":
            return names.get(ch, f"a control character (U+{o:04X})")
    return None


def _suggest(word: str, choices: tuple[str, ...] | list[str]) -> str | None:
    norm = word.strip().lower().replace("-", "_").replace(" ", "_")
    for cand in (word, norm):
        close = difflib.get_close_matches(cand, list(choices), n=1, cutoff=0.6)
        if close:
            return close[0]
    return None


# ---- scalar validators: (node) -> value, raise _Err ----------------------------------


def _v_str(node: YNode, *, multiline: bool = False, what: str = "a string") -> str:
    if not isinstance(node, YScalar) or not isinstance(node.value, str):
        if isinstance(node, YScalar) and node.value is None:
            hint = "; give it a value or remove the key"
        elif isinstance(node, YScalar):
            hint = "; put it in quotes"
        else:
            hint = ""
        raise _fail(node, f"expected {what}, got {_kind(node)}{hint}")
    s = node.value
    if not s.strip():
        raise _fail(node, "must not be empty")
    bad = _bad_char(s, multiline)
    if bad:
        raise _fail(node, f"{show(s)} contains {bad}; remove it")
    return s


def _v_int(node: YNode, lo: int, hi: int | None = None, why: str = "") -> int:
    if not isinstance(node, YScalar) or isinstance(node.value, bool) or not isinstance(node.value, int):
        hint = ""
        if isinstance(node, YScalar):
            if isinstance(node.value, bool):
                hint = "; booleans are not numbers"
            elif isinstance(node.value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", node.value):
                hint = "; remove the quotes"
            elif node.value is None:
                hint = "; give it a value or remove the key"
        raise _fail(node, f"expected an integer, got {_kind(node)}{hint}")
    v = node.value
    if v < lo or (hi is not None and v > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise _fail(node, f"must be {rng}, got {v}" + (f" ({why})" if why else ""))
    return v


def _v_port(node: YNode) -> int:
    return _v_int(node, 1, 65535)


def _v_duration(node: YNode) -> float:
    v = node.value if isinstance(node, YScalar) else None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        secs = float(v)
    elif isinstance(v, str) and (m := DURATION_RE.fullmatch(v.strip())):
        secs = float(m.group(1)) * _DURATION_UNITS[m.group(2)]
    else:
        got = show(v) if isinstance(v, str) else _kind(node)
        raise _fail(node, f"{got} is not a duration; write e.g. 30s, 2m, 1h, 500ms or a number of seconds")
    if not math.isfinite(secs) or secs <= 0:
        raise _fail(node, f"must be a finite duration greater than 0, got {node.raw if isinstance(node, YScalar) else '?'}")
    return secs


def _v_enum(valid: tuple[str, ...]) -> Callable[[YNode], str]:
    def check(node: YNode) -> str:
        s = _v_str(node, what="one of " + ", ".join(valid))
        if s not in valid:
            near = _suggest(s, valid)
            dym = f" (did you mean {near!r}?)" if near else ""
            raise _fail(node, f"unknown value {show(s)}; use one of: {', '.join(valid)}{dym}")
        return s

    return check


def _v_str_list(item: Callable[[YNode], str], *, unique: bool = True) -> Callable[[YNode], tuple[str, ...]]:
    def check(node: YNode) -> tuple[str, ...]:
        if not isinstance(node, YSeq):
            hint = f"; write [{node.raw}]" if isinstance(node, YScalar) and isinstance(node.value, str) else ""
            raise _fail(node, f"expected a list of strings, got {_kind(node)}{hint}")
        out: list[str] = []
        seen: dict[str, int] = {}
        for sub in node.items:
            v = item(sub)
            if unique and v in seen:
                raise _fail(sub, f"{show(v)} is listed twice (also on line {node.items[seen[v]].pos.line}); remove one")
            seen.setdefault(v, len(out))
            out.append(v)
        return tuple(out)

    return check


def _v_name(node: YNode) -> str:
    s = _v_str(node)
    if not NAME_RE.match(s):
        raise _fail(
            node,
            f"{show(s)} is not a valid name; use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit",
        )
    return s


def _v_image(node: YNode) -> str:
    s = _v_str(node)
    if not IMAGE_RE.match(s):
        raise _fail(
            node,
            f"{show(s)} is not a valid image name; use lowercase letters, digits and . _ / : - "
            "(e.g. my-app or registry.example.com/team/my-app), at most 128 characters",
        )
    return s


def _v_user(node: YNode) -> str:
    s = _v_str(node)
    if not USER_RE.match(s):
        raise _fail(
            node, f"{show(s)} is not a valid user name; use lowercase letters, digits, '_', '.', '-' (at most 32)"
        )
    return s


def _v_remote_path(node: YNode, *, min_depth: int = 2) -> str:
    """An absolute path on the host that goes into shell scripts and systemd units."""
    if isinstance(node, YScalar) and node.value is None and node.raw == "~":
        raise _fail(
            node,
            f"'~' is not expanded on the host (and a bare ~ is null in YAML); write the absolute path, e.g. {_EXAMPLE_PATH}",
        )
    s = _v_str(node)
    if s.startswith("~"):
        raise _fail(node, f"{show(s)} starts with '~', which is not expanded on the host; write the absolute path, e.g. {_EXAMPLE_PATH}")
    if not s.startswith("/"):
        raise _fail(node, f"{show(s)} is relative; write an absolute path (starting with /), e.g. {_EXAMPLE_PATH}")
    for ch, what in (("'", "a quote"), ('"', "a quote"), ("\\", "a backslash"), (" ", "a space")):
        if ch in s:
            extra = " (spaces break systemd units and unquoted shell)" if ch == " " else ""
            raise _fail(node, f"{show(s)} contains {what}{extra}; choose a path without it")
    parts = [p for p in s.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise _fail(node, f"{show(s)} contains a '..' component; write the real path without '..'")
    m = REMOTE_PATH_CHARS_RE.search(s)
    if m:
        raise _fail(
            node, f"{show(s)} contains {show(m.group())}; use only letters, digits and . _ - @ + = , : / in paths"
        )
    if not parts:
        raise _fail(node, f"'/' is the filesystem root; use a dedicated directory such as {_EXAMPLE_PATH}")
    norm = "/" + "/".join(parts)
    if len(parts) < min_depth:
        raise _fail(
            node,
            f"{norm} is too close to the root: capview creates releases/, shared/ and .capview/ in it and "
            f"prune deletes old releases there; use a dedicated directory such as {_EXAMPLE_PATH}",
        )
    return norm


def _v_deploy_path(node: YNode) -> str:
    return _v_remote_path(node, min_depth=2)


def _v_remote_dir(node: YNode) -> str:
    return _v_remote_path(node, min_depth=1)


def _v_shared_path(node: YNode) -> str:
    s = _v_str(node)
    if s.startswith("/"):
        raise _fail(node, f"{show(s)} is absolute; shared paths are relative to the release, e.g. data or .env")
    if s.startswith("~"):
        raise _fail(node, f"{show(s)} starts with '~', which is not expanded; write a path relative to the release, e.g. data")
    if "\\" in s:
        raise _fail(node, f"{show(s)} contains a backslash; use '/' between path components")
    if ".." in s.split("/"):
        raise _fail(node, f"{show(s)} contains '..'; shared paths must stay inside shared/")
    trimmed = s[:-1] if s.endswith("/") and len(s) > 1 else s
    norm = posixpath.normpath(trimmed)
    if norm in (".", ""):
        raise _fail(node, f"{show(s)} names the release itself; name a file or directory inside it, e.g. data")
    if norm != trimmed:
        raise _fail(node, f"{show(s)} is not normalised; write it as {show(norm)}")
    if norm.split("/")[0] == ".capview":
        raise _fail(node, f"{show(s)} is inside .capview, which is reserved for capview's release metadata; choose another name")
    return norm


def _v_exclude_item(node: YNode) -> str:
    s = _v_str(node)
    core = s.strip()
    while core.startswith("./"):
        core = core[2:]
    core = core.strip("/")
    if core in ("", ".", "*", "**", "**/*", "*/**", "**/**", "./*", "./**"):
        raise _fail(node, f"{show(s)} would exclude everything; list only what to leave out, e.g. .git or *.pyc")
    return s


def _v_command(node: YNode) -> str:
    return _v_str(node, multiline=True, what="a shell command (a string)")


def _v_build_command(node: YNode) -> str:
    s = _v_command(node)
    allowed = ", ".join("{" + p + "}" for p in BUILD_PLACEHOLDERS)
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(s) if f is not None]
    except ValueError as exc:
        raise _fail(node, f"unbalanced brace ({exc}); write {{{{ and }}}} for literal braces") from None
    for f, spec, conv in fields:
        if f == "":
            raise _fail(node, f"'{{}}' is an empty placeholder; allowed: {allowed}")
        if f not in BUILD_PLACEHOLDERS:
            raise _fail(
                node,
                f"unknown placeholder {{{f}}}; allowed: {allowed} (write {{{{ and }}}} for a literal brace, "
                "e.g. $HOME or ${{HOME}})",
            )
        if spec or conv:
            raise _fail(node, f"placeholder {{{f}}} takes no format spec or conversion; write {{{f}}}")
    return s


def _v_url(node: YNode) -> str:
    s = _v_str(node)
    if not re.match(r"^https?://[^/\s?#]+", s, re.IGNORECASE):
        raise _fail(node, f"{show(s)} is not an http:// or https:// URL; write e.g. http://127.0.0.1:8080/health")
    if any(c.isspace() for c in s):
        raise _fail(node, f"{show(s)} contains a space; percent-encode it as %20")
    return s


def _v_rule(node: YNode) -> str:
    return _v_str(node)


def _v_entry_point(node: YNode) -> str:
    s = _v_str(node)
    if not ENTRY_POINT_RE.match(s):
        raise _fail(node, f"{show(s)} is not a valid Traefik entry point name (letters, digits, '_', '-')")
    return s


def _v_local_file(node: YNode) -> str:
    return _v_str(node)  # resolved against deploy.yaml's directory when settings are built


def _v_host_addr(node: YNode) -> str:
    s = _v_str(node)
    if "@" in s:
        raise _fail(node, f"{show(s)} contains '@'; put the user in user: and only the address in host:")
    if any(c.isspace() for c in s):
        raise _fail(node, f"{show(s)} contains a space; a host is one address or ~/.ssh/config alias")
    if s.startswith("-") or not HOST_ADDR_RE.match(s):
        raise _fail(node, f"{show(s)} is not a valid host name, address or ~/.ssh/config alias")
    return s


def _v_host_name(node: YNode) -> str:
    s = _v_str(node)
    if not HOST_NAME_RE.match(s):
        raise _fail(
            node,
            f"{show(s)} is not a valid host name; use 1-64 letters, digits, '.', '_', '-', '@', ':' (e.g. prod-1)",
        )
    return s


_SCALAR_SETTINGS: dict[str, Callable[[YNode], Any]] = {
    "app": _v_name,
    "deploy_path": _v_deploy_path,
    "source": _v_local_file,
    "keep_releases": lambda n: _v_int(n, 2, None, "the previous release is kept for rollback"),
    "exclude": _v_str_list(_v_exclude_item),
}

_SECTIONS: dict[str, dict[str, Callable[[YNode], Any]]] = {
    "shared": {"dirs": _v_str_list(_v_shared_path), "files": _v_str_list(_v_shared_path)},
    "build": {"command": _v_build_command, "image": _v_image},
    "service": {
        "manager": _v_enum(SERVICE_MANAGERS),
        "unit": _v_name,
        "start": _v_command,
        "stop": _v_command,
        "status": _v_command,
        "logs": _v_command,
    },
    "health": {
        "url": _v_url,
        "timeout": _v_duration,
        "interval": _v_duration,
        "expect_status": lambda n: _v_int(n, 100, 599, "an HTTP status code"),
    },
    "upload": {"method": _v_enum(UPLOAD_METHODS), "writable": _v_str_list(_v_str)},
    "ssh": {
        "known_hosts": _v_local_file,
        "identity_file": _v_local_file,
        "config_file": _v_local_file,
        "connect_timeout": _v_duration,
        "keepalive": _v_duration,
    },
    "traefik": {
        "mode": _v_enum(TRAEFIK_MODES),
        "rule": _v_rule,
        "entry_points": _v_str_list(_v_entry_point),
        "port": _v_port,
        "maintenance_page": _v_local_file,
        "maintenance_port": _v_port,
        "dynamic_dir": _v_remote_dir,
    },
}
_NULLABLE = {"build", "health", "traefik", "shared", "service"}
_SECTION_EXAMPLE = {
    "shared": "{dirs: [data], files: [.env]}",
    "build": '{command: "podman build -t {image}:{version} .", image: my-app}',
    "service": "{manager: systemd-user, unit: my-app}",
    "health": '{url: "http://127.0.0.1:8080/health"}',
    "upload": "{method: tar}",
    "ssh": "{identity_file: ~/.ssh/id_ed25519}",
    "traefik": '{rule: "Host(`app.example.com`)", port: 8080}',
}


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
        self.errors: list[_Err] = []

    # -- helpers -----------------------------------------------------------------------

    def attempt(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except _Err as exc:
            self.errors.append(exc)
            return _MISSING

    def check_keys(self, node: YMap, allowed: tuple[str, ...], level: str) -> None:
        for key in node.items:
            if key in allowed:
                continue
            path = join(node.path, key)
            where = _WRONG_LEVEL.get((level, key))
            if where:
                msg = f"not allowed here; {where}"
            else:
                near = _suggest(key, allowed)
                msg = f"unknown key; did you mean {near!r}?" if near else f"unknown key; valid keys: {', '.join(allowed)}"
            self.errors.append(_Err(node.key_pos[key], path, msg))

    @staticmethod
    def want_map(node: YNode, what: str) -> YMap:
        if not isinstance(node, YMap):
            raise _fail(node, f"expected {what}, got {_kind(node)}")
        return node

    def local_path(self, value: str) -> Path:
        return Path(os.path.abspath(self.base_dir / os.path.expanduser(value)))

    # -- levels ------------------------------------------------------------------------

    def section(self, key: str, node: YNode) -> _S:
        example = _SECTION_EXAMPLE[key]
        if isinstance(node, YScalar) and node.value is None:
            if key not in _NULLABLE:
                raise _fail(node, f"cannot be null; remove the key to use the defaults, or write e.g. {key}: {example}")
            return _S(node, None)
        if not isinstance(node, YMap):
            alt = " or null to disable it" if key in ("build", "health", "traefik") else ""
            raise _fail(node, f"expected a mapping such as {example}{alt}, got {_kind(node)}")
        validators = _SECTIONS[key]
        self.check_keys(node, tuple(validators), key)
        fields: dict[str, _F] = {}
        for sub, sub_node in node.items.items():
            if sub in validators:
                v = self.attempt(validators[sub], sub_node)
                if v is not _MISSING:
                    fields[sub] = _F(v, sub_node)
        return _S(node, fields)

    def settings_layer(self, node: YMap) -> _Layer:
        layer: _Layer = {}
        for key, sub in node.items.items():
            if key in _SECTIONS:
                v = self.attempt(self.section, key, sub)
                if v is not _MISSING:
                    layer[key] = v
            elif key in _SCALAR_SETTINGS:
                v = self.attempt(_SCALAR_SETTINGS[key], sub)
                if v is not _MISSING:
                    layer[key] = _F(v, sub)
        return layer

    def env_options(self, node: YMap) -> _Layer:
        out: _Layer = {}
        if "strategy" in node.items:
            v = self.attempt(_v_enum(STRATEGIES), node.items["strategy"])
            if v is not _MISSING:
                out["strategy"] = _F(v, node.items["strategy"])
        if "max_parallel" in node.items:
            v = self.attempt(_v_int, node.items["max_parallel"], 1, None, "")
            if v is not _MISSING:
                out["max_parallel"] = _F(v, node.items["max_parallel"])
        return out

    def host_entry(self, node: YNode) -> tuple[str, YNode, str, str | None, int | None, _Layer] | None:
        """(name, name_node, host, user, port, settings layer) or None if invalid."""
        if isinstance(node, YScalar) and isinstance(node.value, str):
            addr = _v_host_addr(node)
            if not HOST_NAME_RE.match(addr):
                raise _fail(node, f"cannot use {show(addr)} as the host's name; write {{name: prod-1, host: {addr}}}")
            return addr, node, addr, None, None, {}
        if not isinstance(node, YMap):
            raise _fail(
                node,
                f"expected a host: a ~/.ssh/config alias (- vps2) or a mapping like "
                f"{{name: prod-1, host: vps1.example.com}}, got {_kind(node)}",
            )
        n_before = len(self.errors)
        self.check_keys(node, HOST_KEYS, "host")
        items = node.items
        host = name = user = port = _MISSING
        if "host" in items:
            host = self.attempt(_v_host_addr, items["host"])
        else:
            what = "the address or ~/.ssh/config alias to connect to"
            self.errors.append(_Err(node.pos, join(node.path, "host"), f"missing; add host: <{what}>", late=True))
        if "name" in items:
            name = self.attempt(_v_host_name, items["name"])
        if "user" in items:
            user = self.attempt(_v_user, items["user"])
        if "port" in items:
            port = self.attempt(_v_port, items["port"])
        layer = self.settings_layer(node)
        if len(self.errors) > n_before:
            return None
        name_node = items.get("name") or items["host"]
        if name is _MISSING:
            name = host
            if not HOST_NAME_RE.match(name):
                raise _fail(items["host"], f"cannot use {show(name)} as the host's name; add name: (e.g. prod-1)")
        return (
            name,
            name_node,
            host,
            None if user is _MISSING else user,
            None if port is _MISSING else port,
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
            ("ssh", self.build_ssh),
            ("traefik", self.build_traefik),
        ):
            if key in m:
                v = self.attempt(builder, m[key])
                if v is not _MISSING:
                    kwargs[key] = v
        return Settings(app=app, deploy_path=m["deploy_path"].value, source=source, **kwargs)

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
                        raise _fail(node, f"{show(name)} is listed in both shared.dirs and shared.files; keep one")
                    if name.startswith(other + "/") or other.startswith(name + "/"):
                        raise _fail(
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
            raise _fail(
                s.node, "missing command; add build.command, or write build: null to skip the build", join(s.node.path, "command")
            )
        cmd = s.fields["command"]
        if "image" not in s.fields and "{image}" in cmd.value.replace("{{", ""):
            raise _fail(cmd.node, "uses {image} but build.image is not set; add build.image (e.g. image: my-app)")
        return BuildConfig(**self._vals(s))

    def build_service(self, s: _S) -> ServiceConfig:
        if s.fields is None:
            return ServiceConfig(manager="none")
        f = s.fields
        if "manager" not in f:
            raise _fail(
                s.node, f"missing; add service.manager: one of {', '.join(SERVICE_MANAGERS)}", join(s.node.path, "manager")
            )
        manager = f["manager"].value
        needs = {"systemd-user": ("unit",), "command": ("start", "stop"), "none": ()}[manager]
        allowed = {"systemd-user": ("unit",), "command": ("start", "stop", "status", "logs"), "none": ()}[manager]
        for key in needs:
            if key not in f:
                raise _fail(
                    f["manager"].node,
                    f"manager {manager} needs service.{key}; add {key}:"
                    + (" (the systemd --user unit name, e.g. my-app)" if key == "unit" else " (a shell command)"),
                    join(s.node.path, "manager"),
                )
        for key, fld in f.items():
            if key != "manager" and key not in allowed:
                raise _fail(
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
            raise _fail(
                s.node, "missing; add health.url (e.g. http://127.0.0.1:8080/health) or write health: null", join(s.node.path, "url")
            )
        cfg = HealthConfig(**self._vals(s))
        if cfg.interval > cfg.timeout:
            node = f["interval"].node if "interval" in f else f["timeout"].node
            raise _fail(node, f"interval ({cfg.interval:g}s) is longer than timeout ({cfg.timeout:g}s); shorten it")
        return cfg

    def build_upload(self, s: _S) -> UploadConfig:
        return UploadConfig(**self._vals(s))

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
            raise _fail(node, f"maintenance_port must differ from port ({cfg.port})")
        return cfg

    # -- the whole file ------------------------------------------------------------------

    def load(self, root: YNode, path: Path) -> Config:
        if not isinstance(root, YMap):
            raise _Err(
                root.pos,
                "top level",
                f"expected a mapping with app, deploy_path and environments, got {_kind(root)}",
            )
        self.check_keys(root, TOP_KEYS, "top")
        top = self.settings_layer(root)
        top_opts = self.env_options(root)
        for key, example in (("app", "app: my-app"), ("deploy_path", f"deploy_path: {_EXAMPLE_PATH}")):
            if key not in root.items:
                self.errors.append(_Err(root.pos, key, f"missing required key; add e.g. {example}", late=True))
        envs_node = root.items.get("environments")
        parsed_envs: list[tuple[str, _Layer, _Layer, list[tuple[Any, ...]]]] = []
        if envs_node is None:
            self.errors.append(
                _Err(
                    root.pos,
                    "environments",
                    "missing required key; add environments: {prod: {hosts: [...]}}",
                    late=True,
                )
            )
        else:
            parsed = self.attempt(self.environments, envs_node)
            parsed_envs = [] if parsed is _MISSING else parsed
        if self.errors:
            raise self.first_error()

        environments: list[Environment] = []
        for env_name, env_layer, env_opts, hosts in parsed_envs:
            opts = _merge(top_opts, env_opts)
            host_cfgs: list[HostConfig] = []
            for name, host, user, port, host_layer in hosts:
                settings = self.attempt(self.build_settings, _merge(top, env_layer, host_layer))
                if settings is _MISSING:
                    continue
                host_cfgs.append(HostConfig(name=name, host=host, settings=settings, user=user, port=port, env=env_name))
            if self.errors or not host_cfgs:
                continue
            # The environment's own settings (top + env). Required values may be supplied
            # only per host (e.g. every host its own health.url): then use the first host's.
            side = _Loader(self.base_dir)
            env_settings = side.attempt(side.build_settings, _merge(top, env_layer))
            if env_settings is _MISSING or side.errors:
                env_settings = host_cfgs[0].settings
            environments.append(
                Environment(
                    name=env_name,
                    hosts=tuple(host_cfgs),
                    settings=env_settings,
                    strategy=opts["strategy"].value if "strategy" in opts else "rolling",
                    max_parallel=opts["max_parallel"].value if "max_parallel" in opts else 10,
                )
            )
        if self.errors:
            raise self.first_error()
        return Config(path=path, environments=tuple(environments))

    def environments(self, node: YNode) -> list[tuple[str, _Layer, _Layer, list[tuple[Any, ...]]]]:
        envs = self.want_map(node, "a mapping of environment names to environments, e.g. {prod: {hosts: [vps1]}}")
        if not envs.items:
            raise _fail(envs, "no environments defined; add at least one, e.g. prod: {hosts: [vps1]}")
        host_names: dict[str, YNode] = {}
        out = []
        for env_name, env_node in envs.items.items():
            if not ENV_NAME_RE.match(env_name):
                self.errors.append(
                    _Err(
                        envs.key_pos[env_name],
                        env_node.path,
                        f"{show(env_name)} is not a valid environment name; use letters, digits, '.', '_', '-'",
                    )
                )
                continue
            if not isinstance(env_node, YMap):
                hint = "; add hosts: [...]" if isinstance(env_node, YScalar) and env_node.value is None else ""
                self.errors.append(_fail(env_node, f"expected a mapping with hosts:, got {_kind(env_node)}{hint}"))
                continue
            self.check_keys(env_node, ENV_KEYS, "env")
            layer = self.settings_layer(env_node)
            opts = self.env_options(env_node)
            hosts_node = env_node.items.get("hosts")
            hosts: list[tuple[Any, ...]] = []
            if hosts_node is None:
                self.errors.append(
                    _Err(
                        env_node.pos,
                        join(env_node.path, "hosts"),
                        "missing; add hosts: [{name: ..., host: ...}]",
                        late=True,
                    )
                )
            elif not isinstance(hosts_node, YSeq) or not hosts_node.items:
                got = "an empty list" if isinstance(hosts_node, YSeq) else _kind(hosts_node)
                self.errors.append(
                    _fail(hosts_node, f"expected a non-empty list of hosts, got {got}; add e.g. - {{name: prod-1, host: vps1}}")
                )
            else:
                for item in hosts_node.items:
                    entry = self.attempt(self.host_entry, item)
                    if entry in (None, _MISSING):
                        continue
                    name, name_node, host, user, port, host_layer = entry
                    if name in host_names:
                        first = host_names[name]
                        self.errors.append(
                            _fail(
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

    def first_error(self) -> _Err:
        return min(self.errors, key=_order)


def _order(e: _Err | YamlProblem) -> tuple[bool, int, int]:
    return (getattr(e, "late", False), e.pos.line, e.pos.column)


def _format(display: str, pos: Pos | None, path: str, message: str) -> str:
    where = f"{display}:{pos.line}:{pos.column}" if pos is not None else display
    if len(path) > 100:  # a runaway path (recursive alias, 500-character key): keep both ends
        path = f"{path[:45]}...{path[-45:]}"
    text = f"{where}: {path}: {message}" if path else f"{where}: {message}"
    return " ".join(text.splitlines())  # one line, whatever a value contained


def _config_error(display: str, errors: list[_Err] | list[YamlProblem]) -> ConfigError:
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
    except _Err as exc:
        raise _config_error(display, loader.errors or [exc]) from None
