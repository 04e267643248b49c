M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
if [ -d /home/deploy/web/app/.capview/lock ]; then sec owner; cat /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null || true; fi
sec end
