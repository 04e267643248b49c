M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
fail() { mark fail "$*"; failed=1; }
warn() { mark warn "$*"; }
pass() { mark ok "$*"; }
failed=0 legacy=0
dp=/home/deploy/web/app
if [ ! -d "$dp" ]; then fail "$dp does not exist - run: "'capview init prod'; elif [ ! -w "$dp" ]; then fail "$dp is not writable by $(id -un)"; else pass "$dp exists and is writable"; fi
if [ -d "$dp" ] && [ ! -d "$dp/releases" ]; then for n in "$dp"/* "$dp"/.[!.]* "$dp"/..?*; do [ -e "$n" ] || [ -L "$n" ] || continue; case ${n##*/} in .capview|current|releases|shared|traefik|current.tmp.*) ;; *) legacy=1 ;; esac; done; fi
if [ "$legacy" = 1 ]; then fail "$dp holds an app deployed in place (old layout) - run: "'capview migrate-data prod'; fi
if command -v tar >/dev/null 2>&1; then pass 'tar is installed'; else fail 'tar is not installed on the host'; fi
if [ -d "$dp" ]; then free=$(df -Pk "$dp" | awk 'NR==2 {print $4}'); mark free_kb "$free"; if [ "${free:-0}" -ge 102400 ]; then pass "${free} KiB free on $dp"; else warn "only ${free} KiB free on $dp"; fi; inodes=$(df -Pi "$dp" 2>/dev/null | awk 'NR==2 && $2 ~ /^[0-9]+$/ && $4 ~ /^[0-9]+$/ {print $2, $4}'); itotal=${inodes%% *}; ifree=${inodes##* }; if [ -n "$inodes" ] && [ "$itotal" -gt 0 ] && [ "$ifree" -lt 10000 ]; then warn "only $ifree free inodes (files) of $itotal on $dp: every changed file of a deploy needs one"; fi; fi
if command -v curl >/dev/null 2>&1 || command -v wget >/dev/null 2>&1; then pass 'curl or wget is installed'; else fail 'neither curl nor wget is installed (needed for the health check)'; fi
if command -v podman >/dev/null 2>&1; then pass 'podman is installed'; else fail 'podman is not installed on the host (build.command needs it)'; fi
if ! command -v systemctl >/dev/null 2>&1; then fail 'systemctl is not installed on the host'; elif ! systemctl --user show-environment >/dev/null 2>&1; then fail "systemctl --user cannot reach the user manager (XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR): is systemd --user running for $(id -un)? On a VPS run: sudo loginctl enable-linger $(id -un)"; elif ! systemctl --user cat app.service >/dev/null 2>&1; then fail 'systemd user unit app.service not found - install it in ~/.config/systemd/user/ and run systemctl --user daemon-reload'; else pass 'systemctl --user reaches the user manager; unit app.service exists'; fi
if [ -e /home/deploy/web/app/shared/.env ]; then pass '/home/deploy/web/app/shared/.env exists'; elif [ "$legacy" = 0 ]; then fail '/home/deploy/web/app/shared/.env is missing - run: capview init prod, then fill it in'; fi
if [ -e /home/deploy/web/app/shared/conf/app.ini ]; then pass '/home/deploy/web/app/shared/conf/app.ini exists'; elif [ "$legacy" = 0 ]; then fail '/home/deploy/web/app/shared/conf/app.ini is missing - run: capview init prod, then fill it in'; fi
[ "$failed" = 0 ] || exit 4
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
M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
mkdir -p /home/deploy/web/app/releases /home/deploy/web/app/shared /home/deploy/web/app/shared/data
if [ -e /home/deploy/web/app/releases/v2 ] || [ -L /home/deploy/web/app/releases/v2 ]; then exit 5; fi
mkdir /home/deploy/web/app/releases/v2
mark created
mkdir /home/deploy/web/app/releases/v2/.capview /home/deploy/web/app/releases/v2/.capview/incoming
printf '%s\n' '{"operator":"ann@laptop","started_at":100.0,"state":"uploading","version":"v2"}' > /home/deploy/web/app/releases/v2/.capview/release.json.tmp.$$ && mv -f /home/deploy/web/app/releases/v2/.capview/release.json.tmp.$$ /home/deploy/web/app/releases/v2/.capview/release.json
M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
cd /home/deploy/web/app
cur=$(readlink current 2>/dev/null || true)
sec current; printf "%s" "$cur"
cv_cur=${cur%/}; cv_cur=${cv_cur##*/}
sec manifest; case "$cv_cur" in ""|.|..) ;; *) [ -L "releases/$cv_cur" ] || cat "releases/$cv_cur/".capview/manifest.tsv 2>/dev/null || true;; esac
for d in releases/*; do
  [ -d "$d" ] && [ ! -L "$d" ] || continue
  n=${d#releases/}
  case "$n" in [A-Za-z0-9]*) ;; *) continue;; esac
  case "$n" in *[!A-Za-z0-9._+-]*) continue;; esac
  sec release "$n"; head -c 1048576 "$d/".capview/release.json 2>/dev/null || true
  if [ -e "$d/".capview/pinned ]; then sec pinned "$n"; fi
done
sec history; tail -n 500 .capview/history.jsonl 2>/dev/null | cut -b 1-16384 || true
sec end
