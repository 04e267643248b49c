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
from capview.engine.status import LAYOUT_NAMES

MIN_FREE_KB = 100 * 1024  # warn below 100 MiB free
MIN_FREE_INODES = 10_000  # warn below this many free inodes


@dataclass(frozen=True)
class PreflightReport:
    failures: tuple[str, ...]
    warnings: tuple[str, ...]
    free_kb: int | None
    passed: tuple[str, ...] = ()  # the checks that passed (``capview check -v``)

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
    migrate = f"capview migrate-data {host.env or 'ENV'}"
    known = "|".join(sorted(LAYOUT_NAMES)) + "|current.tmp.*"
    lines = [
        f"fail() {{ printf '{MARK} fail %s\\n' \"$*\"; failed=1; }}",
        f"warn() {{ printf '{MARK} warn %s\\n' \"$*\"; }}",
        # a check that passed, for `capview check -v`
        f"pass() {{ printf '{MARK} ok %s\\n' \"$*\"; }}",
        "failed=0 legacy=0",
        f"dp={q(p.root)}",
        f'if [ ! -d "$dp" ]; then fail "$dp does not exist - run: "{q(init)}; '
        'elif [ ! -w "$dp" ]; then fail "$dp is not writable by $(id -un)"; else pass "$dp exists and is writable"; fi',
        # an app deployed in place (old layout): init refuses it, migrate-data is the way
        'if [ -d "$dp" ] && [ ! -d "$dp/releases" ]; then for n in "$dp"/* "$dp"/.[!.]* "$dp"/..?*; do '
        '[ -e "$n" ] || [ -L "$n" ] || continue; '
        f'case ${{n##*/}} in {known}) ;; *) legacy=1 ;; esac; done; fi',
        f'if [ "$legacy" = 1 ]; then fail "$dp holds an app deployed in place (old layout) - run: "{q(migrate)}; fi',
        "if command -v tar >/dev/null 2>&1; then pass 'tar is installed'; else fail 'tar is not installed on the host'; fi",
        # df -P prints one line per filesystem: 1K-blocks, used, available.
        'if [ -d "$dp" ]; then free=$(df -Pk "$dp" | awk \'NR==2 {print $4}\'); '
        f"printf '{MARK} free_kb %s\\n' \"$free\"; "
        f'if [ "${{free:-0}}" -ge {MIN_FREE_KB} ]; then pass "${{free}} KiB free on $dp"; else warn "only ${{free}} KiB free on $dp"; fi; '
        # inodes run out before blocks with many small files; 0 total means "no fixed limit" (btrfs)
        'inodes=$(df -Pi "$dp" 2>/dev/null | awk \'NR==2 && $2 ~ /^[0-9]+$/ && $4 ~ /^[0-9]+$/ {print $2, $4}\'); '
        'itotal=${inodes%% *}; ifree=${inodes##* }; '
        f'if [ -n "$inodes" ] && [ "$itotal" -gt 0 ] && [ "$ifree" -lt {MIN_FREE_INODES} ]; then '
        'warn "only $ifree free inodes (files) of $itotal on $dp: every changed file of a deploy needs one"; fi; fi',
    ]
    if s.health is not None:
        lines.append(
            "if command -v curl >/dev/null 2>&1 || command -v wget >/dev/null 2>&1; then pass 'curl or wget is installed'; "
            "else fail 'neither curl nor wget is installed (needed for the health check)'; fi"
        )
    tool = build_tool(s)
    if tool:
        lines.append(f"if command -v {q(tool)} >/dev/null 2>&1; then pass {q(tool + ' is installed')}; "
                     f"else fail {q(tool + ' is not installed on the host (build.command needs it)')}; fi")
    if s.service.manager == "systemd-user":
        unit = s.service.unit or ""
        lines += [
            "if ! command -v systemctl >/dev/null 2>&1; then fail 'systemctl is not installed on the host'; "
            "elif ! systemctl --user show-environment >/dev/null 2>&1; then "
            "fail \"systemctl --user cannot reach the user manager (XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR): "
            "is systemd --user running for $(id -un)? On a VPS run: sudo loginctl enable-linger $(id -un)\"; "
            f"elif ! systemctl --user cat {q(unit)} >/dev/null 2>&1; then "
            f"fail {q(f'systemd user unit {unit} not found - install it in ~/.config/systemd/user/ and run systemctl --user daemon-reload')}; "
            f"else pass {q(f'systemctl --user reaches the user manager; unit {unit} exists')}; fi",
        ]
    if for_deploy:
        for f in s.shared.files:
            path = f"{p.shared}/{f}"
            lines.append(f'if [ -e {q(path)} ]; then pass {q(path + " exists")}; '
                         f'elif [ "$legacy" = 0 ]; then fail {q(f"{path} is missing - run: {init}, then fill it in")}; fi')
    lines.append('[ "$failed" = 0 ] || exit 4')
    return "\n".join(lines) + "\n"


def parse_preflight(stdout: str) -> PreflightReport:
    found = parse_markers(stdout)
    free = found.get("free_kb", [""])[-1].strip()
    return PreflightReport(
        tuple(v.strip() for v in found.get("fail", [])),
        tuple(v.strip() for v in found.get("warn", [])),
        int(free) if free.isdigit() else None,
        tuple(v.strip() for v in found.get("ok", [])),
    )
