"""The dashboard's backend is the engine: it returns the engine's own types, and no second
engine (a fake) or re-declared plan / inspection type lives in the package."""

from __future__ import annotations

import ast
from pathlib import Path

from capview.engine.context import OperationResult
from capview.engine.inspect import Comparison, DirEntry, FilePair
from capview.engine.manifest import Entry
from capview.engine.migrate import MigrationPlan
from capview.engine.model import HostStatus, ReleaseInfo
from capview.engine.prune import PrunePlan
from tui_world import world  # noqa: F401

PACKAGE = Path(__file__).resolve().parent.parent / "capview"
ENGINE_TYPES = {"HostStatus", "ReleaseInfo", "LockInfo", "PrunePlan", "PruneItem", "MigrationPlan", "DirEntry",
                "Comparison", "Change", "FilePair", "Entry", "OperationResult"}


async def test_the_backend_returns_the_engines_own_types(world):
    backend = world.backend()
    [p1, p2] = await backend.status("prod")
    assert isinstance(p1, HostStatus) and all(isinstance(r, ReleaseInfo) for r in p1.releases)
    assert (p1.current, p1.previous, p2.current) == ("v1.3.0", "v1.2.1", "v1.2.1")
    [plan] = await backend.plan_prune("prod", host="prod-1")
    assert isinstance(plan, PrunePlan) and plan.total > 0 and plan.deletions  # the field FakeBackend dropped
    [mplan] = await backend.plan_migration("legacy")
    assert isinstance(mplan, MigrationPlan) and mplan.needed and mplan.steps
    entries = await backend.list_dir("prod", "prod-1", "v1.3.0")
    assert all(isinstance(e, DirEntry) for e in entries) and {"app.py", "static", "data"} <= {e.name for e in entries}
    manifest = await backend.manifest("prod", "prod-1", "v1.3.0")
    assert isinstance(manifest["app.py"], Entry) and manifest["static/app.js"].size == 60_012
    cmp = await backend.compare("prod", "prod-1", "v1.2.1", "v1.3.0")
    assert isinstance(cmp, Comparison) and "app.py" in {c.path for c in cmp.changed}
    pair = await backend.read_pair("prod", "prod-1", "v1.2.1", "v1.3.0", "app.py")
    assert isinstance(pair, FilePair) and 'VERSION = "v1.2.1"' in pair.old and 'VERSION = "v1.3.0"' in pair.new
    history = await backend.history("prod")
    assert [r["op"] for r in history["prod-2"]][-1] == "rollback"
    logs = await backend.release_logs("prod", "prod-1", "v1.2.0")
    assert "no such column: orders.coupon" in logs["health"]
    meta = await backend.release_json("prod", "prod-1", "v1.2.0")
    assert meta["state"] == "failed" and set(meta["phases"]) >= {"lock", "setup", "upload", "link"}  # the switch: on the host
    assert isinstance(await backend.pin("prod", "v1.1.0", host="prod-1"), OperationResult)
    assert (world.dp("prod-1") / "releases" / "v1.1.0" / ".capview" / "pinned").exists()


def _classes(path: Path) -> list[str]:
    return [n.name for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.ClassDef)]


def test_no_fake_engine_and_no_redeclared_engine_types_in_the_package():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        assert "FakeBackend" not in text, path
        if path.is_relative_to(PACKAGE / "tui"):
            clash = ENGINE_TYPES & set(_classes(path))
            assert not clash, f"{path}: re-declares the engine's {clash}"


def test_no_dashboard_module_over_600_lines():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in (PACKAGE / "tui").rglob("*.py")}
    assert max(sizes.values()) <= 600, {k: v for k, v in sizes.items() if v > 600}
    assert "MainScreen" in _classes(PACKAGE / "tui" / "screens" / "main.py")
    assert "MainScreen" not in _classes(PACKAGE / "tui" / "app.py")
