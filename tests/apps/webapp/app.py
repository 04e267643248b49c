"""A tiny app for the real-host tests: serves /health with its VERSION, writes SQLite rows.

Run from a release: ``python3 <deploy_path>/current/app.py PORT``. ``data`` is the
release's link to shared/data, so rows survive every deploy and rollback.
"""

import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HERE = os.path.dirname(os.path.realpath(__file__))
VERSION = open(os.path.join(HERE, "VERSION")).read().strip()
PORT = int(sys.argv[1])
DB = os.path.join(HERE, "data", "app.db")


def db():
    conn = sqlite3.connect(DB, timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS hits (id INTEGER PRIMARY KEY, at REAL, version TEXT)")
    return conn


class Handler(BaseHTTPRequestHandler):
    def reply(self, code: int, body: str) -> None:
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/health":
            broken = os.path.exists(os.path.join(HERE, "BROKEN"))
            self.reply(500 if broken else 200, VERSION)
        elif self.path == "/hit":
            with db() as conn:
                conn.execute("INSERT INTO hits (at, version) VALUES (?, ?)", (time.time(), VERSION))
                n = conn.execute("SELECT count(*) FROM hits").fetchone()[0]
            self.reply(200, f"{VERSION} {n}")
        else:
            self.reply(200, f"hello from {VERSION}")

    def log_message(self, *args):
        pass


ThreadingHTTPServer.allow_reuse_address = True
if os.environ.get("LISTEN_FDS") == "1" and os.environ.get("LISTEN_PID") == str(os.getpid()):
    # systemd socket activation: the listening socket is fd 3 and systemd keeps its own
    # copy open across restarts, so connections queue there while no process serves.
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler, bind_and_activate=False)
    server.socket = socket.socket(fileno=3)
    server.server_address = server.socket.getsockname()
    # SIGTERM: stop accepting, finish in-flight requests (up to 2 s), exit. Whatever is
    # still queued stays in systemd's socket for the next process: nothing is reset.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.05)
    deadline = time.monotonic() + 2.0
    for t in threading.enumerate():
        if t is not threading.main_thread():
            t.join(max(0.0, deadline - time.monotonic()))
    sys.exit(0)
server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
print(f"webapp {VERSION} listening on {PORT}", flush=True)  # the journal line `capview logs` tests read
if "--graceful" not in sys.argv:
    server.serve_forever()  # SIGTERM kills it at once (what the other tests are built around)

# --graceful: stop on SIGTERM (what `systemctl --user stop` sends) without resetting
# anyone: stop the accept loop, serve the connections already queued in the listen
# backlog, give in-flight requests up to 2 s, then exit. Dying at once resets queued
# connections that a proxy in front (Traefik) already sent a request on, and it cannot
# safely retry those (see docs/traefik.md).
signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
server.serve_forever(poll_interval=0.05)
server.socket.setblocking(False)
while True:
    try:
        conn, addr = server.socket.accept()
    except OSError:  # BlockingIOError: the backlog is empty
        break
    conn.setblocking(True)
    server.process_request(conn, addr)
server.socket.close()
deadline = time.monotonic() + 2.0
for t in threading.enumerate():
    if t is not threading.main_thread():
        t.join(max(0.0, deadline - time.monotonic()))
