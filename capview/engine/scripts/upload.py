"""The upload's scripts (issue 13's tar stream and rsync paths; issue 21's fold):
extract the stream into ``<release>/.capview/incoming``, merge the manifest, hard-link
the previous release's unchanged manifest entries (never anything unlisted), check them
for drift; the extra parts of a split upload; the rsync method's manifest store. The
streams themselves are engine/upload.py's and engine/rsync_upload.py's."""

from __future__ import annotations

from capview.engine.layout import INCOMING, MANIFEST, META, SHARED_NUL, SHARED_STATS, HostPaths
from capview.engine.scripts.shell import Frames, q

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
    inc = f"{rel}/{INCOMING}"
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
    prev_manifest = q(f"{paths.release(previous)}/{MANIFEST}") if previous else "/dev/null"
    lines += [
        "export LC_ALL=C",
        f"prev={q(paths.release(previous)) if previous else q('')}",
        ': > "$m/link.nul"; : > "$m/link.expect"; : > "$m/dirs.nul"; : > "$m/modes"',
        f'awk -v out="$m" -v man="$rel/{MANIFEST}.tmp" {q(MERGE_AWK)} '
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
        f'got=$(sha256sum < "$rel/{MANIFEST}.tmp"); got=${{got%% *}}',
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
        f'mv -f "$rel/{MANIFEST}.tmp" "$rel/{MANIFEST}"',
        # what the check after the build compares the previous release's shared files with
        f'mv -f "$m/link.nul" "$rel/{SHARED_NUL}"',
        f'if [ -e "$m/link.stat" ]; then mv -f "$m/link.stat" "$rel/{SHARED_STATS}"; else : > "$rel/{SHARED_STATS}"; fi',
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


def part_script(paths: HostPaths, version: str, index: int, *, gzip: bool = False) -> str:
    """Extract one extra part of a split upload into its own dir under incoming/.

    Its own dir: two tar processes creating the same parent directories at once lost
    files ("Cannot open: No such file or directory"); part 0's script merges them."""
    inc = f"{paths.release(version)}/{INCOMING}"
    mark = f"{inc}/.part-{index}"
    dest = f"{inc}/part-{index}"
    return ("".join(c + "\n" for c in _gunzip_check(gzip))
            + f"mkdir -p {q(dest)} && if tar -x{'z' if gzip else ''}f - -C {q(dest)} --no-same-owner; then : > {q(mark + '.ok')}; "
            f"else rc=$?; : > {q(mark + '.failed')} 2>/dev/null; exit $rc; fi\n")


# awk over the manifest: "MODE\0./PATH\0" for every valid regular-file line with a write bit.
WRITABLE_AWK = AWK_HELPERS + r"""
$1 == "f" { p = un($5); if (valid(p) && int(oct($2) / 2) % 2 + int(oct($2) / 16) % 2 + int(oct($2) / 128) % 2) printf "%s%c./%s%c", $2, 0, p, 0 }
"""


def write_manifest_script(paths: HostPaths, version: str, previous: str | None = None) -> str:
    """Store the manifest sent on stdin as the release's manifest.tsv (atomic rename),
    copy the writable files out of any hard link, record the shared files' stat."""
    rel = paths.release(version)
    path = f"{rel}/{MANIFEST}"
    lines = [
        f"cat > {q(path + '.tmp')} && mv -f {q(path + '.tmp')} {q(path)}",
        "export LC_ALL=C",
        f"cd {q(rel)}",
        f"awk {q(WRITABLE_AWK)} {q(path)} | xargs -0 -r -n 2 sh -c "
        "'cp -p -- \"$2\" \"$2.cv-tmp\" && mv -f -- \"$2.cv-tmp\" \"$2\" && chmod -- \"$1\" \"$2\"' sh",
        f": > {SHARED_NUL}; : > {SHARED_STATS}",
    ]
    if previous:
        lines += [
            f"find . -path ./{META} -prune -o \\( -type f -o -type l \\) -links +1 -print0 > {SHARED_NUL}",
            f"(cd {q(paths.release(previous))} && xargs -0 -r stat -c '{SHARED_STAT}' -- < {q(rel + '/' + SHARED_NUL)})"
            f" > {SHARED_STATS} 2>/dev/null || {{ : > {SHARED_NUL}; : > {SHARED_STATS}; }}",
        ]
    return "\n".join(lines) + "\n"
