"""The targets table of issue 21 (scenario | now | target | met?), built from the rows the
scenarios measured. A row whose scenario was not run says which ``--only`` name runs it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from benchmarks import peers as P
from benchmarks import scale as S
from benchmarks.report import Metric, Report

PEER = P.PEER


@dataclass
class Part:
    """One measured half of a targets-table row."""

    scenario: str
    what: str
    show: Callable[[Metric], str]
    target: str
    rtt: int | None = None  # None: the table's RTT


def _s(v: float | None) -> str:
    return "—" if v is None else f"{v:.2f} s"


def _ratio_vs(m: Metric) -> str:
    return f"{_s(m.cap_med)} vs {_s(m.base_med)} ({m.ratio:.1f}x)" if m.ratio else "—"


def _ratio(m: Metric) -> str:
    return f"{m.ratio:.2f}x" if m.ratio else "—"


def _count(m: Metric) -> str:
    return "—" if m.cap_med is None else f"{m.cap_med:g}"


def _secs(m: Metric) -> str:
    return _s(m.cap_med)


def _mb(m: Metric) -> str:
    return "—" if m.cap_med is None else f"{m.cap_med:.0f} MB"


def rows(rate_mbit: float) -> list[tuple[str, list[Part]]]:
    first_capped = P.first_label(rate_mbit) if rate_mbit else None
    return [
        ("redeploy, 20 files changed, vs `ssh host true` on the same link",
         [Part("peers", P.REDEPLOY_VS_SSH, _ratio_vs, "≤ 1.4x")]),
        (f"redeploy vs {PEER}", [Part("peers", P.REDEPLOY, _ratio, "≤ 0.12x")]),
        ("rollback vs `ssh host true`", [Part("peers", P.ROLLBACK_VS_SSH, _ratio_vs, "≤ 1.2x")]),
        (f"first deploy vs {PEER}, unlimited / {rate_mbit:g} Mbit/s link",
         [Part("peers", P.first_label(0), _ratio, "≤ 0.25x")]
         + ([Part("peers", first_capped, _ratio, "≤ 0.5x")] if first_capped else [])),
        ("SSH sessions per redeploy / rollback (sshd log)",
         [Part("peers", P.SESSIONS + "redeploy", _count, "≤ 2"),
          Part("peers", P.SESSIONS + "rollback", _count, "≤ 1")]),
        ("health phase with an app that starts in 0.2 s", [Part("health", P.HEALTH, _secs, "≤ 0.35 s")]),
        ("redeploy of a 200,000-file release, 20 files changed",
         [Part("files200k", S.REDEPLOY_200K, _secs, "≤ 3 s")]),
        ("`releases` cold, 5 x 200,000 files", [Part("files200k", S.RELEASES_COLD_200K, _secs, "≤ 2 s")]),
        ("`releases` / `prune` with 10,000 retained releases",
         [Part("releases10k", S.RELEASES_10K_COLD, lambda m: "cold " + _secs(m), "≤ 3 s"),
          Part("releases10k", S.RELEASES_10K_WARM, lambda m: "warm " + _secs(m), "≤ 3 s"),
          Part("releases10k", S.PRUNE_10K, _secs, "≤ 15 s")]),
        ("client peak RSS, 500 MB upload / 200,000-file scan",
         [Part("rss", None, _mb, "≤ 150 MB", rtt=0),  # what: found by prefix (size in the name)
          Part("files200k", S.RSS_SCAN, _mb, "≤ 300 MB", rtt=0)]),
    ]


def _find(rep: Report, part: Part, rtt: int) -> Metric | None:
    at = rtt if part.rtt is None else part.rtt
    if part.what is None:
        return next((m for m in rep.metrics if m.scenario == part.scenario and m.rtt == at
                     and m.what.startswith("peak RSS")), None)
    return rep.get(part.scenario, at, part.what)


def _join(parts: list[str], n_parts: int) -> str:
    """'a / b' for two-part rows; the 10k row joins its two listings with a comma."""
    if n_parts == 3:
        return f"{parts[0]}, {parts[1]} / {parts[2]}"
    return " / ".join(parts)


def targets_table(rep: Report, rtt: int, rate_mbit: float) -> tuple[str, list[dict]]:
    """The markdown table and its JSON rows (now, target, met per part)."""
    out = ["| scenario | now | target | met? |", "|---|---|---|:---:|"]
    data = []
    for name, parts in rows(rate_mbit):
        nows, targets, mets, js = [], [], [], []
        for part in parts:
            m = _find(rep, part, rtt)
            if m is None or m.cap_med is None:
                nows.append(f"not run (`--only {part.scenario}`)")
                mets.append("—")
                js.append({"what": part.what, "now": None, "met": None})
            else:
                nows.append(part.show(m))
                mets.append({True: "yes", False: "**no**", None: "—"}[m.met])
                js.append({"what": m.what, "now": m.cap_med, "ratio": m.ratio,
                           "baseline": m.base_med, "met": m.met})
            targets.append(part.target)
        if len(parts) == 3:  # the two listings share one target
            targets = [targets[0], targets[2]]
            mets = [mets[0] if mets[0] == mets[1] else f"{mets[0]}, {mets[1]}", mets[2]]
        missing = {p.scenario for p, j in zip(parts, js) if j["now"] is None}
        if len(missing) == 1 and all(j["now"] is None for j in js):
            now, mets = f"not run (`--only {missing.pop()}`)", ["—"]
        else:
            now = _join(nows, len(parts))
        out.append(f"| {name} | {now} | {' / '.join(targets)} | {' / '.join(mets)} |")
        data.append({"scenario": name, "rtt_ms": rtt, "parts": js})
    return "\n".join(out), data


def footnotes(rep: Report, rtt: int) -> list[str]:
    """What the one-RTT table hides: the same rows at the other RTTs of the run."""
    out = []
    for what, label in ((P.HEALTH, "health phase"), (P.REDEPLOY_VS_SSH, "redeploy vs `ssh host true`"),
                        (P.ROLLBACK_VS_SSH, "rollback vs `ssh host true`")):
        others = [m for m in rep.metrics if m.what == what and m.rtt != rtt and m.cap_med is not None]
        if others:
            out.append(f"* {label} at " + ", ".join(
                f"{m.rtt} ms: {_ratio_vs(m) if m.ratio else _secs(m)}" for m in others))
    return out
