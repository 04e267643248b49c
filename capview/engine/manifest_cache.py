"""The client's copies of the manifests it wrote (issue 21: a 200,000-file release's
manifest is ~22 MB; a redeploy should not fetch it back over the link each time).

Content-addressed: a copy is stored under its own sha256, and setup offers the host the
sha256s this client holds for that host and deploy path (scripts/release.py ``listing``).
The host hashes the current release's ``manifest.tsv`` and sends only that sha256 when it
is one of them, else the whole text as before. So a copy is only ever used for a manifest
that hashes the same on the host - a release rewritten, replaced or re-created under the
same version hashes differently and is sent in full. A copy is hashed again when read
(a damaged file is never used), and nothing depends on it for safety: the host merges the
new manifest from its own file and checks it against the client's sha256 (upload.py).

One directory per host and deploy path in ``$XDG_CACHE_HOME/capview/manifests``
(default ``~/.cache``), mode 0700, files 0600 written by temp file + rename, the ``KEEP``
newest kept per directory and the ``KEEP_PATHS`` most recently written directories. A cache that cannot be read or written is ignored.
``CAPVIEW_MANIFEST_CACHE=off`` turns it off.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

KEEP = 3  # per host and deploy path: the current release's, and a rollback or two back
KEEP_PATHS = 64  # host and deploy path directories kept (the most recently written)
_SHA = re.compile(r"[0-9a-f]{64}")


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "capview" / "manifests"


def enabled() -> bool:
    return os.environ.get("CAPVIEW_MANIFEST_CACHE", "").lower() not in ("off", "0", "no", "false")


def text_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


class ManifestCache:
    """The copies for one host (``key``: user@host) and deploy path."""

    def __init__(self, key: str, deploy_path: str, directory: Path | None = None) -> None:
        ident = f"{key}\n{deploy_path}".encode("utf-8", "surrogateescape")
        self.directory = (directory or cache_dir()) / hashlib.sha256(ident).hexdigest()[:32]

    def _files(self) -> list[Path]:
        try:
            found = [p for p in self.directory.iterdir() if p.suffix == ".tsv" and _SHA.fullmatch(p.stem)]
            return sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)
        except OSError:
            return []

    def offered(self) -> tuple[str, ...]:
        """The sha256s to offer the host, newest first (64 hex digits each: safe in sh)."""
        return tuple(p.stem for p in self._files()[:KEEP])

    def get(self, sha: str) -> str | None:
        """The manifest text whose sha256 is ``sha``, or None (not held, unreadable, damaged)."""
        if not _SHA.fullmatch(sha):
            return None
        try:
            data = (self.directory / f"{sha}.tsv").read_bytes()
        except OSError:
            return None
        if hashlib.sha256(data).hexdigest() != sha:
            return None
        return data.decode("utf-8", "surrogateescape")

    def put(self, text: str, sha: str | None = None) -> None:
        """Keep ``text`` (a manifest the host has just confirmed) under its sha256."""
        data = text.encode("utf-8", "surrogateescape")
        sha = sha or hashlib.sha256(data).hexdigest()
        path = self.directory / f"{sha}.tsv"
        tmp = self.directory / f".{sha}.{os.getpid()}.tmp"
        try:
            self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            if path.exists():
                os.utime(path)  # the newest again (offered first)
            else:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            for old in self._files()[KEEP:]:
                old.unlink(missing_ok=True)
            self._trim_paths()
        except OSError:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass

    def _trim_paths(self) -> None:
        """Only the KEEP_PATHS most recently written directories stay (a test suite deploys
        to thousands of temporary paths)."""
        os.utime(self.directory)
        dirs = sorted((d for d in self.directory.parent.iterdir() if d.is_dir() and not d.is_symlink()),
                      key=lambda d: d.stat().st_mtime_ns, reverse=True)
        for old in dirs[KEEP_PATHS:]:
            for f in old.iterdir():
                f.unlink(missing_ok=True)
            old.rmdir()


def for_host(host) -> ManifestCache | None:
    """The cache of a HostConfig's deploy path, or None when turned off."""
    if not enabled():
        return None
    return ManifestCache(f"{host.user or ''}@{host.host}", str(host.settings.deploy_path))  # any port: a proxy, a tunnel
