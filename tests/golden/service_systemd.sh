[ -n "${cv_sockets:-}" ] || cv_sockets=$(systemctl --user show -p TriggeredBy --value app.service 2>/dev/null || true)
systemctl --user stop app.service $cv_sockets
[ -n "${cv_sockets:-}" ] || cv_sockets=$(systemctl --user show -p TriggeredBy --value app.service 2>/dev/null || true)
systemctl --user reset-failed app.service 2>/dev/null || true
systemctl --user start $cv_sockets app.service
{ journalctl --user -u app.service -n 200 --no-pager 2>/dev/null | grep -v '^-- No entries --' ; systemctl --user status app.service -n 200 --no-pager 2>&1; } || true
cv_health() (
  url=http://127.0.0.1:8000/health
  probe() {
    if command -v curl >/dev/null 2>&1; then curl -s -o /dev/null -w "%{http_code}" --max-time 1 "$url" || true
    else wget -q -O /dev/null -T 1 -S "$url" 2>&1 | awk '/HTTP\//{c=$2} END{print c}' || true; fi
  }
  i=0; deadline=$(( $(date +%s) + 10 ))
  while :; do
    i=$((i+1))
    code=$(probe)
    systemctl --user is-active --quiet app.service || code=inactive
    if [ "$code" = 200 ]; then mark health ok "$i"; exit 0; fi
    if [ "$i" -ge 20 ] || [ "$(date +%s)" -ge "$deadline" ]; then mark health failed "${code:-none}"; exit 1; fi
    sleep 0.5
  done
)
