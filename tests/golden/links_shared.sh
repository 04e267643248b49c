cd /home/deploy/web/app/releases/v2
refuse() { printf '%s\n' "$1" >&2; exit 9; }
if [ -L data ]; then rm -f -- data; elif [ -e data ]; then printf '%s warn %s\n' @@cv-0000000000000000 'the uploaded data was replaced by a link to shared/data'; rm -rf -- data; fi
ln -s ../../shared/data data
if [ -L var ]; then refuse 'shared path var/uploads: releases/v2/var is a symlink; refusing to go through it - make var a real directory, or list var itself in shared.dirs'; elif [ -e var ] && [ ! -d var ]; then refuse 'shared path var/uploads: releases/v2/var is not a directory; refusing - remove it or list var in shared'; elif [ ! -e var ]; then mkdir -- var; fi
if [ -L var/uploads ]; then rm -f -- var/uploads; elif [ -e var/uploads ]; then printf '%s warn %s\n' @@cv-0000000000000000 'the uploaded var/uploads was replaced by a link to shared/var/uploads'; rm -rf -- var/uploads; fi
ln -s ../../../shared/var/uploads var/uploads
if [ -L .env ]; then rm -f -- .env; elif [ -e .env ]; then printf '%s warn %s\n' @@cv-0000000000000000 'the uploaded .env was replaced by a link to shared/.env'; rm -rf -- .env; fi
ln -s ../../shared/.env .env
chmod 600 /home/deploy/web/app/shared/.env 2>/dev/null || true
