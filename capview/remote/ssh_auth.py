"""Public-key login in one round trip, not four (issue 21).

asyncssh, like OpenSSH's client, logs in with four request/answer pairs after the key
exchange: the ``ssh-userauth`` service request, ``none`` (to learn the server's
methods), a public-key *query* (may I use this key?), then the *signed* request. RFC
4252 lets a client skip two: any method may come first (section 5) and a signature may
be sent without asking (section 7); and the first request goes right behind the
service request instead of waiting for its acceptance (the server reads them in
order: a refusal is a disconnect either way). At 100 ms RTT that is 0.3 s off every
connect: a redeploy, a rollback, a listing.

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
    from asyncssh import connection as _connection
    from asyncssh.constants import MSG_SERVICE_ACCEPT
    from asyncssh.public_key import SSHLocalKeyPair
    _NULL = _auth._client_auth_handlers[b"none"]
    _PUBKEY = _auth._client_auth_handlers[b"publickey"]
    _SIGNED = getattr(_PUBKEY, "_send_signed_request", None)
    _ACCEPT = _connection.SSHConnection._packet_handlers[MSG_SERVICE_ACCEPT]
    _SERVICE_REQUEST = _connection.SSHConnection.send_service_request
    _USERAUTH = _connection._USERAUTH_SERVICE
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


def _service_request(self, service: bytes) -> None:
    """After the ``ssh-userauth`` request, begin the login at once, as the acceptance would."""
    _SERVICE_REQUEST(self, service)
    if service == _USERAUTH and self.is_client() and _fast(self) and not self._auth_in_progress:
        self._capview_early_auth = True
        self._auth_in_progress = True
        if self._owner:
            self._owner.begin_auth(self._username)
        self.try_next_auth()


def _service_accept(self, pkttype: int, pktid: int, packet) -> None:
    """The acceptance of a login already begun: checked, nothing more to start."""
    if not getattr(self, "_capview_early_auth", False):
        return _ACCEPT(self, pkttype, pktid, packet)
    self._capview_early_auth = False
    service = packet.get_string()
    packet.check_end()
    if service != _USERAUTH or service != self._next_service:
        raise _connection.ServiceNotAvailable("Unexpected service in service accept")
    self._next_service = None


def install(fast_owner: Callable[[object], bool]) -> bool:
    """Route asyncssh's service request and its ``none`` and ``publickey`` client handlers
    through the short flow for connections whose client object ``fast_owner`` accepts.
    True if installed."""
    global _is_fast, _done
    if (_SIGNED is None or not hasattr(_auth, "Boolean") or not hasattr(_auth, "String")
            or not hasattr(_connection, "ServiceNotAvailable")):
        return False
    _is_fast = fast_owner
    if not _done:
        _auth._client_auth_handlers[b"none"] = _SkipNull
        _auth._client_auth_handlers[b"publickey"] = _SignFirst
        _connection.SSHConnection.send_service_request = _service_request
        _connection.SSHConnection._packet_handlers[MSG_SERVICE_ACCEPT] = _service_accept
        _done = True
    return True


def installed() -> bool:
    return _done
