M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
mkdir -p /home/deploy/web/app/releases /home/deploy/web/app/shared /home/deploy/web/app/shared/data
if [ -e /home/deploy/web/app/releases/v2 ] || [ -L /home/deploy/web/app/releases/v2 ]; then exit 5; fi
mkdir /home/deploy/web/app/releases/v2
mark created
mkdir /home/deploy/web/app/releases/v2/.capview /home/deploy/web/app/releases/v2/.capview/incoming
printf '%s\n' '{"operator":"ann@laptop","started_at":100.0,"state":"uploading","version":"v2"}' > /home/deploy/web/app/releases/v2/.capview/release.json.tmp.$$ && mv -f /home/deploy/web/app/releases/v2/.capview/release.json.tmp.$$ /home/deploy/web/app/releases/v2/.capview/release.json
M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
cd /home/deploy/web/app
cur=$(readlink current 2>/dev/null || true)
sec current; printf "%s" "$cur"
cv_cur=${cur%/}; cv_cur=${cv_cur##*/}
sec manifest; case "$cv_cur" in ""|.|..) ;; *) [ -L "releases/$cv_cur" ] || cat "releases/$cv_cur/".capview/manifest.tsv 2>/dev/null || true;; esac
for d in releases/*; do
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  n=${d#releases/}
  case "$n" in [A-Za-z0-9]*) ;; *) continue;; esac
  case "$n" in *[!A-Za-z0-9._+-]*) continue;; esac
  sec release "$n"; head -c 1048576 "$d/".capview/release.json 2>/dev/null || true
  if [ -e "$d/".capview/pinned ]; then sec pinned "$n"; fi
done
sec history; tail -n 500 .capview/history.jsonl 2>/dev/null | cut -b 1-16384 || true
sec end
