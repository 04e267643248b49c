M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
if [ ! -d /home/deploy/web/app/.capview/lock ]; then sec gone; exit 0; fi
if [ "$(cat /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null || true)" != '{"seen":1}' ]; then sec changed; exit 0; fi
rm -rf /home/deploy/web/app/.capview/lock
mkdir -p /home/deploy/web/app/.capview
printf '%s\n' '{"at":100.0,"from":"v1","host":"web-1","op":"release","operator":"ann@laptop","version":"v2"}' >> /home/deploy/web/app/.capview/history.jsonl
sec removed
