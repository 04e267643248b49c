M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
unlock_() {
if grep -q 0123456789abcdef /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null; then
rm -rf /home/deploy/web/app/.capview/lock
fi
}
trap unlock_ EXIT
trap 'exit 130' INT TERM HUP
trap 'exit 141' PIPE
mkdir -p /home/deploy/web/app/.capview
if ( trap '' HUP INT TERM PIPE
  mkdir /home/deploy/web/app/.capview/lock 2>/dev/null || exit 1
  printf '%s%s%s\n' '{"heartbeat":100.0,"host_heartbeat":' "$(date +%s)" ',"machine":"laptop","operation":"release","operator":"ann@laptop","pid":4242,"started":100.0,"token":"0123456789abcdef","version":"v2"}' > /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ && mv -f /home/deploy/web/app/.capview/lock/owner.json.tmp.$$ /home/deploy/web/app/.capview/lock/owner.json
  exit 0 ); then
  mark locked
else
  cv_n=0; while [ -d /home/deploy/web/app/.capview/lock ] && [ ! -e /home/deploy/web/app/.capview/lock/owner.json ] && [ $cv_n -lt 20 ]; do sleep 0.05; cv_n=$((cv_n+1)); done
  mark host_now "$(date +%s)"
  sp=$(cat /home/deploy/web/app/.capview/switch.pid 2>/dev/null || true)
  case $sp in ""|*[!0-9]*) ;; *) if kill -0 "$sp" 2>/dev/null; then mark switch_running "$sp"; fi ;; esac
  sec owner
  cat /home/deploy/web/app/.capview/lock/owner.json 2>/dev/null || true
  exit 3
fi
(
  export LC_ALL=C
  warn() { printf '%s\n' "$*" | while IFS= read -r l; do mark warn "$l"; done; }
  cd /home/deploy/web/app
  [ -d releases ] || { mark freed 0; exit 0; }
  for t in releases/.trash-*; do
    if [ -e "$t" ] || [ -L "$t" ]; then mark finished "$t"; fi
  done
  cur=$(readlink current 2>/dev/null || true); cur=${cur%/}; cur=${cur##*/}
  dl=""; dj=""; l1=""; j1=""; k=0
  note() { [ -z "${2:-}" ] || l1="$l1 $1"; j1="$j1${j1:+,}\"$1\""; k=$((k+1))
    [ "$k" -lt 200 ] || flush_names; }
  flush_names() { dl="$dl$l1"; [ -z "$j1" ] || dj="$dj${dj:+,}$j1"; l1=""; j1=""; k=0; }
  b=""; made=""; moved() { [ "$#" -gt 0 ] || return 0; mv -- "$@" "$b/" 2>/dev/null || :
    for r; do v=${r#releases/}
      if [ -e "$b/$v" ] || [ -L "$b/$v" ]; then note "$v" dir; mark deleted "$v"; else warn "cannot move $r to the trash: it stays"; fi
    done; b=""; }
  set --
  while IFS= read -r v; do
    case $v in ""|.|..|*[!A-Za-z0-9._+-]*) continue ;; [A-Za-z0-9]*) ;; *) continue ;; esac
    r=releases/$v
    if [ "$cur" = "$v" ]; then mark skipped "$v" it is current; continue; fi
    if [ -L "$r" ]; then
      # a symlinked entry is unlinked, never followed
      if err=$(rm -f -- "$r" 2>&1); then mark unlinked "$v"; note "$v"; else warn "$err"; fi
      continue
    fi
    if [ ! -d "$r" ]; then mark skipped "$v" no longer exists; continue; fi
    if [ -e "$r/".capview/pinned ]; then mark skipped "$v" pinned; continue; fi
    if [ -z "$b" ]; then
      b=releases/.trash-$v; mkdir "$b" 2>/dev/null || { b=$b.$$; mkdir "$b" 2>/dev/null; } || { warn "cannot make $b"; b=""; continue; }; made="$made $b"
    fi
    set -- "$@" "$r"; [ "$#" -lt 200 ] || { moved "$@"; set --; }
  done
  moved "$@"; set --
  flush_names
  freed=$(find releases/ -mindepth 1 ! -path 'releases/.trash-*' -prune -o -printf '%D:%i %n %b %y\n' 2>/dev/null | awk '$4=="d" {s+=$3; next} {c[$1]++; n[$1]=$2; b[$1]=$3} END {for (k in c) if (c[k]>=n[k]) s+=b[k]; printf "%.0f\n", s*512}')
  [ -z "$made" ] || freed=$(( ${freed:-0} - $(find $made -maxdepth 0 -printf '%b\n' 2>/dev/null | awk '{s+=$1} END {printf "%.0f\n", s*512}') ))
  [ -n "$freed" ] || freed=0; nt=0
  for t in releases/.trash-*; do
    if [ -e "$t" ] || [ -L "$t" ]; then nt=$((nt+1)); fi
  done
  if [ "$nt" -gt 0 ]; then
    errf=$(mktemp /home/deploy/web/app/.capview/rm-errors.XXXXXX 2>/dev/null) || errf=
    ( trap '' HUP; set --
      for t in releases/.trash-*; do
        [ -e "$t" ] || [ -L "$t" ] || continue
        set -- "$@" "$t"; [ "$#" -lt 200 ] || { rm -rf -- "$@" 2>>"${errf:-/dev/null}" || :; set --; }
      done
      [ "$#" -eq 0 ] || rm -rf -- "$@" 2>>"${errf:-/dev/null}" || :
      if [ -n "$errf" ] && ! mkdir "$errf.own" 2>/dev/null; then rm -rf -- "$errf" "$errf.own"; fi
    ) </dev/null >/dev/null 2>&1 & rmj=$!
    w=0; while kill -0 "$rmj" 2>/dev/null && [ "$w" -lt 200 ]; do sleep 0.02; w=$((w+1)); done
    if [ -n "$errf" ] && mkdir "$errf.own" 2>/dev/null || { [ -z "$errf" ] && kill -0 "$rmj" 2>/dev/null; }; then
      mark removing "$nt"
    else
      wait "$rmj" 2>/dev/null || :
      if [ -n "$errf" ] && [ -s "$errf" ]; then warn "$(cat -- "$errf") (left in releases/.trash-*; the next prune retries)"; fi
      [ -z "$errf" ] || rm -rf -- "$errf" "$errf.own"
    fi
  fi
  if [ -n "$dl" ]; then
    if command -v podman >/dev/null 2>&1; then
      for v in $dl; do for img in localhost/app; do
        ref="$img:$v"
        if podman image exists "$ref" 2>/dev/null; then
          if err=$(podman rmi "$ref" 2>&1); then mark image "$ref"; else warn "$err"; fi
        fi
      done; done
    else warn "podman not found: images of pruned releases were not removed"; fi
  fi
  mkdir -p /home/deploy/web/app/.capview
  printf '%s[%s]%s%s%s\n' '{"deleted":' "$dj" ',"freed":' "$freed" ',"keep":2,"op":"prune"}' >> /home/deploy/web/app/.capview/history.jsonl || warn "history not written"
  mark freed "$freed"
)
mark end
