M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
cd /home/deploy/web/app/releases/v2
refuse() { printf '%s\n' "$1" >&2; exit 9; }
if [ -L data ]; then rm -f -- data; elif [ -e data ]; then printf '%s warn %s\n' @@cv-0000000000000000 'the uploaded data was replaced by a link to shared/data'; rm -rf -- data; fi
ln -s ../../shared/data data
if [ -L .env ]; then rm -f -- .env; elif [ -e .env ]; then printf '%s warn %s\n' @@cv-0000000000000000 'the uploaded .env was replaced by a link to shared/.env'; rm -rf -- .env; fi
ln -s ../../shared/.env .env
if [ -L conf ]; then refuse 'shared path conf/app.ini: releases/v2/conf is a symlink; refusing to go through it - make conf a real directory, or list conf itself in shared.dirs'; elif [ -e conf ] && [ ! -d conf ]; then refuse 'shared path conf/app.ini: releases/v2/conf is not a directory; refusing - remove it or list conf in shared'; elif [ ! -e conf ]; then mkdir -- conf; fi
if [ -L conf/app.ini ]; then rm -f -- conf/app.ini; elif [ -e conf/app.ini ]; then printf '%s warn %s\n' @@cv-0000000000000000 'the uploaded conf/app.ini was replaced by a link to shared/conf/app.ini'; rm -rf -- conf/app.ini; fi
ln -s ../../../shared/conf/app.ini conf/app.ini
chmod 600 /home/deploy/web/app/shared/.env 2>/dev/null || true
mark linked
cv_rc=0
mark build_rc 0
cv_hooks_after_upload() {  # hooks.after_upload: 1 command(s), 60s each
  ( umask 077; : >> /home/deploy/web/app/releases/v2/.capview/hooks.log ) 2>/dev/null; chmod 600 /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null || :
  mark hook after_upload 1 1
  { printf '%s%s\n' '== after_upload 1/1: ' "$(date -u +%FT%TZ)"; printf '%s\n' 'npm ci --offline'; } >> /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null || :
  cv_hoff=$(($(stat -c %s /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null || echo 0) + 1))
  ( cd /home/deploy/web/app/releases/v2 && exec env CAPVIEW_VERSION=v2 CAPVIEW_PREVIOUS=v1 CAPVIEW_RELEASE_PATH=/home/deploy/web/app/releases/v2 CAPVIEW_DEPLOY_PATH=/home/deploy/web/app CAPVIEW_SHARED_PATH=/home/deploy/web/app/shared CAPVIEW_OPERATION=release CAPVIEW_ENV=prod CAPVIEW_HOST=web-1 timeout -k 5 60 sh -c 'npm ci --offline' ) < /dev/null >> /home/deploy/web/app/releases/v2/.capview/hooks.log 2>&1 &
  cv_hpid=$!
  tail -c +"$cv_hoff" -s 0.1 -f --pid="$cv_hpid" /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null | sed -u 's/^/[after_upload] /' || :
  wait "$cv_hpid" && cv_hrc=0 || cv_hrc=$?
  if [ "$cv_hrc" != 0 ]; then
    if [ "$cv_hrc" = 124 ]; then cv_hwhy='timed out after 60s'; else cv_hwhy="exit $cv_hrc"; fi
    printf '== after_upload 1 failed: %s\n' "$cv_hwhy" >> /home/deploy/web/app/releases/v2/.capview/hooks.log 2>/dev/null || :
    mark hook_failed after_upload 1 "$cv_hrc"
    echo "hooks.after_upload command 1 failed ($cv_hwhy); see releases/v2/.capview/hooks.log" >&2
    return "$cv_hrc"
  fi
}
[ "${cv_rc:-1}" != 0 ] || cv_hooks_after_upload || { cv_hook_rc=$?; mark hook_rc "$cv_hook_rc"; }
if [ -z "${cv_hook_rc:-}" ]; then
  :
# ready
fi
