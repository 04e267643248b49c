trap '' HUP PIPE
M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
ops=/home/deploy/web/app/.capview/ops/0123456789abcdef
cv_meta_new=0; [ -e /home/deploy/web/app/.capview ] || cv_meta_new=1
cv_ops_new=0; [ -e /home/deploy/web/app/.capview/ops ] || cv_ops_new=1
export cv_meta_new cv_ops_new
mkdir -p /home/deploy/web/app/.capview/ops
if ! mkdir "$ops" 2>/dev/null; then mark claimed; exit 0; fi
cat > "$ops/in"
cat > "$ops/txn.sh" <<'CV_TXN_END'
echo body
CV_TXN_END
: > "$ops/out"
if command -v setsid >/dev/null 2>&1; then
  setsid sh "$ops/txn.sh" < "$ops/in" > "$ops/out" 2>&1 &
else
  sh "$ops/txn.sh" < "$ops/in" > "$ops/out" 2>&1 &
fi
pid=$!
tail -n +1 -s 0.05 -f --pid="$pid" "$ops/out" 2>/dev/null & tp=$!
wait "$pid" 2>/dev/null || :
wait "$tp" 2>/dev/null || cat "$ops/out"
