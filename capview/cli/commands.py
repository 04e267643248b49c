"""One handler per command: load config, call the engine, render its events.

Handlers never build shell commands; that is the engine's job.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

from capview import inert, units
from capview.cli.output import safe_emit
from capview.cli.render import json_line, make_renderer
from capview.cli.tables import (
    check_json, check_text, history_text, migration_json, migration_text, prune_json, prune_text, releases_json,
    releases_text,
)
from capview.config import Config, Environment, load_config
from capview.engine.context import Context, OperationResult
from capview.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, UsageError


def parse_duration(text: str, flag: str = "--wait-lock") -> float:
    scale = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    t = text.strip()
    for suffix in ("ms", "s", "m", "h"):
        if t.endswith(suffix) and t[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(t[: -len(suffix)]) * scale[suffix]
    if t.replace(".", "", 1).isdigit():
        return float(t)
    raise UsageError(f"{flag}: {text!r} is not a duration (use e.g. 30s, 2m)")


def config_of(args) -> Config:
    return load_config(Path(args.config))


def env_of(args) -> tuple[Config, Environment]:
    cfg = config_of(args)
    env = cfg.env(args.env)
    if args.host:
        env.host(args.host)  # unknown host: a one-line error before any connection
    return cfg, env


@asynccontextmanager
async def engine(args, renderer=None):
    from capview.remote.ssh import SshTransport

    render = renderer if renderer is not None else make_renderer(json_mode=args.json, verbose=args.verbose)
    emit = safe_emit(render)  # a rendering failure never reaches the engine
    transport = SshTransport()
    try:
        yield Context(transport=transport, emit=emit), render
    finally:
        if hasattr(render, "close"):
            try:
                render.close()
            except Exception:  # noqa: BLE001 -- output only
                pass
        await transport.close()


def confirm(args, question: str, refusal: str) -> bool:
    """Ask on a TTY; without one, --yes is required (scripts must say so explicitly).
    ``refusal``: what would happen, for the one-line error that asks for --yes."""
    if getattr(args, "yes", False):
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{refusal}: re-run with --yes to go ahead (--dry-run shows the plan only)")
    try:
        answer = input(f"{question} [y/N] ").strip().lower()
    except (EOFError, OSError):  # the terminal went away: nothing is done
        return False
    return answer in ("y", "yes")


def _quiet(_event) -> None:
    pass


class _Warnings:
    """A renderer for the listing commands: keeps the engine's HostWarning events."""

    def __init__(self) -> None:
        self.events: list = []

    def __call__(self, event) -> None:
        if type(event).__name__ == "HostWarning":
            self.events.append(event)

    def show(self, json_mode: bool) -> None:
        for e in self.events:
            if json_mode:
                print(json_line(e.to_dict()), end="")
            else:
                print(f"capview: warning: {inert.clip(e.host or '-', 40)}: {inert.clip(e.message, 400)}",
                      file=sys.stderr)


# ---- commands ---------------------------------------------------------------

async def cmd_check(args) -> int:
    from capview.engine.check import check, check_split

    _, env = env_of(args)
    async with engine(args, renderer=_quiet) as (ctx, _):
        reports = await check(ctx, env, host=args.host)
    split = check_split(env.name, reports) if args.host is None else None  # issue 17
    print(check_json(reports, split) if args.json else check_text(reports, verbose=args.verbose, split=split), end="")
    return EXIT_OK if all(r.ok for r in reports) else EXIT_UNREACHABLE


async def cmd_release(args) -> int:
    from capview.engine.deploy import release
    from capview.engine.fleet import with_rollout

    _, env = env_of(args)
    env = with_rollout(env, strategy=args.strategy, batch=args.batch_size, canary=args.canary,
                       canary_wait=parse_duration(args.canary_wait, "--canary-wait") if args.canary_wait else None,
                       on_failure=args.on_failure)
    async with engine(args) as (ctx, _):
        result = await release(ctx, env, args.version, host=args.host, dry_run=args.dry_run,
                               wait_lock=parse_duration(args.wait_lock),
                               source=Path(args.source).resolve() if args.source else None)
    return result.exit_code


async def cmd_rollback(args) -> int:
    from capview.cli.data import data_json, data_text
    from capview.engine.data import plan_data
    from capview.engine.hooks import snapshots_on
    from capview.engine.rollback import rollback

    _, env = env_of(args)
    restore = getattr(args, "restore_data", False)
    with_data = [h for h in env.select(args.host) if snapshots_on(h.settings)]
    if restore and not with_data:
        raise UsageError("--restore-data: deploy.yaml lists no SQLite database (data: {sqlite: [data/app.db]}) "
                         "for these hosts, so there is no snapshot to restore")
    async with engine(args) as (ctx, _):
        if with_data:  # issue 18: what the data becomes, before anything changes
            plans = await plan_data(ctx, env, to=args.to, host=args.host, force=args.force)
            print(data_json(plans) if args.json else data_text(plans, restore=restore), end="")
            if restore:
                if any(not p.restorable for p in plans):
                    raise UsageError("--restore-data: a host has no snapshot of the target (see above); nothing changed")
                if not confirm(args, "Restore the data as shown?", "the rollback would replace the live data"):
                    print("nothing changed")
                    return EXIT_OK
        result = await rollback(ctx, env, to=args.to, host=args.host, force=args.force,
                                run_hooks=getattr(args, "run_hooks", False), restore_data=restore)
    return result.exit_code


async def cmd_restart(args) -> int:
    from capview.engine.restart import restart

    _, env = env_of(args)
    async with engine(args) as (ctx, _):
        result = await restart(ctx, env, host=args.host)
    return result.exit_code


async def cmd_releases(args) -> int:
    from capview.engine.status import env_split, status

    _, env = env_of(args)
    async with engine(args, renderer=_quiet) as (ctx, _):
        hosts = await status(ctx, env, host=args.host)
    split = env_split(env.name, hosts) if args.host is None else None  # issue 17: one host cannot be split
    print(releases_json(hosts, split) if args.json else releases_text(hosts, now=time.time(), split=split), end="")
    return EXIT_OK if all(h.reachable for h in hosts) else EXIT_UNREACHABLE


MIN_KEEP = 2  # deploy.yaml's keep_releases rule (config/schema.py), so --keep follows it too


def check_keep(keep: int | None) -> int | None:
    if keep is not None and keep < MIN_KEEP:
        raise UsageError(f"--keep: must be at least {MIN_KEEP}, got {keep} (the previous release is kept for "
                         "rollback; keep_releases in deploy.yaml has the same rule)")
    return keep


async def cmd_prune(args) -> int:
    from capview.engine.prune import plan_prune, prune

    keep = check_keep(args.keep)
    _, env = env_of(args)
    async with engine(args) as (ctx, render):
        plans = await plan_prune(ctx, env, keep=keep, host=args.host)
        print(prune_json(plans) if args.json else prune_text(plans), end="")
        code = EXIT_OK if all(p.reachable for p in plans) else EXIT_UNREACHABLE
        deleting = sum(len(p.deletions) for p in plans)
        if args.dry_run or not deleting:
            return code
        hosts = sum(1 for p in plans if p.deletions)
        what = f"prune would delete {units.plural(deleting, 'release')} on {units.plural(hosts, 'host')}"
        if not confirm(args, f"{what}. Delete them?", what):
            print("nothing deleted")
            return EXIT_OK
        result = await prune(ctx, env, keep=keep, host=args.host)
    return result.exit_code


async def cmd_init(args) -> int:
    from capview.engine.ops import init

    _, env = env_of(args)
    async with engine(args) as (ctx, _):
        result = await init(ctx, env, host=args.host)
    return _exit(result)


async def cmd_migrate(args) -> int:
    from capview.engine.migrate import migrate, plan_migration

    _, env = env_of(args)
    async with engine(args) as (ctx, _):
        plans = await plan_migration(ctx, env, host=args.host)
        if args.json:
            print(migration_json(plans), end="")
        else:
            print(migration_text(plans, rewrite_unit=args.rewrite_unit), end="")
        code = EXIT_OK if all(p.reachable for p in plans) else EXIT_UNREACHABLE
        needed = sum(1 for p in plans if p.needed)
        if args.dry_run or not needed:
            return code
        what = f"migrate-data would stop the service on {units.plural(needed, 'host')} while it moves files"
        if not confirm(args, f"{what}. Migrate now?", what):
            print("nothing changed")
            return EXIT_OK
        result = await migrate(ctx, env, host=args.host, rewrite_unit=args.rewrite_unit)
    return result.exit_code


async def cmd_unlock(args) -> int:
    from capview.engine.ops import unlock

    _, env = env_of(args)
    async with engine(args) as (ctx, _):
        result = await unlock(ctx, env, host=args.host, force=args.force)
    return _exit(result)


async def cmd_pin(args, pinned: bool = True) -> int:
    from capview.engine.ops import pin, unpin

    _, env = env_of(args)
    async with engine(args) as (ctx, _):
        result = await (pin if pinned else unpin)(ctx, env, args.version, host=args.host)
    return _exit(result)


async def cmd_unpin(args) -> int:
    return await cmd_pin(args, pinned=False)


async def cmd_history(args) -> int:
    from capview.engine.ops import history

    if args.limit < 1:
        raise UsageError(f"--limit: must be at least 1, got {args.limit}")
    _, env = env_of(args)
    warnings = _Warnings()
    async with engine(args, renderer=warnings) as (ctx, _):
        per_host = await history(ctx, env, host=args.host)
    warnings.show(args.json)
    if args.json:
        for host, records in per_host.items():
            for r in records[-args.limit:]:
                print(json_line({"host": host, **r}), end="")
    else:
        print(history_text(per_host, limit=args.limit), end="")
    return EXIT_OK


async def cmd_verify(args) -> int:
    from capview.engine.verify import verify
    from capview.cli.tables import verify_json, verify_text

    _, env = env_of(args)
    async with engine(args, renderer=_quiet) as (ctx, _):
        results = await verify(ctx, env, args.version, host=args.host)
    print(verify_json(results) if args.json else verify_text(results), end="")
    if not all(r.reachable for r in results):
        return EXIT_UNREACHABLE
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED
async def cmd_logs(args) -> int:
    import asyncio

    from capview.engine.logs import logs

    _, env = env_of(args)
    several = len(env.select(args.host)) > 1
    width = max(len(h.name) for h in env.select(args.host))

    def show(host: str, line: str) -> None:
        if args.json:
            sys.stdout.write(json_line({"host": host, "line": line}))
        else:
            text = inert.line(line)
            sys.stdout.write(f"{host:<{width}} | {text}\n" if several else text + "\n")
        sys.stdout.flush()
        if getattr(sys.stdout, "dead", False):  # output closed (| head): nothing left to show
            raise SystemExit(0)

    async with engine(args, renderer=_quiet) as (ctx, _):
        try:
            results = await logs(ctx, env, host=args.host, lines=args.lines, follow=args.follow,
                                 since=args.since, on_line=show)
        except asyncio.CancelledError:
            if args.follow:  # Ctrl-C is how -f ends
                return EXIT_OK
            raise
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"capview: {r.host}: {inert.line(r.error or 'failed')}", file=sys.stderr)
    if any(r.unreachable for r in failed):
        return EXIT_UNREACHABLE
    return EXIT_OK if not failed else 1


async def cmd_traefik(args) -> int:
    from capview.engine.traefik import traefik_config, write_traefik_config

    _, env = env_of(args)
    async with engine(args, renderer=_quiet) as (ctx, _):
        for h in env.select(args.host):
            if h.settings.traefik is None:
                raise UsageError(f"{args.config}: no 'traefik:' section for {h.name} - add one (see docs/traefik.md)")
            text, plan = await traefik_config(ctx.transport, h)
            written = None
            if args.write:
                page = None
                if h.settings.traefik.maintenance_page:
                    page = Path(h.settings.traefik.maintenance_page).read_bytes()
                written = await write_traefik_config(ctx.transport, h, text, page)
            if args.json:
                print(json_line({"event": "TraefikConfig", "host": h.name, "yaml": text,
                                 "plan": dataclasses.asdict(plan),
                                 "written": dataclasses.asdict(written) if written else None}), end="")
                continue
            print(f"# --- {h.name} ---")
            print(text, end="")
            if plan.warning:
                print(f"capview: warning: {h.name}: {inert.line(plan.warning)}", file=sys.stderr)
            if written is not None:
                print(f"# written on {h.name}: {written}")
    return EXIT_OK


def cmd_demo(args) -> int:
    import asyncio

    from capview.demo.runner import run_demo

    return asyncio.run(run_demo(Path(args.dir) if args.dir else None, headless=args.headless,
                                serve=args.serve, out=sys.stdout))


def cmd_ui(args) -> int:
    from capview.tui.app import run_app

    path = Path(args.config)
    load_config(path)  # a broken deploy.yaml is a one-line error, not a crashed UI
    return run_app(path, refresh=getattr(args, "refresh", None))  # parsed (and refused) by the dashboard


def cmd_completion(args) -> int:
    from capview.cli.completion import script

    print(script(args.shell), end="")
    return EXIT_OK


def demo_hint(args) -> None:
    """A host of a demo sandbox is unreachable: its SSH host runs only while a demo runs."""
    path = Path(getattr(args, "config", "deploy.yaml"))
    if not (path.parent / "sandbox.json").is_file():
        return
    from capview.demo.config_text import serve_command

    print(f"capview: hint: {inert.line(path)} is a capview demo sandbox; its SSH host runs only while a demo "
          f"runs - start one with: {serve_command(path.parent.resolve())}", file=sys.stderr)


def _exit(result) -> int:
    if isinstance(result, OperationResult):
        return result.exit_code
    return int(result or 0)


HANDLERS = {
    "check": cmd_check,
    "release": cmd_release,
    "rollback": cmd_rollback,
    "restart": cmd_restart,
    "releases": cmd_releases,
    "prune": cmd_prune,
    "init": cmd_init,
    "migrate-data": cmd_migrate,
    "unlock": cmd_unlock,
    "pin": cmd_pin,
    "unpin": cmd_unpin,
    "history": cmd_history,
    "verify": cmd_verify,
    "logs": cmd_logs,
    "traefik": cmd_traefik,
    "demo": cmd_demo,
    "ui": cmd_ui,
    "completion": cmd_completion,
}
