#!/usr/bin/env bash
# capview real-host integration testbed (Debian 12, run as root).
#
#   bash scripts/testbed.sh install   # apt packages (skipped when all present)
#   bash scripts/testbed.sh up        # users + systemd --user managers (idempotent)
#   bash scripts/testbed.sh down      # stop managers and any fixture sshd
#   bash scripts/testbed.sh status    # print what is running
#
# Users created by `up`:
#   cvdeploy  - login user with a running `systemd --user` manager and rootless podman
#   cvnosd    - login user WITHOUT a user manager ("no user manager" preflight tests)
#
# The VM is not booted with systemd, so the user manager needs two tricks
# (see shared/TESTBED.md): /run/systemd/system must exist, and the manager must
# run inside a cgroup (v2, "unified" hierarchy) that the user owns.
#
# State (client key, sshd configs/logs/pidfiles written by tests/testbed.py,
# manager logs/pidfiles) lives in $CAPVIEW_TESTBED_STATE (default /tmp/capview-testbed).
set -euo pipefail

STATE=${CAPVIEW_TESTBED_STATE:-/tmp/capview-testbed}
PACKAGES=(openssh-server rsync podman curl sqlite3 uidmap catatonit dbus-user-session zsh fish)  # zsh, fish: the completion tests
SD_USERS=(cvdeploy)          # users that get a systemd --user manager
PLAIN_USERS=(cvnosd)         # users that must NOT have one
WAIT_SECS=${CAPVIEW_TESTBED_WAIT:-30}

log() { printf 'testbed: %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "must run as root"; }

cg_unified() {
    # cgroup2 mount: hybrid hosts have it at /sys/fs/cgroup/unified, pure v2 at /sys/fs/cgroup
    if [ -e /sys/fs/cgroup/unified/cgroup.procs ]; then echo /sys/fs/cgroup/unified
    elif [ -e /sys/fs/cgroup/cgroup.procs ]; then echo /sys/fs/cgroup
    else die "no cgroup2 hierarchy found under /sys/fs/cgroup"; fi
}

cmd_install() {
    need_root
    local missing=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        return 0
    fi
    log "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # This VM is not booted with systemd. Keep maintainer scripts from starting services
    # (a system sshd on :22) and from believing systemd runs (our /run/systemd/system
    # marker, made by `up`, would send them to a systemctl that cannot connect).
    local made_policy=0 hid_marker=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    if [ -d /run/systemd/system ] && [ "$(cat /proc/1/comm)" != systemd ]; then
        rmdir /run/systemd/system 2>/dev/null && hid_marker=1
    fi
    local rc=0
    { apt-get update -qq >/dev/null &&
      # with recommends: podman's (uidmap, catatonit, slirp4netns, dbus-user-session, ...)
      # are what rootless podman and the user manager rely on
      apt-get install -y -qq "${PACKAGES[@]}" >/dev/null; } || rc=$?
    [ "$made_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
    [ "$hid_marker" = 1 ] && mkdir -p /run/systemd/system
    [ "$rc" = 0 ] || die "apt-get failed (rc=$rc)"
}

ensure_subids() {
    # rootless podman needs subordinate uid/gid ranges for the user
    local u=$1 f start
    for f in /etc/subuid /etc/subgid; do
        touch "$f"
        if ! grep -q "^$u:" "$f"; then
            start=$(awk -F: 'BEGIN{m=100000} {e=$2+$3; if (e>m) m=e} END{print m}' "$f")
            echo "$u:$start:65536" >> "$f"
        fi
    done
}

ensure_user() {
    local u=$1 home
    if ! id "$u" >/dev/null 2>&1; then
        useradd -m -s /bin/bash "$u"
    fi
    # useradd leaves the account locked ('!'), sshd then refuses key logins
    usermod -p '*' "$u"
    ensure_subids "$u"
    home=$(getent passwd "$u" | cut -d: -f6)
    local uid gid; uid=$(id -u "$u"); gid=$(id -g "$u")
    install -d -m 700 -o "$uid" -g "$gid" "$home/.ssh"
    install -d -m 755 -o "$uid" -g "$gid" "$home/.config" "$home/.config/systemd" \
        "$home/.config/systemd/user" "$home/.config/containers" "$home/tb"
    # authorized_keys: the testbed client key
    local ak="$home/.ssh/authorized_keys" pub
    pub=$(cat "$STATE/client_ed25519.pub")
    touch "$ak"
    grep -qxF "$pub" "$ak" || echo "$pub" >> "$ak"
    chown "$uid:$gid" "$ak"; chmod 600 "$ak"
    # vfs storage: works rootless everywhere (overlay-on-overlay root fs, no fuse needed);
    # a FROM scratch build of a few files costs nothing with it.
    local sc="$home/.config/containers/storage.conf"
    if [ ! -e "$sc" ]; then
        printf '[storage]\ndriver = "vfs"\n' > "$sc"
        chown "$uid:$gid" "$sc"
    fi
    # XDG_RUNTIME_DIR (no logind here)
    install -d -m 700 -o "$uid" -g "$gid" "/run/user/$uid"
}

user_sd_state() {
    # prints the user manager state ("running", "degraded", "starting", ...) or nothing
    local u=$1 uid; uid=$(id -u "$u")
    setpriv --reuid="$uid" --regid="$(id -g "$u")" --init-groups \
        env -i HOME="$(getent passwd "$u" | cut -d: -f6)" USER="$u" LOGNAME="$u" \
        PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR="/run/user/$uid" \
        systemctl --user is-system-running 2>/dev/null || true
}

manager_pid() {
    local u=$1 pf="$STATE/systemd-$u.pid" pid
    [ -s "$pf" ] || return 1
    pid=$(cat "$pf")
    [ -d "/proc/$pid" ] || return 1
    # not a zombie (pid 1 of this VM may reap late), and still that user's systemd (pid reuse)
    [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" != Z ] || return 1
    [ "$(stat -c %u "/proc/$pid")" = "$(id -u "$u")" ] || return 1
    grep -q systemd "/proc/$pid/comm" 2>/dev/null || return 1
    echo "$pid"
}

start_user_manager() {
    local u=$1 uid gid home cgroot cg
    uid=$(id -u "$u"); gid=$(id -g "$u"); home=$(getent passwd "$u" | cut -d: -f6)
    case "$(user_sd_state "$u")" in
        running|degraded|starting|initializing) return 0 ;;
    esac
    if pid=$(manager_pid "$u"); then
        log "manager for $u (pid $pid) exists but is not answering; restarting it"
        kill "$pid" 2>/dev/null || true
        sleep 1
    fi
    mkdir -p /run/systemd/system
    cgroot=$(cg_unified)
    cg="$cgroot/user.slice/user-$uid.slice/user@$uid.service"
    # drop empty leftovers of a previous manager (killed without `down`); busy ones stay
    [ -d "$cg" ] && find "$cg" -mindepth 1 -depth -type d -exec rmdir {} \; 2>/dev/null || true
    mkdir -p "$cg"
    chown -R "$uid:$gid" "$cg"
    # A root helper moves itself into the user-owned cgroup, then becomes the user
    # and execs the manager (setpriv: no PAM, so the pid we record IS systemd).
    setsid bash -c '
        echo $$ > "$1/cgroup.procs"
        echo $$ > "$2"
        exec setpriv --reuid="$3" --regid="$4" --init-groups \
            env -i HOME="$5" USER="$6" LOGNAME="$6" SHELL=/bin/bash \
            PATH=/usr/local/bin:/usr/bin:/bin XDG_RUNTIME_DIR="/run/user/$3" \
            /lib/systemd/systemd --user
    ' tb-sd "$cg" "$STATE/systemd-$u.pid" "$uid" "$gid" "$home" "$u" \
        </dev/null >>"$STATE/systemd-$u.log" 2>&1 &
    disown || true
    local i st
    for ((i = 0; i < WAIT_SECS * 10; i++)); do
        st=$(user_sd_state "$u")
        case "$st" in running|degraded) return 0 ;; esac
        sleep 0.1
    done
    tail -n 30 "$STATE/systemd-$u.log" >&2 || true
    die "systemd --user for $u not running after ${WAIT_SECS}s (state: ${st:-none})"
}

stop_user_manager() {
    local u=$1 pid uid i
    id "$u" >/dev/null 2>&1 || return 0
    uid=$(id -u "$u")
    pid=$(manager_pid "$u") || { rm -f "$STATE/systemd-$u.pid"; return 0; }
    kill -TERM "$pid" 2>/dev/null || true   # systemd --user exits (stopping its units) on SIGTERM
    for ((i = 0; i < 100; i++)); do [ -d "/proc/$pid" ] || break; sleep 0.1; done
    [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null || true
    rm -f "$STATE/systemd-$u.pid"
    # remove the (now empty) cgroup tree, deepest first
    local cgroot; cgroot=$(cg_unified)
    find "$cgroot/user.slice/user-$uid.slice" -depth -type d -exec rmdir {} \; 2>/dev/null || true
}

stop_fixture_sshds() {
    local pf pid
    shopt -s nullglob
    for pf in "$STATE"/hosts/*/sshd.pid; do
        pid=$(cat "$pf" 2>/dev/null || true)
        if [ -n "$pid" ] && [ -d "/proc/$pid" ] && grep -q sshd "/proc/$pid/comm" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
        rm -f "$pf"
    done
}

start_journald() {
    # A VPS has systemd-journald; this VM (not booted with systemd) has none, so
    # `journalctl --user -u UNIT` (capview logs, health.log) would see nothing. Persistent
    # storage from the start: only then does journald split user-UID.journal files,
    # which is what `journalctl --user` reads.
    [ -x /lib/systemd/systemd-journald ] || { log "no systemd-journald: service logs stay empty"; return 0; }
    # Only a journald writing /var/log/journal splits user journals: one still on the runtime
    # journal in /run (never flushed: no systemd-journal-flush.service here, and on a /run
    # that is not a tmpfs it cannot let it go) puts every user's lines in the system file.
    if pgrep -x systemd-journal >/dev/null 2>&1; then
        [ -d /run/log/journal ] || return 0
        log "systemd-journald is on its runtime journal: restarting it on /var/log/journal"
        pkill -x systemd-journal || :
        local j=0
        while pgrep -x systemd-journal >/dev/null 2>&1 && [ "$j" -lt 50 ]; do sleep 0.1; j=$((j+1)); done
    fi
    install -d /etc/systemd/journald.conf.d /run/systemd/journal /var/log/journal
    printf '[Journal]\nStorage=persistent\nSplitMode=uid\n' > /etc/systemd/journald.conf.d/capview-testbed.conf
    # "flushed" tells journald to open /var/log/journal at once (what the flush service says at boot)
    rm -rf /run/log/journal
    touch /run/systemd/journal/flushed
    setsid /lib/systemd/systemd-journald >"$STATE/journald.log" 2>&1 < /dev/null &
    local i=0
    while [ ! -S /run/systemd/journal/stdout ] && [ "$i" -lt 50 ]; do sleep 0.1; i=$((i+1)); done
    [ -S /run/systemd/journal/stdout ] || die "systemd-journald did not start (see $STATE/journald.log)"
}

cmd_up() {
    need_root
    command -v sshd >/dev/null 2>&1 || [ -x /usr/sbin/sshd ] || die "openssh-server missing (run: $0 install)"
    command -v podman >/dev/null 2>&1 || die "podman missing (run: $0 install)"
    [ -x /lib/systemd/systemd ] || die "/lib/systemd/systemd missing"
    install -d -m 711 "$STATE" "$STATE/hosts"
    mkdir -p /run/sshd && chmod 755 /run/sshd
    if [ ! -s "$STATE/client_ed25519" ]; then
        ssh-keygen -q -t ed25519 -N '' -C capview-testbed-client -f "$STATE/client_ed25519" >/dev/null
    fi
    local u
    for u in "${SD_USERS[@]}" "${PLAIN_USERS[@]}"; do ensure_user "$u"; done
    start_journald
    for u in "${SD_USERS[@]}"; do start_user_manager "$u"; done
    # the "no user manager" user must really have none
    for u in "${PLAIN_USERS[@]}"; do stop_user_manager "$u"; done
}

stop_podman_pause() {
    # rootless podman leaves a "catatonit -P" pause process per user; stop it via its pidfile
    local u=$1 uid pf pid
    id "$u" >/dev/null 2>&1 || return 0
    uid=$(id -u "$u")
    for pf in "/run/user/$uid/libpod/tmp/pause.pid" "/tmp/podman-run-$uid/libpod/tmp/pause.pid"; do
        [ -s "$pf" ] || continue
        pid=$(cat "$pf" 2>/dev/null || true)
        if [ -n "$pid" ] && [ -d "/proc/$pid" ] && [ "$(stat -c %u "/proc/$pid")" = "$uid" ] \
            && grep -q catatonit "/proc/$pid/comm" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done
}

cmd_down() {
    need_root
    [ -d "$STATE" ] || return 0
    stop_fixture_sshds
    local u
    for u in "${SD_USERS[@]}" "${PLAIN_USERS[@]}"; do
        stop_user_manager "$u"
        stop_podman_pause "$u"
    done
}

cmd_status() {
    local u pf
    for u in "${SD_USERS[@]}" "${PLAIN_USERS[@]}"; do
        if id "$u" >/dev/null 2>&1; then
            echo "$u: uid=$(id -u "$u") manager=$(user_sd_state "$u" | head -1) pid=$(manager_pid "$u" || echo -)"
        else
            echo "$u: (no such user)"
        fi
    done
    shopt -s nullglob
    for pf in "$STATE"/hosts/*/sshd.pid; do echo "sshd $(dirname "$pf"): pid $(cat "$pf")"; done
}

case "${1:-}" in
    install) cmd_install ;;
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *) echo "usage: $0 install|up|down|status" >&2; exit 2 ;;
esac
