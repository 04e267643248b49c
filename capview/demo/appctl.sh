#!/bin/sh
# capview demo: the sample app's service controller (service.manager: command).
#
#   appctl.sh start   DEPLOY_PATH PORT   start <DEPLOY_PATH>/current/app.py in the background
#   appctl.sh stop    DEPLOY_PATH        TERM it, wait up to 5 s, then KILL
#   appctl.sh status  DEPLOY_PATH        exit 0 and print the pid iff it is running
#   appctl.sh restart DEPLOY_PATH PORT
#
# The pid file is <DEPLOY_PATH>/shared/run/app.pid, the log <DEPLOY_PATH>/shared/log/app.log.
# A host still in the old overwrite-in-place layout (no current/) runs <DEPLOY_PATH>/app.py.
set -eu

usage() { echo "usage: appctl.sh start|stop|status|restart DEPLOY_PATH [PORT]" >&2; exit 2; }
[ $# -ge 2 ] || usage
cmd=$1
dp=${2%/}
port=${3:-}
run_dir="$dp/shared/run"
pidfile="$run_dir/app.pid"
log_dir="$dp/shared/log"
logfile="$log_dir/app.log"
python=${PYTHON:-python3}
pid=

# True iff the pid file names a live (non-zombie) app.py process of this deploy path.
is_running() {
    [ -f "$pidfile" ] || return 1
    pid=$(cat "$pidfile" 2>/dev/null || true)
    case $pid in ''|*[!0-9]*) return 1 ;; esac
    kill -0 "$pid" 2>/dev/null || return 1
    case $(ps -o stat= -p "$pid" 2>/dev/null || true) in Z*|'') return 1 ;; esac
    # a recycled pid is not ours: the command line must name this deploy path's app.py
    ps -ww -o args= -p "$pid" 2>/dev/null | grep -F -- "$dp/" | grep -q -F "app.py"
}

do_start() {
    [ -n "$port" ] || usage
    if is_running; then
        echo "demo app already running (pid $pid)"
        return 0
    fi
    app="$dp/current/app.py"
    [ -f "$app" ] || app="$dp/app.py"
    if [ ! -f "$app" ]; then
        echo "appctl: nothing to start: neither $dp/current/app.py nor $dp/app.py exists" >&2
        return 1
    fi
    mkdir -p "$run_dir" "$log_dir"
    rm -f "$pidfile"
    cd "$dp"
    if command -v setsid >/dev/null 2>&1; then
        PORT=$port nohup setsid "$python" "$app" "$port" --pidfile "$pidfile" </dev/null >>"$logfile" 2>&1 &
    else
        PORT=$port nohup "$python" "$app" "$port" --pidfile "$pidfile" </dev/null >>"$logfile" 2>&1 &
    fi
    bg=$!
    # app.py writes the pid file once it is listening; wait for that (or for it to die)
    i=0
    while [ ! -s "$pidfile" ]; do
        if ! kill -0 "$bg" 2>/dev/null; then
            echo "appctl: the demo app exited during start-up; last log lines:" >&2
            tail -n 20 "$logfile" >&2 || true
            return 1
        fi
        i=$((i + 1))
        if [ "$i" -ge 100 ]; then
            echo "appctl: the demo app did not start listening on port $port within 10 s" >&2
            kill -KILL "$bg" 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
    echo "demo app started (pid $(cat "$pidfile"), port $port)"
}

do_stop() {
    if ! is_running; then
        rm -f "$pidfile"
        echo "demo app not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    i=0
    while is_running; do
        i=$((i + 1))
        if [ "$i" -ge 50 ]; then
            echo "appctl: pid $pid ignored TERM for 5 s; killing it" >&2
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
            break
        fi
        sleep 0.1
    done
    rm -f "$pidfile"
    echo "demo app stopped (pid $pid)"
}

case $cmd in
    start) do_start ;;
    stop) do_stop ;;
    restart) do_stop; do_start ;;
    status)
        if is_running; then
            echo "$pid"
        else
            echo "demo app not running" >&2
            exit 3
        fi
        ;;
    *) usage ;;
esac
