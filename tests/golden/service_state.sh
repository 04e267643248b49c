M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
sec service
systemctl --user show -p LoadState -p ActiveState -p SubState -p NRestarts -p ExecMainStatus -p MainPID -p StateChangeTimestampMonotonic app.service 2>&1 | head -c 4096 || true
printf 'uptime=%s\n' "$(cut -d' ' -f1 /proc/uptime 2>/dev/null || true)"
sec service
if ( cd /home/deploy/web/app && timeout 10 sh -c ./bin/status ) >/dev/null 2>&1; then cv_st=0; else cv_st=$?; fi
printf 'status_exit=%s\n' "$cv_st"
if [ -L /home/deploy/web/app/current ]; then
  sec service
  systemctl --user show -p LoadState -p ActiveState -p SubState -p NRestarts -p ExecMainStatus -p MainPID -p StateChangeTimestampMonotonic app.service 2>&1 | head -c 4096 || true
  printf 'uptime=%s\n' "$(cut -d' ' -f1 /proc/uptime 2>/dev/null || true)"
fi
