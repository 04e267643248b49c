M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
cd /home/deploy/web/app
cur=$(readlink current 2>/dev/null || true)
sec current; printf "%s" "$cur"
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
for d in /home/deploy/web/app/shared/.snapshots/*; do
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  n=${d##*/}
  case "$n" in [A-Za-z0-9_]*) ;; *) continue;; esac
  case "$n" in *[!A-Za-z0-9._+-]*|*.tmp) continue;; esac
  sec snapmeta "$n"; head -c 1048576 "$d/meta.json" 2>/dev/null || true
done
sec live
printf '@meta '
{
  printf '%s' '{"from": null, "reason": "now", "tag": "_live", "taken_at": 100.0'
  printf ', "dbs": {'
  sep=
  if [ -f /home/deploy/web/app/shared/data/app.db ]; then
    uv=$(sqlite3 -readonly -json /home/deploy/web/app/shared/data/app.db 'PRAGMA user_version' 2>/dev/null | tr -d '\n'); : "${uv:=null}"
    ic=$(sqlite3 -readonly -json /home/deploy/web/app/shared/data/app.db 'PRAGMA integrity_check' 2>/dev/null | tr -d '\n'); : "${ic:=null}"
    sh=$(sqlite3 -readonly /home/deploy/web/app/shared/data/app.db 'SELECT type, name, tbl_name, coalesce(sql, '"'"''"'"') FROM sqlite_master ORDER BY type, name' 2>/dev/null | sha256sum | cut -c1-64)
    tb=$(sqlite3 -readonly /home/deploy/web/app/shared/data/app.db 'SELECT '"'"'SELECT '"'"' || quote(name) || '"'"' AS name, count(*) AS rows FROM "'"'"' || replace(name, '"'"'"'"'"', '"'"'""'"'"') || '"'"'";'"'"' FROM sqlite_master WHERE type = '"'"'table'"'"' AND name NOT LIKE '"'"'sqlite_%'"'"' ORDER BY name' 2>/dev/null | sqlite3 -readonly -json /home/deploy/web/app/shared/data/app.db 2>/dev/null | sed 's/^\[//; s/\]$//' | paste -sd, -); tb="[$tb]"
    printf '%s%s: {"bytes": %s, "user_version": %s, "integrity": %s, "schema_sha256": "%s", "tables": %s}' "$sep" '"data/app.db"' "$(stat -c %s /home/deploy/web/app/shared/data/app.db)" "$uv" "$ic" "$sh" "$tb"
    sep=', '
  fi
  printf '}}\n'
} > /dev/stdout
sec end
