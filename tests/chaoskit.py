"""The chaos harness (issue 15): seeded random capview operations, each struck at a random
moment, with the invariants checked on the host after every one.

One app on one real testbed host (sshd + ``systemd --user``), reached by the CLI through a
TCP proxy that can cut every link (``benchmarks/latency_proxy.LatencyProxy.sever``). A
background writer keeps inserting SQLite rows through the app the whole time
(``faultkit.Hitter``: acknowledged rows counted client-side). Every operation is the real
CLI (``python -m capview ...``) in a subprocess, run in the directory of its deploy.yaml,
so a command capview prints (``capview unlock test --host H --force``) runs exactly as
printed.

Operations: a release of a healthy version, of a broken one (``/health`` answers 500), of
one whose app exits at once; a rollback to the default target, or ``--to`` a retained
release (``--force`` when it is marked failed, so a rollback *to* a broken release and its
switch back are exercised too); a prune.

Strikes: none (control), SIGKILL of capview, a cut connection, SIGHUP, a closed stdout
(the reading end of the pipe closed after a few lines, like ``| head -n 3``). A strike
fires at a *mark* seen in capview's own output (``--json`` events, or the plain lines;
``PhaseStarted`` of any phase, the failed health check, the revert) or on the host
(``current`` has just changed, or changed back), plus a seeded random delay. It *landed* when capview was still running and had not yet reported the
host finished.

After every operation (independently of capview's code; faultkit does the looking):
``current`` is a relative link to a complete release matching its manifest and its
source; the service answers ``/health`` with the version ``current`` names, 200 unless the
operation was SIGKILLed before finishing; no acknowledged row lost, ``integrity_check``
ok; no release.json ``failed`` while current, nor ``live`` while not current; no lock,
and a history that names ``current``, unless SIGKILLed; ``current`` is the previous or
the target release; a Python traceback never reaches the terminal. An operation whose own
strike did not land must reach its expected outcome after at most the one ``capview ...``
command the previous failure printed (run exactly as printed, nothing else); after a
landed SIGKILL the next operation is a plain healthy release (the promised recovery).

A violation is recorded with its kind, the seed and the operation. After one that leaves a
wrong or broken release live the host is repaired (a fresh release, or by hand) so one bug
does not cascade into every later operation; a stale lock, flag or history is left for the
next operation to get past, and is not counted twice. A wedged operation is killed after a
timeout and counted as a violation. Replays: ``CAPVIEW_CHAOS_SEED`` repeats a run's plans
(one random stream per operation), ``CAPVIEW_CHAOS_FROM=N`` starts at operation N.
"""

from __future__ import annotations

import json
import os
import random
import re
import secrets
import shlex
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from chaosstrike import (
    HEALTH_TIMEOUT, MODES, OP_TIMEOUT, OPS, STRIKE_SIGNALS, STRIKES, Plan, ProxyThread,
    RunOutcome, StruckRun, delay_for, kill_group, marks_for, readlink, suggested_command, weighted,
)
from faultkit import (
    IN_PROGRESS, Hitter, cli_argv, current_version, db_state, http_get, known_hosts_for, leftovers, settle,
    verify_release, write_config,
)
from realhost import make_source, new_app

ENV = "test"
KEEP = 3
SETTLE_TIMEOUT = 60.0

# ---------------------------------------------------------------------- results

@dataclass
class Violation:
    kind: str
    index: int
    plan: str
    detail: str
    strike: str = "none"  # the strike that landed on this operation

    def line(self, seed: int) -> str:
        return f"[seed {seed}] #{self.index:03d} {self.kind}: {self.detail} -- op: {self.plan}"


@dataclass
class Tally:
    seed: int
    ops: int = 0
    strikes: Counter = field(default_factory=Counter)  # planned strikes that fired
    landed: Counter = field(default_factory=Counter)
    op_kinds: Counter = field(default_factory=Counter)
    violations: list[Violation] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # printed commands the harness ran
    repairs: int = 0
    rows_acked: int = 0  # rows the background writer had acknowledged by the end
    rows_lost: int = 0
    replay: str = ""
    seconds: float = 0.0

    def by_kind(self) -> Counter:
        return Counter(v.kind for v in self.violations)

    def summary(self) -> str:
        kinds = self.by_kind()
        lines = [
            f"chaos seed {self.seed}: {self.ops} operations in {self.seconds:.0f} s "
            f"({', '.join(f'{k} {n}' for k, n in sorted(self.op_kinds.items()))})",
            f"  strikes fired {sum(self.strikes.values())}, landed {sum(self.landed.values())}: "
            + ", ".join(f"{k} {self.landed[k]}/{self.strikes[k]}" for k in sorted(self.strikes)),
            f"  printed commands run: {len(self.commands)}" + (f" ({'; '.join(sorted(set(self.commands)))})"
                                                               if self.commands else ""),
            f"  violations: {len(self.violations)}",
            *(f"    {k}: {n} (after " + ", ".join(f"{s} {c}" for s, c in Counter(
                v.strike for v in self.violations if v.kind == k).most_common()) + ")"
              for k, n in kinds.most_common()),
            f"  acknowledged SQLite rows: {self.rows_acked}, lost: {self.rows_lost}",
            f"  repairs after a violation: {self.repairs}",
        ]
        return "\n".join(lines)

    def failure_message(self) -> str:
        head = (f"chaos: {len(self.violations)} invariant violations with seed {self.seed} "
                f"(replay: {self.replay}; one operation N alone: CAPVIEW_CHAOS_FROM=N CAPVIEW_CHAOS_OPS=N)")
        return "\n".join([head, self.summary()] + [v.line(self.seed) for v in self.violations])


# Violations after which the host is repaired before going on (a broken or wrong release
# live, or a lost operation would fail every later one). The others -- lock, states,
# history, output -- are left for the next operation to get past, which is a check too.
CASCADING = {"wedged", "remote_not_settled", "current_missing", "current_incomplete", "unexpected_current",
             "service_down", "service_not_current", "unhealthy_current", "next_op_failed"}


class Found:
    """The violations of one operation; ``add(kind, detail)`` is what the checks call."""

    def __init__(self, index: int, plan: Plan) -> None:
        self.index, self.plan, self.items, self.landed = index, plan, [], False

    def add(self, kind: str, detail: str) -> None:
        self.items.append(Violation(kind, self.index, self.plan.describe(), detail,
                                    self.plan.strike if self.landed else "none"))

    __call__ = add


# ---------------------------------------------------------------------- the harness

class Chaos:
    """The app, its proxy, the background writer, and the operations against them."""

    def __init__(self, host, root: Path, seed: int, *, log=print) -> None:
        self.host, self.root, self.seed, self.log = host, root, seed, log
        self.tally = Tally(seed)
        self.kinds: dict[str, str] = {}  # version -> good | broken | exits
        self.sources: dict[str, Path] = {}
        self.reported: set[tuple[str, str]] = set()  # state violations already counted (not twice)
        self.kill_landed = False  # the previous operation was SIGKILLed mid-way
        self.clean_next = False  # the previous operation left its lock
        self.n = 0
        self.live: list[StruckRun] = []

    # ---- set up and tear down -------------------------------------------
    def __enter__(self) -> "Chaos":
        try:
            return self._start()
        except BaseException:
            self.__exit__()
            raise

    def _start(self) -> "Chaos":
        self.app = new_app(self.host, build=False, tag="chaos" + secrets.token_hex(2))
        self.dp = Path(self.app.deploy_path)
        self.proxy = ProxyThread(self.host.port).__enter__()
        kh = known_hosts_for(self.host, self.proxy.port, self.root / "known_hosts")
        first = self.new_version("good")
        write_config(self.root / "deploy.yaml", self.app, self.sources[first], port=self.proxy.port,
                     known_hosts=kh, keep=KEEP, build=False, health_timeout=f"{HEALTH_TIMEOUT:g}s")
        cp = self.cli("release", first, ENV, "--source", str(self.sources[first]))
        assert cp.returncode == 0, f"[seed {self.seed}] the first release failed: {cp.stdout}{cp.stderr}"
        _, self.rows0 = db_state(self.app)  # before the writer starts: every ack is a new row
        self.acked0 = 0
        self.hits = Hitter(self.app, every=0.05).__enter__()
        return self

    def __exit__(self, *exc) -> None:
        """Stop everything this harness started: capview runs, the writer, the proxy, the app."""
        for r in list(self.live):
            if getattr(r, "proc", None) is not None and r.proc.poll() is None:
                kill_group(r.proc)
        if getattr(self, "hits", None) is not None:
            self.hits.__exit__(None, None, None)
        if getattr(self, "app", None) is not None:
            try:
                self.settle()
            except AssertionError:
                pass
            self.host.systemctl("stop", self.app.unit)
        if getattr(self, "proxy", None) is not None:
            self.proxy.__exit__(None, None, None)

    # ---- small helpers -------------------------------------------------
    def cli(self, *args: str, timeout: float = OP_TIMEOUT) -> subprocess.CompletedProcess:
        """An unstruck CLI command in the config's directory (the harness's own repairs)."""
        return subprocess.run(cli_argv(*args), cwd=self.root, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)

    def new_version(self, kind: str) -> str:
        self.n += 1
        v = f"c{self.n:03d}-{kind}"
        src = make_source(self.root, v, broken=(kind == "broken"), files=8)
        if kind == "exits":
            (src / "app.py").write_text("import sys\nsys.exit('this release exits at once')\n")
        self.kinds[v], self.sources[v] = kind, src
        return v

    def current(self) -> str | None:
        try:
            return current_version(self.dp)
        except (OSError, AssertionError):
            return None

    def state_of(self, v: str) -> str | None:
        try:
            return json.loads((self.dp / "releases" / v / ".capview" / "release.json").read_text()).get("state")
        except (OSError, ValueError):
            return None

    def complete(self, v: str) -> bool:
        try:
            verify_release(self.dp / "releases" / v, self.sources.get(v))
            return True
        except (AssertionError, OSError, ValueError):
            return False

    def lock_owner(self) -> str | None:
        """Who holds the host's lock ("operation version pid"), or None when it is free."""
        lock = self.dp / ".capview" / "lock"
        if not lock.exists():
            return None
        try:
            o = json.loads((lock / "owner.json").read_text())
            return f"{o.get('operation')} {o.get('version')} pid {o.get('pid')} token {o.get('token')}"
        except (OSError, ValueError):
            return "no readable owner.json"

    def previous_live(self) -> str | None:
        """The release a plain rollback goes to, as the host's listing marks it (the live
        stack of the history, what was pruned left out), or None when there is none."""
        res = self.cli("releases", ENV, "--json")
        for line in res.stdout.splitlines():  # one JSON object per host
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            for r in doc.get("releases", []):
                if r.get("previous"):
                    return r.get("version")
        return None

    def settle(self) -> None:
        settle(str(self.dp), SETTLE_TIMEOUT)  # a killed client's script may still be finishing

    # ---- drawing an operation -------------------------------------------
    def draw(self, i: int) -> Plan:
        # one stream per operation: operation N draws the same whatever the earlier ones did
        rng = random.Random(f"{self.seed}/{i}")
        op, strike, mode = weighted(rng, OPS), weighted(rng, STRIKES), rng.choice(MODES)
        # `| head -n 3`, or later: past the switch, into the health check and the revert
        lines, r = (rng.randint(1, 3) if rng.random() < 0.5 else rng.randint(4, 16)), rng.random()
        if self.kill_landed:  # the promised recovery: a plain healthy release
            op, strike = "release-good", "none"
        elif self.clean_next:  # a lock was left: the next operation must get past it unstruck
            strike = "none"
        plan = Plan(i, op, strike, mode, lines=lines)
        kind = None
        if op.startswith("release"):
            kind = op.split("-", 1)[1]
            plan.version = self.new_version(kind)
        elif op == "rollback-to":
            cur = self.current()
            cands = sorted(v for v in self.kinds if v != cur and (self.dp / "releases" / v).is_dir()
                           and self.state_of(v) not in (*IN_PROGRESS, None) and self.complete(v))
            if not cands:
                plan.op, kind = "release-good", "good"
                plan.version = self.new_version("good")
            else:
                plan.version = cands[int(r * len(cands))]
                kind = self.kinds[plan.version]
                plan.force = self.state_of(plan.version) == "failed"
        elif op == "prune":
            plan.keep = 2 if r < 0.7 else None
        if plan.op == "rollback":
            kind = None
        plan.mark = rng.choice(marks_for(plan.op, kind, mode))
        plan.delay = delay_for(rng, plan.mark, kind)
        return plan

    def args_of(self, plan: Plan) -> list[str]:
        out = ["--json"] if plan.mode == "json" else ["-v"] if plan.mode == "plain-v" else []
        if plan.op.startswith("release"):
            return ["release", plan.version, ENV, "--source", str(self.sources[plan.version]), *out]
        if plan.op == "rollback":
            return ["rollback", ENV, "--yes", *out]
        if plan.op == "rollback-to":
            return ["rollback", ENV, "--to", plan.version, "--yes", *(["--force"] if plan.force else []), *out]
        return ["prune", ENV, "--yes", *(["--keep", str(plan.keep)] if plan.keep is not None else []), *out]

    def strike_run(self, plan: Plan) -> RunOutcome:
        run = StruckRun(self.args_of(plan), self.root, plan, proxy=self.proxy, current_link=self.dp / "current")
        self.live.append(run)
        try:
            return run.run()
        finally:
            self.live.remove(run)

    # ---- one operation ---------------------------------------------------
    def step(self, i: int) -> None:
        plan = self.draw(i)
        before = self.current()
        if plan.op == "rollback":
            plan.target = self.previous_live()
        out = self.strike_run(plan)
        found = Found(i, plan)
        found.landed = out.landed
        self.tally.ops += 1
        self.tally.op_kinds[plan.op] += 1
        self.count_strike(plan, out)
        if out.wedged:
            found.add("wedged", f"still running after {OP_TIMEOUT:.0f} s; killed. {out.tail()}")
        out = self.check_outcome(plan, out, before, found)
        found.landed = out.landed
        killed = plan.strike == "kill" and out.landed
        self.check_host(plan, out, before, killed, found)
        # the next operation is the clean one that must recover (after one printed command)
        self.kill_landed = killed
        self.clean_next = not killed and self.lock_owner() is not None
        self.tally.violations += found.items
        status = "ok" if not found.items else "VIOLATION " + ", ".join(sorted({f.kind for f in found.items}))
        fate = (" landed" if out.landed else " (did not land)" if out.struck
                else " (missed)" if plan.strike != "none" else "")
        self.log(f"chaos[seed {self.seed}] #{i:03d} {plan.describe()} -> rc {out.rc}{fate} current {self.current()}"
                 f" {out.seconds:.1f}s {status}" + (f" | {out.message[:160]}" if out.message else ""))
        for f in found.items:
            self.log("    " + f.line(self.seed))
        if any(f.kind in CASCADING for f in found.items):
            self.repair(i)

    def count_strike(self, plan: Plan, out: RunOutcome) -> None:
        if out.struck:
            self.tally.strikes[plan.strike] += 1
        if out.landed:
            self.tally.landed[plan.strike] += 1

    def expected(self, plan: Plan, before: str | None) -> tuple[int, set]:
        """(exit code, acceptable currents) of an unstruck run from a healthy ``before``."""
        if plan.op == "release-good":
            return 0, {plan.version}
        if plan.op.startswith("release"):
            return 1, {before}
        if plan.op == "rollback-to":
            return (0, {plan.version}) if self.kinds[plan.version] == "good" else (1, {before})
        if plan.op == "rollback":  # to the previous live release; none (it was pruned): refused
            return (0, {plan.target}) if plan.target and self.kinds.get(plan.target) == "good" else (1, {before})
        return 0, {before}

    def check_outcome(self, plan: Plan, out: RunOutcome, before, v) -> RunOutcome:
        """The next operation succeeds after at most the one command capview printed (run
        exactly as printed, then the operation once more). Returns the run the host is
        judged by: the retry, if there was one."""
        rc, currents = self.expected(plan, before)
        if plan.strike == "pipe" and out.landed and not out.wedged and out.rc != 3:
            # rendering must never change the operation (issue 15, item 1)
            if not self._met(plan, out, rc, currents):
                want = " or ".join(sorted(map(str, currents)))
                v("closed_stdout_changed_outcome", f"rc {out.rc} and current {self.current()}; unstruck it "
                                                   f"would be rc {rc} and current {want}")
            return out
        if out.wedged or (out.landed and out.rc != 3):
            return out  # its own strike decides; the host checks still apply
        if self._met(plan, out, rc, currents):
            return out
        cmd = suggested_command(out.text())
        if cmd is None:
            v("next_op_failed", f"rc {out.rc}, expected {rc}, and no capview command printed: {out.tail()}")
            return out
        self.tally.commands.append(cmd)
        self.settle()
        ran = self.cli(*shlex.split(cmd)[1:])
        if plan.op.startswith("release"):  # a fresh name: the refused one may exist now
            plan.version = self.new_version(self.kinds[plan.version])
            rc, currents = self.expected(plan, before)
        again = self.strike_run(plan)
        self.count_strike(plan, again)
        if again.landed:
            return again
        if not self._met(plan, again, rc, currents):
            v("next_op_failed", f"rc {out.rc}; ran the printed `{cmd}` (rc {ran.returncode}); the retry "
                                f"still gave rc {again.rc}, expected {rc}: {again.tail()}")
        return again

    def _met(self, plan: Plan, out: RunOutcome, rc: int, currents: set) -> bool:
        # a signal that came after the host was reported finished changes only the exit code
        late = out.struck and not out.landed and out.rc == -STRIKE_SIGNALS.get(plan.strike, 0)
        if plan.op == "rollback" and (out.rc == 1 or late) and re.search(
                r"no previous live release|is already live", out.text()):
            return True  # nothing to roll back to: a correct refusal
        return (out.rc == rc or late) and self.current() in currents

    def check_host(self, plan: Plan, out: RunOutcome, before, killed: bool, v) -> None:
        try:
            self.settle()
        except AssertionError as exc:
            v("remote_not_settled", str(exc))
        if "Traceback (most recent call last)" in out.stderr and not killed:
            v("traceback", out.stderr.strip().splitlines()[-1][:300])
        cur = self.current()
        if cur is None:
            v("current_missing", f"`current` is missing or not a relative link into releases/ "
                                 f"({readlink(self.dp / 'current')!r})")
        else:
            try:
                verify_release(self.dp / "releases" / cur, self.sources.get(cur))
            except (AssertionError, OSError, ValueError) as exc:
                v("current_incomplete", f"{cur}: {exc}")
            target = {plan.version} if plan.op.startswith("release") or plan.op == "rollback-to" else set()
            if plan.op == "rollback":  # the release the host listed as previous (struck: or none)
                target = {plan.target} if plan.target else set()
            if cur != before and cur not in target:
                v("unexpected_current", f"current {cur}: neither the previous {before} nor the target")
            self.check_service(cur, killed, v)
        self.check_states(cur, v)
        self.check_rows(v)
        if not killed:
            lock = self.lock_owner()
            if lock is not None and ("lock_left", lock) not in self.reported:
                self.reported.add(("lock_left", lock))
                v("lock_left", f"the lock is still held after rc {out.rc}: {lock}")
            h = history_live(self.dp)
            if cur is not None and h != cur and ("history_disagrees", f"{h}/{cur}") not in self.reported:
                self.reported.add(("history_disagrees", f"{h}/{cur}"))
                v("history_disagrees", f"history says {h} is live, current is {cur}")
        if plan.strike == "none" and plan.op.startswith("release") and out.rc == 0 and not out.wedged:
            left = leftovers(self.dp)
            if left:
                v("leftovers", f"after a clean release: {left}")

    def check_service(self, cur: str, killed: bool, v) -> None:
        kind = self.kinds.get(cur, "?")
        got = None
        for _ in range(50):  # a killed client's switch may still be starting the service
            got = http_get(self.app, "/health")
            if got == (200, cur) or (killed and isinstance(got, tuple) and got[1] == cur):
                return
            time.sleep(0.1)
        state = self.state_of(cur)
        if isinstance(got, str):
            if not (killed and kind == "exits"):
                v("service_down", f"current {cur} ({kind}, state {state}) but the service is {got}")
        elif got[1] != cur:
            v("service_not_current", f"the service answers {got}, current is {cur}")
        elif not killed:
            v("unhealthy_current", f"current {cur} ({kind} release, state {state}) answers {got[0]}: "
                                   "a broken release is live")

    def check_states(self, cur: str | None, v) -> None:
        rels = self.dp / "releases"
        for d in sorted(rels.iterdir()) if rels.is_dir() else ():
            if d.name.startswith(".") or d.is_symlink():
                continue
            state = self.state_of(d.name)
            bad = None
            if state == "failed" and d.name == cur:
                bad = "failed_but_current"
            elif state == "live" and d.name != cur:
                bad = "live_but_not_current"
            if bad and (bad, d.name) not in self.reported:
                self.reported.add((bad, d.name))
                v(bad, f"releases/{d.name}/.capview/release.json says {state}; current is {cur}")

    def check_rows(self, v) -> None:
        acked = self.hits.ok - self.acked0  # read before the rows: every ack was committed first
        try:
            integrity, rows = db_state(self.app)
        except (subprocess.SubprocessError, IndexError, ValueError) as exc:
            v("integrity", f"the database could not be read: {exc}")
            return
        if integrity != "ok":
            v("integrity", f"PRAGMA integrity_check: {integrity}")
        if rows - self.rows0 < acked:
            v("rows_lost", f"{rows - self.rows0} new rows, {acked} acknowledged")
            self.tally.rows_lost += acked - (rows - self.rows0)
            self.rows0, self.acked0 = rows, self.hits.ok

    # ---- after a violation -------------------------------------------
    def repair(self, i: int) -> None:
        """Back to a known-good host so one bug does not cascade: force the lock, release a
        fresh healthy version; if even that fails, put ``current`` back by hand."""
        self.tally.repairs += 1
        try:
            self.settle()
        except AssertionError:
            pass
        self.cli("unlock", ENV, "--force")
        v = self.new_version("good")
        cp = self.cli("release", v, ENV, "--source", str(self.sources[v]))
        if cp.returncode == 0 and self.current() == v and http_get(self.app, "/health") == (200, v):
            self.log(f"    repaired: released {v}")
            return
        self.log(f"    repair by release {v} failed (rc {cp.returncode}): {cp.stdout[-300:]}{cp.stderr[-300:]}; "
                 "fixing the host by hand")
        dp = self.app.deploy_path
        self.app.sh(f"rm -rf {dp}/.capview/lock; cd {dp} && ln -sfn releases/{v} current.tmp.fix && "
                    f"mv -T current.tmp.fix current", check=False)
        self.host.systemctl("restart", self.app.unit)
        time.sleep(1)

    def run(self, ops: int, start: int = 1) -> Tally:
        """Operations ``start`` .. ``ops``. Those before ``start`` are drawn but not run, so
        operation N gets the same op, strike, mark and delay as in the full run (on a host
        with just two healthy releases instead of what the earlier ones left)."""
        t0 = time.monotonic()
        replay = f"CAPVIEW_CHAOS_SEED={self.seed} CAPVIEW_CHAOS_OPS={ops}" + (
            f" CAPVIEW_CHAOS_FROM={start}" if start > 1 else "")
        self.log(f"chaos seed {self.seed}: operations {start}..{ops} (replay: {replay})")
        for i in range(1, start):
            self.draw(i)
        if start > 1:  # a second healthy release, so a replayed rollback has a target
            v = self.new_version("good")
            assert self.cli("release", v, ENV, "--source", str(self.sources[v])).returncode == 0
        for i in range(start, ops + 1):
            self.step(i)
        self.tally.seconds = time.monotonic() - t0
        self.tally.rows_acked = self.hits.ok
        self.tally.replay = replay
        return self.tally


def history_live(dp: Path) -> str | None:
    """The release the history says is live: the ``to`` of the last record that switched."""
    live = None
    try:
        text = (dp / ".capview" / "history.jsonl").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if rec.get("op") in ("release", "rollback") and rec.get("outcome") in ("ok", "rolled_back") and rec.get("to"):
            live = rec["to"]
    return live


def seed_from_env() -> int:
    s = os.environ.get("CAPVIEW_CHAOS_SEED", "").strip()
    return int(s) if s else random.SystemRandom().randrange(1, 10**6)


def ops_from_env(default: int = 60) -> int:
    return int(os.environ.get("CAPVIEW_CHAOS_OPS", "").strip() or default)


def start_from_env() -> int:
    return int(os.environ.get("CAPVIEW_CHAOS_FROM", "").strip() or 1)
