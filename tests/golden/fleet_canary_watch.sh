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
end=$(( $(date +%s) + 30 ))
n=0
while :; do
  n=$((n+1))
  cv_health || { mark canary_failed "$n"; exit 1; }
  [ "$(date +%s)" -lt "$end" ] || break
  sleep 2
done
mark canary_ok "$n"
