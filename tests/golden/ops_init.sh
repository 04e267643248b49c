M='@@cv-0000000000000000'
mark() { printf '%s %s\n' "$M" "$*"; }
sec() { printf '\n%s %s\n' "$M" "$*"; }

note() { sec "$1"; printf '%s\n' "$2"; }
mkd() { if [ -d "$1" ]; then note exists "$2"; else mkdir -p -- "$1"; note created "$2"; fi; }
mkf() { if [ -e "$1" ] || [ -L "$1" ]; then note exists "$2"; else mkdir -p -- "$(dirname -- "$1")"; (umask 077; : > "$1"); chmod 600 "$1"; note created "$2"; fi; }
dp=/home/deploy/web/app
if [ -d "$dp" ] && [ ! -d "$dp/releases" ]; then
  for n in "$dp"/* "$dp"/.[!.]* "$dp"/..?*; do
    [ -e "$n" ] || [ -L "$n" ] || continue
    case ${n##*/} in .capview|current|releases|shared|traefik) ;; *) sec legacy; exit 0 ;; esac
  done
fi
refuse() { sec refused; printf '%s\n' "$1"; exit 0; }
if [ -d "$dp/shared" ]; then cd "$dp/shared"
if [ -L conf ]; then refuse 'shared path conf/app.ini: /home/deploy/web/app/shared/conf is a symlink; refusing to go through it - make conf a real directory, or list conf itself in shared.dirs'; elif [ -e conf ] && [ ! -d conf ]; then refuse 'shared path conf/app.ini: /home/deploy/web/app/shared/conf is not a directory; refusing - remove it or list conf in shared'; fi
cd /; fi
mkd "$dp" "$dp"
mkd /home/deploy/web/app/releases /home/deploy/web/app/releases
mkd /home/deploy/web/app/shared /home/deploy/web/app/shared
mkd /home/deploy/web/app/.capview /home/deploy/web/app/.capview
mkd /home/deploy/web/app/shared/data /home/deploy/web/app/shared/data
mkf /home/deploy/web/app/shared/.env /home/deploy/web/app/shared/.env
mkf /home/deploy/web/app/shared/conf/app.ini /home/deploy/web/app/shared/conf/app.ini
mkdir -p /home/deploy/web/app/.capview
printf '%s\n' '{"at":100.0,"from":"v1","host":"web-1","op":"release","operator":"ann@laptop","version":"v2"}' >> /home/deploy/web/app/.capview/history.jsonl
sec end
