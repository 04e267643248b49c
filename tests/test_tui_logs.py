"""Issue 19 leftovers on the real engine (tests/tui_world.py): the service log view
(engine/logs.py: follow, pause, a bounded buffer), restart (engine/restart.py, Cancel
by default), verify in the inspect screen (engine/verify.py), and 100,000 lines of
hostile host output in a log view and in health.log: bounded and inert.
Every check that something happened on a host is made on the host's files or processes."""

from __future__ import annotations

import os
import subprocess
import tracemalloc
from pathlib import Path

from textual.widgets import Button, DataTable

from capview.tui.screens.confirm import ConfirmScreen
from capview.tui.screens.deploy_progress import ProgressScreen
from capview.tui.screens.inspect import InspectScreen
from capview.tui.screens.logs import LogsScreen
from capview.tui.screens.main import MainScreen
from capview.tui.widgets.log_pane import LINE_LIMIT, LogPane
from capview.tui.widgets.nav import NavLog
from tui_pilot import SIZE, footer, footer_text, screen_text, select, settle, until
from tui_world import tamper, world  # noqa: F401

LINES = 100_000
CAP = 2_000  # the app's max_log_lines in these tests
# what a hostile host prints: CSI (clear screen, colours), OSC 52 (the clipboard), OSC 0 (the
# title), a one-byte C1 CSI, bidi overrides, BEL, a carriage return, markup
HOSTILE_PY = r'''
import sys
w = sys.stdout.write
for i in range(int(sys.argv[1])):
    if i % 1000 == 999:
        w("LONG%d " % i + "\u202e\x1b[31m" * 6000 + "\n")  # 36,000 characters (48 KB), one line
    else:
        w("line %d \x1b[2J\x1b[31mred\x1b]52;c;cHduZWQ=\x07 \x1b]0;owned\x07 \u009b6n \u202egnp.exe [bold]x[/bold]\r!\n" % i)
w("LAST LINE \x1b[0m\n")
'''
RAW = ("\x1b", "\x07", "\x9b", "\u202e", "\r")


def processes_under(root: Path) -> list[str]:
    """Command lines of live processes working in the world's hosts (a follow left running)."""
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                cwd = os.readlink(f"/proc/{pid}/cwd")
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            if cwd.startswith(str(root / "hosts")):
                out.append(cmd)
    return out


def _append(world, host: str, *lines: str) -> None:
    log = world.dp(host) / "current" / "app.log"
    with open(log, "a") as f:
        f.write("".join(line + "\n" for line in lines))


async def test_logs_follow_pause_resume_and_leaving_ends_the_remote_tail(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1")
        assert "l Logs" in await footer(pilot)
        await pilot.press("l")
        screen = app.screen
        assert isinstance(screen, LogsScreen) and screen.following
        pane = screen.query_one(LogPane)
        await until(pilot, lambda: any("shop v1.3.0 listening on :8080" in line for line in pane.lines), what="backlog")
        await until(pilot, lambda: processes_under(world.root), what="the remote tail -f")
        _append(world, "prod-1", "GET /cart 200", "GET /health 200")
        await until(pilot, lambda: any("GET /health 200" in line for line in pane.lines), what="a followed line")
        assert "following" in screen_text(app)
        await pilot.press("space")
        assert screen.paused and "paused" in screen_text(app) and "space Resume" in await footer(pilot)
        _append(world, "prod-1", "POST /order 201")
        await until(pilot, lambda: screen.stream.total >= 4, what="the line, into the stream")
        await pilot.pause(0.3)
        assert not any("POST /order" in line for line in pane.lines)  # paused: not written
        await pilot.press("space")
        await until(pilot, lambda: any("POST /order 201" in line for line in pane.lines), what="resume")
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)
        await until(pilot, lambda: not processes_under(world.root), what="the remote tail ended")


async def test_logs_of_an_environment_say_which_host_and_one_shot_without_follow(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", None)
        await pilot.press("l")
        screen = app.screen
        pane = screen.query_one(LogPane)
        await until(pilot, lambda: {"prod-1: shop v1.3.0 listening on :8080",
                                    "prod-2: shop v1.2.1 listening on :8080"} <= set(pane.lines), what="both hosts")
        await pilot.press("f")  # stop following: the remote commands end, what arrived stays
        await until(pilot, lambda: not screen.worker.is_running, what="the read ended")
        assert not processes_under(world.root) and "ended" in screen_text(app) and "f Follow" in await footer(pilot)
        assert len(pane.lines) == 2


async def test_100k_hostile_log_lines_stay_bounded_and_inert(world):
    gen = world.root / "hostile.py"
    gen.write_text(HOSTILE_PY)
    world.set_config(logs=f"python3 {gen} {LINES}")  # a host that ignores -n and floods
    app = world.app(max_log_lines=CAP)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1")
        tracemalloc.start()
        try:
            await pilot.press("l")
            screen = app.screen
            pane = screen.query_one(LogPane)
            await until(pilot, lambda: screen.stream.total > LINES, timeout=120, what="100k lines")
            await until(pilot, lambda: pane.lines and "LAST LINE" in pane.lines[-1], timeout=30, what="the last line")
            await pilot.pause(0.3)
            held = tracemalloc.take_snapshot().filter_traces([
                tracemalloc.Filter(True, "*/textual/*"), tracemalloc.Filter(True, "*/capview/tui/*"),
                tracemalloc.Filter(True, "*/capview/inert.py")])
            held_bytes = sum(s.size for s in held.statistics("filename"))
        finally:
            tracemalloc.stop()
        assert screen.results and screen.results[0].ok and screen.results[0].lines == LINES + 1
        assert len(screen.stream.lines) == CAP and len(pane.lines) <= CAP
        assert max(len(line) for line in pane.lines) <= LINE_LIMIT  # a 36,000-character line is clipped
        # what the dashboard holds after 100k lines (~14 MB of text, 6 MB in the long lines):
        # the newest CAP lines, raw in the stream and inert in the pane
        print(f"100k hostile lines: {screen.stream.total} received, {len(pane.lines)} shown, "
              f"{held_bytes / 2**20:.1f} MiB held by textual + capview.tui + inert")
        assert held_bytes < 24 * 2**20, held_bytes
        text = screen_text(app)
        assert not any(ch in text for ch in RAW), [ch for ch in RAW if ch in text]
        assert "\\x1b[2J" in text and "\\u202e" in text and "[bold]x[/bold]" in text  # shown, not obeyed
        assert f"the newest {CAP} kept" in text


async def test_100k_hostile_lines_in_health_log_open_at_the_end_bounded_and_inert(world):
    log = world.dp("prod-1") / "releases" / "v1.2.0" / ".capview" / "health.log"
    subprocess.run(["python3", "-c", HOSTILE_PY, str(LINES)], stdout=log.open("w"), check=True)
    assert log.stat().st_size > 10_000_000
    app = world.app(max_log_lines=CAP)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1", "v1.2.0")
        await pilot.press("i")
        await settle(pilot)
        assert isinstance(app.screen, InspectScreen)
        await pilot.press("5")
        await settle(pilot)
        await pilot.pause(0.2)
        view = app.screen.query_one("#health-log", NavLog)
        # the engine reads the tail (256 KB), the view keeps at most CAP lines, each clipped
        assert 0 < len(view.lines) <= CAP and max(len(line) for line in view.lines) <= LINE_LIMIT
        text = screen_text(app)
        assert "LAST LINE" in text  # opened at its end
        assert not any(ch in text for ch in RAW) and "\\x1b]52;c;" in text


async def test_restart_defaults_to_cancel_then_restarts_the_live_release(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1")
        before = [r for r in world.history("prod-1") if r["op"] == "restart"]
        await pilot.press("s")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen) and dialog.type_to_confirm is None
        assert isinstance(dialog.focused, Button) and dialog.focused.id == "no"
        assert "v1.3.0" in screen_text(app) and "restarted in place" in screen_text(app)
        await pilot.press("enter")  # Enter: the focused Cancel
        await settle(pilot)
        assert isinstance(app.screen, MainScreen)
        assert [r for r in world.history("prod-1") if r["op"] == "restart"] == before
        await pilot.press("s")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen), what="progress")
        op = app.screen.op
        await until(pilot, lambda: op.state != "running", timeout=60, what="restart")
        await settle(pilot)
        assert op.state == "ok" and op.phase_names[:3] == ["lock", "restart", "health"]
        after = [r for r in world.history("prod-1") if r["op"] == "restart"]
        assert len(after) == len(before) + 1 and after[-1]["outcome"] == "ok" and after[-1]["version"] == "v1.3.0"
        assert os.readlink(world.dp("prod-1") / "current") == "releases/v1.3.0"
        assert "c Cancel" not in await footer(pilot)


async def test_restart_is_not_offered_where_nothing_is_live(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1")
        await until(pilot, lambda: "s Restart" in footer_text(app), what="restart offered on prod-1")
        await select(pilot, "legacy", "legacy-1")
        await until(pilot, lambda: "m Migrate" in footer_text(app), what="the footer of legacy-1")
        bar = footer_text(app)
        assert "s Restart" not in bar and "l Logs" not in bar


async def test_verify_in_inspect_shows_changed_missing_and_extra(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1", "v1.3.0")
        await pilot.press("i")
        await settle(pilot)
        assert "v Verify" in await footer(pilot)
        await pilot.press("v")
        await settle(pilot)
        text = screen_text(app)
        assert "✓ v1.3.0 is as deployed" in text and "0 changed" in text, text
        # tampering on the host: one file changed, one gone, one nobody deployed
        tamper(world)
        await pilot.press("v")
        await settle(pilot)
        text = screen_text(app)
        assert "✗ v1.3.0 differs from what was deployed" in text
        assert "1 changed" in text and "1 missing" in text and "1 extra" in text
        table = app.screen.query_one("#verify-table", DataTable)
        got = {(table.get_row_at(i)[0].plain, table.get_row_at(i)[1].plain) for i in range(table.row_count)}
        assert {("missing", "templates/cart.html"), ("extra", "static/evil\\x1b[31m.js")} <= got
        assert any(kind == "changed" and path.startswith("static/style.css") for kind, path in got)
        assert "\x1b" not in text


async def test_a_split_environment_is_flagged_and_converge_brings_every_host_to_one_version(world):
    """Issue 17: the seeded prod is split (prod-2 was rolled back by hand); the environment's
    line says so, `c` opens the rollback of every host to the version they all keep (Cancel
    focused), and confirming it leaves both hosts on that version."""
    from capview.engine.split import env_split

    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", None)
        split = env_split("prod", app.main_screen.statuses())
        assert split.split and world.current("prod-1") != world.current("prod-2"), split
        to = split.converge_to
        assert to is not None
        await until(pilot, lambda: "c Converge" in footer_text(app), what="converge offered on split prod")
        assert "SPLIT" in screen_text(app) and f"c converges to {to}" in screen_text(app)
        await pilot.press("c")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert isinstance(dialog.focused, Button) and dialog.focused.id == "no"
        await pilot.press("enter")  # the focused Cancel: nothing changes
        await settle(pilot)
        assert world.current("prod-1") != world.current("prod-2")
        await pilot.press("c")
        await pilot.press("y")
        await until(pilot, lambda: isinstance(app.screen, ProgressScreen), what="progress")
        op = app.screen.op
        await until(pilot, lambda: op.state != "running", timeout=90, what="converge")
        assert op.state == "ok", op.state
        assert world.current("prod-1") == world.current("prod-2") == to
        await pilot.press("escape")
        await settle(pilot)
        await select(pilot, "prod", None)
        await until(pilot, lambda: "c Converge" not in footer_text(app), what="converge gone once converged")
        assert "SPLIT" not in screen_text(app)


async def test_unlock_of_a_dead_holder_on_this_machine_asks_once_without_typing(world):
    """The dashboard judges a lock with the engine's rule (lock.why_not_stale, issue 17): a
    holder that ran on this machine (same machine id and hostname) and whose pid is gone is
    safe to remove with a plain confirmation; the lock is then gone on the host."""
    import socket

    from capview.engine.lock import LockOwner, local_machine_id
    from tui_world import take_lock

    dead = subprocess.Popen(["true"])
    dead.wait()
    owner = LockOwner("dave@here", "release", "v9", world.clock() - 600, "d0d0d0d0d0d0d0d0", dead.pid,
                      socket.gethostname(), local_machine_id())
    await take_lock(world, world.config.env("prod").host("prod-1"), "prod-1", owner, world.clock() - 600)
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1")
        await until(pilot, lambda: "u Unlock" in footer_text(app), what="unlock offered")
        await pilot.press("u")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen) and dialog.type_to_confirm is None, screen_text(app)
        assert "safe to remove" in screen_text(app)
        await pilot.press("y")
        await until(pilot, lambda: not (world.dp("prod-1") / ".capview" / "lock").exists(), timeout=30,
                    what="the lock removed on the host")


async def test_a_following_log_pane_stays_at_the_newest_line_when_it_shrinks():
    """Seen as a flaky snapshot: lines written, then the pane shrinks (a table above it
    appears), then more lines: Log only follows when it is at the end, and a shrink left it
    short of the end, so the newest lines stayed hidden. A pane scrolled up by the user stays put."""
    from textual.app import App
    from textual.containers import Vertical
    from textual.widgets import Static

    class Two(App):
        def compose(self):
            with Vertical():
                yield Static("above", id="above")
                yield LogPane(id="pane")

    app = Two()
    async with app.run_test(size=(60, 30)) as pilot:
        pane = app.query_one(LogPane)
        app.query_one("#above").styles.height = 2
        await pilot.pause()
        for i in range(40):
            pane.push(f"line {i}")
        pane.flush()
        await pilot.pause()
        assert pane.is_vertical_scroll_end
        app.query_one("#above").styles.height = 12  # the pane shrinks by 10 rows
        await pilot.pause()
        await pilot.pause()
        assert pane.is_vertical_scroll_end, (pane.scroll_y, pane.max_scroll_y)
        pane.push("line 40")
        pane.flush()
        await pilot.pause()
        assert pane.is_vertical_scroll_end and "line 40" in screen_text(app)
        pane.scroll_to(y=0, animate=False, immediate=True)  # the user reads back
        await pilot.pause()
        app.query_one("#above").styles.height = 4
        await pilot.pause()
        assert pane.scroll_y == 0


async def test_a_log_pane_under_a_dialog_keeps_writing_and_under_a_full_screen_waits():
    """A dialog leaves the screen below in view (dimmed): its log pane keeps up (seen as a
    flaky snapshot: the error line of the activity pane under the error dialog came or not).
    A full screen on top hides it: it skips the work and catches up when shown again."""
    from textual.app import App
    from textual.screen import ModalScreen, Screen
    from textual.widgets import Static

    class Dialog(ModalScreen):
        def compose(self):
            yield Static("a dialog")

    class Full(Screen):
        def compose(self):
            yield Static("another screen")

    class One(App):
        def compose(self):
            yield LogPane(id="pane")

    app = One()
    async with app.run_test(size=(60, 20)) as pilot:
        pane = app.query_one(LogPane)
        await app.push_screen(Dialog())
        pane.push("under the dialog")
        pane.flush()
        assert "under the dialog" in pane.lines and not pane.pending
        app.pop_screen()
        await app.push_screen(Full())
        pane.push("under a full screen")
        pane.flush()
        assert "under a full screen" not in pane.lines and not pane.pending  # pending counts visible panes only
        app.pop_screen()
        await pilot.pause(0.3)  # the pane's own flush timer catches up
        assert pane.lines[-1] == "under a full screen" and not pane.pending


# --------------------------------------------------------------------------- issue 16: search in the log

def _visible(app) -> list[str]:
    return screen_text(app).splitlines()


async def _open_logs_with(pilot, world, app, lines: list[str]) -> LogPane:
    await settle(pilot)
    await select(pilot, "prod", "prod-1")
    await pilot.press("l")
    pane = app.screen.query_one(LogPane)
    await until(pilot, lambda: any("listening on :8080" in line for line in pane.lines), what="backlog")
    _append(world, "prod-1", *lines)
    await until(pilot, lambda: any(lines[-1] in line for line in pane.lines), what="the appended lines")
    return pane


SEARCH_LINES = [f"GET /item/{i} 200" if i % 50 else f"POST /Order/{i} 500 boom" for i in range(1, 400)]


async def test_search_finds_the_line_cycles_with_n_and_N_and_escape_restores_following(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await _open_logs_with(pilot, world, app, SEARCH_LINES)
        screen = app.screen
        assert "/ Search" in await footer(pilot) and not screen.paused and screen.following
        assert pane.is_vertical_scroll_end
        await pilot.press("slash")
        assert screen.searching and screen.paused  # searching pauses following, and says so
        assert "paused for the search" in screen_text(app)
        await pilot.press(*"order/")  # any case: "Order" in the log
        await pilot.pause()
        assert "7 matching lines for 'order/'" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        # the view was at the newest lines: the next match below its top is the last one
        first = screen.pane.current
        line = pane.lines[pane.matches[first]]
        assert "POST /Order/" in line and f"match {first + 1} of 7" in screen_text(app)
        assert any(line in row for row in _visible(app))  # scrolled into view
        assert app.focused is pane  # n / N / esc go to the pane now
        await pilot.press("n")
        await pilot.pause()
        assert pane.current == (first + 1) % 7 and f"match {(first + 1) % 7 + 1} of 7" in screen_text(app)
        for _ in range(3):
            await pilot.press("N")
        await pilot.pause()
        assert pane.current == (first - 2) % 7
        assert "POST /Order/50 500" in pane.lines[pane.matches[0]]
        while pane.current != 0:
            await pilot.press("n")
        await pilot.pause()
        assert any("POST /Order/50 500 boom" in row for row in _visible(app)), screen_text(app)
        assert "n Next match" in await footer(pilot) and "esc Close search" in await footer(pilot)
        # lines arriving meanwhile wait in the stream, the pane does not move
        _append(world, "prod-1", "GET /after-the-search 200")
        await until(pilot, lambda: any("after-the-search" in x for x in screen.stream.lines), what="into the stream")
        await pilot.pause(0.3)
        assert not any("after-the-search" in x for x in pane.lines)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, LogsScreen) and not screen.searching and not screen.paused
        assert not pane.matches and "match" not in screen_text(app) and "following" in screen_text(app)
        await until(pilot, lambda: any("after-the-search" in x for x in pane.lines), what="following again")
        await until(pilot, lambda: pane.is_vertical_scroll_end, what="at the newest line")
        assert "n Next match" not in await footer(pilot)
        await pilot.press("escape")  # esc again: back, as before
        assert isinstance(app.screen, MainScreen)


async def test_search_with_no_match_says_so_and_a_paused_pane_stays_paused(world):
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        pane = await _open_logs_with(pilot, world, app, SEARCH_LINES)
        screen = app.screen
        await pilot.press("space")  # paused by the user before the search
        await pilot.press("g")
        await pilot.pause()
        top = pane.scroll_y
        await pilot.press("slash", *"teapot", "enter")
        await pilot.pause()
        assert "no match for 'teapot'" in screen_text(app) and pane.current is None
        assert pane.scroll_y == top
        await pilot.press("n")  # nothing to go to: nothing moves
        await pilot.pause()
        assert pane.scroll_y == top and pane.current is None
        await pilot.press("escape")
        await pilot.pause()
        assert not screen.searching and screen.paused and "no match" not in screen_text(app)
        assert pane.scroll_y == top  # where the user was
        assert "space Resume" in await footer(pilot)


async def test_search_finds_hostile_text_as_shown_without_a_raw_escape_reaching_the_screen(world):
    gen = world.root / "hostile.py"
    gen.write_text(HOSTILE_PY)
    world.set_config(logs=f"python3 {gen} 5000")
    app = world.app(max_log_lines=CAP)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        await select(pilot, "prod", "prod-1")
        await pilot.press("l")
        screen = app.screen
        pane = screen.query_one(LogPane)
        await until(pilot, lambda: pane.lines and "LAST LINE" in pane.lines[-1], timeout=60, what="the last line")
        assert len(pane.lines) == CAP  # the kept-lines cap
        # what the screen shows for OSC 0 is the text \x1b]0;owned\x07: found as shown
        await pilot.press("slash", *"line 4321 \\x1b[2j", "enter")
        await pilot.pause()
        assert "match 1 of 1" in screen_text(app), screen_text(app)
        assert pane.lines[pane.matches[0]].startswith("line 4321 \\x1b[2J")
        text = screen_text(app)
        assert not any(ch in text for ch in RAW), [ch for ch in RAW if ch in text]
        assert "line 4321 \\x1b[2J\\x1b[31mred" in text
        # a word in every line: as many matches as lines kept, the last one the newest matching
        await pilot.press("slash")
        await pilot.press("ctrl+a", "ctrl+k", *"OWNED", "enter")
        await pilot.pause()
        assert len(pane.matches) == CAP - 1 - 2 and "of 1997" in screen_text(app)  # not LAST, not 2 LONG
        await pilot.press("N")
        await pilot.pause()
        text = screen_text(app)
        assert not any(ch in text for ch in RAW)
        # nothing a host prints is taken as a pattern: regex characters are plain text
        await pilot.press("slash", "ctrl+a", "ctrl+k", *"[bold]x[/bold]", "enter")
        await pilot.pause()
        assert len(pane.matches) == CAP - 3 and "[bold]x[/bold]" in screen_text(app)
        await pilot.press("slash", "ctrl+a", "ctrl+k", *".*", "enter")
        await pilot.pause()
        assert "no match for '.*'" in screen_text(app)


async def test_search_keys_are_in_the_footer_the_help_and_the_palette_and_can_be_remapped(world):
    from textual.binding import Binding

    from capview.tui.commands import CapviewCommands

    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await _open_logs_with(pilot, world, app, ["GET /a 200", "GET /b 404"])
        screen = app.screen
        titles = [t for t, _, _ in CapviewCommands(screen)._commands()]
        assert any(t.startswith("Search") for t in titles), titles
        assert not any(t.startswith("Next match") for t in titles)  # no search open: not offered
        await pilot.press("question_mark")
        await pilot.pause(0.3)
        from capview.tui.screens.help import HelpScreen
        assert isinstance(app.screen, HelpScreen)
        rows = dict(app.screen._keys(LogsScreen.BINDINGS))
        assert (rows["/"], rows["n"], rows["N"], rows["esc"]) == ("Search", "Next match", "Prev match", "Close search")
        await pilot.press("escape")
        await pilot.pause()
        ids = {b.id for b in LogsScreen.BINDINGS if isinstance(b, Binding)}
        assert {"logs.search", "logs.search_next", "logs.search_previous", "logs.search_close"} <= ids
        app.set_keymap({"logs.search": "ctrl+f"})
        await pilot.pause()
        await pilot.press("ctrl+f", *"404", "enter")
        await pilot.pause()
        assert screen.searching and "match 1 of 1" in screen_text(app)
        titles = [t for t, _, _ in CapviewCommands(screen)._commands()]
        assert any(t.startswith("Next match") for t in titles) and any(t.startswith("Close search") for t in titles)
        # esc in the search box (nothing submitted) closes it too, following again
        await pilot.press("escape", "ctrl+f", *"GET")
        await pilot.pause()
        assert screen.searching and app.focused is screen.search_box and screen.paused
        await pilot.press("escape")
        await pilot.pause()
        assert not screen.searching and not screen.paused and app.focused is screen.pane
