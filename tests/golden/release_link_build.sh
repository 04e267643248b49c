M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }
cd /home/deploy/web/app/releases/v2
if [ -L data ]; then rm -f data; elif [ -e data ]; then printf '%s warn %s\n' @@cv 'the uploaded data was replaced by a link to shared/data'; rm -rf data; fi
ln -s ../../shared/data data
if [ -L .env ]; then rm -f .env; elif [ -e .env ]; then printf '%s warn %s\n' @@cv 'the uploaded .env was replaced by a link to shared/.env'; rm -rf .env; fi
ln -s ../../shared/.env .env
mkdir -p conf
if [ -L conf/app.ini ]; then rm -f conf/app.ini; elif [ -e conf/app.ini ]; then printf '%s warn %s\n' @@cv 'the uploaded conf/app.ini was replaced by a link to shared/conf/app.ini'; rm -rf conf/app.ini; fi
ln -s ../../../shared/conf/app.ini conf/app.ini
chmod 600 /home/deploy/web/app/shared/.env 2>/dev/null || true
mark linked
# building
{ rc=0; ( cd /home/deploy/web/app/releases/v2 && podman build -t localhost/app:v2 . ) || rc=$?; mark build_rc "$rc"; } 2>&1 | tee /home/deploy/web/app/releases/v2/.capview/build.log
