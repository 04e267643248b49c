M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
ops=/home/deploy/web/app/.capview/ops/0123456789abcdef
if [ ! -d /home/deploy/web/app/.capview ]; then mark nometa; exit 0; fi
mkdir -p /home/deploy/web/app/.capview/ops
if mkdir "$ops" 2>/dev/null; then mark notstarted; exit 0; fi
i=0; p=''
while [ ! -f "$ops/result" ] && [ "$i" -lt 250 ]; do
  p=$(cat "$ops/pid" 2>/dev/null || true)
  if [ -n "$p" ]; then kill -0 "$p" 2>/dev/null || break
  elif [ "$i" -ge 50 ]; then break; fi  # no pid after 5 s: it was never started
  sleep 0.1; i=$((i+1))
done
if [ -f "$ops/result" ]; then
  cat "$ops/out" 2>/dev/null || :
  while read -r k v; do mark result "$k" "$v"; done < "$ops/result"
  mark recovered done
elif [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then mark recovered running
else mark recovered vanished
fi
