M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
if [ -d /home/deploy/web/app/.capview/lock ]; then
  cv_n=0; while [ -d /home/deploy/web/app/.capview/lock ] && [ ! -e /home/deploy/web/app/.capview/lock/owner.json ] && [ $cv_n -lt 20 ]; do sleep 0.05; cv_n=$((cv_n+1)); done
  mark host_now "$(date +%s)"
  sp=$(cat /home/deploy/web/app/.capview/switch.pid 2>/dev/null || true)
  case $sp in ""|*[!0-9]*) ;; *) if kill -0 "$sp" 2>/dev/null; then mark switch_running "$sp"; fi ;; esac
  sec owner
  cat /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null || true
fi
sec end
