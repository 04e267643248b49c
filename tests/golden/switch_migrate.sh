set -u
trap '' HUP PIPE INT
trap 'exit 143' TERM
M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
cd /home/deploy/web/app || exit 1
ops=/home/deploy/web/app/.capview/ops/0123456789abcdef
target=legacy op_name=migrate
previous=''
outcome='' reason='' stage=begun downtime='' sw_downtime='' unavail='' t0='' unlocked=no cv_finished=''
cv_sockets='' cv_start_reason=''
t_open='' health_s='' cv_why="$ops/why"
printf '%s\n' "$$" > "$ops/pid"; printf '%s\n' "$$" > /home/deploy/web/app/.capview/switch.pid 2>/dev/null || :
now() { date +%s.%N 2>/dev/null | sed 's/N$/0/'; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b - a}'; }
warn() { mark warn "$*"; }
# try WHAT CMD...: CMD's failure is a warning naming WHAT (bookkeeping never fails a switch)
try() { what=$1; shift; if "$@" 2>"$ops/err"; then return 0; fi; warn "$what: $(tr '\n' ' ' < "$ops/err")"; return 1; }
cv_stop() {
  t0=$(now); mark stop_begun "$t0"
  ( cd /home/deploy/web/app && ./bin/stop )
}
cv_start() {
  ( cd /home/deploy/web/app && ./bin/start )
}
cv_unstop() { :; }
cv_swap() {  # $1: point current at releases/$1 with one rename
  [ -d "releases/$1" ] || { echo "releases/$1 does not exist" >&2; return 1; }
  tmp=current.tmp.$$; rm -f "$tmp"
  if ln -s "releases/$1" "$tmp" && mv -T "$tmp" current; then mark switched "$1"; return 0; fi
  rm -f "$tmp"; return 1
}
cv_retag() {
  :
}
cv_switch_to() {  # $1 [fwd]: 0 started; 1 current moved, the start failed; 2 nothing moved
  rc=0
  cv_stop || { cv_unstop; return 2; }
  stage=stopped
  if [ "${2:-}" = fwd ]; then cv_after_stop || { cv_unstop; return 2; }; fi
  cv_swap "$1" || { cv_unstop; return 2; }
  stage=moved
  cv_retag "$1" || rc=$?
  if [ "${2:-}" = fwd ]; then cv_before_start || rc=$?; fi
  [ "$rc" != 0 ] || cv_start || rc=$?
  sw_downtime=$(secs "$t0" "$(now)"); mark downtime "$sw_downtime"
  [ "$rc" = 0 ] || { echo "service start failed (exit $rc)" >&2; return 1; }
}
cv_restart() {  # the current release again: stop -> start (a socket unit: restart)
  rc=0
  cv_stop || { cv_unstop; return 2; }
  stage=stopped
  cv_start || rc=$?
  stage=moved
  sw_downtime=$(secs "$t0" "$(now)"); mark downtime "$sw_downtime"
  [ "$rc" = 0 ] || { echo "service start failed (exit $rc)" >&2; return 1; }
}
cv_after_stop() {
  :
stopped=1
stage stop
stage shared
have='' have_after=''
if [ -e data ] || [ -L data ]; then have="$have data"; have_after="$have_after shared/data"; fi
if [ -e .env ] || [ -L .env ]; then have="$have .env"; have_after="$have_after shared/.env"; fi
before=$(eval "dstats $have")
mkdir -p shared
dev=$(stat -c %d .); [ "$(stat -c %d shared)" = "$dev" ] || fail "shared/ is on another filesystem than $PWD: refusing to copy"
if [ -e data ] || [ -L data ]; then
  [ "$(stat -c %d -- data)" = "$dev" ] || fail 'data is a mount point (another filesystem): refusing to copy'
  if [ -d shared/data ] && [ ! -L shared/data ] && [ -z "$(ls -A shared/data)" ]; then rmdir shared/data; emptied="$emptied data"; fi
  if [ -e shared/data ] || [ -L shared/data ]; then fail 'shared/data exists and is not empty: refusing to overwrite it'; fi
  mv -- data shared/data || fail 'moving data into shared/ failed'
  moved="data $moved"; note 'moved data -> shared/data'
elif [ ! -e shared/data ] && [ ! -L shared/data ]; then
  mkdir shared/data
  placeholders="data $placeholders"; note 'created empty shared/data'
fi
if [ -e .env ] || [ -L .env ]; then
  [ "$(stat -c %d -- .env)" = "$dev" ] || fail '.env is a mount point (another filesystem): refusing to copy'
  if [ -d shared/.env ] && [ ! -L shared/.env ] && [ -z "$(ls -A shared/.env)" ]; then rmdir shared/.env; emptied="$emptied .env"; fi
  if [ -e shared/.env ] || [ -L shared/.env ]; then fail 'shared/.env exists and is not empty: refusing to overwrite it'; fi
  mv -- .env shared/.env || fail 'moving .env into shared/ failed'
  moved=".env $moved"; note 'moved .env -> shared/.env'
elif [ ! -e shared/.env ] && [ ! -L shared/.env ]; then
  (umask 077; : > shared/.env); chmod 600 shared/.env
  placeholders=".env $placeholders"; note 'created empty shared/.env'
fi
stage junk
mkdir -p .capview/legacy-junk
for n in *.bak .*.bak; do
  [ -e "$n" ] || [ -L "$n" ] || continue
  mv -- "$n" .capview/legacy-junk/ || fail "moving $n to the legacy junk dir failed"
  mark junk "$n"
done
stage app
mkdir -p releases/legacy
for n in * .[!.]* ..?*; do
  [ -e "$n" ] || [ -L "$n" ] || continue
  case $n in .capview|current|releases|shared|traefik|current.tmp.*) continue ;; esac
  if [ ! -L "$n" ] && [ "$(stat -c %d -- "$n")" != "$dev" ]; then fail "$n is a mount point: refusing to copy"; fi
  mv -- "$n" releases/legacy/ || fail "moving $n into releases/legacy failed"
done
stage link
if [ -e releases/legacy/data ] || [ -L releases/legacy/data ]; then fail 'releases/legacy/data is in the way of the shared link'; fi
ln -s ../../shared/data releases/legacy/data
if [ -e releases/legacy/.env ] || [ -L releases/legacy/.env ]; then fail 'releases/legacy/.env is in the way of the shared link'; fi
ln -s ../../shared/.env releases/legacy/.env
stage verify
after=$(eval "dstats $have_after")
mark stats "$before" "$after"
[ "$before" = "$after" ] || fail "data changed during the move (files bytes: $before -> $after)"
if command -v sqlite3 >/dev/null 2>&1; then
  { find -H shared -type f \( -name '*.db' -o -name '*.sqlite' -o -name '*.sqlite3' -o -name '*.db3' \) -print0 2>/dev/null || true; } > .capview/dbs.lst
  bad=$(xargs -0 -r -I{} sh -c 'r=$(sqlite3 -readonly "$1" "PRAGMA integrity_check" 2>&1 | head -n 3); [ "$r" = ok ] || printf "%s: %s\n" "$1" "$r"' sh {} < .capview/dbs.lst)
  n=$(tr -cd "\000" < .capview/dbs.lst | wc -c); rm -f .capview/dbs.lst
  bad=$(printf "%s" "$bad" | tr "\n" " ")
  [ -z "$bad" ] || fail "integrity_check failed: $bad"
  note "integrity_check ok for $n SQLite file(s)"
else note 'sqlite3 is not installed on the host: integrity_check skipped'; fi
stage switch
mkdir -p releases/legacy/.capview
files=$(find releases/legacy -path releases/legacy/.capview -prune -o -type f -print | wc -l)
bytes=$(find releases/legacy -path releases/legacy/.capview -prune -o -type f -printf '%s\n' | awk '{b+=$1} END {printf "%.0f", b}')
printf '%s%s%s%s%s\n' '{"bytes":' "${bytes:-0}" ',"files":' "$files" ',"migrated":true,"state":"ready","version":"legacy"}' > releases/legacy/.capview/release.json.tmp.$$ && mv -f releases/legacy/.capview/release.json.tmp.$$ releases/legacy/.capview/release.json
}
cv_before_start() {
  :
stage start
}
cv_before_health() {
  :
stage health
}
restore() {
  set +e
  mark restoring
  mkdir -p .capview && rm -f .capview/migrate-health.log.tmp && ( umask 077; { printf 'capview: migrate %s did not come up: %s\n' "$target" "${cv_fail_msg:-$reason}"; printf '\n-- the service (status, last log lines) --\n'; ( cd /home/deploy/web/app && ./bin/status ) 2>&1 | tail -n 20 || true; ( cd /home/deploy/web/app && tail -n 50 log/app.log ) 2>&1 | tail -n 200 || true ; } > .capview/migrate-health.log.tmp 2>&1 ) \
    && chmod 600 .capview/migrate-health.log.tmp && mv -f .capview/migrate-health.log.tmp .capview/migrate-health.log && mark savedlog || rm -f .capview/migrate-health.log.tmp
  if [ "$stage" = moved ]; then
    { ( cd /home/deploy/web/app && ./bin/stop ); } >/dev/null 2>&1
    rm -f current
  fi
  rm -f current.tmp.*
  if [ -L releases/legacy/data ]; then rm -f -- releases/legacy/data; fi
  if [ -L releases/legacy/.env ]; then rm -f -- releases/legacy/.env; fi
  eval "set -- $lparents"; for d in "$@"; do rmdir -- "$d"; done
  rm -rf -- releases/legacy/.capview
  if [ -d releases/legacy ]; then
    for n in releases/legacy/* releases/legacy/.[!.]* releases/legacy/..?*; do
      [ -e "$n" ] || [ -L "$n" ] || continue
      mv -- "$n" . || note "restore: could not move $n back"
    done
    rmdir releases/legacy
  fi
  rmdir releases 2>/dev/null
  if [ -d .capview/legacy-junk ]; then
    for n in .capview/legacy-junk/* .capview/legacy-junk/.[!.]* .capview/legacy-junk/..?*; do
      [ -e "$n" ] || [ -L "$n" ] || continue
      mv -- "$n" . || note "restore: could not move $n back"
    done
    rmdir .capview/legacy-junk
  fi
  eval "set -- $moved"
  for i in "$@"; do mv -- "shared/$i" "$i" || note "restore: could not move shared/$i back"; done
  eval "set -- $placeholders"
  for i in "$@"; do if [ -d "shared/$i" ] && [ ! -L "shared/$i" ]; then rmdir "shared/$i"; else rm -f "shared/$i"; fi; done
  eval "set -- $emptied"; for i in "$@"; do mkdir "shared/$i"; done
  eval "set -- $parents"; for d in "$@"; do rmdir -- "$d"; done
  if [ "$c_shared" = 1 ]; then rmdir shared; fi
  if [ "$stopped" = 1 ] && [ "$was_active" = 1 ]; then
    { ( cd /home/deploy/web/app && ./bin/start ); } >/dev/null 2>&1 || note 'restore: restarting the service failed'
  fi
  mark restored
}
cv_health() (
  code=ok
  ( cd /home/deploy/web/app && ./bin/status ) >/dev/null 2>&1 || code=not-running
  mark health "$code"
  [ "$code" = ok ]
)
cv_write_live() {
  printf '%s%s%s%s%s%s%s%s%s\n' '{"bytes":' "${bytes:-0}" ',"downtime":' "${downtime:-null}" ',"files":' "$files" ',"health":"ok","migrated":true,"state":"live","unavailable":' "${unavail:-null}" ',"version":"legacy"}' > /home/deploy/web/app/releases/legacy/.capview/release.json.tmp.$$ && mv -f /home/deploy/web/app/releases/legacy/.capview/release.json.tmp.$$ /home/deploy/web/app/releases/legacy/.capview/release.json
}
cv_write_superseded() {
  :
}
cv_write_failed() {
  :
}
cv_write_history() {  # $1: ok | rolled_back | failed
  mkdir -p /home/deploy/web/app/.capview || return 1
  case $1 in
    ok) printf '%s%s%s%s%s%s%s%s%s\n' '{"downtime":' "${downtime:-null}" ',"health_seconds":' "${health_s:-null}" ',"op":"migrate","outcome":' "\"$1\"" ',"to":"legacy","unavailable":' "${unavail:-null}" '}' >> /home/deploy/web/app/.capview/history.jsonl ;;
    rolled_back) printf '%s%s%s%s%s%s%s%s%s%s%s\n' '{"downtime":' "${downtime:-null}" ',"error":' "\"$reason\"" ',"health_seconds":' "${health_s:-null}" ',"op":"migrate","outcome":' "\"$1\"" ',"to":null,"unavailable":' "${unavail:-null}" '}' >> /home/deploy/web/app/.capview/history.jsonl ;;
    *) printf '%s%s%s%s%s%s%s%s%s%s%s\n' '{"downtime":' "${downtime:-null}" ',"error":' "\"$reason\"" ',"health_seconds":' "${health_s:-null}" ',"op":"migrate","outcome":' "\"$1\"" ',"to":"legacy","unavailable":' "${unavail:-null}" '}' >> /home/deploy/web/app/.capview/history.jsonl ;;
  esac
}
cv_history() { try "history not written" cv_write_history "$1"; }
cv_mark_live() { try "release.json of $target not written" cv_write_live; try "release.json of $previous not written" cv_write_superseded; }
cv_mark_failed() { try "release.json of $target not written" cv_write_failed; }
cv_capture() {  # the service's logs and status, for whoever looks at the failure
  ( umask 077; { printf 'capview: %s %s did not come up: %s\n' "$op_name" "$target" "$reason"; ( cd /home/deploy/web/app && tail -n 50 log/app.log ) 2>&1 | tail -n 200 || true ; } > /home/deploy/web/app/releases/legacy/.capview/health.log.tmp 2>&1 ) || :
  chmod 600 /home/deploy/web/app/releases/legacy/.capview/health.log.tmp 2>/dev/null; mv -f /home/deploy/web/app/releases/legacy/.capview/health.log.tmp /home/deploy/web/app/releases/legacy/.capview/health.log 2>/dev/null || :
  ! grep -qE 'Permission denied|EACCES|Errno 13|Read-only file' /home/deploy/web/app/releases/legacy/.capview/health.log 2>/dev/null || mark readonly 1
}
cv_show_status() {  # migrate: the reason and status are printed (its health.log: scripts/migrate.py undo)
  printf 'capview: %s %s did not come up: %s\n' "$op_name" "$target" "$reason"
  { ( cd /home/deploy/web/app && ./bin/status ) 2>&1 | tail -n 20 || true ; } | sed 's/^/  /' || :
}
cv_cleanup() {
  :
rmdir .capview/legacy-junk 2>/dev/null || true
rm -f .capview/migrate-health.log
if [ -f shared/.env ] && [ ! -L shared/.env ]; then chmod 600 shared/.env || true; fi
}
cv_begin() {
  dstats() {
    if [ "$#" -eq 0 ]; then echo "0 0"; return 0; fi
    find -H "$@" -type f -printf '%s\n' 2>/dev/null | awk '{n++; b+=$1} END {printf "%d %.0f\n", n, b}'
  }
  export LC_ALL=C
  fail_at=''
  note() { mark note "$*"; }
  fail() { cv_fail_msg="$*"; mark fail "$*"; exit 1; }
  stage() { mark stage "$1"; if [ "$fail_at" = "$1" ]; then fail "forced failure at $1 (test hook)"; fi; }
  if [ -e releases ] || [ -L releases ]; then mark already; return 1; fi
  c_shared=0; [ -e shared ] || c_shared=1
  stopped=0 was_active=1 unit_new=0 moved='' emptied='' placeholders='' parents='' lparents=''
  ( cd /home/deploy/web/app && ./bin/status ) >/dev/null 2>&1 || was_active=0
  mkdir -p /home/deploy/web/app/.capview
  if ( trap '' HUP INT TERM PIPE
  mkdir /home/deploy/web/app/.capview/lock 2>/dev/null || exit 1
  printf '%s%s%s\n' '{"heartbeat":100.0,"host_heartbeat":' "$(date +%s)" ',"machine":"laptop","operation":"release","operator":"ann@laptop","pid":4242,"started":100.0,"token":"0123456789abcdef","version":"v2"}' > /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ && mv -f /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ /home/deploy/web/app/.capview/lock/owner.json
  exit 0 ); then :
  else
    mark owner "$(tr -d '\n' < /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null)"; reason=locked; return 1
  fi
  grep -q 0123456789abcdef /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null || { reason='the lock is not held by this operation'; return 1; }
}
cv_revert() {
  restore
  outcome=failed
}
cv_failed() {
  cv_show_status
  mark begin revert
  cv_revert
  if [ "$outcome" = rolled_back ]; then mark end revert ok; else mark end revert failed; fi
  cv_mark_failed
}
cv_not_moved() {  # current still names what it named: the service was started again
  restore
  outcome=failed; reason=${reason:-'switch failed before current moved'}
  cv_mark_failed
}
cv_succeeded() {
  outcome=ok; stage=done
  cv_mark_live
  cv_history ok
  mark begin cleanup
  ( cv_cleanup ) < "$ops/in"
  mark end cleanup ok
}
cv_unlock() {
  if grep -q 0123456789abcdef /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null; then
  rm -rf /home/deploy/web/app/.capview/lock
  fi
  if [ -d /home/deploy/web/app/.capview/lock ] && grep -q 0123456789abcdef /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null; then unlocked=no; else unlocked=yes; fi
  find /home/deploy/web/app/.capview/ops -mindepth 1 -maxdepth 1 -mmin +1440 ! -name 0123456789abcdef -exec rm -rf {} + 2>/dev/null || :
}
cv_finish() {
  [ -z "$cv_finished" ] || return 0
  cv_finished=1
  if [ -z "$outcome" ]; then  # an exit before the end: resolve it the same way
    reason=${reason:-'the switch ended early'}
    case $stage in moved) cv_failed ;; stopped) cv_not_moved ;; esac
    [ -n "$outcome" ] || outcome=failed
  fi
  cv_unlock
  { printf 'outcome %s\nreason %s\ndowntime %s\nunavailable %s\nunlocked %s\nhealth_seconds %s\n' "$outcome" "$reason" "$downtime" "$unavail" "$unlocked" "$health_s"; } > "$ops/result.tmp" 2>/dev/null
  mv -f "$ops/result.tmp" "$ops/result" 2>/dev/null || :
  mark result outcome "$outcome"; mark result reason "$reason"; mark result downtime "$downtime"
  mark result unavailable "$unavail"; mark result unlocked "$unlocked"; mark result health_seconds "$health_s"
  rm -f /home/deploy/web/app/.capview/switch.pid "$ops/err"
  mark done
  if [ "$outcome" != ok ]; then rm -rf "$ops"; [ "${cv_ops_new:-0}" != 1 ] || rmdir .capview/ops 2>/dev/null; if [ "${cv_meta_new:-0}" = 1 ]; then find .capview -mindepth 1 -maxdepth 1 ! -name migrate-health.log -exec rm -rf {} + 2>/dev/null; rmdir .capview 2>/dev/null; fi; fi
}
trap cv_finish EXIT
cv_begin || { outcome=refused; exit 0; }
mark begin switch
cv_switch_to "$target" fwd; rc=$?
downtime=$sw_downtime
if [ "$rc" = 2 ]; then mark end switch failed; cv_not_moved; exit 0; fi
if [ "$rc" = 0 ]; then mark end switch ok; else mark end switch failed; reason=${cv_start_reason:-'service start failed'}; fi
t_open=$t0
mark begin health
cv_before_health || rc=1
rm -f "$cv_why"; th=$(now); hrc=1
[ "$rc" != 0 ] || { cv_health; hrc=$?; }
health_s=$(secs "$th" "$(now)"); mark health_seconds "$health_s"
if [ "$hrc" = 0 ]; then
  unavail=$(secs "$t_open" "$(now)"); mark unavailable "$unavail"
  mark end health ok
  cv_succeeded
else
  [ "$rc" != 0 ] || reason='health check failed'
  if [ "$rc" = 0 ] && [ -s "$cv_why" ]; then reason="health check failed: $(head -c 200 "$cv_why" | tr -cd 'A-Za-z0-9 ./(),-')"; fi
  [ "$rc" = 0 ] || mark health failed not-started
  mark end health failed
  cv_failed
fi
exit 0
