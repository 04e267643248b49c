M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
export LC_ALL=C
dp=/home/deploy/web/app
if [ ! -d "$dp" ]; then sec nodp; sec end; exit 0; fi
cd "$dp"
sec top
find . -mindepth 1 -maxdepth 1 -printf '%y %P\0' 2>/dev/null || true
sec current
if [ -L current ]; then readlink current || true; fi
if [ -d .capview/lock ]; then sec lock; head -c 16384 .capview/lock/owner.json 2>/dev/null || true; fi
if [ -f .capview/history.jsonl ]; then sec history; tail -n 500 .capview/history.jsonl 2>/dev/null | cut -b 1-16384 || true; fi
sec df
df -Pk . 2>/dev/null | tail -n 1 || true
if [ -d releases ]; then
  sec releasesdir
  cv_names() {
    for r in releases/*; do
      n=${r#releases/}
      case $n in [A-Za-z0-9]*) ;; *) continue ;; esac
      case $n in *[!A-Za-z0-9._+-]*) continue ;; esac
      if [ -d "$r" ] && [ ! -L "$r" ]; then printf '%s\n' "$r"; fi
    done
  }
  cv_jsons() {
    sed 's,$,/.capview/release.json,' | xargs -n 500 sh -c '[ "$#" -gt 0 ] || exit 0; find "$@" -maxdepth 0 -type f -printf "%s %p\n" 2>/dev/null || true' jsons |
    awk -v M="$M" -v max=1048576 '{f = $2; n = f; sub("^releases/", "", n); sub("/.*$", "", n); printf "\n%s json %s\n", M, n
      if ($1 > max) {fflush(); system("head -c " (max + 1) " " f " 2>/dev/null"); next}
      got = 0; while (got <= max && (getline line < f) > 0) {print line; got += length(line) + 1}
      close(f)}' 2>/dev/null || true
  }
  cv_finds() {
    sec finds
    xargs -n 500 sh -c '[ "$#" -gt 0 ] || exit 0; find "$@" \( -regex "releases/[^/]*/[.]capview" -o -regex "releases/[^/]*/[.]capview/.*" \) -printf "m %H %D:%i %n %b %s %y\n" -o -printf "a %H %D:%i %n %b %s %y\n" 2>/dev/null || true' finds
  }
  t=0; j=0
  for r in releases/.trash-*; do if [ -e "$r" ] || [ -L "$r" ]; then t=$((t+1)); fi; done
  sec trash; printf '%s\n' "$t"
  for r in releases/*; do
    [ -e "$r" ] || [ -L "$r" ] || continue
    n=${r#releases/}
    case $n in [A-Za-z0-9]*) ;; *) j=$((j+1)); continue ;; esac
    case $n in *[!A-Za-z0-9._+-]*) j=$((j+1)); continue ;; esac
    if [ -L "$r" ]; then sec link "$n"; readlink "$r" || true; continue; fi
    if [ ! -d "$r" ]; then j=$((j+1)); continue; fi
    sec rel "$n"
    if [ -e "$r/".capview/pinned ]; then sec pinned "$n"; fi
  done
  sec junk; printf '%s\n' "$j"
  cv_names | cv_jsons
  cv_names | cv_finds
fi
sec end
