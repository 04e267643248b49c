"""Where a HostConfig really goes, after ssh_config: address, port, user, ProxyJump, and the
known_hosts files that vouch for its key (for the connection and for error messages).

deploy.yaml's ``ssh.known_hosts``, when set, is the only file. Otherwise ssh_config decides
as it does for ssh(1): ``UserKnownHostsFile`` and ``GlobalKnownHostsFile`` (``none`` means no
file; unset means OpenSSH's defaults), with ``%d``, ``%u``, ``~`` and ``$VARS`` expanded.
``StrictHostKeyChecking`` is never read: capview refuses an unknown or changed key always.
"""

from __future__ import annotations

import getpass
import os
import re
from dataclasses import dataclass

from capview.config import HostConfig
from capview.errors import HostUnreachable


@dataclass(frozen=True)
class Target:
    """What a HostConfig resolves to after ssh_config (for messages and known_hosts)."""

    alias: str
    hostname: str
    port: int
    user: str
    known_hosts: tuple[str, ...]  # files that exist; checked in order
    known_hosts_hint: str  # the file a user should add the key to
    config_paths: tuple[str, ...]
    proxy_jump: str | None

    @property
    def hostport(self) -> str:
        return f"{self.hostname}:{self.port}"

    @property
    def label(self) -> str:
        if self.alias != self.hostname:
            return f"{self.alias} ({self.hostname}:{self.port})"
        return self.hostport


def expand(p: str) -> str:
    return os.path.expanduser(os.path.expandvars(p))


_DEFAULT_USER_KNOWN_HOSTS = ["~/.ssh/known_hosts", "~/.ssh/known_hosts2"]  # OpenSSH's defaults
_DEFAULT_GLOBAL_KNOWN_HOSTS = ["/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"]


def _expand_tokens(path: str, local_user: str) -> str:
    """ssh_config's %d (home), %u (local user) and %% in a known-hosts path, then ~ and $VARS."""
    home = os.path.expanduser("~")
    out = re.sub(r"%([du%])", lambda m: {"d": home, "u": local_user, "%": "%"}[m.group(1)], path)
    return expand(out)


def known_hosts_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


def resolve_target(host: HostConfig) -> Target:
    ssh = host.settings.ssh
    if ssh.config_file:
        cfg_path = expand(ssh.config_file)
        if cfg_path == os.devnull:  # the OpenSSH idiom for "no config file"
            config_paths: tuple[str, ...] = ()
        elif not os.path.isfile(cfg_path):
            raise HostUnreachable(f"{host.host}: ssh config file {ssh.config_file} not found")
        else:
            config_paths = (cfg_path,)
    else:
        default = os.path.expanduser("~/.ssh/config")
        config_paths = (default,) if os.access(default, os.R_OK) else ()
    local_user = getpass.getuser()
    hostname, port, user, proxy_jump = host.host, host.port or 22, host.user or local_user, None
    user_kh: list[str] | None = None  # None: not set in ssh_config (OpenSSH's defaults apply)
    global_kh: list[str] | None = None
    try:
        from asyncssh.config import SSHClientConfig

        cfg = SSHClientConfig.load(
            None, list(config_paths), False, False, False, local_user,
            host.user if host.user else (), host.host, host.port if host.port else (),
        )
        hostname = str(cfg.get("Hostname", host.host))
        port = int(cfg.get("Port", 22))  # type: ignore[arg-type]
        user = str(cfg.get("User", local_user))
        pj = cfg.get("ProxyJump")
        proxy_jump = str(pj) if pj and str(pj).lower() != "none" else None
        # "UserKnownHostsFile none" parses to []: no user file (checking stays on regardless)
        for name, files in (("UserKnownHostsFile", "user"), ("GlobalKnownHostsFile", "global")):
            value = cfg.get(name, None)
            if value is not None:
                listed = [str(p) for p in value]  # type: ignore[union-attr]
                if files == "user":
                    user_kh = listed
                else:
                    global_kh = listed
    except Exception as exc:  # a broken ssh config: asyncssh will say the same on connect
        raise HostUnreachable(f"{host.host}: cannot read ssh config {', '.join(config_paths)}: {exc}") from None
    # deploy.yaml's ssh.known_hosts, when set, is the one file; otherwise ssh_config decides
    # exactly as for ssh(1). StrictHostKeyChecking is never read: an unknown or changed key
    # is always refused (asyncssh ignores the option; _Client never accepts a key itself).
    if ssh.known_hosts:
        listed = [ssh.known_hosts]
    else:
        listed = (_DEFAULT_USER_KNOWN_HOSTS if user_kh is None else user_kh) + (
            _DEFAULT_GLOBAL_KNOWN_HOSTS if global_kh is None else global_kh)
    candidates = [_expand_tokens(p, local_user) for p in listed]
    hint = ssh.known_hosts or next(iter(user_kh if user_kh is not None else _DEFAULT_USER_KNOWN_HOSTS),
                                   "~/.ssh/known_hosts")
    if "%" in hint:
        hint = _expand_tokens(hint, local_user)
    existing = tuple(dict.fromkeys(p for p in candidates if os.path.isfile(p)))
    return Target(host.host, hostname, port, user, existing, hint, config_paths, proxy_jump)
