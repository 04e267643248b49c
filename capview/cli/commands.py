"""One handler per command: load config, call the engine, render its events.

Handlers never build shell commands; that is the engine's job.
"""

from __future__ import annotations

import json
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path

from capview.cli.render import human_bytes, inert, make_renderer
from capview.config import Config, Environment, load_config
from capview.engine.context import Context, OperationResult
from capview.errors import EXIT_OK, EXIT_UNREACHABLE, UsageError


def parse_duration(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    t = text.strip()
    for suffix in ("ms", "s", "m", "h"):
        if t.endswith(suffix) and t[: -len(suffix)].replace(".", "", 1).isdigit():
            return float(t[: -len(suffix)]) * units[suffix]
    if t.replace(".", "", 1).isdigit():
        return float(t)
    raise UsageError(f"--wait-lock: {text!r} is not a duration (use e.g. 30s, 2m)")


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
    transport = SshTransport()
    try:
        yield Context(transport=transport, emit=render), render
    finally:
        if hasattr(render, "close"):
            render.close()
        await transport.close()


def confirm(args, question: str) -> bool:
    """Ask on a TTY; without one, --yes is required (scripts must say so explicitly)."""
    if getattr(args, "yes", False):
        return True
    if not sys.stdin.isatty():
        raise UsageError(f"{question.rstrip('?')} needs confirmation: re-run with --yes")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


# ---- commands ---------------------------------------------------------------

async def cmd_check(args) -> int:
    from capview.engine.check import check

    _, env = env_of(args)
    async with engine(args, renderer=_quiet) as (ctx, _):
        reports = await check(ctx, env, host=args.host)
    ok = True
    for r in reports:
        ok &= r.ok
        if args.json:
            print(json.dumps({"host": r.host, "ok": r.ok, "failures": r.failures, "warnings": r.warnings,
                              "free_kb": r.free_kb}))
            continue
        status = "OK" if r.ok else "FAIL"
        extra = f" ({human_bytes(r.free_kb * 1024)} free)" if r.ok and r.free_kb is not None else ""
        print(f"{r.host:<16} {status}{extra}" + ("" if r.ok else ": " + inert("; ".join(r.failures))))
        for w in r.warnings:
            print(f"{'':<16} warning: {inert(w)}")
    return EXIT_OK if ok else EXIT_UNREACHABLE


def _quiet(_event) -> None:
    pass


async def cmd_release(args) -> int:
    from capview.engine.deploy import release

    _, env = env_of(args)
    async with engine(args) as (ctx, _):
        result = await release(ctx, env, args.version, host=args.host, dry_run=args.dry_run,
                               wait_lock=parse_duration(args.wait_lock),
                               source=Path(args.source).resolve() if args.source else None)
    return result.exit_code


async def cmd_rollback(args) -> int:
    from capview.engine.rollback import rollback

    _, env = env_of(args)
    async with engine(args) as (ctx, _):
        result = await rollback(ctx, env, to=args.to, host=args.host, force=args.force)
    return result.exit_code


async def cmd_releases(args) -> int:
    from capview.engine.status import status

    _, env = env_of(args)
    async with engine(args, renderer=_quiet) as (ctx, _):
        hosts = await status(ctx, env, host=args.host)
    from capview.cli.tables import releases_json, releases_text

    print(releases_json(hosts) if args.json else releases_text(hosts, now=time.time()), end="")
    return EXIT_OK if all(h.reachable for h in hosts) else EXIT_UNREACHABLE


async def cmd_prune(args) -> int:
    from capview.engine.prune import plan_prune, prune
    from capview.cli.tables import prune_text

    _, env = env_of(args)
    async with engine(args) as (ctx, render):
        plans = await plan_prune(ctx, env, keep=args.keep, host=args.host)
        if not args.json:
            print(prune_text(plans), end="")
        if args.dry_run or not any(i.action == "delete" for p in plans for i in p.items):
            return EXIT_OK
        if not confirm(args, "Delete the releases marked delete?"):
            print("nothing deleted")
            return EXIT_OK
        result = await prune(ctx, env, keep=args.keep, host=args.host)
    return result.exit_code


async def cmd_init(args) -> int:
    from capview.engine.ops import init

    _, env = env_of(args)
    async with engine(args) as (ctx, _):
        result = await init(ctx, env, host=args.host)
    return _exit(result)


async def cmd_migrate(args) -> int:
    from capview.engine.migrate import migrate, plan_migration
    from capview.cli.tables import migration_text

    _, env = env_of(args)
    async with engine(args) as (ctx, _):
        plans = await plan_migration(ctx, env, host=args.host)
        if not args.json:
            print(migration_text(plans), end="")
        if args.dry_run or not any(p.needed for p in plans):
            return EXIT_OK
        if not confirm(args, "Migrate these hosts now (the service is stopped during the move)?"):
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

    _, env = env_of(args)
    async with engine(args, renderer=_quiet) as (ctx, _):
        per_host = await history(ctx, env, host=args.host)
    from capview.cli.tables import history_text

    if args.json:
        for host, records in per_host.items():
            for r in records[-args.limit:]:
                print(json.dumps({"host": host, **r}, sort_keys=True))
    else:
        print(history_text(per_host, limit=args.limit), end="")
    return EXIT_OK


async def cmd_traefik(args) -> int:
    from capview.engine.traefik import traefik_config, write_traefik_config

    _, env = env_of(args)
    async with engine(args, renderer=_quiet) as (ctx, _):
        code = EXIT_OK
        for h in env.select(args.host):
            if h.settings.traefik is None:
                raise UsageError(f"{args.config}: no 'traefik:' section for {h.name} - add one (see docs/traefik.md)")
            text, plan = await traefik_config(ctx.transport, h)
            print(f"# --- {h.name} ---")
            print(text, end="")
            if plan.warning:
                print(f"capview: warning: {h.name}: {plan.warning}", file=sys.stderr)
            if args.write:
                page = None
                if h.settings.traefik.maintenance_page:
                    page = Path(h.settings.traefik.maintenance_page).read_bytes()
                where = await write_traefik_config(ctx.transport, h, text, page)
                print(f"# written on {h.name}: {where}")
    return code


def cmd_demo(args) -> int:
    import asyncio

    from capview.demo.runner import run_demo

    return asyncio.run(run_demo(Path(args.dir) if args.dir else None, headless=args.headless, out=sys.stdout))


def cmd_ui(args) -> int:
    from capview.tui.app import run_app

    path = Path(args.config)
    load_config(path)  # a broken deploy.yaml is a one-line error, not a crashed UI
    return run_app(path, refresh=getattr(args, "refresh", None))  # parsed (and refused) by the dashboard


def _exit(result) -> int:
    if isinstance(result, OperationResult):
        return result.exit_code
    return int(result or 0)


HANDLERS = {
    "check": cmd_check,
    "release": cmd_release,
    "rollback": cmd_rollback,
    "releases": cmd_releases,
    "prune": cmd_prune,
    "init": cmd_init,
    "migrate-data": cmd_migrate,
    "unlock": cmd_unlock,
    "pin": cmd_pin,
    "unpin": cmd_unpin,
    "history": cmd_history,
    "traefik": cmd_traefik,
    "demo": cmd_demo,
    "ui": cmd_ui,
}
