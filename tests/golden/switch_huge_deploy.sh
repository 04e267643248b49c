set -u
trap '' HUP PIPE INT
trap 'exit 143' TERM
M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
cd /home/deploy/web/app || exit 1
ops=/home/deploy/web/app/.capview/ops/0123456789abcdef
target=v2 op_name=release
previous=v1
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
  [ -n "${cv_sockets:-}" ] || cv_sockets=$(systemctl --user show -p TriggeredBy --value app.service 2>/dev/null || true)
  systemctl --user stop app.service $cv_sockets
}
cv_start() {
  [ -n "${cv_sockets:-}" ] || cv_sockets=$(systemctl --user show -p TriggeredBy --value app.service 2>/dev/null || true)
  systemctl --user reset-failed app.service 2>/dev/null || true
  systemctl --user start $cv_sockets app.service
}
cv_unstop() { cv_start; }
cv_swap() {  # $1: point current at releases/$1 with one rename
  [ -d "releases/$1" ] || { echo "releases/$1 does not exist" >&2; return 1; }
  tmp=current.tmp.$$; rm -f "$tmp"
  if ln -s "releases/$1" "$tmp" && mv -T "$tmp" current; then mark switched "$1"; return 0; fi
  rm -f "$tmp"; return 1
}
cv_retag() {
  podman tag localhost/app:"$1" localhost/app:current
}
cv_switch_to() {  # $1 [fwd]: 0 started; 1 current moved, the start failed; 2 nothing moved
  rc=0
  [ -n "${cv_sockets:-}" ] || cv_sockets=$(systemctl --user show -p TriggeredBy --value app.service 2>/dev/null || true)
  if [ -n "$cv_sockets" ]; then
    mark held_by "$cv_sockets"
    systemctl --user start $cv_sockets || rc=$?
    cv_swap "$1" || return 2
    stage=moved
    cv_retag "$1" || rc=$?
    t0=$(now); mark stop_begun "$t0"
    systemctl --user reset-failed app.service 2>/dev/null || true
    systemctl --user restart app.service || rc=$?
  else
    cv_stop || { cv_unstop; return 2; }
    stage=stopped
    if [ "${2:-}" = fwd ]; then cv_after_stop || { cv_unstop; return 2; }; fi
    cv_swap "$1" || { cv_unstop; return 2; }
    stage=moved
    cv_retag "$1" || rc=$?
    if [ "${2:-}" = fwd ]; then cv_before_start || rc=$?; fi
    [ "$rc" != 0 ] || cv_start || rc=$?
  fi
  sw_downtime=$(secs "$t0" "$(now)"); mark downtime "$sw_downtime"
  [ "$rc" = 0 ] || { echo "service start failed (exit $rc)" >&2; return 1; }
}
cv_restart() {  # the current release again: stop -> start (a socket unit: restart)
  rc=0
  [ -n "${cv_sockets:-}" ] || cv_sockets=$(systemctl --user show -p TriggeredBy --value app.service 2>/dev/null || true)
  if [ -n "$cv_sockets" ]; then
    mark held_by "$cv_sockets"
    systemctl --user start $cv_sockets || rc=$?
    t0=$(now); mark stop_begun "$t0"
    systemctl --user reset-failed app.service 2>/dev/null || true
    systemctl --user restart app.service || rc=$?
  else
    cv_stop || { cv_unstop; return 2; }
    stage=stopped
    cv_start || rc=$?
  fi
  stage=moved
  sw_downtime=$(secs "$t0" "$(now)"); mark downtime "$sw_downtime"
  [ "$rc" = 0 ] || { echo "service start failed (exit $rc)" >&2; return 1; }
}
cv_after_stop() { :; }
cv_before_start() { :; }
cv_health() (
  url=http://127.0.0.1:8000/health
  probe() {
    if command -v curl >/dev/null 2>&1; then curl -s -o /dev/null -w "%{http_code}" --max-time 1 "$url" || true
    else wget -q -O /dev/null -T 1 -S "$url" 2>&1 | awk '/HTTP\//{c=$2} END{print c}' || true; fi
  }
  ms() { t=$(date +%s%N 2>/dev/null || date +%s); case $t in *N) echo $(( ${t%N} * 1000 )) ;; *) echo $(( t / 1000000 )) ;; esac; }
  i=0 d=20 up=0 nr0='' deadline=$(( $(ms) + 10000 ))
  while :; do
    i=$((i+1)) dead=''
    code=$(probe)
    st=$(systemctl --user show -p ActiveState -p SubState -p NRestarts -p ExecMainStatus app.service 2>/dev/null || true)
    as='' ss='' nr='' ex=''
    for kv in $st; do case $kv in ActiveState=*) as=${kv#*=} ;; SubState=*) ss=${kv#*=} ;; NRestarts=*) nr=${kv#*=} ;; ExecMainStatus=*) ex=${kv#*=} ;; esac; done
    case $as in ''|*[!a-z-]*) as=unknown ;; esac
    case $ss in ''|*[!a-z-]*) ss=unknown ;; esac
    case $nr in ''|*[!0-9]*) nr=0 ;; esac
    case $ex in ''|*[!0-9]*) ex=unknown ;; esac
    [ -n "$nr0" ] || nr0=$nr
    [ "$as" = active ] || code=$as
    case $as in failed|inactive) dead="the service is $as/$ss (exit $ex)" ;; esac
    [ "$ss" != auto-restart ] || dead="the service is crash-looping (exit $ex, restarting)"
    [ "$nr" -le "$nr0" ] || dead="the service is crash-looping (restarted $nr times, exit $ex)"
    if [ -z "$dead" ] && [ "$code" = 200 ]; then mark health ok "$i"; exit 0; fi
    if [ -n "$dead" ]; then mark health dead "$dead"; [ -z "${cv_why:-}" ] || printf '%s\n' "$dead" > "$cv_why"; exit 3; fi
    if [ "$(ms)" -ge "$deadline" ]; then mark health failed "${code:-none}"; exit 1; fi
    sleep "$((d / 1000)).$(printf '%03d' $((d % 1000)))"
    d=$((d * 2)); [ "$d" -le 250 ] || d=250
  done
)
cv_write_live() {
  printf '%s%s%s%s%s\n' '{"downtime":' "${downtime:-null}" ',"operator":"ann@laptop","started_at":100.0,"state":"live","unavailable":' "${unavail:-null}" ',"version":"v2"}' > /home/deploy/web/app/releases/v2/.capview/release.json.tmp.$$ && mv -f /home/deploy/web/app/releases/v2/.capview/release.json.tmp.$$ /home/deploy/web/app/releases/v2/.capview/release.json
}
cv_write_superseded() {
  printf '%s\n' '{"state":"superseded","version":"v1"}' > /home/deploy/web/app/releases/v1/.capview/release.json.tmp.$$ && mv -f /home/deploy/web/app/releases/v1/.capview/release.json.tmp.$$ /home/deploy/web/app/releases/v1/.capview/release.json
}
cv_write_failed() {
  printf '%s%s%s%s%s\n' '{"downtime":' "${downtime:-null}" ',"error":' "\"$reason\"" ',"operator":"ann@laptop","started_at":100.0,"state":"failed","version":"v2"}' > /home/deploy/web/app/releases/v2/.capview/release.json.tmp.$$ && mv -f /home/deploy/web/app/releases/v2/.capview/release.json.tmp.$$ /home/deploy/web/app/releases/v2/.capview/release.json
}
cv_write_history() {  # $1: ok | rolled_back | failed
  mkdir -p /home/deploy/web/app/.capview || return 1
  case $1 in
    ok) printf '%s%s%s%s%s%s%s%s%s\n' '{"at":100.0,"downtime":' "${downtime:-null}" ',"from":"v1","health_seconds":' "${health_s:-null}" ',"host":"web-1","op":"release","operator":"ann@laptop","outcome":' "\"$1\"" ',"to":"v2","unavailable":' "${unavail:-null}" ',"version":"v2"}' >> /home/deploy/web/app/.capview/history.jsonl ;;
    rolled_back) printf '%s%s%s%s%s%s%s%s%s%s%s\n' '{"at":100.0,"downtime":' "${downtime:-null}" ',"error":' "\"$reason\"" ',"from":"v1","health_seconds":' "${health_s:-null}" ',"host":"web-1","op":"release","operator":"ann@laptop","outcome":' "\"$1\"" ',"to":"v1","unavailable":' "${unavail:-null}" ',"version":"v2"}' >> /home/deploy/web/app/.capview/history.jsonl ;;
    *) printf '%s%s%s%s%s%s%s%s%s%s%s\n' '{"at":100.0,"downtime":' "${downtime:-null}" ',"error":' "\"$reason\"" ',"from":"v1","health_seconds":' "${health_s:-null}" ',"host":"web-1","op":"release","operator":"ann@laptop","outcome":' "\"$1\"" ',"unavailable":' "${unavail:-null}" ',"version":"v2"}' >> /home/deploy/web/app/.capview/history.jsonl ;;
  esac
}
cv_history() { try "history not written" cv_write_history "$1"; }
cv_mark_live() { try "release.json of $target not written" cv_write_live; try "release.json of $previous not written" cv_write_superseded; }
cv_mark_failed() { try "release.json of $target not written" cv_write_failed; }
cv_capture() {  # the service's logs and status, for whoever looks at the failure
  ( umask 077; { printf 'capview: %s %s did not come up: %s\n' "$op_name" "$target" "$reason"; { journalctl --user -u app.service -n 200 --no-pager -a 2>/dev/null | grep -v '^-- No entries --' ; systemctl --user status app.service -n 200 --no-pager 2>&1; } || true ; } > /home/deploy/web/app/releases/v2/.capview/health.log.tmp 2>&1 ) || :
  chmod 600 /home/deploy/web/app/releases/v2/.capview/health.log.tmp 2>/dev/null; mv -f /home/deploy/web/app/releases/v2/.capview/health.log.tmp /home/deploy/web/app/releases/v2/.capview/health.log 2>/dev/null || :
  ! grep -qE 'Permission denied|EACCES|Errno 13|Read-only file' /home/deploy/web/app/releases/v2/.capview/health.log 2>/dev/null || mark readonly 1
}
cv_show_status() {  # migrate: the reason and status are printed (its health.log: scripts/migrate.py undo)
  printf 'capview: %s %s did not come up: %s\n' "$op_name" "$target" "$reason"
  { systemctl --user status app.service -n 0 --no-pager 2>&1 | head -n 30 || true ; } | sed 's/^/  /' || :
}
cv_cleanup() {
  :
export LC_ALL=C
warn() { printf '%s\n' "$*" | while IFS= read -r l; do mark warn "$l"; done; }
cd /home/deploy/web/app
[ -d releases ] || { mark freed 0; exit 0; }
for t in releases/.trash-*; do
  if [ -e "$t" ] || [ -L "$t" ]; then mark finished "$t"; fi
done
cur=$(readlink current 2>/dev/null || true); cur=${cur%/}; cur=${cur##*/}
dl=""; dj=""; l1=""; j1=""; k=0
note() { [ -z "${2:-}" ] || l1="$l1 $1"; j1="$j1${j1:+,}\"$1\""; k=$((k+1))
  [ "$k" -lt 200 ] || flush_names; }
flush_names() { dl="$dl$l1"; [ -z "$j1" ] || dj="$dj${dj:+,}$j1"; l1=""; j1=""; k=0; }
b=""; made=""; moved() { [ "$#" -gt 0 ] || return 0; mv -- "$@" "$b/" 2>/dev/null || :
  for r; do v=${r#releases/}
    if [ -e "$b/$v" ] || [ -L "$b/$v" ]; then note "$v" dir; mark deleted "$v"; else warn "cannot move $r to the trash: it stays"; fi
  done; b=""; }
set --
while IFS= read -r v; do
  case $v in ""|.|..|*[!A-Za-z0-9._+-]*) continue ;; [A-Za-z0-9]*) ;; *) continue ;; esac
  r=releases/$v
  if [ "$cur" = "$v" ]; then mark skipped "$v" it is current; continue; fi
  if [ -L "$r" ]; then
    # a symlinked entry is unlinked, never followed
    if err=$(rm -f -- "$r" 2>&1); then mark unlinked "$v"; note "$v"; else warn "$err"; fi
    continue
  fi
  if [ ! -d "$r" ]; then mark skipped "$v" no longer exists; continue; fi
  if [ -e "$r/".capview/pinned ]; then mark skipped "$v" pinned; continue; fi
  if [ -z "$b" ]; then
    b=releases/.trash-$v; mkdir "$b" 2>/dev/null || { b=$b.$$; mkdir "$b" 2>/dev/null; } || { warn "cannot make $b"; b=""; continue; }; made="$made $b"
  fi
  set -- "$@" "$r"; [ "$#" -lt 200 ] || { moved "$@"; set --; }
done
moved "$@"; set --
flush_names
freed=$(find releases/ -mindepth 1 ! -path 'releases/.trash-*' -prune -o -printf '%D:%i %n %b %y\n' 2>/dev/null | awk '$4=="d" {s+=$3; next} {c[$1]++; n[$1]=$2; b[$1]=$3} END {for (k in c) if (c[k]>=n[k]) s+=b[k]; printf "%.0f\n", s*512}')
[ -z "$made" ] || freed=$(( ${freed:-0} - $(find $made -maxdepth 0 -printf '%b\n' 2>/dev/null | awk '{s+=$1} END {printf "%.0f\n", s*512}') ))
[ -n "$freed" ] || freed=0; nt=0
for t in releases/.trash-*; do
  if [ -e "$t" ] || [ -L "$t" ]; then nt=$((nt+1)); fi
done
if [ "$nt" -gt 0 ]; then
  errf=$(mktemp /home/deploy/web/app/.capview/rm-errors.XXXXXX 2>/dev/null) || errf=
  ( trap '' HUP; set --
    for t in releases/.trash-*; do
      [ -e "$t" ] || [ -L "$t" ] || continue
      set -- "$@" "$t"; [ "$#" -lt 200 ] || { rm -rf -- "$@" 2>>"${errf:-/dev/null}" || :; set --; }
    done
    [ "$#" -eq 0 ] || rm -rf -- "$@" 2>>"${errf:-/dev/null}" || :
    if [ -n "$errf" ] && ! mkdir "$errf.own" 2>/dev/null; then rm -rf -- "$errf" "$errf.own"; fi
  ) </dev/null >/dev/null 2>&1 & rmj=$!
  w=0; while kill -0 "$rmj" 2>/dev/null && [ "$w" -lt 200 ]; do sleep 0.02; w=$((w+1)); done
  if [ -n "$errf" ] && mkdir "$errf.own" 2>/dev/null || { [ -z "$errf" ] && kill -0 "$rmj" 2>/dev/null; }; then
    mark removing "$nt"
  else
    wait "$rmj" 2>/dev/null || :
    if [ -n "$errf" ] && [ -s "$errf" ]; then warn "$(cat -- "$errf") (left in releases/.trash-*; the next prune retries)"; fi
    [ -z "$errf" ] || rm -rf -- "$errf" "$errf.own"
  fi
fi
if [ -n "$dl" ]; then
  if command -v podman >/dev/null 2>&1; then
    for v in $dl; do for img in localhost/app; do
      ref="$img:$v"
      if podman image exists "$ref" 2>/dev/null; then
        if err=$(podman rmi "$ref" 2>&1); then mark image "$ref"; else warn "$err"; fi
      fi
    done; done
  else warn "podman not found: images of pruned releases were not removed"; fi
fi
mkdir -p /home/deploy/web/app/.capview
printf '%s[%s]%s%s%s\n' '{"deleted":' "$dj" ',"freed":' "$freed" ',"op":"prune"}' >> /home/deploy/web/app/.capview/history.jsonl || warn "history not written"
mark freed "$freed"
}
cv_begin() {
  grep -q 0123456789abcdef /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null || { reason='the lock is not held by this operation'; return 1; }
}
cv_revert() {
  cv_switch_to "$previous"; brc=$?
  if [ "$brc" = 2 ]; then warn "switching back to $previous failed"; outcome=failed; return 1; fi
  [ "$brc" = 0 ] || warn "restarting the previous release failed"
  if [ "$brc" != 0 ] || ! cv_health; then warn "the previous release is not healthy either"
  else unavail=$(secs "$t_open" "$(now)"); mark unavailable "$unavail"; fi
  outcome=rolled_back
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
  nice -n 10 sh -c '( cd /home/deploy/web/app 2>/dev/null && [ -d releases ] || exit 0
  export LC_ALL=C; cached=
  cv_names() {
    for r in releases/*; do
      n=${r#releases/}
      case $n in [A-Za-z0-9]*) ;; *) continue ;; esac
      case $n in *[!A-Za-z0-9._+-]*) continue ;; esac
      if [ -d "$r" ] && [ ! -L "$r" ]; then printf '"'"'%s\n'"'"' "$r"; fi
    done
  }
  release_sums() {
    ( out=$1; xargs -n 500 sh -c '"'"'[ "$#" -gt 0 ] || exit 0; find "$@" \( -regex "releases/[^/]*/[.]capview" -o -regex "releases/[^/]*/[.]capview/.*" \) -printf "m %H %D:%i %n %b %s %y\n" -o -printf "a %H %D:%i %n %b %s %y\n" 2>/dev/null || true'"'"' sums | awk -v out="$out" '"'"'function flush(  k, disk, app, line) { if (name != "") {disk=0; app=0; for (k in c) {if (ty[k]=="d") disk+=bl[k]*512*c[k]; else if (c[k]>=nl[k]) {disk+=bl[k]*512; if (k in seen) app+=sz[k]}} line=sprintf("%s %d %d %d %d", name, files, size, disk, app); print line; if (out != "") {print line >> out; fflush(out)}} split("", c); split("", nl); split("", bl); split("", sz); split("", ty); split("", seen); files=0; size=0; name=""} $2!=cur {flush(); cur=$2; name=substr($2, 10)} {k=$3; c[k]++; nl[k]=$4; bl[k]=$5; sz[k]=$6; ty[k]=$7; if ($1=="a" && $7=="f") {files++; if (!(k in seen)) {seen[k]=1; size+=$6}}} END {flush()}'"'"' ) || true
  }
  fp0=$({ echo sums-2; find releases/ releases/*/.capview -maxdepth 1 -printf '"'"'%p %i %C@\n'"'"' 2>/dev/null; } | cksum)
  tmpc=
  if [ -z "$cached" ] && [ ! -d .capview/lock ] && [ -d .capview ] && [ -w .capview ]; then
    tmpc=.capview/usage.cache.$$
    trap '"'"'rm -f "$tmpc"'"'"' EXIT
    printf '"'"'%s\n'"'"' "$fp0" > "$tmpc" 2>/dev/null || tmpc=
  fi
  [ -n "$tmpc" ] || exit 0
  cv_names | release_sums "$tmpc" >/dev/null
  if [ -n "$tmpc" ]; then
    if [ ! -d .capview/lock ] && [ "$({ echo sums-2; find releases/ releases/*/.capview -maxdepth 1 -printf '"'"'%p %i %C@\n'"'"' 2>/dev/null; } | cksum)" = "$fp0" ]; then mv -f "$tmpc" .capview/usage.cache 2>/dev/null || rm -f "$tmpc"
    else rm -f "$tmpc"; fi
  fi
) >/dev/null 2>&1 || :
' </dev/null >/dev/null 2>&1 &
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
