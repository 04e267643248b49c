#!/usr/bin/env python3
"""capview demo app: a tiny stdlib-only web app, deployed by ``capview demo``.

    python3 app.py [PORT] [--pidfile PATH]      (PORT also from $PORT; default 8000)

* ``/health``   200 with the version as the body; 500 when a ``BROKEN_HEALTH``
                file sits in the release (the demo's broken version ships one)
* ``/``         ``templates/index.html`` rendered with string.Template; every
                request inserts a row into ``data/app.db`` (SQLite, table ``hits``)
* ``/static/*`` the CSS and SVG assets

Everything is relative to the release directory this file resolves to, so a
running process keeps serving its own release even after ``current`` moves.
``data`` is a symlink to ``shared/data`` in a release, so the database survives
deploys and rollbacks.
"""

from __future__ import annotations

import html
import mimetypes
import os
import signal
import sqlite3
import string
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
TEMPLATES = HERE / "templates"
DB_PATH = HERE / "data" / "app.db"
STARTED = time.time()


def read_version() -> str:
    """The VERSION file; without one, the release directory's name (releases/<version>)."""
    try:
        return (HERE / "VERSION").read_text(encoding="utf-8").strip() or HERE.name
    except OSError:
        return HERE.name


def read_env_file() -> dict[str, str]:
    """KEY=VALUE lines of ``.env`` (a symlink to shared/.env in a release)."""
    values: dict[str, str] = {}
    try:
        text = (HERE / ".env").read_text(encoding="utf-8")
    except OSError:
        return values
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            k, v = line.split("=", 1)
            values[k.strip()] = v.strip().strip("'\"")
    return values


VERSION = read_version()
ENV = read_env_file()


def db() -> sqlite3.Connection:
    conn = sqlite3.connect(str(DB_PATH), timeout=5.0)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS hits ("
        "id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, version TEXT NOT NULL, path TEXT NOT NULL)"
    )
    return conn


def record_hit(path: str) -> int:
    """Insert one row for this request; return the total row count."""
    conn = db()
    try:
        with conn:
            conn.execute("INSERT INTO hits (at, version, path) VALUES (?, ?, ?)", (time.time(), VERSION, path))
        return conn.execute("SELECT COUNT(*) FROM hits").fetchone()[0]
    finally:
        conn.close()


class Handler(BaseHTTPRequestHandler):
    server_version = f"capview-demo-app/{VERSION}"
    protocol_version = "HTTP/1.1"

    def do_HEAD(self) -> None:
        self.do_GET(head=True)

    def do_GET(self, head: bool = False) -> None:
        path = unquote(urlsplit(self.path).path)
        try:
            if path == "/health":
                if (HERE / "BROKEN_HEALTH").exists():
                    self.send(500, f"unhealthy: {VERSION} ships BROKEN_HEALTH\n", "text/plain; charset=utf-8", head)
                else:
                    self.send(200, VERSION, "text/plain; charset=utf-8", head)
            elif path in ("/", "/index.html"):
                self.index(path, head)
            elif path.startswith("/static/"):
                self.static(path[len("/static/"):], head)
            else:
                self.send(404, "not found\n", "text/plain; charset=utf-8", head)
        except Exception as e:  # one bad request must not kill the app
            self.log_error("error serving %s: %r", path, e)
            self.send(500, f"internal error: {e}\n", "text/plain; charset=utf-8", head)

    def index(self, path: str, head: bool) -> None:
        hits = record_hit(path)
        template = string.Template((TEMPLATES / "index.html").read_text(encoding="utf-8"))
        page = template.safe_substitute(
            version=html.escape(VERSION),
            hits=hits,
            release=html.escape(HERE.name),
            title=html.escape(ENV.get("APP_TITLE", "capview demo app")),
            secrets=len(ENV),
            pid=os.getpid(),
            uptime=f"{time.time() - STARTED:.0f}",
        )
        self.send(200, page, "text/html; charset=utf-8", head)

    def static(self, rel: str, head: bool) -> None:
        target = (STATIC / rel).resolve()
        root = STATIC.resolve()
        if root not in target.parents or not target.is_file():
            self.send(404, "not found\n", "text/plain; charset=utf-8", head)
            return
        ctype = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype == "image/svg+xml":
            ctype += "; charset=utf-8"
        self.send(200, target.read_bytes(), ctype, head)

    def send(self, status: int, body: str | bytes, ctype: str, head: bool = False) -> None:
        data = body.encode("utf-8") if isinstance(body, str) else body
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-App-Version", VERSION)
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not head:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        sys.stderr.write(f"{stamp} [{VERSION}] {self.address_string()} {format % args}\n")
        sys.stderr.flush()


def parse_args(argv: list[str]) -> tuple[int, str | None]:
    port = int(os.environ.get("PORT", "8000"))
    pidfile = os.environ.get("PIDFILE") or None
    it = iter(argv)
    for arg in it:
        if arg == "--pidfile":
            pidfile = next(it, None)
        elif arg.startswith("--pidfile="):
            pidfile = arg.split("=", 1)[1]
        else:
            port = int(arg)
    return port, pidfile


def write_pidfile(path: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(f"{os.getpid()}\n")
    os.replace(tmp, path)


def main(argv: list[str]) -> int:
    port, pidfile = parse_args(argv)
    try:
        os.setsid()  # detach from the SSH session's process group (no-op if `setsid` already did)
    except OSError:
        pass
    host = os.environ.get("HOST", "127.0.0.1")
    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    if pidfile:
        write_pidfile(pidfile)  # after bind: "the pid file exists" means "listening"
    sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} demo app {VERSION} ({HERE.name}) listening on {host}:{port} pid {os.getpid()}\n")
    sys.stderr.flush()
    try:
        server.serve_forever(poll_interval=0.2)
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        server.server_close()
        sys.stderr.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S')} demo app {VERSION} stopped\n")
        sys.stderr.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
