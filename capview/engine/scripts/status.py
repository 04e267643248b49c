"""Read-only scripts: a host's status listing, and the preflight check.

The status script prints, nonce-framed: the top-level names of deploy_path (NUL
separated), the ``current`` link, the lock's owner.json, the history tail, free
disk, and per release its release.json, pinned marker and either a name-free inode
listing or the on-host sums (scripts/usage.py). Release names are framed only after
the host-side ``case`` filter.

Preflight checks a host can take a deploy, before anything changes (``capview check``
and every deploy's lock phase): each problem is one ``fail`` frame, warnings ``warn``;
it never stops at the first problem so the user sees all of them at once.
"""

from __future__ import annotations

import shlex
from textwrap import indent

from capview.config import HostConfig, Settings
from capview.engine.layout import CURRENT_TMP, LAYOUT_NAMES, PINNED, RELEASE_JSON, TRASH_PREFIX, HostPaths
from capview.engine.scripts.shell import Frames, q
from capview.engine.scripts.usage import (BATCH, BATCH_FIND, FINGERPRINT, cache_begin, cache_read, cold_sums_finish,
                                          cold_sums_start, names_function,
                                          sums_function)

HISTORY_TAIL = 500
# What a listing reads from files a host (or someone on it) may have made huge.
META_BYTES = 1024 * 1024  # release.json (ours are ~1 KiB); one byte more is read to detect "too big"
OWNER_BYTES = 16 * 1024  # the lock's owner.json
HISTORY_LINE_BYTES = 16 * 1024  # a longer history line is cut, then skipped as unreadable
MIN_FREE_KB = 100 * 1024  # warn below 100 MiB free
MIN_FREE_INODES = 10_000  # warn below this many free inodes
HERE = HostPaths("")  # the layout's names, relative to deploy_path (the scripts cd there)


def _batched() -> str:
    """sh functions reading many releases with a few processes, not a few per release
    (10,000 releases were 20,000 forks), the release dirs (``cv_names``) on stdin:
    ``cv_jsons`` frames each release.json (``sec json NAME``): one ``find -maxdepth 0``
    per BATCH paths keeps only regular files (never a FIFO or a symlink to a device) with
    their size, then ONE awk reads them all (a sh ``while read`` loop read its pipe a byte
    per syscall: 4 s for 10,000 releases); one over META_BYTES is cut with head as before,
    so the client still sees it is too big. ``cv_finds DIR...`` prints one ``finds``
    section of ``a|m releases/NAME`` + scripts/usage.py's inode lines (find's %H names the
    release: a validated releases/NAME, so it is safe inside awk's ``system``). xargs may
    run its command once on empty input: every batch command starts with
    ``[ "$#" -gt 0 ] || exit 0`` (a find without a path would list ".")."""
    return (
        "cv_jsons() {\n"
        f"  sed 's,$,/{RELEASE_JSON},' | xargs -n {BATCH} sh -c '[ \"$#\" -gt 0 ] || exit 0; "
        "find \"$@\" -maxdepth 0 -type f -printf \"%s %p\\n\" 2>/dev/null || true' jsons |\n"
        f"  awk -v M=\"$M\" -v max={META_BYTES} '{{f = $2; n = f; sub(\"^releases/\", \"\", n); sub(\"/.*$\", \"\", n); "
        "printf \"\\n%s json %s\\n\", M, n\n"
        "    if ($1 > max) {fflush(); system(\"head -c \" (max + 1) \" \" f \" 2>/dev/null\"); next}\n"
        "    got = 0; while (got <= max && (getline line < f) > 0) {print line; got += length(line) + 1}\n"
        "    close(f)}' 2>/dev/null || true\n"
        "}\n"
        "cv_finds() {\n"
        "  sec finds\n"
        f"  xargs -n {BATCH} sh -c '{BATCH_FIND}' finds\n"
        "}\n"
    )


def status_script(dp: str, frames: Frames, *, detail: bool = True, service: str = "") -> str:
    """detail=False sums each release on the host (one line each): enough for listings;
    prune needs the per-inode detail to size deleting a set of releases. ``service``: sh
    printing the service manager's answer (scripts/service.py service_state), same trip."""
    if detail:
        cache_start = indent(names_function() + _batched(), "  ")
        cache_end = indent("cv_names | cv_finds\n", "  ")
    else:  # one awk sums all releases, or the host's valid usage cache has them (scripts/usage.py)
        # the fingerprint (a stat of every releases/*/.capview entry: 0.4 s at 10,000 releases)
        # is taken in a job while the releases are framed, then the cache read as before
        cache_start = indent(names_function() + _batched() + sums_function()
                             + f"fpf=$(mktemp {q(HERE.meta)}/fingerprint.XXXXXX 2>/dev/null) || fpf=\n"
                             + f'if [ -n "$fpf" ]; then ( {FINGERPRINT} > "$fpf" ) 2>/dev/null & cvf=$!; fi\n', "  ")
        # the sums' job starts before the release.json framing, so its bounded wait overlaps it
        cache_end = indent('if [ -n "$fpf" ]; then wait "$cvf" || :; fp0=$(cat "$fpf" 2>/dev/null) || fp0=; rm -f "$fpf"\n'
                           f"else fp0=$({FINGERPRINT}); fi\n" + cache_read() + cache_begin() + cold_sums_start()
                           + "cv_names | cv_jsons\n" + cold_sums_finish(), "  ")
    if detail:
        cache_end = indent("cv_names | cv_jsons\n", "  ") + cache_end
    return frames.prelude() + f"""export LC_ALL=C
dp={q(HostPaths(dp).root)}
if [ ! -d "$dp" ]; then sec nodp; sec end; exit 0; fi
cd "$dp"
sec top
find . -mindepth 1 -maxdepth 1 -printf '%y %P\\0' 2>/dev/null || true
sec current
if [ -L current ]; then readlink current || true; fi
if [ -d {q(HERE.lock)} ]; then sec lock; head -c {OWNER_BYTES} {q(HERE.owner_json)} 2>/dev/null || true; fi
if [ -f {q(HERE.history)} ]; then sec history; tail -n {HISTORY_TAIL} {q(HERE.history)} 2>/dev/null | cut -b 1-{HISTORY_LINE_BYTES} || true; fi
sec df
df -Pk . 2>/dev/null | tail -n 1 || true
if [ -d releases ]; then
  sec releasesdir
{cache_start}  t=0; j=0
  for r in releases/{TRASH_PREFIX}*; do if [ -e "$r" ] || [ -L "$r" ]; then t=$((t+1)); fi; done
  sec trash; printf '%s\\n' "$t"
  for r in releases/*; do
    [ -e "$r" ] || [ -L "$r" ] || continue
    n=${{r#releases/}}
    case $n in [A-Za-z0-9]*) ;; *) j=$((j+1)); continue ;; esac
    case $n in *[!A-Za-z0-9._+-]*) j=$((j+1)); continue ;; esac
    if [ -L "$r" ]; then sec link "$n"; readlink "$r" || true; continue; fi
    if [ ! -d "$r" ]; then j=$((j+1)); continue; fi
    sec rel "$n"
    if [ -e "$r/"{q(PINNED)} ]; then sec pinned "$n"; fi
  done
  sec junk; printf '%s\\n' "$j"
{cache_end}fi
{service}sec end
"""


def build_tool(settings: Settings) -> str | None:
    """The program the build command runs (e.g. podman), to check it exists."""
    if settings.build is None:
        return None
    try:
        words = shlex.split(settings.build.command)
    except ValueError:
        return None
    return words[0] if words else None


def preflight(host: HostConfig, *, for_deploy: bool = True) -> str:
    """The checks (needs the frames prelude); exit 4 when one failed."""
    s = host.settings
    p = HostPaths(s.deploy_path)
    init = f"capview init {host.env or 'ENV'}"
    migrate = f"capview migrate-data {host.env or 'ENV'}"
    known = "|".join(sorted(LAYOUT_NAMES)) + f"|{CURRENT_TMP}*"
    lines = [
        'fail() { mark fail "$*"; failed=1; }',
        'warn() { mark warn "$*"; }',
        # a check that passed, for `capview check -v`
        'pass() { mark ok "$*"; }',
        "failed=0 legacy=0",
        f"dp={q(p.root)}",
        f'if [ ! -d "$dp" ]; then fail "$dp does not exist - run: "{q(init)}; '
        'elif [ ! -w "$dp" ]; then fail "$dp is not writable by $(id -un)"; else pass "$dp exists and is writable"; fi',
        # an app deployed in place (old layout): init refuses it, migrate-data is the way
        'if [ -d "$dp" ] && [ ! -d "$dp/releases" ]; then for n in "$dp"/* "$dp"/.[!.]* "$dp"/..?*; do '
        '[ -e "$n" ] || [ -L "$n" ] || continue; '
        f'case ${{n##*/}} in {known}) ;; *) legacy=1 ;; esac; done; fi',
        f'if [ "$legacy" = 1 ]; then fail "$dp holds an app deployed in place (old layout) - run: "{q(migrate)}; fi',
        "if command -v tar >/dev/null 2>&1; then pass 'tar is installed'; else fail 'tar is not installed on the host'; fi",
        # df -P prints one line per filesystem: 1K-blocks, used, available.
        'if [ -d "$dp" ]; then free=$(df -Pk "$dp" | awk \'NR==2 {print $4}\'); '
        'mark free_kb "$free"; '
        f'if [ "${{free:-0}}" -ge {MIN_FREE_KB} ]; then pass "${{free}} KiB free on $dp"; else warn "only ${{free}} KiB free on $dp"; fi; '
        # inodes run out before blocks with many small files; 0 total means "no fixed limit" (btrfs)
        'inodes=$(df -Pi "$dp" 2>/dev/null | awk \'NR==2 && $2 ~ /^[0-9]+$/ && $4 ~ /^[0-9]+$/ {print $2, $4}\'); '
        'itotal=${inodes%% *}; ifree=${inodes##* }; '
        f'if [ -n "$inodes" ] && [ "$itotal" -gt 0 ] && [ "$ifree" -lt {MIN_FREE_INODES} ]; then '
        'warn "only $ifree free inodes (files) of $itotal on $dp: every changed file of a deploy needs one"; fi; fi',
    ]
    if s.health is not None:
        lines.append(
            "if command -v curl >/dev/null 2>&1 || command -v wget >/dev/null 2>&1; then pass 'curl or wget is installed'; "
            "else fail 'neither curl nor wget is installed (needed for the health check)'; fi"
        )
    if s.data.sqlite and s.data.snapshots > 0:  # issue 18: the snapshot in the switch window needs it
        lines.append("if command -v sqlite3 >/dev/null 2>&1; then pass 'sqlite3 is installed'; "
                     "else fail 'sqlite3 is not installed on the host (data.sqlite snapshots need it)'; fi")
    if s.hooks.after_upload or s.hooks.before_start or s.hooks.after_switch or s.hooks.after_rollback or s.hooks.on_failure:
        lines.append("if command -v timeout >/dev/null 2>&1; then pass 'timeout is installed'; "
                     "else fail 'timeout (coreutils) is not installed on the host (hooks run under it)'; fi")
    tool = build_tool(s)
    if tool:
        lines.append(f"if command -v {q(tool)} >/dev/null 2>&1; then pass {q(tool + ' is installed')}; "
                     f"else fail {q(tool + ' is not installed on the host (build.command needs it)')}; fi")
    if s.service.manager == "systemd-user":
        unit = s.service.unit or ""
        lines += [
            "if ! command -v systemctl >/dev/null 2>&1; then fail 'systemctl is not installed on the host'; "
            "elif ! systemctl --user show-environment >/dev/null 2>&1; then "
            "fail \"systemctl --user cannot reach the user manager (XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR): "
            "is systemd --user running for $(id -un)? On a VPS run: sudo loginctl enable-linger $(id -un)\"; "
            f"elif ! systemctl --user cat {q(unit)} >/dev/null 2>&1; then "
            f"fail {q(f'systemd user unit {unit} not found - install it in ~/.config/systemd/user/ and run systemctl --user daemon-reload')}; "
            f"else pass {q(f'systemctl --user reaches the user manager; unit {unit} exists')}; fi",
        ]
    if for_deploy:
        for f in s.shared.files:
            path = f"{p.shared}/{f}"
            lines.append(f'if [ -e {q(path)} ]; then pass {q(path + " exists")}; '
                         f'elif [ "$legacy" = 0 ]; then fail {q(f"{path} is missing - run: {init}, then fill it in")}; fi')
    lines.append('[ "$failed" = 0 ] || exit 4')
    return "\n".join(lines) + "\n"
