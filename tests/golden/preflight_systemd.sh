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
