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
    if [ -f "$r/".capview/release.json ]; then sec json "$n"; head -c 1048577 "$r/".capview/release.json 2>/dev/null || true; fi
    sec find "$n"
    find "$r" \( -path "$r"/.capview -o -path "$r"/.capview'/*' \) -printf 'm %D:%i %n %b %s %y\n' -o -printf 'a %D:%i %n %b %s %y\n' 2>/dev/null || true
  done
  sec junk; printf '%s\n' "$j"
fi
sec end
