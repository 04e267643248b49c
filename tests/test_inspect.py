"""The inspector's reads on a hand-built release (LocalTransport)."""

from __future__ import annotations

import os

import pytest

from capview.engine.context import Context
from capview.engine.inspect import InspectError, compare, list_dir, read_text, release_logs
from capview.errors import UsageError
from capview.remote.local import LocalTransport
from fakehost import FakeHost, host_config


@pytest.fixture
def fh(tmp_path):
    fh = FakeHost(tmp_path / "app")
    fh.release("v1", {"app.py": "print(1)\n", "templates/index.html": "<p>\n", "old.txt": "x"}, deployed_at=1)
    fh.release("v2", {"app.py": "print(2)\n", "templates/index.html": "<p>\n", "weird\nname\t.txt": "w",
                      "bin.dat": b"\x00\x01\x02", "big.txt": "y" * 5000, "crlf.txt": "a\r\nb\r\n"},
                link_from="v1", deployed_at=2)
    os.chmod(fh.rel("v2") / "app.py", 0o755)
    (fh.dp / "shared" / "data" / "app.db").write_text("secret rows")
    return fh


def ctx():
    return Context(transport=LocalTransport(), operator="t@b")


async def test_list_dir_one_level_links_not_followed(fh):
    h = host_config(fh.dp)
    entries = {e.name: e for e in await list_dir(ctx(), h, "v2", "")}
    assert entries["templates"].type == "dir" and entries[".capview"].type == "dir"
    assert entries["data"].type == "link" and entries["data"].link_target == "../../shared/data"
    assert entries["app.py"].size == 9 and entries["app.py"].mode == 0o755
    assert "weird\nname\t.txt" in entries
    sub = await list_dir(ctx(), h, "v2", "templates/")
    assert [e.name for e in sub] == ["index.html"]
    with pytest.raises(InspectError, match="outside the release"):
        await list_dir(ctx(), h, "v2", "data")
    with pytest.raises(InspectError):
        await list_dir(ctx(), h, "v2", "../v1")
    with pytest.raises(InspectError, match="no release"):
        await list_dir(ctx(), h, "v9", "")
    with pytest.raises(UsageError):
        await list_dir(ctx(), h, "..", "")


async def test_read_text_refuses_binary_links_and_escapes(fh):
    h = host_config(fh.dp)
    assert await read_text(ctx(), h, "v2", "app.py") == "print(2)\n"
    assert await read_text(ctx(), h, "v2", "crlf.txt") == "a\r\nb\r\n"
    assert await read_text(ctx(), h, "v2", "weird\nname\t.txt") == "w"
    cut = await read_text(ctx(), h, "v2", "big.txt", limit=100)
    assert cut.startswith("y" * 100) and "first 100 of 5000 bytes" in cut
    with pytest.raises(InspectError, match="binary"):
        await read_text(ctx(), h, "v2", "bin.dat")
    with pytest.raises(InspectError, match="not a regular file"):
        await read_text(ctx(), h, "v2", ".env")  # symlink to shared/.env: secrets never read
    with pytest.raises(InspectError, match="outside"):
        await read_text(ctx(), h, "v2", "data/app.db")
    with pytest.raises(InspectError):
        await read_text(ctx(), h, "v2", "../../shared/.env")


async def test_release_logs(fh):
    h = host_config(fh.dp)
    (fh.rel("v2") / ".capview" / "build.log").write_text("STEP 1/2\nok\n")
    assert await release_logs(ctx(), h, "v2") == {"build": "STEP 1/2\nok\n", "health": None}


async def test_compare_from_manifests(fh):
    c = await compare(ctx(), host_config(fh.dp), "v1", "v2")
    assert [e.path for e in c.removed] == ["old.txt"]
    assert sorted(e.path for e in c.added) == ["big.txt", "bin.dat", "crlf.txt", "weird\nname\t.txt"]
    [ch] = c.changed
    assert ch.path == "app.py" and (ch.old.size, ch.new.size) == (9, 9) and ch.old.digest != ch.new.digest
    assert c.unchanged == 2  # templates dir + index.html
    with pytest.raises(InspectError, match="no manifest"):
        await compare(ctx(), host_config(fh.dp), "v1", "v7")


async def test_read_pair_reads_both_sides_in_one_round_trip(fh):
    from capview.engine.inspect import read_pair

    h = host_config(fh.dp)
    transport = LocalTransport()
    c = Context(transport=transport, operator="t@b")
    pair = await read_pair(c, h, "v1", "v2", "app.py")
    assert (pair.old, pair.new) == ("print(1)\n", "print(2)\n") and transport.round_trips == 1
    added = await read_pair(c, h, "v1", "v2", "crlf.txt")
    assert added.old is None and added.new == "a\r\nb\r\n"
    removed = await read_pair(c, h, "v1", "v2", "old.txt")
    assert removed.old == "x" and removed.new is None
    assert (await read_pair(c, h, "v1", "v2", "nodir/x.txt")).old is None  # a directory only one side has
    cut = await read_pair(c, h, "v1", "v2", "big.txt", limit=100)
    assert cut.new.startswith("y" * 100) and "first 100 of 5000 bytes" in cut.new
    with pytest.raises(InspectError, match="binary"):
        await read_pair(c, h, "v1", "v2", "bin.dat")
    with pytest.raises(InspectError, match="not a regular file"):
        await read_pair(c, h, "v1", "v2", ".env")  # shared/.env: secrets never read
    with pytest.raises(InspectError, match="outside"):
        await read_pair(c, h, "v1", "v2", "data/app.db")
    with pytest.raises(InspectError):
        await read_pair(c, h, "v1", "v2", "../../shared/.env")
    with pytest.raises(InspectError, match="no release"):
        await read_pair(c, h, "v1", "v9", "app.py")
    with pytest.raises(UsageError):
        await read_pair(c, h, "v1", "../x", "app.py")
