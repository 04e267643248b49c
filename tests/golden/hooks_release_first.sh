# --- after_healthy
cv_hooks_after_switch() {  # hooks.after_switch: 1 command(s), 60s each
  ( umask 077; : >> /home/deploy/web/app/releases/v1/.capview/hooks.log ) 2>/dev/null; chmod 600 /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || :
  mark hook after_switch 1 1
  { printf '%s%s\n' '== after_switch 1/1: ' "$(date -u +%FT%TZ)"; printf '%s\n' 'curl -fsS http://127.0.0.1:8000/warm'; } >> /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || :
  cv_hoff=$(($(stat -c %s /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || echo 0) + 1))
  ( cd /home/deploy/web/app/releases/v1 && exec env CAPVIEW_VERSION=v1 CAPVIEW_PREVIOUS='' CAPVIEW_RELEASE_PATH=/home/deploy/web/app/releases/v1 CAPVIEW_DEPLOY_PATH=/home/deploy/web/app CAPVIEW_SHARED_PATH=/home/deploy/web/app/shared CAPVIEW_OPERATION=release CAPVIEW_ENV=prod CAPVIEW_HOST=web-1 timeout -k 5 60 sh -c 'curl -fsS http://127.0.0.1:8000/warm' ) < /dev/null >> /home/deploy/web/app/releases/v1/.capview/hooks.log 2>&1 &
  cv_hpid=$!
  tail -c +"$cv_hoff" -s 0.1 -f --pid="$cv_hpid" /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null | sed -u 's/^/[after_switch] /' || :
  wait "$cv_hpid" && cv_hrc=0 || cv_hrc=$?
  if [ "$cv_hrc" != 0 ]; then
    if [ "$cv_hrc" = 124 ]; then cv_hwhy='timed out after 60s'; else cv_hwhy="exit $cv_hrc"; fi
    printf '== after_switch 1 failed: %s\n' "$cv_hwhy" >> /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || :
    mark hook_failed after_switch 1 "$cv_hrc"
    echo "hooks.after_switch command 1 failed ($cv_hwhy); see releases/v1/.capview/hooks.log" >&2
    return "$cv_hrc"
  fi
}
cv_hooks_after_switch || warn "hooks.after_switch failed (exit $?): the operation is not affected"
# --- after_stop
# --- before_revert
# --- before_start
cv_hooks_before_start() {  # hooks.before_start: 2 command(s), 60s each
  ( umask 077; : >> /home/deploy/web/app/releases/v1/.capview/hooks.log ) 2>/dev/null; chmod 600 /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || :
  mark hook before_start 1 2
  { printf '%s%s\n' '== before_start 1/2: ' "$(date -u +%FT%TZ)"; printf '%s\n' 'sqlite3 data/app.db '"'"'ALTER TABLE t ADD c'"'"''; } >> /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || :
  cv_hoff=$(($(stat -c %s /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || echo 0) + 1))
  ( cd /home/deploy/web/app/releases/v1 && exec env CAPVIEW_VERSION=v1 CAPVIEW_PREVIOUS='' CAPVIEW_RELEASE_PATH=/home/deploy/web/app/releases/v1 CAPVIEW_DEPLOY_PATH=/home/deploy/web/app CAPVIEW_SHARED_PATH=/home/deploy/web/app/shared CAPVIEW_OPERATION=release CAPVIEW_ENV=prod CAPVIEW_HOST=web-1 timeout -k 5 60 sh -c 'sqlite3 data/app.db '"'"'ALTER TABLE t ADD c'"'"'' ) < /dev/null >> /home/deploy/web/app/releases/v1/.capview/hooks.log 2>&1 &
  cv_hpid=$!
  tail -c +"$cv_hoff" -s 0.1 -f --pid="$cv_hpid" /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null | sed -u 's/^/[before_start] /' || :
  wait "$cv_hpid" && cv_hrc=0 || cv_hrc=$?
  if [ "$cv_hrc" != 0 ]; then
    if [ "$cv_hrc" = 124 ]; then cv_hwhy='timed out after 60s'; else cv_hwhy="exit $cv_hrc"; fi
    printf '== before_start 1 failed: %s\n' "$cv_hwhy" >> /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || :
    mark hook_failed before_start 1 "$cv_hrc"
    echo "hooks.before_start command 1 failed ($cv_hwhy); see releases/v1/.capview/hooks.log" >&2
    return "$cv_hrc"
  fi
  mark hook before_start 2 2
  { printf '%s%s\n' '== before_start 2/2: ' "$(date -u +%FT%TZ)"; printf '%s\n' './migrate --it'"'"'s'; } >> /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || :
  cv_hoff=$(($(stat -c %s /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || echo 0) + 1))
  ( cd /home/deploy/web/app/releases/v1 && exec env CAPVIEW_VERSION=v1 CAPVIEW_PREVIOUS='' CAPVIEW_RELEASE_PATH=/home/deploy/web/app/releases/v1 CAPVIEW_DEPLOY_PATH=/home/deploy/web/app CAPVIEW_SHARED_PATH=/home/deploy/web/app/shared CAPVIEW_OPERATION=release CAPVIEW_ENV=prod CAPVIEW_HOST=web-1 timeout -k 5 60 sh -c './migrate --it'"'"'s' ) < /dev/null >> /home/deploy/web/app/releases/v1/.capview/hooks.log 2>&1 &
  cv_hpid=$!
  tail -c +"$cv_hoff" -s 0.1 -f --pid="$cv_hpid" /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null | sed -u 's/^/[before_start] /' || :
  wait "$cv_hpid" && cv_hrc=0 || cv_hrc=$?
  if [ "$cv_hrc" != 0 ]; then
    if [ "$cv_hrc" = 124 ]; then cv_hwhy='timed out after 60s'; else cv_hwhy="exit $cv_hrc"; fi
    printf '== before_start 2 failed: %s\n' "$cv_hwhy" >> /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || :
    mark hook_failed before_start 2 "$cv_hrc"
    echo "hooks.before_start command 2 failed ($cv_hwhy); see releases/v1/.capview/hooks.log" >&2
    return "$cv_hrc"
  fi
}
cv_hooks_before_start || { cv_hb=$?; cv_start_reason='before_start hook failed'; return $cv_hb; }
# --- on_failure
cv_hooks_on_failure() {  # hooks.on_failure: 1 command(s), 60s each
  ( umask 077; : >> /home/deploy/web/app/releases/v1/.capview/hooks.log ) 2>/dev/null; chmod 600 /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || :
  mark hook on_failure 1 1
  { printf '%s%s\n' '== on_failure 1/1: ' "$(date -u +%FT%TZ)"; printf '%s\n' './notify failed'; } >> /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || :
  cv_hoff=$(($(stat -c %s /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || echo 0) + 1))
  ( cd /home/deploy/web/app/releases/v1 && exec env CAPVIEW_VERSION=v1 CAPVIEW_PREVIOUS='' CAPVIEW_RELEASE_PATH=/home/deploy/web/app/releases/v1 CAPVIEW_DEPLOY_PATH=/home/deploy/web/app CAPVIEW_SHARED_PATH=/home/deploy/web/app/shared CAPVIEW_OPERATION=release CAPVIEW_ENV=prod CAPVIEW_HOST=web-1 timeout -k 5 60 sh -c './notify failed' ) < /dev/null >> /home/deploy/web/app/releases/v1/.capview/hooks.log 2>&1 &
  cv_hpid=$!
  tail -c +"$cv_hoff" -s 0.1 -f --pid="$cv_hpid" /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null | sed -u 's/^/[on_failure] /' || :
  wait "$cv_hpid" && cv_hrc=0 || cv_hrc=$?
  if [ "$cv_hrc" != 0 ]; then
    if [ "$cv_hrc" = 124 ]; then cv_hwhy='timed out after 60s'; else cv_hwhy="exit $cv_hrc"; fi
    printf '== on_failure 1 failed: %s\n' "$cv_hwhy" >> /home/deploy/web/app/releases/v1/.capview/hooks.log 2>/dev/null || :
    mark hook_failed on_failure 1 "$cv_hrc"
    echo "hooks.on_failure command 1 failed ($cv_hwhy); see releases/v1/.capview/hooks.log" >&2
    return "$cv_hrc"
  fi
}
cv_hooks_on_failure || warn "hooks.on_failure failed (exit $?): the operation is not affected"
