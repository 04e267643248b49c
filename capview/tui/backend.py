"""What the dashboard talks to: the engine, injected into the App (harlequin style).

:class:`EngineBackend` is a thin binding of the engine's public entry points to one
loaded config and one transport. It returns the engine's own types unchanged --
``HostStatus``/``ReleaseInfo`` (engine.model), ``PrunePlan`` (engine.prune),
``DataPlan`` (engine.data), ``MigrationPlan`` (engine.migrate), ``DirEntry``/``Comparison``/``FilePair``
(engine.inspect), ``OperationResult`` and the event stream (engine.events), history
records as the engine parses them (ops.history) -- so the screens read the same fields
the CLI prints. Tests, screenshots and the TUI benchmark drive it over
``LocalTransport`` (tests/tui_world.py); ``capview ui`` over SSH.

``Backend`` is the protocol the App needs, for callers that wrap the engine (the
benchmark adds probes). This module imports neither textual nor rich.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Protocol, Sequence, runtime_checkable

from capview.config import Config, Environment
from capview.engine.context import OperationResult
from capview.engine.events import Emit
from capview.engine.model import HostStatus
from capview.errors import CapviewError, HostUnreachable, LockHeld, UsageError

if TYPE_CHECKING:  # pragma: no cover
    from capview.engine.data import DataPlan
    from capview.engine.inspect import Comparison, DirEntry, FilePair
    from capview.engine.manifest import Entry as ManifestEntry
    from capview.engine.migrate import MigrationPlan
    from capview.engine.logs import HostLogs
    from capview.engine.prune import PrunePlan
    from capview.engine.verify import Verification

Clock = Callable[[], float]
STATUS_CONCURRENCY = 64  # hosts whose status is fetched at once (reads are not paced by max_parallel)
HISTORY_LIMIT = 200  # records per host the history screen reads
MANIFEST_LIMIT = 8_000_000  # manifest.tsv bytes the Manifest tab reads (~80k files)


@runtime_checkable
class Backend(Protocol):
    """Everything the dashboard needs. Operations report progress through ``emit``."""

    label: str  # shown in the header: the config path

    def environments(self) -> Sequence[Environment]: ...
    def default_version(self) -> str: ...

    async def status(self, env: str, host: str | None = None) -> list[HostStatus]: ...
    async def history(self, env: str, host: str | None = None, limit: int = HISTORY_LIMIT) -> dict[str, list[dict]]: ...

    async def release(self, env: str, version: str | None, *, host: str | None = None,
                      dry_run: bool = False, strategy: str | None = None, emit: Emit) -> OperationResult: ...
    async def rollback(self, env: str, *, to: str | None = None, host: str | None = None,
                       force: bool = False, restore_data: bool = False, emit: Emit) -> OperationResult: ...
    async def plan_data(self, env: str, *, to: str, host: str | None = None,
                        force: bool = False) -> "list[DataPlan]": ...
    async def plan_prune(self, env: str, *, keep: int | None = None, host: str | None = None) -> "list[PrunePlan]": ...
    async def prune(self, env: str, *, keep: int | None = None, host: str | None = None,
                    emit: Emit) -> OperationResult: ...
    async def pin(self, env: str, version: str, *, host: str | None = None) -> OperationResult: ...
    async def unpin(self, env: str, version: str, *, host: str | None = None) -> OperationResult: ...
    async def unlock(self, env: str, *, host: str | None = None, force: bool = False) -> OperationResult: ...
    async def plan_migration(self, env: str, *, host: str | None = None) -> "list[MigrationPlan]": ...
    async def migrate(self, env: str, *, host: str | None = None, dry_run: bool = False,
                      rewrite_unit: bool = False, emit: Emit) -> OperationResult: ...
    async def restart(self, env: str, *, host: str | None = None, emit: Emit) -> OperationResult: ...
    async def logs(self, env: str, *, host: str | None = None, lines: int = 200, follow: bool = False,
                   on_line: Callable[[str, str], None]) -> "list[HostLogs]": ...

    async def release_json(self, env: str, host: str, version: str) -> dict: ...
    async def manifest(self, env: str, host: str, version: str) -> "dict[str, ManifestEntry]": ...
    async def list_dir(self, env: str, host: str, version: str, path: str = "") -> "list[DirEntry]": ...
    async def read_text(self, env: str, host: str, version: str, path: str) -> str: ...
    async def release_logs(self, env: str, host: str, version: str) -> dict[str, str | None]: ...
    async def compare(self, env: str, host: str, a: str, b: str) -> "Comparison": ...
    async def read_pair(self, env: str, host: str, a: str, b: str, path: str) -> "FilePair": ...
    async def verify(self, env: str, host: str, version: str) -> "Verification": ...

    async def close(self) -> None: ...


class EngineBackend:
    """The engine on one config. Construct with a config path or a loaded ``Config``;
    ``transport`` defaults to a pooled ``SshTransport``. Engine modules are imported on
    first use, so opening the dashboard does not wait for every one of them."""

    def __init__(
        self,
        config_path: Path | str | None = None,
        *,
        config: Config | None = None,
        transport: Any = None,
        clock: Clock | None = None,
        operator: str | None = None,
        label: str | None = None,
    ) -> None:
        if config is None and config_path is None:
            raise UsageError("EngineBackend needs a config path or a Config")
        self.config_path = Path(config_path) if config_path is not None else Path(config.path)  # type: ignore[union-attr]
        self._config = config
        self._transport = transport
        self.clock = clock or time.time
        self.operator = operator
        self.label = label or str(self.config_path)

    # -- plumbing

    @property
    def config(self) -> Config:
        if self._config is None:
            from capview.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    def load(self) -> "EngineBackend":
        """Parse deploy.yaml now (raises ConfigError), so the CLI can report it before the UI opens."""
        _ = self.config
        return self

    @property
    def transport(self) -> Any:
        if self._transport is None:
            from capview.remote.ssh import SshTransport

            self._transport = SshTransport()
        return self._transport

    def context(self, emit: Emit | None = None) -> Any:
        from capview.engine.context import Context
        from capview.engine.events import discard

        kw: dict[str, Any] = dict(transport=self.transport, clock=self.clock, emit=emit or discard)
        if self.operator:
            kw["operator"] = self.operator
        return Context(**kw)

    def env(self, name: str, strategy: str | None = None) -> Environment:
        env = self.config.env(name)
        if strategy and strategy != env.strategy:
            env = dataclasses.replace(env, strategy=strategy)  # type: ignore[arg-type]
        return env

    def _host(self, env: str, host: str) -> Any:
        return self.env(env).host(host)

    # -- reading

    def environments(self) -> Sequence[Environment]:
        return self.config.environments

    def default_version(self) -> str:
        from capview.engine.layout import default_version

        envs = self.config.environments
        source = envs[0].settings.source if envs else Path.cwd()
        return default_version(source, self.clock())

    def _reading(self, env: str) -> Environment:
        # Reading is not deploying: max_parallel paces deploys, but the dashboard reads every
        # host at once (one read-only script each). With the default 10, 50 hosts took five
        # waves of round trips (benchmarks/tui_bench.py); the transport still caps connects.
        e = self.env(env)
        wanted = min(len(e.hosts), STATUS_CONCURRENCY)
        return dataclasses.replace(e, max_parallel=wanted) if e.max_parallel < wanted else e

    async def status(self, env: str, host: str | None = None) -> list[HostStatus]:
        from capview.engine.status import status

        return list(await status(self.context(), self._reading(env), host=host))

    async def history(self, env: str, host: str | None = None, limit: int = HISTORY_LIMIT) -> dict[str, list[dict]]:
        from capview.engine.ops import history

        return await history(self.context(), self._reading(env), host=host, limit=limit)

    # -- operations

    async def release(self, env: str, version: str | None, *, host: str | None = None,
                      dry_run: bool = False, strategy: str | None = None, emit: Emit) -> OperationResult:
        from capview.engine.deploy import release

        return await release(self.context(emit), self.env(env, strategy), version, host=host, dry_run=dry_run)

    async def rollback(self, env: str, *, to: str | None = None, host: str | None = None,
                       force: bool = False, restore_data: bool = False, emit: Emit) -> OperationResult:
        from capview.engine.rollback import rollback

        return await rollback(self.context(emit), self.env(env), to=to, host=host, force=force,
                              restore_data=restore_data)

    async def plan_data(self, env: str, *, to: str, host: str | None = None,
                        force: bool = False) -> "list[DataPlan]":
        from capview.engine.data import plan_data

        return list(await plan_data(self.context(), self.env(env), to=to, host=host, force=force))

    async def plan_prune(self, env: str, *, keep: int | None = None, host: str | None = None) -> "list[PrunePlan]":
        from capview.engine.prune import plan_prune

        return list(await plan_prune(self.context(), self.env(env), keep=keep, host=host))

    async def prune(self, env: str, *, keep: int | None = None, host: str | None = None, emit: Emit) -> OperationResult:
        from capview.engine.prune import prune

        return await prune(self.context(emit), self.env(env), keep=keep, host=host)

    async def pin(self, env: str, version: str, *, host: str | None = None) -> OperationResult:
        from capview.engine.ops import pin

        return raise_if_failed(await pin(self.context(), self.env(env), version, host=host), "pin")

    async def unpin(self, env: str, version: str, *, host: str | None = None) -> OperationResult:
        from capview.engine.ops import unpin

        return raise_if_failed(await unpin(self.context(), self.env(env), version, host=host), "unpin")

    async def unlock(self, env: str, *, host: str | None = None, force: bool = False) -> OperationResult:
        from capview.engine.ops import unlock

        return raise_if_failed(await unlock(self.context(), self.env(env), host=host, force=force), "unlock")

    async def plan_migration(self, env: str, *, host: str | None = None) -> "list[MigrationPlan]":
        from capview.engine.migrate import plan_migration

        return list(await plan_migration(self.context(), self.env(env), host=host))

    async def migrate(self, env: str, *, host: str | None = None, dry_run: bool = False,
                      rewrite_unit: bool = False, emit: Emit) -> OperationResult:
        from capview.engine.migrate import migrate

        return await migrate(self.context(emit), self.env(env), host=host, dry_run=dry_run,
                             rewrite_unit=rewrite_unit)

    async def restart(self, env: str, *, host: str | None = None, emit: Emit) -> OperationResult:
        from capview.engine.restart import restart

        return await restart(self.context(emit), self.env(env), host=host)

    async def logs(self, env: str, *, host: str | None = None, lines: int = 200, follow: bool = False,
                   on_line: Callable[[str, str], None]) -> "list[HostLogs]":
        """The service's own log (``capview logs``' engine); ``follow`` runs until cancelled."""
        from capview.engine.logs import logs

        return await logs(self.context(), self.env(env), host=host, lines=lines, follow=follow, on_line=on_line)

    # -- inspection (every path is checked by engine.inspect, on both sides)

    async def release_json(self, env: str, host: str, version: str) -> dict:
        text = await self.read_text(env, host, version, ".capview/release.json")
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise CapviewError(f"{host}: releases/{version}/.capview/release.json is not valid JSON ({exc})")
        return data if isinstance(data, dict) else {"release.json": data}

    async def manifest(self, env: str, host: str, version: str) -> "dict[str, ManifestEntry]":
        from capview.engine.inspect import read_text
        from capview.engine.manifest import parse_manifest

        text = await read_text(self.context(), self._host(env, host), version, ".capview/manifest.tsv",
                               MANIFEST_LIMIT)
        return parse_manifest(text)

    async def list_dir(self, env: str, host: str, version: str, path: str = "") -> "list[DirEntry]":
        from capview.engine.inspect import list_dir

        return await list_dir(self.context(), self._host(env, host), version, path)

    async def read_text(self, env: str, host: str, version: str, path: str) -> str:
        from capview.engine.inspect import read_text

        return await read_text(self.context(), self._host(env, host), version, path)

    async def release_logs(self, env: str, host: str, version: str) -> dict[str, str | None]:
        from capview.engine.inspect import release_logs

        return await release_logs(self.context(), self._host(env, host), version)

    async def compare(self, env: str, host: str, a: str, b: str) -> "Comparison":
        from capview.engine.inspect import compare

        return await compare(self.context(), self._host(env, host), a, b)

    async def read_pair(self, env: str, host: str, a: str, b: str, path: str) -> "FilePair":
        from capview.engine.inspect import read_pair

        return await read_pair(self.context(), self._host(env, host), a, b, path)

    async def verify(self, env: str, host: str, version: str) -> "Verification":
        """``capview verify``'s check of one release on one host (re-hashes every file)."""
        from capview.engine.verify import verify_release

        return await verify_release(self.context(), self._host(env, host), version)

    async def close(self) -> None:
        if self._transport is not None:
            await self._transport.close()


def raise_if_failed(result: OperationResult, what: str) -> OperationResult:
    """pin / unpin / unlock return an OperationResult; a failed one becomes the exception
    the error modal shows (the engine's message, one line per host)."""
    if result.ok:
        return result
    msg = "; ".join(f"{h.host}: {h.message or h.outcome}" for h in result.hosts
                    if h.outcome not in ("ok", "skipped")) or f"{what} failed"
    if result.exit_code == 3:
        raise LockHeld(msg)
    if result.exit_code == 4:
        raise HostUnreachable(msg)
    raise CapviewError(msg)


__all__ = ["Backend", "EngineBackend", "raise_if_failed", "STATUS_CONCURRENCY", "HISTORY_LIMIT"]
