"""Upload: one tar stream of the changed files; the rest is taken from the previous
release's *manifest*, never from whatever else lies in its directory.

On the host, one script: extract the stream into ``<release>/.capview/incoming``;
with awk, merge the previous ``manifest.tsv`` (minus the paths the client dropped)
and the sent entries into the new manifest, checked against the client's sha256 of
it; create every listed directory fresh; hard-link the previous release's listed
files and links *by path* (the list is derived on the host, so it never crosses the
wire or reaches argv); put the sent files in place; set the directory modes. Build
outputs, files an app wrote at run time, stray links and the old ``.capview/`` are
never carried over. Uploaded files are read-only (manifest.py), so the shared
inodes cannot be written in place.

Before linking, the previous release's listed files are checked against its
manifest (type, mode, size): if one was changed in place, the script empties the
new release and exits ``DRIFT``; the deploy then sends every file instead.
The stat lines of the shared files are kept in ``.capview/shared.stat`` for the
check after the build (verify.after_build_script).
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import tarfile
import threading
from pathlib import Path
from typing import AsyncIterator, Callable

from capview.engine.compress import gzip_compressor
from capview.engine.layout import HostPaths
from capview.engine.manifest import Delta, Entry, escape
from capview.engine.scripts.shell import Frames, parse_markers, q

CHUNK = 256 * 1024
ProgressFn = Callable[[int, int], None]  # (files_done, bytes_done)
DRIFT = 7  # upload script exit: the previous release differs from its manifest; send all
NO_GZIP = 8  # upload script exit, before reading anything: a gzip stream but no gzip on the host
SHARED_STAT = "%f %s %i %.9Y"  # stat -c: raw mode, size, inode, mtime (ns)

# awk helpers: percent-unescape, octal, and the validity rule of manifest.parse_manifest
# (no empty, "." or ".." component: two string tests and one regex, not a split - 200,000 lines).
AWK_HELPERS = r"""
BEGIN { FS = "\t"; for (i = 1; i < 256; i++) ch[sprintf("%02X", i)] = sprintf("%c", i); nd = 0 }
function un(s,   o, i) { o = ""; while ((i = index(s, "%")) > 0) { o = o substr(s, 1, i - 1) ch[substr(s, i + 1, 2)]; s = substr(s, i + 3) } return o s }
function oct(s,   n, i) { n = 0; for (i = 1; i <= length(s); i++) n = n * 8 + substr(s, i, 1); return n }
function valid(p) {
  if (NF != 5 || $1 !~ /^[fdl]$/ || $2 !~ /^[0-7]+$/ || $3 !~ /^[0-9]+$/ || p == "" || substr(p, 1, 1) == "/") return 0
  if ($1 == "f" && (length($4) != 64 || $4 ~ /[^0-9a-f]/)) return 0
  if (index(p, "//") || substr(p, length(p)) == "/" || p ~ /(^|\/)\.\.?(\/|$)/) return 0
  return 1
}
"""
# awk: the new manifest (man=) and the lists the host builds the release from (in out=).
# part=drop: escaped paths not taken over; part=prev: the previous manifest (only valid
# lines count); part=add: the sent entries. Writes link.nul ("./path" NUL-separated:
# files and links to hard-link), link.expect (what stat -c '%f %s' must print for each),
# dirs.nul (every dir) and mode-<m>.nul + modes (dirs by mode, deepest first).
MERGE_AWK = AWK_HELPERS + r"""
function dir(p, m) { nd++; dp[nd] = p; dm[nd] = m; printf "./%s%c", p, 0 > (out "/dirs.nul") }
part == "drop" { d[$0] = 1; next }
part == "prev" {
  if ($5 in d) next
  p = un($5); if (!valid(p)) next
  print > man
  if ($1 == "d") dir(p, $2)
  else {
    printf "./%s%c", p, 0 > (out "/link.nul")
    if ($1 == "f") { if (!($2 in ox)) ox[$2] = sprintf("%x", 32768 + oct($2)); print ox[$2], $3 > (out "/link.expect") }
    else printf "a1ff %d\n", length(un($4)) > (out "/link.expect")
  }
  next
}
part == "add" { print > man; if ($1 == "d") dir(un($5), $2) }
END {
  for (i = nd; i >= 1; i--) { printf "./%s%c", dp[i], 0 > (out "/mode-" dm[i] ".nul"); if (!(dm[i] in seen)) { seen[dm[i]] = 1; print dm[i] > (out "/modes") } }
}
"""


def _gunzip_check(gzip: bool) -> list[str]:
    return [f"command -v gzip >/dev/null 2>&1 || exit {NO_GZIP}"] if gzip else []


def upload_script(paths: HostPaths, version: str, previous: str | None, frames: Frames, parts: int = 1, *,
                  gzip: bool = False) -> str:
    """Extract the stream, merge the manifest, link the unchanged files (frames: ``drift``,
    ``free_kb``/``free_inodes`` on failure; the marker is spliced, no prelude needed).
    ``gzip``: the stream is gzip-compressed (upload.compress; compress.py)."""
    MARK = frames.marker  # noqa: N806 -- [@a-z0-9-] only, safe unquoted
    rel = paths.release(version)
    inc = f"{rel}/.capview/incoming"
    lines = _gunzip_check(gzip) + [
        f"rel={q(rel)}; inc={q(inc)}; m={q(inc + '/meta')}",
        # On failure say how much room is left (tar's own message on ENOSPC may be only
        # "Wrote only N of M bytes"), so a full disk is named as such.
        f"""trap 'rc=$?; [ "$rc" = 0 ] || [ "$rc" = {DRIFT} ] || printf "%s free_kb %s\\n%s free_inodes %s\\n" {MARK} "$(df -Pk "$rel" 2>/dev/null | awk "NR==2 {{print \\$4}}")" {MARK} "$(df -Pi "$rel" 2>/dev/null | awk "NR==2 {{print \\$2, \\$4}}")"' EXIT""",
        'mkdir -p "$inc"',  # setup created it empty; the other parts' channels extract into it too
        # -p: the modes in the stream are the manifest's (files read-only), not umask's
        f'tar -x{"z" if gzip else ""}pf - -C "$inc" --no-same-owner',
    ]
    if parts > 1:
        # Wait for the other parts (parallel channels) to finish extracting.
        oks = " ".join(f'"$inc/.part-{i}.ok"' for i in range(1, parts))
        lines += [
            "n=0",
            f"for ok in {oks}; do",
            '  while [ ! -e "$ok" ]; do',
            '    [ ! -e "${ok%.ok}.failed" ] || { echo "a parallel upload part failed" >&2; exit 1; }',
            '    n=$((n+1)); [ "$n" -lt 72000 ] || { echo "timed out waiting for the other upload parts" >&2; exit 1; }',
            "    sleep 0.05",
            "  done",
            "done",
        ]
    prev_manifest = f"{q(paths.release(previous))}/.capview/manifest.tsv" if previous else "/dev/null"
    lines += [
        "export LC_ALL=C",
        f"prev={q(paths.release(previous)) if previous else q('')}",
        ': > "$m/link.nul"; : > "$m/link.expect"; : > "$m/dirs.nul"; : > "$m/modes"',
        f'awk -v out="$m" -v man="$rel/.capview/manifest.tsv.tmp" {q(MERGE_AWK)} '
        f'part=drop "$m/drop.tsv" part=prev {prev_manifest} part=add "$m/add.tsv"',
        # drift: say which entry (its index in link.nul), empty the release, let the client resend all
        "drift() {",
        f"  printf '%s drift %s %s\\n' {MARK} \"$1\" \"$2\"",
        '  find "$rel" -mindepth 1 -maxdepth 1 ! -name .capview -exec rm -rf -- {} +',
        '  find "$inc" -type d ! -perm -u+w -exec chmod u+w {} + 2>/dev/null || true',
        f'  rm -rf "$inc"; mkdir "$inc"; exit {DRIFT}',
        "}",
        # the host's merge must be exactly the manifest the client expects
        'want=$(cat "$m/manifest.sha256")',
        'got=$(sha256sum < "$rel/.capview/manifest.tsv.tmp"); got=${got%% *}',
        '[ "$got" = "$want" ] || drift manifest 0',
        'if [ -s "$m/link.nul" ]; then',
        f"  (cd \"$prev\" && xargs -0 stat -c '{SHARED_STAT}' -- < \"$m/link.nul\") > \"$m/link.stat\" 2>/dev/null || drift missing 0",
        "  bad=$(awk 'NR == FNR { w[FNR] = $0; n = FNR; next } { g = $1 \" \" $2 } g != w[FNR] { print FNR; exit } "
        "END { if (FNR != n && !bad) print FNR + 1 }' \"$m/link.expect\" \"$m/link.stat\")",
        '  [ -z "$bad" ] || drift changed "$bad"',
        "fi",
        '(cd "$rel" && xargs -0 -r mkdir -p -- < "$m/dirs.nul")',
        # issue 21: link() is most of a 200,000-file redeploy's host time (its inode updates),
        # a few cp in parallel halve it; every directory exists already (dirs.nul, above)
        'if [ -n "$prev" ]; then (cd "$prev" && xargs -0 -r -P 4 -n 8192 cp -P -l --parents -t "$rel" -- < "$m/link.nul"); fi',
    ]
    # The other parts hold only regular files (their parent dirs were made by tar with
    # default modes): link them in; the directory modes are set last, from the manifest.
    lines += [f'if [ -d "$inc/part-{i}/files" ]; then cp -P -lR "$inc/part-{i}/files/." "$rel/"; fi'
              for i in range(1, parts)]
    lines += [
        'if [ -d "$inc/files" ]; then cp -P -lR "$inc/files/." "$rel/"; fi',
        '(cd "$rel" && while read -r md; do xargs -0 -r chmod -- "$md" < "$m/mode-$md.nul"; done < "$m/modes")',
        'mv -f "$rel/.capview/manifest.tsv.tmp" "$rel/.capview/manifest.tsv"',
        # what the check after the build compares the previous release's shared files with
        'mv -f "$m/link.nul" "$rel/.capview/shared.nul"',
        'if [ -e "$m/link.stat" ]; then mv -f "$m/link.stat" "$rel/.capview/shared.stat"; else : > "$rel/.capview/shared.stat"; fi',
        'find "$inc" -type d ! -perm -u+w -exec chmod u+w {} + 2>/dev/null || true',
        'rm -rf "$inc"',
    ]
    return "\n".join(lines) + "\n"


def upload_and_link(frames: Frames, upload: str, link: str) -> str:
    """issue 21: a single stream's upload and the link (+build, hooks) in one script.

    The upload runs in a subshell: its EXIT trap, its exits (DRIFT, NO_GZIP, a failure
    under ``set -e``: the script ends with that status), ``LC_ALL=C`` and its variables
    stay there. Only after it succeeded: frame ``uploaded``, then ``link`` (a full script
    of link_and_build, its prelude included) reading /dev/null, never the stream."""
    return frames.prelude() + "(\n" + upload + ")\nmark uploaded\n{\n" + link + "} </dev/null\n"


def drift_warning(stdout: str, frames: Frames, delta: Delta, previous: str | None, env: str = "ENV") -> str:
    """The upload script's ``drift KIND INDEX`` marker as one line for the operator."""
    kind, _, index = (parse_markers(stdout, frames).get("drift", ["changed 0"])[-1] + " ").partition(" ")
    linked = [e.path for e in delta.keep if e.type != "d"]
    i = int(index) if index.strip().isdigit() else 0
    what = {"manifest": "its manifest.tsv is not the one read at setup",
            "missing": "a file its manifest lists is missing",
            "changed": "a file differs from its manifest (type, mode or size)"}.get(kind, "it differs from its manifest")
    example = f" (e.g. {linked[i - 1]})" if kind == "changed" and 0 < i <= len(linked) else ""
    return (f"releases/{previous}: {what}{example}; nothing was hard-linked from it, every file was sent - "
            f"check it with capview verify {env} {previous}")


def readonly_hint(output: str) -> str | None:
    """A build that failed writing into a read-only (shared) file: say why and what to do."""
    if not any(s in output for s in ("Permission denied", "EACCES", "Errno 13", "Read-only file")):
        return None
    return ("uploaded files are read-only on the host: unchanged ones are hard links shared with older "
            "releases; write new files instead (or replace one: write a copy, then mv it over), or list "
            "the file in upload.writable to get a private, writable copy that is never linked")


def part_script(paths: HostPaths, version: str, index: int, *, gzip: bool = False) -> str:
    """Extract one extra part of a split upload into its own dir under incoming/.

    Its own dir: two tar processes creating the same parent directories at once lost
    files ("Cannot open: No such file or directory"); part 0's script merges them."""
    inc = f"{paths.release(version)}/.capview/incoming"
    mark = f"{inc}/.part-{index}"
    dest = f"{inc}/part-{index}"
    return ("".join(c + "\n" for c in _gunzip_check(gzip))
            + f"mkdir -p {q(dest)} && if tar -x{'z' if gzip else ''}f - -C {q(dest)} --no-same-owner; then : > {q(mark + '.ok')}; "
            f"else rc=$?; : > {q(mark + '.failed')} 2>/dev/null; exit $rc; fi\n")


SPLIT_BYTES = 16 * 1024 * 1024  # one SSH channel moves ~20 MB/s at 100 ms RTT (2 MiB window)
MAX_PARTS = 4


def split_delta(delta: Delta) -> list[tuple[Entry, ...]]:
    """Spread a large upload over a few channels: dirs and links in part 0, files by size."""
    parts_n = max(1, min(MAX_PARTS, -(-delta.send_bytes // SPLIT_BYTES)))
    if parts_n == 1:
        return [delta.send]
    parts: list[list[Entry]] = [[] for _ in range(parts_n)]
    load = [0] * parts_n
    for e in delta.send:
        if e.type != "f":
            parts[0].append(e)
    for e in sorted((e for e in delta.send if e.type == "f"), key=lambda e: -e.size):
        i = load.index(min(load))
        parts[i].append(e)
        load[i] += e.size
    return [tuple(p) for p in parts]


def manifest_sha256(delta: Delta) -> str:
    return delta.sha256  # computed once (the upload's meta, the manifest cache)


def _meta_member(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(f"meta/{name}")
    info.size = len(data)
    info.mode = 0o600
    tar.addfile(info, io.BytesIO(data))


def _entry_member(tar: tarfile.TarFile, root: Path, e: Entry) -> None:
    info = tarfile.TarInfo(f"files/{e.path}")
    info.mode = e.mode
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    src = root / e.path
    if e.type == "d":
        info.type = tarfile.DIRTYPE
        info.mtime = int(src.lstat().st_mtime)
        tar.addfile(info)
    elif e.type == "l":
        info.mtime = int(src.lstat().st_mtime)
        info.type = tarfile.SYMTYPE
        info.linkname = e.digest
        tar.addfile(info)
    else:
        st = src.stat()
        info.size = e.size
        info.mtime = int(st.st_mtime)
        with open(src, "rb") as f:
            tar.addfile(info, f)


class _QueueWriter(io.RawIOBase):
    """A file object for tarfile (in a thread) that feeds an asyncio queue, with backpressure."""

    def __init__(self, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue, cancelled: threading.Event,
                 gzip: bool = False) -> None:
        self.loop, self.queue, self.cancelled = loop, queue, cancelled
        self.buf = bytearray()
        self.z = gzip_compressor() if gzip else None

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:
        self.buf += self.z.compress(b) if self.z is not None else b
        while len(self.buf) >= CHUNK:
            self._put(bytes(self.buf[:CHUNK]))
            del self.buf[:CHUNK]
        return len(b)

    def flush_all(self) -> None:
        if self.z is not None:
            self.buf += self.z.flush()
        if self.buf:
            self._put(bytes(self.buf))
            self.buf.clear()

    def _put(self, chunk: bytes | None) -> None:
        if self.cancelled.is_set():
            raise OSError("upload cancelled")
        asyncio.run_coroutine_threadsafe(self.queue.put(chunk), self.loop).result()


async def tar_stream(root: Path, delta: Delta, progress: ProgressFn | None = None, *,
                     entries: tuple[Entry, ...] | None = None, meta: bool = True,
                     gzip: bool = False) -> AsyncIterator[bytes]:
    """Yield the upload tar in chunks; memory stays bounded (a few chunks) whatever the tree size.

    ``entries`` (default: all of delta.send) and ``meta`` let a split upload send a part;
    ``gzip`` compresses the stream (compress.py)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue(maxsize=8)
    cancelled = threading.Event()
    errors: list[BaseException] = []

    def produce() -> None:
        writer = _QueueWriter(loop, queue, cancelled, gzip)
        try:
            with tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                if meta:
                    _meta_member(tar, "add.tsv", "".join(e.line() + "\n" for e in delta.send).encode("utf-8", "surrogateescape"))
                    # The first drop.tsv line is a lone tab, so the file is never empty (awk's part= needs a line).
                    _meta_member(tar, "drop.tsv", ("\t\n" + "".join(escape(p) + "\n" for p in delta.drop)).encode("utf-8", "surrogateescape"))
                    _meta_member(tar, "manifest.sha256", manifest_sha256(delta).encode() + b"\n")
                files = size = 0
                for e in (delta.send if entries is None else entries):
                    _entry_member(tar, root, e)
                    if e.type == "f":
                        files += 1
                        size += e.size
                        if progress:
                            loop.call_soon_threadsafe(progress, files, size)
            writer.flush_all()
        except BaseException as exc:  # reported to the consumer below
            errors.append(exc)
        finally:
            if not cancelled.is_set():
                asyncio.run_coroutine_threadsafe(queue.put(None), loop).result()

    thread = threading.Thread(target=produce, name="capview-tar", daemon=True)
    thread.start()
    try:
        while True:
            chunk = await queue.get()
            if chunk is None:
                break
            yield chunk
        if errors:
            raise errors[0]
    finally:
        cancelled.set()
        while not queue.empty():  # unblock a producer waiting on a full queue
            queue.get_nowait()
