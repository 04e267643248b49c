"""`capview demo`: the whole product on an embedded sandbox host (no VPS needed).

* ``server.py``  -- an asyncssh SSH server on 127.0.0.1 that runs commands with /bin/sh
* ``sandbox.py`` -- the sandbox directory: hosts, app sources, keys, a real deploy.yaml
* ``runner.py``  -- ``run_demo()``: prepare, serve, seed history through the engine, show it
* ``app/``       -- the sample app (stdlib-only HTTP + SQLite) the demo deploys
* ``appctl.sh``  -- its start/stop/status commands (``service.manager: command``)
"""
