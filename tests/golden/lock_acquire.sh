mkdir -p /home/deploy/web/app/.capview
if ( trap '' HUP INT TERM PIPE
  mkdir /home/deploy/web/app/.capview/lock 2>/dev/null || exit 1
  printf '%s%s%s\n' '{"heartbeat":100.0,"host_heartbeat":' "$(date +%s)" ',"machine":"laptop","operation":"release","operator":"ann@laptop","pid":4242,"started":100.0,"token":"0123456789abcdef","version":"v2"}' > /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ && mv -f /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ /home/deploy/web/app/.capview/lock/owner.json
  exit 0 ); then
  mark locked
else
  cv_n=0; while [ -d /home/deploy/web/app/.capview/lock ] && [ ! -e /home/deploy/web/app/.capview/lock/owner.json ] && [ $cv_n -lt 20 ]; do sleep 0.05; cv_n=$((cv_n+1)); done
  mark host_now "$(date +%s)"
  sp=$(cat /home/deploy/web/app/.capview/switch.pid 2>/dev/null || true)
  case $sp in ""|*[!0-9]*) ;; *) if kill -0 "$sp" 2>/dev/null; then mark switch_running "$sp"; fi ;; esac
  sec owner
  cat /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null || true
  exit 3
fi
