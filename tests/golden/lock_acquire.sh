mkdir -p /home/deploy/web/app/.capview
if mkdir /home/deploy/web/app/.capview/lock 2>/dev/null; then
  printf '%s\n' '{"heartbeat":100.0,"machine":"laptop","operation":"release","operator":"ann@laptop","pid":4242,"started":100.0,"token":"0123456789abcdef","version":"v2"}' > /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ && mv -f /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ /home/deploy/web/app/.capview/lock/owner.json
  mark locked
else
  sec owner
  cat /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null || true
  exit 3
fi
