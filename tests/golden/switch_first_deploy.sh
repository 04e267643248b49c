set -u
trap '' HUP PIPE INT
trap 'exit 143' TERM
M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
cd /home/deploy/web/app || exit 1
ops=/home/deploy/web/app/.capview/ops/0123456789abcdef
target=v2 op_name=release
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
cv_unstop() { cv_start; }
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
cv_after_stop() { :; }
cv_before_start() { :; }
cv_health() (
  code=ok
  ( cd /home/deploy/web/app && ./bin/status ) >/dev/null 2>&1 || code=not-running
  mark health "$code"
  [ "$code" = ok ]
)
cv_write_live() {
  printf '%s%s%s%s%s\n' '{"downtime":' "${downtime:-null}" ',"operator":"ann@laptop","started_at":100.0,"state":"live","unavailable":' "${unavail:-null}" ',"version":"v2"}' > /home/deploy/web/app/releases/v2/.capview/release.json.tmp.$$ && mv -f /home/deploy/web/app/releases/v2/.capview/release.json.tmp.$$ /home/deploy/web/app/releases/v2/.capview/release.json
}
cv_write_superseded() {
  :
}
cv_write_failed() {
  printf '%s%s%s%s%s\n' '{"downtime":' "${downtime:-null}" ',"error":' "\"$reason\"" ',"operator":"ann@laptop","started_at":100.0,"state":"failed","version":"v2"}' > /home/deploy/web/app/releases/v2/.capview/release.json.tmp.$$ && mv -f /home/deploy/web/app/releases/v2/.capview/release.json.tmp.$$ /home/deploy/web/app/releases/v2/.capview/release.json
}
cv_write_history() {  # $1: ok | rolled_back | failed
  mkdir -p /home/deploy/web/app/.capview || return 1
  case $1 in
    ok) printf '%s%s%s%s%s%s%s%s%s\n' '{"at":100.0,"downtime":' "${downtime:-null}" ',"from":"v1","health_seconds":' "${health_s:-null}" ',"host":"web-1","op":"release","operator":"ann@laptop","outcome":' "\"$1\"" ',"to":"v2","unavailable":' "${unavail:-null}" ',"version":"v2"}' >> /home/deploy/web/app/.capview/history.jsonl ;;
    rolled_back) printf '%s%s%s%s%s%s%s%s%s%s%s\n' '{"at":100.0,"downtime":' "${downtime:-null}" ',"error":' "\"$reason\"" ',"from":"v1","health_seconds":' "${health_s:-null}" ',"host":"web-1","op":"release","operator":"ann@laptop","outcome":' "\"$1\"" ',"to":null,"unavailable":' "${unavail:-null}" ',"version":"v2"}' >> /home/deploy/web/app/.capview/history.jsonl ;;
    *) printf '%s%s%s%s%s%s%s%s%s%s%s\n' '{"at":100.0,"downtime":' "${downtime:-null}" ',"error":' "\"$reason\"" ',"from":"v1","health_seconds":' "${health_s:-null}" ',"host":"web-1","op":"release","operator":"ann@laptop","outcome":' "\"$1\"" ',"unavailable":' "${unavail:-null}" ',"version":"v2"}' >> /home/deploy/web/app/.capview/history.jsonl ;;
  esac
}
cv_history() { try "history not written" cv_write_history "$1"; }
cv_mark_live() { try "release.json of $target not written" cv_write_live; try "release.json of $previous not written" cv_write_superseded; }
cv_mark_failed() { try "release.json of $target not written" cv_write_failed; }
cv_capture() {  # the service's logs and status, for whoever looks at the failure
  ( umask 077; { printf 'capview: %s %s did not come up: %s\n' "$op_name" "$target" "$reason"; ( cd /home/deploy/web/app && tail -n 50 log/app.log ) 2>&1 | tail -n 200 || true ; } > /home/deploy/web/app/releases/v2/.capview/health.log.tmp 2>&1 ) || :
  chmod 600 /home/deploy/web/app/releases/v2/.capview/health.log.tmp 2>/dev/null; mv -f /home/deploy/web/app/releases/v2/.capview/health.log.tmp /home/deploy/web/app/releases/v2/.capview/health.log 2>/dev/null || :
  ! grep -qE 'Permission denied|EACCES|Errno 13|Read-only file' /home/deploy/web/app/releases/v2/.capview/health.log 2>/dev/null || mark readonly 1
}
cv_show_status() {  # migrate: the reason and status are printed (its health.log: scripts/migrate.py undo)
  printf 'capview: %s %s did not come up: %s\n' "$op_name" "$target" "$reason"
  { ( cd /home/deploy/web/app && ./bin/status ) 2>&1 | tail -n 20 || true ; } | sed 's/^/  /' || :
}
cv_cleanup() { :; }
cv_begin() {
  grep -q 0123456789abcdef /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null || { reason='the lock is not held by this operation'; return 1; }
  if [ -L current ]; then cp -P current "$ops/current.before" || return 1; fi
}
cv_revert() {
  cv_stop || :
  if [ -L "$ops/current.before" ]; then
    mv -T "$ops/current.before" current && mark restored current || warn "putting back the previous current failed"
    cv_start || warn 'restarting the service on the previous current failed'
  else
    rm -f current && mark removed current
  fi
  outcome=failed
}
cv_failed() {
  cv_capture
  mark begin revert
  cv_revert
  if [ "$outcome" = rolled_back ]; then mark end revert ok; else mark end revert failed; fi
  cv_mark_failed
  if [ "$outcome" = rolled_back ]; then cv_history rolled_back; else cv_history failed; fi
}
cv_not_moved() {  # current still names what it named: the service was started again
  outcome=failed; reason=${reason:-'switch failed before current moved'}
  cv_mark_failed
  cv_history failed
}
cv_succeeded() {
  outcome=ok; stage=done
  cv_mark_live
  cv_history ok
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
  ( ( cd /home/deploy/web/app 2>/dev/null && [ -d releases ] || exit 0
  export LC_ALL=C; cached=
  cv_names() {
    for r in releases/*; do
      n=${r#releases/}
      case $n in [A-Za-z0-9]*) ;; *) continue ;; esac
      case $n in *[!A-Za-z0-9._+-]*) continue ;; esac
      if [ -d "$r" ] && [ ! -L "$r" ]; then printf '%s\n' "$r"; fi
    done
  }
  release_sums() {
    ( out=$1; xargs -n 500 sh -c '[ "$#" -gt 0 ] || exit 0; find "$@" \( -regex "releases/[^/]*/[.]capview" -o -regex "releases/[^/]*/[.]capview/.*" \) -printf "m %H %D:%i %n %b %s %y\n" -o -printf "a %H %D:%i %n %b %s %y\n" 2>/dev/null || true' sums | awk -v out="$out" 'function flush(  k, disk, app, line) { if (name != "") {disk=0; app=0; for (k in c) {if (ty[k]=="d") disk+=bl[k]*512*c[k]; else if (c[k]>=nl[k]) {disk+=bl[k]*512; if (k in seen) app+=sz[k]}} line=sprintf("%s %d %d %d %d", name, files, size, disk, app); print line; if (out != "") {print line >> out; fflush(out)}} split("", c); split("", nl); split("", bl); split("", sz); split("", ty); split("", seen); files=0; size=0; name=""} $2!=cur {flush(); cur=$2; name=substr($2, 10)} {k=$3; c[k]++; nl[k]=$4; bl[k]=$5; sz[k]=$6; ty[k]=$7; if ($1=="a" && $7=="f") {files++; if (!(k in seen)) {seen[k]=1; size+=$6}}} END {flush()}' ) || true
  }
  fp0=$({ echo sums-2; find releases/ releases/*/.capview -maxdepth 1 -printf '%p %i %C@\n' 2>/dev/null; } | cksum)
  tmpc=
  if [ -z "$cached" ] && [ ! -d .capview/lock ] && [ -d .capview ] && [ -w .capview ]; then
    tmpc=.capview/usage.cache.$$
    trap 'rm -f "$tmpc"' EXIT
    printf '%s\n' "$fp0" > "$tmpc" 2>/dev/null || tmpc=
  fi
  [ -n "$tmpc" ] || exit 0
  cv_names | release_sums "$tmpc" >/dev/null
  if [ -n "$tmpc" ]; then
    if [ ! -d .capview/lock ] && [ "$({ echo sums-2; find releases/ releases/*/.capview -maxdepth 1 -printf '%p %i %C@\n' 2>/dev/null; } | cksum)" = "$fp0" ]; then mv -f "$tmpc" .capview/usage.cache 2>/dev/null || rm -f "$tmpc"
    else rm -f "$tmpc"; fi
  fi
) >/dev/null 2>&1 || : ) || :
  rm -f /home/deploy/web/app/.capview/switch.pid "$ops/err"
  mark done
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
