# --- after_healthy
cv_hooks_after_rollback() {  # hooks.after_rollback: 1 command(s), 60s each
  ( umask 077; : >> /home/deploy/web/app/releases/v2/.capview/hooks.log ) 2>/dev/null; chmod 600 /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null || :
  mark hook after_rollback 1 1
  { printf '%s%s\n' '== after_rollback 1/1: ' "$(date -u +%FT%TZ)"; printf '%s\n' './notify rollback'; } >> /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null || :
  cv_hoff=$(($(stat -c %s /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null || echo 0) + 1))
  ( cd /home/deploy/web/app/releases/v2 && exec env CAPVIEW_VERSION=v2 CAPVIEW_PREVIOUS=v3 CAPVIEW_RELEASE_PATH=/home/deploy/web/app/releases/v2 CAPVIEW_DEPLOY_PATH=/home/deploy/web/app CAPVIEW_SHARED_PATH=/home/deploy/web/app/shared CAPVIEW_OPERATION=rollback CAPVIEW_ENV=prod CAPVIEW_HOST=web-1 timeout -k 5 60 sh -c './notify rollback' ) < /dev/null >> /home/deploy/web/app/releases/v2/.capview/hooks.log 2>&1 &
  cv_hpid=$!
  tail -c +"$cv_hoff" -s 0.1 -f --pid="$cv_hpid" /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null | sed -u 's/^/[after_rollback] /' || :
  wait "$cv_hpid" && cv_hrc=0 || cv_hrc=$?
  if [ "$cv_hrc" != 0 ]; then
    if [ "$cv_hrc" = 124 ]; then cv_hwhy='timed out after 60s'; else cv_hwhy="exit $cv_hrc"; fi
    printf '== after_rollback 1 failed: %s\n' "$cv_hwhy" >> /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null || :
    mark hook_failed after_rollback 1 "$cv_hrc"
    echo "hooks.after_rollback command 1 failed ($cv_hwhy); see releases/v2/.capview/hooks.log" >&2
    return "$cv_hrc"
  fi
}
cv_hooks_after_rollback || warn "hooks.after_rollback failed (exit $?): the operation is not affected"
# --- after_stop
# --- before_revert
# --- before_start
# --- on_failure
cv_hooks_on_failure() {  # hooks.on_failure: 1 command(s), 60s each
  ( umask 077; : >> /home/deploy/web/app/releases/v2/.capview/hooks.log ) 2>/dev/null; chmod 600 /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null || :
  mark hook on_failure 1 1
  { printf '%s%s\n' '== on_failure 1/1: ' "$(date -u +%FT%TZ)"; printf '%s\n' './notify failed'; } >> /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null || :
  cv_hoff=$(($(stat -c %s /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null || echo 0) + 1))
  ( cd /home/deploy/web/app/releases/v2 && exec env CAPVIEW_VERSION=v2 CAPVIEW_PREVIOUS=v3 CAPVIEW_RELEASE_PATH=/home/deploy/web/app/releases/v2 CAPVIEW_DEPLOY_PATH=/home/deploy/web/app CAPVIEW_SHARED_PATH=/home/deploy/web/app/shared CAPVIEW_OPERATION=rollback CAPVIEW_ENV=prod CAPVIEW_HOST=web-1 timeout -k 5 60 sh -c './notify failed' ) < /dev/null >> /home/deploy/web/app/releases/v2/.capview/hooks.log 2>&1 &
  cv_hpid=$!
  tail -c +"$cv_hoff" -s 0.1 -f --pid="$cv_hpid" /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null | sed -u 's/^/[on_failure] /' || :
  wait "$cv_hpid" && cv_hrc=0 || cv_hrc=$?
  if [ "$cv_hrc" != 0 ]; then
    if [ "$cv_hrc" = 124 ]; then cv_hwhy='timed out after 60s'; else cv_hwhy="exit $cv_hrc"; fi
    printf '== on_failure 1 failed: %s\n' "$cv_hwhy" >> /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null || :
    mark hook_failed on_failure 1 "$cv_hrc"
    echo "hooks.on_failure command 1 failed ($cv_hwhy); see releases/v2/.capview/hooks.log" >&2
    return "$cv_hrc"
  fi
}
cv_hooks_on_failure || warn "hooks.on_failure failed (exit $?): the operation is not affected"
