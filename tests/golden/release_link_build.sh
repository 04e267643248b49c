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
# building
{ cv_rc=$( { { ( cd /home/deploy/web/app/releases/v2 && podman build -t localhost/app:v2 . ) 2>&1 3>&- 4>&- && rc=0 || rc=$?; printf '%s' "$rc" >&3; } | tee /home/deploy/web/app/releases/v2/.capview/build.log >&4 3>&-; } 3>&1 ); } 4>&1
[ -z "$(tail -c 1 /home/deploy/web/app/releases/v2/.capview/build.log 2>/dev/null)" ] || echo
mark build_rc "${cv_rc:-1}"
