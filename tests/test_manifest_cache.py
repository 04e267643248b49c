"""issue 21: the previous release's manifest is not fetched back when this client holds it
(engine/manifest_cache.py: content-addressed, the host sends only its sha256), and it is
diffed line by line (manifest.diff_text), with the same result as parsing it."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from capview.config import Environment, HostConfig, Settings
from capview.engine import manifest_cache
from capview.engine.context import Context
from capview.engine.deploy import release
from capview.engine.events import HostWarning
from capview.engine.manifest import Entry, Scan, diff, diff_text, manifest_text, parse_manifest, scan_tree
from capview.engine.manifest_cache import KEEP, ManifestCache
from capview.remote.local import LocalTransport


@pytest.fixture(autouse=True)
def _cache_home(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("CAPVIEW_MANIFEST_CACHE", raising=False)


# ---------------------------------------------------------------- diff_text == diff

def _f(p: str, mode: int = 0o444, d: str = "0" * 64, size: int = 1) -> Entry:
    return Entry(p, "f", mode, size, d)


def _same(new: dict[str, Entry], prev_text: str) -> None:
    a, b = diff(new, parse_manifest(prev_text)), diff_text(Scan(new, ()), prev_text)
    assert (a.send, a.drop, a.keep) == (b.send, b.drop, b.keep)
    assert a.manifest == b.manifest


def test_diff_text_is_diff_for_manifests_capview_wrote():
    prev = {"z": _f("z"), "a": _f("a"), "w": _f("w", 0o644), "gone": _f("gone"),
            "dir": Entry("dir", "d", 0o755, 0, "-"), "odd\tname%": _f("odd\tname%"),
            "ln": Entry("ln", "l", 0o777, 0, "a b\nc")}
    new = {"z": _f("z"), "a": _f("a", d="1" * 64), "w": _f("w", 0o644), "dir": Entry("dir", "d", 0o700, 0, "-"),
           "odd\tname%": _f("odd\tname%"), "ln": Entry("ln", "l", 0o777, 0, "a b\nc"), "new": _f("new")}
    _same(new, manifest_text(prev))
    _same(new, "")
    _same({}, manifest_text(prev))
    rng = random.Random(21)
    for _ in range(30):
        names = [f"d{rng.randrange(3)}/f{i}" for i in range(40)]
        prev = {n: _f(n, d=rng.choice("01") * 64, mode=rng.choice((0o444, 0o555, 0o644))) for n in names if rng.random() < .8}
        new = {n: _f(n, d=rng.choice("01") * 64, mode=rng.choice((0o444, 0o555, 0o644))) for n in names if rng.random() < .8}
        order = list(prev.values())
        rng.shuffle(order)  # a manifest is in no particular order (kept lines first, then the sent)
        _same(new, manifest_text(tuple(order)))


def test_diff_text_sends_what_it_cannot_match_and_never_keeps_an_escaping_line():
    new = {"a": _f("a"), "b": _f("b")}
    text = "f\t0444\t1\t" + "0" * 64 + "\ta\n" + "junk\n" + "f\t444\t1\t" + "0" * 64 + "\t../b\n"
    d = diff_text(Scan(new, ()), text)
    assert [e.path for e in d.send] == ["a", "b"] and d.keep == ()  # "0444" is not capview's line
    assert d.drop == ("a",)  # ../b escapes: the host refuses that line itself


# ---------------------------------------------------------------- the cache itself

def test_a_copy_is_found_by_its_sha256_only_and_never_when_damaged(tmp_path: Path):
    c = ManifestCache("u@h:22", "/srv/app")
    text = "f\t444\t1\t" + "0" * 64 + "\ta\n"
    sha = hashlib.sha256(text.encode()).hexdigest()
    c.put(text)
    assert c.offered() == (sha,) and c.get(sha) == text
    assert ManifestCache("u@h:22", "/srv/other").offered() == ()  # another deploy path: its own copies
    assert c.get("0" * 64) is None and c.get("../../x") is None
    (c.directory / f"{sha}.tsv").write_text(text.replace("444", "644"))  # damaged on disk
    assert c.get(sha) is None
    for i in range(KEEP + 2):
        c.put(f"{i}\n")
    assert len(c.offered()) == KEEP and all(len(s) == 64 for s in c.offered())
    for i in range(manifest_cache.KEEP_PATHS + 3):
        ManifestCache("u@h", f"/tmp/t{i}").put(f"{i}\n")
    assert len(list(manifest_cache.cache_dir().iterdir())) == manifest_cache.KEEP_PATHS
    assert ManifestCache("u@h", f"/tmp/t{manifest_cache.KEEP_PATHS + 2}").offered()  # the newest stay


# ---------------------------------------------------------------- deploys

def _env(tmp_path: Path) -> tuple[Environment, Path, Path]:
    src = tmp_path / "src"
    (src / "static").mkdir(parents=True)
    for i in range(30):
        (src / "static" / f"a{i}.css").write_text(f".a{i} {{}}\n" * 20)
    dp = tmp_path / "host" / "web" / "app"
    (dp / "shared").mkdir(parents=True)
    (dp / "shared" / ".env").write_text("")
    s = Settings(app="a", deploy_path=str(dp), source=src, keep_releases=5)
    h = HostConfig(name="h1", host="local", settings=s, env="e")
    return Environment(name="e", hosts=(h,), settings=s), src, dp


class Recording(LocalTransport):
    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[str] = []

    async def run(self, host, script, **kw):
        res = await super().run(host, script, **kw)
        self.outputs.append(res.stdout)
        return res


async def _deploy(env: Environment, version: str) -> tuple[Recording, list]:
    t, events = Recording(), []
    res = await release(Context(transport=t, emit=events.append, operator="t@box"), env, version)
    assert res.ok, res.hosts[0].message
    return t, [e.message for e in events if isinstance(e, HostWarning)]


def _setup_output(t: Recording) -> str:
    return t.outputs[0]  # the start exchange: preflight + lock + setup + listing


async def test_a_redeploy_gets_only_the_sha256_of_a_manifest_it_wrote(tmp_path: Path):
    env, src, dp = _env(tmp_path)
    t, _ = await _deploy(env, "v1")
    assert " manifest_sha " not in _setup_output(t)
    (src / "static" / "a3.css").write_text("changed\n")
    t, warnings = await _deploy(env, "v2")
    out = _setup_output(t)
    v1_sha = hashlib.sha256((dp / "releases/v1/.capview/manifest.tsv").read_bytes()).hexdigest()
    assert f" manifest_sha {v1_sha}" in out and "a7.css" not in out  # no manifest text came back
    assert not warnings
    v1, v2 = dp / "releases/v1/static", dp / "releases/v2/static"
    assert (v1 / "a7.css").stat().st_ino == (v2 / "a7.css").stat().st_ino  # still linked
    assert (v2 / "a3.css").read_text() == "changed\n" != (v1 / "a3.css").read_text()


async def test_a_different_manifest_under_the_same_version_is_never_served_from_the_cache(tmp_path: Path):
    """releases/v2 is made again elsewhere (same version, another a3.css and its manifest
    line): the host's manifest no longer hashes to the copy this client wrote, so its text is
    sent and diffed. A cache keyed by version would miss the change: the client would keep
    a3.css, the host's merge would not match, and the deploy would fall back to sending all."""
    env, src, dp = _env(tmp_path)
    await _deploy(env, "v1")
    (src / "static" / "a3.css").write_text("changed\n")
    await _deploy(env, "v2")
    v2 = dp / "releases" / "v2"
    other = b"from another machine\n"
    (v2 / "static" / "a3.css").unlink()
    (v2 / "static" / "a3.css").write_bytes(other)
    (v2 / "static" / "a3.css").chmod(0o444)
    man = v2 / ".capview" / "manifest.tsv"
    lines = man.read_text().splitlines()
    i = next(n for n, line in enumerate(lines) if line.endswith("\tstatic/a3.css"))
    lines[i] = "\t".join(["f", "444", str(len(other)), hashlib.sha256(other).hexdigest(), "static/a3.css"])
    man.write_text("\n".join(lines) + "\n")
    t, warnings = await _deploy(env, "v3")
    out = _setup_output(t)
    assert " manifest_sha " not in out and "static/a3.css" in out
    assert not warnings  # no drift: the client diffed against the host's manifest as it is
    v3 = dp / "releases" / "v3"
    assert (v3 / "static" / "a3.css").read_text() == "changed\n"
    assert (v3 / "static" / "a7.css").stat().st_ino == (v2 / "static" / "a7.css").stat().st_ino


async def test_a_lost_copy_means_sending_everything_and_off_means_no_cache(tmp_path: Path, monkeypatch):
    env, src, dp = _env(tmp_path)
    await _deploy(env, "v1")
    for p in manifest_cache.cache_dir().glob("*/*.tsv"):
        p.write_text("damaged\n")  # offered by name, refused when read: nothing to diff against
    (src / "static" / "a3.css").write_text("changed\n")
    t, _ = await _deploy(env, "v2")
    assert " manifest_sha " in _setup_output(t)
    v1, v2 = dp / "releases/v1/static", dp / "releases/v2/static"
    assert (v1 / "a7.css").stat().st_ino != (v2 / "a7.css").stat().st_ino  # sent again: correct, not shared
    assert (v2 / "a7.css").read_bytes() == (src / "static" / "a7.css").read_bytes()
    monkeypatch.setenv("CAPVIEW_MANIFEST_CACHE", "off")
    (src / "static" / "a4.css").write_text("changed\n")
    t, _ = await _deploy(env, "v3")
    assert " manifest_sha " not in _setup_output(t) and "a7.css" in _setup_output(t)
    assert (dp / "releases/v3/static/a7.css").stat().st_ino == (v2 / "a7.css").stat().st_ino


def test_scan_lines_are_the_manifest_lines(tmp_path: Path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "x").write_text("x")
    scan = scan_tree(tmp_path / "s", ())
    assert list(scan.shareable_lines) == [e.line() for e in scan.entries.values()]
