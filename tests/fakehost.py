"""Build deploy_path trees by hand in the on-host formats (DESIGN.md layout), for fast
engine tests with LocalTransport (no ssh). Reusable on the real testbed too: every
helper takes the deploy_path and writes plain files.

    fh = FakeHost(tmp_path / "app")
    fh.release("v1", {"app.py": "print(1)"}, deployed_at=100)
    fh.release("v2", {"app.py": "print(2)", "static/a.css": "x"}, link_from="v1", deployed_at=200)
    fh.set_current("v2"); fh.history_release("v1"); fh.history_release("v2", prev="v1")
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path

from capview.config import Environment, HostConfig, Settings
from capview.engine.manifest import Entry, manifest_text


def settings(dp: Path | str, **kw) -> Settings:
    return Settings(app="app", deploy_path=str(dp), source=Path("/nonexistent"), **kw)


def host_config(dp: Path | str, name: str = "h1", env: str = "test", **kw) -> HostConfig:
    return HostConfig(name=name, host="localhost", settings=settings(dp, **kw), env=env)


def environment(*hosts: HostConfig, name: str = "test", max_parallel: int = 10) -> Environment:
    return Environment(name=name, hosts=tuple(hosts), settings=hosts[0].settings, max_parallel=max_parallel)


class FakeHost:
    def __init__(self, dp: Path) -> None:
        self.dp = Path(dp)
        self.dp.mkdir(parents=True, exist_ok=True)
        (self.dp / "releases").mkdir(exist_ok=True)
        (self.dp / "shared" / "data").mkdir(parents=True, exist_ok=True)
        (self.dp / ".capview").mkdir(exist_ok=True)
        env = self.dp / "shared" / ".env"
        if not env.exists():
            env.write_text("SECRET=1\n")
            env.chmod(0o600)
        self.clock = 1000.0

    def rel(self, version: str) -> Path:
        return self.dp / "releases" / version

    def release(self, version: str, files: dict[str, str | bytes], *, state: str = "superseded",
                started_at: float | None = None, deployed_at: float | None = None,
                link_from: str | None = None, pinned: bool = False, meta: dict | None = None,
                write_json: bool = True) -> Path:
        """A release dir: files (hard-linked to ``link_from``'s identical files), shared
        links, .capview/release.json + manifest.tsv."""
        self.clock += 10
        root = self.rel(version)
        root.mkdir()
        prev = self.rel(link_from) if link_from else None
        entries: dict[str, Entry] = {}
        for rel, content in sorted(files.items()):
            data = content.encode() if isinstance(content, str) else content
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            for parent in Path(rel).parents:
                if str(parent) != ".":
                    entries[str(parent)] = Entry(str(parent), "d", 0o755, 0, "-")
            old = prev / rel if prev else None
            if old is not None and old.is_file() and not old.is_symlink() and old.read_bytes() == data:
                os.link(old, path)
            else:
                path.write_bytes(data)
            entries[rel] = Entry(rel, "f", stat.S_IMODE(path.stat().st_mode), len(data), hashlib.sha256(data).hexdigest())
        os.symlink("../../shared/.env", root / ".env")
        os.symlink("../../shared/data", root / "data")
        meta_dir = root / ".capview"
        meta_dir.mkdir()
        (meta_dir / "manifest.tsv").write_text(manifest_text(dict(sorted(entries.items()))))
        if write_json:
            doc = {
                "version": version, "state": state, "operator": "tester@box",
                "started_at": started_at if started_at is not None else self.clock,
                "deployed_at": deployed_at, "finished_at": self.clock + 5, "commit": "abc1234",
                "image": None, "files": sum(1 for e in entries.values() if e.type == "f"),
                "bytes": sum(e.size for e in entries.values()), "bytes_sent": 0, "phases": {},
                "downtime": 0.4 if deployed_at else None,
                "health": "failed" if state == "failed" else ("ok" if deployed_at else None),
                "error": "health check failed" if state == "failed" else None, "previous": link_from,
            }
            doc.update(meta or {})
            (meta_dir / "release.json").write_text(json.dumps(doc, indent=2))
        if pinned:
            (meta_dir / "pinned").touch()
        return root

    def set_current(self, version: str) -> None:
        tmp = self.dp / "current.tmp.test"
        os.symlink(f"releases/{version}", tmp)
        os.replace(tmp, self.dp / "current")

    def history(self, *records: dict) -> None:
        with open(self.dp / ".capview" / "history.jsonl", "a") as f:
            for rec in records:
                f.write(json.dumps(rec) + "\n")

    def history_release(self, version: str, prev: str | None = None, outcome: str = "ok") -> None:
        self.clock += 1
        to = version if outcome == "ok" else prev
        self.history({"at": self.clock, "op": "release", "host": "h1", "operator": "tester@box",
                      "version": version, "from": prev, "to": to, "outcome": outcome})

    def history_rollback(self, frm: str, to: str) -> None:
        self.clock += 1
        self.history({"at": self.clock, "op": "rollback", "host": "h1", "operator": "tester@box",
                      "version": to, "from": frm, "to": to, "outcome": "ok"})

    def hold_lock(self, **owner) -> None:
        lock = self.dp / ".capview" / "lock"
        lock.mkdir()
        doc = {"operator": "someone@elsewhere", "machine": "elsewhere", "pid": 4242,
               "operation": "release", "version": None, "started": 900.0, "heartbeat": 900.0}
        doc.update(owner)
        (lock / "owner.json").write_text(json.dumps(doc))

    def records(self) -> list[dict]:
        path = self.dp / ".capview" / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def du_k(path: Path) -> int:
    """``du -sk`` (KiB, hard links counted once)."""
    return int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])


def tree_hash(root: Path, skip: tuple[Path, ...] = ()) -> str:
    """Hash of names, types, modes, link targets and contents (not inode numbers or times);
    ``skip``: paths left out (a directory: with everything under it)."""
    h = hashlib.sha256()
    skip = tuple(Path(s) for s in skip)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if Path(dirpath) / d not in skip)
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            if p in skip:
                continue
            st = p.lstat()
            h.update(f"{p.relative_to(root)}\0{stat.S_IFMT(st.st_mode)}\0{stat.S_IMODE(st.st_mode)}\0".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
            elif stat.S_ISREG(st.st_mode):
                h.update(p.read_bytes())
    return h.hexdigest()
