"""``capview``: the command line. With no command it opens the dashboard.

Global options (-c/--config, --host, --json, --verbose) are accepted before or
after the command. Exit codes: 0 ok, 1 operation failed, 2 usage or config
error, 3 lock held, 4 host unreachable or preflight failed.
"""

from __future__ import annotations

import asyncio
import signal
import sys

from capview import inert
from capview.cli.output import guard_std_streams
# The parser lives in its own module (completion builds its scripts from it); re-exported here.
from capview.cli.parser import COMMANDS_HELP, GLOBALS_FOR, build_parser, refuse_meaningless_globals
from capview.errors import EXIT_UNREACHABLE, CapviewError

__all__ = ["COMMANDS_HELP", "GLOBALS_FOR", "build_parser", "main"]


def main(argv: list[str] | None = None) -> int:
    # A closed pipe or a vanished terminal only stops the output (capview/cli/output.py).
    guard_std_streams()
    try:
        return _main(argv)
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()  # guarded: a reader that went away turns this into a no-op


def _main(argv: list[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "deploy":
        args.command = "release"
    refuse_meaningless_globals(parser, args)
    from capview.cli import commands

    try:
        handler = commands.HANDLERS[args.command or "ui"]
        rc = _run(handler, args)
        if rc == EXIT_UNREACHABLE:
            commands.demo_hint(args)
        return rc
    except CapviewError as exc:
        print(f"capview: error: {inert.line(exc)}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("capview: interrupted", file=sys.stderr)
        return _exiting_after_signal()


def _exiting_after_signal() -> int:
    """The cleanup is done and we exit 130: another Ctrl-C during interpreter shutdown
    (signal handlers are back to the default then) must not turn that into a kill."""
    for sig in HANDLED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    return 130


# SIGHUP is the operator's terminal or SSH session going away: the same as SIGTERM.
HANDLED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _run(handler, args) -> int:
    """Run a handler; coroutines get a loop where Ctrl-C, SIGTERM and SIGHUP cancel the operation.

    The first signal cancels it: the engine then cleans up the host (removes a half
    release, releases the lock) before exiting 130. A second one only says that cleanup
    is running (a stray double Ctrl-C must not leave a lock behind); a third abandons it.
    """
    result = handler(args)
    if not asyncio.iscoroutine(result):
        return int(result or 0)

    async def with_signals():
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        signals = 0

        def on_signal() -> None:
            nonlocal signals
            signals += 1
            if signals == 1:
                task.cancel()
            elif signals == 2:
                print("capview: cleaning up the host (removing the unfinished release, releasing the lock); "
                      "interrupt again to abandon the cleanup", file=sys.stderr, flush=True)
            else:
                task.cancel()

        for sig in HANDLED_SIGNALS:
            try:
                loop.add_signal_handler(sig, on_signal)
            except (NotImplementedError, RuntimeError, ValueError):
                pass
        try:
            return await result
        except asyncio.CancelledError:
            if signals >= 3:
                print("capview: cleanup abandoned: the host may keep the lock and an unfinished release; "
                      "check with: capview releases ENV, then capview unlock ENV", file=sys.stderr)
            else:
                print("capview: cancelled; the host was left consistent (see messages above)", file=sys.stderr)
            return 130

    rc = int(asyncio.run(with_signals()) or 0)
    return _exiting_after_signal() if rc == 130 else rc
