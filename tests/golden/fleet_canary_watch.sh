cv_health() (
  url=http://127.0.0.1:8000/health
  probe() {
    if command -v curl >/dev/null 2>&1; then curl -s -o /dev/null -w "%{http_code}" --max-time 1 "$url" || true
    else wget -q -O /dev/null -T 1 -S "$url" 2>&1 | awk '/HTTP\//{c=$2} END{print c}' || true; fi
  }
  ms() { t=$(date +%s%N 2>/dev/null || date +%s); case $t in *N) echo $(( ${t%N} * 1000 )) ;; *) echo $(( t / 1000000 )) ;; esac; }
  i=0 d=20 up=0 nr0='' deadline=$(( $(ms) + 10000 ))
  while :; do
    i=$((i+1)) dead=''
    code=$(probe)
    st=$(systemctl --user show -p ActiveState -p SubState -p NRestarts -p ExecMainStatus app.service 2>/dev/null || true)
    as='' ss='' nr='' ex=''
    for kv in $st; do case $kv in ActiveState=*) as=${kv#*=} ;; SubState=*) ss=${kv#*=} ;; NRestarts=*) nr=${kv#*=} ;; ExecMainStatus=*) ex=${kv#*=} ;; esac; done
    case $as in ''|*[!a-z-]*) as=unknown ;; esac
    case $ss in ''|*[!a-z-]*) ss=unknown ;; esac
    case $nr in ''|*[!0-9]*) nr=0 ;; esac
    case $ex in ''|*[!0-9]*) ex=unknown ;; esac
    [ -n "$nr0" ] || nr0=$nr
    [ "$as" = active ] || code=$as
    case $as in failed|inactive) dead="the service is $as/$ss (exit $ex)" ;; esac
    [ "$ss" != auto-restart ] || dead="the service is crash-looping (exit $ex, restarting)"
    [ "$nr" -le "$nr0" ] || dead="the service is crash-looping (restarted $nr times, exit $ex)"
    if [ -z "$dead" ] && [ "$code" = 200 ]; then mark health ok "$i"; exit 0; fi
    if [ -n "$dead" ]; then mark health dead "$dead"; [ -z "${cv_why:-}" ] || printf '%s\n' "$dead" > "$cv_why"; exit 3; fi
    if [ "$(ms)" -ge "$deadline" ]; then mark health failed "${code:-none}"; exit 1; fi
    sleep "$((d / 1000)).$(printf '%03d' $((d % 1000)))"
    d=$((d * 2)); [ "$d" -le 250 ] || d=250
  done
)
end=$(( $(date +%s) + 31 ))
n=0
while :; do
  n=$((n+1))
  cv_health || { mark canary_failed "$n"; exit 1; }
  [ "$(date +%s)" -lt "$end" ] || break
  sleep 2
done
mark canary_ok "$n"
