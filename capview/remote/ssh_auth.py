"""Public-key login in one round trip, not three (issue 21).

asyncssh, like OpenSSH's client, logs in with three request/answer pairs after the
key exchange: ``none`` (to learn the server's methods), a public-key *query* (may I
use this key?), then the *signed* request. RFC 4252 lets a client skip both: any
method may come first (section 5) and a signature may be sent without asking
(section 7). At 100 ms RTT that is 0.2 s off every connect: a redeploy, a rollback,
a listing.

Only capview's own connections (``fast_owner``) take the short way, and only with a
key it holds in memory (an identity file): an agent or security key is still
queried first, because signing with one may need the user (a confirm prompt, a
touch) and must not be spent on a key the server would refuse. A refused signature
is just a failed attempt: asyncssh goes on with the next key, then the next method,
from the server's list, as before. If asyncssh's internals change, ``install`` leaves
the stock flow in place (``installed()`` says which).
"""

from __future__ import annotations

from typing import Callable

try:  # private asyncssh API: checked, and the stock flow is kept if it moved
    from asyncssh import auth as _auth
    from asyncssh.public_key import SSHLocalKeyPair
    _NULL = _auth._client_auth_handlers[b"none"]
    _PUBKEY = _auth._client_auth_handlers[b"publickey"]
    _SIGNED = getattr(_PUBKEY, "_send_signed_request", None)
except (ImportError, AttributeError, KeyError):  # pragma: no cover - another asyncssh
    _auth = None
    _SIGNED = None

_is_fast: Callable[[object], bool] = lambda owner: False
_done = False


def _fast(conn) -> bool:
    return _is_fast(getattr(conn, "_owner", None)) and isinstance(getattr(conn, "_preferred_auth", None), list)


if _SIGNED is not None:
    class _SkipNull(_NULL):  # type: ignore[misc, valid-type]
        """``none`` is not sent: the client's own preferred methods are tried straight away
        (the server's list comes with the first failure, as it would have with none's)."""

        async def _start(self) -> None:
            conn = self._conn
            if not _fast(conn):
                return await super()._start()
            conn._auth_methods = [b"none", *conn._preferred_auth]
            conn.try_next_auth(next_method=True)

    class _SignFirst(_PUBKEY):  # type: ignore[misc, valid-type]
        """A key held in memory is signed at once, without the query round trip."""

        async def _start(self) -> None:
            conn = self._conn
            if not _fast(conn):
                return await super()._start()
            self._keypair = await conn.public_key_auth_requested()
            if self._keypair is None:
                conn.try_next_auth(next_method=True)
                return
            if isinstance(self._keypair, SSHLocalKeyPair) and not self._keypair.algorithm.startswith(b"sk-"):
                await self._send_signed_request()
            else:  # an agent's or a security key: ask first
                await self.send_request(_auth.Boolean(False), _auth.String(self._keypair.algorithm),
                                        _auth.String(self._keypair.public_data))


def install(fast_owner: Callable[[object], bool]) -> bool:
    """Route asyncssh's ``none`` and ``publickey`` client handlers through the short flow
    for connections whose client object ``fast_owner`` accepts. True if installed."""
    global _is_fast, _done
    if _SIGNED is None or not hasattr(_auth, "Boolean") or not hasattr(_auth, "String"):
        return False
    _is_fast = fast_owner
    if not _done:
        _auth._client_auth_handlers[b"none"] = _SkipNull
        _auth._client_auth_handlers[b"publickey"] = _SignFirst
        _done = True
    return True


def installed() -> bool:
    return _done
