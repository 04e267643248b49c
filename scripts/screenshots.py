#!/usr/bin/env python3
"""Write PNG (and SVG) screenshots of every dashboard screen into screenshots/.

    .venv/bin/python scripts/screenshots.py [--out screenshots] [--size 120x36] [--svg-only]

Screens are rendered headless with the deterministic FakeBackend and a frozen clock
(so the pictures only change when the UI does), exported as SVG by Textual, then
converted to PNG with ``rsvg-convert`` (Debian: ``apt-get install librsvg2-bin``) or,
failing that, the ``cairosvg`` Python package. Without either, only SVGs are written.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Awaitable, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from capview.errors import HostUnreachable  # noqa: E402
from capview.tui.app import CapviewApp  # noqa: E402
from capview.tui.backend import FAKE_T0, FakeBackend  # noqa: E402
from capview.tui.screens.deploy_dialog import DeployRequest  # noqa: E402
from capview.tui.screens.inspect import FileTree  # noqa: E402
from capview.tui.widgets.host_list import HostList, Target  # noqa: E402
from capview.tui.widgets.releases_table import ReleasesTable  # noqa: E402


def clock() -> float:
    return FAKE_T0


async def settle(pilot, rounds: int = 3) -> None:
    for _ in range(rounds):
        await pilot.app.workers.wait_for_complete()
        await pilot.pause()


async def until(pilot, cond, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise RuntimeError("screen did not reach the expected state")
        await pilot.pause(0.01)


async def on_host(pilot, env: str, host: str | None, version: str | None = None) -> None:
    await settle(pilot)
    main = pilot.app.main_screen
    main.query_one(HostList).select_target(Target(env, host))
    await pilot.pause()
    if version:
        table = main.query_one(ReleasesTable)
        table.focus()
        table.select_version(version)
    await pilot.pause()


# --------------------------------------------------------------------------- scenarios

Scenario = Callable[[CapviewApp, object], Awaitable[None]]


async def main_screen(app, pilot):
    await on_host(pilot, "prod", "prod-1", "v1.2.1")


async def main_environment(app, pilot):
    await on_host(pilot, "prod", None)


async def rollback_confirm(app, pilot):
    await on_host(pilot, "prod", "prod-1", "v1.1.0")
    await pilot.press("r")
    await pilot.pause()


async def deploy_dialog(app, pilot):
    await on_host(pilot, "prod", None)
    await pilot.press("d")
    await pilot.pause()


async def deploy_progress(app, pilot):
    app.backend.hold("prod-1", "build")
    await settle(pilot)
    op = app.start_release(DeployRequest("prod", "v1.4.0", strategy="rolling"))
    await until(pilot, lambda: op.hosts["prod-1"].phases["build"].state == "running")
    await pilot.pause(0.3)


async def deploy_failed(app, pilot):
    await settle(pilot)
    op = app.start_release(DeployRequest("prod", "v1.4.0-bad", host="prod-1"))
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
    await migrate(app, pilot)
    await pilot.press("enter", "enter")
    await until(pilot, lambda: app.last_operation is not None and not app.last_operation.running)
    await settle(pilot)
    await pilot.pause(0.3)


async def inspect_files(app, pilot):
    await on_host(pilot, "prod", "prod-1", "v1.3.0")
    await pilot.press("i")
    await settle(pilot)
    await pilot.press("2")
    await settle(pilot)
    tree = app.screen.query_one(FileTree)
    templates = next(n for n in tree.root.children if n.data and n.data.name == "templates")
    templates.expand()
    await settle(pilot)
    index = next(n for n in templates.children if n.data and n.data.name == "index.html")
    tree.focus()
    tree.move_cursor(index)
    tree.select_node(index)
    await settle(pilot)


async def inspect_manifest(app, pilot):
    await on_host(pilot, "prod", "prod-1", "v1.2.0")
    await pilot.press("i")
    await settle(pilot)


async def inspect_health(app, pilot):
    await inspect_manifest(app, pilot)
    await pilot.press("4")
    await settle(pilot)


async def inspect_compare(app, pilot):
    await on_host(pilot, "prod", "prod-1", "v1.3.0")
    await pilot.press("i")
    await settle(pilot)
    await pilot.press("5")
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


SCENARIOS: list[tuple[str, Scenario, dict]] = [
    ("01-main", main_screen, {}),
    ("02-main-environment", main_environment, {}),
    ("03-rollback-confirm", rollback_confirm, {}),
    ("04-deploy-dialog", deploy_dialog, {}),
    ("05-deploy-progress", deploy_progress, {"unreachable": ()}),
    ("06-deploy-health-failed", deploy_failed, {"unreachable": ()}),
    ("07-prune", prune, {}),
    ("08-migrate-plan", migrate, {}),
    ("09-migrate-done", migrate_done, {}),
    ("10-inspect-files", inspect_files, {}),
    ("11-inspect-manifest", inspect_manifest, {}),
    ("12-inspect-health-log", inspect_health, {}),
    ("13-inspect-compare", inspect_compare, {}),
    ("14-help", help_screen, {}),
    ("15-error", error_modal, {}),
]


async def render(name: str, scenario: Scenario, backend_kw: dict, size: tuple[int, int]) -> str:
    app = CapviewApp(FakeBackend(clock, delay=0, **backend_kw), clock=clock, refresh_interval=3600,
                     animations=False)
    async with app.run_test(size=size) as pilot:
        await scenario(app, pilot)
        await pilot.pause()
        return app.export_screenshot(title=f"capview — {name.split('-', 1)[1].replace('-', ' ')}")


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
    parser.add_argument("--size", default="120x36", help="terminal size, WIDTHxHEIGHT")
    parser.add_argument("--svg-only", action="store_true", help="do not convert to PNG")
    parser.add_argument("--keep-svg", action="store_true", help="write the SVGs next to the PNGs")
    parser.add_argument("--only", default="", help="substring of the screens to render")
    args = parser.parse_args(argv)
    width, height = (int(x) for x in args.size.lower().split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    convert = None if args.svg_only else converter()
    if convert is None and not args.svg_only:
        print("screenshots: no SVG converter (apt-get install librsvg2-bin, or pip install cairosvg); "
              "writing SVG only", file=sys.stderr)
    for name, scenario, kw in SCENARIOS:
        if args.only and args.only not in name:
            continue
        svg = asyncio.run(render(name, scenario, kw, (width, height)))
        if convert is None or args.keep_svg:
            (out / f"{name}.svg").write_text(svg, encoding="utf-8")
        if convert is not None:
            convert(svg, out / f"{name}.png")
        print(f"{out / name}.{'png' if convert else 'svg'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
