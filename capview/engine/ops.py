"""Small host operations: init, pin/unpin, history. One script per host each."""

from __future__ import annotations

from capview.config import Environment, HostConfig
from capview.engine.context import Context, OperationResult
from capview.engine.events import HostWarning
from capview.engine.frames import Frames, one_line
from capview.engine.history import append_record_script, history_record, parse_history_counted, shown_record
from capview.engine.hostop import Done, failed, log, run_op
from capview.engine.layout import HostPaths, validate_version
from capview.engine.manifest import safe_relpath
from capview.engine.script import q
from capview.engine.shared_links import refuse_symlinked_parents
from capview.engine.status import LAYOUT_NAMES, each_host
from capview.errors import RemoteError, UsageError


def _run_checked(res, what: str) -> str:
    if not res.ok:
        raise RemoteError(one_line(res.stderr or f"{what} script exited {res.exit_status}"),
                          exit_status=res.exit_status, stderr=res.stderr)
    return res.stdout


# ---------------------------------------------------------------- init

def init_script(host: HostConfig, frames: Frames, record: dict) -> str:
    s = host.settings
    p = HostPaths(s.deploy_path)
    for rel in (*s.shared.dirs, *s.shared.files):
        if not safe_relpath(rel):
            raise UsageError(f"shared path {rel!r} must be relative and stay inside shared/")
    known = "|".join(sorted(LAYOUT_NAMES))
    lines = [
        frames.prelude(),
        "note() { sec \"$1\"; printf '%s\\n' \"$2\"; }",
        "mkd() { if [ -d \"$1\" ]; then note exists \"$2\"; else mkdir -p -- \"$1\"; note created \"$2\"; fi; }",
        # shared files start empty and private (secrets go there)
        "mkf() { if [ -e \"$1\" ] || [ -L \"$1\" ]; then note exists \"$2\"; else mkdir -p -- \"$(dirname -- \"$1\")\"; "
        "(umask 077; : > \"$1\"); chmod 600 \"$1\"; note created \"$2\"; fi; }",
        f"dp={q(p.root)}",
        # Creating releases/ next to an old in-place app would make a mixed layout.
        'if [ -d "$dp" ] && [ ! -d "$dp/releases" ]; then',
        '  for n in "$dp"/* "$dp"/.[!.]* "$dp"/..?*; do',
        '    [ -e "$n" ] || [ -L "$n" ] || continue',
        f'    case ${{n##*/}} in {known}) ;; *) sec legacy; exit 0 ;; esac',
        "  done",
        "fi",
        # issue 13: shared paths are never created through a symlinked parent inside shared/
        "refuse() { sec refused; printf '%s\\n' \"$1\"; exit 0; }",
        'if [ -d "$dp/shared" ]; then cd "$dp/shared"',
        *(line for path in (*s.shared.dirs, *s.shared.files)
          for line in refuse_symlinked_parents(p.shared, path, create=False, fail="refuse")),
        "cd /; fi",
        'mkd "$dp" "$dp"',
    ]
    lines += [f"mkd {q(path)} {q(path)}" for path in (p.releases, p.shared, p.meta)]
    lines += [f"mkd {q(p.shared + '/' + d)} {q(p.shared + '/' + d)}" for d in s.shared.dirs]
    lines += [f"mkf {q(p.shared + '/' + f)} {q(p.shared + '/' + f)}" for f in s.shared.files]
    lines.append(append_record_script(p.root, record).rstrip("\n"))
    lines.append("sec end")
    return "\n".join(lines) + "\n"


async def init(ctx: Context, env: Environment, host: str | None = None) -> OperationResult:
    """Create releases/, shared/ (configured dirs; files empty, mode 0600), .capview/.
    Idempotent: says what already existed. Refuses on an old in-place layout."""

    async def one(h: HostConfig) -> Done:
        frames = Frames.new()
        rec = history_record("init", h.name, ctx.operator, ctx.clock(), outcome="ok")
        out = _run_checked(await ctx.transport.run(h, init_script(h, frames, rec)), "init")
        created, existed = [], []
        for kind, _, body in frames.parse(out):
            if kind == "refused":
                return failed(body.strip())
            if kind == "legacy":
                return failed(f"{h.settings.deploy_path} holds an app deployed in place (old layout): "
                              f"run capview migrate-data {h.env or 'ENV'} instead of init")
            if kind in ("created", "exists"):
                path = body.rstrip("\n")
                (created if kind == "created" else existed).append(path)
                log(ctx, h, f"{'created' if kind == 'created' else 'exists '} {path}")
        if not created:
            return Done(True, "already initialised (everything existed)")
        return Done(True, f"created {len(created)}, {len(existed)} already existed")

    return await run_op(ctx, env, host, "init", one)


# ---------------------------------------------------------------- pin / unpin

def pin_script(dp: str, version: str, pin: bool, frames: Frames, record: dict) -> str:
    p = HostPaths(dp)
    rel = p.release(version)
    marker = f"{rel}/.capview/pinned"
    change = (f"mkdir -p {q(rel + '/.capview')}\n: > {q(marker)}\n" if pin else f"rm -f {q(marker)}\n")
    already = f"[ -e {q(marker)} ]" if pin else f"[ ! -e {q(marker)} ]"
    return (
        frames.prelude()
        + f"if [ -L {q(rel)} ] || [ ! -d {q(rel)} ]; then sec missing; exit 0; fi\n"
        + f"if {already}; then sec already; exit 0; fi\n"
        + change
        + append_record_script(dp, record)
        + "sec changed\n"
    )


async def _pin(ctx: Context, env: Environment, version: str, host: str | None, pin: bool) -> OperationResult:
    validate_version(version)
    op = "pin" if pin else "unpin"

    async def one(h: HostConfig) -> Done:
        frames = Frames.new()
        rec = history_record(op, h.name, ctx.operator, ctx.clock(), version=version, outcome="ok")
        out = _run_checked(await ctx.transport.run(h, pin_script(h.settings.deploy_path, version, pin, frames, rec)), op)
        kinds = {k for k, _, _ in frames.parse(out)}
        if "missing" in kinds:
            return failed(f"no release {version} on {h.name}", version=version)
        if "already" in kinds:
            return Done(True, f"{version} was already {'pinned' if pin else 'not pinned'}", version=version)
        if "changed" not in kinds:
            raise RemoteError(f"{op} script ended early")
        return Done(True, f"{version} {'pinned: prune will keep it' if pin else 'unpinned'}", version=version)

    return await run_op(ctx, env, host, op, one, version=version)


async def pin(ctx: Context, env: Environment, version: str, host: str | None = None) -> OperationResult:
    """Mark a release so prune (and deploy cleanup) never deletes it."""
    return await _pin(ctx, env, version, host, True)


async def unpin(ctx: Context, env: Environment, version: str, host: str | None = None) -> OperationResult:
    return await _pin(ctx, env, version, host, False)


# ---------------------------------------------------------------- history

HISTORY_LINE_BYTES = 16 * 1024  # longer lines are cut on the host (then skipped as unreadable)


def history_script(dp: str, frames: Frames, limit: int | None) -> str:
    path = HostPaths(dp).history
    read = (f"tail -n {int(limit)} {q(path)}" if limit else f"cat {q(path)}") + f" | cut -b 1-{HISTORY_LINE_BYTES}"
    return frames.prelude() + f"sec history\nif [ -f {q(path)} ]; then {read}; fi\nsec end\n"


async def history(ctx: Context, env: Environment, host: str | None = None,
                  limit: int | None = 1000) -> dict[str, list[dict]]:
    """Per host, its history records oldest first (the last ``limit``). An unreachable
    host maps to [] and a HostWarning event says why; so do skipped unreadable lines."""

    async def one(h: HostConfig) -> tuple[str, list[dict]]:
        frames = Frames.new()
        try:
            out = _run_checked(await ctx.transport.run(h, history_script(h.settings.deploy_path, frames, limit)), "history")
        except Exception as exc:
            ctx.event(HostWarning, h.name, message=f"history unavailable: {one_line(str(exc))}")
            return h.name, []
        body = next((b for k, _, b in frames.parse(out) if k == "history"), "")
        records, skipped = parse_history_counted(body)
        shown = [r for r in records if shown_record(r)]
        skipped += len(records) - len(shown)
        if skipped:
            ctx.event(HostWarning, h.name, message=f"history: skipped {skipped} unreadable "
                                                   f"line{'' if skipped == 1 else 's'} of {HostPaths(h.settings.deploy_path).history}")
        return h.name, shown

    return dict(await each_host(env, host, one))


from capview.engine.unlock import unlock  # noqa: E402,F401  (the fronts import every small op from here)
