"""Preflight: what the host said about taking a deploy (the script is scripts/status.py).

Used by ``capview check`` and as the first part of every deploy's lock phase.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True)
class PreflightReport:
    failures: tuple[str, ...]
    warnings: tuple[str, ...]
    free_kb: int | None
    passed: tuple[str, ...] = ()  # the checks that passed (``capview check -v``)

    @property
    def ok(self) -> bool:
        return not self.failures


def parse_preflight(frames: Iterable[tuple[str, str, str]]) -> PreflightReport:
    found: dict[str, list[str]] = {}
    for kind, arg, _ in frames:
        found.setdefault(kind, []).append(arg.strip())
    free = (found.get("free_kb") or [""])[-1]
    return PreflightReport(tuple(found.get("fail", [])), tuple(found.get("warn", [])),
                           int(free) if free.isdigit() else None, tuple(found.get("ok", [])))
