if grep -q 0123456789abcdef /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null; then
printf '%s\n' '{"heartbeat":100.0,"machine":"laptop","operation":"release","operator":"ann@laptop","pid":4242,"started":100.0,"token":"0123456789abcdef","version":"v2"}' > /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ && mv -f /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ /home/deploy/web/app/.capview/lock/owner.json
fi
