snap_dir=/home/deploy/web/app/shared/.snapshots/v1
rm -rf "$snap_dir.tmp" && mkdir -p "$snap_dir.tmp"
if [ -f /home/deploy/web/app/shared/data/app.db ]; then
  mkdir -p "$snap_dir.tmp/"data
  sqlite3 /home/deploy/web/app/shared/data/app.db 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null 2>&1 || :
  if false; then  # the app may be writing: only .backup is consistent
    cp --reflink=auto /home/deploy/web/app/shared/data/app.db "$snap_dir.tmp/capview-snapshot.tmp"
  else
    ( cd "$snap_dir.tmp" && sqlite3 /home/deploy/web/app/shared/data/app.db ".backup 'capview-snapshot.tmp'" )
  fi
  mv -f "$snap_dir.tmp/capview-snapshot.tmp" $snap_dir.tmp/data/app.db && printf '@snap %s %s\n' data/app.db "$(stat -c %s $snap_dir.tmp/data/app.db)"
fi
if [ -f /home/deploy/web/app/shared/db/other.sqlite ]; then
  mkdir -p "$snap_dir.tmp/"db
  sqlite3 /home/deploy/web/app/shared/db/other.sqlite 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null 2>&1 || :
  if false; then  # the app may be writing: only .backup is consistent
    cp --reflink=auto /home/deploy/web/app/shared/db/other.sqlite "$snap_dir.tmp/capview-snapshot.tmp"
  else
    ( cd "$snap_dir.tmp" && sqlite3 /home/deploy/web/app/shared/db/other.sqlite ".backup 'capview-snapshot.tmp'" )
  fi
  mv -f "$snap_dir.tmp/capview-snapshot.tmp" $snap_dir.tmp/db/other.sqlite && printf '@snap %s %s\n' db/other.sqlite "$(stat -c %s $snap_dir.tmp/db/other.sqlite)"
fi
rm -rf "$snap_dir" && mv "$snap_dir.tmp" "$snap_dir"
chmod -R go-rwx "$snap_dir"
