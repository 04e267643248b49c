"""Preflight: one script that checks a host can take a deploy, before anything changes.

Used by ``capview check`` and as the first part of every deploy's lock phase.
Each problem is one ``@@cv fail <reason>`` line; the script never stops at the
first problem so the user sees all of them at once.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from capview.config import HostConfig, Settings
from capview.engine.layout import HostPaths
from capview.engine.script import MARK, parse_markers, q

MIN_FREE_KB = 100 * 1024  # warn below 100 MB free


@dataclass(frozen=True)
class PreflightReport:
    failures: tuple[str, ...]
    warnings: tuple[str, ...]
    free_kb: int | None

    @property
    def ok(self) -> bool:
        return not self.failures


def build_tool(settings: Settings) -> str | None:
    """The program the build command runs (e.g. podman), to check it exists."""
    if settings.build is None:
        return None
    try:
        words = shlex.split(settings.build.command)
    except ValueError:
        return None
    return words[0] if words else None


def preflight_script(host: HostConfig, *, for_deploy: bool = True) -> str:
    s = host.settings
    p = HostPaths(s.deploy_path)
    init = f"capview init {host.env or 'ENV'}"
    lines = [
        f"fail() {{ printf '{MARK} fail %s\\n' \"$*\"; failed=1; }}",
        f"warn() {{ printf '{MARK} warn %s\\n' \"$*\"; }}",
        "failed=0",
        f"dp={q(p.root)}",
        f'if [ ! -d "$dp" ]; then fail "$dp does not exist - run: "{q(init)}; '
        'elif [ ! -w "$dp" ]; then fail "$dp is not writable by $(id -un)"; fi',
        "command -v tar >/dev/null 2>&1 || fail 'tar is not installed on the host'",
        # df -P prints one line per filesystem: 1K-blocks, used, available.
        'if [ -d "$dp" ]; then free=$(df -Pk "$dp" | awk \'NR==2 {print $4}\'); '
        f"printf '{MARK} free_kb %s\\n' \"$free\"; "
        f'[ "${{free:-0}}" -ge {MIN_FREE_KB} ] || warn "only ${{free}} KB free on $dp"; fi',
    ]
    if s.health is not None:
        lines.append(
            "command -v curl >/dev/null 2>&1 || command -v wget >/dev/null 2>&1 || "
            "fail 'neither curl nor wget is installed (needed for the health check)'"
        )
    tool = build_tool(s)
    if tool:
        lines.append(f"command -v {q(tool)} >/dev/null 2>&1 || fail {q(tool + ' is not installed on the host (build.command needs it)')}")
    if s.service.manager == "systemd-user":
        unit = s.service.unit or ""
        lines += [
            "if ! command -v systemctl >/dev/null 2>&1; then fail 'systemctl is not installed on the host'; "
            "elif ! systemctl --user show-environment >/dev/null 2>&1; then "
            "fail \"systemctl --user cannot reach the user manager (XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR): "
            "is systemd --user running for $(id -un)? On a VPS run: sudo loginctl enable-linger $(id -un)\"; "
            f"elif ! systemctl --user cat {q(unit)} >/dev/null 2>&1; then "
            f"fail {q(f'systemd user unit {unit} not found - install it in ~/.config/systemd/user/ and run systemctl --user daemon-reload')}; fi",
        ]
    if for_deploy:
        for f in s.shared.files:
            path = f"{p.shared}/{f}"
            lines.append(f"[ -e {q(path)} ] || fail {q(f'{path} is missing - run: {init}, then fill it in')}")
    lines.append('[ "$failed" = 0 ] || exit 4')
    return "\n".join(lines) + "\n"


def parse_preflight(stdout: str) -> PreflightReport:
    found = parse_markers(stdout)
    free = found.get("free_kb", [""])[-1].strip()
    return PreflightReport(
        tuple(v.strip() for v in found.get("fail", [])),
        tuple(v.strip() for v in found.get("warn", [])),
        int(free) if free.isdigit() else None,
    )
