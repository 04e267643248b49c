fail() { mark fail "$*"; failed=1; }
warn() { mark warn "$*"; }
failed=0
dp=/home/deploy/web/app
if [ ! -d "$dp" ]; then fail "$dp does not exist - run: "'capview init prod'; elif [ ! -w "$dp" ]; then fail "$dp is not writable by $(id -un)"; fi
command -v tar >/dev/null 2>&1 || fail 'tar is not installed on the host'
if [ -d "$dp" ]; then free=$(df -Pk "$dp" | awk 'NR==2 {print $4}'); mark free_kb "$free"; [ "${free:-0}" -ge 102400 ] || warn "only ${free} KB free on $dp"; fi
command -v curl >/dev/null 2>&1 || command -v wget >/dev/null 2>&1 || fail 'neither curl nor wget is installed (needed for the health check)'
command -v podman >/dev/null 2>&1 || fail 'podman is not installed on the host (build.command needs it)'
if ! command -v systemctl >/dev/null 2>&1; then fail 'systemctl is not installed on the host'; elif ! systemctl --user show-environment >/dev/null 2>&1; then fail "systemctl --user cannot reach the user manager (XDG_RUNTIME_DIR=$XDG_RUNTIME_DIR): is systemd --user running for $(id -un)? On a VPS run: sudo loginctl enable-linger $(id -un)"; elif ! systemctl --user cat app.service >/dev/null 2>&1; then fail 'systemd user unit app.service not found - install it in ~/.config/systemd/user/ and run systemctl --user daemon-reload'; fi
[ -e /home/deploy/web/app/shared/.env ] || fail '/home/deploy/web/app/shared/.env is missing - run: capview init prod, then fill it in'
[ -e /home/deploy/web/app/shared/conf/app.ini ] || fail '/home/deploy/web/app/shared/conf/app.ini is missing - run: capview init prod, then fill it in'
[ "$failed" = 0 ] || exit 4
