fail() { mark fail "$*"; failed=1; }
warn() { mark warn "$*"; }
failed=0
dp=/home/deploy/web/app
if [ ! -d "$dp" ]; then fail "$dp does not exist - run: "'capview init prod'; elif [ ! -w "$dp" ]; then fail "$dp is not writable by $(id -un)"; fi
command -v tar >/dev/null 2>&1 || fail 'tar is not installed on the host'
if [ -d "$dp" ]; then free=$(df -Pk "$dp" | awk 'NR==2 {print $4}'); mark free_kb "$free"; [ "${free:-0}" -ge 102400 ] || warn "only ${free} KB free on $dp"; fi
[ "$failed" = 0 ] || exit 4
