"""One set of numbers: the dashboard prints the engine's numbers through capview.units
(the formatter the CLI uses), the prune screen's "frees" is the releases table's
"unique", and what prune promises is what the host then frees; the CLI's ``releases``
and ``prune --dry-run`` tables (cli/tables.py, on the same engine results) print the
same strings.
"""

from __future__ import annotations

import re

from capview import units
from capview.cli.tables import prune_text, releases_text
from capview.tui.screens.history import HistoryScreen
from capview.tui.screens.prune import PruneScreen
from tui_pilot import SIZE, screen_text, select, settle, until
from tui_world import world  # noqa: F401


def cell(table, row, key) -> str:
    return table.get_cell(row, key).plain.strip()


async def test_dashboard_prune_screen_and_prune_result_print_the_same_size_and_freed_bytes(world):
    backend = world.backend()
    [st] = await backend.status("prod", host="prod-1")
    [plan] = await backend.plan_prune("prod", host="prod-1")
    assert sorted(plan.deletions) == ["v0.9.0", "v1.2.0"] and plan.total > 0
    app = world.app()
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        table = await select(pilot, "prod", "prod-1")
        for r in st.releases:  # the releases table: units.size of the engine's bytes, nothing else
            assert cell(table, r.version, "size") == units.size(r.size_bytes)
            assert cell(table, r.version, "unique") == units.size(r.unique_disk_bytes)
        assert f"free     {units.size(st.free_bytes)}" in str(app.main_screen.query_one("#host-detail").render())
        unique = {r.version: cell(table, r.version, "unique") for r in st.releases}
        # the CLI's `capview releases` rows: the same size and unique strings for every release
        cli = releases_text([st], now=world.now)
        for r in st.releases:
            row = next(line for line in cli.splitlines() if re.search(rf"\s{re.escape(r.version)}\s", line))
            assert f" {cell(table, r.version, 'size')} " in row and f" {unique[r.version]} " in row, row
        assert units.size(st.free_bytes) + " free" in cli
        cli_prune = prune_text([plan])

        await pilot.press("p")
        await settle(pilot)
        prune = app.screen
        assert isinstance(prune, PruneScreen)
        rows = prune.query_one("#prune-table")
        for item in plan.items:
            frees = rows.get_cell(f"prod-1\0{item.version}", "frees").plain.strip()
            if item.action == "delete":  # the prune screen's "frees" is the releases table's "unique"
                assert frees == units.size(item.frees_bytes) == unique[item.version]
        assert prune.total() == plan.total
        assert f"{units.size(plan.total)} freed" in cli_prune
        for item in plan.items:
            if item.action == "delete":
                row = next(line for line in cli_prune.splitlines() if line.strip().startswith(item.version))
                assert row.rstrip().endswith(unique[item.version]), row
        assert f"freeing {units.size(plan.total)}" in screen_text(app)

        await pilot.press("y", "y")  # y: confirm on the table, y: confirm in the dialog
        op = app.last_operation
        await until(pilot, lambda: op is not None and not op.running, what="prune")
        assert op.state == "ok", op.summary()
        assert not (world.dp("prod-1") / "releases" / "v0.9.0").exists()
        record = world.history("prod-1")[-1]
        assert record["op"] == "prune" and sorted(record["deleted"]) == ["v0.9.0", "v1.2.0"]
        assert record["freed"] == plan.total  # what the host freed (du before/after) is what was promised
        await pilot.press("escape")
        await settle(pilot)
        await pilot.pause(0.3)
        assert any(f"freed {units.size(plan.total)}" in line for line in app.main_screen.query_one("#activity").lines)
        await pilot.press("h")
        await settle(pilot)
        assert isinstance(app.screen, HistoryScreen)
        assert f"deleted 2 releases, freed {units.size(plan.total)}" in screen_text(app)


def test_sizes_a_cold_listing_left_pending_show_as_in_the_cli():
    """Issue 21: a cold listing may not wait for the host's sums (usage_pending, sizes 0):
    the dashboard shows "…" like `capview releases`, never "0 B" or "—" (which means none)."""
    from capview.engine.model import ReleaseInfo
    from capview.tui.widgets.releases_table import ReleaseRow, cells

    pending = cells(ReleaseRow(ReleaseInfo("v1", "superseded", usage_pending=True)), now=0.0)
    summed = cells(ReleaseRow(ReleaseInfo("v2", "superseded", size_bytes=2048, unique_disk_bytes=4096)), now=0.0)
    assert (pending["size"].plain.strip(), pending["unique"].plain.strip()) == ("…", "…")
    assert (summed["size"].plain.strip(), summed["unique"].plain.strip()) == ("2.0 KiB", "4.0 KiB")
