cv_take() {
  mkdir -p /home/deploy/web/app/.capview
  if ( trap '' HUP INT TERM PIPE
  mkdir /home/deploy/web/app/.capview/lock 2>/dev/null || exit 1
  printf '%s%s%s\n' '{"heartbeat":100.0,"host_heartbeat":' "$(date +%s)" ',"machine":"laptop","operation":"release","operator":"ann@laptop","pid":4242,"started":100.0,"token":"0123456789abcdef","version":"v2"}' > /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ && mv -f /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ /home/deploy/web/app/.capview/lock/owner.json
  exit 0 ); then
    mark locked; return 0
  fi
  sp=$(cat /home/deploy/web/app/.capview/switch.pid 2>/dev/null || true)
  case $sp in ""|*[!0-9]*) sp="" ;; esac
  if [ -n "$sp" ] && kill -0 "$sp" 2>/dev/null || ! mkdir /home/deploy/web/app/.capview/lock/takeover 2>/dev/null; then
    cv_n=0; while [ -d /home/deploy/web/app/.capview/lock ] && [ ! -e /home/deploy/web/app/.capview/lock/owner.json ] && [ $cv_n -lt 20 ]; do sleep 0.05; cv_n=$((cv_n+1)); done
    mark host_now "$(date +%s)"
    sp=$(cat /home/deploy/web/app/.capview/switch.pid 2>/dev/null || true)
    case $sp in ""|*[!0-9]*) ;; *) if kill -0 "$sp" 2>/dev/null; then mark switch_running "$sp"; fi ;; esac
    sec owner
    cat /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null || true
    return 3
  fi
  if [ "$(cat /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null || true)" != '{"seen":1}' ]; then
    rmdir /home/deploy/web/app/.capview/lock/takeover
    cv_n=0; while [ -d /home/deploy/web/app/.capview/lock ] && [ ! -e /home/deploy/web/app/.capview/lock/owner.json ] && [ $cv_n -lt 20 ]; do sleep 0.05; cv_n=$((cv_n+1)); done
    mark host_now "$(date +%s)"
    sp=$(cat /home/deploy/web/app/.capview/switch.pid 2>/dev/null || true)
    case $sp in ""|*[!0-9]*) ;; *) if kill -0 "$sp" 2>/dev/null; then mark switch_running "$sp"; fi ;; esac
    sec owner
    cat /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null || true
    return 3
  fi
  printf '%s%s%s\n' '{"heartbeat":100.0,"host_heartbeat":' "$(date +%s)" ',"machine":"laptop","operation":"release","operator":"ann@laptop","pid":4242,"started":100.0,"token":"0123456789abcdef","version":"v2"}' > /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ && mv -f /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ /home/deploy/web/app/.capview/lock/owner.json
  rmdir /home/deploy/web/app/.capview/lock/takeover
  mark locked
  d=/home/deploy/web/app/releases/v2
  cur=$(readlink /home/deploy/web/app/current 2>/dev/null || true); cur=${cur%/}
  if [ -d "$d" ] && [ ! -L "$d" ] && [ "${cur##*/}" != v2 ]; then
    st=$(sed -n 's/.*"state": *"\([a-z]*\)".*/\1/p' /home/deploy/web/app/releases/v2/.capview/release.json 2>/dev/null || true)
    case $st in ""|uploading|building|ready) rm -rf "$d" && mark removed "$d" ;; esac
  fi
  mkdir -p /home/deploy/web/app/.capview
  printf '%s\n' '{"at":100.0,"from":"v1","host":"web-1","op":"release","operator":"ann@laptop","version":"v2"}' >> /home/deploy/web/app/.capview/history.jsonl
  mark taken_over
}
cv_take || exit 3
