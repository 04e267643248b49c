#!/usr/bin/env python3
"""Write PNG (and SVG) screenshots of every dashboard screen into screenshots/.

    .venv/bin/python scripts/screenshots.py [--out screenshots] [--size 120x36] [--svg-only]
    .venv/bin/python scripts/screenshots.py --demo   # the real demo sandbox -> screenshots/demo-NN-*.png

Screens are rendered headless on the dashboard tests' world (tests/tui_world.py): the real
engine over LocalTransport on seeded host trees, with frozen clocks, so the pictures only
change when the UI (or the engine) does; an operation shown mid-run is a real one held by a
gate file. The main screen, the history and the service log are also written at 80x24 (``*-80x24.png``).
Textual exports SVG; ``rsvg-convert`` (Debian: ``apt-get install librsvg2-bin``) or, failing
that, the ``cairosvg`` Python package makes the PNGs. Without either, only SVGs are written.

``--demo`` instead runs the real ``capview demo`` sandbox (embedded SSH host, live apps,
history seeded through the engine) and, while it is up, drives the dashboard on its
deploy.yaml with ``EngineBackend`` through one session: main, rollback (confirm, then the
real rollback's progress), history, prune, migrate of legacy-1 (plan, dry run), inspect,
deploy dialog, help. Those pictures carry real ages, sizes and timings, so they change per run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

import tui_world  # noqa: E402  (tests/tui_world.py)
from tui_pilot import settle, until  # noqa: E402  (tests/tui_pilot.py)
from capview.errors import HostUnreachable  # noqa: E402
from capview.tui.app import CapviewApp  # noqa: E402
from capview.tui.screens.deploy_dialog import DeployRequest  # noqa: E402
from capview.tui.screens.inspect import FileTree  # noqa: E402
from capview.tui.widgets.host_list import HostList, Target  # noqa: E402
from capview.tui.widgets.releases_table import ReleasesTable  # noqa: E402




async def on_host(pilot, env: str, host: str | None, version: str | None = None) -> None:
    await settle(pilot)
    main = pilot.app.main_screen
    main.query_one(HostList).select_target(Target(env, host))
    await pilot.pause()
    if version:
        table = main.query_one(ReleasesTable)
        table.focus()
        table.select_version(version)
    await settle(pilot)


# --------------------------------------------------------------------------- scenarios (the tests' world)

Scenario = Callable[[CapviewApp, object], Awaitable[None]]
Setup = Callable[["tui_world.World"], None]


async def main_screen(app, pilot):
    await on_host(pilot, "prod", "prod-1", "v1.2.1")


async def main_environment(app, pilot):
    await on_host(pilot, "prod", None)


async def rollback_confirm(app, pilot):
    await on_host(pilot, "prod", "prod-1", "v1.1.0")
    await pilot.press("r")
    await pilot.pause()


async def rollback_failed(app, pilot):
    await on_host(pilot, "prod", None, "v1.2.0")
    await pilot.press("r")
    await pilot.pause()


async def force_unlock(app, pilot):
    await on_host(pilot, "legacy", "legacy-1")
    await pilot.press("u")
    await pilot.pause()


async def deploy_dialog(app, pilot):
    await on_host(pilot, "prod", None)
    await pilot.press("d")
    await pilot.pause()


async def deploy_progress(app, pilot):
    await settle(pilot)
    op = app.start_release(DeployRequest("prod", "v1.4.0", strategy="rolling"))
    await until(pilot, lambda: op.hosts["prod-1"].phases["build"].state == "running")
    await pilot.pause(0.3)


async def deploy_failed(app, pilot):
    await settle(pilot)
    op = app.start_release(DeployRequest("prod", "v1.4.0", host="prod-1"))
    await until(pilot, lambda: not op.running)
    await settle(pilot)
    await pilot.pause(0.3)


async def prune(app, pilot):
    await on_host(pilot, "prod", "prod-1")
    await pilot.press("p")
    await settle(pilot)


async def migrate(app, pilot):
    await on_host(pilot, "legacy", "legacy-1")
    await pilot.press("m")
    await settle(pilot)


async def migrate_done(app, pilot):
    await settle(pilot)
    await app.unlock(Target("legacy", "legacy-1"), force=True)  # the stale lock seeded on it
    await migrate(app, pilot)
    await pilot.press("enter", "y")
    await until(pilot, lambda: app.last_operation is not None and not app.last_operation.running)
    await settle(pilot)
    await pilot.pause(0.3)


async def inspect_files(app, pilot):
    await on_host(pilot, "prod", "prod-1", "v1.3.0")
    await pilot.press("i")
    await settle(pilot)
    tree = app.screen.query_one(FileTree)
    config = next(n for n in tree.root.children if n.data and n.data.name == "config")
    config.expand()
    await settle(pilot)
    toml = next(n for n in config.children if n.data and n.data.name == "app.toml")
    tree.move_cursor(toml)
    tree.select_node(toml)
    await settle(pilot)


def inspect_tab(version: str, key: str) -> Scenario:
    async def go(app, pilot):
        await on_host(pilot, "prod", "prod-1", version)
        await pilot.press("i")
        await settle(pilot)
        await pilot.press(key)
        await settle(pilot)
        await pilot.pause(0.2)
    return go


async def inspect_diff(app, pilot):
    await inspect_tab("v1.3.0", "6")(app, pilot)
    table = app.screen.query_one("#compare-table")
    table.focus()
    table.move_cursor(row=table.get_row_index("app.py"))
    await pilot.press("enter")
    await settle(pilot)
    await pilot.pause(0.2)


async def history(app, pilot):
    await on_host(pilot, "prod", None)
    await pilot.press("h")
    await settle(pilot)


async def help_screen(app, pilot):
    await settle(pilot)
    await pilot.press("question_mark")
    await pilot.pause()


async def error_modal(app, pilot):
    await settle(pilot)
    app.show_error("rollback prod/prod-1", HostUnreachable(
        "prod-1: connection lost (asyncssh: Connection lost) while running the switch script",
        hint="check the host and run `capview releases prod`; the switch is atomic, so the host is on "
             "either the old or the new release"))
    await pilot.pause()


async def service_log(app, pilot):
    await on_host(pilot, "prod", "prod-1")
    await pilot.press("l")
    await until(pilot, lambda: getattr(app.screen, "stream", None) is not None and len(app.screen.pane.lines) >= 5)
    app.screen._title()
    await pilot.pause()


def _log_lines(world) -> None:
    with open(world.dp("prod-1") / "current" / "app.log", "a") as f:
        f.write("GET / 200 4ms\nGET /cart 200 12ms\nPOST /order 201 48ms\n"
                "\x1b]52;c;cHduZWQ=\x07\x1b[2J a hostile line: shown, never obeyed \u202eevil\n")


async def service_log_search(app, pilot):
    await on_host(pilot, "prod", "prod-1")
    await pilot.press("l")
    await until(pilot, lambda: getattr(app.screen, "stream", None) is not None and len(app.screen.pane.lines) >= 41)
    await pilot.press("slash", *"order", "enter", "n")
    app.screen._title()
    await pilot.pause()


def _search_lines(world) -> None:
    with open(world.dp("prod-1") / "current" / "app.log", "a") as f:
        for i in range(1, 41):
            f.write(f"GET /item/{i} 200 3ms\n" if i % 7 else f"POST /order/{i} 500 boom \x1b[31mred\n")


async def restart_confirm(app, pilot):
    await on_host(pilot, "prod", None)
    await pilot.press("s")
    await pilot.pause()


async def restart_done(app, pilot):
    await settle(pilot)
    op = app.start_restart(Target("prod", "prod-1"))
    await until(pilot, lambda: not op.running, timeout=60)
    await settle(pilot)
    await pilot.pause(0.3)


async def inspect_verify(app, pilot):
    await inspect_tab("v1.3.0", "1")(app, pilot)
    await pilot.press("v")
    await settle(pilot)


def _tamper(world) -> None:
    tui_world.tamper(world, extra="evil.js")


def _nothing(world) -> None:
    pass


SCENARIOS: list[tuple[str, Scenario, Setup]] = [
    ("01-main-host", main_screen, _nothing),
    ("02-main-environment", main_environment, _nothing),
    ("03-rollback-confirm", rollback_confirm, _nothing),
    ("04-rollback-failed-release", rollback_failed, _nothing),
    ("05-force-unlock", force_unlock, _nothing),
    ("06-deploy-dialog", deploy_dialog, _nothing),
    ("07-deploy-progress", deploy_progress, lambda w: w.hold("build")),
    ("08-deploy-health-failed", deploy_failed, lambda w: w.next_tree("v1.4.0", healthy=False)),
    ("09-prune", prune, _nothing),
    ("10-migrate-plan", migrate, _nothing),
    ("11-migrate-done", migrate_done, _nothing),
    ("12-inspect-files", inspect_files, _nothing),
    ("13-inspect-manifest", inspect_tab("v1.3.0", "2"), _nothing),
    ("14-inspect-metadata", inspect_tab("v1.2.0", "3"), _nothing),
    ("15-inspect-health-log", inspect_tab("v1.2.0", "5"), _nothing),
    ("16-inspect-compare", inspect_tab("v1.3.0", "6"), _nothing),
    ("17-inspect-diff", inspect_diff, _nothing),
    ("18-history", history, _nothing),
    ("19-help", help_screen, _nothing),
    ("20-error", error_modal, _nothing),
    ("21-service-log", service_log, _log_lines),
    ("22-restart-confirm", restart_confirm, _nothing),
    ("23-restart-done", restart_done, _nothing),
    ("24-inspect-verify", inspect_verify, _tamper),
    ("25-service-log-search", service_log_search, _search_lines),
]
ALSO_SMALL = ("01-main-host", "18-history", "21-service-log", "25-service-log-search")  # written at 80x24 too


async def render(world, name: str, scenario: Scenario, size: tuple[int, int]) -> str:
    app = world.app()
    async with app.run_test(size=size) as pilot:
        await scenario(app, pilot)
        await pilot.pause()
        svg = app.export_screenshot(title=f"capview — {name.split('-', 1)[1].replace('-', ' ')}")
    for gate in (world.root / "gates").iterdir():
        gate.unlink()
    return svg


def render_world_shots(sizes: list[tuple[int, int]], only: str, write: Callable[[str, str], None]) -> int:
    os.environ["TZ"] = "UTC"
    time.tzset()
    work = Path(tempfile.mkdtemp(prefix="capview-shots-"))
    try:
        for name, scenario, setup in SCENARIOS:
            if only and only not in name:
                continue
            for size in sizes + ([(80, 24)] if name in ALSO_SMALL and (80, 24) not in sizes else []):
                world = tui_world.copy_world(work, work / f"{name}-{size[0]}x{size[1]}")
                undo = tui_world.freeze_engine_timer(world.timer)
                try:
                    setup(world)
                    svg = asyncio.run(render(world, name, scenario, size))
                finally:
                    undo()
                write(name if size == sizes[0] else f"{name}-{size[0]}x{size[1]}", svg)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


# --------------------------------------------------------------------------- --demo: the real sandbox

DemoStep = Callable[[CapviewApp, object], Awaitable[None]]


async def back_to_main(pilot) -> None:
    app = pilot.app
    for _ in range(5):
        if app.screen is app.main_screen:
            break
        await pilot.press("escape")
        await pilot.pause()
    if app.screen is not app.main_screen:
        raise RuntimeError(f"could not get back to the main screen from {app.screen!r}")
    await settle(pilot)


async def demo_main_environment(app, pilot):
    await on_host(pilot, "prod", None)


async def demo_main_host(app, pilot):
    await on_host(pilot, "prod", "prod-1", "v1.1.0")


async def demo_rollback_confirm(app, pilot):
    await on_host(pilot, "prod", "prod-1", "v1.0.0")
    await pilot.press("r")
    await pilot.pause()


async def demo_rollback_done(app, pilot):
    # continues from the confirm dialog (Cancel is focused): y runs the real rollback over SSH
    await pilot.press("y")
    await until(pilot, lambda: app.last_operation is not None and app.last_operation.kind == "rollback")
    op = app.last_operation
    await until(pilot, lambda: not op.running, timeout=120)
    await pilot.pause(0.5)  # the log pane writes in batches on a timer
    if op.state != "ok":
        print(f"screenshots: warning: the rollback ended {op.state}: {op.summary()}", file=sys.stderr)


async def demo_history(app, pilot):
    await back_to_main(pilot)
    await on_host(pilot, "prod", None)
    await pilot.press("h")
    await settle(pilot)


async def demo_prune(app, pilot):
    await back_to_main(pilot)
    await on_host(pilot, "prod", "prod-1")
    await pilot.press("p")
    await settle(pilot)


async def demo_migrate_plan(app, pilot):
    await back_to_main(pilot)
    await on_host(pilot, "legacy", "legacy-1")
    await pilot.press("m")
    await settle(pilot)


async def demo_migrate_dry_run(app, pilot):
    # continues on the migrate screen: n runs the dry run (changes nothing)
    await pilot.press("n")
    await until(pilot, lambda: app.last_operation is not None and app.last_operation.kind == "migrate")
    op = app.last_operation
    await until(pilot, lambda: not op.running, timeout=60)
    await settle(pilot)
    await pilot.pause(0.5)


async def demo_inspect_files(app, pilot):
    await back_to_main(pilot)
    await on_host(pilot, "prod", "prod-1", "v1.1.0")
    await pilot.press("i")
    await settle(pilot)
    tree = app.screen.query_one(FileTree)
    await until(pilot, lambda: any(n.data and n.data.name == "templates" for n in tree.root.children))
    templates = next(n for n in tree.root.children if n.data and n.data.name == "templates")
    templates.expand()
    await settle(pilot)
    await until(pilot, lambda: any(n.data and n.data.name == "index.html" for n in templates.children))
    index = next(n for n in templates.children if n.data and n.data.name == "index.html")
    tree.focus()
    tree.move_cursor(index)
    tree.select_node(index)
    await settle(pilot)


async def demo_inspect_compare(app, pilot):
    # continues on the inspect screen
    from textual.widgets import TabbedContent

    await pilot.press("6")
    await settle(pilot)
    if app.screen.query_one(TabbedContent).active != "tab-compare":
        raise RuntimeError("'6' did not open the Compare tab")
    await pilot.pause(0.3)


async def demo_deploy_dialog(app, pilot):
    await back_to_main(pilot)
    await on_host(pilot, "prod", None)
    await pilot.press("d")
    await pilot.pause()


async def demo_help(app, pilot):
    await back_to_main(pilot)
    await pilot.press("question_mark")
    await pilot.pause()


# In order: each step starts where the one before left the app.
DEMO_STEPS: list[tuple[str, DemoStep]] = [
    ("demo-01-main-environment", demo_main_environment),
    ("demo-02-main-host", demo_main_host),
    ("demo-03-rollback-confirm", demo_rollback_confirm),
    ("demo-04-rollback-done", demo_rollback_done),
    ("demo-05-history", demo_history),
    ("demo-06-prune", demo_prune),
    ("demo-07-migrate-plan", demo_migrate_plan),
    ("demo-08-migrate-dry-run", demo_migrate_dry_run),
    ("demo-09-inspect-files", demo_inspect_files),
    ("demo-10-inspect-compare", demo_inspect_compare),
    ("demo-11-deploy-dialog", demo_deploy_dialog),
    ("demo-12-help", demo_help),
]


def title_of(name: str) -> str:
    if name.startswith("demo-"):
        name = name[len("demo-"):]
    return f"capview — {name.split('-', 1)[1].replace('-', ' ')}"


def run_demo_shots(out: Path, size: tuple[int, int], write: Callable[[str, str], None]) -> int:
    """Run the demo sandbox; inside its on_ready hook drive the dashboard and ``write`` each shot."""
    import io

    from capview.demo.runner import run_demo
    from capview.tui.backend import EngineBackend

    failures: list[str] = []
    written: list[str] = []

    async def on_ready(sandbox) -> None:
        backend = EngineBackend(sandbox.config_path).load()
        app = CapviewApp(backend, refresh_interval=3600, animations=False)
        async with app.run_test(size=size) as pilot:
            await settle(pilot)
            for name, step in DEMO_STEPS:
                try:
                    await step(app, pilot)
                    await pilot.pause()
                    write(name, app.export_screenshot(title=title_of(name)))
                    written.append(name)
                except Exception as e:  # one screen failing should not lose the others
                    failures.append(f"{name}: {type(e).__name__}: {e}")
                    print(f"screenshots: {name} failed: {type(e).__name__}: {e}", file=sys.stderr)
            await back_to_main(pilot)
        close = getattr(backend.transport, "close", None)
        if close is not None:
            await close()

    log = io.StringIO()
    # The demo's own headless health report compares with the status read before the
    # hook (v1.1.0 live); the hook rolled prod-1 back, so rc 1 is expected there.
    rc = asyncio.run(run_demo(None, headless=True, out=log, on_ready=on_ready))
    if not written:
        sys.stderr.write(log.getvalue())
        print(f"screenshots: the demo wrote no screenshot (demo rc={rc})", file=sys.stderr)
        return 1
    return 1 if failures else 0


# --------------------------------------------------------------------------- SVG -> PNG


def _for_rsvg(svg: str) -> str:
    """Textual's SVG relies on browsers keeping leading non-breaking spaces; librsvg strips
    them unless told to preserve whitespace."""
    return re.sub(r"<svg ", '<svg xml:space="preserve" ', svg, count=1)


def converter() -> Callable[[str, Path], None] | None:
    if shutil.which("rsvg-convert"):
        def rsvg(svg: str, png: Path) -> None:
            subprocess.run(["rsvg-convert", "--format", "png", "--output", str(png)],
                           input=_for_rsvg(svg).encode(), check=True)
        return rsvg
    try:
        import cairosvg  # type: ignore[import-not-found]
    except ImportError:
        return None

    def cairo(svg: str, png: Path) -> None:
        cairosvg.svg2png(bytestring=_for_rsvg(svg).encode(), write_to=str(png))
    return cairo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "screenshots"), help="output directory")
    parser.add_argument("--size", default="120x36", help="terminal size(s), WIDTHxHEIGHT[,WIDTHxHEIGHT]")
    parser.add_argument("--svg-only", action="store_true", help="do not convert to PNG")
    parser.add_argument("--keep-svg", action="store_true", help="write the SVGs next to the PNGs")
    parser.add_argument("--only", default="", help="substring of the screens to render")
    parser.add_argument("--demo", action="store_true",
                        help="drive the dashboard on the real demo sandbox; writes demo-NN-*.png")
    args = parser.parse_args(argv)
    sizes = [tuple(int(x) for x in one.lower().split("x")) for one in args.size.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    convert = None if args.svg_only else converter()
    if convert is None and not args.svg_only:
        print("screenshots: no SVG converter (apt-get install librsvg2-bin, or pip install cairosvg); "
              "writing SVG only", file=sys.stderr)

    def write(name: str, svg: str) -> None:
        if convert is None or args.keep_svg:
            (out / f"{name}.svg").write_text(svg, encoding="utf-8")
        if convert is not None:
            convert(svg, out / f"{name}.png")
        print(f"{out / name}.{'png' if convert else 'svg'}", flush=True)

    if args.demo:
        return run_demo_shots(out, sizes[0], write)  # type: ignore[arg-type]
    return render_world_shots(sizes, args.only, write)  # type: ignore[arg-type]


if __name__ == "__main__":
    raise SystemExit(main())
