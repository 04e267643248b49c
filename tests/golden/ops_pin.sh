M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
if [ -L /home/deploy/web/app/releases/v1 ] || [ ! -d /home/deploy/web/app/releases/v1 ]; then sec missing; exit 0; fi
if [ -e /home/deploy/web/app/releases/v1/.capview/pinned ]; then sec already; exit 0; fi
mkdir -p /home/deploy/web/app/releases/v1/.capview
: > /home/deploy/web/app/releases/v1/.capview/pinned
mkdir -p /home/deploy/web/app/.capview
printf '%s\n' '{"at":100.0,"from":"v1","host":"web-1","op":"release","operator":"ann@laptop","version":"v2"}' >> /home/deploy/web/app/.capview/history.jsonl
sec changed
M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
if [ -L /home/deploy/web/app/releases/v1 ] || [ ! -d /home/deploy/web/app/releases/v1 ]; then sec missing; exit 0; fi
if [ ! -e /home/deploy/web/app/releases/v1/.capview/pinned ]; then sec already; exit 0; fi
rm -f /home/deploy/web/app/releases/v1/.capview/pinned
mkdir -p /home/deploy/web/app/.capview
printf '%s\n' '{"at":100.0,"from":"v1","host":"web-1","op":"release","operator":"ann@laptop","version":"v2"}' >> /home/deploy/web/app/.capview/history.jsonl
sec changed
