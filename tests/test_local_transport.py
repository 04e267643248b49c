"""LocalTransport (the dashboard's test world, unit tests): lines as the SSH transport gives them."""

from __future__ import annotations

from pathlib import Path

from capview.config import HostConfig, Settings
from capview.remote.local import LocalTransport


def host() -> HostConfig:
    return HostConfig(name="here", host="localhost", settings=Settings(app="a", deploy_path="/tmp/x", source=Path("."), keep_releases=5))


async def test_a_line_longer_than_64_kib_and_a_last_line_without_newline_arrive_whole():
    seen: list[tuple[str, str]] = []
    script = ("head -c 300000 /dev/zero | tr '\\0' x; echo; echo second; printf 'no newline'; "
              "printf 'err-line\\n' >&2")
    res = await LocalTransport().run(host(), script, on_line=lambda n, line: seen.append((n, line)))
    lines = res.stdout.split("\n")
    assert res.exit_status == 0 and lines == ["x" * 300000, "second", "no newline"]
    assert [line for n, line in seen if n == "stdout"] == lines
    assert res.stderr == "err-line" and ("stderr", "err-line") in seen
