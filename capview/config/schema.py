"""What deploy.yaml may say: the keys per level and one validator per value.

A validator takes a located YAML node and returns the value, or raises ``NodeError``
naming the node's position and key path; the loader collects them into one-line errors.
"""

from __future__ import annotations

import difflib
import math
import posixpath
import re
import string
from typing import Any, Callable

from capview.config.yaml_nodes import Pos, YMap, YNode, YScalar, YSeq, show

MAX_FILE_BYTES = 1024 * 1024

SETTINGS_KEYS = (
    "app", "deploy_path", "source", "keep_releases", "exclude", "shared",
    "build", "service", "health", "upload", "hooks", "data", "ssh", "traefik",
)  # fmt: skip
ENV_OPTION_KEYS = ("strategy", "max_parallel", "batch_size", "canary", "canary_wait", "on_failure")
HOST_OWN_KEYS = ("name", "host", "user", "port")
TOP_KEYS = SETTINGS_KEYS + ENV_OPTION_KEYS + ("environments",)
ENV_KEYS = SETTINGS_KEYS + ENV_OPTION_KEYS + ("hosts",)
HOST_KEYS = HOST_OWN_KEYS + SETTINGS_KEYS

BUILD_PLACEHOLDERS = ("image", "version", "release_path")
SERVICE_MANAGERS = ("systemd-user", "command", "none")
STRATEGIES = ("rolling", "parallel")
UPLOAD_METHODS = ("tar", "rsync")
COMPRESSIONS = ("auto", "never", "always")
ON_FAILURE = ("revert_all", "stop")
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
DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}

EXAMPLE_PATH = "/home/deploy_user/web/my-app"
MISSING = object()

# A key valid at another level: say where it belongs instead of "unknown key".
WRONG_LEVEL = {
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
    ("host", "batch_size"): "batch_size is set per environment, not per host",
    ("host", "canary"): "canary is set per environment, not per host",
    ("host", "canary_wait"): "canary_wait is set per environment, not per host",
    ("host", "on_failure"): "on_failure is set per environment, not per host (hooks.on_failure is the hook)",
    ("host", "hosts"): "hosts may not be nested",
    ("host", "environments"): "environments may only be defined at the top level",
}


class NodeError(Exception):
    """One problem at a position; turned into a ConfigError line by load_config."""

    def __init__(self, pos: Pos, path: str, message: str, *, late: bool = False) -> None:
        super().__init__(message)
        self.pos, self.path, self.message = pos, path, message
        self.late = late  # "missing key" errors: reported after the others (a typo'd key explains them)


def fail_at(node: YNode, message: str, path: str | None = None) -> NodeError:
    return NodeError(node.pos, node.path if path is None else path, message)


def kind_of(node: YNode) -> str:
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


def bad_char(s: str, multiline: bool = False) -> str | None:
    """Describe the first control character in s (None if there is none)."""
    names = {"\n": "a newline", "\r": "a carriage return", "\t": "a tab", "\x00": "a NUL byte"}
    for ch in s:
        if multiline and ch in "\n\t":
            continue
        o = ord(ch)
        if o < 32 or 0x7F <= o < 0xA0 or ch in "\u2028\u2029":
            return names.get(ch, f"a control character (U+{o:04X})")
    return None


def suggest(word: str, choices: tuple[str, ...] | list[str]) -> str | None:
    norm = word.strip().lower().replace("-", "_").replace(" ", "_")
    for cand in (word, norm):
        close = difflib.get_close_matches(cand, list(choices), n=1, cutoff=0.6)
        if close:
            return close[0]
    return None


# ---- scalar validators: (node) -> value, raise NodeError ----------------------------------


def v_str(node: YNode, *, multiline: bool = False, what: str = "a string") -> str:
    if not isinstance(node, YScalar) or not isinstance(node.value, str):
        if isinstance(node, YScalar) and node.value is None:
            hint = "; give it a value or remove the key"
        elif isinstance(node, YScalar):
            hint = "; put it in quotes"
        else:
            hint = ""
        raise fail_at(node, f"expected {what}, got {kind_of(node)}{hint}")
    s = node.value
    if not s.strip():
        raise fail_at(node, "must not be empty")
    bad = bad_char(s, multiline)
    if bad:
        raise fail_at(node, f"{show(s)} contains {bad}; remove it")
    return s


def v_int(node: YNode, lo: int, hi: int | None = None, why: str = "") -> int:
    if not isinstance(node, YScalar) or isinstance(node.value, bool) or not isinstance(node.value, int):
        hint = ""
        if isinstance(node, YScalar):
            if isinstance(node.value, bool):
                hint = "; booleans are not numbers"
            elif isinstance(node.value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", node.value):
                hint = "; remove the quotes"
            elif node.value is None:
                hint = "; give it a value or remove the key"
        raise fail_at(node, f"expected an integer, got {kind_of(node)}{hint}")
    v = node.value
    if v < lo or (hi is not None and v > hi):
        rng = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
        raise fail_at(node, f"must be {rng}, got {v}" + (f" ({why})" if why else ""))
    return v


def v_port(node: YNode) -> int:
    return v_int(node, 1, 65535)


def v_duration(node: YNode) -> float:
    v = node.value if isinstance(node, YScalar) else None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        secs = float(v)
    elif isinstance(v, str) and (m := DURATION_RE.fullmatch(v.strip())):
        secs = float(m.group(1)) * DURATION_UNITS[m.group(2)]
    else:
        got = show(v) if isinstance(v, str) else kind_of(node)
        raise fail_at(node, f"{got} is not a duration; write e.g. 30s, 2m, 1h, 500ms or a number of seconds")
    if not math.isfinite(secs) or secs <= 0:
        raise fail_at(node, f"must be a finite duration greater than 0, got {node.raw if isinstance(node, YScalar) else '?'}")
    return secs


def v_enum(valid: tuple[str, ...]) -> Callable[[YNode], str]:
    def check(node: YNode) -> str:
        s = v_str(node, what="one of " + ", ".join(valid))
        if s not in valid:
            near = suggest(s, valid)
            dym = f" (did you mean {near!r}?)" if near else ""
            raise fail_at(node, f"unknown value {show(s)}; use one of: {', '.join(valid)}{dym}")
        return s

    return check


def v_str_list(item: Callable[[YNode], str], *, unique: bool = True) -> Callable[[YNode], tuple[str, ...]]:
    def check(node: YNode) -> tuple[str, ...]:
        if not isinstance(node, YSeq):
            hint = f"; write [{node.raw}]" if isinstance(node, YScalar) and isinstance(node.value, str) else ""
            raise fail_at(node, f"expected a list of strings, got {kind_of(node)}{hint}")
        out: list[str] = []
        seen: dict[str, int] = {}
        for sub in node.items:
            v = item(sub)
            if unique and v in seen:
                raise fail_at(sub, f"{show(v)} is listed twice (also on line {node.items[seen[v]].pos.line}); remove one")
            seen.setdefault(v, len(out))
            out.append(v)
        return tuple(out)

    return check


def v_name(node: YNode) -> str:
    s = v_str(node)
    if not NAME_RE.match(s):
        raise fail_at(
            node,
            f"{show(s)} is not a valid name; use 1-64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit",
        )
    return s


def v_image(node: YNode) -> str:
    s = v_str(node)
    if not IMAGE_RE.match(s):
        raise fail_at(
            node,
            f"{show(s)} is not a valid image name; use lowercase letters, digits and . _ / : - "
            "(e.g. my-app or registry.example.com/team/my-app), at most 128 characters",
        )
    return s


def v_user(node: YNode) -> str:
    s = v_str(node)
    if not USER_RE.match(s):
        raise fail_at(
            node, f"{show(s)} is not a valid user name; use lowercase letters, digits, '_', '.', '-' (at most 32)"
        )
    return s


def v_remote_path(node: YNode, *, min_depth: int = 2) -> str:
    """An absolute path on the host that goes into shell scripts and systemd units."""
    if isinstance(node, YScalar) and node.value is None and node.raw == "~":
        raise fail_at(
            node,
            f"'~' is not expanded on the host (and a bare ~ is null in YAML); write the absolute path, e.g. {EXAMPLE_PATH}",
        )
    s = v_str(node)
    if s.startswith("~"):
        raise fail_at(node, f"{show(s)} starts with '~', which is not expanded on the host; write the absolute path, e.g. {EXAMPLE_PATH}")
    if not s.startswith("/"):
        raise fail_at(node, f"{show(s)} is relative; write an absolute path (starting with /), e.g. {EXAMPLE_PATH}")
    for ch, what in (("'", "a quote"), ('"', "a quote"), ("\\", "a backslash"), (" ", "a space")):
        if ch in s:
            extra = " (spaces break systemd units and unquoted shell)" if ch == " " else ""
            raise fail_at(node, f"{show(s)} contains {what}{extra}; choose a path without it")
    parts = [p for p in s.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise fail_at(node, f"{show(s)} contains a '..' component; write the real path without '..'")
    m = REMOTE_PATH_CHARS_RE.search(s)
    if m:
        raise fail_at(
            node, f"{show(s)} contains {show(m.group())}; use only letters, digits and . _ - @ + = , : / in paths"
        )
    if not parts:
        raise fail_at(node, f"'/' is the filesystem root; use a dedicated directory such as {EXAMPLE_PATH}")
    norm = "/" + "/".join(parts)
    if len(parts) < min_depth:
        raise fail_at(
            node,
            f"{norm} is too close to the root: capview creates releases/, shared/ and .capview/ in it and "
            f"prune deletes old releases there; use a dedicated directory such as {EXAMPLE_PATH}",
        )
    return norm


def v_deploy_path(node: YNode) -> str:
    return v_remote_path(node, min_depth=2)


def v_remote_dir(node: YNode) -> str:
    return v_remote_path(node, min_depth=1)


def v_shared_path(node: YNode) -> str:
    s = v_str(node)
    if s.startswith("/"):
        raise fail_at(node, f"{show(s)} is absolute; shared paths are relative to the release, e.g. data or .env")
    if s.startswith("~"):
        raise fail_at(node, f"{show(s)} starts with '~', which is not expanded; write a path relative to the release, e.g. data")
    if "\\" in s:
        raise fail_at(node, f"{show(s)} contains a backslash; use '/' between path components")
    if ".." in s.split("/"):
        raise fail_at(node, f"{show(s)} contains '..'; shared paths must stay inside shared/")
    trimmed = s[:-1] if s.endswith("/") and len(s) > 1 else s
    norm = posixpath.normpath(trimmed)
    if norm in (".", ""):
        raise fail_at(node, f"{show(s)} names the release itself; name a file or directory inside it, e.g. data")
    if norm != trimmed:
        raise fail_at(node, f"{show(s)} is not normalised; write it as {show(norm)}")
    if norm.split("/")[0] == ".capview":
        raise fail_at(node, f"{show(s)} is inside .capview, which is reserved for capview's release metadata; choose another name")
    return norm


def v_exclude_item(node: YNode) -> str:
    s = v_str(node)
    core = s.strip()
    while core.startswith("./"):
        core = core[2:]
    core = core.strip("/")
    if core in ("", ".", "*", "**", "**/*", "*/**", "**/**", "./*", "./**"):
        raise fail_at(node, f"{show(s)} would exclude everything; list only what to leave out, e.g. .git or *.pyc")
    return s


def v_command(node: YNode) -> str:
    return v_str(node, multiline=True, what="a shell command (a string)")


def v_build_command(node: YNode) -> str:
    s = v_command(node)
    allowed = ", ".join("{" + p + "}" for p in BUILD_PLACEHOLDERS)
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(s) if f is not None]
    except ValueError as exc:
        raise fail_at(node, f"unbalanced brace ({exc}); write {{{{ and }}}} for literal braces") from None
    for f, spec, conv in fields:
        if f == "":
            raise fail_at(node, f"'{{}}' is an empty placeholder; allowed: {allowed}")
        if f not in BUILD_PLACEHOLDERS:
            raise fail_at(
                node,
                f"unknown placeholder {{{f}}}; allowed: {allowed} (write {{{{ and }}}} for a literal brace, "
                "e.g. $HOME or ${{HOME}})",
            )
        if spec or conv:
            raise fail_at(node, f"placeholder {{{f}}} takes no format spec or conversion; write {{{f}}}")
    return s


def v_url(node: YNode) -> str:
    s = v_str(node)
    if not re.match(r"^https?://[^/\s?#]+", s, re.IGNORECASE):
        raise fail_at(node, f"{show(s)} is not an http:// or https:// URL; write e.g. http://127.0.0.1:8080/health")
    if any(c.isspace() for c in s):
        raise fail_at(node, f"{show(s)} contains a space; percent-encode it as %20")
    return s


def v_rule(node: YNode) -> str:
    return v_str(node)


def v_entry_point(node: YNode) -> str:
    s = v_str(node)
    if not ENTRY_POINT_RE.match(s):
        raise fail_at(node, f"{show(s)} is not a valid Traefik entry point name (letters, digits, '_', '-')")
    return s


def v_local_file(node: YNode) -> str:
    return v_str(node)  # resolved against deploy.yaml's directory when settings are built


def v_host_addr(node: YNode) -> str:
    s = v_str(node)
    if "@" in s:
        raise fail_at(node, f"{show(s)} contains '@'; put the user in user: and only the address in host:")
    if any(c.isspace() for c in s):
        raise fail_at(node, f"{show(s)} contains a space; a host is one address or ~/.ssh/config alias")
    if s.startswith("-") or not HOST_ADDR_RE.match(s):
        raise fail_at(node, f"{show(s)} is not a valid host name, address or ~/.ssh/config alias")
    return s


def v_host_name(node: YNode) -> str:
    s = v_str(node)
    if not HOST_NAME_RE.match(s):
        raise fail_at(
            node,
            f"{show(s)} is not a valid host name; use 1-64 letters, digits, '.', '_', '-', '@', ':' (e.g. prod-1)",
        )
    return s


def v_commands(node: YNode) -> tuple[str, ...]:
    """A hook point: one shell command or a list of them."""
    if isinstance(node, YScalar) and isinstance(node.value, str):
        return (v_command(node),)
    return v_str_list(v_command, unique=False)(node)


def v_duration_or_zero(node: YNode) -> float:
    if isinstance(node, YScalar) and node.value in (0, "0", "0s"):
        return 0.0
    return v_duration(node)


def v_batch_size(node: YNode) -> tuple[int | None, int | None]:
    """``N`` hosts or ``P%`` of them -> (N, None) or (None, P)."""
    v = node.value if isinstance(node, YScalar) else None
    if isinstance(v, str) and (m := re.fullmatch(r"\s*(\d{1,3})\s*%\s*", v)):
        pct = int(m.group(1))
        if not 1 <= pct <= 100:
            raise fail_at(node, f"must be between 1% and 100%, got {pct}%")
        return None, pct
    if isinstance(v, str):
        raise fail_at(node, f"{show(v)} is not a batch size; write a number of hosts (e.g. 2) or a share (e.g. 25%)")
    return v_int(node, 1, None, "hosts switched together"), None


SCALAR_SETTINGS: dict[str, Callable[[YNode], Any]] = {
    "app": v_name,
    "deploy_path": v_deploy_path,
    "source": v_local_file,
    "keep_releases": lambda n: v_int(n, 2, None, "the previous release is kept for rollback"),
    "exclude": v_str_list(v_exclude_item),
}

SECTIONS: dict[str, dict[str, Callable[[YNode], Any]]] = {
    "shared": {"dirs": v_str_list(v_shared_path), "files": v_str_list(v_shared_path)},
    "build": {"command": v_build_command, "image": v_image},
    "service": {
        "manager": v_enum(SERVICE_MANAGERS),
        "unit": v_name,
        "start": v_command,
        "stop": v_command,
        "status": v_command,
        "logs": v_command,
    },
    "health": {
        "url": v_url,
        "timeout": v_duration,
        "interval": v_duration,
        "expect_status": lambda n: v_int(n, 100, 599, "an HTTP status code"),
    },
    "upload": {"method": v_enum(UPLOAD_METHODS), "writable": v_str_list(v_str), "compress": v_enum(COMPRESSIONS)},
    "hooks": {
        "after_upload": v_commands,
        "before_start": v_commands,
        "after_switch": v_commands,
        "after_rollback": v_commands,
        "on_failure": v_commands,
        "timeout": v_duration,
    },
    "data": {"sqlite": v_str_list(v_shared_path), "snapshots": lambda n: v_int(n, 0, 1000, "snapshots kept per database")},
    "ssh": {
        "known_hosts": v_local_file,
        "identity_file": v_local_file,
        "config_file": v_local_file,
        "connect_timeout": v_duration,
        "keepalive": v_duration,
    },
    "traefik": {
        "mode": v_enum(TRAEFIK_MODES),
        "rule": v_rule,
        "entry_points": v_str_list(v_entry_point),
        "port": v_port,
        "maintenance_page": v_local_file,
        "maintenance_port": v_port,
        "dynamic_dir": v_remote_dir,
    },
}
NULLABLE_SECTIONS = {"build", "health", "traefik", "shared", "service", "hooks", "data"}
SECTION_EXAMPLES = {
    "shared": "{dirs: [data], files: [.env]}",
    "build": '{command: "podman build -t {image}:{version} .", image: my-app}',
    "service": "{manager: systemd-user, unit: my-app}",
    "health": '{url: "http://127.0.0.1:8080/health"}',
    "upload": "{method: tar}",
    "hooks": '{before_start: ["./manage.py migrate"]}',
    "data": "{sqlite: [data/app.db], snapshots: 5}",
    "ssh": "{identity_file: ~/.ssh/id_ed25519}",
    "traefik": '{rule: "Host(`app.example.com`)", port: 8080}',
}
