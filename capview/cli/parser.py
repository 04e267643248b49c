"""The ``capview`` argument parser: its commands, their options and the global ones.

Its own module so that both the entry point (capview/cli/__init__.py) and the completion
scripts (capview/cli/completion.py) import it without importing each other.
"""

from __future__ import annotations

import argparse

from capview import __version__

COMMANDS_HELP = {
    "check": "connect to every host and run the preflight checks",
    "release": "deploy a new release (alias: deploy)",
    "rollback": "switch back to the previous (or any retained) release",
    "restart": "restart the live release (stop, start, health check), recorded in the history",
    "releases": "list each host's releases: current, state, age, size",
    "prune": "delete old releases beyond keep_releases",
    "init": "create releases/, shared/ and .capview/ on the hosts",
    "migrate-data": "move a host from the old overwrite-in-place layout into releases/ + shared/",
    "unlock": "remove a stale deploy lock",
    "pin": "protect a release from prune",
    "unpin": "let prune delete a release again",
    "history": "show the hosts' deploy history",
    "verify": "re-hash a release on the hosts against its manifest (exit 1 on any difference)",
    "logs": "print (or follow) the service's logs on each host",
    "traefik": "print or write the Traefik dynamic config that hides the switch window",
    "demo": "run the whole product on an embedded sandbox host",
    "ui": "open the dashboard (the default with no command)",
    "completion": "print a shell completion script (bash, zsh or fish)",
}

# Commands where only some global options mean anything (the others are refused, not ignored).
GLOBALS_FOR = {"demo": (), "completion": (), "ui": ("config",)}
_GLOBAL_DEFAULTS = {"config": "deploy.yaml", "host": None, "json": False, "verbose": False}


def _global_options(p: argparse.ArgumentParser, *, top: bool) -> None:
    # On subcommands the defaults are SUPPRESSed so a value given before the
    # command is not overwritten by the subparser's default.
    d = (lambda v: v) if top else (lambda v: argparse.SUPPRESS)
    p.add_argument("-c", "--config", default=d("deploy.yaml"), metavar="FILE",
                   help="deploy.yaml to use (default: ./deploy.yaml)")
    p.add_argument("--host", default=d(None), metavar="NAME", help="limit to one host of the environment")
    p.add_argument("--json", action="store_true", default=d(False), help="one JSON object per line")
    p.add_argument("-v", "--verbose", action="store_true", default=d(False), help="show every phase and log line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="capview",
        description="Immutable, Capistrano-style releases over SSH, and a dashboard to see them. "
                    "Run without a command to open the dashboard.",
        epilog="exit codes: 0 ok, 1 operation failed, 2 usage or config error, 3 lock held, "
               "4 host unreachable or preflight failed",
    )
    parser.add_argument("--version", action="version", version=f"capview {__version__}")
    _global_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def cmd(name: str, *aliases: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, aliases=list(aliases), help=COMMANDS_HELP[name], description=COMMANDS_HELP[name])
        if name not in GLOBALS_FOR:
            _global_options(p, top=False)
        elif "config" in GLOBALS_FOR[name]:
            p.add_argument("-c", "--config", default=argparse.SUPPRESS, metavar="FILE",
                           help="deploy.yaml to use (default: ./deploy.yaml)")
        return p

    def env_arg(p: argparse.ArgumentParser) -> None:
        p.add_argument("env", metavar="ENV", help="environment name from deploy.yaml")

    def yes(p: argparse.ArgumentParser) -> None:
        p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = cmd("check")
    env_arg(p)

    p = cmd("release", "deploy")
    p.add_argument("version", metavar="VERSION", nargs="?",
                   help="release name (default: UTC time + short git commit of the source)")
    env_arg(p)
    p.add_argument("--dry-run", action="store_true", help="print the plan and every phase's script; change nothing")
    p.add_argument("--wait-lock", default="0", metavar="DURATION", help="wait this long for a held lock (e.g. 2m)")
    p.add_argument("--source", metavar="DIR", help="upload this tree instead of deploy.yaml's source")
    # issue 17: stage 2 of a several-host deploy (override the environment's deploy.yaml keys)
    p.add_argument("--strategy", choices=("parallel", "rolling"), help="switch all hosts at once, or one by one")
    p.add_argument("--batch-size", metavar="N|P%", help="switch N hosts (or P%% of them) at a time")
    p.add_argument("--canary", metavar="N", type=int, help="switch N hosts first, watch their health, then the rest")
    p.add_argument("--canary-wait", metavar="DURATION", help="how long to watch the canaries (default 30s)")
    p.add_argument("--on-failure", choices=("revert_all", "stop"),
                   help="a failed host: switch every switched host back (default), or stop there")
    yes(p)

    p = cmd("rollback")
    env_arg(p)
    p.add_argument("--to", metavar="VERSION", help="target release (default: the previous live one, from history)")
    p.add_argument("--force", action="store_true", help="allow a failed release as the target")
    p.add_argument("--restore-data", action="store_true",
                   help="also put back the target's SQLite snapshot (data.sqlite); shows what is lost and asks first")
    p.add_argument("--run-hooks", action="store_true", help="run the target's before_start hooks (never by default)")
    yes(p)

    p = cmd("restart")
    env_arg(p)

    p = cmd("releases")
    env_arg(p)

    p = cmd("prune")
    env_arg(p)
    p.add_argument("--keep", type=int, metavar="N", help="keep N successful releases (default: keep_releases)")
    p.add_argument("--dry-run", action="store_true", help="show what would be deleted")
    yes(p)

    p = cmd("init")
    env_arg(p)
    yes(p)

    p = cmd("migrate-data")
    env_arg(p)
    p.add_argument("--dry-run", action="store_true", help="show the plan of moves; change nothing")
    p.add_argument("--rewrite-unit", action="store_true",
                   help="rewrite old paths in the systemd user unit (keeps a backup, runs daemon-reload)")
    yes(p)

    p = cmd("unlock")
    env_arg(p)
    p.add_argument("--force", action="store_true", help="remove the lock even if its holder may be alive")
    yes(p)

    for name in ("pin", "unpin"):
        p = cmd(name)
        env_arg(p)
        p.add_argument("version", metavar="VERSION")
        yes(p)

    p = cmd("logs")
    env_arg(p)
    p.add_argument("-n", "--lines", type=int, default=100, metavar="N", help="last N lines per host (default 100)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines until Ctrl-C")
    p.add_argument("--since", metavar="T", help="only lines since T: 10m, 2h, 1d, today, 2026-12-01 10:00")

    p = cmd("history")
    env_arg(p)
    p.add_argument("-n", "--limit", type=int, default=20, metavar="N", help="last N records per host (default 20)")

    p = cmd("verify")
    env_arg(p)
    p.add_argument("version", metavar="VERSION", nargs="?", help="release to check (default: current)")

    p = cmd("traefik")
    env_arg(p)
    p.add_argument("--write", action="store_true", help="write the config (and maintenance page) on each host")
    yes(p)

    p = cmd("demo")
    p.add_argument("--dir", metavar="DIR", help="keep the sandbox in DIR (reused on the next run)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--headless", action="store_true", help="seed the sandbox and print the releases; no UI")
    mode.add_argument("--serve", action="store_true",
                      help="keep the sandbox's SSH host and apps up, no dashboard, until Ctrl-C "
                           "(use the CLI on it from another terminal)")

    p = cmd("ui")
    p.add_argument("--refresh", metavar="INTERVAL",
                   help="wait between the end of one status refresh and the next: 5s (default), 500ms, 2m")

    p = cmd("completion")
    p.add_argument("shell", choices=("bash", "zsh", "fish"), help="the shell to complete for")
    return parser


def refuse_meaningless_globals(parser: argparse.ArgumentParser, args) -> None:
    """``capview --json demo`` would silently ignore --json: say so instead."""
    allowed = GLOBALS_FOR.get(args.command or "ui")
    if allowed is None:
        return
    for name, default in _GLOBAL_DEFAULTS.items():
        if name not in allowed and getattr(args, name, default) != default:
            parser.error(f"--{name} does nothing with {args.command or 'the dashboard'}")
