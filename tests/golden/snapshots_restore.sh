snap_dir=/home/deploy/web/app/shared/.snapshots/_restore-100
rm -rf "$snap_dir.tmp" && mkdir -p "$snap_dir.tmp"
if [ -f /home/deploy/web/app/shared/data/app.db ]; then
  mkdir -p "$snap_dir.tmp/"data
  sqlite3 /home/deploy/web/app/shared/data/app.db 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null 2>&1 || :
  if [ ! -s /home/deploy/web/app/shared/data/app.db-wal ] && [ ! -e /home/deploy/web/app/shared/data/app.db-journal ]; then
    cp --reflink=auto /home/deploy/web/app/shared/data/app.db "$snap_dir.tmp/capview-snapshot.tmp"
  else
    ( cd "$snap_dir.tmp" && sqlite3 /home/deploy/web/app/shared/data/app.db ".backup 'capview-snapshot.tmp'" )
  fi
  mv -f "$snap_dir.tmp/capview-snapshot.tmp" $snap_dir.tmp/data/app.db && printf '@snap %s %s\n' data/app.db "$(stat -c %s $snap_dir.tmp/data/app.db)"
fi
if [ -f /home/deploy/web/app/shared/db/other.sqlite ]; then
  mkdir -p "$snap_dir.tmp/"db
  sqlite3 /home/deploy/web/app/shared/db/other.sqlite 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null 2>&1 || :
  if [ ! -s /home/deploy/web/app/shared/db/other.sqlite-wal ] && [ ! -e /home/deploy/web/app/shared/db/other.sqlite-journal ]; then
    cp --reflink=auto /home/deploy/web/app/shared/db/other.sqlite "$snap_dir.tmp/capview-snapshot.tmp"
  else
    ( cd "$snap_dir.tmp" && sqlite3 /home/deploy/web/app/shared/db/other.sqlite ".backup 'capview-snapshot.tmp'" )
  fi
  mv -f "$snap_dir.tmp/capview-snapshot.tmp" $snap_dir.tmp/db/other.sqlite && printf '@snap %s %s\n' db/other.sqlite "$(stat -c %s $snap_dir.tmp/db/other.sqlite)"
fi
rm -rf "$snap_dir" && mv "$snap_dir.tmp" "$snap_dir"
chmod -R go-rwx "$snap_dir"
src_dir=/home/deploy/web/app/shared/.snapshots/v1
[ -d "$src_dir" ] || { echo "snapshot $src_dir does not exist" >&2; exit 1; }
if [ -f "$src_dir"/data/app.db ]; then
  cp -f "$src_dir"/data/app.db /home/deploy/web/app/shared/data/app.db.capview-restore
  ok=$(sqlite3 /home/deploy/web/app/shared/data/app.db.capview-restore 'PRAGMA integrity_check' 2>&1 | head -n 1)
  [ "$ok" = ok ] || { rm -f /home/deploy/web/app/shared/data/app.db.capview-restore; echo 'restored copy of data/app.db failed integrity_check: '"$ok" >&2; exit 1; }
  restore_0=1
fi
if [ -f "$src_dir"/db/other.sqlite ]; then
  cp -f "$src_dir"/db/other.sqlite /home/deploy/web/app/shared/db/other.sqlite.capview-restore
  ok=$(sqlite3 /home/deploy/web/app/shared/db/other.sqlite.capview-restore 'PRAGMA integrity_check' 2>&1 | head -n 1)
  [ "$ok" = ok ] || { rm -f /home/deploy/web/app/shared/db/other.sqlite.capview-restore; echo 'restored copy of db/other.sqlite failed integrity_check: '"$ok" >&2; exit 1; }
  restore_1=1
fi
if [ -n "${restore_0:-}" ]; then
  rm -f /home/deploy/web/app/shared/data/app.db-wal /home/deploy/web/app/shared/data/app.db-shm /home/deploy/web/app/shared/data/app.db-journal
  mv -f /home/deploy/web/app/shared/data/app.db.capview-restore /home/deploy/web/app/shared/data/app.db && printf '@restored %s\n' data/app.db
fi
if [ -n "${restore_1:-}" ]; then
  rm -f /home/deploy/web/app/shared/db/other.sqlite-wal /home/deploy/web/app/shared/db/other.sqlite-shm /home/deploy/web/app/shared/db/other.sqlite-journal
  mv -f /home/deploy/web/app/shared/db/other.sqlite.capview-restore /home/deploy/web/app/shared/db/other.sqlite && printf '@restored %s\n' db/other.sqlite
fi
