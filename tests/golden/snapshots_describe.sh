snap_dir=/home/deploy/web/app/shared/.snapshots/v1
[ -d "$snap_dir" ] || exit 0
{
  printf '%s' '{"from": "v0", "reason": "release v2", "tag": "v1", "taken_at": 100.0'
  printf ', "dbs": {'
  sep=
  if [ -f "$snap_dir"/data/app.db ]; then
    uv=$(sqlite3 -readonly -json "$snap_dir"/data/app.db 'PRAGMA user_version' 2>/dev/null | tr -d '\n'); : "${uv:=null}"
    ic=$(sqlite3 -readonly -json "$snap_dir"/data/app.db 'PRAGMA integrity_check' 2>/dev/null | tr -d '\n'); : "${ic:=null}"
    sh=$(sqlite3 -readonly "$snap_dir"/data/app.db 'SELECT type, name, tbl_name, coalesce(sql, '"'"''"'"') FROM sqlite_master ORDER BY type, name' 2>/dev/null | sha256sum | cut -c1-64)
    tb=$(sqlite3 -readonly "$snap_dir"/data/app.db 'SELECT '"'"'SELECT '"'"' || quote(name) || '"'"' AS name, count(*) AS rows FROM "'"'"' || replace(name, '"'"'"'"'"', '"'"'""'"'"') || '"'"'";'"'"' FROM sqlite_master WHERE type = '"'"'table'"'"' AND name NOT LIKE '"'"'sqlite_%'"'"' ORDER BY name' 2>/dev/null | sqlite3 -readonly -json "$snap_dir"/data/app.db 2>/dev/null | sed 's/^\[//; s/\]$//' | paste -sd, -); tb="[$tb]"
    printf '%s%s: {"bytes": %s, "user_version": %s, "integrity": %s, "schema_sha256": "%s", "tables": %s}' "$sep" '"data/app.db"' "$(stat -c %s "$snap_dir"/data/app.db)" "$uv" "$ic" "$sh" "$tb"
    sep=', '
  fi
  if [ -f "$snap_dir"/db/other.sqlite ]; then
    uv=$(sqlite3 -readonly -json "$snap_dir"/db/other.sqlite 'PRAGMA user_version' 2>/dev/null | tr -d '\n'); : "${uv:=null}"
    ic=$(sqlite3 -readonly -json "$snap_dir"/db/other.sqlite 'PRAGMA integrity_check' 2>/dev/null | tr -d '\n'); : "${ic:=null}"
    sh=$(sqlite3 -readonly "$snap_dir"/db/other.sqlite 'SELECT type, name, tbl_name, coalesce(sql, '"'"''"'"') FROM sqlite_master ORDER BY type, name' 2>/dev/null | sha256sum | cut -c1-64)
    tb=$(sqlite3 -readonly "$snap_dir"/db/other.sqlite 'SELECT '"'"'SELECT '"'"' || quote(name) || '"'"' AS name, count(*) AS rows FROM "'"'"' || replace(name, '"'"'"'"'"', '"'"'""'"'"') || '"'"'";'"'"' FROM sqlite_master WHERE type = '"'"'table'"'"' AND name NOT LIKE '"'"'sqlite_%'"'"' ORDER BY name' 2>/dev/null | sqlite3 -readonly -json "$snap_dir"/db/other.sqlite 2>/dev/null | sed 's/^\[//; s/\]$//' | paste -sd, -); tb="[$tb]"
    printf '%s%s: {"bytes": %s, "user_version": %s, "integrity": %s, "schema_sha256": "%s", "tables": %s}' "$sep" '"db/other.sqlite"' "$(stat -c %s "$snap_dir"/db/other.sqlite)" "$uv" "$ic" "$sh" "$tb"
    sep=', '
  fi
  printf '}}\n'
} > "$snap_dir/meta.json.tmp"
mv -f "$snap_dir/meta.json.tmp" "$snap_dir/meta.json"
chmod 600 "$snap_dir/meta.json"
printf "@meta "; cat "$snap_dir/meta.json"
