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
[ "$failed" = 0 ] || exit 4
